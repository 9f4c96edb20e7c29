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

from detectors.anomaly import GATE_DETECTOR, Detector, RobustZScore

__all__ = ["INCIDENT_DETECTOR", "GlobalIncident", "PromotionWatch"]

#: The detector the gate finds incident onsets with: the NAB-scored ``GATE_DETECTOR``.
#: :class:`GlobalIncident` keeps an incident open past its onset.
INCIDENT_DETECTOR = GATE_DETECTOR


def _log(value: float | None, count: int, min_count: int) -> float | None:
    if value is None or not count >= min_count or not value > 0 or math.isnan(value):
        return None
    return math.log(value)


class GlobalIncident:
    """Flags windows where the baseline's series is anomalous (see the module docstring).

    The detector finds the *onset* of an incident (``score ≥ threshold``). NAB rewards
    detectors that alarm once per event, and the gate's detector does; but the gate must
    hold on *every* window of the incident. So an onset opens the incident, and it stays
    open while the baseline is slower than its level before the onset: against the median
    and MAD of the learned history, frozen at the onset, ``z ≥ z_exit``. ``calm`` windows in
    a row below ``z_exit`` close it (hysteresis: one quiet window inside a long incident
    does not end it). Windows of an open incident are not learned as normal.

    An onset also needs ``min_history`` learned windows and the window itself at
    ``z ≥ z_onset``: the detector says "unusual", the level says "and slower than normal" (a
    detector warming up, a new peak of noise, or everyone getting faster, holds nothing).
    Larger is worse for every metric the gate watches, so only slowdowns count.
    """

    def __init__(self, detector: Detector, threshold: float = 0.5, min_count: int = 50, z_onset: float = 4.0,
                 z_exit: float = 2.0, calm: int = 3, min_history: int = 60) -> None:
        self.detector, self.threshold, self.min_count = detector, threshold, min_count
        self.z_onset, self.z_exit, self.calm, self.min_history = z_onset, z_exit, calm, min_history
        self.history: deque[float] = deque(maxlen=720)  # the last hour of 5-s windows, for the watch
        self.flagged = 0
        self.open_since: int | None = None  # the onset of the open incident, if one is open
        self.z = 0.0  # of the last window, against the level before the onset (open incidents)
        self._level: tuple[float, float] | None = None  # frozen median, scale
        self._calm_run = 0

    def observe(self, t: int, baseline_value: float | None, baseline_count: int) -> tuple[bool, float]:
        """(flagged, score) for the window ending at ``t``."""
        x = _log(baseline_value, baseline_count, self.min_count)
        score = self.detector.score_one(t, x)
        if x is None:
            return self.open_since is not None, score  # no evidence either way: the state stands
        if self.open_since is None and score >= self.threshold and len(self.history) >= self.min_history:
            median, scale = _median_scale(self.history)
            if (x - median) / scale >= self.z_onset:
                self.open_since, self._calm_run, self._level = t, 0, (median, scale)
        if self.open_since is not None:
            median, scale = self._level
            self.z = (x - median) / scale
            if t != self.open_since and self.z < self.z_exit:
                self._calm_run += 1
                if self._calm_run >= self.calm:
                    self.open_since = None  # over: this window is normal again, and learned
            else:
                self._calm_run = 0
        if self.open_since is not None:
            self.flagged += 1
            return True, score
        self.detector.learn_one(t, x)
        self.history.append(x)
        return False, score


def _median_scale(values: deque[float], floor: float = 0.01) -> tuple[float, float]:
    """Median and robust scale (1.4826 × MAD, at least ``floor`` = 1 % in log terms) of a non-empty series."""
    ordered = sorted(values)
    median = ordered[len(ordered) // 2]
    deviations = sorted(abs(v - median) for v in ordered)
    return median, max(1.4826 * deviations[len(deviations) // 2], floor)


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
