r"""Robust membership inference attack (RMIA) of Zarifzadeh, Liu & Shokri, "Low-Cost
High-Power Membership Inference Attacks", ICML 2024 (arXiv:2312.03262).

The signal is the true-class probability :math:`p(x) = \Pr(y \mid x, \theta)`. With ``m``
reference models :math:`\theta_i`:

* online, :math:`\Pr(x) = \frac1m \sum_i p_{\theta_i}(x)` over all references (IN and OUT);
* offline, :math:`\Pr(x) = \frac{1+a}{2}\,\overline{p}_{out}(x) + \frac{1-a}{2}`, the paper's
  linear approximation of the IN/OUT mixture from the mean :math:`\overline{p}_{out}` over the OUT
  references of :math:`x`.

For population records :math:`z`, which no model trained on, every reference is OUT:
:math:`\overline{p}_{out}(z)` is the mean over *all* references (offline formula offline, plain
mean online). ML Privacy Meter instead averages the *largest* half of the reference signals, an
upward bias not copied here.

With likelihood ratios :math:`r(x) = p_\theta(x) / \Pr(x)` and :math:`r(z) = p_\theta(z) /
\Pr(z)` on the target model :math:`\theta`, the score is the fraction of population records
dominated by a factor :math:`\gamma`:

.. math:: \mathrm{Score}(x) = \frac{1}{|Z|}\sum_{z \in Z} 1\!\left[\frac{r(x)}{r(z)} > \gamma
   \right] = \frac{\#\{z : r(z) < r(x)/\gamma\}}{|Z|}.

The right-hand form is computed with one sort of :math:`r(z)` and a binary search per record:
:math:`O((n + z)\log z)` time and :math:`O(n + z)` memory, never an :math:`n \times z` matrix.
For ``q`` queries the default (``vote="mean"``) averages the per-query fractions;
``vote="majority"`` counts a pair :math:`(x, z)` when more than half of the queries dominate
(strict majority, as the paper's code votes over augmentations), in blocks of at most
:data:`MAJORITY_BLOCK_PAIRS` pairs.

**Tie-breaking** (``tie_break=True``, the default): the score takes at most :math:`|Z| + 1`
values per query, so records tie in groups (in the demo, ~6 distinct values with 180
population records: a staircase ROC). The record's own log likelihood ratio
:math:`\frac1q\sum_k \log r_k(x)` orders records within a tie, squeezed into an interval of
width :math:`10^{-9}` by :func:`~miaudit.attacks.calibrated.break_ties`; the fraction above
stays the primary key (scores of different fractions keep their order), and ``tie_break=False``
gives the paper's score exactly.

Denominators :math:`\Pr(\cdot)` are floored at the smallest positive float64, so a probability of
exactly 0 under every reference gives a ratio of 0 (or a very large one), never NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from miaudit._validation import check_count, check_keep, check_positive, check_probability
from miaudit.attacks import register
from miaudit.attacks._reference_stats import (
    as_queries,
    check_reference_signals,
    masked_mean,
    masked_sum,
    require_references,
)
from miaudit.attacks.base import Attack, AttackData, AttackInfo
from miaudit.attacks.calibrated import TIE_BREAK_DEFAULT, break_ties
from miaudit.exceptions import MissingRequirementError, ValidationError
from miaudit.metrics import auc
from miaudit.registry import Registry

__all__ = [
    "DEFAULT_A",
    "DEFAULT_A_GRID",
    "DEFAULT_GAMMA",
    "MAJORITY_BLOCK_PAIRS",
    "MAX_TUNING_TARGETS",
    "VOTES",
    "RmiaAttack",
    "RmiaOfflineAttack",
    "rmia_scores",
    "tune_rmia_a",
]

#: Default :math:`\gamma` (the paper's experiments; ML Privacy Meter ships 1).
DEFAULT_GAMMA = 2.0
#: Default offline :math:`a` (the paper's value for CIFAR-10; 0.6 for CIFAR-100, 0.2 Purchase).
DEFAULT_A = 0.3
#: Grid searched by :func:`tune_rmia_a` (as ML Privacy Meter: 0, 0.1, ..., 1).
DEFAULT_A_GRID = tuple(np.round(np.linspace(0.0, 1.0, 11), 10))
#: Largest number of (record, population record) pairs the majority vote holds at once.
MAJORITY_BLOCK_PAIRS = 2**22
#: :func:`tune_rmia_a` lets at most this many reference models play the target in turn.
MAX_TUNING_TARGETS = 8

SIGNAL = "confidence"
PAPER = "Zarifzadeh, Liu, Shokri. Low-Cost High-Power Membership Inference Attacks. ICML 2024"
_TINY = np.finfo(np.float64).tiny


def _check_probabilities(x: NDArray[np.float64], name: str) -> None:
    if x.size and (x.min() < 0.0 or x.max() > 1.0):
        raise ValidationError(
            f"{name}: RMIA needs probabilities in [0, 1] (the true-class confidence); found "
            f"values in [{x.min():.4g}, {x.max():.4g}]"
        )


def _offline_marginal(p_out: NDArray[np.float64], a: float) -> NDArray[np.float64]:
    r""":math:`\frac{1+a}{2}\,\overline{p}_{out} + \frac{1-a}{2}`."""
    return (1.0 + a) / 2.0 * p_out + (1.0 - a) / 2.0


def _ratio(p: NDArray[np.float64], marginal: NDArray[np.float64]) -> NDArray[np.float64]:
    return p / np.maximum(marginal, _TINY)


def _vote_mean(rx: NDArray[np.float64], rz: NDArray[np.float64], gamma: float) -> NDArray:
    """Mean over queries of the fraction of z with r(z) < r(x)/gamma, by sorting."""
    score = np.zeros(rx.shape[0])
    for k in range(rx.shape[1]):
        score += np.searchsorted(np.sort(rz[:, k]), rx[:, k] / gamma, side="left")
    return score / (rz.shape[0] * rx.shape[1])


def _vote_majority(rx: NDArray[np.float64], rz: NDArray[np.float64], gamma: float) -> NDArray:
    """Fraction of z for which more than half of the queries have r(z) < r(x)/gamma."""
    n, q = rx.shape
    z = rz.shape[0]
    thresholds = rx / gamma
    block = max(1, MAJORITY_BLOCK_PAIRS // max(z, 1))
    score = np.empty(n)
    for start in range(0, n, block):
        stop = min(start + block, n)
        wins = np.zeros((stop - start, z), dtype=np.int32)
        for k in range(q):
            wins += rz[None, :, k] < thresholds[start:stop, k, None]
        score[start:stop] = np.count_nonzero(2 * wins > q, axis=1) / z
    return score


#: How per-query comparisons are combined, by name.
VOTES: Registry[Callable[[NDArray, NDArray, float], NDArray]] = Registry("RMIA vote")
VOTES.register("mean")(_vote_mean)
VOTES.register("majority")(_vote_majority)


def _check_population_reference(
    population_reference: ArrayLike, m: int, q: int
) -> NDArray[np.float64]:
    pr = as_queries(population_reference, "population_reference", 2)
    if pr.shape[0] != m or pr.shape[2] != q:
        raise ValidationError(
            f"population_reference: expected shape ({m}, z, {q}) (references, population "
            f"records, queries), got {pr.shape}"
        )
    if pr.shape[1] == 0:
        raise MissingRequirementError(
            "population_reference: needs at least one population record, got 0"
        )
    _check_probabilities(pr, "population_reference")
    return pr


def _check_population(
    population_target: ArrayLike, population_reference: ArrayLike, m: int, q: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    pr = _check_population_reference(population_reference, m, q)
    pt = as_queries(population_target, "population_target", 1)
    if pt.shape != pr.shape[1:]:
        raise ValidationError(
            f"population_target: expected shape {pr.shape[1:]} (population records, queries) "
            f"to match population_reference, got {pt.shape}"
        )
    _check_probabilities(pt, "population_target")
    return pt, pr


def rmia_scores(
    target: ArrayLike,
    reference: ArrayLike,
    keep: ArrayLike,
    population_target: ArrayLike,
    population_reference: ArrayLike,
    *,
    online: bool = True,
    gamma: float = DEFAULT_GAMMA,
    a: float = DEFAULT_A,
    vote: str = "mean",
    tie_break: bool = TIE_BREAK_DEFAULT,
) -> NDArray[np.float64]:
    r"""RMIA scores (Zarifzadeh, Liu & Shokri, ICML 2024), higher = member.

    Parameters
    ----------
    target : array-like of shape (n, q) or (n,)
        True-class probability of the audited model on ``n`` records, ``q`` queries each.
    reference : array-like of shape (m, n, q) or (m, n)
        The same for ``m`` reference models.
    keep : array-like of shape (m, n), bool
        ``keep[i, j]``: reference ``i`` trained on record ``j`` (used offline).
    population_target : array-like of shape (z, q) or (z,)
        The audited model's probabilities on ``z`` population records (in no training set).
    population_reference : array-like of shape (m, z, q) or (m, z)
        The reference models' probabilities on the population records.
    online : bool
        Online: :math:`\Pr(x)` is the mean over all references. Offline: the linear
        approximation from the OUT references (every record needs one).
    gamma : float
        Dominance factor :math:`\gamma > 0`.
    a : float
        Offline approximation parameter in [0, 1] (unused online). Tune it on reference models
        only, with :func:`tune_rmia_a`.
    vote : {"mean", "majority"}
        How the ``q`` queries are combined (see the module docstring).
    tie_break : bool
        Order records with the same fraction by their mean log likelihood ratio
        :math:`\log r(x)` (module docstring); ``False`` gives the paper's score exactly.

    Returns
    -------
    ndarray of shape (n,)
        Fraction of population records :math:`z` with :math:`r(x)/r(z) > \gamma`, in [0, 1]
        (plus the tie-breaking key, below :math:`10^{-9}`).

    Examples
    --------
    >>> import numpy as np
    >>> reference = np.array([[0.9, 0.2], [0.8, 0.3], [0.3, 0.9], [0.2, 0.8]])  # Pr(y|x), 4 models
    >>> keep = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=bool)
    >>> population_target = np.array([0.5, 0.4, 0.6])
    >>> population_reference = np.array(
    ...     [[0.5, 0.4, 0.6], [0.45, 0.4, 0.5], [0.5, 0.5, 0.6], [0.5, 0.35, 0.55]])
    >>> rmia_scores(np.array([0.95, 0.25]), reference, keep, population_target,
    ...             population_reference, gamma=1.5, tie_break=False)  # fraction of z dominated
    array([1., 0.])
    """
    tgt, ref, kp = check_reference_signals(target, reference, keep)
    _check_probabilities(tgt, "target")
    _check_probabilities(ref, "reference")
    pt, pr = _check_population(population_target, population_reference, *ref.shape[::2])
    gamma = check_positive(gamma, "gamma")
    a = check_probability(a, "a", open_interval=False)
    combine = VOTES.get(vote)
    if online:
        px, pz = ref.mean(axis=0), pr.mean(axis=0)
    else:
        require_references(kp, "out", "offline RMIA")
        px = _offline_marginal(masked_mean(ref, ~kp)[0], a)
        pz = _offline_marginal(pr.mean(axis=0), a)
    rx = _ratio(tgt, px)
    score = combine(rx, _ratio(pt, pz), gamma)
    if not tie_break:
        return score
    with np.errstate(divide="ignore"):
        return break_ties(score, np.log(rx).mean(axis=1))


def tune_rmia_a(
    reference: ArrayLike,
    keep: ArrayLike,
    population_reference: ArrayLike,
    *,
    gamma: float = DEFAULT_GAMMA,
    grid: Sequence[float] = DEFAULT_A_GRID,
    vote: str = "mean",
    max_targets: int = MAX_TUNING_TARGETS,
) -> float:
    r"""Choose offline RMIA's :math:`a` using reference models only.

    Reference ``i`` (for ``i`` in the first ``min(m, max_targets)``) plays the target in turn:
    its own keep row gives the membership labels, the other ``m - 1`` references are its
    references, and its signals on the population records are the population's target signals.
    Records without an OUT model among the other references are left out for that turn. The
    returned :math:`a` maximises the AUC averaged over the turns (the first on ties). The
    audited target's membership labels are never seen.

    Parameters
    ----------
    reference : array-like of shape (m, n, q) or (m, n)
        Reference models' true-class probabilities; ``m >= 2``.
    keep : array-like of shape (m, n), bool
    population_reference : array-like of shape (m, z, q) or (m, z)
    gamma : float
    grid : sequence of float in [0, 1]
        Candidate values of :math:`a`.
    vote : {"mean", "majority"}
    max_targets : int
        Most reference models that play the target.

    Returns
    -------
    float
        The chosen :math:`a`.
    """
    ref = as_queries(reference, "reference", 2)
    kp = check_keep(keep, shape=ref.shape[:2])
    _check_probabilities(ref, "reference")
    pr = _check_population_reference(population_reference, ref.shape[0], ref.shape[2])
    gamma = check_positive(gamma, "gamma")
    candidates = [check_probability(a, "grid", open_interval=False) for a in grid]
    if not candidates:
        raise ValidationError("grid: needs at least one candidate value of a")
    combine = VOTES.get(vote)
    m = ref.shape[0]
    if m < 2:
        raise MissingRequirementError(
            f"tune_rmia_a: needs at least 2 reference models (one plays the target), got {m}"
        )
    max_targets = check_count(max_targets, "max_targets", 1)
    out_w = (~kp).astype(np.float64)
    out_sum = masked_sum(ref, out_w)
    out_count = out_w.sum(axis=0)
    pop_sum = pr.sum(axis=0)
    total = np.zeros(len(candidates))
    turns = 0
    for i in range(min(m, max_targets)):
        labels = kp[i]
        count = out_count - out_w[i]
        usable = count > 0
        if labels[usable].all() or not labels[usable].any():
            continue
        p_out = (out_sum[usable] - out_w[i, usable, None] * ref[i, usable]) / count[usable, None]
        p_out_z = (pop_sum - pr[i]) / (m - 1)
        for j, a in enumerate(candidates):
            rx = _ratio(ref[i, usable], _offline_marginal(p_out, a))
            rz = _ratio(pr[i], _offline_marginal(p_out_z, a))
            total[j] += auc(combine(rx, rz, gamma), labels[usable])
        turns += 1
    if turns == 0:
        raise MissingRequirementError(
            "tune_rmia_a: no reference model can play the target: each needs records with an "
            "OUT model among the other references and both members and non-members"
        )
    return float(candidates[int(np.argmax(total))])


class _RmiaBase(Attack):
    online: ClassVar[bool]

    def __init__(
        self, gamma: float = DEFAULT_GAMMA, vote: str = "mean", tie_break: bool = TIE_BREAK_DEFAULT
    ) -> None:
        self.gamma = check_positive(gamma, "gamma")
        VOTES.get(vote)
        self.vote = vote
        self.tie_break = bool(tie_break)

    def _a(self, data: AttackData) -> float:
        return DEFAULT_A

    def _score(self, data: AttackData) -> NDArray[np.float64]:
        return rmia_scores(
            data.signal(SIGNAL, "target"),
            data.signal(SIGNAL, "references"),
            np.asarray(data.keep),
            data.signal(SIGNAL, "population_target"),
            data.signal(SIGNAL, "population_references"),
            online=self.online,
            gamma=self.gamma,
            a=self._a(data),
            vote=self.vote,
            tie_break=self.tie_break,
        )


@register("rmia")
class RmiaAttack(_RmiaBase):
    """Online RMIA. Parameters: ``gamma``, ``vote`` ("mean" | "majority"), ``tie_break``."""

    info = AttackInfo(
        name="rmia",
        title="RMIA online: likelihood ratio vs population records, Pr(x) over all references",
        paper=PAPER,
        signals=(SIGNAL,),
        needs_references=True,
        needs_population=True,
    )
    online = True


@register("rmia_offline")
class RmiaOfflineAttack(_RmiaBase):
    """Offline RMIA. Parameters: ``gamma``, ``a`` (a float in [0, 1], or ``"auto"`` to tune it
    with :func:`tune_rmia_a` on the reference models), ``vote``, ``tie_break``."""

    info = AttackInfo(
        name="rmia_offline",
        title="RMIA offline: Pr(x) approximated from OUT references with parameter a",
        paper=PAPER,
        signals=(SIGNAL,),
        needs_references=True,
        needs_out_references=True,
        needs_population=True,
    )
    online = False

    def __init__(
        self,
        gamma: float = DEFAULT_GAMMA,
        a: float | str = DEFAULT_A,
        vote: str = "mean",
        tie_break: bool = TIE_BREAK_DEFAULT,
    ) -> None:
        super().__init__(gamma=gamma, vote=vote, tie_break=tie_break)
        if isinstance(a, str) and a != "auto":
            raise ValidationError(f"a: expected a number in [0, 1] or 'auto', got {a!r}")
        self.a: float | str = (
            "auto" if a == "auto" else check_probability(float(a), "a", open_interval=False)
        )

    def _a(self, data: AttackData) -> float:
        if self.a != "auto":
            return float(self.a)
        return tune_rmia_a(
            data.signal(SIGNAL, "references"),
            np.asarray(data.keep),
            data.signal(SIGNAL, "population_references"),
            gamma=self.gamma,
            vote=self.vote,
        )
