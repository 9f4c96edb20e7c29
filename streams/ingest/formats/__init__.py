"""Ingestion formats: request bodies and RUM SDK payloads → canonical beacons.

The contract, for the ingestion endpoint:

* :func:`parse_body` turns a body into items, or raises :class:`FormatError` (and only that)
  with a message that says where the body broke.
* :func:`to_canonical` turns items into canonical beacons and ``(item index, reason)`` for
  the items it could not use. It never raises, and every beacon it returns passes
  :func:`detectors.beacon.validate_beacon`. Its ``ts`` is the receive time; the client's
  own time is kept as ``client_ts``.

Everything here is pure: no I/O, no clock (the receive time comes in the :class:`Context`).

Each format is one module with ``NAME``, ``detect(item)`` and ``convert(items, ctx)``. An
item belongs to the first adapter of :data:`ADAPTERS` that detects it; the order keeps every
format unambiguous:

1. :mod:`~streams.ingest.formats.otel`: an object with a ``resourceLogs`` array (OTLP/JSON logs).
2. :mod:`~streams.ingest.formats.datadog`: a string ``type`` and a ``_dd`` object (Datadog RUM).
3. :mod:`~streams.ingest.formats.webvitals`: a ``metrics`` array (the snippet's envelope), or a
   web-vitals ``name`` and a ``value``.
4. :mod:`~streams.ingest.formats.boomerang`: only string values, with Boomerang's param names.
5. :mod:`~streams.ingest.formats.sentry`: a ``sentry_item`` object (an envelope item as
   :func:`parse_body` makes it).
6. :mod:`~streams.ingest.formats.elastic`: one key, ``metadata``, ``transaction``, ``span``,
   ``error`` or ``metricset``, holding an object (an intake v2 line).
7. :mod:`~streams.ingest.formats.faro`: a ``meta`` object and ``measurements``, ``exceptions``,
   ``events``, ``logs`` or ``traces``.
8. :mod:`~streams.ingest.formats.canonical`: a ``metrics`` object, or ``ts``/``app``/``release``
   and only canonical fields.

None of 5 to 7 takes an item with a ``metrics`` key, nor 1 to 4 one with a ``metrics`` object
and no ``resourceLogs``, ``type`` or ``name``: such an item is plainly canonical.

A reason starts with the format's name, then the field:

>>> ctx = Context(received_at=1763856000123, app="shop-web", release="r2")
>>> items = parse_body(b'[{"name":"TTFB","value":412.6,"id":"v5-1-1"},{"name":"LCP","value":2140.3,"id":"v5-1-2"},'
...                    b'{"name":"CLS","value":0.043,"id":"v5-1-4"},'
...                    b'{"name":"INP","value":-8,"id":"v5-1-3"}, 42]', "text/plain;charset=UTF-8")
>>> beacons, rejects = to_canonical(items, ctx)
>>> beacons
[{'id': 'v5-1-2', 'ts': 1763856000123, 'app': 'shop-web', 'release': 'r2', 'metrics': {'TTFB': 412.6, 'LCP': 2140.3, 'CLS': 0.043}}]
>>> for index, reason in rejects:
...     print(index, reason)
3 web-vitals: value: must be >= 0, got -8
4 unrecognised format: expected a canonical beacon, web-vitals metric, Boomerang, Datadog RUM view, OTLP log record, Sentry envelope, Elastic APM event or Faro payload
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, NamedTuple

from detectors.beacon import beacon_reason
from streams.ingest.formats import boomerang, canonical, datadog, elastic, faro, otel, sentry, webvitals
from streams.ingest.formats.base import Context, FormatError, RejectKind
from streams.ingest.formats.body import CONTEXT_PARAMS, parse_body

__all__ = [
    "ADAPTERS",
    "CONTEXT_PARAMS",
    "UNRECOGNISED",
    "Context",
    "Conversion",
    "FormatError",
    "MAX_REASON",
    "RejectKind",
    "TOO_DEEP",
    "convert_items",
    "detect",
    "parse_body",
    "to_canonical",
]

#: The format adapters, in detection order.
#: The three SDK formats added last come after the busy ones (web-vitals is most requests
#: that are not plainly canonical), so those are detected as fast as before.
ADAPTERS: tuple[ModuleType, ...] = (otel, datadog, webvitals, boomerang, sentry, elastic, faro, canonical)

UNRECOGNISED = (
    "unrecognised format: expected a canonical beacon, web-vitals metric, Boomerang, "
    "Datadog RUM view, OTLP log record, Sentry envelope, Elastic APM event or Faro payload"
)


def _plainly_canonical(item: Any) -> bool:
    """A ``metrics`` object and none of the keys the other formats are detected by.

    Most items are canonical beacons (the snippet sends them), so they skip the seven
    detectors before :mod:`~streams.ingest.formats.canonical`; what this accepts, those reject
    (Sentry, Elastic and Faro refuse any item with a ``metrics`` key). The fast path
    (:mod:`~streams.ingest.formats.fast`) takes exactly these items for canonical too.
    """
    return (type(item) is dict and type(item.get("metrics")) is dict and "resourceLogs" not in item
            and "type" not in item and "name" not in item)


def detect(item: Any) -> ModuleType | None:
    """The adapter that reads ``item``: the first of :data:`ADAPTERS` to detect it, or None."""
    if _plainly_canonical(item):
        return canonical
    for adapter in ADAPTERS:
        if adapter.detect(item):
            return adapter
    return None


#: The reason of a beacon with a value too deeply nested to be judged (or written in a reason).
TOO_DEEP = "a field's value is nested too deeply to be a beacon field"
#: The longest reason a beacon's check gives: it quotes the bad value, which the sender chose.
MAX_REASON = 300


def _beacon_reason(beacon: dict[str, Any]) -> str | None:
    """:func:`~detectors.beacon.beacon_reason`, for a beacon whose values came from a sender.

    Adapters pass values on unrepaired (``metrics``, ``errors``), and a reason quotes the
    bad value. One nested a thousand levels deep (JSON parsers take 1,024) cannot be quoted,
    since Python's repr raises RecursionError: that beacon gets :data:`TOO_DEEP`. A reason is
    cut to :data:`MAX_REASON` characters: a 60 KiB array in ``metrics.LCP`` would otherwise
    come back whole in the answer and in the dead-letter record's header.
    """
    try:
        reason = beacon_reason(beacon)
    except RecursionError:
        return TOO_DEEP
    if reason is not None and len(reason) > MAX_REASON:
        return reason[: MAX_REASON - 1] + "…"
    return reason


def _internal(adapter: ModuleType | None, exc: Exception) -> str:
    where = f"the {adapter.NAME} adapter" if adapter else "format detection"
    return f"internal error in {where}: {type(exc).__name__}: {exc}"[:300]


def to_canonical(
    items: list[Any], ctx: Context
) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """Convert items into canonical beacons; never raises.

    Returns the beacons (in the order of their first item) and ``(item index, reason)`` for
    every item that gave no beacon. Several items can make one beacon (a page's web-vitals
    metrics), one item several (an OTLP export), and a superseded Datadog view version
    none, without being reported. A beacon that fails
    :func:`~detectors.beacon.validate_beacon` is reported against each of its items.
    :func:`convert_items` gives the same, with the items that are not ours kept apart.
    """
    beacons, rejects, ignored = convert_items(items, ctx)
    rejects = rejects + [(index, reason) for index, reason, _ in ignored]
    rejects.sort(key=lambda pair: pair[0])
    return beacons, rejects


class Conversion(NamedTuple):
    """What :func:`convert_items` made of a request's items."""

    beacons: list[dict[str, Any]]
    rejects: list[tuple[int, str]]  # (item index, reason) of broken items
    ignored: list[tuple[int, str, RejectKind]]  # (item index, reason, kind) of valid items not ours


def convert_items(items: list[Any], ctx: Context) -> Conversion:
    """:func:`to_canonical`, with the rejects of items that are valid but not ours apart.

    Those (a Datadog action, a Boomerang XHR beacon, a bot; see :class:`RejectKind`) are in
    ``ignored`` with their kind; ``rejects`` holds the broken items only. Each list is in
    item order.
    """
    by_adapter: dict[ModuleType, list[tuple[int, Any]]] = {}
    rejects: list[tuple[int, str]] = []
    ignored: list[tuple[int, str, RejectKind]] = []
    for index, item in enumerate(items):
        try:
            adapter = detect(item)
        except Exception as exc:  # a bug here must not cost the whole request
            rejects.append((index, _internal(None, exc)))
            continue
        if adapter is None:
            rejects.append((index, UNRECOGNISED))
        else:
            by_adapter.setdefault(adapter, []).append((index, item))
    beacons: list[tuple[int, dict[str, Any]]] = []
    for adapter, group in by_adapter.items():
        try:
            converted = adapter.convert(group, ctx)
        except Exception as exc:
            rejects.extend((index, _internal(adapter, exc)) for index, _ in group)
            continue
        for sources, beacon in converted.beacons:
            reason = _beacon_reason(beacon)
            if reason is None:
                beacons.append((min(sources), beacon))
            else:
                rejects.extend((index, f"{adapter.NAME}: {reason}") for index in sources)
        rejects.extend((index, f"{adapter.NAME}: {reason}") for index, reason in converted.rejects)
        ignored.extend((index, f"{adapter.NAME}: {reason}", kind) for index, reason, kind in converted.ignored)
    beacons.sort(key=lambda pair: pair[0])
    rejects.sort(key=lambda pair: pair[0])
    ignored.sort(key=lambda triple: triple[0])
    return Conversion([beacon for _, beacon in beacons], rejects, ignored)
