"""The traffic simulator: reproducibility, the two views agree, the calibrated distributions,
the A/A stress scenarios, injected regressions, and the ``simulate`` command."""

from __future__ import annotations

import gzip
import math
from dataclasses import replace

import numpy as np
import orjson
import pytest
from click.testing import CliRunner

from detectors.beacon import METRICS, validate_beacon
from streams.offline.simulate import (
    DEVICE_MIX,
    DEVICES,
    SCENARIOS,
    Regression,
    Scenario,
    generate_beacons,
    generate_windows,
    write_ndjson,
)
from streams.cli.simulate import simulate_command

STATIONARY = SCENARIOS["stationary"]
CANARY, BASELINE = STATIONARY.canary, STATIONARY.baseline


def flat(scenario: Scenario, seed: int, window_ms: int = 5000) -> dict[str, np.ndarray]:
    """All windows as flat columns: ts, t (s after start), window, release, device, metrics, errors."""
    cols: dict[str, list] = {"ts": [], "window": [], "release": [], "device": [], "errors": []}
    metrics: dict[str, list] = {m: [] for m in METRICS}
    for i, batch in enumerate(generate_windows(scenario, seed, window_ms)):
        cols["ts"].append(batch.ts)
        cols["window"].append(np.full(len(batch), i))
        cols["release"].append(np.array([batch.keys[k].release for k in batch.key], dtype=object))
        cols["device"].append(np.array([batch.keys[k].segment for k in batch.key], dtype=object))
        cols["errors"].append(batch.errors)
        for m in METRICS:
            metrics[m].append(batch.metrics[m])
    out = {k: np.concatenate(v) for k, v in cols.items()}
    out.update({m: np.concatenate(v) for m, v in metrics.items()})
    out["t"] = (out["ts"] - scenario.start_ms) / 1000
    return out


def p75(x: np.ndarray) -> float:
    return float(np.nanpercentile(x, 75))


# -- reproducibility -----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".ndjson", ".ndjson.gz"])
def test_same_seed_same_bytes(tmp_path, suffix):
    sc = replace(SCENARIOS["clustered"], duration_s=60.0)
    a, b = tmp_path / f"a{suffix}", tmp_path / f"other-name{suffix}"
    assert write_ndjson(a, sc, 5) == write_ndjson(b, sc, 5) > 5000
    assert a.read_bytes() == b.read_bytes()
    if suffix.endswith(".gz"):
        plain = tmp_path / "plain.ndjson"
        write_ndjson(plain, sc, 5)
        assert gzip.decompress(a.read_bytes()) == plain.read_bytes()


def test_different_seeds_differ(tmp_path):
    sc = replace(STATIONARY, duration_s=30.0)
    write_ndjson(tmp_path / "a.ndjson", sc, 1)
    write_ndjson(tmp_path / "b.ndjson", sc, 2)
    assert (tmp_path / "a.ndjson").read_bytes() != (tmp_path / "b.ndjson").read_bytes()
    a, b = flat(sc, 1), flat(sc, 2)
    assert len(a["ts"]) != len(b["ts"]) or not np.array_equal(a["TTFB"], b["TTFB"])


def beacon_row(b: dict) -> tuple:
    return (b["ts"], b["release"], b["device"], tuple(b["metrics"].get(m) for m in METRICS), b["errors"])


def window_rows(scenario: Scenario, seed: int, window_ms: int) -> list[tuple]:
    c = flat(scenario, seed, window_ms)
    return [
        (int(c["ts"][i]), c["release"][i], c["device"][i],
         tuple(None if math.isnan(c[m][i]) else float(c[m][i]) for m in METRICS), int(c["errors"][i]))
        for i in range(len(c["ts"]))
    ]


@pytest.mark.parametrize("name,window_ms,duration_s", [
    ("clustered", 5000, 120.0),
    ("ramp", 2000, 62.5),  # a short last window
    ("bursty-errors", 5000, 90.0),
])
def test_beacons_are_exactly_the_window_rows(name, window_ms, duration_s):
    sc = replace(SCENARIOS[name], duration_s=duration_s,
                 regressions=(Regression("LCP", 1.2, "mobile", 30), Regression("errors", 2.0)))
    beacons = list(generate_beacons(sc, 11, window_ms))
    assert [beacon_row(b) for b in beacons] == window_rows(sc, 11, window_ms)
    assert len({b["id"] for b in beacons}) == len(beacons)
    assert all(b["app"] == sc.app and b["cohort"] is None for b in beacons)


def test_windows_hold_their_interval_sorted():
    sc = replace(SCENARIOS["drift"], duration_s=62.5)
    batches = list(generate_windows(sc, 3, 5000))
    assert len(batches) == 13  # 12 full windows and a 2.5 s one
    for i, batch in enumerate(batches):
        lo = sc.start_ms + i * 5000
        hi = min(lo + 5000, sc.start_ms + 62_500)
        assert np.all(np.diff(batch.ts) >= 0)
        assert len(batch) == 0 or (batch.ts.min() >= lo and batch.ts.max() < hi)
        assert all(k.app == sc.app and k.cohort is None and k.release in (CANARY, BASELINE)
                   and k.segment in DEVICES for k in batch.keys)
        assert len(set(batch.keys)) == len(batch.keys)
        assert set(np.unique(batch.key)) == set(range(len(batch.keys)))  # only keys present


def test_decorations_never_change_metrics():
    """Consuming beacons (which draws decorations) leaves window-level draws untouched."""
    sc = replace(STATIONARY, duration_s=20.0)
    first = [b.metrics["LCP"].copy() for b in generate_windows(sc, 9)]
    list(generate_beacons(sc, 9))
    again = [b.metrics["LCP"] for b in generate_windows(sc, 9)]
    assert all(np.array_equal(x, y, equal_nan=True) for x, y in zip(first, again, strict=True))


def test_every_beacon_validates():
    for name in ("stationary", "drift", "ramp", "clustered", "bursty-errors", "lcp-regression"):
        sc = replace(SCENARIOS[name], duration_s=30.0)
        for b in generate_beacons(sc, 4):
            beacon, reason = validate_beacon(orjson.loads(orjson.dumps(b)))
            assert reason is None, (name, b, reason)


# -- calibration ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ten_minutes() -> dict[str, np.ndarray]:
    return flat(replace(STATIONARY, duration_s=600.0), 3)


def test_device_mix_and_canary_share(ten_minutes):
    c = ten_minutes
    n = len(c["ts"])
    assert 55_000 < n < 65_000  # 100 beacons/s
    for dev, share in zip(DEVICES, DEVICE_MIX, strict=True):
        assert abs(np.mean(c["device"] == dev) - share) < 0.01
    assert abs(np.mean(c["release"] == CANARY) - 0.05) < 0.004


def test_latency_distributions(ten_minutes):
    c = ten_minutes
    mob, desk = c["device"] == "mobile", c["device"] == "desktop"
    assert 1800 < p75(c["LCP"][mob]) < 3200
    assert 1500 < p75(c["LCP"][desk]) < 3200
    assert 600 < p75(c["TTFB"][mob]) < 1000  # p75 ≈ 800 (rum-formats §3.4)
    assert p75(c["INP"][desk]) < p75(c["INP"][mob])
    assert 150 < p75(c["INP"][mob]) < 260 and 90 < p75(c["INP"][desk]) < 150
    # LCP ≥ FCP ≥ TTFB on every page view that has them.
    shown = ~np.isnan(c["LCP"])
    assert np.all(c["LCP"][shown] >= c["FCP"][shown]) and np.all(c["FCP"][shown] >= c["TTFB"][shown])
    # Values in ms are rounded to 0.1.
    for m in ("LCP", "FCP", "TTFB"):
        x = c[m][~np.isnan(c[m])]
        assert np.allclose(x, np.round(x, 1), rtol=0, atol=1e-9) and x.min() > 0


def test_missing_values_and_zeros(ten_minutes):
    c = ten_minutes
    mob, desk = c["device"] == "mobile", c["device"] == "desktop"
    assert abs(np.mean(np.isnan(c["INP"][mob])) - 0.40) < 0.015
    assert abs(np.mean(np.isnan(c["INP"][desk])) - 0.45) < 0.015
    assert abs(np.mean(c["CLS"][mob] == 0) - 0.30) < 0.015
    assert abs(np.mean(c["CLS"][desk] == 0) - 0.35) < 0.015
    # Hidden page views: no LCP and no FCP, together; TTFB and CLS always there.
    assert abs(np.mean(np.isnan(c["LCP"])) - 0.08) < 0.01
    assert np.array_equal(np.isnan(c["LCP"]), np.isnan(c["FCP"]))
    assert not np.isnan(c["TTFB"]).any() and not np.isnan(c["CLS"]).any()
    inp = c["INP"][~np.isnan(c["INP"])]
    assert np.all(inp % 8 == 0) and inp.min() == 8
    cls = c["CLS"]
    assert np.allclose(cls, np.round(cls, 4), rtol=0, atol=1e-12)


def test_errors_per_page_view(ten_minutes):
    c = ten_minutes
    assert abs(np.mean(c["errors"] > 0) - 0.02) < 0.003
    assert set(np.unique(c["errors"])) == {0, 1}  # error_burst 1: exactly one error


# -- A/A stress scenarios (statistics.md §7.1) --------------------------------------------------


def test_ramp_increases_the_canary_share():
    c = flat(replace(SCENARIOS["ramp"], rate=200.0), 5)
    canary = c["release"] == CANARY
    early, late = canary[c["t"] < 300], canary[c["t"] >= 1500]
    assert abs(early.mean() - 0.0175) < 0.004  # mean of the ramp over 0..300 s
    assert abs(late.mean() - 0.0925) < 0.006
    thirds = [canary[(c["t"] >= a) & (c["t"] < a + 600)].mean() for a in (0, 600, 1200)]
    assert thirds[0] < thirds[1] < thirds[2]
    # The shared trend lifts both arms' latency by about exp(0.3) over the duration.
    ttfb_b = c["TTFB"][~canary]
    ratio = np.median(ttfb_b[c["t"][~canary] >= 1500]) / np.median(ttfb_b[c["t"][~canary] < 300])
    assert abs(math.log(ratio) - 0.25) < 0.05  # 0.3 · (1650 − 150) / 1800


def test_drift_moves_traffic_and_latency_of_both_arms():
    sc = replace(SCENARIOS["drift"], duration_s=900.0, canary_share=0.3)
    c = flat(sc, 6)
    # sin(2πt/900) averages 3/π ≈ 0.955 over 150..300 s and −0.955 over 600..750 s.
    peak = (c["t"] >= 150) & (c["t"] < 300)
    trough = (c["t"] >= 600) & (c["t"] < 750)
    assert 3.1 < peak.sum() / trough.sum() < 4.4  # (1 + 0.6·0.955) / (1 − 0.6·0.955) ≈ 3.7
    for release in (CANARY, BASELINE):
        arm = c["release"] == release
        ratio = np.median(c["TTFB"][arm & peak]) / np.median(c["TTFB"][arm & trough])
        assert abs(math.log(ratio) - 0.573) < 0.1, release  # 2 · 0.3 · 0.955


def _sessions(scenario: Scenario, seed: int) -> dict[str, list[dict]]:
    sessions: dict[str, list[dict]] = {}
    for b in generate_beacons(scenario, seed):
        sessions.setdefault(b["session"], []).append(b)
    return sessions


def _intra_user_correlation(sessions: dict[str, list[dict]]) -> float:
    """Correlation of log TTFB between a mobile user's first two page views."""
    pairs = np.array([[math.log(v[0]["metrics"]["TTFB"]), math.log(v[1]["metrics"]["TTFB"])]
                      for v in sessions.values() if len(v) >= 2 and v[0]["device"] == "mobile"])
    return float(np.corrcoef(pairs.T)[0, 1])


def test_clustered_users_share_release_device_and_latency():
    clustered = replace(SCENARIOS["clustered"], duration_s=480.0)
    sessions = _sessions(clustered, 8)
    sizes = np.array([len(v) for v in sessions.values()])
    assert abs(sizes.mean() - 3.0) < 0.1
    assert all(len({(b["release"], b["device"]) for b in v}) == 1 for v in sessions.values())
    # Intra-user correlation 0.3² / (0.3² + 0.85²) ≈ 0.11 on mobile; none without the effect.
    assert 0.06 < _intra_user_correlation(sessions) < 0.16
    assert abs(_intra_user_correlation(_sessions(replace(clustered, user_sd=0.0), 8))) < 0.05


def test_bursty_errors_and_storms():
    c = flat(replace(SCENARIOS["bursty-errors"], duration_s=1800.0, canary_share=0.5), 2)
    erring = c["errors"][c["errors"] > 0]
    assert abs(erring.mean() - 4.0) < 0.25
    per_window = np.bincount(c["window"], weights=c["errors"] > 0) / np.bincount(c["window"])
    storms = per_window > 0.1  # normal windows: 2 % ± 0.6 %; storms: 20 %
    assert 1 <= storms.sum() <= 18  # Binomial(360, 0.02): mean 7.2
    in_storm = storms[c["window"]]
    for release in (CANARY, BASELINE):
        arm = c["release"] == release
        assert np.mean(c["errors"][arm & in_storm] > 0) > 0.15, release  # 0.2 expected


# -- regressions (statistics.md §7.2) -------------------------------------------------------------


def test_lcp_regression_on_mobile_from_60s():
    base = replace(STATIONARY, duration_s=600.0, canary_share=0.3)
    reg = replace(base, regressions=(Regression("LCP", 1.25, "mobile", 60.0),))
    a, b = flat(base, 12), flat(reg, 12)
    # Same page views (common random numbers): only the targeted LCP values change.
    for col in ("ts", "release", "device", "errors", "INP", "CLS", "FCP", "TTFB"):
        assert np.array_equal(a[col], b[col], equal_nan=a[col].dtype.kind == "f"), col
    hit = (b["release"] == CANARY) & (b["device"] == "mobile") & (b["t"] >= 60)
    assert np.array_equal(a["LCP"][~hit], b["LCP"][~hit], equal_nan=True)
    shown = hit & ~np.isnan(a["LCP"])
    assert shown.sum() > 5000
    assert np.allclose(b["LCP"][shown], 1.25 * a["LCP"][shown], rtol=0, atol=0.15)
    # Against the baseline's mobile page views, as the gate sees it.
    base_mob = (b["release"] == BASELINE) & (b["device"] == "mobile") & (b["t"] >= 60)
    assert abs(p75(b["LCP"][hit]) / p75(b["LCP"][base_mob]) - 1.25) < 0.06
    canary_desk = (b["release"] == CANARY) & (b["device"] == "desktop") & (b["t"] >= 60)
    base_desk = (b["release"] == BASELINE) & (b["device"] == "desktop") & (b["t"] >= 60)
    assert abs(p75(b["LCP"][canary_desk]) / p75(b["LCP"][base_desk]) - 1.0) < 0.05


def test_inp_regression_stays_quantised():
    base = replace(STATIONARY, duration_s=300.0, canary_share=0.5)
    a, b = flat(base, 13), flat(replace(base, regressions=SCENARIOS["inp-mobile"].regressions), 13)
    hit = (b["release"] == CANARY) & (b["device"] == "mobile") & ~np.isnan(b["INP"])
    assert np.all(b["INP"][hit] % 8 == 0)
    assert np.all(b["INP"][hit] >= a["INP"][hit])
    assert abs(p75(b["INP"][hit]) / p75(a["INP"][hit]) - 1.3) < 0.05
    assert np.array_equal(a["INP"][~hit], b["INP"][~hit], equal_nan=True)


def test_cls_regression_scales_only_nonzero_values():
    base = replace(STATIONARY, duration_s=120.0, canary_share=0.5)
    a, b = flat(base, 14), flat(replace(base, regressions=(Regression("CLS", 2.0),)), 14)
    canary = b["release"] == CANARY
    assert np.array_equal(a["CLS"] == 0, b["CLS"] == 0)
    nz = canary & (a["CLS"] > 0)
    assert np.allclose(b["CLS"][nz], 2 * a["CLS"][nz], rtol=0, atol=2e-4)
    assert np.array_equal(a["CLS"][~canary], b["CLS"][~canary])


def test_error_regression_raises_canary_error_views_only():
    base = replace(STATIONARY, duration_s=600.0, canary_share=0.5)
    a, b = flat(base, 15), flat(replace(base, regressions=SCENARIOS["errors"].regressions), 15)
    canary = b["release"] == CANARY
    assert abs(np.mean(b["errors"][canary] > 0) - 0.03) < 0.004
    assert abs(np.mean(b["errors"][~canary] > 0) - 0.02) < 0.004
    assert np.array_equal(a["errors"][~canary], b["errors"][~canary])
    assert np.all(b["errors"][canary] >= a["errors"][canary])


@pytest.mark.parametrize("text,expected", [
    ("LCP:1.10", Regression("LCP", 1.10)),
    ("inp:1.3:mobile", Regression("INP", 1.3, "mobile")),
    ("errors:1.5:all:120", Regression("errors", 1.5, None, 120.0)),
    ("CLS:2:Desktop:2m", Regression("CLS", 2.0, "desktop", 120.0)),
    (" TTFB : 0.9 ", Regression("TTFB", 0.9)),
])
def test_regression_parse_accepts(text, expected):
    assert Regression.parse(text) == expected


@pytest.mark.parametrize("text,needle", [
    ("LCP", "expected METRIC:FACTOR"),
    ("LCP:1.1:mobile:60:extra", "expected METRIC:FACTOR"),
    ("LCP::mobile", "expected METRIC:FACTOR"),
    ("LXP:1.1", "unknown metric 'LXP'"),
    ("LCP:fast", "factor must be a number"),
    ("LCP:-1", "factor must be a finite number > 0"),
    ("LCP:nan", "factor must be a finite number > 0"),
    ("LCP:1.1:phone", "segment must be one of"),
    ("LCP:1.1:mobile:soon", "start must be seconds"),
])
def test_regression_parse_rejects(text, needle):
    with pytest.raises(ValueError, match=needle) as info:
        Regression.parse(text)
    assert repr(text.strip()) in str(info.value) or text.strip() in str(info.value)


@pytest.mark.parametrize("field,value", [
    ("canary_share", 1.5), ("rate", -1.0), ("duration_s", 0.0), ("beacons_per_user", 0.5),
    ("user_sd", -0.1), ("error_burst", 0.9), ("diurnal_amplitude", 1.2), ("app", ""),
    ("canary", "2026.11.20-base"), ("canary_share_end", -0.1), ("period_s", 0.0),
])
def test_scenario_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        replace(STATIONARY, **{field: value})


def test_presets():
    assert SCENARIOS["clean"] == STATIONARY and STATIONARY.regressions == ()
    d = SCENARIOS["drift"]
    assert (d.drift_amplitude, d.diurnal_amplitude, d.period_s) == (0.3, 0.6, 900.0)
    r = SCENARIOS["ramp"]
    assert (r.canary_share, r.canary_share_end, r.trend) == (0.01, 0.10, 0.3)
    assert SCENARIOS["inp-mobile"].regressions == (Regression("INP", 1.3, "mobile"),)
    assert SCENARIOS["lcp-regression-25"].regressions == (Regression("LCP", 1.25),)


# -- writing and the command ---------------------------------------------------------------------


def test_progress_about_once_a_simulated_minute(tmp_path):
    calls: list[tuple[int, float]] = []
    n = write_ndjson(tmp_path / "p.ndjson", replace(STATIONARY, duration_s=200.0), 1,
                     progress=lambda written, sim_s: calls.append((written, sim_s)))
    assert [s for _, s in calls] == [60.0, 120.0, 180.0, 200.0]
    assert calls[-1][0] == n and [w for w, _ in calls] == sorted(w for w, _ in calls)


def test_thirty_minutes_at_100_per_second_is_about_180k_beacons():
    n = sum(len(b) for b in generate_windows(STATIONARY, 1))
    assert 170_000 < n < 190_000


def test_cli_writes_a_file(tmp_path):
    out = tmp_path / "traffic.ndjson.gz"
    result = CliRunner().invoke(simulate_command, [
        str(out), "--scenario", "clustered", "--duration", "90s", "--seed", "3", "--rate", "50",
        "--canary-share", "0.2", "--regress", "LCP:1.2:mobile:30", "--app", "web2"])
    assert result.exit_code == 0, result.output
    lines = gzip.decompress(out.read_bytes()).splitlines()
    beacons = [orjson.loads(line) for line in lines]
    assert f"wrote {len(beacons):,} beacons" in result.output
    assert 3000 < len(beacons) < 6000 and {b["app"] for b in beacons} == {"web2"}
    assert 0.1 < np.mean([b["release"] == CANARY for b in beacons]) < 0.3
    expected = replace(SCENARIOS["clustered"], duration_s=90.0, rate=50.0, canary_share=0.2,
                       app="web2", regressions=(Regression("LCP", 1.2, "mobile", 30),))
    assert beacons == list(generate_beacons(expected, 3))


@pytest.mark.parametrize("args,needle", [
    (["--regress", "LCP:x"], "factor must be a number"),
    (["--regress", "LCP:1.1:phone"], "segment must be one of"),
    (["--duration", "soon"], "not a duration"),
    (["--duration", "0"], "longer than 0"),
    (["--scenario", "nope"], "nope"),
])
def test_cli_rejects_bad_options(tmp_path, args, needle):
    out = tmp_path / "x.ndjson"
    result = CliRunner().invoke(simulate_command, [str(out), *args])
    assert result.exit_code == 2 and needle in result.output
    assert not out.exists()

