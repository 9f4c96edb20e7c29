"""One client inventing releases (or apps) must not grow the worker's state without bound.

The reported case: 10,000 invented releases from one client took the worker from 161 to
1,486 MB, never released, about 28 MB per 5-s window of history in the judge. Here stage 1
(:class:`~detectors.pipeline.aggregate.PartitionAggregator`, through
:class:`~detectors.pipeline.run.Run`) and stage 2 (:class:`~detectors.pipeline.judge.Judge`)
get such floods, and what they hold is counted: stage 1 opens at most ``max_cohorts`` cohort
keys per app per window (the rest dead-lettered with a reason, the running rollout's
releases always kept), and the judge's history is bounded by its horizon and its budget,
and forgets an app that stopped sending.
"""

from __future__ import annotations

from dataclasses import replace

import orjson

from detectors.pipeline.aggregate import PartitionAggregator, windows_records
from detectors.pipeline.judge import Judge
from detectors.pipeline.run import Run
from detectors.policy import DEFAULT_POLICY
from detectors.rollout import Rollout
from detectors.windows import DEFAULT_MAX_COHORTS
from streams.offline.simulate import SCENARIOS, generate_beacons

SC = replace(SCENARIOS["lcp-regression-25"], duration_s=300.0)
ROLLOUT = Rollout(f"{SC.app}:{SC.canary}", SC.app, SC.canary, SC.baseline, SC.start_ms, DEFAULT_POLICY)
INVENTED = 10_000


def flood(n: int, t0: int, spread_ms: int, app: str = SC.app) -> list[tuple[int, bytes]]:
    """``n`` beacons from one client, each claiming a release of its own."""
    return [(t0 + i * spread_ms // n, orjson.dumps({"ts": t0 + i * spread_ms // n, "app": app,
                                                    "release": f"invented-{i:05d}", "device": "mobile",
                                                    "metrics": {"LCP": 8000.0}}))
            for i in range(n)]


def through_run(extra: list[tuple[int, bytes]]):
    honest = [(b["ts"], orjson.dumps(b)) for b in generate_beacons(SC, 4)]
    records = sorted(honest + extra, key=lambda r: r[0])
    run = Run(ROLLOUT, stop_at_decision=False, keep_rejects=INVENTED)
    for i in range(0, len(records), 1000):
        run.add(0, [(i + j, v) for j, (_, v) in enumerate(records[i:i + 1000])])
    return run.finish(flush=True)


def test_invented_releases_are_refused_beyond_the_cap_and_the_rollout_is_judged_as_without_them():
    """10,000 releases in one minute: each window keeps at most the cap (plus the rollout's
    own cohorts), every refused beacon is dead-lettered with its reason, and the rollout's
    verdicts are exactly those of the same traffic without the flood."""
    clean = through_run([])
    flooded = through_run(flood(INVENTED, SC.start_ms + 60_000, 60_000))
    assert flooded.rejected >= INVENTED - 12 * DEFAULT_MAX_COHORTS  # 12 windows of 5 s in the minute
    assert flooded.rejects[0].reason.startswith(f"cohort: app {SC.app!r} already has {DEFAULT_MAX_COHORTS} cohorts")
    assert orjson.loads(flooded.rejects[0].raw)["release"].startswith("invented-")
    assert flooded.beacons + flooded.rejected == clean.beacons + INVENTED  # nothing lost, nothing twice
    strip = lambda vs: [v.to_dict() | {"emitted_at": None} for v in vs]  # noqa: E731
    assert strip(flooded.verdicts) == strip(clean.verdicts)
    assert clean.final.verdict == "rollback"  # the rollout's own regression still decides


def test_each_window_of_an_app_holds_at_most_max_cohorts_summaries_per_partition():
    agg = PartitionAggregator(0, protected_releases=(SC.canary, SC.baseline))
    records = sorted(flood(INVENTED, SC.start_ms, 50_000)
                     + [(b["ts"], orjson.dumps(b)) for b in generate_beacons(replace(SC, duration_s=50.0), 4)],
                     key=lambda r: r[0])
    closed = []
    for i in range(0, len(records), 700):
        closed += agg.process([(i + j, v) for j, (_, v) in enumerate(records[i:i + 700])]).closed
    closed += agg.flush().closed
    per_window: dict[int, int] = {}
    for s in closed:
        per_window[s.start] = per_window.get(s.start, 0) + 1
    protected = {s.key for s in closed if s.key.release in (SC.canary, SC.baseline)}
    assert len(per_window) == 10
    assert max(per_window.values()) <= DEFAULT_MAX_COHORTS + len(protected)
    assert {(s.start, s.key.release) for s in closed if s.key.release == SC.canary}  # the rollout kept


def judge_fed(windows: int, releases_per_window: int, judge: Judge, app=lambda w: SC.app) -> list[dict]:
    """``windows`` windows, each with beacons of ``releases_per_window`` new releases, through
    stage 1 and the judge; what the judge holds after each."""
    agg = PartitionAggregator(0)
    sizes = []
    for w in range(windows):
        t = SC.start_ms + w * 5000
        records = [orjson.dumps({"ts": t + i, "app": app(w), "release": f"w{w}-r{i}"})
                   for i in range(releases_per_window)]
        step = agg.process([(w * releases_per_window + i, r) for i, r in enumerate(records)])
        for record in windows_records(0, agg.closed_before, step.closed):
            judge.add(record)
        sizes.append(judge.state_size())
    return sizes


def test_the_judge_history_stays_bounded_over_many_windows_of_invented_releases():
    """A six-hour history and invented releases in every window: the history is bounded by
    its budget (and each window by the cohort cap), not by the hours or the releases."""
    judge = Judge(1, max_history_summaries=5_000)
    sizes = judge_fed(60, 1_000, judge)  # 60,000 invented releases
    assert max(s["history_summaries"] for s in sizes) <= 5_000
    assert sizes[-1]["history_summaries"] >= 5_000 - DEFAULT_MAX_COHORTS  # full, not emptied
    assert max(s["pending_summaries"] for s in sizes) <= 2 * DEFAULT_MAX_COHORTS  # at most two windows open


def test_an_app_that_stops_sending_is_pruned_from_the_history():
    judge = Judge(1, history_ms=60_000)
    sizes = judge_fed(40, 5, judge, app=lambda w: "stopped" if w < 10 else SC.app)
    assert sizes[12]["history_apps"] == 2  # windows close 5 s (the lateness) after their end
    assert sizes[-1]["history_apps"] == 1  # "stopped" was dropped, 60 s after its last window
    assert sizes[-1]["history_windows"] <= 60_000 // 5000 + 1


def test_the_history_holds_in_memory_what_it_counts_as_its_bytes():
    """The byte budget bounds memory only if a kept summary costs what its encoding is long.
    Busy windows (many sessions each) are fed and the memory the judge allocated is traced:
    it stays near ``history_bytes``, not a multiple of it."""
    import gc
    import tracemalloc

    judge = Judge(1)
    agg = PartitionAggregator(0)
    records = []
    for w in range(12):
        t = SC.start_ms + w * 5000
        beacons = [{"ts": t + i, "app": SC.app, "release": "r1", "session": f"w{w}-s{i}",
                    "metrics": {"LCP": 1000.0 + i}} for i in range(3_000)]
        records.append((w, orjson.dumps(beacons)))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for offset, value in records:
            step = agg.process([(offset, value)])
            for record in windows_records(0, agg.closed_before, step.closed):
                judge.add(record)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    kept = judge.state_size()["history_bytes"]
    assert kept > 200_000  # the windows were kept (3,000 sessions each)
    assert held < 2 * kept + 2_000_000, (held, kept)  # the aggregator's open window and the rest
