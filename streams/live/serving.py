"""The worker's HTTP server: the API of :mod:`streams.http.api` and the beacon ingestion routes,
and the broker probe behind its ``/readyz``."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.http.backend import Backend

from streams.http.api import make_api
from streams.http.health import READINESS, not_ready
from streams.ingest.endpoint import Ingestor, add_ingest_routes, ingest_config
from streams.live.broker import broker_servers
from streams.live.runtime import Runtime

__all__ = ["ingest_sink", "releases_of", "serve_http", "watch_broker"]

log = logging.getLogger("rumgate")

#: How often ``/readyz`` has the broker probed, and how long one probe may take (a
#: Kubernetes probe's own timeout is 1 s by default: the answer never waits for the broker).
PROBE_EVERY_S = 2.0
PROBE_TIMEOUT_S = 3.0


def ingest_sink(rt: Runtime):
    """Where the ingestion routes put beacons: ``rum.beacons`` (or its dead-letter topic)."""
    beacons_topic = rt.settings.topics.beacons

    async def sink(topic: str, key: bytes, value: bytes, headers: list) -> None:
        target = rt.beacons if topic == beacons_topic else rt.dlq
        fut = await target.send(key=key, value=value, headers=headers or None)
        await fut  # acknowledged by the broker before the browser hears 202

    return sink


def releases_of(backend: Backend) -> Callable[[str], set[str] | None]:
    """``app -> the canary and baseline releases of its open rollouts``, None when it has none,
    read from the worker's backend on every call (rollouts open and close while it runs)."""

    def releases(app: str) -> set[str] | None:
        names = set()
        for rollout in backend.rollouts.values():
            if rollout.app == app and rollout.ended_at is None:
                names.update((rollout.canary, rollout.baseline))
        return names or None

    return releases


async def serve_http(rt: Runtime, quiet: bool = False) -> None:
    """Start the HTTP server when the settings give it an address (it runs with the app's loop)."""
    settings = rt.settings
    address = settings.http_address
    if address is None:
        return
    api = make_api(rt.backend, settings.api_token, settings.api_read_open, hook_token=settings.hook_token)
    api[READINESS] = rt.readiness
    ingestor = Ingestor(ingest_config(settings), ingest_sink(rt), releases_of=releases_of(rt.backend))
    add_ingest_routes(api, ingestor)
    rt.backend.metrics.watch_ingest(ingestor.counts)
    rt.backend.metrics.watch_readiness(lambda: not_ready(rt.backend, rt.readiness))
    runner = web.AppRunner(api, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, *address)
    await site.start()
    if not quiet:
        print(f"rumgate worker: HTTP API at http://{address[0]}:{address[1]}/v1/rollouts", flush=True)
    await watch_broker(rt)  # until the worker stops


async def watch_broker(rt: Runtime, every_s: float = PROBE_EVERY_S, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Probe the broker for ``/readyz`` until cancelled, with a client of its own: a metadata
    request (does the broker answer at all?) and the end offsets of the ``rum.windows``
    partitions the judge owns (how far it must read to have caught up, and its lag). Each
    outcome goes to :meth:`~streams.http.health.Readiness.probed`; a probe that gets no
    answer within ``timeout_s`` is a failure, and its client is replaced."""
    readiness, topic = rt.readiness, rt.settings.topics.windows
    servers = broker_servers(rt.settings.broker or "")
    consumer: AIOKafkaConsumer | None = None
    try:
        while True:
            started = time.monotonic()
            try:
                if consumer is None:
                    consumer = AIOKafkaConsumer(bootstrap_servers=servers, group_id=None, enable_auto_commit=False,
                                                request_timeout_ms=int(timeout_s * 1000))
                    await asyncio.wait_for(consumer.start(), timeout_s)
                await asyncio.wait_for(consumer.topics(), timeout_s)
                mine = [TopicPartition(topic, p) for p in sorted(readiness.targets)]
                ends = await asyncio.wait_for(consumer.end_offsets(mine), timeout_s) if mine else {}
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - whatever it is, the broker did not answer
                text = f"{type(exc).__name__}: {exc}".strip(": ")
                if isinstance(exc, asyncio.TimeoutError):
                    text = f"no answer within {timeout_s:g} s"
                if readiness.probe_error is None:
                    log.warning("broker probe failed (%s): /readyz is 503", text)
                readiness.probed(text[:300], started)
                stale, consumer = consumer, None
                if stale is not None:
                    await _stop_quietly(stale, timeout_s)
            else:
                if readiness.probe_error is not None:
                    log.info("broker answers again")
                readiness.probed(None, started)
                readiness.ends({tp.partition: offset for tp, offset in ends.items()})
            await asyncio.sleep(every_s)
    finally:
        if consumer is not None:
            await _stop_quietly(consumer, timeout_s)


async def _stop_quietly(consumer: AIOKafkaConsumer, timeout_s: float) -> None:
    try:
        await asyncio.wait_for(consumer.stop(), timeout_s)
    except Exception:  # noqa: BLE001 - a client being dropped: nothing to do about it
        pass
