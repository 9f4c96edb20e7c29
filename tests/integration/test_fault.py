"""``kill -9`` of the worker in the middle of a rollout, then a restart: nothing lost,
nothing counted twice, the same verdicts as a run without the fault."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import replace

import orjson

from detectors.policy import parse_policy
from detectors.pipeline.aggregate import PartitionAggregator
from streams.offline.feed import partition_of
from detectors.pipeline.judge import WindowsRecord
from streams.offline.simulate import SCENARIOS, generate_beacons
from tests.integration.conftest import Pipeline, core, decided, make_rollout

# Slow to decide (min_duration 5 min of event time), so the kill lands mid-rollout.
POLICY = parse_policy("name: fault\nmetrics:\n  - metric: LCP\n  - metric: errors\nwarmup: 0s\nmin_duration: 5m\n")
SC = replace(SCENARIOS["clean"], duration_s=720.0, canary_share=0.2)
SEED = 21


def expected_windows(beacons: list[dict], partitions: int) -> dict:
    """What stage 1 must publish, computed offline: per (source, window, cohort) totals."""
    by_partition: dict[int, list[bytes]] = defaultdict(list)
    for b in beacons:
        by_partition[partition_of(b, partitions)].append(orjson.dumps(b))
    out = {}
    for p, records in by_partition.items():
        agg = PartitionAggregator(p)
        for s in agg.process(list(enumerate(records))).closed:
            out[(p, s.start, tuple(s.key))] = (s.page_views, s.errors, s.late, s.sketches["LCP"].count)
    return out


def published_windows(pipeline: Pipeline) -> tuple[dict, int]:
    """rum.windows as the judge sees it: the first publication of each (source, window, cohort)."""
    first, repeats = {}, 0
    for r in pipeline.read(pipeline.topics.windows):
        rec = WindowsRecord.from_dict(orjson.loads(r.value))
        for s in rec.summaries:
            key = (rec.source, s.start, tuple(s.key))
            value = (s.page_views, s.errors, s.late, s.sketches["LCP"].count)
            if key in first:
                repeats += 1
                # A restart re-reads from the checkpoint: a window that was already out can
                # come again with part of its beacons, never more; the judge keeps the first.
                assert all(again <= was for again, was in zip(value, first[key])), (key, first[key], value)
            else:
                first[key] = value
    return first, repeats


def by_seq(verdicts: list[dict]) -> list[dict]:
    """Verdict events are published at least once; (rollout, seq) identifies one."""
    seen: dict[int, dict] = {}
    for v in verdicts:
        seen.setdefault(v["seq"], v)
    return [core(seen[s]) for s in sorted(seen)]


def wait_until(check, timeout_s: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def split_views(beacons: list[dict], later_ms: int = 20_000) -> list[dict]:
    """Each page view as two beacons of one ``view``, as SDKs send them: LCP, FCP and TTFB
    at load, CLS, INP and the errors ``later_ms`` after, in event-time order. Page views
    then span the checkpoint a killed worker restarts from."""
    out = []
    for i, b in enumerate(beacons):
        metrics = b.get("metrics") or {}
        late = {m: metrics[m] for m in ("CLS", "INP") if m in metrics}
        out.append({**b, "view": f"pv-{i}", "errors": 0, "metrics": {m: v for m, v in metrics.items() if m not in late}})
        out.append({**b, "view": f"pv-{i}", "ts": b["ts"] + later_ms, "metrics": late})
    return sorted(out, key=lambda b: b["ts"])


def test_kill_9_mid_rollout_loses_nothing_and_counts_nothing_twice(broker, tmp_path):
    beacons = split_views(list(generate_beacons(SC, seed=SEED)))
    cut = len(beacons) // 4
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    want = expected_windows(beacons, 4)

    # Run A: no fault.
    a = Pipeline(broker, tmp_path / "a")
    try:
        a.start_rollout(make_rollout(SC, POLICY))
        a.start_worker()
        a.produce(beacons)
        verdicts_a = a.wait_for_verdict(decided, timeout_s=120)
        wait_until(lambda: published_windows(a)[0] == want, what="run A's windows")
    finally:
        a.stop()

    # Run B: the same traffic; the worker is killed while records are flowing.
    b = Pipeline(broker, tmp_path / "b")
    try:
        b.start_rollout(make_rollout(SC, POLICY))
        first = b.start_worker()
        b.produce(beacons[:cut])
        b.wait_for_verdict(lambda v: v["seq"] >= 5, timeout_s=90)
        assert not any(decided(v) for v in b.verdicts()), "decided before the fault: nothing tested"
        rest = threading.Thread(target=b.produce, args=(beacons[cut:],))
        rest.start()
        time.sleep(0.3)
        first.kill9()
        rest.join()
        b.start_worker()
        verdicts_b = b.wait_for_verdict(decided, timeout_s=120)
        try:
            wait_until(lambda: published_windows(b)[0] == want, timeout_s=120, what="run B's windows")
        finally:
            windows_b, repeats = published_windows(b)
            wrong = {k: (windows_b.get(k), v) for k, v in want.items() if windows_b.get(k) != v}
            if wrong:
                print(f"{len(wrong)} windows differ (got, want):", sorted(wrong.items())[:10])
    finally:
        b.stop()

    assert windows_b == want  # every beacon counted once, in the window the contract says
    assert repeats > 0, "the restart republished nothing: the kill did not hit open windows"
    decided_a = [v for v in by_seq(verdicts_a) if decided(v)][0]
    run_a = [v for v in by_seq(verdicts_a) if v["seq"] <= decided_a["seq"]]
    run_b = [v for v in by_seq(verdicts_b) if v["seq"] <= decided_a["seq"]]
    assert run_b == run_a
    assert run_a[-1]["verdict"] == "promote"
