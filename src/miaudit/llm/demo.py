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
4. takes ``n_public`` other paragraphs of the same corpus (never audited, half pydoc, half
   modules) as public data and trains on them a reference GPT-2 (same tokenizer and
   architecture) and a tiny BERT with a tokenizer of its own (:func:`_public_models`);
5. audits the random split with every causal-LM attack of the registry — the four one-pass
   attacks, ``lowercase``, ``reference`` (the public GPT-2), ``recall`` (a prefix of public
   paragraphs), ``neighbourhood`` (neighbours proposed by the public BERT), ``gradient_norm``
   and ``dc_pdd`` (token frequencies of the public paragraphs) — and the blind baseline (main
   report in ``output_dir``), the canaries per tier with exposure (``output_dir/canaries.csv``,
   and ``config["llm"]["canaries"]``), and a deliberately shifted split — members only from
   the pydoc topics, non-members only from module docstrings — on which the blind baseline
   must flag the shift (``output_dir/shifted/``);
6. fine-tunes a copy of the public BERT on the members and audits that masked LM with the
   masked-LM attacks, ``mlm_pll`` and ``mlm_ratio`` against the public BERT
   (``output_dir/masked/``);
7. trains ``n_references`` reference LMs with the target's recipe on random halves of the
   records (kept in ``output_dir/references``, so a re-run reuses them) and adds LiRA online/
   offline, Attack-R and RMIA online/offline on the loss signal to the main report
   (:mod:`miaudit.llm.reference`).

With the default :class:`LLMDemoConfig` it runs in 90–108 s on 2 idle CPU cores (measured; a
worker interpreter trains the references meanwhile, ~68 s of them), under 3 minutes.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from contextlib import ExitStack
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
from miaudit.llm.mlm import MASKED_LM_ATTACKS
from miaudit.llm.target import LanguageModelTarget
from miaudit.llm.tiny import (
    tiny_bert,
    tiny_gpt2,
    train_bpe_tokenizer,
    train_causal_lm,
    train_masked_lm,
    train_mlm_tokenizer,
)
from miaudit.metrics import DEFAULT_FPRS

__all__ = ["DEMO_ATTACKS", "LLMDemoConfig", "run_llm_demo", "train_causal_lm"]

_LOG = logging.getLogger("miaudit")
#: Attacks of the demo on its causal LM: every registered attack that reads a causal LM (the
#: masked-LM attacks run on the demo's masked LM, ``output_dir/masked``).
DEMO_ATTACKS = (
    *ONE_PASS_ATTACKS,
    "lowercase",
    "reference",
    "recall",
    "neighbourhood",
    "gradient_norm",
    "dc_pdd",
)


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
    #: records, for LiRA, Attack-R and RMIA (:mod:`miaudit.llm.reference`), by a worker
    #: interpreter while the demo trains and audits the target (4 take ~66 s of the ~105 s on
    #: 2 cores); kept in ``output_dir/references``, so a re-run trains none. Online LiRA needs
    #: more (2 IN / 2 OUT per text fit poor Gaussians).
    n_references: int = 4
    #: Public paragraphs: other paragraphs of the corpus (half pydoc, half modules), never
    #: audited, the data of the attacks that need some — the reference GPT-2 and the BERT are
    #: trained on them, ReCaLL's prefix is the first ``recall_shots`` of them and DC-PDD counts
    #: token frequencies in the rest.
    n_public: int = 500
    #: Epochs of the reference GPT-2 on the public paragraphs (the target's recipe otherwise).
    public_epochs: float = 8.0
    #: Batch size of the models trained on public data and of the masked LM's fine-tuning
    #: (larger than the target's: a step of these tiny models is mostly fixed overhead).
    public_batch_size: int = 32
    recall_shots: int = 3
    n_neighbours: int = 10
    #: The tiny BERT (vocabulary, width, layers, heads, context) trained on the
    #: public paragraphs for ``mlm_epochs``, then copied and fine-tuned on the members for
    #: ``mlm_finetune_epochs`` (the demo's masked LM). Its cost is one pass per token for the
    #: neighbours and for each pseudo-likelihood, so it is kept small.
    mlm_vocab_size: int = 1024
    mlm_hidden: int = 32
    mlm_layers: int = 2
    mlm_heads: int = 2
    mlm_context: int = 64
    mlm_epochs: float = 8.0
    mlm_finetune_epochs: float = 32.0


def _sample_records(cfg: LLMDemoConfig, rng: np.random.Generator) -> list[DocRecord]:
    """Half the records from the pydoc topics, half from module docstrings (so that the
    shifted split has enough of both), in corpus order."""
    corpus = python_docs_corpus()
    pydoc, modules = _sources(corpus)
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


def _sources(corpus: list[DocRecord]) -> tuple[list[int], list[int]]:
    """Indices of the pydoc-topic paragraphs and of the module-docstring paragraphs."""
    pydoc = [i for i, r in enumerate(corpus) if r.source == PYDOC_SOURCE]
    return pydoc, [i for i, r in enumerate(corpus) if r.source != PYDOC_SOURCE]


#: Seconds a reference worker is given to stop on ``terminate`` before it is killed.
WORKER_STOP_SECONDS = 10.0
#: Seed offsets of the demo's other models (the target's weights use ``seed`` itself).
PUBLIC_LM_SEED, PUBLIC_BERT_SEED, MASKED_TARGET_SEED = 1, 2, 3
#: Stream of the public paragraphs' draw (its own, so that the records, coins and canaries of
#: a seed do not depend on ``n_public``).
_PUBLIC_STREAM = 1


def _public_paragraphs(cfg: LLMDemoConfig, records: list[DocRecord], seed: int) -> list[str]:
    """``cfg.n_public`` paragraphs of the corpus that are not records, half pydoc, half
    modules, in random order: the demo's public data."""
    corpus = python_docs_corpus()
    taken = {r.text for r in records}
    pools = [[i for i in pool if corpus[i].text not in taken] for pool in _sources(corpus)]
    half = cfg.n_public // 2
    if min(len(p) for p in pools) < cfg.n_public - half:
        raise RuntimeError(
            f"the Python docs corpus is too small for n_public={cfg.n_public} beside "
            f"n_records={cfg.n_records}"
        )
    rng = np.random.default_rng([seed, _PUBLIC_STREAM])
    pick = np.concatenate(
        [rng.choice(pools[0], half, replace=False),
         rng.choice(pools[1], cfg.n_public - half, replace=False)]
    )  # fmt: skip
    return [corpus[i].text for i in rng.permutation(pick)]


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
        ``demo.json`` (sizes, timings, training loss), ``shifted/`` (the shifted split's
        report), ``masked/`` (the masked LM's report) and ``references/`` (the reference LMs'
        stored signals).
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
        Of the random split. ``config["llm"]`` also holds ``canaries`` (per-tier table),
        ``shifted_split`` (the blind verdict on the shifted split), ``masked_lm`` (the masked
        LM report's folder and headline), ``public_data`` (how many public paragraphs, what
        they serve) and ``references`` (how many, trained now or from the store).
    """
    with torch_threads(threads), ExitStack() as cleanup:
        return _run(Path(output_dir), quiet, seed, config or LLMDemoConfig(), cleanup)


def _run(
    out: Path, quiet: bool | None, seed: int, cfg: LLMDemoConfig, cleanup: ExitStack
) -> AuditResult:
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    records = _sample_records(cfg, rng)
    public = _public_paragraphs(cfg, records, seed)
    member = rng.random(len(records)) < 0.5
    canaries = make_canaries(cfg.n_canaries, seed=rng)
    timings["data"] = time.perf_counter() - t0

    t = time.perf_counter()
    texts = [r.text for r in records]
    tokenizer = train_bpe_tokenizer([*texts, *canaries.texts], cfg.vocab_size)
    pending = None  # a worker process trains the references while the rest runs
    if cfg.n_references > 0:
        pending = _BackgroundReferences(out, cfg, tokenizer, texts, seed)
        cleanup.callback(pending.cancel)
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

    t = time.perf_counter()
    ref_lm, mlm, mlm_tok = _public_models(cfg, tokenizer, public, seed, quiet)
    timings["public_models"] = time.perf_counter() - t

    target = LanguageModelTarget(model, tokenizer, batch_size=cfg.score_batch_size)
    t = time.perf_counter()
    prefix, corpus = public[: cfg.recall_shots], public[cfg.recall_shots :]
    params: dict[str, dict[str, Any]] = {
        "neighbourhood": {"n_neighbours": cfg.n_neighbours},
        "dc_pdd": {"corpus": corpus},
    }
    scores = _run_attacks(
        target,
        texts,
        DEMO_ATTACKS,
        k=0.2,
        reference=(ref_lm, tokenizer),
        mask_model=(mlm, mlm_tok),
        recall_prefix=prefix,
        params=params,
        seed=seed,
        quiet=quiet,
    )
    timings["attacks"] = time.perf_counter() - t
    shown: dict[str, dict[str, Any]] = {
        **params,
        "dc_pdd": {"corpus": f"{len(corpus)} public paragraphs"},
    }
    ids = [f"{r.source}#{i}" for i, r in enumerate(records)]

    t = time.perf_counter()
    masked = _masked_lm_audit(out, cfg, mlm, mlm_tok, texts, ids, member, seed, quiet)
    timings["masked_lm"] = time.perf_counter() - t

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
    references = None if pending is None else pending.attacks(scores["loss"])
    timings["references"] = time.perf_counter() - t  # the wait; they trained meanwhile

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
        params=shown,
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
        params=shown,
        k=0.2,
        blind=True,
        fprs=DEFAULT_FPRS,
        seed=seed,
        timings=timings,
        extra={
            "source": "Python docs (pydoc topics + standard-library docstrings), random split",
            "canaries": json.loads(table.reset_index().to_json(orient="records")),
            "shifted_split": shifted.config["llm"].get("blind_baseline", {}),
            "public_data": {
                "n_paragraphs": len(public),
                "recall_prefix": len(prefix),
                "uses": "reference GPT-2, BERT (neighbours, mlm_ratio), ReCaLL prefix, DC-PDD",
            },
            "masked_lm": {"output": "masked/", "headline": masked.headline},
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


def _public_models(
    cfg: LLMDemoConfig, tokenizer: Any, public: list[str], seed: int, quiet: bool | None
) -> tuple[Any, Any, Any]:
    """The models trained on the public paragraphs: a GPT-2 with the target's tokenizer and
    architecture (the ``reference`` attack's model; ``cfg.public_epochs``) and a tiny BERT
    with a BPE tokenizer of its own (``neighbourhood``'s proposals, ``mlm_ratio``'s
    reference). Returns ``(reference GPT-2, BERT, BERT's tokenizer)``."""
    ref_lm = tiny_gpt2(
        tokenizer, n_positions=cfg.n_positions, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
        n_head=cfg.n_head, seed=seed + PUBLIC_LM_SEED,
    )  # fmt: skip
    train_causal_lm(
        ref_lm, tokenizer, public, epochs=cfg.public_epochs, batch_size=cfg.public_batch_size,
        block_size=cfg.block_size, learning_rate=cfg.learning_rate, seed=seed + PUBLIC_LM_SEED,
        quiet=quiet,
    )  # fmt: skip
    mlm_tok = train_mlm_tokenizer(public, cfg.mlm_vocab_size)
    mlm = tiny_bert(
        mlm_tok, max_positions=cfg.mlm_context, hidden_size=cfg.mlm_hidden,
        n_layer=cfg.mlm_layers, n_head=cfg.mlm_heads, intermediate_size=4 * cfg.mlm_hidden,
        seed=seed + PUBLIC_BERT_SEED,
    )  # fmt: skip
    train_masked_lm(
        mlm, mlm_tok, public, epochs=cfg.mlm_epochs, batch_size=cfg.public_batch_size,
        block_size=cfg.mlm_context, learning_rate=cfg.learning_rate, seed=seed + PUBLIC_BERT_SEED,
        quiet=quiet,
    )  # fmt: skip
    return ref_lm, mlm, mlm_tok


def _masked_lm_audit(
    out: Path,
    cfg: LLMDemoConfig,
    mlm: Any,
    mlm_tok: Any,
    texts: list[str],
    ids: list[str],
    member: NDArray[np.bool_],
    seed: int,
    quiet: bool | None,
) -> AuditResult:
    """The masked-LM audit (``out/masked``): a copy of the public BERT fine-tuned on the
    members (:data:`~miaudit.llm.mlm.MASKED_LM_ATTACKS`: ``mlm_pll`` and ``mlm_ratio``
    against the public BERT, Mireshghallah et al. 2022's setting), with the blind baseline."""
    target_mlm = copy.deepcopy(mlm)
    train_masked_lm(
        target_mlm, mlm_tok, [x for x, m in zip(texts, member, strict=True) if m],
        epochs=cfg.mlm_finetune_epochs, batch_size=cfg.public_batch_size,
        block_size=cfg.mlm_context,
        learning_rate=cfg.learning_rate, seed=seed + MASKED_TARGET_SEED, quiet=quiet,
    )  # fmt: skip
    target = LanguageModelTarget(target_mlm, mlm_tok, batch_size=cfg.score_batch_size)
    names = list(MASKED_LM_ATTACKS)
    scores = _run_attacks(
        target, texts, names, k=0.2, reference=None, mask_model=(mlm, mlm_tok),
        recall_prefix=None, params={}, seed=seed, quiet=quiet,
    )  # fmt: skip
    return _finish(
        scores, member, texts, ids, names, params={}, k=0.2, blind=True, fprs=DEFAULT_FPRS,
        seed=seed, timings={},
        extra={"source": "Python docs, random split; a tiny BERT fine-tuned on the members"},
        output_dir=out / "masked",
    )  # fmt: skip


class _BackgroundReferences:
    """The reference LMs of the demo, trained by a worker interpreter
    (:mod:`miaudit.llm._reference_worker`) while this process trains and audits the target:
    ``cfg.n_references`` models with the target's architecture and training hyper-parameters
    on random halves of the records (not the canaries), kept in ``out/references`` (a re-run
    trains none).

    :meth:`cancel` stops the worker (the demo calls it on every exit, so an error or an
    interrupt in the main work neither waits for the references nor leaves a worker running);
    :meth:`attacks` waits for it and reads the store, training here whatever the worker did not
    store (it failed: its log is in the warning)."""

    def __init__(
        self, out: Path, cfg: LLMDemoConfig, tokenizer: Any, texts: list[str], seed: int
    ) -> None:
        import os
        import pickle
        import subprocess
        import sys
        import tempfile

        from miaudit.llm.reference_run import DemoTrainer, tokenizer_hash

        self.n = cfg.n_references
        arch = tiny_gpt2(
            tokenizer, n_positions=cfg.n_positions, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
            n_head=cfg.n_head,
        ).config  # fmt: skip
        self.hp = {"epochs": cfg.epochs, "batch_size": cfg.batch_size,
                   "block_size": cfg.block_size, "learning_rate": cfg.learning_rate}  # fmt: skip
        train_lm = DemoTrainer(
            arch, tokenizer, cfg.epochs, cfg.batch_size, cfg.block_size, cfg.learning_rate
        )
        description = {"recipe": "llm demo", "params": self.hp, "architecture": arch.to_dict(),
                       "tokenizer": tokenizer_hash(tokenizer),
                       "texts_in_tokenizer": len(texts)}  # fmt: skip
        self._job: dict[str, Any] = {"texts": texts, "train_lm": train_lm, "n_references": self.n,
                     "description": description, "store_root": out / "references",
                     "seed": seed, "batch_size": cfg.score_batch_size}  # fmt: skip
        self._dir = Path(tempfile.mkdtemp(prefix="miaudit-references-"))
        job = self._dir / "job.pkl"
        job.write_bytes(pickle.dumps(self._job))
        self._result = job.with_suffix(".json")
        self._log_path = self._dir / "worker.log"
        self._start = time.perf_counter()
        with self._log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "miaudit.llm._reference_worker", str(job), str(os.getpid())],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip

    def cancel(self) -> None:
        """Stop the worker if it still runs, and remove its job folder."""
        import shutil
        import subprocess

        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=WORKER_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        shutil.rmtree(self._dir, ignore_errors=True)

    def attacks(
        self, target_loss: NDArray[np.float64]
    ) -> tuple[dict[str, NDArray[np.float64]], dict[str, dict[str, Any]], dict[str, Any]]:
        """Wait for the worker; the reference attacks on the target's loss, their infos and a
        summary for the report."""
        from miaudit.llm.reference import (
            REFERENCE_ATTACKS,
            reference_attacks,
            reference_infos,
            resolve_rmia_a,
        )
        from miaudit.llm.reference_run import stored_reference_signals

        code = self._proc.wait()
        seconds = time.perf_counter() - self._start
        by_worker: list[int] = []
        if code == 0 and self._result.exists():
            by_worker = json.loads(self._result.read_text())["trained"]
        else:
            tail = self._log_path.read_text(errors="replace")[-2000:]
            _LOG.warning(
                "the reference worker failed (exit %s); training the missing references in "
                "this process. Its output ended with:\n%s", code, tail,
            )  # fmt: skip
        refs, keep, here = stored_reference_signals(**self._job)
        self.cancel()
        a = resolve_rmia_a(refs, keep)
        names = tuple(REFERENCE_ATTACKS)
        scores = reference_attacks(target_loss, refs, keep, attacks=names, a=a)
        infos = reference_infos(names, n_references=self.n, a=a)
        trained = sorted({*by_worker, *here})
        summary = {"n": self.n, "train": "the demo's recipe", "params": self.hp,
                   "trained_now": len(trained), "from_store": self.n - len(trained),
                   "rmia_a": a, "seconds_in_background": round(seconds, 1)}  # fmt: skip
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
        n_public=300,
        public_epochs=4.0,
        n_neighbours=4,
        mlm_epochs=8.0,
    )
