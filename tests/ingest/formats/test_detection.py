"""Which adapter reads an item, what nothing reads, and to_canonical's own guarantees."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path

import pytest

from streams.ingest import formats
from streams.ingest.formats import (
    ADAPTERS,
    UNRECOGNISED,
    boomerang,
    canonical,
    datadog,
    elastic,
    faro,
    otel,
    sentry,
    to_canonical,
    webvitals,
)
from tests.ingest.formats.helpers import CTX, assert_valid, load, parse_body, query, raw

FORM = "application/x-www-form-urlencoded"
CAPTURES = Path(__file__).resolve().parents[2] / "sdks" / "captures"


def capture_items(config: str):
    """Every item of a recorded SDK's requests (``tests/sdks/captures``), as the endpoint parses them."""
    for n, request in enumerate(json.loads((CAPTURES / f"{config}.json").read_text())):
        body = base64.b64decode(request["body_b64"])
        if request["headers"].get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        for i, item in enumerate(parse_body(body, request["headers"].get("content-type", ""))):
            yield f"{config}.json[{n}][{i}]", item


def fixture_items():
    """Every item of every fixture, with the adapter that must read it."""
    cases = [
        ("webvitals_v5_batch.json", "application/json", webvitals),
        ("webvitals_v5_single.json", "application/json", webvitals),
        ("webvitals_v4_batch.json", "application/json", webvitals),
        ("webvitals_v6_softnav.json", "application/json", webvitals),
        ("webvitals_bfcache.json", "application/json", webvitals),
        ("webvitals_envelope.json", "application/json", webvitals),
        ("snippet_envelope.json", "text/plain;charset=UTF-8", webvitals),
        ("boomerang_pageload.form", FORM, boomerang),
        ("boomerang_unload.form", FORM, boomerang),
        ("boomerang_spa.form", FORM, boomerang),
        ("boomerang_xhr.form", FORM, boomerang),
        ("datadog_batch.ndjson", "", datadog),
        ("otel_logs.json", "application/json", otel),
        ("otel_semconv_body.json", "application/json", otel),
        ("canonical.json", "application/json", canonical),
    ]
    for name, content_type, adapter in cases:
        for i, item in enumerate(parse_body(raw(name), content_type)):
            yield pytest.param(item, adapter, id=f"{name}[{i}]")
    yield pytest.param(query("boomerang_get.query"), boomerang, id="boomerang_get.query")
    for config, adapter in (("faro", faro), ("sentry", sentry), ("elastic", elastic)):
        for name, item in capture_items(config):
            yield pytest.param(item, adapter, id=name)


@pytest.mark.parametrize("item, adapter", list(fixture_items()))
def test_every_real_payload_is_read_by_exactly_one_adapter(item, adapter):
    assert [a for a in ADAPTERS if a.detect(item)] == [adapter]
    assert formats.detect(item) is adapter


def test_the_detection_order():
    assert ADAPTERS == (otel, datadog, webvitals, boomerang, sentry, elastic, faro, canonical)


@pytest.mark.parametrize("item", [
    # the Sentry error event on its own (its top-level release made it a canonical beacon)
    next(item for _, item in capture_items("sentry") if item["sentry_item"]["type"] == "event")["payload"],
    {"app": "shop-web", "release": "r", "exception": {}},
    {"release": "r", "meta": {}},
], ids=["sentry event", "release and exception", "release and meta"])
def test_canonical_takes_no_item_with_a_field_of_another_format_and_no_metrics(item):
    assert canonical.detect(item) is False
    assert to_canonical([item], CTX) == ([], [(0, UNRECOGNISED)])


@pytest.mark.parametrize("item", [
    {"meta": {}, "measurements": [], "metrics": {"LCP": 1}, "app": "a", "release": "r"},
    {"sentry_item": {"type": "event"}, "metrics": {"LCP": 1}, "app": "a", "release": "r"},
], ids=["faro", "sentry"])
def test_an_item_with_a_metrics_object_is_canonical_as_the_fast_path_takes_it(item):
    assert formats._plainly_canonical(item)
    assert [a for a in ADAPTERS if a.detect(item)] == [canonical]


@pytest.mark.parametrize("item", [
    42, "LCP", None, True, [], [{"name": "LCP", "value": 1}], {}, {"foo": "bar"},
    {"session": "s", "page": "/"},  # no ts, app, release or metrics
    {"type": "view", "view": "6c1b"},  # not a Datadog view
    {"resourceLogs": {}},  # not an OTLP export
    {"name": "TBT", "value": 1},
], ids=repr)
def test_what_nothing_reads_is_reported_as_unrecognised(item):
    assert to_canonical([item], CTX) == ([], [(0, UNRECOGNISED)])


def test_unrecognised_message():
    assert UNRECOGNISED == ("unrecognised format: expected a canonical beacon, web-vitals metric, "
                            "Boomerang, Datadog RUM view, OTLP log record, Sentry envelope, Elastic APM "
                            "event or Faro payload")


def test_one_request_of_every_format_keeps_item_order():
    items = (parse_body(raw("otel_logs.json"), "application/json")
             + parse_body(raw("boomerang_pageload.form"), FORM)
             + load("canonical.json")[:1]
             + [7]
             + parse_body(raw("datadog_batch.ndjson"), "")[2:3]
             + load("webvitals_v5_batch.json"))
    beacons, rejects = to_canonical(items, CTX)
    assert_valid(beacons)
    assert [b["id"][:5] for b in beacons] == ["v5-17", "boomr", "v5-17", "dd-6c", "v5-17"]
    assert rejects == [(3, UNRECOGNISED)]


def test_an_adapter_bug_is_reported_not_raised(monkeypatch):
    def broken(items, ctx):
        raise KeyError("boom")

    monkeypatch.setattr(datadog, "convert", broken)
    items = parse_body(raw("datadog_batch.ndjson"), "")[:2] + load("canonical.json")[:1]
    beacons, rejects = to_canonical(items, CTX)
    assert len(beacons) == 1  # the canonical beacon still goes through
    assert rejects == [(i, "internal error in the Datadog RUM adapter: KeyError: 'boom'") for i in (0, 1)]


def test_a_detection_bug_is_reported_not_raised(monkeypatch):
    monkeypatch.setattr(otel, "detect", lambda item: 1 / 0)
    assert to_canonical([{}], CTX) == ([], [(0, "internal error in format detection: ZeroDivisionError: division by zero")])


def test_every_reason_names_its_format():
    items = [{"name": "LCP", "value": "x"}, {"v": "1", "u": "x", "pt.lcp": "y"}, {"type": "action", "_dd": {}},
             {"resourceLogs": []}, {"app": "a", "metrics": {"LCP": -1}},
             {"sentry_item": {"type": "session"}}, {"span": {}},
             {"meta": {}, "events": []}]
    _, rejects = to_canonical(items, CTX)
    assert [reason.split(":")[0] for _, reason in rejects] == [
        "web-vitals", "Boomerang", "Datadog RUM", "OTLP log", "canonical", "Sentry", "Elastic APM", "Faro"]
