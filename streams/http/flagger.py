"""Flagger's webhooks, answering only for the release Flagger is deploying.

Flagger POSTs its ``CanaryWebhookPayload`` (``pkg/apis/flagger/v1beta1/canary.go``):
``{"name", "namespace", "phase", "checksum", "metadata": {string: string}}``, and takes any
status above 202 as "no" (``callWebhook`` in ``pkg/controller/webhook.go``). The hooks:

* ``confirm-promotion``: 200 only on promote. Otherwise Flagger waits before promotion.
* ``rollback``: 200 only on rollback, and Flagger rolls back.
* ``rollout`` (also as the ``pre-rollout`` hook): 200 unless the verdict is rollback. A
  ``rollout`` hook that fails counts a failed check, and ``analysis.threshold`` failed checks
  roll the canary back (``runAnalysis`` in ``scheduler.go``), so holds answer 200 here: a
  hold is not evidence against the release. It can register the rollout (below).
* ``confirm-traffic-increase``: 200 unless the verdict is rollback or a *final* hold
  (``hold: "final"``: the deadline, or an operator's hold). Flagger then does not raise the
  canary's weight, counts nothing, and says "Halt ... advancement waiting for traffic increase
  approval" (``runConfirmTrafficIncreaseHooks``): the canary stays where it is until a person
  decides (``rumgate override``). A *transient* hold (no canary beacons yet, a split
  mismatch, an incident) lets the ramp go on, since more traffic is what ends most of them,
  and promotion still waits for promote.

**Which rollout.** ``metadata.rollout`` (or ``?rollout=``) names one by id; otherwise
``metadata.app`` (or ``?app=``) with ``metadata.release``, the release Flagger is deploying,
names the app's running rollout of that release, or, once it has ended (decided), its latest
rollout of that release. ``metadata.release`` must change with every release: template it
from the same value as the Deployment's image tag (one kustomize or Helm value, or a Flux
image-automation setter on both lines). Without it, the app's one running rollout answers,
guarded by the checksum alone (an ended one only for the checksum it bound).

**Which revision.** Flagger's ``checksum`` hashes the canary's last applied spec and tracked
ConfigMaps and Secrets (``canaryChecksum``), so it changes with every revision, a config-only
change included. The first checksum a rollout is asked about while Flagger analyses
(``phase`` ``Progressing`` or ``WaitingPromotion``) binds it; any other checksum gets 409
saying so, never that rollout's 200. In other phases the checksum is still the previous
revision's (``confirm-rollout`` and a ``rollback`` call in ``Waiting`` run before
``SyncStatus`` stores the new spec's hash), so every hook answers 409 then. The binding is
recorded on ``rum.rollouts`` (the rollout's ``revision``), so every replica and a restarted
worker hold the same one.

**Registration.** When the ``rollout`` hook's metadata names ``app``, ``release`` and
``baseline`` and no rollout ``APP:RELEASE`` exists, the hook starts it (default policy, no
expected share: Flagger's payload does not carry the weight it ramps, so the sample-ratio
check is off) and ends the app's other running rollouts (superseded), so Flagger, not only
CI, starts rollouts, and a day of deploys leaves no stale one. Without ``baseline`` it
registers nothing: CI does (a Canary that names none leaves registration to CI). The same
release again is the same rollout. It needs a token: a read-open worker serves the hooks'
reads without one, never a registration. A rollout ends itself once decided (and is still
answered for its release, above), or with ``rumgate rollout end``.

**Credentials** (:func:`streams.http.auth.hook_access`): ``Authorization``, ``?token=`` or
``metadata.token``, each the API token or the hook token. ``metadata.token`` keeps the token
out of Flagger's events: when a call fails on the way (a timeout, a restart), Go's error, which
Flagger writes into an event, holds the URL with its query. Header and query tokens are
checked before the body is read; without them, a body that is not JSON gets the same 401 as
no token at all, so a caller without a token learns nothing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web

from detectors.policy import DEFAULT_POLICY
from detectors.rollout import MAX_ID, MAX_NAME, Rollout, RolloutError, name_problem
from detectors.verdict import hold_of as verdict_hold_of
from streams.http import auth
from streams.http.backend import Backend, backend_of, now_ms
from streams.http.registration import supersede
from streams.http.replies import BadRequest, error, json, read_body
from streams.http.rollouts import unknown_rollout

__all__ = ["ANALYSING", "ROUTES", "Asked", "asked", "hold_of", "hook_rollout"]

#: How many running rollouts a 409 for an ambiguous app names (the count is always given).
_NAMED = 5
#: Flagger's phases in which ``checksum`` is the revision under analysis (see the docstring).
ANALYSING = frozenset({"Progressing", "WaitingPromotion"})
#: Flagger's checksum is at most ten characters (``ComputeHash``: FNV-32a, safe-encoded).
_MAX_CHECKSUM = 64
_MAX_K8S_NAME = 253
_FLAGGER_SENDS = "Flagger sends the Canary's name and namespace, its phase and an alphanumeric checksum"


@dataclass(frozen=True)
class Asked:
    """What one webhook call asks about, read from the query and Flagger's payload."""

    rollout: str | None = None
    app: str | None = None
    release: str | None = None
    baseline: str | None = None
    canary: str | None = None  # Flagger's Canary object, NAMESPACE/NAME
    phase: str | None = None
    checksum: str | None = None


# -- the payload ------------------------------------------------------------------------------


def _metadata(d: Any) -> dict | web.Response:
    meta = d.get("metadata") if isinstance(d, dict) else None
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        return error(400, "metadata: must be an object, e.g. {\"app\": \"shop-web\", \"release\": \"2026.11.23-abc\"}")
    return meta


def asked(request: web.Request, d: Any) -> Asked | web.Response:
    """The :class:`Asked` of a call (the query before ``metadata``), or a 400 saying what is wrong."""
    meta = _metadata(d)
    if isinstance(meta, web.Response):
        return meta
    values: dict[str, Any] = {
        "rollout": request.query.get("rollout") or meta.get("rollout"),
        "app": request.query.get("app") or meta.get("app"),
        "release": meta.get("release"), "baseline": meta.get("baseline"),
    }
    for name, max_len in (("rollout", MAX_ID), ("app", MAX_NAME), ("release", MAX_NAME), ("baseline", MAX_NAME)):
        value = values[name]
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip():
            return error(400, f"metadata.{name}: must be a non-empty string")
        problem = name_problem(value, max_len)
        if problem:
            return error(400, f"metadata.{name}: {problem}")
    flagger: dict[str, str | None] = {}
    for name, max_len in (("name", _MAX_K8S_NAME), ("namespace", _MAX_K8S_NAME), ("phase", 64),
                          ("checksum", _MAX_CHECKSUM)):
        value = (d.get(name) if isinstance(d, dict) else None) or None
        problem = None if value is None else name_problem(value, max_len)
        if problem:  # each may be repeated in an answer: it must be as safe as a name
            return error(400, f"{name}: {problem} ({_FLAGGER_SENDS})")
        flagger[name] = value
    canary = f"{flagger['namespace'] or ''}/{flagger['name'] or ''}" if flagger["name"] else None
    return Asked(canary=canary, phase=flagger["phase"], checksum=flagger["checksum"], **values)


# -- which rollout --------------------------------------------------------------------------------


def _running(backend: Backend, app_name: str, release: str | None = None) -> list[Rollout]:
    return sorted((r for r in backend.rollouts.values()
                   if r.app == app_name and r.ended_at is None and (release is None or r.canary == release)),
                  key=lambda r: r.id)


def _ended(backend: Backend, app_name: str, release: str | None) -> list[Rollout]:
    """The app's ended rollouts (of ``release``, when given), the latest started first."""
    return sorted((r for r in backend.rollouts.values()
                   if r.app == app_name and r.ended_at is not None and (release is None or r.canary == release)),
                  key=lambda r: (r.started_at, r.id), reverse=True)


def _one_running(backend: Backend, app_name: str, release: str | None,
                 checksum: str | None = None) -> Rollout | web.Response:
    """The app's one running rollout (of ``release``, when given); 404 for none, 409 naming several.

    A rollout ends itself once decided, while Flagger may still ask about it (it calls the
    rollback hook until it has rolled back, confirm-promotion until it promotes). So with
    ``release``, the latest ended rollout of that release answers when none runs: its
    verdicts are that release's. Without it, an ended rollout answers only for the
    checksum this worker bound to it while it ran, the one proof left of the revision.
    """
    running = _running(backend, app_name, release)
    of = f"app {app_name!r}" + (f" for release {release!r}" if release else "")
    if not running:
        ended = _ended(backend, app_name, release)
        if ended and release:
            return ended[0]
        if ended:
            r = ended[0]
            if checksum and (bound_revision(r.revision) or (None, None))[1] == checksum:
                return r
            return error(404, f"no running rollout of {of}: {r.id!r} ended ({r.end_reason or 'by a person'}); "
                              "give metadata.release to be answered for the release it judged")
        hint = (": start it (rumgate rollout start, or metadata.baseline on the rollout hook)" if release else "")
        return error(404, f"no running rollout of {of}{hint}")
    if len(running) > 1:
        named = ", ".join(r.id for r in running[:_NAMED]) + (", ..." if len(running) > _NAMED else "")
        return error(409, f"{of} has {len(running)} running rollouts ({named}): end the stale ones "
                          "or name the rollout with metadata.rollout (or ?rollout=ID)")
    return running[0]


def _rollout_of(backend: Backend, a: Asked) -> Rollout | web.Response:
    if a.rollout:
        rollout = backend.rollouts.get(a.rollout)
        if rollout is None:
            return unknown_rollout(a.rollout)
        for field, want, have in (("app", a.app, rollout.app), ("release", a.release, rollout.canary)):
            if want is not None and want != have:
                return error(409, f"rollout {rollout.id!r} judges {field} {have!r}, not {want!r} (metadata.{field})")
        return rollout
    if a.app:
        return _one_running(backend, a.app, a.release, a.checksum)
    return error(400, "which rollout? give metadata.app and metadata.release (or metadata.rollout) in the "
                      "webhook, or ?rollout=ID (or ?app=APP)")


def hook_rollout(backend: Backend, request: web.Request, d: Any) -> Rollout | web.Response:
    """The rollout a webhook asks about, before its revision is checked (see the docstring)."""
    a = asked(request, d)
    if isinstance(a, web.Response):
        return a
    return _rollout_of(backend, a)


# -- which revision -------------------------------------------------------------------------------

def revision_of(canary: str | None, checksum: str) -> str:
    """The revision a rollout records (:attr:`detectors.rollout.Rollout.revision`):
    ``NAMESPACE/NAME@CHECKSUM`` of the Flagger Canary that asked first.

    >>> revision_of("prod/shop-web", "6c4c5d7f8b"), bound_revision("prod/shop-web@6c4c5d7f8b")
    ('prod/shop-web@6c4c5d7f8b', ('prod/shop-web', '6c4c5d7f8b'))
    """
    return f"{canary or ''}@{checksum}"


def bound_revision(revision: str | None) -> tuple[str | None, str] | None:
    """``(canary, checksum)`` of a recorded revision (None: none bound yet)."""
    if not revision:
        return None
    canary, _, checksum = revision.rpartition("@")
    return canary or None, checksum


async def _revision_refusal(backend: Backend, rollout: Rollout, a: Asked, may_bind: bool) -> web.Response | None:
    """None when ``a`` is about the revision ``rollout`` judges, binding it on first ask: the
    binding is recorded on ``rum.rollouts`` (the rollout's ``revision``), so every worker,
    and a restarted one, holds the same. Only a call with a token binds: on a read-open
    worker an anonymous caller is answered, but cannot bind a checksum of its own choosing
    and so lock Flagger's out."""
    if a.phase is not None and a.phase not in ANALYSING:
        return error(409, f"phase {a.phase!r}: Flagger is not analysing a revision (its checksum is still the "
                          f"previous revision's), so rollout {rollout.id!r} gives no answer for it")
    if not a.checksum:
        return None
    bound = bound_revision(rollout.revision)
    if bound is None and not may_bind:
        return None
    if bound is None:
        if backend.publish_rollout is None:
            return error(503, "this worker cannot publish rollouts, so it cannot bind a revision")
        bound_now = replace(rollout, revision=revision_of(a.canary, a.checksum))
        await backend.publish_rollout(bound_now)
        backend.rollouts[rollout.id] = bound_now
        return None
    if bound == (a.canary, a.checksum):
        return None
    canary, checksum = bound
    if checksum != a.checksum:
        return error(409, f"checksum {a.checksum!r} is not the revision rollout {rollout.id!r} judges "
                          f"({checksum!r}, the first it was asked about): a new revision (image, ConfigMap or "
                          "Secret) needs a rollout of its own, with its own release")
    return error(409, f"rollout {rollout.id!r} judges the revision of canary {canary!r}, not {a.canary!r}")


# -- holds ------------------------------------------------------------------------------------------

def hold_of(event: dict) -> str | None:
    """``"final"``, ``"transient"`` or None (not a hold): the event's ``hold`` field, or, in an
    event written before it existed, what its first reason code makes it
    (:func:`detectors.verdict.hold_of`: final for the deadline and an operator's hold)."""
    if event.get("verdict") != "hold":
        return None
    kind = verdict_hold_of(event)
    if kind not in ("final", "transient"):  # a stored value this version does not know: its codes decide
        kind = verdict_hold_of({**event, "hold": None})
    return str(kind)


# -- registration -----------------------------------------------------------------------------------

_PENDING = "_rumgate_flagger_registering"  # on the Backend: rollout id -> the registration under way


async def _registered(request: web.Request, backend: Backend, a: Asked, with_token: bool) -> Rollout | web.Response:
    """The rollout ``APP:RELEASE`` the hook names, started now if it does not exist."""
    rid = f"{a.app}:{a.release}"
    pending = vars(backend).setdefault(_PENDING, {})
    while rid in pending:  # the same release asked twice at once: one registration
        await asyncio.shield(pending[rid])
    existing = backend.rollouts.get(rid)
    if existing is not None:
        if existing.ended_at is not None:
            return error(409, f"rollout {rid!r} has ended and ids are never reused: release {a.release!r} was "
                              "judged before (a config-only change needs a release of its own)")
        if existing.baseline != a.baseline:
            return error(409, f"rollout {rid!r} is running against baseline {existing.baseline!r}, "
                              f"not {a.baseline!r} (metadata.baseline)")
        return existing
    if _running(backend, a.app, a.release):
        return _one_running(backend, a.app, a.release)  # started by CI under another id
    if not with_token:
        return error(403, "registering a rollout needs a token (the hook token or the API token, as "
                          "metadata.token or ?token=): a read-open worker serves the hooks' reads only")
    if a.release == a.baseline:
        return error(409, f"metadata.release and metadata.baseline are both {a.release!r}: nothing to compare "
                          "(a config-only change needs a release of its own)")
    if backend.publish_rollout is None:
        return error(503, "this worker cannot publish rollouts")
    try:
        revision = revision_of(a.canary, a.checksum) if a.checksum else None  # bound at once: one record
        rollout = Rollout(rid, a.app, a.release, a.baseline, now_ms(request), DEFAULT_POLICY, revision=revision)
    except RolloutError as exc:
        return error(400, f"metadata: {exc}")
    done = asyncio.get_running_loop().create_future()
    pending[rid] = done
    try:
        await backend.publish_rollout(rollout)
        backend.rollouts[rid] = rollout
        await supersede(backend, rollout, rollout.started_at)
    finally:
        del pending[rid]
        done.set_result(None)
    return rollout


# -- the answers ------------------------------------------------------------------------------------


async def _answer(request: web.Request, go, register: bool = False) -> web.Response:
    """200 when ``go(verdict kind, hold)``, else 409, with the verdict the answer rests on."""
    access = auth.hook_access(request)
    if isinstance(access, web.Response):
        return access
    try:
        d = await read_body(request)
    except BadRequest:
        if access is auth.HookAccess.UNCHECKED:  # no token yet: say that, not what is wrong with the body
            refused = auth.hook_access(request, body=None)
            if isinstance(refused, web.Response):
                return refused
        raise
    if access is auth.HookAccess.UNCHECKED:
        access = auth.hook_access(request, body=d)
        if isinstance(access, web.Response):
            return access
    backend = backend_of(request)
    a = asked(request, d)
    if isinstance(a, web.Response):
        return a
    if register and a.app and a.release and a.baseline and not a.rollout:
        if a.phase is not None and a.phase not in ANALYSING:
            return error(409, f"phase {a.phase!r}: Flagger is not analysing a revision, so no rollout is started")
        rollout = await _registered(request, backend, a, with_token=access is auth.HookAccess.TOKEN)
    else:
        rollout = _rollout_of(backend, a)
    if isinstance(rollout, web.Response):
        return rollout
    refused = await _revision_refusal(backend, rollout, a, may_bind=access is auth.HookAccess.TOKEN)
    if refused is not None:
        return refused
    verdict = backend.verdict(rollout.id)
    kind, hold = verdict["verdict"], hold_of(verdict)
    answer = {"rollout": rollout.id, "release": rollout.canary, "verdict": kind, "hold": hold,
              "seq": verdict.get("seq"), "reasons": verdict.get("reasons")}
    return json(answer, status=200 if go(kind, hold) else 409)


async def confirm_promotion_hook(request: web.Request) -> web.Response:
    return await _answer(request, lambda kind, hold: kind == "promote")


async def rollback_hook(request: web.Request) -> web.Response:
    return await _answer(request, lambda kind, hold: kind == "rollback")


async def rollout_hook(request: web.Request) -> web.Response:
    return await _answer(request, lambda kind, hold: kind != "rollback", register=True)


async def confirm_traffic_increase_hook(request: web.Request) -> web.Response:
    return await _answer(request, lambda kind, hold: kind != "rollback" and hold != "final")


ROUTES = [
    web.post("/v1/flagger/confirm-promotion", confirm_promotion_hook),
    web.post("/v1/flagger/rollback", rollback_hook),
    web.post("/v1/flagger/rollout", rollout_hook),
    web.post("/v1/flagger/confirm-traffic-increase", confirm_traffic_increase_hook),
]
