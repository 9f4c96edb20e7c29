"""``rumgate gate wait`` for CI/CD pipelines, and ``rumgate override``.

``gate wait`` exits 0 on promote, 1 on rollback, 2 on hold or timeout, 3 when rumgate
cannot be reached or the rollout does not exist. It never passes silently when it cannot
decide: ``--fail-open`` turns "cannot reach" and "timeout" into exit 0, and must be asked
for (a fail-open default is what users of other gates complain about).
"""

from __future__ import annotations

import asyncio
import sys
import time

import click
import orjson

from detectors.override import ACTIONS, OverrideError, parse_override
from detectors.verdict import Verdict
from streams.cli.common import (
    EXIT_ERROR,
    broker_option,
    describe,
    duration_seconds,
    echo_outcome,
    exit_code,
    produce,
    read_state,
    run_async,
    settings_from,
    unknown_rollout,
)
from streams.client import VerdictSubscriber
from streams.live.broker import BrokerError

__all__ = ["gate_group", "override_command"]


@click.group("gate")
def gate_group() -> None:
    """Gate a pipeline step on a rollout's verdict."""


@gate_group.command("wait")
@broker_option(required=True)
@click.argument("rollout_id")
@click.option("--timeout", "timeout_s", default="30m", show_default=True, callback=duration_seconds,
              help="Give up (exit 2) after this long without promote or rollback.")
@click.option("--fail-open", is_flag=True,
              help="Exit 0 instead of 2/3 on timeout or when rumgate cannot be reached. Think twice.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the outcome.")
def gate_wait(broker: str | None, rollout_id: str, timeout_s: float, fail_open: bool, quiet: bool) -> None:
    """Wait for ROLLOUT's verdict and exit with its code.

    Prints the evidence as it grows. Exit codes: 0 promote, 1 rollback, 2 hold or timeout,
    3 rumgate (its broker) cannot be reached or the rollout is unknown.

    \b
    Example (a CI step after deploying the canary):
      rumgate rollout start --app shop-web --canary "$SHA" --baseline "$LIVE"
      rumgate gate wait "shop-web:$SHA" --timeout 30m
    """
    settings = settings_from(broker, require_broker=True)

    def give_up(code: int, message: str) -> None:
        if fail_open:
            click.echo(f"FAIL-OPEN: {message}; passing because --fail-open was given", err=True)
            sys.exit(0)
        click.echo(message, err=True)
        sys.exit(code)

    try:
        rollouts, _ = asyncio.run(asyncio.wait_for(read_state(settings), 30))
    except (BrokerError, asyncio.TimeoutError, OSError) as exc:
        give_up(EXIT_ERROR, f"cannot reach rumgate's broker {settings.broker}: {exc or 'timed out'}")
        return
    if rollout_id not in rollouts:
        click.echo(unknown_rollout(rollout_id, rollouts), err=True)
        sys.exit(EXIT_ERROR)
    if not quiet:
        r = rollouts[rollout_id]
        click.echo(f"waiting for {rollout_id}: {r['app']} canary {r['canary']} vs {r['baseline']}, "
                   f"up to {timeout_s:g} s")
    try:
        outcome = asyncio.run(_wait(settings, rollout_id, timeout_s, quiet))
    except BrokerError as exc:
        give_up(EXIT_ERROR, str(exc))
        return
    if outcome is None:
        give_up(exit_code("hold"), f"timeout: no promote or rollback for {rollout_id} within {timeout_s:g} s")
        return
    echo_outcome(f"{rollout_id}: ", outcome)
    sys.exit(exit_code(outcome.verdict))


async def _wait(settings, rollout_id: str, timeout_s: float, quiet: bool) -> Verdict | None:
    """The first promote, rollback or hold verdict; None at the timeout."""
    deadline = time.monotonic() + timeout_s
    subscriber = VerdictSubscriber(settings.broker, rollout_id, topics=settings.topics)
    shown = {"minute": -1}

    async def follow() -> Verdict | None:
        async for v in subscriber:
            minute = v.inputs.get("elapsed_ms", 0) // 60_000
            if not quiet and (minute != shown["minute"] or v.verdict != "continue"):
                shown["minute"] = minute
                click.echo(describe(v))
            if v.verdict in ("promote", "rollback", "hold"):
                return v
        return None

    try:
        return await asyncio.wait_for(follow(), max(0.0, deadline - time.monotonic()))
    except asyncio.TimeoutError:
        return None


@click.command("override")
@broker_option(required=True)
@click.argument("rollout_id")
@click.option("--action", required=True, type=click.Choice([str(a) for a in ACTIONS]),
              help="What to force.")
@click.option("--actor", required=True, help="Who decides (recorded in every later verdict).")
@click.option("--reason", required=True, help="Why (recorded in every later verdict).")
@click.option("--ticket", help="Change or incident ticket.")
@click.option("--ttl", "ttl_s", callback=duration_seconds,
              help="Expire after this long, e.g. 2h (default: until another override).")
def override_command(broker, rollout_id, action, actor, reason, ticket, ttl_s) -> None:
    """Force promote, hold or rollback of a rollout, on record.

    The override is published to rum.overrides, applied by the judge from the next window
    on, and listed (with who, why and when) in every later verdict.
    """
    settings = settings_from(broker, require_broker=True)
    rollouts, _ = run_async(read_state(settings))
    if rollout_id not in rollouts:
        raise click.ClickException(unknown_rollout(rollout_id, rollouts))
    request = {"action": action, "actor": actor, "reason": reason, "ticket": ticket, "ttl_s": ttl_s}
    try:
        override = parse_override({k: v for k, v in request.items() if v is not None}, rollout_id,
                                  int(time.time() * 1000))
    except OverrideError as exc:
        raise click.ClickException(f"override refused: {exc}") from None
    run_async(produce(settings, settings.topics.overrides, rollout_id.encode(), orjson.dumps(override.to_dict())))
    until = f" until {override.expires_at}" if override.expires_at else ""
    click.echo(f"override recorded: {action} {rollout_id} by {actor}{until}")
