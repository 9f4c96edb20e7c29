"""``rumgate demo``: a simulated rollout judged live in the terminal.

Simulated beacons are encoded as the NDJSON records a gateway would produce and run
through :func:`streams.backtest.run_backtest` (decoder, windows, gate), paced so that
simulated time runs ``--speed`` times faster than the wall clock. This version runs in-process; the live pipeline on the embedded broker
replaces the pacing loop with Kafka topics and Faust agents.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from itertools import groupby

import click
import orjson

from detectors.verdict import EXIT_CODES, Verdict
from detectors.windows import DEFAULT_WINDOW_MS
from streams.backtest import run_backtest
from streams.cli import _describe, _duration, load_policy_file
from streams.simulate import SCENARIOS, generate_beacons
from streams.simulate_cli import SCENARIO_NOTES

__all__ = ["demo"]

DEMO_SCENARIOS = {name: SCENARIO_NOTES[name] for name in ("lcp-regression", "inp-mobile", "errors", "clean")}


DEMO_HELP = """Watch rumgate judge a simulated canary rollout, live.

100 beacons/s of realistic traffic, 5 % of it on the canary. Ends with the verdict and
its explanation, and exits like `rumgate backtest`: 0 promote, 1 rollback, 2 hold or no
decision, 3 error.

\b
Scenarios:""" + "".join(f"\n  {k:<15} {v}" for k, v in DEMO_SCENARIOS.items())


@click.command(help=DEMO_HELP)
@click.option("--scenario", type=click.Choice(sorted(DEMO_SCENARIOS)), default="lcp-regression",
              show_default=True, help="What the canary does.")
@click.option("--seed", type=int, default=1, show_default=True, help="Simulation seed.")
@click.option("--speed", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Simulated seconds per wall-clock second.")
@click.option("--duration", "duration_ms", default="30m", show_default=True, callback=_duration,
              help="Longest simulated rollout.")
@click.option("--policy", "policy_path", type=click.Path(dir_okay=False), help="Policy file (YAML).")
def demo(scenario: str, seed: int, speed: float, duration_ms: int, policy_path: str | None) -> None:
    policy = load_policy_file(policy_path)
    sim = _scenario(scenario, duration_ms)
    click.echo(f"rumgate demo: {scenario} ({DEMO_SCENARIOS[scenario]})")
    click.echo(f"  app {sim.app}: canary {sim.canary} vs baseline {sim.baseline}, "
               f"{sim.rate:g} beacons/s, {sim.canary_share:.0%} canary; policy {policy.name}; "
               f"simulated time ×{speed:g}")
    click.echo("  (in-process: simulated beacons → decoder → windows → gate; no broker yet)")
    began = time.monotonic()
    fed = {"beacons": 0, "shown": -1}

    def records() -> Iterator[list[bytes]]:
        """One window of simulated beacons at a time, encoded as a gateway would send them."""
        beacons = generate_beacons(sim, seed, DEFAULT_WINDOW_MS)
        for _, rows in groupby(beacons, key=lambda b: b["ts"] // DEFAULT_WINDOW_MS):
            chunk = [orjson.dumps(b) for b in rows]
            fed["beacons"] += len(chunk)
            yield chunk

    def show(verdict: Verdict) -> None:
        elapsed_s = verdict.inputs.get("elapsed_ms", 0) // 1000
        wait = elapsed_s / speed - (time.monotonic() - began)  # pace simulated time
        if wait > 0:
            time.sleep(wait)
        if elapsed_s // 30 != fed["shown"] or verdict.verdict != "continue":
            fed["shown"] = elapsed_s // 30
            click.echo(f"{_describe(verdict)}   [{fed['beacons']:,} beacons]")

    result = run_backtest(records(), policy, sim.app, sim.canary, sim.baseline,
                          expected_share=sim.canary_share, lateness_ms=0, on_verdict=show)
    _finish(result.final, time.monotonic() - began)


def _scenario(name: str, duration_ms: int):
    return replace(SCENARIOS[name], duration_s=duration_ms / 1000)


def _finish(verdict: Verdict | None, wall_s: float) -> None:
    if verdict is None:
        click.echo("no verdict: the simulation produced no windows")
        sys.exit(EXIT_CODES["hold"])
    click.echo("")
    click.echo(f"final verdict after {verdict.inputs.get('elapsed_ms', 0) / 60_000:.1f} simulated min "
               f"({wall_s:.0f} s): {verdict.verdict.upper()}"
               + (f" ({verdict.severity})" if verdict.severity != "none" else ""))
    for reason in verdict.reasons:
        click.echo(f"  - {reason}")
    click.echo("evidence:")
    for m in verdict.metrics:
        if m.canary is None or m.baseline is None:
            values = ""
        elif m.statistic == "rate":
            values = f"canary {m.canary:.2%} vs baseline {m.baseline:.2%}; "
        else:
            values = f"canary {m.canary:.0f} vs baseline {m.baseline:.0f}; "
        bracket = []
        if m.worse_by_at_least == 0:
            bracket.append("proven worse")
        elif m.worse_by_at_least is not None:
            bracket.append(f"worse by ≥ {m.worse_by_at_least:.0%}")
        if m.not_worse_than is not None:
            bracket.append(f"not worse than {m.not_worse_than:.0%}")
        click.echo(f"  {m.name:<28} {m.status:<12} {values}"
                   f"e {max(m.e_rollback, m.e_worse or 0):.3g}/{m.threshold_rollback:.3g}, n={m.n_canary}"
                   + (f"; {', '.join(bracket)}" if bracket else ""))
    sys.exit(EXIT_CODES[verdict.verdict])
