"""The HTTP API served by the worker: rollouts, verdicts, overrides, Argo and Flagger hooks.

Reads need ``Authorization: Bearer <RUMGATE_API_TOKEN>`` unless ``RUMGATE_API_READ_OPEN``
is true; mutations always need it, and are refused (403) when no token is configured.
``/healthz``, ``/metrics`` and ``/v1/openapi.json`` are open. Every error is JSON
``{"error": "..."}`` with a 4xx status that says what was wrong.

Argo Rollouts' ``web`` provider polls ``GET /v1/rollouts/{id}/verdict`` with
``successCondition: result.verdict == "promote"`` and ``failureCondition: result.verdict ==
"rollback"``; hold and continue are neither, hence Inconclusive. Flagger's
``confirm-promotion`` webhook gets 200 only on promote, its ``rollback`` webhook 200
only on rollback. Flagger cannot send headers, so its hooks also take the token as
``?token=``, and can name the app (``metadata.app``) instead of a rollout id, which one
Canary object cannot know for every release.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
from aiohttp import web

from detectors.override import Override, OverrideError, parse_override
from detectors.policy import DEFAULT_POLICY, PolicyError, parse_policy
from detectors.rollout import Rollout
from streams.http.metrics import Metrics
from streams.http.openapi import OPENAPI

__all__ = ["Backend", "make_api", "no_verdict"]

MAX_BODY = 256 * 1024


@dataclass
class Backend:
    """What the API reads and how it writes; the worker fills it from the topics."""

    rollouts: dict[str, Rollout] = field(default_factory=dict)
    latest: dict[str, dict] = field(default_factory=dict)  # verdict key → latest verdict event
    overrides: dict[str, list[Override]] = field(default_factory=dict)
    publish_rollout: Callable[[Rollout], Awaitable[None]] | None = None
    publish_override: Callable[[Override], Awaitable[None]] | None = None
    history: Callable[[str], Awaitable[list[dict]]] | None = None
    metrics: Metrics = field(default_factory=Metrics)


def no_verdict(rollout_id: str) -> dict[str, Any]:
    """What the verdict endpoint says before the first verdict: continue (Inconclusive)."""
    return {"rollout": rollout_id, "seq": 0, "verdict": "continue", "severity": "none",
            "reasons": ["no verdict yet: no window of this rollout has been judged"]}


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status, dumps=lambda o: orjson.dumps(o).decode())


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def make_api(backend: Backend, token: str = "", read_open: bool = False,
             now_ms: Callable[[], int] = lambda: int(time.time() * 1000)) -> web.Application:
    """The aiohttp application over ``backend``."""

    def authorized(request: web.Request, mutation: bool) -> web.Response | None:
        if not mutation and read_open:
            return None
        if not token:
            return _error(403, "refused: no API token is configured on this worker (RUMGATE_API_TOKEN)"
                          + ("" if mutation else "; set RUMGATE_API_READ_OPEN=true to serve reads without one"))
        given = request.headers.get("Authorization", "")
        if not given:
            return _error(401, "missing Authorization: Bearer <token>")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
            return _error(403, "wrong token")
        return None

    def guarded(mutation: bool):
        def wrap(handler):
            async def run(request: web.Request) -> web.StreamResponse:
                refused = authorized(request, mutation)
                return refused if refused is not None else await handler(request)
            return run
        return wrap

    def rollout_or_404(request: web.Request) -> Rollout | web.Response:
        rid = request.match_info["id"]
        rollout = backend.rollouts.get(rid)
        if rollout is None:
            return _error(404, f"no rollout {rid!r}")
        return rollout

    async def body(request: web.Request) -> Any:
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length)
        raw = await request.read()
        if not raw:
            return {}
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise _BadRequest(f"body: not valid JSON ({exc.msg})") from None

    def summary(r: Rollout) -> dict[str, Any]:
        return {"id": r.id, "app": r.app, "canary": r.canary, "baseline": r.baseline,
                "started_at": r.started_at, "ended_at": r.ended_at, "expected_share": r.expected_share,
                "policy": {"name": r.policy.name, "hash": r.policy.hash, "dry_run": r.policy.dry_run},
                "dry_run_policies": [p.name for p in r.dry_run_policies],
                "verdict": backend.latest.get(r.id)}

    # -- reads ------------------------------------------------------------------------------
    @guarded(mutation=False)
    async def list_rollouts(request: web.Request) -> web.Response:
        return _json({"rollouts": [summary(r) for r in sorted(backend.rollouts.values(), key=lambda r: r.id)]})

    @guarded(mutation=False)
    async def get_rollout(request: web.Request) -> web.Response:
        rollout = rollout_or_404(request)
        if isinstance(rollout, web.Response):
            return rollout
        out = summary(rollout)
        out["dry_run_verdicts"] = {p.name: backend.latest.get(f"{rollout.id}~dry-run:{p.name}")
                                   for p in rollout.dry_run_policies}
        out["overrides"] = [o.to_dict() for o in backend.overrides.get(rollout.id, [])]
        return _json(out)

    @guarded(mutation=False)
    async def get_verdict(request: web.Request) -> web.Response:
        rollout = rollout_or_404(request)
        if isinstance(rollout, web.Response):
            return rollout
        return _json(backend.latest.get(rollout.id) or no_verdict(rollout.id))

    @guarded(mutation=False)
    async def get_history(request: web.Request) -> web.Response:
        rollout = rollout_or_404(request)
        if isinstance(rollout, web.Response):
            return rollout
        events = await backend.history(rollout.id) if backend.history else []
        return _json({"rollout": rollout.id, "verdicts": events})

    @guarded(mutation=False)
    async def get_overrides(request: web.Request) -> web.Response:
        rollout = rollout_or_404(request)
        if isinstance(rollout, web.Response):
            return rollout
        return _json({"rollout": rollout.id, "overrides": [o.to_dict() for o in backend.overrides.get(rollout.id, [])]})

    # -- mutations --------------------------------------------------------------------------
    @guarded(mutation=True)
    async def start_rollout(request: web.Request) -> web.Response:
        d = await body(request)
        if not isinstance(d, dict):
            return _error(400, "body: must be a JSON object")
        unknown = set(d) - {"id", "app", "canary", "baseline", "policy", "expected_share", "started_at",
                            "dry_run_policies"}
        if unknown:
            return _error(400, f"unknown field(s): {', '.join(sorted(unknown))}")
        for name in ("app", "canary", "baseline"):
            if not isinstance(d.get(name), str) or not d[name].strip():
                return _error(400, f"{name}: required, a non-empty string")
        if d["canary"] == d["baseline"]:
            return _error(400, "canary and baseline must be different releases")
        try:
            policy = parse_policy(d["policy"], source="policy") if d.get("policy") else DEFAULT_POLICY
            dry = tuple(replace(parse_policy(text, source=f"dry_run_policies[{i}]"), dry_run=True)
                        for i, text in enumerate(d.get("dry_run_policies") or ()))
        except PolicyError as exc:
            return _error(400, f"policy refused: {exc}")
        except (TypeError, AttributeError):
            return _error(400, "policy: must be the policy's YAML text")
        share = d.get("expected_share")
        if share is not None and (isinstance(share, bool) or not isinstance(share, (int, float))
                                  or not 0 < share < 1):
            return _error(400, f"expected_share: must be a number between 0 and 1, got {share!r}")
        started = d.get("started_at", now_ms())
        if isinstance(started, bool) or not isinstance(started, int) or started <= 0:
            return _error(400, f"started_at: must be epoch milliseconds, got {started!r}")
        if "id" in d and (not isinstance(d["id"], str) or not d["id"].strip()):
            return _error(400, "id: must be a non-empty string")
        rid = d.get("id") or f"{d['app']}:{d['canary']}"
        if rid in backend.rollouts:
            # Never reuse an id: its verdict history (and latest verdict) belongs to that rollout.
            state = "is already running" if backend.rollouts[rid].ended_at is None else "was used before"
            return _error(409, f"rollout {rid!r} {state}: choose another id, e.g. APP:RELEASE")
        rollout = Rollout(rid, d["app"], d["canary"], d["baseline"], started, policy, share, None, dry)
        await backend.publish_rollout(rollout)
        backend.rollouts[rid] = rollout
        return _json(summary(rollout), status=201)

    @guarded(mutation=True)
    async def end_rollout(request: web.Request) -> web.Response:
        rollout = rollout_or_404(request)
        if isinstance(rollout, web.Response):
            return rollout
        if rollout.ended_at is not None:
            return _error(409, f"rollout {rollout.id!r} has already ended")
        ended = replace(rollout, ended_at=now_ms())
        await backend.publish_rollout(ended)
        backend.rollouts[ended.id] = ended
        return _json(summary(ended))

    @guarded(mutation=True)
    async def add_override(request: web.Request) -> web.Response:
        rollout = rollout_or_404(request)
        if isinstance(rollout, web.Response):
            return rollout
        try:
            override = parse_override(await body(request), rollout.id, now_ms())
        except OverrideError as exc:
            return _error(400, f"override refused: {exc}")
        if override.expires_at is not None and override.expires_at <= now_ms():
            return _error(400, "override refused: expires_at: already expired")
        await backend.publish_override(override)
        backend.overrides.setdefault(rollout.id, []).append(override)
        return _json(override.to_dict(), status=201)

    # -- Flagger webhooks -------------------------------------------------------------------
    def hook_rollout(request: web.Request, d: Any) -> Rollout | web.Response:
        """The rollout a webhook asks about: ``metadata.rollout`` (or ``?rollout=``) by id, or
        ``metadata.app`` (or ``?app=``) for the app's rollout that started last and has not
        ended (a Canary object is written once, for every release)."""
        meta = (d.get("metadata") or {}) if isinstance(d, dict) else {}
        if not isinstance(meta, dict):
            return _error(400, "metadata: must be an object, e.g. {\"rollout\": \"shop-web:abc\"}")
        rid = request.query.get("rollout") or meta.get("rollout")
        app_name = request.query.get("app") or meta.get("app")
        for name, value in (("rollout", rid), ("app", app_name)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                return _error(400, f"metadata.{name}: must be a non-empty string")
        if rid:
            return backend.rollouts.get(rid) or _error(404, f"no rollout {rid!r}")
        if app_name:
            running = [r for r in backend.rollouts.values() if r.app == app_name and r.ended_at is None]
            if not running:
                return _error(404, f"no running rollout of app {app_name!r}")
            return max(running, key=lambda r: r.started_at)
        return _error(400, "which rollout? give metadata.rollout (or metadata.app) in the webhook, "
                           "or ?rollout=ID (or ?app=APP)")

    def flagger(wanted: str | None, refuse_on: str | None = None):
        async def hook(request: web.Request) -> web.Response:
            d = await body(request)
            # Flagger cannot send headers: its hooks may carry the token as ?token= instead.
            given = request.query.get("token")
            if given is None or not token or not hmac.compare_digest(given.encode(), token.encode()):
                refused = authorized(request, mutation=False)
                if refused is not None:
                    return refused
            rollout = hook_rollout(request, d)
            if isinstance(rollout, web.Response):
                return rollout
            verdict = backend.latest.get(rollout.id) or no_verdict(rollout.id)
            kind = verdict["verdict"]
            ok = kind == wanted if wanted else kind != refuse_on
            answer = {"rollout": rollout.id, "verdict": kind, "seq": verdict.get("seq"),
                      "reasons": verdict.get("reasons")}
            return _json(answer, status=200 if ok else 409)
        return hook

    async def healthz(request: web.Request) -> web.Response:
        return _json({"status": "ok", "rollouts": len(backend.rollouts)})

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=backend.metrics.render(), content_type="text/plain", charset="utf-8")

    async def openapi(request: web.Request) -> web.Response:
        return _json(OPENAPI)

    @web.middleware
    async def errors(request: web.Request, handler):
        try:
            return await handler(request)
        except _BadRequest as exc:
            return _error(400, str(exc))
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"body larger than {MAX_BODY} bytes")
        except web.HTTPException as exc:
            if exc.status >= 400:
                return _error(exc.status, exc.reason)
            raise

    app = web.Application(middlewares=[errors], client_max_size=MAX_BODY)
    app.add_routes([
        web.get("/healthz", healthz),
        web.get("/metrics", metrics),
        web.get("/v1/openapi.json", openapi),
        web.get("/v1/rollouts", list_rollouts),
        web.post("/v1/rollouts", start_rollout),
        web.get("/v1/rollouts/{id}", get_rollout),
        web.post("/v1/rollouts/{id}/end", end_rollout),
        web.get("/v1/rollouts/{id}/verdict", get_verdict),
        web.get("/v1/rollouts/{id}/verdicts", get_history),
        web.get("/v1/rollouts/{id}/overrides", get_overrides),
        web.post("/v1/rollouts/{id}/overrides", add_override),
        web.post("/v1/flagger/confirm-promotion", flagger("promote")),
        web.post("/v1/flagger/rollback", flagger("rollback")),
        web.post("/v1/flagger/rollout", flagger(None, refuse_on="rollback")),
    ])
    return app


class _BadRequest(Exception):
    pass
