"""Datadog RUM view events (DataDog/rum-events-format ``view-schema.json``), as the browser
SDK sends them: NDJSON, one event per line, without a content type.

Durations are integer **nanoseconds** (→ ms); CLS is a unitless score; ``date`` is epoch ms.

=========  =============================================================================
canonical  view event field
=========  =============================================================================
LCP        ``view.performance.lcp.timestamp``, else ``view.largest_contentful_paint``
INP        ``view.performance.inp.duration``, else ``view.interaction_to_next_paint``
CLS        ``view.performance.cls.score``, else ``view.cumulative_layout_shift``
FCP        ``view.performance.fcp.timestamp``, else ``view.first_contentful_paint``
TTFB       ``view.first_byte``
errors     ``view.error.count``
app        ``service`` (or ``service:`` in ``ddtags``), else the request's app, else ``application.id``
release    ``version`` (or ``version:`` in ``ddtags``)
session    ``session.id``
page       path of ``view.url``
device     ``device.type`` mobile/desktop/tablet; tv, gaming_console, other → unknown
client_ts  ``date``
id         ``dd-<view.id>``
=========  =============================================================================

The SDK re-sends a view as it updates, with a growing ``_dd.document_version``: of the
versions of one ``view.id`` in a payload only the highest is converted, the others are
folded into it (neither converted nor reported). Events of another ``type`` (action,
resource, error, long_task, vital), synthetic and CI sessions (``session.type``) and
``device.type: bot`` are reported: they are not real users' page views.

>>> from streams.ingest.formats.base import Context
>>> ctx = Context(received_at=1763856000123, release="r2")
>>> view = lambda version, lcp: {"type": "view", "service": "shop-web", "_dd": {
...     "document_version": version}, "view": {"id": "6c1b", "largest_contentful_paint": lcp}}
>>> convert([(0, view(2, 2140300000)), (1, view(7, 2480000000))], ctx).beacons
[([1], {'id': 'dd-6c1b', 'ts': 1763856000123, 'app': 'shop-web', 'release': 'r2', 'metrics': {'LCP': 2480.0}})]
"""

from __future__ import annotations

from typing import Any

from streams.ingest.formats.base import Context, Converted, FormatError, RejectKind, make_beacon, number

__all__ = ["NAME", "detect", "convert", "convert_view"]

NAME = "Datadog RUM"

_NOT_USERS = frozenset({"synthetics", "ci_test"})
_DEVICES = {"mobile": "mobile", "desktop": "desktop", "tablet": "tablet"}
_NS_PER_MS = 1_000_000


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


def convert_view(event: dict, ctx: Context) -> dict[str, Any]:
    """One beacon from one view event; FormatError names the field that prevents it."""
    session_type = _get(event, "session.type")
    if type(session_type) is str and session_type in _NOT_USERS:
        raise FormatError(f"session.type: {session_type!r} sessions are not real users", RejectKind.NOT_A_REAL_USER)
    device = _get(event, "device.type")
    if device == "bot":
        raise FormatError("device.type: 'bot' is not a real user", RejectKind.NOT_A_REAL_USER)
    ns = float(_NS_PER_MS)
    metrics = {
        "LCP": _value(event, ("view.performance.lcp.timestamp", "view.largest_contentful_paint"), ns),
        "INP": _value(event, ("view.performance.inp.duration", "view.interaction_to_next_paint"), ns),
        "CLS": _value(event, ("view.performance.cls.score", "view.cumulative_layout_shift"), 1.0),
        "FCP": _value(event, ("view.performance.fcp.timestamp", "view.first_contentful_paint"), ns),
        "TTFB": _value(event, ("view.first_byte",), ns),
    }
    app = event.get("service") or _tag(event, "service")
    if app is None:
        app = ctx.app or _get(event, "application.id")
    return make_beacon(
        ctx,
        id=f"dd-{_get(event, 'view.id')}",
        client_ts=event.get("date"),
        app=app,
        release=event.get("version") or _tag(event, "version"),
        session=_get(event, "session.id"),
        page=_get(event, "view.url"),
        device=_DEVICES.get(device, "unknown") if type(device) is str else None,
        metrics={k: v for k, v in metrics.items() if v is not None},
        errors=_get(event, "view.error.count"),
    )


def convert(items: list[tuple[int, Any]], ctx: Context) -> Converted:
    """Every view's highest ``_dd.document_version`` (the last one on a tie), in payload order."""
    out = Converted()
    latest: dict[str, tuple[int, dict]] = {}
    for index, event in items:
        view_id = _get(event, "view.id")
        if event["type"] != "view":
            out.refuse(index, f"type: {event['type'][:40]!r} events are not page views (only 'view' events are used)",
                       RejectKind.NOT_A_PAGE_VIEW)
        elif type(view_id) is not str or not view_id:
            out.rejects.append((index, "view.id: missing"))
        elif view_id not in latest or _version(event) >= _version(latest[view_id][1]):
            latest[view_id] = (index, event)
    for index, event in sorted(latest.values(), key=lambda pair: pair[0]):
        try:
            out.beacons.append(([index], convert_view(event, ctx)))
        except FormatError as exc:
            out.refuse(index, str(exc), exc.kind)
    return out
