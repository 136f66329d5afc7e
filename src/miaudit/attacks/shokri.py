r"""The shadow-model attack of Shokri, Stronati, Song & Shmatikov, "Membership Inference Attacks
Against Machine Learning Models", IEEE S&P 2017.

The reference ("shadow") models' prediction vectors on the audited records, labelled IN/OUT by the
keep matrix, train one binary *meta-classifier* per class; each is applied to the target model's
prediction vectors on the records of its class, and the score is the predicted probability of
"member" (higher = member).

Features: the probability vector of every query, sorted in decreasing order (optionally only the
``top_k`` largest), the ``q`` queries concatenated — sorting makes the features comparable across
records, as in Salem et al. (NDSS 2019). Logits are turned into probabilities by a softmax.

Classes whose training rows hold only IN or only OUT labels (or no row) use one meta-classifier
trained on the rows of all classes. Each meta-classifier sees at most ``max_train_per_class``
rows, drawn uniformly without replacement with the given seed.

Meta-classifiers (:data:`META_MODELS`): ``"logistic_regression"`` (standardised features; the
default), ``"gradient_boosting"`` (scikit-learn's histogram gradient boosting), ``"mlp"`` (one
hidden layer of :data:`MLP_HIDDEN` units, standardised features, as Shokri et al.'s attack
models).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:
    from sklearn.base import ClassifierMixin

from miaudit._validation import (
    SeedLike,
    as_generator,
    check_array,
    check_count,
    check_keep,
    check_labels,
)
from miaudit.attacks import register
from miaudit.attacks._reference_stats import has_in_and_out, require_in_and_out
from miaudit.attacks.base import Attack, AttackData, AttackInfo
from miaudit.exceptions import ValidationError
from miaudit.registry import Registry
from miaudit.signals import OutputKind, log_probabilities

__all__ = [
    "MAX_TRAIN_PER_CLASS",
    "META_MODELS",
    "MLP_HIDDEN",
    "ShokriAttack",
    "shokri_scores",
    "sorted_probability_features",
]

#: Most training rows (reference model × record pairs) per meta-classifier.
MAX_TRAIN_PER_CLASS = 20_000
#: Hidden units of the MLP meta-classifier.
MLP_HIDDEN = 64
#: Iterations of the logistic regression and MLP solvers.
MAX_ITER = 500
#: Fewest training rows a meta-classifier may be limited to: one IN and one OUT.
MIN_TRAIN_PER_CLASS = 2

PAPER = (
    "Shokri, Stronati, Song, Shmatikov. Membership Inference Attacks Against Machine Learning "
    "Models. IEEE S&P 2017"
)

MetaFactory = Callable[[int], "ClassifierMixin"]

#: Meta-classifier factories by name; each maps an integer seed to an unfitted classifier.
META_MODELS: Registry[MetaFactory] = Registry("meta-model")


@META_MODELS.register("logistic_regression")
def _logistic_regression(seed: int) -> ClassifierMixin:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=MAX_ITER, random_state=seed))


@META_MODELS.register("gradient_boosting")
def _gradient_boosting(seed: int) -> ClassifierMixin:
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(random_state=seed)


@META_MODELS.register("mlp")
def _mlp(seed: int) -> ClassifierMixin:
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        StandardScaler(),
        MLPClassifier(hidden_layer_sizes=(MLP_HIDDEN,), max_iter=MAX_ITER, random_state=seed),
    )


def sorted_probability_features(
    outputs: ArrayLike, kind: OutputKind = "logits", top_k: int | None = None
) -> NDArray[np.float64]:
    """Sorted probability vectors of every query, concatenated.

    Parameters
    ----------
    outputs : array-like of shape (..., q, C)
        Logits or probabilities.
    kind : {"logits", "probs"}
    top_k : int, optional
        Keep only the ``top_k`` largest probabilities of each query (all ``C`` by default).

    Returns
    -------
    ndarray of shape (..., q * k)
        ``k = min(top_k, C)``; per query the probabilities in decreasing order.
    """
    arr = np.asarray(outputs)
    if arr.ndim < 2:
        raise ValidationError(f"outputs: expected shape (..., q, C), got {arr.shape}")
    probs = np.exp(log_probabilities(arr, kind=kind))
    k = probs.shape[-1] if top_k is None else min(check_count(top_k, "top_k", 1), probs.shape[-1])
    feats = -np.sort(-probs, axis=-1)[..., :k]
    return feats.reshape(*feats.shape[:-2], -1)


def _fit_predict(
    factory: MetaFactory,
    reference: NDArray,
    keep: NDArray[np.bool_],
    train_records: NDArray[np.int64],
    target_features: NDArray[np.float64],
    features: Callable[[NDArray], NDArray[np.float64]],
    max_rows: int,
    rng: np.random.Generator,
) -> NDArray[np.float64]:
    """Fit a meta-classifier on the (reference model, record) rows of ``train_records``, at
    most ``max_rows`` of them drawn without replacement; P(member) of ``target_features``."""
    models, idx = np.indices((keep.shape[0], train_records.size)).reshape(2, -1)
    records = train_records[idx]
    if models.size > max_rows:
        pick = np.sort(rng.choice(models.size, size=max_rows, replace=False))
        models, records = models[pick], records[pick]
    clf = factory(int(rng.integers(np.iinfo(np.int32).max)))
    clf.fit(features(reference[models, records]), keep[models, records])
    member_col = int(np.flatnonzero(clf.classes_)[0])
    return clf.predict_proba(target_features)[:, member_col]


def shokri_scores(
    target_outputs: ArrayLike,
    reference_outputs: ArrayLike,
    keep: ArrayLike,
    labels: ArrayLike,
    *,
    kind: OutputKind = "logits",
    meta_model: str = "logistic_regression",
    top_k: int | None = None,
    max_train_per_class: int = MAX_TRAIN_PER_CLASS,
    seed: SeedLike = 0,
) -> NDArray[np.float64]:
    """Shokri et al. (S&P 2017) shadow-model attack with per-class meta-classifiers.

    Parameters
    ----------
    target_outputs : array-like of shape (n, q, C)
        Target model's logits (or probabilities) on the audited records.
    reference_outputs : array-like of shape (m, n, q, C)
        The reference models' outputs on the same records.
    keep : array-like of shape (m, n), bool
        IN/OUT label of every (reference model, record) pair.
    labels : array-like of shape (n,)
        True classes of the records; one meta-classifier per class.
    kind : {"logits", "probs"}
    meta_model : {"logistic_regression", "gradient_boosting", "mlp"}
    top_k : int, optional
        Use only the ``top_k`` largest probabilities of each query.
    max_train_per_class : int
        Most training rows per meta-classifier (subsampled with ``seed``).
    seed : int or numpy.random.Generator

    Returns
    -------
    ndarray of shape (n,)
        Predicted probability that the record is a member of the target's training set.
    """
    factory = META_MODELS.get(meta_model)
    tgt = check_array(target_outputs, "target_outputs", ndim=3)
    ref = check_array(reference_outputs, "reference_outputs", ndim=4)
    if ref.shape[1:] != tgt.shape:
        raise ValidationError(
            f"reference_outputs: expected shape (m, {', '.join(map(str, tgt.shape))}) to match "
            f"target_outputs, got {ref.shape}"
        )
    kp = check_keep(keep, shape=ref.shape[:2])
    lab = check_labels(labels, tgt.shape[-1])
    if lab.shape != (tgt.shape[0],):
        raise ValidationError(f"labels: expected shape ({tgt.shape[0]},), got {lab.shape}")
    require_in_and_out(kp, "Shokri attack", "(model, record) pair to learn from")
    max_rows = check_count(max_train_per_class, "max_train_per_class", MIN_TRAIN_PER_CLASS)
    if top_k is not None:
        check_count(top_k, "top_k", 1)
    rng = as_generator(seed)

    def features(outputs: NDArray) -> NDArray[np.float64]:
        return sorted_probability_features(outputs, kind=kind, top_k=top_k)

    # (records scored, records whose reference rows train their meta-classifier)
    groups: list[tuple[NDArray[np.int64], NDArray[np.int64]]] = []
    pooled = []
    for c in np.unique(lab):
        records = np.flatnonzero(lab == c)
        if has_in_and_out(kp[:, records]):
            groups.append((records, records))
        else:
            pooled.append(records)
    if pooled:
        groups.append((np.concatenate(pooled), np.arange(kp.shape[1])))
    target_feats = features(tgt)
    scores = np.empty(tgt.shape[0])
    for scored, train in groups:
        scores[scored] = _fit_predict(
            factory, ref, kp, train, target_feats[scored], features, max_rows, rng
        )
    return scores


@register("shokri")
class ShokriAttack(Attack):
    """Shokri et al. shadow-model attack. Parameters: ``meta_model``, ``top_k``,
    ``max_train_per_class``, ``seed``; see :func:`shokri_scores`."""

    info = AttackInfo(
        name="shokri",
        title="Shadow models: per-class meta-classifiers on sorted prediction vectors",
        paper=PAPER,
        needs_outputs=True,  # sorted probability vectors of the raw outputs
        needs_references=True,
    )

    def __init__(
        self,
        meta_model: str = "logistic_regression",
        top_k: int | None = None,
        max_train_per_class: int = MAX_TRAIN_PER_CLASS,
        seed: int = 0,
    ) -> None:
        META_MODELS.get(meta_model)
        if top_k is not None:
            check_count(top_k, "top_k", 1)
        self.meta_model = meta_model
        self.top_k = top_k
        self.max_train_per_class = check_count(
            max_train_per_class, "max_train_per_class", MIN_TRAIN_PER_CLASS
        )
        self.seed = seed

    def _score(self, data: AttackData) -> NDArray[np.float64]:
        return shokri_scores(
            data.outputs("target"),
            data.outputs("references"),
            np.asarray(data.keep),
            np.asarray(data.labels),
            kind=data.kind,
            meta_model=self.meta_model,
            top_k=self.top_k,
            max_train_per_class=self.max_train_per_class,
            seed=self.seed,
        )
