"""Request bodies → items: the JSON values or param dicts the format adapters read.

=====================================  ===============================================
content type                           body
=====================================  ===============================================
``application/json``, ``*+json``        one object or an array of items (NDJSON too)
``application/x-ndjson``               one JSON object per line
``text/plain``, none,                  what ``navigator.sendBeacon`` sends for a
``application/octet-stream``           string: JSON or NDJSON (or form params)
``application/x-www-form-urlencoded``  Boomerang's POST: one dict of string params
``application/x-sentry-envelope``,     a Sentry envelope: one item per envelope item
``text/plain`` with an envelope header  (what the SDK's ``tunnel`` sends), see below
empty body                             Boomerang's GET: the query string is the beacon
=====================================  ===============================================

A Sentry envelope is a header line (JSON), then per item an item header line (JSON, with a
``type`` and maybe a ``length`` in bytes) and its payload: ``length`` bytes when given (the
payload may hold newlines), else up to the next newline. Each envelope item becomes one item
``{"sentry_envelope": <header>, "sentry_item": <item header>, "payload": <JSON value>}``
(the payload is ``None`` when it is not JSON, with ``"payload_error"`` saying why), which
:mod:`~streams.ingest.formats.sentry` reads. A ``text/plain`` body is taken for an envelope
when its first line is an object with a ``dsn`` or ``sent_at`` and no ``type`` (an item
header and the other formats' NDJSON lines have other keys):

>>> body = (b'{"sent_at":"2026-12-07T11:27:33.684Z","dsn":"http://k@127.0.0.1/1"}\\n'
...         b'{"type":"event","length":33}\\n{"exception":{},\\n"level":"error"}\\n'
...         b'{"type":"session"}\\n{"sid":"9dd9"}')
>>> [(item["sentry_item"]["type"], item["payload"]) for item in parse_body(body, "text/plain;charset=UTF-8")]
[('event', {'exception': {}, 'level': 'error'}), ('session', {'sid': '9dd9'})]
>>> parse_body(b'{"dsn":"http://k@h/1"}\\n{"type":"event","length":99}\\n{}', "application/x-sentry-envelope")
Traceback (most recent call last):
...
streams.ingest.formats.base.FormatError: sentry envelope: line 2: item 1's length 99 runs past the end of the body (2 bytes left)

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
_ENVELOPE = "application/x-sentry-envelope"
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


def _is_envelope(body: bytes) -> bool:
    """Whether a sniffed body's first line is a Sentry envelope header.

    The substring test first: this runs on every ``text/plain`` body (sendBeacon's), and
    almost none is an envelope. A header is an object with a ``dsn`` or ``sent_at`` (the
    JavaScript SDK sets both) and no ``type``: item headers have one, and so have the NDJSON
    lines of Datadog; no other format's line has ``dsn`` or ``sent_at``.
    """
    end = body.find(b"\n")
    if end < 0 or (body.find(b'"dsn"', 0, end) < 0 and body.find(b'"sent_at"', 0, end) < 0):
        return False  # found without copying the body: most bodies end here
    if not body[end:].strip():
        return False
    try:
        header = orjson.loads(body[:end])
    except orjson.JSONDecodeError:
        return False
    return (isinstance(header, dict) and "type" not in header
            and (type(header.get("dsn")) is str or type(header.get("sent_at")) is str))


def _envelope_line(body: bytes, start: int) -> tuple[bytes, int]:
    """The line at ``start`` (without its newline) and where the next one starts."""
    end = body.find(b"\n", start)
    if end < 0:
        return body[start:], len(body)
    return body[start:end], end + 1


def _envelope(body: bytes) -> list[Any]:
    """A Sentry envelope's items (see the module docstring); FormatError names the line."""
    line_no = 1
    first, pos = _envelope_line(body, 0)
    try:
        header = orjson.loads(first)
    except orjson.JSONDecodeError as exc:
        raise FormatError(f"sentry envelope: line 1: header is not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(header, dict):
        raise FormatError(f"sentry envelope: line 1: header must be a JSON object, got {_kind(header)}")
    items: list[Any] = []
    while pos < len(body):
        line, after = _envelope_line(body, pos)
        line_no += 1
        if not line.strip():  # a blank line where an item header belongs: the trailing newline
            pos = after
            continue
        n = len(items) + 1
        try:
            item_header = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise FormatError(f"sentry envelope: line {line_no}: item {n}'s header is not valid JSON "
                              f"({exc.msg} at column {exc.colno})") from None
        if not isinstance(item_header, dict) or type(item_header.get("type")) is not str:
            got = _kind(item_header) if not isinstance(item_header, dict) else "none"
            raise FormatError(f"sentry envelope: line {line_no}: item {n}'s header must be an object with a "
                              f"string type, got {got}")
        length = item_header.get("length")
        if length is None:
            payload, pos = _envelope_line(body, after)
            line_no += 1
        elif type(length) is int and length >= 0:
            if after + length > len(body):
                raise FormatError(f"sentry envelope: line {line_no}: item {n}'s length {length} runs past the "
                                  f"end of the body ({len(body) - after} bytes left)")
            payload, pos = body[after:after + length], after + length
            line_no += 1 + payload.count(b"\n")
            if pos < len(body):  # the payload's own newline, which its length does not count
                if body[pos:pos + 1] == b"\n":
                    pos += 1
                elif body[pos:pos + 2] == b"\r\n":
                    pos += 2
                else:
                    raise FormatError(f"sentry envelope: line {line_no}: item {n}'s payload of {length} bytes "
                                      "is not followed by a newline")
        else:
            raise FormatError(f"sentry envelope: line {line_no}: item {n}'s length must be a non-negative "
                              f"integer, got {length!r:.40}")
        items.append(_envelope_item(header, item_header, payload))
    return items


def _envelope_item(header: dict, item_header: dict, payload: bytes) -> dict[str, Any]:
    item: dict[str, Any] = {"sentry_envelope": header, "sentry_item": item_header, "payload": None}
    content_type = item_header.get("content_type")
    if type(content_type) is str and "json" not in content_type.lower():
        return item  # an attachment, a replay recording: not JSON, and not what rumgate reads
    try:
        item["payload"] = orjson.loads(payload) if payload.strip() else None
    except orjson.JSONDecodeError as exc:
        # the item's own fault, not the envelope's: the other items are still read
        item["payload_error"] = f"not valid JSON ({exc.msg} at column {exc.colno})"
    return item


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
        if media == _ENVELOPE:
            return _envelope(body.lstrip())
        if media in _NDJSON:
            return _ndjson(body)
        if media in _JSON or media.endswith("+json"):
            return _json(body)
        if media in _SNIFF:
            start = body.lstrip()[:1]
            if start == b"{" and _is_envelope(body.lstrip()):
                return _envelope(body.lstrip())
            return _form(body) if start not in (b"{", b"[") and b"=" in body else _json(body)
    except _LineError as exc:
        raise FormatError(str(exc)) from None
    raise FormatError(
        f"content-type: {media[:60]!r} is not supported (send application/json, "
        "application/x-ndjson, text/plain, application/x-www-form-urlencoded or "
        "application/x-sentry-envelope)"
    )
