"""OpenTelemetry web vitals: OTLP/JSON logs exports."""

from __future__ import annotations

import pytest

from streams.ingest.formats import to_canonical
from streams.ingest.formats.otel import any_value, attributes
from tests.ingest.formats import captures
from tests.ingest.formats.helpers import BARE, CTX, RECEIVED_AT, assert_valid, convert, load, raw


def records(export: dict) -> list[dict]:
    return export["resourceLogs"][0]["scopeLogs"][0]["logRecords"]


def test_instrumentation_web_vitals_export_field_by_field():
    beacons, rejects = convert(raw("otel_logs.json"), "application/json")
    assert rejects == []
    assert beacons == [{
        "id": "v5-1732300012345-2222222222222",  # the LCP record's browser.web_vital.id
        "ts": RECEIVED_AT,
        "client_ts": 1732300031000,  # the latest timeUnixNano, in ms
        "app": "shop-web",  # service.name
        "release": "2024.11.22-3f9c2a1",  # service.version
        "session": "b1c6e2f0-7d1a-4a5e-9c3b-2f8e6d4a1b07",
        "page": "/p/42",  # url.full without ?utm_source=mail
        "device": "mobile",  # browser.mobile
        "country": "DE",
        "browser": "Chrome",  # browser.brands
        # the INP value came as an int64 string; CLS twice under one id: the larger
        "metrics": {"TTFB": 412.6, "FCP": 1120.5, "LCP": 2140.3, "INP": 232.0, "CLS": 0.043},
    }]


def test_semantic_conventions_event_with_a_body_map():
    beacons, rejects = convert(raw("otel_semconv_body.json"), "application/json")
    assert rejects == []
    assert beacons == [{
        "id": "v3-1677874579383-6381583661209",
        "part": True,  # no TTFB: a part of a page view, which that beacon would count
        "ts": RECEIVED_AT,
        "client_ts": 1732300020000,
        "app": "shop-web",
        "release": "2024.11.22-3f9c2a1",
        "session": "9f2c0a1b",
        "page": "/",
        "device": "desktop",  # from user_agent.original
        "country": "DE",
        "browser": "Safari",
        "metrics": {"LCP": 1980.5, "CLS": 0.12},
    }]


def test_a_bad_record_is_reported_with_its_path_and_the_others_are_used():
    export = load("otel_logs.json")
    records(export)[1]["attributes"][1] = {"key": "browser.web_vital.value", "value": {"stringValue": "fast"}}
    records(export)[3]["attributes"][0] = {"key": "browser.web_vital.name", "value": {"stringValue": "tbt"}}
    beacons, rejects = to_canonical([export], CTX)
    assert rejects == [
        (0, "OTLP log: resourceLogs[0].scopeLogs[0].logRecords[1].attributes.browser.web_vital.value: "
            "must be a number, got str"),
        (0, "OTLP log: resourceLogs[0].scopeLogs[0].logRecords[3].attributes.browser.web_vital.name: "
            "must be one of cls, fcp, fid, inp, lcp, ttfb, got 'tbt'"),
    ]
    assert beacons[0]["metrics"] == {"TTFB": 412.6, "LCP": 2140.3, "CLS": 0.043}


def test_an_export_without_web_vitals_is_reported():
    export = load("otel_logs.json")
    del export["resourceLogs"][0]["scopeLogs"][0]
    assert to_canonical([export], CTX) == ([], [(0, "OTLP log: resourceLogs: no browser.web_vital log record")])
    assert to_canonical([{"resourceLogs": []}], CTX)[1] == [(0, "OTLP log: resourceLogs: no browser.web_vital log record")]


def test_resource_without_service_version_falls_back_to_the_request():
    export = load("otel_logs.json")
    resource = export["resourceLogs"][0]["resource"]["attributes"]
    resource[:] = [kv for kv in resource if kv["key"] not in ("service.version", "service.name")]
    beacons, _ = to_canonical([export], CTX)
    assert (beacons[0]["app"], beacons[0]["release"]) == ("ctx-app", "ctx-release")
    assert to_canonical([export], BARE) == ([], [(0, "OTLP log: app: missing")])


def test_records_of_two_sessions_are_two_page_views():
    export = load("otel_logs.json")
    for record in records(export)[3:]:  # INP and both CLS reports
        record["attributes"].append({"key": "session.id", "value": {"stringValue": "other"}})
    beacons, _ = to_canonical([export], CTX)
    assert [(b["session"], sorted(b["metrics"])) for b in beacons] == [
        ("b1c6e2f0-7d1a-4a5e-9c3b-2f8e6d4a1b07", ["FCP", "LCP", "TTFB"]),
        ("other", ["CLS", "INP"]),
    ]


@pytest.mark.parametrize("value, expected", [
    ({"stringValue": "x"}, "x"),
    ({"intValue": "9007199254740993"}, 9007199254740993),  # int64 as a JSON string
    ({"intValue": 5}, 5),
    ({"intValue": "5.5"}, None),
    ({"doubleValue": "NaN"}, None),
    ({"doubleValue": "Infinity"}, None),
    ({"doubleValue": 1.5}, 1.5),
    ({"boolValue": "true"}, None),
    ({"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": "1"}]}}, ["a", 1]),
    ({"kvlistValue": {"values": [{"key": "k", "value": {"boolValue": True}}]}}, {"k": True}),
    ({"bytesValue": "AAE="}, None),
    ("x", None),
], ids=repr)
def test_any_value(value, expected):
    assert any_value(value) == expected


def test_attributes_skip_malformed_entries_and_deep_nesting():
    deep: dict = {"stringValue": "bottom"}
    for _ in range(20):
        deep = {"arrayValue": {"values": [deep]}}
    kvs = [{"key": "a", "value": {"stringValue": "1"}}, {"key": 2}, "x", {"key": "deep", "value": deep}]
    out = attributes(kvs)
    assert out["a"] == "1" and set(out) == {"a", "deep"}
    nested = out["deep"]
    while isinstance(nested, list):
        nested = nested[0]
    assert nested is None  # cut off, not a RecursionError


# The real SDK (opentelemetry-browser instrumentation 0.6.0, tests/sdks/captures/otel.json): two
# exports of one page load.

def test_the_captured_exports_and_their_exception():
    first, second = captures.beacons("otel")
    common = {"ts": RECEIVED_AT, "app": "shop-web", "release": "2026.11.23-abc"}
    # while open: FCP, TTFB and the uncaught error (eventName "exception"), counted in them
    assert first == [{**common, "id": "v5-1796642861985-1715775867924", "client_ts": 1796642862025,
                      "metrics": {"FCP": 100.0, "TTFB": 5.5}, "errors": 1}]
    # on hide: LCP and CLS. Nothing names the page view, so neither beacon has a view
    # the export on hide has no TTFB: a part of the page view the first export counts
    assert second == [{**common, "id": "v5-1796642861985-7878877755011", "part": True, "client_ts": 1796642862448,
                       "metrics": {"CLS": 0.09375, "LCP": 220.0}}]


def test_nothing_in_the_captured_exports_ties_them():
    exports = [captures.items(r)[0] for r in captures.requests("otel")]
    assert [attributes(e["resourceLogs"][0]["resource"]["attributes"]) for e in exports] == [
        {"service.name": "shop-web", "service.version": "2026.11.23-abc"}] * 2
    keys = {kv["key"] for e in exports for scope in e["resourceLogs"][0]["scopeLogs"]
            for record in scope["logRecords"] for kv in record["attributes"]}
    assert not any(k.startswith(("session.", "browser.page", "view.")) for k in keys), keys


def test_exceptions_without_a_web_vital_are_a_part_with_errors():
    export = captures.items(captures.requests("otel")[0])[0]
    scopes = export["resourceLogs"][0]["scopeLogs"]
    scopes[1]["logRecords"] *= 2
    del scopes[0]  # the web-vitals scope
    beacons, rejects = to_canonical([export], CTX)
    assert_valid(beacons)
    assert rejects == [] and beacons == [{
        "part": True, "ts": RECEIVED_AT, "client_ts": 1796642862488, "app": "shop-web",
        "release": "2026.11.23-abc", "country": "DE", "metrics": {}, "errors": 2}]


def test_a_record_with_exception_attributes_and_no_event_name_is_an_exception():
    export = captures.items(captures.requests("otel")[0])[0]
    del export["resourceLogs"][0]["scopeLogs"][1]["logRecords"][0]["eventName"]
    assert to_canonical([export], CTX)[0][0]["errors"] == 1
