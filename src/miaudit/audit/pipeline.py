"""The end-to-end audit: data → keep matrix → models → observations → attacks → metrics → report.

One entry point, :class:`Audit`, over the stages (each usable on its own):

1. data (:mod:`miaudit.data`): a built-in dataset or the user's file; ``population`` records
   reserved that no model trains on (RMIA, Attack-P need them);
2. splits (:mod:`miaudit.data.splits`): a balanced keep matrix, every audited record IN for
   exactly half the models;
3. models (:mod:`miaudit.audit.engine`): trained with the recipe, resumable in the run store,
   queried on every record (``q`` queries each);
4. attacks (:mod:`miaudit.audit.attack_stage`): every attack against every target; scores are
   cached on disk by a hash of everything they depend on;
5. metrics (:mod:`miaudit.metrics`) and the report (:mod:`miaudit.report`).

Two ways in (the third, scores only, is ``miaudit evaluate``):

* ``mode: algorithm`` — ``n_references + 1`` models on random halves, each in turn the target
  with the others as its references (leave-one-out); the ROC pools all targets, as in the LiRA
  paper. It audits the training recipe.
* ``mode: model`` — the user's trained model with the membership of each record given; reference
  models are trained with the user's recipe on random halves of the records and the user's
  model is attacked.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import time
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from miaudit import attacks
from miaudit._json import parse_float
from miaudit.audit.attack_stage import EXTERNAL_TARGET, SignalBank, TargetSplit, score_targets
from miaudit.audit.cache import load_array, save_array
from miaudit.audit.exposure import profile_exposure
from miaudit.audit.result import AuditResult, build_result
from miaudit.config import AuditConfig, ConfigError, load_config, parse_config
from miaudit.data import Dataset
from miaudit.data.canaries import Canaries
from miaudit.data.splits import (
    LeaveOneOut,
    embed_keep,
    nested_keep_matrix,
    population_split,
)
from miaudit.exceptions import MiauditError, MissingColumnError, ValidationError
from miaudit.provenance import code_hash, content_hash, dataset_fingerprint, splits_code_hash
from miaudit.registry import Registry
from miaudit.report.files import write_metrics, write_outputs

#: Fewest records an audit evaluates (below this no TPR at a low FPR can be measured at all).
MIN_AUDIT_RECORDS = 20

#: Smallest log-probability used when a target returns probabilities (log 0 = -inf otherwise).
_LOG_TINY = float(np.log(np.finfo(np.float64).tiny))


@dataclass
class _Timer:
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def n_population(spec: float, n_records: int) -> int:
    """Population size from the config: a fraction of ``n_records`` if < 1, else a count."""
    if spec <= 0:
        return 0
    return round(spec * n_records) if spec < 1 else int(spec)


#: Source files whose code decides an attack's scores from the models' outputs: a change to any
#: of them invalidates the score cache (:func:`attack_fingerprint`).
SCORING_SOURCES = (
    "attacks/*.py",
    "signals.py",
    "metrics.py",
    "audit/attack_stage.py",
    "data/splits.py",
)


@functools.cache
def scoring_code_hash() -> str:
    """SHA-256 of the package version and of the :data:`SCORING_SOURCES` files."""
    return code_hash(SCORING_SOURCES)


def attack_fingerprint(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """What an attack's scores depend on besides its inputs: its class, every constructor
    parameter *with the defaults filled in* (so a default that changes between versions, or a
    parameter spelled out at its default, is keyed correctly) and :func:`scoring_code_hash`."""
    cls = attacks.get(name)
    bound = inspect.signature(cls).bind_partial(**params)
    bound.apply_defaults()
    key: dict[str, Any] = {
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "params": dict(bound.arguments),
        "code": scoring_code_hash(),
    }
    if not cls.__module__.startswith("miaudit."):
        # An attack registered by the user: its own module's source is part of the key.
        module = inspect.getmodule(cls)
        try:
            source = inspect.getsource(module) if module is not None else None
        except (OSError, TypeError):
            source = None
        key["attack_source"] = (
            hashlib.sha256(source.encode()).hexdigest() if source is not None else None
        )
    return key


def _audit_canaries_too(
    audit_idx: NDArray[np.int64],
    pop_idx: NDArray[np.int64],
    canaries: NDArray[np.intp],
    rng: np.random.Generator,
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Move the canaries that fell among the population records (never trained on, so never
    IN) into the audited records, and as many non-canary audited records, drawn at random
    from ``rng``, the other way, so that both sets keep their sizes."""
    stray = np.intersect1d(pop_idx, canaries)
    if stray.size == 0:
        return audit_idx, pop_idx
    movable = np.setdiff1d(audit_idx, canaries)
    if movable.size < stray.size:
        raise ConfigError("data.canaries: more canaries than records to audit")
    back = rng.choice(movable, stray.size, replace=False)
    audit = np.sort(np.concatenate([np.setdiff1d(audit_idx, back), stray]))
    pop = np.sort(np.concatenate([np.setdiff1d(pop_idx, stray), back]))
    return audit.astype(np.int64), pop.astype(np.int64)


def original_labels(ds: Dataset) -> NDArray:
    """The dataset's labels as its file wrote them: the strings of ``meta["label_names"]`` when
    a loader mapped string labels to ``0..C-1``, else the integer labels."""
    names = ds.meta.get("label_names")
    if names is None:
        return ds.y
    return np.asarray(names, dtype=object)[ds.y]


class Audit:
    """Run a membership-inference audit.

    Parameters
    ----------
    config : AuditConfig, dict, or path to a YAML file, optional
        The configuration; keyword arguments are merged into it (top-level keys).
    dataset : Dataset, optional
        Records given directly from Python (instead of ``data.name`` / ``data.path``).
    is_member : array of shape (n,), optional
        ``mode: model`` from Python: which records the target trained on.
    target_predict : callable, optional
        ``mode: model`` from Python: a function ``X -> (n, C)`` outputs of the user's model
        (``config.target.output_kind`` says logits or probabilities).

    Examples
    --------
    >>> result = Audit(data={"name": "digits"}, n_references=8).run()   # doctest: +SKIP
    >>> result.metrics["lira"].at(1e-3).tpr                             # doctest: +SKIP
    """

    def __init__(
        self,
        config: AuditConfig | dict[str, Any] | str | Path | None = None,
        *,
        dataset: Dataset | None = None,
        is_member: NDArray | None = None,
        target_predict: Callable[[NDArray], NDArray] | None = None,
        **overrides: Any,
    ) -> None:
        if isinstance(config, str | Path):
            base = load_config(config)
            config = (
                base
                if not overrides
                else parse_config({**base.model_dump(mode="json"), **overrides})
            )
        elif isinstance(config, AuditConfig):
            if overrides:
                config = parse_config({**config.model_dump(mode="json"), **overrides})
        else:
            data = dict(config or {})
            data.update(overrides)
            if dataset is not None:
                data.setdefault("data", {})
            config = parse_config(data)
        self.config: AuditConfig = config
        self._dataset = dataset
        self._is_member = is_member
        self._target_predict = target_predict

    # ------------------------------------------------------------------ stages
    def load_data(self) -> tuple[Dataset, NDArray[np.bool_] | None]:
        """The dataset, and for ``mode: model`` the target's membership of each record."""
        cfg = self.config
        if self._dataset is not None:
            ds = self._dataset
        elif cfg.data.name is not None:
            from miaudit.data import load_dataset

            ds = load_dataset(cfg.data.name, **cfg.data.params)
        elif cfg.data.path is not None:
            from miaudit.data import load_file

            params = dict(cfg.data.params)
            member_col = cfg.target.member_col if cfg.target is not None else None
            if cfg.mode == "model" and member_col is not None:
                # The membership column is ground truth, never a feature.
                params["extra_cols"] = [*params.pop("extra_cols", []), member_col]
            try:
                ds = load_file(cfg.data.path, **params)
            except MissingColumnError as exc:
                if exc.field == "extra_cols" and member_col in exc.missing:
                    raise ConfigError(
                        f"target.member_col: no column {member_col!r} says which records the "
                        f"target trained on ({exc})"
                    ) from None
                raise
        else:
            raise ConfigError(
                "data: give data.name (a built-in dataset) or data.path (a file), "
                "or pass dataset= to Audit from Python"
            )
        member = None
        if cfg.mode == "model":
            member = self._membership(ds)
        return ds, member

    def _membership(self, ds: Dataset) -> NDArray[np.bool_]:
        from miaudit._validation import check_both_classes, check_membership

        if self._is_member is not None:
            member = check_membership(self._is_member)
        else:
            col = self.config.target.member_col  # type: ignore[union-attr]
            column = ds.meta.get("columns", {}).get(col)
            if column is None:
                raise ConfigError(
                    f"target.member_col: the data has no column {col!r} saying which records "
                    f"the target trained on (columns kept: "
                    f"{', '.join(ds.meta.get('columns', {})) or 'none'})"
                )
            member = check_membership(np.asarray(column), name=col)
        if member.shape != (len(ds),):
            raise ValidationError(
                f"is_member: has {member.shape[0]} entries but the data has {len(ds)} records"
            )
        check_both_classes(member)
        return member

    def run(self, *, wait: bool = False) -> AuditResult:
        """Run every stage and write the results into ``config.output``.

        The output folder is locked for the run (:mod:`miaudit.audit.lock`): another process
        writing there gets an error, or with ``wait=True`` waits for it. Code named by the
        config is imported only with ``trust_code`` (:mod:`miaudit.trust`).
        """
        from miaudit.audit.lock import folder_lock
        from miaudit.trust import code_trust

        with (
            code_trust(self.config.trust_code),
            folder_lock(self.config.output, wait=wait, what="output folder"),
        ):
            return self._run()

    def _run(self) -> AuditResult:
        return MODES.get(self.config.mode)().run(self)

    def _audit_models(self, mode: AuditMode) -> AuditResult:
        """The audit of trained classifiers (algorithm and model modes)."""
        cfg = self.config
        timer = _Timer()
        with timer.stage("data"):
            ds, member = self.load_data()
            planted = self._plant_canaries(ds)
            if planted is not None:
                ds = planted.dataset
        from miaudit.data.loaders import check_classes

        check_classes(ds.y, ds.n_classes, f"data ({ds.name}): labels")
        n = len(ds)
        n_pop = n_population(cfg.data.population, n)
        split_seed, keep_seed = (
            np.random.default_rng(s) for s in np.random.SeedSequence(cfg.seed).spawn(2)
        )
        audit_idx, pop_idx = mode.split_records(n, n_pop, member, split_seed)
        if planted is not None:
            audit_idx, pop_idx = _audit_canaries_too(
                audit_idx, pop_idx, np.flatnonzero(planted.mask(ds.record_ids)), split_seed
            )
        n_models = mode.n_models(cfg)
        self._preflight(n, audit_idx.size, pop_idx.size, n_models)
        target = mode.load_target(self, ds)
        mode.check_attacks(self, target)
        sub_keep, lineage = self._settle_keep(ds, audit_idx, pop_idx, n_models, keep_seed)
        keep = embed_keep(sub_keep, audit_idx, n)

        with timer.stage("training"):
            trained = self._train(ds, keep, lineage)
        targets = mode.targets(
            _ModelRun(self, ds, keep, audit_idx, member, trained, target, timer)
        )

        with timer.stage("attacks"):
            scores = self._scores(
                trained.key,
                trained.observations,
                ds.y,
                keep,
                targets.splits,
                audit_idx,
                pop_idx,
                targets.outputs,
                targets.signals,
            )
        with timer.stage("metrics"):
            result = build_result(
                scores,
                targets.truth,
                ds.record_ids[audit_idx],
                original_labels(ds)[audit_idx],
                targets.names,
                fprs=cfg.fprs,
                alpha=cfg.alpha,
                delta=cfg.delta,
                seed=cfg.seed,
                flag_fpr=cfg.report.flag_fpr,
                epsilon_selection=cfg.epsilon_selection,
                models=targets.models,
                attacks={
                    s.display: _attack_meta(s.name, s.params, targets.access.get(s.display))
                    for s in cfg.attacks
                },
            )
        result.target = _target_info(target)
        result.config = cfg.model_dump(mode="json")
        if planted is not None:
            from miaudit.audit.canary_audit import audit_canaries

            spec = cfg.data.canaries
            assert spec is not None
            result.canary_audit = {
                "kind": planted.kind,
                **audit_canaries(
                    result.scores, planted.record_ids, attack=spec.attack, delta=cfg.delta,
                    alpha=cfg.alpha, seed=cfg.seed,
                ),
            }
        result.exposure = profile_exposure(
            result.vulnerability,
            ds.record_ids[audit_idx],
            ds.X[audit_idx],
            original_labels(ds)[audit_idx],
            top_k=cfg.report.top_records,
            seed=cfg.seed,
        )
        with timer.stage("report"):
            write_outputs(result, cfg.output)
        result.timings = timer.seconds
        write_metrics(result, cfg.output)  # last, once, with every stage's time
        result.output_dir = cfg.output
        return result

    def _plant_canaries(self, ds: Dataset) -> Canaries | None:
        """``data.canaries``: the dataset with its canaries (None when the config has none)."""
        spec = self.config.data.canaries
        if spec is None:
            return None
        from miaudit.data.canaries import add_canaries

        seed = self.config.seed if spec.seed is None else spec.seed
        return add_canaries(ds, spec.n, spec.kind, seed=seed)

    def _preflight(self, n: int, n_audit: int, n_pop: int, n_models: int) -> None:
        """Errors that would otherwise surface only after training."""
        if n_audit < MIN_AUDIT_RECORDS:
            raise ConfigError(
                f"data: {n} records, of which {n_pop} are population records, leave {n_audit} "
                f"records to audit; an audit needs at least {MIN_AUDIT_RECORDS} (each of the "
                f"{n_models} models trains on about half of them)"
            )
        if n_pop == 0:
            needy = [
                s.display for s in self.config.attacks if attacks.get(s.name).info.needs_population
            ]
            if needy:
                raise ConfigError(
                    f"attacks {needy} need population records that no model trains on; set "
                    "data.population (a fraction such as 0.1, or a count)"
                )

    def _settle_keep(
        self,
        ds: Dataset,
        audit_idx: NDArray[np.int64],
        pop_idx: NDArray[np.int64],
        n_models: int,
        rng: np.random.Generator,
    ) -> tuple[NDArray[np.bool_], str]:
        """The keep matrix ``(n_models, n_audit)`` and its lineage (the store folder it trains in).

        The matrix is :func:`~miaudit.data.splits.nested_keep_matrix`: balanced (every record
        IN for exactly ``n_in_per_record(n_models)`` models) and a pure function of the seed
        and the count, whose first rows never depend on how many models are asked for within
        one parity. So 3 then 5 references in one folder give the same models and numbers as
        5 in a fresh folder, and the smaller run's models are reused. The lineage is a hash of
        the data, the split, the seed, the splits code and the parity.
        """
        split_key = content_hash(
            dataset_fingerprint(ds.X, ds.y, ds.record_ids),
            audit_idx,
            pop_idx,
            self.config.seed,
            splits_code_hash(),
        )
        parity = "odd" if n_models % 2 else "even"
        return nested_keep_matrix(n_models, audit_idx.size, rng), f"{split_key}-{parity}"

    def _train(self, ds: Dataset, keep: NDArray[np.bool_], lineage: str) -> _TrainedModels:
        from miaudit.audit.engine import train_and_query
        from miaudit.audit.executors import make_executor
        from miaudit.train.recipes import make_recipe

        cfg = self.config
        params = {"seed": cfg.seed, **cfg.training.params}
        try:
            recipe = make_recipe(cfg.training.recipe, **params)
        except MiauditError as exc:
            raise ConfigError(f"training.params: {exc}") from None
        run = train_and_query(
            ds,
            keep,
            recipe,
            queries=cfg.queries,
            store_root=cfg.output / "store" / lineage,
            executor=make_executor(cfg.executor.kind, **cfg.executor.params),
            quiet=True if cfg.quiet else None,
        )
        return _TrainedModels.from_engine(run)

    def _load_target(self, ds: Dataset) -> Any:
        """The user's model, loaded before any training so that a bad target fails fast, with
        the config's output restrictions applied (``target.restrict``)."""
        from miaudit.targets import CallableTarget, load_target
        from miaudit.targets.restrict import restrict

        tcfg = self.config.target
        assert tcfg is not None
        target: Any
        if self._target_predict is not None:
            target = CallableTarget(self._target_predict, kind=tcfg.output_kind or "logits")
        elif tcfg.http is not None:
            target = _http_target(tcfg.http, ds.n_classes)
        elif tcfg.model:
            try:
                target = load_target(
                    tcfg.model, ds.n_classes, kind=tcfg.output_kind, trusted=tcfg.trusted
                )
            except (zipfile.BadZipFile, KeyError) as exc:  # skops: not a skops archive
                raise ConfigError(
                    f"target.model: {tcfg.model} is not a readable .skops file ({exc}); save "
                    "the model with skops.io.dump (pickles are refused)"
                ) from None
        else:
            raise ConfigError(
                "target.model: give the model to audit (a .skops file or 'module:function'), "
                "or target.http (a prediction API), or pass target_predict= from Python"
            )
        return restrict(target, tcfg.restrict)

    def _query_signals(
        self, ds: Dataset, target: Any
    ) -> tuple[dict[str, NDArray], dict[str, str]]:
        """Signals that ``needs_queries`` attacks compute by querying the target on every
        record, and the threat model each attack runs under (for the report)."""
        from miaudit.targets import capabilities, describe_access

        returns = describe_access(capabilities(target))
        signals: dict[str, NDArray] = {}
        access: dict[str, str] = {}
        for spec in self.config.attacks:
            attack = attacks.create(spec.name, **spec.params)
            access[spec.display] = returns
            if not attack.info.needs_queries:
                continue
            for name, values in attack.query_signals(target, ds.X, ds.y).items():
                signals[name] = values
            spent = getattr(attack, "_last_queries", None)
            if spent is not None and len(spent):
                budget = getattr(attack, "budget", None)
                access[spec.display] += (
                    f", {float(np.mean(spent)):,.0f} queries per record (max "
                    f"{int(np.max(spent)):,}" + (f", budget {budget:,})" if budget else ")")
                )
        return signals, access

    def _query_target(self, ds: Dataset, target: Any) -> NDArray[np.float64]:
        """The target's outputs on every record and query, shape (n, q, C)."""
        views = _query_views(ds.X, self.config.queries)
        out = np.stack([np.asarray(target.predict(v), dtype=np.float64) for v in views], axis=1)
        if out.shape[0] != len(ds) or out.shape[2] != ds.n_classes:
            raise ValidationError(
                f"target: returned outputs of shape {out.shape[::2]} per query; expected "
                f"({len(ds)}, {ds.n_classes})"
            )
        explicit = self.config.target is not None and self.config.target.output_kind is not None
        if target.kind == "logits" and not explicit and _looks_like_probabilities(out):
            # A callable whose kind was not given returned probability vectors.
            target.kind = "probs"
        if target.kind == "probs":
            # log-probabilities are logits of the same softmax: every signal is unchanged.
            with np.errstate(divide="ignore"):
                out = np.maximum(np.log(out), _LOG_TINY)
        return out

    def _scores(
        self,
        run_key: str,
        outputs: NDArray,
        labels: NDArray,
        keep: NDArray,
        splits: list[TargetSplit],
        audit_idx: NDArray,
        pop_idx: NDArray,
        target_outputs: NDArray | None,
        target_signals: dict[str, NDArray] | None = None,
    ) -> dict[str, NDArray[np.float64]]:
        """Scores of every attack, cached in ``output/cache`` by a hash of their inputs."""
        cache = self.config.output / "cache"
        cache.mkdir(parents=True, exist_ok=True)
        common = (
            run_key,
            keep,
            audit_idx,
            pop_idx,
            [(int(t), r.tolist()) for t, r in splits],
            target_outputs if target_outputs is not None else "no external target",
            *sorted((target_signals or {}).items()),
        )
        bank = SignalBank(outputs, labels)
        result: dict[str, NDArray[np.float64]] = {}
        for spec in self.config.attacks:
            key = f"scores-{content_hash(*common, attack_fingerprint(spec.name, spec.params))}"
            cached = load_array(cache, key)
            if cached is not None and cached.shape == (len(splits), audit_idx.size):
                result[spec.display] = cached
                continue
            scores = score_targets(
                bank,
                keep,
                splits,
                [spec],
                audit_idx,
                pop_idx,
                target_outputs,
                quiet=True if self.config.quiet else None,
                target_signals=target_signals,
            )[spec.display]
            save_array(cache, key, scores)
            result[spec.display] = scores
        return result


@dataclass
class _Targets:
    """Who is attacked: one split per target, its membership truth, names and models table.

    Attributes
    ----------
    splits : list of TargetSplit
        ``(target index, reference indices)`` per target.
    truth : ndarray of shape (T, n_audit), bool
        Whether target ``t`` trained on each audited record.
    names : list
        Target names for the scores table (model indices, or ``"target"``).
    outputs : ndarray of shape (N, q, C) or None
        The external target's outputs (model audits).
    models : pandas.DataFrame
        The models table of the report.
    signals : dict of str to ndarray of shape (N, q)
        Signals of the external target computed by querying it (``needs_queries`` attacks).
    access : dict of str to str
        Attack label → the threat model it ran under (what the target returned, queries spent).
    """

    splits: list[TargetSplit]
    truth: NDArray[np.bool_]
    names: list[Any]
    outputs: NDArray | None
    models: pd.DataFrame
    signals: dict[str, NDArray] = field(default_factory=dict)
    access: dict[str, str] = field(default_factory=dict)


class Mode(ABC):
    """One way to run an audit (``config.mode``)."""

    @abstractmethod
    def run(self, audit: Audit) -> AuditResult:
        """Run the audit described by ``audit.config``; write and return its result."""


class AuditMode(Mode):
    """An audit of trained classifiers: how it chooses its records, models and targets."""

    def run(self, audit: Audit) -> AuditResult:
        return audit._audit_models(self)

    @abstractmethod
    def n_models(self, cfg: AuditConfig) -> int:
        """Models to train."""

    @abstractmethod
    def split_records(
        self, n: int, n_pop: int, member: NDArray[np.bool_] | None, rng: np.random.Generator
    ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Indices of the audited records and of the population records."""

    def load_target(self, audit: Audit, ds: Dataset) -> Any:
        """The user's model, loaded before any training (None when the mode has none)."""
        return None

    def check_attacks(self, audit: Audit, target: Any) -> None:
        """Refuse, before training, attacks this mode cannot feed (:class:`ConfigError`)."""
        live = [
            s.display for s in audit.config.attacks if attacks.get(s.name).info.needs_queries
        ]
        if live:
            raise ConfigError(
                f"attacks {live} query a live target; they run in mode: model, against the "
                "user's model"
            )

    @abstractmethod
    def targets(self, run: _ModelRun) -> _Targets:
        """The targets to attack, after the models are trained."""


#: Audit modes by the name ``config.mode`` gives.
MODES: Registry[type[Mode]] = Registry("audit mode")


@MODES.register("llm")
class LlmMode(Mode):
    """Audit a language model on member and non-member texts (:mod:`miaudit.llm`): a causal LM
    (the one-pass token attacks and the others the config names) or, with ``llm.model_kind:
    masked``, a masked LM (the pseudo-likelihood attacks); the blind baseline, duplicate
    detection; the same report and files as the other modes."""

    def run(self, audit: Audit) -> AuditResult:
        from miaudit.llm import audit_texts, load_member_split, load_mimir, load_wikimia

        cfg = audit.config
        llm = cfg.llm
        assert llm is not None  # the config checks that mode: llm has its section
        if llm.texts is not None:
            split = (load_wikimia if llm.format == "wikimia" else load_mimir)(llm.texts)
        else:
            assert llm.members is not None and llm.non_members is not None
            split = load_member_split(
                llm.members, llm.non_members, text_field=llm.text_field, id_field=llm.id_field
            )
        common: dict[str, Any] = {
            "model": _audited_model(llm.model, llm.model_kind),
            "attacks": [s.name for s in cfg.attacks],
            "params": _llm_attack_params(cfg),
            "k": llm.k,
            "batch_size": llm.batch_size,
            "device": llm.device,
            "max_length": llm.max_length,
            "reference": llm.reference,
            "mask_model": _mask_model(llm.mask_model),
            "recall_prefix": _read_prefix(llm.recall_prefix),
            "duplicates": llm.duplicates,
            "blind": llm.blind,
            "fprs": cfg.fprs,
            "seed": cfg.seed,
            "quiet": True if cfg.quiet else None,
        }
        if llm.references is None:
            result = audit_texts(split, **common)
        else:  # reference LMs trained here (LiRA, Attack-R, RMIA as extra attacks)
            from miaudit.audit.executors import make_executor
            from miaudit.llm.reference_run import audit_texts_with_references, spec_from_config

            result = audit_texts_with_references(
                split,
                references=spec_from_config(llm.references),
                population=_read_texts(llm.population, llm.text_field),
                store_root=llm.references.store or cfg.output / "references",
                executor=make_executor(cfg.executor.kind, **cfg.executor.params),
                **common,
            )
        llm_findings = result.config.get("llm", {})
        result.config = {**cfg.model_dump(mode="json"), "llm_findings": llm_findings}
        result.save(cfg.output)
        return result


def _audited_model(folder: Path, kind: str) -> Path | tuple[Any, Any]:
    """``llm.model``: the folder itself for a causal LM (loaded by the audit), or a masked LM
    and its tokenizer loaded here with ``AutoModelForMaskedLM`` (``local_files_only``,
    safetensors) for ``model_kind: masked``."""
    if kind == "causal":
        return folder
    from miaudit.llm.mlm import load_masked_lm

    return load_masked_lm(folder)


def _llm_attack_params(cfg: AuditConfig) -> dict[str, dict[str, Any]]:
    """Each attack's parameters; ``dc_pdd`` without its own ``corpus`` reads
    ``llm.frequency_corpus``."""
    params = {s.name: dict(s.params) for s in cfg.attacks if s.params}
    frequency_corpus = cfg.llm.frequency_corpus if cfg.llm is not None else None
    if frequency_corpus is not None and any(s.name == "dc_pdd" for s in cfg.attacks):
        dc = params.setdefault("dc_pdd", {})
        dc.setdefault("corpus", str(frequency_corpus))
    return params


def _read_texts(path: Path | None, text_field: str) -> list[str] | None:
    """The texts of a local file or folder (:func:`miaudit.llm.load_texts`), or None."""
    if path is None:
        return None
    from miaudit.llm import load_texts

    return load_texts(path, text_field=text_field)[0]


def _mask_model(folder: Path | None) -> tuple[Any, Any] | None:
    """A masked LM and its tokenizer from a local folder (the neighbourhood attack)."""
    if folder is None:
        return None
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    return (
        AutoModelForMaskedLM.from_pretrained(folder, local_files_only=True),
        AutoTokenizer.from_pretrained(folder, local_files_only=True),
    )


def _read_prefix(path: Path | None) -> list[str] | None:
    """Non-member prefix texts for ReCaLL (:func:`miaudit.llm.load_texts`)."""
    if path is None:
        return None
    from miaudit.llm import load_texts

    return load_texts(path)[0]


@MODES.register("algorithm")
class AlgorithmMode(AuditMode):
    """Audit a training recipe: ``n_references + 1`` models on random halves, each in turn the
    target with the others as its references (leave-one-out, Carlini et al. 2022, Sec. VI)."""

    def n_models(self, cfg: AuditConfig) -> int:
        return cfg.n_references + 1

    def split_records(
        self, n: int, n_pop: int, member: NDArray[np.bool_] | None, rng: np.random.Generator
    ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        if n_pop:
            return population_split(n, n_pop, rng)
        return np.arange(n), np.arange(0)

    def targets(self, run: _ModelRun) -> _Targets:
        n_targets = run.audit.config.n_targets or run.keep.shape[0]
        splits: list[TargetSplit] = list(LeaveOneOut(run.keep))[:n_targets]
        indices = [t for t, _ in splits]
        return _Targets(
            splits=splits,
            truth=run.keep[indices][:, run.audit_idx],
            names=list(indices),
            outputs=None,
            models=run.trained.models,
        )


@MODES.register("model")
class ModelMode(AuditMode):
    """Audit the user's trained model: reference models trained with the user's recipe on
    random halves of the records; population records drawn from the target's non-members."""

    def n_models(self, cfg: AuditConfig) -> int:
        return cfg.n_references

    def split_records(
        self, n: int, n_pop: int, member: NDArray[np.bool_] | None, rng: np.random.Generator
    ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        assert member is not None  # load_data gives it in model mode
        return _population_from_non_members(member, n_pop, rng)

    def load_target(self, audit: Audit, ds: Dataset) -> Any:
        return audit._load_target(ds)

    def check_attacks(self, audit: Audit, target: Any) -> None:
        from miaudit.targets import check_capabilities

        problems = []
        for spec in audit.config.attacks:
            try:
                check_capabilities(attacks.get(spec.name), target)
            except MiauditError as exc:
                problems.append(f"{spec.display}: {exc}")
        if problems:
            raise ConfigError(
                "target: the model as audited cannot feed these attacks (remove them, or audit "
                "with fuller outputs):\n  " + "\n  ".join(problems)
            )

    def targets(self, run: _ModelRun) -> _Targets:
        member = run.member
        assert member is not None
        with run.timer.stage("querying target"):
            outputs = run.audit._query_target(run.ds, run.target)
            signals, access = run.audit._query_signals(run.ds, run.target)
        return _Targets(
            splits=[(EXTERNAL_TARGET, np.arange(run.keep.shape[0]))],
            truth=member[run.audit_idx][None, :],
            names=["target"],
            outputs=outputs,
            models=_with_target_row(run.trained.models, outputs, run.ds.y, member),
            signals=signals,
            access=access,
        )


@dataclass(frozen=True)
class _ModelRun:
    """Where an audit of trained classifiers stands once its models are trained: what
    :meth:`AuditMode.targets` chooses the targets from.

    Attributes
    ----------
    audit : Audit
    ds : Dataset
        All records (canaries included).
    keep : ndarray of shape (n_models, n_records), bool
    audit_idx : ndarray of int
        Positions of the audited records (the others are population records).
    member : ndarray of shape (n_records,), bool, or None
        ``mode: model``: which records the user's target trained on.
    trained : _TrainedModels
    target : object
        ``mode: model``: the user's model (None otherwise).
    timer : _Timer
    """

    audit: Audit
    ds: Dataset
    keep: NDArray[np.bool_]
    audit_idx: NDArray[np.int64]
    member: NDArray[np.bool_] | None
    trained: _TrainedModels
    target: Any
    timer: _Timer


@dataclass
class _TrainedModels:
    """What the attack stage needs from the engine."""

    key: str
    observations: NDArray
    models: pd.DataFrame

    @classmethod
    def from_engine(cls, run: Any) -> _TrainedModels:
        info = run.model_info

        def number(i: int, key: str) -> float | None:  # the manifest writes NaN as "nan"
            value = info[i].get(key)
            return None if value is None else parse_float(value)

        models = pd.DataFrame(
            {
                "train_accuracy": [number(i, "train_acc") for i in run.model_ids],
                "test_accuracy": [number(i, "test_acc") for i in run.model_ids],
                "n_train": [info[i].get("n_train") for i in run.model_ids],
                "train_seconds": [info[i].get("train_seconds") for i in run.model_ids],
                "from_store": [i not in run.trained for i in run.model_ids],
            },
            index=pd.Index(run.model_ids, name="model"),
        )
        privacy = [info[i].get("privacy") for i in run.model_ids]
        if any(p is not None for p in privacy):  # DP-SGD: the accountant's (epsilon, delta)
            models["epsilon"] = [None if p is None else parse_float(p["epsilon"]) for p in privacy]
            models["delta"] = [None if p is None else p["delta"] for p in privacy]
        models.insert(0, "role", "target and reference")
        return cls(key=run.config_hash, observations=run.observations(), models=models)


def _with_target_row(
    models: pd.DataFrame, outputs: NDArray, labels: NDArray, member: NDArray[np.bool_] | None
) -> pd.DataFrame:
    """Reference models' rows marked ``reference`` plus the user's target: its accuracy (first
    query) on its members (train) and its non-members (test)."""
    assert member is not None
    correct = np.argmax(outputs[:, 0], axis=-1) == labels
    row = pd.DataFrame(
        {
            "role": ["target"],
            "train_accuracy": [float(correct[member].mean())],
            "test_accuracy": [float(correct[~member].mean())],
            "n_train": [int(member.sum())],
        },
        index=pd.Index(["target"], name="model"),
    )
    return pd.concat([row, models.assign(role="reference")])


def _looks_like_probabilities(out: NDArray) -> bool:
    """Every row in [0, 1] and summing to 1 (within the tolerance of :mod:`miaudit.signals`)."""
    from miaudit.signals import PROB_SUM_TOLERANCE

    return bool(
        out.size
        and out.min() >= 0.0
        and out.max() <= 1.0
        and np.all(np.abs(out.sum(axis=-1) - 1.0) <= PROB_SUM_TOLERANCE)
    )


def _query_views(X: NDArray, queries: list[str]) -> list[NDArray]:
    """The ``q`` query views of ``X`` (numpy in, numpy out) via :mod:`miaudit.train.queries`."""
    import torch

    from miaudit.train.queries import apply_queries

    return [v.numpy() for v in apply_queries(torch.as_tensor(np.asarray(X)), queries)]


def _population_from_non_members(
    member: NDArray[np.bool_], n_pop: int, rng: np.random.Generator
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Model audit: population records are drawn from the target's non-members."""
    non = np.flatnonzero(~member)
    if n_pop >= non.size:
        raise ConfigError(
            f"data.population: {n_pop} population records requested but the target has only "
            f"{non.size} non-members; population records must be non-members"
        )
    pop = np.sort(rng.choice(non, size=n_pop, replace=False)) if n_pop else np.arange(0)
    audit = np.setdiff1d(np.arange(member.size), pop)
    return audit, pop


def _attack_meta(name: str, params: dict[str, Any], access: str | None) -> dict[str, Any]:
    info = attacks.get(name).info
    meta = {"name": name, "title": info.title, "paper": info.paper, "params": params}
    if access is not None:
        meta["threat_model"] = access
    return meta


def _http_target(cfg: Any, n_classes: int) -> Any:
    """An :class:`~miaudit.targets.http.HttpTarget` from ``target.http``; header values are
    read from the environment variables that ``headers_env`` names."""
    import os

    from miaudit.targets.http import HttpTarget

    missing = [var for var in cfg.headers_env.values() if var not in os.environ]
    if missing:
        raise ConfigError(
            f"target.http.headers_env: environment variable(s) {missing} are not set"
        )
    headers = {name: os.environ[var] for name, var in cfg.headers_env.items()}
    params = {"n_classes": n_classes, **cfg.params}
    return HttpTarget(url=cfg.url, headers=headers, **params)


def _target_info(target: Any) -> dict[str, Any]:
    """What the report says of a user's target: what it returns and, for an API, its usage."""
    if target is None:
        return {}
    from miaudit.targets import capabilities

    info: dict[str, Any] = {
        "type": type(target).__name__,
        "returns": sorted(capabilities(target)),
    }
    inner = target  # an API's usage, under any restricting wrappers (their .target)
    while inner is not None and not callable(getattr(inner, "usage", None)):
        inner = getattr(inner, "target", None)
    if inner is not None:
        info["usage"] = inner.usage()
    return info


def run_audit(config: AuditConfig | dict[str, Any] | str | Path, **overrides: Any) -> AuditResult:
    """Shorthand for ``Audit(config, **overrides).run()``."""
    return Audit(config, **overrides).run()


__all__ = ["Audit", "MiauditError", "run_audit"]
