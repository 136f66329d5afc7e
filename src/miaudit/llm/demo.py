"""The language-model demo: a tiny GPT-2 trained here on Python's own documentation.

Nothing is downloaded. :func:`run_llm_demo`

1. collects real text that ships with Python (:func:`miaudit.llm.corpus.python_docs_corpus`:
   pydoc topics and standard-library docstrings, deduplicated), samples ``n_records``
   paragraphs and makes a random half of them members (seeded coin per record);
2. makes ``n_canaries`` canaries (random 6-digit secrets, repetition tiers 1/4/16, a fair coin
   for insertion; the rest are never-inserted controls);
3. trains a byte-level BPE tokenizer (``tokenizers``) and a GPT-2-style model from a config
   (``transformers.GPT2Config``, random initialisation) on the members plus the inserted canary
   copies (packed into blocks, AdamW);
4. audits the random split with every one-pass attack plus ``lowercase`` and the blind baseline
   (main report in ``output_dir``), the canaries per tier with exposure
   (``output_dir/canaries.csv``, and ``config["llm"]["canaries"]``), and a deliberately shifted
   split — members only from the pydoc topics, non-members only from module docstrings — on
   which the blind baseline must flag the shift (``output_dir/shifted/``);
5. trains ``n_references`` reference LMs with the target's recipe on random halves of the
   records (kept in ``output_dir/references``, so a re-run reuses them) and adds LiRA online/
   offline, Attack-R and RMIA online/offline on the loss signal to the main report
   (:mod:`miaudit.llm.reference`).

With the default :class:`LLMDemoConfig` it runs in about 90 s on 2 shared CPU cores (references
52 s of it; measured), under 3 minutes.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from miaudit._threads import torch_threads
from miaudit.audit.result import AuditResult
from miaudit.llm.attacks import ONE_PASS_ATTACKS
from miaudit.llm.audit import _finish, _run_attacks, audit_canaries
from miaudit.llm.canaries import insert_canaries, make_canaries
from miaudit.llm.corpus import PYDOC_SOURCE, DocRecord, python_docs_corpus
from miaudit.llm.target import LanguageModelTarget
from miaudit.llm.tiny import tiny_gpt2, train_bpe_tokenizer, train_causal_lm
from miaudit.metrics import DEFAULT_FPRS

__all__ = ["DEMO_ATTACKS", "LLMDemoConfig", "run_llm_demo", "train_causal_lm"]

_LOG = logging.getLogger("miaudit")
#: Attacks of the demo: the four one-pass attacks and the lowercase ratio.
DEMO_ATTACKS = (*ONE_PASS_ATTACKS, "lowercase")


@dataclass(frozen=True)
class LLMDemoConfig:
    """Sizes of the demo (the defaults fit 3 minutes on 2 cores; tests use smaller ones)."""

    n_records: int = 500
    n_canaries: int = 180
    vocab_size: int = 1024
    n_positions: int = 128
    n_embd: int = 64
    n_layer: int = 2
    n_head: int = 4
    block_size: int = 64
    batch_size: int = 8
    epochs: float = 16.0
    learning_rate: float = 3e-3
    n_candidates: int = 256
    exposure_per_tier: int = 8
    score_batch_size: int = 32
    n_shifted: int = 200
    #: Reference LMs (0: none) trained with the target's recipe on random halves of the
    #: records, for LiRA, Attack-R and RMIA (:mod:`miaudit.llm.reference`). 4 cost ~52 s on
    #: the 2-core machine (demo ~90 s fresh); kept in ``output_dir/references``, so a re-run
    #: trains none. Online LiRA needs more (2 IN / 2 OUT per text fit poor Gaussians).
    n_references: int = 4


def _sample_records(cfg: LLMDemoConfig, rng: np.random.Generator) -> list[DocRecord]:
    """Half the records from the pydoc topics, half from module docstrings (so that the
    shifted split has enough of both), in corpus order."""
    corpus = python_docs_corpus()
    pydoc = [i for i, r in enumerate(corpus) if r.source == PYDOC_SOURCE]
    modules = [i for i, r in enumerate(corpus) if r.source != PYDOC_SOURCE]
    half = cfg.n_records // 2
    if min(len(pydoc), len(modules)) < cfg.n_records - half:
        raise RuntimeError(
            f"the Python docs corpus is too small ({len(pydoc)} pydoc and {len(modules)} module "
            f"paragraphs) for n_records={cfg.n_records}"
        )
    pick = np.concatenate(
        [
            rng.choice(pydoc, half, replace=False),
            rng.choice(modules, cfg.n_records - half, replace=False),
        ]
    )
    return [corpus[i] for i in np.sort(pick)]


def run_llm_demo(
    output_dir: str | Path,
    *,
    quiet: bool | None = None,
    seed: int = 0,
    config: LLMDemoConfig | None = None,
    threads: int | None = 1,
) -> AuditResult:
    """Train a tiny GPT-2 on Python's docs plus canaries, audit it, write the reports.

    Parameters
    ----------
    output_dir : str or Path
        Main report (``report.html``, ``metrics.json``, ``scores.csv``, ...), ``canaries.csv``,
        ``demo.json`` (sizes, timings, training loss) and ``shifted/`` (the shifted split).
    quiet : bool, optional
        Progress bars (``None``: on a terminal outside CI).
    seed : int
        Everything random (records, coins, secrets, weights, batches) derives from it.
    config : LLMDemoConfig, optional
        Sizes; default :class:`LLMDemoConfig`.
    threads : int, optional
        torch intra-op threads while the demo runs (restored afterwards); default 1, the
        fastest for a model this small and robust on a shared machine. ``None``: leave as is.

    Returns
    -------
    AuditResult
        Of the random split. ``config["llm"]`` also holds ``canaries`` (per-tier table) and
        ``shifted_split`` (the blind verdict on the shifted split).
    """
    with torch_threads(threads):
        return _run(Path(output_dir), quiet, seed, config or LLMDemoConfig())


def _run(out: Path, quiet: bool | None, seed: int, cfg: LLMDemoConfig) -> AuditResult:
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    records = _sample_records(cfg, rng)
    member = rng.random(len(records)) < 0.5
    canaries = make_canaries(cfg.n_canaries, seed=rng)
    timings["data"] = time.perf_counter() - t0

    t = time.perf_counter()
    texts = [r.text for r in records]
    tokenizer = train_bpe_tokenizer([*texts, *canaries.texts], cfg.vocab_size)
    model = tiny_gpt2(
        tokenizer,
        n_positions=cfg.n_positions,
        n_embd=cfg.n_embd,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        seed=seed,
    )
    train = insert_canaries(
        [x for x, m in zip(texts, member, strict=True) if m], canaries, seed=rng
    )
    losses = train_causal_lm(
        model,
        tokenizer,
        train,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        block_size=cfg.block_size,
        learning_rate=cfg.learning_rate,
        seed=seed,
        quiet=quiet,
    )
    timings["training"] = time.perf_counter() - t

    target = LanguageModelTarget(model, tokenizer, batch_size=cfg.score_batch_size)
    t = time.perf_counter()
    scores = _run_attacks(
        target,
        texts,
        DEMO_ATTACKS,
        k=0.2,
        reference=None,
        mask_model=None,
        recall_prefix=None,
        params={},
        seed=seed,
        quiet=quiet,
    )
    timings["attacks"] = time.perf_counter() - t
    ids = [f"{r.source}#{i}" for i, r in enumerate(records)]

    t = time.perf_counter()
    table = audit_canaries(
        target,
        canaries,
        n_candidates=cfg.n_candidates,
        exposure_per_tier=cfg.exposure_per_tier,
        seed=seed,
        quiet=quiet,
    )
    table.to_csv(out / "canaries.csv")
    timings["canaries"] = time.perf_counter() - t

    t = time.perf_counter()
    references = _references(out, cfg, tokenizer, texts, scores["loss"], seed)
    timings["references"] = time.perf_counter() - t

    # The shifted split: members only from the pydoc topics, non-members only from modules.
    is_pydoc = np.array([r.source == PYDOC_SOURCE for r in records])
    sm = np.flatnonzero(member & is_pydoc)[: cfg.n_shifted]
    sn = np.flatnonzero(~member & ~is_pydoc)[: cfg.n_shifted]
    sel = np.concatenate([sm, sn])
    shifted = _finish(
        {n: scores[n][sel] for n in DEMO_ATTACKS},
        member[sel],
        [texts[i] for i in sel],
        [ids[i] for i in sel],
        DEMO_ATTACKS,
        params={},
        k=0.2,
        blind=True,
        fprs=DEFAULT_FPRS,
        seed=seed,
        timings={},
        extra={"source": "shifted split: members from pydoc topics, non-members from modules"},
        output_dir=out / "shifted",
    )

    t = time.perf_counter()
    ref_scores, ref_infos, summary = references if references is not None else ({}, {}, None)
    result = _finish(
        scores,
        member,
        texts,
        ids,
        DEMO_ATTACKS,
        params={},
        k=0.2,
        blind=True,
        fprs=DEFAULT_FPRS,
        seed=seed,
        timings=timings,
        extra={
            "source": "Python docs (pydoc topics + standard-library docstrings), random split",
            "canaries": json.loads(table.reset_index().to_json(orient="records")),
            "shifted_split": shifted.config["llm"].get("blind_baseline", {}),
        },
        output_dir=None,
        more_scores=ref_scores,
        more_infos=ref_infos,
    )
    if summary is not None:
        result.config["llm"]["references"] = dict(summary)
    timings["report"] = time.perf_counter() - t
    result.timings.update(timings)  # stages only: the CLI prints their sum as the total
    result.save(out)
    total = time.perf_counter() - t0
    (out / "demo.json").write_text(
        json.dumps(
            {
                "config": asdict(cfg),
                "seed": seed,
                "n_train_texts": len(train),
                "n_members": int(member.sum()),
                "final_train_loss": float(np.mean(losses[-20:])),
                "timings_seconds": {**timings, "total": total},
            },
            indent=2,
        )
    )
    _LOG.info("LLM demo written to %s in %.1f s", out, total)
    return result


def _references(
    out: Path,
    cfg: LLMDemoConfig,
    tokenizer: Any,
    texts: list[str],
    target_loss: NDArray[np.float64],
    seed: int,
) -> tuple[dict[str, NDArray[np.float64]], dict[str, dict[str, Any]], dict[str, Any]] | None:
    """``cfg.n_references`` reference LMs with the target's architecture and training
    hyper-parameters on random halves of the records (not the canaries), kept in
    ``out/references`` (a re-run trains none), and the reference attacks on the target's loss."""
    if cfg.n_references == 0:
        return None
    from miaudit.llm.reference import (
        REFERENCE_ATTACKS,
        reference_attacks,
        reference_infos,
        resolve_rmia_a,
    )
    from miaudit.llm.reference_run import DemoTrainer, stored_reference_signals

    arch = tiny_gpt2(
        tokenizer, n_positions=cfg.n_positions, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
        n_head=cfg.n_head,
    ).config  # fmt: skip
    hp = {"epochs": cfg.epochs, "batch_size": cfg.batch_size, "block_size": cfg.block_size,
          "learning_rate": cfg.learning_rate}  # fmt: skip
    train_lm = DemoTrainer(
        arch, tokenizer, cfg.epochs, cfg.batch_size, cfg.block_size, cfg.learning_rate
    )
    description = {"recipe": "llm demo", "params": hp, "architecture": arch.to_dict(),
                   "tokenizer": len(tokenizer), "texts_in_tokenizer": len(texts)}  # fmt: skip
    refs, keep, trained = stored_reference_signals(
        texts, train_lm, cfg.n_references, description=description,
        store_root=out / "references", seed=seed, batch_size=cfg.score_batch_size,
    )  # fmt: skip
    a = resolve_rmia_a(refs, keep)
    names = tuple(REFERENCE_ATTACKS)
    scores = reference_attacks(target_loss, refs, keep, attacks=names, a=a)
    infos = reference_infos(names, n_references=cfg.n_references, a=a)
    summary = {"n": cfg.n_references, "train": "the demo's recipe", "params": hp,
               "trained_now": len(trained), "from_store": cfg.n_references - len(trained),
               "rmia_a": a}  # fmt: skip
    return scores, infos, summary


def small_demo_config() -> LLMDemoConfig:
    """A smaller demo for tests (a few seconds of training)."""
    return replace(
        LLMDemoConfig(),
        n_records=300,
        n_canaries=120,
        n_candidates=64,
        exposure_per_tier=6,
        n_shifted=80,
        n_references=0,
    )
