"""DC-PDD (Zhang et al., EMNLP 2024) against an independent computation: a plain per-text
forward pass, ``torch.log_softmax`` in float64, frequencies counted with ``collections.Counter``,
first occurrences and clipping in plain Python."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from miaudit.exceptions import MissingRequirementError, ValidationError
from miaudit.llm import score_texts
from miaudit.llm.dcpdd import dc_pdd_score, first_occurrences, token_frequencies
from miaudit.llm.tiny import tiny_gpt2, train_bpe_tokenizer

TEXTS = [
    "Return the number of items in a container, the number of items.",
    "Open file and return a corresponding file object.",
    "The quick brown fox jumps over the lazy dog, the dog sleeps.",
    "x = 1",
]
CORPUS = [
    "Lists are mutable sequences, typically used to store collections of items.",
    "A dictionary maps hashable keys to arbitrary objects in a container.",
    "The file object has a read method and a write method.",
    "Strings are immutable sequences of code points; the number of them is the length.",
]


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Tiny models: one torch thread is fastest and deterministic on a shared machine."""


@pytest.fixture(scope="module")
def lm():
    tok = train_bpe_tokenizer((TEXTS + CORPUS) * 3, vocab_size=300)
    model = tiny_gpt2(tok, n_positions=64, n_embd=32, n_layer=2, n_head=2, seed=2)
    with torch.no_grad():  # sharper than the random init: probabilities spread over (0, 1)
        for p in model.parameters():
            p.mul_(4.0)
    return model, tok


def _independent(model, tok, text, corpus, a):
    counts = Counter(t for c in corpus for t in tok(c)["input_ids"])
    n_corpus, vocab = sum(counts.values()), len(tok)
    ids = tok(text)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].double()
    logp = torch.log_softmax(logits, dim=-1)
    seen, terms = set(), []
    for t in range(1, len(ids)):
        if ids[t] in seen:
            continue
        seen.add(ids[t])
        p = math.exp(float(logp[t - 1, ids[t]]))
        f = (counts[ids[t]] + 1) / (n_corpus + vocab)
        terms.append(min(-p * math.log(f), a))
    return sum(terms) / len(terms), terms


def test_golden_values():
    """Hand computation: ids [5, 7, 5, 9], p = [0.5, 0.1, 0.9, 0.2], f = counts + 1 over
    N' + |V| with counts {5: 3, 7: 0, 9: 1}, N' = 4, |V| = 10 (so f = 4/14, 1/14, 2/14)."""
    counts = np.zeros(10, dtype=np.int64)
    counts[[5, 9]] = [3, 1]
    log_f = np.log((counts + 1) / (4 + 10))
    lp = np.log([0.5, 0.1, 0.9, 0.2])
    alpha = [-0.5 * math.log(4 / 14), -0.1 * math.log(1 / 14), -0.2 * math.log(2 / 14)]
    assert dc_pdd_score(lp, [5, 7, 5, 9], log_f, a=10.0) == pytest.approx(np.mean(alpha))
    # alpha = 0.626, 0.264, 0.389: a = 0.5 clips the first only; a = 0.3 the first and last.
    assert dc_pdd_score(lp, [5, 7, 5, 9], log_f, a=0.5) == pytest.approx(
        np.mean([0.5, alpha[1], alpha[2]])
    )
    assert dc_pdd_score(lp, [5, 7, 5, 9], log_f, a=0.3) == pytest.approx(
        np.mean([0.3, alpha[1], 0.3])
    )
    np.testing.assert_array_equal(first_occurrences([5, 7, 5, 9, 7]), [0, 1, 3])


@pytest.mark.parametrize("a", [0.01, 0.05, 10.0])
def test_matches_independent_computation(lm, a):
    model, tok = lm
    got = score_texts(model, tok, TEXTS, ["dc_pdd"], params={"dc_pdd": {"corpus": CORPUS, "a": a}})
    expected = [_independent(model, tok, t, CORPUS, a)[0] for t in TEXTS]
    np.testing.assert_allclose(got["dc_pdd"], expected, rtol=1e-5, atol=1e-8)


def test_clipping_is_exercised(lm):
    """At a = 0.05 some terms are clipped and some are not, so the comparison above checks
    both branches."""
    model, tok = lm
    terms = [x for t in TEXTS for x in _independent(model, tok, t, CORPUS, math.inf)[1]]
    assert min(terms) < 0.05 < max(terms)


def test_frequency_table_and_corpus_sources(lm, tmp_path):
    model, tok = lm
    freq = token_frequencies(CORPUS, tok)
    counts = Counter(t for c in CORPUS for t in tok(c)["input_ids"])
    assert freq.n_tokens == sum(counts.values()) and freq.n_texts == len(CORPUS)
    v = len(tok)
    some = next(iter(counts))
    assert freq.log_frequencies[some] == pytest.approx(
        math.log((counts[some] + 1) / (freq.n_tokens + v))
    )
    unseen = next(i for i in range(v) if i not in counts)
    assert freq.log_frequencies[unseen] == pytest.approx(math.log(1 / (freq.n_tokens + v)))
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in CORPUS), encoding="utf-8")
    by_list = score_texts(model, tok, TEXTS, ["dc_pdd"], params={"dc_pdd": {"corpus": CORPUS}})
    by_file = score_texts(model, tok, TEXTS, ["dc_pdd"], params={"dc_pdd": {"corpus": str(path)}})
    by_table = score_texts(model, tok, TEXTS, ["dc_pdd"], params={"dc_pdd": {"corpus": freq}})
    np.testing.assert_array_equal(by_list["dc_pdd"], by_file["dc_pdd"])
    np.testing.assert_array_equal(by_list["dc_pdd"], by_table["dc_pdd"])


def test_bad_input(lm):
    model, tok = lm
    with pytest.raises(MissingRequirementError, match="corpus"):
        score_texts(model, tok, TEXTS, ["dc_pdd"])
    with pytest.raises(ValidationError, match=r"corpus\[1\]: an audited text"):
        score_texts(
            model, tok, TEXTS, ["dc_pdd"], params={"dc_pdd": {"corpus": [CORPUS[0], TEXTS[2]]}}
        )
    with pytest.raises(ValidationError, match=r"dc_pdd\.a"):
        score_texts(model, tok, TEXTS, ["dc_pdd"], params={"dc_pdd": {"corpus": CORPUS, "a": 0}})
    with pytest.raises(ValidationError, match="token_ids"):
        dc_pdd_score(np.zeros(3), [1, 2], np.zeros(5))
