"""The rollout routes: list, start, one rollout, end, its verdict (Argo Rollouts' ``web``
provider polls it), its verdict history, and its overrides.

Argo polls ``GET /v1/rollouts/{id}/verdict?image=IMAGE`` twice (deploy/argo/): the step
analysis with ``successCondition: result.verdict == "promote"`` and ``failureCondition:
result.verdict == "rollback"`` (hold and continue are neither, hence Inconclusive, waited
through up to its inconclusiveLimit), and a background analysis with ``successCondition:
result.hold != "final"``, ``inconclusiveLimit: 0``, which pauses the Rollout at the first
measurement of a final hold. So every body has ``hold`` (null when the verdict is no hold),
also one written before hold kinds or the placeholder before the first verdict.

``image`` (or ``release``) binds the answer to what is being deployed: the image's tag (or
the release) must be the rollout's canary, or the answer is a final hold with code
``release_mismatch`` that names both, never the promote or rollback of another release (an
annotation still naming the previous release would otherwise be Successful at once). The
comparison cannot change during an AnalysisRun (Argo resolves both args when it creates the
run), hence final: the Rollout pauses for a person instead of measuring for two hours.

A start body is checked whole before anything is published: ids and names have the alphabet
and length of :mod:`detectors.rollout` (so an id can always be put in a URL and ended), at
most :data:`~detectors.rollout.MAX_DRY_RUN_POLICIES` dry-run policies, each policy parsed as
plain data (:func:`detectors.policy.parse_policy`). An id holding ``/`` or ``+`` is sent
percent-encoded (``%2F``, ``%2B``) in a URL.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from aiohttp import web

from detectors.beacon import _TS_MAX  # epoch ms (the year 2286), as beacons and overrides
from detectors.override import OverrideError, parse_override
from detectors.policy import DEFAULT_POLICY, PolicyError, parse_policy
from detectors.rollout import MAX_DRY_RUN_POLICIES, MAX_ID, Rollout, RolloutError, name_problem
from detectors.verdict import ReasonCode, hold_kind, hold_of
from streams.http import auth
from streams.http.backend import Backend, backend_of, now_ms
from streams.http.replies import BadRequest, error, json, read_body, shown

__all__ = ["MAX_IMAGE", "ROUTES", "image_tag", "rollout_or_404", "summary"]

_START_FIELDS = {"id", "app", "canary", "baseline", "policy", "expected_share", "started_at", "dry_run_policies"}


def summary(backend: Backend, r: Rollout) -> dict[str, Any]:
    return {"id": r.id, "app": r.app, "canary": r.canary, "baseline": r.baseline,
            "started_at": r.started_at, "ended_at": r.ended_at, "end_reason": r.end_reason,
            "expected_share": r.expected_share, "share_changes": [list(c) for c in r.share_changes],
            "revision": r.revision,
            "policy": {"name": r.policy.name, "hash": r.policy.hash, "dry_run": r.policy.dry_run},
            "dry_run_policies": [p.name for p in r.dry_run_policies],
            "verdict": backend.latest.get(r.id)}


def rollout_or_404(request: web.Request) -> Rollout | web.Response:
    rid = request.match_info["id"]
    rollout = backend_of(request).rollouts.get(rid)
    if rollout is None:
        return unknown_rollout(rid)
    return rollout


def unknown_rollout(rid: str) -> web.Response:
    """The 404 for ``rid``; one that cannot be an id says why instead of echoing it."""
    problem = name_problem(rid, MAX_ID)
    return error(404, f"no rollout {rid!r}" if problem is None else f"no rollout: id: {problem}")


def _overrides(backend: Backend, rollout: Rollout) -> list[dict]:
    return [o.to_dict() for o in backend.overrides.get(rollout.id, [])]


# -- reads ----------------------------------------------------------------------------------


@auth.read
async def list_rollouts(request: web.Request) -> web.Response:
    backend = backend_of(request)
    return json({"rollouts": [summary(backend, r) for r in sorted(backend.rollouts.values(), key=lambda r: r.id)]})


@auth.read
async def get_rollout(request: web.Request) -> web.Response:
    rollout = rollout_or_404(request)
    if isinstance(rollout, web.Response):
        return rollout
    backend = backend_of(request)
    out = summary(backend, rollout)
    out["dry_run_verdicts"] = {p.name: backend.latest.get(f"{rollout.id}~dry-run:{p.name}")
                               for p in rollout.dry_run_policies}
    out["overrides"] = _overrides(backend, rollout)
    return json(out)


#: The longest ``image`` or ``release`` the verdict endpoint takes (an image reference with a
#: registry, a path, a tag and a digest fits; a longer one is a 400).
MAX_IMAGE = 512


def image_tag(image: str) -> str | None:
    """The tag of an OCI image reference, None without one.

    >>> image_tag("ghcr.io/acme/shop-web:2026.11.23-abc"), image_tag("registry:5000/shop-web:r2@sha256:ab")
    ('2026.11.23-abc', 'r2')
    >>> image_tag("registry:5000/shop-web"), image_tag("shop-web@sha256:ab"), image_tag("nginx:1.27")
    (None, None, '1.27')
    """
    name = image.partition("@")[0].rsplit("/", 1)[-1]  # a registry's :port is not in the last part
    _, colon, tag = name.rpartition(":")
    return tag if colon and tag else None


def _asked_release(request: web.Request) -> tuple[str, str] | None:
    """``(parameter, value)`` of the release the caller deploys (``image`` or ``release``), or
    None when it names none (the answer is then not bound to a release, as before)."""
    given = [(name, request.query.getall(name)) for name in ("image", "release") if name in request.query]
    if not given:
        return None
    if len(given) > 1:
        raise BadRequest("give image or release, not both")
    (name, values), = given
    if len(values) > 1:
        raise BadRequest(f"{name}: given {len(values)} times, give it once")
    value = values[0]
    if not value.strip():
        raise BadRequest(f"{name}: empty (did the analysis arg resolve?)")
    if len(value) > MAX_IMAGE or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise BadRequest(f"{name}: at most {MAX_IMAGE} characters without control characters, got {shown(value)}")
    return name, value


def _mismatch(rollout: Rollout, asked: tuple[str, str]) -> str | None:
    """Why the release asked about is not the rollout's canary; None when it is."""
    name, value = asked
    if name == "release":
        if value == rollout.canary:
            return None
        return f"release {value!r} is not the canary {rollout.canary!r} of rollout {rollout.id!r}"
    tag = image_tag(value)
    if tag == rollout.canary:
        return None
    what = f"image {value!r} (tag {tag!r})" if tag else f"image {value!r}, which has no tag,"
    return f"{what} is not the canary {rollout.canary!r} of rollout {rollout.id!r}"


def _mismatch_body(rollout: Rollout, event: dict, asked: tuple[str, str], problem: str) -> dict:
    """The verdict served for a release the rollout does not judge: a final hold, which Argo
    measures Inconclusive (step) and pauses on (background), with the verdict of the release
    the rollout does judge quoted, so a person sees both."""
    said = event.get("verdict")
    codes = event.get("reason_codes") or [ReasonCode.UNKNOWN]
    reasons = [f"release mismatch: {problem}; no promote or rollback is given for a release that was not judged "
               "(does the rollout id the deployment passes, e.g. its rumgate.io/rollout-id annotation, name the "
               "release it deploys?)",
               f"the verdict of {rollout.id!r} for {rollout.canary!r} is {said}"
               + (f": {event['reasons'][0]}" if event.get("reasons") else "")]
    reason_codes = [ReasonCode.RELEASE_MISMATCH, codes[0]]
    name, value = asked
    return {"rollout": rollout.id, "app": rollout.app, "canary": rollout.canary, "baseline": rollout.baseline,
            "seq": event.get("seq", 0), "verdict": "hold", "hold": hold_kind("hold", reason_codes),
            "severity": "none", "at": event.get("at"), "emitted_at": event.get("emitted_at"),
            "policy": event.get("policy", {}), "reasons": reasons, "reason_codes": reason_codes,
            "overrides": event.get("overrides", []), "metrics": [],
            "release": {name: value, "canary": rollout.canary, "match": False,
                        **({"tag": image_tag(value)} if name == "image" else {})},
            "judged": {"seq": event.get("seq", 0), "verdict": said, "hold": hold_of(event),
                       "reasons": event.get("reasons", [])}}


@auth.read
async def get_verdict(request: web.Request) -> web.Response:
    """The latest verdict, with ``hold`` always present; bound to ``image``/``release`` when given."""
    rollout = rollout_or_404(request)
    if isinstance(rollout, web.Response):
        return rollout
    asked = _asked_release(request)
    event = backend_of(request).verdict(rollout.id)
    body = event if "hold" in event else {**event, "hold": hold_of(event)}
    if asked is None:
        return json(body)
    problem = _mismatch(rollout, asked)
    if problem is not None:
        return json(_mismatch_body(rollout, event, asked, problem))
    name, value = asked
    return json({**body, "release": {name: value, "canary": rollout.canary, "match": True,
                                     **({"tag": image_tag(value)} if name == "image" else {})}})


@auth.read
async def get_history(request: web.Request) -> web.Response:
    rollout = rollout_or_404(request)
    if isinstance(rollout, web.Response):
        return rollout
    backend = backend_of(request)
    events = await backend.history(rollout.id) if backend.history else []
    return json({"rollout": rollout.id, "verdicts": events})


@auth.read
async def get_overrides(request: web.Request) -> web.Response:
    rollout = rollout_or_404(request)
    if isinstance(rollout, web.Response):
        return rollout
    return json({"rollout": rollout.id, "overrides": _overrides(backend_of(request), rollout)})


# -- mutations ------------------------------------------------------------------------------


def _strings(d: dict) -> None:
    unknown = set(d) - _START_FIELDS
    if unknown:
        names = sorted(unknown)
        more = f" and {len(names) - 5} more" if len(names) > 5 else ""
        raise BadRequest(f"unknown field(s): {', '.join(n[:40] for n in names[:5])}{more}")
    for name in ("app", "canary", "baseline"):
        if not isinstance(d.get(name), str) or not d[name].strip():
            raise BadRequest(f"{name}: required, a non-empty string")
        problem = name_problem(d[name])
        if problem:
            raise BadRequest(f"{name}: {problem}")
    _id_field(d)
    if d["canary"] == d["baseline"]:
        raise BadRequest("canary and baseline must be different releases")


def _id_field(d: dict) -> None:
    """A chosen id must be one a URL, a record key and a log line can carry (the default is)."""
    if "id" not in d:
        return
    rid = d["id"]
    problem = name_problem(rid, MAX_ID) if isinstance(rid, str) and rid.strip() else "must be a non-empty string"
    if problem:
        raise BadRequest(f"id: {problem}")


def _policy_texts(d: dict) -> tuple[str | None, list[str]]:
    """The policy texts of a start body, their types and count checked before any is parsed."""
    text, dry = d.get("policy"), d.get("dry_run_policies")
    if text is not None and not isinstance(text, str):
        raise BadRequest(f"policy: must be the policy's YAML text, got {type(text).__name__}")
    if dry is None:
        dry = []
    if not isinstance(dry, list) or not all(isinstance(t, str) for t in dry):
        raise BadRequest("dry_run_policies: must be a list of policy YAML texts")
    if len(dry) > MAX_DRY_RUN_POLICIES:
        raise BadRequest(f"dry_run_policies: {len(dry)} given, at most {MAX_DRY_RUN_POLICIES}")
    return text, dry


def _policies(d: dict) -> tuple:
    text, dry_texts = _policy_texts(d)
    try:
        policy = parse_policy(text, source="policy") if text else DEFAULT_POLICY
        dry = tuple(replace(parse_policy(t, source=f"dry_run_policies[{i}]"), dry_run=True)
                    for i, t in enumerate(dry_texts))
    except PolicyError as exc:
        raise BadRequest(f"policy refused: {exc}") from None
    return policy, dry


def _numbers(d: dict, now: int) -> tuple:
    share = d.get("expected_share")
    if share is not None and (isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share < 1):
        raise BadRequest(f"expected_share: must be a number between 0 and 1, got {shown(share)}")
    started = d.get("started_at", now)
    if isinstance(started, bool) or not isinstance(started, int) or not 0 < started <= _TS_MAX:
        raise BadRequest(f"started_at: must be epoch milliseconds, got {shown(started)}")
    return share, started


def rollout_from_body(d: Any, now: int) -> Rollout:
    """The rollout a ``POST /v1/rollouts`` body asks for; :class:`BadRequest` says what is wrong."""
    if not isinstance(d, dict):
        raise BadRequest("body: must be a JSON object")
    _strings(d)
    policy, dry = _policies(d)
    share, started = _numbers(d, now)
    rid = d.get("id") or f"{d['app']}:{d['canary']}"
    try:
        return Rollout(rid, d["app"], d["canary"], d["baseline"], started, policy, share, None, dry)
    except RolloutError as exc:  # what the body's fields cannot show alone, e.g. two dry runs of one name
        raise BadRequest(str(exc)) from None


@auth.mutation
async def start_rollout(request: web.Request) -> web.Response:
    rollout = rollout_from_body(await read_body(request), now_ms(request))
    backend = backend_of(request)
    if rollout.id in backend.rollouts:
        # Never reuse an id: its verdict history (and latest verdict) belongs to that rollout.
        state = "is already running" if backend.rollouts[rollout.id].ended_at is None else "was used before"
        return error(409, f"rollout {rollout.id!r} {state}: choose another id, e.g. APP:RELEASE")
    await backend.publish_rollout(rollout)
    backend.rollouts[rollout.id] = rollout
    return json(summary(backend, rollout), status=201)


@auth.mutation
async def end_rollout(request: web.Request) -> web.Response:
    rollout = rollout_or_404(request)
    if isinstance(rollout, web.Response):
        return rollout
    if rollout.ended_at is not None:
        return error(409, f"rollout {rollout.id!r} has already ended")
    backend = backend_of(request)
    ended = replace(rollout, ended_at=now_ms(request))
    await backend.publish_rollout(ended)
    backend.rollouts[ended.id] = ended
    return json(summary(backend, ended))


@auth.mutation
async def add_override(request: web.Request) -> web.Response:
    rollout = rollout_or_404(request)
    if isinstance(rollout, web.Response):
        return rollout
    try:
        override = parse_override(await read_body(request), rollout.id, now_ms(request))
    except OverrideError as exc:
        return error(400, f"override refused: {exc}")
    if override.expires_at is not None and override.expires_at <= now_ms(request):
        return error(400, "override refused: expires_at: already expired")
    backend = backend_of(request)
    await backend.publish_override(override)
    backend.overrides.setdefault(rollout.id, []).append(override)
    return json(override.to_dict(), status=201)


ROUTES = [
    web.get("/v1/rollouts", list_rollouts),
    web.post("/v1/rollouts", start_rollout),
    web.get("/v1/rollouts/{id}", get_rollout),
    web.post("/v1/rollouts/{id}/end", end_rollout),
    web.get("/v1/rollouts/{id}/verdict", get_verdict),
    web.get("/v1/rollouts/{id}/verdicts", get_history),
    web.get("/v1/rollouts/{id}/overrides", get_overrides),
    web.post("/v1/rollouts/{id}/overrides", add_override),
]
