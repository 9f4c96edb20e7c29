"""The open operational routes: ``/healthz`` (liveness) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

from aiohttp import web

from streams.http.backend import backend_of
from streams.http.replies import json

__all__ = ["ROUTES"]


async def healthz(request: web.Request) -> web.Response:
    """Liveness (200 while the process serves), with readiness: ``ready`` once the worker owns
    its partitions and has read back its published verdicts, and which partitions those are."""
    backend = backend_of(request)
    return json({"status": "ok", "rollouts": len(backend.rollouts), "ready": backend.partitions is not None,
                 "partitions": backend.partitions or []})


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=backend_of(request).metrics.render(), content_type="text/plain", charset="utf-8")


ROUTES = [
    web.get("/healthz", healthz),
    web.get("/metrics", metrics),
]
