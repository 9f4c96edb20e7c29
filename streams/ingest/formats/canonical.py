"""Canonical beacons (``docs/architecture.md``, "Canonical beacon"): already in shape.

The gateway still stamps them: ``ts`` becomes the receive time (the sender's ``ts`` is kept
as ``client_ts``), ``app`` and ``release`` fall back to the request's, ``country`` is the
request's when it names one, and ``page`` loses any query string or fragment. Only the
canonical fields are kept (``id``, ``view``, ``part``, ``ts``, ``client_ts``, ``app``, ``release``, ``cohort``,
``session``, ``page``, ``device``, ``country``, ``browser``, ``metrics``, ``errors``): a
sender's other fields are dropped, so nothing unexpected (an IP, a full URL) travels on.
Values are not repaired: :func:`detectors.beacon.validate_beacon` judges them.

>>> from streams.ingest.formats.base import Context
>>> ctx = Context(received_at=1763856000123, release="r2", country="DE")
>>> convert([(0, {"ts": 1763855999000, "app": "shop-web", "page": "/cart?id=7",
...               "metrics": {"LCP": 2480.0}, "ip": "203.0.113.9"})], ctx).beacons
[([0], {'ts': 1763856000123, 'client_ts': 1763855999000, 'app': 'shop-web', 'release': 'r2', 'page': '/cart', 'country': 'DE', 'metrics': {'LCP': 2480.0}})]
"""

from __future__ import annotations

from typing import Any

from streams.ingest.formats.base import Context, Converted, make_beacon

__all__ = ["NAME", "detect", "convert", "convert_beacon"]

NAME = "canonical"

_KEYS = ("ts", "app", "release")
#: What a canonical beacon may hold (``client_ts``: a relay's, read when there is no ``ts``).
FIELDS = frozenset({"id", "view", "part", "ts", "client_ts", "app", "release", "cohort", "session", "page",
                    "device", "country", "browser", "metrics", "errors"})


def detect(item: Any) -> bool:
    """An object with a ``metrics`` object, or with ts, app or release and canonical fields only.

    Without a ``metrics`` object an item is known by its field names alone, so one field
    that is not canonical makes it another format's: a Sentry error event has a top-level
    ``release`` (and ``exception``, ``event_id``, ``contexts``), and taken for a beacon it
    would be a page view that never was. A web-vitals metric (``name`` and ``value``) is
    not one either, even when its sender added ``release`` or ``ts``.
    """
    if not isinstance(item, dict) or ("name" in item and "value" in item):
        return False
    metrics = item.get("metrics")
    if isinstance(metrics, dict):
        return True
    if isinstance(metrics, list):  # a web-vitals envelope
        return False
    return any(k in item for k in _KEYS) and FIELDS.issuperset(item)


def convert_beacon(obj: dict, ctx: Context) -> dict[str, Any]:
    metrics = obj.get("metrics")
    client_ts = obj.get("ts") if obj.get("ts") is not None else obj.get("client_ts")
    country = obj.get("country")
    out = make_beacon(
        ctx,
        id=obj.get("id"),
        view=obj.get("view"),
        part=obj.get("part"),
        client_ts=client_ts,
        app=obj.get("app"),
        release=obj.get("release"),
        cohort=obj.get("cohort"),
        session=obj.get("session"),
        page=obj.get("page"),
        device=obj.get("device"),
        browser=obj.get("browser"),
        metrics=dict(metrics) if isinstance(metrics, dict) else metrics,
        errors=obj.get("errors"),
    )
    if ctx.country is None and type(country) is str and 0 < len(country) <= 64:
        out["country"] = country  # e.g. a relay that did its own GeoIP
    return out


def convert(items: list[tuple[int, Any]], ctx: Context) -> Converted:
    """Each beacon on its own."""
    return Converted(beacons=[([index], convert_beacon(obj, ctx)) for index, obj in items])
