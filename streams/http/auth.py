"""Who may call the API: ``Authorization: Bearer <RUMGATE_API_TOKEN>``.

A handler marked :func:`read` needs the token unless ``RUMGATE_API_READ_OPEN`` is true; one
marked :func:`mutation` always needs it, and is refused (403) when no token is configured.
Unmarked routes (``/healthz``, ``/metrics``, ``/v1/openapi.json``, ingestion) are open.
:func:`middleware` applies the marks before the handler runs. Flagger cannot send headers,
so its hooks check for themselves with :func:`hook_refusal`, which also takes ``?token=``.

A refusal says what is wrong (no token given, the wrong one, none configured) and never
repeats what was sent: the token given may be the right one for another worker.
"""

from __future__ import annotations

import enum
import hmac
from dataclasses import dataclass

from aiohttp import web

from streams.http.replies import error

__all__ = ["AUTH", "Access", "Auth", "access", "hook_refusal", "middleware", "mutation", "read", "refusal"]


@dataclass(frozen=True)
class Auth:
    token: str = ""  # RUMGATE_API_TOKEN; empty: no token configured
    read_open: bool = False  # RUMGATE_API_READ_OPEN


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


def hook_refusal(request: web.Request) -> web.Response | None:
    """A read's refusal, except that the right token as ``?token=`` is enough; a wrong one
    is called wrong (403), not missing: the URL carries a token, it is not the worker's."""
    auth = request.config_dict[AUTH]
    refused = refusal(auth, request, mutation=False)
    given = request.query.get("token")
    if refused is None or given is None or not auth.token:
        return refused
    if hmac.compare_digest(given.encode(), auth.token.encode()):
        return None
    return error(403, "wrong token (?token=)")


@web.middleware
async def middleware(request: web.Request, handler):
    wanted = access(request.match_info.handler)
    if wanted is not None:
        refused = refusal(request.config_dict[AUTH], request, mutation=wanted is Access.MUTATION)
        if refused is not None:
            return refused
    return await handler(request)
