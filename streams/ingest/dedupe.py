"""Beacon ids seen recently, in memory that is allocated once and never grows.

web-vitals re-sends a page view's CLS and INP on every page hide, so the ingestion endpoint
drops an ``id`` it has taken within a time-to-live. Under load the table of recent ids is
the endpoint's only growing state, and a dict of them would grow by about 150 MB a minute
at 15,000 beacons/s. :class:`RecentIds` keeps 64-bit fingerprints in a fixed table instead:

* **fixed memory**: ``capacity`` slots of two machine words (16 bytes each, 16 MiB for the
  default 1,048,576), allocated and touched at construction, so the process's memory is
  flat from its first request, whatever the load;
* **set-associative**: an id may sit in one of the ``WAYS`` slots of its bucket; a new id
  takes the empty or oldest slot there. When the table is too small for the load, ids are
  forgotten before their TTL, oldest first within a bucket, and :attr:`evicted_early`
  counts them (exported as a metric: size the table by ``rate × TTL``);
* **fingerprints**: Python's 64-bit ``hash`` of the id, XOR a salt from its ``scope`` (the
  ingestor's is the app: ids are unique per app, not across apps). Two distinct ids in one
  bucket with the same fingerprint would drop the later as a duplicate: about 1 in 2⁶¹ per
  lookup. The hash is salted per process, which is fine for a table that lives in one
  process. (A scope is mixed in rather than joined to the id, so that a batch's ids need no
  new strings. The salt is not the scope's own ``hash``: with it, id "b" of app "a" and id
  "a" of app "b" would share a fingerprint. The empty scope's salt is 0.)

A library does not fit: the Bloom/cuckoo filters on PyPI either grow, cannot forget by
age, or cost a C extension for what is a few dozen lines over :mod:`array` and numpy.

>>> ids = RecentIds(ttl_ms=60_000, capacity=1024)
>>> ids.first_time("v5-1-2", now_ms=0), ids.first_time("v5-1-2", now_ms=1_000)
(True, False)
>>> ids.first_time("v5-1-2", now_ms=61_000)   # the TTL has passed: a new page view
True
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = ["RecentIds"]

WAYS = 4  # first_times unrolls its probes for exactly 4
_BUCKET = np.arange(2 * WAYS)


class RecentIds:
    """Ids seen within ``ttl_ms``, in a fixed table of ``capacity`` slots (rounded up to 2^k).

    A bucket is ``WAYS`` fingerprints then their ``WAYS`` times, side by side in one array:
    64 bytes, so a lookup in a table far larger than the CPU caches costs one or two cache
    misses rather than one per array (at load, the misses are most of the dedupe's cost).
    Times are epoch ms, so never 0: a slot's time 0 means it is empty.
    """

    def __init__(self, ttl_ms: float, capacity: int = 1 << 20) -> None:
        if ttl_ms <= 0:
            raise ValueError(f"ttl_ms must be > 0, got {ttl_ms!r}")
        if capacity < WAYS:
            raise ValueError(f"capacity must be >= {WAYS}, got {capacity!r}")
        buckets = 1 << max(0, (capacity // WAYS - 1).bit_length())
        self.ttl_ms = ttl_ms
        self.capacity = buckets * WAYS
        self._mask = buckets - 1
        self._table = array("q", bytes(16 * self.capacity))  # fingerprint 0 = empty slot
        self._words = np.frombuffer(self._table, dtype=np.int64)  # the same memory, for fresh_mask
        self.evicted_early = 0

    def first_time(self, beacon_id: str, now_ms: int, scope: str = "") -> bool:
        """Record ``beacon_id`` (of ``scope``) at ``now_ms``; False when it was seen within the TTL."""
        return self.first_times((beacon_id,), now_ms, scope)[0]

    def first_times(self, beacon_ids: Iterable[str], now_ms: int, scope: str = "") -> list[bool]:
        """:meth:`first_time` for each id in turn (a request's ids in one call).

        >>> ids = RecentIds(ttl_ms=1_000, capacity=64)
        >>> ids.first_times(["a", "b", "a"], now_ms=5), ids.first_times(["a"], now_ms=5, scope="other-app")
        ([True, True, False], [True])
        """
        # One loop with everything in locals and the WAYS probes unrolled: this runs for
        # every beacon the endpoint takes, and the call and attribute overhead of a
        # per-id method would be a third of its cost.
        table, mask, ttl, now_ms, salt = self._table, self._mask, self.ttl_ms, int(now_ms), _salt(scope)
        answers = []
        for beacon_id in beacon_ids:
            fingerprint = (hash(beacon_id) ^ salt) or 1
            base = (fingerprint & mask) << 3  # 2 * WAYS words per bucket
            if table[base] == fingerprint:
                slot = base
            elif table[base + 1] == fingerprint:
                slot = base + 1
            elif table[base + 2] == fingerprint:
                slot = base + 2
            elif table[base + 3] == fingerprint:
                slot = base + 3
            else:  # new here: take the empty (time 0) or oldest slot
                t0, t1, t2, t3 = table[base + 4:base + 8]
                slot, oldest = base, t0
                if t1 < oldest:
                    slot, oldest = base + 1, t1
                if t2 < oldest:
                    slot, oldest = base + 2, t2
                if t3 < oldest:
                    slot, oldest = base + 3, t3
                if table[slot] and now_ms - oldest < ttl:
                    self.evicted_early += 1
                table[slot] = fingerprint
                table[slot + WAYS] = now_ms
                answers.append(True)
                continue
            if now_ms - table[slot + WAYS] < ttl:
                answers.append(False)
                continue
            table[slot + WAYS] = now_ms
            answers.append(True)
        return answers

    def fresh_mask(self, beacon_ids: Sequence[str], now_ms: int, scope: str = "") -> np.ndarray:
        """:meth:`first_times` as a boolean array, in a few numpy operations for the whole batch.

        For the hundreds of ids of one record, where the per-id loop of :meth:`first_times`
        cost more than everything else the endpoint does with a beacon. Same answers and
        the same table afterwards, id by id in order. Order matters only among ids of the
        batch that fall in one bucket (the same id twice, or a shared bucket: about 7 % of
        200-id batches have a pair); those few take :meth:`first_times`, in order, and the
        rest, each alone in its bucket, are answered together.

        >>> ids = RecentIds(ttl_ms=1_000, capacity=64)
        >>> ids.fresh_mask(["a", "b"], now_ms=5).tolist(), ids.fresh_mask(["b", "c", "c"], now_ms=6).tolist()
        ([True, True], [False, True, False])
        """
        n = len(beacon_ids)
        fingerprints = np.fromiter(map(hash, beacon_ids), dtype=np.int64, count=n)
        salt = _salt(scope)
        if salt:
            fingerprints ^= salt
        fingerprints[fingerprints == 0] = 1
        base = (fingerprints & self._mask) << 3
        ordered = np.sort(base)
        shared = ordered[1:] == ordered[:-1]
        if not shared.any():
            return self._fresh_alone(fingerprints, base, int(now_ms))
        clash = np.isin(base, ordered[1:][shared])
        alone = np.flatnonzero(~clash)
        fresh = np.empty(n, dtype=bool)
        fresh[alone] = self._fresh_alone(fingerprints[alone], base[alone], int(now_ms))
        together = np.flatnonzero(clash)
        fresh[together] = self.first_times([beacon_ids[i] for i in together.tolist()], now_ms, scope)
        return fresh

    def _fresh_alone(self, fingerprints: np.ndarray, base: np.ndarray, now_ms: int) -> np.ndarray:
        """Look up and take ids whose buckets (``base``: each bucket's first word) all differ."""
        n = len(fingerprints)
        words = self._words
        bucket = words[base[:, None] + _BUCKET]  # (n, 2 * WAYS): fingerprints, then their times
        ways, times = bucket[:, :WAYS], bucket[:, WAYS:]
        hit = ways == fingerprints[:, None]
        found = hit.any(axis=1)
        rows = np.arange(n)
        slot = np.where(found, hit.argmax(axis=1), times.argmin(axis=1))  # argmin: the first oldest
        seen_at = times[rows, slot]
        recent = now_ms - seen_at < self.ttl_ms
        fresh = ~(found & recent)
        self.evicted_early += int(np.count_nonzero(~found & recent & (ways[rows, slot] != 0)))
        taken = (base + slot)[fresh]
        words[taken] = fingerprints[fresh]
        words[taken + WAYS] = now_ms
        return fresh

    def forget(self, beacon_ids: Iterable[str], scope: str = "") -> None:
        """Forget ids taken by a record that was never stored, so that their re-send is new.

        >>> ids = RecentIds(ttl_ms=1_000, capacity=64)
        >>> ids.first_times(["a", "b"], now_ms=5); ids.forget(["a"]); ids.first_times(["a", "b"], now_ms=6)
        [True, True]
        [True, False]
        """
        table, mask, salt = self._table, self._mask, _salt(scope)
        for beacon_id in beacon_ids:
            fingerprint = (hash(beacon_id) ^ salt) or 1
            base = (fingerprint & mask) << 3
            for slot in range(base, base + WAYS):
                if table[slot] == fingerprint:
                    table[slot] = table[slot + WAYS] = 0
                    break

    @property
    def nbytes(self) -> int:
        """Memory of the table, allocated once."""
        return self._table.itemsize * len(self._table)


def _salt(scope: str) -> int:
    """What a scope XORs into its ids' hashes: 0 for none, else a hash other than the scope's own."""
    return hash((scope,)) if scope else 0
