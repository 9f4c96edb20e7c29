"""``rumgate backtest``: judge recorded beacons, from files or from a Kafka topic.

Files go through :func:`streams.offline.backtest.run_backtest`, a topic range through
:func:`streams.offline.replay.replay_topic`; both run the pipeline's one driver. With
several ``--policy``, the same data is judged once per policy (a topic is read again for
each); the first policy's final verdict is the exit code. ``--report`` writes the runs'
verdicts as one self-contained HTML file (:mod:`streams.offline.report`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click
import orjson

from detectors.policy import Policy
from detectors.rollout import Rollout
from detectors.verdict import Verdict
from streams.cli.common import describe, duration_ms, echo_outcome, exit_code, load_policy_file, parse_time

__all__ = ["BacktestOptions", "backtest_command"]


@dataclass(frozen=True)
class BacktestOptions:
    """The command line of one ``rumgate backtest``, as click parsed it."""

    inputs: tuple[str, ...]
    topic: str | None
    broker: str | None
    from_text: str | None
    to_text: str | None
    overrides_topic: str | None
    app: str
    canary: str
    baseline: str
    policy_paths: tuple[str, ...]
    output: str | None
    report: str | None
    expected_share: float | None
    window_ms: int
    lateness_ms: int
    no_stop: bool
    quiet: bool

    @property
    def replay_overrides_topic(self) -> str:
        """``--overrides-topic``, by default ``rum.overrides`` beside the beacons topic."""
        if self.overrides_topic is not None:
            return self.overrides_topic
        topic = self.topic or ""
        return topic[: -len("rum.beacons")] + "rum.overrides" if topic.endswith("rum.beacons") else "rum.overrides"


@click.command("backtest")
@click.argument("inputs", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@click.option("--topic", help="Replay this Kafka topic (e.g. rum.beacons) instead of files.")
@click.option("--broker", envvar="RUMGATE_BROKER", help="Kafka address for --topic, e.g. kafka://host:9092.")
@click.option("--from", "from_text", help="With --topic: start of the range (ISO 8601 or epoch ms).")
@click.option("--to", "to_text", help="With --topic: end of the range (default: what is there now).")
@click.option("--overrides-topic", help="With --topic: overrides to apply (default: rum.overrides beside it).")
@click.option("--app", required=True, help="App whose rollout to judge, e.g. shop-web.")
@click.option("--canary", required=True, help="Release under rollout.")
@click.option("--baseline", required=True, help="Release the canary is compared with.")
@click.option("--policy", "policy_paths", type=click.Path(dir_okay=False), multiple=True,
              help="Policy file (YAML); the default policy when omitted. Give it again to judge the same data "
                   "by each policy in turn; the first one's verdict is the exit code.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True),
              help="Write every verdict event as NDJSON here (each policy's in turn).")
@click.option("--report", type=click.Path(dir_okay=False, writable=True),
              help="Write an HTML report here: the rollout page's views (verdicts, e-values, effect and "
                   "bracket, estimates, data quality, the policy) in one file that opens from disk, no "
                   "server, no network; one section per --policy, side by side on the same axes.")
@click.option("--expected-share", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Configured canary share of traffic; enables the sample-ratio check.")
@click.option("--window", "window_ms", default="5s", show_default=True, callback=duration_ms,
              help="Tumbling window size.")
@click.option("--lateness", "lateness_ms", default="5s", show_default=True, callback=duration_ms,
              help="Allowed lateness before a window closes.")
@click.option("--no-stop", is_flag=True, help="Keep judging after the first decision.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the final verdict.")
def backtest_command(**options: object) -> None:
    """Replay beacon files (NDJSON, or NDJSON.gz), or a Kafka topic, through the gate.

    Files are judged at full speed in event time. With --topic, the records between
    --from and --to go through the live pipeline's own stage-1 and judge code, without
    joining any consumer group or committing anything: the same data gives the live
    run's verdicts. Prints a timeline and the final verdict, and exits 0 promote,
    1 rollback, 2 hold or no decision, 3 error.

    --report writes what the live rollout page would show for these verdicts as one
    self-contained HTML file (data, styles and script inline). With several --policy,
    each judges the same data and the report shows them side by side.

    \b
    Examples:
      rumgate simulate traffic.ndjson.gz --scenario lcp-regression
      rumgate backtest traffic.ndjson.gz --app shop-web \\
          --canary 2026.11.23-canary --baseline 2026.11.20-base -o verdicts.ndjson
      rumgate backtest traffic.ndjson.gz --app shop-web \\
          --canary 2026.11.23-canary --baseline 2026.11.20-base \\
          --policy strict.yaml --policy lenient.yaml --report report.html
      rumgate backtest --topic rum.beacons --broker kafka://kafka:9092 \\
          --from 2026-11-23T10:00:00Z --to 2026-11-23T12:00:00Z \\
          --app shop-web --canary 2026.11.23-canary --baseline 2026.11.20-base
    """
    sys.exit(backtest(BacktestOptions(**options)))  # type: ignore[arg-type]


def backtest(o: BacktestOptions) -> int:
    """Run the backtest ``o`` describes (once per policy), print its timeline and outcome,
    write its report; return the exit code (the first policy's)."""
    if o.window_ms <= 0:
        raise click.BadParameter("must be > 0", param_hint="--window")
    if o.topic is None and not o.inputs:
        raise click.UsageError("give beacon files to replay, or --topic with --broker and --from")
    if o.topic is not None and o.inputs:
        raise click.UsageError("give either files or --topic, not both")
    if o.topic is not None and (o.broker is None or o.from_text is None):
        raise click.UsageError("--topic needs --broker (or RUMGATE_BROKER) and --from")
    policies = [load_policy_file(p) for p in o.policy_paths] or [load_policy_file(None)]
    out = open(o.output, "wb") if o.output else None  # noqa: SIM115 - closed below
    runs, codes = [], []
    try:
        for i, policy in enumerate(policies):
            events: list[dict] | None = [] if o.report else None
            code, result = _judge_once(o, policy, out, events, first=i == 0, label=len(policies) > 1)
            codes.append(code)
            if events is not None:
                runs.append(_Judged(policy, events, result.beacons, result.late))
    finally:
        if out:
            out.close()
    if o.report:
        _write_report(o, runs)
    return codes[0]


@dataclass(frozen=True)
class _Judged:
    """What the report needs of one policy's run."""

    policy: Policy
    events: list[dict]
    beacons: int
    late: int


def _judge_once(o: BacktestOptions, policy: Policy, out, events: list[dict] | None, *, first: bool, label: bool):
    """One policy's run over the data: its timeline and outcome printed, its verdicts written."""
    last_line = {"minute": -1, "verdict": None}

    def on_verdict(v: Verdict) -> None:
        line = orjson.dumps(v.to_dict())
        if out:
            out.write(line + b"\n")
        if events is not None:
            events.append(orjson.loads(line))  # as --output has it, so as rum.verdicts would
        minute = v.inputs.get("elapsed_ms", 0) // 60_000
        if not o.quiet and (minute != last_line["minute"] or v.verdict != last_line["verdict"]):
            click.echo(describe(v))
            last_line.update(minute=minute, verdict=v.verdict)

    if not o.quiet:
        click.echo(f"backtest {o.app}: canary {o.canary} vs baseline {o.baseline}, "
                   f"policy {policy.name} ({policy.hash[:19]}…)")
    if o.topic is None:
        from streams.offline.backtest import read_lines, run_backtest

        result = run_backtest(read_lines(o.inputs), policy, o.app, o.canary, o.baseline,
                              expected_share=o.expected_share, window_ms=o.window_ms,
                              lateness_ms=o.lateness_ms, stop_at_decision=not o.no_stop,
                              on_verdict=on_verdict)
    else:
        result = replay(o, policy, on_verdict=on_verdict)
    if result.rejected and first:  # the same data for every policy: said once
        click.echo(f"{result.rejected} invalid beacons skipped, e.g.:", err=True)
        for r in result.rejects[:3]:
            where = f"offset {r.offset}" if o.topic is not None else f"record {r.offset}"
            click.echo(f"  {where}: {r.reason}", err=True)
    final = result.final
    prefix = f"{policy.name}: " if label else ""
    click.echo(f"{prefix}{result.beacons} beacons, {len(result.verdicts)} verdicts, {result.late} late beacons")
    if final is None:
        click.echo(f"{prefix}no verdict: no window held data for app {o.app!r}")
        return exit_code(None), result
    echo_outcome(f"{prefix}final verdict: ", final)
    return exit_code(final.verdict), result


def _rollout(o: BacktestOptions, policy: Policy) -> Rollout:
    """The rollout the run judged (as :mod:`streams.offline.backtest` and ``replay`` make it)."""
    if o.topic is None:
        from streams.offline.backtest import backtest_rollout

        return backtest_rollout(o.app, o.canary, o.baseline, policy, expected_share=o.expected_share)
    return Rollout(f"{o.app}:{o.canary}", o.app, o.canary, o.baseline, parse_time(o.from_text), policy,
                   o.expected_share)


def _source(o: BacktestOptions) -> str:
    if o.topic is None:
        return "files " + ", ".join(Path(p).name for p in o.inputs)
    from streams.http.pages import when

    to = "its end" if o.to_text is None else when(parse_time(o.to_text, default_now=False))
    return f"topic {o.topic} from {when(parse_time(o.from_text))} to {to}"


def _write_report(o: BacktestOptions, runs: list[_Judged]) -> None:
    from streams.offline.report import PolicyRun, write_report

    started = time.monotonic()
    if not o.quiet:
        click.echo(f"  … writing the report of {len(runs)} polic{'y' if len(runs) == 1 else 'ies'}, "
                   f"{sum(len(r.events) for r in runs):,} verdicts", err=True)
    try:
        size = write_report(o.report, [PolicyRun(_rollout(o, r.policy), r.events, r.beacons, r.late) for r in runs],
                            source=_source(o), window_ms=o.window_ms)
    except OSError as exc:
        raise click.ClickException(f"cannot write the report {o.report}: {exc}") from None
    if not o.quiet:
        click.echo(f"report: {o.report} ({size / 1e6:.1f} MB, {time.monotonic() - started:.1f} s)")


def replay(o: BacktestOptions, policy: Policy, *, on_verdict: Callable[[Verdict], None]):
    """``backtest --topic``: read the range from the broker and judge it."""
    import asyncio

    from streams.live.broker import BrokerError, broker_servers
    from streams.offline.replay import replay_topic

    from_ms = parse_time(o.from_text)
    to_ms = parse_time(o.to_text, default_now=False)
    if to_ms is not None and to_ms <= from_ms:
        raise click.BadParameter("must be after --from", param_hint="--to")
    shown = {"at": 0.0}

    def progress(records: int, beacons: int) -> None:
        now = time.monotonic()
        if not o.quiet and now - shown["at"] > 2:
            shown["at"] = now
            click.echo(f"  … read {records:,} records, {beacons:,} beacons", err=True)

    try:
        servers = broker_servers(o.broker)
        return asyncio.run(asyncio.wait_for(replay_topic(
            servers, o.topic, policy, o.app, o.canary, o.baseline, from_ms=from_ms, to_ms=to_ms,
            expected_share=o.expected_share, window_ms=o.window_ms, lateness_ms=o.lateness_ms,
            stop_at_decision=not o.no_stop, on_verdict=on_verdict, on_progress=progress,
            overrides_topic=o.replay_overrides_topic), timeout=None))
    except BrokerError as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - a broker that cannot be reached, or a missing topic
        if type(exc).__module__.startswith("aiokafka"):
            raise click.ClickException(f"cannot read {o.topic} from {o.broker}: {exc}") from None
        raise
