"""Tests of miaudit.metrics against scikit-learn, scipy, brute-force loops and published values."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from miaudit import metrics as M
from miaudit.exceptions import ValidationError


def _tied_data(seed: int, n: int = 600, n_levels: int = 25) -> tuple[np.ndarray, np.ndarray]:
    """Random scores with many ties and a weak membership signal."""
    rng = np.random.default_rng(seed)
    is_member = rng.random(n) < 0.4
    scores = rng.integers(0, n_levels, n).astype(float) + 3.0 * is_member * (rng.random(n) < 0.3)
    return scores, is_member


def _brute_rates(scores: np.ndarray, is_member: np.ndarray) -> list[tuple[float, float, float]]:
    """(threshold, fpr, tpr) for +inf and every distinct score, by direct counting."""
    out = []
    for t in [math.inf, *sorted(set(scores.tolist()), reverse=True)]:
        pred = scores >= t
        out.append((t, pred[~is_member].mean(), pred[is_member].mean()))
    return out


# --------------------------------------------------------------------------------- ROC, AUC
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_curve_matches_sklearn_with_ties(seed):
    scores, is_member = _tied_data(seed)
    fpr, tpr, thr = M.roc_curve(scores, is_member)
    sk_fpr, sk_tpr, sk_thr = skm.roc_curve(is_member, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr, rtol=0, atol=1e-15)
    np.testing.assert_allclose(tpr, sk_tpr, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(thr, sk_thr)
    assert M.auc(scores, is_member) == pytest.approx(
        skm.roc_auc_score(is_member, scores), abs=1e-12
    )


def test_roc_curve_continuous_scores_match_sklearn():
    rng = np.random.default_rng(5)
    is_member = rng.random(2000) < 0.5
    scores = rng.normal(size=2000) + 0.7 * is_member
    fpr, tpr, _ = M.roc_curve(scores, is_member)
    sk_fpr, sk_tpr, _ = skm.roc_curve(is_member, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr, atol=1e-15)
    np.testing.assert_allclose(tpr, sk_tpr, atol=1e-15)
    assert fpr.size == 2001  # one point per distinct score plus the origin
    assert M.auc(scores, is_member) == pytest.approx(
        skm.roc_auc_score(is_member, scores), abs=1e-12
    )


def test_roc_curve_equals_brute_force_counts():
    scores, is_member = _tied_data(3, n=200, n_levels=10)
    fpr, tpr, thr = M.roc_curve(scores, is_member)
    brute = _brute_rates(scores, is_member)
    np.testing.assert_array_equal(thr, [b[0] for b in brute])
    np.testing.assert_allclose(fpr, [b[1] for b in brute], atol=1e-15)
    np.testing.assert_allclose(tpr, [b[2] for b in brute], atol=1e-15)


def test_auc_equals_mann_whitney_pair_count():
    scores, is_member = _tied_data(4, n=150, n_levels=6)
    pos, neg = scores[is_member], scores[~is_member]
    pairs = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    assert M.auc(scores, is_member) == pytest.approx(pairs.mean(), abs=1e-12)


def test_auc_direction_and_extremes():
    assert M.auc([3.0, 2.0, 1.0, 0.0], [1, 1, 0, 0]) == 1.0
    assert M.auc([0.0, 1.0, 2.0, 3.0], [1, 1, 0, 0]) == 0.0
    assert M.auc([1.0, 1.0, 1.0, 1.0], [1, 0, 1, 0]) == 0.5


# ------------------------------------------------------------ balanced accuracy, advantage
@pytest.mark.parametrize("seed", [0, 7])
def test_advantage_and_balanced_accuracy_brute_force(seed):
    scores, is_member = _tied_data(seed, n=300, n_levels=12)
    best_adv, best_ba = 0.0, 0.5
    for t in np.unique(scores):
        pred = scores >= t
        tpr, fpr = pred[is_member].mean(), pred[~is_member].mean()
        best_adv = max(best_adv, tpr - fpr)
        best_ba = max(best_ba, (tpr + (1 - fpr)) / 2)
    assert M.advantage(scores, is_member) == pytest.approx(best_adv, abs=1e-12)
    assert M.balanced_accuracy(scores, is_member) == pytest.approx(best_ba, abs=1e-12)


def test_advantage_is_zero_for_a_useless_or_inverted_attack():
    assert M.advantage([0.0, 1.0, 2.0, 3.0], [1, 1, 0, 0]) == 0.0
    assert M.balanced_accuracy([0.0, 1.0, 2.0, 3.0], [1, 1, 0, 0]) == 0.5
    assert M.advantage([3.0, 2.0, 1.0, 0.0], [1, 1, 0, 0]) == 1.0


# -------------------------------------------------------------------------------- TPR@FPR
# Hand case with ties. Sorted by score (desc): 5 m, 5 n | 4 m, 4 m | 3 n | 2 m, 2 n | 1 n
# P = N = 4. Points (FP, TP): inf (0,0); 5 (1,1); 4 (1,3); 3 (2,3); 2 (3,4); 1 (4,4).
TIES_SCORES = [5, 5, 4, 4, 3, 2, 2, 1]
TIES_MEMBER = [1, 0, 1, 1, 0, 1, 0, 0]


def test_tpr_at_fpr_exactly_at_a_step_uses_less_or_equal():
    r = M.tpr_at_fpr(TIES_SCORES, TIES_MEMBER, 0.25)
    # FPR = 1/4 is admissible (<=): the best threshold with one false positive is 4 → TPR 3/4
    assert (r.tpr, r.fpr, r.threshold) == (0.75, 0.25, 4.0)
    assert (r.tp, r.fn, r.fp, r.tn) == (3, 1, 1, 3)
    assert r.reachable and r.min_reachable_fpr == 0.25


def test_tpr_at_fpr_between_steps_and_ties():
    r = M.tpr_at_fpr(TIES_SCORES, TIES_MEMBER, 0.6)  # FPR 0.5 admissible, 0.75 not
    assert (r.tpr, r.fpr, r.threshold) == (0.75, 0.5, 3.0)
    r = M.tpr_at_fpr(TIES_SCORES, TIES_MEMBER, 0.75)
    assert (r.tpr, r.fpr, r.threshold) == (1.0, 0.75, 2.0)


def test_tpr_at_fpr_below_resolution_reports_fpr_zero():
    # the top member (9) is above every non-member: TPR at FPR 0 is 1/3
    scores, member = [9, 7, 7, 6, 5, 3], [1, 1, 0, 1, 0, 0]
    r = M.tpr_at_fpr(scores, member, 0.1)
    assert not r.reachable
    assert r.min_reachable_fpr == pytest.approx(1 / 3)
    assert (r.tpr, r.fpr, r.threshold, r.tp, r.fp) == (pytest.approx(1 / 3), 0.0, 9.0, 1, 0)
    r = M.tpr_at_fpr(scores, member, 1 / 3)
    assert r.reachable and (r.tpr, r.threshold) == (1.0, 6.0)


def test_tpr_at_fpr_below_resolution_with_a_tie_at_the_top():
    r = M.tpr_at_fpr(TIES_SCORES, TIES_MEMBER, 0.2)  # 5 is shared by a member and a non-member
    assert (r.tpr, r.fpr, r.threshold, r.reachable) == (0.0, 0.0, math.inf, False)


def test_tpr_at_fpr_decimal_target_at_exact_multiple():
    # 29 false positives among 100 non-members: 29/100 must count as <= 0.29
    member = np.r_[np.ones(100, bool), np.zeros(100, bool)]
    scores = np.r_[np.arange(100) + 0.5, np.arange(100)]  # member i beats non-members <= i
    r = M.tpr_at_fpr(scores, member, 0.29)
    assert r.fp == 29 and r.fpr == 0.29
    brute = max(t for _, f, t in _brute_rates(scores, member) if f <= 0.29)
    assert r.tpr == brute


@pytest.mark.parametrize("target", [0.001, 0.01, 0.05, 0.1, 0.3])
def test_tpr_at_fpr_brute_force(target):
    scores, is_member = _tied_data(11, n=500, n_levels=40)
    r = M.tpr_at_fpr(scores, is_member, target)
    brute = max(t for _, f, t in _brute_rates(scores, is_member) if f <= target)
    assert r.tpr == pytest.approx(brute, abs=1e-15)
    pred = scores >= r.threshold
    assert r.tp == int(np.sum(pred & is_member)) and r.fp == int(np.sum(pred & ~is_member))
    assert r.fpr <= target


def test_tpr_at_fpr_intervals_are_clopper_pearson_of_the_counts():
    scores, is_member = _tied_data(12)
    r = M.tpr_at_fpr(scores, is_member, 0.05, alpha=0.1)
    assert r.tpr_interval == M.clopper_pearson(r.tp, r.tp + r.fn, 0.1)
    assert r.fpr_interval == M.clopper_pearson(r.fp, r.fp + r.tn, 0.1)
    assert r.tpr_interval[0] <= r.tpr <= r.tpr_interval[1]


# --------------------------------------------------------------------------- Clopper–Pearson
@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (5, 10), (10, 10), (1, 1000), (999, 1000)])
@pytest.mark.parametrize("alpha", [0.05, 0.01])
def test_clopper_pearson_matches_beta_quantiles(k, n, alpha):
    lo, hi = M.clopper_pearson(k, n, alpha)
    want_lo = 0.0 if k == 0 else stats.beta.ppf(alpha / 2, k, n - k + 1)
    want_hi = 1.0 if k == n else stats.beta.ppf(1 - alpha / 2, k + 1, n - k)
    assert lo == pytest.approx(want_lo, rel=1e-10, abs=1e-15)
    assert hi == pytest.approx(want_hi, rel=1e-10, abs=1e-15)


def test_clopper_pearson_known_values():
    # R: binom.test(3, 10)$conf.int and binom.test(5, 10)$conf.int
    assert M.clopper_pearson(3, 10) == pytest.approx((0.06673951, 0.65245285), abs=1e-8)
    assert M.clopper_pearson(5, 10) == pytest.approx((0.18708603, 0.81291397), abs=1e-8)
    # k = 0: the "rule of three" region, hi = 1 - (alpha/2)^(1/n)
    assert M.clopper_pearson(0, 10) == (0.0, pytest.approx(1 - 0.025 ** (1 / 10), abs=1e-12))


# --------------------------------------------------------------------------------- epsilon
@pytest.mark.parametrize(("tp", "fp", "want"), [(1000, 0, 5.24), (900, 10, 3.71), (500, 50, 1.87)])
def test_epsilon_lower_bound_golden_values(tp, fp, want):
    eps = M.epsilon_lower_bound(tp, 1000 - tp, fp, 1000 - fp, delta=1e-5, alpha=0.01)
    assert eps == pytest.approx(want, abs=0.005)


def test_epsilon_lower_bound_perfect_test_closed_form():
    # TPR_lo = (a/2)^(1/k), FPR_hi = 1 - (a/2)^(1/k) for a perfect test on k trials per side
    k, alpha = 400, 0.05
    lo = (alpha / 2) ** (1 / k)
    assert M.epsilon_lower_bound(k, 0, 0, k, alpha=alpha) == pytest.approx(
        math.log(lo / (1 - lo)), rel=1e-9
    )


def test_epsilon_lower_bound_uses_the_better_of_both_tests():
    # few false negatives, many false positives: the TNR/FNR term is the one that shows leakage
    eps = M.epsilon_lower_bound(tp=995, fn=5, fp=500, tn=500, alpha=0.05)
    level = 0.025
    tnr_lo = stats.beta.ppf(level, 500, 501)
    fnr_hi = stats.beta.ppf(1 - level, 6, 995)
    assert eps == pytest.approx(math.log(tnr_lo / fnr_hi), rel=1e-9)


def test_epsilon_lower_bound_is_zero_when_nothing_is_shown():
    assert M.epsilon_lower_bound(500, 500, 500, 500) == 0.0
    assert M.epsilon_lower_bound(0, 10, 10, 0) == 0.0  # inverted test, also nothing
    assert M.epsilon_lower_bound(1, 0, 0, 1, delta=0.5) == 0.0  # delta above TPR_lo


def test_epsilon_from_scores_best_threshold_equals_loop():
    scores, is_member = _tied_data(21, n=400, n_levels=15)
    got = M.epsilon_lower_bound_from_scores(scores, is_member, delta=1e-5, alpha=0.05)
    best = 0.0
    for t, _, _ in _brute_rates(scores, is_member):
        pred = scores >= t
        tp, fp = int(np.sum(pred & is_member)), int(np.sum(pred & ~is_member))
        eps = M.epsilon_lower_bound(
            tp, int(is_member.sum()) - tp, fp, int((~is_member).sum()) - fp, 1e-5, 0.05
        )
        best = max(best, eps)
    assert got.epsilon == pytest.approx(best, rel=1e-12)
    assert got.selection == "best_on_same_data"
    assert got.epsilon == pytest.approx(
        M.epsilon_lower_bound(got.tp, got.fn, got.fp, got.tn, 1e-5, 0.05), rel=1e-12
    )


def test_epsilon_from_scores_fixed_threshold_and_split():
    rng = np.random.default_rng(3)
    is_member = rng.random(2000) < 0.5
    scores = rng.normal(size=2000) + 3.0 * is_member
    given = M.epsilon_lower_bound_from_scores(scores, is_member, threshold=1.5)
    pred = scores >= 1.5
    assert (given.tp, given.fp) == (int(np.sum(pred & is_member)), int(np.sum(pred & ~is_member)))
    assert given.tp + given.fn + given.fp + given.tn == 2000 and given.selection == "given"

    split = M.epsilon_lower_bound_from_scores(
        scores, is_member, calibration_fraction=0.5, rng=np.random.default_rng(9)
    )
    assert split.selection == "split"
    assert split.tp + split.fn + split.fp + split.tn == 1000  # evaluated on the other half
    assert split.epsilon == pytest.approx(
        M.epsilon_lower_bound(split.tp, split.fn, split.fp, split.tn, 0.0, 0.05)
    )
    same = M.epsilon_lower_bound_from_scores(scores, is_member)
    assert 0 < split.epsilon <= same.epsilon  # fewer trials, no selection bias: smaller


# ----------------------------------------------------------------------------- AUC interval
def test_resampled_aucs_are_exact_with_ties():
    rng = np.random.default_rng(0)
    pos = rng.integers(0, 6, 40).astype(float)
    neg = np.sort(rng.integers(0, 6, 30).astype(float))
    d, c = M._draw_counts(rng, 5, 40), M._draw_counts(rng, 5, 30)
    assert (d.sum(axis=1) == 40).all() and (c.sum(axis=1) == 30).all()
    got = M._resampled_aucs(pos, neg, d, c)
    for b in range(5):
        y = np.r_[np.ones(40), np.zeros(30)]
        s = np.r_[np.repeat(pos, d[b]), np.repeat(neg, c[b])]
        assert got[b] == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)


def test_auc_interval_seeded_and_matches_delong_width():
    rng = np.random.default_rng(1)
    is_member = rng.random(1000) < 0.5
    scores = rng.normal(size=1000) + 0.8 * is_member
    lo, hi = M.auc_interval(scores, is_member, n_bootstrap=2000, rng=42)
    assert (lo, hi) == M.auc_interval(scores, is_member, n_bootstrap=2000, rng=42)
    assert (lo, hi) == M.auc_interval(
        scores, is_member, n_bootstrap=2000, rng=np.random.default_rng(42)
    )
    # DeLong: var = var(placements of members)/P + var(placements of non-members)/N
    pos, neg = scores[is_member], scores[~is_member]
    v10 = (pos[:, None] > neg[None, :]).mean(axis=1)
    v01 = (pos[:, None] > neg[None, :]).mean(axis=0)
    se = math.sqrt(v10.var(ddof=1) / pos.size + v01.var(ddof=1) / neg.size)
    width_se = (hi - lo) / (2 * stats.norm.ppf(0.975))
    assert width_se == pytest.approx(se, rel=0.1)
    assert lo < M.auc(scores, is_member) < hi


# -------------------------------------------------------------------------------- summarize
def test_summarize_is_consistent_with_the_single_metrics():
    scores, is_member = _tied_data(8, n=3000, n_levels=300)
    fprs = (0.1, 0.01, 0.001, 1e-5)
    s = M.summarize(scores, is_member, fprs, alpha=0.1, delta=1e-4, n_bootstrap=200, rng=4)
    assert (s.n_members, s.n_non_members, s.n_nan) == (
        int(is_member.sum()),
        int((~is_member).sum()),
        0,
    )
    assert s.auc == M.auc(scores, is_member)
    assert s.auc_interval == M.auc_interval(scores, is_member, n_bootstrap=200, alpha=0.1, rng=4)
    assert s.advantage == M.advantage(scores, is_member)
    assert s.balanced_accuracy == M.balanced_accuracy(scores, is_member)
    assert s.tpr_at_fpr == tuple(M.tpr_at_fpr(scores, is_member, f, alpha=0.1) for f in fprs)
    # The default epsilon is the valid split: chosen on a stratified half, bound on the rest.
    assert s.epsilon.selection == "split"
    e = s.epsilon
    n_in, n_out = int(is_member.sum()), int((~is_member).sum())
    assert (e.tp + e.fn, e.fp + e.tn) == (n_in - round(n_in / 2), n_out - round(n_out / 2))
    optimistic = M.summarize(
        scores, is_member, fprs, alpha=0.1, delta=1e-4, n_bootstrap=200, rng=4,
        epsilon_selection="best_on_same_data",
    )
    assert optimistic.epsilon == M.epsilon_lower_bound_from_scores(
        scores, is_member, delta=1e-4, alpha=0.1
    )
    assert optimistic.auc_interval == s.auc_interval  # the split does not disturb the bootstrap
    assert s.at(0.001).target_fpr == 0.001
    assert not s.at(1e-5).reachable


def test_summarize_to_dict_is_strict_json_and_round_trips():
    s = M.summarize([3, 2, 1, 0], [1, 1, 0, 0], (0.1,), n_bootstrap=50)
    d = s.to_dict()
    text = json.dumps(d, allow_nan=False)  # raises on inf / nan floats
    assert d["tpr_at_fpr"][0]["threshold"] == 2.0
    assert M.MetricsSummary.from_dict(json.loads(text)) == s
    inf_case = M.summarize([1, 1, 0, 0], [1, 0, 1, 0], (0.1,), n_bootstrap=10).to_dict()
    assert inf_case["tpr_at_fpr"][0]["threshold"] == "inf"  # no admissible score threshold
    for key, value in d.items():
        assert type(value) in (int, float, str, bool, list, dict), key


def test_nan_scores_are_the_lowest_score_and_counted():
    scores = np.array([3.0, np.nan, 2.0, 1.0, np.nan, 0.0])
    member = np.array([1, 1, 0, 1, 0, 0])
    as_low = np.where(np.isnan(scores), -np.inf, scores)
    s = M.summarize(scores, member, (0.5,), n_bootstrap=20)
    assert s.n_nan == 2
    assert s.auc == M.auc(as_low, member)
    # member NaN ranks below every non-member except the NaN one (tie): 2 of 3 pairs lost,
    # one tied; AUC by pair counting
    pos, neg = as_low[member == 1], as_low[member == 0]
    pairs = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    assert s.auc == pytest.approx(pairs.mean())
    for a, b in zip(M.roc_curve(scores, member), M.roc_curve(as_low, member), strict=True):
        np.testing.assert_array_equal(a, b)


def test_summarize_at_missing_fpr_names_the_computed_ones():
    s = M.summarize([3, 2, 1, 0], [1, 1, 0, 0], (0.1, 0.01), n_bootstrap=5)
    with pytest.raises(
        ValidationError, match=r"no result at target FPR 0.5; computed at 0.1, 0.01"
    ):
        s.at(0.5)
    assert s.find(0.5) is None
    assert s.find(0.01) is s.tpr_at_fpr[1]


# ------------------------------------------------------------------------ validation errors
GOOD_S, GOOD_M = [0.1, 0.2, 0.3, 0.4], [0, 1, 0, 1]


@pytest.mark.parametrize(
    ("scores", "member", "match"),
    [
        ([[0.1, 0.2], [0.3, 0.4]], [0, 1], r"scores: expected an array with 1 dimensions"),
        (["a", "b"], [0, 1], r"scores: expected a numeric array"),
        ([0.1, 0.2], [[0, 1]], r"is_member: expected a 1-d array"),
        ([0.1, 0.2, 0.3], [0, 1, 2], r"is_member: membership must be boolean or 0/1.*\[2\]"),
        ([0.1, 0.2], ["yes", "maybe"], r"is_member: membership must be boolean or 0/1.*maybe"),
        ([0.1, 0.2], [0.0, np.nan], r"is_member: membership contains 1 NaN"),
        ([0.1, 0.2], [0, 0], r"is_member: there are no members"),
        ([0.1, 0.2], [1, 1], r"is_member: there are no non-members"),
        ([], [], r"is_member: there are no members"),
        ([0.1, 0.2, 0.3], [0, 1], r"inconsistent lengths: scores has 3, is_member has 2"),
    ],
)
@pytest.mark.parametrize(
    "fn",
    [
        M.roc_curve,
        M.auc,
        M.advantage,
        M.balanced_accuracy,
        lambda s, m: M.tpr_at_fpr(s, m, 0.1),
        lambda s, m: M.auc_interval(s, m, n_bootstrap=5),
        M.epsilon_lower_bound_from_scores,
        lambda s, m: M.summarize(s, m, n_bootstrap=5),
    ],
)
def test_score_validation_errors(fn, scores, member, match):
    with pytest.raises(ValidationError, match=match):
        fn(scores, member)


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_fpr_out_of_range(bad):
    with pytest.raises(ValidationError, match=r"fpr: expected a value in \(0, 1\)"):
        M.tpr_at_fpr(GOOD_S, GOOD_M, bad)
    with pytest.raises(ValidationError, match=r"fprs\[1\]: expected a value in \(0, 1\)"):
        M.summarize(GOOD_S, GOOD_M, (0.1, bad))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: M.tpr_at_fpr(GOOD_S, GOOD_M, 0.1, alpha=1.0), r"alpha: expected a value in"),
        (lambda: M.summarize(GOOD_S, GOOD_M, alpha=0), r"alpha: expected a value in"),
        (lambda: M.summarize(GOOD_S, GOOD_M, delta=1.0), r"delta: expected a value in \[0, 1\)"),
        (lambda: M.summarize(GOOD_S, GOOD_M, delta=-1), r"delta: expected a value in \[0, 1\]"),
        (lambda: M.auc_interval(GOOD_S, GOOD_M, n_bootstrap=0), r"n_bootstrap: expected at least"),
        (lambda: M.auc_interval(GOOD_S, GOOD_M, n_bootstrap=2.5), r"n_bootstrap: expected a non"),
        (lambda: M.auc_interval(GOOD_S, GOOD_M, rng=None), r"rng: expected an int or a numpy"),
        (lambda: M.summarize(GOOD_S, GOOD_M, rng=-1), r"rng: expected a non-negative integer"),
        (lambda: M.clopper_pearson(5, 3), r"k: successes \(5\) exceed trials n \(3\)"),
        (lambda: M.clopper_pearson(0, 0), r"n: expected at least 1 trial"),
        (lambda: M.clopper_pearson(-1, 3), r"k: expected a non-negative integer count, got -1"),
        (lambda: M.clopper_pearson(1.5, 3), r"k: expected a non-negative integer count, got 1.5"),
        (lambda: M.clopper_pearson("x", 3), r"k: expected a non-negative integer count"),
        (lambda: M.epsilon_lower_bound(0, 0, 1, 1), r"tp, fn: there are no members"),
        (lambda: M.epsilon_lower_bound(1, 1, 0, 0), r"fp, tn: there are no non-members"),
        (lambda: M.epsilon_lower_bound(1, 1, -2, 0), r"fp: expected a non-negative integer"),
        (lambda: M.epsilon_lower_bound(1, 1, 1, 1, delta=2), r"delta: expected a value in"),
        (
            lambda: M.epsilon_lower_bound_from_scores(
                GOOD_S, GOOD_M, threshold=0.2, calibration_fraction=0.5
            ),
            r"threshold, calibration_fraction: give at most one",
        ),
        (
            lambda: M.epsilon_lower_bound_from_scores(GOOD_S, GOOD_M, threshold=float("nan")),
            r"threshold: expected a number, got NaN",
        ),
        (
            lambda: M.epsilon_lower_bound_from_scores(
                [1, 2, 3], [1, 0, 0], calibration_fraction=0.5
            ),
            r"calibration_fraction: need at least 2 members to split, got 1",
        ),
        (
            lambda: M.epsilon_lower_bound_from_scores(GOOD_S, GOOD_M, calibration_fraction=1.0),
            r"calibration_fraction: expected a value in \(0, 1\)",
        ),
    ],
)
def test_parameter_validation_errors(call, match):
    with pytest.raises(ValidationError, match=match):
        call()


def test_auc_interval_warns_when_a_class_is_tiny():
    from miaudit.exceptions import SmallSampleWarning
    from miaudit.metrics import MIN_BOOTSTRAP_CLASS

    rng = np.random.default_rng(0)
    scores = rng.normal(size=200)
    one_member = np.zeros(200, dtype=bool)
    one_member[0] = True
    with pytest.warns(SmallSampleWarning, match=r"1 member\(s\) and 199 non-member\(s\)"):
        lo, hi = M.auc_interval(scores, one_member)
    # The reason for the warning: the interval ignores the uncertainty of the lone member.
    assert hi - lo < 0.25
    enough = np.arange(200) < MIN_BOOTSTRAP_CLASS
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        M.auc_interval(scores, enough)


def test_split_epsilon_is_valid_on_scores_that_carry_no_signal():
    """Random scores: the split bound claims ε > 0 about as often as α allows; the optimistic
    best-of-all-thresholds bound claims it far more often (the reason it is not the default)."""
    alpha, n_seeds = 0.05, 60
    split = optimistic = 0
    for seed in range(n_seeds):
        rng = np.random.default_rng(seed)
        scores, member = rng.normal(size=400), rng.random(400) < 0.5
        common = {"alpha": alpha, "delta": 0.0, "n_bootstrap": 10, "rng": seed}
        split += M.summarize(scores, member, (0.1,), **common).epsilon.epsilon > 0
        best = M.summarize(scores, member, (0.1,), epsilon_selection="best_on_same_data", **common)
        optimistic += best.epsilon.epsilon > 0
    assert split <= 2 * alpha * n_seeds  # 6 of 60, with room for chance
    assert optimistic > split
