"""Grafana Faro (``@grafana/faro-web-sdk`` with ``getWebInstrumentations()``): one JSON object
per request, ``{meta, measurements?, exceptions?, events?, logs?, traces?}``, sent as its
batch fills or the page hides (``application/json``). One request gives at most one beacon.

=========  ==========================================================================
canonical  Faro
=========  ==========================================================================
metrics    ``measurements[]`` of ``type: "web-vitals"``: ``values.{lcp,fcp,ttfb,inp,cls}``
           (ms, CLS a score; their ``delta`` and attribution values are not used)
errors     the number of ``exceptions[]``
view       the page load's ``faroNavigationId`` (below)
part       true for a request with neither a view nor TTFB (exceptions alone)
app        ``meta.app.name``, else the request's app
release    ``meta.app.version``, else the request's release
session    ``meta.session.id``
page       path of ``meta.page.url``
device     ``meta.browser.mobile`` true → mobile; else from ``meta.browser.userAgent``; false → desktop
browser    ``meta.browser.name``, else from ``meta.browser.userAgent``
id         ``faro-<id>`` of the first web-vitals measurement (web-vitals' own metric id)
=========  ==========================================================================

**The page view.** Faro's performance instrumentation gives every page load an id, the
``faroNavigationId`` of its ``faro.performance.navigation`` event, and keeps it in session
storage, from where each web-vitals measurement copies it into ``context.navigation_entry_id``:
it is unique per page load and the same in every request of it. ``meta.page.id`` is not (it
is set only by a ``generatePageId`` template, from the URL), nor is ``meta.session.id``. A
request's view is the navigation event's ``faroNavigationId`` when the request has one, else
the ``navigation_entry_id`` of its last measurement that names one. That order matters: a
measurement taken before the navigation event (FCP, on load) copies what session storage
held then, ``"unknown"`` on a tab's first page load, the previous page load's id on a later
one.

Faro sends a page load's data in whichever request is pending: FCP and TTFB with the
navigation event, an exception alone, LCP later, CLS and INP on hide; stage 1 joins them by
the view. Exceptions carry no navigation id, though (Faro 2.12), so a request of exceptions
only names no page view: its beacon has no ``view`` and is a ``part`` (as is any beacon
without a view and without TTFB), which stage 1 counts in its session's latest page view:
the error makes that page view erroring, once.

A request with neither a web-vitals measurement nor an exception (events, logs, traces
only) is not a page view: it is counted, not stored.

>>> from streams.ingest.formats.base import Context
>>> faro = {"meta": {"app": {"name": "shop-web", "version": "r2"}, "session": {"id": "onSixETVKj"},
...     "page": {"url": "https://shop.example/p/42?q=1"}, "browser": {"name": "Chrome", "mobile": False}},
...     "measurements": [{"type": "web-vitals", "values": {"lcp": 216, "delta": 216},
...                       "context": {"id": "v6-1-2", "navigation_entry_id": "d036aZpeWB"}}]}
>>> convert([(0, faro)], Context(received_at=1763856000123)).beacons
[([0], {'id': 'faro-v6-1-2', 'view': 'd036aZpeWB', 'ts': 1763856000123, 'app': 'shop-web', 'release': 'r2', 'session': 'onSixETVKj', 'page': '/p/42', 'device': 'desktop', 'browser': 'Chrome', 'metrics': {'LCP': 216.0}})]
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

__all__ = ["NAME", "detect", "convert", "convert_payload"]

NAME = "Faro"

_VITALS = {"lcp": "LCP", "fcp": "FCP", "ttfb": "TTFB", "inp": "INP", "cls": "CLS"}
_PARTS = ("measurements", "exceptions", "events", "logs", "traces")
_NAVIGATION_EVENT = "faro.performance.navigation"
_UNKNOWN = "unknown"  # Faro's word for an id it does not have


def detect(item: Any) -> bool:
    """A ``meta`` object and one of measurements, exceptions, events, logs or traces.

    Never with a ``metrics`` object: such an item is plainly canonical (the fast path
    takes it so, see :func:`streams.ingest.formats._plainly_canonical`).
    """
    return (isinstance(item, dict) and isinstance(item.get("meta"), dict) and "metrics" not in item
            and any(part in item for part in _PARTS))


def _id(x: Any) -> str | None:
    """A navigation id Faro really gave: a short string, not ``unknown``."""
    return x if type(x) is str and 0 < len(x) <= 128 and x != _UNKNOWN else None


def _list(payload: dict, name: str) -> list:
    value = payload.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise FormatError(f"{name}: must be an array, got {type(value).__name__}")
    return value


def _navigation_id(payload: dict) -> str | None:
    """The navigation event's ``faroNavigationId`` (the last, should there be several)."""
    found = None
    for event in _list(payload, "events"):
        if field_at(event, "name") == _NAVIGATION_EVENT:
            found = _id(field_at(event, "attributes", "faroNavigationId")) or found
    return found


def _device(browser: Any) -> str | None:
    mobile = field_at(browser, "mobile")
    if mobile is True:
        return "mobile"
    device = ua_device(field_at(browser, "userAgent"))  # a tablet says mobile: false
    return device or ("desktop" if mobile is False else None)


def convert_payload(payload: dict, ctx: Context) -> dict[str, Any]:
    """One beacon from one Faro request; FormatError names the field that prevents it."""
    metrics: dict[str, float] = {}
    first_id = view = None
    for i, measurement in enumerate(_list(payload, "measurements")):
        if field_at(measurement, "type") != "web-vitals":
            continue  # custom measurements: not web vitals
        values = measurement.get("values")
        if not isinstance(values, dict):
            raise FormatError(f"measurements[{i}].values: must be an object, got {type(values).__name__}")
        for name, canonical in _VITALS.items():
            if name not in values:
                continue
            value = number(values[name])
            if value is None:
                raise FormatError(f"measurements[{i}].values.{name}: must be a number, "
                                  f"got {type(values[name]).__name__}")
            # a metric reported twice (reportAllChanges) only grows: keep the largest
            metrics[canonical] = max(value, metrics.get(canonical, value))
        first_id = first_id or field_at(measurement, "context", "id")
        view = _id(field_at(measurement, "context", "navigation_entry_id")) or view
    view = _navigation_id(payload) or view
    errors = len(_list(payload, "exceptions"))
    if not metrics and not errors:
        raise FormatError("no web-vitals measurement and no exception (events, logs or traces only)",
                          RejectKind.NOT_A_PAGE_VIEW)
    meta = payload["meta"]
    browser = meta.get("browser")
    name = field_at(browser, "name")
    first_id = first_id if type(first_id) is str and 0 < len(first_id) <= 128 else None
    return make_beacon(
        ctx,
        id=f"faro-{first_id}" if first_id else None,
        view=view,
        part=True if view is None and "TTFB" not in metrics else None,
        app=field_at(meta, "app", "name"),
        release=field_at(meta, "app", "version"),
        session=field_at(meta, "session", "id"),
        page=field_at(meta, "page", "url"),
        device=_device(browser),
        browser=name if type(name) is str and name.strip() else ua_browser(field_at(browser, "userAgent")),
        metrics=metrics,
        errors=errors or None,
    )


def convert(items: list[tuple[int, Any]], ctx: Context) -> Converted:
    """Each request's payload on its own."""
    out = Converted()
    for index, payload in items:
        try:
            out.beacons.append(([index], convert_payload(payload, ctx)))
        except FormatError as exc:
            out.refuse(index, str(exc), exc.kind)
    return out
