"""JSON answers, request bodies and the error middleware every route of the API shares.

Every error is JSON ``{"error": "..."}`` with a 4xx status that says what was wrong; a
handler may raise :class:`BadRequest` for a 400, and aiohttp's own refusals (unknown route,
wrong method, body too large) are turned into the same shape; a 405 keeps its ``Allow``
header (RFC 9110 requires it), so a client learns which methods the route has. A handler
that fails anyway answers a bare 500 and logs why, never a traceback to the client.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from aiohttp import web

__all__ = ["MAX_BODY", "BadRequest", "error", "errors", "json", "read_body", "shown"]

MAX_BODY = 256 * 1024

log = logging.getLogger("rumgate")


class BadRequest(Exception):
    """A 400 whose message is the exception's text."""


def shown(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters: a refusal names what it refused without
    sending a 200 KB field back to its sender."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status, dumps=lambda o: orjson.dumps(o).decode())


def json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


async def read_body(request: web.Request) -> Any:
    """The request's JSON body (``{}`` when empty); 413 past :data:`MAX_BODY`, 400 when not JSON."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length)
    raw = await request.read()
    if not raw:
        return {}
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body: not valid JSON ({exc.msg})") from None


@web.middleware
async def errors(request: web.Request, handler):
    try:
        return await handler(request)
    except BadRequest as exc:
        return error(400, str(exc))
    except web.HTTPRequestEntityTooLarge:
        return error(413, f"body larger than {MAX_BODY} bytes")
    except web.HTTPException as exc:
        if exc.status >= 400:
            return _refusal(exc)
        raise
    except Exception:  # noqa: BLE001 - a bug in one handler must not show a traceback or stop the API
        log.exception("%s %r: the handler failed", request.method, request.rel_url.path[:200])
        return error(500, "internal error (logged by the worker)")


def _refusal(exc: web.HTTPException) -> web.Response:
    answer = error(exc.status, exc.reason)
    if "Allow" in exc.headers:
        answer.headers["Allow"] = exc.headers["Allow"]
    return answer
