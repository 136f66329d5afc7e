"""Masked-LM pseudo-log-likelihood and the likelihood-ratio attack (Mireshghallah et al. 2022)
against an independent computation: one masked copy at a time, no padding, plain
``torch.log_softmax`` in float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")


from miaudit.exceptions import MissingRequirementError, ValidationError
from miaudit.llm import score_texts
from miaudit.llm.mlm import load_masked_lm, pseudo_log_likelihood, token_pseudo_log_probs
from miaudit.llm.tiny import (
    tiny_bert,
    tiny_gpt2,
    train_bpe_tokenizer,
    train_mlm_tokenizer,
)

CORPUS = [
    "Return the number of items in a container.",
    "Open file and return a corresponding file object.",
    "The quick brown fox jumps over the lazy dog.",
    "Lists are mutable sequences, typically used to store collections of items.",
    "Tuples are immutable sequences, typically used to store heterogeneous data.",
    "A dictionary maps hashable keys to arbitrary objects.",
    "Strings are immutable sequences of Unicode code points.",
    "Sets are unordered collections of distinct hashable objects.",
]
#: Context of the tiny BERT: the longest text below needs several windows.
CONTEXT = 16


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Tiny models: one torch thread is fastest and deterministic on a shared machine."""


def _mlm_tokenizer(texts):
    return train_mlm_tokenizer(texts, vocab_size=200)


def _bert(tok, seed):
    model = tiny_bert(tok, max_positions=CONTEXT, seed=seed)
    with torch.no_grad():  # sharper than the random init
        for p in model.parameters():
            p.mul_(3.0)
    return model.eval()


@pytest.fixture(scope="module")
def mlm():
    tok = _mlm_tokenizer(CORPUS * 2)
    return _bert(tok, 0), _bert(tok, 1), tok


def _independent_pll(model, tok, text):
    """log p(x_t | x_\\t) one masked copy at a time; windows of CONTEXT tokens with [CLS] and
    [SEP] around each consecutive piece of the text's tokens."""
    body = tok(text, add_special_tokens=False)["input_ids"]
    room = CONTEXT - 2
    out = []
    for i in range(0, len(body), room):
        window = [tok.cls_token_id, *body[i : i + room], tok.sep_token_id]
        for pos in range(1, len(window) - 1):
            x = torch.tensor([window])
            x[0, pos] = tok.mask_token_id
            with torch.no_grad():
                logits = model(input_ids=x).logits[0, pos].double()
            out.append(float(torch.log_softmax(logits, dim=-1)[window[pos]]))
    return np.array(out)


def test_pll_matches_one_masked_copy_at_a_time(mlm):
    model, _, tok = mlm
    texts = [*CORPUS[:4], " ".join(CORPUS[3:7]), "sets"]
    assert len(tok(texts[4])["input_ids"]) > 2 * CONTEXT  # three windows or more
    got = token_pseudo_log_probs(texts, model, tok, rows_per_pass=7)
    for text, g in zip(texts, got, strict=True):
        ref = _independent_pll(model, tok, text)
        np.testing.assert_allclose(g, ref, atol=1e-4, rtol=0)
    pll = pseudo_log_likelihood(texts, model, tok)
    np.testing.assert_allclose(pll, [g.sum() for g in got], atol=1e-4, rtol=0)
    # A text alone scores the same as in a padded batch.
    alone = pseudo_log_likelihood(texts[5:], model, tok)
    assert alone[0] == pytest.approx(pll[5], abs=1e-5)


def test_ratio_attack_formula_and_sign(mlm):
    model, ref, tok = mlm
    texts = CORPUS[:3]
    out = score_texts(
        model, tok, texts, ["mlm_pll", "mlm_ratio"], params={"mlm_ratio": {"reference": (ref, tok)}}
    )
    target_pll = np.array([_independent_pll(model, tok, t).sum() for t in texts])
    ref_pll = np.array([_independent_pll(ref, tok, t).sum() for t in texts])
    np.testing.assert_allclose(out["mlm_pll"], target_pll, atol=1e-4, rtol=0)
    np.testing.assert_allclose(out["mlm_ratio"], target_pll - ref_pll, atol=1e-4, rtol=0)
    # The reference from mask_model gives the same numbers.
    via_mask = score_texts(model, tok, texts, ["mlm_ratio"], mask_model=(ref, tok))
    np.testing.assert_allclose(via_mask["mlm_ratio"], out["mlm_ratio"], atol=1e-9)


def _train_mlm(model, tok, texts, steps):
    """Fine-tune on ``texts``: every step masks each text token in turn (the PLL objective)."""
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    batch = tok(
        texts,
        padding=True,
        truncation=True,
        max_length=CONTEXT,
        return_tensors="pt",
        return_special_tokens_mask=True,
    )
    ids, att = batch["input_ids"], batch["attention_mask"]
    own = (batch["special_tokens_mask"] == 0) & (att == 1)
    rows, cols = own.nonzero(as_tuple=True)
    x = ids[rows].clone()
    labels = torch.full_like(x, -100)
    r = torch.arange(len(rows))
    labels[r, cols] = x[r, cols]
    x[r, cols] = tok.mask_token_id
    for _ in range(steps):
        opt.zero_grad()
        model(input_ids=x, attention_mask=att[rows], labels=labels).loss.backward()
        opt.step()
    return model.eval()


def test_fine_tuned_members_score_higher(mlm):
    """Sign convention: a copy of the reference fine-tuned on 4 member texts gives every member
    a higher PLL_target − PLL_ref than every non-member (higher = member)."""
    _, ref, tok = mlm
    target = _bert(tok, 1)
    members, non_members = CORPUS[:4], CORPUS[4:]
    _train_mlm(target, tok, members, steps=30)
    scores = score_texts(
        target,
        tok,
        members + non_members,
        ["mlm_ratio"],
        params={"mlm_ratio": {"reference": (ref, tok)}},
    )["mlm_ratio"]
    assert scores[:4].min() > scores[4:].max()
    assert scores[:4].min() > 0


def test_folder_loading_and_errors(mlm, tmp_path):
    model, ref, tok = mlm
    model.save_pretrained(tmp_path / "t")
    tok.save_pretrained(tmp_path / "t")
    ref.save_pretrained(tmp_path / "r")
    tok.save_pretrained(tmp_path / "r")
    loaded, ltok = load_masked_lm(tmp_path / "t")
    texts = CORPUS[:2]
    np.testing.assert_allclose(
        pseudo_log_likelihood(texts, loaded, ltok),
        pseudo_log_likelihood(texts, model, tok),
        atol=1e-5,
    )
    # A causal audited model with the masked LMs as attack parameters (the config route).
    gtok = train_bpe_tokenizer(CORPUS, 300)
    causal = tiny_gpt2(gtok, n_embd=16, n_layer=1, n_head=2)
    out = score_texts(
        causal,
        gtok,
        texts,
        ["mlm_ratio"],
        params={"mlm_ratio": {"model": str(tmp_path / "t"), "reference": str(tmp_path / "r")}},
    )["mlm_ratio"]
    expected = pseudo_log_likelihood(texts, model, tok) - pseudo_log_likelihood(texts, ref, tok)
    np.testing.assert_allclose(out, expected, atol=1e-4)
    with pytest.raises(MissingRequirementError, match="not a masked LM"):
        score_texts(causal, gtok, texts, ["mlm_pll"])
    with pytest.raises(MissingRequirementError, match="reference masked LM"):
        score_texts(model, tok, texts, ["mlm_ratio"])
    with pytest.raises(ValidationError, match="mask token"):
        pseudo_log_likelihood(texts, model, gtok)
    with pytest.raises(ValidationError, match="not a folder"):
        load_masked_lm(tmp_path / "missing")
    with pytest.raises(ValidationError, match=r"mlm_ratio\.reference"):
        score_texts(model, tok, texts, ["mlm_ratio"], params={"mlm_ratio": {"reference": 3}})


def test_mlm_corruption_follows_berts_recipe():
    """15% of the non-special tokens are targets; of those 80% become the mask token, 10% a
    random token, 10% stay (binomial tolerances at 5 sigma); special tokens are never
    targets; labels are -100 off target."""
    from miaudit.llm.tiny import (
        MLM_MASK_SHARE,
        MLM_RANDOM_SHARE,
        MLM_TARGET_RATE,
        _mask_for_mlm,
    )

    vocab, mask_id = 1000, 4
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(5, vocab, (400, 250), generator=gen)
    special = torch.zeros_like(x, dtype=torch.bool)
    special[:, 0] = special[:, -1] = True
    inputs, labels = _mask_for_mlm(x, special, mask_id, vocab, gen)
    target = labels != -100
    assert not target[special].any()
    torch.testing.assert_close(labels[target], x[target])
    n = int((~special).sum())
    rate = float(target.sum()) / n
    assert abs(rate - MLM_TARGET_RATE) < 5 * np.sqrt(MLM_TARGET_RATE * (1 - MLM_TARGET_RATE) / n)
    t = int(target.sum())
    masked = float((inputs[target] == mask_id).sum()) / t
    kept = float((inputs[target] == x[target]).sum()) / t  # a random token may hit the original
    kept_expected = 1 - MLM_MASK_SHARE - MLM_RANDOM_SHARE + MLM_RANDOM_SHARE / vocab
    for got, want in ((masked, MLM_MASK_SHARE), (kept, kept_expected)):
        assert abs(got - want) < 5 * np.sqrt(want * (1 - want) / t)
    torch.testing.assert_close(inputs[~target], x[~target])  # off target nothing changes


def test_train_masked_lm_fits_its_texts():
    """BERT's objective on a few texts: the loss falls, and the trained model gives those
    texts a higher pseudo-log-likelihood than an untrained copy."""
    from miaudit.llm.tiny import train_masked_lm

    tok = train_mlm_tokenizer(CORPUS, 200)
    untrained = tiny_bert(tok, max_positions=32, seed=3)
    model = tiny_bert(tok, max_positions=32, seed=3)
    losses = train_masked_lm(
        model, tok, CORPUS * 4, epochs=30, batch_size=8, block_size=32, learning_rate=3e-3,
        seed=0, quiet=True,
    )  # fmt: skip
    assert not model.training
    assert np.mean(losses[-5:]) < 0.85 * np.mean(losses[:5])
    after = pseudo_log_likelihood(CORPUS, model, tok)
    before = pseudo_log_likelihood(CORPUS, untrained, tok)
    assert (after > before).all()


def test_mlm_pll_and_ratio_share_the_targets_pass(mlm, monkeypatch):
    """Asked together, mlm_pll and mlm_ratio compute the audited model's PLL once (two PLL
    runs in all: target and reference), with the same numbers as asked alone."""
    import miaudit.llm.attacks as attacks_module

    model, ref, tok = mlm
    calls = []
    real = attacks_module.pseudo_log_likelihood

    def counting(texts, m, *args, **kw):
        calls.append(m)
        return real(texts, m, *args, **kw)

    monkeypatch.setattr(attacks_module, "pseudo_log_likelihood", counting)
    both = score_texts(model, tok, CORPUS[:4], ["mlm_pll", "mlm_ratio"], mask_model=(ref, tok))
    assert [c is model for c in calls] == [True, False]
    alone = score_texts(model, tok, CORPUS[:4], ["mlm_ratio"], mask_model=(ref, tok))
    np.testing.assert_allclose(both["mlm_ratio"], alone["mlm_ratio"], atol=1e-12)


def test_mlm_tokenizer_is_the_same_in_every_process(tmp_path):
    """The masked-LM tokenizer's vocabulary does not depend on the process: two fresh
    interpreters give the same ids on 300 Python-docs paragraphs (tokenizers' WordPiece
    trainer gave a different vocabulary in each of three runs on such text)."""
    import json
    import subprocess
    import sys

    from miaudit.llm.corpus import python_docs_corpus

    corpus = python_docs_corpus()
    texts = [corpus[i].text for i in np.random.default_rng(0).choice(len(corpus), 300, False)]
    path = tmp_path / "texts.json"
    path.write_text(json.dumps(texts))
    code = (
        "import json, sys; from pathlib import Path; "
        "from miaudit.llm.tiny import train_mlm_tokenizer; "
        "t = train_mlm_tokenizer(json.loads(Path(sys.argv[1]).read_text()), 512); "
        "print(json.dumps(sorted(t.get_vocab().items())))"
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
        ).stdout
        for _ in range(2)
    ]
    assert runs[0] == runs[1]
    vocab = dict(json.loads(runs[0]))
    assert len(vocab) == 512
    assert [vocab[t] for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")] == [0, 1, 2, 3, 4]
    tok = train_mlm_tokenizer(CORPUS * 3, 120)
    ids = tok("Sets are unordered")["input_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert tok.unk_token_id not in ids


def test_mlm_training_windows_are_cls_text_sep():
    """Every training window is [CLS] body [SEP] (the layout scoring uses)."""
    from miaudit.llm.tiny import _mlm_windows

    body = torch.arange(12).view(3, 4) + 10
    w = _mlm_windows(body, 2, 3)
    assert w.shape == (3, 6)
    assert (w[:, 0] == 2).all() and (w[:, -1] == 3).all()
    torch.testing.assert_close(w[:, 1:-1], body)
