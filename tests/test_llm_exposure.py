"""Exposure by extrapolation (Carlini et al. 2019, Sec. 4.3) against independent computations:
candidates drawn from a known skew-normal (the true ``−log2 CDF`` is known), and exact
enumeration of a small secret space."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

pytest.importorskip("transformers")

from miaudit.exceptions import ValidationError
from miaudit.llm.canaries import (
    CanarySet,
    exposure,
    exposure_estimates,
    make_canaries,
    skew_normal_exposure,
)
from miaudit.llm.target import LanguageModelTarget, TokenStats

#: Quantiles of the true distribution at which secrets are placed: exposures of 6.6, 13.3
#: and 19.9 bits.
QUANTILES = (1e-2, 1e-4, 1e-6)


@pytest.mark.parametrize("shape", [4.0, -3.0])
def test_extrapolation_matches_a_known_skew_normal(shape):
    """5,000 candidates from SN(a, 50, 8): the fitted ``−log2 CDF`` at the ``q`` quantile must
    be ``−log2 q`` — on average over 10 draws within 0.3 bits, each draw within 2 bits (the
    spread measured for the MLE tail at this sample size)."""
    true = stats.skewnorm(shape, 50.0, 8.0)
    errors = {q: [] for q in QUANTILES}
    for seed in range(10):
        x = true.rvs(size=5000, random_state=np.random.default_rng(seed))
        for q in QUANTILES:
            bits, fit = skew_normal_exposure(x, float(true.ppf(q)))
            errors[q].append(bits - (-math.log2(q)))
            assert not fit.poor_fit
            assert np.sign(fit.shape) == np.sign(shape)
    for q, e in errors.items():
        assert abs(np.mean(e)) < 0.3, (q, e)
        assert np.max(np.abs(e)) < 2.0, (q, e)


def test_extrapolation_caps_and_flags():
    x = stats.skewnorm(2.0, 0.0, 1.0).rvs(size=500, random_state=np.random.default_rng(0))
    far = -50.0  # CDF underflows to 0
    assert skew_normal_exposure(x, far)[0] == math.inf
    assert skew_normal_exposure(x, far, space_size=10**6)[0] == pytest.approx(math.log2(10**6))
    assert math.isnan(skew_normal_exposure(np.ones(50), 0.0)[0])
    bimodal = np.concatenate([np.full(250, -5.0), np.full(250, 5.0)])
    bimodal += np.random.default_rng(1).normal(0, 0.1, 500)
    assert skew_normal_exposure(bimodal, 0.0)[1].poor_fit
    with pytest.raises(ValidationError, match="candidates"):
        skew_normal_exposure(np.arange(5.0), 0.0)


class _TableTarget(LanguageModelTarget):
    """log-perplexity of a canary = ``table[int(secret digits)]``."""

    def __init__(self, table: np.ndarray) -> None:
        self.table = table

    def token_stats(self, texts, **kw):  # type: ignore[override]
        out = []
        for t in texts:
            value = self.table[int(t.rsplit("is ", 1)[1].replace(" ", ""))]
            out.append(TokenStats(np.array([-value / 2, -value / 2])))
        return out


def test_extrapolation_agrees_with_exact_enumeration():
    """A space of 10^4 secrets whose log-perplexities are drawn once from a skew-normal: the
    exact exposure ``log2 |S| − log2 rank`` over the WHOLE space (sorted here independently)
    against the estimate from 1,000 random candidates, for secrets of exact rank 1 ... 1000.
    The sampled estimate with every secret as a candidate must equal the exact one."""
    length, alphabet = 4, "0123456789"
    space = len(alphabet) ** length
    table = stats.skewnorm(3.0, 40.0, 6.0).rvs(size=space, random_state=np.random.default_rng(7))
    order = np.argsort(table, kind="stable")  # likeliest (smallest log-perplexity) first
    wanted_ranks = [1, 3, 10, 30, 100, 300, 1000]
    chosen = [int(order[r - 1]) for r in wanted_ranks]
    secrets = [" ".join(f"{i:04d}") for i in chosen]
    canaries = CanarySet(
        secrets=secrets,
        texts=[f"the secret code is {s}" for s in secrets],
        tier=np.ones(len(secrets), dtype=np.int64),
        inserted=np.ones(len(secrets), dtype=bool),
        alphabet=alphabet,
        length=length,
    )
    target = _TableTarget(table)
    exact = np.array([math.log2(space) - math.log2(r) for r in wanted_ranks])

    full = exposure(target, canaries, n_candidates=space, seed=0)
    np.testing.assert_allclose(full, exact, atol=1e-12)

    est = exposure_estimates(target, canaries, n_candidates=1000, seed=0)
    np.testing.assert_array_equal(est.sampled, exposure(target, canaries, n_candidates=1000))
    assert est.space_size == space
    # The sampled estimate is capped at log2 1000 (= 9.97 bits), the extrapolated is not.
    assert est.sampled.max() <= math.log2(1000) + 1e-12
    assert est.extrapolated[0] > math.log2(1000) + 2

    # Over 10 draws of the 1,000 candidates. At rank 1 and 3 the exact exposure itself is
    # noisy (the space's own three extremes) and the estimate is a tail extrapolation: within
    # 1.7 bits. Inside the sample (rank >= 100): within 0.7 bits, unbiased to 0.15.
    errors = []
    for seed in range(10):
        e = exposure_estimates(target, canaries, n_candidates=1000, seed=seed)
        assert np.all(e.extrapolated <= math.log2(space) + 1e-12)
        errors.append(e.extrapolated - exact)
    err = np.array(errors)
    assert np.abs(err[:, :2]).max() < 1.7
    assert np.abs(err[:, 2:4]).max() < 1.5 and np.abs(err[:, 2:4].mean(0)).max() < 0.6
    assert np.abs(err[:, 4:]).max() < 0.7 and np.abs(err[:, 4:].mean(0)).max() < 0.15
    d = est.to_dict()
    assert set(d["methods"]) == {"exposure_sampled", "exposure_extrapolated"}
    assert d["reliable"] == est.reliable.tolist()
    assert not est.reliable[0] and est.reliable[-1]


def test_exposure_estimates_on_a_tiny_model():
    """End to end on a real (untrained) tiny GPT-2: finite estimates, sampled == exposure()."""
    from miaudit.llm.tiny import tiny_gpt2, train_bpe_tokenizer

    canaries = make_canaries(4, seed=0)
    tok = train_bpe_tokenizer(canaries.texts * 3, 300)
    target = LanguageModelTarget(tiny_gpt2(tok, n_embd=16, n_layer=1, n_head=2), tok)
    est = exposure_estimates(target, canaries, which=[0, 2], n_candidates=64, seed=3)
    np.testing.assert_array_equal(
        est.sampled, exposure(target, canaries, which=[0, 2], n_candidates=64, seed=3)
    )
    assert np.all(np.isfinite(est.extrapolated)) and np.all(est.extrapolated >= 0)
    assert list(est.which) == [0, 2]
    with pytest.raises(ValidationError, match="n_candidates"):
        exposure_estimates(target, canaries, n_candidates=8)
