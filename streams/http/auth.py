"""Who may call the API: ``Authorization: Bearer <RUMGATE_API_TOKEN>``.

A handler marked :func:`read` needs the token unless ``RUMGATE_API_READ_OPEN`` is true; one
marked :func:`mutation` always needs it, and is refused (403) when no token is configured.
Unmarked routes (``/healthz``, ``/metrics``, ``/v1/openapi.json``, ingestion) are open.
:func:`middleware` applies the marks before the handler runs. Flagger cannot send headers,
so its hooks check for themselves with :func:`hook_access`, which also takes the token as
``?token=`` or ``metadata.token``, and takes the hook token (``Auth.hook_token``) beside the
API token. The hook token opens the hooks and nothing else, so the one that must sit in a
Canary object (and, as ``?token=``, in Flagger's events when a call fails on the way) cannot
start, end or override rollouts through the API.

A refusal says what is wrong (no token given, the wrong one, none configured) and never
repeats what was sent: the token given may be the right one for another worker.
"""

from __future__ import annotations

import enum
import hmac
from dataclasses import dataclass

from aiohttp import web

from streams.http.replies import error

__all__ = ["AUTH", "Access", "Auth", "HookAccess", "access", "hook_access", "hook_refusal", "middleware", "mutation",
           "read", "refusal"]


@dataclass(frozen=True)
class Auth:
    token: str = ""  # RUMGATE_API_TOKEN; empty: no token configured
    read_open: bool = False  # RUMGATE_API_READ_OPEN
    #: Opens Flagger's hooks only (RUMGATE_HOOK_TOKEN); empty: the hooks take the API token alone.
    hook_token: str = ""


AUTH = web.AppKey("rumgate.auth", Auth)


class Access(enum.Enum):
    READ = "read"
    MUTATION = "mutation"


_MARK = "rumgate_access"


def read(handler):
    """Mark ``handler`` as a read (the handler itself is returned, unwrapped)."""
    setattr(handler, _MARK, Access.READ)
    return handler


def mutation(handler):
    """Mark ``handler`` as a mutation (the handler itself is returned, unwrapped)."""
    setattr(handler, _MARK, Access.MUTATION)
    return handler


def access(handler) -> Access | None:
    """How ``handler`` is marked; None for an open route."""
    return getattr(handler, _MARK, None)


def refusal(auth: Auth, request: web.Request, mutation: bool) -> web.Response | None:
    """The 401/403 answer to ``request``, or None when it may go on."""
    if not mutation and auth.read_open:
        return None
    if not auth.token:
        return error(403, "refused: no API token is configured on this worker (RUMGATE_API_TOKEN)"
                     + ("" if mutation else "; set RUMGATE_API_READ_OPEN=true to serve reads without one"))
    given = request.headers.get("Authorization", "")
    if not given:
        return error(401, "missing Authorization: Bearer <token>")
    scheme, _, value = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), auth.token.encode()):
        return error(403, "wrong token")
    return None


class HookAccess(enum.Enum):
    """How a hook call was let in (:func:`hook_access`)."""

    TOKEN = "token"  # a right token: reads, and a registration by the rollout hook
    OPEN = "open"  # no token, on a read-open worker: reads only
    UNCHECKED = "unchecked"  # no header or query token: look for metadata.token in the body


def _right(given: str, auth: Auth) -> bool:
    """Whether ``given`` is the API token or the hook token (an empty one is neither)."""
    tokens = [t for t in (auth.token, auth.hook_token) if t]
    # Compare with every configured token, so the time taken does not say which one matched.
    return any([hmac.compare_digest(given.encode(), t.encode()) for t in tokens])


_UNREAD = object()


def _body_token(body) -> object:
    """``metadata.token`` of a parsed hook body, None when it has none."""
    meta = body.get("metadata") if isinstance(body, dict) else None
    return meta.get("token") if isinstance(meta, dict) else None


def hook_access(request: web.Request, body=_UNREAD) -> HookAccess | web.Response:
    """Whether a hook call may go on, and how; or its 401/403.

    The token may come as ``Authorization: Bearer``, ``?token=`` or ``metadata.token`` (in
    ``body``, the parsed JSON, once read), each the API token or the hook token. Called
    before the body is read, it answers UNCHECKED when neither header nor query holds a
    token; called again with the body, it decides. A token given and wrong is refused as
    wrong (403, saying where it was), even on a read-open worker, and never repeated; with
    none, a read-open worker lets the call in for reads (OPEN)."""
    auth = request.config_dict[AUTH]
    header = request.headers.get("Authorization")
    query = request.query.get("token")
    given: list[tuple[str, object]] = []
    if header:
        scheme, _, value = header.partition(" ")
        given.append(("Authorization", value.strip() if scheme.lower() == "bearer" else None))
    if query is not None:
        given.append(("?token=", query))
    if body is not _UNREAD and _body_token(body) is not None:
        given.append(("metadata.token", _body_token(body)))
    if not (auth.token or auth.hook_token) and (given or not auth.read_open):
        return error(403, "refused: no API token is configured on this worker (RUMGATE_API_TOKEN, or "
                          "RUMGATE_HOOK_TOKEN for the hooks alone); set RUMGATE_API_READ_OPEN=true to serve "
                          "the hooks' reads without one")
    for _, value in given:
        if isinstance(value, str) and _right(value, auth):
            return HookAccess.TOKEN
    if given:
        where = given[-1][0]
        return error(403, "wrong token" if where == "Authorization" else f"wrong token ({where})")
    if body is _UNREAD:
        return HookAccess.UNCHECKED
    if auth.read_open:
        return HookAccess.OPEN
    return error(401, "missing Authorization: Bearer <token> (Flagger's hooks: ?token=<token> or "
                      "metadata.token, the hook token or the API token)")


def hook_refusal(request: web.Request, body=None) -> web.Response | None:
    """:func:`hook_access` as a refusal or None, ``body`` (the parsed JSON) already read."""
    access = hook_access(request, body=body)
    return access if isinstance(access, web.Response) else None


@web.middleware
async def middleware(request: web.Request, handler):
    wanted = access(request.match_info.handler)
    if wanted is not None:
        refused = refusal(request.config_dict[AUTH], request, mutation=wanted is Access.MUTATION)
        if refused is not None:
            return refused
    return await handler(request)
