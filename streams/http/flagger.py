"""Flagger's webhooks: ``confirm-promotion`` answers 200 only on promote, ``rollback`` 200
only on rollback, ``rollout`` 200 unless the verdict is rollback; otherwise 409.

Flagger cannot send headers, so the hooks also take the token as ``?token=``. The token is
checked before the body is read: a caller without it learns nothing, not even whether its
body parses.

Which rollout: ``metadata.rollout`` (or ``?rollout=``) names one by id. One Canary object
serves every release of an app, so it can name the app instead (``metadata.app`` or
``?app=``), and rumgate answers for that app's one running rollout. When the app has several
running rollouts (a stale one never ended, or someone started another), no answer is safe:
the hooks refuse with 409 naming them, so Flagger neither promotes nor rolls back on another
release's verdict, until the stale ones are ended (``rumgate rollout end ID``) or the
Canary names the rollout by id. To Flagger a 409 is "not yet": confirm-promotion keeps
waiting, rollback does nothing, and ``rollout`` counts a failed check.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from detectors.rollout import MAX_ID, MAX_NAME, Rollout, name_problem
from streams.http import auth
from streams.http.backend import Backend, backend_of
from streams.http.replies import error, json, read_body
from streams.http.rollouts import unknown_rollout

__all__ = ["ROUTES", "hook_rollout"]

#: How many running rollouts a 409 for an ambiguous app names (the count is always given).
_NAMED = 5


def _asked(request: web.Request, d: Any) -> tuple[Any, Any] | web.Response:
    """(rollout id, app) the webhook asks about, from the query first, then ``metadata``."""
    meta = (d.get("metadata") or {}) if isinstance(d, dict) else {}
    if not isinstance(meta, dict):
        return error(400, "metadata: must be an object, e.g. {\"rollout\": \"shop-web:abc\"}")
    rid = request.query.get("rollout") or meta.get("rollout")
    app_name = request.query.get("app") or meta.get("app")
    for name, value, max_len in (("rollout", rid, MAX_ID), ("app", app_name, MAX_NAME)):
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip():
            return error(400, f"metadata.{name}: must be a non-empty string")
        problem = name_problem(value, max_len)
        if problem:
            return error(400, f"metadata.{name}: {problem}")
    return rid, app_name


def _running_rollout_of(backend: Backend, app_name: str) -> Rollout | web.Response:
    """The app's one running rollout; 404 for none, 409 naming them when there are several."""
    running = sorted((r for r in backend.rollouts.values() if r.app == app_name and r.ended_at is None),
                     key=lambda r: r.id)
    if not running:
        return error(404, f"no running rollout of app {app_name!r}")
    if len(running) > 1:
        named = ", ".join(r.id for r in running[:_NAMED]) + (", ..." if len(running) > _NAMED else "")
        return error(409, f"app {app_name!r} has {len(running)} running rollouts ({named}): end the stale ones "
                          "or name the rollout with metadata.rollout (or ?rollout=ID)")
    return running[0]


def hook_rollout(backend: Backend, request: web.Request, d: Any) -> Rollout | web.Response:
    """The rollout a webhook asks about: by id (``metadata.rollout`` or ``?rollout=``), or
    the app's one running rollout (``metadata.app`` or ``?app=``); see the module docstring."""
    asked = _asked(request, d)
    if isinstance(asked, web.Response):
        return asked
    rid, app_name = asked
    if rid:
        return backend.rollouts.get(rid) or unknown_rollout(rid)
    if app_name:
        return _running_rollout_of(backend, app_name)
    return error(400, "which rollout? give metadata.rollout (or metadata.app) in the webhook, "
                      "or ?rollout=ID (or ?app=APP)")


async def _answer(request: web.Request, go) -> web.Response:
    """200 when ``go(verdict kind)``, else 409, with the verdict the answer rests on."""
    refused = auth.hook_refusal(request)
    if refused is not None:
        return refused
    d = await read_body(request)
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
