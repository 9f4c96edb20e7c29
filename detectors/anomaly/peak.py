"""Report a score only when it is a new peak: one alarm per event instead of a run of them."""

from __future__ import annotations

import collections

from .base import Detector, valid
from .likelihood import AnomalyLikelihood

__all__ = ["NewPeakFilter"]


class NewPeakFilter:
    """Put the onset of each event above 0.5 and its echo below: ``s`` is a new peak or not.

    An anomaly usually makes the inner score high for many consecutive points, and any fixed
    threshold then alarms on all of them. Whatever the threshold ``θ``, the first point of a
    run to reach ``θ`` exceeds the recent scores (they were below ``θ``), so it passes; the
    points after it pass only if they climb higher still. The filter therefore keeps the
    *onset* of each event for every threshold at once and drops its echo; a later, stronger
    event still passes. A new peak ``s > 0`` scores ``0.5 + s/2``, any other point ``s/2``:
    every threshold of 0.5 or more sees only onsets, and the order of the inner scores is kept
    within each half (a lower threshold also sees the strongest echoes). The recent scores are
    the inner scores of learned points (missing values are skipped).

    Parameters
    ----------
    detector
        The inner detector (default :class:`AnomalyLikelihood`).
    window
        Number of recent learned points a score must exceed.

    Examples
    --------
    >>> from detectors.anomaly import RobustZScore
    >>> det = NewPeakFilter(RobustZScore(window_size=100, grace_period=10), window=20)
    >>> for i in range(100):
    ...     det.learn_one(i, 1.0 + (i % 4) * 0.1)
    >>> first = det.score_one(100, 9.0)
    >>> det.learn_one(100, 9.0)
    >>> echo = det.score_one(101, 9.0)             # the same level again: not a new peak
    >>> first > 0.5 > echo
    True
    """

    def __init__(self, detector: Detector | None = None, window: int = 100) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window!r}")
        self.detector = detector if detector is not None else AnomalyLikelihood()
        self.window = window
        self._recent: collections.deque[float] = collections.deque(maxlen=window)

    def learn_one(self, t: int, x: float | None) -> None:
        if not valid(x):
            return
        self._recent.append(self.detector.score_one(t, x))
        self.detector.learn_one(t, x)

    def score_one(self, t: int, x: float | None) -> float:
        if not valid(x):
            return 0.0
        s = self.detector.score_one(t, x)
        if s > 0.0 and (not self._recent or s > max(self._recent)):
            return 0.5 + 0.5 * s
        return 0.5 * s
