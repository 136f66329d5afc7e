"""`miaudit run` with `mode: llm`: a language model in a local folder, texts in JSONL files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("transformers")

from typer.testing import CliRunner

from miaudit.cli import app
from miaudit.llm.corpus import python_docs_corpus
from miaudit.llm.tiny import tiny_gpt2, train_bpe_tokenizer

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
