"""`miaudit run` with `mode: llm`: a language model in a local folder (causal, or masked with
``llm.model_kind: masked``), texts in JSONL files, DC-PDD's ``llm.frequency_corpus``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("transformers")

from typer.testing import CliRunner

from miaudit.cli import app
from miaudit.config import LLM_MASKED_ATTACKS
from miaudit.exceptions import ValidationError
from miaudit.llm import audit_texts, score_texts
from miaudit.llm.corpus import python_docs_corpus
from miaudit.llm.mlm import MASKED_LM_ATTACKS, pseudo_log_likelihood
from miaudit.llm.tiny import (
    tiny_bert,
    tiny_gpt2,
    train_bpe_tokenizer,
    train_mlm_tokenizer,
)

runner = CliRunner()


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Tiny models: one torch thread is fastest and deterministic on a shared machine."""


def test_run_llm_mode_from_yaml(tmp_path):
    corpus = python_docs_corpus()
    rng = np.random.default_rng(1)
    docs = [corpus[i].text for i in rng.choice(len(corpus), 40, replace=False)]
    tok = train_bpe_tokenizer(docs, 300)
    model = tiny_gpt2(tok, n_positions=64, n_embd=32, n_layer=1, n_head=2)
    model.save_pretrained(tmp_path / "lm")
    tok.save_pretrained(tmp_path / "lm")
    for name, texts in (("members", docs[:20]), ("non_members", docs[20:])):
        with open(tmp_path / f"{name}.jsonl", "w") as f:
            for i, text in enumerate(texts):
                f.write(json.dumps({"id": f"{name}-{i}", "text": text}) + "\n")
    (tmp_path / "audit.yaml").write_text(
        "mode: llm\nseed: 0\nquiet: true\noutput: out\n"
        "llm: {model: lm, members: members.jsonl, non_members: non_members.jsonl, "
        "id_field: id, max_length: 64}\n"
        "fprs: [0.1]\n"
    )
    result = runner.invoke(app, ["run", str(tmp_path / "audit.yaml")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert set(metrics["attacks"]) == {"loss", "zlib", "min_k", "min_k_plus_plus"}
    assert metrics["config"]["mode"] == "llm"
    assert "blind_baseline" in json.dumps(metrics["config"]["llm_findings"])
    scores = pd.read_csv(tmp_path / "out" / "scores.csv", index_col="record_id")
    assert {"members-0", "non_members-19"} <= set(scores.index)
    assert scores.loc["members-0", "is_member"] and not scores.loc["non_members-0", "is_member"]


def test_llm_mode_unknown_attack_is_a_config_error(tmp_path):
    (tmp_path / "audit.yaml").write_text(
        "mode: llm\nllm: {model: lm, members: a.jsonl, non_members: b.jsonl}\n"
        "attacks: [min_kk]\n"
    )
    result = runner.invoke(app, ["run", str(tmp_path / "audit.yaml")])
    assert result.exit_code == 2
    assert "Did you mean 'min_k'" in result.output


# ----------------------------------------------------------------------------- masked LMs
def test_config_lists_the_masked_lm_attacks():
    assert LLM_MASKED_ATTACKS == MASKED_LM_ATTACKS


#: Context of the tiny BERT (longer texts are cut into windows).
MLM_CONTEXT = 32


def _mlm_tokenizer(texts: list[str]) -> Any:
    """A BERT-style tokenizer trained here (nothing downloaded)."""
    return train_mlm_tokenizer(texts, vocab_size=300)


def _tiny_bert(tok: Any, seed: int) -> Any:
    return tiny_bert(tok, max_positions=MLM_CONTEXT, n_layer=1, seed=seed)


def _write_texts(path: Path, prefix: str, texts: list[str]) -> None:
    with open(path, "w") as f:
        for i, text in enumerate(texts):
            f.write(json.dumps({"id": f"{prefix}-{i}", "text": text}) + "\n")


@pytest.fixture(scope="module")
def short_docs() -> list[str]:
    """20 short Python-docs texts (the PLL costs one pass per token)."""
    corpus = python_docs_corpus()
    rng = np.random.default_rng(2)
    texts = [corpus[i].text for i in rng.permutation(len(corpus))]
    return [" ".join(t.split()[:24]) for t in texts if len(t.split()) >= 8][:20]


@pytest.fixture
def masked_run(tmp_path: Path, short_docs: list[str]) -> tuple[Path, Any, Any, Any]:
    """A config folder: tiny BERT target ``bert``, reference ``bert-ref``, texts."""
    tok = _mlm_tokenizer(short_docs)
    target, ref = _tiny_bert(tok, 0), _tiny_bert(tok, 1)
    for name, model in (("bert", target), ("bert-ref", ref)):
        model.save_pretrained(tmp_path / "cfg" / name)
        tok.save_pretrained(tmp_path / "cfg" / name)
    _write_texts(tmp_path / "cfg" / "members.jsonl", "members", short_docs[:10])
    _write_texts(tmp_path / "cfg" / "non_members.jsonl", "non_members", short_docs[10:])
    return tmp_path / "cfg", target, ref, tok


def _masked_yaml(folder: Path, llm_extra: str = "", rest: str = "") -> Path:
    path = folder / "audit.yaml"
    path.write_text(
        "mode: llm\nseed: 0\nquiet: true\noutput: out\nfprs: [0.2]\n"
        "llm: {model: bert, model_kind: masked, members: members.jsonl, "
        f"non_members: non_members.jsonl, id_field: id{llm_extra}}}\n{rest}"
    )
    return path


def test_run_masked_lm_from_yaml(masked_run, short_docs):
    folder, target, ref, tok = masked_run
    result = runner.invoke(app, ["run", str(_masked_yaml(folder, ", mask_model: bert-ref"))])
    assert result.exit_code == 0, result.output
    metrics = json.loads((folder / "out" / "metrics.json").read_text())
    # Default attacks of a masked LM: mlm_pll, and mlm_ratio with its reference masked LM.
    assert set(metrics["attacks"]) == {"mlm_pll", "mlm_ratio"}
    assert metrics["config"]["attacks"] == [
        {"name": "mlm_pll", "params": {}, "label": None},
        {"name": "mlm_ratio", "params": {}, "label": None},
    ]
    # The scores are the PLLs of the saved models, loaded as masked LMs.
    scores = pd.read_csv(folder / "out" / "scores.csv", index_col="record_id")
    ids = [f"members-{i}" for i in range(10)] + [f"non_members-{i}" for i in range(10)]
    pll_t = pseudo_log_likelihood(short_docs, target, tok)
    pll_r = pseudo_log_likelihood(short_docs, ref, tok)
    np.testing.assert_allclose(scores.loc[ids, "mlm_pll"], pll_t, atol=1e-4)
    np.testing.assert_allclose(scores.loc[ids, "mlm_ratio"], pll_t - pll_r, atol=1e-4)
    # Without mask_model the default is mlm_pll alone.
    result = runner.invoke(app, ["run", str(_masked_yaml(folder))])
    assert result.exit_code == 0, result.output
    metrics = json.loads((folder / "out" / "metrics.json").read_text())
    assert set(metrics["attacks"]) == {"mlm_pll"}


def test_masked_lm_config_errors(masked_run):
    folder = masked_run[0]
    for llm_extra, rest, words in (
        ("", "attacks: [mlm_pll, loss]\n", ["'loss'", "mlm_pll, mlm_ratio", "model_kind"]),
        ("", "attacks: [mlm_ratio]\n", ["mlm_ratio", "llm.mask_model"]),
        (", reference: bert-ref", "", ["llm.reference", "llm.mask_model"]),
        (", references: {n: 2}", "", ["llm.references", "masked"]),
    ):
        result = runner.invoke(app, ["run", str(_masked_yaml(folder, llm_extra, rest))])
        assert result.exit_code == 2, result.output
        for word in words:
            assert word in result.output, (word, result.output)
    assert not (folder / "out").exists()
    # In Python, a masked model refuses the causal attacks too.
    _, target, _, tok = masked_run
    with pytest.raises(ValidationError, match="valid attacks: mlm_pll, mlm_ratio"):
        audit_texts(["a text here"], ["another text"], model=target, tokenizer=tok,
                    attacks=["mlm_pll", "zlib"])  # fmt: skip


# ----------------------------------------------------------------------------- DC-PDD corpus
def test_frequency_corpus_feeds_dc_pdd(tmp_path):
    corpus = python_docs_corpus()
    rng = np.random.default_rng(4)
    docs = [corpus[i].text for i in rng.choice(len(corpus), 30, replace=False)]
    audited, reference = docs[:20], docs[20:]
    tok = train_bpe_tokenizer(docs, 300)
    model = tiny_gpt2(tok, n_positions=64, n_embd=32, n_layer=1, n_head=2)
    folder = tmp_path / "cfg"
    model.save_pretrained(folder / "lm")
    tok.save_pretrained(folder / "lm")
    _write_texts(folder / "members.jsonl", "members", audited[:10])
    _write_texts(folder / "non_members.jsonl", "non_members", audited[10:])
    (folder / "corpus").mkdir()
    for i, text in enumerate(reference):
        (folder / "corpus" / f"{i}.txt").write_text(text)

    def run(attacks: str, llm_extra: str) -> Any:
        (folder / "audit.yaml").write_text(
            "mode: llm\nseed: 0\nquiet: true\noutput: out\nfprs: [0.1]\n"
            "llm: {model: lm, members: members.jsonl, non_members: non_members.jsonl, "
            f"id_field: id, max_length: 64{llm_extra}}}\nattacks: {attacks}\n"
        )
        return runner.invoke(app, ["run", str(folder / "audit.yaml")])

    # The corpus path is relative to the config file (CliRunner runs from the repository).
    result = run("[loss, dc_pdd]", ", frequency_corpus: corpus")
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(folder / "out" / "scores.csv", index_col="record_id")
    ids = [f"members-{i}" for i in range(10)] + [f"non_members-{i}" for i in range(10)]
    expected = score_texts(
        model, tok, audited, ["dc_pdd"], params={"dc_pdd": {"corpus": reference}}
    )
    np.testing.assert_allclose(scores.loc[ids, "dc_pdd"], expected["dc_pdd"], rtol=1e-9)
    metrics = json.loads((folder / "out" / "metrics.json").read_text())
    assert metrics["attacks"]["dc_pdd"]["params"]["corpus"] == str(folder / "corpus")
    # The attack's own corpus wins over llm.frequency_corpus.
    own = "[{name: dc_pdd, params: {corpus: " + json.dumps(str(folder / "members.jsonl")) + "}}]"
    result = run(own, ", frequency_corpus: corpus")
    assert result.exit_code != 0 and "audited text is in the reference corpus" in result.output
    # No corpus at all: a config error before any model is loaded.
    result = run("[dc_pdd]", "")
    assert result.exit_code == 2, result.output
    assert "llm.frequency_corpus" in result.output and "dc_pdd" in result.output
