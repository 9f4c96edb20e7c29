"""Event-time tumbling windows: closing by watermark, late beacons, conservation, merging."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.beacon import METRICS, BeaconBatch, CohortKey
from detectors.windows import TumblingWindows, WindowSummary, window_start

T0 = 1_763_856_000_000  # 2025-11-23T00:00:00Z, a multiple of every window size used here
KEYS = [CohortKey("shop-web", "r2", None, "mobile"), CohortKey("shop-web", "r1", None, "desktop")]


def batch(ts, key=None, lcp=None, cls=None, errors=None) -> BeaconBatch:
    n = len(ts)
    metrics = {m: np.full(n, np.nan) for m in METRICS}
    metrics["LCP"] = np.array(lcp if lcp is not None else [1000.0] * n, float)
    if cls is not None:
        metrics["CLS"] = np.array(cls, float)
    return BeaconBatch(ts=np.array(ts, np.int64), key=np.array(key or [0] * n, np.int32), keys=KEYS,
                       metrics=metrics, errors=np.array(errors or [0] * n, np.int64))


@pytest.mark.parametrize("ts, size, expected", [
    (T0, 5000, T0),  # on a boundary
    (T0 + 4999, 5000, T0),  # last ms of the window
    (T0 + 5000, 5000, T0 + 5000),  # first ms of the next
    (T0 + 61_234, 60_000, T0 + 60_000),  # minute windows
])
def test_window_start(ts, size, expected):
    assert window_start(ts, size) == expected


@pytest.mark.parametrize("lateness", [0, 1000, 5000])
def test_a_window_closes_exactly_when_the_watermark_reaches_end_plus_lateness(lateness):
    w = TumblingWindows(5000, lateness)
    assert w.add(batch([T0 + 100])) == []
    assert w.add(batch([T0 + 5000 + lateness - 1])) == []  # one ms before: still open
    closed = w.add(batch([T0 + 5000 + lateness]))  # at: closed
    assert [s.start for s in closed] == [T0]


def test_a_late_beacon_counts_in_the_current_window_and_as_late():
    w = TumblingWindows(5000, 0)
    w.add(batch([T0 + 10]))
    w.add(batch([T0 + 12_000]))  # closes T0 and T0+5000
    w.add(batch([T0 + 20]))  # late: window T0 is closed
    (last,) = w.flush()
    assert (last.start, last.page_views, last.late) == (T0 + 10_000, 2, 1)
    assert w.late_total == 1


def test_summaries_are_kept_per_cohort_key():
    w = TumblingWindows(5000, 0)
    w.add(batch([T0, T0 + 1, T0 + 2], key=[0, 1, 1]))
    summaries = w.flush()
    assert {s.key: s.page_views for s in summaries} == {KEYS[0]: 1, KEYS[1]: 2}


def test_rate_counts_use_the_good_limits_and_page_views_with_errors():
    w = TumblingWindows(5000, 0)
    w.add(batch([T0] * 5, lcp=[2500.0, 2500.1, np.nan, 100.0, 4000.0],
                cls=[0.1, 0.11, np.nan, 0.0, 0.3], errors=[0, 3, 1, 0, 0]))
    (s,) = w.flush()
    assert s.over_good["LCP"] == 2  # 2500 is good (inclusive); NaN never counts
    assert s.over_good["CLS"] == 2
    assert (s.error_views, s.errors) == (2, 4)
    assert s.sketches["CLS"].count == 4 and s.sketches["CLS"].zeros == 1


def test_advance_closes_windows_of_an_idle_source_and_flush_closes_all_in_order():
    w = TumblingWindows(5000, 1000)
    w.add(batch([T0 + 100]))
    assert w.advance(T0 + 5999) == []
    assert [s.start for s in w.advance(T0 + 6000)] == [T0]  # no data, yet time passed
    w2 = TumblingWindows(5000, 60_000)  # nothing closes by watermark here
    assert w2.add(batch([T0 + 16_000, T0 + 7000, T0 + 100])) == []
    assert [s.start for s in w2.flush()] == [T0, T0 + 5000, T0 + 15_000]


@pytest.mark.parametrize("size, lateness", [(0, 0), (-5, 0), (5000, -1)])
def test_bad_parameters_are_refused(size, lateness):
    with pytest.raises(ValueError):
        TumblingWindows(size, lateness)


events = st.lists(st.tuples(st.integers(0, 120_000), st.integers(0, 1),
                            st.one_of(st.just(np.nan), st.floats(0, 50_000)), st.integers(0, 3)),
                  min_size=1, max_size=300)


@settings(max_examples=150, deadline=None)
@given(events, st.integers(1, 40), st.sampled_from([1000, 5000]), st.sampled_from([0, 2000]))
def test_no_beacon_is_lost_or_counted_twice(rows, chunk, size, lateness):
    """Whatever the order and chunking, every beacon is counted exactly once."""
    w = TumblingWindows(size, lateness)
    out: list[WindowSummary] = []
    for i in range(0, len(rows), chunk):
        part = rows[i:i + chunk]
        out += w.add(batch([T0 + t for t, *_ in part], key=[k for _, k, *_ in part],
                           lcp=[v for *_, v, _ in part], errors=[e for *_, e in part]))
    out += w.flush()
    lcp = np.array([v for *_, v, _ in rows])
    assert sum(s.page_views for s in out) == len(rows)
    assert sum(s.sketches["LCP"].count for s in out) == int(np.sum(~np.isnan(lcp)))
    assert sum(s.over_good["LCP"] for s in out) == int(np.sum(lcp > 2500))
    assert sum(s.error_views for s in out) == sum(e > 0 for *_, e in rows)
    assert sum(s.errors for s in out) == sum(e for *_, e in rows)
    assert sum(s.late for s in out) == w.late_total
    # Each (window, key) is emitted once.
    assert len({(s.start, s.key) for s in out}) == len(out)


def test_two_partitions_merge_to_what_one_aggregator_counts():
    rng = np.random.default_rng(3)
    ts = T0 + np.sort(rng.integers(0, 30_000, 400))
    key = rng.integers(0, 2, 400)
    lcp = rng.lognormal(7.3, 0.6, 400)
    whole = TumblingWindows(5000, 0)
    whole.add(batch(ts, key=key.tolist(), lcp=lcp))
    expected = {(s.start, s.key): s for s in whole.flush()}
    merged: dict = {}
    for part in (slice(0, None, 2), slice(1, None, 2)):  # two "partitions"
        w = TumblingWindows(5000, 0)
        w.add(batch(ts[part], key=key[part].tolist(), lcp=lcp[part]))
        for s in w.flush():
            if (s.start, s.key) in merged:
                merged[(s.start, s.key)].merge(s)
            else:
                merged[(s.start, s.key)] = s
    assert merged.keys() == expected.keys()
    for k, s in merged.items():
        assert s.page_views == expected[k].page_views
        assert s.sketches["LCP"] == expected[k].sketches["LCP"]
        assert s.over_good == expected[k].over_good


def test_merging_summaries_of_different_windows_is_refused():
    a = WindowSummary.empty(KEYS[0], T0, 5000)
    b = WindowSummary.empty(KEYS[0], T0 + 5000, 5000)
    with pytest.raises(ValueError, match="cannot merge"):
        a.merge(b)
