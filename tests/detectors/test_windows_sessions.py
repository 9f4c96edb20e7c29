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
