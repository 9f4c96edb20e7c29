"""What the ``rumgate`` commands share: exit codes, options and callbacks, the broker helpers,
and the one rendering of a verdict for people.

Every command module imports these from here and nothing private from another command
module. The imports of the live side (settings, broker, aiokafka) stay inside the functions
that need them, so ``rumgate --help`` and ``rumgate ingest`` load no more than before.
"""

from __future__ import annotations

import time
from collections.abc import Coroutine, Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from detectors.policy import DEFAULT_POLICY, Policy, PolicyError, parse_duration, parse_policy
from detectors.verdict import EXIT_CODES, MetricEvidence, Verdict

if TYPE_CHECKING:
    from streams.live.settings import Settings

__all__ = [
    "EXIT_CODES", "EXIT_ERROR", "exit_code",
    "broker_option", "settings_from", "parse_time", "duration_ms", "duration_seconds", "load_policy_file",
    "run_async", "produce", "read_state", "unknown_rollout",
    "describe", "headline", "outcome_lines", "echo_outcome", "evidence_line",
]

#: Bad input, bad usage, a broker that cannot be reached, an unknown rollout. The verdict
#: kinds' codes (0 promote, 1 rollback, 2 hold or no decision) are ``EXIT_CODES``.
EXIT_ERROR = 3

T = TypeVar("T")


def exit_code(kind: str | None) -> int:
    """The exit code of a verdict kind; no verdict at all exits like a hold."""
    return EXIT_CODES[kind] if kind is not None else EXIT_CODES["hold"]


# -- options and callbacks ----------------------------------------------------------------------

def broker_option(required: bool):
    return click.option(
        "--broker", envvar="RUMGATE_BROKER", required=False,
        help="Kafka bootstrap address, e.g. kafka://host:9092 (env RUMGATE_BROKER)."
             + ("" if required else " Default: start the embedded broker."))


def settings_from(broker: str | None, require_broker: bool = False, **overrides: object) -> Settings:
    from streams.live.broker import BrokerError, broker_servers
    from streams.live.settings import Settings, SettingsError

    try:
        settings = Settings.from_env(broker=broker, **overrides)
        if settings.broker is not None:
            broker_servers(settings.broker)  # refuse a malformed address now, clearly
    except (SettingsError, BrokerError) as exc:
        raise click.ClickException(str(exc)) from None
    if require_broker and settings.broker is None:
        raise click.ClickException("no broker: pass --broker kafka://host:9092 or set RUMGATE_BROKER")
    return settings


def parse_time(text: str | None, default_now: bool = True) -> int | None:
    """``now``, epoch ms, or ISO 8601 (UTC when no zone) → epoch ms."""
    if text is None:
        return int(time.time() * 1000) if default_now else None
    text = text.strip()
    if text == "now":
        return int(time.time() * 1000)
    if text.isdigit():
        return int(text)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r}: use now, epoch milliseconds or ISO 8601, "
                                 "e.g. 2026-11-23T10:00:00Z") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


def duration_ms(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """Option callback: ``90s``, ``30m``, ``2h`` or milliseconds → milliseconds (None stays None)."""
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def duration_seconds(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """Option callback: like :func:`duration_ms`, in seconds."""
    ms = duration_ms(ctx, param, value)
    return None if ms is None else ms / 1000


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


# -- the broker ---------------------------------------------------------------------------------

def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to the end; a broker error is a clean CLI error."""
    import asyncio

    from streams.live.broker import BrokerError

    try:
        return asyncio.run(coro)
    except BrokerError as exc:
        raise click.ClickException(str(exc)) from None


async def produce(settings: Settings, topic: str, key: bytes, value: bytes) -> None:
    """Publish one record (the topics are created first when missing)."""
    from aiokafka import AIOKafkaProducer

    from streams.live.broker import broker_servers
    from streams.live.topics import ensure_topics

    await ensure_topics(settings)
    producer = AIOKafkaProducer(bootstrap_servers=broker_servers(settings.broker))
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def read_state(settings: Settings) -> tuple[dict[str, dict], dict[str, dict]]:
    """Rollouts (latest record per id) and their latest verdicts, read from the topics."""
    import orjson

    from detectors.verdict import latest_by_key
    from streams.live.broker import broker_servers
    from streams.live.topics import ensure_topics, read_to_end

    await ensure_topics(settings)
    servers = broker_servers(settings.broker)
    rollouts: dict[str, dict] = {}
    async for batch in read_to_end(servers, settings.topics.rollouts):
        for r in batch:
            try:
                d = orjson.loads(r.value)
                rollouts[d["id"]] = d
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue
    latest: list[tuple[str, dict]] = []
    async for batch in read_to_end(servers, settings.topics.verdicts_latest):
        for r in batch:
            try:
                d = orjson.loads(r.value)
                latest.append((d["rollout"], d))
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue
    return rollouts, latest_by_key(latest)


def unknown_rollout(rollout_id: str, rollouts: Iterable[str]) -> str:
    """The message for an id that is not among ``rollouts``."""
    known = ", ".join(sorted(rollouts)) or "none"
    return f"no rollout {rollout_id!r} (known: {known})"


# -- verdict rendering --------------------------------------------------------------------------

def describe(v: Verdict) -> str:
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


def headline(kind: str, severity: str) -> str:
    """``ROLLBACK (minor)``; ``PROMOTE`` (a severity of none is not shown)."""
    return kind.upper() + (f" ({severity})" if severity != "none" else "")


def outcome_lines(label: str, verdict: Verdict | Mapping[str, Any], indent: str = "  ") -> list[str]:
    """``label`` and the headline, then one ``- reason`` line per reason.

    ``verdict`` is a :class:`Verdict` or its JSON form (what ``rollout status`` reads).
    """
    if isinstance(verdict, Verdict):
        kind, severity, reasons = verdict.verdict, verdict.severity, verdict.reasons
    else:
        kind, severity, reasons = verdict["verdict"], verdict["severity"], verdict["reasons"]
    return [f"{label}{headline(kind, severity)}", *(f"{indent}- {reason}" for reason in reasons)]


def echo_outcome(label: str, verdict: Verdict | Mapping[str, Any], indent: str = "  ") -> None:
    """Print :func:`outcome_lines`."""
    for line in outcome_lines(label, verdict, indent):
        click.echo(line)


def evidence_line(m: MetricEvidence) -> str:
    """One metric's evidence: status, both arms' values, e-value against its threshold, the bracket."""
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
    return (f"  {m.name:<28} {m.status:<12} {values}"
            f"e {max(m.e_rollback, m.e_worse or 0):.3g}/{m.threshold_rollback:.3g}, n={m.n_canary}"
            + (f"; {', '.join(bracket)}" if bracket else ""))
