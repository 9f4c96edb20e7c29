"""Decision quality: rumgate's gate next to a Kayenta-style judge and a fixed-threshold rule.

All three judges see the same simulated traffic (``streams.offline.simulate``), window by window.
To afford thousands of rollouts the traffic is generated as columns per window and
counted straight into window summaries (``TumblingWindows`` on each window's batch):
no JSON round trip. ``--check-agreement`` shows once that this gives exactly the verdicts
of a beacon-level ``rumgate backtest`` over the same scenario written as NDJSON.

Judges
------
gate       rumgate's gate with the default policy, judged by the one driver
           (:class:`detectors.pipeline.run.Run`, stage 2: ``Run.add_windows``) as in
           ``rumgate backtest`` and the live worker.
kayenta    Mann-Whitney (normal approximation, tie-corrected) per metric, one side of a
           98 % interval (α = 0.01), re-run every minute on all data so far; rate metrics
           with a two-proportion z-test at the same level. Rollback at the first "High".
           Passes (promotes) at the end of its lifetime, the horizon.
threshold  Flagger / Argo style: every minute, the canary's last-minute p75 (or rate)
           against a fixed limit (20 % above the stationary baseline's p75, 30 % for
           rates); rollback after 3 consecutive failures, promote after 10 passes in a row.

Run ``python benchmarks/decision_quality.py --help``; the full run is
``python benchmarks/decision_quality.py --runs 1000 --power-runs 300 --markdown docs/benchmarks.md``.

``--policy`` judges with another policy than the default (``previous-default``: the four
metrics LCP, INP, CLS and errors that were the default before FCP and TTFB joined it, or a
policy file). ``--compare A B`` runs the gate under two policies on the same traffic (the
same seeds, window for window) and prints them side by side, without the other judges:
what a change of policy costs or buys, free of simulation noise between the two.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from detectors.gate import _rate_counts, arm_of  # noqa: E402
from detectors.pipeline.run import Run  # noqa: E402
from detectors.policy import DEFAULT_POLICY, Policy, parse_policy  # noqa: E402
from detectors.rollout import Rollout  # noqa: E402
from detectors.sketch import LogSketch  # noqa: E402
from detectors.verdict import Verdict  # noqa: E402
from detectors.windows import TumblingWindows, WindowSummary  # noqa: E402
from streams.offline.simulate import SCENARIOS, Regression, Scenario, generate_windows  # noqa: E402

WINDOW_MS = 5000
CHECK_EVERY = 12  # windows per judgement of the interval judges (one minute)

AA_SCENARIOS = ["stationary", "drift", "ramp", "clustered", "bursty-errors"]
POWER_SCENARIOS = {  # name: (regressions, other scenario settings)
    "LCP p75 +10 %": ([Regression("LCP", 1.10)], {}),
    "LCP p75 +25 %": ([Regression("LCP", 1.25)], {}),
    "INP +30 % (mobile only)": ([Regression("INP", 1.30, "mobile")], {}),
    "error page views ×1.5": ([Regression("errors", 1.5)], {}),
    # A server 35 % slower: TTFB only (the simulator moves no other metric with it).
    "TTFB 35 % slower": ([Regression("TTFB", 1.35)], {}),
    # The default traffic's LCP is narrower (log-s.d. 0.48) than one real site's (0.65).
    "LCP p75 +10 %, site-like LCP spread": ([Regression("LCP", 1.10)], {"lcp_spread": 0.65}),
}


#: The default policy before FCP and TTFB were judged (statistics.md §6 then): four metrics.
PREVIOUS_DEFAULT = parse_policy("name: previous-default\nmetrics:\n  - metric: LCP\n  - metric: INP\n"
                                "  - metric: CLS\n  - metric: errors\n")


def policy_named(name: str) -> Policy:
    """``default``, ``previous-default`` or the path of a policy file."""
    if name == "default":
        return DEFAULT_POLICY
    if name == "previous-default":
        return PREVIOUS_DEFAULT
    with open(name, encoding="utf-8") as f:
        return parse_policy(f.read(), source=name)


# -- the comparison judges -----------------------------------------------------------------


def _aligned(a: LogSketch, b: LogSketch) -> tuple[np.ndarray, np.ndarray]:
    """Bucket counts of two sketches on one index range, zeros first."""
    lo = min(a.offset if a.counts.size else 0, b.offset if b.counts.size else 0)
    hi = max(a.offset + a.counts.size, b.offset + b.counts.size)
    out = np.zeros((2, hi - lo + 1), np.float64)
    for row, s in enumerate((a, b)):
        out[row, 0] = s.zeros
        if s.counts.size:
            out[row, 1 + s.offset - lo : 1 + s.offset - lo + s.counts.size] = s.counts
    return out[0], out[1]


def mann_whitney_z(canary: LogSketch, baseline: LogSketch) -> float:
    """z of the Mann-Whitney U for "canary larger", from bucket counts (ties = one bucket)."""
    c, b = _aligned(canary, baseline)
    n1, n2 = c.sum(), b.sum()
    if n1 < 20 or n2 < 20:
        return 0.0
    below_b = np.cumsum(b) - b
    u = float(np.sum(c * (below_b + 0.5 * b)))
    t = c + b
    n = n1 + n2
    var = n1 * n2 / 12.0 * ((n + 1) - np.sum(t**3 - t) / (n * (n - 1)))
    return (u - n1 * n2 / 2.0) / math.sqrt(var) if var > 0 else 0.0


def proportion_z(k1: int, n1: int, k2: int, n2: int) -> float:
    if n1 < 20 or n2 < 20:
        return 0.0
    p = (k1 + k2) / (n1 + n2)
    se = math.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))
    return (k1 / n1 - k2 / n2) / se if se > 0 else 0.0


Z_99 = 2.3263478740408408  # one side of a 98 % two-sided interval


@dataclass
class Arms:
    """Cumulative or interval canary/baseline summaries for the comparison judges."""

    canary: WindowSummary
    baseline: WindowSummary


def _new_arms(size_ms: int) -> Arms:
    from detectors.beacon import CohortKey

    key = CohortKey("bench", "", None, "all")
    return Arms(WindowSummary.empty(key, 0, size_ms), WindowSummary.empty(key, 0, size_ms))


def _add(arms: Arms, summaries: list[WindowSummary], scenario: Scenario) -> None:
    for s in summaries:
        arm = arm_of(s.key, scenario.canary, scenario.baseline)
        if arm is not None:
            target = getattr(arms, arm)
            s = replace(s, start=0)
            target.merge(s)


def _metric_values(arms: Arms, metric) -> tuple:
    """(canary, baseline) statistic for the threshold judge and the data for Kayenta."""
    if metric.statistic == "rate":  # the gate's own (events, exposure) definition
        return (*_rate_counts(arms.canary, metric.metric), *_rate_counts(arms.baseline, metric.metric))
    return arms.canary.sketches[metric.metric], arms.baseline.sketches[metric.metric]


class KayentaJudge:
    """Mann-Whitney / z-test at one side of 98 %, re-run on all data every interval."""

    def __init__(self, policy: Policy) -> None:
        self.metrics = policy.metrics
        self.cum = _new_arms(WINDOW_MS)

    def judge(self, arms_interval: Arms) -> bool:
        """Merge the interval's data; True when some metric is classified High."""
        for side in ("canary", "baseline"):
            getattr(self.cum, side).merge(getattr(arms_interval, side))
        for m in self.metrics:
            data = _metric_values(self.cum, m)
            z = proportion_z(*data) if m.statistic == "rate" else mann_whitney_z(*data)
            if z > Z_99:
                return True
        return False


class ThresholdJudge:
    """Canary's last-interval statistic against a fixed limit; N consecutive failures."""

    def __init__(self, policy: Policy, limits: dict[str, float], failure_limit: int = 3,
                 success_checks: int = 10) -> None:
        self.metrics = policy.metrics
        self.limits = limits
        self.failure_limit, self.success_checks = failure_limit, success_checks
        self.failures = self.successes = 0

    def judge(self, arms_interval: Arms) -> str | None:
        failed = False
        for m in self.metrics:
            data = _metric_values(arms_interval, m)
            if m.statistic == "rate":
                value = data[0] / data[1] if data[1] else 0.0
            else:
                value = data[0].quantile(m.quantile) if data[0].count else 0.0
            failed |= value > self.limits[m.metric]
        self.failures = self.failures + 1 if failed else 0
        self.successes = 0 if failed else self.successes + 1
        if self.failures >= self.failure_limit:
            return "rollback"
        if self.successes >= self.success_checks:
            return "promote"
        return None


def threshold_limits(policy: Policy, seed: int = 99_999) -> dict[str, float]:
    """Limits a team would set: 20 % over today's baseline p75, 30 % over its rates."""
    scenario = replace(SCENARIOS["stationary"], duration_s=600.0)
    arms = _new_arms(WINDOW_MS)
    for batch in generate_windows(scenario, seed, WINDOW_MS):
        w = TumblingWindows(WINDOW_MS, 0)
        w.add(batch)
        _add(arms, w.flush(), scenario)
    limits = {}
    for m in policy.metrics:
        data = _metric_values(arms, m)
        if m.statistic == "rate":
            limits[m.metric] = 1.3 * data[2] / data[3]
        else:
            limits[m.metric] = 1.2 * data[1].quantile(m.quantile)
    return limits


# -- one rollout ---------------------------------------------------------------------------


def expected_share(scenario: Scenario, t_s: float) -> float:
    """The split the rollout was configured with at ``t_s`` (what a deploy tool knows)."""
    if scenario.canary_share_end is None:
        return scenario.canary_share
    frac = min(max(t_s / scenario.duration_s, 0.0), 1.0)
    return scenario.canary_share + (scenario.canary_share_end - scenario.canary_share) * frac


def window_summaries(scenario: Scenario, seed: int) -> Iterator[tuple[int, list[WindowSummary]]]:
    """(window start, summaries) per window, counted straight from generated columns."""
    for i, batch in enumerate(generate_windows(scenario, seed, WINDOW_MS)):
        w = TumblingWindows(WINDOW_MS, 0)
        w.add(batch)
        yield scenario.start_ms + i * WINDOW_MS, w.flush()


def _split(run: Run, share: float) -> None:
    """The rollout's configured split from now on, as a deploy tool re-records it on a ramp."""
    if run.rollout.expected_share != share:
        run.update_rollout(replace(run.rollout, expected_share=share))


def gate_names(policies: tuple[Policy, ...]) -> list[str]:
    """The result keys of the gates: ``gate`` alone, ``gate:NAME`` for each of several."""
    return ["gate"] if len(policies) == 1 else [f"gate:{p.name}" for p in policies]


def run_rollout(args: tuple) -> dict[str, dict]:
    """First rollback / promote / hold time (seconds) of each judge over one rollout.

    ``args``: (scenario, seed, policy or policies, threshold limits, to_horizon[, others]).
    Several policies: one gate each, on the same windows; ``others`` False leaves out the
    Kayenta-style and threshold judges (then ``limits`` is unused)."""
    scenario, seed, policies, limits, to_horizon, *rest = args
    others = rest[0] if rest else True
    policies = (policies,) if isinstance(policies, Policy) else tuple(policies)
    policy = policies[0]
    runs = {}
    for name, p in zip(gate_names(policies), policies):
        rollout = Rollout(f"{scenario.app}:{scenario.canary}", scenario.app, scenario.canary, scenario.baseline,
                          started_at=scenario.start_ms, policy=p)
        runs[name] = Run(rollout, window_ms=WINDOW_MS, lateness_ms=0, stop_at_decision=False)
    kayenta, threshold = (KayentaJudge(policy), ThresholdJudge(policy, limits)) if others else (None, None)
    # First time of each verdict kind (any time: A/A rollbacks count even after a promote),
    # and each judge's first decision (what a deploy tool would have acted on).
    out = {j: {"rollback": None, "promote": None, "hold": None, "first": None}
           for j in (*runs, *(("kayenta", "threshold") if others else ()))}

    def record(judge: str, verdict: str, t: float) -> None:
        if out[judge][verdict] is None:
            out[judge][verdict] = t
        if verdict in ("rollback", "promote") and out[judge]["first"] is None:
            out[judge]["first"] = (verdict, t)

    def gate_verdict(name: str):
        def on_verdict(v: Verdict) -> None:
            if v.verdict != "continue":
                record(name, v.verdict, (v.at - scenario.start_ms) / 1000)
        return on_verdict

    for name, run in runs.items():
        run.on_verdict = gate_verdict(name)
    interval = _new_arms(WINDOW_MS)
    for i, (_, summaries) in enumerate(window_summaries(scenario, seed)):
        t = (i + 1) * WINDOW_MS / 1000
        for run in runs.values():
            _split(run, expected_share(scenario, t))
            run.add_windows(0, summaries)  # one source: the window is judged at once
        if not others:
            if not to_horizon and all(o["first"] is not None for o in out.values()):
                break
            continue
        _add(interval, summaries, scenario)
        if (i + 1) % CHECK_EVERY == 0:
            if out["kayenta"]["rollback"] is None and kayenta.judge(interval):
                record("kayenta", "rollback", t)
            decision = threshold.judge(interval)
            if decision:
                record("threshold", decision, t)
            interval = _new_arms(WINDOW_MS)
        if not to_horizon and all(o["first"] is not None for o in out.values()):
            break
    if others and out["kayenta"]["rollback"] is None:
        record("kayenta", "promote", scenario.duration_s)  # passes at the end of its lifetime
    return out


# -- statistics of many rollouts -------------------------------------------------------------


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def rate_cell(times: list[float | None]) -> str:
    k, n = sum(t is not None for t in times), len(times)
    lo, hi = wilson(k, n)
    return f"{k / n:.1%} [{lo:.1%}, {hi:.1%}]"


def time_cell(times: list[float | None]) -> str:
    hit = [t for t in times if t is not None]
    if not hit:
        return "–"
    return f"{np.median(hit) / 60:.1f} / {np.percentile(hit, 90) / 60:.1f} min"


def run_many(scenario: Scenario, runs: int, policy: Policy | tuple[Policy, ...], limits: dict[str, float],
             to_horizon: bool, workers: int, seed0: int, others: bool = True) -> list[dict]:
    jobs = [(scenario, seed0 + r, policy, limits, to_horizon, others) for r in range(runs)]
    if workers <= 1:
        return [run_rollout(j) for j in jobs]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(run_rollout, jobs, chunksize=max(1, runs // (8 * workers))))


def check_agreement(seed: int = 7) -> bool:
    """Window-level summaries and a beacon-level backtest of the same scenario agree."""
    import tempfile

    from streams.offline.backtest import backtest_rollout, read_lines, run_backtest
    from streams.offline.simulate import write_ndjson

    scenario = replace(SCENARIOS["lcp-regression"], duration_s=900.0)
    share = scenario.canary_share
    run = Run(backtest_rollout(scenario.app, scenario.canary, scenario.baseline, DEFAULT_POLICY,
                               expected_share=share), window_ms=WINDOW_MS, lateness_ms=0, stop_at_decision=False)
    for _, s in window_summaries(scenario, seed):
        run.add_windows(0, s)
    fast = [v.to_dict() for v in run.finish().verdicts]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "agreement.ndjson.gz")
        n = write_ndjson(path, scenario, seed)
        result = run_backtest(read_lines([path]), DEFAULT_POLICY, scenario.app, scenario.canary,
                              scenario.baseline, expected_share=share, lateness_ms=0,
                              stop_at_decision=False)
    slow = [v.to_dict() for v in result.verdicts]
    same = fast == slow
    first = next((v for v in slow if v["verdict"] != "continue"), None)
    print(f"agreement: {n} beacons, {len(slow)} beacon-level verdicts, {len(fast)} window-level "
          f"verdicts, identical: {same}; first decision: "
          f"{first['verdict'] if first else None} at +{(first['inputs']['elapsed_ms'] / 1000) if first else 0:.0f} s")
    return same


def gate_cost(policies: tuple[Policy, ...], minutes: float = 30.0, repeats: int = 5, seed: int = 1) -> None:
    """CPU per window of the gate under each policy: the same windows of ``stationary``
    traffic (built once, outside the clock) through a fresh :class:`Run` per repeat,
    policies alternating; prints the median of the repeats."""
    scenario = replace(SCENARIOS["stationary"], duration_s=minutes * 60)
    windows = [s for _, s in window_summaries(scenario, seed)]
    times: dict[str, list[float]] = {p.name: [] for p in policies}
    for _ in range(repeats):
        for p in policies:
            rollout = Rollout(f"{scenario.app}:{scenario.canary}", scenario.app, scenario.canary,
                              scenario.baseline, started_at=scenario.start_ms, policy=p)
            run = Run(rollout, window_ms=WINDOW_MS, lateness_ms=0, stop_at_decision=False)
            t0 = time.process_time()
            for summaries in windows:
                run.add_windows(0, summaries)
            times[p.name].append((time.process_time() - t0) / len(windows))
    for p in policies:
        runs = ", ".join(f"{t * 1000:.2f}" for t in times[p.name])
        print(f"gate cost, {p.name} ({len(p.metrics)} metrics): median {np.median(times[p.name]) * 1000:.2f} ms "
              f"CPU per window over {len(windows)} windows (runs: {runs} ms)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=1000, help="A/A rollouts per scenario (default 1000)")
    ap.add_argument("--power-runs", type=int, default=300, help="rollouts per regression scenario")
    ap.add_argument("--horizon", type=float, default=1800.0, help="seconds per rollout (default 1800)")
    ap.add_argument("--promote-runs", type=int, default=300, help="clean rollouts for time to promote")
    ap.add_argument("--promote-horizon", type=float, default=3600.0,
                    help="seconds per clean rollout (default 3600: promote needs every metric)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", nargs="*", help="run only these scenario names")
    ap.add_argument("--policy", default="default",
                    help="the gate's policy: default, previous-default (LCP, INP, CLS, errors) or a policy file")
    ap.add_argument("--compare", nargs=2, metavar=("A", "B"),
                    help="the gate under two policies (each as --policy) on the same traffic, side by side; "
                         "no Kayenta-style or threshold judge")
    ap.add_argument("--markdown", help="also write the tables to this markdown file section")
    ap.add_argument("--check-agreement", action="store_true", help="only run the agreement check")
    ap.add_argument("--gate-cost", action="store_true",
                    help="only time the gate per window under each --compare policy (or --policy)")
    args = ap.parse_args()
    if args.check_agreement:
        sys.exit(0 if check_agreement() else 1)
    if args.gate_cost:
        gate_cost(tuple(policy_named(n) for n in (args.compare or [args.policy])))
        return

    if args.compare:
        policies = tuple(policy_named(n) for n in args.compare)
        if len({p.name for p in policies}) < 2:
            ap.error("--compare needs two policies with different names")
        judges, others, limits = gate_names(policies), False, {}
        for p in policies:
            print(f"policy {p.name} {p.hash[:19]}…: {', '.join(m.label for m in p.metrics)}", flush=True)
    else:
        policies = (policy_named(args.policy),)
        judges, others = ["gate", "kayenta", "threshold"], True
        limits = threshold_limits(policies[0])
        print(f"policy {policies[0].name} {policies[0].hash[:19]}…; threshold limits: "
              + ", ".join(f"{k} {v:.4g}" for k, v in limits.items()), flush=True)
    gates = gate_names(policies)
    rows_aa, rows_power, rows_clean = [], [], []
    began = time.time()

    def want(name: str) -> bool:
        return not args.only or name in args.only

    for name in AA_SCENARIOS:
        if not want(name):
            continue
        sc = replace(SCENARIOS[name], duration_s=args.horizon)
        t0 = time.time()
        res = run_many(sc, args.runs, policies, limits, True, args.workers, args.seed, others)
        row = [name] + [rate_cell([r[j]["rollback"] for r in res]) for j in judges]
        row += [rate_cell([r[g]["hold"] for r in res]) for g in gates]
        rows_aa.append(row)
        print(f"A/A {name}: {row[1:]} ({time.time() - t0:.0f} s)", flush=True)
    if want("clean"):
        sc = replace(SCENARIOS["clean"], duration_s=args.promote_horizon)
        t0 = time.time()
        res = run_many(sc, args.promote_runs, policies, limits, False, args.workers, args.seed + 200_000, others)
        promoted = {j: [r[j]["first"][1] if r[j]["first"] and r[j]["first"][0] == "promote" else None
                        for r in res] for j in judges}
        rows_clean.append([f"clean canary ({args.promote_horizon / 60:.0f} min)"] + [
            f"{rate_cell(promoted[j])}; {time_cell(promoted[j])}" for j in judges])
        print(f"clean: {rows_clean[-1][1:]} ({time.time() - t0:.0f} s)", flush=True)
    for name, (regressions, settings) in POWER_SCENARIOS.items():
        if not want(name):
            continue
        sc = replace(SCENARIOS["stationary"], duration_s=args.horizon, regressions=tuple(regressions),
                     **settings)
        t0 = time.time()
        res = run_many(sc, args.power_runs, policies, limits, False, args.workers, args.seed + 100_000, others)
        row = [name]
        for j in judges:
            # Detected = the judge's first decision was a rollback (not a promote first).
            times = [r[j]["first"][1] if r[j]["first"] and r[j]["first"][0] == "rollback" else None
                     for r in res]
            # A regressed canary promoted first is what a deploy tool would have shipped.
            promoted = [r[j]["first"][1] if r[j]["first"] and r[j]["first"][0] == "promote" else None
                        for r in res]
            shipped = sum(t is not None for t in promoted)
            row.append(f"{rate_cell(times)}; {time_cell(times)}"
                       + (f"; promoted first: {shipped / len(res):.0%}, {time_cell(promoted)}" if shipped else ""))
        rows_power.append(row)
        print(f"power {name}: {row[1:]} ({time.time() - t0:.0f} s)", flush=True)

    if args.compare:
        columns = [f"gate, {p.name} ({len(p.metrics)} metrics)" for p in policies]
        header = "| scenario | " + " | ".join(columns) + " |"
        rule = "|---|" + "---|" * len(columns)
        hold_header = " | ".join(f"HOLD, {p.name}" for p in policies) + " |"
    else:
        header = "| scenario | rumgate gate | Kayenta-style MW 98 % | fixed threshold |"
        rule = "|---|---|---|---|"
        hold_header = "gate HOLD |"
    lines = [
        f"A/A: false-rollback rate over {args.runs} rollouts of {args.horizon / 60:.0f} min each, "
        "judged every window (gate) or minute (others), with 95 % Wilson intervals. The last "
        f"column{'s are' if len(gates) > 1 else ' is'} the gate's HOLD rate (sample-ratio mismatch or silence), "
        "which is not a rollback.",
        "",
        header + " " + hold_header, rule + "---|" * len(gates),
        *["| " + " | ".join(r) + " |" for r in rows_aa],
        "",
        f"Regressions (canary only, from the start, 5 % share, 100 beacons/s): detection rate; median / p90 "
        f"time to rollback, over {args.power_runs} rollouts.",
        "",
        header, rule,
        *["| " + " | ".join(r) + " |" for r in rows_power],
        "",
        f"Clean canaries: promote rate; median / p90 time to promote, over {args.promote_runs} rollouts"
        + ("." if args.compare else " (Kayenta-style passes at the end of its lifetime, the horizon)."),
        "",
        header, rule,
        *["| " + " | ".join(r) + " |" for r in rows_clean],
    ]
    text = "\n".join(lines)
    print()
    print(text)
    print(f"\n({time.time() - began:.0f} s with {args.workers} workers)")
    if args.markdown:
        with open(args.markdown, "a", encoding="utf-8") as f:
            f.write("\n" + text + "\n")

if __name__ == "__main__":
    main()
