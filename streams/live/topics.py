"""The topics rumgate uses, created on start, and small helpers to read them.

| topic | key | value | kept |
|---|---|---|---|
| ``rum.beacons`` | app (or none) | one beacon, a JSON array or NDJSON | retention |
| ``rum.beacons.dlq`` | source partition:offset | ``[{item, reason, raw, encoding}]`` | retention |
| ``rum.windows`` | source partition (records go to the app's partition) | :class:`detectors.pipeline.judge.WindowsRecord` | retention (replayed by the judge on start) |
| ``rum.rollouts`` | rollout id | :class:`detectors.pipeline.judge.Rollout` | compacted |
| ``rum.verdicts`` | rollout id | verdict event | retention (audit history) |
| ``rum.verdicts.latest`` | rollout id | verdict event | compacted |
| ``rum.overrides`` | rollout id | :class:`detectors.override.Override` | retention (all kept) |
| ``rum.checkpoints`` | beacons partition | :class:`detectors.pipeline.aggregate.Checkpoint` | compacted |
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError

from streams.live.broker import BrokerError, broker_servers
from streams.live.settings import Settings

__all__ = ["WINDOWS_MAX_BYTES", "topic_specs", "ensure_topics", "partition_count", "read_to_end",
           "windows_partition_for"]

_COMPACT = {"cleanup.policy": "compact"}

#: The largest ``rum.windows`` record: a window summary carries the hashes of its sessions,
#: and at tens of thousands of beacons/s per partition one outgrows the 1 MB that Kafka
#: brokers take by default. The topic allows it, and so does the worker's producer.
WINDOWS_MAX_BYTES = 16 * 1024 * 1024


def topic_specs(settings: Settings) -> list[NewTopic]:
    t, r = settings.topics, settings.replication
    return [
        NewTopic(t.beacons, settings.beacons_partitions, r),
        NewTopic(t.dlq, settings.beacons_partitions, r),
        NewTopic(t.windows, settings.windows_partitions, r,
                 topic_configs={"max.message.bytes": str(WINDOWS_MAX_BYTES)}),
        NewTopic(t.rollouts, 1, r, topic_configs=_COMPACT),
        NewTopic(t.verdicts, 1, r),
        NewTopic(t.verdicts_latest, 1, r, topic_configs=_COMPACT),
        NewTopic(t.overrides, 1, r),  # every override stays on record
        NewTopic(t.checkpoints, 1, r, topic_configs=_COMPACT),
    ]


async def ensure_topics(settings: Settings, timeout_s: float = 15.0) -> dict[str, int]:
    """Create missing topics; return every rumgate topic's partition count.

    An existing ``rum.beacons`` with another partition count than configured is accepted
    (its count wins: stage 2 waits for each of its partitions).
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=broker_servers(settings.broker or ""),
                                request_timeout_ms=int(timeout_s * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
    except (KafkaConnectionError, asyncio.TimeoutError, OSError) as exc:
        raise BrokerError(f"cannot reach the broker at {settings.broker}: {_cause(exc)}") from None
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in topic_specs(settings) if spec.name not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except KafkaError as exc:  # another worker created them meanwhile
                if "TopicAlreadyExists" not in type(exc).__name__:
                    raise
        described = await admin.describe_topics([spec.name for spec in topic_specs(settings)])
        return {d["topic"]: len(d["partitions"]) for d in described}
    finally:
        await admin.close()


def windows_partition_for(app: str, partitions: int) -> int:
    """The ``rum.windows`` partition that judges ``app``: a stable hash, so every worker
    agrees. Progress records go to every partition, so each judge hears from all sources.

    >>> windows_partition_for("shop-web", 1), windows_partition_for("shop-web", 3)
    (0, 2)
    """
    return zlib.crc32(app.encode()) % partitions


async def partition_count(servers: str, topic: str) -> int:
    """How many partitions ``topic`` has (0 when it does not exist)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()  # noqa: SLF001 - a topic created just now
        return len(consumer.partitions_for_topic(topic) or ())
    finally:
        await consumer.stop()


async def read_range(servers: str, topic: str, partition: int, start: int, end: int) -> AsyncIterator[list]:
    """The records of one partition from offset ``start`` up to ``end`` (excluded), in
    batches; joins no group, commits nothing. Records the log no longer holds (deleted by
    retention) are skipped."""
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False,
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, start)
        while await consumer.position(tp) < end:
            records = (await consumer.getmany(tp, timeout_ms=1000)).get(tp, [])
            records = [r for r in records if r.offset < end]
            if records:
                yield records
    finally:
        await consumer.stop()


async def read_to_end(servers: str, topic: str, idle_ms: int = 300,
                      from_timestamp: int | None = None) -> AsyncIterator[list]:
    """Every record of ``topic`` present now, in batches; joins no group, commits nothing.

    A partition is finished once the position reached the end offset seen at the start
    and a fetch came back empty (some brokers report the end offset per record batch, so
    the end offset alone is not trusted).
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False,
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic)
        if parts is None:
            await consumer._client.force_metadata_update()  # noqa: SLF001 - a fresh topic
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return
        consumer.assign(tps)
        if from_timestamp is not None:
            found = await consumer.offsets_for_times({tp: from_timestamp for tp in tps})
            for tp, at in found.items():
                if at is None:
                    consumer.seek_to_end(tp)
                else:
                    consumer.seek(tp, at.offset)
        else:
            await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        left = set(tps)
        while left:
            batch = await consumer.getmany(*left, timeout_ms=idle_ms)
            for tp in list(left):
                records = batch.get(tp)
                if records:
                    yield records
                elif await consumer.position(tp) >= ends[tp]:
                    left.discard(tp)
    finally:
        await consumer.stop()


def _cause(exc: BaseException) -> str:
    """An exception as ``Type: message``, never empty (timeouts have no message)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
