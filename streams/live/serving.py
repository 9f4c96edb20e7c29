"""The worker's HTTP server: the API of :mod:`streams.http.api` and the beacon ingestion routes."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from streams.http.backend import Backend

from streams.http.api import make_api
from streams.ingest.endpoint import Ingestor, add_ingest_routes, ingest_config
from streams.live.runtime import Runtime

__all__ = ["ingest_sink", "releases_of", "serve_http"]


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
    api = make_api(rt.backend, settings.api_token, settings.api_read_open)
    add_ingest_routes(api, Ingestor(ingest_config(settings), ingest_sink(rt), releases_of=releases_of(rt.backend)))
    runner = web.AppRunner(api, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, *address)
    await site.start()
    if not quiet:
        print(f"rumgate worker: HTTP API at http://{address[0]}:{address[1]}/v1/rollouts", flush=True)
