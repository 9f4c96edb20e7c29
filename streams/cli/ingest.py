"""``rumgate ingest``: the beacon endpoint alone, for gateways scaled apart from the workers."""

from __future__ import annotations

import asyncio
import gc

import click
from aiohttp import web
from aiokafka import AIOKafkaProducer

from streams.cli.common import broker_option, settings_from
from streams.ingest.endpoint import Ingestor, add_ingest_routes, ingest_application, ingest_config
from streams.http.metrics import Metrics
from streams.live.broker import BrokerError, broker_servers
from streams.live.topics import ensure_topics

__all__ = ["ingest_command", "serve_ingest", "settle_gc"]


async def serve_ingest(settings, ready: asyncio.Event | None = None, tune_gc: bool = False) -> None:
    """Serve ``/v1/beacons`` (and ``/healthz``, ``/metrics``) on ``settings.http`` until cancelled.

    ``tune_gc``: the process is this server alone (``rumgate ingest``); see :func:`settle_gc`.
    """
    await ensure_topics(settings)
    # linger 0: the Ingestor already lingers to batch beacons into records; a second linger
    # here only added latency (and at 256 connections cut throughput by a fifth)
    producer = AIOKafkaProducer(bootstrap_servers=broker_servers(settings.broker), linger_ms=0,
                                max_batch_size=1 << 20)
    await producer.start()

    async def sink(topic: str, key: bytes, value: bytes, headers: list) -> None:
        fut = await producer.send(topic, value, key=key, headers=headers or None)
        await fut

    ingestor = Ingestor(ingest_config(settings), sink)
    # bodies as sent (auto_decompress off): the endpoint inflates them itself, within its limit
    app = ingest_application()
    add_ingest_routes(app, ingestor)

    async def healthz(request: web.Request) -> web.Response:
        # dedupe_evicted_early > 0: ids forgotten before their TTL (RUMGATE_INGEST_DEDUPE_SLOTS too small)
        return web.json_response({"status": "ok", **ingestor.counts,
                                  "dedupe_evicted_early": ingestor.dedupe.evicted_early})

    metrics = Metrics()
    metrics.watch_ingest(ingestor.counts)

    async def prometheus(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), content_type="text/plain", charset="utf-8")

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", prometheus)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    address = settings.http_address
    if address is None:
        raise click.ClickException("rumgate ingest needs RUMGATE_HTTP (host:port)")
    await web.TCPSite(runner, *address).start()
    click.echo(f"rumgate ingest: POST http://{address[0]}:{address[1]}/v1/beacons → {settings.topics.beacons} "
               f"on {settings.broker}")
    if tune_gc:
        settle_gc()
    if ready is not None:
        ready.set()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await producer.stop()


def settle_gc() -> None:
    """Tune the cyclic garbage collector for a long-running endpoint, once set-up is done.

    Start-up leaves over 50,000 objects the collector tracks; at load a full collection
    would run every half second and walk all of them (tens of ms each, several µs per
    request at 9,000 requests/s).
    ``gc.freeze`` moves everything alive after start-up out of the collector's sight. The
    default young-generation threshold (700 tracked objects more than were freed) ran a
    young collection about every 45 requests, each walking the objects of the in-flight
    requests (256 connections in the benchmark) and promoting them to be walked again;
    50,000 runs it every few thousand. Memory stays bounded (the soak of
    ``benchmarks/ingest_load.py``).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 10, 10)


@click.command("ingest")
@broker_option(required=True)
@click.option("--http", "http", help="host:port to listen on (env RUMGATE_HTTP; default 0.0.0.0:8080).")
def ingest_command(broker: str | None, http: str | None) -> None:
    """Serve the beacon endpoint POST /v1/beacons alone (the worker serves it too).

    Accepts JSON, NDJSON, text/plain (sendBeacon) and Boomerang's form/query encoding, in
    the formats of web-vitals, Boomerang, Datadog RUM and OpenTelemetry, and produces
    canonical beacons to rum.beacons (invalid ones to rum.beacons.dlq with the reason).
    """
    settings = settings_from(broker, require_broker=True, http=http)
    try:
        asyncio.run(serve_ingest(settings, tune_gc=True))
    except BrokerError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        pass
