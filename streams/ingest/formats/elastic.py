"""Elastic APM RUM (``@elastic/apm-rum``): the intake v2 NDJSON the agent posts (gzipped, which
the endpoint inflates), one event a line: ``{"metadata": …}`` first, then ``{"transaction": …}``,
``{"span": …}``, ``{"error": …}``, ``{"metricset": …}`` lines. A metadata line applies to the
lines after it in the same body. Intake v3 (``apiVersion: 3``) lines, with the agent's short
keys (``m``, ``x``, ``e``, …; LCP ``k.a.lp``, FCP ``k.a.fp``, TTFB ``k.a.fb``), are read the same.

=========  ==========================================================================
canonical  Elastic
=========  ==========================================================================
LCP, FCP   ``transaction.marks.agent.largestContentfulPaint``, ``.firstContentfulPaint``
TTFB       ``transaction.marks.agent.timeToFirstByte`` (ms since the navigation started)
CLS        ``transaction.experience.cls`` (``fid``, ``tbt``, ``longtask`` are not canonical)
errors     1 per ``error`` line
view       the page-load transaction's ``id`` (an error's ``transaction_id``)
app        ``metadata.service.name``, else the request's app
release    ``metadata.service.version``, else the request's release
session    ``transaction.session.id`` (with the agent's ``session: true``)
page       path of ``context.page.url``
id         ``elastic-<transaction.id>``, ``elastic-<error.id>``
=========  ==========================================================================

Only ``page-load`` transactions are page views. Their errors come in other requests (the
agent sends an error as it happens) and name the transaction they happened in: an error
with ``transaction_id`` and ``transaction.type: "page-load"`` gets that id as its view, and
stage 1 joins it to the page load. An error outside the page-load transaction (in a click's
``user-interaction`` transaction, or in none) names no page load: its beacon has no view and
stage 1 counts it as a page view of its own; dropping it would hide the JS error from the
gate.

Other transactions (``route-change``, ``user-interaction``, ``http-request``, custom), spans
and metricsets are not page views: counted, not stored. That includes ``page-exit``, which
carries the INP (``context.tags.inp_value``): the agent starts it as a transaction of its
own, with a trace id of its own, no session, and nothing that names the page load (only its
URL), and sends one each time the page is hidden. Its INP cannot be joined to its page view,
and as a page view of its own it would count one page load twice or more.

>>> from streams.ingest.formats.base import Context
>>> meta = {"metadata": {"service": {"name": "shop-web", "version": "r2", "agent": {"name": "rum-js"}}}}
>>> load = {"transaction": {"id": "e28f", "trace_id": "4cea", "type": "page-load",
...     "context": {"page": {"url": "https://shop.example/p/42?q=1"}}, "session": {"id": "f8bf"},
...     "marks": {"agent": {"largestContentfulPaint": 552, "firstContentfulPaint": 255}},
...     "experience": {"cls": 0.09375}}}
>>> convert([(0, meta), (1, load)], Context(received_at=1763856000123)).beacons
[([1], {'id': 'elastic-e28f', 'view': 'e28f', 'ts': 1763856000123, 'app': 'shop-web', 'release': 'r2', 'session': 'f8bf', 'page': '/p/42', 'metrics': {'LCP': 552.0, 'FCP': 255.0, 'CLS': 0.09375}})]
"""

from __future__ import annotations

from typing import Any

from streams.ingest.formats.base import Context, Converted, FormatError, RejectKind, field_at, make_beacon, number

__all__ = ["NAME", "detect", "convert"]

NAME = "Elastic APM"

_EVENTS = frozenset({"metadata", "transaction", "span", "error", "metricset"})
# Intake v3 (``apiVersion: 3``) sends the same events with short keys (the agent's compress.js)
_V3 = {"m": "metadata", "x": "transaction", "y": "span", "e": "error", "me": "metricset"}
_MARKS = (("LCP", "largestContentfulPaint"), ("FCP", "firstContentfulPaint"), ("TTFB", "timeToFirstByte"))
_PAGE_LOAD = "page-load"
_PAGE_EXIT = "page-exit"


def detect(item: Any) -> bool:
    """One intake v2 line: an object whose only key is metadata, transaction, span, error or
    metricset, holding an object."""
    if not isinstance(item, dict) or len(item) != 1:
        return False
    key, value = next(iter(item.items()))
    return (key in _EVENTS or key in _V3) and isinstance(value, dict)


def _id(x: Any) -> str | None:
    return x if type(x) is str and 0 < len(x) <= 128 else None


def _long(key: str, event: dict) -> tuple[str, dict]:
    """A v3 line's event in v2's names (only the fields read here), and its v2 key.

    A v3 field that is wrong is named by its v2 name in a reason (``marks.agent.…``).
    """
    if key not in _V3:
        return key, event
    g = lambda *path: field_at(event, *path)  # noqa: E731
    if key == "m":
        return "metadata", {"service": {"name": g("se", "n"), "version": g("se", "ve")}}
    if key == "x":
        return "transaction", {
            "id": g("id"), "trace_id": g("tid"), "type": g("t"), "context": {"page": {"url": g("c", "p", "url")}},
            "marks": {"agent": {"largestContentfulPaint": g("k", "a", "lp"), "firstContentfulPaint": g("k", "a", "fp"),
                                "timeToFirstByte": g("k", "a", "fb")}},
            "experience": {"cls": g("exp", "cls")}, "session": {"id": g("ses", "id")}}
    if key == "e":
        return "error", {"id": g("id"), "transaction_id": g("xid"), "transaction": {"type": g("x", "t")},
                         "context": {"page": {"url": g("c", "p", "url")}}}
    return _V3[key], event


def _value(obj: dict, where: str, *path: str) -> float | None:
    raw = field_at(obj, *path)
    if raw is None:
        return None
    value = number(raw)
    if value is None:
        raise FormatError(f"{where}.{'.'.join(path)}: must be a number, got {type(raw).__name__}")
    return value


def _page_load(tx: dict, metadata: dict | None, ctx: Context) -> dict[str, Any]:
    kind = tx.get("type")
    if kind == _PAGE_EXIT:
        raise FormatError("transaction.type: 'page-exit' names no page load (its INP cannot be joined to "
                          "its page view)", RejectKind.NOT_A_PAGE_VIEW)
    if kind != _PAGE_LOAD:
        shown = repr(kind[:40]) if type(kind) is str else "none"
        raise FormatError(f"transaction.type: {shown} transactions are not page views (only 'page-load')",
                          RejectKind.NOT_A_PAGE_VIEW)
    tx_id = _id(tx.get("id"))
    if tx_id is None:
        raise FormatError("transaction.id: missing")
    metrics = {name: _value(tx, "transaction", "marks", "agent", mark) for name, mark in _MARKS}
    metrics["CLS"] = _value(tx, "transaction", "experience", "cls")
    return make_beacon(
        ctx,
        id=f"elastic-{tx_id}",
        view=tx_id,
        app=field_at(metadata, "service", "name"),
        release=field_at(metadata, "service", "version"),
        session=field_at(tx, "session", "id"),
        page=field_at(tx, "context", "page", "url"),
        metrics={k: v for k, v in metrics.items() if v is not None},
    )


def _error(error: dict, metadata: dict | None, ctx: Context) -> dict[str, Any]:
    error_id = _id(error.get("id"))
    in_page_load = field_at(error, "transaction", "type") == _PAGE_LOAD
    return make_beacon(
        ctx,
        id=f"elastic-{error_id}" if error_id else None,
        view=_id(error.get("transaction_id")) if in_page_load else None,
        app=field_at(metadata, "service", "name"),
        release=field_at(metadata, "service", "version"),
        page=field_at(error, "context", "page", "url"),
        errors=1,
    )


def convert(items: list[tuple[int, Any]], ctx: Context) -> Converted:
    """The body's lines in order, each under the metadata line before it."""
    out = Converted()
    metadata: dict | None = None
    for index, line in items:
        key, event = _long(*next(iter(line.items())))
        try:
            if key == "metadata":
                metadata = event  # read by the lines that follow; a beacon's check judges its values
            elif key == "transaction":
                out.beacons.append(([index], _page_load(event, metadata, ctx)))
            elif key == "error":
                out.beacons.append(([index], _error(event, metadata, ctx)))
            else:
                raise FormatError(f"{key}: {key} events are not page views", RejectKind.NOT_A_PAGE_VIEW)
        except FormatError as exc:
            out.refuse(index, str(exc), exc.kind)
    return out
