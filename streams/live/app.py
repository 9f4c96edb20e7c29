"""The Faust app of a rumgate worker, and the factory that composes a worker.

:func:`build_app` builds the :class:`faust.App` (with its consumer's short fetch wait) and
:func:`declare_topics` its topics; :func:`create_app` puts them in a
:class:`~streams.live.runtime.Runtime` and registers the agents of
:mod:`streams.live.agents` on it. Building the app does not touch the network;
``rumgate worker`` creates the topics first and then runs it.
"""

from __future__ import annotations

import logging
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from streams.live.agents import register
from streams.live.broker import broker_servers
from streams.live.runtime import Runtime
from streams.live.settings import Settings
from streams.live.topics import WINDOWS_MAX_BYTES

__all__ = ["Runtime", "RumgateApp", "build_app", "declare_topics", "create_app"]

log = logging.getLogger("rumgate")


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread, with the fetch wait of the app's transport.

    Faust hard-codes ``fetch_max_wait_ms=1500``; a broker that answers a fetch only when the
    wait runs out (the embedded one does, under steady traffic) then delays every window's
    verdict by up to that, twice (rum.beacons, then rum.windows). Faust has no setting for
    it, so this thread sets aiokafka's value before the consumer starts.
    """

    def _create_worker_consumer(self, transport):
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = transport.fetch_max_wait_ms  # read by aiokafka at start()
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with :class:`_Consumer`; used only by a :class:`RumgateApp`."""

    Consumer = _Consumer

    def __init__(self, url, app, loop=None, *, fetch_max_wait_ms: int) -> None:
        super().__init__(url, app, loop=loop)
        self.fetch_max_wait_ms = fetch_max_wait_ms


class RumgateApp(faust.App):
    """A :class:`faust.App` whose consumer waits at most ``fetch_max_wait_ms`` for a fetch.

    Only this app's consumer transport changes (Faust's own classes are left alone, so other
    apps in the process keep Faust's defaults).
    """

    def __init__(self, *args: Any, fetch_max_wait_ms: int, **kwargs: Any) -> None:
        self.fetch_max_wait_ms = fetch_max_wait_ms  # before Faust's __init__ might build the transport
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> _Transport:
        return _Transport(self.conf.broker_consumer, self, fetch_max_wait_ms=self.fetch_max_wait_ms)


def build_app(settings: Settings, sources: int) -> RumgateApp:
    """The worker's :class:`faust.App` (no agents, no topics)."""
    return RumgateApp(
        settings.app_id,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
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
        producer_request_timeout=settings.producer_request_timeout_s,  # a stalled broker: 503s, not 20 min
        loghandlers=[],
        producer_max_request_size=WINDOWS_MAX_BYTES,  # a window summary can outgrow 1 MB
    )


def declare_topics(app: faust.App, settings: Settings, sources: int) -> dict[str, faust.TopicT]:
    """The worker's topics on ``app``, by :class:`Runtime` field name (raw bytes throughout)."""
    t = settings.topics
    raw = {"value_type": bytes, "value_serializer": "raw", "key_serializer": "raw"}
    return {
        "beacons": app.topic(t.beacons, partitions=sources, **raw),
        "dlq": app.topic(t.dlq, partitions=sources, **raw),
        # Never committed: a judge rebuilds its state by reading its partition from the start.
        "windows": app.topic(t.windows, partitions=settings.windows_partitions, acks=False, **raw),
        "verdicts": app.topic(t.verdicts, partitions=1, **raw),
        "verdicts_latest": app.topic(t.verdicts_latest, partitions=1, **raw),
        "checkpoints": app.topic(t.checkpoints, partitions=1, **raw),
        "rollouts": app.topic(t.rollouts, partitions=1, **raw),
        "overrides": app.topic(t.overrides, partitions=1, **raw),
    }


def create_app(settings: Settings, sources: int | None = None, *, quiet: bool = False) -> Runtime:
    """The Faust app of a rumgate worker (agents registered, nothing started).

    ``sources`` is the real partition count of ``rum.beacons`` when it is known (an existing
    topic's count wins over the setting).
    """
    sources = sources or settings.beacons_partitions
    app = build_app(settings, sources)
    runtime = Runtime(settings=settings, app=app, sources=sources, **declare_topics(app, settings, sources))
    register(runtime, quiet=quiet)
    return runtime
