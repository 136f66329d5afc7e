"""Token-level LLM attack scores against an independent per-text computation.

The reference computation is deliberately plain: one text at a time, no padding, no chunking of
the vocabulary, ``torch.log_softmax`` in float64, ``zlib.compress`` — nothing shared with the
batched code under test.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from miaudit.exceptions import MissingRequirementError, UnknownNameError, ValidationError
from miaudit.llm import LanguageModelTarget, score_texts
from miaudit.llm.attacks import LLM_ATTACKS, ONE_PASS_ATTACKS, min_k_mean
from miaudit.llm.tiny import tiny_gpt2, train_bpe_tokenizer

CORPUS = [
    "Return the number of items in a container.",
    "The quick brown fox jumps over the lazy dog, again and again, in 1999.",
    "Open file and return a corresponding file object. If the file cannot be opened, an "
    "OSError is raised.",
    "x = 1",
    "Lists are mutable sequences, typically used to store collections of homogeneous items "
    "(where the precise degree of similarity will vary by application). " * 3,
    "A deliberately different TEXT with UPPER case and digits 0123456789 and symbols !?;",
    "Ünïcödé text: naïve café, 東京, emoji 🙂 — and dashes.",
]


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Tiny models: one torch thread is fastest and deterministic on a shared machine."""


@pytest.fixture(scope="module")
def lm():
    tok = train_bpe_tokenizer(CORPUS * 3, vocab_size=300)
    # A short context (24) so that the longer texts are scored in several windows.
    model = tiny_gpt2(tok, n_positions=24, n_embd=32, n_layer=2, n_head=2, seed=1)
    # Sharper than the random init, so that sigma_t is not tiny and min-k++ is well posed.
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(4.0)
    return model, tok


def _reference_stats(model, tok, text, window):
    """Plain per-text log p_t, mu_t, sigma_t in float64, windows of ``window`` tokens
    overlapping by one token (each token predicted once)."""
    ids = tok(text)["input_ids"]
    ll, mu, sd = [], [], []
    start = 0
    done = 1
    while done < len(ids):
        start = max(0, min(start, done - 1))
        chunk = ids[start : start + window]
        with torch.no_grad():
            logits = model(torch.tensor([chunk])).logits[0].double()
        logp = torch.log_softmax(logits, dim=-1)
        for j in range(done - start, len(chunk)):
            row = logp[j - 1]
            p = row.exp()
            m = float((p * row).sum())
            ll.append(float(row[chunk[j]]))
            mu.append(m)
            sd.append(math.sqrt(float((p * (row - m) ** 2).sum())))
        done = start + len(chunk)
        start += window - 1
    return np.array(ll), np.array(mu), np.array(sd)


def _reference_scores(model, tok, texts, k, window):
    out = {name: [] for name in ONE_PASS_ATTACKS}
    for t in texts:
        ll, mu, sd = _reference_stats(model, tok, t, window)
        n = len(ll)
        m = max(1, math.floor(k * n + 1e-9))
        out["loss"].append(ll.mean())
        out["zlib"].append(ll.mean() / len(zlib.compress(t.encode("utf-8"))))
        out["min_k"].append(np.sort(ll)[:m].mean())
        out["min_k_plus_plus"].append(np.sort((ll - mu) / sd)[:m].mean())
    return {k_: np.array(v) for k_, v in out.items()}


@pytest.mark.parametrize("k", [0.2, 0.5, 1.0])
def test_one_pass_scores_match_independent_computation(lm, k):
    model, tok = lm
    got = score_texts(model, tok, CORPUS, k=k, batch_size=3)
    want = _reference_scores(model, tok, CORPUS, k, window=24)
    assert set(got) == set(ONE_PASS_ATTACKS)
    for name in ONE_PASS_ATTACKS:
        assert got[name].shape == (len(CORPUS),)
        assert got[name].dtype == np.float64
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-4, err_msg=name)


def test_long_text_is_chunked_and_every_token_predicted_once(lm):
    model, tok = lm
    target = LanguageModelTarget(model, tok, batch_size=2)
    text = CORPUS[4]
    n_tokens = len(tok(text)["input_ids"])
    assert n_tokens > 3 * target.max_length
    (stats,) = target.token_stats([text])
    assert stats.n == n_tokens - 1
    ll, _, _ = _reference_stats(model, tok, text, 24)
    np.testing.assert_allclose(stats.log_probs, ll, atol=1e-5)


def test_smaller_stride_gives_more_context(lm):
    model, tok = lm
    text = CORPUS[4]
    a = LanguageModelTarget(model, tok, stride=8).token_stats([text])[0]
    b = LanguageModelTarget(model, tok).token_stats([text])[0]
    assert a.n == b.n
    np.testing.assert_allclose(a.log_probs[:22], b.log_probs[:22], atol=1e-5)  # first window


def test_padding_invariance(lm):
    model, tok = lm
    texts = ["x = 1", CORPUS[1], CORPUS[4], CORPUS[2]]
    together = LanguageModelTarget(model, tok, batch_size=4).token_stats(texts)
    for i, t in enumerate(texts):
        (alone,) = LanguageModelTarget(model, tok, batch_size=1).token_stats([t])
        for field in ("log_probs", "mu", "sigma"):
            np.testing.assert_allclose(
                getattr(together[i], field), getattr(alone, field), atol=1e-5, err_msg=field
            )


def test_k_floor_and_at_least_one():
    v = np.array([3.0, 1.0, 2.0, 5.0, 4.0])
    assert min_k_mean(v, 0.2) == 1.0  # floor(1.0) = 1
    assert min_k_mean(v, 0.1) == 1.0  # floor(0.5) = 0 -> at least one
    assert min_k_mean(v, 0.4) == 1.5
    assert min_k_mean(v, 1.0) == 3.0
    assert min_k_mean(np.arange(10.0), 0.3) == 1.0  # 0.3 * 10 is 3 up to rounding


def test_extra_pass_attacks_run_and_are_consistent(lm):
    model, tok = lm
    texts = CORPUS[:4]
    s = score_texts(
        model,
        tok,
        texts,
        ["loss", "lowercase", "reference", "recall", "gradient_norm"],
        reference=(model, tok),
        recall_prefix=[CORPUS[5]],
    )
    np.testing.assert_allclose(s["reference"], 0.0, atol=1e-9)  # the model against itself
    nll_lower = -score_texts(model, tok, [t.lower() for t in texts], ["loss"])["loss"]
    np.testing.assert_allclose(s["lowercase"], nll_lower / -s["loss"], rtol=1e-9)
    assert np.all(s["gradient_norm"] < 0)
    assert np.all(np.isfinite(s["recall"]))
    ratio = score_texts(
        model,
        tok,
        texts,
        ["reference"],
        reference=(model, tok),
        params={"reference": {"variant": "ratio"}},
    )["reference"]
    np.testing.assert_allclose(ratio, -1.0, rtol=1e-9)


def test_recall_prefix_tokens_are_not_scored(lm):
    model, tok = lm
    target = LanguageModelTarget(model, tok)
    text = CORPUS[1]
    plain = target.token_stats([text], moments=False)[0]
    cond = target.token_stats([text], moments=False, prefix=CORPUS[0] + "\n\n")[0]
    assert cond.n == plain.n


def test_gradient_norm_matches_manual_backward(lm):
    model, tok = lm
    text = CORPUS[0]
    got = score_texts(model, tok, [text], ["gradient_norm"])["gradient_norm"][0]
    ids = torch.tensor([tok(text)["input_ids"][:24]])
    assert len(tok(text)["input_ids"]) <= 24
    model.zero_grad()
    logits = model(ids).logits[0, :-1]
    torch.nn.functional.cross_entropy(logits, ids[0, 1:]).backward()
    norms = [p.grad.double().norm() for p in model.parameters()]
    model.zero_grad()
    assert got == pytest.approx(-float(torch.stack(norms).mean()), rel=1e-5)


def test_neighbourhood_with_tiny_bert(lm):
    transformers = pytest.importorskip("transformers")
    model, tok = lm
    cfg = transformers.BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    mlm = transformers.BertForMaskedLM(cfg)
    texts = CORPUS[:3]
    a = score_texts(
        model,
        tok,
        texts,
        ["neighbourhood"],
        mask_model=(mlm, tok),
        params={"neighbourhood": {"n_neighbours": 4}},
        seed=3,
    )["neighbourhood"]
    b = score_texts(
        model,
        tok,
        texts,
        ["neighbourhood"],
        mask_model=(mlm, tok),
        params={"neighbourhood": {"n_neighbours": 4}},
        seed=3,
    )["neighbourhood"]
    assert np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, b)  # seeded
    from miaudit.llm.neighbours import make_neighbours

    nbs = make_neighbours(texts, mlm, tok, 4, seed=3)
    assert all(1 <= len(g) <= 4 for g in nbs)
    assert all(n != t for g, t in zip(nbs, texts, strict=True) for n in g)


def test_registry_lists_every_attack():
    assert set(LLM_ATTACKS.names()) == {
        "loss",
        "zlib",
        "min_k",
        "min_k_plus_plus",
        "lowercase",
        "reference",
        "neighbourhood",
        "recall",
        "gradient_norm",
        "mlm_pll",
        "mlm_ratio",
        "dc_pdd",
    }


@pytest.mark.parametrize(
    ("texts", "match"),
    [
        (["fine text", ""], r"texts\[1\]: empty"),
        (["fine text", "   "], r"texts\[1\]: empty"),
        ("a single string", "single string"),
        ([], "at least one"),
        (["ok text", 3], r"texts\[1\]: expected a string"),
        (["ok text", "a"], r"texts\[1\]: tokenizes to 1 token"),
    ],
)
def test_bad_texts(lm, texts, match):
    model, tok = lm
    with pytest.raises(ValidationError, match=match):
        score_texts(model, tok, texts)


def test_bad_options(lm):
    model, tok = lm
    with pytest.raises(ValidationError, match="k: expected"):
        score_texts(model, tok, CORPUS[:2], k=0)
    with pytest.raises(UnknownNameError, match="min_k"):
        score_texts(model, tok, CORPUS[:2], ["min_kk"])
    with pytest.raises(MissingRequirementError, match="reference"):
        score_texts(model, tok, CORPUS[:2], ["reference"])
    with pytest.raises(MissingRequirementError, match="recall_prefix"):
        score_texts(model, tok, CORPUS[:2], ["recall"])
    with pytest.raises(ValidationError, match="recall_prefix"):
        score_texts(model, tok, CORPUS[:2], ["recall"], recall_prefix=[CORPUS[0]])
    with pytest.raises(ValidationError, match="variant"):
        score_texts(
            model,
            tok,
            CORPUS[:2],
            ["reference"],
            reference=(model, tok),
            params={"reference": {"variant": "quotient"}},
        )
    with pytest.raises(ValidationError, match="bad parameters"):
        score_texts(model, tok, CORPUS[:2], ["loss"], params={"loss": {"q": 1}})
    with pytest.raises(ValidationError, match="tokenizer"):
        score_texts(model, None, CORPUS[:2])


def test_folder_loading_and_errors(lm, tmp_path):
    model, tok = lm
    folder = tmp_path / "lm"
    model.save_pretrained(folder)
    with pytest.raises(ValidationError, match="no tokenizer"):
        score_texts(folder, None, CORPUS[:2])
    tok.save_pretrained(folder)
    got = score_texts(folder, None, CORPUS[:3])["loss"]
    want = score_texts(model, tok, CORPUS[:3])["loss"]
    np.testing.assert_allclose(got, want, atol=1e-6)
    with pytest.raises(ValidationError, match="not a folder"):
        score_texts(tmp_path / "missing", None, CORPUS[:2])
