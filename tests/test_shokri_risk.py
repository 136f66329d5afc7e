"""Shokri et al. shadow-model attack and Song & Mittal privacy risk score, against independent
scikit-learn / numpy computations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from miaudit import attacks
from miaudit.attacks.base import AttackData
from miaudit.attacks.risk_score import LOG_BIN_FLOOR, privacy_risk_scores
from miaudit.attacks.shokri import MAX_ITER, shokri_scores, sorted_probability_features
from miaudit.exceptions import MissingRequirementError, UnknownNameError, ValidationError
from miaudit.metrics import auc
from miaudit.signals import modified_entropy


def _logits(m=8, n=120, q=2, c=3, seed=0, strength=2.0):
    """Logits whose true-class margin grows when the model trained on the record."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, n)
    keep = rng.random((m + 1, n)) < 0.5
    out = rng.normal(size=(m + 1, n, q, c))
    onehot = np.eye(c)[labels][None, :, None, :]
    out += onehot * (0.5 + strength * keep[..., None, None])
    return out[0], out[1:], keep[0], keep[1:], labels


# --------------------------------------------------------------------------------------------
# Shokri


def test_sorted_features_by_hand():
    logits = np.log(np.array([[[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]]]))  # (n=1, q=2, C=3)
    np.testing.assert_allclose(
        sorted_probability_features(logits), [[0.5, 0.3, 0.2, 0.6, 0.3, 0.1]], rtol=1e-12
    )
    np.testing.assert_allclose(
        sorted_probability_features(np.exp(logits), kind="probs", top_k=2),
        [[0.5, 0.3, 0.6, 0.3]],
        rtol=1e-12,
    )


def test_sorted_features_need_a_query_axis():
    with pytest.raises(ValidationError, match=r"outputs: expected shape \(\.\.\., q, C\)"):
        sorted_probability_features(np.zeros(3))


def _sk_scores(train_x, train_y, test_x):
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=MAX_ITER))
    clf.fit(train_x, train_y)
    return clf.predict_proba(test_x)[:, 1]


def _features(outputs):
    p = softmax(outputs, axis=-1)
    return -np.sort(-p, axis=-1).reshape(*p.shape[:-2], -1)


def test_shokri_matches_per_class_sklearn():
    target, refs, _, keep, labels = _logits()
    got = shokri_scores(target, refs, keep, labels)
    want = np.empty(labels.size)
    for c in np.unique(labels):
        cols = np.flatnonzero(labels == c)
        x = np.concatenate([_features(refs[i, cols]) for i in range(refs.shape[0])])
        y = np.concatenate([keep[i, cols] for i in range(refs.shape[0])])
        want[cols] = _sk_scores(x, y, _features(target[cols]))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)


def test_shokri_single_label_class_falls_back_to_global_model():
    target, refs, _, keep, labels = _logits(seed=1)
    keep[:, labels == 2] = True  # class 2: only IN rows
    got = shokri_scores(target, refs, keep, labels)
    cols = np.flatnonzero(labels == 2)
    x = np.concatenate([_features(refs[i]) for i in range(refs.shape[0])])
    want = _sk_scores(x, keep.reshape(-1), _features(target[cols]))
    np.testing.assert_allclose(got[cols], want, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("meta_model", ["logistic_regression", "gradient_boosting", "mlp"])
def test_shokri_detects_members_and_is_seeded(meta_model):
    target, refs, target_keep, keep, labels = _logits(m=6, n=200, seed=2)
    # One OpenMP thread: on a shared 2-core machine, gradient boosting's threads spin for seconds.
    with threadpool_limits(1):
        a = shokri_scores(target, refs, keep, labels, meta_model=meta_model, seed=3)
        b = shokri_scores(target, refs, keep, labels, meta_model=meta_model, seed=3)
    np.testing.assert_array_equal(a, b)
    assert np.all((a >= 0) & (a <= 1))
    assert auc(a, target_keep) > 0.75


def test_shokri_subsamples_training_rows():
    target, refs, _, keep, labels = _logits(seed=4)
    full = shokri_scores(target, refs, keep, labels)
    small = shokri_scores(target, refs, keep, labels, max_train_per_class=20, seed=0)
    assert not np.allclose(full, small)
    again = shokri_scores(target, refs, keep, labels, max_train_per_class=20, seed=0)
    np.testing.assert_array_equal(small, again)


def test_registered_shokri_uses_raw_outputs():
    target, refs, _, keep, labels = _logits(seed=5)
    data = AttackData(labels=labels, target=target, references=refs, keep=keep)
    got = attacks.create("shokri", top_k=2).score(data)
    np.testing.assert_allclose(got, shokri_scores(target, refs, keep, labels, top_k=2))


def test_registered_shokri_without_outputs():
    data = AttackData.from_signals(
        np.zeros(3, int),
        {"confidence": {"target": np.zeros((3, 1)), "references": np.zeros((2, 3, 1))}},
        keep=np.array([[1, 0, 1], [0, 1, 0]], dtype=bool),
    )
    with pytest.raises(MissingRequirementError, match="raw outputs of target"):
        attacks.create("shokri").score(data)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"meta_model": "svm"}, UnknownNameError, "Valid meta-models: gradient_boosting"),
        ({"top_k": 0}, ValidationError, "top_k: expected an integer >= 1, got 0"),
        (
            {"max_train_per_class": 1},
            ValidationError,
            "max_train_per_class: expected an integer >= 2",
        ),
    ],
)
def test_shokri_bad_parameters(kwargs, exc, match):
    target, refs, _, keep, labels = _logits(n=20)
    with pytest.raises(exc, match=match):
        shokri_scores(target, refs, keep, labels, **kwargs)
    with pytest.raises(exc, match=match):
        attacks.create("shokri", **kwargs)


def test_shokri_bad_inputs():
    target, refs, _, keep, labels = _logits(n=20)
    with pytest.raises(ValidationError, match=r"reference_outputs: expected shape \(m, 20, 2, 3\)"):
        shokri_scores(target, refs[:, :5], keep, labels)
    with pytest.raises(ValidationError, match="target_outputs: expected an array with 3"):
        shokri_scores(target[:, 0], refs, keep, labels)
    with pytest.raises(ValidationError, match=r"labels: labels must be in 0\.\.2"):
        shokri_scores(target, refs, keep, labels + 5)
    with pytest.raises(ValidationError, match=r"labels: expected shape \(20,\)"):
        shokri_scores(target, refs, keep, labels[:5])
    with pytest.raises(MissingRequirementError, match="no OUT"):
        shokri_scores(target, refs, np.ones_like(keep), labels)
    with pytest.raises(ValidationError, match=r"seed: expected an int or a numpy\.random"):
        shokri_scores(target, refs, keep, labels, seed=None)
    with pytest.raises(ValidationError, match="reference_outputs: contains 1 NaN"):
        refs[0, 0, 0, 0] = np.nan
        shokri_scores(target, refs, keep, labels)


# --------------------------------------------------------------------------------------------
# Privacy risk score


def _find_index(bins, value):
    """Song & Mittal's released code: the bin holding ``value``, end bins for outliers."""
    if value >= bins[-1]:
        return len(bins) - 2
    if value <= bins[0]:
        return 0
    return int(np.argwhere(bins <= value)[-1][0])


def _loop_risk(target, ref, keep, labels, n_bins, log_bins, prior):
    x, r = target.mean(axis=1), ref.mean(axis=2)
    if log_bins:
        x, r = np.maximum(x, LOG_BIN_FLOOR), np.maximum(r, LOG_BIN_FLOOR)
    out = np.empty(x.size)
    for j in range(x.size):
        cols = labels == labels[j]
        vin, vout = r[:, cols][keep[:, cols]], r[:, cols][~keep[:, cols]]
        if vin.size == 0 or vout.size == 0:
            vin, vout = r[keep], r[~keep]
        lo, hi = min(vin.min(), vout.min()), max(vin.max(), vout.max())
        if log_bins:
            bins = np.logspace(np.log10(lo), np.log10(hi), n_bins + 1)
        else:
            bins = np.linspace(lo, hi, n_bins + 1)
        bins[0], bins[-1] = lo, hi
        h_in = np.zeros(n_bins)
        h_out = np.zeros(n_bins)
        for v in vin:
            h_in[_find_index(bins, v)] += 1 / vin.size
        for v in vout:
            h_out[_find_index(bins, v)] += 1 / vout.size
        b = _find_index(bins, x[j])
        den = prior * h_in[b] + (1 - prior) * h_out[b]
        out[j] = prior * h_in[b] / den if den > 0 else prior
    return out


def _mentr_data(seed=0, n=150):
    target, refs, target_keep, keep, labels = _logits(m=6, n=n, seed=seed)
    return (
        modified_entropy(target, labels),
        modified_entropy(refs, labels),
        keep,
        labels,
        target_keep,
    )


@pytest.mark.parametrize(
    ("n_bins", "log_bins", "prior"), [(5, True, 0.5), (12, True, 0.3), (8, False, 0.5)]
)
def test_risk_score_matches_loop(n_bins, log_bins, prior):
    target, ref, keep, labels, _ = _mentr_data()
    got = privacy_risk_scores(
        target, ref, keep, labels, n_bins=n_bins, log_bins=log_bins, prior=prior
    )
    want = _loop_risk(target, ref, keep, labels, n_bins, log_bins, prior)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_risk_score_pooled_fallback_and_power():
    target, ref, keep, labels, target_keep = _mentr_data(seed=1, n=300)
    keep[:, labels == 0] = False  # class 0 has no IN signal: pooled histograms
    got = privacy_risk_scores(target, ref, keep, labels, n_bins=10)
    np.testing.assert_allclose(got, _loop_risk(target, ref, keep, labels, 10, True, 0.5))
    assert auc(got, target_keep) > 0.7


def test_registered_risk_score_uses_modified_entropy():
    target, refs, _, keep, labels = _logits(seed=7)
    data = AttackData(labels=labels, target=target, references=refs, keep=keep)
    want = privacy_risk_scores(
        modified_entropy(target, labels), modified_entropy(refs, labels), keep, labels, n_bins=7
    )
    np.testing.assert_allclose(attacks.create("privacy_risk_score", n_bins=7).score(data), want)


def test_risk_score_errors():
    target, ref, keep, labels, _ = _mentr_data(n=30)
    with pytest.raises(ValidationError, match="log_bins: logarithmic bins need non-negative"):
        privacy_risk_scores(target - 5, ref, keep, labels)
    with pytest.raises(ValidationError, match="n_bins: expected an integer >= 1, got 0"):
        privacy_risk_scores(target, ref, keep, labels, n_bins=0)
    with pytest.raises(ValidationError, match=r"prior: expected a value in \(0, 1\)"):
        privacy_risk_scores(target, ref, keep, labels, prior=1.0)
    with pytest.raises(ValidationError, match=r"labels: expected shape \(30,\)"):
        privacy_risk_scores(target, ref, keep, labels[:3])
    with pytest.raises(MissingRequirementError, match="no IN signal"):
        privacy_risk_scores(target, ref, np.zeros_like(keep), labels)
    with pytest.raises(ValidationError, match=r"n_bins: expected an integer, got float 2\.5"):
        attacks.create("privacy_risk_score", n_bins=2.5)
