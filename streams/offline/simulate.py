"""Realistic, seeded RUM traffic for a canary rollout, with injectable regressions.

The generator stands in for real users when there are none: tests, benchmarks, the demo and
``rumgate simulate``. It draws page views per tumbling window of event time, with a device
mix and per-page-view web-vitals distributions taken from ``docs/rum-formats.md`` §3.4
(log-normals fitted to mPulse data through the RUM Archive, p75 anchors from SpeedCurve and
the Web Almanac), and the A/A stress scenarios of ``docs/statistics.md`` §7: shared diurnal
drift, a ramping split with a shared trend, clustered users and bursty errors.

Model, per window of ``window_ms`` (default 5 s):

* **Users.** ``Poisson(rate · Δt · traffic / beacons_per_user)`` users arrive, where
  ``traffic = 1 + diurnal_amplitude · sin(2πt / period_s)``. Each user gets one device
  (mobile 55.7 % / desktop 40.4 % / tablet 3.9 %), one arm (canary with the canary share at
  that time: the split is per user, as a real rollout assigns it) and one random effect
  ``N(0, user_sd)`` on log latency, and views ``1 + Poisson(beacons_per_user - 1)`` pages.
* **Page views.** Event times are uniform in the window. Per page view, with single-site
  spreads: ``TTFB ~ LN(ln 450, 0.85)`` mobile, ``LN(ln 350, 0.80)`` desktop;
  ``FCP = TTFB + LN(ln 550, 0.6)``; ``LCP = FCP + LN(ln 300, 0.9)`` (so LCP ≥ FCP ≥ TTFB,
  and the mobile LCP p75 comes out near 2.1 s, against 2.1–2.7 s in mPulse); 8 % of page
  views are hidden and report no FCP and no LCP. INP is absent without an interaction
  (40 % mobile, 45 % desktop), else ``LN(ln 96, 1.1)`` mobile / ``LN(ln 56, 1.1)`` desktop
  (p75 ≈ 200 / 120 ms, SpeedCurve's 248 / 120), quantised up to 8 ms as browsers report it.
  CLS is 0 for 30 % / 35 %, else ``LN(ln 0.04, 1.3)``. Tablets use the desktop parameters.
* **Page weight** (``lcp_spread``, default 0): multiplies both paint add-ons (FCP − TTFB
  and LCP − FCP) by ``exp(N(0, lcp_spread))``. The default coherent model gives mobile LCP
  a log-s.d. of about 0.48, narrower than the single-site 0.65 of rum-formats §3.3, which
  makes LCP regressions easier to see; ``lcp_spread=0.65`` gives 0.65 (p75 ≈ 2.45 s). Its
  draws come from a third generator, so the default model's numbers do not move.
* **Shared effects.** Latencies (TTFB, FCP, LCP, INP) of both arms are multiplied by
  ``exp(drift_amplitude · sin(2πt / period_s) + trend · t / duration_s + user effect)``.
  These are the non-stationarities a valid gate must not mistake for a regression.
* **Errors.** A page view has at least one JS error with probability ``error_rate`` (×10 in
  an *error storm* window, which hits both arms); it then has ``1 + Geometric`` errors with
  mean ``error_burst``.
* **Regressions** (:class:`Regression`) act on the canary only, from ``start_s`` and
  optionally on one device: latencies and nonzero CLS are multiplied by the factor before
  quantisation, the error probability is multiplied for ``errors``.

Reproducibility: everything comes from ``np.random.default_rng(seed)``, drawn in a fixed
order per window, and all random numbers are drawn whatever the scenario's parameters, so
two scenarios that differ only in a regression see the *same* page views, and the regressed
values differ exactly by the factor (common random numbers: paired comparisons are exact).
Descriptive fields (ids, sessions, pages, countries, browsers) come from a second generator,
``np.random.default_rng([seed, 1])``, so :func:`generate_beacons` and
:func:`generate_windows` produce the same rows.

Examples
--------
>>> sc = SCENARIOS["lcp-regression"]
>>> sc.regressions
(Regression(metric='LCP', factor=1.1, segment=None, start_s=0.0),)
>>> first = next(generate_beacons(sc, seed=7))
>>> sorted(first)
['app', 'browser', 'cohort', 'country', 'device', 'errors', 'id', 'metrics', 'page', 'release', 'session', 'ts']
>>> batch = next(generate_windows(sc, seed=7))
>>> int(batch.ts[0]) == first["ts"], len(batch) > 400
(True, True)
>>> Regression.parse("INP:1.3:mobile:120")
Regression(metric='INP', factor=1.3, segment='mobile', start_s=120.0)
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import orjson

from detectors.beacon import METRIC_LIMITS, METRICS, BeaconBatch, CohortKey
from detectors.policy import parse_duration

__all__ = [
    "DEVICES",
    "DEVICE_MIX",
    "REGRESSION_TARGETS",
    "Regression",
    "Scenario",
    "SCENARIOS",
    "generate_windows",
    "generate_beacons",
    "write_counted",
    "write_ndjson",
]

#: Device classes the generator emits, and their share of page views (mPulse, 2026-08-04,
#: rum-formats §3.4; tablet rounded up from 3.8 % so the mix sums to one).
DEVICES: tuple[str, ...] = ("mobile", "desktop", "tablet")
DEVICE_MIX: tuple[float, ...] = (0.557, 0.404, 0.039)

#: What a :class:`Regression` may act on: the five metrics, or ``errors``.
REGRESSION_TARGETS: tuple[str, ...] = METRICS + ("errors",)

# -- per-page-view parameters (rum-formats §3.4), index 0 = mobile, 1 = desktop (and tablet) --
_TTFB_MU = np.log([450.0, 350.0])  # mPulse median TTFB ≈ 420–450 ms
_TTFB_SIGMA = np.array([0.85, 0.80])  # calibrated to 44 % / 55 % of origins with good TTFB
_FCP_ADD = (math.log(550.0), 0.6)  # TTFB → FCP
_LCP_ADD = (math.log(300.0), 0.9)  # FCP → LCP; mobile LCP p75 ≈ 2.1 s with these
_P_HIDDEN = 0.08  # hidden page loads report neither FCP nor LCP
_P_NO_INP = np.array([0.40, 0.45])  # no interaction → no INP
_INP_MU = np.log([96.0, 56.0])  # p75 ≈ 200 / 120 ms (SpeedCurve: 248 / 120)
_INP_SIGMA = 1.10
_INP_STEP = 8.0  # browsers report INP in 8 ms steps; the smallest value is 8
_P_CLS_ZERO = np.array([0.30, 0.35])
_CLS_MU, _CLS_SIGMA = math.log(0.04), 1.30  # nonzero CLS: p75 ≈ 0.10
_STORM_FACTOR = 10.0
_DEVICE_CUM = np.cumsum(DEVICE_MIX)

# -- descriptive fields (from the decoration generator only) ---------------------------------
_PAGES = ("/", "/product/:id", "/category/:slug", "/search", "/cart", "/checkout", "/account")
_PAGE_CUM = np.cumsum([0.22, 0.34, 0.16, 0.12, 0.07, 0.05, 0.04])
# Country mixes from rum-formats §3.4 (mPulse, US-heavy); the unnamed remainder is spread over
# a few more markets so every value is a real ISO 3166 code.
_COUNTRIES = ("US", "GB", "JP", "CA", "FR", "AU", "IT", "DE", "KR", "IN", "BR", "NL", "ES", "MX")
_COUNTRY_CUM = np.cumsum([
    [46.4, 9.7, 9.4, 5.1, 3.6, 3.5, 2.8, 2.7, 2.3, 1.3, 4.0, 3.4, 3.0, 2.8],  # mobile
    [58.3, 9.6, 4.0, 6.3, 2.8, 2.6, 2.0, 2.9, 1.5, 1.2, 2.6, 2.4, 2.1, 1.7],  # desktop/tablet
], axis=1)
_COUNTRY_CUM /= _COUNTRY_CUM[:, -1:]
# Browser mixes are illustrative (typical shares, not from a cited data set).
_BROWSERS = ("Chrome", "Safari", "Firefox", "Edge", "Samsung Internet")
_BROWSER_CUM = np.cumsum([
    [0.58, 0.32, 0.01, 0.01, 0.08],  # mobile
    [0.66, 0.12, 0.08, 0.14, 0.00],  # desktop
    [0.35, 0.58, 0.01, 0.01, 0.05],  # tablet
], axis=1)
_BROWSER_CUM /= _BROWSER_CUM[:, -1:]


@dataclass(frozen=True)
class Regression:
    """A regression injected into the canary arm.

    Parameters
    ----------
    metric
        ``LCP``, ``INP``, ``CLS``, ``FCP``, ``TTFB`` or ``errors`` (case-insensitive).
    factor
        Latencies are multiplied by it (before INP's 8 ms quantisation), CLS only where it is
        nonzero; for ``errors`` the probability that a page view has any error is.
        Only the named metric changes: a TTFB regression does not move FCP or LCP, so the
        true effect the gate should find is exactly the factor.
    segment
        Device the regression hits (``mobile``, ``desktop``, ``tablet``); None or ``all``
        for every device.
    start_s
        Seconds after the scenario start from which it acts (event time of each page view).
    """

    metric: str
    factor: float
    segment: str | None = None
    start_s: float = 0.0

    def __post_init__(self) -> None:
        names = {m.lower(): m for m in REGRESSION_TARGETS}
        metric = names.get(str(self.metric).lower())
        if metric is None:
            raise ValueError(f"unknown metric {self.metric!r} (use {', '.join(REGRESSION_TARGETS)})")
        object.__setattr__(self, "metric", metric)
        if isinstance(self.factor, bool) or not isinstance(self.factor, (int, float)) \
                or not math.isfinite(self.factor) or self.factor <= 0:
            raise ValueError(f"factor must be a finite number > 0, got {self.factor!r}")
        object.__setattr__(self, "factor", float(self.factor))
        segment = self.segment
        if segment is not None and str(segment).lower() == "all":
            segment = None
        if segment is not None and segment not in DEVICES:
            raise ValueError(f"segment must be one of {', '.join(DEVICES)} or all, got {segment!r}")
        object.__setattr__(self, "segment", segment)
        if isinstance(self.start_s, bool) or not isinstance(self.start_s, (int, float)) \
                or not math.isfinite(self.start_s) or self.start_s < 0:
            raise ValueError(f"start_s must be a number of seconds >= 0, got {self.start_s!r}")
        object.__setattr__(self, "start_s", float(self.start_s))

    @classmethod
    def parse(cls, text: str) -> Regression:
        """Parse the CLI form ``METRIC:FACTOR[:SEGMENT[:START_S]]``.

        ``SEGMENT`` is a device or ``all``; ``START_S`` is seconds, or a duration such as
        ``2m``. Raises ValueError naming the part that is wrong.

        >>> Regression.parse("errors:1.5:all:120")
        Regression(metric='errors', factor=1.5, segment=None, start_s=120.0)
        >>> Regression.parse("LCP")
        Traceback (most recent call last):
        ...
        ValueError: regression 'LCP': expected METRIC:FACTOR[:SEGMENT[:START_S]], e.g. ...
        """
        parts = [p.strip() for p in str(text).split(":")]
        if not 2 <= len(parts) <= 4 or not all(parts):
            raise ValueError(f"regression {text!r}: expected METRIC:FACTOR[:SEGMENT[:START_S]], "
                             "e.g. LCP:1.10 or INP:1.3:mobile:120")
        metric, factor_text = parts[0], parts[1]
        try:
            factor = float(factor_text)
        except ValueError:
            raise ValueError(f"regression {text!r}: factor must be a number such as 1.10, "
                             f"got {factor_text!r}") from None
        segment = parts[2].lower() if len(parts) > 2 else None
        start_s = 0.0
        if len(parts) > 3:
            try:
                start_s = parse_duration(parts[3]) / 1000
            except ValueError:
                raise ValueError(f"regression {text!r}: start must be seconds (or e.g. 2m), "
                                 f"got {parts[3]!r}") from None
        try:
            return cls(metric, factor, segment, start_s)
        except ValueError as exc:
            raise ValueError(f"regression {text!r}: {exc}") from None

    def __str__(self) -> str:
        out = f"{self.metric}:{self.factor:g}"
        if self.segment is not None or self.start_s:
            out += f":{self.segment or 'all'}"
        if self.start_s:
            out += f":{self.start_s:g}"
        return out


def _check(ok: bool, name: str, value: object, rule: str) -> None:
    if not ok:
        raise ValueError(f"Scenario.{name} must be {rule}, got {value!r}")


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclass(frozen=True)
class Scenario:
    """One simulated rollout: traffic, split, non-stationarity, errors and regressions.

    Times are seconds after ``start_ms`` (epoch ms of the first window; keep it a multiple
    of the window size so the generator's windows are the core's tumbling windows).
    ``canary_share_end`` turns the constant split into a linear ramp over ``duration_s``;
    ``diurnal_amplitude`` modulates traffic, ``drift_amplitude`` and ``trend`` shift the
    log-latency of both arms; ``beacons_per_user > 1`` clusters page views by user, with
    ``user_sd`` the s.d. of a per-user log-latency effect. See the module docstring.
    """

    app: str = "shop-web"
    canary: str = "2026.11.23-canary"
    baseline: str = "2026.11.20-base"
    start_ms: int = 1_763_856_000_000
    duration_s: float = 1800.0
    rate: float = 100.0
    canary_share: float = 0.05
    canary_share_end: float | None = None
    diurnal_amplitude: float = 0.0
    drift_amplitude: float = 0.0
    trend: float = 0.0
    period_s: float = 900.0
    beacons_per_user: float = 1.0
    user_sd: float = 0.0
    error_rate: float = 0.02
    error_burst: float = 1.0
    error_storm_rate: float = 0.0
    lcp_spread: float = 0.0
    regressions: tuple[Regression, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for name in ("app", "canary", "baseline"):
            value = getattr(self, name)
            _check(isinstance(value, str) and bool(value.strip()), name, value, "a non-empty string")
        _check(self.canary != self.baseline, "canary", self.canary, "different from the baseline")
        _check(isinstance(self.start_ms, int) and not isinstance(self.start_ms, bool)
               and 1_000_000_000_000 <= self.start_ms <= 9_000_000_000_000,
               "start_ms", self.start_ms, "epoch milliseconds (an int)")
        _check(_finite(self.duration_s) and self.duration_s > 0, "duration_s", self.duration_s, "> 0")
        _check(_finite(self.rate) and self.rate >= 0, "rate", self.rate, ">= 0")
        for name in ("canary_share", "error_rate", "error_storm_rate"):
            value = getattr(self, name)
            _check(_finite(value) and 0 <= value <= 1, name, value, "in [0, 1]")
        if self.canary_share_end is not None:
            _check(_finite(self.canary_share_end) and 0 <= self.canary_share_end <= 1,
                   "canary_share_end", self.canary_share_end, "None or in [0, 1]")
        # Amplitude > 1 would make traffic negative half of the time.
        _check(_finite(self.diurnal_amplitude) and 0 <= self.diurnal_amplitude <= 1,
               "diurnal_amplitude", self.diurnal_amplitude, "in [0, 1]")
        for name in ("drift_amplitude", "trend"):
            _check(_finite(getattr(self, name)), name, getattr(self, name), "a finite number")
        _check(_finite(self.lcp_spread) and self.lcp_spread >= 0, "lcp_spread", self.lcp_spread, ">= 0")
        _check(_finite(self.period_s) and self.period_s > 0, "period_s", self.period_s, "> 0")
        _check(_finite(self.beacons_per_user) and self.beacons_per_user >= 1,
               "beacons_per_user", self.beacons_per_user, ">= 1")
        _check(_finite(self.user_sd) and self.user_sd >= 0, "user_sd", self.user_sd, ">= 0")
        _check(_finite(self.error_burst) and self.error_burst >= 1,
               "error_burst", self.error_burst, ">= 1")
        regressions = tuple(self.regressions)
        for r in regressions:
            _check(isinstance(r, Regression), "regressions", r, "a tuple of Regression")
        object.__setattr__(self, "regressions", regressions)

    def share_at(self, t_s: float) -> float:
        """Canary share of users at ``t_s`` seconds (constant, or the linear ramp)."""
        if self.canary_share_end is None:
            return self.canary_share
        frac = min(max(t_s / self.duration_s, 0.0), 1.0)
        return self.canary_share + (self.canary_share_end - self.canary_share) * frac

    def traffic_at(self, t_s: float) -> float:
        """Traffic multiplier at ``t_s`` seconds: ``1 + diurnal_amplitude · sin(2πt/period)``."""
        return max(0.0, 1.0 + self.diurnal_amplitude * math.sin(2 * math.pi * t_s / self.period_s))


_STATIONARY = Scenario()

#: Named presets: the A/A scenarios of statistics.md §7.1 and the regressions of §7.2.
SCENARIOS: dict[str, Scenario] = {
    "stationary": _STATIONARY,
    "clean": replace(_STATIONARY),
    "drift": replace(_STATIONARY, drift_amplitude=0.3, diurnal_amplitude=0.6, period_s=900.0),
    "ramp": replace(_STATIONARY, canary_share=0.01, canary_share_end=0.10, trend=0.3),
    "clustered": replace(_STATIONARY, beacons_per_user=3.0, user_sd=0.3),
    "bursty-errors": replace(_STATIONARY, error_burst=4.0, error_storm_rate=0.02),
    "lcp-regression": replace(_STATIONARY, regressions=(Regression("LCP", 1.10),)),
    "lcp-regression-25": replace(_STATIONARY, regressions=(Regression("LCP", 1.25),)),
    "inp-mobile": replace(_STATIONARY, regressions=(Regression("INP", 1.30, "mobile"),)),
    "errors": replace(_STATIONARY, regressions=(Regression("errors", 1.5),)),
}


# -- generation --------------------------------------------------------------------------------


@dataclass
class _Window:
    """One window's rows (sorted by ts) and the users behind them."""

    ts: np.ndarray  # int64 epoch ms
    canary: np.ndarray  # bool per row
    device: np.ndarray  # int index into DEVICES per row
    user: np.ndarray  # index of the row's user within the window
    user_device: np.ndarray  # per user
    metrics: dict[str, np.ndarray]  # float64, NaN = absent
    errors: np.ndarray  # int64


def _windows(sc: Scenario, seed: int, window_ms: int) -> Iterator[_Window]:
    """The core generator: one :class:`_Window` per window, all draws from the main rng."""
    if isinstance(window_ms, bool) or not isinstance(window_ms, (int, np.integer)) or window_ms <= 0:
        raise ValueError(f"window_ms must be a positive integer, got {window_ms!r}")
    rng = np.random.default_rng(seed)
    # Extra LCP spread draws come from their own stream, so turning the spread on leaves
    # every other draw of the default model (and every result measured with it) the same.
    spread_rng = np.random.default_rng([seed, 2])
    duration_ms = int(round(sc.duration_s * 1000))
    n_windows = -(-duration_ms // window_ms)
    bpu = sc.beacons_per_user
    p_burst = 1.0 / sc.error_burst  # geometric success prob: 1 + extra has mean error_burst
    for i in range(n_windows):
        w0 = i * window_ms
        dt_ms = min(window_ms, duration_ms - w0)  # the last window may be short
        t_mid = (w0 + dt_ms / 2) / 1000

        # Per window: storm or not, then users, each with an arm, a device and an effect.
        # Every draw happens whatever the parameters, so scenarios share random numbers.
        storm = rng.random() < sc.error_storm_rate
        n_users = int(rng.poisson(sc.rate * dt_ms / 1000 * sc.traffic_at(t_mid) / bpu))
        user_u = rng.random((2, n_users))
        user_z = rng.standard_normal(n_users)
        views = 1 + rng.poisson(bpu - 1.0, n_users) if bpu > 1 else np.ones(n_users, np.int64)
        user_canary = user_u[0] < sc.share_at(t_mid)
        user_device = np.searchsorted(_DEVICE_CUM, user_u[1] * _DEVICE_CUM[-1], side="right")

        # Page views: uniform event times, rows sorted by time before any metric is drawn.
        user = np.repeat(np.arange(n_users), views)
        n = user.shape[0]
        offset = np.floor(rng.random(n) * dt_ms).astype(np.int64)
        order = np.argsort(offset, kind="stable")
        offset, user = offset[order], user[order]
        ts = sc.start_ms + w0 + offset
        t_s = (w0 + offset) / 1000.0
        canary = user_canary[user]
        device = user_device[user]
        p = np.minimum(device, 1)  # parameter row: tablets use desktop's

        z = rng.standard_normal((5, n))  # TTFB, FCP add-on, LCP add-on, INP, CLS
        u = rng.random((4, n))  # hidden, no interaction, CLS zero, error
        extra_errors = rng.geometric(p_burst, n) - 1

        # Shared (both arms) multiplicative latency effects: drift, trend, user.
        log_shared = user_z[user] * sc.user_sd
        if sc.drift_amplitude:
            log_shared = log_shared + sc.drift_amplitude * np.sin(2 * np.pi * t_s / sc.period_s)
        if sc.trend:
            log_shared = log_shared + sc.trend * t_s / sc.duration_s
        shared = np.exp(log_shared)

        factor = {m: np.ones(n) for m in REGRESSION_TARGETS}
        for r in sc.regressions:
            hit = canary & (t_s >= r.start_s)
            if r.segment is not None:
                hit &= device == DEVICES.index(r.segment)
            factor[r.metric][hit] *= r.factor

        ttfb = np.exp(_TTFB_MU[p] + _TTFB_SIGMA[p] * z[0])
        # Page weight: how heavy a page is to render scales both paint add-ons together.
        weight = np.exp(sc.lcp_spread * spread_rng.standard_normal(n)) if sc.lcp_spread else 1.0
        fcp = ttfb + np.exp(_FCP_ADD[0] + _FCP_ADD[1] * z[1]) * weight
        lcp = fcp + np.exp(_LCP_ADD[0] + _LCP_ADD[1] * z[2]) * weight
        hidden = u[0] < _P_HIDDEN
        inp = np.exp(_INP_MU[p] + _INP_SIGMA * z[3]) * shared * factor["INP"]
        inp = np.maximum(_INP_STEP, np.ceil(inp / _INP_STEP) * _INP_STEP)
        cls = np.maximum(1e-4, np.round(np.exp(_CLS_MU + _CLS_SIGMA * z[4]) * factor["CLS"], 4))
        metrics = {
            "LCP": np.where(hidden, np.nan, np.round(lcp * shared * factor["LCP"], 1)),
            "INP": np.where(u[1] < _P_NO_INP[p], np.nan, inp),
            "CLS": np.where(u[2] < _P_CLS_ZERO[p], 0.0, cls),
            "FCP": np.where(hidden, np.nan, np.round(fcp * shared * factor["FCP"], 1)),
            "TTFB": np.round(ttfb * shared * factor["TTFB"], 1),
        }
        # A safety belt: an extreme draw times a big factor must still be a valid beacon.
        for m, values in metrics.items():
            np.minimum(values, METRIC_LIMITS[m], out=values)

        p_error = np.minimum(1.0, sc.error_rate * (_STORM_FACTOR if storm else 1.0) * factor["errors"])
        errors = np.where(u[3] < p_error, 1 + extra_errors, 0).astype(np.int64)
        yield _Window(ts, canary, device, user, user_device, metrics, errors)


def generate_windows(scenario: Scenario, seed: int, window_ms: int = 5000) -> Iterator[BeaconBatch]:
    """One :class:`BeaconBatch` per window of ``window_ms``, in order (empty ones included).

    Window ``i`` holds the page views with ``ts`` in
    ``[start_ms + i·window_ms, start_ms + (i+1)·window_ms)``, sorted by ``ts``; the last
    window is cut at ``duration_s``. ``keys`` are ``CohortKey(app, release, None, device)``
    for the arm × device pairs present, canary first.
    """
    releases = (scenario.canary, scenario.baseline)
    all_keys = [CohortKey(scenario.app, rel, None, dev) for rel in releases for dev in DEVICES]
    for w in _windows(scenario, seed, window_ms):
        if w.ts.shape[0] == 0:
            yield BeaconBatch.empty()
            continue
        code = np.where(w.canary, 0, len(DEVICES)) + w.device
        present, key = np.unique(code, return_inverse=True)
        yield BeaconBatch(
            ts=w.ts,
            key=key.astype(np.int32).reshape(-1),
            keys=[all_keys[c] for c in present],
            metrics=w.metrics,
            errors=w.errors,
            session=w.user.tolist(),  # users live one window, so the index is their session
        )


def generate_beacons(scenario: Scenario, seed: int, window_ms: int = 5000) -> Iterator[dict]:
    """The rows of :func:`generate_windows` as canonical beacon dicts, in ``ts`` order.

    Adds what a gateway would stamp: ``id`` (``sim-{seed}-{n}``), a hex ``session`` per user,
    a route-template ``page``, ``country`` and ``browser`` (per user, by device; countries
    from rum-formats §3.4, browser shares illustrative). These come from a separate
    generator, so the metric values are exactly those of :func:`generate_windows`.
    """
    deco = np.random.default_rng([seed, 1])
    app, releases = scenario.app, (scenario.baseline, scenario.canary)
    n_seen = 0
    for w in _windows(scenario, seed, window_ms):
        n_users = w.user_device.shape[0]
        n = w.ts.shape[0]
        sessions = deco.integers(0, 2**63, n_users, dtype=np.int64)
        dev_class = np.minimum(w.user_device, 1)
        u_country = deco.random(n_users)
        country = (_COUNTRY_CUM[dev_class] <= u_country[:, None]).sum(axis=1)
        u_browser = deco.random(n_users)
        browser = (_BROWSER_CUM[w.user_device] <= u_browser[:, None]).sum(axis=1)
        page = np.searchsorted(_PAGE_CUM, deco.random(n) * _PAGE_CUM[-1], side="right")
        session_hex = [f"{s:016x}" for s in sessions.tolist()]
        columns = {m: w.metrics[m].tolist() for m in METRICS}
        ts, user, dev = w.ts.tolist(), w.user.tolist(), w.device.tolist()
        canary, errors, page_l = w.canary.tolist(), w.errors.tolist(), page.tolist()
        country_l, browser_l = country.tolist(), browser.tolist()
        for j in range(n):
            uj = user[j]
            yield {
                "id": f"sim-{seed}-{n_seen + j}",
                "ts": ts[j],
                "app": app,
                "release": releases[canary[j]],
                "session": session_hex[uj],
                "page": _PAGES[page_l[j]],
                "device": DEVICES[dev[j]],
                "country": _COUNTRIES[country_l[uj]],
                "browser": _BROWSERS[browser_l[uj]],
                # NaN marks an absent metric (x == x is False only for NaN).
                "metrics": {m: columns[m][j] for m in METRICS if columns[m][j] == columns[m][j]},
                "errors": errors[j],
                "cohort": None,
            }
        n_seen += n


def write_counted(path: str | Path, scenario: Scenario, seed: int,
                  progress: Callable[[int, float], None] | None = None) -> tuple[int, int]:
    """Write NDJSON (gzip for ``.gz``); return (beacons, canary beacons)."""
    path = Path(path)
    total = canary = 0
    minute = 0
    end_ms = scenario.start_ms + scenario.duration_s * 1000
    with open(path, "wb") as raw:
        # mtime=0 and no file name in the header: the same seed gives the same bytes.
        out = gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0) \
            if path.name.endswith(".gz") else raw
        try:
            chunk: list[bytes] = []
            for b in generate_beacons(scenario, seed):
                chunk.append(orjson.dumps(b))
                total += 1
                canary += b["release"] == scenario.canary
                if len(chunk) >= 4096:
                    out.write(b"\n".join(chunk) + b"\n")
                    chunk.clear()
                if progress is not None and (b["ts"] - scenario.start_ms) // 60_000 > minute:
                    minute = (b["ts"] - scenario.start_ms) // 60_000
                    progress(total, minute * 60.0)
            if chunk:
                out.write(b"\n".join(chunk) + b"\n")
        finally:
            if out is not raw:
                out.close()
    if progress is not None:
        progress(total, (end_ms - scenario.start_ms) / 1000)
    return total, canary


def write_ndjson(path: str | Path, scenario: Scenario, seed: int,
                 progress: Callable[[int, float], None] | None = None) -> int:
    """Write the scenario's beacons to ``path`` as NDJSON; return how many.

    A path ending in ``.gz`` is gzip-compressed, reproducibly (no time stamp, no name in the
    header). ``progress(beacons_written, simulated_seconds)`` is called about once per
    simulated minute, and once at the end.
    """
    return write_counted(path, scenario, seed, progress)[0]
