"""Canonical beacons: stamped with the receive time and the request's context."""

from __future__ import annotations

import pytest

from streams.ingest.formats import Context, to_canonical
from streams.ingest.formats.canonical import detect
from tests.ingest.formats.helpers import CTX, RECEIVED_AT, convert, load, raw


def test_canonical_beacons_field_by_field():
    beacons, rejects = convert(raw("canonical.json"), "application/json")
    assert rejects == []
    assert beacons == [
        {
            "id": "v5-1763856000000-1234567890123",
            "ts": RECEIVED_AT,
            "client_ts": 1763856000123,  # the sender's ts
            "app": "shop-web",
            "release": "2026.11.23-abc",
            "session": "9f2c4e1a",
            "page": "/checkout",
            "device": "mobile",
            "country": "DE",
            "browser": "Chrome",
            "metrics": {"LCP": 2480.0, "INP": 120.0, "CLS": 0.02, "FCP": 1100.0, "TTFB": 350.0},
            "errors": 0,
        },
        {  # app and release from the request; the IP and the user object are not passed on
            "ts": RECEIVED_AT,
            "client_ts": 1763856000500,
            "app": "ctx-app",
            "release": "ctx-release",
            "page": "/p/42",
            "country": "DE",
            "metrics": {"LCP": 3120.5},
        },
    ]


def test_the_requests_country_wins_and_the_payloads_is_kept_without_one():
    beacon = load("canonical.json")[0]
    assert to_canonical([beacon], Context(RECEIVED_AT, country="FR"))[0][0]["country"] == "FR"
    assert to_canonical([beacon], Context(RECEIVED_AT))[0][0]["country"] == "DE"


def test_values_are_not_repaired_but_reported():
    beacon = load("canonical.json")[0]
    bad = [dict(beacon, device="phone"), dict(beacon, metrics={"LCP": -3}), dict(beacon, errors=-1),
           dict(beacon, ts="soon", metrics=[1])]
    beacons, rejects = to_canonical(bad, CTX)
    assert beacons == []
    assert rejects == [
        (0, "canonical: device: must be one of mobile, desktop, tablet, unknown, got 'phone'"),
        (1, "canonical: metrics.LCP: must be >= 0, got -3"),
        (2, "canonical: errors: must be an integer in [0, 1000000], got -1"),
        (3, "web-vitals: metrics[0]: not a web-vitals metric (needs a name among CLS, FCP, FID, INP, LCP, TTFB and a value)"),
    ]


def test_a_client_ts_that_is_not_epoch_ms_is_dropped_not_fatal():
    beacon = dict(load("canonical.json")[0], ts=1763856000)  # seconds
    beacons, _ = to_canonical([beacon], CTX)
    assert "client_ts" not in beacons[0] and beacons[0]["ts"] == RECEIVED_AT


@pytest.mark.parametrize("item, expected", [
    ({"metrics": {}}, True),
    ({"app": "a"}, True),
    ({"ts": 1}, True),
    ({"name": "LCP", "value": 1, "release": "r", "ts": 1}, False),  # a web-vitals metric
    ({"metrics": [], "app": "a"}, False),  # a web-vitals envelope
    ({"session": "s"}, False),
    ([], False),
], ids=repr)
def test_detect(item, expected):
    assert detect(item) is expected
