"""The worker's agents, timers and tasks, registered on a :class:`~streams.live.runtime.Runtime`.

* ``aggregate`` consumes ``rum.beacons`` in batches and hands each partition's events to
  :class:`~streams.live.runtime.Stage1`: closed windows go to ``rum.windows``, invalid
  items to ``rum.beacons.dlq`` (one record per source record: its refused items with their
  reasons and bytes, the source partition/offset as headers). A record's offset is committed only once every window it
  touched is on ``rum.windows`` *and* the partition's checkpoint (on the compacted topic
  ``rum.checkpoints``) says where to resume: that is what makes a ``kill -9`` lose nothing
  and count nothing twice. (The checkpoints are a changelog read back on assignment rather
  than a Faust table: Faust's table recovery never finished on the embedded broker, which
  reports end offsets per record batch; ``read_to_end`` copes with that.)
* ``heartbeat`` reports partitions without traffic as idle, so they do not hold back
  the windows of the others.
* ``judge`` consumes ``rum.windows`` (never committing: it replays its partition on start
  to rebuild the gates) and publishes, through :class:`~streams.live.runtime.Stage2`,
  verdicts it has not published before.
* the tasks follow the control topics (:mod:`streams.live.control`), deliver webhooks and
  serve HTTP (:mod:`streams.live.serving`); a timer measures the ``rum.beacons`` lag.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import orjson

from detectors.pipeline.judge import WindowsRecord
from streams.live.control import connect_backend, follow_control_topics
from streams.live.runtime import Runtime
from streams.live.serving import serve_http

__all__ = ["register", "aggregate_batch", "judge_message", "measure_lag"]

log = logging.getLogger("rumgate")


def register(rt: Runtime, quiet: bool = False) -> None:
    """Declare the agents, timers, tasks and rebalance handlers of a worker on ``rt.app``."""
    connect_backend(rt)
    _register_stage1(rt)
    _register_stage2(rt)
    _register_services(rt, quiet)
    _register_rebalance(rt, quiet)


async def aggregate_batch(rt: Runtime, events: list) -> None:
    """Stage 1 on one batch of ``rum.beacons`` events, partition by partition."""
    by_partition: dict[int, list] = defaultdict(list)
    for e in events:
        by_partition[e.message.partition].append(e)
    stage1 = rt.stage1
    async with stage1.lock:
        for p, evs in by_partition.items():
            await stage1.process(p, evs)  # looked up at each batch (a benchmark wraps it)


async def judge_message(rt: Runtime, message) -> None:
    """Stage 2 on one ``rum.windows`` record: the partition's judge, then its new verdicts."""
    try:
        record = WindowsRecord.from_dict(orjson.loads(message.value))
    except (orjson.JSONDecodeError, ValueError, KeyError, TypeError) as exc:
        log.warning("rum.windows %d@%d: not a windows record (%s), ignored",
                    message.partition, message.offset, exc)
        return
    stage2 = rt.stage2
    async with stage2.lock:
        j = stage2.judge(message.partition)
        before = j.late_summaries
        verdicts = j.add(record)
        rt.stats["late_summaries"] += j.late_summaries - before
        rt.backend.metrics.late_summaries.inc(j.late_summaries - before)
        await stage2.publish(verdicts)
        await stage2.start_new_releases(j)


async def measure_lag(rt: Runtime) -> None:
    """The ``rum.beacons`` lag of each assigned partition, into the metrics."""
    consumer = rt.app.consumer
    for tp in consumer.assignment():
        if tp.topic != rt.settings.topics.beacons:
            continue
        try:
            high = consumer.highwater(tp)
            position = await consumer.position(tp)
        except Exception:  # noqa: BLE001 - not fetched yet
            continue
        if high is not None and position is not None:
            rt.backend.metrics.lag.labels(partition=str(tp.partition)).set(max(0, high - position))


def _register_stage1(rt: Runtime) -> None:
    app, settings = rt.app, rt.settings

    @app.agent(rt.beacons, name="aggregate")
    async def aggregate(stream):
        async for events in stream.take_events(settings.batch_max, within=settings.batch_within_s):
            await aggregate_batch(rt, events)

    @app.timer(1.0)
    async def heartbeat():
        await rt.stage1.heartbeat()


def _register_stage2(rt: Runtime) -> None:
    @rt.app.agent(rt.windows, name="judge")
    async def judge(stream):
        async for event in stream.events():
            await judge_message(rt, event.message)


def _register_services(rt: Runtime, quiet: bool) -> None:
    app = rt.app

    @app.task
    async def follow_control():
        await follow_control_topics(rt)

    @app.task
    async def deliver_webhooks():
        await rt.notifier.run()

    @app.task
    async def http():
        await serve_http(rt, quiet)

    @app.timer(5.0)
    async def lag():
        await measure_lag(rt)


def _register_rebalance(rt: Runtime, quiet: bool) -> None:
    app, topics = rt.app, rt.settings.topics
    stage1, stage2 = rt.stage1, rt.stage2

    @app.on_partitions_revoked.connect
    async def on_revoked(sender, revoked, **kwargs):
        rt.backend.partitions = None  # not ready while the group rebalances
        async with stage1.lock:
            stage1.revoke({tp.partition for tp in revoked if tp.topic == topics.beacons})
        async with stage2.lock:
            for tp in revoked:
                if tp.topic == topics.windows:
                    stage2.judges.pop(tp.partition, None)

    @app.on_partitions_assigned.connect
    async def on_assigned(sender, assigned, **kwargs):
        mine = sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned
                      if tp.topic in (topics.beacons, topics.windows))
        if not quiet:
            print(f"rumgate worker: partitions assigned: {', '.join(mine) or 'none'}", flush=True)
        # Faust has just sought every partition to its committed offset: rum.beacons to
        # where its checkpoint can take over, rum.windows (never committed) to its start,
        # which a fresh judge needs. Say so explicitly for rum.windows, whatever the client.
        judged = [tp for tp in assigned if tp.topic == topics.windows]
        for tp in judged:
            await app.consumer.seek(tp, 0)
        async with stage2.lock:
            await stage2.load_published()
        rt.backend.partitions = mine  # ready: what /healthz reports
