"""Event-time tumbling windows: boundaries, closing by watermark, late beacons, conservation,
per-cohort summaries and merging them across partitions.

Timestamps are fixed UTC-aligned epoch milliseconds; every case says why it is there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.beacon import (
    GOOD_LIMITS,
    METRICS,
    Beacon,
    BeaconBatch,
    CohortKey,
    validate_beacon,
)
from detectors.sketch import LogSketch
from detectors.windows import TumblingWindows, WindowSummary, window_start

T0 = 1_763_856_000_000  # 2025-11-23T00:00:00Z: a multiple of every window size used here
SEC, MIN, HOUR, DAY = 1000, 60_000, 3_600_000, 86_400_000

MOBILE_R2 = CohortKey("shop-web", "r2", None, "mobile")
DESKTOP_R1 = CohortKey("shop-web", "r1", None, "desktop")
CANARY = CohortKey("shop-web", "r2", "canary", "mobile")
KEYS = (MOBILE_R2, DESKTOP_R1, CANARY)


def beacon(ts: int, key: CohortKey = MOBILE_R2, errors: int = 0, session: str | None = None,
           **metrics: float) -> Beacon:
    """A validated beacon; a NaN metric is left out (absent), as the decoder does."""
    raw = {"ts": ts, "app": key.app, "release": key.release, "device": key.segment,
           "cohort": key.cohort, "errors": errors, "session": session,
           "metrics": {m: float(v) for m, v in metrics.items() if not math.isnan(v)}}
    out, reason = validate_beacon(raw)
    assert reason is None, reason
    return out


def batch(*beacons: Beacon) -> BeaconBatch:
    return BeaconBatch.from_beacons(list(beacons))


def at(*offsets: int, key: CohortKey = MOBILE_R2) -> BeaconBatch:
    """One beacon (LCP 1000 ms) at each ``T0 + offset``."""
    return batch(*(beacon(T0 + o, key, LCP=1000.0) for o in offsets))


def starts(summaries: Sequence[WindowSummary]) -> list[int]:
    return [s.start - T0 for s in summaries]


# -- window boundaries ------------------------------------------------------------------


@pytest.mark.parametrize("ts, size, expected", [
    (T0, 5 * SEC, T0),  # on a boundary: the window starts there
    (T0 + 4999, 5 * SEC, T0),  # last ms of a window
    (T0 + 5000, 5 * SEC, T0 + 5000),  # first ms of the next: windows are half-open
    (T0 + 7, 1, T0 + 7),  # 1 ms windows: every ms is its own window
    (T0 + 61_234, MIN, T0 + MIN),  # minute windows
    (T0 + HOUR - 1, HOUR, T0),  # hour windows, last ms
    (T0 + DAY + 5, DAY, T0 + DAY),  # day windows align to UTC midnight (epoch 0)
    (T0 + 2 * SEC + 1, 3 * SEC, T0),  # a size that divides T0: 3 s windows, aligned to epoch 0
    (7 * SEC + 500, 7 * SEC, 7 * SEC),  # a size that does not divide T0: still epoch-aligned
])
def test_window_start(ts, size, expected):
    assert window_start(ts, size) == expected


def test_window_start_works_on_arrays_like_on_scalars():
    ts = np.array([T0, T0 + 4999, T0 + 5000, T0 + 12_345], np.int64)
    got = window_start(ts, 5 * SEC)
    assert got.tolist() == [window_start(int(t), 5 * SEC) for t in ts]
    assert got.tolist() == [T0, T0, T0 + 5000, T0 + 10_000]


# -- closing by watermark ---------------------------------------------------------------


@pytest.mark.parametrize("size, lateness", [
    (1 * SEC, 0),  # small windows, no lateness
    (5 * SEC, 0),  # the default size, closing at the window end
    (5 * SEC, 3 * SEC),  # lateness shorter than a window
    (5 * SEC, 12 * SEC),  # lateness of more than two windows
    (MIN, 5 * SEC),  # minute windows
], ids=lambda v: str(v))
@pytest.mark.parametrize("how", ["add", "advance"])
def test_a_window_closes_exactly_when_the_watermark_reaches_end_plus_lateness(size, lateness, how):
    w = TumblingWindows(size, lateness)
    assert w.add(at(0, size - 1)) == []  # first and last ms of window T0
    close_at = size + lateness

    def move(offset: int) -> list[WindowSummary]:
        # A beacon far in another cohort, or an idle source: either moves the watermark.
        return w.add(at(offset, key=DESKTOP_R1)) if how == "add" else w.advance(T0 + offset)

    assert move(close_at - 1) == []  # one ms before: still open
    (closed,) = [s for s in move(close_at) if s.key == MOBILE_R2]  # at: closed
    assert (closed.start, closed.page_views, closed.late) == (T0, 2, 0)
    assert w.watermark == T0 + close_at


# -- late beacons -----------------------------------------------------------------------

# Each step is a batch of offsets from T0 (mobile cohort) or ("advance", offset).
LATE_CASES = [
    pytest.param(
        0, [[10], [12_000], [20]],
        [(0, 1, 0), (10_000, 2, 1)], 1,
        id="late-joins-the-watermark-window",  # T0 closed at 12 s: the beacon at 20 ms goes to 10 s
    ),
    pytest.param(
        3000, [[100], [7999], [200]],
        [(0, 2, 0), (5000, 1, 0)], 0,
        id="within-lateness-is-not-late",  # T0 closes at 8 s; at 7.999 s it still takes beacons
    ),
    pytest.param(
        3000, [[100], [8000], [200]],
        [(0, 1, 0), (5000, 2, 1)], 1,
        id="at-the-limit-is-late",  # at 8 s T0 is closed
    ),
    pytest.param(
        0, [[100], [20_000, 300]],
        [(0, 1, 0), (20_000, 2, 1)], 1,
        id="judged-against-the-watermark-before-the-beacon",  # an earlier beacon of the same batch closes T0
    ),
    pytest.param(
        0, [[100], [300, 20_000]],
        [(0, 2, 0), (20_000, 1, 0)], 0,
        id="a-later-beacon-does-not-make-an-earlier-one-late",
    ),
    pytest.param(
        0, [[100], ("advance", 30_000), [200, 31_000]],
        [(0, 1, 0), (30_000, 2, 1)], 1,
        id="late-after-an-idle-advance",  # the watermark came from advance(), not from data
    ),
    pytest.param(
        5000, [[0], [60_000], [1, 2, 3], [4999, 5000]],
        [(0, 1, 0), (60_000, 6, 5)], 5,
        id="many-late-in-several-batches",  # all land in the 60 s window, each counted once
    ),
]


@pytest.mark.parametrize("lateness, steps, expected, late_total", LATE_CASES)
def test_late_beacons_are_counted_once_in_the_current_window(lateness, steps, expected, late_total):
    w = TumblingWindows(5 * SEC, lateness)
    out: list[WindowSummary] = []
    added = 0
    for step in steps:
        if step[0] == "advance":
            out += w.advance(T0 + step[1])
        else:
            out += w.add(at(*step))
            added += len(step)
    out += w.flush()
    assert [(s.start - T0, s.page_views, s.late) for s in out] == expected
    assert w.late_total == late_total == sum(s.late for s in out)
    assert sum(s.page_views for s in out) == added  # nothing lost, nothing counted twice


def test_late_beacons_stay_in_their_own_cohort():
    w = TumblingWindows(5 * SEC, 0)
    w.add(batch(beacon(T0, MOBILE_R2, LCP=900.0), beacon(T0 + 1, CANARY, LCP=900.0)))
    w.add(at(11_000, key=DESKTOP_R1))  # closes T0 and T0+5s
    w.add(batch(beacon(T0 + 2, CANARY, LCP=3000.0), beacon(T0 + 3, CANARY, LCP=100.0),
                beacon(T0 + 4, MOBILE_R2, errors=2)))
    last = {s.key: s for s in w.flush()}
    assert {k: (s.start - T0, s.page_views, s.late) for k, s in last.items()} == {
        DESKTOP_R1: (10_000, 1, 0),
        CANARY: (10_000, 2, 2),
        MOBILE_R2: (10_000, 1, 1),
    }
    assert last[CANARY].over_good["LCP"] == 1 and last[CANARY].sketches["LCP"].count == 2
    assert (last[MOBILE_R2].error_views, last[MOBILE_R2].errors) == (1, 2)


# -- conservation under any order: a property test against a per-beacon reference ------


def reference(steps: list, size: int, lateness: int) -> dict:
    """The windowing contract read literally, one beacon at a time.

    A window ``s`` is closed once the watermark ``w`` satisfies ``s + size + lateness <= w``.
    A beacon whose window was closed by the watermark of the beacons *before it* (in any
    batch) is late and joins the window of that watermark; windows are emitted at the end
    of the step that closes them. Returns ``{(start, key): (summary, step that closed it)}``.
    """
    wm: int | None = None
    out: dict[tuple[int, CohortKey], list] = {}
    for k, step in enumerate(steps):
        if isinstance(step, int):
            wm = step if wm is None else max(wm, step)
        elif step:
            for b in step:
                before = wm
                wm = b.ts if wm is None else max(wm, b.ts)
                start = window_start(b.ts, size)
                late = before is not None and start + size + lateness <= before
                if late:
                    start = window_start(before, size)
                entry = out.setdefault((start, b.key), [WindowSummary.empty(b.key, start, size), None])
                s = entry[0]
                s.page_views += 1
                s.late += late
                s.errors += b.errors
                s.error_views += b.errors >= 1
                for m, v in b.metrics.items():
                    s.sketches[m].add(np.array([v]))
                    s.over_good[m] += v > GOOD_LIMITS[m]
        for (start, _), entry in out.items():
            if entry[1] is None and wm is not None and start + size + lateness <= wm:
                entry[1] = k
    return {key: (entry[0], len(steps) if entry[1] is None else entry[1]) for key, entry in out.items()}


beacons = st.builds(
    lambda t, key, lcp, cls, errors: beacon(T0 + t, KEYS[key], errors, LCP=lcp, CLS=cls),
    st.integers(0, 60_000),
    st.integers(0, len(KEYS) - 1),
    st.one_of(st.just(math.nan), st.just(2500.0), st.floats(0, 20_000)),
    st.one_of(st.just(math.nan), st.just(0.0), st.just(0.1), st.floats(0, 2)),
    st.integers(0, 3),
)
steps = st.lists(
    st.one_of(st.lists(beacons, max_size=25), st.integers(T0, T0 + 70_000)),  # a batch or an advance
    min_size=1, max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(steps, st.sampled_from([1000, 5000]), st.sampled_from([0, 1500, 5000]))
def test_no_beacon_is_lost_or_counted_twice(steps, size, lateness):
    """Whatever the order and batching, each beacon is counted once, where the contract says."""
    w = TumblingWindows(size, lateness)
    out: list[tuple[WindowSummary, int]] = []
    for k, step in enumerate(steps):
        closed = w.advance(step) if isinstance(step, int) else w.add(batch(*step))
        assert [s.start for s in closed] == sorted(s.start for s in closed)
        out += [(s, k) for s in closed]
    out += [(s, len(steps)) for s in w.flush()]
    assert w.flush() == []

    put = [b for step in steps if not isinstance(step, int) for b in step]
    assert sum(s.page_views for s, _ in out) == len(put)
    assert sum(s.errors for s, _ in out) == sum(b.errors for b in put)
    assert sum(s.error_views for s, _ in out) == sum(b.errors >= 1 for b in put)
    for m in METRICS:
        values = [b.metrics[m] for b in put if m in b.metrics]
        assert sum(s.sketches[m].count for s, _ in out) == len(values)
        assert sum(s.over_good[m] for s, _ in out) == sum(v > GOOD_LIMITS[m] for v in values)
    assert sum(s.late for s, _ in out) == w.late_total
    assert all(s.sessions == s.page_views for s, _ in out)  # no sessions given: each view alone

    # And each (window, cohort) is emitted once, by the step the contract says, with exactly
    # the beacons the contract puts there.
    got = {(s.start, s.key): (s, k) for s, k in out}
    assert len(got) == len(out)
    expected = reference(steps, size, lateness)
    assert got.keys() == expected.keys()
    for where, (s, k) in got.items():
        want, want_k = expected[where]
        assert k == want_k, where
        assert (s.page_views, s.late, s.errors, s.error_views) == (
            want.page_views, want.late, want.errors, want.error_views), where
        assert s.over_good == want.over_good, where
        assert s.sketches == want.sketches, where


# -- per cohort, and merging partitions -------------------------------------------------


def test_summaries_are_kept_per_cohort_key_whatever_the_batch_codes():
    w = TumblingWindows(5 * SEC, 0)
    # Two batches number the same keys differently (codes follow first appearance).
    w.add(batch(beacon(T0, MOBILE_R2), beacon(T0 + 1, DESKTOP_R1), beacon(T0 + 2, DESKTOP_R1)))
    w.add(batch(beacon(T0 + 3, CANARY), beacon(T0 + 4, DESKTOP_R1), beacon(T0 + 5, MOBILE_R2)))
    summaries = w.flush()
    assert {s.key: s.page_views for s in summaries} == {MOBILE_R2: 2, DESKTOP_R1: 3, CANARY: 1}
    assert all(s.start == T0 and s.size_ms == 5 * SEC for s in summaries)


def rum_beacons(n: int, seed: int) -> list[Beacon]:
    """Seeded, time-ordered RUM-like beacons over 30 s in three cohorts."""
    rng = np.random.default_rng(seed)
    ts = T0 + np.sort(rng.integers(0, 30_000, n))
    lcp = rng.lognormal(np.log(1300), 0.8, n)
    cls = np.where(rng.random(n) < 0.3, 0.0, np.round(rng.lognormal(np.log(0.04), 1.3, n), 4))
    inp = np.where(rng.random(n) < 0.4, np.nan, np.maximum(8, np.round(rng.lognormal(4.6, 1, n) / 8) * 8))
    keys = rng.integers(0, len(KEYS), n)
    errors = rng.choice([0, 0, 0, 1, 4], n)
    return [beacon(int(ts[i]), KEYS[keys[i]], int(errors[i]), LCP=lcp[i], CLS=cls[i], INP=inp[i])
            for i in range(n)]


def run(beacons: list[Beacon], chunk: int = 50) -> dict[tuple[int, CohortKey], WindowSummary]:
    w = TumblingWindows(5 * SEC, 0)
    out = [s for i in range(0, len(beacons), chunk) for s in w.add(batch(*beacons[i:i + chunk]))]
    return {(s.start, s.key): s for s in out + w.flush()}


def test_two_partitions_merge_to_what_one_aggregator_counts():
    everything = rum_beacons(800, 3)
    expected = run(everything)
    side = np.random.default_rng(4).random(len(everything)) < 0.4  # the partitioner
    merged: dict[tuple[int, CohortKey], WindowSummary] = {}
    for part in (side, ~side):
        for where, s in run([b for b, p in zip(everything, part) if p]).items():
            if where in merged:
                merged[where].merge(s)
            else:
                merged[where] = s
    assert merged.keys() == expected.keys()
    for where, s in merged.items():
        e = expected[where]
        assert (s.page_views, s.sessions, s.error_views, s.errors, s.late) == (
            e.page_views, e.sessions, e.error_views, e.errors, e.late)
        assert s.over_good == e.over_good
        assert s.sketches == e.sketches  # every metric's sketch, bucket for bucket


def test_window_sketches_equal_sketches_of_the_raw_values():
    """The window aggregator buckets a whole batch at once; that must match LogSketch.add."""
    everything = rum_beacons(500, 5)
    for (start, key), s in run(everything, chunk=70).items():
        mine = [b for b in everything if b.key == key and window_start(b.ts, 5 * SEC) == start]
        for m in METRICS:
            values = np.array([b.metrics[m] for b in mine if m in b.metrics])
            direct = LogSketch(s.sketches[m].relative_accuracy)
            direct.add(values)
            assert s.sketches[m] == direct, (start, key, m)


def test_merging_summaries_adds_every_field_and_leaves_the_argument_alone():
    w1, w2 = TumblingWindows(5 * SEC, 0), TumblingWindows(5 * SEC, 0)
    for w, late_ts in ((w1, [1, 2]), (w2, [3])):
        w.add(batch(beacon(T0 + 100, errors=1, LCP=3000.0, CLS=0.0)))
        w.add(at(10_000))  # closes T0 and T0+5s
        w.add(batch(*(beacon(T0 + t, errors=2, LCP=100.0 * t, CLS=0.2) for t in late_ts)))  # late
    (a,), (b,) = w1.flush(), w2.flush()
    b_before = (b.page_views, b.late, b.errors, b.error_views, dict(b.over_good),
                {m: sk.copy() for m, sk in b.sketches.items()})
    fields = [(s.page_views, s.late, s.errors, s.error_views) for s in (a, b)]
    over = {m: a.over_good[m] + b.over_good[m] for m in METRICS}
    a.merge(b)
    assert (a.page_views, a.late, a.errors, a.error_views) == tuple(map(sum, zip(*fields))) == (5, 3, 6, 3)
    assert a.over_good == over and a.over_good["CLS"] == 3
    assert a.sketches["LCP"].count == 5 and a.sketches["CLS"].count == 3
    assert (b.page_views, b.late, b.errors, b.error_views, b.over_good, b.sketches) == b_before


@pytest.mark.parametrize("start, size", [(T0 + 5 * SEC, 5 * SEC), (T0, 10 * SEC)],
                         ids=["other-window", "other-size"])
def test_merging_summaries_of_different_windows_is_refused(start, size):
    a = WindowSummary.empty(MOBILE_R2, T0, 5 * SEC)
    with pytest.raises(ValueError, match="cannot merge"):
        a.merge(WindowSummary.empty(MOBILE_R2, start, size))


# -- rate counts ------------------------------------------------------------------------


@pytest.mark.parametrize("metric, value, over", [
    ("LCP", 2500.0, 0),  # the good limit itself is good (inclusive)
    ("LCP", 2500.001, 1),  # just above it is not
    ("LCP", 0.0, 0),  # a zero is good
    ("CLS", 0.1, 0),  # CLS limit, inclusive
    ("CLS", 0.1001, 1),  # CLS just above
    ("CLS", 0.0, 0),  # the common exact zero
    ("INP", 200.0, 0),  # INP limit
    ("INP", 208.0, 1),  # the next 8 ms step
    ("FCP", 1800.0, 0),  # FCP limit
    ("FCP", float(np.nextafter(1800.0, 2000.0)), 1),  # the next float above it
    ("TTFB", 800.0, 0),  # TTFB limit
    ("TTFB", 800.5, 1),  # TTFB above
])
def test_over_good_uses_the_web_vitals_good_limits(metric, value, over):
    w = TumblingWindows(5 * SEC, 0)
    w.add(batch(beacon(T0, **{metric: value})))
    (s,) = w.flush()
    assert s.over_good == {m: over if m == metric else 0 for m in METRICS}
    assert s.sketches[metric].count == 1


def test_error_views_count_page_views_with_errors_and_errors_sums_them():
    w = TumblingWindows(5 * SEC, 0)
    w.add(batch(*(beacon(T0 + i, errors=e) for i, e in enumerate([0, 1, 5, 0, 2, 0]))))
    (s,) = w.flush()
    assert (s.page_views, s.error_views, s.errors) == (6, 3, 8)


def test_nan_metrics_never_count():
    """NaN (absent) is neither a value in the sketch nor over the limit, even in a raw batch."""
    n = 4
    metrics = {m: np.full(n, np.nan) for m in METRICS}
    metrics["LCP"] = np.array([np.nan, 3000.0, np.nan, 100.0])
    metrics["CLS"] = np.array([np.nan, np.nan, 0.0, np.nan])
    raw = BeaconBatch(ts=np.full(n, T0, np.int64), key=np.zeros(n, np.int32), keys=[MOBILE_R2],
                      metrics=metrics, errors=np.zeros(n, np.int64))
    w = TumblingWindows(5 * SEC, 0)
    w.add(raw)
    (s,) = w.flush()
    assert s.page_views == 4
    assert {m: s.sketches[m].count for m in METRICS} == {"LCP": 2, "INP": 0, "CLS": 1, "FCP": 0, "TTFB": 0}
    assert s.over_good == {"LCP": 1, "INP": 0, "CLS": 0, "FCP": 0, "TTFB": 0}


# -- advance, flush, parameters ---------------------------------------------------------


def test_advance_closes_windows_of_an_idle_source():
    w = TumblingWindows(5 * SEC, 1 * SEC)
    w.add(at(100, 5100))
    assert w.advance(T0 + 5999) == []  # T0 closes at 6 s
    assert starts(w.advance(T0 + 6000)) == [0]  # no data, yet time passed
    assert w.advance(T0) == []  # the watermark never goes back
    assert w.watermark == T0 + 6000
    assert starts(w.advance(T0 + 60_000)) == [5000]
    assert w.flush() == []


def test_advance_before_any_data_makes_old_beacons_late():
    w = TumblingWindows(5 * SEC, 0)
    assert w.advance(T0 + 20_000) == []
    w.add(at(100))
    (s,) = w.flush()
    assert (s.start - T0, s.page_views, s.late, w.late_total) == (20_000, 1, 1, 1)


def test_flush_closes_everything_in_start_order():
    w = TumblingWindows(5 * SEC, MIN)  # nothing closes by watermark here
    assert w.add(at(16_000, 7000, 100)) == []
    assert w.add(at(12_000, 100, key=CANARY)) == []
    out = w.flush()
    assert [(s.start - T0, s.key) for s in out] == [
        (0, MOBILE_R2), (0, CANARY), (5000, MOBILE_R2), (10_000, CANARY), (15_000, MOBILE_R2)]
    assert w.flush() == []  # nothing is left open


@pytest.mark.parametrize("kwargs", [
    {"size_ms": 0},  # an empty window
    {"size_ms": -5000},  # a negative size
    {"size_ms": 5000, "allowed_lateness_ms": -1},  # negative lateness
    {"size_ms": 5000, "relative_accuracy": 0},  # the sketch parameter is checked eagerly too
    {"size_ms": 5000, "relative_accuracy": 1.2},
    {"size_ms": 0.5},  # int() would make it 0 and add() would divide by zero
    {"size_ms": 1500.5},  # int() would silently make it 1500
    {"size_ms": 5000, "allowed_lateness_ms": 0.5},  # fractional lateness
], ids=["size-0", "size-negative", "lateness-negative", "accuracy-0", "accuracy-above-1",
        "size-half-ms", "size-fractional", "lateness-fractional"])
def test_bad_parameters_are_refused(kwargs):
    with pytest.raises(ValueError, match="got"):
        TumblingWindows(**kwargs)


def test_sessions_are_counted_once_per_window_and_a_missing_session_counts_alone():
    """The sample-ratio check counts users: page views of one session count once per window."""
    keys = [CohortKey("shop-web", "r2", None, "mobile"), CohortKey("shop-web", "r1", None, "desktop")]
    t0 = 1_763_856_000_000
    n = 5
    b = BeaconBatch(ts=np.array([t0, t0 + 1, t0 + 2, t0 + 3, t0 + 6000], np.int64),
                    key=np.array([0, 0, 0, 1, 0], np.int32), keys=keys,
                    metrics={m: np.full(n, np.nan) for m in METRICS}, errors=np.zeros(n, np.int64),
                    session=["u1", "u1", None, "u1", "u1"])  # u1 in two cohorts and two windows
    w = TumblingWindows(5000, 0)
    closed = w.add(b) + w.flush()
    counts = {(s.start, s.key): (s.page_views, s.sessions) for s in closed}
    assert counts == {(t0, keys[0]): (3, 2), (t0, keys[1]): (1, 1), (t0 + 5000, keys[0]): (1, 1)}


@pytest.mark.parametrize("chunks", [
    [5],  # all five page views in one batch
    [3, 2],  # the gateway flushed mid-window
    [1, 1, 1, 1, 1],  # one page view per batch (a quiet source)
], ids=["one-batch", "two-batches", "five-batches"])
def test_a_session_counts_once_per_window_however_its_page_views_are_batched(chunks):
    """"Distinct sessions in this window" must not depend on how the window's beacons were batched."""
    views = [beacon(T0 + i, session=user) for i, user in enumerate(["u1", "u2", "u1", "u1", "u2"])]
    w = TumblingWindows(5 * SEC, 0)
    done = 0
    for size in chunks:
        w.add(batch(*views[done:done + size]))
        done += size
    (s,) = w.flush()
    assert (s.page_views, s.sessions) == (5, 2)


def test_batching_never_changes_the_windows():
    """However a stream is cut into batches, every beacon lands in the same window."""
    rng = np.random.default_rng(7)
    ts = 10_000 + np.cumsum(rng.integers(0, 400, 2000)) - rng.integers(0, 9000, 2000) * (rng.random(2000) < 0.05)
    values = rng.lognormal(7, 0.5, 2000)

    def run(cuts):
        w, out, lo = TumblingWindows(5 * SEC, 2 * SEC), [], 0
        for hi in list(cuts) + [len(ts)]:
            out += w.add(batch(*(beacon(T0 + int(t), LCP=float(v)) for t, v in zip(ts[lo:hi], values[lo:hi]))))
            lo = hi
        out += w.flush()
        return [(s.start, s.page_views, s.late, s.sketches["LCP"].count) for s in out]

    one = run([])
    assert sum(x[2] for x in one) > 0  # the stream has late beacons
    for seed in range(5):
        cuts = sorted(np.random.default_rng(seed).choice(np.arange(1, len(ts)), 30, replace=False).tolist())
        assert run(cuts) == one


def test_restore_resumes_as_if_never_stopped():
    """Restored to the watermark before a record, a fresh run counts from that record on
    exactly as the uninterrupted run (what a restart from a stage-1 checkpoint relies on)."""
    whole = TumblingWindows(5 * SEC, 0)
    head = whole.add(at(100, 4000))
    tail = whole.add(at(9000, 15_000, 2000, 16_000, 22_000)) + whole.flush()
    assert head == [] and [(s.start - T0, s.late) for s in tail][:1] == [(0, 0)]
    resumed = TumblingWindows(5 * SEC, 0)
    resumed.restore(T0 + 4000)
    again = resumed.add(at(9000, 15_000, 2000, 16_000, 22_000)) + resumed.flush()
    view = lambda out: [(s.start, s.page_views, s.late) for s in out]  # noqa: E731
    assert view(again) == view(tail)[1:]  # all but window 0, whose first beacons came before
    assert sum(s.late for s in again) == 1  # the beacon at 2 s, after 15 s: counted in 15 s


# -- caps: cohorts per app per window, page views per session per window ----------------------

def invented(i: int, app: str = "shop-web", device: str = "mobile") -> CohortKey:
    return CohortKey(app, f"fake-{i}", None, device)


def test_an_app_opens_at_most_max_cohorts_per_window_and_the_rest_is_rejected_with_a_reason():
    """Invented releases cost one summary each: beyond the cap their beacons are refused
    (for the dead-letter topic), the first keys to arrive are kept, other apps are unaffected."""
    w = TumblingWindows(5 * SEC, 0, max_cohorts=3)
    b = batch(*(beacon(T0 + i, invented(i)) for i in range(5)), beacon(T0 + 9, invented(0, app="blog")))
    w.add(b)
    assert [row for row, _ in w.rejected] == [3, 4]
    assert "cohort: app 'shop-web' already has 3 cohorts" in w.rejected[0][1]
    assert sorted(s.key.release for s in w.flush()) == ["fake-0", "fake-0", "fake-1", "fake-2"]


def test_the_cohort_cap_is_per_window_and_a_kept_cohort_keeps_counting():
    w = TumblingWindows(5 * SEC, 0, max_cohorts=1)
    w.add(batch(beacon(T0, invented(0)), beacon(T0 + 1, invented(1)), beacon(T0 + 2, invented(0))))
    assert [row for row, _ in w.rejected] == [1]
    closed = w.add(batch(beacon(T0 + 6000, invented(1))))  # a new window: the cap starts again
    assert w.rejected == []
    assert [(s.start - T0, s.key.release, s.page_views) for s in closed + w.flush()] == [
        (0, "fake-0", 2), (5000, "fake-1", 1)]


def test_a_protected_release_is_never_crowded_out():
    """A running rollout's cohorts are admitted whatever invented releases arrived first."""
    canary = CohortKey("shop-web", "2026.11.23-abc", None, "mobile")
    flagged = CohortKey("shop-web", "2026.11.23-abc", "canary", "desktop")
    w = TumblingWindows(5 * SEC, 0, max_cohorts=2, protected_releases={"2026.11.23-abc"})
    w.add(batch(*(beacon(T0 + i, invented(i)) for i in range(4)), beacon(T0 + 5, canary),
                beacon(T0 + 6, flagged), beacon(T0 + 7, CohortKey("shop-web", "2026.11.23-abc", "x" * 8, "mobile"))))
    assert [row for row, _ in w.rejected] == [2, 3, 6]  # an invented cohort of it is not protected
    assert {s.key for s in w.flush()} >= {canary, flagged}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 12_000), st.integers(0, 6)), min_size=1, max_size=60),
       st.lists(st.integers(1, 59), max_size=5))
def test_which_cohorts_the_cap_keeps_never_depends_on_batching(rows, cuts):
    rows = sorted(rows)
    beacons = [beacon(T0 + t, invented(k)) for t, k in rows]

    def run(cuts):
        w, kept, rejected, lo = TumblingWindows(5 * SEC, 1000, max_cohorts=3), [], [], 0
        for hi in sorted(set(c for c in cuts if c < len(beacons))) + [len(beacons)]:
            kept += w.add(batch(*beacons[lo:hi]))
            rejected += [lo + row for row, _ in w.rejected]
            lo = hi
        kept += w.flush()
        return sorted((s.start, s.key.release, s.page_views) for s in kept), rejected

    assert run(cuts) == run([])


def sessions_batch(sessions: list[str | None], t: int = 0, key: CohortKey = MOBILE_R2) -> BeaconBatch:
    return batch(*(beacon(T0 + t + i, key, session=s, LCP=8000.0) for i, s in enumerate(sessions)))


def test_page_views_of_one_session_beyond_the_cap_are_not_counted_but_counted_as_capped():
    w = TumblingWindows(5 * SEC, 0, max_views_per_session=3)
    w.add(sessions_batch(["bot"] * 5 + ["u1", None, None, None, None]))
    (s,) = w.flush()
    assert (s.page_views, s.capped, s.sketches["LCP"].count, s.sessions) == (8, 2, 8, 6)


@pytest.mark.parametrize("chunks", [[10], [2, 8], [1] * 10, [4, 1, 5]])
def test_the_session_cap_does_not_depend_on_batching(chunks):
    views = ["bot", "u1", "bot", "bot", "u2", "bot", "bot", "u1", "bot", "bot"]
    w, done = TumblingWindows(5 * SEC, 0, max_views_per_session=2), 0
    for size in chunks:
        w.add(sessions_batch(views[done:done + size], t=done))
        done += size
    (s,) = w.flush()
    assert (s.page_views, s.capped) == (5, 5)  # bot: 2 of 7; u1: 2; u2: 1


def test_the_session_cap_is_per_window_across_cohorts():
    """One session is one user wherever its page views claim to come from."""
    w = TumblingWindows(5 * SEC, 0, max_views_per_session=2)
    closed = w.add(batch(beacon(T0, MOBILE_R2, session="bot"), beacon(T0 + 1, DESKTOP_R1, session="bot"),
                         beacon(T0 + 2, CANARY, session="bot"), beacon(T0 + 6000, CANARY, session="bot")))
    out = {(s.start - T0, s.key): (s.page_views, s.capped) for s in closed + w.flush()}
    assert out == {(0, MOBILE_R2): (1, 0), (0, DESKTOP_R1): (1, 0), (0, CANARY): (0, 1), (5000, CANARY): (1, 0)}


def test_capped_survives_the_wire_and_merging_and_an_older_record_reads_as_none_capped():
    s = WindowSummary.empty(MOBILE_R2, T0, 5000)
    assert "capped" not in s.to_dict()  # the usual record is unchanged
    s.capped = 7
    t = WindowSummary.from_dict(s.to_dict())
    assert t.capped == 7 and t == s
    t.merge(s)
    assert t.capped == 14


@pytest.mark.parametrize("kwargs", [{"max_cohorts": 0}, {"max_views_per_session": 0},
                                    {"max_cohorts": 2.5}])
def test_bad_caps_are_refused(kwargs):
    with pytest.raises(ValueError, match="got"):
        TumblingWindows(5000, 0, **kwargs)


def test_a_rollout_recorded_later_protects_its_releases_from_then_on():
    """The worker hands stage 1 its live rollouts: a rollout that arrives mid-flood is kept."""
    from types import SimpleNamespace

    from detectors.windows import RolloutReleases

    rollouts: dict = {}
    w = TumblingWindows(5 * SEC, 0, max_cohorts=1, protected_releases=RolloutReleases(rollouts))
    canary = CohortKey("shop-web", "2026.11.23-abc", None, "mobile")
    w.add(batch(beacon(T0, invented(0)), beacon(T0 + 1, canary)))
    assert [row for row, _ in w.rejected] == [1]  # not yet known: the cap applies
    rollouts["shop-web:2026.11.23-abc"] = SimpleNamespace(canary="2026.11.23-abc", baseline="r1", ended_at=None)
    w.add(batch(beacon(T0 + 2, canary), beacon(T0 + 3, invented(1))))
    assert [row for row, _ in w.rejected] == [1]  # the canary is in; the invented release is not
