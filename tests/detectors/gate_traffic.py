"""Tiny seeded window generator for gate tests: lognormal LCP and error page views."""

from __future__ import annotations

import numpy as np

from detectors.beacon import BeaconBatch, CohortKey
from detectors.windows import TumblingWindows, WindowSummary

T0 = 1_763_856_000_000
APP, CANARY, BASELINE = "shop-web", "r2", "r1"


def window(rng: np.random.Generator, t: int, *, lcp_factor: float = 1.0, share: float = 0.05,
           rate: float = 100.0, error_rate: float = 0.02, error_factor: float = 1.0,
           cohort: str | None = None, device: str = "mobile") -> tuple[int, list[WindowSummary]]:
    """Window ``t`` (5 s) of traffic: (start, summaries)."""
    n_c, n_b = rng.poisson(rate * 5 * share), rng.poisson(rate * 5 * (1 - share))
    keys = [CohortKey(APP, CANARY, cohort, device), CohortKey(APP, BASELINE, None, device)]
    lcp = np.r_[rng.lognormal(7.6 + np.log(lcp_factor), 0.6, n_c), rng.lognormal(7.6, 0.6, n_b)]
    errors = np.r_[rng.random(n_c) < error_rate * error_factor, rng.random(n_b) < error_rate]
    start = T0 + t * 5000
    batch = BeaconBatch(
        ts=np.full(n_c + n_b, start, np.int64),
        key=np.r_[np.zeros(n_c, np.int32), np.ones(n_b, np.int32)],
        keys=keys, metrics={"LCP": lcp}, errors=errors.astype(np.int64))
    w = TumblingWindows(5000, 0)
    w.add(batch)
    return start, w.flush()
