"""Page views that arrive as several beacons: what each beacon of a page view adds.

SDKs split one page view into many beacons: web-vitals sends a metric per request as each
is ready, Boomerang a page-load, an error and an unload beacon, Datadog a view event per
update, OpenTelemetry an export after load and another on hide. Counted as they come, one
page view would weigh as five, and its JS error would dilute into the views that have none.
A canonical beacon's ``view`` names its page view; :class:`PageViews` remembers, per app and
view, what has been counted already, so that stage 1 counts

* the page view once, as exposure (``page_views``, its session), with the first beacon;
* each metric once: the first value that arrives (SDKs send a metric's final value once,
  or stop changing it; see ``docs/rum-formats.md``);
* the page view as erroring at most once, with the first beacon that reports an error.

Where an SDK names no page view, the beacon with TTFB is the page view and its adapter
marks the others (``part``): a part joins the latest page view its session started within
the horizon, as a beacon of that view would, and without one counts what it carries but no
page view (its copies once, by its id).

A view is remembered for ``horizon_ms`` of event time after its first beacon: a beacon
whose view was first seen longer ago than that, by the watermark before it, starts a page
view again. Which beacon counts what depends only on the beacons' order and their
watermarks, never on how records were batched, so a replay counts as the live run.

Memory is a fixed table, as the ingestion endpoint's recent ids are: ``capacity`` slots of
16 bytes (a 64-bit fingerprint and the view's state), set-associative with ``WAYS`` slots a
bucket; a new view takes its bucket's empty or oldest slot. When more views are alive than
fit, the oldest in a bucket is forgotten early and :attr:`evicted_early` counts it (its
next beacon would count as a new page view): size the table by views per second × horizon.
The table is allocated zeroed and untouched, so an idle partition's costs no memory.
Fingerprints are Python's 64-bit ``hash`` of the view XOR a salt of its app: two distinct
views sharing a bucket and a fingerprint (about 1 in 2⁶¹ per lookup) would merge. Sessions
have a table of their own, laid out alike (24 bytes a slot: the session's fingerprint, its
latest page view's and that view's start), touched only by beacons that name a session.

>>> views = PageViews(horizon_ms=60_000, capacity=64)
>>> LCP, CLS = 1, 4                                    # metric bits, in METRICS order
>>> views.observe(["shop-web"] * 3, ["v1", "v1", "v1"], [1000, 2000, 3000], [1000, 1000, 2000],
...               [LCP, LCP | CLS, CLS], [False, False, True])
([True, False, False], [0, 1, 4], [False, False, True])

The first beacon is the page view; the second adds CLS only (its LCP was counted); the
third's CLS is a repeat, and its error makes the page view an erroring one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from detectors.beacon import METRICS

__all__ = ["DEFAULT_VIEW_HORIZON_MS", "DEFAULT_VIEW_SLOTS", "METRIC_BITS", "PageViews", "WAYS"]

#: How long, in event time, a page view's later beacons still join it. web-vitals reports
#: CLS and INP when the page is hidden, which for most page views is within minutes.
DEFAULT_VIEW_HORIZON_MS = 30 * 60_000
#: Slots per partition: 16 MiB once touched (and 24 MiB for sessions), room for about 550
#: page views a second on one partition over the default horizon.
DEFAULT_VIEW_SLOTS = 1 << 20
WAYS = 4
#: Bit of each metric in a row's ``bits`` (METRICS order): LCP 1, INP 2, CLS 4, FCP 8, TTFB 16.
METRIC_BITS: dict[str, int] = {m: 1 << i for i, m in enumerate(METRICS)}
_ERRORED = 1 << 5  # the page view has been counted as erroring
_CAPPED = 1 << 6  # its first beacon was over its session's cap: none of it is counted
_FLAGS = 8  # the state is first_ts << _FLAGS | flags


class PageViews:
    """Views seen within ``horizon_ms``, and what of each has been counted, in a fixed table."""

    def __init__(self, horizon_ms: int = DEFAULT_VIEW_HORIZON_MS, capacity: int = DEFAULT_VIEW_SLOTS) -> None:
        if int(horizon_ms) != horizon_ms or horizon_ms <= 0:
            raise ValueError(f"horizon_ms must be a whole number of ms > 0, got {horizon_ms!r}")
        if capacity < WAYS:
            raise ValueError(f"capacity must be >= {WAYS}, got {capacity!r}")
        buckets = 1 << max(0, (capacity // WAYS - 1).bit_length())
        self.horizon_ms = int(horizon_ms)
        self.capacity = buckets * WAYS
        self._mask = buckets - 1
        # per bucket: WAYS fingerprints, then their WAYS states (0: empty)
        self._words = np.zeros(2 * self.capacity, np.int64)
        self._table = memoryview(self._words)
        # per bucket: WAYS session fingerprints, their latest views' fingerprints, their start times
        self._session_words = np.zeros(3 * self.capacity, np.int64)
        self._sessions = memoryview(self._session_words)
        self.evicted_early = 0

    def observe(self, apps: Sequence[str], views: Sequence[str], ts: Sequence[int], seen: Sequence[int],
                bits: Sequence[int], errors: Sequence[bool], parts: Sequence[bool] | None = None,
                sessions: Sequence[str | None] | None = None) -> tuple[list[bool], list[int], list[bool]]:
        """Take beacons in order: ``apps``/``views`` name their page view, ``ts`` is each one's
        event time and ``seen`` the watermark before it, ``bits`` the metrics it carries
        (:data:`METRIC_BITS`) and ``errors`` whether it reports a JS error. ``parts`` marks
        beacons that are a part of a page view counted by another beacon (their ``views``
        entry is their own id, or None), ``sessions`` names each beacon's session (or None).

        Returns, per beacon: whether it starts a page view, the bits of its metrics already
        counted for that view (to leave out), and whether it makes the view erroring. A
        beacon of a view whose first beacon was capped (:meth:`cap`) returns all its bits. A
        part joins the latest page view its session started here within the horizon; a
        part with no such view never starts one, and counts what it carries once.
        """
        table, mask, horizon = self._table, self._mask, self.horizon_ms
        n = len(views)
        parts = parts if parts is not None else [False] * n
        sessions = sessions if sessions is not None else [None] * n
        salts: dict[str, int] = {}
        new, repeated, erroring = [], [], []
        for app, view, t, wm, b, err, part, session in zip(apps, views, ts, seen, bits, errors, parts, sessions):
            salt = salts.get(app)
            if salt is None:
                salt = salts[app] = hash((app,))
            slot = -1
            if part and session is not None:
                slot = self._session_view(session, salt, wm)
            if slot >= 0:
                fingerprint = table[slot]
            elif view is None:  # a part with no id that joined no page view: it counts once, as it is
                new.append(False)
                repeated.append(0)
                erroring.append(bool(err))
                continue
            else:
                fingerprint = (hash(view) ^ salt) or 1
                base = (fingerprint & mask) << 3  # 2 * WAYS words a bucket
                for s in range(base, base + WAYS):
                    if table[s] == fingerprint:
                        slot = s
                        break
            state = table[slot + WAYS] if slot >= 0 else 0
            if slot < 0 or (state >> _FLAGS) < wm - horizon:  # a new page view, or a part alone
                if slot < 0:
                    slot = min(range(base, base + WAYS), key=lambda s: table[s + WAYS])  # empty or oldest
                    oldest = table[slot + WAYS]
                    if oldest and (oldest >> _FLAGS) >= wm - horizon:
                        self.evicted_early += 1
                    table[slot] = fingerprint
                table[slot + WAYS] = int(t) << _FLAGS | b | (_ERRORED if err else 0)
                if session is not None and not part:
                    self._latest(session, salt, fingerprint, t)
                new.append(not part)
                repeated.append(0)
                erroring.append(bool(err))
                continue
            flags = state & 0xFF
            if flags & _CAPPED:
                new.append(False)
                repeated.append(b)
                erroring.append(False)
                continue
            first_error = bool(err) and not flags & _ERRORED
            table[slot + WAYS] = state | b | (_ERRORED if err else 0)
            new.append(False)
            repeated.append(b & flags)
            erroring.append(first_error)
        return new, repeated, erroring

    def _latest(self, session: str, salt: int, view: int, t: int) -> None:
        """Note ``view`` (a fingerprint), started at ``t``, as the latest page view of ``session``."""
        sessions = self._sessions
        fingerprint = (hash(session) ^ salt) or 1
        base = (fingerprint & self._mask) * 3 * WAYS  # WAYS fingerprints, views, start times
        slot = next((s for s in range(base, base + WAYS) if sessions[s] == fingerprint), -1)
        if slot < 0:
            slot = min(range(base, base + WAYS), key=lambda s: sessions[s + 2 * WAYS])  # empty or oldest
            sessions[slot] = fingerprint
        sessions[slot + WAYS] = view
        sessions[slot + 2 * WAYS] = max(int(t), 1)

    def _session_view(self, session: str, salt: int, wm: int) -> int:
        """The table slot of the latest page view ``session`` started, while it is within the
        horizon; else -1."""
        sessions, table = self._sessions, self._table
        fingerprint = (hash(session) ^ salt) or 1
        base = (fingerprint & self._mask) * 3 * WAYS
        for s in range(base, base + WAYS):
            if sessions[s] == fingerprint:
                view = sessions[s + WAYS]
                vbase = (view & self._mask) << 3
                for v in range(vbase, vbase + WAYS):
                    if table[v] == view:
                        return v if (table[v + WAYS] >> _FLAGS) >= wm - self.horizon_ms else -1
                return -1
        return -1

    def cap(self, apps: Sequence[str], views: Sequence[str]) -> None:
        """Mark page views whose first beacon was not counted: their later beacons are not either."""
        table, mask = self._table, self._mask
        for app, view in zip(apps, views):
            fingerprint = (hash(view) ^ hash((app,))) or 1
            base = (fingerprint & mask) << 3
            for s in range(base, base + WAYS):
                if table[s] == fingerprint:
                    table[s + WAYS] |= _CAPPED
                    break

    @property
    def nbytes(self) -> int:
        """Memory of the table (allocated once; its pages become resident as views arrive)."""
        return self._words.nbytes + self._session_words.nbytes


def metric_bits(metrics: dict[str, np.ndarray], rows: np.ndarray) -> list[int]:
    """Each row's :data:`METRIC_BITS`: which metrics it carries (not NaN)."""
    bits = np.zeros(rows.size, np.int64)
    for m, values in metrics.items():
        bit = METRIC_BITS.get(m)
        if bit is not None:
            bits |= np.where(np.isnan(values[rows]), 0, bit)
    return bits.tolist()
