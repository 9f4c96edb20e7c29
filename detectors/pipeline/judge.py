"""Stage 2: merge the partitions' window summaries and run each rollout's gate.

A :class:`Judge` owns some partitions of ``rum.windows``. Every record there comes from
one ``rum.beacons`` partition (its *source*) and says how far that source has closed its
windows (``closed_before``), with the summaries it closed. A window is judged once every
source has passed it (sources reported idle do not hold it back), with all the sources'
summaries merged; each (source, window, cohort) counts once, so the summaries a restarted
stage 1 publishes again change nothing.

Which rollouts exist comes from ``rum.rollouts`` (:meth:`Judge.apply_rollout`). A rollout
sees every window from its start on, whether the window was judged before or after the
rollout became known (windows are kept for ``history_ms``), so its verdicts depend only on
its definition and the windows: the same in a live run, after a restart that replays
``rum.windows``, and in a replay of ``rum.beacons``.

No I/O and no clock here: the caller stamps ``emitted_at``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from detectors.gate import Gate
from detectors.override import Override, apply_overrides
from detectors.policy import Policy
from detectors.rollout import Rollout
from detectors.verdict import Verdict
from detectors.windows import WindowSummary, window_start

__all__ = ["WindowsRecord", "Judge", "DEFAULT_HISTORY_MS"]

DEFAULT_HISTORY_MS = 6 * 3_600_000  # windows kept for rollouts that become known late


@dataclass
class WindowsRecord:
    """A ``rum.windows`` record: one source partition's progress and what it closed."""

    source: int
    closed_before: int | None
    idle: bool = False
    summaries: list[WindowSummary] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "closed_before": self.closed_before, "idle": self.idle,
                "summaries": [s.to_dict() for s in self.summaries]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WindowsRecord:
        return cls(int(d["source"]), d.get("closed_before"), bool(d.get("idle", False)),
                   [WindowSummary.from_dict(s) for s in d.get("summaries", ())])


class _Track:
    """One gate of a rollout (the enforcing policy, or a dry-run one) and where it stands."""

    def __init__(self, rollout: Rollout, policy: Policy) -> None:
        self.gate = Gate(policy, rollout.app, rollout.canary, rollout.baseline)
        self.gate.rollout = rollout.id
        self.last_window: int | None = None
        self.decided = False


class _Active:
    """A rollout being judged: its gates and its overrides."""

    def __init__(self, rollout: Rollout) -> None:
        self.rollout = rollout
        self.tracks = [_Track(rollout, rollout.policy)] + [_Track(rollout, p) for p in rollout.dry_run_policies]
        self.overrides: list[Override] = []

    def wants(self, track: _Track, start: int, size_ms: int) -> bool:
        r = self.rollout
        if track.decided or start < window_start(r.started_at, size_ms):
            return False
        if track.last_window is not None and start <= track.last_window:
            return False
        return r.ended_at is None or start < r.ended_at


class Judge:
    """Merges window summaries of ``sources`` partitions and judges rollouts on them.

    Parameters
    ----------
    sources
        Number of ``rum.beacons`` partitions; a window waits for all of them.
    history_ms
        How long judged windows are kept for rollouts that become known late.
    stop_at_decision
        A gate stops at its first decision (as live); False keeps judging every window,
        for a backtest that shows how the evidence goes on.
    """

    def __init__(self, sources: int, history_ms: int = DEFAULT_HISTORY_MS, stop_at_decision: bool = True) -> None:
        if sources < 1:
            raise ValueError("a judge needs at least one source partition")
        self.sources = sources
        self.history_ms = history_ms
        self.stop_at_decision = stop_at_decision
        self.progress: dict[int, int] = {}
        self.idle: set[int] = set()
        self.judged_before: int | None = None
        self.late_summaries = 0
        self._pending: dict[int, dict[tuple[int, Any], WindowSummary]] = defaultdict(dict)
        self._history: dict[str, list[tuple[int, int, list[WindowSummary]]]] = defaultdict(list)
        self.rollouts: dict[str, _Active] = {}
        self._early_overrides: dict[str, list[Override]] = {}

    # -- rollouts ---------------------------------------------------------------------------
    def apply_override(self, override: Override) -> None:
        """Record an override; it applies to the windows ending at or after its ``at``."""
        active = self.rollouts.get(override.rollout)
        if active is not None:
            active.overrides.append(override)
        else:
            self._early_overrides.setdefault(override.rollout, []).append(override)

    def apply_rollout(self, rollout: Rollout) -> list[Verdict]:
        """Start (or end) judging a rollout; returns verdicts for windows already judged."""
        active = self.rollouts.get(rollout.id)
        if active is not None:
            active.rollout = rollout  # an end, or a repeated start: the gate carries on
            return []
        active = self.rollouts[rollout.id] = _Active(rollout)
        active.overrides.extend(self._early_overrides.pop(rollout.id, ()))
        out = []
        for start, size_ms, summaries in self._history.get(rollout.app, ()):
            out += self._feed(active, start, size_ms, summaries)
        return out

    # -- windows ----------------------------------------------------------------------------
    def add(self, record: WindowsRecord) -> list[Verdict]:
        """Take one ``rum.windows`` record; return the verdicts of the windows it completed."""
        for s in record.summaries:
            if self.judged_before is not None and s.start < self.judged_before:
                self.late_summaries += 1  # judged already: a republication, or a straggler
                continue
            self._pending[s.start].setdefault((record.source, s.key), s)
        if record.closed_before is not None:
            self.progress[record.source] = max(self.progress.get(record.source, record.closed_before),
                                               record.closed_before)
        if record.idle:
            self.idle.add(record.source)
        else:
            self.idle.discard(record.source)
        return self._judge_complete()

    def _horizon(self) -> int | None:
        """Windows starting before this have been closed by every (non-idle) source."""
        busy = [p for p in range(self.sources) if p not in self.idle]
        if not busy:
            return max(self.progress.values(), default=None)
        if any(p not in self.progress for p in busy):
            return None
        return min(self.progress[p] for p in busy)

    def _judge_complete(self) -> list[Verdict]:
        horizon = self._horizon()
        if horizon is None or (self.judged_before is not None and horizon <= self.judged_before):
            return []
        self.judged_before = horizon
        out: list[Verdict] = []
        for start in sorted(s for s in self._pending if s < horizon):
            pending = self._pending.pop(start)
            # A fixed order (merging does not depend on it, but the explanation's inputs do).
            order = sorted(pending, key=lambda k: (tuple("" if v is None else v for v in k[1]), k[0]))
            out += self._dispatch(start, [pending[k] for k in order])
        return out

    def _dispatch(self, start: int, summaries: list[WindowSummary]) -> list[Verdict]:
        size_ms = summaries[0].size_ms
        out: list[Verdict] = []
        by_app: dict[str, list[WindowSummary]] = defaultdict(list)
        for s in summaries:
            by_app[s.key.app].append(s)
        for app, group in by_app.items():
            history = self._history[app]
            history.append((start, size_ms, group))
            while history and history[0][0] < start - self.history_ms:
                history.pop(0)
            for active in self.rollouts.values():
                if active.rollout.app == app:
                    out += self._feed(active, start, size_ms, group)
        return out

    def _feed(self, active: _Active, start: int, size_ms: int, summaries: Iterable[WindowSummary]) -> list[Verdict]:
        out = []
        for track in active.tracks:
            if not active.wants(track, start, size_ms):
                continue
            track.last_window = start
            verdict = track.gate.observe(start, size_ms, summaries, active.rollout.expected_share)
            if not track.gate.policy.dry_run:
                verdict = apply_overrides(verdict, active.overrides)
            if verdict.decided and self.stop_at_decision:
                track.decided = True
            out.append(verdict)
        return out
