"""NAB v1.1: the project's own scorer, and every detector of ``detectors.anomaly`` run on it.

The Numenta Anomaly Benchmark corpus (58 series, 116 labelled windows) is read from
``--data`` (``data/<category>/<file>.csv`` and ``labels/combined_windows.json``). Each
detector is built fresh per file and sees every row as ``score_one(t, x)`` then
``learn_one(t, x)`` (``t`` = the row's timestamp as epoch ms, UTC). The scores are scored
the way NAB v1.1 does (re-implemented here from the rules, not copied):

* probation: the first ``min(floor(0.15·n), 0.15·5000)`` rows of a file are not scored;
* the scaled sigmoid ``σ(p) = 2/(1 + e^(5p)) − 1`` (``−1`` for ``p > 3``);
* inside a window ``[L, R]`` of width ``W`` a detected row ``i`` is worth
  ``A_TP·σ(−(R − i + 1)/W)/σ(−1)`` and only the best (earliest) detection of a window counts;
  a window without detection costs ``−A_FN``;
* outside windows each detected row costs ``A_FP`` (before the first window) or
  ``A_FP·σ(|R_prev − i|/(W_prev − 1))`` after the window ``R_prev, W_prev``;
* a row is detected iff its score ``≥ θ``; one ``θ`` per detector and profile, the one that
  maximises the corpus raw score over all distinct scores (and 1.1 = never);
* normalised ``100·(raw − null)/(perfect − null)``, null = ``−A_FN·#windows``,
  perfect = ``A_TP·#windows``.

Profiles (A_TP, A_FN, A_FP): standard (1, 1, 0.11), reward_low_FP_rate (1, 1, 0.22),
reward_low_FN_rate (1, 2, 0.11).

Run ``python benchmarks/nab.py --self-check`` to validate the scorer, and
``python benchmarks/nab.py --workers 2`` for the full table.
"""

from __future__ import annotations

import argparse
import calendar
import csv
import glob
import json
import math
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from detectors.anomaly import (  # noqa: E402
    DETECTORS, GATE_DETECTOR, ContextualAnomaly, Detector, LODAScorer, MaxScore, NewPeakFilter, TimeOfDayResidual,
)

DEFAULT_DATA = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "nab"))

PROFILES: dict[str, tuple[float, float, float]] = {  # A_TP, A_FN, A_FP
    "standard": (1.0, 1.0, 0.11),
    "reward_low_FP_rate": (1.0, 1.0, 0.22),
    "reward_low_FN_rate": (1.0, 2.0, 0.11),
}

# Published NAB v1.1 results (results/final_results.json; river LODA from the research note),
# with what each took from NAB's harness besides the rows (nab/detectors/base.py hands every
# detector the file's minimum and maximum and the probation length): the min/max is
# look-ahead, since a file's extremes are usually its anomalies.
SCOREBOARD = [  # name, standard, low FP, low FN, inputs from the harness
    ("Numenta HTM", 70.1, 63.1, 74.3, "file min/max (encoder range), probation"),
    ("CAD OSE", 69.9, 67.0, 73.2, "file min/max (value range), probation (rest period)"),
    ("Skyline (earthgecko)", 58.2, 46.2, 63.8, "none"),
    ("KNN CAD", 58.0, 43.4, 64.8, "probation"),
    ("Random Cut Forest", 51.7, 38.4, 59.7, "none"),
    ("river LODA [v, dv]", 51.0, 41.6, 56.4, "none"),
]

#: Builds that take what NAB's harness hands a detector, ``(file min, file max, probation)``,
#: to compare like with like with the published CAD OSE and HTM; name: (inputs used, build).
#: Not in ``detectors.anomaly.DETECTORS``: the gate sees one window at a time, without them.
WITH_NAB_INPUTS: dict[str, tuple[str, Callable[[float, float, int], Detector]]] = {
    # CAD OSE as NAB runs it: the file's range, rest period probation/5 (69.8 against 69.9)
    "context+nab_inputs": ("file min/max, probation", lambda lo, hi, p: ContextualAnomaly(
        value_range=(lo, hi), rest_period=p // 5)),
    # the gate's detector (peak_ensemble) with the file's range given to its CAD half
    "peak_ensemble+nab_inputs": ("file min/max", lambda lo, hi, p: NewPeakFilter(
        MaxScore([TimeOfDayResidual(LODAScorer()), ContextualAnomaly(value_range=(lo, hi), rest_period=0)]),
        window=100)),
}


# -- scoring -----------------------------------------------------------------------------------
def scaled_sigmoid(p: float) -> float:
    """NAB's ``σ(p) = 2/(1 + e^(5p)) − 1``, exactly ``−1`` beyond ``p = 3``."""
    if p > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * p)) - 1.0


def probation(n: int) -> int:
    """Rows at the start of a file that are not scored."""
    return int(min(math.floor(0.15 * n), 0.15 * 5000))


@dataclass
class FileLabels:
    """Per-row weights of one file, independent of the profile.

    ``unweighted[i]`` is σ-weight of row ``i`` (positive inside windows, ≤ 0 outside),
    ``window[i]`` the window id (-1 outside), ``first`` the first scored row.
    """

    unweighted: np.ndarray
    window: np.ndarray
    n_windows: int
    first: int


def file_labels(timestamps: list[str], windows: list[tuple[str, str]]) -> FileLabels:
    """Weights of every row from the file's timestamps and its ``[start, end]`` windows."""
    n = len(timestamps)
    index = {ts: i for i, ts in enumerate(timestamps)}
    limits = []
    for start, end in windows:
        a, b = index[start.split(".")[0]], index[end.split(".")[0]]
        limits.append((a, b))
    limits.sort()
    unweighted = np.empty(n, np.float64)
    window = np.full(n, -1, np.int64)
    norm = scaled_sigmoid(-1.0)
    prev: tuple[int, int] | None = None  # (right index, width) of the last window passed
    k = 0
    for i in range(n):
        while k < len(limits) and i > limits[k][1]:
            prev = (limits[k][1], limits[k][1] - limits[k][0] + 1)
            k += 1
        if k < len(limits) and limits[k][0] <= i <= limits[k][1]:
            left, right = limits[k]
            width = right - left + 1
            unweighted[i] = scaled_sigmoid(-(right - i + 1) / width) / norm
            window[i] = k
        elif prev is None:
            unweighted[i] = -1.0
        else:
            right, width = prev
            unweighted[i] = scaled_sigmoid(abs(right - i) / max(width - 1, 1))
    return FileLabels(unweighted, window, len(limits), probation(n))


def optimise(files: list[tuple[FileLabels, np.ndarray]], profile: str) -> tuple[float, float]:
    """Best ``(θ, raw score)`` over the corpus for one profile, NAB's exhaustive sweep.

    The raw score at ``θ`` is Σ windows (A_TP·best weight detected, or −A_FN) + Σ detected
    rows outside windows A_FP·weight. Candidate thresholds are 1.1 (never detect) and every
    distinct score; ties are detected together (``score ≥ θ``).
    """
    a_tp, a_fn, a_fp = PROFILES[profile]
    fp_scores, fp_gain, ev_scores, ev_gain = [], [], [], []
    n_windows = 0
    for lab, scores in files:
        s = np.asarray(scores, np.float64)[lab.first :]
        u = lab.unweighted[lab.first :]
        w = lab.window[lab.first :]
        out = w < 0
        fp_scores.append(s[out])
        fp_gain.append(a_fp * u[out])
        for k in range(lab.n_windows):
            n_windows += 1
            sel = w == k
            ws, wu = s[sel], u[sel]
            order = np.argsort(-ws, kind="stable")
            best = -a_fn
            for j in order:  # each time a lower θ reaches a better (earlier) row, the window gains
                value = a_tp * wu[j]
                if value > best:
                    ev_scores.append(ws[j])
                    ev_gain.append(value - best)
                    best = value
    base = -a_fn * n_windows
    all_s = np.concatenate(fp_scores + [np.asarray(ev_scores, np.float64)])
    all_g = np.concatenate(fp_gain + [np.asarray(ev_gain, np.float64)])
    if all_s.size == 0:
        return 1.1, base
    order = np.argsort(-all_s, kind="stable")
    s_sorted, cum = all_s[order], np.cumsum(all_g[order])
    # a threshold θ = s_sorted[i] detects every row up to the last one with the same score
    last_of_tie = np.r_[s_sorted[1:] != s_sorted[:-1], True]
    totals = base + cum[last_of_tie]
    thresholds = s_sorted[last_of_tie]
    best = int(np.argmax(totals))
    if totals[best] <= base:
        return 1.1, base
    return float(thresholds[best]), float(totals[best])


def normalise(raw: float, n_windows: int, profile: str) -> float:
    """``100·(raw − null)/(perfect − null)``."""
    a_tp, a_fn, _ = PROFILES[profile]
    null, perfect = -a_fn * n_windows, a_tp * n_windows
    return 100.0 * (raw - null) / (perfect - null)


# -- corpus --------------------------------------------------------------------------------------
def epoch_ms(ts: str) -> int:
    """``YYYY-MM-DD HH:MM:SS`` (UTC) as epoch milliseconds."""
    d, h = ts.split(" ")
    y, mo, da = (int(p) for p in d.split("-"))
    hh, mm, ss = (int(float(p)) for p in h.split(":"))
    return calendar.timegm((y, mo, da, hh, mm, ss, 0, 0, 0)) * 1000


def read_series(path: str) -> tuple[list[str], list[float]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))[1:]
    return [r[0] for r in rows], [float(r[1]) for r in rows]


def corpus(data_dir: str) -> list[str]:
    with open(os.path.join(data_dir, "labels", "combined_windows.json")) as f:
        windows = json.load(f)
    keys = sorted(windows)
    missing = [k for k in keys if not os.path.exists(os.path.join(data_dir, "data", k))]
    if missing:
        raise SystemExit(f"missing data files: {missing[:3]}...")
    return keys


def run_file(job: tuple[str, str, str]) -> tuple[str, str, np.ndarray, float]:
    """Score one file with a fresh detector: score-then-learn on every row."""
    name, data_dir, key = job
    timestamps, values = read_series(os.path.join(data_dir, "data", key))
    if name in WITH_NAB_INPUTS:
        det = WITH_NAB_INPUTS[name][1](min(values), max(values), probation(len(values)))
    else:
        det = DETECTORS[name]()
    out = np.empty(len(values), np.float64)
    t0 = time.perf_counter()
    for i, (ts, x) in enumerate(zip(timestamps, values)):
        t = epoch_ms(ts)
        out[i] = det.score_one(t, x)
        det.learn_one(t, x)
    elapsed = time.perf_counter() - t0
    if not (np.all(out >= 0.0) and np.all(out <= 1.0)):
        raise ValueError(f"{name} on {key}: score outside [0, 1]")
    return name, key, out, elapsed


def load_labels(data_dir: str, keys: list[str]) -> dict[str, FileLabels]:
    with open(os.path.join(data_dir, "labels", "combined_windows.json")) as f:
        windows = json.load(f)
    labels = {}
    for key in keys:
        timestamps, _ = read_series(os.path.join(data_dir, "data", key))
        labels[key] = file_labels(timestamps, windows[key])
    return labels


# -- self-check --------------------------------------------------------------------------------
def self_check(data_dir: str) -> None:
    keys = corpus(data_dir)
    labels = load_labels(data_dir, keys)
    n_windows = sum(lab.n_windows for lab in labels.values())
    rows = sum(lab.unweighted.size for lab in labels.values())
    print(f"corpus: {len(keys)} files, {rows:,} rows, {n_windows} windows")
    assert len(keys) == 58 and rows == 365_558 and n_windows == 116, "corpus differs from NAB v1.1"
    assert abs(scaled_sigmoid(-1.0) - 0.98661) < 1e-5
    # the research note's worked example: raw 46.634 (standard) is numenta's 70.10
    assert abs(normalise(46.634, 116, "standard") - 70.10) < 0.005
    in_windows = sum(int((lab.window >= 0).sum()) for lab in labels.values())
    print(f"rows inside windows: {in_windows:,} ({100 * in_windows / rows:.1f} %)")
    assert in_windows == 33_495, in_windows
    checks = {
        "null (constant 0.5)": ({k: np.full(lab.unweighted.size, 0.5) for k, lab in labels.items()}, 0.0),
        "never fires (all 0)": ({k: np.zeros(lab.unweighted.size) for k, lab in labels.items()}, 0.0),
    }
    perfect = {}
    for k, lab in labels.items():
        s = np.zeros(lab.unweighted.size)
        for w in range(lab.n_windows):
            s[np.flatnonzero(lab.window == w)[0]] = 1.0
        perfect[k] = s
    checks["perfect (first row of each window)"] = (perfect, 100.0)
    # one detection at the last row of every window: worth σ(−1/W)/σ(−1) each, between 0 and 100
    late = {}
    for k, lab in labels.items():
        s = np.zeros(lab.unweighted.size)
        for w in range(lab.n_windows):
            s[np.flatnonzero(lab.window == w)[-1]] = 1.0
        late[k] = s
    expect_late = {}
    for p, (a_tp, a_fn, _) in PROFILES.items():
        raw = 0.0
        for lab in labels.values():
            for w in range(lab.n_windows):
                width = int((lab.window == w).sum())
                raw += a_tp * scaled_sigmoid(-1.0 / width) / scaled_sigmoid(-1.0)
        expect_late[p] = normalise(raw, 116, p)
    for name, (scores, expected) in checks.items():
        got = [normalise(optimise([(labels[k], scores[k]) for k in keys], p)[1], 116, p) for p in PROFILES]
        print(f"{name:40s} " + " ".join(f"{g:7.2f}" for g in got) + f"   expected {expected}")
        assert all(abs(g - expected) < 1e-9 for g in got), (name, got)
    got = [normalise(optimise([(labels[k], late[k]) for k in keys], p)[1], 116, p) for p in PROFILES]
    print(f"{'last row of each window':40s} " + " ".join(f"{g:7.2f}" for g in got)
          + "   expected " + " ".join(f"{expect_late[p]:.2f}" for p in PROFILES))
    assert all(abs(g - expect_late[p]) < 1e-9 for g, p in zip(got, PROFILES))
    # every row fires: each window gains its first row (A_TP), every outside row costs its weight
    everything = {k: np.ones(lab.unweighted.size) for k, lab in labels.items()}
    for p, (a_tp, a_fn, a_fp) in PROFILES.items():
        raw_all = sum(a_tp * lab.n_windows + a_fp * float(lab.unweighted[lab.first :][lab.window[lab.first :] < 0].sum())
                      for lab in labels.values())
        theta, raw = optimise([(labels[k], everything[k]) for k in keys], p)
        expected = max(raw_all, -a_fn * 116)
        assert abs(raw - expected) < 1e-6, (p, raw, expected)
        print(f"all rows fire, {p:20s} raw {raw_all:10.2f} -> best {'never' if theta > 1 else 'fire'}"
              f" ({normalise(raw, 116, p):.2f})")
    # brute force: the sweep equals scoring each candidate threshold from scratch
    rng = np.random.default_rng(0)
    sub = keys[::7]
    rand = {k: np.round(rng.random(labels[k].unweighted.size), 2) for k in sub}
    for p, (a_tp, a_fn, a_fp) in PROFILES.items():
        theta, raw = optimise([(labels[k], rand[k]) for k in sub], p)
        best = -math.inf
        for th in np.unique(np.concatenate([rand[k] for k in sub])):
            total = 0.0
            for k in sub:
                lab, s = labels[k], rand[k]
                det = (s >= th) & (np.arange(s.size) >= lab.first)
                total += a_fp * float(lab.unweighted[det & (lab.window < 0)].sum())
                for w in range(lab.n_windows):
                    hit = det & (lab.window == w)
                    total += a_tp * float(lab.unweighted[hit].max()) if hit.any() else -a_fn
            best = max(best, total)
        assert abs(best - raw) < 1e-6 or (raw == -a_fn * sum(labels[k].n_windows for k in sub) and best <= raw), (p, best, raw)
    print("sweep == brute force on random scores (9 files, 3 profiles)")
    # an independent reference: river's StandardAbsoluteDeviation, z squashed as z/(1+z), scored
    # 40.56 / 28.84 / 48.02 with NAB's own code (research note nab-and-river.md, section 2)
    from river import anomaly

    sad = {}
    for k in keys:
        _, values = read_series(os.path.join(data_dir, "data", k))
        m, out = anomaly.StandardAbsoluteDeviation(), np.empty(len(values))
        for i, v in enumerate(values):
            z = m.score_one(None, v)
            out[i] = z / (1 + z)
            m.learn_one(None, v)
        sad[k] = out
    got = [normalise(optimise([(labels[k], sad[k]) for k in keys], p)[1], 116, p) for p in PROFILES]
    print(f"{'river SAD (NAB official code: 40.56 28.84 48.02)':40s} " + " ".join(f"{g:7.2f}" for g in got))
    assert [round(g, 2) for g in got] == [40.56, 28.84, 48.02], got
    print("self-check passed")


# -- main ---------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=DEFAULT_DATA, help="NAB corpus directory (default %(default)s)")
    ap.add_argument("--detector", action="append", choices=sorted(DETECTORS) + sorted(WITH_NAB_INPUTS),
                    help="detector name (repeatable; default: all in DETECTORS)")
    ap.add_argument("--workers", type=int, default=2, help="processes (default %(default)s)")
    ap.add_argument("--files", default="*", help="glob over '<category>/<file>.csv' (default: all 58)")
    ap.add_argument("--self-check", action="store_true", help="validate the scorer and exit")
    ap.add_argument("--json", help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    if args.self_check:
        self_check(args.data)
        return 0
    import fnmatch

    keys = [k for k in corpus(args.data) if fnmatch.fnmatch(k, args.files)]
    names = args.detector or list(DETECTORS)
    labels = load_labels(args.data, keys)
    n_windows = sum(labels[k].n_windows for k in keys)
    jobs = [(n, args.data, k) for n in names for k in sorted(keys, key=lambda k: -labels[k].unweighted.size)]
    scores: dict[str, dict[str, np.ndarray]] = {n: {} for n in names}
    cpu: dict[str, float] = {n: 0.0 for n in names}
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for i, (name, key, out, elapsed) in enumerate(pool.map(run_file, jobs, chunksize=1), 1):
            scores[name][key] = out
            cpu[name] += elapsed
            print(f"[{i}/{len(jobs)}] {name} {key} {out.size} rows {elapsed:.1f}s", file=sys.stderr)
    wall = time.perf_counter() - t0
    rows = sum(labels[k].unweighted.size for k in keys)
    results = {}
    for name in names:
        files = [(labels[k], scores[name][k]) for k in keys]
        results[name] = {}
        for p in PROFILES:
            theta, raw = optimise(files, p)
            results[name][p] = {"score": normalise(raw, n_windows, p), "threshold": theta, "raw": raw}
        results[name]["rows_per_s"] = rows / cpu[name]
    print(f"\nNAB v1.1, {len(keys)} files, {rows:,} rows, {n_windows} windows; wall {wall:.0f} s "
          f"with {args.workers} workers\n")
    print("| detector | Standard | Low FP | Low FN | rows/s | inputs from NAB's harness |")
    print("|---|---:|---:|---:|---:|---|")
    for name in sorted(names, key=lambda n: -results[n]["standard"]["score"]):
        r = results[name]
        mark = " (GATE_DETECTOR)" if name == GATE_DETECTOR else ""
        print(f"| `{name}`{mark} | {r['standard']['score']:.1f} | {r['reward_low_FP_rate']['score']:.1f} | "
              f"{r['reward_low_FN_rate']['score']:.1f} | {r['rows_per_s'] / 1000:.1f} k | "
              f"{WITH_NAB_INPUTS[name][0] if name in WITH_NAB_INPUTS else 'none'} |")
    for label, s, lfp, lfn, inputs in SCOREBOARD:
        print(f"| {label} (published) | {s:.1f} | {lfp:.1f} | {lfn:.1f} | | {inputs} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"files": len(keys), "rows": rows, "wall_s": wall, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
