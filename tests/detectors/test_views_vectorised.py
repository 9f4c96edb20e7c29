"""The vectorised path of PageViews.observe_arrays gives what the beacon-by-beacon loop gives.

The loop (``vectorise=False``) is the reference semantics; the vectorised path takes beacons
alone in their table bucket with numpy. Both must return the same per-beacon answers and
leave the same tables and eviction count, over batch after batch, including small tables
(collisions and early evictions), repeated views, horizons that expire and capped views.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.views import PageViews

APPS = ["shop-web", "blog"]

row = st.tuples(
    st.sampled_from(APPS),
    st.integers(0, 60),  # view id out of a small pool: repeats within and across batches
    st.integers(0, 5_000),  # ts step
    st.integers(0, 31),  # metric bits
    st.booleans(),  # error
    st.one_of(st.none(), st.integers(0, 20)),  # session
)
batches = st.lists(st.lists(row, min_size=0, max_size=40), min_size=1, max_size=6)


def run(batches_, capacity: int, horizon: int, vectorise: bool, cap_every: int):
    views = PageViews(horizon_ms=horizon, capacity=capacity)
    t, out = 1_763_856_000_000, []
    for i, batch in enumerate(batches_):
        apps = [a for a, *_ in batch]
        ids = [f"v{v}" for _, v, *_ in batch]
        ts = []
        for _, _, step, *_ in batch:
            t += step
            ts.append(t)
        before = np.maximum.accumulate(np.array(ts, np.int64)) if ts else np.array([], np.int64)
        seen = np.concatenate([[ts[0] if ts else t], before[:-1]]) if ts else before
        salt = np.array([hash((a,)) for a in apps], np.int64)
        got = views.observe_arrays(salt, ids, ts, seen, [b for *_, b, _, _ in batch],
                                   [e for *_, e, _ in batch],
                                   sessions=[None if s is None else f"s{s}" for *_, s in batch],
                                   vectorise=vectorise)
        out.append(tuple(a.tolist() for a in got))
        if cap_every and i % cap_every == 0 and batch:
            views.cap(apps[:1], ids[:1])
    return out, views._words.tolist(), views._session_words.tolist(), views.evicted_early


@settings(max_examples=300, deadline=None)
@given(batches, st.sampled_from([4, 16, 64, 1024]), st.sampled_from([1, 2_000, 60_000]), st.integers(0, 3))
def test_the_vectorised_path_answers_and_remembers_as_the_loop(batches_, capacity, horizon, cap_every):
    assert run(batches_, capacity, horizon, True, cap_every) == run(batches_, capacity, horizon, False, cap_every)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 3)), min_size=1, max_size=300),
       st.sampled_from([64, 4096]))
def test_mostly_distinct_views_take_the_vectorised_path_alike(rows, capacity):
    """The stage-1 shape: many views alone in their bucket, a few sharing one."""
    batch = [("shop-web", v, 7, b, b == 3, v % 50) for v, b in rows]
    assert run([batch, batch], capacity, 60_000, True, 0) == run([batch, batch], capacity, 60_000, False, 0)


def test_observe_keeps_its_list_answers():
    views = PageViews(horizon_ms=60_000, capacity=64)
    assert views.observe(["shop-web"] * 2, ["a", "b"], [1000, 2000], [1000, 1000], [1, 4], [False, True]) \
        == ([True, True], [0, 0], [False, True])
