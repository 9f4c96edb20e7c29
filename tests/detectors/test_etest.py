"""The e-processes: exact arithmetic on small cases, and Ville's guarantee over seeded runs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from detectors.etest import THETAS, ConditionalBinomialE, SampleRatioE


def test_one_look_matches_the_binomial_likelihood_ratio_by_hand():
    e = ConditionalBinomialE([1.0])
    e.update(3, 7, 0.25)
    pi0 = 0.25
    lrs = []
    for th in THETAS:
        pi1 = 0.25 * th / (0.25 * th + 0.75)
        lrs.append((pi1 / pi0) ** 3 * ((1 - pi1) / (1 - pi0)) ** 7)
    assert math.isclose(float(np.exp(e.log_e[0])), float(np.mean(lrs)), rel_tol=1e-12)


def test_direction_minus_one_uses_inverted_alternatives():
    e = ConditionalBinomialE([1.2], [-1])
    assert np.allclose(e.alternatives[0], 1.2 / THETAS)


@pytest.mark.parametrize("rho", [0.0, 1.0, -0.1, 1.5], ids=["zero", "one", "negative", "above-one"])
def test_a_look_without_exposure_on_one_side_changes_nothing(rho):
    e = ConditionalBinomialE([1.0, 1.0], [1, -1])
    e.update(5, 5, rho)
    assert e.looks == 0 and np.all(e.log_e == 0)


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="direction"):
        ConditionalBinomialE([1.0], [0])
    with pytest.raises(ValueError, match="theta0"):
        ConditionalBinomialE([0.0])


@pytest.mark.parametrize(
    "rho_of_t, theta0",
    [
        (lambda t: 0.05, 1.0),  # constant 5 % split
        (lambda t: 0.01 + 0.09 * t / 300, 1.0),  # progressive ramp 1 % -> 10 %
        (lambda t: 0.05, 1.2),  # a tolerance: the null is "at most 20 % worse"
    ],
    ids=["constant", "ramp", "tolerance"],
)
def test_ville_false_alarm_rate_is_at_most_alpha_under_continuous_monitoring(rho_of_t, theta0):
    rng = np.random.default_rng(20261123)
    runs, alpha = 2000, 0.05
    # Each run (a row) uses its own look's observed exposure share, as the gate does.
    e = ConditionalBinomialE(np.full(runs, theta0))
    for t in range(300):
        rho = rho_of_t(t)
        v_c = rng.poisson(500 * rho, runs)
        v_b = rng.poisson(500 * (1 - rho), runs)
        rate = 0.25 * (1 + 0.5 * np.sin(t / 20))
        k_c = rng.binomial(v_c, min(rate * theta0, 1.0))
        k_b = rng.binomial(v_b, rate)
        _update_per_run(e, k_c, k_b, v_c / np.maximum(v_c + v_b, 1))
    false_alarms = np.mean(e.log_e_max >= math.log(1 / alpha))
    # Ville: <= alpha; 2000 runs give a binomial s.e. of 0.5 pp, so allow 1.5 pp of noise.
    assert false_alarms <= alpha + 0.015, false_alarms


def _update_per_run(e: ConditionalBinomialE, k_c, k_b, rho) -> None:
    """Rows are runs here, each with its own observed split: the same formula, vectorised."""
    informative = ((rho > 0) & (rho < 1))[:, None]  # like the class: no exposure, no update
    rho = np.clip(rho, 1e-9, 1 - 1e-9)
    odds = (rho / (1 - rho))[:, None]
    pi0 = odds * e.theta0[:, None] / (1 + odds * e.theta0[:, None])
    pi1 = odds * e.alternatives / (1 + odds * e.alternatives)
    step = k_c[:, None] * np.log(pi1 / pi0) + k_b[:, None] * np.log((1 - pi1) / (1 - pi0))
    e.log_lr += np.where(informative, step, 0.0)
    assert np.all(np.isfinite(e.log_lr))
    np.maximum(e.log_e_max, e.log_e, out=e.log_e_max)


def test_per_run_update_helper_agrees_with_the_class():
    rng = np.random.default_rng(5)
    a = ConditionalBinomialE(np.ones(3))
    b = [ConditionalBinomialE([1.0]) for _ in range(3)]
    for _ in range(20):
        k_c, k_b = rng.poisson(3, 3), rng.poisson(40, 3)
        rho = rng.uniform(0.03, 0.2, 3)
        _update_per_run(a, k_c, k_b, rho)
        for i in range(3):
            b[i].update(k_c[i], k_b[i], rho[i])
    assert np.allclose(a.log_e_max, [x.log_e_max[0] for x in b])


def test_a_real_difference_is_detected():
    rng = np.random.default_rng(1)
    e = ConditionalBinomialE([1.0, 1.0], [1, -1])
    for _ in range(200):
        v_c, v_b = rng.poisson(25), rng.poisson(475)
        e.update(rng.binomial(v_c, 0.25 * 1.5), rng.binomial(v_b, 0.25), v_c / (v_c + v_b))
    assert e.log_e_max[0] >= math.log(100)  # "canary worse" proven
    assert e.log_e_max[1] < math.log(20)  # "canary better" not


def test_sample_ratio_e_stays_small_when_the_split_is_as_configured():
    rng = np.random.default_rng(3)
    crossed = 0
    for _ in range(200):
        srm = SampleRatioE()
        for _ in range(120):
            n = rng.poisson(500)
            c = rng.binomial(n, 0.05)
            srm.update(c, n - c, 0.05)
        crossed += srm.log_e_max >= math.log(1000)
    assert crossed <= 2  # alpha_srm = 0.001: expect 0 of 200


def test_sample_ratio_e_catches_a_canary_that_sends_too_few_beacons():
    srm = SampleRatioE()
    rng = np.random.default_rng(4)
    for _ in range(120):
        n = rng.poisson(500)
        c = rng.binomial(n, 0.035)  # 30 % of the canary's beacons lost
        srm.update(c, n - c, 0.05)
    assert srm.log_e_max >= math.log(1000)
