"""Replay ``rum.beacons`` from a broker through the live code path, for backtests.

Each partition's records in the time range go through their own
:class:`~detectors.pipeline.aggregate.PartitionAggregator`, and a :class:`~detectors.pipeline.judge.Judge`
merges the partitions exactly as the live judge does; so the same topic gives the same
verdicts as the live run. The replay joins no consumer group and commits nothing.

Where to start: ``offsets_for_times(from − window − lateness)`` per partition (the extra
margin rebuilds the windows that straddle ``from``), then records older than that are
skipped by their timestamp, for brokers whose timestamp index is coarse. A partition ends
at its first record after ``to``, or at its end. As live, the last windows, which no later
beacon closed, are not judged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from detectors.override import Override
from detectors.policy import Policy
from detectors.verdict import Verdict
from detectors.pipeline.aggregate import DeadLetter, PartitionAggregator
from streams.offline.backtest import BacktestResult
from detectors.pipeline.judge import Judge, WindowsRecord
from detectors.rollout import Rollout
from streams.live.topics import read_to_end

__all__ = ["ReplayResult", "replay_topic"]


@dataclass
class ReplayResult(BacktestResult):
    """A :class:`BacktestResult` whose rejects are :class:`DeadLetter` (with their offsets)."""

    rejects: list[DeadLetter] = field(default_factory=list)
    records: int = 0


async def replay_topic(
    servers: str,
    topic: str,
    policy: Policy,
    app: str,
    canary: str,
    baseline: str,
    *,
    from_ms: int,
    to_ms: int | None = None,
    expected_share: float | None = None,
    window_ms: int,
    lateness_ms: int,
    stop_at_decision: bool = True,
    keep_rejects: int = 100,
    on_verdict: Callable[[Verdict], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    rollout_id: str | None = None,
    overrides_topic: str | None = None,
) -> ReplayResult:
    """Judge one rollout over the records of ``topic`` from ``from_ms`` to ``to_ms``."""
    result = ReplayResult()
    start_at = from_ms - window_ms - lateness_ms
    aggs: dict[int, PartitionAggregator] = {}
    records_by_partition: dict[int, list[WindowsRecord]] = {}
    finished: set[int] = set()
    async for batch in read_to_end(servers, topic, from_timestamp=start_at):
        p = batch[0].partition
        if p in finished:
            continue
        agg = aggs.setdefault(p, PartitionAggregator(p, window_ms, lateness_ms))
        chosen = []
        for r in batch:
            if to_ms is not None and r.timestamp > to_ms:
                finished.add(p)
                break
            if r.timestamp >= start_at:
                chosen.append((r.offset, r.value))
        step = agg.process(chosen)
        result.records += len(chosen)
        result.beacons += step.beacons
        result.rejected += len(step.rejects)
        room = keep_rejects - len(result.rejects)
        if room > 0:
            result.rejects.extend(step.rejects[:room])
        if step.closed:
            records_by_partition.setdefault(p, []).append(WindowsRecord(p, agg.closed_before, False, step.closed))
        if on_progress:
            on_progress(result.records, result.beacons)
    # Partitions never seen hold nothing in the range: they must not hold the others back.
    sources = max(aggs, default=-1) + 1
    judge = Judge(max(sources, 1))
    rollout = Rollout(rollout_id or f"{app}:{canary}", app, canary, baseline, from_ms, policy, expected_share)
    if overrides_topic is not None:  # replayed like evidence: the same verdicts as live
        async for batch in read_to_end(servers, overrides_topic):
            for r in batch:
                try:
                    override = Override(**orjson.loads(r.value))
                except (TypeError, ValueError, orjson.JSONDecodeError):
                    continue
                if override.rollout == rollout.id:
                    judge.apply_override(override)
    judge.apply_rollout(rollout)
    for p in range(sources):
        if p not in aggs or aggs[p].closed_before is None:
            judge.add(WindowsRecord(p, None, idle=True))
    # Feed the partitions' records in window order, so the judge holds few pending windows.
    queue = sorted(((rec.closed_before or 0, p, i, rec) for p, recs in records_by_partition.items()
                    for i, rec in enumerate(recs)), key=lambda x: x[:3])
    for *_, rec in queue:
        for verdict in judge.add(rec):
            result.verdicts.append(verdict)
            if on_verdict:
                on_verdict(verdict)
            if stop_at_decision and verdict.decided:
                break
        if stop_at_decision and result.final is not None and result.final.decided:
            break
    result.late = sum(a.windows.late_total for a in aggs.values())
    return result
