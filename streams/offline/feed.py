"""Produce simulated traffic into ``rum.beacons``, as gateways would: for the demo, the
tests and the benchmarks.

Records are produced with the beacon's ``ts`` as the Kafka timestamp (the gateway's
receive time), keyed by session so that a user's beacons stay in one partition. With
``per_record > 1`` several beacons of one partition share a record (a JSON array).
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable
from itertools import groupby

import orjson
from aiokafka import AIOKafkaProducer

__all__ = ["produce_beacons", "partition_of"]


def partition_of(beacon: dict, partitions: int) -> int:
    """Where a beacon goes: by session (users stay together), by id when it has none."""
    key = beacon.get("session") or beacon.get("id") or ""
    return zlib.crc32(str(key).encode()) % partitions


async def produce_beacons(
    servers: str,
    topic: str,
    beacons: Iterable[dict],
    partitions: int,
    *,
    per_record: int = 1,
    speed: float | None = None,
    window_ms: int = 5000,
    on_window: Callable[[int, int], Awaitable[None] | None] | None = None,
    extra: Iterable[tuple[int, bytes]] = (),
) -> int:
    """Produce ``beacons`` (in ``ts`` order) one event-time window at a time.

    ``speed``: simulated seconds per wall-clock second (None: as fast as possible).
    ``on_window(window_start, produced_so_far)`` is called after each window.
    ``extra``: ``(partition, raw bytes)`` records produced first (e.g. malformed ones).
    Returns the number of beacons produced.
    """
    producer = AIOKafkaProducer(bootstrap_servers=servers, linger_ms=5, max_batch_size=1 << 20)
    await producer.start()
    produced = 0
    began = time.monotonic()
    first_ts: int | None = None
    try:
        for p, raw in extra:
            await producer.send(topic, raw, partition=p)
        for start, rows in groupby(beacons, key=lambda b: b["ts"] - b["ts"] % window_ms):
            if first_ts is None:
                first_ts = start
            if speed is not None:
                wait = (start - first_ts) / 1000 / speed - (time.monotonic() - began)
                if wait > 0:
                    await asyncio.sleep(wait)
            by_partition: dict[int, list[dict]] = {}
            for b in rows:
                by_partition.setdefault(partition_of(b, partitions), []).append(b)
            for p, group in by_partition.items():
                for i in range(0, len(group), per_record):
                    chunk = group[i:i + per_record]
                    value = orjson.dumps(chunk[0] if per_record == 1 else chunk)
                    await producer.send(topic, value, partition=p, timestamp_ms=chunk[-1]["ts"])
                produced += len(group)
            if on_window is not None:
                result = on_window(start, produced)
                if asyncio.iscoroutine(result):
                    await result
        await producer.flush()
    finally:
        await producer.stop()
    return produced
