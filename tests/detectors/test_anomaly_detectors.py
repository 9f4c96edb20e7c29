"""Unit tests of ``detectors.anomaly``: the contract on every registered detector, then each class."""

from __future__ import annotations

import math
import pickle
import random

import pytest

from detectors.anomaly import (
    DETECTORS,
    GATE_DETECTOR,
    AnomalyLikelihood,
    ContextualAnomaly,
    FirstDifference,
    MaxScore,
    LODAScorer,
    NewPeakFilter,
    RobustZScore,
    TimeOfDayResidual,
)
from detectors.anomaly.base import squash
from detectors.anomaly.likelihood import log_tail
from detectors.anomaly.time_of_day import hour_bucket

MIN = 60_000
HOUR = 3_600_000


def stream(n: int = 1200, seed: int = 1) -> list[tuple[int, float | None]]:
    """5-minute points with a daily cycle, noise, a few spikes, a level shift and gaps."""
    rng = random.Random(seed)
    out: list[tuple[int, float | None]] = []
    for i in range(n):
        t = 1_600_000_000_000 + i * 5 * MIN
        x = 100 + 20 * math.sin(2 * math.pi * i / 288) + rng.gauss(0, 2)
        if i % 97 == 50:
            x += 60
        if i > n * 3 // 4:
            x += 40
        out.append((t, None if i % 53 == 7 else x))
    return out


def run(det, points) -> list[float]:
    scores = []
    for t, x in points:
        scores.append(det.score_one(t, x))
        det.learn_one(t, x)
    return scores


# -- the contract, on every registered detector ---------------------------------------------------
def test_gate_detector_is_registered():
    assert GATE_DETECTOR in DETECTORS


@pytest.fixture(scope="module")
def points():
    return stream()


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_scores_in_unit_interval_and_zero_for_missing(name, points):
    det = DETECTORS[name]()
    assert det.score_one(points[0][0], 1.0) == 0.0  # nothing learned yet: warm-up
    for t, x in points:
        s = det.score_one(t, x)
        assert 0.0 <= s <= 1.0 and not math.isnan(s)
        if x is None:
            assert s == 0.0
        det.learn_one(t, x)
    for bad in (None, float("nan"), float("inf")):
        assert det.score_one(points[-1][0], bad) == 0.0


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_deterministic_and_picklable(name, points):
    a, b = DETECTORS[name](), DETECTORS[name]()
    first = run(a, points[:600])
    assert first == run(b, points[:600])
    c = pickle.loads(pickle.dumps(a))
    assert run(a, points[600:]) == run(c, points[600:])


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_score_is_pure_and_missing_is_not_learned(name, points):
    det = DETECTORS[name]()
    run(det, points[:400])
    before = pickle.dumps(det)
    det.score_one(points[400][0], 123.0)
    det.score_one(points[400][0], None)
    det.learn_one(points[400][0], None)
    det.learn_one(points[400][0], float("nan"))
    assert pickle.dumps(det) == before


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_spike_scores_above_normal(name):
    rng = random.Random(3)
    det = DETECTORS[name]()
    for i in range(1500):
        det.learn_one(i * 5 * MIN, 50 + rng.gauss(0, 1))
    t = 1500 * 5 * MIN
    assert det.score_one(t, 90.0) > det.score_one(t, 50.0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: RobustZScore(window_size=200),
        lambda: LODAScorer(),
        lambda: TimeOfDayResidual(RobustZScore(window_size=200)),
        lambda: AnomalyLikelihood(RobustZScore(window_size=200), long_window=300),
        lambda: NewPeakFilter(AnomalyLikelihood(RobustZScore(window_size=200), long_window=300), window=50),
    ],
)
def test_memory_is_bounded(make):
    det = make()
    pts = stream(4000)
    run(det, pts[:1500])
    size_a = len(pickle.dumps(det))
    run(det, pts[1500:])
    assert len(pickle.dumps(det)) < 1.2 * size_a + 2000


# -- per class --------------------------------------------------------------------------------------
def test_squash_is_monotone():
    xs = [0.0, 1e-9, 0.5, 1.0, 10.0, 1e6]
    ys = [squash(x) for x in xs]
    assert ys == sorted(ys) and len(set(ys)) == len(ys) and ys[-1] < 1.0


@pytest.mark.parametrize(
    "t, weekly, expected",
    [
        (0, False, 0),  # epoch
        (HOUR * 25 + 1, False, 1),  # next day, 01:00
        (0, True, 72),  # Thursday 00:00 UTC
        (4 * 24 * HOUR, True, 0),  # Monday 1970-01-05 00:00
        (1_700_000_000_000, False, 22),  # 2023-11-14 22:13:20 UTC
    ],
)
def test_hour_bucket(t, weekly, expected):
    assert hour_bucket(t, weekly) == expected


def test_robust_z_flatline_and_change():
    det = RobustZScore(grace_period=5)
    for i in range(100):
        det.learn_one(i, 7.0)
    assert det.score_one(100, 7.0) == 0.0
    assert det.score_one(100, 7.5) > 0.95


def test_robust_z_ignores_a_minority_of_outliers():
    det = RobustZScore(window_size=100, grace_period=10, std_floor=0.0)
    rng = random.Random(0)
    for i in range(100):
        det.learn_one(i, 1000.0 if i % 10 == 0 else rng.gauss(0, 1))
    assert det.score_one(100, 0.5) < 0.5
    assert det.score_one(100, 8.0) > 0.8


def test_rejects_bad_hyperparameters():
    with pytest.raises(ValueError):
        RobustZScore(window_size=1)
    with pytest.raises(ValueError):
        TimeOfDayResidual(alpha=0.0)
    with pytest.raises(ValueError):
        AnomalyLikelihood(short_window=0)
    with pytest.raises(ValueError):
        NewPeakFilter(window=0)
    with pytest.raises(ValueError):
        LODAScorer(n_bins=1)


def test_time_of_day_learns_the_daily_cycle_away():
    plain = RobustZScore(window_size=2000)
    tod = TimeOfDayResidual(RobustZScore(window_size=2000))
    rng = random.Random(5)
    for i in range(288 * 10):
        t = i * 5 * MIN
        x = 100 + 50 * math.sin(2 * math.pi * i / 288) + rng.gauss(0, 1)
        plain.learn_one(t, x)
        tod.learn_one(t, x)
    peak = 288 * 10 + 72  # the daily maximum (6 h after the cycle's start)
    t, x = peak * 5 * MIN, 150.0
    trough = (288 * 10 + 216) * 5 * MIN  # the same value at the daily minimum is anomalous
    assert tod.score_one(t, x) < 0.5 and tod.score_one(trough, x) > 0.95
    assert plain.score_one(t, x) == plain.score_one(trough, x)  # blind to the time of day


def test_log_tail_is_continuous_and_increasing():
    zs = [-5, 0, 1, 3, 8, 30, 37, 38, 39, 100]
    ls = [log_tail(z) for z in zs]
    assert ls == sorted(ls)
    q37 = 0.5 * math.erfc(37 / math.sqrt(2))
    assert math.isclose(log_tail(37), -math.log10(q37), rel_tol=1e-12)
    assert math.isclose(log_tail(38.6), (38.6**2 / 2 + math.log(38.6 * math.sqrt(2 * math.pi))) / math.log(10), rel_tol=1e-3)


def test_likelihood_flags_a_run_not_a_noisy_series():
    rng = random.Random(11)
    det = AnomalyLikelihood(RobustZScore(window_size=500), learning_period=300)
    for i in range(2000):
        det.learn_one(i, rng.gauss(0, 1))
    quiet = det.score_one(2000, 0.3)
    for i in range(2000, 2010):
        det.learn_one(i, 7.0)
    assert det.score_one(2010, 7.0) > 0.5 > quiet


def test_likelihood_is_zero_during_learning_period():
    det = AnomalyLikelihood(RobustZScore(grace_period=5), learning_period=50)
    for i in range(49):
        det.learn_one(i, float(i % 3))
    assert det.score_one(49, 1000.0) == 0.0


def test_peak_filter_keeps_onset_for_any_threshold():
    inner_scores = [0.1, 0.2, 0.1, 0.6, 0.7, 0.65, 0.2, 0.9, 0.3]

    class Replay:
        def __init__(self):
            self.i = 0

        def score_one(self, t, x):
            return inner_scores[self.i]

        def learn_one(self, t, x):
            self.i += 1

    det = NewPeakFilter(Replay(), window=4)
    out = run(det, [(i, 0.0) for i in range(len(inner_scores))])
    onset = [0.5 + s / 2 for s in (0.1, 0.2)] + [0.05] + [0.5 + s / 2 for s in (0.6, 0.7)] + [0.325, 0.1, 0.95, 0.15]
    assert out == pytest.approx(onset, abs=1e-12)
    assert [i for i, s in enumerate(out) if s >= 0.5] == [0, 1, 3, 4, 7]


def test_max_score_and_first_difference():
    level = RobustZScore(grace_period=5)
    jump = FirstDifference(RobustZScore(grace_period=5))
    both = MaxScore([RobustZScore(grace_period=5), FirstDifference(RobustZScore(grace_period=5))])
    for i in range(100):
        x = float(i)  # a ramp: every level is new, every step is the same
        level.learn_one(i, x)
        jump.learn_one(i, x)
        both.learn_one(i, x)
    assert jump.score_one(100, 100.0) == 0.0 < level.score_one(100, 100.0)
    assert both.score_one(100, 100.0) == max(level.score_one(100, 100.0), jump.score_one(100, 100.0))
    assert FirstDifference(RobustZScore()).score_one(0, 1.0) == 0.0  # no previous value yet
    with pytest.raises(ValueError):
        MaxScore([])


def test_peak_ensemble_is_the_max_of_loda_and_context():
    ens = DETECTORS["peak_ensemble"]()
    loda, cad = TimeOfDayResidual(LODAScorer()), ContextualAnomaly(rest_period=0)
    from_loda = from_cad = 0
    for t, x in stream(2000):
        a, b = loda.score_one(t, x), cad.score_one(t, x)
        inner = ens.detector.score_one(t, x)
        assert inner == max(a, b)
        from_loda += a > b
        from_cad += b > a
        s = ens.score_one(t, x)
        assert s in (0.5 * inner, 0.5 + 0.5 * inner)  # one peak filter over the combined score
        for d in (ens, loda, cad):
            d.learn_one(t, x)
    assert from_loda > 0 and from_cad > 0  # both detectors decide the score at some points
