"""Stage 1 for one partition of ``rum.beacons``: records in, window summaries out.

A :class:`PartitionAggregator` decodes records in batches, counts them into event-time
windows, and says, after each batch, which windows closed, which items were invalid (for
the dead-letter topic), and up to which offset the partition is *done*: every record
below that offset counted only in windows that have been handed out. It knows nothing of
Kafka; the Faust agent feeds it and publishes what it returns.

Exactly-once counting without Kafka transactions rests on two facts:

* a record is acknowledged (its offset committed) only once all the windows it touched
  have been published, and the :class:`Checkpoint` stored with that commit holds the
  watermark just before the first record not yet done;
* window assignment depends only on a record's beacons and the watermark before it
  (:meth:`TumblingWindows.add`), never on how records were batched.

So after a crash, a fresh aggregator restored from the checkpoint re-reads the records
from there and rebuilds exactly the windows that were open. Page views whose beacons span
the checkpoint (:mod:`detectors.views`) are rebuilt too: the checkpoint's ``views_from`` is
the first record whose page views may still be joined after it, and a restarted aggregator
re-reads the records from there to its ``offset`` without counting them, only to remember
their page views. A window that had already
been published can come out again holding the part of its beacons at or after the
checkpoint; the judge keeps the first publication of each (source, window, cohort), which
was complete and is earlier on the topic.

>>> import orjson
>>> agg = PartitionAggregator(partition=0, window_ms=5000, lateness_ms=0)
>>> rec = lambda ts: orjson.dumps({"ts": ts, "app": "shop-web", "release": "r2"})
>>> step = agg.process([(0, rec(1763856000100)), (1, rec(1763856004000)), (2, b"oops")])
>>> step.closed, [(r.offset, r.reason) for r in step.rejects], step.done_offset
([], [(2, 'record: not valid JSON or NDJSON')], None)
>>> step = agg.process([(3, rec(1763856006000))])      # closes window 0
>>> [(s.start, s.page_views) for s in step.closed], step.done_offset, step.checkpoint
([(1763856000000, 2)], 3, Checkpoint(offset=3, watermark=1763856004000, views_from=0))
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from detectors.decode import DecodeResult, decode_records, item_bytes
from detectors.pipeline.judge import WindowsRecord
from detectors.views import DEFAULT_VIEW_HORIZON_MS, DEFAULT_VIEW_SLOTS, PageViews
from detectors.windows import DEFAULT_LATENESS_MS, DEFAULT_WINDOW_MS, TumblingWindows, WindowSummary, window_start

__all__ = ["Checkpoint", "DeadLetter", "Step", "PartitionAggregator", "windows_records",
           "DEFAULT_MAX_RECORD_BYTES"]


@dataclass(frozen=True)
class Checkpoint:
    """Where a restarted aggregator resumes: at ``offset``, with this watermark before it,
    having first re-read the records from ``views_from`` for their page views (None: none)."""

    offset: int
    watermark: int | None
    views_from: int | None = None

    @property
    def read_from(self) -> int:
        """The first offset a restarted aggregator reads."""
        return self.offset if self.views_from is None else min(self.views_from, self.offset)

    def to_dict(self) -> dict:
        d = {"offset": self.offset, "watermark": self.watermark}
        if self.views_from is not None and self.views_from < self.offset:
            d["views_from"] = self.views_from
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Checkpoint:
        views_from = d.get("views_from")
        return cls(int(d["offset"]), None if d.get("watermark") is None else int(d["watermark"]),
                   None if views_from is None else int(views_from))


@dataclass(frozen=True)
class DeadLetter:
    """An invalid item: the offset of its record, its place in the record, bytes, reason."""

    offset: int
    item: int | None
    raw: bytes
    reason: str


@dataclass
class Step:
    """What one batch changed."""

    closed: list[WindowSummary] = field(default_factory=list)
    rejects: list[DeadLetter] = field(default_factory=list)
    beacons: int = 0
    done_offset: int | None = None  # records below this are done (None: no change)
    checkpoint: Checkpoint | None = None  # to store with the commit of ``done_offset``


@dataclass
class _Pending:
    first: int  # first offset of the batch
    last: int
    reach: int  # no beacon of the batch went to a window starting after this
    watermark_before: int | None


class PartitionAggregator:
    """Windows of one source partition, with the bookkeeping for safe commits.

    Parameters
    ----------
    partition
        The ``rum.beacons`` partition this aggregator owns.
    window_ms, lateness_ms
        Window size and allowed lateness.
    checkpoint
        Resume point of an earlier run; records below its offset are skipped.
    view_horizon_ms, view_slots
        How long a page view's later beacons join it, and the size of the table that
        remembers page views (:class:`~detectors.views.PageViews`); ``view_horizon_ms=None``
        counts every beacon as a page view.
    limits
        ``max_cohorts``, ``max_views_per_session``, ``protected_releases`` of
        :class:`~detectors.windows.TumblingWindows`; beacons its cohort cap refuses are
        dead-lettered like invalid ones.
    """

    def __init__(self, partition: int, window_ms: int = DEFAULT_WINDOW_MS,
                 lateness_ms: int = DEFAULT_LATENESS_MS, checkpoint: Checkpoint | None = None,
                 view_horizon_ms: int | None = DEFAULT_VIEW_HORIZON_MS, view_slots: int = DEFAULT_VIEW_SLOTS,
                 **limits: Any) -> None:
        self.partition = partition
        views = None if view_horizon_ms is None else PageViews(view_horizon_ms, view_slots)
        self.view_horizon_ms = view_horizon_ms
        self.windows = TumblingWindows(window_ms, lateness_ms, views=views, **limits)
        self.skip_below = -1
        self.warm_from = -1  # records from here to skip_below are read for their page views only
        if checkpoint is not None:
            self.skip_below = checkpoint.offset
            self.warm_from = checkpoint.read_from
            if checkpoint.watermark is not None:
                self.windows.restore(checkpoint.watermark)
        self._pending: deque[_Pending] = deque()
        # (first offset, watermark before) of the batches whose page views may still be
        # joined: where a checkpoint's views_from comes from
        self._history: deque[tuple[int, int | None]] = deque()
        self.beacons = 0
        self.rejected = 0
        self.last_offset: int | None = None

    @property
    def watermark(self) -> int | None:
        return self.windows.watermark

    @property
    def closed_before(self) -> int | None:
        """Every window of this partition starting before this has been handed out."""
        return self.windows.closed_before

    def process(self, records: Sequence[tuple[int, bytes]]) -> Step:
        """Count ``(offset, value)`` records of this partition, in offset order."""
        if records and records[0][0] < self.skip_below:
            self._warm([(o, v) for o, v in records if self.warm_from <= o < self.skip_below])
            records = [(o, v) for o, v in records if o >= self.skip_below]
        if not records:
            return Step()
        watermark_before = self.windows.watermark
        if self.view_horizon_ms is not None:
            self._history.append((records[0][0], watermark_before))
        decoded = decode_records([v for _, v in records])
        step = Step(beacons=len(decoded.batch))
        step.rejects = [DeadLetter(records[r.record][0], r.item, r.raw, r.reason) for r in decoded.rejects]
        step.closed = self.windows.add(decoded.batch)
        step.rejects += [_refused(records, decoded, row, reason) for row, reason in self.windows.rejected]
        step.beacons -= len(self.windows.rejected)
        self.beacons += step.beacons
        self.rejected += len(step.rejects)
        first, last = records[0][0], records[-1][0]
        self.last_offset = last
        wm = self.windows.watermark
        reach = window_start(wm, self.windows.size_ms) if wm is not None else -1
        self._pending.append(_Pending(first, last, reach, watermark_before))
        self._settle(step)
        return step

    def advance(self, watermark: int) -> Step:
        """An idle partition's watermark moves with the clock: close what it passes."""
        step = Step(closed=self.windows.advance(watermark))
        self._settle(step)
        return step

    def flush(self) -> Step:
        """End of input: close every open window."""
        step = Step(closed=self.windows.flush())
        self._settle(step)
        return step

    def _warm(self, records: Sequence[tuple[int, bytes]]) -> None:
        """Re-read records before the checkpoint for their page views only (see the module)."""
        if not records or self.view_horizon_ms is None:
            return
        self._history.append((records[0][0], None if not self._history else self._history[-1][1]))
        decoded = decode_records([v for _, v in records])
        self.windows.warm(decoded.batch)
        if len(decoded.batch):
            wm = int(decoded.batch.ts.max())
            last = self._history[-1][1]
            self._history[-1] = (self._history[-1][0], wm if last is None else max(last, wm))

    def _settle(self, step: Step) -> None:
        """Release the batches whose windows have all been handed out."""
        closed_before = self.windows.closed_before
        done = None
        while self._pending and closed_before is not None and self._pending[0].reach < closed_before:
            done = self._pending.popleft().last + 1
        if done is None:
            return
        step.done_offset = done
        if self._pending:
            nxt = self._pending[0]
            step.checkpoint = self._checkpoint(nxt.first, nxt.watermark_before)
        else:
            step.checkpoint = self._checkpoint(done, self.windows.watermark)

    def _checkpoint(self, offset: int, watermark: int | None) -> Checkpoint:
        """A checkpoint at ``offset``, whose ``views_from`` is the first batch that may hold a
        page view still joined after it: every record before a batch has an event time at
        most that batch's watermark before, and a page view first seen more than the
        horizon before ``watermark`` is never joined again."""
        if self.view_horizon_ms is None or watermark is None or not self._history:
            return Checkpoint(offset, watermark)
        history, cut = self._history, watermark - self.view_horizon_ms
        floor = self._pending[0].watermark_before if self._pending else self.windows.watermark
        while len(history) > 1 and history[1][1] is not None and floor is not None \
                and history[1][1] < floor - self.view_horizon_ms:
            history.popleft()  # no later checkpoint needs the batches before it
        views_from = history[0][0]
        for first, before in history:
            if first > offset or before is None or before >= cut:
                break
            views_from = first
        return Checkpoint(offset, watermark, views_from)


def _refused(records: Sequence[tuple[int, bytes]], decoded: DecodeResult, row: int, reason: str) -> DeadLetter:
    """A valid beacon the windows refused, as a dead letter with its record's offset and its bytes."""
    record, item = decoded.source_of(row)
    offset, value = records[record]
    return DeadLetter(offset, item, item_bytes(value, item), reason)


#: Bytes a ``rum.windows`` record may take, summed from its summaries' encoded sizes. Kafka
#: refuses records over its ``max.request.size`` / ``message.max.bytes`` (1 MB by default);
#: a window of thousands of invented cohorts must not grow past that and fail its send.
DEFAULT_MAX_RECORD_BYTES = 512 * 1024
_RECORD_OVERHEAD = 96  # the record's own fields, and a summary's separator


def windows_records(source: int, closed_before: int | None, closed: Sequence[WindowSummary],
                    idle: bool = False, max_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> list[WindowsRecord]:
    """What a partition publishes for the judge: the closed windows' summaries, then its progress.

    Each window goes out in records of at most ``max_bytes`` (estimated from each summary's
    encoded size; a single summary larger than that travels alone). A record's
    ``closed_before`` never runs ahead of the windows sent so far, so a judge never takes a
    window as complete before this partition's summaries of it arrived: every part of a
    window but its last says ``closed_before`` no later than the window's start, and only
    its last part lets the judge past it.

    >>> from detectors.beacon import CohortKey
    >>> key = CohortKey("shop-web", "r2", None, "mobile")
    >>> closed = [WindowSummary.empty(key, 0, 5000), WindowSummary.empty(key, 5000, 5000)]
    >>> [(r.closed_before, len(r.summaries)) for r in windows_records(3, 7000, closed)]
    [(5000, 1), (7000, 1), (7000, 0)]
    """
    by_start: dict[int, list[WindowSummary]] = {}
    for s in closed:
        by_start.setdefault(s.start, []).append(s)
    records = []
    for start, summaries in sorted(by_start.items()):
        end = start + summaries[0].size_ms
        last = end if closed_before is None else min(end, closed_before)
        parts = _parts(summaries, max_bytes)
        for i, (part, encoded) in enumerate(parts):
            held = last if i == len(parts) - 1 else min(start, last)
            records.append(WindowsRecord(source, held, False, part, encoded))
    records.append(WindowsRecord(source, closed_before, idle, []))
    return records


def _parts(summaries: list[WindowSummary], max_bytes: int) -> list[tuple[list[WindowSummary], list[bytes]]]:
    """``summaries`` in consecutive groups whose estimated encoded size stays within ``max_bytes``,
    each with its summaries' encodings (made here to size them; the judge keeps them)."""
    parts: list[tuple[list[WindowSummary], list[bytes]]] = [([], [])]
    size = _RECORD_OVERHEAD
    for s in summaries:
        encoded = orjson.dumps(s.to_dict())
        n = len(encoded) + _RECORD_OVERHEAD
        if parts[-1][0] and size + n > max_bytes:
            parts.append(([], []))
            size = _RECORD_OVERHEAD
        parts[-1][0].append(s)
        parts[-1][1].append(encoded)
        size += n
    return parts
