"""Report a score only when it is a new peak: one alarm per event instead of a run of them."""

from __future__ import annotations

import collections

from .base import Detector, valid
from .likelihood import AnomalyLikelihood

__all__ = ["NewPeakFilter"]


class NewPeakFilter:
    """Pass the inner score only if it exceeds every inner score of the last ``window`` points.

    An anomaly usually makes the inner score high for many consecutive points, and any fixed
    threshold then alarms on all of them. Whatever the threshold ``θ``, the first point of a
    run to reach ``θ`` exceeds the recent scores (they were below ``θ``), so it passes; the
    points after it pass only if they climb higher still. The filter therefore keeps the
    *onset* of each event for every threshold at once and drops its echo; a later, stronger
    event still passes. Suppressed points score 0. The recent scores are the inner scores of
    learned points (missing values are skipped).

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
    >>> first > 0.5, echo
    (True, 0.0)
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
        return s if not self._recent or s > max(self._recent) else 0.0
