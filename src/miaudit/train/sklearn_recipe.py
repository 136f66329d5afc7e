"""The ``sklearn`` and ``callable`` recipes: models trained one at a time, in parallel with joblib.

``sklearn``: any scikit-learn classifier — an estimator instance, a short name
(``"RandomForestClassifier"``, looked up in scikit-learn) or an import path
(``"sklearn.ensemble.RandomForestClassifier"``, or ``"pkg.module:Class"`` outside scikit-learn,
which a config may name only with ``trust_code: true``) with ``params``. A name is resolved to
a class and checked to derive from ``sklearn.base.ClassifierMixin`` before anything is called —
cloned (``sklearn.base.clone``) for every model, its ``random_state`` (when it has one) set to
the model's seed (:func:`~miaudit.train.recipes.model_seed` modulo 2³²), fitted on the model's
IN records with features flattened to ``(n, -1)``. Saved with skops (no pickle).

``callable``: a user function ``train(X, y, seed) -> model`` receiving the model's IN records as
given (images stay ``(n, c, H, W)``), labels int64 and the model's seed. The model is queried
through :mod:`miaudit.targets`: a torch ``nn.Module`` returns logits; an object with
``predict_proba`` returns probabilities; any other callable ``model(X)`` returns logits (or
probabilities with ``output="probs"``). Torch modules are saved as safetensors (state dict),
scikit-learn estimators with skops; anything else is not persisted (its observations are).

**Outputs become logits.** Observations are always logits ``(n, q, C)`` float32. Probabilities
``p`` are stored as ``log(max(p, tiny))`` with ``tiny`` the smallest normal float32
(:data:`LOG_PROBA_FLOOR` ≈ -87.34): a softmax of these logits gives back ``p`` exactly up to
1e-38, and a probability of exactly 0 (a class the model never saw, a pure tree leaf) stays
finite. ``output="decision-function"`` stores ``decision_function`` values instead (binary:
``[0, d]``, so that the softmax is ``sigmoid(d)``; classes the model never saw get
:data:`LOG_PROBA_FLOOR`). The default ``"auto"`` uses probabilities when the estimator has
``predict_proba``, else the decision function.

**Config hash.** The hash of an ``sklearn`` run covers the estimator's class path and its
``get_params(deep=False)`` (values that are not JSON are written with ``repr``); that of a
``callable`` run covers the function's ``module:qualname``, the SHA-256 of its source code when
Python can find it, and the user's ``tag``. ``n_jobs`` is not part of the hash.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray

from miaudit.exceptions import MiauditError, ValidationError
from miaudit.targets import CallableTarget, SklearnTarget, TorchTarget, load_callable
from miaudit.train.queries import apply_queries, identity_view
from miaudit.train.recipes import (
    RECIPES,
    ModelResult,
    Recipe,
    WeightsFormat,
    _check_positive_int,
    _fail,
    _jsonable,
    accuracies,
    check_chunk,
    model_seed,
)
from miaudit.trust import require_code_trust

#: ``log`` of the smallest normal float32: the floor of log-probabilities stored as logits.
LOG_PROBA_FLOOR = float(np.log(np.finfo(np.float32).tiny))
#: scikit-learn's ``random_state`` must be below 2**32.
SKLEARN_SEED_MODULUS = 2**32
#: Rough per-model memory estimate of a scikit-learn / callable model beyond its observations.
MODEL_OVERHEAD_BYTES = 64 * 2**20

#: The package whose classifier classes a config may name without ``trust_code``.
SKLEARN_PACKAGE = "sklearn"
#: scikit-learn modules searched, in order, for a short estimator name such as
#: ``"RandomForestClassifier"``.
SKLEARN_CLASSIFIER_MODULES = (
    "linear_model",
    "ensemble",
    "tree",
    "svm",
    "neighbors",
    "naive_bayes",
    "neural_network",
    "discriminant_analysis",
    "gaussian_process",
    "dummy",
    "calibration",
    "semi_supervised",
    "multiclass",
)

OUTPUTS = ("auto", "log-proba", "decision-function")
CALLABLE_OUTPUTS = ("auto", "logits", "probs")

__all__ = [
    "LOG_PROBA_FLOOR",
    "CallableConfig",
    "CallableRecipe",
    "SklearnConfig",
    "SklearnRecipe",
    "logits_from_proba",
]


def logits_from_proba(proba: NDArray) -> NDArray[np.float32]:
    """``log(max(p, tiny_float32))`` as float32 (see module docstring)."""
    with np.errstate(divide="ignore"):
        return np.maximum(np.log(np.asarray(proba, dtype=np.float64)), LOG_PROBA_FLOOR).astype(
            np.float32
        )


def _estimator_class(spec: str, config: object) -> type:
    """The scikit-learn classifier class named by ``spec``, checked before anything is called.

    ``spec`` is a short name searched in :data:`SKLEARN_CLASSIFIER_MODULES`
    (``"RandomForestClassifier"``), a dotted path (``"sklearn.svm.SVC"``) or
    ``"pkg.module:Class"``. A path outside scikit-learn imports user code and needs trust
    (:func:`miaudit.trust.require_code_trust`). Whatever the path names must be a class
    deriving from ``sklearn.base.ClassifierMixin``: a function (``"os:system"``) or another
    class (``"subprocess.Popen"``) is refused without being called.
    """
    from sklearn.base import ClassifierMixin

    what = f"{type(config).__name__}.estimator"
    if ":" in spec:
        module, _, attr = spec.partition(":")
    elif "." in spec:
        module, _, attr = spec.rpartition(".")
    else:
        module, attr = "", spec
    if not attr or not all(part.isidentifier() for part in attr.split(".")):
        _fail(config, "estimator", f"expected a class name or import path, got {spec!r}")
    if module and module.split(".")[0] != SKLEARN_PACKAGE:
        require_code_trust(what, spec)
    candidates = (
        [module] if module else [f"{SKLEARN_PACKAGE}.{m}" for m in SKLEARN_CLASSIFIER_MODULES]
    )
    obj: Any = None
    for name in candidates:
        try:
            obj = importlib.import_module(name)
            for part in attr.split("."):
                obj = getattr(obj, part)
            break
        except ImportError as exc:
            raise MiauditError(f"{what}: cannot import {spec!r}: {exc}") from None
        except AttributeError:
            obj = None
    if obj is None:
        where = module or f"scikit-learn ({', '.join(SKLEARN_CLASSIFIER_MODULES)})"
        _fail(config, "estimator", f"no class {attr!r} in {where}")
    if not (isinstance(obj, type) and issubclass(obj, ClassifierMixin)):
        _fail(
            config,
            "estimator",
            f"{spec!r} is not a classifier class (expected a subclass of "
            f"sklearn.base.ClassifierMixin, got {obj!r}); it was not called",
        )
    return obj


def _class_path(obj: Any) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _param_json(value: Any) -> Any:
    """JSON form of an estimator parameter: nested estimators described, others repr'd."""
    if hasattr(value, "get_params") and not isinstance(value, type):
        return {
            "class": _class_path(value),
            "params": {k: _param_json(v) for k, v in sorted(value.get_params(deep=False).items())},
        }
    if isinstance(value, (list, tuple)):
        return [_param_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _param_json(v) for k, v in sorted(value.items())}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    return repr(value)


# ----------------------------------------------------------------------------- sklearn
@dataclass(frozen=True)
class SklearnConfig:
    """Config of the ``sklearn`` recipe.

    Attributes
    ----------
    estimator : estimator instance or str
        An unfitted scikit-learn classifier, or the import path of its class.
    params : mapping
        Constructor parameters (with an import path) or ``set_params`` overrides (with an
        instance).
    output : {"auto", "log-proba", "decision-function"}
        What becomes the stored logits (module docstring).
    n_jobs : int
        joblib workers per chunk (``-1``: all cores). Not part of the config hash.
    seed : int
        Run seed; model ``i`` gets ``random_state = model_seed(seed, i) mod 2³²``.
    """

    estimator: Any = "sklearn.linear_model.LogisticRegression"
    params: Mapping[str, Any] = field(default_factory=dict)
    output: str = "auto"
    n_jobs: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        est = self.estimator
        if isinstance(est, str):
            cls = _estimator_class(est, self)
            try:
                est = cls(**dict(self.params))
            except TypeError as exc:
                _fail(self, "params", f"{exc}")
        else:
            if isinstance(est, type):
                _fail(self, "estimator", f"expected an estimator instance, got the class {est}")
            if not hasattr(est, "get_params"):
                _fail(self, "estimator", f"expected a scikit-learn estimator, got {type(est)}")
            from sklearn.base import clone

            est = clone(est)
            if self.params:
                try:
                    est.set_params(**dict(self.params))
                except ValueError as exc:
                    _fail(self, "params", f"{exc}")
        if not (
            hasattr(est, "fit")
            and (hasattr(est, "predict_proba") or hasattr(est, "decision_function"))
        ):
            _fail(
                self,
                "estimator",
                f"{_class_path(est)} is not a classifier with fit and predict_proba or "
                "decision_function",
            )
        object.__setattr__(self, "estimator", est)
        object.__setattr__(self, "params", {})
        if self.output not in OUTPUTS:
            _fail(self, "output", f"expected one of {', '.join(OUTPUTS)}, got {self.output!r}")
        if self.output == "decision-function" and not hasattr(est, "decision_function"):
            _fail(self, "output", f"{_class_path(est)} has no decision_function")
        if isinstance(self.n_jobs, bool) or not isinstance(self.n_jobs, int) or self.n_jobs == 0:
            _fail(
                self, "n_jobs", f"expected a non-zero integer (-1: all cores), got {self.n_jobs!r}"
            )
        _check_positive_int(self, "seed", minimum=0)

    @property
    def effective_jobs(self) -> int:
        """Number of joblib workers ``n_jobs`` stands for."""
        cores = os.cpu_count() or 1
        return cores + 1 + self.n_jobs if self.n_jobs < 0 else self.n_jobs


def _sklearn_logits(est: Any, X: NDArray, n_classes: int, output: str) -> NDArray[np.float32]:
    """Logits ``(n, C)`` of a fitted estimator on flattened features (module docstring)."""
    flat = X.reshape(len(X), -1)
    mode = output
    if mode == "auto":
        mode = "log-proba" if hasattr(est, "predict_proba") else "decision-function"
    if mode == "log-proba":
        return logits_from_proba(SklearnTarget(est, n_classes).predict(flat))
    dec = np.asarray(est.decision_function(flat), dtype=np.float64)
    classes = np.asarray(est.classes_).astype(np.int64)
    if dec.ndim == 1:
        dec = np.stack([np.zeros_like(dec), dec], axis=1)
    full = np.full((len(flat), n_classes), LOG_PROBA_FLOOR)
    full[:, classes] = dec
    return full.astype(np.float32)


def _query_views(
    predict: Callable[[NDArray], NDArray[np.float32]], X: NDArray, queries: Sequence[str]
) -> NDArray[np.float32]:
    """``(n, q, C)``: ``predict`` on every query view of ``X``."""
    views = apply_queries(torch.from_numpy(np.ascontiguousarray(X)), queries)
    return np.stack([predict(np.ascontiguousarray(v.numpy())) for v in views], axis=1)


def _result(
    model_id: int,
    obs: NDArray[np.float32],
    y: NDArray[np.int64],
    keep_row: NDArray[np.bool_],
    identity: NDArray[np.float32],
    times: tuple[float, float, float],
    weights: Any,
    weights_format: WeightsFormat | None,
) -> ModelResult:
    train_acc, test_acc = accuracies(identity, y, keep_row)
    start, trained, queried = times
    return ModelResult(
        model_id=model_id,
        observations=obs,
        train_acc=train_acc,
        test_acc=test_acc,
        n_train=int(keep_row.sum()),
        train_seconds=trained - start,
        query_seconds=queried - trained,
        weights=weights,
        weights_format=weights_format,
    )


def _check_outputs(obs: NDArray, n: int, n_classes: int, who: str) -> NDArray[np.float32]:
    if obs.shape[0] != n or obs.shape[-1] != n_classes:
        raise ValidationError(
            f"{who}: expected outputs of shape ({n}, {n_classes}), got {obs.shape[::2]}"
        )
    if not np.all(np.isfinite(obs)):
        raise ValidationError(
            f"{who}: the model returned {int((~np.isfinite(obs)).sum())} non-finite outputs"
        )
    return obs


def _fit_sklearn(
    config: SklearnConfig,
    X: NDArray,
    y: NDArray[np.int64],
    n_classes: int,
    keep_row: NDArray[np.bool_],
    model_id: int,
    queries: Sequence[str],
) -> ModelResult:
    from sklearn.base import clone

    est = clone(config.estimator)
    if "random_state" in est.get_params(deep=False):
        est.set_params(random_state=model_seed(config.seed, model_id) % SKLEARN_SEED_MODULUS)
    start = time.perf_counter()
    est.fit(X[keep_row].reshape(int(keep_row.sum()), -1), y[keep_row])
    trained = time.perf_counter()

    def predict(x: NDArray) -> NDArray[np.float32]:
        return _sklearn_logits(est, x, n_classes, config.output)

    obs = _check_outputs(_query_views(predict, X, queries), len(X), n_classes, "sklearn")
    view = identity_view(queries)
    identity = obs[:, view] if view is not None else predict(X)
    return _result(
        model_id, obs, y, keep_row, identity, (start, trained, time.perf_counter()), est, "skops"
    )


@RECIPES.register("sklearn")
class SklearnRecipe(Recipe):
    """Any scikit-learn classifier, one clone per model, fitted in parallel with joblib."""

    name = "sklearn"
    config_class = SklearnConfig
    config: SklearnConfig

    def describe(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "recipe": self.name,
            "config": {
                "estimator": _param_json(cfg.estimator),
                "output": cfg.output,
                "seed": cfg.seed,
            },
        }

    def bytes_per_model(
        self, input_shape: tuple[int, ...], n_classes: int, n_records: int, n_queries: int
    ) -> int:
        return MODEL_OVERHEAD_BYTES + 4 * n_records * n_queries * n_classes

    def models_per_chunk(self) -> int:
        """One model per joblib worker."""
        return max(1, self.config.effective_jobs)

    def train_chunk(
        self,
        X: NDArray[np.float32],
        y: NDArray[np.int64],
        n_classes: int,
        keep: NDArray[np.bool_],
        model_ids: Sequence[int],
        queries: Sequence[str],
    ) -> list[ModelResult]:
        from joblib import Parallel, delayed

        check_chunk(keep, model_ids, len(X))
        jobs = min(self.config.effective_jobs, len(model_ids))
        return list(
            Parallel(n_jobs=jobs)(
                delayed(_fit_sklearn)(self.config, X, y, n_classes, keep[j], int(m), queries)
                for j, m in enumerate(model_ids)
            )
        )


# ----------------------------------------------------------------------------- callable
@dataclass(frozen=True)
class CallableConfig:
    """Config of the ``callable`` recipe.

    Attributes
    ----------
    train : callable or str
        ``train(X, y, seed) -> model``, or its import path ``"pkg.module:function"`` (needed
        with the ``processes`` executor when the function is not importable by pickle).
    output : {"auto", "logits", "probs"}
        How to read a plain callable model's outputs (``"auto"``: logits; ``predict_proba``
        outputs are always probabilities, ``nn.Module`` outputs always logits).
    tag : str
        A label of your own, part of the config hash: change it when the function changes in a
        way its source hash cannot see (e.g. a helper it calls).
    seed : int
        Run seed; model ``i`` receives ``seed = model_seed(seed, i) mod 2³²``.
    """

    train: Any = None
    output: str = "auto"
    tag: str = ""
    seed: int = 0

    def __post_init__(self) -> None:
        fn = self.train
        if isinstance(fn, str):
            fn = load_callable(fn)
        if not callable(fn):
            _fail(self, "train", f"expected a function train(X, y, seed) -> model, got {fn!r}")
        object.__setattr__(self, "train", fn)
        if self.output not in CALLABLE_OUTPUTS:
            _fail(
                self,
                "output",
                f"expected one of {', '.join(CALLABLE_OUTPUTS)}, got {self.output!r}",
            )
        if not isinstance(self.tag, str):
            _fail(self, "tag", f"expected a string, got {self.tag!r}")
        _check_positive_int(self, "seed", minimum=0)


def _function_path(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', repr(fn))}"


def _source_sha256(fn: Callable[..., Any]) -> str | None:
    try:
        return hashlib.sha256(inspect.getsource(fn).encode()).hexdigest()
    except (OSError, TypeError):
        return None


def _callable_predictor(
    model: Any, n_classes: int, output: str
) -> tuple[Callable[[NDArray], NDArray[np.float32]], Any, WeightsFormat | None]:
    """(logits function, object to save, its format) for a user's trained model."""
    if isinstance(model, torch.nn.Module):
        target = TorchTarget(model)
        weights = {k: v.detach().cpu().contiguous().numpy() for k, v in model.state_dict().items()}
        return (lambda x: target.predict(x).astype(np.float32)), weights, "safetensors"
    if hasattr(model, "predict_proba"):
        is_sklearn = hasattr(model, "get_params") and hasattr(model, "classes_")
        if is_sklearn:
            sk = SklearnTarget(model, n_classes)
            return (lambda x: logits_from_proba(sk.predict(x))), model, "skops"
        return (lambda x: logits_from_proba(model.predict_proba(x))), None, None
    if callable(model):
        kind: Literal["logits", "probs"] = "probs" if output == "probs" else "logits"
        wrapped = CallableTarget(model, kind=kind)
        if kind == "probs":
            return (lambda x: logits_from_proba(wrapped.predict(x))), None, None
        return (lambda x: wrapped.predict(x).astype(np.float32)), None, None
    raise ValidationError(
        f"callable recipe: train() returned {type(model).__name__}, which is neither a torch "
        "module, an object with predict_proba, nor a callable returning logits"
    )


@RECIPES.register("callable")
class CallableRecipe(Recipe):
    """A user's ``train(X, y, seed) -> model``, one model at a time."""

    name = "callable"
    config_class = CallableConfig
    config: CallableConfig

    def describe(self) -> dict[str, Any]:
        cfg = self.config
        fn = cfg.train
        return {
            "recipe": self.name,
            "config": _jsonable(
                {
                    "train": _function_path(fn),
                    "source_sha256": _source_sha256(fn),
                    "output": cfg.output,
                    "tag": cfg.tag,
                    "seed": cfg.seed,
                }
            ),
        }

    def bytes_per_model(
        self, input_shape: tuple[int, ...], n_classes: int, n_records: int, n_queries: int
    ) -> int:
        return MODEL_OVERHEAD_BYTES + 4 * n_records * n_queries * n_classes

    def models_per_chunk(self) -> int:
        return 1

    def train_chunk(
        self,
        X: NDArray[np.float32],
        y: NDArray[np.int64],
        n_classes: int,
        keep: NDArray[np.bool_],
        model_ids: Sequence[int],
        queries: Sequence[str],
    ) -> list[ModelResult]:
        check_chunk(keep, model_ids, len(X))
        results = []
        for j, model_id in enumerate(model_ids):
            row = keep[j]
            seed = model_seed(self.config.seed, int(model_id)) % SKLEARN_SEED_MODULUS
            start = time.perf_counter()
            model = self.config.train(X[row], y[row], seed)
            results.append(
                query_trained_model(
                    model, int(model_id), X, y, row, n_classes, queries, self.config.output,
                    start, "callable recipe",
                )
            )
        return results


def query_trained_model(
    model: Any,
    model_id: int,
    X: NDArray[np.float32],
    y: NDArray[np.int64],
    row: NDArray[np.bool_],
    n_classes: int,
    queries: Sequence[str],
    output: str,
    start: float,
    what: str,
) -> ModelResult:
    """Query a model trained one at a time (since ``start``, ``time.perf_counter()``) on every
    record and view: its :class:`ModelResult` with accuracies, timings and weights."""
    trained = time.perf_counter()
    predict, weights, fmt = _callable_predictor(model, n_classes, output)
    obs = _check_outputs(_query_views(predict, X, queries), len(X), n_classes, what)
    view = identity_view(queries)
    identity = obs[:, view] if view is not None else predict(X)
    return _result(
        model_id, obs, y, row, identity, (start, trained, time.perf_counter()), weights, fmt
    )
