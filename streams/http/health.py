"""The open operational routes: ``/healthz`` (liveness) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

from aiohttp import web

from streams.http.backend import backend_of
from streams.http.replies import json

__all__ = ["ROUTES"]


async def healthz(request: web.Request) -> web.Response:
    return json({"status": "ok", "rollouts": len(backend_of(request).rollouts)})


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=backend_of(request).metrics.render(), content_type="text/plain", charset="utf-8")


ROUTES = [
    web.get("/healthz", healthz),
    web.get("/metrics", metrics),
]
