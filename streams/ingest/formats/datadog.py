"""Datadog RUM events (DataDog/rum-events-format), as the browser SDK sends them: NDJSON, one
event per line, without a content type (``text/plain`` through a ``proxy``).

Durations are integer **nanoseconds** (→ ms); CLS is a unitless score; ``date`` is epoch ms.
Every event names its page view, ``view.id``: that is the beacon's ``view``, so whatever the
SDK splits a page view into (view updates, error events, several requests) is one page view.

=========  =============================================================================
canonical  view event field
=========  =============================================================================
view       ``view.id``
LCP        ``view.performance.lcp.timestamp``, else ``view.largest_contentful_paint``
INP        ``view.performance.inp.duration``, else ``view.interaction_to_next_paint``
CLS        ``view.performance.cls.score``, else ``view.cumulative_layout_shift``
FCP        ``view.performance.fcp.timestamp``, else ``view.first_contentful_paint``
TTFB       ``view.first_byte``
errors     ``view.error.count``, or the payload's ``error`` events of the view when more
app        ``service`` (or ``service:`` in ``ddtags``), else the request's app, else ``application.id``
release    ``version`` (or ``version:`` in ``ddtags``)
session    ``session.id``
page       path of ``view.url``
device     ``device.type`` mobile/desktop/tablet; tv, gaming_console, other → unknown
client_ts  ``date``
id         ``dd-<view.id>-<_dd.document_version>``; ``dd-error-<error.id>`` for errors alone
=========  =============================================================================

**View updates.** The SDK re-sends a view as it updates, with a growing
``_dd.document_version``, and flushes its batch on page hide and every 30 s. Of the versions
of one ``view.id`` in a payload only the highest is converted; the others are folded into it
(neither converted nor reported). A later payload's version is a beacon of its own (its id
names the version, so the endpoint does not drop it as a re-send) with the same ``view``.
Stage 1 keeps each metric's *first* value per view, so what counts is:

* a metric that first appears in a later version (INP after a late click) is counted;
* a metric's value is the one of the first version that had it. FCP and TTFB never change
  once set. LCP changes only until the first click, key press or hide (the SDK stops then),
  which is almost always before the first flush. CLS and INP can still grow after a flush
  that came while the page was open (a 30 s flush of a long page view): that growth is
  not counted.

Only the view's final update says ``view.is_active: false``, and the SDK sends that only
when the view *ends* (a route change, a bfcache restore, the session's end): a page that is
closed gets an update with ``is_active: true`` at unload and nothing after it (the
captured Datadog 7.16.2 page views end that way), so waiting for ``is_active: false`` would
lose CLS and INP of most page views. Every version's CLS and INP are sent.

**Errors.** An ``error`` event counts toward its view: folded into that view's beacon when the
payload has the view event too (the page view errs when either says so), else a beacon of
the view with ``errors`` and no metrics (the SDK can send a view's errors and its view event
in different requests). Events of another ``type`` (action, resource, long_task, vital),
synthetic and CI sessions (``session.type``) and ``device.type: bot`` are reported: they are
not real users' page views.

>>> from streams.ingest.formats.base import Context
>>> ctx = Context(received_at=1763856000123, release="r2")
>>> view = lambda version, lcp: {"type": "view", "service": "shop-web", "_dd": {
...     "document_version": version}, "view": {"id": "6c1b", "largest_contentful_paint": lcp}}
>>> error = {"type": "error", "service": "shop-web", "_dd": {}, "view": {"id": "6c1b"},
...          "error": {"id": "e1", "message": "boom"}}
>>> for sources, beacon in convert([(0, view(2, 2140300000)), (1, error), (2, view(7, 2480000000))], ctx).beacons:
...     print(sources, beacon)
[1, 2] {'id': 'dd-6c1b-7', 'view': '6c1b', 'ts': 1763856000123, 'app': 'shop-web', 'release': 'r2', 'metrics': {'LCP': 2480.0}, 'errors': 1}
>>> convert([(0, error)], ctx).beacons
[([0], {'id': 'dd-error-e1', 'view': '6c1b', 'ts': 1763856000123, 'app': 'shop-web', 'release': 'r2', 'metrics': {}, 'errors': 1})]
"""

from __future__ import annotations

from typing import Any

from streams.ingest.formats.base import Context, Converted, FormatError, RejectKind, make_beacon, number

__all__ = ["NAME", "detect", "convert", "convert_view", "convert_errors"]

NAME = "Datadog RUM"

_NOT_USERS = frozenset({"synthetics", "ci_test"})
_DEVICES = {"mobile": "mobile", "desktop": "desktop", "tablet": "tablet"}
_NS_PER_MS = 1_000_000
#: The event types that count toward a page view.
_USED = frozenset({"view", "error"})


def detect(item: Any) -> bool:
    """A RUM event: a string ``type`` and a ``_dd`` object (or a ``view`` object for ``type: view``)."""
    if not isinstance(item, dict) or type(item.get("type")) is not str:
        return False
    return isinstance(item.get("_dd"), dict) or (
        item["type"] == "view" and isinstance(item.get("view"), dict)
    )


def _get(obj: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _value(event: dict, paths: tuple[str, ...], scale: float) -> float | None:
    """The first present of ``paths`` divided by ``scale``; FormatError when not a number."""
    for path in paths:
        raw = _get(event, path)
        if raw is None:
            continue
        value = number(raw)
        if value is None:
            raise FormatError(f"{path}: must be a number, got {type(raw).__name__}")
        return value / scale
    return None


def _tag(event: dict, name: str) -> str | None:
    """``name`` from ``ddtags`` (``"env:prod,service:shop-web,version:1.2.3"``)."""
    tags = event.get("ddtags")
    if type(tags) is not str:
        return None
    for tag in tags.split(","):
        key, _, value = tag.strip().partition(":")
        if key == name and value:
            return value
    return None


def _version(event: dict) -> int:
    v = _get(event, "_dd.document_version")
    return v if type(v) is int else -1


def _real_user(event: dict) -> None:
    """FormatError (not a real user) for synthetic and CI sessions and bots."""
    session_type = _get(event, "session.type")
    if type(session_type) is str and session_type in _NOT_USERS:
        raise FormatError(f"session.type: {session_type!r} sessions are not real users", RejectKind.NOT_A_REAL_USER)
    if _get(event, "device.type") == "bot":
        raise FormatError("device.type: 'bot' is not a real user", RejectKind.NOT_A_REAL_USER)


def _beacon(event: dict, ctx: Context, *, id: str | None, metrics: dict, errors: Any) -> dict[str, Any]:  # noqa: A002
    """The beacon of ``event``'s view: its context fields, with ``metrics`` and ``errors``."""
    device = _get(event, "device.type")
    app = event.get("service") or _tag(event, "service")
    if app is None:
        app = ctx.app or _get(event, "application.id")
    return make_beacon(
        ctx,
        id=id,
        view=_get(event, "view.id"),
        client_ts=event.get("date"),
        app=app,
        release=event.get("version") or _tag(event, "version"),
        session=_get(event, "session.id"),
        page=_get(event, "view.url"),
        device=_DEVICES.get(device, "unknown") if type(device) is str else None,
        metrics=metrics,
        errors=errors,
    )


def convert_view(event: dict, ctx: Context, error_events: int = 0) -> dict[str, Any]:
    """One beacon from one view event (and ``error_events`` error events of its view in the
    same payload); FormatError names the field that prevents it."""
    _real_user(event)
    ns = float(_NS_PER_MS)
    metrics = {
        "LCP": _value(event, ("view.performance.lcp.timestamp", "view.largest_contentful_paint"), ns),
        "INP": _value(event, ("view.performance.inp.duration", "view.interaction_to_next_paint"), ns),
        "CLS": _value(event, ("view.performance.cls.score", "view.cumulative_layout_shift"), 1.0),
        "FCP": _value(event, ("view.performance.fcp.timestamp", "view.first_contentful_paint"), ns),
        "TTFB": _value(event, ("view.first_byte",), ns),
    }
    errors = _get(event, "view.error.count")
    # An error event the view's count does not include yet (it came after the update): the
    # page view errs if either says so. A count that is not a number is left for the
    # beacon check to name.
    if error_events and (errors is None or (type(errors) is int and errors < error_events)):
        errors = error_events
    version = _get(event, "_dd.document_version")
    view_id = _get(event, "view.id")
    return _beacon(
        event,
        ctx,
        # Each version its own id: a later payload's version is not a re-send of an earlier one.
        id=f"dd-{view_id}-{version}" if type(version) is int else f"dd-{view_id}",
        metrics={k: v for k, v in metrics.items() if v is not None},
        errors=errors,
    )


def convert_errors(events: list[dict], ctx: Context) -> dict[str, Any]:
    """The beacon of a view's error events when the payload has no view event of it: the view,
    its error count and no metrics. Its id is the first error's, so a re-sent payload dedupes."""
    first = events[0]
    error_id = _get(first, "error.id")
    return _beacon(first, ctx, id=f"dd-error-{error_id}" if type(error_id) is str and error_id else None,
                   metrics={}, errors=len(events))


def convert(items: list[tuple[int, Any]], ctx: Context) -> Converted:
    """Every view's highest ``_dd.document_version`` (the last one on a tie), with the view's
    error events; the errors of a view without a view event in the payload on their own."""
    out = Converted()
    latest: dict[str, tuple[int, dict]] = {}
    errors: dict[str, list[tuple[int, dict]]] = {}
    for index, event in items:
        view_id = _get(event, "view.id")
        if event["type"] not in _USED:
            out.refuse(index, f"type: {event['type'][:40]!r} events are not page views "
                              "(only 'view' and 'error' events are used)", RejectKind.NOT_A_PAGE_VIEW)
        elif type(view_id) is not str or not view_id:
            out.rejects.append((index, "view.id: missing"))
        elif event["type"] == "error":
            try:
                _real_user(event)
            except FormatError as exc:
                out.refuse(index, str(exc), exc.kind)
                continue
            errors.setdefault(view_id, []).append((index, event))
        elif view_id not in latest or _version(event) >= _version(latest[view_id][1]):
            latest[view_id] = (index, event)
    found: list[tuple[list[int], dict[str, Any]]] = []
    for view_id, (index, event) in latest.items():
        view_errors = errors.get(view_id, [])
        try:
            beacon = convert_view(event, ctx, len(view_errors))
        except FormatError as exc:
            out.refuse(index, str(exc), exc.kind)
            continue  # its error events still count, on their own below
        errors.pop(view_id, None)
        found.append((sorted([index] + [i for i, _ in view_errors]), beacon))
    for view_errors in errors.values():
        found.append(([i for i, _ in view_errors], convert_errors([e for _, e in view_errors], ctx)))
    found.sort(key=lambda pair: pair[0][0])
    out.beacons.extend(found)
    return out
