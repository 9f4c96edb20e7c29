"""Sentry envelopes (``@sentry/browser`` with ``browserTracingIntegration``), as its ``tunnel``
posts them: ``text/plain`` bodies of newline-delimited JSON, which
:func:`~streams.ingest.formats.body.parse_body` splits into one item per envelope item
(``{"sentry_envelope", "sentry_item", "payload"}``).

What an envelope item becomes:

* ``event`` with ``exception.values`` (a JS error) → a beacon with ``errors: 1``;
* ``span`` (span streaming, ``application/vnd.sentry.items.span.v2+json``: ``{"items": [...]}``)
  → per trace, a beacon with the web vitals its spans carry as attributes
  ``browser.web_vital.{lcp,fcp,ttfb,cls,inp}.value`` (ms, CLS a score); a ``pageload`` or
  ``navigation`` segment span is a page view even without them;
* without span streaming (SDK 8 to 10): ``transaction`` with ``contexts.trace.op`` ``pageload`` or
  ``navigation`` → a beacon with its ``measurements.{lcp,fcp,ttfb,cls,inp}.value``, and a v1
  standalone ``span`` (the INP's, ``measurements.inp``) → a beacon of its trace;
* anything else (``session``, ``sessions``, ``client_report``, ``attachment``, an event
  without an exception, spans of no page view) is not a page view: counted, not stored.

The page view (``view``) is the trace id: the SDK starts a trace per page load (and per
navigation) and keeps it until the next one, so the pageload segment, its web-vital spans
(``ui.webvital.lcp``, ``ui.webvital.cls``, the ``ui.interaction.click`` with the INP, sent on
hide) and an error thrown on that page (``contexts.trace.trace_id``) share it; one page load
arrives as several envelopes, and stage 1 joins them by it. A beacon is never made without
its view: an error event that names no trace is refused.

=========  ==========================================================================
canonical  Sentry
=========  ==========================================================================
view       span ``trace_id``; event ``contexts.trace.trace_id``, else the envelope's ``trace.trace_id``
release    event ``release`` / span attribute ``sentry.release``, else the envelope's ``trace.release``
app        the request's (Sentry has no app name: ``?app=`` on the tunnel URL)
page       path of event ``request.url`` / the segment span's ``url.full``
device,    from the User-Agent: event ``request.headers.User-Agent``, span attribute
browser    ``user_agent.original``
id         ``sentry-<event_id>``; ``sentry-<span_id>`` of the trace's first span in the item
=========  ==========================================================================

>>> from streams.ingest.formats.base import Context
>>> envelope = {"trace": {"release": "r2", "trace_id": "4eda4b04"}}
>>> lcp = {"span_id": "8ca9", "trace_id": "4eda4b04", "attributes": {
...     "browser.web_vital.lcp.value": {"value": 208, "type": "integer"}}}
>>> items = [{"sentry_envelope": envelope, "sentry_item": {"type": "span"}, "payload": {"items": [lcp]}},
...          {"sentry_envelope": envelope, "sentry_item": {"type": "session"}, "payload": {"sid": "9d"}}]
>>> out = convert(list(enumerate(items)), Context(received_at=1763856000123, app="shop-web"))
>>> out.beacons
[([0], {'id': 'sentry-8ca9', 'view': '4eda4b04', 'ts': 1763856000123, 'app': 'shop-web', 'release': 'r2', 'metrics': {'LCP': 208.0}})]
>>> out.ignored
[(1, "type: 'session' items are not page views", <RejectKind.NOT_A_PAGE_VIEW: 'not_a_page_view'>)]
"""

from __future__ import annotations

from typing import Any

from streams.ingest.formats.base import (
    Context,
    Converted,
    FormatError,
    RejectKind,
    field_at,
    make_beacon,
    number,
    ua_browser,
    ua_device,
)

__all__ = ["NAME", "detect", "convert"]

NAME = "Sentry"

_VITALS = {"lcp": "LCP", "fcp": "FCP", "ttfb": "TTFB", "cls": "CLS", "inp": "INP"}
_PAGE_VIEW_OPS = frozenset({"pageload", "navigation"})


def detect(item: Any) -> bool:
    """An envelope item as parse_body makes it: a ``sentry_item`` object (and no ``metrics``).

    ``metrics`` is checked because an item with a ``metrics`` object is plainly canonical
    (:func:`streams.ingest.formats._plainly_canonical`): the fast path takes it so.
    """
    return isinstance(item, dict) and isinstance(item.get("sentry_item"), dict) and "metrics" not in item


def _text(x: Any, limit: int = 128) -> str | None:
    return x if type(x) is str and 0 < len(x) <= limit else None


def _attribute(span: dict, name: str) -> Any:
    """A span attribute's value: v2's ``attributes`` (``{"value": ..., "type": ...}``), else
    v1's ``data`` (plain values), or None."""
    value = field_at(span, "attributes", name, "value")
    return field_at(span, "data", name) if value is None else value


def _measurements(obj: dict, where: str, metrics: dict[str, float]) -> None:
    """v1 spans' and transactions' ``measurements`` (``{"lcp": {"value": 208, "unit": ...}}``)."""
    found = obj.get("measurements")
    if not isinstance(found, dict):
        return
    for name, canonical in _VITALS.items():
        raw = field_at(found, name, "value")
        if raw is None:
            continue
        value = number(raw)
        if value is None:
            raise FormatError(f"{where}measurements.{name}.value: must be a number, got {type(raw).__name__}")
        metrics[canonical] = max(value, metrics.get(canonical, value))


def _event_beacon(item: dict, ctx: Context) -> dict[str, Any]:
    event = item.get("payload")
    if not isinstance(event, dict):
        raise FormatError(f"payload: an event must be a JSON object, got {type(event).__name__}")
    values = field_at(event, "exception", "values")
    if not isinstance(values, list) or not values:
        raise FormatError("exception: none (a message or another event, not a JS error)", RejectKind.NOT_A_PAGE_VIEW)
    trace_id = field_at(event, "contexts", "trace", "trace_id")
    if trace_id is None:
        trace_id = field_at(item.get("sentry_envelope"), "trace", "trace_id")
    if _text(trace_id) is None:
        raise FormatError("contexts.trace.trace_id: missing (an error must name its page view)")
    return _payload_beacon(item, event, trace_id, ctx, errors=1)


def _transaction_beacon(item: dict, ctx: Context) -> dict[str, Any]:
    """A pageload or navigation transaction (the SDK without span streaming, before 11)."""
    event = item.get("payload")
    if not isinstance(event, dict):
        raise FormatError(f"payload: a transaction must be a JSON object, got {type(event).__name__}")
    op = field_at(event, "contexts", "trace", "op")
    if type(op) is not str or op not in _PAGE_VIEW_OPS:
        shown = repr(op[:40]) if type(op) is str else "none"
        raise FormatError(f"contexts.trace.op: {shown} transactions are not page views (only pageload and navigation)",
                          RejectKind.NOT_A_PAGE_VIEW)
    trace_id = field_at(event, "contexts", "trace", "trace_id")
    if _text(trace_id) is None:
        raise FormatError("contexts.trace.trace_id: missing (a page view must have its view)")
    metrics: dict[str, float] = {}
    _measurements(event, "", metrics)
    return _payload_beacon(item, event, trace_id, ctx, metrics=metrics)


def _payload_beacon(item: dict, event: dict, trace_id: Any, ctx: Context, **counted: Any) -> dict[str, Any]:
    """The beacon of an event or transaction payload: its page view is its trace."""
    ua = field_at(event, "request", "headers", "User-Agent")
    event_id = _text(event.get("event_id"), 64)
    return make_beacon(
        ctx,
        id=f"sentry-{event_id}" if event_id else None,
        view=trace_id,
        release=event.get("release") or field_at(item.get("sentry_envelope"), "trace", "release"),
        page=field_at(event, "request", "url"),
        device=ua_device(ua),
        browser=ua_browser(ua),
        **counted,
    )


class _Trace:
    """What the spans of one trace in one span item say about its page view."""

    def __init__(self, first_span_id: Any) -> None:
        self.span_id = first_span_id
        self.metrics: dict[str, float] = {}
        self.page_view = False
        self.page: Any = None
        self.release: Any = None
        self.ua: Any = None


def _read_span(span: dict, where: str, trace: _Trace) -> None:
    for name, canonical in _VITALS.items():
        key = f"browser.web_vital.{name}.value"
        raw = _attribute(span, key)
        if raw is None:
            continue
        value = number(raw)
        if value is None:
            raise FormatError(f"{where}.attributes.{key}: must be a number, got {type(raw).__name__}")
        # CLS and INP only grow, and an LCP candidate replaces a smaller one: keep the largest
        trace.metrics[canonical] = max(value, trace.metrics.get(canonical, value))
    _measurements(span, f"{where}.", trace.metrics)
    trace.page_view = trace.page_view or bool(trace.metrics)
    op = _attribute(span, "sentry.op") or span.get("op")
    if span.get("is_segment") is True and type(op) is str and op in _PAGE_VIEW_OPS:
        trace.page_view = True
        trace.page = _attribute(span, "url.full")
    trace.release = trace.release or _attribute(span, "sentry.release")
    trace.ua = trace.ua or _attribute(span, "user_agent.original")


def _span_beacons(item: dict, ctx: Context) -> list[dict[str, Any]]:
    payload = item.get("payload")
    if isinstance(payload, dict) and "items" not in payload and "trace_id" in payload:
        spans: Any = [payload]  # a v1 standalone span (SDK 8 to 10: the INP's, on hide)
    else:
        spans = payload.get("items") if isinstance(payload, dict) else None
    if not isinstance(spans, list):
        raise FormatError("payload.items: must be an array of spans")
    traces: dict[str, _Trace] = {}
    for i, span in enumerate(spans):
        if not isinstance(span, dict):
            raise FormatError(f"payload.items[{i}]: must be an object, got {type(span).__name__}")
        trace_id = _text(span.get("trace_id"))
        if trace_id is None:
            raise FormatError(f"payload.items[{i}].trace_id: missing")
        trace = traces.get(trace_id)
        if trace is None:
            trace = traces[trace_id] = _Trace(span.get("span_id"))
        _read_span(span, f"payload.items[{i}]", trace)
    release = field_at(item.get("sentry_envelope"), "trace", "release")
    beacons = []
    for trace_id, trace in traces.items():
        if not trace.page_view:
            continue
        span_id = _text(trace.span_id, 64)
        beacons.append(make_beacon(
            ctx,
            id=f"sentry-{span_id}" if span_id else None,
            view=trace_id,
            release=trace.release or release,
            page=trace.page,
            device=ua_device(trace.ua),
            browser=ua_browser(trace.ua),
            metrics=trace.metrics,
        ))
    if not beacons:
        raise FormatError("spans: no web vital and no pageload or navigation segment", RejectKind.NOT_A_PAGE_VIEW)
    return beacons


def convert(items: list[tuple[int, Any]], ctx: Context) -> Converted:
    """Each envelope item on its own: an error event, or a span item's page views."""
    out = Converted()
    for index, item in items:
        kind = item["sentry_item"].get("type")
        try:
            if kind not in ("event", "span", "transaction"):
                shown = repr(kind[:40]) if type(kind) is str else f"a {type(kind).__name__}"
                raise FormatError(f"type: {shown} items are not page views", RejectKind.NOT_A_PAGE_VIEW)
            problem = item.get("payload_error")
            if problem is not None:
                raise FormatError(f"payload: {problem[:120] if type(problem) is str else 'not valid JSON'}")
            if kind == "event":
                beacons = [_event_beacon(item, ctx)]
            elif kind == "transaction":
                beacons = [_transaction_beacon(item, ctx)]
            else:
                beacons = _span_beacons(item, ctx)
        except FormatError as exc:
            out.refuse(index, str(exc), exc.kind)
            continue
        out.beacons.extend(([index], beacon) for beacon in beacons)
    return out
