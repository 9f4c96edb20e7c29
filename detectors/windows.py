"""Event-time tumbling windows with a watermark, and the per-cohort window summary.

A window ``[start, start + size)`` closes once the watermark (the largest event time
seen) passes ``start + size + allowed_lateness``. A beacon older than that is *late*:
it is counted in the window of the current watermark and in that summary's ``late``
counter, never dropped.

>>> import numpy as np
>>> from detectors.beacon import BeaconBatch, CohortKey
>>> key = CohortKey("shop-web", "r2", None, "mobile")
>>> def batch(ts, lcp):
...     return BeaconBatch(ts=np.array(ts, np.int64), key=np.zeros(len(ts), np.int32),
...         keys=[key], metrics={"LCP": np.array(lcp, float)}, errors=np.zeros(len(ts), np.int64))
>>> w = TumblingWindows(size_ms=5000, allowed_lateness_ms=3000)
>>> w.add(batch([1000, 2000, 7000], [1200.0, 2400.0, 900.0]))
[]
>>> closed = w.add(batch([10500], [1500.0]))       # watermark 10500 >= 0 + 5000 + 3000
>>> [(s.start, s.page_views) for s in closed]
[(0, 2)]
>>> late = w.add(batch([3000], [1800.0]))          # window 0 is closed: counted late, in 10000
>>> [(s.start, s.page_views, s.late) for s in w.flush()]
[(5000, 1, 0), (10000, 2, 1)]
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections import Counter
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from detectors.beacon import GOOD_LIMITS, METRICS, BeaconBatch, CohortKey
from detectors.sketch import DEFAULT_RELATIVE_ACCURACY, MIN_POSITIVE, LogSketch
from detectors.views import METRIC_BITS, PageViews, metric_bits

__all__ = ["DEFAULT_WINDOW_MS", "DEFAULT_LATENESS_MS", "DEFAULT_MAX_COHORTS", "DEFAULT_MAX_VIEWS_PER_SESSION",
           "RolloutReleases", "WindowSummary", "TumblingWindows", "window_start"]

DEFAULT_WINDOW_MS = 5_000
#: ``ts`` is the gateway's receive time, so lateness comes only from gateway batching and
#: partition skew, not from browser clocks: seconds, not minutes.
DEFAULT_LATENESS_MS = 5_000
#: Cohort keys (release × explicit cohort × device) one app may open per window on one
#: partition. A rollout needs a handful (two releases, four devices, a flag's two arms);
#: an app still serving many old releases a few dozen. Beyond it, a sender is inventing
#: names, and every name would cost a summary here and in the judge.
DEFAULT_MAX_COHORTS = 200
#: Page views one session may add to one window. People do not load four pages a second
#: for five seconds; a script does, and must not count as a crowd.
DEFAULT_MAX_VIEWS_PER_SESSION = 20


def window_start(ts: int | np.ndarray, size_ms: int) -> int | np.ndarray:
    """Start of the tumbling window holding ``ts`` (windows are aligned to epoch 0)."""
    return ts - ts % size_ms


@dataclass(eq=False)
class WindowSummary:
    """Everything the gate needs from one cohort in one window, mergeable across partitions.

    ``over_good[m]`` counts page views whose metric ``m`` is above its web-vitals "good"
    limit (CLS > 0.1, LCP > 2500 ms, ...); ``error_views`` counts page views with at least
    one JS error (not errors: bursts would break the rate test's independence).
    ``capped`` counts page views left out of every other count because their session had
    already sent :attr:`TumblingWindows.max_views_per_session` in this window: no person
    loads pages that fast, and one sender must not weigh as many users.
    """

    key: CohortKey
    start: int
    size_ms: int
    sketches: dict[str, LogSketch] = field(default_factory=dict)
    page_views: int = 0
    session_ids: set = field(default_factory=set)  # sessions seen in this window
    anonymous_views: int = 0  # page views without a session: each counts as its own user
    error_views: int = 0
    errors: int = 0
    over_good: dict[str, int] = field(default_factory=dict)
    late: int = 0
    capped: int = 0  # page views not counted: their session was over its cap in this window

    @classmethod
    def empty(cls, key: CohortKey, start: int, size_ms: int,
              relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY) -> WindowSummary:
        return cls(key, start, size_ms,
                   sketches={m: LogSketch(relative_accuracy) for m in METRICS},
                   over_good={m: 0 for m in METRICS})

    @property
    def sessions(self) -> int:
        """Distinct users of this window, as the sample-ratio check counts them."""
        return len(self.session_ids) + self.anonymous_views

    @property
    def end(self) -> int:
        return self.start + self.size_ms

    def add_counts(self, counts: _GroupCounts, g: int) -> None:
        """Add row ``g`` of counts made by :func:`_count_groups` for a whole batch."""
        self.page_views += int(counts.page_views[g])
        self.session_ids |= counts.session_sets[g]
        self.anonymous_views += int(counts.anonymous[g])
        self.error_views += int(counts.error_views[g])
        self.errors += int(counts.errors[g])
        self.late += int(counts.late[g])
        for m, (offset, buckets, zeros, over) in counts.metrics.items():
            if isinstance(buckets, _SparseBuckets):
                offset, row = buckets.row(g)
            else:
                row = buckets[g]
            self.sketches[m].add_counts(offset, row, zeros[g])
            self.over_good[m] += int(over[g])

    def to_dict(self) -> dict:
        """A JSON-able form; :meth:`from_dict` inverts it.

        Sketches travel as base64 of their binary codec, session ids as base64 of sorted
        64-bit hashes (distinct counts survive; the ids themselves never leave stage 1).

        >>> s = WindowSummary.empty(CohortKey("shop-web", "r2", None, "mobile"), 5000, 5000)
        >>> s.page_views, s.session_ids = 2, {"a", "b"}
        >>> t = WindowSummary.from_dict(orjson.loads(orjson.dumps(s.to_dict())))
        >>> t == s, t.sessions
        (True, 2)
        """
        return {
            "key": list(self.key), "start": self.start, "size_ms": self.size_ms,
            "page_views": self.page_views, "sessions": _pack_sessions(self.session_ids),
            "anonymous_views": self.anonymous_views, "error_views": self.error_views,
            "errors": self.errors, "late": self.late, "over_good": dict(self.over_good),
            "sketches": {m: base64.b64encode(sk.to_bytes()).decode() for m, sk in self.sketches.items()
                         if sk.count},
            # Only when some were capped: the usual record stays as it was, and one without
            # the field (an older stage 1) reads as none capped.
            **({"capped": self.capped} if self.capped else {}),
        }

    @classmethod
    def from_dict(cls, d: dict, relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY) -> WindowSummary:
        """Rebuild a summary from :meth:`to_dict`; raises ``ValueError`` (with why) on bad input."""
        try:
            out = cls.empty(CohortKey(*d["key"]), int(d["start"]), int(d["size_ms"]), relative_accuracy)
            out.page_views, out.anonymous_views = int(d["page_views"]), int(d["anonymous_views"])
            out.error_views, out.errors, out.late = int(d["error_views"]), int(d["errors"]), int(d["late"])
            out.session_ids = _unpack_sessions(d["sessions"])
            out.capped = int(d.get("capped", 0))
            out.over_good.update({m: int(n) for m, n in d["over_good"].items()})
            for m, text in d["sketches"].items():
                out.sketches[m] = LogSketch.from_bytes(base64.b64decode(text))
        except (KeyError, TypeError, binascii.Error) as exc:
            raise ValueError(f"not a window summary: {exc!r}") from None
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WindowSummary):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def merge(self, other: WindowSummary) -> None:
        """Add another summary of the same window (another partition, segment or release)."""
        if other.start != self.start or other.size_ms != self.size_ms:
            raise ValueError(f"cannot merge window {other.start} into window {self.start}")
        self.page_views += other.page_views
        self.session_ids |= other.session_ids
        self.anonymous_views += other.anonymous_views
        self.error_views += other.error_views
        self.errors += other.errors
        self.late += other.late
        self.capped += other.capped
        for m, sketch in other.sketches.items():
            self.sketches[m].merge(sketch)
        for m, n in other.over_good.items():
            self.over_good[m] += n


def _session_hash(sid: object) -> int:
    """Session ids travel as 64-bit hashes: 8 bytes each, whatever the SDK's id looks like."""
    if isinstance(sid, int):
        return sid  # already hashed (a summary that came off the wire)
    return int.from_bytes(_session_bytes(sid), "little")


def _session_bytes(sid: object) -> bytes:
    """:func:`_session_hash` as 8 little-endian bytes."""
    if isinstance(sid, int):
        return sid.to_bytes(8, "little")
    return hashlib.blake2b(str(sid).encode(), digest_size=8).digest()


def _pack_sessions(ids: set) -> str:
    # the digests joined and read as one array: no Python int per session
    try:
        raw = b"".join([_blake2b(s.encode(), digest_size=8).digest() for s in ids])  # stage 1's: all str
    except AttributeError:  # hashes off the wire (ints) among them
        raw = b"".join(map(_session_bytes, ids))
    hashed = np.frombuffer(raw, "<u8").astype(np.uint64)
    return base64.b64encode(np.sort(hashed).tobytes()).decode()


_blake2b = hashlib.blake2b


def _unpack_sessions(text: str) -> set:
    raw = base64.b64decode(text)
    if len(raw) % 8:
        raise ValueError("not a window summary: session hashes are not 8-byte aligned")
    return set(np.frombuffer(raw, np.uint64).tolist())


@dataclass
class _GroupCounts:
    """Per-group totals of one batch; ``metrics[m] = (offset, buckets[G, B], zeros[G], over[G])``."""

    page_views: np.ndarray
    session_sets: list[set]
    anonymous: np.ndarray
    error_views: np.ndarray
    errors: np.ndarray
    late: np.ndarray
    metrics: dict[str, tuple[int, np.ndarray, np.ndarray, np.ndarray]]


#: A batch's bucket counts are a dense (groups x buckets) table while it has at most this
#: many cells per value (plus a few); past that, with thousands of cohorts in a batch, the
#: table would be mostly zeros and cost memory and time per cell, so they are kept sparse.
_DENSE_CELLS_PER_VALUE, _DENSE_CELLS = 8, 1 << 16


class _SparseBuckets:
    """One metric's bucket counts of a batch as sorted (group, bucket) pairs: each group's
    row is built over its own bucket range only. A sketch holds the same counts either way
    (a dense row only adds empty buckets at its ends, which no sketch answer sees)."""

    def __init__(self, lo: int, span: int, n_groups: int, flat: np.ndarray) -> None:
        cells, self.counts = np.unique(flat, return_counts=True)
        group, self.bucket = np.divmod(cells, span)
        self.lo = lo
        self.bounds = np.searchsorted(group, np.arange(n_groups + 1)).tolist()

    def row(self, g: int) -> tuple[int, np.ndarray]:
        """``(offset, counts)`` of group ``g``, as :meth:`LogSketch.add_counts` takes them."""
        a, b = self.bounds[g], self.bounds[g + 1]
        if a == b:
            return self.lo, np.zeros(0, np.int64)
        first = int(self.bucket[a])
        row = np.zeros(int(self.bucket[b - 1]) - first + 1, np.int64)
        row[self.bucket[a:b] - first] = self.counts[a:b]
        return self.lo + first, row


def _group_rows(starts: np.ndarray, key: np.ndarray, n_keys: int) -> tuple[list[tuple[int, int]], np.ndarray]:
    """Number the (window, cohort) pairs of a batch: ``[(start, key code)]`` and each row's group."""
    n = max(n_keys, 1)
    unique, inverse = np.unique(starts.astype(np.int64) * n + key, return_inverse=True)
    return [(int(u // n), int(u % n)) for u in unique], inverse


def _count_groups(batch: BeaconBatch, group: np.ndarray, n_groups: int, late: np.ndarray,
                  log_gamma: float, joined: _Joined | None = None) -> _GroupCounts:
    """Count a whole batch per group with one vectorised pass per metric.

    Bucketing every value of a batch at once (instead of per window and cohort) keeps the
    number of numpy calls per batch small, which is what makes small windows cheap.
    With ``joined``, only the rows that start a page view count as page views (and their
    sessions and lateness), and only its ``error_view`` rows as erroring page views.
    """
    def per_group(weights: np.ndarray | None, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        return np.bincount(group[rows], weights, minlength=n_groups).astype(np.int64)

    metrics = {}
    for m, values in batch.metrics.items():
        present = ~np.isnan(values)
        if not present.any():
            continue
        positive = values > MIN_POSITIVE  # NaN compares False
        zeros = per_group(None, present & ~positive)
        over = per_group(None, values > GOOD_LIMITS[m])
        idx = np.ceil(np.log(values[positive]) / log_gamma).astype(np.int64)
        if idx.size:
            lo, span = int(idx.min()), int(idx.max() - idx.min() + 1)
            flat = group[positive] * span + (idx - lo)
            if n_groups * span <= _DENSE_CELLS_PER_VALUE * idx.size + _DENSE_CELLS:
                buckets = np.bincount(flat, minlength=n_groups * span).reshape(n_groups, span)
            else:  # many cohorts: a dense groups x span table would be mostly zeros
                buckets = _SparseBuckets(lo, span, n_groups, flat)
        else:
            lo, buckets = 0, np.zeros((n_groups, 0), np.int64)
        metrics[m] = (lo, buckets, zeros, over)
    if joined is None:
        page_views = per_group(None)
        error_views = per_group(None, batch.errors > 0)
        session_sets, anonymous = _sessions(batch.session, group, n_groups, page_views)
    else:
        page_views = per_group(None, joined.starts)
        error_views = per_group(None, joined.error_view)
        late = late & joined.starts
        session_sets, anonymous = _sessions(batch.session, group, n_groups, page_views, joined.starts)
    return _GroupCounts(
        page_views=page_views,
        session_sets=session_sets,
        anonymous=anonymous,
        error_views=error_views,
        errors=per_group(batch.errors.astype(np.float64)),
        late=per_group(late.astype(np.float64)),
        metrics=metrics,
    )


def _sessions(session: list | None, group: np.ndarray, n_groups: int,
              page_views: np.ndarray, starts: np.ndarray | None = None) -> tuple[list[set], np.ndarray]:
    """Per group: the set of session ids, and the page views that carry none (of the rows
    that start a page view, with ``starts``).

    The ids are sorted by group with numpy and each group's set built from one slice, so
    the Python work is a set per group rather than a step per row.
    """
    sets: list[set] = [set() for _ in range(n_groups)]
    if session is None:
        return sets, page_views
    ids = np.array(session, object) if len(session) else np.empty(0, object)
    if starts is not None:
        ids, group = ids[starts], group[starts]
    anonymous = np.equal(ids, None)
    named = np.flatnonzero(~anonymous)
    by_group = np.argsort(group[named], kind="stable")
    order = named[by_group]
    bounds = np.searchsorted(group[order], np.arange(n_groups + 1)).tolist()
    ordered = ids[order].tolist()
    for g in range(n_groups):
        if bounds[g] < bounds[g + 1]:
            sets[g] = set(ordered[bounds[g]:bounds[g + 1]])
    return sets, np.bincount(group[anonymous], minlength=n_groups).astype(np.int64)


@dataclass
class _Joined:
    """A batch's rows as :class:`~detectors.views.PageViews` saw them."""

    starts: np.ndarray  # bool: the row starts a page view (rows without a view always do)
    error_view: np.ndarray  # bool: the row makes its page view an erroring one
    nothing: np.ndarray  # bool: the row adds nothing its page view has not counted already, or is capped

    def rows(self, mask: np.ndarray) -> _Joined:
        return _Joined(self.starts[mask], self.error_view[mask], self.nothing[mask])


class RolloutReleases:
    """The canary and baseline releases of a live mapping of rollouts, as a container.

    Stage 1 does not judge rollouts, but the worker knows them (``rum.rollouts``); handing
    its mapping to :class:`TumblingWindows` as ``protected_releases`` keeps a running
    rollout's cohorts out of the cohort cap from the moment the rollout is recorded.
    """

    def __init__(self, rollouts: Mapping[str, Any]) -> None:
        self.rollouts = rollouts

    def __contains__(self, release: object) -> bool:
        return any(release == r.canary or release == r.baseline for r in self.rollouts.values()
                   if getattr(r, "ended_at", None) is None)


def _by_start(starts: np.ndarray, sessions: list) -> list[tuple[int, list]]:
    """The sessions of rows, split by window start (a batch spans one or two windows)."""
    distinct = np.unique(starts)
    if distinct.size == 1:
        return [(int(distinct[0]), sessions)]
    column = np.array(sessions, object)  # select with numpy, not a Python loop per row
    return [(int(u), column[starts == u].tolist()) for u in distinct]


def _rows(batch: BeaconBatch, mask: np.ndarray) -> BeaconBatch:
    """The rows of ``batch`` where ``mask`` is set (same keys)."""
    return BeaconBatch(
        ts=batch.ts[mask], key=batch.key[mask], keys=batch.keys,
        metrics={m: v[mask] for m, v in batch.metrics.items()}, errors=batch.errors[mask],
        session=None if batch.session is None else [s for s, k in zip(batch.session, mask.tolist()) if k],
        view=None if batch.view is None else [v for v, k in zip(batch.view, mask.tolist()) if k],
        part=None if batch.part is None else batch.part[mask],
    )


class TumblingWindows:
    """Assigns beacons to event-time windows per cohort key and closes them by watermark.

    Two caps keep one sender from costing memory or weighing as a crowd, and both depend
    only on the order of beacons, never on how they are batched:

    * ``max_cohorts``: an app opens at most this many cohort keys per window here. The
      beacons of a key beyond it are refused, with a reason, in :attr:`rejected` (the
      caller dead-letters them). Keys of a ``protected_releases`` release with no explicit
      cohort or a ``canary``/``baseline`` one (a running rollout's) are always admitted and
      not counted, so invented releases cannot crowd a rollout out; without protection the
      first keys to arrive in a window are the ones kept.
    * ``max_views_per_session``: a session's page views in a window beyond it are not
      counted, only added to the summary's ``capped`` (page views without a session are
      not capped: each counts as its own user). A capped page view's later beacons are
      not counted either.

    None turns a cap off. ``views`` joins the beacons of one page view (their ``view``) so
    that it counts once (:mod:`detectors.views`); None counts every beacon as a page view.
    """

    def __init__(self, size_ms: int = DEFAULT_WINDOW_MS,
                 allowed_lateness_ms: int = DEFAULT_LATENESS_MS,
                 relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY, *,
                 max_cohorts: int | None = DEFAULT_MAX_COHORTS,
                 max_views_per_session: int | None = DEFAULT_MAX_VIEWS_PER_SESSION,
                 protected_releases: Iterable[str] = (), views: PageViews | None = None) -> None:
        if int(size_ms) != size_ms or size_ms <= 0:
            raise ValueError(f"window size must be a whole number of ms > 0, got {size_ms!r}")
        if int(allowed_lateness_ms) != allowed_lateness_ms or allowed_lateness_ms < 0:
            raise ValueError(f"allowed lateness must be a whole number of ms >= 0, got {allowed_lateness_ms!r}")
        for name, cap in (("max_cohorts", max_cohorts), ("max_views_per_session", max_views_per_session)):
            if cap is not None and (int(cap) != cap or cap < 1):
                raise ValueError(f"{name} must be a whole number >= 1 or None, got {cap!r}")
        self.max_cohorts = max_cohorts
        self.views = views
        self.max_views_per_session = max_views_per_session
        # A set or a RolloutReleases is read live: a rollout recorded later protects its releases from then on.
        self.protected_releases: Container[str] = (
            protected_releases if isinstance(protected_releases, (set, frozenset, RolloutReleases))
            else frozenset(protected_releases))
        self.rejected: list[tuple[int, str]] = []  # (row of the last batch, reason)
        self._cohorts: dict[tuple[int, str], int] = {}  # (start, app) -> unprotected keys open
        self._views: dict[int, Counter] = {}  # start -> page views per session
        self.size_ms = int(size_ms)
        self.allowed_lateness_ms = int(allowed_lateness_ms)
        self.relative_accuracy = relative_accuracy
        self._log_gamma = LogSketch(relative_accuracy).log_gamma
        self.watermark: int | None = None
        self.closed_before: int | None = None  # windows starting before this are closed
        self.late_total = 0
        self._open: dict[tuple[int, CohortKey], WindowSummary] = {}

    def add(self, batch: BeaconBatch) -> list[WindowSummary]:
        """Count a batch; return the summaries of the windows this batch's watermark closed.

        Lateness is decided beacon by beacon against the watermark of everything *before*
        it, so how records are cut into batches never changes which window a beacon is
        counted in: a replay, or a restart from a checkpoint, counts exactly as the live run.
        """
        self.rejected = []
        if len(batch) == 0:
            return []
        ts = batch.ts
        before = np.maximum.accumulate(ts)
        if self.watermark is not None:
            before = np.maximum(before, self.watermark)
        seen = np.empty_like(before)  # the watermark just before each beacon
        seen[1:] = before[:-1]
        seen[0] = ts[0] if self.watermark is None else self.watermark
        self.watermark = int(before[-1])
        starts = window_start(ts, self.size_ms)
        closed = self._closed_before(seen)
        if self.closed_before is not None:
            closed = np.maximum(closed, self.closed_before)
        late = starts < closed
        if late.any():
            # A late beacon joins the window of the watermark it arrived at.
            starts = np.where(late, window_start(seen, self.size_ms), starts)
        groups, cohorts = _group_rows(starts, batch.key, len(batch.keys))
        keep = self._admit(batch, starts, groups, cohorts)
        joined = None
        if self.views is not None and batch.view is not None:
            batch, joined = self._join(batch, seen, keep)
        if joined is None and batch.part is not None:  # parts are no page views, joined or not
            joined = _Joined(~batch.part, batch.errors > 0, np.zeros(len(batch), bool))
        capped = self._cap_sessions(batch, starts, keep if joined is None else keep & joined.starts)
        count = keep & ~capped
        if capped.any():
            for row in np.flatnonzero(capped).tolist():
                self._summary(int(starts[row]), batch.keys[batch.key[row]]).capped += 1
            if joined is not None and self.views is not None:
                self._cap_views(batch, capped, joined)
        if joined is not None:
            count &= ~joined.nothing
        if not count.all():
            batch, starts, late = _rows(batch, count), starts[count], late[count]
            joined = None if joined is None else joined.rows(count)
            groups, cohorts = _group_rows(starts, batch.key, len(batch.keys))
        self.late_total += int(late.sum() if joined is None else (late & joined.starts).sum())
        if len(batch):
            counts = _count_groups(batch, cohorts, len(groups), late, self._log_gamma, joined)
            for g, (start, code) in enumerate(groups):
                self._summary(start, batch.keys[code]).add_counts(counts, g)
        return self._close(int(self._closed_before(self.watermark)))

    def _join(self, batch: BeaconBatch, seen: np.ndarray, keep: np.ndarray) -> tuple[BeaconBatch, _Joined | None]:
        """The batch with the metrics its page views have counted already left out (NaN),
        and which rows start a page view or make it erroring (:mod:`detectors.views`)."""
        joins = (np.ones(len(batch), bool) if None not in batch.view
                 else np.fromiter((v is not None for v in batch.view), bool, len(batch)))
        if batch.part is not None:
            joins |= batch.part
        rows = np.flatnonzero(joins & keep)
        if rows.size == 0:
            return batch, None
        row_list = rows.tolist()
        bits = metric_bits(batch.metrics, rows)
        parts = None if batch.part is None else batch.part[rows]
        # every page view's session is noted, for the parts of later batches to join it
        every = rows.size == len(batch)
        sessions = None if batch.session is None else batch.session if every else [batch.session[r] for r in row_list]
        # an app's salt once per cohort key, not per beacon
        salts = np.array([hash((k.app,)) for k in batch.keys], np.int64)
        new, repeated, erroring = self.views.observe_arrays(
            salts[batch.key[rows]], batch.view if every else [batch.view[r] for r in row_list], batch.ts[rows], seen[rows], bits,
            batch.errors[rows] > 0, parts, sessions)
        starts = np.ones(len(batch), bool)
        starts[rows] = new
        error_view = batch.errors > 0
        error_view[rows] = erroring
        repeated_bits = np.zeros(len(batch), np.int64)
        repeated_bits[rows] = repeated
        row_bits = np.zeros(len(batch), np.int64)
        row_bits[rows] = bits
        metrics = dict(batch.metrics)
        for m, values in batch.metrics.items():
            drop = (repeated_bits & METRIC_BITS[m]) != 0
            if drop.any():
                metrics[m] = np.where(drop, np.nan, values)
        nothing = ~starts & (repeated_bits == row_bits) & (batch.errors == 0)  # errors all count
        joined = BeaconBatch(batch.ts, batch.key, batch.keys, metrics, batch.errors, batch.session, batch.view,
                             batch.part)
        return joined, _Joined(starts, error_view, nothing)

    def _cap_views(self, batch: BeaconBatch, capped: np.ndarray, joined: _Joined) -> None:
        """Leave out the later beacons of page views whose first beacon was capped: in later
        batches (:meth:`PageViews.cap`) and in this one."""
        rows = [row for row in np.flatnonzero(capped).tolist() if batch.view[row]]
        apps = [batch.keys[batch.key[row]].app for row in rows]
        views = [batch.view[row] for row in rows]
        self.views.cap(apps, views)
        gone = set(zip(apps, views))
        for row in np.flatnonzero(~joined.starts).tolist():
            if (batch.keys[batch.key[row]].app, batch.view[row]) in gone:
                joined.nothing[row] = True

    def warm(self, batch: BeaconBatch) -> None:
        """Take a batch's page views into :attr:`views` without counting anything: the
        records a restarted stage 1 re-reads from before its checkpoint, so that their page
        views' later beacons join them rather than count again. The watermark is not moved."""
        if self.views is None or batch.view is None or len(batch) == 0:
            return
        before = np.maximum.accumulate(batch.ts)
        seen = np.empty_like(before)
        seen[1:], seen[0] = before[:-1], batch.ts[0]
        self._join(batch, seen, np.ones(len(batch), bool))

    def _summary(self, start: int, key: CohortKey) -> WindowSummary:
        summary = self._open.get((start, key))
        if summary is None:
            summary = self._open[(start, key)] = WindowSummary.empty(key, start, self.size_ms,
                                                                     self.relative_accuracy)
        return summary

    def _protected(self, key: CohortKey) -> bool:
        return key.release in self.protected_releases and key.cohort in (None, "canary", "baseline")

    def _admit(self, batch: BeaconBatch, starts: np.ndarray, groups: list[tuple[int, int]],
               inverse: np.ndarray) -> np.ndarray:
        """Rows whose cohort key is (or may be) open in its window; the others go to :attr:`rejected`.

        New keys are taken in the order of their first beacon, so the keys a window keeps
        are the first ``max_cohorts`` to arrive, however the beacons were batched.
        """
        n = len(batch)
        keep = np.ones(n, bool)
        if self.max_cohorts is None:
            return keep
        new = [g for g, (start, code) in enumerate(groups) if (start, batch.keys[code]) not in self._open]
        if not new:
            return keep
        first = np.full(len(groups), n, np.int64)
        np.minimum.at(first, inverse, np.arange(n, dtype=np.int64))
        refused = np.zeros(len(groups), bool)
        for g in sorted(new, key=first.__getitem__):
            start, code = groups[g]
            key = batch.keys[code]
            if self._protected(key):
                continue
            opened = self._cohorts.get((start, key.app), 0)
            if opened < self.max_cohorts:
                self._cohorts[(start, key.app)] = opened + 1
                self._open[(start, key)] = WindowSummary.empty(key, start, self.size_ms, self.relative_accuracy)
            else:
                refused[g] = True
        if refused.any():
            keep = ~refused[inverse]
            self.rejected = [
                (row, f"cohort: app {batch.keys[batch.key[row]].app!r} already has {self.max_cohorts} "
                      f"cohorts (release x cohort x device) in window {int(starts[row])} on this partition")
                for row in np.flatnonzero(~keep).tolist()]
        return keep

    def _cap_sessions(self, batch: BeaconBatch, starts: np.ndarray, keep: np.ndarray) -> np.ndarray:
        """Rows beyond their session's ``max_views_per_session`` in their window, in row order.

        Counting a whole batch per window with ``Counter.update`` runs at C speed; only a
        batch in which some session went over the cap is recounted row by row.
        """
        capped = np.zeros(len(batch), bool)
        cap = self.max_views_per_session
        if cap is None or batch.session is None:
            return capped
        rows = np.flatnonzero(keep)
        row_starts = starts[rows]
        sessions = batch.session if rows.size == len(batch) else [batch.session[i] for i in rows.tolist()]
        over = False
        for start, part in _by_start(row_starts, sessions):
            views = self._views.setdefault(start, Counter())
            views.update(part)
            views.pop(None, None)  # a page view without a session is its own user
            # only this batch's sessions can put this batch's rows over the cap
            over = over or max(map(views.__getitem__, set(part)), default=0) > cap  # None: 0, popped
        if over:
            self._recount(rows, row_starts, sessions, capped)
        return capped

    def _recount(self, rows: np.ndarray, row_starts: np.ndarray, sessions: list, capped: np.ndarray) -> None:
        """Undo a batch's fast count and count it row by row, marking the rows over the cap."""
        for start, part in _by_start(row_starts, sessions):
            self._views[start].subtract(sid for sid in part if sid is not None)
        for row, start, sid in zip(rows.tolist(), row_starts.tolist(), sessions):
            if sid is None:
                continue
            views = self._views[start]
            views[sid] += 1
            if views[sid] > self.max_views_per_session:
                capped[row] = True

    def _closed_before(self, watermark: np.ndarray) -> np.ndarray:
        """Windows starting before this are closed once the watermark has reached ``watermark``.

        A window closes when ``start + size + lateness <= watermark``; starts are multiples
        of the size, so the bound is rounded up to the next one.
        """
        before = watermark - self.allowed_lateness_ms - self.size_ms + 1
        return -(-before // self.size_ms) * self.size_ms

    def restore(self, watermark: int) -> None:
        """Resume from a checkpoint: the state after a watermark of ``watermark`` with no open window."""
        if self._open:
            raise ValueError("restore() needs windows with nothing open")
        self.watermark = int(watermark)
        self.closed_before = int(self._closed_before(np.int64(watermark)))

    def advance(self, watermark: int) -> list[WindowSummary]:
        """Move the watermark without data (an idle source) and close what it passes."""
        self.watermark = watermark if self.watermark is None else max(self.watermark, watermark)
        return self._close(int(self._closed_before(self.watermark)))

    def flush(self) -> list[WindowSummary]:
        """Close every open window (end of input)."""
        return self._close(None)

    def _close(self, before: int | None) -> list[WindowSummary]:
        """Close windows starting before ``before`` (a window start; all when None), in (start, key) order."""
        if before is not None and self.closed_before is not None and before <= self.closed_before:
            return []
        done = sorted((k for k in self._open if before is None or k[0] < before),
                      key=lambda k: (k[0], tuple("" if v is None else v for v in k[1])))
        if before is None and done:
            before = done[-1][0] + self.size_ms
        if before is not None:
            self.closed_before = before if self.closed_before is None else max(self.closed_before, before)
        for table in (self._views, self._cohorts):
            for k in [k for k in table if before is None or (k if type(k) is int else k[0]) < before]:
                del table[k]
        return [self._open.pop(k) for k in done]
