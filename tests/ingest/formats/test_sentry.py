"""Sentry envelopes, from what @sentry/browser 11.17 really sent through its tunnel
(``tests/sdks/captures/sentry.json``): sessions, an error event, span-streamed web vitals."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import parse_qsl

import orjson
import pytest

from streams.ingest.formats import Context, FormatError, RejectKind, convert_items, detect, parse_body, sentry
from tests.ingest.formats.helpers import RECEIVED_AT, assert_valid

CAPTURES = Path(__file__).resolve().parents[2] / "sdks" / "captures"
TRACE = "4eda4b04bb2f41cea449dd8063624344"
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36"


def requests() -> list[tuple[bytes, str, dict]]:
    """The capture's requests as the endpoint reads them: body, content type, query params."""
    return [(base64.b64decode(r["body_b64"]), r["headers"].get("content-type", ""),
             dict(parse_qsl(r["query"], keep_blank_values=True)))
            for r in json.loads((CAPTURES / "sentry.json").read_text())]


def convert(body: bytes, content_type: str, query: dict):
    conversion = convert_items(parse_body(body, content_type, query),
                               Context(received_at=RECEIVED_AT, app=query.get("app"), release=query.get("release")))
    assert_valid(conversion.beacons)
    return conversion


def test_the_tunnel_sends_text_plain_envelopes():
    assert [content_type for _, content_type, _ in requests()] == ["text/plain;charset=UTF-8"] * 5
    kinds = [[item["sentry_item"]["type"] for item in parse_body(body, ct)] for body, ct, _ in requests()]
    assert kinds == [["session"], ["session"], ["event"], ["span"], ["span"]]


def test_one_page_load_field_by_field():
    out = [convert(*request) for request in requests()]
    assert [c.rejects for c in out] == [[]] * 5
    # the session updates are no page views: counted, not stored
    assert [c.ignored for c in out[:2]] == [[(0, "Sentry: type: 'session' items are not page views",
                                             RejectKind.NOT_A_PAGE_VIEW)]] * 2
    assert [c.beacons for c in out[:2]] == [[], []]
    common = {"view": TRACE, "ts": RECEIVED_AT, "app": "shop-web", "release": "2026.11.23-abc",
              "device": "desktop", "browser": "Chrome"}
    # the error event: its contexts.trace.trace_id is the pageload's trace
    assert out[2].beacons == [{"id": "sentry-fa409fce8d134215aedd958adb424e50", **common,
                               "page": "/shop/running-shoes", "metrics": {}, "errors": 1}]
    # the pageload segment (FCP, TTFB; url.full) and the ui.webvital.lcp span, one trace
    assert out[3].beacons == [{"id": "sentry-9f96bda7616e891d", **common, "page": "/shop/running-shoes",
                               "metrics": {"LCP": 208.0, "FCP": 96.0, "TTFB": 6.199999999254942}}]
    # on hide: the click's INP and the CLS span, still the pageload's trace
    assert out[4].beacons == [{"id": "sentry-ae725a30be13aaae", **common, "metrics": {"INP": 88.0, "CLS": 0.09375}}]


def test_every_beacon_of_the_page_load_has_its_view_and_every_metric_comes_once():
    beacons = [b for request in requests() for b in convert(*request).beacons]
    assert {b["view"] for b in beacons} == {TRACE}
    metrics = [m for b in beacons for m in b["metrics"]]
    assert sorted(metrics) == sorted(["LCP", "FCP", "TTFB", "INP", "CLS"])
    assert sum(b.get("errors", 0) for b in beacons) == 1


def test_the_error_event_is_no_longer_taken_for_a_canonical_beacon():
    body, content_type, _ = requests()[2]
    event = parse_body(body, content_type)[0]["payload"]
    assert "release" in event and detect(event) is None  # the bare event: no format's


def test_an_error_event_without_a_trace_is_refused_not_a_page_view_without_its_view():
    body, content_type, query = requests()[2]
    [item] = parse_body(body, content_type)
    del item["payload"]["contexts"]["trace"]
    del item["sentry_envelope"]["trace"]
    out = sentry.convert([(0, item)], Context(received_at=RECEIVED_AT, app="shop-web"))
    assert out.beacons == []
    assert out.rejects == [(0, "contexts.trace.trace_id: missing (an error must name its page view)")]


def test_the_envelope_trace_names_the_view_when_the_event_does_not():
    body, content_type, _ = requests()[2]
    [item] = parse_body(body, content_type)
    del item["payload"]["contexts"]["trace"]
    [(_, beacon)] = sentry.convert([(0, item)], Context(received_at=RECEIVED_AT, app="shop-web")).beacons
    assert beacon["view"] == TRACE


def test_a_message_event_is_not_a_js_error():
    body, content_type, _ = requests()[2]
    [item] = parse_body(body, content_type)
    del item["payload"]["exception"]
    out = sentry.convert([(0, item)], Context(received_at=RECEIVED_AT, app="shop-web"))
    assert out.beacons == [] and out.ignored[0][2] is RejectKind.NOT_A_PAGE_VIEW


def test_spans_of_no_page_view_are_ignored():
    body, content_type, _ = requests()[3]
    [item] = parse_body(body, content_type)
    item["payload"]["items"] = [s for s in item["payload"]["items"] if s["attributes"]["sentry.op"]["value"]
                                .startswith("resource.")]
    out = sentry.convert([(0, item)], Context(received_at=RECEIVED_AT, app="shop-web"))
    assert out.beacons == []
    assert out.ignored == [(0, "spans: no web vital and no pageload or navigation segment",
                            RejectKind.NOT_A_PAGE_VIEW)]


def test_a_bad_web_vital_names_its_span():
    body, content_type, _ = requests()[4]
    [item] = parse_body(body, content_type)
    item["payload"]["items"][1]["attributes"]["browser.web_vital.cls.value"]["value"] = "0.1"
    out = sentry.convert([(0, item)], Context(received_at=RECEIVED_AT, app="shop-web"))
    assert out.rejects == [(0, "payload.items[1].attributes.browser.web_vital.cls.value: must be a number, got str")]


def test_a_negative_web_vital_is_refused_by_the_beacon_check():
    body, content_type, query = requests()[4]
    body = body.replace(b'"browser.web_vital.inp.value":{"value":88', b'"browser.web_vital.inp.value":{"value":-88')
    out = convert(body, content_type, query)
    assert out.rejects == [(0, "Sentry: metrics.INP: must be >= 0, got -88.0")]


def test_user_agent_names_device_and_browser():
    body, content_type, query = requests()[2]
    mobile = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Mobile Safari/537.36"
    [beacon] = convert(body.replace(UA.encode(), mobile.encode()), content_type, query).beacons
    assert (beacon["device"], beacon["browser"]) == ("mobile", "Chrome")


# -- the envelope framing (parse_body) --------------------------------------------------

def _envelope(*lines: bytes) -> bytes:
    return b"\n".join(lines)


HEADER = b'{"sent_at":"2026-12-07T11:27:33.684Z","dsn":"http://k@127.0.0.1/1"}'


def test_a_length_is_honoured_even_across_newlines():
    payload = orjson.dumps({"exception": {"values": [{"type": "Error"}]}}, option=orjson.OPT_INDENT_2)
    assert b"\n" in payload
    body = _envelope(HEADER, b'{"type":"event","length":%d}' % len(payload), payload, b'{"type":"session"}', b"{}")
    items = parse_body(body, "application/x-sentry-envelope")
    assert [(i["sentry_item"]["type"], i["payload"]) for i in items] == [
        ("event", {"exception": {"values": [{"type": "Error"}]}}), ("session", {})]


def test_the_last_payload_needs_no_newline_and_a_trailing_one_is_fine():
    for tail in (b"", b"\n", b"\r\n"):
        body = _envelope(HEADER, b'{"type":"session","length":2}', b"{}") + tail
        assert [i["payload"] for i in parse_body(body, "text/plain;charset=UTF-8")] == [{}]


def test_an_attachment_is_skipped_by_its_length_and_its_payload_not_read():
    blob = b"\x00\xff\n\x01binary"
    body = _envelope(HEADER, b'{"type":"attachment","length":%d,"content_type":"image/png"}' % len(blob), blob,
                     b'{"type":"session"}', b'{"sid":"x"}')
    items = parse_body(body, "application/x-sentry-envelope")
    assert [(i["sentry_item"]["type"], i["payload"]) for i in items] == [("attachment", None), ("session", {"sid": "x"})]


def test_a_payload_that_is_not_json_is_that_item_s_problem_only():
    body = _envelope(HEADER, b'{"type":"event"}', b"{nope", b'{"type":"session"}', b"{}")
    items = parse_body(body, "text/plain")
    assert items[0]["payload_error"] == "not valid JSON (unexpected character, expected a string key at column 2)"
    out = sentry.convert(list(enumerate(items)), Context(received_at=RECEIVED_AT, app="a"))
    assert out.rejects == [(0, "payload: not valid JSON (unexpected character, expected a string key at column 2)")]


@pytest.mark.parametrize("body, message", [
    (b'{"dsn":"x"', "sentry envelope: line 1: header is not valid JSON (unexpected end of data at column 11)"),
    (b'[1]\n{"type":"event"}\n{}', "sentry envelope: line 1: header must be a JSON object, got array"),
    (HEADER + b'\n{"type":"event"\n{}', "sentry envelope: line 2: item 1's header is not valid JSON "
                                        "(unexpected end of data at column 16)"),
    (HEADER + b'\n{"length":2}\n{}', "sentry envelope: line 2: item 1's header must be an object with a string type, got none"),
    (HEADER + b'\n{"type":"session"}\n{}\n7\n{}', "sentry envelope: line 4: item 2's header must be an object with a "
                                                  "string type, got number"),
    (HEADER + b'\n{"type":"event","length":99}\n{}', "sentry envelope: line 2: item 1's length 99 runs past the end "
                                                    "of the body (2 bytes left)"),
    (HEADER + b'\n{"type":"event","length":-1}\n{}', "sentry envelope: line 2: item 1's length must be a "
                                                    "non-negative integer, got -1"),
    (HEADER + b'\n{"type":"event","length":1}\n{}', "sentry envelope: line 3: item 1's payload of 1 bytes is not "
                                                   "followed by a newline"),
])
def test_broken_framing_says_where(body, message):
    with pytest.raises(FormatError) as info:
        parse_body(body, "application/x-sentry-envelope")
    assert str(info.value) == message


@pytest.mark.parametrize("body", [
    b'{"app":"a","release":"r","metrics":{}}\n{"app":"a","release":"r","metrics":{}}',  # canonical NDJSON
    b'{"type":"view","_dd":{},"view":{"id":"x"}}\n{"type":"action","_dd":{}}',  # Datadog
    b'{"sent_at":"x","type":"view"}\n{"type":"view"}',  # a type: not an envelope header
    b'{"dsn":"x"}',  # one line: nothing after the header
])
def test_text_plain_ndjson_is_not_taken_for_an_envelope(body):
    assert all("sentry_item" not in item for item in parse_body(body, "text/plain;charset=UTF-8"))


# -- without span streaming (SDK 8 to 10) ------------------------------------------------
# No capture of this mode exists (the recorded SDK, 11.17, streams spans): these items follow
# @sentry/core's SentrySpan.getSpanJSON and browser-utils' addWebVitalsToSpan, on the
# recorded error event's envelope and ids.

def _classic(kind: str, payload: dict) -> dict:
    body, content_type, _ = requests()[2]
    [item] = parse_body(body, content_type)
    return {"sentry_envelope": item["sentry_envelope"], "sentry_item": {"type": kind}, "payload": payload}


def test_a_pageload_transaction_is_a_page_view_with_its_measurements():
    transaction = {"type": "transaction", "event_id": "0a1b", "release": "2026.11.23-abc",
                   "contexts": {"trace": {"op": "pageload", "trace_id": TRACE, "span_id": "9c33c077d79897c8"}},
                   "measurements": {"fcp": {"value": 96, "unit": "millisecond"}, "lcp": {"value": 208, "unit": "millisecond"},
                                    "cls": {"value": 0.09375, "unit": ""}, "fp": {"value": 96, "unit": "millisecond"}},
                   "request": {"url": "http://127.0.0.1:47089/shop/running-shoes?x=1", "headers": {"User-Agent": UA}}}
    out = sentry.convert([(0, _classic("transaction", transaction))], Context(received_at=RECEIVED_AT, app="shop-web"))
    assert out.beacons == [([0], {"id": "sentry-0a1b", "view": TRACE, "ts": RECEIVED_AT, "app": "shop-web",
                                  "release": "2026.11.23-abc", "page": "/shop/running-shoes", "device": "desktop",
                                  "browser": "Chrome", "metrics": {"LCP": 208.0, "FCP": 96.0, "CLS": 0.09375}})]
    transaction["contexts"]["trace"]["op"] = "http.client"
    out = sentry.convert([(0, _classic("transaction", transaction))], Context(received_at=RECEIVED_AT, app="shop-web"))
    assert out.beacons == [] and out.ignored[0][2] is RejectKind.NOT_A_PAGE_VIEW


def test_a_v1_standalone_inp_span_joins_its_trace():
    span = {"data": {"sentry.op": "ui.interaction.click", "user_agent.original": UA}, "op": "ui.interaction.click",
            "span_id": "ae725a30be13aaae", "trace_id": TRACE, "is_segment": True,
            "measurements": {"inp": {"value": 88, "unit": "millisecond"}}}
    out = sentry.convert([(0, _classic("span", span))], Context(received_at=RECEIVED_AT, app="shop-web"))
    assert out.beacons == [([0], {"id": "sentry-ae725a30be13aaae", "view": TRACE, "ts": RECEIVED_AT, "app": "shop-web",
                                  "release": "2026.11.23-abc", "device": "desktop", "browser": "Chrome",
                                  "metrics": {"INP": 88.0}})]
