"""The one driver (detectors.pipeline.run.Run): partitions, idle sources, stopping, stage 2 alone."""

from __future__ import annotations

import zlib
from dataclasses import replace

import orjson
import pytest

from detectors.pipeline.run import Run
from detectors.policy import parse_policy
from detectors.rollout import Rollout
from detectors.windows import TumblingWindows
from streams.offline.simulate import SCENARIOS, Regression, generate_beacons, generate_windows

SC = replace(SCENARIOS["stationary"], duration_s=600.0, regressions=(Regression("LCP", 1.25),))
POLICY = parse_policy("name: fast\nmetrics:\n  - metric: LCP\n  - metric: errors\nwarmup: 0s\nmin_duration: 2m\n")
ROLLOUT = Rollout(f"{SC.app}:{SC.canary}", SC.app, SC.canary, SC.baseline, SC.start_ms, POLICY)


@pytest.fixture(scope="module")
def records() -> list[bytes]:
    return [orjson.dumps(b) for b in generate_beacons(SC, seed=5)]


def one_partition(records, **kw):
    run = Run(ROLLOUT, **kw)
    run.add(0, list(enumerate(records)))
    return run.finish(flush=True)


def by_session(records, n):
    parts = [[] for _ in range(n)]
    for r in records:
        p = zlib.crc32(orjson.loads(r)["session"].encode()) % n
        parts[p].append((len(parts[p]), r))
    return parts


def test_partitions_give_the_one_partition_verdicts(records):
    want = one_partition(records)
    assert want.final.verdict == "rollback" and want.final.decided
    parts = by_session(records, 3)
    run = Run(ROLLOUT, sources=4)  # partition 3 never has a record: idle at the end
    for i in range(0, max(map(len, parts)), 400):
        for p, recs in enumerate(parts):
            if run.add(p, recs[i:i + 400]):
                break
    got = run.finish(flush=True)
    assert [v.to_dict() for v in got.verdicts] == [v.to_dict() for v in want.verdicts]


def test_an_unseen_partition_holds_windows_until_the_end(records):
    run = Run(ROLLOUT, sources=2)
    run.add(0, list(enumerate(records[:20_000])))
    assert run.result.verdicts == []  # partition 1 has said nothing: nothing is complete
    assert run.finish().verdicts  # at the end it is idle, and the windows are judged


def test_stop_at_decision_stops_taking_records(records):
    run = Run(ROLLOUT)
    stopped_at = None
    for i in range(0, len(records), 1000):
        if run.add(0, list(enumerate(records[i:i + 1000], i))):
            stopped_at = i
            break
    assert stopped_at is not None and stopped_at + 1000 < len(records)
    assert run.add(0, [(len(records), records[-1])]) is True
    assert run.result.final.decided and sum(v.decided for v in run.result.verdicts) == 1


def test_without_stopping_every_window_is_judged_after_the_decision(records):
    stopping, going_on = one_partition(records), one_partition(records, stop_at_decision=False)
    n = len(stopping.verdicts)
    assert [v.to_dict() for v in going_on.verdicts[:n]] == [v.to_dict() for v in stopping.verdicts]
    assert len(going_on.verdicts) == 120 > n  # one per 5-second window of the 10 minutes
    assert going_on.final.at == SC.start_ms + int(SC.duration_s * 1000)  # a verdict is at its window's end


def test_a_dry_run_decision_does_not_stop_the_run(records):
    strict = parse_policy("name: strict\nmetrics:\n  - metric: LCP\n    rollback_tolerance: 0.01\n"
                          "warmup: 0s\nmin_duration: 2m\n")
    lenient = parse_policy("name: lenient\nmetrics:\n  - metric: LCP\n    rollback_tolerance: 1.0\n"
                           "    promote_tolerance: 1.0\nwarmup: 0s\nmin_duration: 1h\n")
    rollout = replace(ROLLOUT, policy=lenient, dry_run_policies=(replace(strict, dry_run=True),))
    run = Run(rollout)
    run.add(0, list(enumerate(records)))
    result = run.finish(flush=True)
    dry = [v for v in result.verdicts if v.policy["dry_run"]]
    enforcing = [v for v in result.verdicts if not v.policy["dry_run"]]
    assert dry and dry[-1].verdict == "rollback"  # the strict dry run decided ...
    assert not enforcing[-1].decided  # ... and the enforcing lenient policy went on judging
    assert enforcing[-1].at > dry[-1].at


def test_stage_two_alone_judges_the_summaries_as_stage_one_makes_them():
    windows = TumblingWindows(5000, 0)
    run = Run(ROLLOUT, window_ms=5000, lateness_ms=0)
    for batch in generate_windows(SC, seed=5):
        if run.add_windows(0, windows.add(batch)):
            break
    result = run.finish()
    assert result.final.verdict == "rollback" and result.beacons == 0
    assert [v.seq for v in result.verdicts] == list(range(1, len(result.verdicts) + 1))


def test_the_deciding_window_is_reported_whole(records):
    lenient = parse_policy("name: lenient\nmetrics:\n  - metric: LCP\n    rollback_tolerance: 1.0\n"
                           "    promote_tolerance: 1.0\nwarmup: 0s\nmin_duration: 1h\n")
    rollout = replace(ROLLOUT, dry_run_policies=(replace(lenient, dry_run=True),))
    run = Run(rollout)
    run.add(0, list(enumerate(records)))
    verdicts = run.finish(flush=True).verdicts
    last = verdicts[-1].at
    assert [v.key for v in verdicts if v.at == last] == [rollout.id, f"{rollout.id}~dry-run:lenient"]
    assert verdicts[-2].decided and not verdicts[-1].decided  # the enforcing one decided, the dry run did not


def test_a_rollout_recorded_again_carries_on(records):
    run = Run(ROLLOUT, stop_at_decision=False)
    run.add(0, list(enumerate(records[:20_000])))
    before = len(run.result.verdicts)
    run.update_rollout(replace(ROLLOUT, ended_at=SC.start_ms + 300_000))
    run.add(0, list(enumerate(records[20_000:], 20_000)))
    ended = run.finish(flush=True).verdicts
    assert 0 < before < 60 and ended[-1].at == SC.start_ms + 300_000  # nothing judged after its end
    assert [v.seq for v in ended] == list(range(1, len(ended) + 1))  # the same gate carried on
    with pytest.raises(ValueError, match="a run judges"):
        run.update_rollout(replace(ROLLOUT, id="other"))
