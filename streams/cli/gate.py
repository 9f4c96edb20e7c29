"""``rumgate gate wait`` for CI/CD pipelines, and ``rumgate override``.

``gate wait`` exits 0 on promote, 1 on rollback, 2 on a final hold or timeout, 3 when
rumgate cannot be reached or the rollout does not exist. It waits through transient holds
(no canary beacons yet, a split mismatch, an incident, few sessions: they lift by themselves,
and the first of them comes two minutes into every rollout) and stops at a final one (the
deadline, a person's hold), which waiting cannot change: the verdict's ``hold`` field says
which, not its text. It never passes silently when it cannot decide: ``--fail-open`` turns
"cannot reach" and "timeout" into exit 0, and must be asked for (a fail-open default is what
users of other gates complain about).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterable, Callable

import click
import orjson

from detectors.override import ACTIONS, OverrideError, parse_override
from detectors.verdict import HoldKind, Verdict, VerdictKind
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
              help="Give up (exit 2) after this long without promote, rollback or a final hold.")
@click.option("--fail-open", is_flag=True,
              help="Exit 0 instead of 2/3 on timeout or when rumgate cannot be reached. Think twice.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the outcome.")
def gate_wait(broker: str | None, rollout_id: str, timeout_s: float, fail_open: bool, quiet: bool) -> None:
    """Wait for ROLLOUT's verdict and exit with its code.

    Prints the evidence as it grows, and what it waits for. Waits through transient holds
    (no canary beacons yet, split mismatch, incident), which lift by themselves. Exit codes:
    0 promote, 1 rollback, 2 final hold (the deadline, a person's hold) or timeout, 3 rumgate
    (its broker) cannot be reached or the rollout is unknown.

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
    subscriber = VerdictSubscriber(settings.broker, rollout_id, topics=settings.topics)
    follower = Follower(click.echo if not quiet else (lambda _line: None))
    try:
        outcome = asyncio.run(follower.wait(subscriber, timeout_s))
    except BrokerError as exc:
        give_up(EXIT_ERROR, str(exc))
        return
    if outcome is None:
        give_up(exit_code("hold"), f"timeout: no promote, rollback or final hold for {rollout_id} within "
                                   f"{timeout_s:g} s" + follower.last_seen())
        return
    if outcome.hold == HoldKind.FINAL:
        click.echo(f"{rollout_id}: a final hold: a person must decide (waiting longer cannot change it)")
    echo_outcome(f"{rollout_id}: ", outcome)
    sys.exit(exit_code(outcome.verdict))


def ends_the_wait(v: Verdict) -> bool:
    """Whether ``gate wait`` stops at ``v``: promote, rollback, or a final hold.

    A transient hold (and continue) is waited through: it lifts by itself once the data
    does, and at the start of every rollout there is one (no canary beacons yet).
    """
    return v.verdict in (VerdictKind.PROMOTE, VerdictKind.ROLLBACK) or v.hold == HoldKind.FINAL


class Follower:
    """Follows a rollout's verdicts until one ends the wait, printing the evidence and what it
    waits for.

    The evidence line is printed once per minute of the rollout and on every change of
    verdict; a ``waiting:`` line each time the reason it waits for changes (a transient
    hold's reason, or what evidence is still being collected), so a pipeline log says why it
    is still waiting without a line per window.
    """

    def __init__(self, echo: Callable[[str], None]) -> None:
        self.echo = echo
        self.last: Verdict | None = None
        self._minute = -1
        self._waiting_for: tuple | None = None

    def see(self, v: Verdict) -> bool:
        """Take one verdict: print what is new; True when it ends the wait."""
        previous, self.last = self.last, v
        minute = v.inputs.get("elapsed_ms", 0) // 60_000
        if minute != self._minute or previous is None or (v.verdict, v.hold) != (previous.verdict, previous.hold):
            self._minute = minute
            self.echo(describe(v))
        if ends_the_wait(v):
            return True
        waiting_for = (v.verdict, v.hold, v.reason_codes[:1])
        if waiting_for != self._waiting_for:
            self._waiting_for = waiting_for
            self.echo(f"    waiting: {self._what(v)}")
        return False

    @staticmethod
    def _what(v: Verdict) -> str:
        reason = v.reasons[0] if v.reasons else "no reason given"
        if v.verdict == VerdictKind.HOLD:
            return f"a transient hold, which lifts by itself: {reason}"
        return reason

    def last_seen(self) -> str:
        """For the timeout message: the last verdict seen and why it did not end the wait."""
        if self.last is None:
            return "; no verdict was published"
        v = self.last
        kind = f"{v.verdict} ({v.hold})" if v.hold else str(v.verdict)
        return f"; the last verdict (#{v.seq}) was {kind}: {v.reasons[0] if v.reasons else 'no reason given'}"

    async def wait(self, verdicts: AsyncIterable[Verdict], timeout_s: float) -> Verdict | None:
        """The first verdict of ``verdicts`` that ends the wait; None at the timeout or if
        they end first."""
        deadline = time.monotonic() + timeout_s

        async def follow() -> Verdict | None:
            async for v in verdicts:
                if self.see(v):
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
