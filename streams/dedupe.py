"""Beacon ids seen recently, in memory that is allocated once and never grows.

web-vitals re-sends a page view's CLS and INP on every page hide, so the ingestion endpoint
drops an ``id`` it has taken within a time-to-live. Under load the table of recent ids is
the endpoint's only growing state; a dict of them grew by about 150 MB a minute at 15,000
beacons/s. :class:`RecentIds` keeps 64-bit fingerprints in a fixed table instead:

* **fixed memory**: ``capacity`` slots of two machine words (16 bytes each, 16 MiB for the
  default 1,048,576), allocated and touched at construction, so the process's memory is
  flat from its first request, whatever the load;
* **set-associative**: an id may sit in one of the ``WAYS`` slots of its bucket; a new id
  takes the empty or oldest slot there. When the table is too small for the load, ids are
  forgotten before their TTL, oldest first within a bucket, and :attr:`evicted_early`
  counts them (exported as a metric: size the table by ``rate × TTL``);
* **fingerprints**: Python's 64-bit ``hash`` of the id. Two distinct ids in one bucket with
  the same fingerprint would drop the later as a duplicate: about 1 in 2⁶¹ per lookup. The
  hash is salted per process, which is fine for a table that lives in one process.

A library does not fit: the Bloom/cuckoo filters on PyPI either grow, cannot forget by
age, or cost a C extension for what is twenty lines over :mod:`array`.

>>> ids = RecentIds(ttl_ms=60_000, capacity=1024)
>>> ids.first_time("v5-1-2", now_ms=0), ids.first_time("v5-1-2", now_ms=1_000)
(True, False)
>>> ids.first_time("v5-1-2", now_ms=61_000)   # the TTL has passed: a new page view
True
"""

from __future__ import annotations

from array import array

__all__ = ["RecentIds"]

WAYS = 4


class RecentIds:
    """Ids seen within ``ttl_ms``, in a fixed table of ``capacity`` slots (rounded up to 2^k)."""

    def __init__(self, ttl_ms: float, capacity: int = 1 << 20) -> None:
        if ttl_ms <= 0:
            raise ValueError(f"ttl_ms must be > 0, got {ttl_ms!r}")
        if capacity < WAYS:
            raise ValueError(f"capacity must be >= {WAYS}, got {capacity!r}")
        buckets = 1 << max(0, (capacity // WAYS - 1).bit_length())
        self.ttl_ms = ttl_ms
        self.capacity = buckets * WAYS
        self._mask = buckets - 1
        self._fingerprints = array("q", bytes(8 * self.capacity))  # 0 = empty slot
        self._seen_at = array("q", bytes(8 * self.capacity))
        self.evicted_early = 0

    def first_time(self, beacon_id: str, now_ms: int) -> bool:
        """Record ``beacon_id`` at ``now_ms``; False when it was seen within the TTL."""
        fingerprint = hash(beacon_id) or 1
        start = (fingerprint & self._mask) * WAYS
        end = start + WAYS
        bucket = self._fingerprints[start:end]  # the scans below run in C
        times = self._seen_at[start:end]
        if fingerprint in bucket:
            slot = bucket.index(fingerprint)
            if now_ms - times[slot] < self.ttl_ms:
                return False
        else:
            slot = times.index(min(times))  # empty slots have time 0: they go first
            if bucket[slot] and now_ms - times[slot] < self.ttl_ms:
                self.evicted_early += 1
            self._fingerprints[start + slot] = fingerprint
        self._seen_at[start + slot] = int(now_ms)
        return True

    @property
    def nbytes(self) -> int:
        """Memory of the table, allocated once."""
        return self._fingerprints.itemsize * len(self._fingerprints) * 2
