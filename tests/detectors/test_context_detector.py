"""Unit tests of :class:`detectors.anomaly.ContextualAnomaly` (CAD OSE, learned online)."""

from __future__ import annotations

import pickle
import random

import pytest

from detectors.anomaly import ContextualAnomaly

WAVE = [10.0, 12.0, 15.0, 17.0, 20.0, 17.0, 15.0, 12.0]


def run(det, values, start=0):
    scores = []
    for i, x in enumerate(values, start):
        scores.append(det.score_one(i, x))
        det.learn_one(i, x)
    return scores


def wave(n):
    return [WAVE[i % len(WAVE)] for i in range(n)]


def test_warmup_scores_zero_and_sets_the_range():
    det = ContextualAnomaly(warmup=100)
    scores = run(det, wave(99))
    assert scores == [0.0] * 99
    assert det.score_one(99, 1e6) == 0.0  # range still unknown
    det.learn_one(99, WAVE[99 % 8])
    assert (det._lo, det._hi) == (10.0, 20.0)
    assert det.score_one(100, 1e6) > 0.0


def test_bits_are_facts_and_out_of_range_levels_are_novel_facts():
    det = ContextualAnomaly(value_range=(0.0, 7.0))
    assert det.facts(0.0) == (0, 2, 4)  # bin 0: every bit 0
    assert det.facts(5.0) == (1, 2, 5)  # bin 5 = 101
    assert det.facts(7.0) == (1, 3, 5)  # the top of the range is the last bin
    inside = {f for b in range(8) for f in det.facts(float(b))}
    assert inside == set(range(6))
    for far in (8.0, 12.5, 100.0, -0.5, -9.0, -1e300, 1e300):
        assert not inside & set(det.facts(far)), far
    assert det.facts(9.0) != det.facts(17.0) and det.facts(-1.0) != det.facts(8.0)


def test_a_learned_pattern_is_normal_and_its_break_is_not():
    det = ContextualAnomaly(warmup=50, rest_period=0)
    run(det, wave(600))
    assert det.score_one(600, WAVE[600 % 8]) < 0.2
    assert det.score_one(600, 20.0) > 0.5  # a value of the range, in the wrong place
    assert det.score_one(600, 80.0) == 1.0  # never seen: nothing predicts it, all is new


def test_level_shift_scores_above_steady_state():
    rng = random.Random(4)
    values = [50.0 + rng.gauss(0, 1) for _ in range(3000)] + [58.0 + rng.gauss(0, 1) for _ in range(50)]
    det = ContextualAnomaly(rest_period=0)
    scores = run(det, values)
    steady = sorted(scores[2000:3000])
    assert scores[3000] > steady[int(0.99 * len(steady))]  # the onset beats 99 % of steady points


def test_rest_period_keeps_one_alarm_per_event():
    det = ContextualAnomaly(warmup=50, rest_period=20)
    run(det, wave(600))
    first = det.score_one(600, 90.0)
    det.learn_one(600, 90.0)
    echoes = run(det, [95.0] * 19, start=601)
    assert first == 1.0
    assert max(echoes) <= 0.5  # halved during the rest period: above 0.5 only the onset
    run(det, wave(200), start=620)
    assert det.score_one(820, 500.0) == 1.0  # the rest is over: a new event scores in full


def test_score_one_has_no_side_effect_and_learn_works_without_it():
    values = wave(300) + [13.0, 90.0, 11.0] + wave(50)
    a, b = ContextualAnomaly(warmup=50), ContextualAnomaly(warmup=50)
    scores_a = []
    for i, x in enumerate(values):
        s = a.score_one(i, x)
        before = pickle.dumps(a)
        assert a.score_one(i, x) == s  # twice: the same value
        a.score_one(i, x + 1.0)  # another value in between: not learned
        assert pickle.dumps(a) == before
        scores_a.append(a.score_one(i, x))
        a.learn_one(i, x)
        b.learn_one(i, x)  # never scored: learns the same model
    assert pickle.dumps(a) == pickle.dumps(b)
    assert scores_a == run(ContextualAnomaly(warmup=50), values)


def test_memory_is_capped():
    rng = random.Random(9)
    det = ContextualAnomaly(warmup=100, max_contexts=500)
    run(det, [rng.random() for _ in range(3000)])
    assert len(det._ctx) <= 500
    assert len(det._left_facts) <= 500
    assert all(set(lids) <= set(det._left_facts) for lids in det._fact_left.values())


def test_constant_series_and_bad_hyperparameters():
    det = ContextualAnomaly(warmup=20)
    scores = run(det, [42.0] * 400)
    assert max(scores) == 0.0 or scores[-1] == 0.0
    assert det.score_one(400, 42.0) == 0.0
    assert det.score_one(400, 50.0) > 0.5
    with pytest.raises(ValueError):
        ContextualAnomaly(warmup=0)
    with pytest.raises(ValueError):
        ContextualAnomaly(base_threshold=0.0)
    with pytest.raises(ValueError):
        ContextualAnomaly(value_range=(1.0, 0.0))
