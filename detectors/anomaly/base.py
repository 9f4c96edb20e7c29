"""The detector contract shared by every module of :mod:`detectors.anomaly`.

A detector sees one point at a time: ``t`` is the event time in epoch milliseconds and ``x``
the value (``None`` = missing). ``score_one`` returns an anomaly score in ``[0, 1]`` (high =
anomalous) without changing the model; ``learn_one`` updates it. ``None`` never raises and is
never learned; during warm-up the score is ``0.0``.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

__all__ = ["Detector", "MS_PER_HOUR", "squash", "valid"]

MS_PER_HOUR = 3_600_000


@runtime_checkable
class Detector(Protocol):
    """What :data:`detectors.anomaly.DETECTORS` factories build."""

    def learn_one(self, t: int, x: float | None) -> None: ...

    def score_one(self, t: int, x: float | None) -> float: ...


def valid(x: float | None) -> bool:
    """``True`` for a finite number: ``None``, NaN and infinities are treated as missing.

    >>> valid(1.0), valid(None), valid(float("nan"))
    (True, False, False)
    """
    return x is not None and math.isfinite(x)


def squash(s: float) -> float:
    """Strictly monotone map of ``[0, inf]`` onto ``[0, 1]``: ``s / (1 + s)``.

    It keeps the order of unbounded scores (a single NAB threshold sees the same ranking)
    and saturates at exactly 1.0 only for ``s = inf``.

    >>> squash(0.0), squash(1.0), squash(float("inf"))
    (0.0, 0.5, 1.0)
    """
    if s != s or s <= 0.0:
        return 0.0
    if math.isinf(s):
        return 1.0
    return s / (1.0 + s)
