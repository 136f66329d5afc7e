r"""Metrics of a membership inference attack: exact ROC, TPR at low FPR, intervals, DP bounds.

Every function takes per-record ``scores`` of shape ``(n,)`` (higher = more likely a member) and
the ground truth ``is_member`` of shape ``(n,)`` (boolean, or 0/1, or ``"true"``/``"false"``),
and validates them at the door (:mod:`miaudit._validation`).

Decision rule
    A threshold ``t`` predicts "member" for every record with ``score >= t``. Counting over the
    ``P`` members and ``N`` non-members, ``TP(t) = #{members with score >= t}``,
    ``FP(t) = #{non-members with score >= t}``, ``TPR = TP / P`` and ``FPR = FP / N``.

NaN scores
    A NaN score is treated as the lowest possible score (``-inf``): it is predicted "member"
    by no threshold except ``-inf``, so it counts as a miss for a member and as a correct
    rejection for a non-member. Every function follows this rule; :func:`summarize` reports
    how many scores were NaN in :attr:`MetricsSummary.n_nan`. ``+inf`` and ``-inf`` scores are
    valid and ordered as usual.

Resolution
    With ``N`` non-members the smallest nonzero FPR is ``1 / N``
    (:attr:`TprAtFpr.min_reachable_fpr`).
    A "TPR at FPR 1e-5" computed on 1,000 non-members is really the TPR at FPR 0; the results
    here say so (:attr:`TprAtFpr.reachable`).

References
    Carlini et al., "Membership Inference Attacks From First Principles", S&P 2022 (TPR at low
    FPR, log-scale ROC). Yeom et al., "Privacy Risk in Machine Learning", CSF 2018 (advantage).
    Clopper & Pearson, Biometrika 1934. Jagielski, Ullman & Oprea, "Auditing Differentially
    Private Machine Learning", NeurIPS 2020 (epsilon lower bound).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from miaudit._json import json_float, parse_float
from miaudit._validation import (
    SeedLike,
    as_generator,
    check_array,
    check_both_classes,
    check_membership,
    check_probability,
    check_same_length,
)
from miaudit.defaults import DEFAULT_ALPHA, DEFAULT_DELTA, DEFAULT_FPRS, DEFAULT_N_BOOTSTRAP
from miaudit.exceptions import SmallSampleWarning, ValidationError

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_DELTA",
    "DEFAULT_FPRS",
    "DEFAULT_N_BOOTSTRAP",
    "EpsilonBound",
    "MetricsSummary",
    "TprAtFpr",
    "advantage",
    "auc",
    "auc_interval",
    "balanced_accuracy",
    "clopper_pearson",
    "confusion_at",
    "epsilon_lower_bound",
    "epsilon_lower_bound_from_scores",
    "roc_curve",
    "summarize",
    "tpr_at_fpr",
]

#: Memory bound of the vectorised bootstrap: at most this many array cells per chunk of
#: resamples (``chunk * (n_members + n_non_members)``; 4e6 int64 cells = 32 MB per array).
_BOOTSTRAP_CHUNK_CELLS = 4_000_000
#: Fewest records of each class for which the percentile bootstrap of the AUC is trusted: with
#: fewer (one member, say) every resample repeats the same few scores, the resampled AUCs vary
#: only with the other class, and the interval is far too narrow (:class:`SmallSampleWarning`).
MIN_BOOTSTRAP_CLASS = 10

EpsilonSelection = Literal["given", "best_on_same_data", "split"]


# ----------------------------------------------------------------------------- validation
def _prepare(
    scores: ArrayLike, is_member: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.bool_], int]:
    """Validated ``(scores with NaN replaced by -inf, membership, number of NaN scores)``."""
    s = check_array(scores, "scores", ndim=1, finite=False)
    m = check_membership(is_member)
    check_same_length(scores=s, is_member=m)
    check_both_classes(m)
    nan = np.isnan(s)
    n_nan = int(nan.sum())
    if n_nan:
        s = np.where(nan, -np.inf, s)
    return s, m, n_nan


def _check_count(value: Any, name: str) -> int:
    """A non-negative integer count (ints, or floats that are whole numbers)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValidationError(
            f"{name}: expected a non-negative integer count, got {value!r}"
        ) from None
    if not math.isfinite(v) or v < 0 or v != math.floor(v):
        raise ValidationError(f"{name}: expected a non-negative integer count, got {value!r}")
    return int(v)


def _check_alpha(alpha: float) -> float:
    return check_probability(alpha, "alpha")


def _check_delta(delta: float) -> float:
    d = check_probability(delta, "delta", open_interval=False)
    if d >= 1.0:
        raise ValidationError(f"delta: expected a value in [0, 1), got {delta!r}")
    return d


# ------------------------------------------------------------------------------------ ROC
@dataclass(frozen=True)
class _RocCounts:
    """Cumulative counts at every distinct threshold, origin first (internal).

    ``fps[i]``, ``tps[i]``: non-members / members with ``score >= thresholds[i]``; ``i = 0`` is
    the point (0, 0) with threshold ``+inf``.
    """

    fps: NDArray[np.int64]
    tps: NDArray[np.int64]
    thresholds: NDArray[np.float64]
    n_members: int
    n_non_members: int

    @property
    def fpr(self) -> NDArray[np.float64]:
        return self.fps / self.n_non_members

    @property
    def tpr(self) -> NDArray[np.float64]:
        return self.tps / self.n_members


def _roc_counts(s: NDArray[np.float64], m: NDArray[np.bool_]) -> _RocCounts:
    order = np.argsort(-s, kind="mergesort")  # descending scores
    s_sorted = s[order]
    # last position of each run of equal scores (``!=`` so that -inf == -inf is one run)
    ends = np.r_[np.flatnonzero(s_sorted[1:] != s_sorted[:-1]), s.size - 1]
    tps = np.cumsum(m[order], dtype=np.int64)[ends]
    fps = ends + 1 - tps
    n_members = int(m.sum())
    return _RocCounts(
        fps=np.r_[0, fps].astype(np.int64),
        tps=np.r_[0, tps].astype(np.int64),
        thresholds=np.r_[np.inf, s_sorted[ends]],
        n_members=n_members,
        n_non_members=int(s.size - n_members),
    )


def roc_curve(
    scores: ArrayLike, is_member: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Exact ROC curve with one point per distinct score.

    Parameters
    ----------
    scores : array-like of shape (n,)
        Attack scores, higher = member. NaN counts as ``-inf`` (module docstring).
    is_member : array-like of shape (n,)
        Ground truth: boolean or 0/1.

    Returns
    -------
    fpr : ndarray of shape (k + 1,)
        ``fpr[i] = FP(thresholds[i]) / N`` with ``FP(t) = #{non-members: score >= t}``.
    tpr : ndarray of shape (k + 1,)
        ``tpr[i] = TP(thresholds[i]) / P`` with ``TP(t) = #{members: score >= t}``.
    thresholds : ndarray of shape (k + 1,)
        ``+inf`` (the point (0, 0): no record predicted member) followed by the ``k`` distinct
        scores in decreasing order. Tied scores form one point, so the curve is the same for
        any order of ties. Both ``fpr`` and ``tpr`` are non-decreasing and end at 1.

    Notes
    -----
    The same as ``sklearn.metrics.roc_curve(is_member, scores, drop_intermediate=False)``.

    Examples
    --------
    >>> scores = [0.9, 0.8, 0.35, 0.3, 0.1]
    >>> is_member = [True, True, False, True, False]
    >>> fpr, tpr, thresholds = roc_curve(scores, is_member)
    >>> fpr.tolist(), tpr.round(4).tolist()
    ([0.0, 0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.3333, 0.6667, 0.6667, 1.0, 1.0])
    """
    s, m, _ = _prepare(scores, is_member)
    c = _roc_counts(s, m)
    return c.fpr, c.tpr, c.thresholds


def _auc(c: _RocCounts) -> float:
    # trapezoid rule on the exact curve, in integer counts: Σ ΔFP · (TP_i + TP_{i-1}) / (2PN)
    area2 = np.sum(np.diff(c.fps) * (c.tps[1:] + c.tps[:-1]), dtype=np.float64)
    return float(area2 / (2.0 * c.n_members * c.n_non_members))


def auc(scores: ArrayLike, is_member: ArrayLike) -> float:
    r"""Area under the ROC curve of :func:`roc_curve` (trapezoid rule, exact).

    Equals the Mann–Whitney statistic
    :math:`\frac{1}{PN}\sum_{i \in \text{members}}\sum_{j \in \text{non-members}}
    \left(1[s_i > s_j] + \tfrac12 1[s_i = s_j]\right)`: the probability that a random member
    scores above a random non-member, ties counting one half.

    Parameters
    ----------
    scores, is_member : array-like of shape (n,)
        See :func:`roc_curve`.

    Returns
    -------
    float
        In [0, 1]; 0.5 is chance.

    Examples
    --------
    >>> auc([0.9, 0.8, 0.35, 0.3, 0.1], [True, True, False, True, False])  # 5 of 6 pairs ordered
    0.8333333333333334
    """
    s, m, _ = _prepare(scores, is_member)
    return _auc(_roc_counts(s, m))


def _advantage(c: _RocCounts) -> float:
    return float(np.max(c.tpr - c.fpr))


def advantage(scores: ArrayLike, is_member: ArrayLike) -> float:
    r"""Membership advantage :math:`\max_t \, \mathrm{TPR}(t) - \mathrm{FPR}(t)` (Yeom et al. 2018).

    The maximum runs over every threshold of :func:`roc_curve`, including ``+inf`` (TPR = FPR
    = 0), so the result is in [0, 1].

    Parameters
    ----------
    scores, is_member : array-like of shape (n,)
        See :func:`roc_curve`.

    Examples
    --------
    >>> advantage([0.9, 0.8, 0.35, 0.3, 0.1], [True, True, False, True, False])  # max TPR - FPR
    0.6666666666666666
    """
    s, m, _ = _prepare(scores, is_member)
    return _advantage(_roc_counts(s, m))


def balanced_accuracy(scores: ArrayLike, is_member: ArrayLike) -> float:
    r"""Best balanced accuracy over thresholds, :math:`\max_t (\mathrm{TPR} + \mathrm{TNR})/2`.

    With :math:`\mathrm{TNR} = 1 - \mathrm{FPR}` this equals ``(1 + advantage) / 2`` and lies in
    [0.5, 1]. It is the accuracy of the best threshold on a set with as many members as
    non-members.

    Parameters
    ----------
    scores, is_member : array-like of shape (n,)
        See :func:`roc_curve`.

    Examples
    --------
    >>> balanced_accuracy([0.9, 0.8, 0.35, 0.3, 0.1], [True, True, False, True, False])
    0.8333333333333333
    """
    s, m, _ = _prepare(scores, is_member)
    return 0.5 * (1.0 + _advantage(_roc_counts(s, m)))


# ------------------------------------------------------------------------ Clopper–Pearson
def _cp_lower(k: ArrayLike, n: ArrayLike, level: float) -> NDArray[np.float64]:
    """One-sided lower Clopper–Pearson bound at level ``level``: ``Beta(level; k, n-k+1)``.

    0 where ``k = 0``. Vectorised over ``k`` and ``n``.
    """
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    safe_k = np.maximum(k, 1.0)
    from scipy import stats

    return np.where(k > 0, stats.beta.ppf(level, safe_k, n - safe_k + 1.0), 0.0)


def _cp_upper(k: ArrayLike, n: ArrayLike, level: float) -> NDArray[np.float64]:
    """One-sided upper Clopper–Pearson bound at level ``level``: ``Beta(1-level; k+1, n-k)``.

    1 where ``k = n``. Computed with the survival function for accuracy near 1.
    """
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    safe_k = np.minimum(k, n - 1.0)
    from scipy import stats

    return np.where(k < n, stats.beta.isf(level, safe_k + 1.0, n - safe_k), 1.0)


def clopper_pearson(k: int, n: int, alpha: float = DEFAULT_ALPHA) -> tuple[float, float]:
    """Two-sided Clopper–Pearson ``1 - alpha`` interval of a binomial proportion ``k / n``.

    ``lo = Beta.ppf(alpha/2; k, n-k+1)`` (0 when ``k = 0``) and
    ``hi = Beta.ppf(1 - alpha/2; k+1, n-k)`` (1 when ``k = n``) (Clopper & Pearson 1934).
    The interval covers the true proportion with probability at least ``1 - alpha``.

    Parameters
    ----------
    k : int
        Successes, ``0 <= k <= n``.
    n : int
        Trials, ``n >= 1``.
    alpha : float
        In (0, 1).

    Returns
    -------
    (lo, hi) : tuple of float

    Examples
    --------
    >>> lo, hi = clopper_pearson(5, 10)            # 5 successes in 10 trials, 95 % interval
    >>> round(lo, 4), round(hi, 4)
    (0.1871, 0.8129)
    >>> clopper_pearson(0, 10)[0]                  # no success: the lower bound is 0
    0.0
    """
    k = _check_count(k, "k")
    n = _check_count(n, "n")
    if n < 1:
        raise ValidationError("n: expected at least 1 trial, got 0")
    if k > n:
        raise ValidationError(f"k: successes ({k}) exceed trials n ({n})")
    alpha = _check_alpha(alpha)
    return float(_cp_lower(k, n, alpha / 2)), float(_cp_upper(k, n, alpha / 2))


# --------------------------------------------------------------------------- TPR at FPR
@dataclass(frozen=True)
class TprAtFpr:
    """True-positive rate at a target false-positive rate, with its resolution and intervals.

    Attributes
    ----------
    target_fpr : float
        The FPR asked for.
    tpr : float
        The largest TPR over thresholds whose FPR ``<=`` ``target_fpr``: ``tp / n_members``.
    fpr : float
        The FPR actually achieved at that threshold, ``fp / n_non_members`` (``<= target_fpr``).
    threshold : float
        The threshold chosen (a score; ``+inf`` when no record is predicted member).
    tp, fn, fp, tn : int
        Confusion counts at ``threshold``.
    reachable : bool
        ``target_fpr >= min_reachable_fpr``. When False the target lies below the resolution of
        the evaluation set: the only admissible thresholds have FPR 0, and ``tpr`` is the TPR
        at FPR 0. (When True a nonzero FPR ``<= target_fpr`` exists as a multiple of
        ``1 / n_non_members``, though tied scores can still keep the achieved ``fpr`` lower.)
    min_reachable_fpr : float
        ``1 / n_non_members``, the smallest nonzero FPR the evaluation set can measure.
    tpr_interval, fpr_interval : tuple of float
        Two-sided Clopper–Pearson ``1 - alpha`` intervals of the TPR (``tp`` of ``n_members``)
        and of the FPR (``fp`` of ``n_non_members``) at the chosen threshold. They do not
        account for the choice of the threshold on the same data.
    alpha : float
        Significance level of the intervals.
    """

    target_fpr: float
    tpr: float
    fpr: float
    threshold: float
    tp: int
    fn: int
    fp: int
    tn: int
    reachable: bool
    min_reachable_fpr: float
    tpr_interval: tuple[float, float]
    fpr_interval: tuple[float, float]
    alpha: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (non-finite floats as the strings ``"inf"``, ``"-inf"``)."""
        return {
            "target_fpr": json_float(self.target_fpr),
            "tpr": json_float(self.tpr),
            "fpr": json_float(self.fpr),
            "threshold": json_float(self.threshold),
            "tp": self.tp,
            "fn": self.fn,
            "fp": self.fp,
            "tn": self.tn,
            "reachable": self.reachable,
            "min_reachable_fpr": json_float(self.min_reachable_fpr),
            "tpr_interval": [json_float(v) for v in self.tpr_interval],
            "fpr_interval": [json_float(v) for v in self.fpr_interval],
            "alpha": json_float(self.alpha),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TprAtFpr:
        """Inverse of :meth:`to_dict`."""
        return cls(
            target_fpr=parse_float(d["target_fpr"]),
            tpr=parse_float(d["tpr"]),
            fpr=parse_float(d["fpr"]),
            threshold=parse_float(d["threshold"]),
            tp=int(d["tp"]),
            fn=int(d["fn"]),
            fp=int(d["fp"]),
            tn=int(d["tn"]),
            reachable=bool(d["reachable"]),
            min_reachable_fpr=parse_float(d["min_reachable_fpr"]),
            tpr_interval=_parse_pair(d["tpr_interval"]),
            fpr_interval=_parse_pair(d["fpr_interval"]),
            alpha=parse_float(d["alpha"]),
        )


def _tpr_at_fpr(c: _RocCounts, target: float, alpha: float) -> TprAtFpr:
    # fpr is non-decreasing and starts at 0: the last index with fpr <= target has the max TPR
    i = int(np.searchsorted(c.fpr, target, side="right")) - 1
    tp, fp = int(c.tps[i]), int(c.fps[i])
    p, n = c.n_members, c.n_non_members
    min_fpr = 1.0 / n
    return TprAtFpr(
        target_fpr=float(target),
        tpr=tp / p,
        fpr=fp / n,
        threshold=float(c.thresholds[i]),
        tp=tp,
        fn=p - tp,
        fp=fp,
        tn=n - fp,
        reachable=bool(target >= min_fpr),
        min_reachable_fpr=min_fpr,
        tpr_interval=(float(_cp_lower(tp, p, alpha / 2)), float(_cp_upper(tp, p, alpha / 2))),
        fpr_interval=(float(_cp_lower(fp, n, alpha / 2)), float(_cp_upper(fp, n, alpha / 2))),
        alpha=alpha,
    )


def tpr_at_fpr(
    scores: ArrayLike, is_member: ArrayLike, fpr: float, *, alpha: float = DEFAULT_ALPHA
) -> TprAtFpr:
    """The largest TPR among thresholds whose FPR is ``<= fpr`` (Carlini et al. 2022).

    The comparison is ``<=``: with 1,000 non-members, ``fpr=0.001`` admits the threshold with
    exactly one false positive. When ``fpr < 1 / n_non_members`` only thresholds with no false
    positive are admissible; the result then holds the TPR at FPR 0 and says
    ``reachable=False``.

    Parameters
    ----------
    scores, is_member : array-like of shape (n,)
        See :func:`roc_curve`.
    fpr : float
        Target false-positive rate in (0, 1).
    alpha : float
        Significance level of the Clopper–Pearson intervals, in (0, 1).

    Returns
    -------
    TprAtFpr

    Examples
    --------
    >>> r = tpr_at_fpr([0.9, 0.8, 0.35, 0.3, 0.1], [True, True, False, True, False], 0.5)
    >>> r.tpr, r.fpr, r.threshold                  # all members found at one false positive
    (1.0, 0.5, 0.3)
    >>> tpr_at_fpr([0.9, 0.8, 0.35, 0.3, 0.1], [True, True, False, True, False], 0.01).reachable
    False
    """
    s, m, _ = _prepare(scores, is_member)
    return _tpr_at_fpr(_roc_counts(s, m), check_probability(fpr, "fpr"), _check_alpha(alpha))


# --------------------------------------------------------------------------- AUC interval
def _resampled_aucs(
    pos: NDArray[np.float64],
    neg_sorted: NDArray[np.float64],
    member_counts: NDArray[np.int64],
    non_member_counts: NDArray[np.int64],
) -> NDArray[np.float64]:
    """AUC of resamples given by multiplicities (internal, exact with ties).

    ``member_counts[b, i]`` / ``non_member_counts[b, j]``: how many times member ``i`` /
    (sorted) non-member ``j`` is drawn in resample ``b``. Shapes (B, P), (B, N); each row sums
    to P resp. N. A member's Mann–Whitney contribution is the number of drawn non-members below
    it plus half of those tied with it, read from the cumulative non-member counts.
    """
    b = member_counts.shape[0]
    p, n = pos.size, neg_sorted.size
    below = np.searchsorted(neg_sorted, pos, side="left")
    below_or_tied = np.searchsorted(neg_sorted, pos, side="right")
    cum = np.zeros((b, n + 1), dtype=np.int64)
    np.cumsum(non_member_counts, axis=1, out=cum[:, 1:])
    # 2 × (wins + ties / 2) of each member, shape (B, P); np.take is much faster than cum[:, i]
    wins2 = np.take(cum, below, axis=1) + np.take(cum, below_or_tied, axis=1)
    return np.einsum("bp,bp->b", member_counts, wins2).astype(np.float64) / (2.0 * p * n)


def _draw_counts(rng: np.random.Generator, b: int, k: int) -> NDArray[np.int64]:
    """Multiplicities of ``b`` bootstrap resamples (with replacement) of ``k`` items: (b, k)."""
    draws = rng.integers(0, k, size=(b, k)) + (np.arange(b) * k)[:, None]
    return np.bincount(draws.ravel(), minlength=b * k).reshape(b, k)


def _auc_interval(
    s: NDArray[np.float64],
    m: NDArray[np.bool_],
    n_bootstrap: int,
    alpha: float,
    rng: np.random.Generator,
) -> tuple[float, float]:
    pos, neg = np.sort(s[m]), np.sort(s[~m])  # sorted: the gathers below read memory in order
    if min(pos.size, neg.size) < MIN_BOOTSTRAP_CLASS:
        warnings.warn(
            f"AUC interval from {pos.size} member(s) and {neg.size} non-member(s): with fewer "
            f"than {MIN_BOOTSTRAP_CLASS} of either the bootstrap understates the uncertainty",
            SmallSampleWarning,
            stacklevel=3,
        )
    chunk = max(1, _BOOTSTRAP_CHUNK_CELLS // (pos.size + neg.size + 1))
    aucs = []
    for start in range(0, n_bootstrap, chunk):
        b = min(chunk, n_bootstrap - start)
        aucs.append(
            _resampled_aucs(
                pos, neg, _draw_counts(rng, b, pos.size), _draw_counts(rng, b, neg.size)
            )
        )
    lo, hi = np.quantile(np.concatenate(aucs), [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def _check_n_bootstrap(n_bootstrap: int) -> int:
    b = _check_count(n_bootstrap, "n_bootstrap")
    if b < 1:
        raise ValidationError(f"n_bootstrap: expected at least 1 resample, got {n_bootstrap!r}")
    return b


def auc_interval(
    scores: ArrayLike,
    is_member: ArrayLike,
    *,
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
    alpha: float = DEFAULT_ALPHA,
    rng: SeedLike = 0,
) -> tuple[float, float]:
    """Stratified bootstrap percentile ``1 - alpha`` interval of the :func:`auc`.

    Each resample draws ``P`` members from the members and ``N`` non-members from the
    non-members, with replacement, and computes the exact AUC (ties count one half). The
    interval is the ``alpha/2`` and ``1 - alpha/2`` quantiles (``numpy.quantile``, linear) of
    the ``n_bootstrap`` resampled AUCs. With fewer than :data:`MIN_BOOTSTRAP_CLASS` records of
    either class it warns (:class:`~miaudit.exceptions.SmallSampleWarning`): the interval is then
    too narrow.

    Parameters
    ----------
    scores, is_member : array-like of shape (n,)
        See :func:`roc_curve`.
    n_bootstrap : int
        Number of resamples (>= 1).
    alpha : float
        In (0, 1).
    rng : int or numpy.random.Generator
        Seed or generator; the same seed gives the same interval.

    Returns
    -------
    (lo, hi) : tuple of float
    """
    s, m, _ = _prepare(scores, is_member)
    return _auc_interval(
        s, m, _check_n_bootstrap(n_bootstrap), _check_alpha(alpha), as_generator(rng, "rng")
    )


# ------------------------------------------------------------------- epsilon lower bound
def _epsilon_from_counts(
    tp: ArrayLike, fn: ArrayLike, fp: ArrayLike, tn: ArrayLike, delta: float, alpha: float
) -> NDArray[np.float64]:
    """Vectorised :func:`epsilon_lower_bound` (counts already validated)."""
    tp, fn, fp, tn = (np.asarray(x, dtype=np.float64) for x in (tp, fn, fp, tn))
    level = alpha / 2
    tpr_lo = _cp_lower(tp, tp + fn, level)
    fpr_hi = _cp_upper(fp, fp + tn, level)
    tnr_lo = _cp_lower(tn, tn + fp, level)
    fnr_hi = _cp_upper(fn, fn + tp, level)
    # Clopper–Pearson upper bounds are > 0 for every count, so the ratios are finite.
    eps = np.zeros(np.broadcast(tp, fn, fp, tn).shape)
    for num, den in ((tpr_lo - delta, fpr_hi), (tnr_lo - delta, fnr_hi)):
        positive = num > 0
        ratio = np.where(positive, num, den) / den  # 1 (log 0) where the test shows nothing
        eps = np.maximum(eps, np.log(ratio))
    return eps


def epsilon_lower_bound(
    tp: int,
    fn: int,
    fp: int,
    tn: int,
    delta: float = 0.0,
    alpha: float = DEFAULT_ALPHA,
) -> float:
    r"""Empirical lower bound on the DP epsilon from one membership test's confusion counts.

    If a mechanism is :math:`(\varepsilon, \delta)`-DP, every test distinguishing "member"
    from "non-member" satisfies :math:`\mathrm{TPR} \le e^\varepsilon \mathrm{FPR} + \delta`
    and :math:`\mathrm{TNR} \le e^\varepsilon \mathrm{FNR} + \delta` (Kairouz et al. 2015).
    Replacing the rates by one-sided Clopper–Pearson bounds, each at level ``alpha / 2``,

    .. math::
        \varepsilon \ge \max\left\{0,\;
        \ln\frac{\mathrm{TPR}_{lo} - \delta}{\mathrm{FPR}_{hi}},\;
        \ln\frac{\mathrm{TNR}_{lo} - \delta}{\mathrm{FNR}_{hi}}\right\}

    holds with probability at least ``1 - alpha`` (Jagielski, Ullman & Oprea, NeurIPS 2020),
    where ``TPR_lo = Beta.ppf(alpha/2; tp, fn+1)``,
    ``FPR_hi = Beta.ppf(1 - alpha/2; fp+1, tn)`` (1 when ``tn = 0``), and likewise
    ``TNR_lo`` from ``(tn, fp)`` and ``FNR_hi`` from ``(fn, tp)``. A term whose numerator is
    not positive shows nothing and is dropped; the result is never negative.

    The counts must come from trials that are independent of how the test was chosen (for
    example a threshold fixed before seeing them); see :func:`epsilon_lower_bound_from_scores`.
    Because a Clopper–Pearson upper bound is always positive, the bound is always finite: even
    a perfect test on ``k`` trials per side gives about ``ln(k / ln(2/alpha))``.

    Parameters
    ----------
    tp, fn : int
        Members predicted member / non-member (at least one member in total).
    fp, tn : int
        Non-members predicted member / non-member (at least one non-member in total).
    delta : float
        The delta of the DP guarantee, in [0, 1).
    alpha : float
        The bound holds with probability ``>= 1 - alpha``; in (0, 1).

    Returns
    -------
    float
        The lower bound on epsilon, ``>= 0``.
    """
    tp, fn, fp, tn = (
        _check_count(v, k) for v, k in ((tp, "tp"), (fn, "fn"), (fp, "fp"), (tn, "tn"))
    )
    if tp + fn == 0:
        raise ValidationError("tp, fn: there are no members (tp + fn = 0)")
    if fp + tn == 0:
        raise ValidationError("fp, tn: there are no non-members (fp + tn = 0)")
    return float(_epsilon_from_counts(tp, fn, fp, tn, _check_delta(delta), _check_alpha(alpha)))


@dataclass(frozen=True)
class EpsilonBound:
    """An epsilon lower bound and the membership test it comes from.

    Attributes
    ----------
    epsilon : float
        The bound of :func:`epsilon_lower_bound` (``>= 0``).
    threshold : float
        The test: "member" iff ``score >= threshold``.
    tp, fn, fp, tn : int
        Confusion counts of the test on the records the bound is computed on.
    delta, alpha : float
        Parameters of the bound.
    selection : {"given", "best_on_same_data", "split"}
        How the threshold was chosen: given by the caller (a valid bound); the best over all
        thresholds of the same records (optimistic: the bound is then the maximum over many
        tests and holds with less than ``1 - alpha`` confidence); or chosen on a calibration
        split and evaluated on the remaining records (valid).
    """

    epsilon: float
    threshold: float
    tp: int
    fn: int
    fp: int
    tn: int
    delta: float
    alpha: float
    selection: EpsilonSelection

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (non-finite floats as the strings ``"inf"``, ``"-inf"``)."""
        return {
            "epsilon": json_float(self.epsilon),
            "threshold": json_float(self.threshold),
            "tp": self.tp,
            "fn": self.fn,
            "fp": self.fp,
            "tn": self.tn,
            "delta": json_float(self.delta),
            "alpha": json_float(self.alpha),
            "selection": self.selection,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EpsilonBound:
        """Inverse of :meth:`to_dict`."""
        return cls(
            epsilon=parse_float(d["epsilon"]),
            threshold=parse_float(d["threshold"]),
            tp=int(d["tp"]),
            fn=int(d["fn"]),
            fp=int(d["fp"]),
            tn=int(d["tn"]),
            delta=parse_float(d["delta"]),
            alpha=parse_float(d["alpha"]),
            selection=d["selection"],
        )


def _best_bound(c: _RocCounts, delta: float, alpha: float) -> EpsilonBound:
    """The threshold of ``c`` with the largest bound (``selection="best_on_same_data"``)."""
    eps = _epsilon_from_counts(
        c.tps, c.n_members - c.tps, c.fps, c.n_non_members - c.fps, delta, alpha
    )
    i = int(np.argmax(eps))
    tp, fp = int(c.tps[i]), int(c.fps[i])
    return EpsilonBound(
        epsilon=float(eps[i]),
        threshold=float(c.thresholds[i]),
        tp=tp,
        fn=c.n_members - tp,
        fp=fp,
        tn=c.n_non_members - fp,
        delta=delta,
        alpha=alpha,
        selection="best_on_same_data",
    )


def confusion_at(
    scores: NDArray[np.float64], is_member: NDArray[np.bool_], threshold: float
) -> tuple[int, int, int, int]:
    """``(tp, fn, fp, tn)`` of the test "member iff ``score >= threshold``".

    >>> confusion_at(np.array([0.9, 0.4, 0.6, 0.1]), np.array([True, True, False, False]), 0.5)
    (1, 1, 1, 1)
    """
    predicted = scores >= threshold
    tp, fp = int(np.sum(predicted & is_member)), int(np.sum(predicted & ~is_member))
    return tp, int(is_member.sum()) - tp, fp, int((~is_member).sum()) - fp


def _bound_at(
    s: NDArray[np.float64],
    m: NDArray[np.bool_],
    threshold: float,
    delta: float,
    alpha: float,
    selection: EpsilonSelection,
) -> EpsilonBound:
    tp, fn, fp, tn = confusion_at(s, m, threshold)
    eps = float(_epsilon_from_counts(tp, fn, fp, tn, delta, alpha))
    return EpsilonBound(eps, float(threshold), tp, fn, fp, tn, delta, alpha, selection)


def _stratified_split(
    m: NDArray[np.bool_], fraction: float, rng: np.random.Generator
) -> NDArray[np.bool_]:
    """Boolean mask of a calibration split: ``round(fraction * k)`` of each class (at least
    one, and at least one left over)."""
    calib = np.zeros(m.size, dtype=bool)
    for cls in (True, False):
        idx = np.flatnonzero(m == cls)
        if idx.size < 2:
            name = "members" if cls else "non-members"
            raise ValidationError(
                f"calibration_fraction: need at least 2 {name} to split, got {idx.size}"
            )
        k = min(max(1, round(fraction * idx.size)), idx.size - 1)
        calib[rng.choice(idx, size=k, replace=False)] = True
    return calib


#: Fraction of each class that picks the threshold of a split epsilon bound.
SPLIT_CALIBRATION_FRACTION = 0.5


def _split_bound(
    s: NDArray[np.float64], m: NDArray[np.bool_], delta: float, alpha: float,
    rng: np.random.Generator,
) -> EpsilonBound:
    """The bound of the threshold chosen on a stratified half, computed on the other half;
    0 (no evidence) when a class has fewer than 2 records to split."""
    n_in, n_out = int(m.sum()), int((~m).sum())
    if min(n_in, n_out) < 2:
        return EpsilonBound(0.0, math.nan, 0, n_in, 0, n_out, delta, alpha, "split")
    calib = _stratified_split(m, SPLIT_CALIBRATION_FRACTION, rng)
    best = _best_bound(_roc_counts(s[calib], m[calib]), delta, alpha)
    return _bound_at(s[~calib], m[~calib], best.threshold, delta, alpha, "split")


def epsilon_lower_bound_from_scores(
    scores: ArrayLike,
    is_member: ArrayLike,
    *,
    delta: float = 0.0,
    alpha: float = DEFAULT_ALPHA,
    threshold: float | None = None,
    calibration_fraction: float | None = None,
    rng: SeedLike = 0,
) -> EpsilonBound:
    """Epsilon lower bound of the threshold test "member iff ``score >= threshold``".

    Three ways to choose the threshold:

    * ``threshold`` given: the bound of that test on all records — valid at ``1 - alpha`` when
      the threshold was fixed without looking at these records.
    * ``calibration_fraction`` given: a stratified random ``calibration_fraction`` of the
      members and of the non-members picks the threshold with the largest bound; the bound is
      then computed on the other records only — valid (Jagielski et al. 2020 choose the
      threshold on a separate set of trials).
    * neither (default): the largest bound over every threshold of :func:`roc_curve`, on the
      same records. **Optimistic**: the maximum of many bounds, each valid at ``1 - alpha``,
      holds with less confidence than ``1 - alpha``. Useful to compare attacks, not as a claim.

    Parameters
    ----------
    scores, is_member : array-like of shape (n,)
        See :func:`roc_curve`.
    delta : float
        In [0, 1).
    alpha : float
        In (0, 1).
    threshold : float, optional
        A fixed threshold.
    calibration_fraction : float, optional
        In (0, 1); fraction of each class used to pick the threshold.
    rng : int or numpy.random.Generator
        Seed or generator of the calibration split.

    Returns
    -------
    EpsilonBound
    """
    s, m, _ = _prepare(scores, is_member)
    delta, alpha = _check_delta(delta), _check_alpha(alpha)
    if threshold is not None and calibration_fraction is not None:
        raise ValidationError(
            "threshold, calibration_fraction: give at most one (a fixed threshold, or a split "
            "to choose it on)"
        )
    if threshold is not None:
        t = float(threshold)
        if math.isnan(t):
            raise ValidationError("threshold: expected a number, got NaN")
        return _bound_at(s, m, t, delta, alpha, "given")
    if calibration_fraction is not None:
        fraction = check_probability(calibration_fraction, "calibration_fraction")
        calib = _stratified_split(m, fraction, as_generator(rng, "rng"))
        best = _best_bound(_roc_counts(s[calib], m[calib]), delta, alpha)
        return _bound_at(s[~calib], m[~calib], best.threshold, delta, alpha, "split")
    return _best_bound(_roc_counts(s, m), delta, alpha)


# ------------------------------------------------------------------------------ summary
@dataclass(frozen=True)
class MetricsSummary:
    """Every metric of one attack's scores (see :func:`summarize`).

    Attributes
    ----------
    n_members, n_non_members : int
        Records of each class (NaN scores included).
    n_nan : int
        Records whose score is NaN; they are treated as the lowest score (module docstring).
    auc : float
        :func:`auc`.
    auc_interval : tuple of float
        :func:`auc_interval` (stratified bootstrap percentile interval).
    balanced_accuracy, advantage : float
        :func:`balanced_accuracy`, :func:`advantage`.
    tpr_at_fpr : tuple of TprAtFpr
        One per target FPR, in the order asked.
    epsilon : EpsilonBound
        The largest epsilon lower bound over all thresholds, chosen on the same records
        (``selection="best_on_same_data"``: optimistic, see
        :func:`epsilon_lower_bound_from_scores`).
    alpha : float
        Significance level of every interval and of the epsilon bound.
    n_bootstrap : int
        Resamples of the AUC interval.
    """

    n_members: int
    n_non_members: int
    n_nan: int
    auc: float
    auc_interval: tuple[float, float]
    balanced_accuracy: float
    advantage: float
    tpr_at_fpr: tuple[TprAtFpr, ...]
    epsilon: EpsilonBound
    alpha: float
    n_bootstrap: int

    def find(self, fpr: float) -> TprAtFpr | None:
        """The :class:`TprAtFpr` whose ``target_fpr`` equals ``fpr``, or None."""
        return next((r for r in self.tpr_at_fpr if r.target_fpr == fpr), None)

    def at(self, fpr: float) -> TprAtFpr:
        """The :class:`TprAtFpr` whose ``target_fpr`` equals ``fpr``; an error if none."""
        r = self.find(fpr)
        if r is not None:
            return r
        have = ", ".join(f"{r.target_fpr:g}" for r in self.tpr_at_fpr) or "none"
        raise ValidationError(f"fpr: no result at target FPR {fpr:g}; computed at {have}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict: Python ints, floats, bools, strings and lists only.

        Non-finite floats (only thresholds can be: ``+inf`` when no record is predicted
        member, ``-inf`` for NaN/``-inf`` scores) are written as the strings ``"inf"`` and
        ``"-inf"``, so the output is strict JSON; :meth:`from_dict` reads them back.
        """
        return {
            "n_members": self.n_members,
            "n_non_members": self.n_non_members,
            "n_nan": self.n_nan,
            "auc": json_float(self.auc),
            "auc_interval": [json_float(v) for v in self.auc_interval],
            "balanced_accuracy": json_float(self.balanced_accuracy),
            "advantage": json_float(self.advantage),
            "tpr_at_fpr": [r.to_dict() for r in self.tpr_at_fpr],
            "epsilon": self.epsilon.to_dict(),
            "alpha": json_float(self.alpha),
            "n_bootstrap": self.n_bootstrap,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MetricsSummary:
        """Inverse of :meth:`to_dict` (extra keys, e.g. an input file name, are ignored)."""
        return cls(
            n_members=int(d["n_members"]),
            n_non_members=int(d["n_non_members"]),
            n_nan=int(d["n_nan"]),
            auc=parse_float(d["auc"]),
            auc_interval=_parse_pair(d["auc_interval"]),
            balanced_accuracy=parse_float(d["balanced_accuracy"]),
            advantage=parse_float(d["advantage"]),
            tpr_at_fpr=tuple(TprAtFpr.from_dict(r) for r in d["tpr_at_fpr"]),
            epsilon=EpsilonBound.from_dict(d["epsilon"]),
            alpha=parse_float(d["alpha"]),
            n_bootstrap=int(d["n_bootstrap"]),
        )


def summarize(
    scores: ArrayLike,
    is_member: ArrayLike,
    fprs: Sequence[float] = DEFAULT_FPRS,
    *,
    alpha: float = DEFAULT_ALPHA,
    delta: float = DEFAULT_DELTA,
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
    rng: SeedLike = 0,
    epsilon_selection: Literal["split", "best_on_same_data"] = "split",
) -> MetricsSummary:
    """All metrics of one set of scores, computed from one exact ROC curve.

    Parameters
    ----------
    scores, is_member : array-like of shape (n,)
        See :func:`roc_curve`. NaN scores count as the lowest score and are counted in
        ``n_nan``.
    fprs : sequence of float
        Target FPRs for :func:`tpr_at_fpr`, each in (0, 1).
    alpha : float
        Significance level of the intervals and of the epsilon bound.
    delta : float
        Delta of the epsilon lower bound.
    n_bootstrap : int
        Resamples of the AUC interval.
    rng : int or numpy.random.Generator
        Seed or generator of the bootstrap, then of the epsilon bound's calibration split.
    epsilon_selection : {"split", "best_on_same_data"}
        How the epsilon bound's threshold is chosen (:func:`epsilon_lower_bound_from_scores`):
        ``"split"`` (default, a valid bound): on a stratified half of the records, the bound
        computed on the other half (0 when a class has fewer than 2 records to split);
        ``"best_on_same_data"``: the best bound over every threshold of the same records —
        optimistic, for comparing attacks, never as a claim.

    Returns
    -------
    MetricsSummary

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> member = np.arange(2000) < 1000
    >>> scores = rng.normal(size=2000) + member                 # members score 1 higher
    >>> s = summarize(scores, member, fprs=[0.01], n_bootstrap=200)
    >>> round(s.auc, 2), s.n_members, s.n_non_members
    (0.75, 1000, 1000)
    >>> 0.0 < s.at(0.01).tpr < 0.2
    True
    """
    s, m, n_nan = _prepare(scores, is_member)
    targets = [
        check_probability(f, f"fprs[{i}]") for i, f in enumerate(np.atleast_1d(fprs).tolist())
    ]
    alpha, delta = _check_alpha(alpha), _check_delta(delta)
    n_bootstrap = _check_n_bootstrap(n_bootstrap)
    if epsilon_selection not in ("split", "best_on_same_data"):
        raise ValidationError(
            f"epsilon_selection: expected 'split' or 'best_on_same_data', got "
            f"{epsilon_selection!r}"
        )
    c = _roc_counts(s, m)
    adv = _advantage(c)
    gen = as_generator(rng, "rng")
    auc_interval = _auc_interval(s, m, n_bootstrap, alpha, gen)
    if epsilon_selection == "split":
        epsilon = _split_bound(s, m, delta, alpha, gen)
    else:
        epsilon = _best_bound(c, delta, alpha)
    return MetricsSummary(
        n_members=c.n_members,
        n_non_members=c.n_non_members,
        n_nan=n_nan,
        auc=_auc(c),
        auc_interval=auc_interval,
        balanced_accuracy=0.5 * (1.0 + adv),
        advantage=adv,
        tpr_at_fpr=tuple(_tpr_at_fpr(c, t, alpha) for t in targets),
        epsilon=epsilon,
        alpha=alpha,
        n_bootstrap=n_bootstrap,
    )


# ------------------------------------------------------------------------- JSON helpers
def _parse_pair(x: Sequence[float | str]) -> tuple[float, float]:
    lo, hi = x
    return parse_float(lo), parse_float(hi)
