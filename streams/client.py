"""Subscribe to a rollout's verdicts from Python: the latest first, then each new one.

A custom deployment controller in a dozen lines::

    import asyncio
    from streams.client import VerdictSubscriber

    async def control(rollout_id: str) -> None:
        async for v in VerdictSubscriber("kafka://kafka:9092", rollout=rollout_id):
            print(v.seq, v.verdict, v.reasons[0])
            if v.verdict == "rollback":
                await scale_canary_to_zero()        # your deployment tool
                break
            if v.verdict == "promote":
                await shift_all_traffic_to_canary()
                break

    asyncio.run(control("shop-web:2026.11.23-abc"))

The subscriber joins no consumer group and commits nothing; every subscriber sees every
verdict. Verdicts of dry-run policies are skipped unless ``include_dry_run``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaConnectionError

from detectors.verdict import Verdict, latest_by_key
from streams.live.broker import BrokerError, broker_servers
from streams.live.settings import Topics
from streams.live.topics import read_to_end

__all__ = ["VerdictSubscriber", "latest_by_key"]



class VerdictSubscriber:
    """``async for verdict in VerdictSubscriber(broker, rollout=ID)``.

    Parameters
    ----------
    broker
        ``kafka://host:9092``.
    rollout
        The rollout id (``app:canary`` unless chosen at start).
    topics
        Topic names (a :class:`~streams.live.settings.Topics`, e.g. with a prefix).
    include_dry_run
        Also yield verdicts of the rollout's dry-run policies (``verdict.policy["dry_run"]``).
    connect_timeout_s
        Raise :class:`~streams.live.broker.BrokerError` when the broker does not answer in time.
    """

    def __init__(self, broker: str, rollout: str, *, topics: Topics | None = None,
                 include_dry_run: bool = False, connect_timeout_s: float = 10.0) -> None:
        self.servers = broker_servers(broker)
        self.rollout = rollout
        self.topics = topics or Topics()
        self.include_dry_run = include_dry_run
        self.connect_timeout_s = connect_timeout_s

    def _wanted(self, v: dict) -> bool:
        if v.get("rollout") != self.rollout:
            return False
        return self.include_dry_run or not (v.get("policy") or {}).get("dry_run")

    async def __aiter__(self) -> AsyncIterator[Verdict]:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.servers, enable_auto_commit=False,
                                    auto_offset_reset="earliest", group_id=None,
                                    request_timeout_ms=int(self.connect_timeout_s * 1000))
        try:
            await asyncio.wait_for(consumer.start(), self.connect_timeout_s)
        except (KafkaConnectionError, asyncio.TimeoutError, OSError) as exc:
            raise BrokerError(f"cannot reach the broker at {self.servers}: {exc or type(exc).__name__}") from None
        try:
            history = TopicPartition(self.topics.verdicts, 0)
            consumer.assign([history])
            # Where the history ends *before* the latest verdicts are read: nothing between is missed.
            start = (await consumer.end_offsets([history]))[history]
            seen: dict[str, int] = {}
            wanted: list[tuple[str, dict]] = []
            async for batch in read_to_end(self.servers, self.topics.verdicts_latest):
                for record in batch:
                    v = _parse(record.value)
                    if v and self._wanted(v):
                        wanted.append((_key(record, v), v))
            for key, v in sorted(latest_by_key(wanted).items()):
                seen[key] = v["seq"]
                yield Verdict.from_dict(v)
            consumer.seek(history, start)
            while True:
                batch = await consumer.getmany(history, timeout_ms=1000)
                for record in batch.get(history, ()):
                    v = _parse(record.value)
                    if not v or not self._wanted(v):
                        continue
                    key = _key(record, v)
                    if v["seq"] <= seen.get(key, 0):
                        continue  # already yielded (or a repeated publication)
                    seen[key] = v["seq"]
                    yield Verdict.from_dict(v)
        finally:
            await consumer.stop()


def _parse(value: bytes) -> dict | None:
    try:
        v = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    return v if isinstance(v, dict) and "rollout" in v and isinstance(v.get("seq"), int) else None


def _key(record, v: dict) -> str:
    """A verdict record's key: the record's own, else the verdict's rollout."""
    return record.key.decode() if record.key else v["rollout"]
