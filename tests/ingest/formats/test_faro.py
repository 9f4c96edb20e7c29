"""Grafana Faro, from what @grafana/faro-web-sdk 2.12.1 really sent (``tests/sdks/captures/faro.json``):
four requests of one page load, its view the faroNavigationId."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path

import pytest

from streams.ingest.formats import Context, RejectKind, convert_items, faro, parse_body
from tests.ingest.formats.helpers import BARE, RECEIVED_AT, assert_valid

CAPTURES = Path(__file__).resolve().parents[2] / "sdks" / "captures"
NAVIGATION = "d036aZpeWB"


def payloads() -> list[dict]:
    """Each request's one item, as parse_body reads its application/json body."""
    out = []
    for request in json.loads((CAPTURES / "faro.json").read_text()):
        assert request["headers"]["content-type"] == "application/json"
        [item] = parse_body(base64.b64decode(request["body_b64"]), request["headers"]["content-type"])
        out.append(item)
    return out


def convert(items: list, ctx: Context = BARE):
    conversion = convert_items(items, ctx)
    assert_valid(conversion.beacons)
    return conversion


def test_one_page_load_field_by_field():
    out = [convert([payload]) for payload in payloads()]
    assert [(c.rejects, c.ignored) for c in out] == [([], [])] * 4
    common = {"ts": RECEIVED_AT, "app": "shop-web", "release": "2026.11.23-abc", "session": "onSixETVKj",
              "page": "/shop/running-shoes", "device": "desktop", "browser": "Chrome Headless"}
    # FCP (navigation_entry_id "unknown": measured before the navigation event) and TTFB, with
    # the navigation event whose faroNavigationId is the view
    assert out[0].beacons == [{"id": "faro-v6-1796642848943-7747922680051", "view": NAVIGATION, **common,
                               "metrics": {"FCP": 140.0, "TTFB": 4.800000000745058}}]
    # the exception alone: Faro names no navigation on it, so it is a part of its session's page view
    assert out[1].beacons == [{"part": True, **common, "metrics": {}, "errors": 1}]
    assert out[2].beacons == [{"id": "faro-v6-1796642848944-2886971559354", "view": NAVIGATION, **common,
                               "metrics": {"LCP": 216.0}}]
    assert out[3].beacons == [{"id": "faro-v6-1796642848944-2457495441603", "view": NAVIGATION, **common,
                               "metrics": {"INP": 88.0, "CLS": 0.09375}}]


def test_the_navigation_ids_in_the_capture():
    first = payloads()[0]
    [navigation] = [e for e in first["events"] if e["name"] == "faro.performance.navigation"]
    assert navigation["attributes"]["faroNavigationId"] == NAVIGATION
    ids = [m["context"]["navigation_entry_id"] for p in payloads() for m in p.get("measurements", [])]
    assert ids == ["unknown", NAVIGATION, NAVIGATION, NAVIGATION, NAVIGATION]
    assert "id" not in first["meta"]["page"] and "view" not in first["meta"]  # no per-load id in meta
    assert all("context" not in e and "trace" not in e for e in payloads()[1]["exceptions"])


def test_a_stale_navigation_id_is_overruled_by_the_request_s_navigation_event():
    first = copy.deepcopy(payloads()[0])
    # a tab's second page load: FCP copied the previous page load's id from session storage
    first["measurements"][0]["context"]["navigation_entry_id"] = "prevNav123"
    first["events"][1]["attributes"]["faroPreviousNavigationId"] = "prevNav123"
    [beacon] = convert([first]).beacons
    assert beacon["view"] == NAVIGATION


def test_without_a_navigation_event_the_last_named_id_is_the_view():
    first = copy.deepcopy(payloads()[0])
    del first["events"]
    first["measurements"][0]["context"]["navigation_entry_id"] = "prevNav123"
    [beacon] = convert([first]).beacons
    assert beacon["view"] == NAVIGATION  # TTFB's, read after the navigation was stored
    for m in first["measurements"]:
        m["context"]["navigation_entry_id"] = "unknown"
    [beacon] = convert([first]).beacons
    assert "view" not in beacon  # "unknown" is no id: it would join every such page view


def test_events_and_logs_only_are_no_page_view():
    first = copy.deepcopy(payloads()[0])
    del first["measurements"]
    first["logs"] = [{"message": "hi", "level": "info"}]
    out = faro.convert([(0, first)], BARE)
    assert out.beacons == [] and out.ignored == [
        (0, "no web-vitals measurement and no exception (events, logs or traces only)", RejectKind.NOT_A_PAGE_VIEW)]


def test_custom_measurements_are_not_web_vitals():
    lcp = copy.deepcopy(payloads()[2])
    lcp["measurements"].append({"type": "cart", "values": {"lcp": 1, "items": 3}})
    assert convert([lcp]).beacons[0]["metrics"] == {"LCP": 216.0}


def test_a_metric_reported_twice_keeps_its_largest_value():
    hide = copy.deepcopy(payloads()[3])
    hide["measurements"].insert(0, {"type": "web-vitals", "values": {"cls": 0.02}, "context": {}})
    assert convert([hide]).beacons[0]["metrics"]["CLS"] == 0.09375


@pytest.mark.parametrize("change, reason", [
    (lambda p: p["measurements"][0]["values"].update(lcp="216"), "Faro: measurements[0].values.lcp: must be a number, got str"),
    (lambda p: p["measurements"][0].update(values=[216]), "Faro: measurements[0].values: must be an object, got list"),
    (lambda p: p.update(measurements={}), "Faro: measurements: must be an array, got dict"),
    (lambda p: p["measurements"][0]["values"].update(lcp=-1), "Faro: metrics.LCP: must be >= 0, got -1.0"),
    (lambda p: p["meta"]["app"].pop("version"), "Faro: release: missing"),
])
def test_broken_payloads_are_refused_with_the_field(change, reason):
    lcp = copy.deepcopy(payloads()[2])
    change(lcp)
    out = convert([lcp])
    assert out.beacons == [] and out.rejects == [(0, reason)]


def test_the_request_s_release_and_app_are_the_fallback():
    lcp = copy.deepcopy(payloads()[2])
    del lcp["meta"]["app"]
    [beacon] = convert([lcp], Context(received_at=RECEIVED_AT, app="ctx-app", release="ctx-rel")).beacons
    assert (beacon["app"], beacon["release"]) == ("ctx-app", "ctx-rel")


@pytest.mark.parametrize("browser, device", [
    ({"mobile": True, "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X)"}, "mobile"),
    ({"mobile": False, "userAgent": "Mozilla/5.0 (iPad; CPU OS 18_0 like Mac OS X)"}, "tablet"),
    ({"mobile": False}, "desktop"),
    ({}, None),
])
def test_device(browser, device):
    lcp = copy.deepcopy(payloads()[2])
    lcp["meta"]["browser"] = browser
    assert convert([lcp]).beacons[0].get("device") == device


def test_detect():
    assert all(faro.detect(p) for p in payloads())
    assert not faro.detect({"meta": {}})  # nothing sent
    assert not faro.detect({"meta": {}, "measurements": [], "metrics": {}})  # plainly canonical
