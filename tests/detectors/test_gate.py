"""The gate: decisions, their order, explanations, and the false-rollback guarantee."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest

from detectors.gate import Gate, arm_of
from detectors.beacon import CohortKey
from detectors.policy import DEFAULT_POLICY, parse_policy
from tests.detectors.gate_traffic import APP, BASELINE, CANARY, window

LCP_ONLY = parse_policy("name: lcp\nmetrics:\n  - metric: LCP\nwarmup: 0s\nmin_duration: 5m\n")
LCP_ERRORS = parse_policy(
    "name: lcp-errors\nmetrics:\n  - metric: LCP\n  - metric: errors\nwarmup: 30s\nmin_duration: 5m\n")


def run(policy, looks, seed=1, expected_share=None, stop=True, **traffic):
    rng = np.random.default_rng(seed)
    gate = Gate(policy, APP, CANARY, BASELINE)
    verdicts = []
    for t in range(looks):
        start, summaries = window(rng, t, **traffic)
        verdicts.append(gate.observe(start, 5000, summaries, expected_share))
        if stop and verdicts[-1].decided:
            break
    return verdicts


STRICT = parse_policy("name: strict\nmetrics:\n  - metric: LCP\nwarmup: 0s\nmin_duration: 5m\n"
                      "fast_path: false\n")


def test_a_large_lcp_regression_rolls_back_with_a_severity_and_a_reason():
    verdicts = run(STRICT, 240, lcp_factor=1.30, stop=False)
    first = next(v for v in verdicts if v.verdict == "rollback")
    assert first.severity != "none"
    # Evidence keeps growing after the decision: the proven size, and so the severity, rises.
    v = verdicts[-1]
    assert v.verdict == "rollback"
    assert v.severity in ("major", "critical")
    lcp = v.metrics[0]
    assert lcp.status == "worse" and lcp.worse_by_at_least >= 0.10
    assert lcp.ratio > 1.15
    assert v.reasons and "LCP p75" in v.reasons[0]
    assert v.reason_codes == ["worse"] * len(v.reasons)


def test_the_fast_path_rolls_back_sooner_and_only_claims_what_it_proved():
    fast = run(LCP_ONLY, 360, lcp_factor=1.30)
    strict = run(STRICT, 360, lcp_factor=1.30)
    assert fast[-1].verdict == strict[-1].verdict == "rollback"
    assert len(fast) < len(strict)
    # Proven: worse than baseline; measured beyond the tolerance; severity from what is proven.
    assert fast[-1].severity == "minor" and "beyond the 5% tolerance" in fast[-1].reasons[0]


def test_a_clean_canary_promotes_only_after_the_minimum_duration():
    verdicts = run(LCP_ONLY, 360)
    final = verdicts[-1]
    assert final.verdict == "promote" and final.reason_codes == ["proven_not_worse"]
    assert final.inputs["elapsed_ms"] >= 5 * 60_000
    assert all(v.reason_codes == ["collecting"] for v in verdicts[:-1])
    assert all(v.verdict == "continue" for v in verdicts[:-1])
    assert final.metrics[0].status == "not_worse" and final.metrics[0].not_worse_than <= 0.10


def test_error_page_view_rate_regression_is_caught_by_the_rate_test():
    v = run(LCP_ERRORS, 720, error_factor=2.0)[-1]
    assert v.verdict == "rollback"
    errors = next(m for m in v.metrics if m.metric == "errors")
    assert errors.status == "worse" and errors.ratio > 1.5


def test_warm_up_windows_feed_no_test():
    verdicts = run(LCP_ERRORS, 6)  # 30 s of warm-up
    assert all(v.verdict == "continue" and "warming up" in v.reasons[0] for v in verdicts)
    assert all(v.reason_codes == ["warmup"] for v in verdicts)
    assert all(m.n_canary == 0 for v in verdicts for m in v.metrics)


def test_each_window_reports_its_own_quantile_and_rate_per_arm():
    """What the rollout page draws per window: the window's own p75 (and error rate) of each
    arm, beside the cumulative estimates; none in the warm-up, which counts nothing."""
    rng, gate = np.random.default_rng(4), Gate(LCP_ERRORS, APP, CANARY, BASELINE)
    for t in range(12):
        start, summaries = window(rng, t, share=0.3)
        v = gate.observe(start, 5000, summaries)
        lcp = next(m for m in v.metrics if m.metric == "LCP")
        errors = next(m for m in v.metrics if m.metric == "errors")
        if t < 6:  # 30 s of warm-up
            assert (lcp.window_canary, lcp.window_baseline, errors.window_canary) == (None, None, None)
            continue
        canary = next(s for s in summaries if s.key.release == CANARY)
        baseline = next(s for s in summaries if s.key.release == BASELINE)
        assert lcp.window_canary == pytest.approx(canary.sketches["LCP"].quantile(0.75), rel=1e-5)
        assert lcp.window_baseline == pytest.approx(baseline.sketches["LCP"].quantile(0.75), rel=1e-5)
        assert errors.window_baseline == pytest.approx(baseline.error_views / baseline.page_views, abs=1e-6)
        assert lcp.window_canary != lcp.canary or t == 6  # a window's value, not the cumulative one


def test_a_canary_without_traffic_is_held_not_passed():
    v = run(LCP_ONLY, 60, share=0.0)[-1]
    assert v.verdict == "hold" and "no canary beacons" in v.reasons[0]
    assert v.reason_codes == ["no_canary"] and not v.decided


def test_a_sample_ratio_mismatch_holds():
    verdicts = run(LCP_ONLY, 120, share=0.025, expected_share=0.05)
    assert any(v.verdict == "hold" and "sample-ratio mismatch" in v.reasons[0] for v in verdicts)
    assert all(v.reason_codes == ["srm"] for v in verdicts if v.verdict == "hold")
    assert not any(v.verdict in ("promote", "rollback") for v in verdicts)


def test_overwhelming_evidence_is_reported_not_an_overflow():
    """A sample ratio wildly off at high traffic drives its log e-value past what a float's
    exp can hold (about 709): the verdict still comes, with the e-value capped."""
    verdicts = run(LCP_ONLY, 40, rate=2000.0, share=0.5, expected_share=0.01)
    assert verdicts[-1].verdict == "hold" and "sample-ratio mismatch" in verdicts[-1].reasons[0]
    assert math.isfinite(verdicts[-1].data_quality["srm_e"])


def test_inconclusive_at_the_deadline_holds():
    policy = parse_policy("name: short\nmetrics:\n  - metric: LCP\nwarmup: 0s\nmin_duration: 1m\n"
                          "max_duration: 3m\nfast_path: false\n")
    final = run(policy, 100, lcp_factor=1.07)[-1]
    assert final.verdict == "hold" and final.reasons[0].startswith("inconclusive")
    assert final.reason_codes == ["deadline"]
    assert final.decided


def test_explicit_cohort_wins_over_the_release():
    assert arm_of(CohortKey("a", "r9", "canary", "mobile"), "r2", "r1") == "canary"
    assert arm_of(CohortKey("a", "r2", None, "mobile"), "r2", "r1") == "canary"
    assert arm_of(CohortKey("a", "r1", None, "mobile"), "r2", "r1") == "baseline"
    assert arm_of(CohortKey("a", "r0", None, "mobile"), "r2", "r1") is None


def test_segments_are_separate_hypotheses_and_split_alpha():
    policy = parse_policy("name: seg\nmetrics:\n  - metric: LCP\n  - metric: errors\n"
                          "segments: [mobile, desktop]\nwarmup: 0s\n")
    v = run(policy, 3)[-1]
    assert [(m.metric, m.segment) for m in v.metrics] == [
        ("LCP", "mobile"), ("LCP", "desktop"), ("errors", "mobile"), ("errors", "desktop")]
    assert all(math.isclose(m.threshold_rollback, 4 / 0.05) for m in v.metrics)
    assert all(m.n_canary == 0 for m in v.metrics if m.segment == "desktop")  # all traffic is mobile


def test_verdict_event_has_the_published_schema_and_is_json():
    v = run(DEFAULT_POLICY, 20)[-1]
    event = orjson.loads(orjson.dumps(v.to_dict()))
    assert list(event) == ["rollout", "app", "canary", "baseline", "seq", "verdict", "hold", "severity", "at",
                           "emitted_at", "policy", "reasons", "reason_codes", "overrides", "metrics",
                           "data_quality", "detectors", "inputs"]
    assert len(event["reason_codes"]) == len(event["reasons"])
    assert event["rollout"] == f"{APP}:{CANARY}" and event["seq"] == 20
    assert event["policy"] == {"name": "default", "hash": DEFAULT_POLICY.hash, "dry_run": False}
    for key in ("metric", "statistic", "segment", "canary", "baseline", "ratio", "worse_by_at_least",
                "not_worse_than", "e_rollback", "e_promote", "n_canary", "n_baseline", "status"):
        assert key in event["metrics"][0]
    assert set(event["data_quality"]) >= {"srm_e", "canary_share", "expected_share", "late_beacons",
                                          "partitions_complete"}


def test_same_input_same_verdicts():
    a = [v.to_dict() for v in run(DEFAULT_POLICY, 40, seed=9, lcp_factor=1.2)]
    b = [v.to_dict() for v in run(DEFAULT_POLICY, 40, seed=9, lcp_factor=1.2)]
    assert a == b


@pytest.mark.slow
def test_false_rollbacks_stay_below_alpha_over_many_seeded_a_a_rollouts():
    """Ville's guarantee through the whole gate (windows, sketches, thresholds, fast path).

    150 A/A rollouts of 15 minutes, judged every 5 s. The guarantee is <= 5 %; the
    statistics.md prototype measured 0.3-0.4 %. 150 runs cannot resolve 5 % finely, so
    the check is that at most 7 (the 95 % binomial upper quantile at p = 5 %: 12) roll back.
    """
    rollbacks = 0
    for seed in range(150):
        verdicts = run(LCP_ONLY, 180, seed=1000 + seed)
        rollbacks += any(v.verdict == "rollback" for v in verdicts)
    assert rollbacks <= 7, rollbacks


# -- few sessions: a window one sender fills is not judged ---------------------------------------

def _arm(release: str, views_per_session: list[int], anonymous: int = 0, capped: int = 0):
    from detectors.windows import WindowSummary

    s = WindowSummary.empty(CohortKey(APP, release, None, "mobile"), 0, 5000)
    s.session_ids = {f"{release}-{i}" for i in range(len(views_per_session))}
    s.page_views = sum(views_per_session) + anonymous
    s.anonymous_views, s.capped = anonymous, capped
    return s


@pytest.mark.parametrize("canary, baseline, flagged", [
    (_arm(CANARY, [1] * 25), _arm(BASELINE, [1] * 475), None),  # ordinary
    (_arm(CANARY, [3] * 8), _arm(BASELINE, [3] * 160), None),  # clustered users, both arms alike
    (_arm(CANARY, [9, 1]), _arm(BASELINE, [1] * 100), None),  # one heavy user of a tiny canary
    (_arm(CANARY, [1] * 5, anonymous=10), _arm(BASELINE, [1] * 100), None),  # a few anonymous views
    (_arm(CANARY, [1] * 5, anonymous=500), _arm(BASELINE, [1] * 100), "canary"),  # a flood without sessions
    (_arm(CANARY, [], anonymous=25), _arm(BASELINE, [], anonymous=475), None),  # an SDK that sends none
    (_arm(CANARY, [1] * 12, anonymous=13), _arm(BASELINE, [1] * 240, anonymous=235), None),  # half, alike
    (_arm(CANARY, [1] * 20, capped=1), _arm(BASELINE, [1] * 100), "canary"),  # a session over the cap
    (_arm(CANARY, [1] * 20), _arm(BASELINE, [1] * 100, capped=3), "baseline"),
    (_arm(CANARY, [1] * 20 + [20] * 5), _arm(BASELINE, [1] * 400), "canary"),  # 4.8 per session vs 1
    (_arm(CANARY, [1] * 20), _arm(BASELINE, [1] * 100 + [20] * 100), "baseline"),
    (_arm(CANARY, [1] * 20 + [11] * 5), _arm(BASELINE, [1] * 400), None),  # 3.0 per session: under 4x
], ids=["ordinary", "clustered", "tiny-canary", "few-anonymous", "anonymous-flood", "no-sessions-at-all",
        "half-anonymous-alike", "canary-capped", "baseline-capped",
        "canary-crowd", "baseline-crowd", "under-the-ratio"])
def test_crowding_names_the_arm_whose_page_views_come_from_few_sessions(canary, baseline, flagged):
    from detectors.gate import crowding

    reason = crowding(canary, baseline)
    assert (reason is None) == (flagged is None)
    if flagged:
        assert reason.startswith("few sessions") and flagged in reason


def test_a_crowded_window_holds_and_feeds_no_test():
    """The evidence after a crowded window is what it was before it: nothing of it counted."""
    rng = np.random.default_rng(3)
    gate = Gate(LCP_ONLY, APP, CANARY, BASELINE)
    for t in range(30):
        start, summaries = window(rng, t)
        gate.observe(start, 5000, summaries)
    before = gate.last_verdict.metrics[0]
    start, summaries = window(rng, 30, lcp_factor=4.0)
    next(s for s in summaries if s.key.release == CANARY).capped = 5
    v = gate.observe(start, 5000, summaries)
    assert (v.verdict, v.reason_codes) == ("hold", ["few_sessions"])
    assert v.metrics[0].n_canary == before.n_canary and v.metrics[0].e_worse == before.e_worse
    assert v.data_quality["capped_views"] == 5 and v.data_quality["few_sessions_windows"] == 1
    start, summaries = window(rng, 31)
    assert gate.observe(start, 5000, summaries).verdict == "continue"  # the next window is judged again
    assert not v.decided  # a hold for few sessions does not end the rollout
