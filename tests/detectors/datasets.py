"""Named, seeded RUM-shaped distributions for the sketch tests.

Each dataset is a function ``(n, seed) -> np.ndarray`` of ``n`` non-negative finite
float64 values; the same ``(n, seed)`` always gives the same array. They cover what real
web-vitals look like (LCP is roughly lognormal, INP is reported in 8 ms steps, CLS is
often exactly 0) and the shapes that break quantile sketches (a constant, all zeros, a
narrow zoom-in, nine decades of range).

>>> x = DATASETS["cls_zeros"](1000, 1)
>>> x.shape, bool((x >= 0).all()), bool(np.array_equal(x, cls_zeros(1000, 1)))
((1000,), True, True)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = [
    "DATASETS",
    "Dataset",
    "all_zeros",
    "bimodal_cache",
    "cls_zeros",
    "constant",
    "heavy_tail",
    "inp_integers",
    "lognormal_lcp",
    "uniform_zoom_in",
    "wide_range",
]

Dataset = Callable[[int, int], np.ndarray]

LCP_MU, LCP_SIGMA = np.log(1300.0), 0.8  # a median LCP of 1.3 s, p75 about 2.2 s


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def lognormal_lcp(n: int, seed: int) -> np.ndarray:
    """LCP in ms: lognormal with median 1300 ms and log-s.d. 0.8."""
    return _rng(seed).lognormal(LCP_MU, LCP_SIGMA, n)


def heavy_tail(n: int, seed: int) -> np.ndarray:
    """LCP with 2 % contamination: those page views are 5 times slower (a stalled CDN)."""
    rng = _rng(seed)
    values = rng.lognormal(LCP_MU, LCP_SIGMA, n)
    return np.where(rng.random(n) < 0.02, values * 5.0, values)


def bimodal_cache(n: int, seed: int) -> np.ndarray:
    """Cache hit (70 %, ~250 ms) or miss (30 %, ~2400 ms): two well separated lognormals."""
    rng = _rng(seed)
    hit = rng.lognormal(np.log(250.0), 0.3, n)
    miss = rng.lognormal(np.log(2400.0), 0.4, n)
    return np.where(rng.random(n) < 0.7, hit, miss)


def inp_integers(n: int, seed: int) -> np.ndarray:
    """INP-like: whole multiples of 8 ms (browsers report event durations in 8 ms steps), floor 8."""
    raw = _rng(seed).lognormal(np.log(96.0), 1.0, n)
    return np.maximum(8.0, np.round(raw / 8.0) * 8.0)


def constant(n: int, seed: int) -> np.ndarray:
    """Every value the same (a synthetic monitor): all quantiles are one number."""
    return np.full(n, 1234.5)


def cls_zeros(n: int, seed: int) -> np.ndarray:
    """CLS: 30 % exact zeros, the rest lognormal(ln 0.04, 1.3) rounded to 4 decimals."""
    rng = _rng(seed)
    shifts = np.round(rng.lognormal(np.log(0.04), 1.3, n), 4)
    return np.where(rng.random(n) < 0.3, 0.0, shifts)


def all_zeros(n: int, seed: int) -> np.ndarray:
    """Nothing but zeros (a page without layout shifts): only the zero bucket is used."""
    return np.zeros(n)


def uniform_zoom_in(n: int, seed: int) -> np.ndarray:
    """Uniform on [1000, 1001]: everything within one or two buckets."""
    return _rng(seed).uniform(1000.0, 1001.0, n)


def wide_range(n: int, seed: int) -> np.ndarray:
    """Log-uniform from 1e-3 to 1e6: nine decades, thousands of buckets."""
    return 10.0 ** _rng(seed).uniform(-3.0, 6.0, n)


DATASETS: dict[str, Dataset] = {
    "lognormal_lcp": lognormal_lcp,
    "heavy_tail": heavy_tail,
    "bimodal_cache": bimodal_cache,
    "inp_integers": inp_integers,
    "constant": constant,
    "cls_zeros": cls_zeros,
    "all_zeros": all_zeros,
    "uniform_zoom_in": uniform_zoom_in,
    "wide_range": wide_range,
}
