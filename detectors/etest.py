"""Conditional binomial e-processes: the one statistical engine behind every gate test.

Each look (a window) gives ``k_c`` events in the canary and ``k_b`` in the baseline, and
``rho``, the canary's share of the *exposure* in that look (beacons carrying the metric,
or page views). Given the look's total ``k = k_c + k_b``, under the null "the canary's
event odds are at most ``theta0`` times the baseline's", ``k_c`` is dominated in convex
order by ``Binomial(k, pi0)`` with ``pi0 = rho·theta0 / (rho·theta0 + 1 − rho)``
(Hoeffding 1963, sampling without replacement). So the product over looks of the
likelihood ratios against alternatives ``theta0·theta_j`` is a test supermartingale for
each ``j``, and so is their uniform mixture (Lindon & Malek 2022). By Ville's inequality
``P(sup_t E_t >= 1/alpha) <= alpha`` whatever the look schedule, traffic or split.

One :class:`ConditionalBinomialE` holds many such tests at once (rows: tolerances,
sides), each with its own ``theta0`` and direction, so a whole tolerance grid costs one
numpy update per look.

>>> import numpy as np
>>> e = ConditionalBinomialE(theta0=[1.0, 1.0], direction=[+1, -1])
>>> for _ in range(40):                  # canary has twice the baseline's events per exposure
...     e.update(k_c=[4, 4], k_b=[38, 38], rho=0.05)
>>> bool(e.log_e_max[0] >= np.log(20)), bool(e.log_e_max[1] >= np.log(20))
(True, False)

References
----------
[^1]: Lindon, M., Malek, A. "Anytime-Valid Inference for Multinomial Count Data", NeurIPS 2022.
[^2]: Hoeffding, W. "Probability inequalities for sums of bounded random variables", JASA 1963.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["THETAS", "ConditionalBinomialE", "SampleRatioE"]

#: Alternatives (odds or rate ratios) mixed with uniform weights; statistics.md §3.4.
THETAS = np.array([1.05, 1.1, 1.2, 1.35, 1.5, 2.0, 3.0, 5.0])


class ConditionalBinomialE:
    """Many conditional binomial mixture e-processes updated together.

    Parameters
    ----------
    theta0
        Null ratio per row: the null is ``ratio <= theta0`` for direction ``+1`` (canary
        worse is the alternative) and ``ratio >= theta0`` for direction ``-1``.
    direction
        ``+1`` or ``-1`` per row (or one value for all rows).
    thetas
        Alternatives, as multiples of ``theta0`` (inverted for direction ``-1``).
    """

    def __init__(self, theta0: Sequence[float] | np.ndarray, direction: Sequence[int] | int = +1,
                 thetas: np.ndarray = THETAS) -> None:
        self.theta0 = np.asarray(theta0, np.float64).reshape(-1)
        rows = self.theta0.size
        direction = np.broadcast_to(np.asarray(direction, np.int64), (rows,)).copy()
        if not np.all(np.isin(direction, (-1, 1))):
            raise ValueError(f"direction must be +1 or -1, got {direction.tolist()}")
        if np.any(self.theta0 <= 0):
            raise ValueError(f"theta0 must be > 0, got {self.theta0.tolist()}")
        self.direction = direction
        # Alternative ratios per row, shape (rows, J).
        self.alternatives = self.theta0[:, None] * np.where(direction[:, None] > 0, thetas, 1.0 / thetas)
        self.log_lr = np.zeros_like(self.alternatives)
        self._log_j = np.log(thetas.size)
        self.log_e_max = np.zeros(rows)
        self.looks = 0

    def update(self, k_c: Sequence[float] | np.ndarray | float, k_b: Sequence[float] | np.ndarray | float,
               rho: float) -> None:
        """Add one look. ``k_c``/``k_b`` per row (or one for all); a look with no events or
        no exposure on one side carries no information and changes nothing."""
        if not 0.0 < rho < 1.0:
            return
        k_c = np.broadcast_to(np.asarray(k_c, np.float64), self.theta0.shape)
        k_b = np.broadcast_to(np.asarray(k_b, np.float64), self.theta0.shape)
        odds = rho / (1.0 - rho)
        pi0 = (odds * self.theta0 / (1.0 + odds * self.theta0))[:, None]
        pi1 = odds * self.alternatives / (1.0 + odds * self.alternatives)
        self.log_lr += k_c[:, None] * np.log(pi1 / pi0) + k_b[:, None] * np.log((1.0 - pi1) / (1.0 - pi0))
        np.maximum(self.log_e_max, self.log_e, out=self.log_e_max)
        self.looks += 1

    @property
    def log_e(self) -> np.ndarray:
        """Current log e-value per row (log of the mean over alternatives)."""
        top = self.log_lr.max(axis=1)
        return top + np.log(np.exp(self.log_lr - top[:, None]).sum(axis=1)) - self._log_j

    @property
    def p_anytime(self) -> np.ndarray:
        """Anytime-valid p-value per row: ``min(1, 1 / max_s E_s)``."""
        return np.minimum(1.0, np.exp(-self.log_e_max))


class SampleRatioE:
    """Two-sided sample-ratio-mismatch e-process on page-view counts.

    Each look compares the canary's share of page views with the share the rollout
    configured (``expected``, which may change between looks). The two one-sided
    mixtures are averaged, which keeps an e-process.

    >>> srm = SampleRatioE()
    >>> for _ in range(60):
    ...     srm.update(n_canary=10, n_baseline=490, expected=0.05)   # 2 % where 5 % was asked
    >>> bool(srm.log_e_max >= np.log(1000))
    True
    """

    def __init__(self) -> None:
        self._e = ConditionalBinomialE([1.0, 1.0], [+1, -1])
        self.log_e_max = 0.0

    def update(self, n_canary: int, n_baseline: int, expected: float) -> None:
        self._e.update(n_canary, n_baseline, expected)
        # The running max of the *average* (not the average of the rows' maxes).
        self.log_e_max = max(self.log_e_max, self.log_e)

    @property
    def log_e(self) -> float:
        le = self._e.log_e
        top = le.max()
        return float(top + np.log(np.exp(le - top).mean()))
