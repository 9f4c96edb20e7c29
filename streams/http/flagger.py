"""Flagger's webhooks: ``confirm-promotion`` answers 200 only on promote, ``rollback`` 200
only on rollback, ``rollout`` 200 unless the verdict is rollback; otherwise 409.

Flagger cannot send headers, so the hooks also take the token as ``?token=``, and can name
the app (``metadata.app``) instead of a rollout id, which one Canary object cannot know for
every release. The body is read before the token is checked: a body that is not JSON is a
400 whoever sends it.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from detectors.rollout import Rollout
from streams.http import auth
from streams.http.backend import Backend, backend_of
from streams.http.replies import error, json, read_body

__all__ = ["ROUTES", "hook_rollout"]


def hook_rollout(backend: Backend, request: web.Request, d: Any) -> Rollout | web.Response:
    """The rollout a webhook asks about: ``metadata.rollout`` (or ``?rollout=``) by id, or
    ``metadata.app`` (or ``?app=``) for the app's rollout that started last and has not
    ended (a Canary object is written once, for every release)."""
    meta = (d.get("metadata") or {}) if isinstance(d, dict) else {}
    if not isinstance(meta, dict):
        return error(400, "metadata: must be an object, e.g. {\"rollout\": \"shop-web:abc\"}")
    rid = request.query.get("rollout") or meta.get("rollout")
    app_name = request.query.get("app") or meta.get("app")
    for name, value in (("rollout", rid), ("app", app_name)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            return error(400, f"metadata.{name}: must be a non-empty string")
    if rid:
        return backend.rollouts.get(rid) or error(404, f"no rollout {rid!r}")
    if app_name:
        running = [r for r in backend.rollouts.values() if r.app == app_name and r.ended_at is None]
        if not running:
            return error(404, f"no running rollout of app {app_name!r}")
        return max(running, key=lambda r: r.started_at)
    return error(400, "which rollout? give metadata.rollout (or metadata.app) in the webhook, "
                      "or ?rollout=ID (or ?app=APP)")


async def _answer(request: web.Request, go) -> web.Response:
    """200 when ``go(verdict kind)``, else 409, with the verdict the answer rests on."""
    d = await read_body(request)
    refused = auth.hook_refusal(request)
    if refused is not None:
        return refused
    backend = backend_of(request)
    rollout = hook_rollout(backend, request, d)
    if isinstance(rollout, web.Response):
        return rollout
    verdict = backend.verdict(rollout.id)
    kind = verdict["verdict"]
    answer = {"rollout": rollout.id, "verdict": kind, "seq": verdict.get("seq"), "reasons": verdict.get("reasons")}
    return json(answer, status=200 if go(kind) else 409)


async def confirm_promotion_hook(request: web.Request) -> web.Response:
    return await _answer(request, lambda kind: kind == "promote")


async def rollback_hook(request: web.Request) -> web.Response:
    return await _answer(request, lambda kind: kind == "rollback")


async def rollout_hook(request: web.Request) -> web.Response:
    return await _answer(request, lambda kind: kind != "rollback")


ROUTES = [
    web.post("/v1/flagger/confirm-promotion", confirm_promotion_hook),
    web.post("/v1/flagger/rollback", rollback_hook),
    web.post("/v1/flagger/rollout", rollout_hook),
]
