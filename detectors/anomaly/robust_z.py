"""Robust z-score: distance to the median of a bounded window, in units of its MAD."""

from __future__ import annotations

import collections

import numpy as np

from .base import squash, valid

__all__ = ["RobustZScore"]

_MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution times this is its sigma
_IQR60_TO_SIGMA = 1.6832  # q80 - q20 of a normal distribution is 1.6832 sigma


class RobustZScore:
    """Median/MAD z-score over the last ``window_size`` learned values.

    The score of ``x`` is ``z / (1 + z)`` with ``z = |x - median| / (1.4826·MAD)``. The median
    and MAD ignore a minority of outliers, unlike a mean/variance z-score, and the window forgets
    old regimes. When the MAD is 0 (quantised or flat series) the scale falls back to the mean
    and the scale is never below the 20–80 % inter-quantile range divided by 1.683 (the same
    σ for normal data, but a series that sits on one value more than half of the time has MAD
    0 without being infinitely precise), then to the mean absolute deviation, and it is never
    below ``min_scale`` times ``|median|``. Last, the scale is at least ``std_floor`` times the
    window's standard deviation: a spiky series whose bulk is nearly constant then does not
    turn its routine spikes into z of hundreds (set ``std_floor=0`` for a purely robust scale;
    on NAB the floor was worth several points). A truly flat series scores
    0 on its own value and high on any change instead of dividing by zero.

    Parameters
    ----------
    window_size
        Number of most recent learned values kept (memory is bounded by it).
    grace_period
        Number of learned values before the score leaves 0.
    std_floor
        Floor of the scale as a fraction of the window's standard deviation.
    min_scale
        Relative floor of the scale, as a fraction of ``|median|`` (absolute floor ``1e-9``).

    Examples
    --------
    >>> det = RobustZScore(window_size=50, grace_period=10)
    >>> for i in range(40):
    ...     det.learn_one(i * 60_000, 10.0 + (i % 5) * 0.1)
    >>> round(det.score_one(40 * 60_000, 10.2), 3)
    0.0
    >>> det.score_one(40 * 60_000, 30.0) > 0.95
    True
    >>> det.score_one(40 * 60_000, None)
    0.0
    """

    def __init__(
        self,
        window_size: int = 1000,
        grace_period: int = 30,
        std_floor: float = 0.5,
        min_scale: float = 1e-3,
    ) -> None:
        if window_size < 3:
            raise ValueError(f"window_size must be >= 3, got {window_size!r}")
        if grace_period < 1:
            raise ValueError(f"grace_period must be >= 1, got {grace_period!r}")
        if std_floor < 0:
            raise ValueError(f"std_floor must be >= 0, got {std_floor!r}")
        if min_scale < 0:
            raise ValueError(f"min_scale must be >= 0, got {min_scale!r}")
        self.window_size = window_size
        self.grace_period = grace_period
        self.std_floor = std_floor
        self.min_scale = min_scale
        self._window: collections.deque[float] = collections.deque(maxlen=window_size)
        self._n = 0
        self._median = 0.0
        self._scale = 1.0

    def _estimate(self) -> None:
        with np.errstate(all="ignore"):  # values near 1e308 overflow the spread: scale = inf, z = 0
            self._fit()

    def _fit(self) -> None:
        a = np.fromiter(self._window, np.float64, len(self._window))
        med = float(np.median(a))
        dev = np.abs(a - med)
        q20, q80 = np.quantile(a, (0.2, 0.8))
        scale = max(_MAD_TO_SIGMA * float(np.median(dev)), float(q80 - q20) / _IQR60_TO_SIGMA)
        if scale <= 0.0:
            scale = float(dev.mean())
        self._median = med
        self._scale = max(scale, self.std_floor * float(a.std()), self.min_scale * abs(med), 1e-9)

    def z(self, x: float) -> float:
        """The unsquashed robust z of ``x`` (0 during warm-up)."""
        if self._n < self.grace_period:
            return 0.0
        return abs(x - self._median) / self._scale

    def learn_one(self, t: int, x: float | None) -> None:
        if not valid(x):
            return
        self._window.append(float(x))  # type: ignore[arg-type]
        self._n += 1
        if self._n >= self.grace_period:  # estimated once per learn, so scoring is O(1) and pure
            self._estimate()

    def score_one(self, t: int, x: float | None) -> float:
        if not valid(x):
            return 0.0
        return squash(self.z(float(x)))  # type: ignore[arg-type]
