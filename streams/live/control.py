"""The control topics: ``rum.rollouts``, ``rum.overrides`` and ``rum.verdicts.latest``.

Every worker reads all three (all small) from the start, for as long as it runs, so any
worker can answer the HTTP API; the API writes rollouts and overrides through
:func:`connect_backend`.

Anyone who can write to these topics can put anything there, so a record is applied only
once it parses whole (a rollout must pass :class:`detectors.rollout.Rollout`'s checks: an id
of the safe alphabet, at most a few dry-run policies); a bad one is logged and skipped by
:func:`apply_or_skip`, never applied in part and never the end of the follower. Logs show
the texts of records through :func:`shown`, so a newline or a bidirectional character in an
override's reason cannot forge or hide a line of the worker's log.
"""

from __future__ import annotations

import logging

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from detectors.override import Override
from detectors.rollout import Rollout
from streams.live.broker import broker_servers
from streams.live.runtime import Runtime
from streams.live.topics import read_to_end

__all__ = ["connect_backend", "follow_control_topics", "apply_control_record", "apply_or_skip", "shown"]

log = logging.getLogger("rumgate")


def connect_backend(rt: Runtime) -> None:
    """Give the HTTP API's backend its writers (rollouts, overrides) and the verdict history."""
    app, settings, backend = rt.app, rt.settings, rt.backend
    servers = broker_servers(settings.broker or "")

    async def publish_rollout(rollout: Rollout) -> None:
        await rt.rollouts.send(key=rollout.id.encode(), value=orjson.dumps(rollout.to_dict()))
        await app.producer.flush()

    async def publish_override(override: Override) -> None:
        await rt.overrides.send(key=override.rollout.encode(), value=orjson.dumps(override.to_dict()))
        await app.producer.flush()

    async def history(rollout_id: str) -> list[dict]:
        out = []
        async for batch in read_to_end(servers, settings.topics.verdicts):
            out += [orjson.loads(r.value) for r in batch if r.key == rollout_id.encode()]
        return out

    backend.publish_rollout, backend.publish_override, backend.history = publish_rollout, publish_override, history


async def follow_control_topics(rt: Runtime) -> None:
    """Read the three control topics from their start, forever (a bad record is logged, skipped)."""
    await rt.stage2.load_published()
    consumer = AIOKafkaConsumer(bootstrap_servers=broker_servers(rt.settings.broker or ""),
                                enable_auto_commit=False, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    t = rt.settings.topics
    tps = [TopicPartition(t.rollouts, 0), TopicPartition(t.overrides, 0), TopicPartition(t.verdicts_latest, 0)]
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while True:
            batch = await consumer.getmany(*tps, timeout_ms=500)
            for tp in tps:
                for record in batch.get(tp, ()):
                    await apply_or_skip(rt, tp.topic, record)
    finally:
        await consumer.stop()


async def apply_or_skip(rt: Runtime, topic: str, record) -> bool:
    """:func:`apply_control_record`, or a warning naming the record when it is refused (False)."""
    try:
        await apply_control_record(rt, topic, record)
    except Exception as exc:  # noqa: BLE001 - a bad record must not stop the worker
        log.warning("%s offset %s: refused: %s", topic, getattr(record, "offset", "?"), shown(str(exc)[:500]))
        return False
    return True


def shown(text: object) -> str:
    """``text`` as it is when every character is printable, else its ``repr``: a newline, a
    control or a bidirectional override (none is printable) is then shown escaped."""
    s = str(text)
    return s if s.isprintable() else repr(s)


async def apply_control_record(rt: Runtime, topic: str, record) -> None:
    """One record of a control topic: into the API's backend, and to stage 2."""
    t, backend, stage2 = rt.settings.topics, rt.backend, rt.stage2
    if topic == t.rollouts:
        rollout = Rollout.from_dict(orjson.loads(record.value))
        known = backend.rollouts.get(rollout.id)
        if known is not None:
            rollout = known.merged(rollout)
        backend.rollouts[rollout.id] = rollout
        log.info("rollout %s: canary %s vs baseline %s, policy %s%s", rollout.id, rollout.canary,  # checked names
                 rollout.baseline, rollout.policy.name, " (ended)" if rollout.ended_at else "")
        await stage2.on_rollout(rollout)
    elif topic == t.overrides:
        override = Override(**orjson.loads(record.value))
        known = backend.overrides.setdefault(override.rollout, [])
        if override not in known:
            known.append(override)
        log.info("override on %s by %s: %s (%s)", *map(shown, (override.rollout, override.actor, override.action,
                                                               override.reason)))
        await stage2.on_override(override)
    else:
        v = orjson.loads(record.value)
        key = record.key.decode() if record.key else v["rollout"]
        backend.offer_verdict(key, v)
