"""Combine detectors: the largest of their scores, and a first-difference view of the series."""

from __future__ import annotations

from collections.abc import Sequence

from .base import Detector, valid

__all__ = ["FirstDifference", "MaxScore"]


class MaxScore:
    """The maximum of several detectors' scores; every detector learns every point.

    Useful when detectors see different failure shapes (a level that is unusual for the hour,
    a jump between consecutive points): the ensemble alarms when either does. All inner
    scores should be on comparable scales (e.g. all squashed z-scores).

    Parameters
    ----------
    detectors
        The inner detectors (at least one).

    Examples
    --------
    >>> from detectors.anomaly import RobustZScore
    >>> det = MaxScore([RobustZScore(grace_period=5), FirstDifference(RobustZScore(grace_period=5))])
    >>> for i in range(50):
    ...     det.learn_one(i, 10.0 + i % 5)
    >>> normal, jump = det.score_one(50, 10.0), det.score_one(50, 50.0)
    >>> normal < jump, jump > 0.9
    (True, True)
    """

    def __init__(self, detectors: Sequence[Detector]) -> None:
        if not detectors:
            raise ValueError("MaxScore needs at least one detector")
        self.detectors = list(detectors)

    def learn_one(self, t: int, x: float | None) -> None:
        for d in self.detectors:
            d.learn_one(t, x)

    def score_one(self, t: int, x: float | None) -> float:
        return max(d.score_one(t, x) for d in self.detectors)


class FirstDifference:
    """Feed the inner detector ``x − previous x``: it sees jumps, not levels.

    The first learned point only sets the previous value (it scores 0). A missing value is
    skipped, so the difference then spans the gap.

    Parameters
    ----------
    detector
        The detector of the differenced series.

    Examples
    --------
    >>> from detectors.anomaly import RobustZScore
    >>> det = FirstDifference(RobustZScore(grace_period=5))
    >>> for i in range(50):
    ...     det.learn_one(i, 10.0 + i)          # a steady ramp: constant differences
    >>> det.score_one(50, 60.0), det.score_one(50, 80.0) > 0.9
    (0.0, True)
    """

    def __init__(self, detector: Detector) -> None:
        self.detector = detector
        self._prev: float | None = None

    def learn_one(self, t: int, x: float | None) -> None:
        if not valid(x):
            return
        x = float(x)  # type: ignore[arg-type]
        if self._prev is not None:
            self.detector.learn_one(t, x - self._prev)
        self._prev = x

    def score_one(self, t: int, x: float | None) -> float:
        if not valid(x) or self._prev is None:
            return 0.0
        return self.detector.score_one(t, float(x) - self._prev)  # type: ignore[arg-type]
