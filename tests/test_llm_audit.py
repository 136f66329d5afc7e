"""audit_texts end to end (report files, LLM findings in the config) and the demo."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("transformers")

from miaudit.exceptions import ValidationError
from miaudit.llm import audit_texts, score_texts
from miaudit.llm.blind import BLIND_METHODS
from miaudit.llm.corpus import PYDOC_SOURCE, python_docs_corpus
from miaudit.llm.tiny import tiny_gpt2, train_bpe_tokenizer


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Tiny models: one torch thread is fastest and deterministic on a shared machine."""


@pytest.fixture(scope="module")
def docs():
    corpus = python_docs_corpus()
    rng = np.random.default_rng(0)
    return [corpus[i].text for i in rng.choice(len(corpus), 80, replace=False)]


@pytest.fixture(scope="module")
def lm(docs):
    tok = train_bpe_tokenizer(docs, 400)
    return tiny_gpt2(tok, n_positions=64, n_embd=32, n_layer=1, n_head=2), tok


def test_audit_texts_writes_report_with_llm_findings(lm, docs, tmp_path):
    model, tok = lm
    members, non_members = docs[:40], docs[40:]
    non_members = [*non_members[:-1], members[0].upper()]  # one exact duplicate
    result = audit_texts(
        members,
        non_members,
        model=model,
        tokenizer=tok,
        quiet=True,
        output_dir=tmp_path,
    )
    assert set(result.metrics) == {"loss", "zlib", "min_k", "min_k_plus_plus", "lowercase"}
    llm = result.config["llm"]
    assert llm["duplicates"]["n_exact_pairs"] == 1
    assert llm["duplicates"]["near_duplicate_non_members"] == [39]
    assert llm["n_members"] == 40 and llm["n_non_members"] == 40
    assert set(llm["blind_baseline"]["blind_auc"]) == set(BLIND_METHODS)
    assert llm["attacks"]["min_k"].startswith("mean of the max(1, floor(k N))")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["config"]["llm"]["blind_baseline"]["message"]
    assert metrics["attacks"]["min_k"]["params"]["k"] == 0.2
    scores = pd.read_csv(tmp_path / "scores.csv", index_col="record_id")
    assert "blind_bag_of_words" in scores.columns
    assert (tmp_path / "report.html").exists()
    # The scores in the result are score_texts' numbers.
    direct = score_texts(model, tok, members + non_members, ["min_k_plus_plus"])
    np.testing.assert_allclose(scores["min_k_plus_plus"].to_numpy(), direct["min_k_plus_plus"])


def test_audit_texts_removes_duplicates_and_records_reference_variant(lm, docs):
    model, tok = lm
    members, non_members = docs[:30], [*docs[30:59], docs[0]]
    result = audit_texts(
        members,
        non_members,
        model=model,
        tokenizer=tok,
        attacks=["loss", "reference"],
        reference=(model, tok),
        params={"reference": {"variant": "ratio"}},
        duplicates="remove",
        blind=False,
        quiet=True,
    )
    assert result.config["llm"]["n_non_members"] == 29
    assert result.attacks["reference"]["formula"] == "-NLL(x) / NLL_ref(x)"
    assert result.attacks["reference"]["params"] == {"variant": "ratio"}
    assert "blind_baseline" not in result.config["llm"]


def test_audit_texts_bad_input(lm, docs):
    model, tok = lm
    with pytest.raises(ValidationError, match="non_members"):
        audit_texts(docs[:5], None, model=model, tokenizer=tok)
    with pytest.raises(ValidationError, match="duplicates"):
        audit_texts(docs[:5], docs[5:10], model=model, tokenizer=tok, duplicates="drop")
    with pytest.raises(ValidationError, match=r"non_members\[1\]: empty"):
        audit_texts(docs[:5], [docs[6], ""], model=model, tokenizer=tok)


@pytest.mark.slow
def test_demo_small(tmp_path):
    """The demo at test size: report written, canaries repeated 16 times detected, exposure
    growing with repetitions, the shifted split flagged by the blind baseline."""
    from miaudit.llm.demo import run_llm_demo, small_demo_config

    result = run_llm_demo(tmp_path, quiet=True, seed=0, config=small_demo_config())
    for name in ("report.html", "metrics.json", "scores.csv", "canaries.csv", "demo.json"):
        assert (tmp_path / name).exists(), name
    assert (tmp_path / "shifted" / "report.html").exists()
    llm = result.config["llm"]
    tiers = {row["tier"]: row for row in llm["canaries"]}
    assert tiers[16]["tpr_loss"] > 0.2
    assert tiers[16]["tpr_min_k_plus_plus"] > 0.1
    assert tiers[16]["exposure_mean"] > tiers[1]["exposure_mean"]
    assert llm["shifted_split"]["distinguishable"]
    assert not llm["blind_baseline"]["distinguishable"]
    # The shifted split's report withholds the verdict; the random split's gives one.
    shifted = json.loads((tmp_path / "shifted" / "metrics.json").read_text())
    assert shifted["headline"].startswith("No reliable verdict")
    assert "blind_baseline" in [c["id"] for c in shifted["checks"]]
    assert "No reliable verdict" in (tmp_path / "shifted" / "report.html").read_text()
    assert not result.headline.startswith("No reliable verdict")
    assert result.metrics["loss"].auc > 0.6
    assert PYDOC_SOURCE in result.scores.index[0] or "#" in result.scores.index[0]
    # Every registered attack runs: the causal ones here, the masked-LM ones on the masked LM.
    from miaudit.llm.attacks import LLM_ATTACKS
    from miaudit.llm.demo import DEMO_ATTACKS
    from miaudit.llm.mlm import MASKED_LM_ATTACKS

    assert set(LLM_ATTACKS.names()) == set(DEMO_ATTACKS) | set(MASKED_LM_ATTACKS)
    assert set(DEMO_ATTACKS) <= set(result.metrics)
    for name in DEMO_ATTACKS:
        assert np.isfinite(result.scores[name]).all(), name
    masked = json.loads((tmp_path / "masked" / "metrics.json").read_text())
    assert set(masked["attacks"]) == set(MASKED_LM_ATTACKS)
    # The fine-tuned BERT is calibrated by the public one (measured AUC 0.86 against 0.56 for
    # the PLL alone at this size): a dropped fine-tune or a self-ratio would fail here.
    auc_of = {n: masked["attacks"][n]["metrics"]["auc"] for n in MASKED_LM_ATTACKS}
    assert auc_of["mlm_ratio"] > 0.7 and auc_of["mlm_ratio"] > auc_of["mlm_pll"] + 0.1
    assert (tmp_path / "masked" / "report.html").exists()
    assert llm["masked_lm"]["headline"] == masked["headline"]
    # The public paragraphs the extra attacks read are never audited.
    assert llm["public_data"]["n_paragraphs"] == small_demo_config().n_public
    assert result.attacks["neighbourhood"]["params"]["n_neighbours"] == 4


def test_extra_attacks_are_built_into_the_one_result(docs, monkeypatch):
    """``_finish`` with the reference attacks as ``more_scores``: one build, one blind
    baseline, the extra attacks after the one-model ones with their own metrics."""
    import miaudit.llm.audit as llm_audit
    from miaudit.llm.reference import reference_infos
    from miaudit.metrics import auc

    rng = np.random.default_rng(5)
    texts = docs[:40]
    is_member = np.arange(40) < 20
    ids = [f"t{i}" for i in range(40)]
    names = ["loss", "min_k"]
    scores = {n: rng.normal(size=40) + 0.5 * is_member for n in names}
    ref_scores = {n: rng.normal(size=40) + is_member for n in ("lira", "rmia")}
    infos = reference_infos(list(ref_scores), n_references=4, a=None)
    calls = []
    blind = llm_audit.blind_baseline

    def counting(*args, **kw):
        calls.append(1)
        return blind(*args, **kw)

    monkeypatch.setattr(llm_audit, "blind_baseline", counting)
    kw = {"params": {}, "k": 0.2, "blind": True, "fprs": [0.1], "seed": 0,
          "extra": {"source": "test"}, "output_dir": None}  # fmt: skip
    once = llm_audit._finish(
        scores, is_member, texts, ids, names, timings={}, more_scores=ref_scores,
        more_infos=infos, **kw,
    )  # fmt: skip
    assert len(calls) == 1
    assert list(once.config["llm"]["attacks"]) == ["loss", "min_k", "lira", "rmia"]
    for n, s in {**scores, **ref_scores}.items():
        np.testing.assert_allclose(once.scores[n].to_numpy(), s)
        assert once.metrics[n].auc == pytest.approx(auc(s, is_member))
    assert once.attacks["lira"] == infos["lira"]
    with pytest.raises(ValidationError, match="no description"):
        llm_audit._finish(scores, is_member, texts, ids, names, timings={},
                          more_scores=ref_scores, **kw)  # fmt: skip
    with pytest.raises(ValidationError, match="both one-model and extra"):
        llm_audit._finish(scores, is_member, texts, ids, names, timings={},
                          more_scores={"loss": scores["loss"]},
                          more_infos={"loss": infos["lira"]}, **kw)  # fmt: skip


def test_demo_public_paragraphs_are_disjoint_from_the_records():
    """The demo's public data (reference LM, BERT, ReCaLL prefix, DC-PDD corpus) holds none
    of the audited records, and both sets are half pydoc, half modules."""
    from miaudit.llm.demo import LLMDemoConfig, _public_paragraphs, _sample_records

    cfg = LLMDemoConfig()
    records = _sample_records(cfg, np.random.default_rng(0))
    public = _public_paragraphs(cfg, records, 0)
    assert len(records) == cfg.n_records and len(public) == cfg.n_public
    assert not {r.text for r in records} & set(public)
    assert sum(r.source == PYDOC_SOURCE for r in records) == cfg.n_records // 2
    pydoc = {r.text for r in python_docs_corpus() if r.source == PYDOC_SOURCE}
    assert sum(t in pydoc for t in public) == cfg.n_public // 2


@pytest.mark.parametrize("shifted", [True, False])
def test_blind_check_fix_matches_the_reason(shifted):
    """A shifted split's check asks for a same-distribution split; an unshifted one where a
    blind baseline still matches the best attack at the headline FPR asks for stronger
    attacks or more records instead."""
    from miaudit.llm.audit import _SHIFT_FIX, _WEAK_ATTACK_FIX, finish_result
    from miaudit.llm.reference import reference_infos

    rng = np.random.default_rng(2)
    n = 400
    is_member = np.arange(n) < n // 2
    attack = rng.normal(size=n) + 0.3 * is_member  # weak: few records above its top decoys
    blind = rng.normal(size=n) + (3.0 * is_member if shifted else 0.0)
    top = np.argsort(-attack)[:3]  # the blind score also puts the attack's best guesses first
    blind[top] = 10.0 + np.arange(3)
    result = finish_result(
        {"lira": attack}, reference_infos(["lira"], n_references=4, a=None), is_member,
        [f"r{i}" for i in range(n)], blind=True, blind_scores={"bag_of_words": blind},
        fprs=[0.01], seed=0, timings={}, extra={"source": "test"}, output_dir=None,
    )  # fmt: skip
    check = next(c for c in result.checks if c.id == "blind_baseline")
    verdict = result.config["llm"]["blind_baseline"]
    assert verdict["distinguishable"] is shifted
    assert check.fix == (_SHIFT_FIX if shifted else _WEAK_ATTACK_FIX)
    if not shifted:
        assert verdict["withhold"]


@pytest.mark.slow
def test_cli_llm_demo_prints_the_three_verdicts(tmp_path, monkeypatch):
    """``miaudit demo --llm`` (at a tiny size): the main table and headline, then the shifted
    split's and the masked LM's verdicts with their folders."""
    from dataclasses import replace

    from typer.testing import CliRunner

    import miaudit.llm.demo as demo_module
    from miaudit.cli import app

    tiny = replace(
        demo_module.small_demo_config(), n_records=80, n_canaries=24, n_candidates=16,
        exposure_per_tier=2, n_shifted=20, vocab_size=300, n_embd=32, n_layer=1, n_head=2,
        epochs=2.0, n_public=40, public_epochs=1.0, mlm_epochs=1.0, mlm_finetune_epochs=1.0,
        n_neighbours=2,
    )  # fmt: skip
    monkeypatch.setattr(demo_module, "LLMDemoConfig", lambda: tiny)
    res = CliRunner().invoke(app, ["demo", "--llm", "-o", str(tmp_path)])
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    assert f"Shifted split ({tmp_path / 'shifted'}): " in out
    assert f"Masked LM ({tmp_path / 'masked'}): " in out
    assert "report:" in out and (tmp_path / "masked" / "report.html").exists()
