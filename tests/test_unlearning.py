"""Tests of miaudit.audit.unlearning: U-LiRA, the NeurIPS 2023 challenge score, unlearners."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.base import BaseEstimator, ClassifierMixin

from miaudit.audit import unlearning as U
from miaudit.exceptions import ValidationError


# --------------------------------------------------------------------------- fixtures
class RidgeLstsq(ClassifierMixin, BaseEstimator):
    """A tiny binary ridge classifier (closed form): fast, deterministic, and memorises its
    training records when there are about as many features as records."""

    def __init__(self, alpha: float = 1.0):
        self.alpha = alpha

    def fit(self, x, y):
        t = 2.0 * np.asarray(y) - 1.0
        gram = x @ x.T + self.alpha * np.eye(x.shape[0])  # dual form: cheap with d >= n
        self.coef_ = x.T @ np.linalg.solve(gram, t)
        self.classes_ = np.array([0, 1])
        return self

    def decision_function(self, x):
        return x @ self.coef_


N_BASE, N_FORGET, N_FEATURES = 120, 30, 100


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N_BASE + N_FORGET, N_FEATURES))
    y = rng.integers(0, 2, N_BASE + N_FORGET)
    return x, y


def _signal(model, x, y):
    """Logit-like signal of the true label (higher = more confident in it)."""
    z = model.decision_function(x)
    return np.where(y == 1, z, -z)


def _unlearning_experiment(data, make_unlearner, n_models: int, seed: int):
    """Per model: train on a random half of the base records plus a coin-flipped half of the
    forget records, then unlearn those forget records. Returns the forget records' signals
    (models × forget records) and which of them each model trained on and unlearned."""
    x, y = data
    rng = np.random.default_rng(seed)
    forget = np.arange(N_BASE, N_BASE + N_FORGET)
    signals = np.empty((n_models, N_FORGET))
    unlearned = np.empty((n_models, N_FORGET), dtype=bool)
    for i in range(n_models):
        base = rng.choice(N_BASE, N_BASE // 2, replace=False)
        coin = rng.random(N_FORGET) < 0.5
        train = np.r_[base, forget[coin]]
        model = RidgeLstsq().fit(x[train], y[train])
        positions = base.size + np.arange(coin.sum())  # the forget records inside `train`
        model = make_unlearner(x[train], y[train]).unlearn(model, positions)
        signals[i] = _signal(model, x[forget], y[forget])
        unlearned[i] = coin
    return signals, unlearned


def _retrain(x, y):
    return U.RetrainFromScratch(x, y, seed=0)


def _nothing(x, y):
    return U.NoUnlearning()


# ------------------------------------------------------------------------------ U-LiRA
def test_ulira_scores_are_gaussian_log_likelihood_ratios():
    rng = np.random.default_rng(0)
    shadow = rng.standard_normal((10, 3))
    unl = np.tile(np.r_[True, False], 5)[:, None].repeat(3, axis=1)
    target = rng.standard_normal((4, 3))
    got = U.ulira_scores(shadow, unl, target, variance="per_record")
    for j in range(3):
        a, b = shadow[unl[:, j], j], shadow[~unl[:, j], j]
        expected = stats.norm.logpdf(target[:, j], a.mean(), a.std()) - stats.norm.logpdf(
            target[:, j], b.mean(), b.std()
        )
        np.testing.assert_allclose(got[:, j], expected, rtol=1e-10)


def test_ulira_global_variance_pools_residuals_per_pool():
    rng = np.random.default_rng(1)
    shadow = rng.standard_normal((8, 5))
    unl = rng.random((8, 5)) < 0.5
    unl[0], unl[1] = True, False  # every record has both kinds
    got = U.ulira_scores(shadow, unl, shadow[:2], variance="global")
    mean_u = np.nanmean(np.where(unl, shadow, np.nan), axis=0)
    mean_r = np.nanmean(np.where(~unl, shadow, np.nan), axis=0)
    sd_u = math.sqrt(np.sum(np.where(unl, (shadow - mean_u) ** 2, 0)) / unl.sum())
    sd_r = math.sqrt(np.sum(np.where(~unl, (shadow - mean_r) ** 2, 0)) / (~unl).sum())
    expected = stats.norm.logpdf(shadow[:2], mean_u, sd_u) - stats.norm.logpdf(
        shadow[:2], mean_r, sd_r
    )
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    # "auto" pools below PER_RECORD_VARIANCE_MIN_MODELS shadow models
    np.testing.assert_array_equal(U.ulira_scores(shadow, unl, shadow[:2]), got)


def test_ulira_on_synthetic_signals():
    rng = np.random.default_rng(2)
    n_shadow, n_target, n_rec = 64, 32, 50
    unl = rng.random((n_shadow + n_target, n_rec)) < 0.5
    same = rng.standard_normal(unl.shape)  # unlearned and retrained signals alike
    shifted = same + 1.5 * unl  # unlearned models remember
    for signals, lo, hi in ((same, 0.45, 0.55), (shifted, 0.72, 0.85)):
        res = U.ulira(signals[:n_shadow], unl[:n_shadow], signals[n_shadow:], unl[n_shadow:])
        assert lo < res.balanced_accuracy < hi
    # the Bayes accuracy of N(1.5, 1) vs N(0, 1) is Phi(0.75) = 0.77
    assert res.balanced_accuracy == pytest.approx(stats.norm.cdf(0.75), abs=0.04)


def test_ulira_retrain_from_scratch_is_perfect_and_no_unlearning_is_not(data):
    n_models, n_shadow = 48, 32
    for make, lo, hi in ((_retrain, 0.42, 0.58), (_nothing, 0.75, 1.0)):
        signals, unl = _unlearning_experiment(data, make, n_models, seed=1)
        res = U.ulira(signals[:n_shadow], unl[:n_shadow], signals[n_shadow:], unl[n_shadow:])
        assert lo < res.balanced_accuracy < hi, (make.__name__, res)
        assert res.n_unlearned + res.n_retrained == (n_models - n_shadow) * N_FORGET


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"shadow_unlearned": np.ones((6, 4), bool)}, "shadow_unlearned"),
        ({"shadow_unlearned": np.ones((5, 4), bool)}, "shadow_unlearned: expected shape"),
        ({"target_signals": np.zeros((2, 3))}, "target_signals"),
        ({"target_unlearned": np.ones((2, 4), bool)}, "target_unlearned"),
        ({"variance": "pooled"}, "variance"),
        ({"shadow_signals": np.full((6, 4), np.nan)}, "shadow_signals"),
    ],
)
def test_ulira_bad_input(kwargs, field):
    unl = np.tile(np.r_[True, False], 3)[:, None].repeat(4, axis=1)
    args = {
        "shadow_signals": np.arange(24.0).reshape(6, 4),
        "shadow_unlearned": unl,
        "target_signals": np.zeros((2, 4)),
        "target_unlearned": np.array([[True] * 4, [False] * 4]),
    }
    args.update(kwargs)
    with pytest.raises(ValidationError, match=field):
        U.ulira(**args)


# ---------------------------------------------------------------- challenge forgetting
def _reference_epsilon(u, r, delta=U.CHALLENGE_DELTA):
    """The challenge's per-record epsilon written out as in its reference code (broadcast
    comparisons on the threshold grid, NaN rules), for one record."""
    pos, neg = (r, u) if np.median(r) > np.median(u) else (u, r)
    rates = []
    # double threshold: positive = the narrower distribution
    p2, n2 = (neg, pos) if np.ptp(pos) >= np.ptp(neg) else (pos, neg)
    width, buf = np.ptp(p2), 2.0
    lo_, hi_ = p2.min() + width - buf, p2.max() + buf
    right = np.linspace(lo_, hi_, int(np.ceil((hi_ - lo_) * 100)))
    left = np.concatenate([np.linspace(t - width - buf, t - width + buf, 400) for t in right])
    right = np.repeat(right, 400)

    def pp(c):
        return ((left[None] <= c[:, None]) & (c[:, None] <= right[None])).mean(0)

    rates.append((pp(p2), 1 - pp(p2), pp(n2), 1 - pp(n2)))
    both = np.r_[pos, neg]
    t = np.linspace(both.min(), both.max(), int(np.ceil((both.max() - both.min()) * 100)))
    tpr, fpr = (pos[:, None] >= t).mean(0), (neg[:, None] >= t).mean(0)
    rates.append((tpr, 1 - tpr, fpr, 1 - fpr))
    tpr, fnr, fpr, tnr = (np.concatenate(x) for x in zip(*rates, strict=True))
    eps = np.zeros(tpr.size)
    eps[(fpr + fnr == 0) & (tpr + tnr == 2)] = np.inf
    eps[(eps == 0) & (fpr * fnr == 0)] = np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        cand = np.nanmax(
            [np.log(1 - delta - fpr) - np.log(fnr), np.log(1 - delta - fnr) - np.log(fpr)], axis=0
        )
    eps = np.where(eps == 0, np.clip(cand, 0, None), eps)
    return min(float(np.nanmax(eps)), U.EPSILON_CAP)


def test_forgetting_epsilons_match_a_direct_transcription_of_the_reference():
    rng = np.random.default_rng(3)
    u = rng.normal(0.8, 1.0, (24, 4))
    r = rng.normal(0.0, 1.3, (24, 4))
    got = U.forgetting_epsilons(u, r)
    expected = [_reference_epsilon(u[:, j], r[:, j]) for j in range(4)]
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    assert np.all(got > 0)


def test_forgetting_epsilons_special_cases():
    rng = np.random.default_rng(4)
    r = rng.standard_normal((20, 1))
    # perfectly separated: the cap
    assert U.forgetting_epsilons(r + 100.0, r)[0] == U.EPSILON_CAP
    # a peaky unlearned distribution (all models output the same): the cap
    assert U.forgetting_epsilons(np.full((20, 1), 0.1) + 1e-6 * r, r)[0] == U.EPSILON_CAP


def test_forgetting_quality_bins():
    # 512 models: max epsilon ceil(ln 511) = 7, so 14 bins of width 0.5
    eps = [0.0, 0.49, 0.5, 1.2, 6.9, 7.0, 50.0]
    points = [1.0, 1.0, 0.5, 0.25, 2.0**-13, 0.0, 0.0]
    assert U.forgetting_quality(eps, 512) == pytest.approx(np.mean(points))
    assert U.forgetting_quality([0.0], 2) == 0.0  # 2 models can measure nothing


def test_challenge_score_retrain_beats_no_unlearning(data):
    x, y = data
    rng = np.random.default_rng(5)
    forget = np.arange(N_BASE, N_BASE + 8)  # the forget set: 8 records
    n_models = 16

    def signals(unlearner_factory):
        out = np.empty((n_models, forget.size))
        for i in range(n_models):
            base = rng.choice(N_BASE, N_BASE // 2, replace=False)
            train = np.r_[base, forget]
            model = RidgeLstsq().fit(x[train], y[train])
            model = unlearner_factory(x[train], y[train]).unlearn(
                model, base.size + np.arange(forget.size)
            )
            out[i] = _signal(model, x[forget], y[forget])
        return out

    retrained = signals(_retrain)  # the reference: models retrained without the forget set
    kwargs = {
        "retain_accuracy_unlearned": 1.0,
        "retain_accuracy_retrained": 1.0,
        "test_accuracy_unlearned": 0.5,
        "test_accuracy_retrained": 0.5,
    }
    forgotten = signals(_retrain)
    good = U.challenge_score(forgotten, retrained, **kwargs)
    bad = U.challenge_score(signals(_nothing), retrained, **kwargs)
    assert good.forgetting_quality > bad.forgetting_quality + 0.2
    assert np.median(good.epsilons) < np.median(bad.epsilons)
    # the accuracy ratios multiply the forgetting quality
    half = U.challenge_score(
        forgotten, retrained, **{**kwargs, "retain_accuracy_unlearned": [0.4, 0.6]}
    )
    assert half.retain_accuracy_ratio == pytest.approx(0.5)
    assert half.score == pytest.approx(half.forgetting_quality * 0.5)


def test_challenge_bad_input():
    ok = np.zeros((4, 3))
    with pytest.raises(ValidationError, match="retrained_signals"):
        U.forgetting_epsilons(ok, np.zeros((4, 2)))
    with pytest.raises(ValidationError, match="unlearned_signals"):
        U.forgetting_epsilons(np.zeros((1, 3)), ok)
    with pytest.raises(ValidationError, match="n_models"):
        U.forgetting_quality([0.1], 1)
    with pytest.raises(ValidationError, match="epsilons"):
        U.forgetting_quality([-0.1], 10)
    with pytest.raises(ValidationError, match="test_accuracy_retrained"):
        U.challenge_score(
            ok + np.arange(4)[:, None],
            ok + np.arange(4)[:, None],
            retain_accuracy_unlearned=1,
            retain_accuracy_retrained=1,
            test_accuracy_unlearned=1,
            test_accuracy_retrained=1.5,
        )


# -------------------------------------------------------------------------- unlearners
def test_retrain_from_scratch_sklearn_equals_fit_without_forget_set(data):
    from sklearn.linear_model import RidgeClassifier

    x, y = data
    model = RidgeClassifier(alpha=2.0).fit(x, y)
    forget = np.array([0, 5, 7])
    new = U.RetrainFromScratch(x, y).unlearn(model, forget)
    keep = np.setdiff1d(np.arange(len(y)), forget)
    expected = RidgeClassifier(alpha=2.0).fit(x[keep], y[keep])
    np.testing.assert_allclose(new.coef_, expected.coef_)
    assert new is not model
    # a boolean mask works the same
    mask = np.zeros(len(y), bool)
    mask[forget] = True
    np.testing.assert_allclose(U.RetrainFromScratch(x, y).unlearn(model, mask).coef_, new.coef_)


def _mlp(seed: int):
    import torch

    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(N_FEATURES, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2)
    )


def _torch_loss(model, x, y):
    import torch

    with torch.no_grad():
        logits = model(torch.as_tensor(x, dtype=torch.float32))
        return float(torch.nn.functional.cross_entropy(logits, torch.as_tensor(y)))


def test_torch_unlearners(data, one_torch_thread):
    import torch

    x, y = data
    model = _mlp(0)
    before = [p.detach().clone() for p in model.parameters()]
    state = torch.random.get_rng_state()
    forget = np.arange(10)
    retrained = U.RetrainFromScratch(x, y, epochs=10, lr=1e-2, seed=0).unlearn(model, forget)
    assert torch.equal(state, torch.random.get_rng_state())  # the global torch RNG untouched
    tuned = U.FineTuneOnRetained(x, y, epochs=3, seed=0).unlearn(model, forget)
    # the input model is unchanged; the outputs are new models
    for p, b in zip(model.parameters(), before, strict=True):
        assert torch.equal(p, b)
    keep = np.arange(10, len(y))
    assert _torch_loss(retrained, x[keep], y[keep]) < 0.5 * _torch_loss(model, x[keep], y[keep])
    assert _torch_loss(tuned, x[keep], y[keep]) < _torch_loss(model, x[keep], y[keep])
    # same seed, same model
    again = U.RetrainFromScratch(x, y, epochs=10, lr=1e-2, seed=0).unlearn(model, forget)
    for p, q in zip(retrained.parameters(), again.parameters(), strict=True):
        assert torch.equal(p, q)


def test_fine_tune_sklearn_partial_fit(data):
    from sklearn.linear_model import LogisticRegression, SGDClassifier

    x, y = data
    model = SGDClassifier(loss="log_loss", random_state=0).fit(x, y)
    tuned = U.FineTuneOnRetained(x, y, epochs=2, seed=0).unlearn(model, [1, 2, 3])
    assert not np.allclose(tuned.coef_, model.coef_)
    with pytest.raises(ValidationError, match="partial_fit"):
        U.FineTuneOnRetained(x, y).unlearn(LogisticRegression().fit(x[:20], y[:20]), [0])


def test_no_unlearning_returns_an_equal_copy(data):
    x, y = data
    model = RidgeLstsq().fit(x, y)
    same = U.NoUnlearning().unlearn(model, [0])
    assert same is not model
    np.testing.assert_array_equal(same.coef_, model.coef_)


@pytest.mark.parametrize(
    ("forget", "field"),
    [
        ([200], "positions must be in"),
        ([1, 1], "repeated"),
        (np.ones(3, bool), "boolean mask"),
        ([0.5], "integer positions"),
        (np.ones(N_BASE + N_FORGET, bool), "forgets every record"),
    ],
)
def test_unlearner_bad_forget_idx(data, forget, field):
    x, y = data
    with pytest.raises(ValidationError, match=field):
        U.RetrainFromScratch(x, y).unlearn(RidgeLstsq(), forget)


def test_unlearner_bad_construction_and_model(data):
    x, y = data
    with pytest.raises(ValidationError, match="labels"):
        U.RetrainFromScratch(x, y[:-1])
    with pytest.raises(ValidationError, match="epochs"):
        U.FineTuneOnRetained(x, y, epochs=0)
    with pytest.raises(ValidationError, match="model"):
        U.RetrainFromScratch(x, y).unlearn(object(), [0])
