"""``rumgate broker``, ``rumgate worker`` and ``rumgate rollout start|share|status|end``."""

from __future__ import annotations

import signal
import sys
import time

import click
import orjson

from streams.cli.common import (
    broker_option,
    echo_outcome,
    exit_code,
    load_policy_file,
    parse_time,
    produce,
    read_state,
    run_async,
    settings_from,
    unknown_rollout,
)
from streams.live.broker import BrokerError, EmbeddedBroker

__all__ = ["broker_command", "worker_command", "rollout_group"]


@click.command("broker")
@click.option("--port", type=click.IntRange(1, 65535), help="Port on 127.0.0.1 (default: a free one).")
def broker_command(port: int | None) -> None:
    """Run the embedded Kafka-compatible broker (Tansu, memory only) in the foreground.

    Prints its address; stop it with Ctrl-C. For trying rumgate out and for tests: it keeps
    nothing on disk. Point workers at it with --broker kafka://127.0.0.1:PORT.
    """
    stop = {"now": False}

    def on_signal(*_):
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)  # before the port opens: a stop is never missed
    signal.signal(signal.SIGINT, on_signal)
    try:
        broker = EmbeddedBroker(port).start()
    except BrokerError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"embedded broker listening at {broker.url} (memory storage; Ctrl-C stops it)")
    try:
        while not stop["now"] and broker.process.poll() is None:
            time.sleep(0.2)
    finally:
        broker.stop()
    if not stop["now"]:
        raise click.ClickException(f"the broker exited with code {broker.process.returncode}")
    click.echo("broker stopped")


@click.command("worker")
@broker_option(required=False)
@click.option("--partitions", type=click.IntRange(1), help="Partitions of rum.beacons when it is created.")
@click.option("--loglevel", default="warning", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]), help="Faust's log level.")
def worker_command(broker: str | None, partitions: int | None, loglevel: str) -> None:
    """Run the agents: aggregate rum.beacons into windows, judge rollouts, publish verdicts.

    Creates the topics when they are missing. Several workers with the same app id
    (RUMGATE_APP_ID) split the partitions between them. Without --broker (or
    RUMGATE_BROKER) it starts the embedded broker, which keeps everything in memory.
    """
    from streams.live.worker import run_worker

    settings = settings_from(broker, beacons_partitions=partitions)
    try:
        run_worker(settings, loglevel)
    except BrokerError as exc:
        raise click.ClickException(str(exc)) from None


# -- rollouts -----------------------------------------------------------------------------------

@click.group("rollout")
def rollout_group() -> None:
    """Start, inspect and end rollouts (records on rum.rollouts)."""


@rollout_group.command("start")
@broker_option(required=True)
@click.option("--app", required=True, help="App under rollout, as its beacons name it.")
@click.option("--canary", required=True, help="Release under rollout.")
@click.option("--baseline", required=True, help="Release it is compared with.")
@click.option("--policy", "policy_path", type=click.Path(dir_okay=False), help="Policy file (YAML).")
@click.option("--expected-share", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Configured canary share; enables the sample-ratio check.")
@click.option("--started-at", help="When the rollout began (now, epoch ms or ISO 8601). Default: now.")
@click.option("--id", "rollout_id", help="Rollout id. Default: APP:CANARY.")
@click.option("--dry-run-policy", "dry_run_paths", multiple=True, type=click.Path(dir_okay=False),
              help="A policy to run beside the enforcing one, publishing verdicts marked dry_run "
                   "(repeatable): build trust before enforcing it.")
def rollout_start(broker, app, canary, baseline, policy_path, expected_share, started_at, rollout_id,
                  dry_run_paths) -> None:
    """Start judging a rollout: canary release against baseline release of one app."""
    from dataclasses import replace

    from detectors.rollout import Rollout, RolloutError  # not at the top: it brings river, which ingest does not need

    settings = settings_from(broker, require_broker=True)
    policy = load_policy_file(policy_path)
    dry = tuple(replace(load_policy_file(path), dry_run=True) for path in dry_run_paths)
    if canary == baseline:
        raise click.BadParameter("canary and baseline must be different releases", param_hint="--canary")
    try:
        rollout = Rollout(rollout_id or f"{app}:{canary}", app, canary, baseline,
                          parse_time(started_at), policy, expected_share, dry_run_policies=dry)
    except RolloutError as exc:  # the id and names the API and the worker accept, and no others
        raise click.ClickException(f"rollout refused: {exc}") from None
    known, _ = run_async(read_state(settings))
    if rollout.id in known:
        raise click.ClickException(f"rollout {rollout.id!r} exists already (ids are never reused: its verdicts "
                                   "belong to it); choose another with --id")
    run_async(produce(settings, settings.topics.rollouts, rollout.id.encode(), orjson.dumps(rollout.to_dict())))
    click.echo(f"rollout {rollout.id} started: {app} canary {canary} vs baseline {baseline}, "
               f"policy {policy.name} ({policy.hash[:19]}…)"
               + "".join(f", dry run {p.name}" for p in dry))


@rollout_group.command("end")
@broker_option(required=True)
@click.argument("rollout_id")
@click.option("--at", "ended_at", help="End time (now, epoch ms or ISO 8601). Default: now.")
def rollout_end(broker, rollout_id, ended_at) -> None:
    """Stop judging a rollout; its verdicts stay on record."""
    settings = settings_from(broker, require_broker=True)
    rollouts, _ = run_async(read_state(settings))
    if rollout_id not in rollouts:
        raise click.ClickException(unknown_rollout(rollout_id, rollouts))
    record = {**rollouts[rollout_id], "ended_at": parse_time(ended_at)}
    run_async(produce(settings, settings.topics.rollouts, rollout_id.encode(), orjson.dumps(record)))
    click.echo(f"rollout {rollout_id} ended")


@rollout_group.command("share")
@broker_option(required=True)
@click.argument("rollout_id")
@click.argument("share", type=click.FloatRange(0, 1, min_open=True, max_open=True))
@click.option("--at", "changed_at", help="From when (now, epoch ms or ISO 8601). Default: now.")
def rollout_share(broker, rollout_id, share, changed_at) -> None:
    """Change a running rollout's expected canary share (a ramp step: 5 % -> 25 %).

    The sample-ratio check compares each window with the share in force over it; a window
    the change falls in is left out of it. SHARE is a fraction, e.g. 0.25.
    """
    from detectors.rollout import Rollout, RolloutError

    settings = settings_from(broker, require_broker=True)
    rollouts, _ = run_async(read_state(settings))
    if rollout_id not in rollouts:
        raise click.ClickException(unknown_rollout(rollout_id, rollouts))
    rollout = Rollout.from_dict(rollouts[rollout_id])
    if rollout.ended_at is not None:
        raise click.ClickException(f"rollout {rollout_id} has ended ({rollout.end_reason or 'by a person'})")
    at = parse_time(changed_at)
    last = rollout.share_changed_at
    if at < last:
        raise click.BadParameter(f"{at} is before the share's last change ({last})", param_hint="--at")
    try:
        changed = rollout.with_share(share, at)
    except RolloutError as exc:
        raise click.ClickException(str(exc)) from None
    run_async(produce(settings, settings.topics.rollouts, rollout_id.encode(), orjson.dumps(changed.to_dict())))
    click.echo(f"rollout {rollout_id}: expected canary share {share:.1%} from {at}")


@rollout_group.command("status")
@broker_option(required=True)
@click.argument("rollout_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the latest verdict event(s) as JSON.")
def rollout_status(broker, rollout_id, as_json) -> None:
    """Show rollouts and their latest verdict; with an ID, exit with the verdict's code.

    Exit codes with an ID: 0 promote, 1 rollback, 2 hold / no decision yet, 3 error.
    """
    settings = settings_from(broker, require_broker=True)
    rollouts, verdicts = run_async(read_state(settings))
    if rollout_id is not None and rollout_id not in rollouts:
        raise click.ClickException(unknown_rollout(rollout_id, rollouts))
    ids = [rollout_id] if rollout_id else sorted(rollouts)
    if as_json:
        for i in ids:
            click.echo(orjson.dumps({"rollout": rollouts[i], "verdict": verdicts.get(i)}).decode())
    elif not ids:
        click.echo("no rollouts")
    for i in ids if not as_json else ():
        r, v = rollouts[i], verdicts.get(i)
        state = (f"ended: {r.get('end_reason') or 'by a person'}" if r.get("ended_at") else "active")
        head = f"{i}  {r['app']}: {r['canary']} vs {r['baseline']}  ({state}, policy {r['policy']['name']})"
        if v is None:
            click.echo(f"{head}\n  no verdict yet")
            continue
        echo_outcome(f"{head}\n  verdict #{v['seq']}: ", v, indent="    ")
    if rollout_id is not None:
        v = verdicts.get(rollout_id)
        sys.exit(exit_code(v["verdict"] if v else None))
