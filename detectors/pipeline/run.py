"""The one driver: a rollout's partitioned beacon records in, its verdicts out.

Stage 1 (a :class:`~detectors.pipeline.aggregate.PartitionAggregator` per source
partition) and stage 2 (a :class:`~detectors.pipeline.judge.Judge`) wired as the live
worker wires them, with the same :func:`~detectors.pipeline.aggregate.windows_records`
between them. The file backtest, the topic replay, the tests and the benchmarks all run
a rollout through a :class:`Run`, so overrides, dry-run policies and the rollout's
``started_at`` mean the same everywhere, by construction.

Nothing here reads the clock: a verdict's ``emitted_at`` is its event time, so the same
records give byte-identical verdicts on every run.

>>> import orjson
>>> from detectors.policy import parse_policy
>>> from detectors.rollout import Rollout
>>> policy = parse_policy("name: quick\\nwarmup: 0s\\nmetrics:\\n  - metric: LCP\\n")
>>> run = Run(Rollout("shop-web:r2", "shop-web", "r2", "r1", 0, policy), window_ms=5000, lateness_ms=0)
>>> beacon = lambda ts, release: orjson.dumps({"ts": ts, "app": "shop-web", "release": release,
...                                            "metrics": {"LCP": 2000.0}})
>>> run.add(0, [(i, beacon(1763856000000 + 100 * i, "r1" if i % 2 else "r2")) for i in range(60)])
False
>>> result = run.finish(flush=True)
>>> [(v.seq, v.verdict) for v in result.verdicts], result.beacons
([(1, 'continue'), (2, 'continue')], 60)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

from detectors.override import Override
from detectors.pipeline.aggregate import DeadLetter, PartitionAggregator, Step, windows_records
from detectors.pipeline.judge import Judge, WindowsRecord
from detectors.rollout import Rollout
from detectors.verdict import Verdict
from detectors.windows import (
    DEFAULT_LATENESS_MS,
    DEFAULT_MAX_COHORTS,
    DEFAULT_MAX_VIEWS_PER_SESSION,
    DEFAULT_WINDOW_MS,
    WindowSummary,
)

__all__ = ["Run", "RunResult"]


@dataclass
class RunResult:
    """What a run judged and counted."""

    verdicts: list[Verdict] = field(default_factory=list)
    beacons: int = 0
    records: int = 0
    rejects: list[DeadLetter] = field(default_factory=list)  # the first ``keep_rejects``
    rejected: int = 0
    late: int = 0
    windows: int = 0  # window summaries handed to the judge

    @property
    def final(self) -> Verdict | None:
        """The last verdict of the enforcing policy; dry-run verdicts never decide a run."""
        return next((v for v in reversed(self.verdicts) if not v.policy.get("dry_run")), None)


class Run:
    """One rollout judged over the records of ``sources`` partitions.

    Parameters
    ----------
    rollout
        What is judged: app, canary, baseline, policy, dry-run policies, start and end.
    sources
        Partitions the records come from; a window is judged once every one has passed
        it. A partition that never closed a window is taken as idle at :meth:`finish`.
    overrides
        Overrides of this (or any) rollout, applied from their time on, as live.
    stop_at_decision
        Stop judging (and taking records) at the enforcing policy's first decision;
        otherwise keep judging every window to the end.
    keep_rejects
        How many invalid items to keep, with their reasons (all are counted).
    on_verdict
        Called with each verdict as it is made.
    max_cohorts, max_views_per_session
        Stage 1's caps (:class:`~detectors.windows.TumblingWindows`); the rollout's two
        releases are protected from the cohort cap.
    """

    def __init__(self, rollout: Rollout, *, sources: int = 1, overrides: Iterable[Override] = (),
                 window_ms: int = DEFAULT_WINDOW_MS, lateness_ms: int = DEFAULT_LATENESS_MS,
                 stop_at_decision: bool = True, keep_rejects: int = 100,
                 on_verdict: Callable[[Verdict], None] | None = None,
                 max_cohorts: int | None = DEFAULT_MAX_COHORTS,
                 max_views_per_session: int | None = DEFAULT_MAX_VIEWS_PER_SESSION) -> None:
        self.rollout = rollout
        self.limits = {"max_cohorts": max_cohorts, "max_views_per_session": max_views_per_session,
                       "protected_releases": (rollout.canary, rollout.baseline)}
        self.sources = sources
        self.window_ms, self.lateness_ms = window_ms, lateness_ms
        self.stop_at_decision = stop_at_decision
        self.keep_rejects = keep_rejects
        self.on_verdict = on_verdict
        # Every rollout is known before its first window here: no history is needed.
        self.judge = Judge(sources, history_ms=0, stop_at_decision=stop_at_decision)
        for override in overrides:
            self.judge.apply_override(override)
        self.judge.apply_rollout(rollout)
        self.aggregators: dict[int, PartitionAggregator] = {}
        self._reported: dict[int, int | None] = {}  # closed_before last handed to the judge
        self.result = RunResult()
        self.stopped = False  # decided, with stop_at_decision

    def add(self, partition: int, records: Sequence[tuple[int, bytes]]) -> bool:
        """Count ``(offset, value)`` records of one partition, in offset order.

        Returns whether the run has stopped at a decision (later records change nothing).
        """
        if self.stopped or not records:
            return self.stopped
        agg = self.aggregators.get(partition)
        if agg is None:
            agg = self.aggregators[partition] = PartitionAggregator(partition, self.window_ms, self.lateness_ms,
                                                                    **self.limits)
        step = agg.process(records)
        self.result.records += len(records)
        self.result.beacons += step.beacons
        self._keep(step)
        self._publish(partition, agg, step)
        return self.stopped

    def update_rollout(self, rollout: Rollout) -> None:
        """The rollout recorded again (an end, a new expected share on a ramp): its gates carry on."""
        if rollout.id != self.rollout.id:
            raise ValueError(f"a run judges {self.rollout.id!r}, not {rollout.id!r}")
        self.rollout = rollout
        self.judge.apply_rollout(rollout)

    def add_windows(self, partition: int, closed: Sequence[WindowSummary]) -> bool:
        """Stage 2 alone: window summaries a partition closed (in window order), for
        callers that make summaries without beacons (the decision-quality benchmark)."""
        if self.stopped or not closed:
            return self.stopped
        end = max(s.start + s.size_ms for s in closed)
        self._reported[partition] = end
        for record in windows_records(partition, end, closed):
            self._judge(record)
        return self.stopped

    def finish(self, *, flush: bool = False) -> RunResult:
        """End of input: judge what can be judged and return the result.

        ``flush`` closes the windows still open (a file has nothing after its end); without
        it, as live, the last windows, which no later beacon closed, are not judged.
        """
        if flush and not self.stopped:
            for partition, agg in sorted(self.aggregators.items()):
                self._publish(partition, agg, agg.flush())
        for partition in range(self.sources):
            if self._reported.get(partition) is None:
                self._judge(WindowsRecord(partition, None, idle=True))
        self.result.late = sum(a.windows.late_total for a in self.aggregators.values())
        return self.result

    def _keep(self, step: Step) -> None:
        self.result.rejected += len(step.rejects)
        room = self.keep_rejects - len(self.result.rejects)
        if room > 0:
            self.result.rejects.extend(step.rejects[:room])

    def _publish(self, partition: int, agg: PartitionAggregator, step: Step) -> None:
        # Progress matters even without summaries (a window this partition had no beacons in).
        if step.closed or agg.closed_before != self._reported.get(partition):
            self._reported[partition] = agg.closed_before
            for record in windows_records(partition, agg.closed_before, step.closed):
                self._judge(record)

    def _judge(self, record: WindowsRecord) -> None:
        if self.stopped:
            return
        self.result.windows += len(record.summaries)
        # The window that decides is reported whole: its dry-run verdicts too.
        for verdict in self.judge.add(record):
            verdict = replace(verdict, emitted_at=verdict.at)  # processing time is event time here
            self.result.verdicts.append(verdict)
            if self.on_verdict:
                self.on_verdict(verdict)
            if self.stop_at_decision and verdict.decided and verdict.key == self.rollout.id:
                self.stopped = not self.judge.awaits_answer(self.rollout.id)
