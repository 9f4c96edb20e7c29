"""The default policy on realistic simulated traffic: the guarantees, at a size CI affords.

The full measurement (1000 rollouts per scenario, next to Kayenta-style and threshold
judges) is ``benchmarks/decision_quality.py``; these runs check the same code path on the
hardest A/A scenario and on a clear regression.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from detectors.gate import Gate
from detectors.policy import DEFAULT_POLICY
from detectors.windows import TumblingWindows
from streams.offline.simulate import SCENARIOS, Regression, generate_windows


def first_decision(scenario, seed):
    gate = Gate(DEFAULT_POLICY, scenario.app, scenario.canary, scenario.baseline, started_at=scenario.start_ms)
    rolled_back = None
    for i, batch in enumerate(generate_windows(scenario, seed)):
        w = TumblingWindows(5000, 0)
        w.add(batch)
        t = (i + 1) * 5
        v = gate.observe(scenario.start_ms + i * 5000, 5000, w.flush(), scenario.share_at(t))
        if v.verdict == "rollback":
            rolled_back = t
            break
    return rolled_back


@pytest.mark.slow
def test_a_ramping_split_with_a_shared_trend_does_not_cause_rollbacks():
    """1 % → 10 % ramp while latency rises in both arms: pooled tests fail here (statistics.md)."""
    scenario = replace(SCENARIOS["ramp"], duration_s=600.0)
    rollbacks = sum(first_decision(scenario, seed) is not None for seed in range(60))
    assert rollbacks <= 3, rollbacks  # guarantee: <= 5 %; expected ~0-1 of 60


@pytest.mark.slow
def test_a_ten_percent_lcp_regression_is_caught_within_minutes():
    scenario = replace(SCENARIOS["stationary"], duration_s=900.0, regressions=(Regression("LCP", 1.10),))
    times = [first_decision(scenario, seed) for seed in range(20)]
    assert all(t is not None for t in times), times
    assert sorted(times)[len(times) // 2] <= 300  # median within 5 minutes


@pytest.mark.slow
def test_clustered_users_do_not_trip_the_sample_ratio_check():
    """The split is per user; counting sessions (not page views) keeps the SRM test valid."""
    scenario = replace(SCENARIOS["clustered"], duration_s=600.0)
    holds = 0
    for seed in range(40):
        gate = Gate(DEFAULT_POLICY, scenario.app, scenario.canary, scenario.baseline,
                    started_at=scenario.start_ms)
        for i, batch in enumerate(generate_windows(scenario, seed)):
            w = TumblingWindows(5000, 0)
            w.add(batch)
            v = gate.observe(scenario.start_ms + i * 5000, 5000, w.flush(), scenario.canary_share)
            if v.verdict == "hold":
                holds += 1
                break
    assert holds <= 1, holds  # α_srm = 0.001; on page views this scenario held about 1 in 4
