"""Datadog RUM view events: NDJSON without a content type, nanoseconds, document versions."""

from __future__ import annotations

import itertools
import json

import pytest

from streams.ingest.formats import Context, parse_body, to_canonical
from tests.ingest.formats.helpers import BARE, CTX, RECEIVED_AT, convert, raw

VIEW_ID = "6c1b2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e"


def events() -> list[dict]:
    return parse_body(raw("datadog_batch.ndjson"), "")


def test_batch_field_by_field():
    beacons, rejects = convert(raw("datadog_batch.ndjson"), "")  # the SDK sends no content type
    assert beacons == [
        {
            "id": f"dd-{VIEW_ID}",
            "ts": RECEIVED_AT,
            "client_ts": 1732300012345,  # date
            "app": "shop-web",  # service
            "release": "2024.11.22-3f9c2a1",  # version
            "session": "a3f0c2de-8b7a-4c6d-9e5f-1a2b3c4d5e6f",
            "page": "/p/42",
            "device": "mobile",
            "country": "DE",
            # nanoseconds → ms; CLS unitless; from document_version 7, the highest
            "metrics": {"LCP": 2140.3, "INP": 232.0, "CLS": 0.043, "FCP": 1120.5, "TTFB": 412.6},
            "errors": 0,
        },
        {
            "id": "dd-9d2e3f4a-5b6c-4d7e-8f9a-0b1c2d3e4f5a",
            "ts": RECEIVED_AT,
            "client_ts": 1732300012345,
            "app": "shop-web",
            "release": "2024.11.22-3f9c2a1",  # from ddtags: the event has no version
            "session": "a3f0c2de-8b7a-4c6d-9e5f-1a2b3c4d5e6f",
            "page": "/cart",
            "device": "desktop",
            "country": "DE",
            "metrics": {"INP": 48.0, "CLS": 0.0012},  # deprecated fields; null LCP and FCP
            "errors": 2,
        },
    ]
    assert rejects == [
        (1, "Datadog RUM: type: 'action' events are not page views (only 'view' events are used)"),
        (5, "Datadog RUM: session.type: 'synthetics' sessions are not real users"),
    ]  # versions 5 and 6 of the first view are folded into version 7, not reported


@pytest.mark.parametrize("order", list(itertools.permutations([0, 2, 3])), ids=str)
def test_the_highest_document_version_wins_in_any_order(order):
    views = [events()[i] for i in order]
    beacons, rejects = to_canonical(views, CTX)
    assert rejects == [] and len(beacons) == 1
    assert beacons[0]["metrics"]["CLS"] == 0.043  # only version 7 has 0.043
    assert beacons[0]["metrics"]["INP"] == 232.0


def test_on_a_version_tie_the_later_event_wins():
    first, second = events()[2], json.loads(json.dumps(events()[2]))
    second["view"]["performance"]["cls"]["score"] = 0.05
    assert to_canonical([first, second], CTX)[0][0]["metrics"]["CLS"] == 0.05


def test_performance_fields_win_over_the_deprecated_ones():
    event = events()[2]
    event["view"]["performance"]["lcp"]["timestamp"] = 2_000_000_000
    event["view"]["largest_contentful_paint"] = 3_000_000_000
    assert to_canonical([event], CTX)[0][0]["metrics"]["LCP"] == 2000.0


def test_app_and_release_fall_back_to_the_request_then_to_the_application_id():
    event = events()[2]
    del event["service"], event["version"]
    beacons, _ = to_canonical([event], CTX)
    assert (beacons[0]["app"], beacons[0]["release"]) == ("ctx-app", "ctx-release")
    beacons, _ = to_canonical([event], Context(RECEIVED_AT, release="r1"))
    assert beacons[0]["app"] == "3e1f9a2b-5c6d-4e7f-8a9b-0c1d2e3f4a5b"
    assert to_canonical([event], BARE)[1] == [(0, "Datadog RUM: release: missing")]


@pytest.mark.parametrize("device, expected", [
    ("mobile", "mobile"), ("tablet", "tablet"), ("tv", "unknown"), ("gaming_console", "unknown"), ("other", "unknown")])
def test_device_types(device, expected):
    event = events()[2]
    event["device"]["type"] = device
    assert to_canonical([event], CTX)[0][0]["device"] == expected


@pytest.mark.parametrize("change, reason", [
    (lambda e: e["device"].update(type="bot"), "device.type: 'bot' is not a real user"),
    (lambda e: e["session"].update(type="ci_test"), "session.type: 'ci_test' sessions are not real users"),
    (lambda e: e["view"].update(first_byte="412"), "view.first_byte: must be a number, got str"),
    (lambda e: e["view"]["performance"]["cls"].update(score=True), "view.performance.cls.score: must be a number, got bool"),
    (lambda e: e["view"].pop("id"), "view.id: missing"),
    (lambda e: e["view"]["performance"]["lcp"].update(timestamp=700_000_000_000_000),
     "metrics.LCP: 700000000.0 is above the limit 600000"),
])
def test_reported_views(change, reason):
    event = events()[2]
    change(event)
    assert to_canonical([event], CTX) == ([], [(0, f"Datadog RUM: {reason}")])
