"""``rumgate ingest``: the beacon endpoint alone, for gateways scaled apart from the workers."""

from __future__ import annotations

import asyncio

import click
from aiohttp import web
from aiokafka import AIOKafkaProducer

from streams.broker import BrokerError, broker_servers
from streams.ingest import Ingestor, add_ingest_routes, ingest_config
from streams.live_cli import broker_option, settings_from
from streams.topics import ensure_topics

__all__ = ["ingest_command", "serve_ingest"]


async def serve_ingest(settings, ready: asyncio.Event | None = None) -> None:
    """Serve ``/v1/beacons`` (and ``/healthz``) on ``settings.http`` until cancelled."""
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
    app = web.Application()
    add_ingest_routes(app, ingestor)

    async def healthz(request: web.Request) -> web.Response:
        # dedupe_evicted_early > 0: ids forgotten before their TTL (RUMGATE_INGEST_DEDUPE_SLOTS too small)
        return web.json_response({"status": "ok", **ingestor.counts,
                                  "dedupe_evicted_early": ingestor.dedupe.evicted_early})

    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    address = settings.http_address
    if address is None:
        raise click.ClickException("rumgate ingest needs RUMGATE_HTTP (host:port)")
    await web.TCPSite(runner, *address).start()
    click.echo(f"rumgate ingest: POST http://{address[0]}:{address[1]}/v1/beacons → {settings.topics.beacons} "
               f"on {settings.broker}")
    if ready is not None:
        ready.set()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await producer.stop()


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
        asyncio.run(serve_ingest(settings))
    except BrokerError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        pass
