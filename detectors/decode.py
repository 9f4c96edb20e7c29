"""Batch decoder: raw records (bytes) → one columnar :class:`BeaconBatch` plus rejects.

A record holds one beacon (a JSON object), a JSON array of beacons, or NDJSON. Many
records are decoded together, on two paths that give the same result:

* the typed path (:mod:`detectors.typed_decode`): msgspec decodes a record of valid canonical
  beacons straight into typed structs, and their fields into columns; no dict is built. It
  decides only records whose every beacon is valid, and leaves any other record whole to
* the general path: orjson's values, checked as columns with numpy when each record is one
  object (its fields taken out while parsing, so no beacon's dict outlives its record), else
  item by item; the rows a column check flags go through :func:`validate_beacon` one by one,
  which also writes their reasons. Every reject comes from this path.

Records are parsed one by one, never joined: joined bytes could pair two corrupt records
into valid JSON. Nothing in a batch raises: an invalid item comes back with its reason and
its own bytes, so the caller can send it to a dead-letter topic.

>>> result = decode_records([
...     b'{"ts": 1763856000123, "app": "shop-web", "release": "r2", "metrics": {"LCP": 2480.0}}',
...     b'[{"ts": 1763856000200, "app": "shop-web", "release": "r1", "errors": 2}, {"ts": "soon"}]',
...     b'not json',
... ])
>>> len(result.batch), [(r.record, r.item, r.reason) for r in result.rejects]
(2, [(1, 1, 'ts: must be an integer (epoch ms), got str'), (2, None, 'record: not valid JSON or NDJSON')])
>>> result.batch.metrics["LCP"].tolist()
[2480.0, nan]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from detectors.beacon import (
    _MAX_ERRORS,
    _MAX_STR,
    _TS_MAX,
    _TS_MIN,
    MAX_COHORT,
    MAX_VIEW,
    MAX_NAME,
    METRIC_LIMITS,
    METRICS,
    SEGMENTS,
    BeaconBatch,
    CohortKey,
    has_control,
    part_column,
    send_id,
    validate_beacon,
)
from detectors.typed_decode import decode_typed

__all__ = ["Reject", "DecodeResult", "decode_records", "decode_objects", "item_bytes"]

_EMPTY: dict = {}
_INT64_SAFE = 2**62
_NUMBER_TYPES = {int, float, type(None)}
_METRIC_NAMES = frozenset(METRICS)


@dataclass(frozen=True)
class Reject:
    """An item that could not be used: where it came from, its bytes, and why."""

    record: int  # index of the record in the input sequence
    item: int | None  # index inside the record (array or NDJSON line); None = whole record
    raw: bytes
    reason: str


@dataclass
class DecodeResult:
    """The valid beacons as a batch, the invalid items, and where each batch row came from.

    ``origin[i]`` is ``(record, item)`` of batch row ``i`` (item -1: the whole record), so
    a later stage that refuses a valid beacon (a window's cohort cap) can dead-letter it
    with its own bytes (:func:`item_bytes`).
    """

    batch: BeaconBatch
    rejects: list[Reject]
    origin: np.ndarray | None = None  # int64 [n, 2]

    def source_of(self, row: int) -> tuple[int, int | None]:
        """``(record, item)`` of batch row ``row`` (item None: the whole record)."""
        if self.origin is None:
            return row, None
        record, item = (int(x) for x in self.origin[row])
        return record, None if item < 0 else item


def item_bytes(record: bytes, item: int | None) -> bytes:
    """The bytes of one item of a record, as :class:`Reject` would carry them."""
    if item is None:
        return record
    try:
        value = orjson.loads(record)
    except orjson.JSONDecodeError:
        lines = [line for line in record.split(b"\n") if line.strip()]
        return lines[item]
    return orjson.dumps(value[item])


def _origin(pairs: Sequence[tuple[int, int | None]], bad: Iterable[int]) -> np.ndarray:
    """``(record, item)`` per kept row, item -1 for a whole record."""
    dropped = set(bad)
    return np.array([(r, -1 if i is None else i) for n, (r, i) in enumerate(pairs) if n not in dropped],
                    np.int64).reshape(-1, 2)


def decode_records(records: Sequence[bytes], *, typed: bool = True) -> DecodeResult:
    """Decode many raw records into one batch; see the module docstring.

    The typed path (:mod:`detectors.typed_decode`) decodes the records it can decide; the
    others, and every record when ``typed`` is False, take the general path. Both give the
    same result, row for row and reject for reject.
    """
    if not typed:
        return _decode_general(records)
    rows = decode_typed(records)
    if not len(rows):  # nothing decided, or nothing to decide: the general path, all of it
        return _decode_general(records)
    batch = _assemble(rows.ts, rows.app, rows.release, rows.device, rows.cohort, rows.metrics, rows.errors,
                      rows.session, rows.view, rows.id, rows.part, ids_sent=True)
    if not rows.undecided:
        return DecodeResult(batch, [], rows.origin)
    undecided = rows.undecided
    general = _decode_general([records[r] for r in undecided])
    rejects = [Reject(undecided[x.record], x.item, x.raw, x.reason) for x in general.rejects]
    if not len(general.batch):
        return DecodeResult(batch, rejects, rows.origin)
    origin = general.origin.copy()
    origin[:, 0] = np.array(undecided, np.int64)[origin[:, 0]]
    batch, origin = _merge(batch, rows.origin, general.batch, origin)
    return DecodeResult(batch, rejects, origin)


def _decode_general(records: Sequence[bytes]) -> DecodeResult:
    """The general path: orjson's values, checked by column or by :func:`validate_beacon`."""
    streamed = _stream_columns(records)
    if streamed is not None:  # the common case: one beacon object per record
        batch, bad = _finish(streamed, lambda row: orjson.loads(records[row]))
        kept = np.delete(np.arange(len(records), dtype=np.int64), [row for row, _ in bad])
        origin = np.stack([kept, np.full(kept.shape[0], -1, np.int64)], axis=1)
        return DecodeResult(batch, [Reject(row, None, records[row], reason) for row, reason in bad], origin)
    objs: list[Any] = []
    origin: list[tuple[int, int | None]] = []  # (record, item) of each object
    rejects: list[Reject] = []
    for r, record in enumerate(records):
        _decode_one(r, record, objs, origin, rejects)
    batch, bad = decode_objects(objs)
    for row, reason in bad:
        r, i = origin[row]
        rejects.append(Reject(r, i, orjson.dumps(objs[row]) if i is not None else records[r], reason))
    rejects.sort(key=lambda x: (x.record, -1 if x.item is None else x.item))
    return DecodeResult(batch, rejects, _origin(origin, (row for row, _ in bad)))


def _merge(a: BeaconBatch, a_origin: np.ndarray, b: BeaconBatch, b_origin: np.ndarray
           ) -> tuple[BeaconBatch, np.ndarray]:
    """Two batches of disjoint records as one, rows in record order, as one call would give them."""
    origin = np.concatenate([a_origin, b_origin])
    order = np.argsort(origin[:, 0], kind="stable")  # each record's rows are in one batch, in order
    idx = order.tolist()
    row_keys = [a.keys[k] for k in a.key.tolist()] + [b.keys[k] for k in b.key.tolist()]
    codes: dict[CohortKey, int] = {}
    key = [codes.setdefault(row_keys[i], len(codes)) for i in idx]
    session = [*(a.session or [None] * len(a)), *(b.session or [None] * len(b))]
    view = [*(a.view or [None] * len(a)), *(b.view or [None] * len(b))]
    part = np.concatenate([np.zeros(len(x), bool) if x.part is None else x.part for x in (a, b)])[order]
    batch = BeaconBatch(
        ts=np.concatenate([a.ts, b.ts])[order],
        key=np.array(key, np.int32),
        keys=list(codes),
        metrics={m: np.concatenate([a.metrics[m], b.metrics[m]])[order] for m in METRICS},
        errors=np.concatenate([a.errors, b.errors])[order],
        session=[session[i] for i in idx],
        view=[view[i] for i in idx],
        part=part if part.any() else None,
    )
    return batch, origin[order]


def _decode_one(r: int, record: bytes, objs: list, origin: list, rejects: list[Reject]) -> None:
    """Parse one record (object, array or NDJSON) into ``objs``, or reject it or its lines."""
    try:
        value = orjson.loads(record)
    except orjson.JSONDecodeError:
        lines = record.split(b"\n")
        if sum(1 for line in lines if line.strip()) < 2:
            rejects.append(Reject(r, None, record, "record: not valid JSON or NDJSON"))
            return
        items = [(number, line) for number, line in enumerate(lines, 1) if line.strip()]
        for i, (number, line) in enumerate(items):
            try:
                objs.append(orjson.loads(line))
                origin.append((r, i))
            except orjson.JSONDecodeError as exc:
                rejects.append(Reject(r, i, line, f"line {number}: not valid JSON ({exc.msg})"))
        return
    if type(value) is list:
        objs.extend(value)
        origin.extend((r, i) for i in range(len(value)))
    else:
        objs.append(value)
        origin.append((r, None))


def decode_objects(objs: list[Any]) -> tuple[BeaconBatch, list[tuple[int, str]]]:
    """Validate decoded JSON values as beacons, column by column.

    Returns the batch of valid beacons (input order kept) and ``(index, reason)`` for
    the others. Gives exactly the verdicts of :func:`validate_beacon` item by item.
    """
    if not objs or set(map(type, objs)) != {dict}:
        return _slow(objs)
    get = dict.get
    raw = tuple([get(o, name) for o in objs] for name in _FIELDS)
    return _finish(raw, objs.__getitem__)


def _finish(raw: tuple[list, ...], item: Callable[[int], Any]) -> tuple[BeaconBatch, list[tuple[int, str]]]:
    """Check raw columns; rows a column check flags are judged by :func:`validate_beacon`."""
    columns = _columns(raw)
    if columns is None:  # a column of unexpected types: take the item-by-item path
        return _slow([item(i) for i in range(len(raw[0]))])
    ts, app, release, device, cohort, metrics, errors, session, view, ids, part, suspect = columns
    bad: list[tuple[int, str]] = []
    if suspect.any():
        for row in np.flatnonzero(suspect):
            beacon, reason = validate_beacon(item(int(row)))
            if reason is not None:
                bad.append((int(row), reason))
            else:  # flagged by a coarse check but valid: keep it
                suspect[row] = False
        keep = ~suspect
        ts, errors = ts[keep], errors[keep]
        metrics = {m: v[keep] for m, v in metrics.items()}
        idx = np.flatnonzero(keep)
        app, release = [app[i] for i in idx], [release[i] for i in idx]
        session = [session[i] for i in idx]
        view = [view[i] for i in idx]
        ids = [ids[i] for i in idx]
        part = [part[i] for i in idx]
        device, cohort = [device[i] for i in idx], [cohort[i] for i in idx]
    return _assemble(ts, app, release, device, cohort, metrics, errors, session, view, ids, part), bad


def _assemble(ts: np.ndarray, app: list, release: list, device: list, cohort: list, metrics: dict[str, np.ndarray],
              errors: np.ndarray, session: list, view: list, ids: list, part: list, *,
              ids_sent: bool = False) -> BeaconBatch:
    """The batch of valid beacons' columns, as sent (a device of "" or None: unknown).

    ``ids_sent``: every id is a send id already (:func:`send_id` would keep it, or None).
    """
    codes: dict[tuple, int] = {}
    if "" in device or None in device:
        device = [d or "unknown" for d in device]
    key = [codes.setdefault(k, len(codes)) for k in zip(app, release, cohort, device)]
    keys = [CohortKey(*k) for k in codes]
    # what stage 1 joins a row by: its view, else its id (see Beacon)
    if all(view):
        joined = view
    else:
        joined = [v or i for v, i in zip(view, ids)] if ids_sent else [v or send_id(i) for v, i in zip(view, ids)]
    parts = part_column([p is True and not v for p, v in zip(part, view)]) if True in part else None
    return BeaconBatch(ts, np.array(key, np.int32), keys, metrics, errors, session, joined, parts)


_FIELDS = ("ts", "app", "release", "device", "cohort", "metrics", "errors", "session", "view", "id", "part")


def _stream_columns(records: Sequence[bytes]) -> tuple[list, ...] | None:
    """Raw columns of records that are each one JSON object; None for anything else.

    Taking the fields out while parsing lets each beacon's dict be freed at once, which
    is much cheaper than keeping thousands of dicts alive until a batch is checked.
    """
    if not records:
        return None
    columns = tuple([] for _ in _FIELDS)
    a_ts, a_app, a_rel, a_dev, a_coh, a_met, a_err, a_ses, a_view, a_id, a_part = (c.append for c in columns)
    loads = orjson.loads
    try:
        for record in records:
            obj = loads(record)
            if type(obj) is not dict:
                return None
            get = obj.get
            a_ts(get("ts"))
            a_app(get("app"))
            a_rel(get("release"))
            a_dev(get("device"))
            a_coh(get("cohort"))
            a_met(get("metrics"))
            a_err(get("errors"))
            a_ses(get("session"))
            a_view(get("view"))
            a_id(get("id"))
            a_part(get("part"))
    except orjson.JSONDecodeError:
        return None
    return columns


def _columns(raw: tuple[list, ...]):
    """Column arrays plus a mask of rows that need a closer look; None if types are off."""
    ts_list, app, release, device, cohort, ms, err_list, session, view, ids, part = raw
    n = len(ts_list)
    get = dict.get
    if set(map(type, ts_list)) != {int}:
        return None
    if max(ts_list) >= _INT64_SAFE or min(ts_list) <= -_INT64_SAFE:
        return None  # beyond int64: let the item path say why
    ts = np.array(ts_list, np.int64)
    suspect = (ts < _TS_MIN) | (ts > _TS_MAX)
    # Few distinct values per column: check each distinct value once.
    for column, required, limit, name in ((app, True, MAX_NAME, True), (release, True, MAX_NAME, True),
                                          (device, False, _MAX_STR, False), (cohort, False, MAX_COHORT, True),
                                          (view, False, MAX_VIEW, True)):
        if not set(map(type, column)) <= ({str} if required else {str, type(None)}):
            return None
        distinct = set(column)
        if any(_bad_string(v, required, limit, name) for v in distinct):
            suspect |= np.fromiter((_bad_string(v, required, limit, name) for v in column), bool, n)
    if not set(device) <= _DEVICE_VALUES:
        suspect |= np.fromiter((d not in _DEVICE_VALUES for d in device), bool, n)
    types = set(map(type, ms))
    if not types <= {dict, type(None)}:
        return None
    if type(None) in types:
        ms = [_EMPTY if x is None else x for x in ms]
    names = set().union(*ms)
    if not names <= _METRIC_NAMES:
        return None
    metrics: dict[str, np.ndarray] = {}
    for m in METRICS:
        if m not in names:
            metrics[m] = np.full(n, np.nan)
            continue
        column = [get(x, m) for x in ms]
        if not set(map(type, column)) <= _NUMBER_TYPES:
            return None
        try:
            values = np.array(column, np.float64)  # None becomes NaN
        except OverflowError:  # an integer too large for a float
            return None
        if int(np.count_nonzero(np.isnan(values))) != column.count(None):
            return None  # a NaN that was not an absent value: the item path refuses it
        suspect |= (values < 0) | (values > METRIC_LIMITS[m])
        metrics[m] = values
    types = set(map(type, err_list))
    if not types <= {int, type(None)}:
        return None
    if type(None) in types:
        err_list = [0 if e is None else e for e in err_list]
    if max(err_list) >= _INT64_SAFE or min(err_list) <= -_INT64_SAFE:
        return None  # beyond int64: let the item path say why
    errors = np.array(err_list, np.int64)
    suspect |= (errors < 0) | (errors > _MAX_ERRORS)
    if not set(map(type, session)) <= {str, type(None)}:
        return None
    if max(map(len, filter(None, session)), default=0) > _MAX_STR:
        suspect |= np.fromiter((s is not None and len(s) > _MAX_STR for s in session), bool, n)
    if not set(map(type, part)) <= {bool, type(None)}:
        suspect |= np.fromiter((p is not None and type(p) is not bool for p in part), bool, n)
    return ts, app, release, device, cohort, metrics, errors, session, view, ids, part, suspect


_DEVICE_VALUES = frozenset((*SEGMENTS, None))


def _bad_string(value: Any, required: bool, limit: int, name: bool) -> bool:
    """Whether a string column's value fails what :func:`validate_beacon` checks of it."""
    if value is None:
        return required
    return (required and not value.strip()) or len(value) > limit or (name and has_control(value))


def _slow(objs: Iterable[Any]) -> tuple[BeaconBatch, list[tuple[int, str]]]:
    good, bad = [], []
    for i, obj in enumerate(objs):
        beacon, reason = validate_beacon(obj)
        if beacon is None:
            bad.append((i, reason))
        else:
            good.append(beacon)
    return BeaconBatch.from_beacons(good), bad
