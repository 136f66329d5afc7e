"""Reference LMs for ``mode: llm`` (``llm.references``): how they are trained, where they are
kept, and the audit that adds their attacks to the normal result.

* **Recipes** (:func:`make_train_lm`): ``"demo"`` trains a fresh model with the target's own
  architecture (its ``config``, random weights from the reference's seed) and the target's
  tokenizer with the demo's trainer (:func:`miaudit.llm.tiny.train_causal_lm`: packed blocks,
  AdamW, warm-up and cosine decay) for ``epochs`` passes. It fits a target trained that way
  (the demo's model, or any model trained with ``train_causal_lm``); its tokenizer must have
  the demo's separator ``<|endoftext|>``. ``"module:function"`` names the user's own
  ``function(texts, seed, **params) -> (model, tokenizer)``, imported only with
  ``trust_code`` (:mod:`miaudit.trust`).
* **Store** (:func:`stored_reference_signals`): reference ``i``'s signals on every text are
  written, atomically, to ``<store>/llm-references-<hash>/signals_<i>.npy`` as soon as it is
  trained, with a manifest entry (SHA-256 of the file, of its keep row and its seed). The
  folder's hash covers the training description (recipe, its parameters, the target's
  architecture, the tokenizer's vocabulary, the training code's hash), the texts themselves
  (SHA-256 of each, in order), the signal and the seed — never a name alone — so a re-run
  trains only the references that are missing and a different recipe or text set never
  reads another's signals. Only the signals are kept, not the reference weights (the attacks
  need nothing else; a model of the demo's size is ~1 MB, a real LM far more).
* **Executors**: the references are trained as tasks of :mod:`miaudit.audit.executors`
  (``local``, ``threads``, ``processes``), each result written as it arrives.
* **Population** (``llm.population``): RMIA's population of texts no model trained on is
  scored under every reference at training time (never trained on; the keep matrix and seeds
  do not change) and kept in the same signal files, after the candidates' columns.
* **Result**: the reference attacks go to :func:`miaudit.llm.audit._finish` as extra attacks
  (``more_scores``, ``more_infos``), so the result, its metrics and the blind baseline's verdict
  against every attack are built once.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from miaudit._json import jsonable
from miaudit.audit.executors import Executor, make_executor
from miaudit.audit.lock import folder_lock
from miaudit.audit.result import AuditResult
from miaudit.audit.store import atomic_write
from miaudit.exceptions import MiauditError, ValidationError
from miaudit.llm.attacks import ONE_PASS_ATTACKS
from miaudit.llm.audit import _finish, _run_attacks
from miaudit.llm.data import TextSplit, find_duplicates, remove_duplicates
from miaudit.llm.reference import (
    DEFAULT_GAMMA,
    DEFAULT_RMIA_A,
    DEFAULT_SIGNAL,
    MIN_TUNING_REFERENCES,
    TrainLM,
    check_attacks,
    plan_references,
    reference_attacks,
    reference_infos,
    resolve_rmia_a,
    train_and_score,
)
from miaudit.llm.target import DEFAULT_BATCH_SIZE, LanguageModelTarget, as_target, check_texts
from miaudit.llm.tiny import END_OF_TEXT
from miaudit.metrics import DEFAULT_FPRS
from miaudit.provenance import code_hash, config_hash, sha256_bytes, sha256_file
from miaudit.registry import check_call, import_object

__all__ = [
    "DEMO_RECIPE",
    "DemoTrainer",
    "ReferenceSpec",
    "audit_texts_with_references",
    "make_train_lm",
    "spec_from_config",
    "stored_reference_signals",
    "tokenizer_hash",
]

_LOG = logging.getLogger("miaudit")
#: The recipe that retrains the target's architecture with the demo's trainer.
DEMO_RECIPE = "demo"
#: The demo trainer's hyper-parameters when ``params`` does not set them
#: (:class:`miaudit.llm.demo.LLMDemoConfig`).
DEMO_DEFAULTS: dict[str, float | int] = {
    "epochs": 16.0,
    "batch_size": 8,
    "block_size": 64,
    "learning_rate": 3e-3,
}
#: Version of the reference store's layout.
STORE_FORMAT = 1
#: Hex digits of the description hash in folder names (the full hash is in the manifest).
HASH_DIGITS = 16
_MANIFEST = "manifest.json"
#: Sources whose change invalidates stored reference signals (training, scoring, planning).
_CODE = (
    "llm/demo.py",
    "llm/tiny.py",
    "llm/reference.py",
    "llm/target.py",
    "llm/attacks.py",
    "data/splits.py",
)


@dataclass(frozen=True)
class ReferenceSpec:
    """How reference LMs are trained and attacked (``llm.references`` of a config).

    Attributes
    ----------
    n : int
        Number of reference LMs (every text IN for ``round(n / 2)``).
    train : str
        ``"demo"`` or ``"module:function"`` (module docstring).
    params : dict
        Keyword arguments of the recipe: for ``"demo"`` ``epochs``, ``batch_size``,
        ``block_size``, ``learning_rate`` (defaults :data:`DEMO_DEFAULTS`); for a function,
        whatever it takes.
    attacks : tuple of str, optional
        Among :data:`~miaudit.llm.reference.REFERENCE_ATTACKS` (default: all that apply).
    signal : str
        Per-text signal (``"loss"``).
    gamma, a : float, float or "auto"
        RMIA's parameters (:func:`~miaudit.llm.reference.reference_attacks`).
    """

    n: int = 8
    train: str = DEMO_RECIPE
    params: Mapping[str, Any] = field(default_factory=dict)
    attacks: tuple[str, ...] | None = None
    signal: str = DEFAULT_SIGNAL
    gamma: float = DEFAULT_GAMMA
    a: float | str = DEFAULT_RMIA_A


def spec_from_config(cfg: Any) -> ReferenceSpec:
    """A :class:`ReferenceSpec` from ``llm.references`` of a config
    (:class:`miaudit.config.LlmReferencesConfig`): ``epochs`` joins ``params``."""
    params = dict(cfg.params)
    if cfg.epochs is not None:
        if "epochs" in params:
            raise ValidationError(
                "llm.references: epochs is given twice (as epochs and in params); keep one"
            )
        params["epochs"] = cfg.epochs
    return ReferenceSpec(
        n=cfg.n,
        train=cfg.train,
        params=params,
        attacks=None if cfg.attacks is None else tuple(cfg.attacks),
        signal=cfg.signal,
        gamma=cfg.gamma,
        a=cfg.a,
    )


@dataclass
class DemoTrainer:
    """``train_lm(texts, seed)`` of the ``"demo"`` recipe: a fresh model from
    ``model_config`` (weights from ``seed``) trained by
    :func:`~miaudit.llm.tiny.train_causal_lm` (picklable: config, tokenizer, numbers)."""

    model_config: Any
    tokenizer: Any
    epochs: float
    batch_size: int
    block_size: int
    learning_rate: float

    def __call__(self, texts: list[str], seed: int) -> tuple[Any, Any]:
        import torch
        from transformers import AutoModelForCausalLM

        from miaudit.llm.tiny import train_causal_lm

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = AutoModelForCausalLM.from_config(self.model_config)
        train_causal_lm(
            model, self.tokenizer, texts, epochs=self.epochs, batch_size=self.batch_size,
            block_size=self.block_size, learning_rate=self.learning_rate, seed=seed, quiet=True,
        )  # fmt: skip
        return model, self.tokenizer


@dataclass
class _UserTrainer:
    """``train_lm`` of a ``"module:function"`` recipe (picklable: the import path)."""

    spec: str
    params: dict[str, Any]

    def __call__(self, texts: list[str], seed: int) -> tuple[Any, Any]:
        fn = import_object(self.spec, "llm.references.train")
        return fn(texts, seed, **self.params)


def make_train_lm(spec: ReferenceSpec, target: LanguageModelTarget) -> tuple[TrainLM, dict]:
    """``train_lm(texts, seed)`` for ``spec.train`` and the description that identifies it.

    Raises
    ------
    ValidationError
        An unknown recipe, unknown parameters, or a ``"demo"`` target whose tokenizer lacks
        the demo's separator.
    UntrustedCodeError
        A ``"module:function"`` recipe inside an untrusted config.
    """
    params = dict(spec.params)
    if spec.train == DEMO_RECIPE:
        unknown = sorted(set(params) - set(DEMO_DEFAULTS))
        if unknown:
            raise ValidationError(
                f"llm.references.params: {unknown} are not parameters of the demo recipe "
                f"(expected some of {', '.join(DEMO_DEFAULTS)})"
            )
        tok = target.tokenizer
        if END_OF_TEXT not in tok.get_vocab():
            raise ValidationError(
                f"llm.references.train: 'demo' retrains with the demo's trainer, which packs "
                f"texts with {END_OF_TEXT!r}; this tokenizer has no such token. Give your own "
                "training function as 'module:function' (with trust_code)"
            )
        hp = {**DEMO_DEFAULTS, **params}
        trainer = DemoTrainer(
            target.model.config, tok, float(hp["epochs"]), int(hp["batch_size"]),
            int(hp["block_size"]), float(hp["learning_rate"]),
        )  # fmt: skip
        description: dict[str, Any] = {
            "recipe": DEMO_RECIPE,
            "params": hp,
            "architecture": target.model.config.to_dict(),
            "tokenizer": tokenizer_hash(tok),
        }
        return trainer, description
    if ":" not in spec.train:
        raise ValidationError(
            f"llm.references.train: expected {DEMO_RECIPE!r} or 'module:function', "
            f"got {spec.train!r}"
        )
    fn = import_object(spec.train, "llm.references.train")
    check_call(fn, f"llm.references.train {spec.train!r}", [], 0, **params)
    description = {
        "recipe": spec.train,
        "params": params,
        "source": _source_hash(fn),
    }
    return _UserTrainer(spec.train, params), description


def _source_hash(fn: Any) -> str | None:
    """SHA-256 of the file defining ``fn`` (so an edited training function retrains)."""
    import inspect

    try:
        return sha256_file(inspect.getfile(fn))
    except (TypeError, OSError):
        return None


@dataclass
class _Task:
    index: int
    keep_row: NDArray[np.bool_]
    seed: int


@dataclass
class _TrainAndScore:
    """What an executor runs per reference (picklable)."""

    texts: list[str]
    train_lm: TrainLM
    signal: str
    batch_size: int

    def __call__(self, task: _Task) -> tuple[int, NDArray[np.float64]]:
        row = train_and_score(
            self.texts, task.keep_row, task.seed, self.train_lm, signal=self.signal,
            batch_size=self.batch_size,
        )  # fmt: skip
        return task.index, row


def _folder(root: Path, description: Mapping[str, Any]) -> tuple[Path, str]:
    digest = config_hash(dict(description))
    return root / f"llm-references-{digest[:HASH_DIGITS]}", digest


def _read_manifest(path: Path, digest: str) -> dict[str, Any]:
    if not path.exists():
        return {"hash": digest, "references": {}}
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        _LOG.warning("%s: unreadable, the references are trained again", path)
        return {"hash": digest, "references": {}}
    if manifest.get("hash") != digest:
        raise MiauditError(
            f"{path}: belongs to another description (hash {manifest.get('hash')!r}, "
            f"expected {digest!r})"
        )
    return manifest


def stored_reference_signals(
    texts: Sequence[str],
    train_lm: TrainLM,
    n_references: int,
    *,
    description: Mapping[str, Any],
    store_root: str | Path,
    seed: int = 0,
    signal: str = DEFAULT_SIGNAL,
    batch_size: int = DEFAULT_BATCH_SIZE,
    executor: str | Executor = "local",
    population: Sequence[str] | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.bool_], list[int]]:
    """:func:`~miaudit.llm.reference.reference_signals` through the store: the same keep
    matrix, seeds and signals, but every reference's signals written to disk as soon as it is
    trained, and references already stored (checksums verified) not trained again.

    Parameters
    ----------
    texts, train_lm, n_references, seed, signal, batch_size
        As :func:`~miaudit.llm.reference.reference_signals`.
    description : mapping
        What identifies ``train_lm`` (:func:`make_train_lm`'s second value); hashed with the
        texts, the signal, the seed and the code into the folder name.
    store_root : str or Path
        Folder of the reference store.
    executor : str or Executor
        Where the references are trained (:func:`miaudit.audit.executors.make_executor`).
    population : sequence of str, optional
        ``z`` texts no model trains on (RMIA's population): never in a reference's training
        set, scored under every reference with the ``n`` texts (the keep matrix and seeds do
        not change; the folder's hash covers them too).

    Returns
    -------
    signals : ndarray of shape (m, n), or (m, n + z) with a population
        The population's signals are the last ``z`` columns.
    keep : ndarray of shape (m, n), bool
    trained : list of int
        The references trained by this call (the others came from the store).
    """
    checked = check_texts(texts)
    keep, seeds = plan_references(len(checked), n_references, seed)
    pop = [] if population is None else check_texts(population, "population")
    full: dict[str, Any] = {
        "format": STORE_FORMAT,
        "training": dict(description),
        "code": code_hash(_CODE),
        "texts": _texts_hash(checked),
        "n_texts": len(checked),
        "signal": signal,
        "seed": seed,
    }
    if pop:  # only then, so that the stores of audits without a population stay valid
        full["population"] = _texts_hash(pop)
        full["n_population"] = len(pop)
    folder, digest = _folder(Path(store_root), jsonable(full))
    signals = np.full((keep.shape[0], keep.shape[1] + len(pop)), np.nan)
    scored_keep = np.concatenate([keep, np.zeros((keep.shape[0], len(pop)), dtype=bool)], axis=1)
    with folder_lock(folder, what="reference store folder"):
        manifest = _read_manifest(folder / _MANIFEST, digest)
        refs: dict[str, Any] = manifest["references"]
        missing = []
        for i in range(keep.shape[0]):
            entry = refs.get(str(i))
            path = folder / f"signals_{i:05d}.npy"
            ok = (
                entry is not None
                and entry["keep_row"] == sha256_bytes(keep[i].tobytes())
                and entry["seed"] == int(seeds[i])
                and path.exists()
                and sha256_file(path) == entry["sha256"]
            )
            if ok:
                signals[i] = np.load(path, allow_pickle=False)
            else:
                missing.append(i)
        if missing:
            fn = _TrainAndScore(checked + pop, train_lm, signal, batch_size)
            tasks = [_Task(i, scored_keep[i], int(seeds[i])) for i in missing]
            for i, row in make_executor(executor).map(fn, tasks):
                signals[i] = row
                buf = _npy(row)
                info = atomic_write(folder / f"signals_{i:05d}.npy", buf)
                refs[str(i)] = {
                    "sha256": info["sha256"],
                    "keep_row": sha256_bytes(keep[i].tobytes()),
                    "seed": int(seeds[i]),
                    "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
                }
                manifest["description"] = jsonable(full)
                atomic_write(folder / _MANIFEST, json.dumps(manifest, indent=1).encode())
    return signals, keep, missing


def tokenizer_hash(tokenizer: Any) -> str:
    """SHA-256 of a tokenizer's vocabulary (token → id, sorted): what a stored reference's
    signals depend on, where the vocabulary size alone does not tell two tokenizers apart."""
    return sha256_bytes(json.dumps(tokenizer.get_vocab(), sort_keys=True).encode())


def _texts_hash(texts: Sequence[str]) -> str:
    """SHA-256 over the SHA-256 of each text, in order."""
    return sha256_bytes("".join(sha256_bytes(t.encode()) for t in texts).encode())


def _npy(arr: NDArray[np.float64]) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, np.asarray(arr, dtype=np.float64), allow_pickle=False)
    return buf.getvalue()


def audit_texts_with_references(
    split: TextSplit,
    *,
    model: Any,
    references: ReferenceSpec,
    store_root: str | Path,
    attacks: Sequence[str] | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    executor: str | Executor = "local",
    duplicates: Literal["report", "remove"] = "report",
    blind: bool = True,
    fprs: Sequence[float] = DEFAULT_FPRS,
    seed: int = 0,
    quiet: bool | None = None,
    population: Sequence[str] | None = None,
    **target_kw: Any,
) -> AuditResult:
    """:func:`~miaudit.llm.audit_texts` plus the reference attacks as extra attacks of the
    same result (metrics, report, ``scores.csv``), with references trained by
    ``references.train`` through the store (:func:`stored_reference_signals`).

    The blind baseline's verdict compares the blind classifiers with *every* attack, the
    reference attacks included. ``config["llm"]["references"]`` records the recipe, the
    number trained now and taken from the store, the RMIA ``a`` used and the store folder.

    Parameters
    ----------
    split : TextSplit
    model : str, Path, transformers model or LanguageModelTarget
    references : ReferenceSpec
    store_root : str or Path
        The reference store.
    attacks, params, duplicates, blind, fprs, seed, quiet
        As :func:`~miaudit.llm.audit_texts` (``attacks``: the one-model attacks).
    executor : str or Executor
        Where references are trained.
    population : sequence of str, optional
        RMIA's population ``Z``: texts that neither the audited model nor any reference
        trained on (``llm.population``), scored under the audited model and under every
        reference (:func:`stored_reference_signals`). Default: the candidate texts.
    **target_kw
        ``batch_size``, ``device``, ``max_length``, ``k``, ``reference``, ``mask_model``,
        ``recall_prefix`` (as :func:`~miaudit.llm.audit_texts`).
    """
    t0 = time.perf_counter()
    ref_names = check_attacks(references.attacks, references.signal)
    least = MIN_TUNING_REFERENCES
    if "rmia_offline" in ref_names and references.a == "auto" and references.n < least:
        raise ValidationError(
            f"llm.references: offline RMIA with a: auto needs n >= {least} references to tune "
            f"a on them, got n = {references.n}; raise n, give a, or leave rmia_offline out"
        )
    if duplicates == "remove":
        split, dup = remove_duplicates(split)
    else:
        dup = find_duplicates(split.members, split.non_members)
    k = target_kw.pop("k", 0.2)
    extras = {n: target_kw.pop(n, None) for n in ("reference", "mask_model", "recall_prefix")}
    target = as_target(model, **{n: v for n, v in target_kw.items() if v is not None})
    texts = split.texts
    is_member = np.array(split.is_member, dtype=bool)
    names = list(attacks) if attacks is not None else [*ONE_PASS_ATTACKS, "lowercase"]
    if references.signal not in names:
        names.append(references.signal)
    t1 = time.perf_counter()
    scores = _run_attacks(
        target, texts, names, k=k, params=dict(params or {}), seed=seed, quiet=quiet, **extras
    )
    timings = {"duplicates": t1 - t0, "attacks": time.perf_counter() - t1}

    t2 = time.perf_counter()
    pop = None
    if population is not None:
        pop = check_texts(population, "population")
        audited = set(texts)
        inside = [i for i, t in enumerate(pop) if t in audited]
        if inside:
            raise ValidationError(
                f"population[{inside[0]}]: an audited text; RMIA's population must be texts "
                "that no model trained on"
            )
    train_lm, description = make_train_lm(references, target)
    signals, keep, trained = stored_reference_signals(
        texts, train_lm, references.n, description=description, store_root=store_root,
        seed=seed, signal=references.signal, batch_size=target.batch_size, executor=executor,
        population=pop,
    )  # fmt: skip
    refs = signals[:, : len(texts)]
    pop_kw: dict[str, Any] = {}
    if pop is not None:
        pop_target = _run_attacks(
            target, pop, [references.signal], k=k, reference=None, mask_model=None,
            recall_prefix=None, params={}, seed=seed, quiet=quiet,
        )[references.signal]  # fmt: skip
        pop_kw = {"population_target": pop_target, "population_reference": signals[:, len(texts) :]}
    a_used = None
    if "rmia_offline" in ref_names:
        a_used = resolve_rmia_a(
            refs, keep, references.a, gamma=references.gamma,
            population_reference=pop_kw.get("population_reference"),
        )  # fmt: skip
    ref_scores = reference_attacks(
        scores[references.signal], refs, keep, attacks=ref_names, gamma=references.gamma,
        a=references.a if a_used is None else a_used, **pop_kw,
    )  # fmt: skip
    timings["references"] = time.perf_counter() - t2
    clash = sorted(set(ref_scores) & set(names))
    if clash:
        raise ValidationError(f"attacks: {clash} are both one-model and reference attacks")

    infos = reference_infos(
        ref_names,
        signal=references.signal,
        n_references=references.n,
        gamma=references.gamma,
        a=a_used,
    )
    extra = {"source": split.source, "duplicates": {**dup.to_dict(), "action": duplicates}}
    result = _finish(
        scores, is_member, texts, split.record_ids, names, params=dict(params or {}), k=k,
        blind=blind, fprs=fprs, seed=seed, timings=timings, extra=extra, output_dir=None,
        more_scores=ref_scores, more_infos=infos,
    )  # fmt: skip
    summary: dict[str, Any] = {
        "n": references.n,
        "train": references.train,
        "params": description.get("params", {}),
        "trained_now": len(trained),
        "from_store": references.n - len(trained),
        "rmia_a": a_used,
        "gamma": references.gamma,
        "store": str(Path(store_root)),
    }
    if pop is not None:
        summary["population"] = len(pop)
    result.config["llm"]["references"] = summary
    return result
