"""parse_body: every content type, and malformed bodies with their messages."""

from __future__ import annotations

import pytest
from multidict import MultiDict

from streams.ingest.formats import FormatError, parse_body
from tests.ingest.formats.helpers import load, query, raw

LCP = {"name": "LCP", "value": 2140.3}
CLS = {"name": "CLS", "value": 0.043}


@pytest.mark.parametrize("content_type", [
    "application/json", "application/json; charset=utf-8", "APPLICATION/JSON", "application/vnd.rum+json",
    "text/plain;charset=UTF-8", "text/plain", "", "application/octet-stream",
])
def test_json_object_and_array(content_type):
    assert parse_body(b'{"name":"LCP","value":2140.3}', content_type) == [LCP]
    assert parse_body(b' [{"name":"LCP","value":2140.3}, {"name":"CLS","value":0.043}]\n', content_type) == [LCP, CLS]
    assert parse_body(b"[]", content_type) == []


def test_array_elements_are_items_whatever_they_are():
    assert parse_body(b'[1, "x", null, [2]]', "application/json") == [1, "x", None, [2]]


@pytest.mark.parametrize("content_type", [
    "application/x-ndjson", "application/ndjson", "text/plain", "", "application/octet-stream", "application/json"])
def test_ndjson_with_crlf_and_blank_lines(content_type):
    body = b'{"name":"LCP","value":2140.3}\r\n\r\n  {"name":"CLS","value":0.043}  \r\n'
    assert parse_body(body, content_type) == [LCP, CLS]


def test_the_datadog_batch_without_content_type_is_ndjson():
    items = parse_body(raw("datadog_batch.ndjson"), "")
    assert [item["type"] for item in items] == ["view", "action", "view", "view", "view", "view"]


def test_sendbeacon_text_plain_json_array():
    assert parse_body(raw("webvitals_v5_batch.json"), "text/plain;charset=UTF-8") == load("webvitals_v5_batch.json")


def test_form_body_is_one_dict_of_decoded_string_params():
    [params] = parse_body(raw("boomerang_pageload.form"), "application/x-www-form-urlencoded")
    assert params["u"] == "https://shop.example/p/42?utm_source=mail#reviews"
    assert params["pt.lcp.e"] == "main>img.hero"
    assert params["err"].startswith("~(~(m~'Cannot*20read")
    assert params["rel"] == "web@2024.11.22-3f9c2a1"
    assert all(type(v) is str for v in params.values()) and len(params) == 30


def test_form_params_are_sniffed_without_content_type():
    assert parse_body(b"v=1.815.1&u=https%3A%2F%2Fx%2F&rt.quit=", "") == [{"v": "1.815.1", "u": "https://x/", "rt.quit": ""}]


def test_empty_body_takes_the_beacon_from_the_query_string():
    params = query("boomerang_get.query")
    assert parse_body(b"", "", params) == [params]
    assert parse_body(b"  \r\n", "text/plain", params) == [params]
    multi = MultiDict([("u", "https://x/"), ("t_done", "1"), ("t_done", "2")])  # what aiohttp hands over
    assert parse_body(b"", "", multi) == [{"u": "https://x/", "t_done": "1"}]


def test_a_body_wins_over_the_query_string():
    assert parse_body(b'{"name":"LCP","value":2140.3}', "application/json", {"u": "https://x/"}) == [LCP]


def test_bom_is_skipped():
    assert parse_body(b'\xef\xbb\xbf{"name":"LCP","value":2140.3}', "text/plain") == [LCP]


@pytest.mark.parametrize("body, content_type, query_, message", [
    (b"", "application/json", {}, "body: empty, and the query string holds no beacon"),
    (b"", "", {"app": "shop-web", "release": "r2"}, "body: empty, and the query string holds no beacon"),
    (b'{"name": "LCP", "value":', "application/json", {}, "body: not valid JSON (unexpected end of data at line 1 column 25)"),
    (b'{"a":NaN}', "application/json", {}, "body: not valid JSON (unexpected character, expected a JSON value at line 1 column 6)"),
    (b"42", "application/json", {}, "body: expected a JSON object or array, got number"),
    (b'"LCP"', "text/plain", {}, "body: expected a JSON object or array, got string"),
    (b"hello", "text/plain", {}, "body: not valid JSON (unexpected character, expected a JSON value at line 1 column 1)"),
    (b'{"a":1}\n{"b":2}\n{"c":\n', "application/x-ndjson", {}, "line 3: not valid JSON (unexpected end of data at column 6)"),
    (b'{"a":1}\n\n{"b":2}\n{"c":\n', "text/plain", {}, "line 4: not valid JSON (unexpected end of data at column 6)"),
    (b'{"a":1}\n[1]\n', "application/x-ndjson", {}, "line 2: expected a JSON object, got array"),
    (b'[1]\n{"a":1}\n', "application/x-ndjson", {}, "line 1: expected a JSON object, got array"),
    # a pretty-printed document that breaks: a JSON message, not an NDJSON one
    (b'{"a":\n1,\n"b"}', "text/plain", {}, "body: not valid JSON (unexpected character, expected ':' after key at line 3 column 4)"),
    (b"a=%FF", "application/x-www-form-urlencoded", {}, "body: a percent-encoded value is not valid UTF-8"),
    (b"t_done=1&u=\xff", "application/x-www-form-urlencoded", {}, "body: not valid UTF-8 (byte 11)"),
    (b"hello", "application/x-www-form-urlencoded", {}, "body: not form-encoded (no key=value pair)"),
    (b"a=1&" * 10_001, "application/x-www-form-urlencoded", {}, "body: more than 10000 form fields"),
    (b"{}", "image/png", {}, "content-type: 'image/png' is not supported (send application/json, "
                             "application/x-ndjson, text/plain, application/x-www-form-urlencoded or "
                             "application/x-sentry-envelope)"),
    (b"{}", "multipart/form-data; boundary=x", {}, "content-type: 'multipart/form-data' is not supported (send "
     "application/json, application/x-ndjson, text/plain, application/x-www-form-urlencoded or "
     "application/x-sentry-envelope)"),
], ids=lambda x: x if isinstance(x, str) and x else None)
def test_malformed_bodies(body, content_type, query_, message):
    with pytest.raises(FormatError) as info:
        parse_body(body, content_type, query_)
    assert str(info.value) == message
    assert type(info.value) is FormatError  # not a private subclass


def test_a_sentry_envelope_by_content_type_or_by_its_first_line():
    """The framing itself is tested in test_sentry.py; here, which bodies are taken for one."""
    envelope = (b'{"sent_at":"2026-12-07T11:27:33.220Z","sdk":{"name":"sentry.javascript.browser"}}\n'
                b'{"type":"session"}\n{"sid":"9dd9","errors":0}')
    for content_type in ("application/x-sentry-envelope", "text/plain;charset=UTF-8", "", "application/octet-stream"):
        for body in (envelope, b"\xef\xbb\xbf" + envelope, b"\n " + envelope + b"\n"):
            [item] = parse_body(body, content_type)
            assert (item["sentry_item"], item["payload"]) == ({"type": "session"}, {"sid": "9dd9", "errors": 0})
    # as JSON it is three NDJSON lines: only the sniffed types and the envelope type are read as envelopes
    assert len(parse_body(envelope, "application/json")) == 3
