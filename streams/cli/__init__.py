"""The ``rumgate`` command line: the click group here, one module per command.

- :mod:`~streams.cli.backtest`  ``rumgate backtest`` (files and topics)
- :mod:`~streams.cli.simulate`  ``rumgate simulate``
- :mod:`~streams.cli.demo`      ``rumgate demo``
- :mod:`~streams.cli.live`      ``rumgate broker``, ``worker`` and ``rollout start|status|end``
- :mod:`~streams.cli.gate`      ``rumgate gate wait`` and ``rumgate override``
- :mod:`~streams.cli.ingest`    ``rumgate ingest``, the beacon endpoint alone
- :mod:`~streams.cli.detect`    ``rumgate detect``, anomaly scores for a CSV
- :mod:`~streams.cli.common`    what the commands share: options, exit codes, verdict rendering

Commands are imported only when they run, so ``rumgate ingest`` loads no Faust or river.
It may import every :mod:`streams` package and :mod:`detectors`; outside it, only
``python -m streams`` (:mod:`streams.__main__`) imports it.

Exit codes are shared by every command that ends with a verdict, so a CI step can act
on them: 0 promote, 1 rollback, 2 hold or no decision, 3 error (bad input, bad usage).
"""

from __future__ import annotations

import importlib
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


class _LazyGroup(click.Group):
    """A group whose commands in other modules are imported only when they run (or ``--help``).

    ``rumgate ingest`` then does not import river, scipy or Faust: its process idles in about
    half the memory, with a fraction of the objects. The pattern is click's own
    ("lazily loading subcommands" in its documentation).
    """

    def __init__(self, *args, lazy: dict[str, str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy  # name: "module:attribute"

    def list_commands(self, ctx: click.Context | None) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context | None, name: str) -> click.Command | None:
        if name in self.lazy and name not in self.commands:
            module, attribute = self.lazy[name].split(":")
            self.add_command(getattr(importlib.import_module(module), attribute), name)
        return super().get_command(ctx, name)


_COMMANDS_ELSEWHERE = {
    "simulate": "streams.cli.simulate:simulate_command",
    "demo": "streams.cli.demo:demo",
    "broker": "streams.cli.live:broker_command",
    "worker": "streams.cli.live:worker_command",
    "rollout": "streams.cli.live:rollout_group",
    "gate": "streams.cli.gate:gate_group",
    "override": "streams.cli.gate:override_command",
    "ingest": "streams.cli.ingest:ingest_command",
    "detect": "streams.cli.detect:detect_command",
}


@click.group(cls=_LazyGroup, lazy=_COMMANDS_ELSEWHERE, context_settings={"help_option_names": ["-h", "--help"]})
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
@click.argument("inputs", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@click.option("--topic", help="Replay this Kafka topic (e.g. rum.beacons) instead of files.")
@click.option("--broker", envvar="RUMGATE_BROKER", help="Kafka address for --topic, e.g. kafka://host:9092.")
@click.option("--from", "from_text", help="With --topic: start of the range (ISO 8601 or epoch ms).")
@click.option("--to", "to_text", help="With --topic: end of the range (default: what is there now).")
@click.option("--overrides-topic", help="With --topic: overrides to apply (default: rum.overrides beside it).")
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
def backtest(inputs: tuple[str, ...], topic: str | None, broker: str | None, from_text: str | None,
             to_text: str | None, overrides_topic: str | None, app: str, canary: str, baseline: str, policy_path: str | None,
             output: str | None, expected_share: float | None, window_ms: int, lateness_ms: int,
             no_stop: bool, quiet: bool) -> None:
    """Replay beacon files (NDJSON, or NDJSON.gz), or a Kafka topic, through the gate.

    Files are judged at full speed in event time. With --topic, the records between
    --from and --to go through the live pipeline's own stage-1 and judge code, without
    joining any consumer group or committing anything: the same data gives the live
    run's verdicts. Prints a timeline and the final verdict, and exits 0 promote,
    1 rollback, 2 hold or no decision, 3 error.

    \b
    Examples:
      rumgate simulate traffic.ndjson.gz --scenario lcp-regression
      rumgate backtest traffic.ndjson.gz --app shop-web \\
          --canary 2026.11.23-canary --baseline 2026.11.20-base -o verdicts.ndjson
      rumgate backtest --topic rum.beacons --broker kafka://kafka:9092 \\
          --from 2026-11-23T10:00:00Z --to 2026-11-23T12:00:00Z \\
          --app shop-web --canary 2026.11.23-canary --baseline 2026.11.20-base
    """
    if window_ms <= 0:
        raise click.BadParameter("must be > 0", param_hint="--window")
    if topic is None and not inputs:
        raise click.UsageError("give beacon files to replay, or --topic with --broker and --from")
    if topic is not None and inputs:
        raise click.UsageError("give either files or --topic, not both")
    if topic is not None and (broker is None or from_text is None):
        raise click.UsageError("--topic needs --broker (or RUMGATE_BROKER) and --from")
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
        if topic is None:
            from streams.offline.backtest import read_lines, run_backtest

            result = run_backtest(read_lines(inputs), policy, app, canary, baseline,
                                  expected_share=expected_share, window_ms=window_ms,
                                  lateness_ms=lateness_ms, stop_at_decision=not no_stop,
                                  on_verdict=on_verdict)
        else:
            if overrides_topic is None:
                overrides_topic = (topic[: -len("rum.beacons")] + "rum.overrides"
                                   if topic.endswith("rum.beacons") else "rum.overrides")
            result = _replay(topic, broker, from_text, to_text, policy, app, canary, baseline,
                             expected_share, window_ms, lateness_ms, not no_stop, on_verdict, quiet,
                             overrides_topic)
    finally:
        if out:
            out.close()
    if result.rejected:
        click.echo(f"{result.rejected} invalid beacons skipped, e.g.:", err=True)
        for r in result.rejects[:3]:
            where = f"offset {r.offset}" if topic is not None else f"record {r.offset}"
            click.echo(f"  {where}: {r.reason}", err=True)
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


def _replay(topic, broker, from_text, to_text, policy, app, canary, baseline, expected_share,
            window_ms, lateness_ms, stop, on_verdict, quiet, overrides_topic):
    """``backtest --topic``: read the range from the broker and judge it."""
    import asyncio

    from streams.live.broker import BrokerError, broker_servers
    from streams.cli.live import parse_time
    from streams.offline.replay import replay_topic

    from_ms = parse_time(from_text)
    to_ms = parse_time(to_text, default_now=False)
    if to_ms is not None and to_ms <= from_ms:
        raise click.BadParameter("must be after --from", param_hint="--to")
    shown = {"at": 0.0}

    def progress(records: int, beacons: int) -> None:
        import time

        now = time.monotonic()
        if not quiet and now - shown["at"] > 2:
            shown["at"] = now
            click.echo(f"  … read {records:,} records, {beacons:,} beacons", err=True)

    try:
        servers = broker_servers(broker)
        return asyncio.run(asyncio.wait_for(replay_topic(
            servers, topic, policy, app, canary, baseline, from_ms=from_ms, to_ms=to_ms,
            expected_share=expected_share, window_ms=window_ms, lateness_ms=lateness_ms,
            stop_at_decision=stop, on_verdict=on_verdict, on_progress=progress,
            overrides_topic=overrides_topic), timeout=None))
    except BrokerError as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - a broker that cannot be reached, or a missing topic
        if type(exc).__module__.startswith("aiokafka"):
            raise click.ClickException(f"cannot read {topic} from {broker}: {exc}") from None
        raise


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
