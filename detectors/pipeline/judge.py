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

from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from detectors.gate import Gate
from detectors.override import Override, apply_overrides
from detectors.policy import Policy
from detectors.releases import NewRelease, ReleaseWatch
from detectors.rollout import Rollout
from detectors.verdict import ReasonCode, Verdict, VerdictKind
from detectors.sketch import DEFAULT_RELATIVE_ACCURACY
from detectors.windows import WindowSummary, window_start

__all__ = ["WindowsRecord", "Judge", "ended_by", "DEFAULT_HISTORY_MS", "DEFAULT_MAX_HISTORY_SUMMARIES",
           "DEFAULT_MAX_HISTORY_BYTES"]

DEFAULT_HISTORY_MS = 6 * 3_600_000  # windows kept for rollouts that become known late
#: Summaries the history may hold over all apps. Summaries of one cohort from several
#: partitions are kept merged, so an app with two releases on four devices needs 8 a
#: window, and 6 h of its 5-s windows (34,560) fit; invented releases or apps fill it
#: instead of memory, and cost the oldest history first (which only a rollout that
#: becomes known late would have read).
DEFAULT_MAX_HISTORY_SUMMARIES = 50_000
#: Bytes the history may hold. It keeps each summary encoded (its wire form), about 10
#: bytes per session plus a few KB of sketches: a cohort of 3,000 sessions a window is
#: some 35 KB, where the decoded summary (a set of Python ints) is some 250 KB.
DEFAULT_MAX_HISTORY_BYTES = 256 * 1024 * 1024


@dataclass
class WindowsRecord:
    """A ``rum.windows`` record: one source partition's progress and what it closed."""

    source: int
    closed_before: int | None
    idle: bool = False
    summaries: list[WindowSummary] = field(default_factory=list)
    #: Each summary's JSON encoding, when the stage that made the record already has it
    #: (:func:`~detectors.pipeline.aggregate.windows_records` encodes them to size the
    #: records): the judge's history keeps these bytes rather than encoding again. Not sent.
    encoded: list[bytes] | None = field(default=None, repr=False, compare=False)

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
        self.last: Verdict | None = None
        self.answered: Override | None = None  # the override that answered a deadline's hold


class _Active:
    """A rollout being judged: its gates and its overrides."""

    def __init__(self, rollout: Rollout) -> None:
        self.rollout = rollout
        self.tracks = [_Track(rollout, rollout.policy)] + [_Track(rollout, p) for p in rollout.dry_run_policies]
        self.overrides: list[Override] = []

    def wants(self, track: _Track, start: int, size_ms: int) -> bool:
        r = self.rollout
        if start < window_start(r.started_at, size_ms):
            return False
        if track.last_window is not None and start <= track.last_window:
            return False
        if track.decided:
            return self.answer_to_deadline(track, start + size_ms) is not None
        return r.ended_at is None or start < r.ended_at

    def answer_to_deadline(self, track: _Track, end: int) -> Override | None:
        """The person's promote or rollback that answers the final hold of a rollout whose
        deadline passed undecided, once in effect at ``end``: its window is judged (after
        the end, too), so the override reaches a verdict the deployment tool acts on. The
        deadline's code is the first of the gate's verdict, the second once overridden."""
        return next((o for o in reversed(self._answers(track)) if o.active_at(end)), None)

    def _answers(self, track: _Track) -> list[Override]:
        """The promotes and rollbacks on record after the deadline's hold, not yet answered."""
        last = track.last
        if last is None or ReasonCode.DEADLINE not in last.reason_codes[:2] or track.gate.policy.dry_run:
            return []
        return [o for o in self.overrides
                if o.action != VerdictKind.HOLD and o.at > last.at and o is not track.answered]

    def awaits_answer(self) -> bool:
        """Whether the enforcing gate, held at its deadline, has a person's answer on record
        that no window has reached yet (:meth:`answer_to_deadline`)."""
        track = self.tracks[0]
        return track.decided and bool(self._answers(track))


class Judge:
    """Merges window summaries of ``sources`` partitions and judges rollouts on them.

    Parameters
    ----------
    sources
        Number of ``rum.beacons`` partitions; a window waits for all of them.
    history_ms
        How long judged windows are kept for rollouts that become known late: windows
        starting more than this before the newest judged one are dropped, for every app,
        including an app that stopped sending.
    max_history_summaries, max_history_bytes
        At most this many summaries, of at most this many encoded bytes, are kept in that
        history (the oldest windows go first).
    stop_at_decision
        A gate stops at its first decision (as live); False keeps judging every window,
        for a backtest that shows how the evidence goes on.
    auto_rollout_apps
        Apps (``"*"``: every app) whose windows are watched for a new release
        (:class:`detectors.releases.ReleaseWatch`); what it finds collects in
        :attr:`new_releases` for the caller, which may start rollouts of them.
    """

    def __init__(self, sources: int, history_ms: int = DEFAULT_HISTORY_MS, stop_at_decision: bool = True,
                 max_history_summaries: int = DEFAULT_MAX_HISTORY_SUMMARIES,
                 max_history_bytes: int = DEFAULT_MAX_HISTORY_BYTES,
                 auto_rollout_apps: frozenset[str] = frozenset(), release_watch: ReleaseWatch | None = None) -> None:
        if sources < 1:
            raise ValueError("a judge needs at least one source partition")
        self.sources = sources
        self.history_ms = history_ms
        self.max_history_summaries = max_history_summaries
        self._order: deque[str] = deque()  # the app of each history entry, oldest first
        self.max_history_bytes = max_history_bytes
        self._history_summaries = 0
        self._history_bytes = 0
        self.stop_at_decision = stop_at_decision
        self.progress: dict[int, int] = {}
        self.idle: set[int] = set()
        self.judged_before: int | None = None
        self.late_summaries = 0
        self._pending: dict[int, dict[tuple[int, Any], WindowSummary]] = defaultdict(dict)
        self._encoded: dict[int, bytes] = {}  # id of a pending summary -> its encoding, where known
        # app -> (start, size_ms, encoded summaries): decoded only for a rollout known late
        self._history: dict[str, deque[tuple[int, int, list[bytes]]]] = {}
        self.rollouts: dict[str, _Active] = {}
        self._early_overrides: dict[str, list[Override]] = {}
        self.auto_rollout_apps = auto_rollout_apps
        self.release_watch = release_watch or ReleaseWatch()
        self.new_releases: list[NewRelease] = []

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
        for start, size_ms, encoded in self._history.get(rollout.app, ()):
            summaries = [WindowSummary.from_dict(orjson.loads(e)) for e in encoded]
            out += self._feed(active, start, size_ms, summaries)
        return out

    def awaits_answer(self, rollout_id: str) -> bool:
        """Whether a decided rollout will still give a verdict: a person's promote or
        rollback after its deadline (a run that stops at decisions goes on for it)."""
        active = self.rollouts.get(rollout_id)
        return active is not None and active.awaits_answer()

    # -- windows ----------------------------------------------------------------------------
    def add(self, record: WindowsRecord) -> list[Verdict]:
        """Take one ``rum.windows`` record; return the verdicts of the windows it completed."""
        encoded = record.encoded if record.encoded is not None and len(record.encoded) == len(record.summaries) \
            else None
        for i, s in enumerate(record.summaries):
            if self.judged_before is not None and s.start < self.judged_before:
                self.late_summaries += 1  # judged already: a republication, or a straggler
                continue
            if self._pending[s.start].setdefault((record.source, s.key), s) is s and encoded is not None:
                self._encoded[id(s)] = encoded[i]
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
            self._prune(start - self.history_ms)
        return out

    def _prune(self, oldest: int) -> None:
        """Drop history entries starting before ``oldest``, then the oldest beyond the budget.

        Entries are appended in window order, so the front of ``_order`` is always the
        oldest entry of its app: each step is O(1), whatever the number of apps.
        """
        while self._order and (self._history_summaries > self.max_history_summaries
                               or self._history_bytes > self.max_history_bytes
                               or self._history[self._order[0]][0][0] < oldest):
            app = self._order.popleft()
            entries = self._history[app]
            encoded = entries.popleft()[2]
            self._history_summaries -= len(encoded)
            self._history_bytes -= sum(map(len, encoded))
            if not entries:
                del self._history[app]

    def state_size(self) -> dict[str, int]:
        """What this judge holds, in countable units: what a memory bound is checked on."""
        return {
            "history_apps": len(self._history),
            "history_windows": len(self._order),
            "history_summaries": self._history_summaries,
            "history_bytes": self._history_bytes,
            "pending_windows": len(self._pending),
            "pending_summaries": sum(len(p) for p in self._pending.values()),
            "rollouts": len(self.rollouts),
        }

    def _dispatch(self, start: int, summaries: list[WindowSummary]) -> list[Verdict]:
        size_ms = summaries[0].size_ms
        out: list[Verdict] = []
        by_app: dict[str, list[WindowSummary]] = defaultdict(list)
        for s in summaries:
            by_app[s.key.app].append(s)
        for app, group in by_app.items():
            if app in self.auto_rollout_apps or "*" in self.auto_rollout_apps:
                views: dict[str, int] = defaultdict(int)
                for s in group:
                    views[s.key.release] += s.page_views
                self.new_releases += self.release_watch.observe(app, start, views)
            kept = [_exact(self._encoded.get(id(s)) or orjson.dumps(s.to_dict())) for s in _merged_by_key(group)]
            self._history.setdefault(app, deque()).append((start, size_ms, kept))
            self._order.append(app)
            self._history_summaries += len(kept)
            self._history_bytes += sum(map(len, kept))
            for active in self.rollouts.values():
                if active.rollout.app == app:
                    out += self._feed(active, start, size_ms, group)
        for s in summaries:
            self._encoded.pop(id(s), None)
        return out

    def _feed(self, active: _Active, start: int, size_ms: int, summaries: Iterable[WindowSummary]) -> list[Verdict]:
        out = []
        for track in active.tracks:
            if not active.wants(track, start, size_ms):
                continue
            track.last_window = start
            track.answered = active.answer_to_deadline(track, start + size_ms) if track.decided else None
            verdict = track.gate.observe(start, size_ms, summaries, active.rollout.share_for(start, start + size_ms))
            if not track.gate.policy.dry_run:
                verdict = apply_overrides(verdict, active.overrides)
            if verdict.decided and self.stop_at_decision:
                track.decided = True
                active.rollout = ended_by(active.rollout, verdict) or active.rollout
            track.last = verdict
            out.append(verdict)
        return out


def ended_by(rollout: Rollout, verdict: Verdict) -> Rollout | None:
    """``rollout`` ended by ``verdict``, or None when the verdict does not end it.

    A decided verdict of the enforcing policy ends a running rollout at the verdict's time
    (the end of the deciding window: event time, so a rebuilt judge and a replay end it
    alike): a promote once its watch is over, a rollback, or the deadline's final hold.
    Its dry-run policies stop there too, since after a promote or a rollback there is no
    canary and baseline left to compare. The verdicts stay answered for its release.
    """
    if rollout.ended_at is not None or verdict.policy.get("dry_run") or not verdict.decided:
        return None
    code = verdict.reason_codes[0] if verdict.reason_codes else verdict.verdict
    return rollout.ended(verdict.at, f"decided: {verdict.verdict} ({code}), verdict #{verdict.seq}")


def _exact(encoded: bytes) -> bytes:
    """A copy of ``encoded`` that holds only its own bytes.

    orjson's output keeps the capacity its writer grew to: a 40 KB summary can hold 500 KB
    of memory for as long as it is kept. The history keeps its summaries for hours, so it
    keeps copies (one memcpy each, once per window).
    """
    return bytes(memoryview(encoded))


def _merged_by_key(summaries: list[WindowSummary]) -> list[WindowSummary]:
    """One summary per cohort key (the partitions' merged): what the history keeps.

    Merging is exact, so a rollout fed these later sees what it would have seen live; a
    key from one partition is kept as is (the gate never changes the summaries it reads).
    """
    by_key: dict[Any, list[WindowSummary]] = {}
    for s in summaries:
        by_key.setdefault(s.key, []).append(s)
    out = []
    for key, same in by_key.items():
        if len(same) == 1:
            out.append(same[0])
            continue
        accuracy = next((sk.relative_accuracy for sk in same[0].sketches.values()), DEFAULT_RELATIVE_ACCURACY)
        merged = WindowSummary.empty(key, same[0].start, same[0].size_ms, accuracy)
        for part in same:
            merged.merge(part)
        out.append(merged)
    return out
