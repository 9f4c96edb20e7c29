"""Request bodies → items: the JSON values or param dicts the format adapters read.

=====================================  ===============================================
content type                           body
=====================================  ===============================================
``application/json``, ``*+json``        one object or an array of items (NDJSON too)
``application/x-ndjson``               one JSON object per line
``text/plain``, none,                  what ``navigator.sendBeacon`` sends for a
``application/octet-stream``           string: JSON or NDJSON (or form params)
``application/x-www-form-urlencoded``  Boomerang's POST: one dict of string params
empty body                             Boomerang's GET: the query string is the beacon
=====================================  ===============================================

A malformed body raises :class:`FormatError` naming where it broke; nothing else is raised:

>>> parse_body(b'{"name": "LCP", "value": 2140.3}\\n{"name": "CLS", "value": 0.04}', "")
[{'name': 'LCP', 'value': 2140.3}, {'name': 'CLS', 'value': 0.04}]
>>> parse_body(b'{"a": 1}\\n{"b": 2}\\n{"c": ', "application/x-ndjson")
Traceback (most recent call last):
...
streams.ingest.formats.base.FormatError: line 3: not valid JSON (unexpected end of data at column 7)
>>> parse_body(b"", "", {"app": "shop-web", "u": "https://shop.example/", "t_done": "2267"})
[{'app': 'shop-web', 'u': 'https://shop.example/', 't_done': '2267'}]
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl

import orjson

from streams.ingest.formats.base import FormatError

__all__ = ["CONTEXT_PARAMS", "parse_body"]

#: Query params that are the request's context (``?app=``), not a beacon.
CONTEXT_PARAMS = frozenset({"app", "release"})

_JSON = frozenset({"application/json", "text/json"})
_NDJSON = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl",
                     "application/x-jsonlines", "application/jsonlines"})
_FORM = "application/x-www-form-urlencoded"
# What a body without a Content-Type arrives as: "" here, application/octet-stream from aiohttp.
_SNIFF = frozenset({"text/plain", "", "application/octet-stream"})
_BOM = b"\xef\xbb\xbf"
_MAX_FIELDS = 10_000
_NO_QUERY: Mapping[str, str] = MappingProxyType({})


class _LineError(FormatError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


def _kind(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _ndjson(body: bytes) -> list[Any]:
    items = []
    for n, line in enumerate(body.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise _LineError(n, f"line {n}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(value, dict):
            raise _LineError(n, f"line {n}: expected a JSON object, got {_kind(value)}")
        items.append(value)
    return items


def _json(body: bytes) -> list[Any]:
    """One JSON document, else NDJSON when the body has several lines and its first line parses."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        lines = [n for n, line in enumerate(body.split(b"\n"), 1) if line.strip()]
        if len(lines) > 1:
            try:
                return _ndjson(body)
            except _LineError as line_error:
                if line_error.line > lines[0]:  # the first line was JSON: so is the rest
                    raise
        raise FormatError(
            f"body: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return value
    raise FormatError(f"body: expected a JSON object or array, got {_kind(value)}")


def _form(body: bytes) -> list[Any]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"body: not valid UTF-8 (byte {exc.start})") from None
    if "=" not in text:
        raise FormatError("body: not form-encoded (no key=value pair)")
    try:
        pairs = parse_qsl(text, keep_blank_values=True, errors="strict", max_num_fields=_MAX_FIELDS)
    except UnicodeDecodeError:
        raise FormatError("body: a percent-encoded value is not valid UTF-8") from None
    except ValueError:
        raise FormatError(f"body: more than {_MAX_FIELDS} form fields") from None
    return [dict(pairs)]


def parse_body(body: bytes, content_type: str, query: Mapping[str, str] = _NO_QUERY) -> list[Any]:
    """Decode a request body into items (see the module docstring).

    Parameters
    ----------
    body
        The raw request body (already inflated if it was compressed).
    content_type
        The ``Content-Type`` header, parameters included (``text/plain;charset=UTF-8``);
        ``""`` (or aiohttp's ``application/octet-stream``) when there was none.
    query
        The query string's params. Used as the beacon when the body is empty (a Boomerang
        GET beacon); ``app`` and ``release`` alone are context, not a beacon.

    Raises
    ------
    FormatError
        The body cannot be decoded; the message names the line or the part that broke.
    """
    body = bytes(body)
    if body.startswith(_BOM):
        body = body[len(_BOM):]
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if not body.strip():
        params = {key: query[key] for key in query}
        if set(params) - CONTEXT_PARAMS:
            return [params]
        raise FormatError("body: empty, and the query string holds no beacon")
    try:
        if media == _FORM:
            return _form(body)
        if media in _NDJSON:
            return _ndjson(body)
        if media in _JSON or media.endswith("+json"):
            return _json(body)
        if media in _SNIFF:
            start = body.lstrip()[:1]
            return _form(body) if start not in (b"{", b"[") and b"=" in body else _json(body)
    except _LineError as exc:
        raise FormatError(str(exc)) from None
    raise FormatError(
        f"content-type: {media[:60]!r} is not supported (send application/json, "
        "application/x-ndjson, text/plain or application/x-www-form-urlencoded)"
    )
