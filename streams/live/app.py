"""The Faust app: topics and the worker's shared state.

:func:`create_app` builds a :class:`faust.App` for some :class:`Settings`, declares the
topics, and registers the agents of :mod:`streams.live.agents`. Building the
app does not touch the network; ``rumgate worker`` creates the topics first and then
runs it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from streams.live.broker import broker_servers
from streams.live.settings import Settings
from streams.live.topics import WINDOWS_MAX_BYTES

__all__ = ["Runtime", "create_app"]

log = logging.getLogger("rumgate")


@dataclass
class Runtime:
    """What the agents share: the app, its topics, and counters for the logs."""

    settings: Settings
    app: faust.App
    beacons: faust.TopicT
    dlq: faust.TopicT
    windows: faust.TopicT
    verdicts: faust.TopicT
    verdicts_latest: faust.TopicT
    checkpoints: faust.TopicT  # compacted; see streams.live.agents
    rollouts: faust.TopicT
    overrides: faust.TopicT
    sources: int  # partitions of rum.beacons, which every window waits for
    backend: Any = None  # streams.http.api.Backend: what the HTTP API serves
    stage1: Any = None  # streams.live.agents._Stage1, set by register()
    stage2: Any = None  # streams.live.agents._Stage2
    stats: dict[str, int] = field(default_factory=lambda: {
        "beacons": 0, "records": 0, "dead_letters": 0, "windows": 0, "verdicts": 0, "late_summaries": 0})


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer with a short fetch wait.

    Faust hard-codes ``fetch_max_wait_ms=1500``; a broker that answers a fetch only when the
    wait runs out (the embedded one does, under steady traffic) then delays every window's
    verdict by up to that, twice (rum.beacons, then rum.windows). Faust has no setting for
    it, so this thread sets aiokafka's value before the consumer starts.
    """

    fetch_max_wait_ms = 100

    def _create_worker_consumer(self, transport):
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = self.fetch_max_wait_ms  # read by aiokafka at start()
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


def create_app(settings: Settings, sources: int | None = None, *, quiet: bool = False) -> Runtime:
    """The Faust app of a rumgate worker (agents registered, nothing started).

    ``sources`` is the real partition count of ``rum.beacons`` when it is known (an existing
    topic's count wins over the setting).
    """
    sources = sources or settings.beacons_partitions
    t = settings.topics
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{broker_servers(settings.broker or '')}",
        store="memory://",
        web_enabled=False,
        autodiscover=False,
        topic_partitions=sources,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        broker_rebalance_timeout=settings.rebalance_timeout_s,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=min(1.0, settings.session_timeout_s / 4),
        broker_commit_every=1000,
        broker_commit_interval=1.0,
        stream_wait_empty=False,
        producer_linger_ms=5,
        loghandlers=[],
        producer_max_request_size=WINDOWS_MAX_BYTES,  # a window summary can outgrow 1 MB
    )
    _ConsumerThread.fetch_max_wait_ms = settings.fetch_max_wait_ms
    faust_aiokafka.Transport.Consumer = _Consumer
    raw = {"value_type": bytes, "value_serializer": "raw", "key_serializer": "raw"}
    runtime = Runtime(
        settings=settings,
        app=app,
        beacons=app.topic(t.beacons, partitions=sources, **raw),
        dlq=app.topic(t.dlq, partitions=sources, **raw),
        # Never committed: a judge rebuilds its state by reading its partition from the start.
        windows=app.topic(t.windows, partitions=settings.windows_partitions, acks=False, **raw),
        verdicts=app.topic(t.verdicts, partitions=1, **raw),
        verdicts_latest=app.topic(t.verdicts_latest, partitions=1, **raw),
        checkpoints=app.topic(t.checkpoints, partitions=1, **raw),
        rollouts=app.topic(t.rollouts, partitions=1, **raw),
        overrides=app.topic(t.overrides, partitions=1, **raw),
        sources=sources,
    )
    from streams.live.agents import register

    register(runtime, quiet=quiet)
    return runtime
