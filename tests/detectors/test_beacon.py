"""Canonical beacon validation: what is accepted, and the field and reason of every refusal."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from detectors.beacon import (
    METRIC_LIMITS,
    METRICS,
    SEGMENTS,
    Beacon,
    BeaconBatch,
    CohortKey,
    validate_beacon,
)

TS = 1_763_856_000_123  # 2025-11-23, epoch ms
MINIMAL = {"ts": TS, "app": "shop-web", "release": "2026.11.23-abc"}
FULL = {
    "id": "v5-1763856000000-1234567890123", "ts": TS, "app": "shop-web",
    "release": "2026.11.23-abc", "session": "9f2c", "page": "/checkout",
    "device": "mobile", "country": "DE", "browser": "Chrome",
    "metrics": {"LCP": 2480.0, "INP": 120.0, "CLS": 0.02, "FCP": 1100.0, "TTFB": 350.0},
    "errors": 0, "cohort": None,
}


def with_(base: dict, **changes) -> dict:
    """A copy of ``base`` with fields changed; a value of ``...`` removes the field."""
    out = {**base, **changes}
    return {k: v for k, v in out.items() if v is not ...}


def with_metrics(**metrics) -> dict:
    return with_(MINIMAL, metrics=metrics)


# -- accepted --------------------------------------------------------------------------------

@pytest.mark.parametrize("obj, expected", [
    # Only the three required fields: no metrics, no errors, device unknown.
    (MINIMAL, Beacon(TS, "shop-web", "2026.11.23-abc")),
    # The architecture doc's example: the session is kept (the sample-ratio check counts
    # users) and the id (stage 1 counts copies of a beacon once), other descriptive fields
    # are dropped, all five metrics kept.
    (FULL, Beacon(TS, "shop-web", "2026.11.23-abc", dict(FULL["metrics"]), 0, "mobile", None,
                  FULL["session"], id=FULL["id"])),
    # Integer metric values become floats; a null metric counts as absent (INP never measured).
    (with_metrics(LCP=2480, INP=None), Beacon(TS, "shop-web", "2026.11.23-abc", {"LCP": 2480.0})),
    # An explicit cohort (feature-flag arm) is kept, and errors counted.
    (with_(MINIMAL, cohort="flag-on", errors=3, device="tablet"),
     Beacon(TS, "shop-web", "2026.11.23-abc", {}, 3, "tablet", "flag-on")),
    # null errors, null device, null metrics: the same as leaving them out.
    (with_(MINIMAL, errors=None, device=None, metrics=None), Beacon(TS, "shop-web", "2026.11.23-abc")),
    # An empty device string is treated as no device.
    (with_(MINIMAL, device=""), Beacon(TS, "shop-web", "2026.11.23-abc")),
    # Fields of the sender's own are ignored, whatever their type.
    (with_(MINIMAL, custom={"a": [1, 2]}, page=None, country=7),
     Beacon(TS, "shop-web", "2026.11.23-abc")),
    # Boundaries that are still valid: earliest/latest ms timestamps, zero and limit values.
    (with_(MINIMAL, ts=1_000_000_000_000), Beacon(1_000_000_000_000, "shop-web", "2026.11.23-abc")),
    (with_(MINIMAL, ts=9_999_999_999_999), Beacon(9_999_999_999_999, "shop-web", "2026.11.23-abc")),
    (with_metrics(LCP=0, CLS=100.0, TTFB=600_000),
     Beacon(TS, "shop-web", "2026.11.23-abc", {"LCP": 0.0, "CLS": 100.0, "TTFB": 600_000.0})),
    (with_(MINIMAL, errors=1_000_000), Beacon(TS, "shop-web", "2026.11.23-abc", errors=1_000_000)),
    # Names up to their limits (128 for app and release, 64 for a cohort); a session up to 512.
    (with_(MINIMAL, app="a" * 128), Beacon(TS, "a" * 128, "2026.11.23-abc")),
    (with_(MINIMAL, release="r" * 128, cohort="c" * 64), Beacon(TS, "shop-web", "r" * 128, cohort="c" * 64)),
    (with_(MINIMAL, session="s" * 512), Beacon(TS, "shop-web", "2026.11.23-abc", session="s" * 512)),
    # Non-ASCII and non-printable but not control characters (a no-break space) are names too.
    (with_(MINIMAL, release="2026.11\u00a0é"), Beacon(TS, "shop-web", "2026.11\u00a0é")),
], ids=["minimal", "full", "int-and-null-metrics", "cohort-errors-device", "nulls-as-absent",
        "empty-device", "extra-fields", "ts-min", "ts-max", "metric-bounds", "errors-max",
        "app-128-chars", "release-cohort-at-limits", "session-512-chars", "release-nbsp"])
def test_valid_beacons_are_accepted_as_expected(obj, expected):
    beacon, reason = validate_beacon(obj)
    assert reason is None
    assert beacon == expected
    assert all(type(v) is float for v in beacon.metrics.values())


def test_the_beacon_key_is_app_release_cohort_device():
    beacon, _ = validate_beacon(with_(FULL, cohort="flag-on"))
    assert beacon.key == CohortKey("shop-web", "2026.11.23-abc", "flag-on", "mobile")
    assert beacon.key.segment in SEGMENTS


def test_a_validated_beacon_is_immutable():
    beacon, _ = validate_beacon(MINIMAL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        beacon.ts = 0


def test_validation_does_not_mutate_its_input():
    obj = with_(FULL, metrics={"LCP": 1, "INP": None})
    snapshot = {**obj, "metrics": dict(obj["metrics"])}
    validate_beacon(obj)
    assert obj == snapshot


# -- refused: field first, then why ---------------------------------------------------------

REFUSED = [
    # Not an object at all.
    ("list", [MINIMAL], "beacon: must be a JSON object, got list"),
    ("string", "shop-web", "beacon: must be a JSON object, got str"),
    ("null", None, "beacon: must be a JSON object, got NoneType"),
    # ts: required, an integer, in epoch milliseconds.
    ("ts-missing", with_(MINIMAL, ts=...), "ts: missing"),
    ("ts-null", with_(MINIMAL, ts=None), "ts: missing"),
    ("ts-float", with_(MINIMAL, ts=float(TS)), "ts: must be an integer (epoch ms), got float"),
    ("ts-string", with_(MINIMAL, ts=str(TS)), "ts: must be an integer (epoch ms), got str"),
    ("ts-bool", with_(MINIMAL, ts=True), "ts: must be an integer (epoch ms), got bool"),
    ("ts-seconds", with_(MINIMAL, ts=1_763_856_000), "ts: 1763856000 is not epoch milliseconds"),
    ("ts-microseconds", with_(MINIMAL, ts=TS * 1000),
     f"ts: {TS * 1000} is not epoch milliseconds"),
    ("ts-negative", with_(MINIMAL, ts=-TS), f"ts: {-TS} is not epoch milliseconds"),
    ("ts-just-below", with_(MINIMAL, ts=999_999_999_999), "ts: 999999999999 is not epoch milliseconds"),
    # app: a non-empty string of at most 128 characters, without control characters.
    ("app-missing", with_(MINIMAL, app=...), "app: missing"),
    ("app-empty", with_(MINIMAL, app=""), "app: must not be empty"),
    ("app-whitespace", with_(MINIMAL, app=" \t\n"), "app: must not be empty"),
    ("app-int", with_(MINIMAL, app=42), "app: must be a string, got int"),
    ("app-list", with_(MINIMAL, app=["shop-web"]), "app: must be a string, got list"),
    ("app-too-long", with_(MINIMAL, app="a" * 129), "app: longer than 128 characters"),
    ("app-newline", with_(MINIMAL, app="shop\nweb"), "app: must not contain control characters"),
    ("app-nul", with_(MINIMAL, app="shop\x00"), "app: must not contain control characters"),
    ("app-c1", with_(MINIMAL, app="shop\x85web"), "app: must not contain control characters"),
    # release: the same rules; checked after app.
    ("release-missing", with_(MINIMAL, release=...), "release: missing"),
    ("release-empty", with_(MINIMAL, release=""), "release: must not be empty"),
    ("release-bool", with_(MINIMAL, release=False), "release: must be a string, got bool"),
    ("release-too-long", with_(MINIMAL, release="r" * 129), "release: longer than 128 characters"),
    ("release-escape", with_(MINIMAL, release="r2\x1b[31m"), "release: must not contain control characters"),
    # device: one of the segments.
    ("device-unknown-value", with_(MINIMAL, device="phone"),
     "device: must be one of mobile, desktop, tablet, unknown, got 'phone'"),
    ("device-wrong-case", with_(MINIMAL, device="Mobile"),
     "device: must be one of mobile, desktop, tablet, unknown, got 'Mobile'"),
    ("device-int", with_(MINIMAL, device=1), "device: must be a string, got int"),
    ("device-too-long", with_(MINIMAL, device="m" * 513), "device: longer than 512 characters"),
    # cohort: optional, a string when present.
    ("cohort-int", with_(MINIMAL, cohort=1), "cohort: must be a string, got int"),
    ("cohort-too-long", with_(MINIMAL, cohort="c" * 65), "cohort: longer than 64 characters"),
    ("cohort-tab", with_(MINIMAL, cohort="flag\ton"), "cohort: must not contain control characters"),
    # metrics: an object of known metrics with finite values in [0, limit].
    ("metrics-list", with_(MINIMAL, metrics=[2480.0]), "metrics: must be an object, got list"),
    ("metrics-number", with_(MINIMAL, metrics=2480.0), "metrics: must be an object, got float"),
    ("metrics-unknown", with_metrics(FID=12.0),
     "metrics.FID: unknown metric (known: LCP, INP, CLS, FCP, TTFB)"),
    ("metrics-lowercase", with_metrics(lcp=12.0),
     "metrics.lcp: unknown metric (known: LCP, INP, CLS, FCP, TTFB)"),
    ("metrics-negative", with_metrics(LCP=-3), "metrics.LCP: must be >= 0, got -3"),
    ("metrics-negative-float", with_metrics(INP=-0.5), "metrics.INP: must be >= 0, got -0.5"),
    ("metrics-bool", with_metrics(CLS=True), "metrics.CLS: must be a finite number, got True"),
    ("metrics-string", with_metrics(LCP="2480"), "metrics.LCP: must be a finite number, got '2480'"),
    ("metrics-nan", with_metrics(LCP=math.nan), "metrics.LCP: must be a finite number, got nan"),
    ("metrics-inf", with_metrics(FCP=math.inf), "metrics.FCP: must be a finite number, got inf"),
    ("metrics-object", with_metrics(TTFB={"value": 1}),
     "metrics.TTFB: must be a finite number, got {'value': 1}"),
    ("metrics-above-limit", with_metrics(LCP=600_001), "metrics.LCP: 600001 is above the limit 600000"),
    ("metrics-cls-above-limit", with_metrics(CLS=100.5), "metrics.CLS: 100.5 is above the limit 100"),
    # errors: an integer count in [0, 1e6].
    ("errors-negative", with_(MINIMAL, errors=-1), "errors: must be an integer in [0, 1000000], got -1"),
    ("errors-float", with_(MINIMAL, errors=1.0), "errors: must be an integer in [0, 1000000], got 1.0"),
    ("errors-bool", with_(MINIMAL, errors=True), "errors: must be an integer in [0, 1000000], got True"),
    ("errors-string", with_(MINIMAL, errors="2"), "errors: must be an integer in [0, 1000000], got '2'"),
    ("errors-too-many", with_(MINIMAL, errors=1_000_001),
     "errors: must be an integer in [0, 1000000], got 1000001"),
    # Several problems: the first field in check order is named (ts before app before metrics).
    ("first-of-several", {"app": "", "metrics": {"LCP": -1}}, "ts: missing"),
    ("app-before-release", with_(MINIMAL, app="", release=""), "app: must not be empty"),
    ("metrics-before-errors", with_(MINIMAL, metrics={"LCP": -1}, errors=-1),
     "metrics.LCP: must be >= 0, got -1"),
]


@pytest.mark.parametrize("obj, reason", [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_invalid_beacons_are_refused_with_field_and_reason(obj, reason):
    assert validate_beacon(obj) == (None, reason)


@pytest.mark.parametrize("metric", METRICS, ids=METRICS)
def test_each_metric_limit_is_inclusive(metric):
    limit = METRIC_LIMITS[metric]
    assert validate_beacon(with_metrics(**{metric: limit}))[1] is None
    beacon, reason = validate_beacon(with_metrics(**{metric: limit * 1.001}))
    assert beacon is None and reason.startswith(f"metrics.{metric}: ")


# -- the batch built from validated beacons -------------------------------------------------

def test_from_beacons_keeps_order_and_one_key_per_cohort():
    beacons = [
        validate_beacon(with_(FULL, ts=TS + i, device=d, cohort=c, errors=i,
                              metrics={"LCP": 1000.0 + i} if i % 2 else {}))[0]
        for i, (d, c) in enumerate([("mobile", None), ("desktop", None), ("mobile", None),
                                    ("mobile", "flag-on"), ("desktop", None)])
    ]
    batch = BeaconBatch.from_beacons(beacons)
    assert len(batch) == 5
    assert batch.ts.tolist() == [TS + i for i in range(5)]
    assert batch.errors.tolist() == [0, 1, 2, 3, 4]
    assert [batch.keys[k] for k in batch.key] == [b.key for b in beacons]
    assert len(batch.keys) == len(set(batch.keys)) == 3
    assert set(batch.metrics) == set(METRICS)
    np.testing.assert_array_equal(batch.metrics["LCP"], [np.nan, 1001.0, np.nan, 1003.0, np.nan])
    assert np.isnan(batch.metrics["INP"]).all()
    assert (batch.ts.dtype, batch.key.dtype, batch.errors.dtype) == (np.int64, np.int32, np.int64)


def test_empty_batch_has_every_column_and_no_rows():
    batch = BeaconBatch.empty()
    assert len(batch) == 0 and batch.keys == []
    assert set(batch.metrics) == set(METRICS)
    assert BeaconBatch.from_beacons([]).ts.shape == (0,)
