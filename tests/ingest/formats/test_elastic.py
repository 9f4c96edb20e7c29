"""Elastic APM RUM intake v2, from what @elastic/apm-rum 5.17.5 really sent
(``tests/sdks/captures/elastic.json``): gzipped NDJSON, metadata first."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path

import orjson

from streams.ingest.formats import Context, RejectKind, convert_items, elastic, parse_body
from tests.ingest.formats.helpers import BARE, RECEIVED_AT, assert_valid

CAPTURES = Path(__file__).resolve().parents[2] / "sdks" / "captures"
PAGE_LOAD = "e28f0e3efe2a957a"
NOT_A_PAGE_VIEW = RejectKind.NOT_A_PAGE_VIEW


def requests() -> list[tuple[bytes, dict]]:
    """Each request's body as the endpoint reads it (inflated), with its headers."""
    out = []
    for request in json.loads((CAPTURES / "elastic.json").read_text()):
        body = base64.b64decode(request["body_b64"])
        if request["headers"].get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        out.append((body, request["headers"]))
    return out


def lines(n: int) -> list:
    body, headers = requests()[n]
    return parse_body(body, headers["content-type"])


def convert(items: list, ctx: Context = BARE):
    conversion = convert_items(items, ctx)
    assert_valid(conversion.beacons)
    return conversion


def test_the_agent_sends_gzipped_ndjson_to_the_configured_prefix():
    for request in json.loads((CAPTURES / "elastic.json").read_text()):
        assert request["path"] == "/v1/beacons"  # serverUrlPrefix, no /intake/v2/rum/events
        assert request["headers"]["content-encoding"] == "gzip"
        assert request["headers"]["content-type"] == "application/x-ndjson"


def test_one_page_load_field_by_field():
    out = [convert(lines(n)) for n in range(4)]
    assert [c.rejects for c in out] == [[]] * 4
    common = {"ts": RECEIVED_AT, "app": "shop-web", "release": "2026.11.23-abc"}  # metadata.service
    # the error, sent as it happened, names the page-load transaction it happened in
    assert out[0].beacons == [{"id": "elastic-9708ebffd835730dac2093f2ef4032ba", "view": PAGE_LOAD, **common,
                               "page": "/shop/running-shoes", "metrics": {}, "errors": 1}]
    assert out[1].beacons == [{"id": f"elastic-{PAGE_LOAD}", "view": PAGE_LOAD, **common,
                               "session": "f8bfe6fb8226e23a", "page": "/shop/running-shoes",
                               "metrics": {"LCP": 552.0, "FCP": 255.0, "TTFB": 3.0, "CLS": 0.09375}}]
    # its spans are no page views; nor are the page-exit transactions (INP 88, then 0)
    assert [(i, kind) for i, _, kind in out[1].ignored] == [(i, NOT_A_PAGE_VIEW) for i in range(2, 9)]
    for c in out[2:]:
        assert c.beacons == []
        assert c.ignored == [(1, "Elastic APM: transaction.type: 'page-exit' names no page load (its INP cannot be "
                                 "joined to its page view)", NOT_A_PAGE_VIEW)]


def test_the_page_exit_names_nothing_of_its_page_load():
    page_load = lines(1)[1]["transaction"]
    for n in (2, 3):
        page_exit = lines(n)[1]["transaction"]
        assert page_exit["context"]["tags"]["inp_value"] in (88, 0)
        assert page_exit["trace_id"] != page_load["trace_id"] and "session" not in page_exit
        assert PAGE_LOAD not in orjson.dumps(page_exit).decode()


def test_metadata_applies_to_the_lines_after_it_only():
    meta, error = lines(0)
    other = {"metadata": {"service": {"name": "other-app", "version": "r9"}}}
    beacons = convert([error, meta, error, other, error], Context(received_at=RECEIVED_AT, app="ctx", release="c")).beacons
    assert [(b["app"], b["release"]) for b in beacons] == [("ctx", "c"), ("shop-web", "2026.11.23-abc"),
                                                           ("other-app", "r9")]


def test_an_error_outside_the_page_load_names_no_view():
    _, error = lines(0)
    error["error"]["transaction"]["type"] = "user-interaction"
    [beacon] = convert([lines(0)[0], error]).beacons
    assert "view" not in beacon and beacon["errors"] == 1
    del error["error"]["transaction_id"], error["error"]["transaction"]
    [beacon] = convert([lines(0)[0], error]).beacons
    assert "view" not in beacon


def test_other_transactions_are_ignored():
    meta, tx = lines(1)[:2]
    tx["transaction"]["type"] = "route-change"
    out = convert([meta, tx])
    assert out.beacons == [] and out.ignored == [
        (1, "Elastic APM: transaction.type: 'route-change' transactions are not page views (only 'page-load')",
         NOT_A_PAGE_VIEW)]


def test_a_bad_mark_is_refused_with_its_path():
    meta, tx = lines(1)[:2]
    tx["transaction"]["marks"]["agent"]["largestContentfulPaint"] = "552"
    assert convert([meta, tx]).rejects == [
        (1, "Elastic APM: transaction.marks.agent.largestContentfulPaint: must be a number, got str")]


def test_a_page_load_without_metadata_or_request_app_is_refused_by_the_beacon_check():
    _, tx = lines(1)[:2]
    assert convert([tx]).rejects == [(0, "Elastic APM: app: missing")]


def test_detect():
    assert elastic.detect({"metadata": {}}) and elastic.detect({"span": {}})
    assert not elastic.detect({"span": {}, "app": "a"})  # one key only
    assert not elastic.detect({"error": "x"})  # a Boomerang-like string param
    assert elastic.detect({"m": {}}) and elastic.detect({"x": {}})  # intake v3


def _as_v3(line: dict) -> dict:
    """A captured v2 line as ``apiVersion: 3`` sends it (the agent's compress.js, fields read here)."""
    key, event = next(iter(line.items()))
    page = {"p": {"rf": "", "url": event.get("context", {}).get("page", {}).get("url")}}
    if key == "metadata":
        service = event["service"]
        return {"m": {"se": {"n": service["name"], "ve": service["version"], "a": {"n": "rum-js", "ve": "5.17.5"}}}}
    if key == "transaction":
        agent, nt = event["marks"]["agent"], event["marks"]["navigationTiming"]
        return {"x": {"id": event["id"], "tid": event["trace_id"], "n": event["name"], "t": event["type"], "c": page,
                      "k": {"a": {"fb": nt["responseStart"], "fp": agent["firstContentfulPaint"],
                                  "lp": agent["largestContentfulPaint"]}},
                      "exp": {"cls": event["experience"]["cls"]},
                      "ses": {"id": event["session"]["id"], "seq": event["session"]["sequence"]}}}
    if key == "error":
        return {"e": {"id": event["id"], "c": page, "tid": event["trace_id"], "pid": event["parent_id"],
                      "xid": event["transaction_id"], "x": {"t": event["transaction"]["type"], "sm": True}}}
    return {"y": event}


def test_intake_v3_short_keys_give_the_same_beacons():
    for n in (0, 1):
        v2 = lines(n)
        v2 = [line for line in v2 if "span" not in line]  # v3 sends a transaction's spans inside it
        assert convert([_as_v3(line) for line in v2]).beacons == convert(v2).beacons
