"""The gate: window summaries of one rollout in, a verdict with its evidence out.

For every (metric, segment) of the policy the gate runs anytime-valid tests over a grid
of tolerances on both sides (statistics.md §3.4, §4, §6):

* quantiles (p75 LCP...): the conditional-exceedance e-test. The threshold is the
  baseline's quantile bucket from *earlier* windows; in each window the baseline beacons
  above it and the canary beacons above it shifted by the tolerance are compared,
  conditional on the window's split, so drifting traffic and a ramping split are fine.
* rates (JS-error page views, CLS > 0.1...): the conditional binomial e-test with the
  page views (or beacons carrying the metric) as exposure.
* the split itself: a sample-ratio-mismatch e-test when the expected share is known.

A window whose canary or baseline page views come from too few sessions (some session
over stage 1's per-window cap, page views per session far above the other arm's, or far
more page views without a session: :func:`crowding`) feeds nothing: one sender must not
weigh as the users it claims to be.

Decisions, in order: ROLLBACK when any rollback e-value reaches ``1/α_m`` (Bonferroni
over metrics × segments); HOLD on a window of few sessions, on a sample-ratio mismatch or
when canary data stops;
PROMOTE when every metric has proven non-inferiority at ``1/α_P`` after the minimum
duration and samples; HOLD when the deadline passes; otherwise CONTINUE.

The gate does not latch: it reports the evidence after every window, and the caller
decides what a decision ends (a backtest stops at the first one).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np

from detectors.beacon import CohortKey
from detectors.etest import ConditionalBinomialE, SampleRatioE
from detectors.incident import INCIDENT_DETECTOR, GlobalIncident, PromotionWatch
from detectors.policy import MetricPolicy, Policy
from detectors.sketch import DEFAULT_RELATIVE_ACCURACY, LogSketch
from detectors.verdict import MetricEvidence, MetricStatus, ReasonCode, Severity, Verdict, VerdictKind
from detectors.windows import WindowSummary

__all__ = ["TOLERANCE_GRID", "Gate", "arm_of", "crowding"]

#: Tolerances the explanation brackets the effect with ("worse by ≥ X", "not worse than Y").
TOLERANCE_GRID = (0.0, 0.02, 0.05, 0.10, 0.15, 0.20, 0.25, 0.30, 0.50, 1.0)
_SEVERITY = ((0.25, Severity.CRITICAL), (0.10, Severity.MAJOR))


def arm_of(key: CohortKey, canary: str, baseline: str) -> str | None:
    """Which arm a cohort belongs to: an explicit ``cohort`` wins over the release."""
    if key.cohort in ("canary", "baseline"):
        return key.cohort
    if key.release == canary:
        return "canary"
    if key.release == baseline:
        return "baseline"
    return None


#: An arm's page views per session this many times the other arm's is not a difference
#: between releases (the split is per user, and both arms run the same pages): it is a
#: sender posing as many page views. Honest arms differ by a few tens of percent at most.
CROWDING_RATIO = 4.0
#: ... once that arm has this many page views from named sessions in the window, so a
#: small canary's chance few heavy users never count as a crowd.
CROWDING_MIN_VIEWS = 20
#: An arm whose share of page views without a session exceeds the other arm's by this
#: much (with CROWDING_MIN_VIEWS of them) is a sender leaving its session out: the same
#: pages send sessions, or not, alike in both arms.
ANONYMOUS_EXCESS = 0.5


def crowding(canary: WindowSummary, baseline: WindowSummary) -> str | None:
    """Why one window's arms cannot be taken as users (None when they can).

    Three checks, all on a single window so that a flood is caught in the window it
    arrives in: page views stage 1 left out because their session was over its cap
    (``capped``), page views per named session far above the other arm's, and a share of
    page views without a session far above the other arm's (each counts as a user, so a
    sender that leaves its session out would otherwise weigh as a crowd).
    """
    for name, arm, other in (("canary", canary, baseline), ("baseline", baseline, canary)):
        if arm.capped:
            return (f"few sessions: {arm.capped} {name} page views of this window came from sessions "
                    "over the per-session cap; the window is not judged")
        share, other_share = _anonymous_share(arm), _anonymous_share(other)
        if arm.anonymous_views >= CROWDING_MIN_VIEWS and other.page_views and share >= other_share + ANONYMOUS_EXCESS:
            return (f"few sessions: {share:.0%} of the {name}'s page views in this window have no session, "
                    f"{other_share:.0%} of the other arm's; the window is not judged")
        named = arm.page_views - arm.anonymous_views
        other_named = other.page_views - other.anonymous_views
        if named < CROWDING_MIN_VIEWS or not arm.session_ids or not other.session_ids:
            continue
        per, other_per = named / len(arm.session_ids), other_named / len(other.session_ids)
        if per >= CROWDING_RATIO * other_per:
            return (f"few sessions: the {name} has {per:.1f} page views per session in this window, "
                    f"the other arm {other_per:.1f}; the window is not judged")
    return None


def _anonymous_share(summary: WindowSummary) -> float:
    return summary.anonymous_views / summary.page_views if summary.page_views else 0.0


@dataclass
class _Arms:
    """One window's canary and baseline summaries for one segment, merged."""

    canary: WindowSummary
    baseline: WindowSummary


class _MetricTest:
    """Rollback and promote e-processes over the tolerance grid for one (metric, segment)."""

    def __init__(self, metric: MetricPolicy, segment: str, grid: np.ndarray, log_gamma: float,
                 relative_accuracy: float, min_baseline: int) -> None:
        self.metric, self.segment, self.grid = metric, segment, grid
        self.min_baseline = min_baseline
        rows = grid.size
        if metric.quantile is not None:
            # Canary thresholds as bucket shifts from the baseline's (statistics.md §3.3):
            # rollback: smallest edge >= (1+δ)x; promote: largest edge < (1+δ)x.
            self.shift_rb = np.ceil(np.log1p(grid) / log_gamma - 1e-9).astype(np.int64)
            self.shift_pr = self.shift_rb - 1
            self.e = ConditionalBinomialE(np.ones(2 * rows), [+1] * rows + [-1] * rows)
        else:
            self.e = ConditionalBinomialE(np.concatenate([1 + grid, 1 + grid]), [+1] * rows + [-1] * rows)
        self.cum_c = LogSketch(relative_accuracy)
        self.cum_b = LogSketch(relative_accuracy)
        self.events_c = self.events_b = 0
        self.exposure_c = self.exposure_b = 0
        self.window: tuple[float | None, float | None] = (None, None)  # the last counted window's values

    # -- counting what a window says ------------------------------------------------------
    def update(self, arms: _Arms) -> None:
        m = self.metric
        if m.quantile is not None:
            h_c, h_b = arms.canary.sketches[m.metric], arms.baseline.sketches[m.metric]
            self.window = (h_c.quantile(m.quantile) if h_c.count else None,
                           h_b.quantile(m.quantile) if h_b.count else None)
            self._update_quantile(h_c, h_b)
        else:
            k_c, v_c = _rate_counts(arms.canary, m.metric)
            k_b, v_b = _rate_counts(arms.baseline, m.metric)
            self.window = (k_c / v_c if v_c else None, k_b / v_b if v_b else None)
            self.events_c += k_c
            self.events_b += k_b
            self.exposure_c += v_c
            self.exposure_b += v_b
            if v_c + v_b:
                self.e.update(k_c, k_b, v_c / (v_c + v_b))

    def _update_quantile(self, h_c: LogSketch, h_b: LogSketch) -> None:
        n_c, n_b = h_c.count, h_b.count
        i = self.cum_b.quantile_index(self.metric.quantile) if self.cum_b.count >= self.min_baseline else None
        if i is not None and n_c + n_b:
            k_b = h_b.count_above(i)
            k_c = np.concatenate([_counts_above(h_c, i + self.shift_rb), _counts_above(h_c, i + self.shift_pr)])
            self.e.update(k_c, k_b, n_c / (n_c + n_b))
        self.cum_c.merge(h_c)
        self.cum_b.merge(h_b)
        self.exposure_c += n_c
        self.exposure_b += n_b

    # -- reading the evidence -------------------------------------------------------------
    @property
    def rows(self) -> int:
        return self.grid.size

    def log_e_rollback(self, tolerance: float) -> float:
        return float(self.e.log_e_max[int(np.searchsorted(self.grid, tolerance))])

    def log_e_promote(self, tolerance: float) -> float:
        return float(self.e.log_e_max[self.rows + int(np.searchsorted(self.grid, tolerance))])

    def estimates(self) -> tuple[float, float]:
        """Point estimates (canary, baseline): quantiles from all windows, or rates."""
        m = self.metric
        if m.quantile is not None:
            return self.cum_c.quantile(m.quantile), self.cum_b.quantile(m.quantile)
        rate = lambda k, v: k / v if v else math.nan  # noqa: E731
        return rate(self.events_c, self.exposure_c), rate(self.events_b, self.exposure_b)

    def enough_data(self) -> bool:
        m = self.metric
        if m.quantile is not None:
            return self.exposure_c >= m.min_canary
        return self.exposure_c >= m.min_canary or self.events_c >= m.min_canary_events


def _rate_counts(summary: WindowSummary, metric: str) -> tuple[int, int]:
    """(events, exposure) of a rate metric in one summary."""
    if metric == "errors":
        return summary.error_views, summary.page_views
    return summary.over_good[metric], summary.sketches[metric].count


def _counts_above(sketch: LogSketch, indices: np.ndarray) -> np.ndarray:
    """``sketch.count_above(i)`` for many ``i`` with one cumulative sum."""
    total = sketch.count
    if sketch.counts.size == 0:
        return np.zeros(indices.size)
    cum = np.concatenate([[0], np.cumsum(sketch.counts)])
    pos = np.clip(indices + 1 - sketch.offset, 0, sketch.counts.size)
    return (total - sketch.zeros - cum[pos]).astype(np.float64)


class Gate:
    """Anytime-valid canary-versus-baseline gate for one rollout.

    Parameters
    ----------
    policy
        What to test and how sure to be.
    app, canary, baseline
        The rollout: which app, which release is the canary, which the baseline.
    started_at
        Rollout start (epoch ms); the first window observed when None.
    relative_accuracy
        Of the window sketches fed in (all must share it).
    """

    def __init__(self, policy: Policy, app: str, canary: str, baseline: str,
                 started_at: int | None = None,
                 relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY) -> None:
        self.policy, self.app, self.canary, self.baseline = policy, app, canary, baseline
        self.rollout = f"{app}:{canary}"
        self.started_at = started_at
        self.relative_accuracy = relative_accuracy
        log_gamma = LogSketch(relative_accuracy).log_gamma
        tolerances = {t for m in policy.metrics for t in (m.rollback_tolerance, m.promote_tolerance)}
        self.grid = np.array(sorted(set(TOLERANCE_GRID) | tolerances))
        self.tests = [
            _MetricTest(m, s, self.grid, log_gamma, relative_accuracy, policy.min_baseline_for_threshold)
            for m, s in policy.tests
        ]
        self.policy_ref = {"name": policy.name, "hash": policy.hash, "dry_run": policy.dry_run}
        self.srm = SampleRatioE()
        self.srm_checked = False
        self.seq = 0
        self.windows: list[int] = []  # starts of windows that fed the tests
        self.page_views = {"canary": 0, "baseline": 0}
        self.late_beacons = 0
        self.window_views = (0, 0)  # the last window's page views, canary and baseline
        self.last_canary_at: int | None = None
        self.last_expected: float | None = None
        self.incident: GlobalIncident | None = None
        if policy.global_incident or policy.post_promotion_watch_ms:
            from detectors.anomaly import DETECTORS

            self.detector_name = policy.anomaly_detector or INCIDENT_DETECTOR
            self.incident = GlobalIncident(DETECTORS[self.detector_name](), policy.anomaly_threshold)
        self.watch: PromotionWatch | None = None
        self.incident_now: tuple[bool, float] | None = None
        self.crowded: str | None = None  # why the last window was not judged (few sessions)
        self.crowded_windows = 0
        self.capped_views = 0

    # -- input ------------------------------------------------------------------------------
    def observe(self, start: int, size_ms: int, summaries: Iterable[WindowSummary],
                expected_share: float | None = None) -> Verdict:
        """Feed one closed window (all cohorts of it, any segments) and get a verdict."""
        if self.started_at is None:
            self.started_at = start
        arms = self._arms(start, size_ms, summaries)
        end = start + size_ms
        if self.watch is not None:
            return self._watch(end, arms["all"])
        self.crowded = crowding(arms["all"].canary, arms["all"].baseline)
        if self.crowded is not None:
            self.crowded_windows += 1
        self.capped_views += arms["all"].canary.capped + arms["all"].baseline.capped
        if self.incident is not None and self.crowded is None:
            self.incident_now = self.incident.observe(end, *self._series(arms["all"].baseline))
        pv_c, pv_b = arms["all"].canary.page_views, arms["all"].baseline.page_views
        self.window_views = (pv_c, pv_b)
        if pv_c:
            self.last_canary_at = end
        warming = start < self.started_at + self.policy.warmup_ms
        if not warming and self.crowded is None:
            self.page_views["canary"] += pv_c
            self.page_views["baseline"] += pv_b
            self.late_beacons += arms["all"].canary.late + arms["all"].baseline.late
            if expected_share is not None and 0 < expected_share < 1:
                # Users are what the rollout splits: their page views are not independent.
                self.srm.update(arms["all"].canary.sessions, arms["all"].baseline.sessions, expected_share)
                self.srm_checked = True
                self.last_expected = expected_share
            for test in self.tests:
                test.update(arms[test.segment])
            self.windows.append(start)
        else:
            for test in self.tests:
                test.window = (None, None)
        return self._decide(end, warming)

    def _series(self, summary: WindowSummary) -> tuple[float | None, int]:
        """(p75 of the watched metric, its count) in one window's summary."""
        sketch = summary.sketches[self.policy.anomaly_metric]
        return (sketch.quantile(0.75) if sketch.count else None), sketch.count

    def _watch(self, end: int, arms: _Arms) -> Verdict:
        """After promotion: the release (now everyone's) against the pre-promotion history."""
        w = self.watch
        broken, score, ratio = w.observe(end, *self._series(arms.canary))
        m = self.policy.anomaly_metric
        left = max(0, w.until - end)
        if broken:
            verdict, codes = VerdictKind.ROLLBACK, [ReasonCode.WATCH_BROKEN]
            severity = (Severity.CRITICAL if ratio and ratio >= 1.25 else Severity.MAJOR if ratio and ratio >= 1.10
                        else Severity.MINOR)
            reasons = [f"post-promotion watch: {m} p75 of the promoted release is "
                       f"{(ratio or 1) - 1:+.1%} against the pre-promotion history for {w.persist} windows "
                       f"in a row (anomaly score {score:.3g} ≥ {w.threshold:g})"]
            status = "broken"
        elif left == 0:
            verdict, severity, status = VerdictKind.PROMOTE, Severity.NONE, "passed"
            codes = [ReasonCode.WATCH_PASSED]
            reasons = [f"post-promotion watch passed: {m} p75 stayed within the pre-promotion history"]
        else:
            verdict, severity, status = VerdictKind.PROMOTE, Severity.NONE, "watching"
            codes = [ReasonCode.WATCHING]
            reasons = [f"promoted; post-promotion watch of {m} p75: {left // 60_000} min left"
                       + (f" (now {ratio - 1:+.1%} against the history)" if ratio else "")]
        last = self.last_verdict
        self.seq += 1
        return replace(last, seq=self.seq, verdict=verdict, severity=severity, at=end, reasons=reasons,
                       reason_codes=codes, detectors={**last.detectors, "post_promotion_watch": {
                           "status": status, "until": w.until, "score": round(score, 4),
                           "ratio": None if ratio is None else round(ratio, 4), "detector": "robust_z (frozen history)"}},
                       inputs={**last.inputs, "watch_windows": last.inputs.get("watch_windows", 0) + 1})

    def _arms(self, start: int, size_ms: int, summaries: Iterable[WindowSummary]) -> dict[str, _Arms]:
        empty = lambda: WindowSummary.empty(  # noqa: E731
            CohortKey(self.app, "", None, "all"), start, size_ms, self.relative_accuracy)
        segments = {s for _, s in self.policy.tests} | {"all"}
        arms = {s: _Arms(empty(), empty()) for s in segments}
        for summary in summaries:
            if summary.key.app != self.app or summary.start != start:
                continue
            arm = arm_of(summary.key, self.canary, self.baseline)
            if arm is None:
                continue
            for segment in ("all", summary.key.segment):
                if segment in arms:
                    getattr(arms[segment], arm).merge(summary)
        return arms

    # -- decision ---------------------------------------------------------------------------
    def _decide(self, at: int, warming: bool) -> Verdict:
        p = self.policy
        elapsed = at - self.started_at
        evidence = [self._evidence(t) for t in self.tests]
        worse = [e for e in evidence if e.status == MetricStatus.WORSE]
        silent = self.last_canary_at is None or at - self.last_canary_at >= p.max_silence_ms
        srm_bad = self.srm_checked and self.srm.log_e_max >= math.log(1 / p.alpha_srm)
        if worse:
            verdict = VerdictKind.ROLLBACK
            severity = max((e.severity for e in worse), key=lambda s: s.rank)
            reasons = [e.reason for e in worse]
            codes = [ReasonCode.WORSE] * len(worse)
        elif self.crowded is not None:
            verdict, severity, codes = VerdictKind.HOLD, Severity.NONE, [ReasonCode.FEW_SESSIONS]
            reasons = [self.crowded]
        elif self.incident_now is not None and self.incident_now[0]:
            verdict, severity, codes = VerdictKind.HOLD, Severity.NONE, [ReasonCode.GLOBAL_INCIDENT]
            since = self.incident.open_since
            if since is None or since >= at:  # the onset
                reasons = [f"global incident: the baseline's {p.anomaly_metric} p75 moved too (anomaly score "
                           f"{self.incident_now[1]:.3g} ≥ {p.anomaly_threshold:g}, {self.incident.z:.1f} robust SDs "
                           "above its level); both cohorts are affected, so no decision is taken on this window"]
            else:
                reasons = [f"global incident, open for {(at - since) // 1000} s: the baseline's {p.anomaly_metric} "
                           f"p75 is still {self.incident.z:.1f} robust SDs above its level before it (it closes after "
                           f"{self.incident.calm} windows under {self.incident.z_exit:g}); no decision is taken on "
                           "this window"]
        elif srm_bad:
            verdict, severity, codes = VerdictKind.HOLD, Severity.NONE, [ReasonCode.SRM]
            reasons = [f"sample-ratio mismatch: canary has {self._share():.2%} of page views, "
                       f"{self.last_expected:.2%} expected (e = {_exp(self.srm.log_e_max):.3g} "
                       f"≥ {1 / p.alpha_srm:g}); the data cannot be trusted"]
        elif silent and elapsed >= p.max_silence_ms:
            verdict, severity, codes = VerdictKind.HOLD, Severity.NONE, [ReasonCode.NO_CANARY]
            reasons = [f"no canary beacons for {p.max_silence_ms // 1000} s: is the canary serving traffic?"]
        elif warming:
            verdict, severity, codes = VerdictKind.CONTINUE, Severity.NONE, [ReasonCode.WARMUP]
            reasons = [f"warming up ({p.warmup_ms // 1000} s excluded: cold caches affect only the canary)"]
        elif elapsed >= p.warmup_ms + p.min_duration_ms and all(e.status == MetricStatus.NOT_WORSE for e in evidence):
            verdict, severity, codes = VerdictKind.PROMOTE, Severity.NONE, [ReasonCode.PROVEN_NOT_WORSE]
            reasons = [f"every metric proven not worse than its tolerance after {elapsed // 60_000} min"]
        elif elapsed >= p.max_duration_ms:
            verdict, severity, codes = VerdictKind.HOLD, Severity.NONE, [ReasonCode.DEADLINE]
            reasons = [f"inconclusive after {p.max_duration_ms // 60_000} min: a person must decide"]
        else:
            verdict, severity, codes = VerdictKind.CONTINUE, Severity.NONE, [ReasonCode.COLLECTING]
            waiting = [e for e in evidence if e.status != MetricStatus.NOT_WORSE]
            reasons = [f"collecting evidence: {', '.join(e.name for e in waiting) or 'minimum duration'}"]
        self.seq += 1
        detectors: dict = {"global_anomaly": False}
        if self.incident is not None:
            flagged, score = self.incident_now or (False, 0.0)
            detectors = {"global_anomaly": flagged, "baseline_score": round(score, 4),
                         "detector": self.detector_name, "incident_windows": self.incident.flagged}
        watch_ms = self.policy.post_promotion_watch_ms
        if verdict == VerdictKind.PROMOTE and watch_ms and self.incident is not None:
            self.watch = PromotionWatch(self.incident, until=at + watch_ms,
                                        tolerance=min(m.rollback_tolerance for m in p.metrics))
            detectors["post_promotion_watch"] = {"status": "watching", "until": at + watch_ms,
                                                 "detector": "robust_z (frozen history)"}
            reasons = [*reasons, f"watching {p.anomaly_metric} p75 for {watch_ms // 60_000} min after promotion"]
            codes = [*codes, ReasonCode.WATCH_STARTED]
        self.last_verdict = Verdict(
            rollout=self.rollout, app=self.app, canary=self.canary, baseline=self.baseline,
            seq=self.seq, verdict=verdict, severity=severity, at=at,
            policy=dict(self.policy_ref),
            reasons=reasons, reason_codes=codes, metrics=evidence,
            data_quality={
                "srm_e": round(_exp(self.srm.log_e), 4) if self.srm_checked else None,
                "canary_share": round(self._share(), 5),
                "expected_share": self.last_expected,
                "late_beacons": self.late_beacons,
                # This window's own (the other figures are cumulative), warm-up included.
                "window_page_views": {"canary": self.window_views[0], "baseline": self.window_views[1]},
                "partitions_complete": True,
                "global_incident_windows": self.incident.flagged if self.incident is not None else 0,
                # Only once there is something to say: verdicts of ordinary traffic stay as they were.
                **({"capped_views": self.capped_views} if self.capped_views else {}),
                **({"few_sessions_windows": self.crowded_windows} if self.crowded_windows else {}),
            },
            detectors=detectors,
            inputs={"windows": [self.windows[0], at] if self.windows else [], "elapsed_ms": elapsed},
        )
        return self.last_verdict

    def _share(self) -> float:
        total = self.page_views["canary"] + self.page_views["baseline"]
        return self.page_views["canary"] / total if total else 0.0

    def _evidence(self, test: _MetricTest) -> MetricEvidence:
        m, p = test.metric, self.policy
        log_rb = math.log(1 / p.rollback_alpha(m))
        log_pr = math.log(1 / p.alpha_promote)
        rb = test.e.log_e_max[: test.rows]
        pr = test.e.log_e_max[test.rows :]
        worse_by = max((float(d) for d, e in zip(test.grid, rb) if e >= log_rb), default=None)
        not_worse = min((float(d) for d, e in zip(test.grid, pr) if e >= log_pr and d > 0), default=None)
        canary, baseline = test.estimates()
        ratio = canary / baseline if baseline and not math.isnan(baseline) and baseline > 0 else None
        e_rb = test.log_e_rollback(m.rollback_tolerance)
        e_zero = test.log_e_rollback(0.0)
        strict = e_rb >= log_rb
        fast = (p.fast_path and e_zero >= log_rb and ratio is not None
                and ratio >= 1 + m.rollback_tolerance)
        name = m.label + ("" if test.segment == "all" else f" ({test.segment})")
        if strict or fast:
            status = MetricStatus.WORSE
        elif not test.enough_data():
            status = MetricStatus.INSUFFICIENT
        elif test.log_e_promote(m.promote_tolerance) >= log_pr:
            status = MetricStatus.NOT_WORSE
        else:
            status = MetricStatus.INCONCLUSIVE
        severity = Severity.NONE
        reason = None
        if status == MetricStatus.WORSE:
            proven = worse_by or 0.0
            severity = next((s for cut, s in _SEVERITY if proven >= cut), Severity.MINOR)
            if strict:
                reason = (f"{name} worse by ≥ {proven:.0%} (e = {_exp(e_rb):.3g} ≥ {math.exp(log_rb):.3g})")
            else:
                reason = (f"{name} worse (e = {_exp(e_zero):.3g} ≥ {math.exp(log_rb):.3g}) and measured "
                          f"{ratio - 1:+.1%}, beyond the {m.rollback_tolerance:.0%} tolerance")
        return MetricEvidence(
            metric=m.metric, statistic=m.statistic, segment=test.segment, name=name,
            canary=_round(canary), baseline=_round(baseline), ratio=_round(ratio, 4),
            worse_by_at_least=worse_by, not_worse_than=not_worse,
            e_rollback=_round(_exp(e_rb), 4),
            e_worse=_round(_exp(e_zero), 4),
            e_promote=_round(_exp(test.log_e_promote(m.promote_tolerance)), 4),
            threshold_rollback=_round(math.exp(log_rb), 4), threshold_promote=_round(math.exp(log_pr), 4),
            n_canary=int(test.exposure_c), n_baseline=int(test.exposure_b),
            status=status, severity=severity, reason=reason,
            window_canary=_round(test.window[0]), window_baseline=_round(test.window[1]),
        )


def _round(x: float | None, digits: int = 6) -> float | None:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    return float(f"{x:.{digits}g}")


def _exp(log_e: float) -> float:
    """An e-value from its log, capped near the largest float: overwhelming evidence (a
    sample ratio wildly off, a canary that always fails) must be reported, not overflow."""
    return math.exp(min(log_e, 700.0))
