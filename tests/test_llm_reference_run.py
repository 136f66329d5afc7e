"""Reference LMs through the store and `mode: llm` with `llm.references` in `miaudit run`.

Tiny models (GPT-2 d=32, 1 layer, 2 epochs, 4 references on 40 Python-docs texts): seconds.
"""

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
from miaudit.config import LLM_REFERENCE_ATTACKS, parse_config
from miaudit.exceptions import ValidationError
from miaudit.llm import score_texts
from miaudit.llm.corpus import python_docs_corpus
from miaudit.llm.reference import (
    REFERENCE_ATTACKS,
    plan_references,
    reference_attacks,
    reference_signals,
    resolve_rmia_a,
)
from miaudit.llm.reference_run import (
    ReferenceSpec,
    make_train_lm,
    stored_reference_signals,
)
from miaudit.llm.target import LanguageModelTarget
from miaudit.llm.tiny import tiny_gpt2, train_bpe_tokenizer, train_causal_lm

runner = CliRunner()
N_TEXTS = 40
N_REFERENCES = 4
EPOCHS = 2.0
SEED = 3
ARCH = {"n_positions": 64, "n_embd": 32, "n_layer": 1, "n_head": 2}
TRAIN = {"batch_size": 8, "block_size": 32, "learning_rate": 1e-2}


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Tiny models: one torch thread is fastest and deterministic on a shared machine."""


@pytest.fixture(scope="module")
def docs() -> list[str]:
    corpus = python_docs_corpus()
    rng = np.random.default_rng(SEED)
    return [corpus[i].text for i in rng.choice(len(corpus), N_TEXTS, replace=False)]


class Counting:
    """``train_lm`` with the demo's trainer that counts its calls."""

    def __init__(self, tok: Any) -> None:
        self.tok = tok
        self.calls = 0

    def __call__(self, texts: list[str], seed: int) -> tuple[Any, Any]:
        self.calls += 1
        model = tiny_gpt2(self.tok, **ARCH, seed=seed)
        train_causal_lm(model, self.tok, texts, epochs=EPOCHS, seed=seed, quiet=True, **TRAIN)
        return model, self.tok


def test_config_lists_every_reference_attack():
    assert LLM_REFERENCE_ATTACKS == tuple(REFERENCE_ATTACKS)


def test_store_gives_the_same_signals_and_trains_only_what_is_missing(docs, tmp_path):
    train_lm = Counting(train_bpe_tokenizer(docs, 300))
    direct, keep = reference_signals(docs, train_lm, N_REFERENCES, seed=SEED)
    desc = {"recipe": "test", "epochs": EPOCHS}
    kw: dict[str, Any] = {"description": desc, "store_root": tmp_path, "seed": SEED}
    train_lm.calls = 0
    stored, keep2, trained = stored_reference_signals(docs, train_lm, N_REFERENCES, **kw)
    np.testing.assert_array_equal(keep2, keep)
    np.testing.assert_allclose(stored, direct, rtol=1e-6)  # same seeds, same training
    assert trained == list(range(N_REFERENCES)) and train_lm.calls == N_REFERENCES
    # Again: everything from the store, nothing trained, identical arrays.
    again, _, trained = stored_reference_signals(docs, train_lm, N_REFERENCES, **kw)
    assert trained == [] and train_lm.calls == N_REFERENCES
    np.testing.assert_array_equal(again, stored)
    # A damaged file is detected by its checksum and only that reference is trained again.
    (folder,) = tmp_path.glob("llm-references-*")
    np.save(folder / "signals_00002.npy", np.zeros(N_TEXTS))
    fixed, _, trained = stored_reference_signals(docs, train_lm, N_REFERENCES, **kw)
    assert trained == [2]
    np.testing.assert_allclose(fixed, stored, rtol=1e-6)
    # Other texts or another description: another folder (keyed by content, not by name).
    stored_reference_signals(docs[1:], train_lm, 2, **kw)
    stored_reference_signals(docs, train_lm, 2, **{**kw, "description": {**desc, "epochs": 3}})
    assert len(list(tmp_path.glob("llm-references-*"))) == 3


def test_demo_recipe_retrains_the_target_architecture(docs):
    tok = train_bpe_tokenizer(docs, 300)
    target = LanguageModelTarget(tiny_gpt2(tok, **ARCH), tok)
    train_lm, desc = make_train_lm(ReferenceSpec(params={"epochs": 1.0, **TRAIN}), target)
    model, tok2 = train_lm(docs[:10], 7)
    assert tok2 is tok and model.config.n_embd == ARCH["n_embd"]
    assert desc["architecture"]["n_layer"] == ARCH["n_layer"] and desc["params"]["epochs"] == 1.0
    # The same seed gives the same weights; the description changes with the parameters.
    again, _ = train_lm(docs[:10], 7)
    for p, q in zip(model.parameters(), again.parameters(), strict=True):
        assert bool((p == q).all())
    _, other = make_train_lm(ReferenceSpec(params={"epochs": 2.0}), target)
    assert other != desc
    with pytest.raises(ValidationError, match="lr"):
        make_train_lm(ReferenceSpec(params={"lr": 1.0}), target)
    with pytest.raises(ValidationError, match="module:function"):
        make_train_lm(ReferenceSpec(train="demo_recipe"), target)


def _write_run(
    tmp_path: Path, docs: list[str], references: str, trust: bool = False, llm_extra: str = ""
) -> Path:
    tok = train_bpe_tokenizer(docs, 300)
    model = tiny_gpt2(tok, **ARCH, seed=SEED)
    members, non_members = docs[: len(docs) // 2], docs[len(docs) // 2 :]
    train_causal_lm(model, tok, members, epochs=EPOCHS, seed=SEED, quiet=True, **TRAIN)
    model.save_pretrained(tmp_path / "lm")
    tok.save_pretrained(tmp_path / "lm")
    for name, texts in (("members", members), ("non_members", non_members)):
        with open(tmp_path / f"{name}.jsonl", "w") as f:
            for i, text in enumerate(texts):
                f.write(json.dumps({"id": f"{name}-{i}", "text": text}) + "\n")
    path = tmp_path / "audit.yaml"
    path.write_text(
        f"mode: llm\nseed: 0\nquiet: true\noutput: out\ntrust_code: {str(trust).lower()}\n"
        "llm: {model: lm, members: members.jsonl, non_members: non_members.jsonl, "
        f"id_field: id, max_length: 64, references: {references}{llm_extra}}}\n"
        "attacks: [loss, min_k]\nfprs: [0.1]\n"
    )
    return path


def test_run_llm_mode_with_references_from_yaml(docs, tmp_path):
    refs = (
        f"{{n: {N_REFERENCES}, epochs: {EPOCHS}, params: {json.dumps(TRAIN)}, "
        "attacks: [lira, lira_offline, attack_r, rmia]}"
    )
    path = _write_run(tmp_path, docs, refs)
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert set(metrics["attacks"]) == {"loss", "min_k", "lira", "lira_offline", "attack_r", "rmia"}
    assert "Zarifzadeh" in metrics["attacks"]["rmia"]["paper"]
    info = metrics["config"]["llm_findings"]["references"]
    assert info["trained_now"] == N_REFERENCES and info["from_store"] == 0
    assert info["params"]["epochs"] == EPOCHS
    assert "rmia" in json.dumps(metrics["config"]["llm_findings"]["blind_baseline"])
    first = (tmp_path / "out" / "scores.csv").read_text()
    assert "rmia" in first.splitlines()[0]
    # A second run reads the references from the store and gives the same scores.
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    info = metrics["config"]["llm_findings"]["references"]
    assert info["trained_now"] == 0 and info["from_store"] == N_REFERENCES
    assert (tmp_path / "out" / "scores.csv").read_text() == first


def test_references_config_errors(tmp_path, docs):
    base = {"mode": "llm", "llm": {"model": "lm", "members": "a", "non_members": "b"}}

    def refs(**kw: Any) -> dict[str, Any]:
        return {**base, "llm": {**base["llm"], "references": kw}}

    for bad, word in (
        (refs(n=1), "n"),
        (refs(attacks=["rmia_online"]), "attacks"),
        (refs(train="mymodule"), "module:function"),
        (refs(a=1.5), "a"),
        (refs(signal="zlib"), "signal"),
        (refs(epochs=3, params={"epochs": 4}, store="s"), None),
    ):
        if word is None:  # valid config; the clash is reported when the spec is built
            from miaudit.llm.reference_run import spec_from_config

            cfg = parse_config(bad)
            with pytest.raises(ValidationError, match="epochs is given twice"):
                spec_from_config(cfg.llm.references)
            continue
        with pytest.raises(Exception, match=word):
            parse_config(bad)
    # Tuning offline RMIA's a needs 4 references; the error comes before any training.
    path = _write_run(tmp_path, docs[:8], "{n: 2}")
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code != 0 and "n >= 4" in result.output, result.output
    # A user's training function is imported only with trust_code.
    path = _write_run(tmp_path, docs[:8], "{n: 2, train: 'mypkg.train:train_lm'}")
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 2, result.output
    assert "trust_code" in result.output and "llm.references.train" in result.output


def _tiny_demo_config(**changes: Any) -> Any:
    from dataclasses import replace

    from miaudit.llm.demo import small_demo_config

    sizes: dict[str, Any] = {
        "n_records": 80, "n_canaries": 24, "n_candidates": 16, "exposure_per_tier": 2,
        "n_shifted": 20, "vocab_size": 300, "n_embd": 32, "n_layer": 1, "n_head": 2,
        "epochs": 2.0, "n_references": 4, "n_public": 40, "public_epochs": 1.0,
        "mlm_epochs": 1.0, "mlm_finetune_epochs": 1.0, "n_neighbours": 2,
    }  # fmt: skip
    return replace(small_demo_config(), **{**sizes, **changes})


def test_demo_with_references_adds_them_and_reuses_the_store(tmp_path):
    from miaudit.llm.demo import run_llm_demo

    cfg = _tiny_demo_config()
    result = run_llm_demo(tmp_path, quiet=True, seed=0, config=cfg)
    assert set(REFERENCE_ATTACKS) <= set(result.metrics)
    refs = result.config["llm"]["references"]
    assert refs["trained_now"] == 4 and refs["from_store"] == 0
    again = run_llm_demo(tmp_path, quiet=True, seed=0, config=cfg)
    assert again.config["llm"]["references"]["from_store"] == 4
    for name in REFERENCE_ATTACKS:
        assert again.metrics[name].auc == result.metrics[name].auc


def test_demo_stops_its_reference_worker_when_the_main_work_fails(tmp_path, monkeypatch):
    """An error in the demo's own work terminates the worker that trains the references (no
    wait for them, no worker left running) and removes its job folder."""
    import signal

    import miaudit.llm.demo as demo_module

    started = []
    real_init = demo_module._BackgroundReferences.__init__

    def spy(self, *args, **kw):
        real_init(self, *args, **kw)
        started.append(self)

    def fail(*args, **kw):
        raise RuntimeError("the main work failed")

    monkeypatch.setattr(demo_module._BackgroundReferences, "__init__", spy)
    monkeypatch.setattr(demo_module, "_public_models", fail)
    with pytest.raises(RuntimeError, match="main work failed"):
        demo_module.run_llm_demo(tmp_path, quiet=True, config=_tiny_demo_config(epochs=20.0))
    (worker,) = started
    assert worker._proc.returncode == -signal.SIGTERM  # stopped, not finished
    assert not worker._dir.exists()


def test_demo_trains_here_what_a_failed_worker_did_not_store(tmp_path, docs, caplog):
    """A worker that dies (killed here) leaves its references to this process: the warning
    says so, both are trained here and stored, and every reference attack is scored."""
    from miaudit.llm.demo import _BackgroundReferences
    from miaudit.llm.reference_run import stored_reference_signals

    cfg = _tiny_demo_config(epochs=1.0)
    texts = docs[:20]
    tok = train_bpe_tokenizer(texts, 300)
    background = _BackgroundReferences(tmp_path, cfg, tok, texts, 0)
    background._proc.kill()
    loss = np.linspace(-3.0, -1.0, len(texts))
    with caplog.at_level("WARNING", logger="miaudit"):
        scores, _, summary = background.attacks(loss)
    assert "reference worker failed" in caplog.text
    assert summary["trained_now"] == 4 and summary["from_store"] == 0
    _, _, trained = stored_reference_signals(**background._job)
    assert trained == []  # all stored now
    assert set(scores) == set(REFERENCE_ATTACKS) and not background._dir.exists()


@pytest.fixture(scope="module")
def population(docs) -> list[str]:
    """10 Python-docs texts that are not among ``docs``."""
    corpus = python_docs_corpus()
    rng = np.random.default_rng(SEED + 1)
    taken = set(docs)
    return [t for t in (corpus[i].text for i in rng.permutation(len(corpus))) if t not in taken][
        :10
    ]


def test_store_scores_the_population_under_every_reference(docs, population, tmp_path):
    train_lm = Counting(train_bpe_tokenizer(docs, 300))
    kw: dict[str, Any] = {"description": {"recipe": "test"}, "store_root": tmp_path, "seed": SEED}
    plain, keep, _ = stored_reference_signals(docs, train_lm, 2, **kw)
    both, keep2, _ = stored_reference_signals(docs, train_lm, 2, population=population, **kw)
    assert both.shape == (2, N_TEXTS + len(population))
    np.testing.assert_array_equal(keep2, keep)  # the population changes no training set
    np.testing.assert_allclose(both[:, :N_TEXTS], plain, rtol=1e-6)
    # The population's columns: each reference retrained alone, the population scored directly.
    keep3, seeds = plan_references(N_TEXTS, 2, SEED)
    np.testing.assert_array_equal(keep3, keep)
    for i in range(2):
        model, tok = train_lm([t for t, k in zip(docs, keep[i], strict=True) if k], int(seeds[i]))
        direct = score_texts(model, tok, population, ["loss"])["loss"]
        np.testing.assert_allclose(both[i, N_TEXTS:], direct, rtol=1e-6)
    assert len(list(tmp_path.glob("llm-references-*"))) == 2  # its own store folder


def test_run_with_population_uses_it_as_rmias_z(docs, population, tmp_path):
    refs = (
        f"{{n: {N_REFERENCES}, epochs: {EPOCHS}, params: {json.dumps(TRAIN)}, "
        "attacks: [lira, rmia, rmia_offline]}"
    )
    path = _write_run(tmp_path, docs, refs, llm_extra=", population: pop.jsonl")
    with open(tmp_path / "pop.jsonl", "w") as f:
        for text in population:
            f.write(json.dumps({"text": text}) + "\n")
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    info = metrics["config"]["llm_findings"]["references"]
    assert info["population"] == len(population)
    # RMIA from the stored signals, the target's own signals and the population, directly.
    (folder,) = (tmp_path / "out" / "references").glob("llm-references-*")
    signals = np.stack([np.load(folder / f"signals_{i:05d}.npy") for i in range(N_REFERENCES)])
    assert signals.shape == (N_REFERENCES, N_TEXTS + len(population))
    keep, _ = plan_references(N_TEXTS, N_REFERENCES, 0)
    target = score_texts(str(tmp_path / "lm"), None, docs + population, ["loss"], max_length=64)
    tgt, pop_t = target["loss"][:N_TEXTS], target["loss"][N_TEXTS:]
    refs_, pop_r = signals[:, :N_TEXTS], signals[:, N_TEXTS:]
    a = resolve_rmia_a(refs_, keep, population_reference=pop_r)
    assert metrics["attacks"]["rmia_offline"]["params"]["a"] == a
    expected = reference_attacks(
        tgt, refs_, keep, attacks=["rmia", "rmia_offline"], a=a, population_target=pop_t,
        population_reference=pop_r,
    )  # fmt: skip
    scores = pd.read_csv(tmp_path / "out" / "scores.csv", index_col="record_id")
    ids = [f"members-{i}" for i in range(N_TEXTS // 2)]
    ids += [f"non_members-{i}" for i in range(N_TEXTS // 2)]
    for name in ("rmia", "rmia_offline"):
        np.testing.assert_allclose(scores.loc[ids, name], expected[name], rtol=1e-9)
    # Not the candidates as Z: the scores (not their order) differ.
    candidates = reference_attacks(tgt, refs_, keep, attacks=["rmia"])
    assert not np.allclose(scores.loc[ids, "rmia"], candidates["rmia"])


def test_population_errors(docs, tmp_path):
    base = {"mode": "llm", "llm": {"model": "lm", "members": "a", "non_members": "b"}}
    with pytest.raises(Exception, match=r"set llm\.references too"):
        parse_config({**base, "llm": {**base["llm"], "population": "p.jsonl"}})
    with pytest.raises(Exception, match="only RMIA reads it"):
        parse_config(
            {**base, "llm": {**base["llm"], "population": "p", "references": {"attacks": ["lira"]}}}
        )
    # An audited text in the population: refused before any reference is trained.
    path = _write_run(tmp_path, docs[:8], "{n: 4}", llm_extra=", population: pop.jsonl")
    (tmp_path / "pop.jsonl").write_text(json.dumps({"text": docs[3]}) + "\n")
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code != 0 and "population[0]: an audited text" in result.output
    assert not (tmp_path / "out" / "references").exists()
