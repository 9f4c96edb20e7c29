"""``rumgate simulate``: write realistic simulated RUM traffic to an NDJSON file.

Registered in the ``rumgate`` group by :mod:`streams.cli`; the model is in
:mod:`streams.offline.simulate`.
"""

from __future__ import annotations

from dataclasses import replace

import click

from streams.cli.common import duration_seconds
from streams.offline.simulate import SCENARIOS, Regression, Scenario, write_counted

__all__ = ["simulate_command"]

SCENARIO_NOTES = {
    "stationary": "A/A: canary as good as the baseline, constant 5 % split",
    "clean": "A/A: canary as good as the baseline (the same as stationary)",
    "drift": "A/A, shared drift: latency x exp(±0.3), traffic ±60 %, 15 min period",
    "ramp": "A/A, split ramps 1 % -> 10 %, shared latency trend up to x exp(0.3)",
    "clustered": "A/A with ~3 page views per user and a per-user effect (s.d. 0.3)",
    "bursty-errors": "A/A, 4 errors per erroring page view, 2 % error-storm windows",
    "lcp-regression": "canary LCP x1.10 on every device",
    "lcp-regression-25": "canary LCP x1.25 on every device",
    "inp-mobile": "canary INP x1.30 on mobile only",
    "errors": "canary page views with JS errors x1.5",
}

SIMULATE_HELP = """Write simulated RUM beacons of a canary rollout to OUTPUT (NDJSON).

OUTPUT ending in .gz is gzip-compressed. The same options and seed give the same bytes.
Traffic is realistic per page view (device mix, LCP/INP/CLS/FCP/TTFB distributions
fitted to mPulse data, JS errors); --regress makes the canary worse, and may be repeated
(it adds to the scenario's own regressions).

\b
--regress METRIC:FACTOR[:SEGMENT[:START_S]]
  METRIC   LCP, INP, CLS, FCP, TTFB or errors
  FACTOR   e.g. 1.10 = 10 % slower (errors: 1.5 = 1.5x page views with errors)
  SEGMENT  mobile, desktop, tablet or all (default all)
  START_S  seconds after the start (default 0)

\b
Scenarios:
""" + "\n".join(f"  {name:<18} {SCENARIO_NOTES.get(name, '')}" for name in sorted(SCENARIOS)) + """

\b
Example:
  rumgate simulate traffic.ndjson.gz --scenario clustered --duration 30m --seed 1 \\
      --regress LCP:1.10 --regress INP:1.3:mobile:120
  rumgate backtest traffic.ndjson.gz --app shop-web \\
      --canary 2026.11.23-canary --baseline 2026.11.20-base
"""


def _duration_s(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    seconds = duration_seconds(ctx, param, value)
    if seconds is not None and seconds <= 0:
        raise click.BadParameter(f"must be longer than 0, got {value!r}")
    return seconds


def _regressions(ctx: click.Context, param: click.Parameter,
                 value: tuple[str, ...]) -> tuple[Regression, ...]:
    try:
        return tuple(Regression.parse(text) for text in value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command(help=SIMULATE_HELP)
@click.argument("output", type=click.Path(dir_okay=False, writable=True))
@click.option("--scenario", type=click.Choice(sorted(SCENARIOS)), default="stationary",
              show_default=True, help="Traffic preset (see above).")
@click.option("--seed", type=int, default=1, show_default=True, help="Random seed.")
@click.option("--duration", "duration_s", callback=_duration_s, metavar="DURATION",
              help="Simulated time: 90s, 30m, 2h or seconds  [default: the scenario's, 30m].")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True),
              help="Mean beacons per second, both arms  [default: the scenario's, 100].")
@click.option("--canary-share", type=click.FloatRange(0, 1),
              help="Canary share of users (the start of the ramp in `ramp`)  "
                   "[default: the scenario's, 0.05].")
@click.option("--regress", "regressions", multiple=True, callback=_regressions,
              metavar="METRIC:FACTOR[:SEGMENT[:START_S]]", help="Regress the canary; repeatable.")
@click.option("--app", help="App name  [default: shop-web].")
@click.option("--canary", help="Canary release  [default: 2026.11.23-canary].")
@click.option("--baseline", help="Baseline release  [default: 2026.11.20-base].")
@click.option("--quiet", "-q", is_flag=True, help="No progress, only the summary line.")
def simulate_command(output: str, scenario: str, seed: int, duration_s: float | None,
                     rate: float | None, canary_share: float | None,
                     regressions: tuple[Regression, ...], app: str | None, canary: str | None,
                     baseline: str | None, quiet: bool) -> None:
    sim = _build(SCENARIOS[scenario], duration_s=duration_s, rate=rate, canary_share=canary_share,
                 app=app, canary=canary, baseline=baseline, regressions=regressions)
    if not quiet:
        extra = f", regressions {' '.join(map(str, sim.regressions))}" if sim.regressions else ""
        click.echo(f"simulate {scenario}: {sim.duration_s:g} s at {sim.rate:g} beacons/s, "
                   f"canary {sim.canary} vs baseline {sim.baseline}, seed {seed}{extra}", err=True)

    def progress(written: int, sim_s: float) -> None:
        # One line per 5 simulated minutes keeps long runs readable.
        if sim_s % 300 < 60 or sim_s >= sim.duration_s:
            click.echo(f"  {int(sim_s) // 60:4d} min simulated, {written:,} beacons", err=True)

    try:
        total, n_canary = write_counted(output, sim, seed, None if quiet else progress)
    except OSError as exc:
        raise click.ClickException(f"cannot write {output}: {exc}") from None
    share = n_canary / total if total else 0.0
    click.echo(f"wrote {total:,} beacons ({n_canary:,} canary, {share:.2%}) to {output}")


def _build(base: Scenario, *, regressions: tuple[Regression, ...], **overrides: object) -> Scenario:
    """The preset with the options the user gave; a bad combination is a usage error."""
    changes = {k: v for k, v in overrides.items() if v is not None}
    changes["regressions"] = base.regressions + regressions
    try:
        return replace(base, **changes)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
