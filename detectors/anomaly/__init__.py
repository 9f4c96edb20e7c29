"""Online anomaly detectors for one per-window series without a concurrent control.

Contract (see :class:`detectors.anomaly.base.Detector`): ``learn_one(t, x)`` and
``score_one(t, x) -> float`` with ``t`` the event time in epoch ms and ``x`` the value or
``None``. Normal points score low, anomalous points high, always within ``[0, 1]``; missing
values and warm-up score 0.0; the same inputs give the same scores (explicit seeds).

:data:`DETECTORS` maps a name to a factory building the detector with its defaults;
:data:`GATE_DETECTOR` names the one the gate uses.
"""

from __future__ import annotations

from collections.abc import Callable

from .base import Detector
from .likelihood import AnomalyLikelihood
from .loda import LODAScorer
from .peak import NewPeakFilter
from .robust_z import RobustZScore
from .time_of_day import TimeOfDayResidual

__all__ = [
    "DETECTORS",
    "GATE_DETECTOR",
    "AnomalyLikelihood",
    "Detector",
    "LODAScorer",
    "NewPeakFilter",
    "RobustZScore",
    "TimeOfDayResidual",
]


def _tod_robust_z() -> Detector:
    return TimeOfDayResidual(RobustZScore())


def _likelihood_loda() -> Detector:
    return AnomalyLikelihood(LODAScorer())


def _likelihood_robust_z() -> Detector:
    return AnomalyLikelihood(RobustZScore())


def _likelihood_tod_robust_z() -> Detector:
    return AnomalyLikelihood(TimeOfDayResidual(RobustZScore()))


DETECTORS: dict[str, Callable[[], Detector]] = {
    "robust_z": RobustZScore,
    "loda": LODAScorer,
    "tod_robust_z": _tod_robust_z,
    "likelihood_robust_z": _likelihood_robust_z,
    "likelihood_loda": _likelihood_loda,
    "likelihood_tod_robust_z": _likelihood_tod_robust_z,
}

GATE_DETECTOR: str = "likelihood_loda"
