"""Canaries: randomised insertion, exposure (Carlini et al. 2019), detection after training."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("transformers")

from miaudit.exceptions import ValidationError
from miaudit.llm.audit import audit_canaries
from miaudit.llm.canaries import exposure, insert_canaries, make_canaries
from miaudit.llm.target import LanguageModelTarget, TokenStats


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Tiny models: one torch thread is fastest and deterministic on a shared machine."""


def test_make_and_insert():
    c = make_canaries(120, seed=3)
    assert len(set(c.secrets)) == 120
    assert all(t == f"the secret code is {s}" for t, s in zip(c.texts, c.secrets, strict=True))
    assert all(len(s.split()) == 6 for s in c.secrets)
    assert list(c.tier[:6]) == [1, 4, 16, 1, 4, 16]
    assert 40 < c.inserted.sum() < 80  # a fair coin
    np.testing.assert_array_equal(c.copies, np.where(c.inserted, c.tier, 0))
    train = insert_canaries(["doc one", "doc two"], c, seed=0)
    assert len(train) == 2 + int(c.copies.sum())
    for i in range(120):
        assert train.count(c.texts[i]) == c.copies[i]
    again = make_canaries(120, seed=3)
    assert again.secrets == c.secrets and (again.inserted == c.inserted).all()


def test_make_canaries_bad_input():
    with pytest.raises(ValidationError, match="template"):
        make_canaries(10, template="no slot")
    with pytest.raises(ValidationError, match="tiers"):
        make_canaries(10, tiers=(1, 0))
    with pytest.raises(ValidationError, match="larger secret space"):
        make_canaries(10, alphabet="01", length=2)


class _StubTarget(LanguageModelTarget):
    """log-perplexity of a canary = the secret read as a number (records what it scored)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def token_stats(self, texts, **kw):  # type: ignore[override]
        self.seen.extend(texts)
        out = []
        for t in texts:
            value = float(t.rsplit("is ", 1)[1].replace(" ", ""))
            out.append(TokenStats(np.array([-value / 2, -value / 2])))
        return out


def test_exposure_formula():
    c = make_canaries(10, seed=0)
    stub = _StubTarget()
    ex = exposure(stub, c, which=[0, 3], n_candidates=50, seed=1)
    for j, i in enumerate([0, 3]):
        block = stub.seen[j * 50 : (j + 1) * 50]
        assert block[0] == c.texts[i]
        values = [float(t.rsplit("is ", 1)[1].replace(" ", "")) for t in block]
        assert len(set(values)) == 50
        rank = 1 + sum(v <= values[0] for v in values[1:])
        assert ex[j] == pytest.approx(math.log2(50) - math.log2(rank))
    with pytest.raises(ValidationError, match="n_candidates"):
        exposure(stub, c, n_candidates=1)


def test_trained_model_exposes_repeated_canaries():
    """A tiny GPT-2 trained on canary copies (tiers 1/4/16) plus real text: the 16-times
    canaries are detected by LOSS and Min-K%++ far above 1 % TPR at 1 % FPR, and exposure
    grows with repetitions."""
    from miaudit.llm.corpus import python_docs_corpus
    from miaudit.llm.tiny import tiny_gpt2, train_bpe_tokenizer, train_causal_lm

    docs = [r.text for r in python_docs_corpus()[:60]]
    canaries = make_canaries(90, seed=0)
    tok = train_bpe_tokenizer(docs + canaries.texts, 512)
    model = tiny_gpt2(tok, n_positions=64, n_embd=64, n_layer=2, n_head=4)
    train = insert_canaries(docs[:20], canaries, seed=1)
    train_causal_lm(
        model,
        tok,
        train,
        epochs=20,
        batch_size=8,
        block_size=64,
        learning_rate=3e-3,
        quiet=True,
    )
    table = audit_canaries(
        LanguageModelTarget(model, tok, batch_size=64),
        canaries,
        n_candidates=64,
        exposure_per_tier=8,
        quiet=True,
    )
    assert table.loc[16, "tpr_loss"] >= 0.5
    assert table.loc[16, "tpr_min_k_plus_plus"] >= 0.3
    assert table.loc[16, "auc_loss"] > 0.95
    ex = table["exposure_mean"]
    assert ex[16] > ex[4] > ex[1]
    assert ex[16] > ex["control"] + 2
    # the extrapolation beside it: never below the sampled rank's cap for a secret ranked
    # first, and it orders the tiers the same way
    extrapolated = table["exposure_extrapolated_mean"]
    assert extrapolated[16] > extrapolated["control"] + 2
    assert table["exposure_extrapolation_reliable"].between(0, 1).all()
