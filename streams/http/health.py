"""The open operational routes: ``/healthz`` (liveness), ``/readyz`` (readiness) and
``/metrics`` (Prometheus)."""

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


async def readyz(request: web.Request) -> web.Response:
    """Readiness, for a probe that takes the worker out of service: 200 once it owns its
    partitions and every stage-1 partition sends; 503 with the reason while it joins its
    group or a partition is being rebuilt after a failed send (its windows not out yet)."""
    backend = backend_of(request)
    if backend.partitions is None:
        return json({"ready": False, "reason": "not ready: joining the consumer group"}, status=503)
    if backend.failing:
        return json({"ready": False, "reason": "; ".join(backend.failing[p] for p in sorted(backend.failing)),
                     "failing": sorted(backend.failing)}, status=503)
    return json({"ready": True, "partitions": backend.partitions})


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=backend_of(request).metrics.render(), content_type="text/plain", charset="utf-8")


ROUTES = [
    web.get("/healthz", healthz),
    web.get("/readyz", readyz),
    web.get("/metrics", metrics),
]
