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
        salts = {app: hash((app,)) for app in set(apps)}
        salt = np.fromiter(map(salts.__getitem__, apps), np.int64, len(apps))
        new, repeated, erroring = self.observe_arrays(salt, views, ts, seen, bits, errors, parts, sessions)
        return new.tolist(), repeated.tolist(), erroring.tolist()

    def observe_arrays(self, salt: np.ndarray, views: Sequence[str | None], ts: Sequence[int],
                       seen: Sequence[int], bits: Sequence[int], errors: Sequence[bool],
                       parts: Sequence[bool] | None = None, sessions: Sequence[str | None] | None = None,
                       vectorise: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`observe` with each beacon's app as its salt (``hash((app,))``) and numpy
        arrays out, as stage 1 calls it. ``vectorise=False`` takes every beacon through the
        sequential loop (what the vectorised path is tested against).

        The outcome of a beacon depends only on the earlier beacons of its table bucket, so
        buckets that one beacon of a batch falls in are taken all at once with numpy and
        only the others beacon by beacon. Parts read another view's bucket through their
        session (:meth:`_session_view`), so a batch with parts goes beacon by beacon.
        """
        n = len(views)
        ts = np.asarray(ts, np.int64).reshape(n)
        seen = np.asarray(seen, np.int64).reshape(n)
        bits = np.asarray(bits, np.int64).reshape(n)
        errors = np.asarray(errors, bool).reshape(n)
        salt = np.asarray(salt, np.int64).reshape(n)
        new, repeated, erroring = np.zeros(n, bool), np.zeros(n, np.int64), np.zeros(n, bool)
        if n == 0:
            return new, repeated, erroring
        part_list = None if parts is None else np.asarray(parts, bool).reshape(n)
        sequential = (not vectorise or (part_list is not None and part_list.any())
                      or None in views)
        if sequential:
            self._observe_loop(range(n), salt.tolist(), views, None, ts.tolist(), seen.tolist(), bits.tolist(),
                               errors.tolist(), part_list, sessions, new, repeated, erroring, None)
            return new, repeated, erroring
        fingerprint = np.fromiter(map(hash, views), np.int64, n) ^ salt
        fingerprint[fingerprint == 0] = 1
        bucket = fingerprint & self._mask
        _, inverse, counts = np.unique(bucket, return_inverse=True, return_counts=True)
        alone = counts[inverse] == 1
        latest: list[np.ndarray] = []  # rows that start a page view, for the session table
        if not alone.all():
            shared = np.flatnonzero(~alone)
            started: list[int] = []
            self._observe_loop(shared.tolist(), salt.tolist(), views, fingerprint.tolist(), ts.tolist(),
                               seen.tolist(), bits.tolist(), errors.tolist(), None, None, new, repeated,
                               erroring, started)
            latest.append(np.array(started, np.int64))
        rows = np.flatnonzero(alone)
        if rows.size:
            latest.append(self._observe_alone(rows, fingerprint[rows], bucket[rows], ts[rows], seen[rows],
                                              bits[rows], errors[rows], new, repeated, erroring))
        if sessions is not None and latest:
            # Only parts read the session table, and this batch has none: its page views'
            # sessions are noted after the views, in row order, as the loop would.
            rows = np.sort(np.concatenate(latest))
            named = [r for r in rows.tolist() if sessions[r] is not None]
            if named:
                idx = np.array(named, np.int64)
                self._latest_many([sessions[r] for r in named], salt[idx], fingerprint[idx], ts[idx])
        return new, repeated, erroring

    def _observe_alone(self, rows: np.ndarray, fingerprint: np.ndarray, bucket: np.ndarray, t: np.ndarray,
                       wm: np.ndarray, b: np.ndarray, err: np.ndarray, new: np.ndarray, repeated: np.ndarray,
                       erroring: np.ndarray) -> np.ndarray:
        """The loop's steps for beacons (no parts) that are each alone in their bucket in this
        batch, with numpy; returns the rows that start a page view."""
        words = self._words.reshape(-1, 2 * WAYS)
        fps, states = words[bucket, :WAYS], words[bucket, WAYS:]
        match = fps == fingerprint[:, None]
        found = match.any(axis=1)
        # first match as the loop's scan; else the empty or oldest slot (min's first minimum)
        way = np.where(found, match.argmax(axis=1), states.argmin(axis=1))
        state = states[np.arange(rows.size), way]
        cut = wm - self.horizon_ms
        fresh = ~found | ((state >> _FLAGS) < cut)
        self.evicted_early += int(np.count_nonzero(~found & (state != 0) & ((state >> _FLAGS) >= cut)))
        flags = state & 0xFF
        capped = ~fresh & ((flags & _CAPPED) != 0)
        err_bit = np.where(err, _ERRORED, 0)
        state = np.where(fresh, t << _FLAGS | b | err_bit, state | b | err_bit)
        write = ~capped
        words[bucket[~found], way[~found]] = fingerprint[~found]
        words[bucket[write], WAYS + way[write]] = state[write]
        new[rows] = fresh
        repeated[rows] = np.where(fresh, 0, np.where(capped, b, b & flags))
        erroring[rows] = np.where(fresh, err, ~capped & err & ((flags & _ERRORED) == 0))
        return rows[fresh]

    def _observe_loop(self, order: Sequence[int], salts: list[int], views: Sequence[str | None],
                      fingerprints: list[int] | None, ts: list[int], seen: list[int], bits: list[int],
                      errors: list[bool], parts: np.ndarray | None, sessions: Sequence[str | None] | None,
                      new: np.ndarray, repeated: np.ndarray, erroring: np.ndarray,
                      started: list[int] | None) -> None:
        """The beacons of ``order``, one at a time, into ``new``/``repeated``/``erroring``.
        With ``started``, the rows that start a page view are listed there instead of being
        noted in the session table (the caller notes them in row order)."""
        table, mask, horizon = self._table, self._mask, self.horizon_ms
        for r in order:
            view, t, wm, b, err, salt = views[r], ts[r], seen[r], bits[r], errors[r], salts[r]
            part = parts is not None and bool(parts[r])
            session = None if sessions is None else sessions[r]
            slot = -1
            if part and session is not None:
                slot = self._session_view(session, salt, wm)
            if slot >= 0:
                fingerprint = table[slot]
            elif view is None:  # a part with no id that joined no page view: it counts once, as it is
                erroring[r] = bool(err)
                continue
            else:
                fingerprint = fingerprints[r] if fingerprints is not None else (hash(view) ^ salt) or 1
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
                if not part:
                    if started is not None:
                        started.append(r)
                    elif session is not None:
                        self._latest(session, salt, fingerprint, t)
                new[r] = not part
                erroring[r] = bool(err)
                continue
            flags = state & 0xFF
            if flags & _CAPPED:
                repeated[r] = b
                continue
            table[slot + WAYS] = state | b | (_ERRORED if err else 0)
            repeated[r] = b & flags
            erroring[r] = bool(err) and not flags & _ERRORED

    def _latest_many(self, sessions: list[str], salt: np.ndarray, view: np.ndarray, t: np.ndarray) -> None:
        """:meth:`_latest` for each of ``sessions`` in order: with numpy for sessions alone in
        their bucket among these, one at a time for the others."""
        n = len(sessions)
        fingerprint = np.fromiter(map(hash, sessions), np.int64, n) ^ salt
        fingerprint[fingerprint == 0] = 1
        bucket = fingerprint & self._mask
        _, inverse, counts = np.unique(bucket, return_inverse=True, return_counts=True)
        alone = counts[inverse] == 1
        if not alone.all():
            for r in np.flatnonzero(~alone).tolist():
                self._latest_fingerprint(int(fingerprint[r]), int(view[r]), int(t[r]))
        rows = np.flatnonzero(alone)
        if rows.size == 0:
            return
        words = self._session_words.reshape(-1, 3 * WAYS)
        b, fp = bucket[rows], fingerprint[rows]
        match = words[b, :WAYS] == fp[:, None]
        way = np.where(match.any(axis=1), match.argmax(axis=1), words[b, 2 * WAYS:].argmin(axis=1))
        words[b, way] = fp
        words[b, WAYS + way] = view[rows]
        words[b, 2 * WAYS + way] = np.maximum(t[rows], 1)

    def _latest(self, session: str, salt: int, view: int, t: int) -> None:
        """Note ``view`` (a fingerprint), started at ``t``, as the latest page view of ``session``."""
        self._latest_fingerprint((hash(session) ^ salt) or 1, view, t)

    def _latest_fingerprint(self, fingerprint: int, view: int, t: int) -> None:
        """:meth:`_latest` for a session's fingerprint."""
        sessions = self._sessions
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


def metric_bits(metrics: dict[str, np.ndarray], rows: np.ndarray) -> np.ndarray:
    """Each row's :data:`METRIC_BITS`: which metrics it carries (not NaN)."""
    bits = np.zeros(rows.size, np.int64)
    for m, values in metrics.items():
        bit = METRIC_BITS.get(m)
        if bit is not None:
            bits |= np.where(np.isnan(values[rows]), 0, bit)
    return bits
