"""The typed decoding path: records decoded by msgspec straight into typed structs, then columns.

msgspec decodes each record (one object or a JSON array of them; NDJSON line by line) into
:class:`TypedBeacon` structs whose types and limits are checked in C, so no dict is built per
beacon and the Python left per beacon is reading its fields into columns. The few rules
msgspec cannot state (a name must not be blank nor hold control characters) are checked in
Python once per distinct value.

The typed path is an optimisation of :func:`detectors.decode.decode_records`, never a second
definition of a beacon. It accepts a record only when every beacon in it is valid, with
exactly the values the general path (``orjson.loads``, then
:func:`~detectors.beacon.validate_beacon`) would read; any other record is *undecided* and
left whole to the general path, which also words every reason. Undecided are:

* a record with any invalid beacon (every reject and its reason come from the general path);
* a field outside :data:`KNOWN_FIELDS` (a sender's own field could hold JSON that orjson
  refuses and msgspec, skipping it unread, would not: an invalid UTF-8 byte, ``1e400``);
* a known field the typed path does not take as it is: an ``id`` that
  :func:`~detectors.beacon.send_id` would drop (not a string, empty, too long), a
  ``client_ts`` that is not an integer, a ``page``, ``country`` or ``browser`` that is not a
  string (the general path ignores or drops them, and keeps the beacon);
* a JSON value that is not an object or an array of objects, nesting too deep to decode,
  and a record that does not decode as one JSON value unless it is NDJSON of typed lines
  that orjson, too, refuses as a whole.

>>> rows = decode_typed([
...     b'{"ts": 1763856000123, "app": "shop-web", "release": "r2", "metrics": {"LCP": 2480}}',
...     b'[{"ts": 1763856000200, "app": "shop-web", "release": "r1", "page": "/"}]',
...     b'{"ts": 1763856000300, "app": "shop-web", "release": "r1", "x": 1}',
...     b'{"ts": "soon"}',
... ])
>>> rows.ts.tolist(), rows.origin.tolist(), rows.undecided
([1763856000123, 1763856000200], [[0, -1], [1, 0]], [2, 3])
>>> rows.metrics["LCP"].tolist()
[2480.0, nan]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

import msgspec
import numpy as np
import orjson
from msgspec import Meta, Struct

from detectors.beacon import (
    _MAX_ERRORS,
    _MAX_STR,
    _TS_MAX,
    _TS_MIN,
    MAX_COHORT,
    MAX_NAME,
    MAX_VIEW,
    METRIC_LIMITS,
    has_control,
)

__all__ = ["KNOWN_FIELDS", "TypedBeacon", "TypedMetrics", "TypedRows", "decode_typed"]


def _metric(name: str) -> object:
    # null and absent are both "no value" for the general path; msgspec turns an integer into a float
    return Annotated[float, Meta(ge=0, le=METRIC_LIMITS[name])] | None


_ABSENT = math.nan  # a metric's default: numpy reads a column of floats faster than one with None


# gc=False: these structs hold only strings, numbers and TypedMetrics, so they can never be in
# a reference cycle; untracked, the thousands a batch allocates do not drive the cyclic collector.
class TypedMetrics(Struct, forbid_unknown_fields=True, gc=False):
    """A ``metrics`` object: the known metrics only, each a number within its limits, or null."""

    LCP: _metric("LCP") = _ABSENT
    INP: _metric("INP") = _ABSENT
    CLS: _metric("CLS") = _ABSENT
    FCP: _metric("FCP") = _ABSENT
    TTFB: _metric("TTFB") = _ABSENT


_Text = Annotated[str, Meta(max_length=_MAX_STR)]


class TypedBeacon(Struct, forbid_unknown_fields=True, gc=False):
    """A valid canonical beacon as msgspec checks it, the checks :func:`decode_typed` adds aside.

    The limits are :func:`~detectors.beacon.beacon_reason`'s; a value outside them fails to
    decode, and its record goes to the general path. The fields the core ignores are typed
    (strings, an integer) so that msgspec reads, and so checks, every byte of them.
    """

    ts: Annotated[int, Meta(ge=_TS_MIN, le=_TS_MAX)]
    app: Annotated[str, Meta(max_length=MAX_NAME)]
    release: Annotated[str, Meta(max_length=MAX_NAME)]
    device: Literal["mobile", "desktop", "tablet", "unknown", ""] | None = None  # "", null: unknown
    cohort: Annotated[str, Meta(max_length=MAX_COHORT)] | None = None
    metrics: TypedMetrics | None = None
    errors: Annotated[int, Meta(ge=0, le=_MAX_ERRORS)] | None = None
    session: _Text | None = None
    view: Annotated[str, Meta(max_length=MAX_VIEW)] | None = None
    id: Annotated[str, Meta(min_length=1, max_length=_MAX_STR)] | None = None  # else send_id() drops it
    part: bool | None = None
    # read and dropped: the ingestion gateway's business
    client_ts: int | None = None
    page: str | None = None
    country: str | None = None
    browser: str | None = None


#: The fields a typed beacon may have: those of a canonical beacon
#: (``streams.ingest.formats.canonical.FIELDS``, which ``tests/detectors/test_decode.py`` checks).
KNOWN_FIELDS: frozenset[str] = frozenset(TypedBeacon.__struct_fields__)

_RECORD = msgspec.json.Decoder(TypedBeacon | list[TypedBeacon])
_LINE = msgspec.json.Decoder(TypedBeacon)
_NO_METRICS = TypedMetrics()
_UNDECIDABLE = (msgspec.ValidationError, RecursionError)


@dataclass
class TypedRows:
    """The beacons of the records the typed path decided, as columns, and the records it left.

    ``origin[i]`` is ``(record, item)`` of row ``i`` (item -1: the record is one object), as
    :class:`~detectors.decode.DecodeResult` has it. ``device`` and ``view`` are as sent
    (``""`` or None for no device), as the general path's columns are before their batch is built.
    """

    ts: np.ndarray  # int64
    app: list[str]
    release: list[str]
    device: list[str | None]
    cohort: list[str | None]
    metrics: dict[str, np.ndarray]  # float64, NaN = absent
    errors: np.ndarray  # int64
    session: list[str | None]
    view: list[str | None]
    id: list[str | None]  # each one a send id already (see send_id)
    part: list[bool | None]
    origin: np.ndarray  # int64 [n, 2]
    undecided: list[int]  # records for the general path, in input order

    def __len__(self) -> int:
        return int(self.ts.shape[0])


def decode_typed(records: Sequence[bytes]) -> TypedRows:
    """Decode the records the typed path can decide; see the module docstring."""
    decode = _RECORD.decode
    try:  # the usual batch: records that each decode (then, most often, to one beacon each)
        values = [decode(record) for record in records]
    except (msgspec.DecodeError, RecursionError):  # (a ValidationError is a DecodeError)
        rows = _one_by_one(records)
    else:
        if list in set(map(type, values)):
            rows = _gather(list(enumerate(values)), [])
        else:
            n = len(values)
            rows = _columns(values, np.stack([np.arange(n, dtype=np.int64), np.full(n, -1, np.int64)], axis=1), [])
    refused = _refused(rows)
    if refused:
        rows = _drop(rows, refused)
    return rows


def _one_by_one(records: Sequence[bytes]) -> TypedRows:
    """Decode record by record: some record is not one typed beacon or an array of them."""
    values: list[tuple[int, TypedBeacon | list[TypedBeacon]]] = []
    undecided: list[int] = []
    decode = _RECORD.decode
    for r, record in enumerate(records):
        try:
            values.append((r, decode(record)))
        except _UNDECIDABLE:
            undecided.append(r)
        except msgspec.DecodeError:  # not one JSON value: NDJSON, or for the general path to refuse
            lines = _ndjson(record)
            if lines is None:
                undecided.append(r)
            else:
                values.append((r, lines))
    return _gather(values, undecided)


def _gather(values: list[tuple[int, TypedBeacon | list[TypedBeacon]]], undecided: list[int]) -> TypedRows:
    """Rows of ``(record, beacon or beacons)``: a list is an array's items or NDJSON's lines."""
    items: list[TypedBeacon] = []
    spans: list[tuple[int, int, bool]] = []  # (record, beacons, one object) per decided record
    for r, value in values:
        if type(value) is list:
            items.extend(value)
            spans.append((r, len(value), False))
        else:
            items.append(value)
            spans.append((r, 1, True))
    return _columns(items, _origin(spans), undecided)


def _ndjson(record: bytes) -> list[TypedBeacon] | None:
    """The beacons of an NDJSON record of two lines or more, each a typed beacon; else None."""
    lines = [line for line in record.split(b"\n") if line.strip()]  # blank as the general path has it
    if len(lines) < 2:
        return None
    try:
        orjson.loads(record)
    except orjson.JSONDecodeError:
        pass  # not one JSON value for orjson either, so the general path reads it line by line
    else:
        return None
    try:
        return [_LINE.decode(line) for line in lines]
    except (msgspec.DecodeError, *_UNDECIDABLE):
        return None


def _columns(items: list[TypedBeacon], origin: np.ndarray, undecided: list[int]) -> TypedRows:
    ms = [_NO_METRICS if b.metrics is None else b.metrics for b in items]
    metrics = {
        "LCP": np.array([m.LCP for m in ms], np.float64),  # NaN when absent, None (null) becomes NaN
        "INP": np.array([m.INP for m in ms], np.float64),
        "CLS": np.array([m.CLS for m in ms], np.float64),
        "FCP": np.array([m.FCP for m in ms], np.float64),
        "TTFB": np.array([m.TTFB for m in ms], np.float64),
    }
    errors = [b.errors for b in items]
    if None in errors:
        errors = [e or 0 for e in errors]
    return TypedRows(
        ts=np.array([b.ts for b in items], np.int64),
        app=[b.app for b in items],
        release=[b.release for b in items],
        device=[b.device for b in items],
        cohort=[b.cohort for b in items],
        metrics=metrics,
        errors=np.array(errors, np.int64),
        session=[b.session for b in items],
        view=[b.view for b in items],
        id=[b.id for b in items],
        part=[b.part for b in items],
        origin=origin,
        undecided=undecided,
    )


def _origin(spans: list[tuple[int, int, bool]]) -> np.ndarray:
    """``(record, item)`` per row from ``(record, beacons, one object)`` per decided record."""
    if not spans:
        return np.zeros((0, 2), np.int64)
    record, count, one = (np.array(x, np.int64) for x in zip(*spans))
    starts = np.cumsum(count) - count
    item = np.arange(int(count.sum()), dtype=np.int64) - np.repeat(starts, count)
    item[np.repeat(one.astype(bool), count)] = -1
    return np.stack([np.repeat(record, count), item], axis=1)


def _refused(rows: TypedRows) -> set[int]:
    """Records with a beacon the general path refuses for what msgspec does not check: a blank
    app or release, a control character in a name. Each distinct value is checked once."""
    bad_rows: set[int] = set()
    for column, required in ((rows.app, True), (rows.release, True), (rows.cohort, False), (rows.view, False)):
        bad = {v for v in set(column) if v is not None and ((required and not v.strip()) or has_control(v))}
        if bad:
            bad_rows.update(i for i, v in enumerate(column) if v in bad)
    return {int(rows.origin[i, 0]) for i in bad_rows}


def _drop(rows: TypedRows, records: set[int]) -> TypedRows:
    """``rows`` without the rows of ``records``, which become undecided."""
    keep = ~np.isin(rows.origin[:, 0], np.array(sorted(records), np.int64))
    idx = np.flatnonzero(keep).tolist()

    def take(column: list) -> list:
        return [column[i] for i in idx]

    return TypedRows(
        ts=rows.ts[keep], app=take(rows.app), release=take(rows.release), device=take(rows.device),
        cohort=take(rows.cohort), metrics={m: v[keep] for m, v in rows.metrics.items()},
        errors=rows.errors[keep], session=take(rows.session), view=take(rows.view), id=take(rows.id),
        part=take(rows.part), origin=rows.origin[keep], undecided=sorted({*rows.undecided, *records}),
    )
