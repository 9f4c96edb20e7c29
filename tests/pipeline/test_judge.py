"""Stage 1 per partition + stage 2 judge, without Kafka: they give the file backtest's verdicts,
whatever the partitioning, batching, restarts of stage 1 or arrival order of rollouts.

The plain paths go through the one driver (:class:`~detectors.pipeline.run.Run`); a stage-1
crash, a late rollout and the judge's own bookkeeping are wired by hand below."""

from __future__ import annotations

import zlib
from dataclasses import replace

import orjson
import pytest

from detectors.pipeline.aggregate import Checkpoint, PartitionAggregator
from detectors.pipeline.judge import Judge, WindowsRecord
from detectors.pipeline.run import Run
from detectors.policy import parse_policy
from detectors.rollout import Rollout
from streams.offline.backtest import run_backtest
from streams.offline.simulate import SCENARIOS, Regression, generate_beacons

SC = replace(SCENARIOS["stationary"], duration_s=600.0, regressions=(Regression("LCP", 1.25),))
POLICY = parse_policy("name: fast\nmetrics:\n  - metric: LCP\n  - metric: errors\nwarmup: 0s\nmin_duration: 2m\n")
ROLLOUT = Rollout("shop-web:canary", SC.app, SC.canary, SC.baseline, SC.start_ms, POLICY)


@pytest.fixture(scope="module")
def records() -> list[bytes]:
    return [orjson.dumps(b) for b in generate_beacons(SC, seed=5)]


def backtest_verdicts(records: list[bytes]) -> list[dict]:
    result = run_backtest([records], POLICY, SC.app, SC.canary, SC.baseline, stop_at_decision=True)
    return [_core(v) for v in result.verdicts]


def _core(v) -> dict:
    d = v.to_dict()
    d.pop("emitted_at")
    d.pop("rollout")
    return d


def partitioned(records: list[bytes], n: int) -> list[list[tuple[int, bytes]]]:
    """Records spread over ``n`` partitions by session, as a keyed producer would."""
    parts: list[list[tuple[int, bytes]]] = [[] for _ in range(n)]
    for r in records:
        p = zlib.crc32(orjson.loads(r)["session"].encode()) % n
        parts[p].append((len(parts[p]), r))
    return parts


def round_robin(parts, chunk: int):
    """``(partition, records)`` batches, ``chunk`` records at a time, like a consumer would."""
    pos = [0] * len(parts)
    while any(pos[p] < len(parts[p]) for p in range(len(parts))):
        for p, recs in enumerate(parts):
            if pos[p] < len(recs):
                yield p, recs[pos[p]:pos[p] + chunk]
                pos[p] += chunk


def through_run(parts, chunk: int, rollout: Rollout = ROLLOUT) -> list[dict]:
    """The partitions' records, round-robin, through the one driver (as the topic replay)."""
    run = Run(rollout, sources=len(parts))
    for p, batch in round_robin(parts, chunk):
        run.add(p, batch)
    return [_core(v) for v in run.finish(flush=True).verdicts]


def live(parts, chunk: int, crash_at: dict[int, int] | None = None, rollout_first: bool = True):
    """Stage 1 and the judge wired by hand, for what a :class:`Run` does not do: a stage-1
    crash (restart from the last checkpoint) and a rollout that becomes known late.
    Round-robin over partitions, ``chunk`` records at a time, like a consumer would."""
    judge = Judge(len(parts))
    verdicts = judge.apply_rollout(ROLLOUT) if rollout_first else []
    aggs = [PartitionAggregator(p) for p in range(len(parts))]
    checkpoints: dict[int, Checkpoint] = {}
    pos = [0] * len(parts)
    crashed = set()
    while any(pos[p] < len(parts[p]) for p in range(len(parts))):
        for p, recs in enumerate(parts):
            if pos[p] >= len(recs):
                continue
            if crash_at and p in crash_at and pos[p] >= crash_at[p] and p not in crashed:
                # kill -9: the state is gone; resume from the last checkpoint
                crashed.add(p)
                cp = checkpoints.get(p)
                aggs[p] = PartitionAggregator(p, checkpoint=cp)
                pos[p] = cp.offset if cp else 0
            step = aggs[p].process(recs[pos[p]:pos[p] + chunk])
            pos[p] += chunk
            if step.checkpoint:
                checkpoints[p] = step.checkpoint
            verdicts += judge.add(WindowsRecord(p, aggs[p].closed_before, False, step.closed))
    end = max(a.watermark for a in aggs) + 60_000
    for p, agg in enumerate(aggs):
        step = agg.advance(end)
        verdicts += judge.add(WindowsRecord(p, agg.closed_before, False, step.closed))
    if not rollout_first:
        verdicts = judge.apply_rollout(ROLLOUT)
    return [_core(v) for v in verdicts], judge


def test_partitions_and_batching_give_the_backtest_verdicts(records):
    want = backtest_verdicts(records)
    assert want[-1]["verdict"] == "rollback"
    for n, chunk in ((1, 500), (3, 37), (4, 1000)):
        got = through_run(partitioned(records, n), chunk)
        assert got == want, (n, chunk)


def test_a_rollout_known_late_is_judged_on_the_windows_before(records):
    got, _ = live(partitioned(records, 3), 200, rollout_first=False)
    assert got == backtest_verdicts(records)


def test_a_stage1_crash_changes_nothing(records):
    parts = partitioned(records, 3)
    got, judge = live(parts, 150, crash_at={0: 2000, 2: 3500})
    assert got == backtest_verdicts(records)
    assert judge.late_summaries > 0  # republished windows came and were dropped


def test_an_idle_partition_does_not_hold_back_the_others():
    judge = Judge(2)
    judge.apply_rollout(ROLLOUT)
    assert judge.add(WindowsRecord(0, SC.start_ms + 10_000)) == []
    assert judge.judged_before is None  # partition 1 has said nothing yet
    judge.add(WindowsRecord(1, None, idle=True))
    assert judge.judged_before == SC.start_ms + 10_000


def test_rollout_records_round_trip():
    again = Rollout.from_dict(orjson.loads(orjson.dumps(ROLLOUT.to_dict())))
    assert again == ROLLOUT and again.policy.hash == POLICY.hash


def test_an_override_is_applied_from_its_time_until_it_expires_and_stays_on_record():
    from detectors.override import Override

    records = [orjson.dumps(b) for b in generate_beacons(replace(SC, regressions=(), duration_s=240.0), seed=5)]

    start = SC.start_ms
    hold = Override(ROLLOUT.id, "hold", "ana", "launch freeze", at=start + 60_000, ticket="OPS-1",
                    expires_at=start + 120_000)
    clean = replace(POLICY, min_duration_ms=3_600_000)  # never decides: every window gives a verdict
    # The override is applied before the rollout (known before it: kept until it arrives).
    run = Run(replace(ROLLOUT, policy=clean), overrides=[hold])
    for i in range(0, len(records), 500):
        run.add(0, [(o, r) for o, r in enumerate(records) if i <= o < i + 500])
    verdicts = run.finish().verdicts
    before = [v for v in verdicts if v.at < hold.at]
    during = [v for v in verdicts if hold.at <= v.at < hold.expires_at]
    after = [v for v in verdicts if v.at >= hold.expires_at]
    assert before and during and after
    assert all(v.verdict == "hold" and v.reasons[0].startswith("override by ana: hold, launch freeze (OPS-1)")
               for v in during)
    assert all(v.overrides[0]["active"] for v in during)
    assert all(v.verdict == "continue" and not v.overrides[0]["active"] for v in after)
    assert all(v.verdict == "continue" and not v.overrides[0]["active"] for v in before)  # on record, not yet


def test_dry_run_policies_publish_beside_the_enforcing_one(records):
    lenient = parse_policy("name: lenient\nmetrics:\n  - metric: LCP\n    rollback_tolerance: 1.0\n    promote_tolerance: 1.0\n"
                           "warmup: 0s\nmin_duration: 2m\n")
    rollout = replace(ROLLOUT, dry_run_policies=(replace(lenient, dry_run=True),))
    again = Rollout.from_dict(orjson.loads(orjson.dumps(rollout.to_dict())))
    assert again.dry_run_policies[0].dry_run and again.dry_run_policies[0].name == "lenient"
    judge = Judge(1)
    verdicts = judge.apply_rollout(rollout)
    agg = PartitionAggregator(0)
    verdicts += judge.add(WindowsRecord(0, None, False, []))
    step = agg.process(list(enumerate(records)))
    verdicts += judge.add(WindowsRecord(0, agg.closed_before, False, step.closed))
    enforcing = [v for v in verdicts if v.key == rollout.id]
    dry = [v for v in verdicts if v.key == f"{rollout.id}~dry-run:lenient"]
    assert enforcing[-1].verdict == "rollback"  # +25 % LCP
    assert dry and all(v.policy["dry_run"] for v in dry)
    assert all(v.verdict != "rollback" for v in dry)  # tolerates +100 %: the trust-building view
    # It judges every window the enforcing policy judges, and stops with the rollout, which
    # the enforcing decision ends (after a rollback no canary is left to compare).
    assert [v.at for v in dry] == [v.at for v in enforcing]
    ended = judge.rollouts[rollout.id].rollout
    assert ended.ended_at == enforcing[-1].at
    assert ended.end_reason == f"decided: rollback ({enforcing[-1].reason_codes[0]}), verdict #{enforcing[-1].seq}"


def test_a_person_answers_the_deadline_hold_after_the_rollout_ended(records):
    """The deadline's final hold ends the rollout and waits for a person: their promote (or
    rollback) reaches a verdict on the next window, once, also after the end."""
    from detectors.override import Override

    clean = [orjson.dumps(b) for b in generate_beacons(replace(SC, regressions=(), duration_s=420.0), seed=5)]
    short = replace(POLICY, min_duration_ms=60_000, max_duration_ms=120_000,
                    metrics=tuple(replace(m, promote_tolerance=0.0) for m in POLICY.metrics))
    deadline_at = SC.start_ms + 120_000
    promote = Override(ROLLOUT.id, "promote", "ana", "checked by hand", at=deadline_at + 60_000)
    run = Run(replace(ROLLOUT, policy=short), overrides=[promote])
    run.add(0, list(enumerate(clean)))
    verdicts = run.finish(flush=True).verdicts
    held = [v for v in verdicts if v.reason_codes[:1] == ["deadline"]]
    assert len(held) == 1 and held[0].hold == "final"
    assert run.judge.rollouts[ROLLOUT.id].rollout.ended_at == held[0].at
    answer = verdicts[-1]
    assert verdicts[-2] is held[0] and answer.verdict == "promote" and answer.seq == held[0].seq + 1
    assert answer.reason_codes[:2] == ["override_promote", "deadline"]
    assert promote.at <= answer.at < promote.at + 5_000  # the first window the override is in effect for


# -- bounded history ---------------------------------------------------------------------------

def _window(app: str, start: int, releases: int = 1, size_ms: int = 5000) -> list:
    from detectors.beacon import CohortKey
    from detectors.windows import WindowSummary

    out = []
    for r in range(releases):
        s = WindowSummary.empty(CohortKey(app, f"r{r}", None, "mobile"), start, size_ms)
        s.page_views = 1
        out.append(s)
    return out


def test_an_app_that_stops_sending_is_dropped_once_its_windows_are_older_than_the_history():
    """The horizon is the newest judged window, not the app's own: an app that stops sending
    must not keep its last windows forever."""
    judge = Judge(1, history_ms=60_000)
    t0 = SC.start_ms
    judge.add(WindowsRecord(0, t0 + 5000, False, _window("gone", t0)))
    assert judge.state_size()["history_apps"] == 1
    for i in range(1, 20):  # only "shop-web" sends from here on
        start = t0 + i * 5000
        judge.add(WindowsRecord(0, start + 5000, False, _window("shop-web", start)))
    size = judge.state_size()
    assert size["history_apps"] == 1  # "gone" was pruned
    assert size["history_windows"] == 13  # windows within 60 s of the newest, both ends kept


def test_the_history_holds_at_most_max_history_summaries_and_drops_the_oldest_first():
    judge = Judge(1, history_ms=3_600_000, max_history_summaries=50)
    t0 = SC.start_ms
    for i in range(30):
        start = t0 + i * 5000
        judge.add(WindowsRecord(0, start + 5000, False, _window(f"app-{i % 3}", start, releases=4)))
        assert judge.state_size()["history_summaries"] <= 50
    late = Rollout("app-2:r1", "app-2", "r1", "r0", t0, POLICY)
    verdicts = judge.apply_rollout(late)
    assert verdicts and min(v.inputs["windows"][0] for v in verdicts if v.inputs["windows"]) >= t0 + 18 * 5000


def test_the_history_keeps_one_summary_per_cohort_however_many_partitions_sent_it():
    judge = Judge(3, history_ms=60_000)
    t0 = SC.start_ms
    for p in range(3):
        judge.add(WindowsRecord(p, t0 + 5000, False, _window("shop-web", t0, releases=2)))
    assert judge.state_size()["history_summaries"] == 2


def test_the_history_keeps_summaries_encoded_within_max_history_bytes():
    """A busy cohort's summary holds thousands of session hashes: the history keeps them in
    their wire form (8 bytes each, base64), and drops the oldest beyond its byte budget."""
    t0 = SC.start_ms

    def busy(start: int) -> list[WindowSummary]:
        out = _window("shop-web", start, releases=2)
        for r, s in enumerate(out):
            s.page_views = 9000
            s.session_ids = {(r << 40) + start + k for k in range(3000)}
        return out

    one = sum(len(orjson.dumps(s.to_dict())) for s in busy(t0))
    assert one < 2 * (3000 * 11 + 8000)  # about 11 bytes a session, plus the sketches
    judge = Judge(1, history_ms=3_600_000, max_history_bytes=10 * one)
    for i in range(25):
        start = t0 + i * 5000
        judge.add(WindowsRecord(0, start + 5000, False, busy(start)))
        assert judge.state_size()["history_bytes"] <= 10 * one
    assert judge.state_size()["history_windows"] == 10
    late = Rollout("shop-web:r1", "shop-web", "r1", "r0", t0, POLICY)
    verdicts = judge.apply_rollout(late)  # decoded again for the rollout known late
    assert [v.inputs["windows"][1] for v in verdicts] == [t0 + i * 5000 for i in range(16, 26)]
    known = Judge(1)  # the same rollout, known from the start, fed the same windows as they came
    known.apply_rollout(late)
    live = [v for i in range(15, 25) for v in known.add(WindowsRecord(0, t0 + (i + 1) * 5000, False,
                                                                       busy(t0 + i * 5000)))]
    assert [_core(v) for v in verdicts] == [_core(v) for v in live]


def test_the_history_keeps_the_encodings_stage_1_made_and_they_are_the_summaries_own():
    """Records from :func:`windows_records` carry their summaries' encodings (made to size
    the records): the history keeps those bytes, equal to encoding the summaries again; a
    cohort that several partitions sent is merged and encoded anew; a record without
    encodings (off the wire) is encoded by the judge."""
    from detectors.pipeline.aggregate import windows_records
    from detectors.windows import WindowSummary

    t0 = SC.start_ms
    judge = Judge(2, history_ms=60_000)
    alone = _window("shop-web", t0, releases=2)
    shared = _window("shop-web", t0, releases=2)[:1]
    first = windows_records(0, t0 + 5000, alone)[0]
    assert first.encoded == [orjson.dumps(s.to_dict()) for s in first.summaries]
    judge.add(first)
    judge.add(WindowsRecord(1, t0 + 5000, False, shared))  # no encodings: the judge makes them
    (entry,) = judge._history["shop-web"]
    merged = WindowSummary.empty(alone[0].key, t0, 5000)
    merged.merge(alone[0])
    merged.merge(shared[0])
    assert sorted(entry[2]) == sorted([orjson.dumps(merged.to_dict()), orjson.dumps(alone[1].to_dict())])
    assert judge._encoded == {}  # nothing kept for windows already judged
