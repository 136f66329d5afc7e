r"""Machine-unlearning evaluation, and two reference unlearners.

An unlearning algorithm takes a model trained on a dataset ``D`` and a forget set ``F ⊂ D`` and
returns a model that should be indistinguishable from one **retrained** from scratch on
``D \ F``. Two tests of that, as pure functions of per-model, per-record signals (for example
the logit-scaled confidence :math:`\ln\frac{p_y}{1 - p_y}` of the record's label, from
:mod:`miaudit.signals`; any signal where higher means "more like a model that saw the record"):

* :func:`ulira` — U-LiRA (Hayes, Shumailov, Triantafillou, Khalifa & Papernot, "Inexact
  Unlearning Needs More Careful Evaluations to Avoid a False Sense of Privacy", arXiv
  2403.01218, 2024): for each record, Gaussians fitted on shadow models that **unlearned** it
  and on shadow models **retrained** without it; a likelihood-ratio test classifies target
  models. Balanced accuracy 0.5 = the unlearning cannot be told from retraining.
* :func:`challenge_score` — the forgetting score of the NeurIPS 2023 Machine Unlearning
  challenge (Triantafillou et al., google-deepmind/unlearning_evaluation): a per-record
  epsilon from single- and double-threshold tests between the signal distributions of
  unlearned and retrained models, binned into points, averaged, and multiplied by the ratios of
  retain and test accuracy.

Two reference unlearners with the interface ``unlearner.unlearn(model, forget_idx) -> model``
work on small torch modules (classifiers: ``model(x)`` returns logits) and scikit-learn
estimators: :class:`RetrainFromScratch` (exact unlearning, the gold standard),
:class:`FineTuneOnRetained` (a cheap inexact baseline), and :class:`NoUnlearning` (the model
unchanged: the worst case, for calibrating an evaluation).
"""

from __future__ import annotations

import copy
import math
import sys
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from miaudit._validation import (
    SeedLike,
    as_generator,
    check_array,
    check_count,
    check_positive,
    check_probability,
)
from miaudit.exceptions import ValidationError

__all__ = [
    "CHALLENGE_DELTA",
    "EPSILON_CAP",
    "ChallengeScore",
    "FineTuneOnRetained",
    "NoUnlearning",
    "RetrainFromScratch",
    "ULiraResult",
    "Unlearner",
    "challenge_score",
    "forgetting_epsilons",
    "forgetting_quality",
    "retained_indices",
    "ulira",
    "ulira_scores",
]

# ------------------------------------------------------------------------- constants
#: Delta of the per-record epsilon of the NeurIPS 2023 challenge.
CHALLENGE_DELTA = 1e-5
#: Largest per-record epsilon of the challenge (perfect separation is capped to it).
EPSILON_CAP = 50.0
#: Grid density of the challenge's thresholds: thresholds per unit of signal.
THRESHOLDS_PER_UNIT = 100
#: Half-width of the window the double-threshold rule slides its ends over (signal units).
DOUBLE_THRESHOLD_BUFFER = 2.0
#: When the narrower of the two distributions spans less than this fraction of the wider one,
#: the challenge declares the record unforgotten (epsilon = cap) without testing thresholds.
PEAKY_RATIO = 0.01
#: Width of the epsilon bins of the challenge's score: bin k (``k * w <= eps < (k+1) * w``)
#: earns ``2^-k`` points.
BUCKET_WIDTH = 0.5
#: Fewest shadow models (in both pools together) for which U-LiRA's "auto" variance uses a
#: per-record variance; below it the residuals are pooled over records (LiRA's advice).
PER_RECORD_VARIANCE_MIN_MODELS = 64
#: Smallest standard deviation of a fitted Gaussian (a constant signal would give zero).
_MIN_STD = 1e-12

VarianceMode = Literal["auto", "per_record", "global"]
M = TypeVar("M")


# ------------------------------------------------------------------------- validation
def _signals(x: ArrayLike, name: str) -> NDArray[np.float64]:
    arr = check_array(x, name, ndim=2)
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValidationError(
            f"{name}: expected at least one model and one record, got shape {arr.shape}"
        )
    return arr


def _mask(x: ArrayLike, name: str, shape: tuple[int, ...]) -> NDArray[np.bool_]:
    arr = np.asarray(x)
    if arr.shape != shape:
        raise ValidationError(f"{name}: expected shape {shape} (models × records), got {arr.shape}")
    if arr.dtype == np.bool_:
        return arr.copy()
    if arr.dtype.kind in "iu" and np.all((arr == 0) | (arr == 1)):
        return arr.astype(bool)
    raise ValidationError(f"{name}: expected a boolean (or 0/1) array, got dtype {arr.dtype}")


# ------------------------------------------------------------------------------ U-LiRA
def _fit(
    signals: NDArray[np.float64], pool: NDArray[np.bool_], per_record: bool, name: str
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per-record mean and standard deviation of ``signals`` over the models in ``pool``."""
    counts = pool.sum(axis=0)
    need = 2 if per_record else 1
    short = np.flatnonzero(counts < need)
    if short.size:
        raise ValidationError(
            f"shadow_unlearned: {short.size} record(s) have fewer than {need} {name} shadow "
            f"model(s), e.g. record {int(short[0])} has {int(counts[short[0]])}"
        )
    mean = np.where(pool, signals, 0.0).sum(axis=0) / counts
    resid2 = np.where(pool, (signals - mean) ** 2, 0.0)
    if per_record:
        var = resid2.sum(axis=0) / counts
    else:
        var = np.full(signals.shape[1], resid2.sum() / counts.sum())
    return mean, np.maximum(np.sqrt(var), _MIN_STD)


def _log_normal_pdf(
    x: NDArray[np.float64], mean: NDArray[np.float64], std: NDArray[np.float64]
) -> NDArray[np.float64]:
    return -0.5 * ((x - mean) / std) ** 2 - np.log(std) - 0.5 * math.log(2 * math.pi)


def ulira_scores(
    shadow_signals: ArrayLike,
    shadow_unlearned: ArrayLike,
    target_signals: ArrayLike,
    *,
    variance: VarianceMode = "auto",
) -> NDArray[np.float64]:
    r"""U-LiRA log-likelihood ratios; higher = the target model looks like it unlearned the record.

    For record ``j``, Gaussians are fitted (maximum likelihood: mean and ``ddof=0`` standard
    deviation) to its signal in the shadow models that unlearned it,
    :math:`\mathcal N(\mu_u, \sigma_u^2)`, and in those retrained without it,
    :math:`\mathcal N(\mu_r, \sigma_r^2)`. A target model with signal ``s`` scores

    .. math::
        \Lambda = \ln \mathcal N(s; \mu_u, \sigma_u^2) - \ln \mathcal N(s; \mu_r, \sigma_r^2)

    (Hayes et al. 2024, following LiRA of Carlini et al. 2022).

    Parameters
    ----------
    shadow_signals : array-like of shape (n_shadow, n_records)
        Signal of each record in each shadow model.
    shadow_unlearned : array-like of shape (n_shadow, n_records), bool
        True where the shadow model trained on the record and then unlearned it; False where
        it was (re)trained without the record.
    target_signals : array-like of shape (n_targets, n_records)
        Signals of the models to classify.
    variance : {"auto", "per_record", "global"}
        Per-record variances (needs at least 2 shadows of each kind per record), or one
        variance per pool from the residuals pooled over records. ``"auto"`` (default) pools
        with fewer than :data:`PER_RECORD_VARIANCE_MIN_MODELS` shadow models, as LiRA advises.

    Returns
    -------
    ndarray of shape (n_targets, n_records)
        The log-likelihood ratios, float64.
    """
    shadow = _signals(shadow_signals, "shadow_signals")
    unlearned = _mask(shadow_unlearned, "shadow_unlearned", shadow.shape)
    target = _signals(target_signals, "target_signals")
    if target.shape[1] != shadow.shape[1]:
        raise ValidationError(
            f"target_signals: expected {shadow.shape[1]} records (columns) like shadow_signals, "
            f"got {target.shape[1]}"
        )
    if variance == "auto":
        per_record = shadow.shape[0] >= PER_RECORD_VARIANCE_MIN_MODELS
    elif variance in ("per_record", "global"):
        per_record = variance == "per_record"
    else:
        raise ValidationError(
            f"variance: expected 'auto', 'per_record' or 'global', got {variance!r}"
        )
    mu_u, sd_u = _fit(shadow, unlearned, per_record, "unlearned")
    mu_r, sd_r = _fit(shadow, ~unlearned, per_record, "retrained")
    return _log_normal_pdf(target, mu_u, sd_u) - _log_normal_pdf(target, mu_r, sd_r)


@dataclass(frozen=True)
class ULiraResult:
    """Result of :func:`ulira`.

    Attributes
    ----------
    balanced_accuracy : float
        ``(TPR + TNR) / 2`` of the test "unlearned iff Λ > 0": 0.5 = unlearning
        indistinguishable from retraining, 1 = always told apart.
    tpr : float
        Share of (target model, record) pairs that unlearned the record and are called so.
    tnr : float
        Share of retrained pairs called retrained.
    n_unlearned, n_retrained : int
        Pairs of each kind.
    scores : ndarray of shape (n_targets, n_records)
        The log-likelihood ratios Λ (:func:`ulira_scores`).
    """

    balanced_accuracy: float
    tpr: float
    tnr: float
    n_unlearned: int
    n_retrained: int
    scores: NDArray[np.float64] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The summary numbers (not the scores), JSON-serialisable."""
        return {
            "balanced_accuracy": self.balanced_accuracy,
            "tpr": self.tpr,
            "tnr": self.tnr,
            "n_unlearned": self.n_unlearned,
            "n_retrained": self.n_retrained,
        }


def ulira(
    shadow_signals: ArrayLike,
    shadow_unlearned: ArrayLike,
    target_signals: ArrayLike,
    target_unlearned: ArrayLike,
    *,
    variance: VarianceMode = "auto",
) -> ULiraResult:
    """U-LiRA evaluation of an unlearning algorithm (Hayes et al. 2024).

    Scores every (target model, record) pair with :func:`ulira_scores` and classifies it
    "unlearned" iff the log-likelihood ratio is positive — the Bayes test for equal priors, so
    no threshold is tuned on the targets' labels. The balanced accuracy of that test is the
    result: 0.5 means the unlearned models cannot be told from retrained ones.

    Parameters
    ----------
    shadow_signals, shadow_unlearned : array-like of shape (n_shadow, n_records)
        See :func:`ulira_scores`.
    target_signals : array-like of shape (n_targets, n_records)
        Signals of held-out models (not among the shadows).
    target_unlearned : array-like of shape (n_targets, n_records), bool
        The truth for the targets: True where the model unlearned the record, False where it
        was retrained without it. Both kinds must occur.
    variance : {"auto", "per_record", "global"}
        See :func:`ulira_scores`.

    Returns
    -------
    ULiraResult
    """
    scores = ulira_scores(shadow_signals, shadow_unlearned, target_signals, variance=variance)
    truth = _mask(target_unlearned, "target_unlearned", scores.shape)
    n_u, n_r = int(truth.sum()), int((~truth).sum())
    if n_u == 0 or n_r == 0:
        raise ValidationError(
            "target_unlearned: need both unlearned (True) and retrained (False) pairs, got "
            f"{n_u} and {n_r}"
        )
    called = scores > 0
    tpr = float(np.sum(called & truth) / n_u)
    tnr = float(np.sum(~called & ~truth) / n_r)
    return ULiraResult(0.5 * (tpr + tnr), tpr, tnr, n_u, n_r, scores)


# ---------------------------------------------------------- NeurIPS 2023 challenge score
def _grid(lo: float, hi: float) -> NDArray[np.float64]:
    """``ceil((hi - lo) * THRESHOLDS_PER_UNIT)`` evenly spaced thresholds from lo to hi."""
    return np.linspace(lo, hi, math.ceil((hi - lo) * THRESHOLDS_PER_UNIT))


def _single_threshold_rates(
    pos: NDArray[np.float64], neg: NDArray[np.float64]
) -> tuple[NDArray[np.float64], ...]:
    """``(tpr, fnr, fpr, tnr)`` of "positive iff signal >= t" over a grid spanning both."""
    both = np.concatenate([pos, neg])
    t = _grid(float(both.min()), float(both.max()))
    tpr = (pos.size - np.searchsorted(np.sort(pos), t, side="left")) / pos.size
    fpr = (neg.size - np.searchsorted(np.sort(neg), t, side="left")) / neg.size
    return tpr, 1.0 - tpr, fpr, 1.0 - fpr


def _double_threshold_rates(
    pos: NDArray[np.float64], neg: NDArray[np.float64]
) -> tuple[NDArray[np.float64], ...]:
    """``(tpr, fnr, fpr, tnr)`` of "positive iff l <= signal <= r", positive = the narrower
    distribution; ``r`` runs over a grid around it and ``l`` around ``r - width``."""
    if np.ptp(pos) >= np.ptp(neg):
        pos, neg = neg, pos
    width = float(np.ptp(pos))
    right = _grid(
        float(pos.min()) + width - DOUBLE_THRESHOLD_BUFFER,
        float(pos.max()) + DOUBLE_THRESHOLD_BUFFER,
    )
    n_left = math.ceil(2 * DOUBLE_THRESHOLD_BUFFER * THRESHOLDS_PER_UNIT)
    offsets = np.linspace(
        -width - DOUBLE_THRESHOLD_BUFFER, -width + DOUBLE_THRESHOLD_BUFFER, n_left
    )
    left = (right[:, None] + offsets[None, :]).ravel()
    right = np.repeat(right, n_left)

    def inside(x: NDArray[np.float64]) -> NDArray[np.float64]:
        xs = np.sort(x)
        n_in = np.searchsorted(xs, right, side="right") - np.searchsorted(xs, left, side="left")
        return np.maximum(n_in, 0) / x.size

    tpr, fpr = inside(pos), inside(neg)
    return tpr, 1.0 - tpr, fpr, 1.0 - fpr


def _epsilon_of_rates(
    tpr: NDArray[np.float64],
    fnr: NDArray[np.float64],
    fpr: NDArray[np.float64],
    tnr: NDArray[np.float64],
    delta: float,
) -> float:
    """Largest epsilon over thresholds, with the challenge's rules for zero error rates.

    Perfect separation (``fpr = fnr = 0``) gives ``inf``; a threshold with exactly one zero
    error rate is discarded (too few models to estimate it); otherwise
    ``max(ln(1 - delta - fpr) - ln fnr, ln(1 - delta - fnr) - ln fpr)``, clipped at 0, with a
    term whose logarithm's argument is not positive dropped.
    """
    perfect = (fpr + fnr == 0) & (tpr + tnr == 2)
    if np.any(perfect):
        return math.inf
    ok = fpr * fnr > 0
    if not np.any(ok):
        return 0.0
    fpr, fnr = fpr[ok], fnr[ok]
    a, b = 1.0 - delta - fpr, 1.0 - delta - fnr
    term1 = np.full(fpr.shape, -np.inf)
    term2 = np.full(fpr.shape, -np.inf)
    term1[a > 0] = np.log(a[a > 0]) - np.log(fnr[a > 0])
    term2[b > 0] = np.log(b[b > 0]) - np.log(fpr[b > 0])
    both = np.maximum(term1, term2)
    valid = np.isfinite(both)
    if not np.any(valid):
        return 0.0
    return float(max(0.0, both[valid].max()))


def _record_epsilon(u: NDArray[np.float64], r: NDArray[np.float64], delta: float) -> float:
    # the positive class is whichever has the larger median
    pos, neg = (r, u) if np.median(r) > np.median(u) else (u, r)
    largest = max(np.ptp(pos), np.ptp(neg))
    smallest = min(np.ptp(pos), np.ptp(neg))
    if largest == 0.0:  # both constant: identical (nothing to tell) or perfectly separated
        return 0.0 if pos[0] == neg[0] else EPSILON_CAP
    if smallest / largest < PEAKY_RATIO:
        return EPSILON_CAP
    rates = [
        np.concatenate(parts)
        for parts in zip(
            _double_threshold_rates(pos, neg), _single_threshold_rates(pos, neg), strict=True
        )
    ]
    tpr, fnr, fpr, tnr = rates
    return min(EPSILON_CAP, _epsilon_of_rates(tpr, fnr, fpr, tnr, delta))


def forgetting_epsilons(
    unlearned_signals: ArrayLike,
    retrained_signals: ArrayLike,
    *,
    delta: float = CHALLENGE_DELTA,
) -> NDArray[np.float64]:
    r"""Per-record epsilon of the NeurIPS 2023 unlearning challenge.

    For forget-set record ``j``, the signals of the unlearned models and of the retrained
    models are two samples; the one with the larger median is "positive". Two families of
    tests are tried on a grid of :data:`THRESHOLDS_PER_UNIT` thresholds per unit of signal:
    single thresholds ("positive iff s >= t", over the range of both samples) and double
    thresholds ("positive iff l <= s <= r", positive = the narrower sample, ends within
    :data:`DOUBLE_THRESHOLD_BUFFER` of it). Each test gives

    .. math::
        \varepsilon = \max\left\{\ln(1 - \delta - \mathrm{FPR}) - \ln\mathrm{FNR},\;
        \ln(1 - \delta - \mathrm{FNR}) - \ln\mathrm{FPR}\right\},

    and ``eps_j`` is the largest over tests, in ``[0, EPSILON_CAP]``. As in the reference code:
    a test with exactly one zero error rate is skipped, perfect separation gives the cap, and so
    does a record whose narrower sample spans less than :data:`PEAKY_RATIO` of the wider one.
    (The reference computes in float32; this is float64, so rates at a grid point can differ by
    one model where a signal lies within float32 rounding of a threshold.)

    These are raw rates, not confidence bounds: an estimate of how distinguishable the two
    distributions are, not a guarantee.

    Parameters
    ----------
    unlearned_signals : array-like of shape (n_unlearned, n_records)
        Signal of each forget-set record under each unlearned model.
    retrained_signals : array-like of shape (n_retrained, n_records)
        The same records under models retrained without the forget set.
    delta : float
        In [0, 1); the challenge uses 1e-5.

    Returns
    -------
    ndarray of shape (n_records,)
    """
    u = _signals(unlearned_signals, "unlearned_signals")
    r = _signals(retrained_signals, "retrained_signals")
    if u.shape[1] != r.shape[1]:
        raise ValidationError(
            f"retrained_signals: expected {u.shape[1]} records (columns) like "
            f"unlearned_signals, got {r.shape[1]}"
        )
    for arr, name in ((u, "unlearned_signals"), (r, "retrained_signals")):
        if arr.shape[0] < 2:
            raise ValidationError(f"{name}: expected at least 2 models, got {arr.shape[0]}")
    d = check_probability(delta, "delta", open_interval=False)
    if d >= 1.0:
        raise ValidationError(f"delta: expected a value in [0, 1), got {delta!r}")
    return np.array([_record_epsilon(u[:, j], r[:, j], d) for j in range(u.shape[1])])


def forgetting_quality(epsilons: ArrayLike, n_models: int) -> float:
    r"""Mean points of per-record epsilons, the "forgetting quality" F of the challenge.

    A record with :math:`k \cdot w \le \varepsilon < (k + 1) w` (``w`` = :data:`BUCKET_WIDTH`)
    earns :math:`2^{-k}` points if its bin ends at or below
    :math:`\lceil \ln(n_{models} - 1) \rceil` — the largest epsilon ``n_models`` models can
    measure — and 0 otherwise. F is the mean over records, in [0, 1]; 1 = every record in the
    lowest bin.

    Parameters
    ----------
    epsilons : array-like of shape (n_records,)
        Per-record epsilons (:func:`forgetting_epsilons`), ``>= 0``.
    n_models : int
        Number of unlearned models the epsilons come from (``>= 2``).
    """
    eps = check_array(epsilons, "epsilons", ndim=1, finite=False)
    if eps.size == 0:
        raise ValidationError("epsilons: expected at least one record, got none")
    if np.any(np.isnan(eps)) or np.any(eps < 0):
        raise ValidationError("epsilons: expected values >= 0 (no NaN)")
    n = check_count(n_models, "n_models", minimum=2)
    max_epsilon = math.ceil(math.log(n - 1))
    n_buckets = math.floor(max_epsilon / BUCKET_WIDTH)
    k = np.floor(eps / BUCKET_WIDTH)
    points = np.where(k < n_buckets, 2.0 ** -np.minimum(k, n_buckets), 0.0)
    return float(points.mean())


@dataclass(frozen=True)
class ChallengeScore:
    """Result of :func:`challenge_score`.

    Attributes
    ----------
    score : float
        ``forgetting_quality * retain_accuracy_ratio * test_accuracy_ratio``.
    forgetting_quality : float
        F of :func:`forgetting_quality`.
    retain_accuracy_ratio, test_accuracy_ratio : float
        Mean accuracy of the unlearned models over that of the retrained models, on the
        retained data and on held-out test data.
    epsilons : ndarray of shape (n_records,)
        Per-record epsilons of :func:`forgetting_epsilons`.
    delta : float
    """

    score: float
    forgetting_quality: float
    retain_accuracy_ratio: float
    test_accuracy_ratio: float
    epsilons: NDArray[np.float64] = field(repr=False)
    delta: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (epsilons as a list)."""
        return {
            "score": self.score,
            "forgetting_quality": self.forgetting_quality,
            "retain_accuracy_ratio": self.retain_accuracy_ratio,
            "test_accuracy_ratio": self.test_accuracy_ratio,
            "epsilons": self.epsilons.tolist(),
            "delta": self.delta,
        }


def _accuracy(x: ArrayLike, name: str) -> float:
    arr = check_array(x, name, ndim=(0, 1))
    if arr.size == 0 or np.any((arr < 0) | (arr > 1)):
        raise ValidationError(f"{name}: expected accuracies in [0, 1], got {arr.tolist()}")
    return float(arr.mean())


def challenge_score(
    unlearned_signals: ArrayLike,
    retrained_signals: ArrayLike,
    *,
    retain_accuracy_unlearned: ArrayLike,
    retain_accuracy_retrained: ArrayLike,
    test_accuracy_unlearned: ArrayLike,
    test_accuracy_retrained: ArrayLike,
    delta: float = CHALLENGE_DELTA,
) -> ChallengeScore:
    r"""Score of the NeurIPS 2023 Machine Unlearning challenge.

    .. math::
        \text{score} = F \cdot \frac{RA_u}{RA_r} \cdot \frac{TA_u}{TA_r},

    with ``F`` = :func:`forgetting_quality` of :func:`forgetting_epsilons` (``n_models`` = the
    number of unlearned models) and ``RA``/``TA`` the mean retain-set / test-set accuracies of
    the unlearned (``u``) and retrained (``r``) models.

    Parameters
    ----------
    unlearned_signals, retrained_signals : array-like of shape (n_models, n_forget)
        See :func:`forgetting_epsilons`.
    retain_accuracy_unlearned, retain_accuracy_retrained : float or array-like of float
        Accuracy on the retained data, one value or one per model (averaged).
    test_accuracy_unlearned, test_accuracy_retrained : float or array-like of float
        Accuracy on held-out test data.
    delta : float
        In [0, 1).

    Returns
    -------
    ChallengeScore
    """
    eps = forgetting_epsilons(unlearned_signals, retrained_signals, delta=delta)
    n_models = np.shape(unlearned_signals)[0]
    quality = forgetting_quality(eps, n_models)
    ra_u = _accuracy(retain_accuracy_unlearned, "retain_accuracy_unlearned")
    ra_r = _accuracy(retain_accuracy_retrained, "retain_accuracy_retrained")
    ta_u = _accuracy(test_accuracy_unlearned, "test_accuracy_unlearned")
    ta_r = _accuracy(test_accuracy_retrained, "test_accuracy_retrained")
    for value, name in ((ra_r, "retain_accuracy_retrained"), (ta_r, "test_accuracy_retrained")):
        if value == 0:
            raise ValidationError(f"{name}: the retrained models' accuracy is 0; no ratio")
    ra, ta = ra_u / ra_r, ta_u / ta_r
    return ChallengeScore(quality * ra * ta, quality, ra, ta, eps, float(delta))


# -------------------------------------------------------------------------- unlearners
class Unlearner(Protocol):
    """Anything with ``unlearn(model, forget_idx) -> model``.

    ``forget_idx`` indexes the records of the unlearner's training data (integer positions, or
    a boolean mask over them). The returned model is new; the input model is left unchanged.
    """

    def unlearn(self, model: Any, forget_idx: ArrayLike) -> Any:
        """Return a model that has forgotten the records ``forget_idx``."""
        ...


def retained_indices(forget_idx: ArrayLike, n_records: int) -> NDArray[np.intp]:
    """Positions ``0..n_records-1`` not in ``forget_idx`` (integer positions or a boolean mask).

    Raises :class:`ValidationError` for positions out of range, repeated positions, a mask of
    the wrong length, or a forget set that removes every record.
    """
    arr = np.asarray(forget_idx)
    if arr.dtype == np.bool_:
        if arr.shape != (n_records,):
            raise ValidationError(
                f"forget_idx: a boolean mask must have shape ({n_records},), got {arr.shape}"
            )
        forget = arr
    else:
        if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
            raise ValidationError(
                f"forget_idx: expected 1-d integer positions or a boolean mask, got dtype "
                f"{arr.dtype} and shape {arr.shape}"
            )
        idx = arr.astype(np.int64)
        bad = (idx < 0) | (idx >= n_records)
        if bad.any():
            raise ValidationError(
                f"forget_idx: positions must be in 0..{n_records - 1}; found "
                f"{np.unique(idx[bad])[:5].tolist()}"
            )
        if np.unique(idx).size != idx.size:
            raise ValidationError("forget_idx: contains repeated positions")
        forget = np.zeros(n_records, dtype=bool)
        forget[idx] = True
    keep = np.flatnonzero(~forget)
    if keep.size == 0:
        raise ValidationError("forget_idx: forgets every record; nothing is left to train on")
    return keep


class _DataUnlearner:
    """Shared state of the reference unlearners: the training data and the optimiser settings."""

    def __init__(
        self,
        features: ArrayLike,
        labels: ArrayLike,
        *,
        epochs: int,
        lr: float,
        batch_size: int,
        seed: SeedLike,
    ) -> None:
        self.features = check_array(features, "features", min_ndim=2)
        y = np.asarray(labels)
        if y.ndim != 1 or y.shape[0] != self.features.shape[0]:
            raise ValidationError(
                f"labels: expected shape ({self.features.shape[0]},) to match features, got "
                f"{y.shape}"
            )
        self.labels = y
        self.epochs = check_count(epochs, "epochs", minimum=1)
        self.lr = check_positive(lr, "lr")
        self.batch_size = check_count(batch_size, "batch_size", minimum=1)
        self._rng = as_generator(seed, "seed")

    @property
    def n_records(self) -> int:
        return int(self.features.shape[0])

    def _next_seed(self) -> int:
        # one fresh seed per call: a fixed seed gives the same sequence of unlearned models
        return int(self._rng.integers(0, 2**31 - 1))

    def _train_torch(self, model: Any, keep: NDArray[np.intp], seed: int) -> Any:
        import torch

        gen = torch.Generator().manual_seed(seed)
        param = next(model.parameters(), None)
        dtype = param.dtype if param is not None else torch.float32
        x = torch.as_tensor(self.features[keep], dtype=dtype)
        y = torch.as_tensor(self.labels[keep].astype(np.int64))
        opt = torch.optim.Adam(model.parameters(), lr=self.lr)
        loss_fn = torch.nn.CrossEntropyLoss()
        model.train()
        for _ in range(self.epochs):
            order = torch.randperm(x.shape[0], generator=gen)
            for start in range(0, x.shape[0], self.batch_size):
                batch = order[start : start + self.batch_size]
                opt.zero_grad()
                loss_fn(model(x[batch]), y[batch]).backward()
                opt.step()
        model.eval()
        return model


def _is_torch_module(model: Any) -> bool:
    # a torch module can only exist once torch is imported: never import it just to check
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


def _is_sklearn_estimator(model: Any) -> bool:
    return hasattr(model, "fit") and hasattr(model, "get_params")


class RetrainFromScratch(_DataUnlearner):
    """Exact unlearning: train a fresh model on the retained records only.

    * scikit-learn estimator: ``sklearn.base.clone(model).fit(X_retained, y_retained)`` (same
      hyper-parameters, including ``random_state``).
    * torch module: a deep copy whose parameters are re-initialised (``reset_parameters()`` of
      every sub-module, under a forked torch RNG seeded from ``seed``, so the global torch RNG
      is untouched), then trained with Adam and cross-entropy for ``epochs`` epochs.

    Parameters
    ----------
    features : array-like of shape (n_records, ...)
        The training data the model was trained on.
    labels : array-like of shape (n_records,)
        Integer class labels.
    epochs, lr, batch_size : int, float, int
        Training of torch models (ignored for scikit-learn).
    seed : int or numpy.random.Generator
        Source of the seeds of successive calls.
    """

    def __init__(
        self,
        features: ArrayLike,
        labels: ArrayLike,
        *,
        epochs: int = 20,
        lr: float = 1e-2,
        batch_size: int = 64,
        seed: SeedLike = 0,
    ) -> None:
        super().__init__(features, labels, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)

    def unlearn(self, model: M, forget_idx: ArrayLike) -> M:
        """A model trained from scratch on all records except ``forget_idx``."""
        keep = retained_indices(forget_idx, self.n_records)
        seed = self._next_seed()
        if _is_torch_module(model):
            import torch

            fresh = copy.deepcopy(model)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                for module in fresh.modules():  # type: ignore[attr-defined]
                    reset = getattr(module, "reset_parameters", None)
                    if callable(reset):
                        reset()
            return self._train_torch(fresh, keep, seed)
        if _is_sklearn_estimator(model):
            from sklearn.base import clone

            return clone(model).fit(self.features[keep], self.labels[keep])
        raise ValidationError(
            "model: expected a torch.nn.Module or a scikit-learn estimator, got "
            f"{type(model).__name__}"
        )


class FineTuneOnRetained(_DataUnlearner):
    """Inexact unlearning: keep training the model on the retained records only.

    "Fine-tune" is the simplest baseline of the unlearning literature (e.g. Warnecke et al.
    2023; the NeurIPS 2023 challenge starting kit): the forget set is never seen again and is
    expected to fade. It is cheap and usually leaves the forget set recognisable.

    * torch module: a deep copy trained with Adam and cross-entropy for ``epochs`` epochs.
    * scikit-learn estimator with ``partial_fit`` (``SGDClassifier``, ``MLPClassifier``, …): a
      deep copy updated with one ``partial_fit`` call per shuffled mini-batch per epoch.
      Estimators without ``partial_fit`` cannot be fine-tuned (an error).

    Parameters
    ----------
    features, labels, epochs, lr, batch_size, seed
        See :class:`RetrainFromScratch` (``lr`` only applies to torch).
    """

    def __init__(
        self,
        features: ArrayLike,
        labels: ArrayLike,
        *,
        epochs: int = 5,
        lr: float = 1e-3,
        batch_size: int = 64,
        seed: SeedLike = 0,
    ) -> None:
        super().__init__(features, labels, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)

    def unlearn(self, model: M, forget_idx: ArrayLike) -> M:
        """A copy of ``model`` fine-tuned on all records except ``forget_idx``."""
        keep = retained_indices(forget_idx, self.n_records)
        seed = self._next_seed()
        if _is_torch_module(model):
            return self._train_torch(copy.deepcopy(model), keep, seed)
        if _is_sklearn_estimator(model):
            if not hasattr(model, "partial_fit"):
                raise ValidationError(
                    f"model: {type(model).__name__} has no partial_fit, so it cannot be "
                    "fine-tuned; use RetrainFromScratch or an estimator such as SGDClassifier"
                )
            tuned = copy.deepcopy(model)
            rng = np.random.default_rng(seed)
            for _ in range(self.epochs):
                order = keep[rng.permutation(keep.size)]
                for start in range(0, order.size, self.batch_size):
                    batch = order[start : start + self.batch_size]
                    tuned.partial_fit(self.features[batch], self.labels[batch])
            return tuned
        raise ValidationError(
            "model: expected a torch.nn.Module or a scikit-learn estimator, got "
            f"{type(model).__name__}"
        )


class NoUnlearning:
    """The null unlearner: returns the model unchanged (a copy). The worst case, for checking
    that an evaluation can tell unlearning apart from doing nothing."""

    def unlearn(self, model: M, forget_idx: ArrayLike) -> M:
        """A deep copy of ``model``."""
        return copy.deepcopy(model)
