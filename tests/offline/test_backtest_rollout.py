"""What the file backtest honours now that it runs through the one driver, as live does:
overrides, dry-run policies, and the rollout's start and end.

Before, the file backtest wired windows straight into a gate: it took none of these.
"""

from __future__ import annotations

from dataclasses import replace

import orjson
import pytest

from detectors.override import Override
from detectors.policy import parse_policy
from detectors.rollout import Rollout
from streams.offline.backtest import backtest_rollout, run_backtest
from streams.offline.simulate import SCENARIOS, Regression, generate_beacons

SC = replace(SCENARIOS["stationary"], duration_s=600.0, regressions=(Regression("LCP", 1.25),))
POLICY = parse_policy("name: fast\nmetrics:\n  - metric: LCP\n  - metric: errors\nwarmup: 0s\nmin_duration: 2m\n")
ARGS = (POLICY, SC.app, SC.canary, SC.baseline)


@pytest.fixture(scope="module")
def records() -> list[bytes]:
    return [orjson.dumps(b) for b in generate_beacons(SC, seed=5)]


def test_the_default_rollout_starts_with_the_data(records):
    made = run_backtest([records], *ARGS)
    given = run_backtest([records], *ARGS, rollout=backtest_rollout(SC.app, SC.canary, SC.baseline, POLICY))
    assert [v.to_dict() for v in given.verdicts] == [v.to_dict() for v in made.verdicts]
    assert made.verdicts[0].inputs["windows"][0] == SC.start_ms and made.final.verdict == "rollback"


def test_an_override_holds_the_rollback_until_it_expires(records):
    plain = run_backtest([records], *ARGS)
    rollout_id = f"{SC.app}:{SC.canary}"
    until = plain.final.at + 60_000
    hold = Override(rollout_id, "hold", "ana", "launch freeze", at=SC.start_ms, ticket="OPS-1", expires_at=until)
    other = Override("other-app:r9", "rollback", "bo", "not this rollout", at=SC.start_ms)
    held = run_backtest([records], *ARGS, overrides=[hold, other])
    during = [v for v in held.verdicts if v.at < until]
    assert during and all(v.verdict == "hold" and v.overrides[0]["active"] for v in during)
    assert held.final.verdict == "rollback" and held.final.at >= until


def test_dry_run_policies_are_judged_beside_the_enforcing_one(records):
    lenient = parse_policy("name: lenient\nmetrics:\n  - metric: LCP\n    rollback_tolerance: 1.0\n"
                           "    promote_tolerance: 1.0\nwarmup: 0s\nmin_duration: 2m\n")
    rollout = replace(backtest_rollout(SC.app, SC.canary, SC.baseline, POLICY),
                      dry_run_policies=(replace(lenient, dry_run=True),))
    result = run_backtest([records], *ARGS, rollout=rollout)
    dry = [v for v in result.verdicts if v.key == f"{rollout.id}~dry-run:lenient"]
    enforcing = [v for v in result.verdicts if v.key == rollout.id]
    assert dry and all(v.policy["dry_run"] and v.verdict != "rollback" for v in dry)
    assert enforcing[-1].verdict == "rollback" and result.final is enforcing[-1]


def test_windows_before_the_rollouts_start_and_after_its_end_are_not_judged(records):
    start, end = SC.start_ms + 120_000, SC.start_ms + 150_000
    rollout = Rollout(f"{SC.app}:{SC.canary}", SC.app, SC.canary, SC.baseline, start, POLICY, ended_at=end)
    result = run_backtest([records], *ARGS, rollout=rollout, stop_at_decision=False)
    assert [v.inputs["windows"][1] for v in result.verdicts] == list(range(start + 5000, end + 1, 5000))
    assert result.verdicts[0].inputs["elapsed_ms"] == 5000  # the gate's clock starts with the rollout
