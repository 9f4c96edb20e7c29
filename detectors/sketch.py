"""A mergeable log-bucket quantile sketch (DDSketch-style index mapping).

Bucket ``i`` holds the values in ``(gamma**(i-1), gamma**i]`` with
``gamma = (1 + a) / (1 - a)`` for relative accuracy ``a``. Any quantile the sketch
returns is within ``a`` (relative) of the true sample quantile, and the count of
values at or below any bucket edge is exact: that is all the gate's statistics need.
Zeros (CLS is often exactly 0) and values below ``MIN_POSITIVE`` go to a zero bucket.

At the default ``a = 0.5 %`` the buckets from 1 ms to 10 minutes number about 1,330;
counts are kept in one dense numpy array that grows to the range actually seen.

>>> import numpy as np
>>> s = LogSketch()
>>> s.add(np.array([100.0, 200.0, 300.0, 400.0]))
>>> s.count
4
>>> m = s.quantile(0.5)               # the exact lower median is 200
>>> abs(m - 200) <= 0.005 * 200
True
>>> t = LogSketch.from_bytes(s.to_bytes())
>>> t == s
True

References
----------
[^1]: Masson, Rim, Lee. "DDSketch: a fast and fully-mergeable quantile sketch with
      relative-error guarantees", PVLDB 12(12), 2019.
"""

from __future__ import annotations

import math
import struct

import numpy as np

__all__ = ["DEFAULT_RELATIVE_ACCURACY", "MIN_POSITIVE", "LogSketch", "SketchError"]

DEFAULT_RELATIVE_ACCURACY = 0.005  # "alpha" in the DDSketch paper; statistics.md asks for <= 0.5 %
MIN_POSITIVE = 1e-9  # values at or below this count as zero (CLS of 0.0 is common)

_MAGIC = b"RGSK"
_VERSION = 1
_HEADER = struct.Struct("<4sBdqqiIB")  # magic, version, a, n, zeros, offset, len, width


class SketchError(ValueError):
    """A sketch operation was refused: bad parameter, incompatible merge, bad bytes."""


class LogSketch:
    """Quantile sketch with relative accuracy ``relative_accuracy``.

    Parameters
    ----------
    relative_accuracy
        The guarantee ``a``: a returned quantile ``q̂`` satisfies ``|q̂ - q| <= a·q``.
    """

    __slots__ = ("relative_accuracy", "gamma", "_log_gamma", "zeros", "offset", "counts")

    def __init__(self, relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY) -> None:
        if not 0 < relative_accuracy < 1:
            raise SketchError(f"relative accuracy must be in (0, 1), got {relative_accuracy!r}")
        self.relative_accuracy = float(relative_accuracy)
        self.gamma = (1 + relative_accuracy) / (1 - relative_accuracy)
        self._log_gamma = math.log(self.gamma)
        self.zeros = 0
        self.offset = 0  # bucket index of counts[0]
        self.counts = np.zeros(0, np.int64)

    # -- mapping -------------------------------------------------------------------------
    @property
    def log_gamma(self) -> float:
        """``log(gamma)``: bucket ``i`` is ``(exp((i-1)·log_gamma), exp(i·log_gamma)]``."""
        return self._log_gamma

    def index(self, values: np.ndarray) -> np.ndarray:
        """Bucket index of each positive value: ``ceil(log_gamma(v))``."""
        return np.ceil(np.log(values) / self._log_gamma).astype(np.int64)

    def edge(self, index: int) -> float:
        """Upper edge ``gamma**index`` of bucket ``index`` (the bucket is ``(edge(i-1), edge(i)]``)."""
        return self.gamma**index

    def value(self, index: int) -> float:
        """Representative value of a bucket: within ``a`` of everything in it."""
        return 2.0 * self.gamma**index / (1.0 + self.gamma)

    # -- updates -------------------------------------------------------------------------
    def add(self, values: np.ndarray) -> None:
        """Insert a numpy array of values (NaN = absent, skipped). Negative values are refused."""
        values = np.asarray(values, np.float64)
        values = values[~np.isnan(values)]
        if values.size == 0:
            return
        if values.min() < 0:
            raise SketchError(f"values must be >= 0, got {values.min()!r}")
        positive = values[values > MIN_POSITIVE]
        self.zeros += int(values.size - positive.size)
        if positive.size == 0:
            return
        idx = self.index(positive)
        lo, hi = int(idx.min()), int(idx.max())
        self._extend(lo, hi)
        self.counts += np.bincount(idx - self.offset, minlength=self.counts.size)

    def add_counts(self, offset: int, counts: np.ndarray, zeros: int = 0) -> None:
        """Add pre-bucketed counts: ``counts[j]`` values in bucket ``offset + j``.

        This is how the window aggregator inserts many cohorts at once: it buckets a whole
        batch with one vectorised :meth:`index` call and hands each cohort its row.
        """
        self.zeros += int(zeros)
        if counts.size == 0:
            return
        self._extend(offset, offset + counts.size - 1)
        start = offset - self.offset
        self.counts[start : start + counts.size] += counts

    def _extend(self, lo: int, hi: int) -> None:
        if self.counts.size == 0:
            self.offset, self.counts = lo, np.zeros(hi - lo + 1, np.int64)
            return
        new_lo = min(lo, self.offset)
        new_hi = max(hi, self.offset + self.counts.size - 1)
        if new_lo == self.offset and new_hi == self.offset + self.counts.size - 1:
            return
        grown = np.zeros(new_hi - new_lo + 1, np.int64)
        grown[self.offset - new_lo : self.offset - new_lo + self.counts.size] = self.counts
        self.offset, self.counts = new_lo, grown

    def merge(self, other: LogSketch) -> None:
        """Add ``other``'s counts into this sketch; ``other`` is not changed."""
        if other.relative_accuracy != self.relative_accuracy:
            raise SketchError(
                "cannot merge sketches with different relative accuracy, "
                f"got {self.relative_accuracy!r} and {other.relative_accuracy!r}"
            )
        self.add_counts(other.offset, other.counts, other.zeros)

    def copy(self) -> LogSketch:
        out = LogSketch(self.relative_accuracy)
        out.zeros, out.offset, out.counts = self.zeros, self.offset, self.counts.copy()
        return out

    # -- queries -------------------------------------------------------------------------
    @property
    def count(self) -> int:
        return self.zeros + int(self.counts.sum())

    def __len__(self) -> int:
        return self.count

    def quantile(self, q: float) -> float:
        """The ``q`` quantile (lower: the value of rank ``floor(q·(n-1))``), NaN when empty."""
        if not 0 <= q <= 1:
            raise SketchError(f"quantile must be in [0, 1], got {q!r}")
        n = self.count
        if n == 0:
            return math.nan
        rank = math.floor(q * (n - 1))
        if rank < self.zeros:
            return 0.0
        cum = np.cumsum(self.counts)
        i = int(np.searchsorted(cum, rank - self.zeros, side="right"))
        return self.value(self.offset + i)

    def quantile_index(self, q: float) -> int | None:
        """Bucket index holding the ``q`` quantile; None when it is a zero or the sketch is empty."""
        n = self.count
        rank = math.floor(q * (n - 1)) if n else 0
        if n == 0 or rank < self.zeros:
            return None
        cum = np.cumsum(self.counts)
        return self.offset + int(np.searchsorted(cum, rank - self.zeros, side="right"))

    def count_above(self, index: int) -> int:
        """Exact number of values ``> edge(index)``."""
        start = index + 1 - self.offset
        if start <= 0:
            return int(self.counts.sum())
        return int(self.counts[start:].sum())

    def count_at_or_below(self, index: int) -> int:
        """Exact number of values ``<= edge(index)``, zeros included."""
        return self.count - self.count_above(index)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LogSketch):
            return NotImplemented
        a, b = np.trim_zeros(self.counts), np.trim_zeros(other.counts)
        return (
            self.relative_accuracy == other.relative_accuracy
            and self.zeros == other.zeros
            and a.size == b.size
            and (a.size == 0 or self._first_nonzero() == other._first_nonzero())
            and bool(np.array_equal(a, b))
        )

    def _first_nonzero(self) -> int:
        nz = np.flatnonzero(self.counts)
        return self.offset + int(nz[0]) if nz.size else 0

    def __repr__(self) -> str:
        return f"LogSketch(relative_accuracy={self.relative_accuracy}, count={self.count})"

    # -- codec ---------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """Compact, versioned binary form: a 38-byte header, then the non-empty count range.

        Counts are stored as uint16, uint32 or uint64, whichever is the narrowest that fits.
        Everything the sketch knows survives the round trip.
        """
        nz = np.flatnonzero(self.counts)
        if nz.size:
            body = self.counts[nz[0] : nz[-1] + 1]
            offset = self.offset + int(nz[0])
        else:
            body, offset = self.counts[:0], 0
        top = int(body.max()) if body.size else 0
        width = 2 if top < 1 << 16 else 4 if top < 1 << 32 else 8
        dtype = {2: "<u2", 4: "<u4", 8: "<u8"}[width]
        header = _HEADER.pack(
            _MAGIC, _VERSION, self.relative_accuracy, self.count, self.zeros, offset, body.size, width
        )
        return header + body.astype(dtype).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> LogSketch:
        """Decode :meth:`to_bytes` output; refuses anything else with a reason."""
        if len(data) < _HEADER.size:
            raise SketchError(f"sketch bytes too short: {len(data)} < {_HEADER.size}")
        magic, version, a, n, zeros, offset, length, width = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            raise SketchError(f"not a rumgate sketch (magic {magic!r})")
        if version != _VERSION:
            raise SketchError(f"unsupported sketch codec version {version}")
        if width not in (2, 4, 8) or len(data) != _HEADER.size + length * width:
            raise SketchError("sketch bytes have the wrong length for their header")
        if zeros < 0 or n < 0:
            raise SketchError(f"sketch bytes are corrupt: negative counts (zeros {zeros}, total {n})")
        out = cls(a)
        out.zeros, out.offset = zeros, offset
        dtype = {2: "<u2", 4: "<u4", 8: "<u8"}[width]
        out.counts = np.frombuffer(data, dtype, length, _HEADER.size).astype(np.int64)
        if out.count != n:
            raise SketchError(f"sketch bytes are corrupt: header says {n} values, body holds {out.count}")
        return out
