"""The typed audit configuration, loaded from YAML or built in Python.

Every section is a pydantic model that forbids unknown keys, so a typo is an error that names the
key, lists the valid ones and, for YAML files, gives the line. Names of attacks, datasets, training
recipes, query augmentations and executors are checked against their registries when the config
is validated, not in the middle of a run.

Example (``miaudit run audit.yaml``)::

    mode: algorithm            # or "model" (audit a trained model you give)
    seed: 0
    output: miaudit-runs/digits
    data:
      name: digits             # a built-in dataset, or  path: my.csv  with params: {label_col: y}
      population: 0.1          # fraction (or count) of records no model trains on (RMIA, Attack-P)
    training:
      recipe: torch-mlp
      params: {hidden_sizes: [128], epochs: 40}
    n_references: 16
    queries: [identity]
    attacks: [loss, lira, lira_offline, rmia, attack_r, shokri]
    fprs: [0.01, 0.001]
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from miaudit.defaults import (
    DEFAULT_ALPHA,
    DEFAULT_DELTA,
    DEFAULT_FPRS,
    FLAG_FPR,
    TOP_RECORDS,
)
from miaudit.exceptions import MiauditError

#: Fewest reference models per mode. Algorithm audits train n_references + 1 models on balanced
#: halves; with leave-one-out, a record OUT of the target is IN for round_half_up((M)/2) of the
#: other M - 1 models, which leaves it no OUT reference when M = 3. Model audits need one IN and
#: one OUT reference per record.
MIN_REFERENCES = {"algorithm": 3, "model": 2, "llm": 1}  # llm: n_references is unused



class ConfigError(MiauditError, ValueError):
    """A configuration that cannot be run; the message names the key (and YAML line)."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CanaryConfig(_Section):
    """Canaries planted in the records for an empirical-ε audit (``mode: algorithm``).

    ``n`` records of ``kind`` (:data:`miaudit.data.canaries.CANARY_KINDS`: ``random_label``,
    ``ood``, ``natural``) are planted; after the attacks, the scores of ``attack`` (one of the
    audit's attacks, chosen here in advance) on the canaries give the multi-run, one-run and
    Gaussian-DP lower bounds on ε (:func:`miaudit.audit.canary_audit.audit_canaries`), shown
    beside the accountant's ε.
    """

    n: int = Field(gt=0, description="number of canaries")
    kind: str = "random_label"
    attack: str = "loss"
    seed: int | None = Field(default=None, description="default: the audit's seed")


class DataConfig(_Section):
    """Where the records come from.

    One of ``name`` (a built-in dataset, see ``miaudit.data.list_datasets()``) and ``path`` (a
    CSV, Parquet, ``.npz`` or dataset folder) is given (neither only when the records are passed
    from Python as ``Audit(dataset=...)``). ``params`` go to the dataset
    generator or the file loader (e.g. ``label_col``, ``id_col``, ``n_records``).
    """

    name: str | None = None
    path: Path | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    population: float = Field(
        default=0.0,
        ge=0.0,
        description="records never trained on by any model: a fraction if < 1, else a count",
    )
    canaries: CanaryConfig | None = None

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if self.name is not None and self.path is not None:
            raise ValueError("give only one of data.name (a built-in dataset) or data.path")
        return self


class TrainingConfig(_Section):
    """The training recipe (see ``miaudit.train``) and its hyper-parameters."""

    recipe: str = "torch-mlp"
    params: dict[str, Any] = Field(default_factory=dict)


class HttpConfig(_Section):
    """A model behind an HTTP prediction API (:class:`miaudit.targets.http.HttpTarget`).

    ``url`` is required; every other key is a parameter of ``HttpTarget`` (``kind``,
    ``outputs``, ``input_field``, ``output_path``, ``extra_fields``, ``batch_size``,
    ``max_retries``, ``backoff``, ``max_backoff``, ``rate_limit``, ``timeout``, ``budget``,
    ``seed``), checked against its signature when the config is loaded. Secrets stay out of the
    file: ``headers_env`` maps a header name to the environment variable holding its value::

        http: {url: "http://127.0.0.1:8000/predict", kind: probs, budget: 200000,
               headers_env: {Authorization: MODEL_API_TOKEN}}
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    url: str
    headers_env: dict[str, str] = Field(default_factory=dict)

    @property
    def params(self) -> dict[str, Any]:
        """The ``HttpTarget`` parameters besides ``url`` and the headers."""
        return dict(self.model_extra or {})


class TargetConfig(_Section):
    """The user's trained model, for ``mode: model``.

    ``model`` is a ``.skops`` file (scikit-learn) or ``module:function`` naming a Python callable
    that maps features to logits or probabilities (for a torch model, a function that builds
    the module, loads its weights and returns its logits). A relative file path is relative to
    the config file's folder. From Python, ``Audit(target_predict=...)`` replaces ``model``.
    ``http`` instead names a prediction API (:class:`HttpConfig`). Membership of each record in
    the target's training set comes from the data file's ``member_col`` column (or
    ``Audit(is_member=...)``).

    ``restrict`` audits the model under a weaker threat model, or with an output defence: a list
    of restrictions applied in order (:func:`miaudit.targets.restrict.restrict`), e.g.
    ``[{round: 1}, {top_k: 1}]`` or ``[{label_only: true}]``. Attacks the restricted target
    cannot feed are refused when the audit starts.
    """

    model: str | None = None
    member_col: str = "is_member"
    trusted: list[str] = Field(
        default_factory=list,
        description="types a .skops file may contain beyond those skops trusts by default "
        "(review them first: they run code when loaded)",
    )
    output_kind: Literal["logits", "probs"] | None = Field(
        default=None,
        description="what the model returns; default: probabilities for .skops; for a "
        "callable, probabilities when every row lies in [0, 1] and sums to 1, else logits",
    )
    http: HttpConfig | None = None
    restrict: list[dict[str, Any]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_model(self) -> TargetConfig:
        if self.model is not None and self.http is not None:
            raise ValueError("give only one of target.model (a file or callable) or target.http")
        return self


#: The reference-LM attacks ``llm.references.attacks`` may name
#: (:data:`miaudit.llm.reference.REFERENCE_ATTACKS`; a test keeps the two in step).
LLM_REFERENCE_ATTACKS = ("lira", "lira_offline", "attack_r", "rmia", "rmia_offline")


class LlmReferencesConfig(_Section):
    """``llm.references``: reference LMs trained on random halves of the texts, for LiRA,
    Attack-R and RMIA (:mod:`miaudit.llm.reference_run`), e.g.
    ``{n: 8, epochs: 16, attacks: [lira, lira_offline, attack_r, rmia]}``.

    ``train: demo`` retrains the target's architecture from its config with the demo's trainer
    (``epochs``, ``params``: ``batch_size``, ``block_size``, ``learning_rate``);
    ``train: module:function`` calls ``function(texts, seed, **params)`` (with ``epochs`` among
    ``params`` when given), imported only with ``trust_code``. Signals are kept in ``store``
    (default ``<output>/references``), so a re-run trains only what is missing.
    """

    n: StrictInt = Field(default=8, ge=2, description="number of reference LMs")
    train: str = "demo"
    epochs: float | None = Field(default=None, gt=0.0)
    params: dict[str, Any] = Field(default_factory=dict)
    attacks: list[Literal["lira", "lira_offline", "attack_r", "rmia", "rmia_offline"]] | None = (
        Field(default=None, min_length=1)
    )
    signal: Literal["loss", "min_k"] = "loss"
    gamma: float = Field(default=1.0, gt=0.0, description="RMIA's dominance factor")
    a: float | Literal["auto"] = Field(default="auto", description="offline RMIA's a")
    store: Path | None = None

    @field_validator("train")
    @classmethod
    def _recipe(cls, value: str) -> str:
        if value != "demo" and ":" not in value:
            raise ValueError(f"expected 'demo' or 'module:function', got {value!r}")
        return value

    @field_validator("a")
    @classmethod
    def _a_range(cls, value: float | str) -> float | str:
        if not isinstance(value, str) and not 0.0 <= value <= 1.0:
            raise ValueError(f"expected a number in [0, 1] or 'auto', got {value}")
        return value


#: The attacks of ``mode: llm`` with ``llm.model_kind: masked`` (they read a masked LM's
#: pseudo-likelihood; :data:`miaudit.llm.mlm.MASKED_LM_ATTACKS`, a test keeps the two in step).
LLM_MASKED_ATTACKS = ("mlm_pll", "mlm_ratio")


class LlmConfig(_Section):
    """``mode: llm``: a language model and the texts to test (:mod:`miaudit.llm`).

    The texts come from two files or folders (``members``, ``non_members``: JSONL/JSON/CSV/
    Parquet with a ``text_field``, or folders of ``.txt`` files), or from one file in a published
    format (``texts`` with ``format: wikimia`` or ``mimir``). Models are local folders (loaded
    with ``local_files_only``; nothing is downloaded). Relative paths are relative to the config
    file's folder.

    ``model_kind``: ``causal`` (``AutoModelForCausalLM``, the default) or ``masked``
    (``AutoModelForMaskedLM``: BERT, RoBERTa, ...; only the attacks of
    :data:`LLM_MASKED_ATTACKS` apply, and ``mlm_ratio``'s reference masked LM is
    ``mask_model``). ``frequency_corpus``: the texts whose token frequencies calibrate
    ``dc_pdd``. ``population``: texts no model trained on, RMIA's population of
    ``references`` (default: the candidate texts).
    """

    model: Path
    model_kind: Literal["causal", "masked"] = "causal"
    members: Path | None = None
    non_members: Path | None = None
    texts: Path | None = None
    format: Literal["wikimia", "mimir"] | None = None
    text_field: str = "text"
    id_field: str | None = None
    reference: Path | None = None
    mask_model: Path | None = None
    recall_prefix: Path | None = None
    frequency_corpus: Path | None = None
    population: Path | None = None
    k: float = Field(default=0.2, gt=0.0, le=1.0, description="fraction of Min-K% tokens")
    batch_size: StrictInt = Field(default=8, ge=1)
    device: str | None = None
    max_length: StrictInt | None = Field(default=None, ge=2)
    duplicates: Literal["report", "remove"] = "report"
    blind: bool = True
    references: LlmReferencesConfig | None = None

    @model_validator(mode="after")
    def _one_source(self) -> LlmConfig:
        pair = self.members is not None or self.non_members is not None
        if pair == (self.texts is not None):
            raise ValueError(
                "give either llm.members and llm.non_members, or llm.texts with llm.format"
            )
        if pair and (self.members is None or self.non_members is None):
            raise ValueError("llm.members and llm.non_members go together")
        if self.texts is not None and self.format is None:
            raise ValueError("llm.texts needs llm.format: wikimia or mimir")
        return self

    @model_validator(mode="after")
    def _masked_resources(self) -> LlmConfig:
        if self.model_kind != "masked":
            return self
        if self.reference is not None:
            raise ValueError(
                "llm.reference: a causal reference model (the 'reference' attack); with "
                "llm.model_kind: masked give the reference masked LM of mlm_ratio as "
                "llm.mask_model"
            )
        if self.references is not None:
            raise ValueError(
                "llm.references: reference LMs are trained and scored as causal LMs; not "
                "available with llm.model_kind: masked (use mlm_ratio with llm.mask_model)"
            )
        return self

    @model_validator(mode="after")
    def _population_for_rmia(self) -> LlmConfig:
        if self.population is None:
            return self
        if self.references is None:
            raise ValueError(
                "llm.population: RMIA's population for llm.references; set llm.references too"
            )
        attacks = self.references.attacks
        if attacks is not None and not {"rmia", "rmia_offline"} & set(attacks):
            raise ValueError(
                "llm.population: only RMIA reads it; add rmia or rmia_offline to "
                f"llm.references.attacks (got {attacks})"
            )
        return self

    def paths(self) -> dict[str, Path]:
        """The path-valued fields that are set (made relative to a config file's folder)."""
        names = ("model", "members", "non_members", "texts", "reference", "mask_model",
                 "recall_prefix", "frequency_corpus", "population")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    def with_paths(self, folder: Path) -> LlmConfig:
        """Relative paths (incl. ``references.store``) made relative to ``folder``."""
        update: dict[str, Any] = {
            k: folder / v for k, v in self.paths().items() if not v.is_absolute()
        }
        refs = self.references
        if refs is not None and refs.store is not None and not refs.store.is_absolute():
            update["references"] = refs.model_copy(update={"store": folder / refs.store})
        return self.model_copy(update=update)


class AttackSpec(_Section):
    """One attack to run: a registered name, its hyper-parameters, an optional display label."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    label: str | None = None

    @property
    def display(self) -> str:
        return self.label or self.name


class ExecutorConfig(_Section):
    """Where reference models train: a registered executor and its parameters.

    In YAML either a name (``executor: processes``) or a mapping whose ``kind`` names the
    executor and whose other keys are its parameters::

        executor: {kind: ray, address: auto, num_cpus: 1, max_retries: 3}

    Parameters are checked against the executor's signature when the config is loaded.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    kind: str = "local"

    @property
    def params(self) -> dict[str, Any]:
        """The executor's parameters (every key but ``kind``)."""
        return dict(self.model_extra or {})


class ReportConfig(_Section):
    """What the report shows."""

    top_records: StrictInt = Field(
        default=TOP_RECORDS, ge=0, description="most exposed records listed"
    )
    flag_fpr: float = Field(
        default=FLAG_FPR,
        gt=0.0,
        lt=1.0,
        description="a record counts as flagged by a target when its score passes that "
        "target's threshold at this FPR",
    )


class AuditConfig(_Section):
    """A whole audit. See the module docstring for a YAML example."""

    mode: Literal["algorithm", "model", "llm"] = "algorithm"
    seed: StrictInt = 0
    output: Path = Path("miaudit-runs/audit")
    data: DataConfig = Field(default_factory=DataConfig)
    llm: LlmConfig | None = None
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    n_references: StrictInt = Field(default=16, ge=1)
    n_targets: StrictInt | None = Field(
        default=None,
        ge=1,
        description="algorithm mode: how many models take a turn as the target (default all)",
    )
    target: TargetConfig | None = None
    queries: list[str] = Field(default_factory=lambda: ["identity"])
    attacks: list[AttackSpec] = Field(
        default_factory=lambda: [AttackSpec(name=n) for n in ("loss", "lira", "rmia")],
        min_length=1,
    )
    fprs: list[float] = Field(default_factory=lambda: list(DEFAULT_FPRS))
    alpha: float = Field(default=DEFAULT_ALPHA, gt=0.0, lt=1.0)
    delta: float = Field(default=DEFAULT_DELTA, ge=0.0, lt=1.0)
    epsilon_selection: Literal["split", "best_on_same_data"] = Field(
        default="split",
        description="the ε lower bound's threshold: chosen on half the records and the bound "
        "computed on the other half (valid), or the best on all records (optimistic)",
    )
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    quiet: bool = False
    report: ReportConfig = Field(default_factory=ReportConfig)
    trust_code: bool = Field(
        default=False,
        description="allow the config to import and run Python code it names (callable "
        "recipes and targets, module:Class attacks, estimators outside scikit-learn); see "
        "docs/security.md",
    )

    @field_validator("attacks", mode="before")
    @classmethod
    def _attack_strings(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="before")
    @classmethod
    def _llm_default_attacks(cls, data: Any) -> Any:
        """``mode: llm`` runs the language-model attacks: by default the four one-pass ones, or
        for a masked LM ``mlm_pll`` (and ``mlm_ratio`` when ``llm.mask_model`` is given)."""
        if isinstance(data, dict) and data.get("mode") == "llm" and "attacks" not in data:
            data = {**data, "attacks": list(llm_default_attacks(data.get("llm")))}
        return data

    @field_validator("executor", mode="before")
    @classmethod
    def _executor_name(cls, value: Any) -> Any:
        return {"kind": value} if isinstance(value, str) else value

    @field_serializer("executor")
    def _executor_out(self, value: ExecutorConfig) -> str | dict[str, Any]:
        """A bare name when the executor has no parameters (as it is usually written)."""
        return {"kind": value.kind, **value.params} if value.params else value.kind

    @field_validator("fprs")
    @classmethod
    def _fprs_in_range(cls, value: list[float]) -> list[float]:
        bad = [f for f in value if not 0.0 < f < 1.0]
        if bad:
            raise ValueError(f"every FPR must lie in (0, 1); got {bad}")
        if not value:
            raise ValueError("give at least one FPR")
        return value

    @model_validator(mode="after")
    def _enough_references(self) -> AuditConfig:
        least = MIN_REFERENCES[self.mode]
        if self.n_references < least:
            raise ValueError(
                f"n_references: mode {self.mode!r} needs at least {least} reference models so "
                "that every record has IN and OUT references; got "
                f"{self.n_references}"
            )
        return self

    @model_validator(mode="after")
    def _mode_needs_target(self) -> AuditConfig:
        if self.mode == "model" and self.target is None:
            raise ValueError("mode 'model' needs a 'target' section (the model to audit)")
        if (self.mode == "llm") != (self.llm is not None):
            raise ValueError("mode 'llm' and the 'llm' section go together")
        if self.mode == "algorithm" and self.target is not None:
            raise ValueError("a 'target' section is only used with mode: model")
        labels = [a.display for a in self.attacks]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise ValueError(f"attack labels must be unique; repeated: {dup} (set 'label')")
        if self.data.canaries is not None:
            if self.mode != "algorithm":
                raise ValueError("data.canaries: canaries are planted in mode: algorithm only")
            if self.data.canaries.attack not in labels:
                raise ValueError(
                    f"data.canaries.attack: {self.data.canaries.attack!r} is not among the "
                    f"audit's attacks ({', '.join(labels)})"
                )
        return self

    def check_names(self) -> None:
        """Check attack/dataset/recipe/query/executor names against their registries.

        Raises
        ------
        NameProblem
            For the first unknown name or bad attack parameter, with its location in the config.
        """
        from miaudit.trust import code_trust

        with code_trust(self.trust_code):
            problems = self._check_names()
        if problems:
            raise NameProblems(problems)

    def _check_names(self) -> list[NameProblem]:
        """Every problem found (not only the first), each with its location."""
        from miaudit import attacks
        from miaudit.trust import require_code_trust

        problems: list[NameProblem] = []
        model = self.target.model if self.target is not None else None
        if model and not _is_model_file(model):
            try:
                require_code_trust("target.model", model)
            except MiauditError as exc:
                problems.append(NameProblem(("target", "model"), str(exc)))
        refs = self.llm.references if self.llm is not None else None
        if refs is not None and refs.train != "demo":
            try:
                require_code_trust("llm.references.train", refs.train)
            except MiauditError as exc:
                problems.append(NameProblem(("llm", "references", "train"), str(exc)))
        for i, spec in enumerate(self.attacks):
            try:
                if self.mode == "llm":  # language-model attacks have their own registry
                    _check_llm_attack(spec, self.llm)
                else:
                    attacks.create(spec.name, **spec.params)
            except MiauditError as exc:
                problems.append(NameProblem(("attacks", i), str(exc)))
        bad_registry_name = False
        for loc, kind, name, names in _registered_names(self):
            if name not in names:
                hint = did_you_mean(name, names)
                problems.append(
                    NameProblem(
                        loc,
                        f"unknown {kind} {name!r}.{hint} Valid {kind}s: "
                        f"{', '.join(sorted(names))}",
                    )
                )
                bad_registry_name = True
        if bad_registry_name:  # the parameter checks below need valid recipe/executor names
            return problems
        for check in (self._check_training_params, self._check_executor_params,
                      self._check_target):
            try:
                check()
            except NameProblem as exc:
                problems.append(exc)
        return problems

    def _check_target(self) -> None:
        """HTTP target parameters against ``HttpTarget``'s signature; restriction keys."""
        if self.target is None:
            return
        from miaudit.registry import check_call
        from miaudit.targets.restrict import RESTRICTIONS

        if self.target.http is not None:
            from miaudit.targets.http import HttpTarget

            try:
                check_call(HttpTarget, "target.http", url=self.target.http.url,
                           **self.target.http.params)
            except MiauditError as exc:
                raise NameProblem(("target", "http"), str(exc)) from None
        for i, spec in enumerate(self.target.restrict):
            unknown = [k for k in spec if k not in RESTRICTIONS]
            if unknown or len(spec) != 1:
                raise NameProblem(
                    ("target", "restrict", i),
                    f"expected one restriction of {', '.join(RESTRICTIONS.names())} with its "
                    f"value, got {spec!r}",
                )

    def _check_executor_params(self) -> None:
        """The executor's parameters against its signature (nothing is started)."""
        from miaudit.audit.executors import EXECUTORS
        from miaudit.registry import check_call

        cls = EXECUTORS.get(self.executor.kind)
        try:
            check_call(cls, f"executor {self.executor.kind!r}", **self.executor.params)
        except MiauditError as exc:
            raise NameProblem(("executor",), str(exc)) from None

    def _check_training_params(self) -> None:
        """Build the training recipe once, so that a bad parameter is reported with its location
        (the parameter's own line when the error names exactly one parameter)."""
        from miaudit.train.recipes import make_recipe

        params = self.training.params
        try:
            make_recipe(self.training.recipe, **{"seed": self.seed, **params})
        except MiauditError as exc:
            named = [p for p in getattr(exc, "params", ()) if p in params]
            loc = ("training", "params", *named) if len(named) == 1 else ("training", "params")
            raise NameProblem(loc, str(exc)) from None

    def to_yaml(self) -> str:
        """The config as YAML (round-trips through :func:`load_config`)."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


class NameProblem(MiauditError, ValueError):
    """An unknown name in a config, at location ``loc`` (a path of keys and indices)."""

    def __init__(self, loc: tuple[Any, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


class NameProblems(NameProblem):
    """Several :class:`NameProblem` found in one pass (``loc`` and message: the first's)."""

    def __init__(self, problems: list[NameProblem]) -> None:
        super().__init__(problems[0].loc, str(problems[0]))
        self.problems = problems


#: Largest edit distance, as a fraction of the name's length, that "did you mean" accepts.
DID_YOU_MEAN_MAX_FRACTION = 0.4


def _edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions, each cost 1)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _is_abbreviation(short: str, long: str) -> bool:
    """``short`` is ``long`` with letters left out, same first letter (``n_refs``)."""
    if not short or not long or short[0] != long[0] or len(short) >= len(long):
        return False
    it = iter(long)
    return all(c in it for c in short)


def did_you_mean(name: str, valid: Any) -> str:
    """`` Did you mean 'x'?`` for the valid name closest to ``name``, or ``""``.

    An abbreviation (``n_refs`` → ``n_references``) wins; otherwise the smallest edit distance
    (:func:`_edit_distance`), if at most :data:`DID_YOU_MEAN_MAX_FRACTION` of the name's length
    (at least 1).

    >>> did_you_mean("n_refs", ["n_targets", "n_references", "seed"])
    " Did you mean 'n_references'?"
    >>> did_you_mean("lirra", ["lira", "loss"]), did_you_mean("zzz", ["lira"])
    (" Did you mean 'lira'?", '')
    """
    options = sorted(str(v) for v in valid)
    low = name.lower()
    abbrev = [v for v in options if _is_abbreviation(low, v.lower())]
    if abbrev:
        return f" Did you mean {min(abbrev, key=len)!r}?"
    scored = [(_edit_distance(low, v.lower()), v) for v in options]
    if not scored:
        return ""
    dist, best = min(scored)
    limit = max(1, int(DID_YOU_MEAN_MAX_FRACTION * len(name)))
    return f" Did you mean {best!r}?" if dist <= limit else ""


#: The attacks of ``mode: llm`` when the config names none: the one-pass attacks.
LLM_DEFAULT_ATTACKS = ("loss", "zlib", "min_k", "min_k_plus_plus")


def llm_default_attacks(llm: Any) -> tuple[str, ...]:
    """The attacks of ``mode: llm`` when the config names none, from the raw ``llm`` section:
    :data:`LLM_DEFAULT_ATTACKS` for a causal LM; for ``model_kind: masked`` ``mlm_pll``, plus
    ``mlm_ratio`` when ``mask_model`` (its reference masked LM) is given."""
    if not isinstance(llm, dict) or llm.get("model_kind") != "masked":
        return LLM_DEFAULT_ATTACKS
    pll, ratio = LLM_MASKED_ATTACKS
    return (pll, ratio) if llm.get("mask_model") is not None else (pll,)


def _check_llm_attack(spec: AttackSpec, llm: LlmConfig | None) -> None:
    """A language-model attack's name and parameters (imports :mod:`miaudit.llm`, torch), and
    what it needs from the ``llm`` section: a masked model takes only the masked-LM attacks,
    ``dc_pdd`` a frequency corpus, ``mlm_ratio`` on a masked model a reference masked LM."""
    from miaudit.llm.attacks import LLM_ATTACKS
    from miaudit.registry import check_call

    attack = LLM_ATTACKS.get(spec.name)
    check_call(attack.fn, f"LLM attack {spec.name!r}", None, **spec.params)
    if llm is None:
        return
    if llm.model_kind == "masked" and spec.name not in LLM_MASKED_ATTACKS:
        raise MiauditError(
            f"attack {spec.name!r} reads a causal LM's next-token probabilities; with "
            f"llm.model_kind: masked the valid attacks are {', '.join(LLM_MASKED_ATTACKS)}"
        )
    if spec.name == "dc_pdd" and "corpus" not in spec.params and llm.frequency_corpus is None:
        raise MiauditError(
            "attack 'dc_pdd' needs a reference corpus for its token frequencies: set "
            "llm.frequency_corpus (texts that are not audited texts) or the attack parameter "
            "corpus"
        )
    if (
        spec.name == "mlm_ratio"
        and llm.model_kind == "masked"
        and "reference" not in spec.params
        and llm.mask_model is None
    ):
        raise MiauditError(
            "attack 'mlm_ratio' needs a reference masked LM: set llm.mask_model (a local "
            "folder) or the attack parameter reference"
        )


def _registered_names(cfg: AuditConfig) -> list[tuple[tuple[Any, ...], str, str, list[str]]]:
    """(location, kind, requested name, valid names) for each registry-backed name."""
    from miaudit.audit.executors import EXECUTORS
    from miaudit.data import list_datasets
    from miaudit.train.queries import QUERIES
    from miaudit.train.recipes import RECIPES

    out: list[tuple[tuple[Any, ...], str, str, list[str]]] = [
        (("training", "recipe"), "training recipe", cfg.training.recipe, RECIPES.names()),
        (("executor", "kind"), "executor", cfg.executor.kind, EXECUTORS.names()),
    ]
    out += [(("queries", i), "query", q, QUERIES.names()) for i, q in enumerate(cfg.queries)]
    if cfg.data.name is not None:
        out.append((("data", "name"), "dataset", cfg.data.name, list_datasets()))
    if cfg.data.canaries is not None:
        from miaudit.data.canaries import CANARY_KINDS

        kind = cfg.data.canaries.kind
        out.append((("data", "canaries", "kind"), "canary kind", kind, CANARY_KINDS.names()))
    return out


def _yaml_line(text: str, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at ``loc`` (the deepest existing prefix), if any."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = [(k, v) for k, v in node.value if k.value == key]
            if not match:
                break
            k, node = match[0]
            line = k.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _format_errors(exc: ValidationError, text: str | None, source: str) -> list[str]:
    """One line per pydantic error: where (YAML line, dotted key) and what, with a "did you
    mean" over the valid keys of that section for an unknown key."""
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        where = ".".join(str(p) for p in loc) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            section = _section_for(loc[:-1])
            valid = sorted(section.model_fields) if section else []
            hint = did_you_mean(str(loc[-1]), valid)
            msg = f"unknown key.{hint} Valid keys here: {', '.join(valid)}"
        line = _yaml_line(text, loc) if text is not None else None
        at = f"{source}, line {line}: " if line else f"{source}: "
        lines.append(f"{at}{where}: {msg}")
    return lines


def _format_name_problems(
    problems: Sequence[NameProblem], text: str | None, source: str
) -> list[str]:
    lines = []
    for problem in problems:
        line = _yaml_line(text, problem.loc) if text is not None else None
        at = f"{source}, line {line}" if line else source
        where = ".".join(str(p) for p in problem.loc)
        lines.append(f"{at}: {where}: {problem}")
    return lines


#: Rounds of :func:`_names_despite_errors`: each drops the keys pydantic rejected and retries.
PRUNE_ROUNDS = 3


def _prune(data: Any, loc: tuple[Any, ...]) -> bool:
    """Delete from the nested mappings and lists ``data`` the deepest key of ``loc`` that
    exists (a key inside a list element is deleted from that element; a list element itself
    takes its whole list, so that the indices of the other errors stay true). False when
    nothing was deleted (the location is already gone, or names no key: a missing field)."""
    node = data
    path: list[tuple[Any, Any]] = []  # (container, key) down to the deepest existing node
    for key in loc:
        if isinstance(node, dict) and key in node:
            path.append((node, key))
            node = node[key]
        elif isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
            path.append((node, key))
            node = node[key]
        else:
            break
    while path and isinstance(path[-1][0], list):
        path.pop()  # never delete a list element: delete the list (its key) instead
    if not path:
        return False
    parent, key_in_parent = path[-1]
    del parent[key_in_parent]
    return True


def _names_despite_errors(data: dict[str, Any], exc: ValidationError) -> list[NameProblem]:
    """The name problems (:meth:`AuditConfig.check_names`) of the config as it would be
    without the keys pydantic rejected, so that one run reports both kinds: an unknown key
    *and* a misspelt attack. Best effort: nothing when the rest cannot be validated either."""
    pruned = copy.deepcopy(data)
    errors = exc.errors()
    for _ in range(PRUNE_ROUNDS):
        locs = sorted({tuple(err["loc"]) for err in errors}, key=len, reverse=True)
        deleted = [_prune(pruned, loc) for loc in locs]  # deepest first: parents stay valid
        if not any(deleted):
            return []
        try:
            cfg = AuditConfig.model_validate(pruned)
        except ValidationError as again:
            errors = again.errors()
            continue
        try:
            cfg.check_names()
        except NameProblems as names:
            return list(names.problems)
        except NameProblem as name:
            return [name]
        return []
    return []


def _section_for(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model describing the mapping at ``loc`` (for listing valid keys)."""
    model: type[BaseModel] = AuditConfig
    for key in loc:
        if isinstance(key, int):
            continue
        field = model.model_fields.get(str(key))
        if field is None:
            return None
        ann = field.annotation
        candidates = [ann, *getattr(ann, "__args__", ())]
        for c in candidates:
            inner = getattr(c, "__args__", (c,))
            sub = next(
                (x for x in (c, *inner) if isinstance(x, type) and issubclass(x, BaseModel)), None
            )
            if sub is not None:
                model = sub
                break
        else:
            return None
    return model


def parse_config(
    data: dict[str, Any],
    *,
    text: str | None = None,
    source: str = "config",
    trust_code: bool = False,
) -> AuditConfig:
    """Validate a mapping into an :class:`AuditConfig`; errors name keys (and YAML lines).

    ``trust_code=True`` (``miaudit run --trust-code``) sets ``trust_code`` before validation,
    which may then import the code the config names (see :mod:`miaudit.trust`).
    """
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: expected a mapping at the top level, got {type(data).__name__}"
        )
    if trust_code:
        data = {**data, "trust_code": True}
    try:
        cfg = AuditConfig.model_validate(data)
    except ValidationError as exc:
        lines = _format_errors(exc, text, source)
        lines += _format_name_problems(_names_despite_errors(data, exc), text, source)
        raise ConfigError(_problems_message(lines, one_line=False)) from None
    try:
        cfg.check_names()
    except NameProblem as exc:
        problems = exc.problems if isinstance(exc, NameProblems) else [exc]
        lines = _format_name_problems(problems, text, source)
        raise ConfigError(_problems_message(lines, one_line=True)) from None
    return cfg


def _problems_message(lines: list[str], *, one_line: bool) -> str:
    """``lines`` as one message: a lone name problem as it is, otherwise a counted list."""
    if one_line and len(lines) == 1:
        return lines[0]
    if len(lines) == 1:
        return "invalid config:\n  " + lines[0]
    return f"invalid config ({len(lines)} problems):\n  " + "\n  ".join(lines)


def load_config(path: str | Path, *, trust_code: bool = False) -> AuditConfig:
    """Read and validate a YAML config file (``trust_code``: see :func:`parse_config`)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{p}, line {line}: not UTF-8 text (byte {raw[exc.start]:#04x} at offset "
            f"{exc.start}); save the config as UTF-8"
        ) from None
    try:
        data = yaml.load(text, Loader=_ConfigLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    cfg = parse_config(data or {}, text=text, source=str(p), trust_code=trust_code)
    # Paths in a config file are relative to the config file's folder.
    updates: dict[str, Any] = {}
    if not cfg.output.is_absolute():
        updates["output"] = p.parent / cfg.output
    if cfg.data.path is not None and not cfg.data.path.is_absolute():
        updates["data"] = cfg.data.model_copy(update={"path": p.parent / cfg.data.path})
    if cfg.llm is not None:
        updates["llm"] = cfg.llm.with_paths(p.parent)
    if cfg.target is not None and cfg.target.model and _is_relative_file(cfg.target.model):
        updates["target"] = cfg.target.model_copy(
            update={"model": str(p.parent / cfg.target.model)}
        )
    if updates:
        cfg = cfg.model_copy(update=updates)
    return cfg


class _ConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``1e6`` and ``1.0e-3`` as floats (YAML 1.2), which
    YAML 1.1 reads as strings (``lr: 1.0e6`` would otherwise be the string ``"1.0e6"``)."""


_ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


#: Suffixes of model files (not ``module:function`` specs) in ``target.model``.
_MODEL_FILE_SUFFIXES = {".skops", ".pkl", ".pickle", ".joblib"}


def _is_model_file(spec: str) -> bool:
    """A file path rather than ``module:function`` (no colon, or a model file's suffix)."""
    return ":" not in spec or Path(spec).is_absolute() or (
        Path(spec).suffix.lower() in _MODEL_FILE_SUFFIXES
    )


def _is_relative_file(spec: str) -> bool:
    """A relative file path (not ``module:function``): e.g. ``target.skops``, ``m/t.skops``."""
    path = Path(spec)
    if path.is_absolute():
        return False
    return ":" not in spec or path.suffix.lower() in {".skops", ".pkl", ".pickle", ".joblib"}
