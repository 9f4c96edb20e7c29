"""Where no concurrent control helps: global incidents, and the watch after promotion.

Both run an online detector from :mod:`detectors.anomaly` on a per-window series, the log of
a metric's quantile (heavy-tailed metrics regress multiplicatively):

* :class:`GlobalIncident` watches the **baseline**. The baseline does not run the release,
  so when it moves (a CDN or network problem moving both cohorts at once), the move is not
  the release's fault: the gate holds its decisions on those windows instead of reading
  them as the canary's. Windows it flags are not learned as normal.
* :class:`PromotionWatch` keeps what the baseline looked like during the rollout (its
  recent per-window values) and, after promotion, scores the promoted release, which now
  serves everyone, against that frozen history. It breaks when ``persist`` windows in a
  row are anomalous *and* their median is worse than the history's median by more than
  the tolerance (the detector says "changed", the ratio says "worse, and by how much").

>>> from detectors.anomaly import RobustZScore
>>> inc = GlobalIncident(RobustZScore(), threshold=0.9, min_count=1)
>>> flags = [inc.observe(t * 5000, 1000.0 * (1 + 0.01 * (t % 3)), 100)[0] for t in range(300)]
>>> any(flags), inc.observe(300 * 5000, 3000.0, 100)[0]
(False, True)
"""

from __future__ import annotations

import math
from collections import deque

from detectors.anomaly import Detector, RobustZScore

__all__ = ["INCIDENT_DETECTOR", "GlobalIncident", "PromotionWatch"]

#: The detector the gate holds on by default. It must flag *every* window of an incident,
#: not only its onset: the NAB-tuned ``GATE_DETECTOR`` (a new-peak filter) flags onsets, so
#: the gate uses a time-of-day robust z-score, which at z ≥ 3 (score 0.75) held exactly the
#: incident windows of tests/test_incident.py and none of the same traffic without it.
INCIDENT_DETECTOR = "tod_robust_z"


def _log(value: float | None, count: int, min_count: int) -> float | None:
    if value is None or not count >= min_count or not value > 0 or math.isnan(value):
        return None
    return math.log(value)


class GlobalIncident:
    """Flags windows where the baseline's series is anomalous (see the module docstring)."""

    def __init__(self, detector: Detector, threshold: float = 0.5, min_count: int = 50) -> None:
        self.detector, self.threshold, self.min_count = detector, threshold, min_count
        self.history: deque[float] = deque(maxlen=720)  # the last hour of 5-s windows, for the watch
        self.flagged = 0

    def observe(self, t: int, baseline_value: float | None, baseline_count: int) -> tuple[bool, float]:
        """(flagged, score) for the window ending at ``t``."""
        x = _log(baseline_value, baseline_count, self.min_count)
        score = self.detector.score_one(t, x)
        flagged = x is not None and score >= self.threshold
        if flagged:
            self.flagged += 1
        elif x is not None:
            self.detector.learn_one(t, x)
            self.history.append(x)
        return flagged, score


class PromotionWatch:
    """After promotion: the release against the pre-promotion history (module docstring).

    The history is the baseline's series during the rollout. A :class:`RobustZScore` holds
    it frozen (median and MAD of up to the last hour of windows) and scores each window of
    the promoted release without learning it, so a regression never becomes the new normal
    during the watch. A window is anomalous at ``z ≥ z_threshold``.
    """

    def __init__(self, incident: GlobalIncident, until: int, tolerance: float, persist: int = 6,
                 z_threshold: float = 3.0) -> None:
        self.history = list(incident.history)
        self.detector = RobustZScore(window_size=max(3, len(self.history)), grace_period=min(30, max(1, len(self.history))))
        for i, x in enumerate(self.history):
            self.detector.learn_one(i, x)
        self.threshold = z_threshold / (1 + z_threshold)  # the detector's squashed scale
        self.min_count = incident.min_count
        self.until, self.tolerance, self.persist = until, tolerance, persist
        self.recent: deque[float] = deque(maxlen=persist)
        self.broken = False
        ordered = sorted(self.history)
        self.baseline = ordered[len(ordered) // 2] if ordered else None

    def observe(self, t: int, value: float | None, count: int) -> tuple[bool, float, float | None]:
        """(broken, score, ratio of this window to the history's median) for the window ending at ``t``."""
        x = _log(value, count, self.min_count)
        if x is None or self.baseline is None:
            return self.broken, 0.0, None
        score = self.detector.score_one(t, x)
        ratio = math.exp(x - self.baseline)
        self.recent.append(x if score >= self.threshold else -math.inf)
        if len(self.recent) == self.persist and all(v > -math.inf for v in self.recent):
            median = sorted(self.recent)[self.persist // 2]
            if math.exp(median - self.baseline) >= 1 + self.tolerance:
                self.broken = True
        return self.broken, score, ratio
