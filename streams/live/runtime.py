"""What the worker's agents share: the app, its topics, the two stages' state, the counters.

A :class:`Runtime` is complete once built: its HTTP :class:`~streams.http.api.Backend`, its
webhook :class:`~streams.http.webhooks.Notifier` and both stages exist from the start, so
the agents (:mod:`streams.live.agents`) only drive them.

* :class:`Stage1` holds one :class:`~detectors.pipeline.aggregate.PartitionAggregator` per
  ``rum.beacons`` partition and the events it has not acknowledged yet. A record's offset is
  acknowledged only once every window it touched is on ``rum.windows`` *and* the
  partition's checkpoint (on the compacted ``rum.checkpoints``) says where to resume.
* :class:`Stage2` holds one :class:`~detectors.pipeline.judge.Judge` per ``rum.windows``
  partition, the rollouts and overrides, and what was published on ``rum.verdicts``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field

import faust
import orjson
from faust.types import TP

from detectors.override import Override
from detectors.pipeline.aggregate import Checkpoint, DeadLetter, PartitionAggregator, Step, windows_records
from detectors.pipeline.judge import Judge, ended_by
from detectors.policy import DEFAULT_POLICY
from detectors.rollout import Rollout, RolloutError
from detectors.verdict import Verdict, latest_by_key
from detectors.windows import RolloutReleases, WindowSummary
from streams.http.backend import Backend
from streams.http.health import Readiness
from streams.http.webhooks import Notifier
from streams.ingest.endpoint import json_arrays
from streams.live.broker import broker_servers
from streams.live.settings import Settings
from streams.live.topics import read_range, read_to_end, windows_partition_for

__all__ = ["Runtime", "Stage1", "Stage2", "dead_letter_records", "now_ms"]

log = logging.getLogger("rumgate")


def _stats() -> dict[str, int]:
    return {"beacons": 0, "records": 0, "dead_letters": 0, "windows": 0, "verdicts": 0, "late_summaries": 0}


@dataclass(eq=False)
class Runtime:
    """The app, its topics, and the state the agents share (built complete, nothing started)."""

    settings: Settings
    app: faust.App
    beacons: faust.TopicT
    dlq: faust.TopicT
    windows: faust.TopicT
    verdicts: faust.TopicT
    verdicts_latest: faust.TopicT
    checkpoints: faust.TopicT  # compacted; see Stage1
    rollouts: faust.TopicT
    overrides: faust.TopicT
    sources: int  # partitions of rum.beacons, which every window waits for
    stats: dict[str, int] = field(default_factory=_stats)
    backend: Backend = field(init=False)  # what the HTTP API serves
    readiness: Readiness = field(init=False)  # what /readyz knows of the broker and the judge
    notifier: Notifier = field(init=False)  # webhooks on a verdict change
    stage1: Stage1 = field(init=False)
    stage2: Stage2 = field(init=False)

    def __post_init__(self) -> None:
        self.backend = Backend()
        self.readiness = Readiness()
        self.notifier = Notifier(self.settings.webhook_urls.split(","), self.settings.webhook_secret,
                                 on_give_up=self.backend.metrics.webhook_failures.inc)
        self.stage1 = Stage1(self)
        self.stage2 = Stage2(self, self.notifier)
        failing = self.backend.failing
        self.backend.metrics.stage1_failing.set_function(lambda: len(failing))
        aggs = self.stage1.aggs
        self.backend.metrics.views_forgotten_early.set_function(
            lambda: sum(a.windows.views.evicted_early for a in list(aggs.values()) if a.windows.views is not None))
        self._count_agent_crashes()
        self._feed_readiness()

    def _feed_readiness(self) -> None:
        """Tell :attr:`readiness` (``/readyz``) every send's outcome and every ``rum.windows``
        record the judge has finished (a Faust sensor), and each assignment of ``rum.windows``
        partitions (which the judge then re-reads from the start). The broker itself is
        probed by :func:`streams.live.serving.watch_broker`."""
        readiness, windows = self.readiness, self.settings.topics.windows
        self.app.sensors.add(_ReadinessSensor(self.app, readiness, windows))

        @self.app.on_partitions_assigned.connect
        async def judge_reads_again(sender, assigned, **kwargs):
            readiness.assigned(tp.partition for tp in assigned if tp.topic == windows)

    def _count_agent_crashes(self) -> None:
        """Count each exception that ends an agent's run in ``rumgate_agent_crashes``.

        Faust hands every agent the app's ``_on_agent_error`` when the agent is declared
        (before its supervisor restarts it on the same stream) and offers no other hook, so
        this app's handler is wrapped here, before :mod:`streams.live.agents` declares them.
        """
        faust_handler = self.app._on_agent_error  # noqa: SLF001 - the hook Faust gives agents
        crashes = self.backend.metrics.agent_crashes

        async def on_agent_error(agent, exc: BaseException) -> None:
            crashes.labels(agent=getattr(agent, "name", "?")).inc()
            log.error("agent %s crashed (%s: %s); Faust restarts it", getattr(agent, "name", "?"),
                      type(exc).__name__, exc)
            await faust_handler(agent, exc)

        self.app._on_agent_error = on_agent_error  # noqa: SLF001


class _ReadinessSensor(faust.Sensor):
    """Faust's hooks for :class:`~streams.http.health.Readiness`: sends acknowledged or
    failed (every topic's, the ingestion endpoint's too), and ``rum.windows`` records the
    judge's stream has finished (events of an earlier generation, which Faust skips after a
    rebalance, do not count)."""

    def __init__(self, app: faust.App, readiness: Readiness, windows_topic: str) -> None:
        super().__init__()
        self._app, self.readiness, self.windows_topic = app, readiness, windows_topic

    def on_send_completed(self, producer, state, metadata) -> None:
        self.readiness.sent(None)

    def on_send_error(self, producer, exc: BaseException, state) -> None:
        self.readiness.sent(f"{type(exc).__name__}: {exc}"[:300])

    def on_stream_event_out(self, tp: TP, offset: int, stream, event, state=None) -> None:
        if tp.topic == self.windows_topic and event.message.generation_id == self._app.consumer_generation_id:
            self.readiness.judged(tp.partition, offset)


def now_ms() -> int:
    return int(time.time() * 1000)


#: Bytes a dead-letter record's value may take, as the ingestion endpoint's records (Kafka
#: refuses 1 MB by default); a source record's refused items beyond it take several records.
DLQ_RECORD_BYTES = 512 * 1024


def dead_letter_records(p: int, rejects: list[DeadLetter],
                        max_bytes: int = DLQ_RECORD_BYTES) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    """``(key, value, headers)`` of the ``rum.beacons.dlq`` records for a batch's refused
    items: one per source record (more only past ``max_bytes``), so a flood of cohort-cap
    refusals in one record is one produce, not thousands, as at the ingestion endpoint.

    Records go in offset order; the value is a JSON array of ``{"item", "reason", "raw",
    "encoding"}`` in the record's order: ``item`` is the item's place in its record
    (``null``: the whole record), ``raw`` its bytes, as text when ``encoding`` is
    ``"utf-8"``, as base64 when it is ``"base64"`` (bytes that are not UTF-8). The ingestion
    endpoint's members hold the item itself as ``item``, having no record to point into. Headers: ``rumgate-reason`` (how many items and
    the first reason), ``rumgate-items``, ``rumgate-source`` (``stage1``), and the source's
    ``rumgate-partition`` and ``rumgate-offset``; the key is ``partition:offset``.

    >>> [(k, orjson.loads(v), dict(h)["rumgate-reason"]) for k, v, h in dead_letter_records(
    ...     0, [DeadLetter(7, 1, b'{"ts":"x"}', "ts: bad"), DeadLetter(7, 2, b"\\xff", "not JSON")])]
    ... # doctest: +NORMALIZE_WHITESPACE
    [(b'0:7', [{'item': 1, 'reason': 'ts: bad', 'raw': '{"ts":"x"}', 'encoding': 'utf-8'},
               {'item': 2, 'reason': 'not JSON', 'raw': '/w==', 'encoding': 'base64'}],
      b'2 items rejected at stage 1, the first: ts: bad')]
    """
    by_offset: dict[int, list[DeadLetter]] = {}
    for dead in rejects:
        by_offset.setdefault(dead.offset, []).append(dead)
    out = []
    for offset, items in sorted(by_offset.items()):
        items.sort(key=lambda d: -1 if d.item is None else d.item)  # invalid and refused items interleave
        counted = f"{len(items)} item{'s' if len(items) > 1 else ''}"
        headers = [("rumgate-reason", f"{counted} rejected at stage 1, the first: {items[0].reason}"[:400].encode()),
                   ("rumgate-items", str(len(items)).encode()), ("rumgate-source", b"stage1"),
                   ("rumgate-partition", str(p).encode()), ("rumgate-offset", str(offset).encode())]
        for value in json_arrays([_dead_member(d) for d in items], max_bytes):
            out.append((f"{p}:{offset}".encode(), value, headers))
    return out


def _forget(sends) -> None:
    """Sends whose outcome no longer matters (their partition is re-read or gone): their
    failures are retrieved, not logged by asyncio as never retrieved, one line per record."""
    for future in sends:
        future.add_done_callback(_retrieve)


def _retrieve(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()


def _dead_member(dead: DeadLetter) -> bytes:
    try:
        raw, encoding = dead.raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        raw, encoding = base64.b64encode(dead.raw).decode("ascii"), "base64"
    return orjson.dumps({"item": dead.item, "reason": dead.reason, "raw": raw, "encoding": encoding})


class Stage1:
    """Per-partition aggregators and the events they still hold unacknowledged."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.aggs: dict[int, PartitionAggregator] = {}
        self.held: dict[int, deque] = defaultdict(deque)  # events not yet safe to commit
        self.last_record_at: dict[int, float] = {}
        self.reported: dict[int, int | None] = {}  # closed_before last sent, per partition
        self.assigned: set[int] = set()
        self.saved: dict[int, Checkpoint] | None = None  # read from rum.checkpoints on assignment
        self.resume_at: dict[int, int] = {}  # rebuilt after a failed send: events before this offset are stale
        self.failures: dict[int, int] = {}  # failed sends in a row, per partition (the backoff)
        self.unconfirmed: dict[int, list] = defaultdict(list)  # sends whose delivery is not yet confirmed
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
            agg = self.aggs[p] = PartitionAggregator(
                p, s.window_ms, s.lateness_ms, checkpoint, max_cohorts=s.max_cohorts_per_window,
                max_views_per_session=s.max_views_per_session, protected_releases=RolloutReleases(self.rt.stage2.rollouts),
                view_horizon_ms=round(s.view_horizon_s * 1000), view_slots=s.view_slots)
            if checkpoint:
                log.info("partition %d: resuming at offset %d (watermark %s)", p, checkpoint.offset,
                         checkpoint.watermark)
                try:
                    await self._read_back(p, agg, checkpoint)
                except BaseException:
                    del self.aggs[p]  # half read: the next batch starts it again
                    raise
        return agg

    async def _read_back(self, p: int, agg: PartitionAggregator, checkpoint: Checkpoint) -> None:
        """Read the records from the checkpoint's ``views_from`` to its offset, which the
        aggregator takes for the page views they began and counts nothing of, so that those
        page views' later beacons join them rather than count again. With a reader of its
        own: the worker's consumer goes on from the checkpoint as ever. (Raises when the
        broker cannot be read: the caller rebuilds, as for an unread checkpoint.)"""
        if checkpoint.read_from >= checkpoint.offset:
            return
        log.info("partition %d: reading offsets %d to %d for the page views begun before the checkpoint",
                 p, checkpoint.read_from, checkpoint.offset)
        servers = broker_servers(self.rt.settings.broker or "")
        async for records in read_range(servers, self.rt.settings.topics.beacons, p, checkpoint.read_from,
                                        checkpoint.offset):
            agg.process([(r.offset, r.value) for r in records])

    def revoke(self, partitions: set[int]) -> None:
        self.saved = None  # another worker may move them on: read again on the next assignment
        for p in partitions:
            self.aggs.pop(p, None)
            self.held.pop(p, None)  # never acked: the next owner re-reads them
            self.last_record_at.pop(p, None)
            self.reported.pop(p, None)
            self.resume_at.pop(p, None)
            self.failures.pop(p, None)
            _forget(self.unconfirmed.pop(p, ()))
            self.rt.backend.failing.pop(p, None)
        self.assigned -= partitions

    async def process(self, p: int, events: list) -> None:
        for e in events:
            e.message.incref()  # keep the offset uncommitted until its windows are out
        events = self._fresh(p, events)
        if not events:
            return
        self.held[p].extend(events)
        try:
            agg = await self.aggregator(p)
        except Exception as exc:  # noqa: BLE001 - its checkpoint unread (the broker away): nothing counted yet
            await self.rebuild(p, exc, "checkpoint read failed")
            return
        step = agg.process([(e.message.offset, e.message.value) for e in events])
        self.rt.stats["beacons"] += step.beacons
        self.rt.stats["records"] += len(events)
        self.rt.backend.metrics.beacons.inc(step.beacons)
        self.rt.backend.metrics.records.inc(len(events))
        self.last_record_at[p] = time.monotonic()
        await self.publish(p, agg, step)

    def _fresh(self, p: int, events: list) -> list:
        """The events to count. After a rebuild, the stream may still hold events fetched
        before the seek: their offsets go on rising past what was delivered, where the
        re-read starts again at the checkpoint, below. Those are skipped (never acked) until
        the re-read begins."""
        last = self.resume_at.get(p)
        if last is None:
            return events
        for i, e in enumerate(events):
            if e.message.offset <= last:
                del self.resume_at[p]
                return events[i:]
            last = e.message.offset
        self.resume_at[p] = last
        return []

    async def publish(self, p: int, agg: PartitionAggregator, step: Step, idle: bool = False) -> None:
        """Send what ``step`` produced; a failed send rebuilds the partition from its
        checkpoint (:meth:`rebuild`) instead of letting the aggregator move past windows that
        never reached ``rum.windows``."""
        try:
            await self._send(p, agg, step, idle)
        except Exception as exc:  # noqa: BLE001 - any failed send: the partition's state is not on the topics
            await self.rebuild(p, exc)
            return
        self.rt.backend.metrics.capped.inc(sum(s.capped for s in step.closed))
        if self.failures.pop(p, None) is not None:
            self.rt.backend.failing.pop(p, None)
            log.info("partition %d: sends succeed again", p)

    async def rebuild(self, p: int, exc: BaseException, failed: str = "send failed") -> None:
        """After a failed send on ``p`` (or a checkpoint it could not read): drop its
        aggregator and unacknowledged events (as :meth:`revoke` does), wait a backoff, and seek
        the consumer back to the last checkpoint, so the records from there are counted again
        into windows that go out whole. Until then the partition is failing: ``/readyz`` says
        so, and nothing past the checkpoint is acknowledged."""
        rt = self.rt
        n = self.failures[p] = self.failures.get(p, 0) + 1
        reason = f"partition {p}: stage-1 {failed} ({type(exc).__name__}: {exc})"[:300]
        rt.backend.failing[p] = reason
        rt.backend.metrics.stage1_send_failures.inc()
        log.warning("%s; rebuilding from its checkpoint (attempt %d)", reason, n)
        agg = self.aggs.pop(p, None)
        held = self.held.pop(p, None)
        self.reported.pop(p, None)
        _forget(self.unconfirmed.pop(p, ()))
        seen = [o for o in (agg.last_offset if agg else None, held[-1].message.offset if held else None)
                if o is not None]
        await asyncio.sleep(self._backoff(n))
        await self._read_checkpoints(p)
        checkpoint = self.saved.get(p)
        if not seen:
            return  # this aggregator had read nothing yet: the consumer is where it starts
        self.resume_at[p] = max(seen)
        offset = checkpoint.offset if checkpoint is not None else 0
        await rt.app.consumer.seek(TP(rt.settings.topics.beacons, p), offset)

    def _backoff(self, attempt: int) -> float:
        s = self.rt.settings
        return min(s.stage1_retry_s * 2 ** (attempt - 1), s.stage1_retry_max_s)

    async def _read_checkpoints(self, p: int) -> None:
        """Read the checkpoints if they are not at hand, retrying until the broker answers.

        The seek back needs them; an exception out of :meth:`rebuild` instead would end the
        agent's run with the partition's state and unacknowledged records dropped and no
        seek made, so Faust's restarted agent would count on from past them."""
        attempt = 0
        while self.saved is None:
            try:
                await self.load_checkpoints()
            except Exception as exc:  # noqa: BLE001 - the broker unreachable: wait, as for a failed send
                attempt += 1
                log.warning("partition %d: rum.checkpoints unreadable (%s: %s); retrying", p, type(exc).__name__, exc)
                await asyncio.sleep(self._backoff(attempt))

    async def _send(self, p: int, agg: PartitionAggregator, step: Step, idle: bool) -> None:
        rt = self.rt
        self._settled(p)
        for key, value, headers in dead_letter_records(p, step.rejects):
            self.unconfirmed[p].append(await rt.dlq.send(key=key, value=value, partition=p, headers=headers))
        rt.stats["dead_letters"] += len(step.rejects)
        rt.backend.metrics.count_dead_letters(d.reason for d in step.rejects)
        # Progress matters even without summaries (a window this partition had no beacons in).
        if step.closed or idle or agg.closed_before != self.reported.get(p):
            await self.send_windows(p, agg.closed_before, idle, step)
            self.reported[p] = agg.closed_before
        if step.done_offset is not None:
            await rt.app.producer.flush()  # windows first, then the checkpoint that relies on them
            await self._confirm(p)
            self.unconfirmed[p].append(
                await rt.checkpoints.send(key=str(p).encode(), value=orjson.dumps(step.checkpoint.to_dict())))
            await rt.app.producer.flush()
            await self._confirm(p)
            if self.saved is not None:
                self.saved[p] = step.checkpoint
            held = self.held[p]
            while held and held[0].message.offset < step.done_offset:
                held.popleft().ack()

    def _settled(self, p: int) -> None:
        """Drop the sends of ``p`` the broker has answered, raising the first it refused.

        An idle partition sends its progress every few seconds and never reaches a
        checkpoint's :meth:`_confirm`: without this its sends would pile up unanswered for
        as long as it stays idle, and a refused one would go unnoticed."""
        sends = self.unconfirmed[p]
        for future in sends:
            if future.done() and not future.cancelled() and future.exception() is not None:
                raise future.exception()  # the rebuild forgets the others
        self.unconfirmed[p] = [f for f in sends if not f.done()]

    async def _confirm(self, p: int) -> None:
        """Wait for the broker's answer to every send of ``p`` so far: a record it refused
        raises here (as a failed send), before a checkpoint or an ack relies on it."""
        pending, self.unconfirmed[p] = self.unconfirmed[p], []
        for answer in await asyncio.gather(*pending, return_exceptions=True):  # every answer read
            if isinstance(answer, BaseException):
                raise answer

    async def send_windows(self, p: int, closed_before: int | None, idle: bool, step: Step) -> None:
        """What the partition closed, to each ``rum.windows`` partition its apps are routed to,
        as :func:`~detectors.pipeline.aggregate.windows_records` makes it (the offline
        driver hands the judge the same records)."""
        rt = self.rt
        n = rt.settings.windows_partitions
        by_target: dict[int, list[WindowSummary]] = defaultdict(list)
        for s in step.closed:
            by_target[windows_partition_for(s.key.app, n)].append(s)
        for target in range(n):
            for record in windows_records(p, closed_before, by_target.get(target, ()), idle,
                                          rt.settings.windows_record_bytes):
                self.unconfirmed[p].append(await rt.windows.send(
                    key=str(p).encode(), value=orjson.dumps(record.to_dict()), partition=target))
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
                try:
                    agg = await self.aggregator(p)
                except Exception as exc:  # noqa: BLE001 - nothing held: the next beat tries again
                    log.warning("partition %d: rum.checkpoints unreadable (%s: %s)", p, type(exc).__name__, exc)
                    continue
                await self.publish(p, agg, Step(), idle=True)
                self.last_record_at[p] = now - idle_after / 2  # again in half the idle time


class Stage2:
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
        found: list[tuple[str, dict]] = []
        async for batch in read_to_end(servers, self.rt.settings.topics.verdicts_latest):
            for record in batch:
                try:
                    v = orjson.loads(record.value)
                    found.append((record.key.decode() if record.key else v["rollout"], v))
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, UnicodeDecodeError):
                    log.warning("rum.verdicts.latest offset %d: not a verdict, ignored", record.offset)
        for key, v in latest_by_key(found).items():
            if "verdict" in v and v["seq"] >= self.published.get(key, 0):
                self.published[key] = v["seq"]
                self.last_kind[key] = v["verdict"]

    def judge(self, partition: int) -> Judge:
        judge = self.judges.get(partition)
        if judge is None:
            judge = self.judges[partition] = Judge(self.rt.sources,
                                                    max_history_bytes=self.rt.settings.judge_history_mb << 20,
                                                    auto_rollout_apps=self.rt.settings.auto_rollout)
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
                await self.end_if_decided(v)  # the crash may have come between the verdict and the end
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
            await self.end_if_decided(v)

    async def start_new_releases(self, judge: Judge) -> None:
        """Start a rollout for each new release the judge saw in an app that opted in
        (``RUMGATE_AUTO_ROLLOUT_APPS``), against the release with most of its page views,
        from the window it first appeared in (so the gate sees its whole start). None while
        the app has a running rollout: a rollout someone registered is never ended by what
        beacons name, which anyone who can post beacons could invent."""
        found, judge.new_releases = judge.new_releases, []
        for new in found:
            rid = f"{new.app}:{new.release}"
            if rid in self.rollouts or any(r.app == new.app and r.ended_at is None for r in self.rollouts.values()):
                continue
            try:
                rollout = Rollout(rid, new.app, new.release, new.baseline, new.first_seen, DEFAULT_POLICY)
            except RolloutError as exc:  # a release name no rollout can carry
                log.warning("new release of %r not started: %r", new.app, str(exc))
                continue
            await self.rt.rollouts.send(key=rid.encode(), value=orjson.dumps(rollout.to_dict()))
            self.rollouts[rid] = self.rt.backend.rollouts[rid] = rollout
            log.info("rollout %s started: a new release of %s, against %s (most page views)", rid, new.app,
                     new.baseline)
            await self.publish(judge.apply_rollout(rollout))

    async def end_if_decided(self, v: Verdict) -> None:
        """Record on ``rum.rollouts`` the end that a decided verdict gives its rollout
        (:func:`detectors.pipeline.judge.ended_by`, which the judge applied already), so
        every worker, the API and ``rollout status`` see it ended."""
        rollout = self.rollouts.get(v.rollout)
        ended = None if rollout is None else ended_by(rollout, v)
        if ended is None:
            return
        await self.rt.rollouts.send(key=ended.id.encode(), value=orjson.dumps(ended.to_dict()))
        self.rollouts[ended.id] = self.rt.backend.rollouts[ended.id] = ended
        log.info("rollout %s ended: %s", ended.id, ended.end_reason)
