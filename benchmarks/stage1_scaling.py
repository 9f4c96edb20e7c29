"""Stage 1 as the number of active cohorts grows, at the same total beacon rate (issue 19).

For each cohort count (10, 100, 1,000, 10,000 by default) the same number of beacons, at
the same event-time rate, is spread evenly over that many cohort keys, and one partition's
stage 1 takes it in-process: :class:`detectors.pipeline.aggregate.PartitionAggregator`
(decode, tumbling windows with page views, the cohort and session caps, dead letters) over
records of ``--per-record`` beacons (JSON arrays, as rumgate's ingestion writes them), then
:func:`~detectors.pipeline.aggregate.windows_records` and the JSON encoding of each
``rum.windows`` record, as the worker publishes them. No broker: this is the pure core the
live worker runs per partition (``benchmarks/pipeline_throughput.py`` measures the broker
path), so the figures are what stage 1's own code costs as cohorts grow.

Cohort keys are releases of one device; 100 releases an app (``ceil(N / 100)`` apps), so
the per-app cohort cap (200 by default) never refuses anything and every beacon counts.

Each (cohort count, repeat) runs in a fresh Python process (this script with ``--child``),
so that its RSS is its own; the counts alternate within each repeat so that all see the
same load on a shared machine. Reported, medians over ``--repeats``:

beacons/s     beacons through stage 1 / wall time (records already in memory)
/decode       that, over ``orjson.loads`` of the same records in the same process: the ratio
              the issue's other core figures use
/10           beacons/s relative to the smallest cohort count of the same repeat (target:
              at 10,000 cohorts within 2x of 10, i.e. >= 50 %)
RSS MB        the child's peak resident set (``ru_maxrss``), input included
bytes/window  ``rum.windows`` bytes per closed window (JSON, as published)
B/cohort      those bytes per active cohort of a window (target: proportional to cohorts)

    python benchmarks/stage1_scaling.py                 # 400,000 beacons at 20,000/s, 3 repeats
    python benchmarks/stage1_scaling.py --cohorts 10 10000 --repeats 5
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import orjson

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from detectors.pipeline.aggregate import PartitionAggregator, windows_records  # noqa: E402

START_MS = 1_763_856_000_000
RELEASES_PER_APP = 100
DEVICES = ["mobile", "desktop", "tablet"]


def records(cohorts: int, beacons: int, rate: float, per_record: int, seed: int = 1) -> list[bytes]:
    """``beacons`` canonical beacons at ``rate``/s of event time, evenly over ``cohorts``
    (app, release) keys, as JSON-array records of ``per_record`` beacons."""
    rng = np.random.default_rng(seed)
    ts = START_MS + (np.arange(beacons) * (1000.0 / rate)).astype(np.int64)
    cohort = rng.permutation(np.arange(beacons) % cohorts)
    lcp = rng.lognormal(np.log(2000), 0.6, beacons).round(1)
    ttfb = rng.lognormal(np.log(400), 0.8, beacons).round(1)
    cls = np.where(rng.random(beacons) < 0.3, 0.0, rng.lognormal(np.log(0.04), 1.3, beacons)).round(4)
    session = rng.integers(0, 2**62, beacons)
    out, items = [], []
    for i in range(beacons):
        c = int(cohort[i])
        items.append(orjson.dumps({
            "id": f"sc-{i}", "ts": int(ts[i]), "app": f"app-{c // RELEASES_PER_APP}",
            "release": f"r{c % RELEASES_PER_APP}", "session": f"{int(session[i]):016x}", "page": "/",
            "device": "mobile", "metrics": {"LCP": float(lcp[i]), "TTFB": float(ttfb[i]), "CLS": float(cls[i])},
            "errors": 0, "cohort": None}))
        if len(items) == per_record:
            out.append(b"[" + b",".join(items) + b"]")
            items = []
    if items:
        out.append(b"[" + b",".join(items) + b"]")
    return out


def child(cohorts: int, beacons: int, rate: float, per_record: int, take: int) -> dict:
    """One measured run, in this process: stage 1 over the records, and the decode baseline."""
    recs = records(cohorts, beacons, rate, per_record)
    loads = orjson.loads
    gc.collect()
    t0 = time.perf_counter()
    for r in recs:
        loads(r)
    t_decode = time.perf_counter() - t0

    agg = PartitionAggregator(0)
    window_bytes: dict[int, int] = {}
    summaries = counted = 0
    gc.collect()
    t0 = time.perf_counter()
    for offset in range(0, len(recs), take):
        step = agg.process(list(enumerate(recs[offset:offset + take], offset)))
        counted += step.beacons
        for rec in windows_records(0, agg.closed_before, step.closed):
            window_bytes.setdefault(rec.summaries[0].start if rec.summaries else -1, 0)
            if rec.summaries:
                window_bytes[rec.summaries[0].start] += len(orjson.dumps(rec.to_dict()))
                summaries += len(rec.summaries)
    t_stage = time.perf_counter() - t0
    window_bytes.pop(-1, None)
    # the last window may be partial; flush() is the end of input, not a steady state
    per_window = statistics.median(window_bytes.values()) if window_bytes else 0
    return {"cohorts": cohorts, "beacons": counted, "rejected": agg.rejected,
            "rate": counted / t_stage, "decode_rate": beacons / t_decode,
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "windows": len(window_bytes), "summaries": summaries, "bytes_per_window": per_window}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cohorts", type=int, nargs="+", default=[10, 100, 1000, 10000])
    ap.add_argument("--beacons", type=int, default=400_000)
    ap.add_argument("--rate", type=float, default=20_000.0, help="beacons/s of event time (default 20000)")
    ap.add_argument("--per-record", type=int, default=1000, help="beacons per record (default 1000)")
    ap.add_argument("--take", type=int, default=4, help="records per process() call (default 4)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child, args.beacons, args.rate, args.per_record, args.take)))
        return 0

    print(f"input     {args.beacons:,} beacons at {args.rate:,.0f}/s of event time "
          f"({args.beacons / args.rate:.0f} s, 5-s windows), {args.per_record} beacons a record, "
          f"{args.take} records a process() call; cohorts {args.cohorts}")
    print(f"machine   {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, numpy {np.__version__}; "
          f"in-process stage 1 (no broker), a fresh process per run")
    runs: dict[int, list[dict]] = {c: [] for c in args.cohorts}
    rel: dict[int, list[float]] = {c: [] for c in args.cohorts}
    for r in range(args.repeats):
        order = args.cohorts[r % len(args.cohorts):] + args.cohorts[:r % len(args.cohorts)]
        for c in order:
            out = subprocess.run([sys.executable, __file__, "--child", str(c), "--beacons", str(args.beacons),
                                  "--rate", str(args.rate), "--per-record", str(args.per_record),
                                  "--take", str(args.take)], capture_output=True, text=True, check=True)
            runs[c].append(json.loads(out.stdout))
        smallest = runs[args.cohorts[0]][-1]["rate"]
        for c in args.cohorts:
            rel[c].append(runs[c][-1]["rate"] / smallest)
        print(f"repeat {r + 1}: " + ", ".join(f"{c}: {runs[c][-1]['rate']:,.0f}/s" for c in args.cohorts))

    print(f"\n{'cohorts':>8} {'beacons/s':>10} {'/decode':>8} {'/' + str(args.cohorts[0]):>7} {'RSS MB':>7} "
          f"{'windows':>7} {'bytes/window':>13} {'B/cohort':>9} {'rejected':>8}")
    for c in args.cohorts:
        med = lambda k: statistics.median(x[k] for x in runs[c])  # noqa: E731
        ratio = statistics.median(x["rate"] / x["decode_rate"] for x in runs[c])
        bpw = med("bytes_per_window")
        print(f"{c:>8,} {med('rate'):>10,.0f} {ratio:>8.1%} {statistics.median(rel[c]):>7.1%} {med('rss_mb'):>7.0f} "
              f"{runs[c][0]['windows']:>7} {bpw:>13,.0f} {bpw / c:>9,.0f} {runs[c][0]['rejected']:>8}")
    big, small = args.cohorts[-1], args.cohorts[0]
    within = statistics.median(rel[big])
    print(f"\nresult    {big:,} cohorts at {within:.0%} of {small:,} cohorts' rate (target >= 50 %, "
          f"i.e. within 2x): {'MET' if within >= 0.5 else 'NOT MET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
