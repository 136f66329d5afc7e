r"""End-to-end evaluation of an unlearning algorithm on a dataset: train, unlearn, test.

:mod:`miaudit.audit.unlearning` has the tests (U-LiRA, the NeurIPS 2023 challenge score) as pure
functions of signals, and the reference unlearners. This module runs the experiment that feeds
them, for a scikit-learn classifier and any unlearner (``miaudit unlearning`` on the command
line):

1. Split the records at random: a **test** set (``test_fraction``), a **forget** set
   (``n_forget`` records) and the **base** records.
2. For each of ``n_models`` models ``i`` (seeds from ``SeedSequence([seed, i])``):

   * **U-LiRA run** (Hayes et al. 2024): train on a random half ``S_i`` of the base records plus
     the forget records whose coin came up heads, then unlearn exactly those (the coins are
     balanced: each record is unlearned by half of the shadow runs and half of the target
     runs, :func:`miaudit.data.splits.keep_matrix`, so each has both kinds); the signal of
     every forget record is recorded with whether this model unlearned it (heads) or never saw
     it (tails — what retraining without it gives).
   * **Challenge runs** (NeurIPS 2023 Machine Unlearning challenge): a model **retrained** on
     ``S_i`` alone, and a model trained on ``S_i`` plus the whole forget set that then
     **unlearns** it; their signals on the forget set, their accuracy on ``S_i`` (retain) and on
     the test set.

3. U-LiRA: the first ``n_models - n_targets`` U-LiRA runs are the shadow models that fit the
   per-record Gaussians, the last ``n_targets`` are classified (:func:`~miaudit.audit.
   unlearning.ulira`; balanced accuracy 0.5 = unlearning cannot be told from retraining).
   The challenge score (:func:`~miaudit.audit.unlearning.challenge_score`) compares the
   unlearned and retrained pools.

The signal is the logit-scaled confidence of the record's label, :math:`\ln\frac{p_y}{1-p_y}`
(:func:`miaudit.signals.logit_scaled_confidence`), from ``predict_proba`` (floored as in the
``sklearn`` recipe), or from ``decision_function`` read as logits when the estimator has no
probabilities (``SGDClassifier``'s default hinge loss). A binary ``decision_function`` ``m`` is
read as the logits ``(0, m)``.

Unlearners are registered by name in :data:`UNLEARNERS`: ``retrain``
(:class:`~miaudit.audit.unlearning.RetrainFromScratch`, exact), ``finetune``
(:class:`~miaudit.audit.unlearning.FineTuneOnRetained`, needs ``partial_fit``) and ``none``
(:class:`~miaudit.audit.unlearning.NoUnlearning`, the worst case). Each entry is a factory
``make(features, labels, seed) -> unlearner`` given the data the model was trained on; a user's
own factory is named ``"package.module:make"`` (imported only with ``trust_code``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from miaudit._progress import progress
from miaudit._validation import check_count, check_probability
from miaudit.audit.unlearning import (
    ChallengeScore,
    FineTuneOnRetained,
    NoUnlearning,
    RetrainFromScratch,
    ULiraResult,
    Unlearner,
    challenge_score,
    ulira,
)
from miaudit.data.splits import keep_matrix
from miaudit.defaults import DEFAULT_ALPHA, DEFAULT_N_BOOTSTRAP
from miaudit.exceptions import ValidationError
from miaudit.registry import Registry

__all__ = [
    "DEFAULT_FORGET",
    "DEFAULT_MODELS",
    "DEFAULT_TARGETS",
    "UNLEARNERS",
    "UnlearningEvaluation",
    "evaluate_unlearning",
    "label_signal",
]

#: Models of each kind (U-LiRA runs, and each pair of challenge runs) by default.
DEFAULT_MODELS = 32
#: U-LiRA runs held out as the models to classify.
DEFAULT_TARGETS = 8
#: Records in the forget set.
DEFAULT_FORGET = 20
#: Share of the records kept out of every model (the challenge's test accuracy).
DEFAULT_TEST_FRACTION = 0.2
#: Fewest U-LiRA shadow runs: the per-record Gaussians need a few models of each kind.
MIN_SHADOWS = 4

UnlearnerFactory = Callable[[NDArray[Any], NDArray[Any], int], Unlearner]

#: Unlearners by name: ``make(features, labels, seed) -> unlearner``.
UNLEARNERS: Registry[UnlearnerFactory] = Registry("unlearner")


@UNLEARNERS.register("retrain")
def _retrain(features: NDArray[Any], labels: NDArray[Any], seed: int) -> Unlearner:
    """Exact unlearning: retrain from scratch on the retained records."""
    return RetrainFromScratch(features, labels, seed=seed)


@UNLEARNERS.register("finetune")
def _finetune(features: NDArray[Any], labels: NDArray[Any], seed: int) -> Unlearner:
    """Fine-tune on the retained records (scikit-learn: ``partial_fit``, 5 epochs)."""
    return FineTuneOnRetained(features, labels, seed=seed)


@UNLEARNERS.register("none")
def _none(features: NDArray[Any], labels: NDArray[Any], seed: int) -> Unlearner:
    """No unlearning at all: the model unchanged (calibrates the evaluation's worst case)."""
    return NoUnlearning()


def label_signal(model: Any, X: NDArray[Any], y: NDArray[np.int64]) -> NDArray[np.float64]:
    r"""Logit-scaled confidence :math:`\ln\frac{p_y}{1-p_y}` of each record's label under a
    scikit-learn classifier (``predict_proba``, else ``decision_function`` as logits).

    Parameters
    ----------
    model : fitted scikit-learn classifier
    X : ndarray of shape (n, ...)
    y : ndarray of shape (n,)
        Labels, as the model's ``classes_`` name them.

    Returns
    -------
    ndarray of shape (n,)
    """
    from miaudit.signals import logit_scaled_confidence
    from miaudit.train.sklearn_recipe import logits_from_proba

    flat = X.reshape(len(X), -1)
    classes = np.asarray(model.classes_)
    position = np.searchsorted(classes, y)
    known = position < classes.size
    if not known.all() or np.any(classes[position] != y):
        raise ValidationError("y: a label the model never saw in training (no output for it)")
    if hasattr(model, "predict_proba"):
        logits: NDArray[Any] = logits_from_proba(model.predict_proba(flat))
    else:
        margin = np.asarray(model.decision_function(flat), dtype=np.float64)
        logits = np.stack([np.zeros_like(margin), margin], axis=1) if margin.ndim == 1 else margin
    return logit_scaled_confidence(logits, position)


@dataclass
class UnlearningEvaluation:
    """Result of :func:`evaluate_unlearning`.

    Attributes
    ----------
    unlearner : str
    ulira : ULiraResult
        Balanced accuracy 0.5 = indistinguishable from retraining.
    challenge : ChallengeScore
        Score in [0, 1]: 1 = forgets like retraining without losing accuracy.
    forget_ids : list
        Record ids of the forget set, in the order of the per-record arrays.
    n_models, n_targets, n_test : int
    target_unlearned : ndarray of shape (n_targets, n_forget), bool
        The truth of U-LiRA's targets: True where the model unlearned the record, False where
        it never saw it.
    retain_accuracy, test_accuracy : dict
        Mean accuracy of the ``"unlearned"`` and ``"retrained"`` challenge models.
    seed : int
        Seed of the bootstrap of :meth:`balanced_accuracy_interval`.
    """

    unlearner: str
    ulira: ULiraResult
    challenge: ChallengeScore
    forget_ids: list[Any]
    n_models: int
    n_targets: int
    n_test: int
    target_unlearned: NDArray[np.bool_]
    retain_accuracy: dict[str, float] = field(default_factory=dict)
    test_accuracy: dict[str, float] = field(default_factory=dict)
    seed: int = 0

    def balanced_accuracy_interval(
        self, alpha: float = DEFAULT_ALPHA, n_bootstrap: int = DEFAULT_N_BOOTSTRAP
    ) -> tuple[float, float]:
        """Percentile ``1 - alpha`` interval of U-LiRA's balanced accuracy from a two-way
        bootstrap: target models and forget records are resampled independently (with
        replacement), since the (model, record) pairs share both; resamples without pairs of
        both kinds are skipped."""
        called = self.ulira.scores > 0
        truth = self.target_unlearned
        rng = np.random.default_rng(self.seed)
        values = []
        for _ in range(n_bootstrap):
            rows = rng.integers(0, truth.shape[0], truth.shape[0])
            cols = rng.integers(0, truth.shape[1], truth.shape[1])
            t, c = truth[np.ix_(rows, cols)], called[np.ix_(rows, cols)]
            if t.all() or not t.any():
                continue
            values.append(0.5 * (c[t].mean() + (~c[~t]).mean()))
        if not values:
            return (math.nan, math.nan)
        lo, hi = np.quantile(values, [alpha / 2, 1 - alpha / 2])
        return float(lo), float(hi)

    def record_separation(self) -> NDArray[np.float64]:
        """Per forget record: mean U-LiRA score Λ over the target models that unlearned it
        minus the mean over those that never saw it (0: unlearning left no trace on it;
        large: it is easy to tell apart). NaN where a record lacks one kind of model."""
        scores, truth = self.ulira.scores, self.target_unlearned
        with np.errstate(invalid="ignore"):
            unlearned = np.where(truth, scores, 0.0).sum(0) / truth.sum(0)
            retrained = np.where(~truth, scores, 0.0).sum(0) / (~truth).sum(0)
        return np.asarray(unlearned - retrained, dtype=np.float64)

    def verdict(self) -> str:
        """One sentence on what the two numbers say."""
        ba = self.ulira.balanced_accuracy
        lo, hi = self.balanced_accuracy_interval()
        return (
            f"U-LiRA tells unlearned from retrained models with balanced accuracy {ba:.3f} "
            f"[{lo:.3f}–{hi:.3f}] (0.5 = indistinguishable, 1 = always told apart); challenge "
            f"score {self.challenge.score:.3f} (1 = forgets like retraining, accuracy kept)."
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary, with per-record challenge epsilons and U-LiRA
        separations (:meth:`record_separation`) by record id."""
        challenge = self.challenge.to_dict()
        epsilons = challenge.pop("epsilons")
        separation = self.record_separation()
        return {
            "unlearner": self.unlearner,
            "verdict": self.verdict(),
            "ulira": {
                **self.ulira.to_dict(),
                "balanced_accuracy_interval": list(self.balanced_accuracy_interval()),
            },
            "challenge": challenge,
            "retain_accuracy": self.retain_accuracy,
            "test_accuracy": self.test_accuracy,
            "n_models": self.n_models,
            "n_targets": self.n_targets,
            "n_test": self.n_test,
            "records": [
                {"record_id": rid, "challenge_epsilon": float(e), "ulira_separation": float(d)}
                for rid, e, d in zip(self.forget_ids, epsilons, separation, strict=True)
            ],
        }


def _fit(estimator: Any, X: NDArray[Any], y: NDArray[Any], seed: int) -> Any:
    from sklearn.base import clone

    model = clone(estimator)
    if "random_state" in model.get_params():
        model.set_params(random_state=seed)
    return model.fit(X, y)


def _accuracy(model: Any, X: NDArray[Any], y: NDArray[Any]) -> float:
    return float(np.mean(model.predict(X) == y))


def evaluate_unlearning(
    X: NDArray[Any],
    y: NDArray[Any],
    estimator: Any,
    unlearner: str | UnlearnerFactory = "finetune",
    *,
    record_ids: Any = None,
    n_models: int = DEFAULT_MODELS,
    n_targets: int = DEFAULT_TARGETS,
    n_forget: int = DEFAULT_FORGET,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = 0,
    quiet: bool | None = None,
) -> UnlearningEvaluation:
    """Run the experiment of the module docstring and score the unlearner.

    Parameters
    ----------
    X : ndarray of shape (n, ...)
    y : ndarray of shape (n,)
    estimator : scikit-learn classifier
        Unfitted; cloned for every model (``random_state`` set from the model's seed).
    unlearner : str or callable
        A name in :data:`UNLEARNERS` or a factory ``make(features, labels, seed)``.
    record_ids : sequence, optional
        Ids of the records (default: their positions).
    n_models : int
        U-LiRA runs, and challenge run pairs; at least ``n_targets + MIN_SHADOWS``.
    n_targets : int
        U-LiRA runs classified (the rest fit the Gaussians).
    n_forget : int
        Records in the forget set.
    test_fraction : float
        Share of records never trained on.
    seed : int
    quiet : bool, optional
        Progress bar (None: only on a terminal outside CI).

    Returns
    -------
    UnlearningEvaluation
    """
    y = np.asarray(y)
    n = len(X)
    # flat float64 rows: what scikit-learn fits, and what the unlearners hand to partial_fit
    X = np.asarray(X, dtype=np.float64).reshape(n, -1)
    if y.shape != (n,):
        raise ValidationError(f"y: expected shape ({n},) to match X, got {y.shape}")
    n_models = check_count(n_models, "n_models", minimum=1)
    n_targets = check_count(n_targets, "n_targets", minimum=2)
    if n_models < n_targets + MIN_SHADOWS:
        raise ValidationError(
            f"n_models: need at least n_targets + {MIN_SHADOWS} = {n_targets + MIN_SHADOWS} "
            f"runs ({MIN_SHADOWS} shadow runs fit U-LiRA's Gaussians), got {n_models}"
        )
    n_forget = check_count(n_forget, "n_forget", minimum=2)
    test_fraction = check_probability(test_fraction, "test_fraction")
    n_test = max(1, round(test_fraction * n))
    if n_test + n_forget + 2 > n:
        raise ValidationError(
            f"n_forget: {n_forget} forget and {n_test} test records leave fewer than 2 of the "
            f"{n} records to train on"
        )
    if isinstance(unlearner, str):
        name, make = unlearner, UNLEARNERS.resolve(unlearner)
    else:
        name, make = getattr(unlearner, "__name__", type(unlearner).__name__), unlearner
    ids = list(range(n)) if record_ids is None else list(record_ids)
    if len(ids) != n:
        raise ValidationError(f"record_ids: expected {n} ids, got {len(ids)}")

    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    test, forget = order[:n_test], order[n_test : n_test + n_forget]
    base = order[n_test + n_forget :]
    shadow = n_models - n_targets
    # Balanced coins: each forget record is unlearned by exactly half of the shadow runs and
    # half of the target runs (rounded), so every record has both kinds of model to fit.
    coins = np.concatenate(
        [keep_matrix(shadow, n_forget, rng), keep_matrix(n_targets, n_forget, rng)]
    )
    signals = np.empty((n_models, n_forget))
    unlearned = np.empty((n_models, n_forget), dtype=bool)
    pools = {kind: np.empty((n_models, n_forget)) for kind in ("unlearned", "retrained")}
    retain = {kind: np.empty(n_models) for kind in pools}
    tested = {kind: np.empty(n_models) for kind in pools}
    i: int
    for i in progress(n_models, f"unlearning evaluation ({name})", quiet=quiet):
        stream = np.random.default_rng(np.random.SeedSequence([seed, i]))
        fit_seed, unlearn_seed = (int(s) for s in stream.integers(0, 2**31 - 1, size=2))
        half = stream.choice(base, base.size // 2, replace=False)
        heads = coins[i]
        # U-LiRA run: unlearn exactly the forget records this model trained on
        train = np.r_[half, forget[heads]]
        model = _fit(estimator, X[train], y[train], fit_seed)
        positions = half.size + np.arange(int(heads.sum()))
        model = make(X[train], y[train], unlearn_seed).unlearn(model, positions)
        signals[i] = label_signal(model, X[forget], y[forget])
        unlearned[i] = heads
        # challenge runs: retrained on the half alone; trained with all of F, then unlearned
        retrained = _fit(estimator, X[half], y[half], fit_seed)
        train = np.r_[half, forget]
        full = _fit(estimator, X[train], y[train], fit_seed)
        forgot = make(X[train], y[train], unlearn_seed).unlearn(
            full, half.size + np.arange(n_forget)
        )
        for kind, m in (("unlearned", forgot), ("retrained", retrained)):
            pools[kind][i] = label_signal(m, X[forget], y[forget])
            retain[kind][i] = _accuracy(m, X[half], y[half])
            tested[kind][i] = _accuracy(m, X[test], y[test])
    result = ulira(signals[:shadow], unlearned[:shadow], signals[shadow:], unlearned[shadow:])
    score = challenge_score(
        pools["unlearned"],
        pools["retrained"],
        retain_accuracy_unlearned=retain["unlearned"],
        retain_accuracy_retrained=retain["retrained"],
        test_accuracy_unlearned=tested["unlearned"],
        test_accuracy_retrained=tested["retrained"],
    )
    return UnlearningEvaluation(
        unlearner=name,
        ulira=result,
        challenge=score,
        forget_ids=[ids[j] for j in forget],
        n_models=n_models,
        n_targets=n_targets,
        n_test=n_test,
        target_unlearned=unlearned[shadow:],
        retain_accuracy={k: float(v.mean()) for k, v in retain.items()},
        test_accuracy={k: float(v.mean()) for k, v in tested.items()},
        seed=seed,
    )
