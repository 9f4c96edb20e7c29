"""Rollouts that the deployment tool registers and ramps: ``PUT /v1/rollouts/{id}`` and
``POST /v1/rollouts/{id}/share``.

``PUT`` is what a deployment tool calls at every deploy without knowing whether it called
before (Argo Rollouts' first analysis step, a retried CI job): it creates the rollout once
and then answers with it, so the same call twice is one rollout. Its body names the app and
the release, as ``canary`` or as the ``image`` being deployed (its tag is the release), and
optionally the ``baseline``, the policy, the dry-run policies and the ``expected_share``.

* **A new rollout** (201) ends the app's other running rollouts, with ``end_reason``
  "superseded by ID" (``supersede: false`` keeps them): a deploy replaces the release that
  was being rolled out, so a day of deploys leaves one rollout running per app. Without a
  ``baseline`` the baseline is the release that the app's latest rollout left live
  (:func:`live_release`): its canary if it was promoted, else its baseline.
* **The same rollout again** (200) changes nothing, unless ``expected_share`` differs from
  the share in force: then the share changes from now on (a ramp step).
* **Another definition under the id** (another app or release, or a baseline or policy given
  that differs) is a 409 that says which field differs, never a second meaning for one id.

``POST /v1/rollouts/{id}/share`` with ``{"expected_share": 0.25}`` (and optionally ``at``)
changes the share alone, as ``rumgate rollout share`` does. The sample-ratio test compares
each window with the share in force over it and skips a window the change falls in
(:meth:`detectors.rollout.Rollout.share_for`).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from detectors.rollout import Rollout, RolloutError, check_share
from streams.http import auth
from streams.http.backend import Backend, backend_of, now_ms
from streams.http.replies import BadRequest, error, json, read_body, shown
from streams.http.rollouts import _TS_MAX, MAX_IMAGE, image_tag, rollout_from_body, rollout_or_404, summary

__all__ = ["ROUTES", "live_release", "supersede"]

_PUT_FIELDS = {"app", "canary", "image", "baseline", "policy", "expected_share", "dry_run_policies", "supersede"}


def live_release(backend: Backend, app: str) -> str | None:
    """The release the app's latest rollout left live: its canary once promoted, otherwise
    its baseline (rolled back, held at its deadline, or still running); None when the app
    has had no rollout."""
    rollouts = [r for r in backend.rollouts.values() if r.app == app]
    if not rollouts:
        return None
    last = max(rollouts, key=lambda r: (r.started_at, r.id))
    promoted = last.ended_at is not None and (backend.latest.get(last.id) or {}).get("verdict") == "promote"
    return last.canary if promoted else last.baseline


async def supersede(backend: Backend, rollout: Rollout, at: int) -> list[str]:
    """End the app's other running rollouts: ``rollout`` replaces them. Their ids."""
    ended = []
    for other in sorted(backend.rollouts.values(), key=lambda r: r.id):
        if other.app == rollout.app and other.id != rollout.id and other.ended_at is None:
            done = other.ended(max(at, other.started_at), f"superseded by {rollout.id}")
            await backend.publish_rollout(done)
            backend.rollouts[done.id] = done
            ended.append(done.id)
    return ended


def _release_of(d: dict) -> str:
    """The release a PUT body names: ``canary``, or the tag of ``image``."""
    canary, image = d.get("canary"), d.get("image")
    if (canary is None) == (image is None):
        raise BadRequest("give canary (the release) or image (whose tag is the release), one of them")
    if canary is not None:
        return canary  # checked with the other names by rollout_from_body
    if not isinstance(image, str) or not image.strip() or len(image) > MAX_IMAGE:
        raise BadRequest(f"image: must be an image reference of at most {MAX_IMAGE} characters")
    tag = image_tag(image)
    if tag is None:
        raise BadRequest(f"image: {shown(image)} has no tag: the tag is the release rumgate judges")
    return tag


def _start_body(d: Any, rid: str, backend: Backend) -> dict:
    """The PUT body as a ``POST /v1/rollouts`` body (baseline resolved), for its checks."""
    if not isinstance(d, dict):
        raise BadRequest("body: must be a JSON object, e.g. {\"app\": \"shop-web\", \"image\": \"...:2026.11.23-abc\"}")
    unknown = set(d) - _PUT_FIELDS
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(sorted(n[:40] for n in unknown)[:5])}")
    if not isinstance(d.get("supersede", True), bool):
        raise BadRequest("supersede: must be true or false")
    body = {k: v for k, v in d.items() if k not in ("image", "supersede")}
    body["id"], body["canary"] = rid, _release_of(d)
    if body.get("baseline") is None and isinstance(d.get("app"), str):
        body["baseline"] = live_release(backend, d["app"])
        if body["baseline"] is None:
            raise BadRequest(f"baseline: required, as app {d['app']!r} has had no rollout to tell which release "
                             "is live")
    return body


def _conflict(existing: Rollout, wanted: Rollout, d: dict) -> str | None:
    """What the body asks that the rollout under its id is not; None when it is that rollout.
    The baseline and the policy count only when given: a rollout CI started with its own
    policy is the one a deployment tool's bare registration names."""
    for field in ("app", "canary", "baseline"):
        have, want = getattr(existing, field), getattr(wanted, field)
        if have != want and (field != "baseline" or d.get("baseline") is not None):
            return f"rollout {existing.id!r} judges {field} {have!r}, not {want!r}: an id names one rollout"
    if d.get("policy") is not None and existing.policy.hash != wanted.policy.hash:
        return (f"rollout {existing.id!r} runs policy {existing.policy.name!r} ({existing.policy.hash[:19]}…), "
                f"not the policy given ({wanted.policy.name!r}, {wanted.policy.hash[:19]}…)")
    return None


@auth.mutation
async def register_rollout(request: web.Request) -> web.Response:
    rid = request.match_info["id"]
    backend = backend_of(request)
    d = await read_body(request)
    now = now_ms(request)
    wanted = rollout_from_body(_start_body(d, rid, backend), now)
    existing = backend.rollouts.get(rid)
    if backend.publish_rollout is None:
        return error(503, "this worker cannot publish rollouts")
    if existing is None:
        await backend.publish_rollout(wanted)
        backend.rollouts[rid] = wanted
        superseded = await supersede(backend, wanted, now) if d.get("supersede", True) else []
        return json({**summary(backend, wanted), "registered": "created", "superseded": superseded}, status=201)
    problem = _conflict(existing, wanted, d)
    if problem:
        return error(409, problem)
    share = wanted.expected_share
    if share is None or share == existing.share_now or existing.ended_at is not None:
        return json({**summary(backend, existing), "registered": "existing", "superseded": []})
    changed = existing.with_share(share, max(now, existing.share_changed_at))
    await backend.publish_rollout(changed)
    backend.rollouts[rid] = changed
    return json({**summary(backend, changed), "registered": "share changed", "superseded": []})


@auth.mutation
async def change_share(request: web.Request) -> web.Response:
    rollout = rollout_or_404(request)
    if isinstance(rollout, web.Response):
        return rollout
    d = await read_body(request)
    if not isinstance(d, dict) or set(d) - {"expected_share", "at"} or "expected_share" not in d:
        raise BadRequest("body: {\"expected_share\": a number between 0 and 1, \"at\": epoch ms (optional)}")
    if rollout.ended_at is not None:
        return error(409, f"rollout {rollout.id!r} has ended ({rollout.end_reason or 'by a person'})")
    at = d.get("at", now_ms(request))
    if isinstance(at, bool) or not isinstance(at, int) or not 0 < at <= _TS_MAX:
        raise BadRequest(f"at: must be epoch milliseconds, got {shown(at)}")
    last = rollout.share_changed_at
    if at < last:
        raise BadRequest(f"at: {at} is before the last change of the share ({last}): shares change in time order")
    try:
        changed = rollout.with_share(check_share(d["expected_share"]), at)
    except RolloutError as exc:
        raise BadRequest(str(exc)) from None
    backend = backend_of(request)
    if backend.publish_rollout is None:
        return error(503, "this worker cannot publish rollouts")
    await backend.publish_rollout(changed)
    backend.rollouts[changed.id] = changed
    return json(summary(backend, changed))


ROUTES = [
    web.put("/v1/rollouts/{id}", register_rollout),
    web.post("/v1/rollouts/{id}/share", change_share),
]
