"""Replay ``rum.beacons`` from a broker through the one driver, for backtests.

Each partition's records in the time range go to :class:`detectors.pipeline.run.Run`,
which runs them through the live worker's stage-1 and judge code; so the same topic gives
the same verdicts as the live run. The replay joins no consumer group and commits nothing.

Where to start: ``offsets_for_times(from − window − lateness)`` per partition (the extra
margin rebuilds the windows that straddle ``from``), then records older than that are
skipped by their timestamp, for brokers whose timestamp index is coarse. A partition ends
at its first record after ``to``, or at its end. As live, the last windows, which no later
beacon closed, are not judged.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson

from detectors.override import Override
from detectors.pipeline.run import Run, RunResult
from detectors.policy import Policy
from detectors.rollout import Rollout
from detectors.verdict import Verdict
from streams.live.topics import partition_count, read_to_end

__all__ = ["ReplayResult", "read_overrides", "replay_topic"]

#: A :class:`RunResult` whose rejects carry the topic offsets of their records.
ReplayResult = RunResult


async def read_overrides(servers: str, topic: str, rollout_id: str) -> list[Override]:
    """The overrides of one rollout on ``topic``; records that are not overrides are skipped."""
    found = []
    async for batch in read_to_end(servers, topic):
        for r in batch:
            try:
                override = Override(**orjson.loads(r.value))
            except (TypeError, ValueError, orjson.JSONDecodeError):
                continue
            if override.rollout == rollout_id:
                found.append(override)
    return found


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
) -> RunResult:
    """Judge one rollout over the records of ``topic`` from ``from_ms`` to ``to_ms``."""
    rollout = Rollout(rollout_id or f"{app}:{canary}", app, canary, baseline, from_ms, policy, expected_share)
    overrides = [] if overrides_topic is None else await read_overrides(servers, overrides_topic, rollout.id)
    run = Run(rollout, sources=max(1, await partition_count(servers, topic)), overrides=overrides,
              window_ms=window_ms, lateness_ms=lateness_ms, stop_at_decision=stop_at_decision,
              keep_rejects=keep_rejects, on_verdict=on_verdict)
    start_at = from_ms - window_ms - lateness_ms
    finished: set[int] = set()
    async for batch in read_to_end(servers, topic, from_timestamp=start_at):
        p = batch[0].partition
        if p in finished:
            continue
        chosen = []
        for r in batch:
            if to_ms is not None and r.timestamp > to_ms:
                finished.add(p)
                break
            if r.timestamp >= start_at:
                chosen.append((r.offset, r.value))
        if run.add(p, chosen):
            break
        if on_progress:
            on_progress(run.result.records, run.result.beacons)
    return run.finish()
