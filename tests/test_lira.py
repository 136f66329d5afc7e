"""LiRA: every variant against a straightforward loop with scipy.stats.norm, TensorFlow Privacy's
golden values, and every error path."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from scipy.stats import norm

from miaudit import attacks
from miaudit.attacks.base import AttackData
from miaudit.attacks.lira import (
    GLOBAL_VARIANCE_BELOW,
    MIN_SAMPLES_PER_RECORD_STD,
    SIGMA_FLOOR,
    fit_gaussians,
    gaussian_logpdf,
    lira_scores,
)
from miaudit.exceptions import MissingRequirementError, UnknownNameError, ValidationError
from miaudit.signals import logit_scaled_confidence


def _data(m: int = 10, n: int = 25, q: int = 3, seed: int = 0, min_side: int = 2):
    """Random signals and a keep matrix with at least ``min_side`` IN and OUT per record."""
    rng = np.random.default_rng(seed)
    keep = rng.random((m, n)) < 0.5
    for j in range(n):
        order = rng.permutation(m)
        keep[order[:min_side], j] = True
        keep[order[min_side : 2 * min_side], j] = False
    ref = rng.normal(size=(m, n, q)) * rng.uniform(0.5, 2.0, size=(1, n, 1))
    ref += np.where(keep[..., None], 1.0, 0.0)
    target = rng.normal(size=(n, q)) + 0.5
    return target, ref, keep


def _loop_fit(target, ref, mask, center, variance):
    """(mu, sigma) lists per record and query, by loops; the documented fallback for one sample."""
    n, q = target.shape
    center_fn = np.median if center == "median" else np.mean
    mu = np.empty((n, q))
    resid, raw = [], []
    for j in range(n):
        for k in range(q):
            vals = [ref[i, j, k] for i in range(ref.shape[0]) if mask[i, j]]
            mu[j, k] = center_fn(vals)
            raw += vals
            if len(vals) >= MIN_SAMPLES_PER_RECORD_STD:
                resid += [v - mu[j, k] for v in vals]
    # Pooled residuals of records with >= 2 signals; raw signals when there are none.
    global_sd = np.std(resid) if resid else np.std(raw)
    sigma = np.empty((n, q))
    for j in range(n):
        for k in range(q):
            vals = [ref[i, j, k] for i in range(ref.shape[0]) if mask[i, j]]
            if variance == "global" or len(vals) < MIN_SAMPLES_PER_RECORD_STD:
                sigma[j, k] = global_sd
            else:
                sigma[j, k] = np.std(vals)
    return mu, sigma


def _loop_scores(target, ref, keep, online, center, variance, test):
    mu_out, sd_out = _loop_fit(target, ref, ~keep, center, variance)
    n, q = target.shape
    out = np.empty(n)
    if online:
        mu_in, sd_in = _loop_fit(target, ref, keep, center, variance)
    for j in range(n):
        per_query = []
        for k in range(q):
            x = target[j, k]
            if online:
                s = norm.logpdf(x, mu_in[j, k], sd_in[j, k]) - norm.logpdf(
                    x, mu_out[j, k], sd_out[j, k]
                )
            elif test == "one_sided":
                s = norm.logcdf(x, mu_out[j, k], sd_out[j, k])
            else:
                s = -norm.logpdf(x, mu_out[j, k], sd_out[j, k])
            per_query.append(s)
        out[j] = np.mean(per_query)
    return out


VARIANTS = [
    (online, center, variance, test)
    for center in ("median", "mean")
    for variance in ("per_record", "global")
    for online, test in ((True, "one_sided"), (False, "one_sided"), (False, "two_sided"))
]


@pytest.mark.parametrize(("online", "center", "variance", "test"), VARIANTS)
def test_lira_matches_scipy_loop(online, center, variance, test):
    # A seed per variant that does not depend on Python's per-process string hashing. Some
    # records get a tiny IN std (~5e-4) and scores near -2e6, where the two computations' operation
    # orders differ by up to ~1e-9 relative (seen over 300 seeds × 12 variants): hence rtol 1e-8.
    seed = zlib.crc32(f"{online}-{center}-{variance}-{test}".encode()) % 1000
    target, ref, keep = _data(m=9, seed=seed)
    # The loop uses every reference of each record (no equalisation, as the reference code).
    got = lira_scores(
        target, ref, keep, online=online, center=center, variance=variance, offline_test=test,
        equalize=False,
    )
    want = _loop_scores(target, ref, keep, online, center, variance, test)
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("online", [True, False])
def test_single_sample_side_uses_global_std(online):
    """Records with one IN (or OUT) signal get that side's global std (documented fallback)."""
    target, ref, keep = _data(m=6, n=20, seed=3, min_side=1)
    assert ((keep.sum(0) == 1) | ((~keep).sum(0) == 1)).any()
    got = lira_scores(target, ref, keep, online=online, variance="per_record", equalize=False)
    want = _loop_scores(target, ref, keep, online, "median", "per_record", "one_sided")
    np.testing.assert_allclose(got, want, rtol=1e-10)


@pytest.mark.parametrize("online", [True, False])
def test_complementary_pair_uses_raw_signal_std(online):
    """Two references on complementary halves: one IN and one OUT signal per record, so no
    residual spread is observable; the std of the raw signals is used (no ties, no floor)."""
    target, ref, keep = _data(m=2, n=30, q=2, seed=9, min_side=1)
    keep[1] = ~keep[0]
    got = lira_scores(target, ref, keep, online=online, variance="global")
    want = _loop_scores(target, ref, keep, online, "median", "global", "one_sided")
    np.testing.assert_allclose(got, want, rtol=1e-10)
    assert np.unique(got).size == got.size


def test_auto_variance_switches_at_64_references():
    assert GLOBAL_VARIANCE_BELOW == 64
    for m, expected in (
        (GLOBAL_VARIANCE_BELOW - 1, "global"),
        (GLOBAL_VARIANCE_BELOW, "per_record"),
    ):
        target, ref, keep = _data(m=m, n=6, q=1, seed=m)
        auto = lira_scores(target, ref, keep, variance="auto")
        np.testing.assert_allclose(auto, lira_scores(target, ref, keep, variance=expected))
        other = "per_record" if expected == "global" else "global"
        assert not np.allclose(auto, lira_scores(target, ref, keep, variance=other))


def test_one_and_two_sided_differ_below_the_out_mean():
    """One-sided rewards only high signals; two-sided also flags unusually low ones."""
    ref = np.array([-1.0, 0.0, 1.0, 2.0])[:, None, None] * np.ones((1, 2, 1))
    keep = np.zeros((4, 2), dtype=bool)
    target = np.array([[10.5], [-9.5]])  # symmetric about the OUT median 0.5
    one = lira_scores(target, ref, keep, online=False, offline_test="one_sided")
    two = lira_scores(target, ref, keep, online=False, offline_test="two_sided")
    assert one[0] > one[1]
    assert two[0] == pytest.approx(two[1])


def test_degenerate_side_is_floored_and_finite():
    ref = np.ones((4, 3, 1))
    keep = np.array([[1, 1, 1], [1, 1, 1], [0, 0, 0], [0, 0, 0]], dtype=bool)
    ref[2:] = 0.0
    scores = lira_scores(np.array([1.0, 0.0, 0.5]), ref, keep, variance="per_record")
    assert np.all(np.isfinite(scores))
    assert scores[0] > 0 > scores[1]
    fit = fit_gaussians(ref, keep)
    assert np.all(fit.std == SIGMA_FLOOR)


# --------------------------------------------------------------------------------------------
# TensorFlow Privacy golden values: privacy_tests/membership_inference_attack/advanced_mia_test.py
# (compute_score_lira). TF scores are LOWER for members: option "in" is -mean_k log N(x; in fit),
# "out" is +mean_k log N(x; out fit), "both" is -(log N_in - log N_out). Its std is np.nanstd
# (ddof 0, around the mean) like ours; records with no statistics get the column mean of the
# centres and stds ("replace_nan_with_column_mean"), which fit_gaussians reproduces with
# missing="column_mean". The main lira_scores instead refuses records without references.
TF_TARGET = np.array([[1.0], [0.0], [0.0], [0.0]])
TF_IN = np.array([[-1.0, 0.0, 0.0, 0.0], [1.0, 2.0, 20.0, 0.0]])[:, :, None]
TF_IN_MASK = np.array([[1, 1, 1, 0], [1, 1, 1, 0]], dtype=bool)  # record 3: empty (0, 1)
TF_IN_PER_RECORD = [1.41893853, 1.41893853, 3.72152363, 2.72537178]
TF_IN_FIXED = [2.69682468, 2.69682468, 4.15270703, 2.87983121]


@pytest.mark.parametrize(
    ("variance", "golden"), [("per_record", TF_IN_PER_RECORD), ("global", TF_IN_FIXED)]
)
def test_tf_privacy_in_option(variance, golden):
    fit = fit_gaussians(
        TF_IN, TF_IN_MASK, center="median", variance=variance, missing="column_mean"
    )
    score_in = -gaussian_logpdf(TF_TARGET, fit.mean, fit.std).mean(axis=1)
    np.testing.assert_allclose(score_in, golden, rtol=1e-8)


@pytest.mark.parametrize(
    ("variance", "golden"), [("per_record", TF_IN_PER_RECORD), ("global", TF_IN_FIXED)]
)
def test_tf_privacy_out_option_is_our_two_sided_offline(variance, golden):
    """stat_out = -stat_in gives TF 'out' = -golden; our two-sided score is -log N_out = golden.
    Record 3 has no OUT statistics, so lira_scores (which refuses it) runs on records 0-2."""
    ref_out = -TF_IN[:, :3]
    keep = np.zeros((2, 3), dtype=bool)
    got = lira_scores(
        TF_TARGET[:3], ref_out, keep, online=False, variance=variance, offline_test="two_sided"
    )
    np.testing.assert_allclose(got, golden[:3], rtol=1e-8)


@pytest.mark.parametrize("variance", ["per_record", "global"])
def test_tf_privacy_both_option_is_zero(variance):
    ref = np.concatenate([TF_IN[:, :3], -TF_IN[:, :3]])
    keep = np.array([[1, 1, 1], [1, 1, 1], [0, 0, 0], [0, 0, 0]], dtype=bool)
    np.testing.assert_allclose(
        lira_scores(TF_TARGET[:3], ref, keep, variance=variance), 0.0, atol=1e-12
    )


def test_tf_privacy_two_augmentations():
    """target [[1, 0]], stat_in [[[-1, 0], [1, 20]]] → option 'in' 2.57023108."""
    fit = fit_gaussians(np.array([[[-1.0, 0.0]], [[1.0, 20.0]]]), np.ones((2, 1), dtype=bool))
    got = -gaussian_logpdf(np.array([[1.0, 0.0]]), fit.mean, fit.std).mean(axis=1)
    np.testing.assert_allclose(got, [2.57023108], rtol=1e-8)


def test_gaussian_logpdf_matches_scipy():
    rng = np.random.default_rng(0)
    x, mu, sd = rng.normal(size=50), rng.normal(size=50), rng.uniform(0.1, 3, size=50)
    np.testing.assert_allclose(gaussian_logpdf(x, mu, sd), norm.logpdf(x, mu, sd), rtol=1e-12)


# --------------------------------------------------------------------------------------------
# Registered attacks


def test_registered_lira_uses_logit_scaled_confidence():
    rng = np.random.default_rng(5)
    m, n, q, c = 12, 15, 2, 4
    labels = rng.integers(0, c, size=n)
    target, refs = rng.normal(size=(n, q, c)) * 3, rng.normal(size=(m, n, q, c)) * 3
    keep = np.zeros((m, n), dtype=bool)
    keep[: m // 2] = True
    data = AttackData(labels=labels, target=target, references=refs, keep=keep)
    sig_t = logit_scaled_confidence(target, labels)
    sig_r = logit_scaled_confidence(refs, labels)
    got = attacks.create("lira", center="mean").score(data)
    np.testing.assert_allclose(
        got, lira_scores(sig_t, sig_r, keep, center="mean", variance="global")
    )
    got = attacks.create("lira_offline", offline_test="two_sided").score(data)
    want = lira_scores(
        sig_t, sig_r, keep, online=False, variance="global", offline_test="two_sided"
    )
    np.testing.assert_allclose(got, want)


def test_registered_online_lira_names_records_without_in_references():
    target, ref, keep = _data(m=6, n=10, q=1)
    keep[:, :3] = False
    data = AttackData.from_signals(
        np.zeros(10, dtype=int),
        {"logit_scaled_confidence": {"target": target, "references": ref}},
        keep=keep,
    )
    with pytest.raises(
        MissingRequirementError, match=r"attack 'lira' needs at least 1 IN .* 3 of 10 records"
    ):
        attacks.create("lira").score(data)
    assert np.all(np.isfinite(attacks.create("lira_offline").score(data)))
    data.keep[:, 5] = True
    with pytest.raises(
        MissingRequirementError, match=r"attack 'lira_offline' needs at least 1 OUT .* 1 of 10"
    ):
        attacks.create("lira_offline").score(data)


def test_registered_lira_rejects_bad_options_at_construction():
    with pytest.raises(UnknownNameError, match="Valid centers: mean, median"):
        attacks.create("lira", center="medain")
    with pytest.raises(UnknownNameError, match="per_record"):
        attacks.create("lira", variance="pooled")
    with pytest.raises(UnknownNameError, match="one_sided"):
        attacks.create("lira_offline", offline_test="left")


# --------------------------------------------------------------------------------------------
# Validation


def test_missing_in_references_counted():
    target, ref, keep = _data(m=6, n=10, q=1)
    keep[:, [1, 4]] = False
    with pytest.raises(MissingRequirementError, match=r"online LiRA .* 2 of 10 records"):
        lira_scores(target, ref, keep)


def test_missing_out_references_counted_offline():
    target, ref, keep = _data(m=6, n=10, q=1)
    keep[:, 7] = True
    with pytest.raises(MissingRequirementError, match=r"offline LiRA .*OUT.* 1 of 10 records"):
        lira_scores(target, ref, keep, online=False)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda t, r, k: (t[:-1], r, k), r"reference: expected shape \(n_references, 9, 2\)"),
        (lambda t, r, k: (t, r[..., :1], k), "to match target"),
        (lambda t, r, k: (t, r, k[:, :-1]), r"keep: expected shape"),
        (lambda t, r, k: (t, r, k.astype(float) * 0.5), "keep: expected a bool or 0/1 integer"),
        (lambda t, r, k: (t, r, k.astype(int) * 2), "keep: expected bool or 0/1 values"),
        (lambda t, r, k: (np.where(t > 0, np.nan, t), r, k), "target: contains .* NaN"),
        (lambda t, r, k: (t, np.where(r > 1, np.inf, r), k), "reference: contains .* infinite"),
        (lambda t, r, k: (t[None], r, k), "target: expected an array with 1 or 2 dimensions"),
        (lambda t, r, k: (t, r[:0], k[:0]), "at least one reference model"),
    ],
)
def test_bad_inputs_name_the_field(change, match):
    t, r, k = change(*_data(m=6, n=10, q=2))
    with pytest.raises((ValidationError, MissingRequirementError), match=match):
        lira_scores(t, r, k)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"center": "mode"}, "unknown center 'mode'"),
        ({"variance": "pooled"}, "unknown LiRA variance 'pooled'"),
        ({"online": False, "offline_test": "left"}, "unknown offline test 'left'"),
    ],
)
def test_unknown_options(kwargs, match):
    with pytest.raises(UnknownNameError, match=match):
        lira_scores(*_data(m=6, n=5, q=1), **kwargs)


def test_fit_gaussians_errors():
    _, ref, keep = _data(m=6, n=5, q=1)
    with pytest.raises(ValidationError, match="missing: expected 'error' or 'column_mean'"):
        fit_gaussians(ref, keep, missing="drop")
    with pytest.raises(ValidationError, match=r"mask: expected shape \(n_models, n_records\)"):
        fit_gaussians(ref, keep[:, :-1])
    keep[:, 0] = False
    with pytest.raises(MissingRequirementError, match="1 of 5 records have no reference signal"):
        fit_gaussians(ref, keep)
    with pytest.raises(MissingRequirementError, match="selects no reference signal"):
        fit_gaussians(ref, np.zeros_like(keep))


def test_one_dimensional_inputs_mean_one_query():
    target, ref, keep = _data(m=6, n=8, q=1)
    np.testing.assert_allclose(
        lira_scores(target[:, 0], ref[..., 0], keep), lira_scores(target, ref, keep)
    )
