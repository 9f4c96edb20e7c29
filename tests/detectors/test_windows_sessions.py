"""Session ids are packed for rum.windows exactly as before the digests were remembered.

The reference below is the earlier ``_pack_sessions``: one blake2b per id read as a Python
int, then a uint64 array. The packed text must be the same for any mix of ids and of
already-hashed ints (summaries that came off the wire and were merged).
"""

from __future__ import annotations

import base64
import hashlib

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.windows import _pack_sessions, _unpack_sessions


def reference(ids: set) -> str:
    def h(sid: object) -> int:
        if isinstance(sid, int):
            return sid
        return int.from_bytes(hashlib.blake2b(str(sid).encode(), digest_size=8).digest(), "little")
    hashed = np.fromiter((h(s) for s in ids), np.uint64, len(ids))
    return base64.b64encode(np.sort(hashed).tobytes()).decode()


ids = st.sets(st.one_of(st.text(max_size=20), st.integers(0, 2**64 - 1)), max_size=50)


@settings(max_examples=300, deadline=None)
@given(ids)
def test_packed_sessions_are_what_they_were(sessions):
    assert _pack_sessions(sessions) == reference(sessions)
    assert _pack_sessions(sessions) == _pack_sessions(sessions)  # remembered digests too


@given(ids)
def test_packed_sessions_round_trip_to_their_hashes(sessions):
    assert len(_unpack_sessions(_pack_sessions(sessions))) == len({reference({s}) for s in sessions})


def reference_sessions(session, group, n_groups, page_views, starts=None):
    """The earlier row-by-row ``_sessions``."""
    sets = [set() for _ in range(n_groups)]
    if session is None:
        return sets, page_views
    anonymous = np.zeros(n_groups, np.int64)
    rows = zip(group.tolist(), session) if starts is None else (
        (g, sid) for g, sid, first in zip(group.tolist(), session, starts.tolist()) if first)
    for g, sid in rows:
        if sid is None:
            anonymous[g] += 1
        else:
            sets[g].add(sid)
    return sets, anonymous


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.one_of(st.none(), st.sampled_from("abcdefg")), st.booleans()),
                max_size=60), st.booleans())
def test_sessions_per_group_are_what_the_row_loop_gave(rows, with_starts):
    from detectors.windows import _sessions
    n_groups = 1 + max((g for g, _, _ in rows), default=0)
    group = np.array([g for g, _, _ in rows], np.int64)
    session = [s for _, s, _ in rows]
    starts = np.array([f for _, _, f in rows], bool) if with_starts else None
    page_views = np.bincount(group, minlength=n_groups).astype(np.int64)
    got, want = _sessions(session, group, n_groups, page_views, starts), \
        reference_sessions(session, group, n_groups, page_views, starts)
    assert got[0] == want[0] and got[1].tolist() == want[1].tolist() and got[1].dtype == want[1].dtype


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 300), st.floats(0.0, 1e5)), min_size=1, max_size=200))
def test_sparse_bucket_counts_give_the_sketches_dense_ones_give(rows):
    """Many cohorts in one batch take the sparse path; the summaries must be the same."""
    from detectors import windows
    from detectors.beacon import BeaconBatch, CohortKey
    keys = [CohortKey("shop-web", f"r{i}", None, "mobile") for i in range(301)]

    def summaries(dense: bool):
        saved = windows._DENSE_CELLS_PER_VALUE, windows._DENSE_CELLS
        windows._DENSE_CELLS_PER_VALUE, windows._DENSE_CELLS = (10**9, 10**9) if dense else (0, 0)
        try:
            w = windows.TumblingWindows(5000, 0, max_cohorts=None)
            w.add(BeaconBatch(ts=np.arange(len(rows), dtype=np.int64), key=np.array([k for k, _ in rows], np.int32),
                              keys=keys, metrics={"LCP": np.array([v for _, v in rows], float)},
                              errors=np.zeros(len(rows), np.int64)))
            return [s.to_dict() for s in w.flush()]
        finally:
            windows._DENSE_CELLS_PER_VALUE, windows._DENSE_CELLS = saved

    assert summaries(False) == summaries(True)
