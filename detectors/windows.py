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
from dataclasses import dataclass, field

import numpy as np
import orjson

from detectors.beacon import GOOD_LIMITS, METRICS, BeaconBatch, CohortKey
from detectors.sketch import DEFAULT_RELATIVE_ACCURACY, MIN_POSITIVE, LogSketch

__all__ = ["DEFAULT_WINDOW_MS", "DEFAULT_LATENESS_MS", "WindowSummary", "TumblingWindows", "window_start"]

DEFAULT_WINDOW_MS = 5_000
#: ``ts`` is the gateway's receive time, so lateness comes only from gateway batching and
#: partition skew, not from browser clocks: seconds, not minutes.
DEFAULT_LATENESS_MS = 5_000


def window_start(ts: int | np.ndarray, size_ms: int) -> int | np.ndarray:
    """Start of the tumbling window holding ``ts`` (windows are aligned to epoch 0)."""
    return ts - ts % size_ms


@dataclass(eq=False)
class WindowSummary:
    """Everything the gate needs from one cohort in one window, mergeable across partitions.

    ``over_good[m]`` counts page views whose metric ``m`` is above its web-vitals "good"
    limit (CLS > 0.1, LCP > 2500 ms, ...); ``error_views`` counts page views with at least
    one JS error (not errors: bursts would break the rate test's independence).
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
            self.sketches[m].add_counts(offset, buckets[g], zeros[g])
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
        }

    @classmethod
    def from_dict(cls, d: dict, relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY) -> WindowSummary:
        """Rebuild a summary from :meth:`to_dict`; raises ``ValueError`` (with why) on bad input."""
        try:
            out = cls.empty(CohortKey(*d["key"]), int(d["start"]), int(d["size_ms"]), relative_accuracy)
            out.page_views, out.anonymous_views = int(d["page_views"]), int(d["anonymous_views"])
            out.error_views, out.errors, out.late = int(d["error_views"]), int(d["errors"]), int(d["late"])
            out.session_ids = _unpack_sessions(d["sessions"])
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
        for m, sketch in other.sketches.items():
            self.sketches[m].merge(sketch)
        for m, n in other.over_good.items():
            self.over_good[m] += n


def _session_hash(sid: object) -> int:
    """Session ids travel as 64-bit hashes: 8 bytes each, whatever the SDK's id looks like."""
    if isinstance(sid, int):
        return sid  # already hashed (a summary that came off the wire)
    return int.from_bytes(hashlib.blake2b(str(sid).encode(), digest_size=8).digest(), "little")


def _pack_sessions(ids: set) -> str:
    hashed = np.fromiter((_session_hash(s) for s in ids), np.uint64, len(ids))
    return base64.b64encode(np.sort(hashed).tobytes()).decode()


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


def _group_rows(starts: np.ndarray, key: np.ndarray, n_keys: int) -> tuple[list[tuple[int, int]], np.ndarray]:
    """Number the (window, cohort) pairs of a batch: ``[(start, key code)]`` and each row's group."""
    n = max(n_keys, 1)
    unique, inverse = np.unique(starts.astype(np.int64) * n + key, return_inverse=True)
    return [(int(u // n), int(u % n)) for u in unique], inverse


def _count_groups(batch: BeaconBatch, group: np.ndarray, n_groups: int, late: np.ndarray,
                  log_gamma: float) -> _GroupCounts:
    """Count a whole batch per group with one vectorised pass per metric.

    Bucketing every value of a batch at once (instead of per window and cohort) keeps the
    number of numpy calls per batch small, which is what makes small windows cheap.
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
            buckets = np.bincount(flat, minlength=n_groups * span).reshape(n_groups, span)
        else:
            lo, buckets = 0, np.zeros((n_groups, 0), np.int64)
        metrics[m] = (lo, buckets, zeros, over)
    page_views = per_group(None)
    session_sets, anonymous = _sessions(batch.session, group, n_groups, page_views)
    return _GroupCounts(
        page_views=page_views,
        session_sets=session_sets,
        anonymous=anonymous,
        error_views=per_group(None, batch.errors > 0),
        errors=per_group(batch.errors.astype(np.float64)),
        late=per_group(late.astype(np.float64)),
        metrics=metrics,
    )


def _sessions(session: list | None, group: np.ndarray, n_groups: int,
              page_views: np.ndarray) -> tuple[list[set], np.ndarray]:
    """Per group: the set of session ids, and the page views that carry none."""
    sets: list[set] = [set() for _ in range(n_groups)]
    if session is None:
        return sets, page_views
    anonymous = np.zeros(n_groups, np.int64)
    for g, sid in zip(group.tolist(), session):
        if sid is None:
            anonymous[g] += 1
        else:
            sets[g].add(sid)
    return sets, anonymous


class TumblingWindows:
    """Assigns beacons to event-time windows per cohort key and closes them by watermark."""

    def __init__(self, size_ms: int = DEFAULT_WINDOW_MS,
                 allowed_lateness_ms: int = DEFAULT_LATENESS_MS,
                 relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY) -> None:
        if int(size_ms) != size_ms or size_ms <= 0:
            raise ValueError(f"window size must be a whole number of ms > 0, got {size_ms!r}")
        if int(allowed_lateness_ms) != allowed_lateness_ms or allowed_lateness_ms < 0:
            raise ValueError(f"allowed lateness must be a whole number of ms >= 0, got {allowed_lateness_ms!r}")
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
            self.late_total += int(late.sum())
        groups, cohorts = _group_rows(starts, batch.key, len(batch.keys))
        counts = _count_groups(batch, cohorts, len(groups), late, self._log_gamma)
        for g, (start, code) in enumerate(groups):
            key = batch.keys[code]
            summary = self._open.get((start, key))
            if summary is None:
                summary = WindowSummary.empty(key, start, self.size_ms, self.relative_accuracy)
                self._open[(start, key)] = summary
            summary.add_counts(counts, g)
        return self._close(int(self._closed_before(self.watermark)))

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
        return [self._open.pop(k) for k in done]
