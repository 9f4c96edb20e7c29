"""RecentIds: the same answers as an exact table while it has room, fixed memory always."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.ingest.dedupe import WAYS, RecentIds


class ExactIds:
    """The model: every id with the time it was last taken, forever."""

    def __init__(self, ttl_ms: float) -> None:
        self.ttl_ms, self.seen = ttl_ms, {}

    def first_time(self, beacon_id: str, now_ms: int) -> bool:
        at = self.seen.get(beacon_id)
        if at is not None and now_ms - at < self.ttl_ms:
            return False
        self.seen[beacon_id] = now_ms
        return True


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 3_000)), max_size=300))
def test_agrees_with_an_exact_table_while_it_has_room(events: list[tuple[int, int]]) -> None:
    """41 distinct ids in 4,096 slots: no bucket overflows in practice, so no answer differs."""
    ids, exact = RecentIds(ttl_ms=1_000, capacity=4_096), ExactIds(1_000)
    now = 1  # time 0 marks an empty slot: callers pass epoch ms
    for beacon_id, step in events:
        now += step
        assert ids.first_time(str(beacon_id), now) == exact.first_time(str(beacon_id), now)
    assert ids.evicted_early == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.lists(st.integers(0, 40), max_size=12), st.integers(0, 3_000)), max_size=60))
def test_a_batch_answers_as_its_ids_would_one_by_one(batches: list[tuple[list[int], int]]) -> None:
    """first_times (a request's ids at one time) agrees with the exact table id by id, repeats
    within the batch included."""
    ids, exact = RecentIds(ttl_ms=1_000, capacity=4_096), ExactIds(1_000)
    now = 1  # time 0 marks an empty slot: callers pass epoch ms
    for batch, step in batches:
        now += step
        keys = [str(beacon_id) for beacon_id in batch]
        assert ids.first_times(keys, now) == [exact.first_time(key, now) for key in keys]
    assert ids.evicted_early == 0


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([16, 256, 4_096]),
       st.lists(st.tuples(st.lists(st.integers(0, 300), max_size=40), st.integers(0, 800),
                          st.sampled_from(["", "shop-web", "blog"])), max_size=40))
def test_fresh_mask_is_first_times_vectorised(capacity: int, batches: list[tuple[list[int], int, str]]) -> None:
    """Twin tables, one fed by fresh_mask and one by first_times: the same answers, the same
    slots afterwards and the same early evictions, full tables, shared buckets and scopes
    (apps) included."""
    vector, scalar = RecentIds(ttl_ms=1_000, capacity=capacity), RecentIds(ttl_ms=1_000, capacity=capacity)
    now = 1
    for batch, step, scope in batches:
        now += step
        keys = [str(beacon_id) for beacon_id in batch]
        assert vector.fresh_mask(keys, now, scope).tolist() == scalar.first_times(keys, now, scope)
        assert vector._table == scalar._table
        assert vector.evicted_early == scalar.evicted_early


def test_fresh_mask_takes_the_vector_path_on_batches_of_distinct_buckets() -> None:
    """Not vacuous: a 200-id batch in the default table usually has no shared bucket, and the
    vector path then gives what first_times gives (the property above checks it too)."""
    vector, scalar = RecentIds(ttl_ms=10_000), RecentIds(ttl_ms=10_000)
    rng = random.Random(3)
    vectorised = 0
    for t in range(1, 51):
        keys = [f"{rng.getrandbits(40):x}" for _ in range(200)] + ["repeat"] * (t % 2)
        buckets = {(hash(k) or 1) & vector._mask for k in keys}
        vectorised += len(buckets) == len(keys)
        assert vector.fresh_mask(keys, t * 100).tolist() == scalar.first_times(keys, t * 100)
    assert vector._table == scalar._table
    assert vectorised >= 15


def test_a_resent_page_view_is_a_duplicate_until_the_ttl() -> None:
    ids = RecentIds(ttl_ms=60_000)
    assert ids.first_time("v5-1", 1_000, scope="shop-web")
    assert not ids.first_time("v5-1", 60_999, scope="shop-web")
    assert ids.first_time("v5-1", 61_000, scope="shop-web")
    assert ids.first_time("v5-1", 61_000, scope="other-app")  # ids are per scope (the ingestor's: the app)
    assert not ids.fresh_mask(["v5-1"], 61_001, scope="other-app")[0]
    assert ids.fresh_mask(["v5-1"], 61_001, scope="third-app")[0]


def test_an_id_named_like_another_app_is_not_that_apps_id_named_like_this_one() -> None:
    """Scopes are salted, not XORed with their own hash, which would be symmetric."""
    ids = RecentIds(ttl_ms=60_000)
    assert ids.first_time("blog", 1_000, scope="shop-web")
    assert ids.first_time("shop-web", 1_000, scope="blog")
    assert ids.fresh_mask(["shop-web"], 1_001, scope="blog").tolist() == [False]


def test_memory_is_fixed_and_overload_forgets_the_oldest_first() -> None:
    """Ten times more live ids than slots: memory does not move, the newest ids are still known
    and every id forgotten early is counted."""
    ids = RecentIds(ttl_ms=10**12, capacity=1_024)
    nbytes = ids.nbytes
    rng = random.Random(7)
    names = [f"id-{rng.getrandbits(64):x}" for _ in range(10_240)]
    for t, name in enumerate(names):
        assert ids.first_time(name, t)
    assert ids.nbytes == nbytes == 1_024 * 16
    assert len(ids._table) == 2 * 1_024
    assert ids.evicted_early == 10_240 - 1_024  # every slot full, every later insert evicts one
    recent = sum(not ids.first_time(name, len(names)) for name in names[-64:])
    assert recent >= 60  # the last 64 ids: only a bucket that took 4+ newer ids lost any
    oldest = sum(not ids.first_time(name, len(names)) for name in names[:64])
    assert oldest == 0


def test_capacity_rounds_up_to_whole_buckets() -> None:
    assert RecentIds(1_000, capacity=1_000).capacity == 1_024
    assert RecentIds(1_000, capacity=WAYS).capacity == WAYS


@pytest.mark.parametrize("ttl, capacity", [(0, 1024), (-1, 1024), (1_000, 3)])
def test_refuses_a_useless_table(ttl: float, capacity: int) -> None:
    with pytest.raises(ValueError):
        RecentIds(ttl, capacity)


def test_forget_clears_only_the_ids_it_is_given() -> None:
    ids = RecentIds(ttl_ms=60_000, capacity=WAYS)  # one bucket: every id shares it
    assert ids.first_times(["a", "b", "c"], 1) == [True, True, True]
    ids.forget(["b", "never-seen"])
    assert ids.first_times(["a", "b", "c"], 2) == [False, True, False]
    assert ids.first_times(["d"], 3, scope="app") == [True]
    ids.forget(["d"])  # another scope's "d": not this one
    assert ids.first_times(["d"], 4, scope="app") == [False]
    ids.forget(["d"], scope="app")
    assert ids.first_times(["d"], 5, scope="app") == [True]
    assert ids.evicted_early == 0
