"""Backtest: run the decision core over beacon files in event time, at full speed.

The same :mod:`detectors` code the live agents run, fed from files instead of Kafka:
decode records in batches, count them into event-time windows, hand each closed window
to the gate, collect the verdicts. Nothing here reads the wall clock, so the same files
give the same verdicts every time.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from itertools import groupby
from pathlib import Path

from detectors.decode import Reject, decode_records
from detectors.gate import Gate
from detectors.policy import Policy
from detectors.verdict import Verdict
from detectors.windows import DEFAULT_LATENESS_MS, DEFAULT_WINDOW_MS, TumblingWindows, WindowSummary

__all__ = ["BacktestResult", "read_lines", "run_backtest", "verdicts_from_windows"]

CHUNK = 4096  # records per decode call: big enough to amortise, small enough to stream


@dataclass
class BacktestResult:
    verdicts: list[Verdict] = field(default_factory=list)
    beacons: int = 0
    rejects: list[Reject] = field(default_factory=list)
    rejected: int = 0
    late: int = 0

    @property
    def final(self) -> Verdict | None:
        return self.verdicts[-1] if self.verdicts else None


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


def verdicts_from_windows(gate: Gate, summaries: Iterable[WindowSummary],
                          expected_share: float | None = None) -> Iterator[Verdict]:
    """Feed closed summaries (in window order) to the gate, one verdict per window.

    Windows without any summary of the gate's app are skipped: they say nothing about it.
    """
    for start, group in groupby(summaries, key=lambda s: s.start):
        group = list(group)
        if not any(s.key.app == gate.app for s in group):
            continue
        verdict = gate.observe(start, group[0].size_ms, group, expected_share)
        # Processing time is event time in a backtest: replays stay byte-identical.
        yield replace(verdict, emitted_at=verdict.at)


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
) -> BacktestResult:
    """Run the gate over record chunks; stop at the first decision unless told not to."""
    gate = Gate(policy, app, canary, baseline)
    windows = TumblingWindows(window_ms, lateness_ms)
    result = BacktestResult()

    def feed(closed: list[WindowSummary]) -> bool:
        for verdict in verdicts_from_windows(gate, closed, expected_share):
            result.verdicts.append(verdict)
            if on_verdict:
                on_verdict(verdict)
            if stop_at_decision and verdict.decided:
                return True
        return False

    for records in chunks:
        decoded = decode_records(records)
        result.beacons += len(decoded.batch)
        result.rejected += len(decoded.rejects)
        room = keep_rejects - len(result.rejects)
        if room > 0:
            result.rejects.extend(decoded.rejects[:room])
        if feed(windows.add(decoded.batch)):
            result.late = windows.late_total
            return result
    feed(windows.flush())
    result.late = windows.late_total
    return result
