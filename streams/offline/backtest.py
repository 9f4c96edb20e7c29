"""Backtest: a rollout judged over beacon files in event time, at full speed.

The lines of the files are the records of one partition, run through the one driver
(:class:`detectors.pipeline.run.Run`) that the topic replay and the tests use too, with
the stage-1 and judge code of the live worker. Nothing here reads the wall clock, so the
same files give the same verdicts every time.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from detectors.override import Override
from detectors.pipeline.run import Run, RunResult
from detectors.policy import Policy
from detectors.rollout import Rollout
from detectors.verdict import Verdict
from detectors.windows import DEFAULT_LATENESS_MS, DEFAULT_WINDOW_MS

__all__ = ["BacktestResult", "backtest_rollout", "read_lines", "run_backtest"]

CHUNK = 4096  # records per decode call: big enough to amortise, small enough to stream

BacktestResult = RunResult


def read_lines(paths: Iterable[str | Path], chunk: int = CHUNK) -> Iterator[list[bytes]]:
    """NDJSON records from files (``.gz`` decompressed), in chunks, files in the order given."""
    for path in paths:
        path = Path(path)
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            lines: list[bytes] = []
            for line in f:
                if line.strip():
                    lines.append(line)
                    if len(lines) >= chunk:
                        yield lines
                        lines = []
            if lines:
                yield lines


def backtest_rollout(app: str, canary: str, baseline: str, policy: Policy, *,
                     expected_share: float | None = None, rollout_id: str | None = None) -> Rollout:
    """The rollout a backtest judges when none is given: from the first window of the data."""
    return Rollout(rollout_id or f"{app}:{canary}", app, canary, baseline, started_at=0, policy=policy,
                   expected_share=expected_share)


def run_backtest(
    chunks: Iterable[list[bytes]],
    policy: Policy,
    app: str,
    canary: str,
    baseline: str,
    *,
    expected_share: float | None = None,
    window_ms: int = DEFAULT_WINDOW_MS,
    lateness_ms: int = DEFAULT_LATENESS_MS,
    stop_at_decision: bool = True,
    keep_rejects: int = 100,
    on_verdict: Callable[[Verdict], None] | None = None,
    rollout: Rollout | None = None,
    overrides: Iterable[Override] = (),
) -> RunResult:
    """Judge record chunks (one partition, in order); stop at the first decision unless told not to.

    ``rollout`` replaces the one made of ``app``, ``canary``, ``baseline``, ``policy`` and
    ``expected_share`` (its dry-run policies, ``started_at`` and ``ended_at`` then apply, as
    live); ``overrides`` apply from their time on, as live. A reject's ``offset`` is the
    number of its line among all the non-blank lines, from 0.
    """
    if rollout is None:
        rollout = backtest_rollout(app, canary, baseline, policy, expected_share=expected_share)
    run = Run(rollout, overrides=overrides, window_ms=window_ms, lateness_ms=lateness_ms,
              stop_at_decision=stop_at_decision, keep_rejects=keep_rejects, on_verdict=on_verdict)
    offset = 0
    for records in chunks:
        if run.add(0, list(enumerate(records, offset))):
            break
        offset += len(records)
    return run.finish(flush=True)
