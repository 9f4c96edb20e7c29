"""The worker's agents: stage 1 (aggregate), stage 2 (judge), rollouts, heartbeats.

* ``aggregate`` consumes ``rum.beacons`` in batches. Each partition has its own
  :class:`~detectors.pipeline.aggregate.PartitionAggregator`; closed windows go to ``rum.windows``,
  invalid items to ``rum.beacons.dlq`` (original bytes as the value, the reason and the
  source partition/offset as headers). A record's offset is committed only once every
  window it touched is on ``rum.windows`` *and* the partition's checkpoint (on the
  compacted topic ``rum.checkpoints``) says where to resume: that is what makes a
  ``kill -9`` lose nothing and count nothing twice. (The checkpoints are a changelog read
  back on assignment rather than a Faust table: Faust's table recovery never finished on
  the embedded broker, which reports end offsets per record batch; ``read_to_end``
  copes with that.)
* ``heartbeat`` reports partitions without traffic as idle, so they do not hold back
  the windows of the others.
* ``judge`` consumes ``rum.windows`` (never committing: it replays its partition on start
  to rebuild the gates) and publishes verdicts it has not published before.
* ``rollouts`` follows ``rum.rollouts`` (every worker reads all of it: it is tiny).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict, deque

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from aiohttp import web

from detectors.override import Override
from detectors.verdict import Verdict
from detectors.pipeline.aggregate import Checkpoint, PartitionAggregator, Step
from streams.http.api import Backend, make_api
from streams.live.app import Runtime
from streams.live.broker import broker_servers
from streams.ingest.endpoint import Ingestor, add_ingest_routes, ingest_config
from detectors.pipeline.judge import Judge, WindowsRecord
from detectors.rollout import Rollout
from streams.live.topics import read_to_end, windows_partition_for
from streams.http.webhooks import Notifier

__all__ = ["register", "now_ms"]

log = logging.getLogger("rumgate")


def now_ms() -> int:
    return int(time.time() * 1000)


class _Stage1:
    """Per-partition aggregators and the events they still hold unacknowledged."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.aggs: dict[int, PartitionAggregator] = {}
        self.held: dict[int, deque] = defaultdict(deque)  # events not yet safe to commit
        self.last_record_at: dict[int, float] = {}
        self.reported: dict[int, int | None] = {}  # closed_before last sent, per partition
        self.assigned: set[int] = set()
        self.saved: dict[int, Checkpoint] | None = None  # read from rum.checkpoints on assignment
        self.lock = asyncio.Lock()

    async def load_checkpoints(self) -> None:
        """The latest checkpoint of every partition (call with the lock held)."""
        saved: dict[int, Checkpoint] = {}
        servers = broker_servers(self.rt.settings.broker or "")
        async for batch in read_to_end(servers, self.rt.settings.topics.checkpoints):
            for record in batch:
                try:
                    saved[int(record.key)] = Checkpoint.from_dict(orjson.loads(record.value))
                except (TypeError, ValueError, KeyError, orjson.JSONDecodeError):
                    log.warning("rum.checkpoints offset %d: not a checkpoint, ignored", record.offset)
        self.saved = saved

    async def aggregator(self, p: int) -> PartitionAggregator:
        agg = self.aggs.get(p)
        if agg is None:
            if self.saved is None:
                await self.load_checkpoints()
            checkpoint = self.saved.get(p)
            s = self.rt.settings
            agg = self.aggs[p] = PartitionAggregator(p, s.window_ms, s.lateness_ms, checkpoint)
            if checkpoint:
                log.info("partition %d: resuming at offset %d (watermark %s)", p, checkpoint.offset,
                         checkpoint.watermark)
        return agg

    def revoke(self, partitions: set[int]) -> None:
        self.saved = None  # another worker may move them on: read again on the next assignment
        for p in partitions:
            self.aggs.pop(p, None)
            self.held.pop(p, None)  # never acked: the next owner re-reads them
            self.last_record_at.pop(p, None)
            self.reported.pop(p, None)
        self.assigned -= partitions

    async def process(self, p: int, events: list) -> None:
        agg = await self.aggregator(p)
        for e in events:
            e.message.incref()  # keep the offset uncommitted until its windows are out
        self.held[p].extend(events)
        step = agg.process([(e.message.offset, e.message.value) for e in events])
        self.rt.stats["beacons"] += step.beacons
        self.rt.stats["records"] += len(events)
        self.rt.backend.metrics.beacons.inc(step.beacons)
        self.rt.backend.metrics.records.inc(len(events))
        self.last_record_at[p] = time.monotonic()
        await self.publish(p, agg, step)

    async def publish(self, p: int, agg: PartitionAggregator, step: Step, idle: bool = False) -> None:
        rt = self.rt
        for dead in step.rejects:
            headers = [("rumgate-reason", dead.reason.encode()), ("rumgate-partition", str(p).encode()),
                       ("rumgate-offset", str(dead.offset).encode())]
            if dead.item is not None:
                headers.append(("rumgate-item", str(dead.item).encode()))
            await rt.dlq.send(key=f"{p}:{dead.offset}".encode(), value=dead.raw, partition=p, headers=headers)
            rt.stats["dead_letters"] += 1
            rt.backend.metrics.dead_letters.inc()
        # Progress matters even without summaries (a window this partition had no beacons in).
        if step.closed or idle or agg.closed_before != self.reported.get(p):
            await self.send_windows(p, agg.closed_before, idle, step)
            self.reported[p] = agg.closed_before
        if step.done_offset is not None:
            await rt.app.producer.flush()  # windows first, then the checkpoint that relies on them
            await rt.checkpoints.send(key=str(p).encode(), value=orjson.dumps(step.checkpoint.to_dict()))
            await rt.app.producer.flush()
            if self.saved is not None:
                self.saved[p] = step.checkpoint
            held = self.held[p]
            while held and held[0].message.offset < step.done_offset:
                held.popleft().ack()

    async def send_windows(self, p: int, closed_before: int | None, idle: bool, step: Step) -> None:
        """One record per closed window (bounded size), then the partition's progress.

        A record's ``closed_before`` never runs ahead of the windows sent so far, so a judge
        never takes a window as complete before this partition's summaries of it arrived.
        """
        rt = self.rt
        n = rt.settings.windows_partitions
        by_target: dict[int, dict[int, list]] = defaultdict(lambda: defaultdict(list))
        for s in step.closed:
            by_target[windows_partition_for(s.key.app, n)][s.start].append(s)
        for target in range(n):
            windows = by_target.get(target, {})
            records = [WindowsRecord(p, start + summaries[0].size_ms, False, summaries)
                       for start, summaries in sorted(windows.items())]
            if closed_before is not None:
                for record in records:
                    record.closed_before = min(record.closed_before, closed_before)
            records.append(WindowsRecord(p, closed_before, idle, []))
            for record in records:
                await rt.windows.send(key=str(p).encode(), value=orjson.dumps(record.to_dict()), partition=target)
        rt.stats["windows"] += len(step.closed)
        rt.backend.metrics.windows.inc(len(step.closed))

    async def heartbeat(self) -> None:
        """Report progress of partitions that have gone quiet (idle ones as idle)."""
        idle_after = self.rt.settings.idle_after_s
        now = time.monotonic()
        for tp in self.rt.app.consumer.assignment():
            if tp.topic != self.rt.settings.topics.beacons:
                continue
            p = tp.partition
            self.assigned.add(p)
            seen = self.last_record_at.get(p)
            if seen is None:
                self.last_record_at[p] = now
                continue
            if now - seen < idle_after:
                continue
            async with self.lock:
                agg = await self.aggregator(p)
                await self.publish(p, agg, Step(), idle=True)
                self.last_record_at[p] = now - idle_after / 2  # again in half the idle time


class _Stage2:
    """One :class:`Judge` per assigned ``rum.windows`` partition, the rollouts, the overrides."""

    def __init__(self, rt: Runtime, notifier: Notifier) -> None:
        self.rt = rt
        self.notifier = notifier
        self.judges: dict[int, Judge] = {}
        self.rollouts: dict[str, Rollout] = {}
        self.overrides: list[Override] = []
        self.published: dict[str, int] = {}  # last seq on rum.verdicts per verdict key
        self.last_kind: dict[str, str] = {}  # last verdict per key, for webhooks on change
        self.lock = asyncio.Lock()

    async def load_published(self) -> None:
        servers = broker_servers(self.rt.settings.broker or "")
        async for batch in read_to_end(servers, self.rt.settings.topics.verdicts_latest):
            for record in batch:
                try:
                    v = orjson.loads(record.value)
                    key = record.key.decode() if record.key else v["rollout"]
                    if int(v["seq"]) >= self.published.get(key, 0):
                        self.published[key] = int(v["seq"])
                        self.last_kind[key] = v["verdict"]
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, UnicodeDecodeError):
                    log.warning("rum.verdicts.latest offset %d: not a verdict, ignored", record.offset)

    def judge(self, partition: int) -> Judge:
        judge = self.judges.get(partition)
        if judge is None:
            judge = self.judges[partition] = Judge(self.rt.sources)
            for o in self.overrides:
                judge.apply_override(o)
            for rollout in self.rollouts.values():
                if windows_partition_for(rollout.app, self.rt.settings.windows_partitions) == partition:
                    judge.apply_rollout(rollout)  # no windows yet: nothing to publish
        return judge

    async def on_rollout(self, rollout: Rollout) -> None:
        async with self.lock:
            self.rollouts[rollout.id] = rollout
            target = windows_partition_for(rollout.app, self.rt.settings.windows_partitions)
            if target in self.judges:
                await self.publish(self.judges[target].apply_rollout(rollout))

    async def on_override(self, override: Override) -> None:
        async with self.lock:
            self.overrides.append(override)
            for judge in self.judges.values():
                judge.apply_override(override)

    async def publish(self, verdicts: list[Verdict]) -> None:
        rt = self.rt
        metrics = rt.backend.metrics
        for v in verdicts:
            key = v.key
            if v.seq <= self.published.get(key, 0):
                continue  # published before a restart: rebuilt, not repeated
            emitted = now_ms()
            body = orjson.dumps({**v.to_dict(), "emitted_at": emitted})
            await rt.verdicts.send(key=key.encode(), value=body)
            await rt.verdicts_latest.send(key=key.encode(), value=body)
            self.published[key] = v.seq
            rt.stats["verdicts"] += 1
            dry = bool(v.policy.get("dry_run"))
            metrics.verdicts.labels(verdict=v.verdict, dry_run=str(dry).lower()).inc()
            metrics.latency.observe(max(0.0, (emitted - v.at - rt.settings.lateness_ms) / 1000))
            if not dry and self.last_kind.get(key) != v.verdict:
                self.notifier.notify(body)
            self.last_kind[key] = v.verdict
            log.info("verdict %s #%d: %s — %s", key, v.seq, v.verdict, "; ".join(v.reasons)[:200])


def register(rt: Runtime, quiet: bool = False) -> None:
    app, settings = rt.app, rt.settings
    servers = broker_servers(settings.broker or "")
    rt.backend = backend = Backend()
    notifier = Notifier(settings.webhook_urls.split(","), settings.webhook_secret,
                        on_give_up=backend.metrics.webhook_failures.inc)
    stage1, stage2 = _Stage1(rt), _Stage2(rt, notifier)
    rt.stage1, rt.stage2 = stage1, stage2

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

    async def ingest_sink(topic: str, key: bytes, value: bytes, headers: list) -> None:
        target = rt.beacons if topic == settings.topics.beacons else rt.dlq
        fut = await target.send(key=key, value=value, headers=headers or None)
        await fut  # acknowledged by the broker before the browser hears 202

    @app.agent(rt.beacons, name="aggregate")
    async def aggregate(stream):
        async for events in stream.take_events(settings.batch_max, within=settings.batch_within_s):
            by_partition: dict[int, list] = defaultdict(list)
            for e in events:
                by_partition[e.message.partition].append(e)
            async with stage1.lock:
                for p, evs in by_partition.items():
                    await stage1.process(p, evs)

    @app.agent(rt.windows, name="judge")
    async def judge(stream):
        async for event in stream.events():
            message = event.message
            try:
                record = WindowsRecord.from_dict(orjson.loads(message.value))
            except (orjson.JSONDecodeError, ValueError, KeyError, TypeError) as exc:
                log.warning("rum.windows %d@%d: not a windows record (%s), ignored",
                            message.partition, message.offset, exc)
                continue
            async with stage2.lock:
                j = stage2.judge(message.partition)
                before = j.late_summaries
                verdicts = j.add(record)
                rt.stats["late_summaries"] += j.late_summaries - before
                backend.metrics.late_summaries.inc(j.late_summaries - before)
                await stage2.publish(verdicts)

    @app.timer(1.0)
    async def heartbeat():
        await stage1.heartbeat()

    @app.task
    async def follow_control_topics():
        """Every worker reads all of rum.rollouts, rum.overrides and rum.verdicts.latest (all
        small), from the start, for as long as it runs: any worker can answer the API."""
        await stage2.load_published()
        consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False,
                                    auto_offset_reset="earliest", group_id=None)
        await consumer.start()
        t = settings.topics
        tps = [TopicPartition(t.rollouts, 0), TopicPartition(t.overrides, 0), TopicPartition(t.verdicts_latest, 0)]
        try:
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            while True:
                batch = await consumer.getmany(*tps, timeout_ms=500)
                for tp in tps:
                    for record in batch.get(tp, ()):
                        try:
                            await _control(tp.topic, record)
                        except Exception as exc:  # noqa: BLE001 - a bad record must not stop the worker
                            log.warning("%s offset %d: refused (%s)", tp.topic, record.offset, exc)
        finally:
            await consumer.stop()

    async def _control(topic: str, record) -> None:
        t = settings.topics
        if topic == t.rollouts:
            rollout = Rollout.from_dict(orjson.loads(record.value))
            backend.rollouts[rollout.id] = rollout
            log.info("rollout %s: canary %s vs baseline %s, policy %s%s", rollout.id, rollout.canary,
                     rollout.baseline, rollout.policy.name, " (ended)" if rollout.ended_at else "")
            await stage2.on_rollout(rollout)
        elif topic == t.overrides:
            override = Override(**orjson.loads(record.value))
            known = backend.overrides.setdefault(override.rollout, [])
            if override not in known:
                known.append(override)
            log.info("override on %s by %s: %s (%s)", override.rollout, override.actor, override.action,
                     override.reason)
            await stage2.on_override(override)
        else:
            v = orjson.loads(record.value)
            key = record.key.decode() if record.key else v["rollout"]
            if v.get("seq", 0) >= (backend.latest.get(key) or {}).get("seq", 0):
                backend.latest[key] = v

    @app.task
    async def deliver_webhooks():
        await notifier.run()

    @app.task
    async def serve_http():
        address = settings.http_address
        if address is None:
            return
        api = make_api(backend, settings.api_token, settings.api_read_open)
        add_ingest_routes(api, Ingestor(ingest_config(settings), ingest_sink))
        runner = web.AppRunner(api, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, *address)
        await site.start()
        if not quiet:
            print(f"rumgate worker: HTTP API at http://{address[0]}:{address[1]}/v1/rollouts", flush=True)

    @app.timer(5.0)
    async def measure_lag():
        consumer = app.consumer
        for tp in consumer.assignment():
            if tp.topic != settings.topics.beacons:
                continue
            try:
                high = consumer.highwater(tp)
                position = await consumer.position(tp)
            except Exception:  # noqa: BLE001 - not fetched yet
                continue
            if high is not None and position is not None:
                backend.metrics.lag.labels(partition=str(tp.partition)).set(max(0, high - position))

    @app.on_partitions_revoked.connect
    async def on_revoked(sender, revoked, **kwargs):
        async with stage1.lock:
            stage1.revoke({tp.partition for tp in revoked if tp.topic == settings.topics.beacons})
        async with stage2.lock:
            for tp in revoked:
                if tp.topic == settings.topics.windows:
                    stage2.judges.pop(tp.partition, None)

    @app.on_partitions_assigned.connect
    async def on_assigned(sender, assigned, **kwargs):
        mine = sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned
                      if tp.topic in (settings.topics.beacons, settings.topics.windows))
        if not quiet:
            print(f"rumgate worker: partitions assigned: {', '.join(mine) or 'none'}", flush=True)
        # Faust has just sought every partition to its committed offset: rum.beacons to
        # where its checkpoint can take over, rum.windows (never committed) to its start,
        # which a fresh judge needs. Say so explicitly for rum.windows, whatever the client.
        judged = [tp for tp in assigned if tp.topic == settings.topics.windows]
        for tp in judged:
            await app.consumer.seek(tp, 0)
        async with stage2.lock:
            await stage2.load_published()
