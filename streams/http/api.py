"""The HTTP API served by the worker: rollouts, verdicts, overrides, Argo and Flagger hooks.

Reads need ``Authorization: Bearer <RUMGATE_API_TOKEN>`` unless ``RUMGATE_API_READ_OPEN``
is true; mutations always need it, and are refused (403) when no token is configured.
``/healthz``, ``/metrics`` and ``/v1/openapi.json`` are open. Every error is JSON
``{"error": "..."}`` with a 4xx status that says what was wrong.

The parts, each testable alone: :mod:`~streams.http.auth` (the token),
:mod:`~streams.http.rollouts` (rollouts, verdicts, overrides; Argo's verdict endpoint),
:mod:`~streams.http.flagger` (Flagger's webhooks), :mod:`~streams.http.health` (``/healthz``,
``/metrics``), :mod:`~streams.http.openapi` (the description and its route),
:mod:`~streams.http.replies` (JSON answers, bodies, errors) and
:mod:`~streams.http.backend` (what the handlers read, on the application).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web

from streams.http import flagger, health, openapi, pages, registration, rollouts, series
from streams.http.auth import AUTH, Auth
from streams.http.auth import middleware as auth_middleware
from streams.http.backend import BACKEND, CLOCK, Backend, no_verdict
from streams.http.replies import MAX_BODY, errors

__all__ = ["ROUTES", "Backend", "make_api", "no_verdict"]

ROUTES = [*health.ROUTES, *openapi.ROUTES, *rollouts.ROUTES, *registration.ROUTES, *flagger.ROUTES, *series.ROUTES,
          *pages.ROUTES]


def make_api(backend: Backend, token: str = "", read_open: bool = False,
             now_ms: Callable[[], int] = lambda: int(time.time() * 1000), hook_token: str = "") -> web.Application:
    """The aiohttp application over ``backend``; ``hook_token`` opens the Flagger hooks only."""
    app = web.Application(middlewares=[errors, auth_middleware], client_max_size=MAX_BODY)
    app[BACKEND] = backend
    app[AUTH] = Auth(token, read_open, hook_token)
    app[CLOCK] = now_ms
    app.add_routes(ROUTES)
    return app
