"""Core throughput: beacons per second through the decision core, next to plain JSON decoding.

Both sides read the same NDJSON lines, already in memory, in the same process and run:

decode  ``for line in lines: orjson.loads(line)``: the least any consumer of these beacons
        pays, and the baseline the ratio is taken against.
core    what ``rumgate backtest`` does with a file, minus the file I/O: chunks of 4096 lines
        into the one driver, :class:`detectors.pipeline.run.Run`, as ``run_backtest``
        feeds it: stage 1 (``decode_records``: parse + validate + columns, then
        ``TumblingWindows``) → closed window summaries as ``rum.windows`` records → the
        ``Judge`` and its ``Gate``, with the default policy and the sample-ratio check on.
        Unlike the backtest it never stops at the first decision, so every beacon is counted.

``--compare`` adds, in each repeat, the decoder's two paths (issue 19):

core-gen  the core with ``decode_records(..., typed=False)``: the general path only
dec-typed ``decode_records`` alone (the typed path, as the core uses it) over the same chunks
dec-gen   the same with the general path
arr-typed ``decode_records`` alone over the same beacons as 1000-beacon JSON arrays, one record
arr-gen   each (what rumgate's ingestion writes), typed and general

The paths alternate ``--repeats`` times (decode, core, ..., decode, core, ...) so that all
see the same load on a shared machine; the report is the median of each, and the median over
repeats of each rate / decode. Target (issue 19): the core at least as fast as bare decoding.

The input is ``--file`` (NDJSON, optionally ``.gz``), or the ``stationary`` scenario of
``streams.offline.simulate`` written to a temporary file (seed 1). Everything but the timings is
deterministic: the same file gives the same beacons, windows and verdicts on every run, and
the script checks that it does.

    python benchmarks/core_throughput.py                      # 200,000 beacons, 5 repeats
    python benchmarks/core_throughput.py --beacons 50000 --repeats 9
    python benchmarks/core_throughput.py --repeats 5 --compare   # typed and general decoder too
    python benchmarks/core_throughput.py --file traffic.ndjson.gz --app shop-web \\
        --canary 2026.11.23-canary --baseline 2026.11.20-base
"""

from __future__ import annotations

import argparse
import gc
import gzip
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from functools import partial
from unittest import mock
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from detectors.decode import decode_records  # noqa: E402
from detectors.pipeline.run import Run  # noqa: E402
from detectors.policy import DEFAULT_POLICY  # noqa: E402
from streams.offline.backtest import CHUNK, backtest_rollout  # noqa: E402

TARGET = 1.00  # core rate / decode rate (issue 19)
ARRAY = 1000  # beacons per record in the arr-* rows, as rumgate's ingestion writes them

# Used with --file when no rollout is given, and by the fallback generator.
APP, CANARY, BASELINE, SHARE = "shop-web", "2026.11.23-canary", "2026.11.20-base", 0.05
START_MS = 1_763_856_000_000


@dataclass(frozen=True)
class Input:
    lines: list[bytes]
    app: str
    canary: str
    baseline: str
    share: float | None
    source: str


@dataclass(frozen=True)
class CoreOutcome:
    """What one core run produced: must be identical on every run."""

    accepted: int
    rejected: int
    windows: int
    verdicts: int
    final: str


# -- input -------------------------------------------------------------------------------------


def read_ndjson(path: Path, limit: int) -> list[bytes]:
    """Non-blank lines, with their newline as ``read_lines`` yields them; the first ``limit``."""
    opener = gzip.open if path.suffix == ".gz" else open
    lines: list[bytes] = []
    with opener(path, "rb") as f:
        for line in f:
            if line.strip():
                lines.append(line)
                if len(lines) >= limit:
                    break
    return lines


def simulate(path: Path, beacons: int) -> tuple[str, str, str, float, str]:
    """Write at least ``beacons`` beacons of traffic to ``path``; return the rollout and a note."""
    try:
        from streams.offline.simulate import SCENARIOS, write_ndjson
    except ImportError:
        fallback(path, beacons)
        return APP, CANARY, BASELINE, SHARE, "fallback generator (streams.offline.simulate not importable)"
    scenario = SCENARIOS["stationary"]
    # Long enough for the requested count (Poisson arrivals: 3 % to spare), then cut.
    scenario = replace(scenario, duration_s=max(60.0, math.ceil(beacons / scenario.rate * 1.03)))
    write_ndjson(path, scenario, seed=1)
    note = (f"streams.offline.simulate stationary, seed 1, {scenario.rate:g} beacons/s, "
            f"canary share {scenario.canary_share:g}")
    return scenario.app, scenario.canary, scenario.baseline, scenario.canary_share, note


def fallback(path: Path, beacons: int, rate: float = 100.0) -> None:
    """Canonical beacons with RUM-shaped values, for when ``streams.offline.simulate`` is missing."""
    rng = np.random.default_rng(1)
    n = beacons
    ts = START_MS + np.sort(rng.uniform(0, n / rate * 1000, n)).astype(np.int64)
    device = rng.choice(["mobile", "desktop", "tablet"], n, p=[0.557, 0.404, 0.039])
    canary = rng.random(n) < SHARE
    ttfb = rng.lognormal(np.log(np.where(device == "mobile", 450, 350)), 0.8)
    fcp = ttfb + rng.lognormal(np.log(550), 0.6, n)
    lcp = fcp + rng.lognormal(np.log(300), 0.9, n)
    hidden = rng.random(n) < 0.08
    inp = np.ceil(rng.lognormal(np.log(np.where(device == "mobile", 96, 56)), 1.1) / 8) * 8
    has_inp = rng.random(n) < 0.58
    cls = np.where(rng.random(n) < 0.32, 0.0, rng.lognormal(np.log(0.04), 1.3, n))
    errors = np.where(rng.random(n) < 0.02, 1 + rng.geometric(0.7, n) - 1, 0)
    with open(path, "wb") as f:
        for i in range(n):
            metrics = {"TTFB": round(float(ttfb[i]), 1), "CLS": round(float(cls[i]), 4)}
            if not hidden[i]:
                metrics["FCP"] = round(float(fcp[i]), 1)
                metrics["LCP"] = round(float(lcp[i]), 1)
            if has_inp[i]:
                metrics["INP"] = float(inp[i])
            f.write(orjson.dumps({
                "id": f"fb-1-{i}", "ts": int(ts[i]), "app": APP,
                "release": CANARY if canary[i] else BASELINE, "session": f"{rng.integers(2**62):016x}",
                "page": "/", "device": str(device[i]), "metrics": metrics,
                "errors": int(errors[i]), "cohort": None,
            }) + b"\n")


def load(args: argparse.Namespace, tmp: Path) -> Input:
    if args.file:
        lines = read_ndjson(Path(args.file), args.beacons)
        return Input(lines, args.app or APP, args.canary or CANARY, args.baseline or BASELINE,
                     args.expected_share, f"{args.file}")
    path = tmp / "stationary.ndjson"
    app, canary, baseline, share, note = simulate(path, args.beacons)
    lines = read_ndjson(path, args.beacons)
    return Input(lines, args.app or app, args.canary or canary, args.baseline or baseline,
                 args.expected_share if args.expected_share is not None else share, note)


# -- the two measured paths ----------------------------------------------------------------------


def run_decode(lines: list[bytes]) -> int:
    loads = orjson.loads
    for line in lines:
        loads(line)
    return len(lines)


def run_core(inp: Input) -> CoreOutcome:
    """The lines as one partition's records through :class:`Run`, chunked as ``run_backtest`` does."""
    rollout = backtest_rollout(inp.app, inp.canary, inp.baseline, DEFAULT_POLICY, expected_share=inp.share)
    run = Run(rollout, stop_at_decision=False, keep_rejects=0)
    lines = inp.lines
    for offset in range(0, len(lines), CHUNK):
        run.add(0, list(enumerate(lines[offset:offset + CHUNK], offset)))
    result = run.finish(flush=True)
    final = result.final.verdict if result.final else "none"
    return CoreOutcome(result.beacons, result.rejected, result.windows, len(result.verdicts), final)


def run_core_general(inp: Input) -> CoreOutcome:
    """:func:`run_core` with the general decoding path only."""
    with mock.patch("detectors.pipeline.aggregate.decode_records", partial(decode_records, typed=False)):
        return run_core(inp)


def run_decoder(chunks: list[list[bytes]], typed: bool) -> tuple[int, int]:
    """``decode_records`` alone over ``chunks``: (accepted, rejected)."""
    accepted = rejected = 0
    for chunk in chunks:
        result = decode_records(chunk, typed=typed)
        accepted += len(result.batch)
        rejected += len(result.rejects)
    return accepted, rejected


def timed(fn, *args):
    gc.collect()
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


# -- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--beacons", type=int, default=200_000,
                    help="beacons to generate, or the first N lines of --file (default 200000)")
    ap.add_argument("--repeats", type=int, default=5, help="runs of each path (default 5)")
    ap.add_argument("--file", help="NDJSON (.gz ok) of canonical beacons instead of simulated traffic")
    ap.add_argument("--app", help=f"rollout app (default: the scenario's, or {APP})")
    ap.add_argument("--canary", help="canary release (default: the scenario's)")
    ap.add_argument("--baseline", help="baseline release (default: the scenario's)")
    ap.add_argument("--expected-share", type=float, default=None,
                    help="canary share for the sample-ratio check (default: the scenario's)")
    ap.add_argument("--compare", action="store_true",
                    help="also time the general decoding path, and the decoder alone on both paths")
    args = ap.parse_args(argv)
    if args.beacons <= 0 or args.repeats <= 0:
        ap.error("--beacons and --repeats must be positive")

    with tempfile.TemporaryDirectory(prefix="rumgate-bench-") as tmp:
        t0 = time.perf_counter()
        inp = load(args, Path(tmp))
        prep = time.perf_counter() - t0
    n = len(inp.lines)
    if n == 0:
        print("no beacons in the input", file=sys.stderr)
        return 2
    mb = sum(map(len, inp.lines)) / 1e6
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    print(f"input     {n:,} beacons, {mb:.1f} MB NDJSON, {mb * 1e6 / n:.0f} B/beacon ({inp.source}; "
          f"prepared in {prep:.1f} s)")
    print(f"rollout   {inp.app}: canary {inp.canary} vs baseline {inp.baseline}, "
          f"expected share {inp.share}, policy {DEFAULT_POLICY.name} {DEFAULT_POLICY.hash[:15]}…")
    print(f"machine   {os.cpu_count()} CPUs" + (f" ({affinity} usable)" if affinity else "")
          + f", Python {sys.version.split()[0]}, numpy {np.__version__}, orjson {orjson.__version__}")
    paths: dict[str, tuple] = {"core": (run_core, inp)}
    if args.compare:
        lines = [line.rstrip(b"\n") for line in inp.lines]
        chunks = [inp.lines[i:i + CHUNK] for i in range(0, n, CHUNK)]
        arrays = [[b"[" + b",".join(lines[i:i + ARRAY]) + b"]"] for i in range(0, n, ARRAY)]
        paths.update({"core-gen": (run_core_general, inp),
                      "dec-typed": (run_decoder, chunks, True), "dec-gen": (run_decoder, chunks, False),
                      "arr-typed": (run_decoder, arrays, True), "arr-gen": (run_decoder, arrays, False)})
    print(f"runs      {args.repeats} × (decode, {', '.join(paths)}), alternating; rates in beacons/s\n")

    timed(run_decode, inp.lines)  # warm-up: imports, allocator, caches
    reference = {name: timed(*call)[1] for name, call in paths.items()}
    # both decoding paths must give the same outcome, through the core and alone
    for a, b in (("core", "core-gen"), ("dec-typed", "dec-gen"), ("arr-typed", "arr-gen"), ("dec-typed", "arr-typed")):
        if b in reference and reference[a] != reference[b]:
            print(f"PATHS DIFFER: {a} gave {reference[a]}, {b} gave {reference[b]}", file=sys.stderr)
            return 3
    decode_rates: list[float] = []
    rates: dict[str, list[float]] = {name: [] for name in paths}
    ratios: dict[str, list[float]] = {name: [] for name in paths}
    print(f"{'run':>4} {'decode':>10}" + "".join(f" {name:>10} {'/decode':>7}" for name in paths))
    for r in range(args.repeats):
        t_dec, _ = timed(run_decode, inp.lines)
        decode_rates.append(n / t_dec)
        for name, call in paths.items():
            t, outcome = timed(*call)
            if outcome != reference[name]:
                print(f"NOT DETERMINISTIC: run {r + 1} of {name} gave {outcome}, the warm-up gave "
                      f"{reference[name]}", file=sys.stderr)
                return 3
            rates[name].append(n / t)
            ratios[name].append(t_dec / t)
        print(f"{r + 1:>4} {decode_rates[-1]:>10,.0f}"
              + "".join(f" {rates[x][-1]:>10,.0f} {ratios[x][-1]:>7.1%}" for x in paths))

    med_dec = statistics.median(decode_rates)
    med = {name: (statistics.median(rates[name]), statistics.median(ratios[name])) for name in paths}
    print(f"{'med':>4} {med_dec:>10,.0f}" + "".join(f" {med[x][0]:>10,.0f} {med[x][1]:>7.1%}" for x in paths))
    core = reference["core"]
    med_core, med_ratio = med["core"]
    met = med_ratio >= TARGET
    print(f"\ncore      {core.accepted:,} accepted, {core.rejected:,} rejected, "
          f"{core.windows:,} window summaries, {core.verdicts:,} verdicts, "
          f"final {core.final!r} (identical on every run" + (" and on both decoding paths)" if args.compare else ")"))
    print(f"result    core/decode median {med_ratio:.1%} (ratio of medians {med_core / med_dec:.1%}); "
          f"target ≥ {TARGET:.0%}: {'MET' if met else 'NOT MET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
