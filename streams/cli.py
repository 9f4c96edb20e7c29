"""The ``rumgate`` command line.

Exit codes are shared by every command that ends with a verdict, so a CI step can act
on them: 0 promote, 1 rollback, 2 hold or no decision, 3 error (bad input, bad usage).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import orjson

from detectors.policy import DEFAULT_POLICY, Policy, PolicyError, parse_duration, parse_policy
from detectors.verdict import EXIT_CODES, Verdict

__all__ = ["cli", "main", "load_policy_file"]

EXIT_ERROR = 3


def load_policy_file(path: str | None) -> Policy:
    """The policy in ``path`` (the default policy when None); refuse a bad one clearly."""
    if path is None:
        return DEFAULT_POLICY
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read policy file {path}: {exc}") from None
    try:
        return parse_policy(text, source=path)
    except PolicyError as exc:
        raise click.ClickException(f"policy refused: {exc}") from None


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rumgate")
def cli() -> None:
    """rumgate: promote, hold or roll back a release from real users' web vitals.

    \b
    Exit codes of commands that end with a verdict:
      0 promote   1 rollback   2 hold / no decision   3 error
    """


def _describe(v: Verdict) -> str:
    """One timeline line: elapsed event time, verdict, the headline of each metric."""
    elapsed = v.inputs.get("elapsed_ms", 0) // 1000
    parts = []
    for m in v.metrics:
        if m.ratio is None:
            parts.append(f"{m.name}: n={m.n_canary}")
            continue
        effect = f"{(m.ratio - 1):+.1%}" if m.statistic != "rate" else f"×{m.ratio:.2f}"
        # The larger of the two rollback e-values is the one closest to deciding.
        e = max(m.e_rollback, m.e_worse or 0.0)
        parts.append(f"{m.name} {effect} e={e:.3g}/{m.threshold_rollback:.3g}")
    return f"  +{elapsed // 60:02d}:{elapsed % 60:02d}  {v.verdict:<8}  " + "  ".join(parts)


@cli.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--app", required=True, help="App whose rollout to judge, e.g. shop-web.")
@click.option("--canary", required=True, help="Release under rollout.")
@click.option("--baseline", required=True, help="Release the canary is compared with.")
@click.option("--policy", "policy_path", type=click.Path(dir_okay=False),
              help="Policy file (YAML); the default policy when omitted.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True),
              help="Write every verdict event as NDJSON here.")
@click.option("--expected-share", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Configured canary share of traffic; enables the sample-ratio check.")
@click.option("--window", "window_ms", default="5s", show_default=True, callback=_duration,
              help="Tumbling window size.")
@click.option("--lateness", "lateness_ms", default="5s", show_default=True, callback=_duration,
              help="Allowed lateness before a window closes.")
@click.option("--no-stop", is_flag=True, help="Keep judging after the first decision.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the final verdict.")
def backtest(inputs: tuple[str, ...], app: str, canary: str, baseline: str, policy_path: str | None,
             output: str | None, expected_share: float | None, window_ms: int, lateness_ms: int,
             no_stop: bool, quiet: bool) -> None:
    """Replay beacon files (NDJSON, or NDJSON.gz) through the gate at full speed.

    Prints a timeline and the final verdict, and exits 0 promote, 1 rollback,
    2 hold or no decision, 3 error.

    \b
    Example:
      rumgate simulate traffic.ndjson.gz --scenario lcp-regression
      rumgate backtest traffic.ndjson.gz --app shop-web \\
          --canary 2026.11.23-canary --baseline 2026.11.20-base -o verdicts.ndjson
    """
    from streams.backtest import read_lines, run_backtest

    if window_ms <= 0:
        raise click.BadParameter("must be > 0", param_hint="--window")
    policy = load_policy_file(policy_path)
    out = open(output, "wb") if output else None  # noqa: SIM115 - closed below
    last_line = {"minute": -1, "verdict": None}

    def on_verdict(v: Verdict) -> None:
        if out:
            out.write(orjson.dumps(v.to_dict()) + b"\n")
        minute = v.inputs.get("elapsed_ms", 0) // 60_000
        if not quiet and (minute != last_line["minute"] or v.verdict != last_line["verdict"]):
            click.echo(_describe(v))
            last_line.update(minute=minute, verdict=v.verdict)

    if not quiet:
        click.echo(f"backtest {app}: canary {canary} vs baseline {baseline}, "
                   f"policy {policy.name} ({policy.hash[:19]}…)")
    try:
        result = run_backtest(read_lines(inputs), policy, app, canary, baseline,
                              expected_share=expected_share, window_ms=window_ms,
                              lateness_ms=lateness_ms, stop_at_decision=not no_stop,
                              on_verdict=on_verdict)
    finally:
        if out:
            out.close()
    if result.rejected:
        click.echo(f"{result.rejected} invalid beacons skipped, e.g.:", err=True)
        for r in result.rejects[:3]:
            click.echo(f"  record {r.record}: {r.reason}", err=True)
    final = result.final
    click.echo(f"{result.beacons} beacons, {len(result.verdicts)} verdicts, {result.late} late beacons")
    if final is None:
        click.echo(f"no verdict: no window held data for app {app!r}")
        sys.exit(EXIT_CODES["hold"])
    click.echo(f"final verdict: {final.verdict.upper()}"
               + (f" ({final.severity})" if final.severity != "none" else ""))
    for reason in final.reasons:
        click.echo(f"  - {reason}")
    sys.exit(EXIT_CODES[final.verdict])


def _register_optional() -> None:
    """Commands that live in their own modules."""
    from streams.demo import demo
    from streams.live_cli import broker_command, rollout_group, worker_command
    from streams.simulate_cli import simulate_command

    cli.add_command(simulate_command, "simulate")
    cli.add_command(demo, "demo")
    cli.add_command(broker_command, "broker")
    cli.add_command(worker_command, "worker")
    cli.add_command(rollout_group, "rollout")


_register_optional()


def main() -> None:
    """Console entry point: click's usage errors exit 3, not click's default 2 (= hold)."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(EXIT_ERROR)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_ERROR)
