"""Remove a time-of-day (or time-of-week) baseline learned online before scoring."""

from __future__ import annotations

from .base import MS_PER_HOUR, Detector, valid
from .robust_z import RobustZScore

__all__ = ["TimeOfDayResidual", "hour_bucket"]

_MONDAY_OFFSET_H = 72  # 1970-01-01 was a Thursday: +72 h puts Monday 00:00 UTC at bucket 0


def hour_bucket(t: int, weekly: bool = False, offset_hours: int = 0) -> int:
    """Hour-of-day (0–23) or hour-of-week (0–167, Monday 00:00 = 0) of epoch ms ``t``.

    Pure arithmetic on ``t`` (UTC shifted by ``offset_hours``); no clock, no time zone database.

    >>> hour_bucket(0), hour_bucket(13 * 3_600_000 + 59_000)
    (0, 13)
    >>> hour_bucket(0, weekly=True)     # Thursday 1970-01-01 00:00 UTC
    72
    """
    h = t // MS_PER_HOUR + offset_hours
    return int((h + _MONDAY_OFFSET_H) % 168) if weekly else int(h % 24)


class TimeOfDayResidual:
    """Score ``x − baseline[hour of t]`` with an inner detector, so the daily cycle is normal.

    The baseline of each hour-of-day (or hour-of-week) bucket is an exponentially weighted mean
    of the values learned in that bucket, ``b ← b + alpha·(x − b)``. A point whose bucket has
    seen fewer than ``grace_period`` values scores 0 and only trains the baseline; afterwards
    the inner detector learns and scores the residual. Timestamps are event times in epoch ms;
    the bucket is derived from ``t`` arithmetically (UTC + ``offset_hours``).

    Parameters
    ----------
    detector
        Inner detector fed with residuals (default :class:`RobustZScore`).
    weekly
        168 hour-of-week buckets instead of 24 hour-of-day buckets.
    alpha
        Smoothing of each bucket's baseline, in (0, 1].
    grace_period
        Values a bucket must have learned before its residuals are scored.
    offset_hours
        Shift from UTC to the local time of the traffic (e.g. 1 for CET).

    Examples
    --------
    A clean daily cycle (high by day, low by night) is learned away; a night-time value that
    would be normal at noon is anomalous.

    >>> det = TimeOfDayResidual(RobustZScore(window_size=500, grace_period=24))
    >>> H = 3_600_000
    >>> for h in range(24 * 14):
    ...     x = 100.0 if 8 <= h % 24 < 20 else 10.0
    ...     det.learn_one(h * H, x + (h * 7) % 5)
    >>> det.score_one(24 * 14 * H + 12 * H, 101.0) < 0.5      # noon, daytime level
    True
    >>> det.score_one(24 * 14 * H + 3 * H, 101.0) > 0.9       # 3 am, daytime level
    True
    """

    def __init__(
        self,
        detector: Detector | None = None,
        weekly: bool = False,
        alpha: float = 0.1,
        grace_period: int = 3,
        offset_hours: int = 0,
    ) -> None:
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
        if grace_period < 1:
            raise ValueError(f"grace_period must be >= 1, got {grace_period!r}")
        self.detector = detector if detector is not None else RobustZScore()
        self.weekly = weekly
        self.alpha = alpha
        self.grace_period = grace_period
        self.offset_hours = offset_hours
        n = 168 if weekly else 24
        self._baseline = [0.0] * n
        self._count = [0] * n

    def residual(self, t: int, x: float) -> float | None:
        """``x`` minus its bucket's baseline, ``None`` while the bucket is warming up."""
        b = hour_bucket(t, self.weekly, self.offset_hours)
        if self._count[b] < self.grace_period:
            return None
        return x - self._baseline[b]

    def learn_one(self, t: int, x: float | None) -> None:
        if not valid(x):
            return
        x = float(x)  # type: ignore[arg-type]
        r = self.residual(t, x)
        if r is not None:
            self.detector.learn_one(t, r)
        b = hour_bucket(t, self.weekly, self.offset_hours)
        self._count[b] += 1
        a = max(self.alpha, 1.0 / self._count[b])  # exact mean for the first 1/alpha values
        self._baseline[b] += a * (x - self._baseline[b])

    def score_one(self, t: int, x: float | None) -> float:
        if not valid(x):
            return 0.0
        r = self.residual(t, float(x))  # type: ignore[arg-type]
        return 0.0 if r is None else self.detector.score_one(t, r)
