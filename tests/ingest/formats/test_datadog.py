"""Datadog RUM view events: NDJSON without a content type, nanoseconds, document versions."""

from __future__ import annotations

import itertools
import json

import pytest

from streams.ingest.formats import Context, parse_body, to_canonical
from tests.ingest.formats import captures
from tests.ingest.formats.helpers import BARE, CTX, RECEIVED_AT, assert_valid, convert, raw

VIEW_ID = "6c1b2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e"


def events() -> list[dict]:
    return parse_body(raw("datadog_batch.ndjson"), "")


def test_batch_field_by_field():
    beacons, rejects = convert(raw("datadog_batch.ndjson"), "")  # the SDK sends no content type
    assert beacons == [
        {
            "id": f"dd-{VIEW_ID}-7",  # the view and its document version
            "view": VIEW_ID,  # view.id
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
            "id": "dd-9d2e3f4a-5b6c-4d7e-8f9a-0b1c2d3e4f5a-2",
            "view": "9d2e3f4a-5b6c-4d7e-8f9a-0b1c2d3e4f5a",
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
        (1, "Datadog RUM: type: 'action' events are not page views (only 'view' and 'error' events are used)"),
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


# The real SDK (Datadog 7.16.2, tests/sdks/captures): one page load with a late layout shift,
# a slow click and an uncaught error, then the tab closed.
CAPTURED_VIEW = "dcd44f47-5f11-4550-aa29-2baa1788cd8c"


def test_the_captured_page_view_is_one_beacon_with_its_error():
    [request] = captures.requests("datadog")
    assert [e["type"] for e in captures.items(request)] == [
        "resource", "resource", "resource", "error", "long_task", "action", "view"]
    [[beacon]] = captures.beacons("datadog")
    assert beacon == {
        "id": f"dd-{CAPTURED_VIEW}-2",  # the one view event: document_version 2
        "view": CAPTURED_VIEW,
        "ts": RECEIVED_AT,
        "client_ts": 1796642840266,
        "app": "shop-web",
        "release": "2026.11.23-abc",
        "session": "478d4832-6327-4f0f-9ae8-f9eec6f886f3",
        "page": "/shop/running-shoes",
        # sent at unload with view.is_active still true: the SDK sends no final update then
        "metrics": {"LCP": 208.0, "INP": 96.0, "CLS": 0.0938, "FCP": 80.0, "TTFB": 5.2},
        "errors": 1,  # view.error.count, and the error event folded into it
    }


def test_the_captured_view_update_at_unload_is_still_active():
    [request] = captures.requests("datadog")
    [view] = [e for e in captures.items(request) if e["type"] == "view"]
    assert view["view"]["is_active"] is True  # why CLS and INP are not waited for (module docstring)


def test_errors_and_the_view_in_different_requests_are_one_view():
    """Compressed intake: the error event comes in the deflate part, the view event in the rest."""
    first, second = captures.beacons("datadog-compressed")
    view = "e48ea2d6-3c20-4bf4-8f2c-39cb5555815c"
    assert first == [{
        "id": "dd-error-00181cc6-998d-41bb-89b7-84a3d09932c9",  # error.id: a re-sent part dedupes
        "view": view, "ts": RECEIVED_AT, "client_ts": 1796642845215, "app": "shop-web",
        "release": "2026.11.23-abc", "session": "88900c2c-3cb5-4d5e-9adc-c9555985c2b9",
        "page": "/shop/running-shoes", "metrics": {}, "errors": 1}]
    assert [(b["id"], b["view"], b["errors"], sorted(b["metrics"])) for b in second] == [
        (f"dd-{view}-2", view, 1, ["CLS", "FCP", "INP", "LCP", "TTFB"])]


def _captured_view() -> dict:
    [request] = captures.requests("datadog")
    return next(e for e in captures.items(request) if e["type"] == "view")


def test_a_later_payloads_version_is_a_beacon_of_the_same_view_with_its_own_id():
    early = _captured_view()
    late = json.loads(json.dumps(early))
    late["_dd"]["document_version"] = 5
    late["view"]["performance"]["cls"]["score"] = 0.2  # grew after the first flush
    first, second = to_canonical([early], CTX)[0], to_canonical([late], CTX)[0]
    assert [b["view"] for b in first + second] == [CAPTURED_VIEW, CAPTURED_VIEW]
    assert [b["id"] for b in first + second] == [f"dd-{CAPTURED_VIEW}-2", f"dd-{CAPTURED_VIEW}-5"]
    # both are sent: stage 1 keeps the first CLS of the view (0.0938), and counts a metric
    # the first version lacked
    assert second[0]["metrics"]["CLS"] == 0.2


def test_an_error_event_the_view_count_does_not_include_yet_still_counts():
    view = _captured_view()
    view["view"]["error"]["count"] = 0  # the update was taken before the error
    [request] = captures.requests("datadog")
    error = next(e for e in captures.items(request) if e["type"] == "error")
    beacons, rejects = to_canonical([error, view], CTX)
    assert rejects == [] and [(b["view"], b["errors"]) for b in beacons] == [(CAPTURED_VIEW, 1)]


def test_errors_of_several_views_and_of_bots():
    [request] = captures.requests("datadog")
    error = next(e for e in captures.items(request) if e["type"] == "error")
    other = json.loads(json.dumps(error))
    other["view"]["id"], other["error"]["id"] = "v2", "e2"
    bot = json.loads(json.dumps(error))
    bot["device"] = {"type": "bot"}
    beacons, rejects = to_canonical([error, other, error, bot], CTX)
    assert_valid(beacons)
    assert [(b["view"], b["errors"], b["metrics"]) for b in beacons] == [(CAPTURED_VIEW, 2, {}), ("v2", 1, {})]
    assert rejects == [(3, "Datadog RUM: device.type: 'bot' is not a real user")]


def test_the_errors_of_a_view_event_that_is_refused_still_count():
    view = _captured_view()
    view["view"]["first_byte"] = "5"
    [request] = captures.requests("datadog")
    error = next(e for e in captures.items(request) if e["type"] == "error")
    beacons, rejects = to_canonical([view, error], CTX)
    assert rejects == [(0, "Datadog RUM: view.first_byte: must be a number, got str")]
    assert [(b["view"], b["errors"], b["metrics"]) for b in beacons] == [(CAPTURED_VIEW, 1, {})]
