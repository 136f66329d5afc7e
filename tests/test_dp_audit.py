"""Tests of miaudit.audit.dp: golden values, agreement with scipy/Opacus, statistical validity."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special, stats

from miaudit.audit import dp
from miaudit.exceptions import ValidationError
from miaudit.metrics import epsilon_lower_bound

# ------------------------------------------------------------------ one run: golden values
# Golden values computed independently of this code (research notes, Steinke et al. 2023
# Algorithm 1, p = 0.05).
ONE_RUN_GOLDEN = [
    # (m, r, v, delta, epsilon)
    (1000, 1000, 1000, 0.0, 5.81),
    (1000, 1000, 1000, 1e-5, 5.78),
    (1000, 100, 100, 0.0, 3.49),
    (1000, 100, 100, 1e-5, 3.47),
    (1000, 100, 90, 1e-5, 1.63),
    (10000, 10000, 10000, 0.0, 8.11),
    (10000, 10000, 10000, 1e-5, 7.83),
]


@pytest.mark.parametrize(("m", "r", "v", "delta", "expected"), ONE_RUN_GOLDEN)
def test_one_run_epsilon_golden(m, r, v, delta, expected):
    assert dp.one_run_epsilon(m, r, v, delta=delta, p=0.05) == pytest.approx(expected, abs=0.005)


def test_one_run_all_correct_delta_zero_closed_form():
    # r correct of r with delta = 0: p-value q^r, so eps = logit(p^(1/r)) exactly
    r, p = 100, 0.05
    expected = special.logit(p ** (1 / r))
    assert dp.one_run_epsilon(1000, r, r, p=p) == pytest.approx(expected, abs=1e-8)


@pytest.mark.parametrize(("r", "v", "eps"), [(100, 70, 0.5), (1000, 990, 4.0), (50, 0, 1.0)])
def test_one_run_p_value_is_binomial_sf_at_delta_zero(r, v, eps):
    q = math.exp(eps) / (1 + math.exp(eps))
    assert dp.one_run_p_value(1000, r, v, eps) == pytest.approx(
        stats.binom.sf(v - 1, r, q), rel=1e-12
    )


def test_one_run_p_value_delta_term_matches_direct_recursion():
    # the paper's loop, written out term by term
    m, r, v, eps, delta = 500, 80, 70, 1.0, 1e-4
    q = math.exp(eps) / (1 + math.exp(eps))
    beta = stats.binom.sf(v - 1, r, q)
    alpha, total = 0.0, 0.0
    for i in range(1, v + 1):
        total += stats.binom.pmf(v - i, r, q)
        alpha = max(alpha, total / i)
    expected = min(1.0, beta + alpha * delta * 2 * m)
    assert dp.one_run_p_value(m, r, v, eps, delta) == pytest.approx(expected, rel=1e-10)
    assert dp.one_run_p_value(m, r, v, eps, delta) > dp.one_run_p_value(m, r, v, eps)


def test_one_run_p_value_at_the_bound_equals_p():
    eps = dp.one_run_epsilon(1000, 100, 90, delta=1e-5, p=0.05)
    assert dp.one_run_p_value(1000, 100, 90, eps, 1e-5) == pytest.approx(0.05, abs=1e-6)


def test_one_run_epsilon_zero_when_nothing_is_shown():
    assert dp.one_run_epsilon(100, 10, 5) == 0.0
    assert dp.one_run_epsilon(100, 0, 0) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"m": 10, "r": 11, "v": 0}, "r:"),
        ({"m": 10, "r": 5, "v": 6}, "v:"),
        ({"m": 0, "r": 0, "v": 0}, "m:"),
        ({"m": 10, "r": 5, "v": 2.5}, "v:"),
        ({"m": 10, "r": 5, "v": 2, "delta": 1.0}, "delta:"),
        ({"m": 10, "r": 5, "v": 2, "p": 0.0}, "p:"),
    ],
)
def test_one_run_epsilon_bad_input(kwargs, field):
    with pytest.raises(ValidationError, match=field):
        dp.one_run_epsilon(**kwargs)


def test_one_run_p_value_bad_eps():
    with pytest.raises(ValidationError, match="eps:"):
        dp.one_run_p_value(10, 5, 2, -1.0)


# ----------------------------------------------------------------- one run: from scores
def _randomized_response(m: int, eps: float, rng: np.random.Generator):
    """Canaries of an eps-DP mechanism: the score is the coin, flipped w.p. 1/(1+e^eps)."""
    coins = rng.random(m) < 0.5
    flip = rng.random(m) < 1 / (1 + math.exp(eps))
    scores = np.where(coins ^ flip, 1.0, 0.0) + 1e-3 * rng.standard_normal(m)
    return scores, coins


def test_one_run_audit_given_counts_match_manual_guesses():
    scores = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.0])
    member = np.array([1, 1, 0, 1, 0, 0], bool)
    res = dp.one_run_audit(scores, member, selection="given", k_plus=2, k_minus=2)
    assert (res.r, res.v, res.m) == (4, 4, 6)
    assert res.epsilon == pytest.approx(dp.one_run_epsilon(6, 4, 4))
    res = dp.one_run_audit(scores, member, selection="given", k_plus=4, k_minus=0)
    assert (res.r, res.v) == (4, 3)


def test_one_run_audit_bonferroni_pays_for_candidates():
    rng = np.random.default_rng(1)
    scores, coins = _randomized_response(2000, 2.0, rng)
    res = dp.one_run_audit(scores, coins, selection="bonferroni", rng=0)
    assert res.selection == "bonferroni"
    assert res.n_candidates == len(dp._default_candidates(2000))
    # the bound is the bound of the chosen pair at p / n_candidates
    assert res.epsilon == pytest.approx(
        dp.one_run_epsilon(res.m, res.r, res.v, p=0.05 / res.n_candidates)
    )
    assert 0.5 < res.epsilon <= 2.0


def test_one_run_audit_split_uses_only_evaluation_canaries():
    rng = np.random.default_rng(2)
    scores, coins = _randomized_response(2000, 2.0, rng)
    res = dp.one_run_audit(scores, coins, selection="split", rng=0)
    assert res.selection == "split"
    assert res.m == 1000
    assert res.epsilon == pytest.approx(dp.one_run_epsilon(res.m, res.r, res.v))
    assert 0.3 < res.epsilon <= 2.0


def test_one_run_audit_is_valid_for_randomized_response():
    # an eps-DP mechanism: the bound exceeds eps in at most about p of the audits
    true_eps, trials, exceed = 1.0, 40, 0
    for seed in range(trials):
        rng = np.random.default_rng(seed)
        scores, coins = _randomized_response(300, true_eps, rng)
        exceed += dp.one_run_audit(scores, coins, p=0.05, rng=seed).epsilon > true_eps
    # Binomial(40, <=0.05): P[>= 6] < 0.02
    assert exceed < 6


def test_one_run_audit_null_scores_give_small_bounds():
    rng = np.random.default_rng(3)
    bounds = [
        dp.one_run_audit(rng.standard_normal(300), rng.random(300) < 0.5, rng=s).epsilon
        for s in range(40)
    ]
    assert np.mean(np.asarray(bounds) > 0) <= 0.15


def test_one_run_audit_ties_do_not_leak_the_input_order():
    # every score tied: guesses must not follow the (members-first) input order
    m = 400
    member = np.r_[np.ones(m // 2, bool), np.zeros(m // 2, bool)]
    res = dp.one_run_audit(np.zeros(m), member, selection="given", k_plus=100, k_minus=0)
    assert res.epsilon < 0.5


def test_one_run_audit_nan_scores_counted():
    scores = np.r_[np.nan, np.linspace(0, 1, 99)]
    res = dp.one_run_audit(scores, np.arange(100) % 2 == 0)
    assert res.n_nan == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"selection": "given"}, "k_plus, k_minus"),
        ({"selection": "given", "k_plus": 90, "k_minus": 20}, "k_plus, k_minus"),
        ({"selection": "given", "k_plus": -1, "k_minus": 2}, "k_plus"),
        ({"selection": "best"}, "selection:"),
        ({"k_plus": 3}, "k_plus, k_minus"),
        ({"candidates": [(60, 60)]}, r"candidates\[0\]"),
        ({"candidates": [(0, 0)]}, r"candidates\[0\]"),
        ({"candidates": []}, "candidates:"),
        ({"selection": "split", "calibration_fraction": 1.5}, "calibration_fraction:"),
        ({"rng": None}, "rng:"),
    ],
)
def test_one_run_audit_bad_input(kwargs, field):
    rng = np.random.default_rng(0)
    with pytest.raises(ValidationError, match=field):
        dp.one_run_audit(rng.standard_normal(100), rng.random(100) < 0.5, **kwargs)


def test_one_run_audit_length_mismatch():
    with pytest.raises(ValidationError, match="inconsistent lengths"):
        dp.one_run_audit(np.zeros(10), np.zeros(9, bool))


# ---------------------------------------------------------------- multi-run canary audit
# Golden values (research notes, computed independently): 1000 trials per side,
# alpha = 0.01, delta = 1e-5; counts of IN and OUT trials above the threshold.
CANARY_GOLDEN = [(1000, 0, 5.24), (900, 10, 3.71), (500, 50, 1.87)]


@pytest.mark.parametrize(("ct_in", "ct_out", "expected"), CANARY_GOLDEN)
def test_canary_audit_golden_with_fixed_threshold(ct_in, ct_out, expected):
    scores_in = np.r_[np.ones(ct_in), np.zeros(1000 - ct_in)]
    scores_out = np.r_[np.ones(ct_out), np.zeros(1000 - ct_out)]
    res = dp.canary_audit(scores_in, scores_out, delta=1e-5, alpha=0.01, threshold=0.5)
    assert res.epsilon == pytest.approx(expected, abs=0.005)
    assert res.selection == "given"


def test_canary_audit_split_evaluates_on_held_out_trials():
    rng = np.random.default_rng(0)
    res = dp.canary_audit(rng.normal(3, 1, 400), rng.normal(0, 1, 400), delta=1e-5, rng=0)
    assert res.selection == "split"
    assert res.tp + res.fn == 200 and res.fp + res.tn == 200
    assert res.epsilon == pytest.approx(
        epsilon_lower_bound(res.tp, res.fn, res.fp, res.tn, delta=1e-5)
    )
    assert res.epsilon > 1.0


def test_canary_audit_bad_input():
    with pytest.raises(ValidationError, match="scores_in"):
        dp.canary_audit([], [1.0, 2.0])
    with pytest.raises(ValidationError, match="scores_out"):
        dp.canary_audit([1.0], [[1.0]])


# ------------------------------------------------------------- attack scores, one model
def test_split_bound_is_valid_and_optimistic_is_not_smaller():
    rng = np.random.default_rng(0)
    member = rng.random(2000) < 0.5
    scores = rng.standard_normal(2000) + member
    split = dp.epsilon_lower_bound_split(scores, member, delta=1e-5, rng=0)
    opt = dp.epsilon_lower_bound_optimistic(scores, member, delta=1e-5)
    assert split.selection == "split" and opt.selection == "best_on_same_data"
    assert split.tp + split.fn + split.fp + split.tn == pytest.approx(1000, abs=1)
    assert opt.epsilon >= split.epsilon > 0


def test_split_bound_on_null_scores_rarely_positive():
    positives = 0
    for seed in range(30):
        rng = np.random.default_rng(seed)
        member = rng.random(400) < 0.5
        positives += dp.epsilon_lower_bound_split(rng.random(400), member, rng=seed).epsilon > 0
    assert positives <= 5  # at most ~alpha of them, with slack


def test_split_bound_bad_input():
    with pytest.raises(ValidationError, match="is_member"):
        dp.epsilon_lower_bound_split(np.zeros(10), np.ones(10, bool))


# ---------------------------------------------------------------------------- Gaussian DP
@pytest.mark.parametrize("mu", [0.3, 1.0, 2.0, 5.0])
@pytest.mark.parametrize("delta", [1e-5, 1e-3])
def test_gdp_epsilon_matches_opacus(mu, delta):
    from opacus.accountants.analysis.gdp import eps_from_mu

    assert dp.gdp_epsilon(mu, delta) == pytest.approx(eps_from_mu(mu=mu, delta=delta), abs=1e-7)


def test_gdp_delta_inverts_epsilon():
    for mu in (0.5, 1.0, 3.0):
        assert dp.gdp_delta(mu, dp.gdp_epsilon(mu, 1e-5)) == pytest.approx(1e-5, rel=1e-6)
    # delta(0) = 2 Phi(mu/2) - 1: a larger delta needs no epsilon
    assert dp.gdp_epsilon(1.0, 2 * stats.norm.cdf(0.5) - 1 + 1e-3) == 0.0
    assert dp.gdp_epsilon(0.0, 1e-5) == 0.0


def test_gdp_mu_lower_bound_formula():
    tp, fn, fp, tn, alpha = 950, 50, 100, 900, 0.05
    fpr_hi = stats.beta.ppf(1 - alpha / 2, fp + 1, tn)
    fnr_hi = stats.beta.ppf(1 - alpha / 2, fn + 1, tp)
    expected = stats.norm.ppf(1 - fpr_hi) - stats.norm.ppf(fnr_hi)
    assert dp.gdp_mu_lower_bound(tp, fn, fp, tn, alpha) == pytest.approx(expected, rel=1e-9)
    # a useless test shows nothing
    assert dp.gdp_mu_lower_bound(500, 500, 500, 500) == 0.0


def test_gdp_audit_recovers_gaussian_mu_from_below():
    # scores of a mu-GDP pair of Gaussians: the bound is below mu and not far from it
    rng = np.random.default_rng(0)
    mu = 2.0
    for selection in ("bonferroni", "split"):
        res = dp.gdp_audit(
            rng.normal(mu, 1, 2000), rng.normal(0, 1, 2000), delta=1e-5, selection=selection
        )
        assert 1.4 < res.mu < mu
        assert res.epsilon == pytest.approx(dp.gdp_epsilon(res.mu, 1e-5))
    assert res.selection == "split"


def test_gdp_audit_bonferroni_is_valid_under_gaussian_mechanism():
    exceed = 0
    for seed in range(30):
        rng = np.random.default_rng(seed)
        exceed += dp.gdp_audit(rng.normal(1, 1, 300), rng.normal(0, 1, 300), delta=1e-5).mu > 1
    assert exceed <= 4


def test_gdp_audit_bad_input():
    with pytest.raises(ValidationError, match="delta:"):
        dp.gdp_audit([1.0, 2.0], [0.0, 0.5], delta=0.0)
    with pytest.raises(ValidationError, match="threshold:"):
        dp.gdp_audit([1.0, 2.0], [0.0, 0.5], delta=1e-5, selection="given")
    with pytest.raises(ValidationError, match="scores_in"):
        dp.gdp_audit([1.0], [0.0, 0.5], delta=1e-5, selection="split")
    with pytest.raises(ValidationError, match="mu:"):
        dp.gdp_epsilon(-1.0, 1e-5)
