r"""Reference-calibrated threshold attacks: Attack-R, Attack-P, and the calibrated losses.

All pure functions take a signal oriented so that higher = member (the registered attacks pass the
negative cross-entropy loss :math:`s = -\ell(x, y)`, the signal of the papers) and average the
per-query scores over the ``q`` queries.

* **Attack-R** (Ye, Maddi, Murakonda, Bindschaedler, Shokri, "Enhanced Membership Inference
  Attacks against Machine Learning Models", CCS 2022): the position of the target's signal among
  the record's OUT reference signals, as the level :math:`\alpha` at which the linearly
  interpolated quantile of those signals (``numpy.quantile(method="linear")``) equals the target
  signal; 0 below the smallest, 1 above the largest (see
  :func:`~miaudit.attacks._reference_stats.interpolated_rank`). Thresholding it at
  :math:`1 - \alpha`
  is Attack-R's per-record threshold at the :math:`\alpha` quantile.
* **Attack-P** (same paper): the same position among the target model's signals on population
  records (no reference models needed).
* **Calibrated loss** (Watson, Guo, Cormode, Sablayrolles, "On the Importance of Difficulty
  Calibration in Membership Inference Attacks", ICLR 2022), offline: :math:`s_\theta(x) -
  \overline{s}_{out}(x)`, the target's signal minus the mean of its OUT reference signals.
* **Sablayrolles et al.** ("White-box vs Black-box: Bayes Optimal Strategies for Membership
  Inference", ICML 2019), online: :math:`s_\theta(x) - (\overline{s}_{in}(x) +
  \overline{s}_{out}(x))/2`, a per-record threshold half way between the IN and OUT means.

**Tie-breaking** (``tie_break=True``, the default of Attack-R and Attack-P): a rank takes the
values 0 and 1 for every record outside the range of its reference signals, so with few
references many records tie at the top and the ROC has a long straight segment at low FPR (in
the demo, 8 OUT references put ~11% of non-members at rank 1, capping the TPR at 1% FPR at 0).
:func:`break_ties` adds a continuous secondary key :math:`k(x)` squeezed into an interval far
smaller than any gap between distinct ranks:

.. math:: \mathrm{score}(x) = (1 - \varepsilon)\,\mathrm{rank}(x)
   + \varepsilon\,\tfrac12\Big(1 + \frac{k(x)}{1 + |k(x)|}\Big),
   \qquad \varepsilon = 10^{-9},

so records with different ranks keep their order (up to rank differences below
:math:`\varepsilon`), records with the same rank are ordered by :math:`k`, and scores stay in
[0, 1]. Attack-R's key (``tie_key``, :func:`attack_r_tie_key`) is by default ``"calibrated"``:
:math:`s_\theta(x) - \overline{s}_{out}(x)`, how far the target's signal sits above the
record's OUT references; it raises the AUC by what the ties hid (+0.005 to +0.012 on the
demo). ``"percentile"`` uses :math:`z(x) = (s_\theta(x) - \overline{s}_{out}(x)) /
\hat\sigma_{out}(x)` instead (:math:`\Phi(z)`: the rank continued past the references by a
Gaussian fit of the OUT signals), which keeps the demo's AUC within 0.002 but is weaker, and
much weaker with few OUT references (a per-record :math:`\hat\sigma` from 2 signals is noise).
Attack-P's key is the target's signal. ``tie_break=False`` gives the paper's score exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from miaudit.attacks import register
from miaudit.attacks._reference_stats import (
    EQUALIZE_DEFAULT,
    as_queries,
    check_reference_signals,
    equal_count_masks,
    interpolated_rank,
    masked_mean,
    masked_sorted,
    require_references,
)
from miaudit.attacks.base import Attack, AttackData, AttackInfo
from miaudit.exceptions import MissingRequirementError, ValidationError

__all__ = [
    "TIE_EPS",
    "TIE_KEYS",
    "AttackP",
    "AttackR",
    "CalibratedLossAttack",
    "SablayrollesAttack",
    "attack_p_scores",
    "attack_r_scores",
    "attack_r_tie_key",
    "break_ties",
    "calibrated_scores",
    "check_tie_key",
    "sablayrolles_scores",
]

#: Weight :math:`\varepsilon` of the tie-breaking key (:func:`break_ties`).
TIE_EPS = 1e-9
#: Tie-breaking on by default for rank-based scores (Attack-R, Attack-P, RMIA).
TIE_BREAK_DEFAULT = True
#: Attack-R's tie-breaking keys (:func:`attack_r_tie_key`) and the default.
TIE_KEYS = ("percentile", "calibrated")
TIE_KEY_DEFAULT = "calibrated"


def break_ties(primary: ArrayLike, key: ArrayLike, eps: float = TIE_EPS) -> NDArray[np.float64]:
    r"""Order records that share a ``primary`` score by a continuous ``key``.

    Returns :math:`(1 - \varepsilon)\,p + \varepsilon\,\tfrac12(1 + k / (1 + |k|))`: a
    monotone squeeze of ``key`` into :math:`(0, \varepsilon)` added to ``primary`` (assumed in
    [0, 1]), so the result stays in [0, 1], keeps the order of primary scores that differ by more
    than :math:`\varepsilon` and orders ties by ``key``. NaN keys count as the lowest (``-inf``).

    Examples
    --------
    >>> import numpy as np
    >>> s = break_ties(np.array([1.0, 1.0, 0.5]), np.array([3.0, -2.0, 100.0]))
    >>> bool(s[0] > s[1] > s[2]), bool(s.max() <= 1.0)
    (True, True)
    """
    p = np.asarray(primary, dtype=np.float64)
    k = np.nan_to_num(np.asarray(key, dtype=np.float64), nan=-np.inf)
    with np.errstate(invalid="ignore"):
        finite = 0.5 * (1.0 + k / (1.0 + np.abs(k)))
        squeezed = np.where(np.isinf(k), (np.sign(k) + 1.0) / 2.0, finite)
    return (1.0 - eps) * p + eps * squeezed

SIGNAL = "cross_entropy_loss"
YE = (
    "Ye, Maddi, Murakonda, Bindschaedler, Shokri. Enhanced Membership Inference Attacks "
    "against Machine Learning Models. CCS 2022"
)


def attack_r_scores(
    target: ArrayLike,
    reference: ArrayLike,
    keep: ArrayLike,
    *,
    equalize: bool = EQUALIZE_DEFAULT,
    tie_break: bool = TIE_BREAK_DEFAULT,
    tie_key: str = TIE_KEY_DEFAULT,
) -> NDArray:
    r"""Attack-R (Ye et al., CCS 2022): interpolated rank among the record's OUT references.

    Parameters
    ----------
    target : array-like of shape (n, q) or (n,)
        Target model's signal, higher = member.
    reference : array-like of shape (m, n, q) or (m, n)
        Reference models' signal.
    keep : array-like of shape (m, n), bool
        Every record needs at least one OUT reference.
    equalize : bool
        Rank every record among the same number of OUT references (the smallest count over
        records; :func:`~miaudit.attacks._reference_stats.equal_count_masks`), so that the set of
        possible ranks does not depend on membership (it does in a leave-one-out audit).
        Default :data:`~miaudit.attacks._reference_stats.EQUALIZE_DEFAULT` (on).
    tie_break : bool
        Order records of equal rank by ``tie_key`` (:func:`break_ties`, module docstring);
        ``False`` gives the paper's rank exactly.
    tie_key : {"calibrated", "percentile"}
        :func:`attack_r_tie_key`: the target's signal minus the mean OUT signal (default), or
        its z-score under a Gaussian fit of the OUT signals.

    Returns
    -------
    ndarray of shape (n,)
        Mean over queries of the rank in [0, 1] (module docstring), plus the tie-breaking key.

    Examples
    --------
    >>> import numpy as np
    >>> reference = np.array([[2.0, 0.1], [1.5, 0.3], [0.2, 1.8], [0.1, 2.2]])  # 4 models
    >>> keep = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=bool)          # who trained on what
    >>> target = np.array([1.9, 0.2])   # record 0 looks like an IN signal, record 1 like an OUT one
    >>> attack_r_scores(target, reference, keep, tie_break=False)  # above all OUT; at the median
    array([1. , 0.5])
    """
    check_tie_key(tie_key)
    tgt, ref, kp = check_reference_signals(target, reference, keep)
    require_references(kp, "out", "Attack-R")
    out = equal_count_masks(kp)[1] if equalize else ~kp
    rows = masked_sorted(ref, out)  # (n, q, m)
    below = np.count_nonzero(rows < tgt[..., None], axis=-1)
    rank = interpolated_rank(
        tgt,
        below,
        lambda idx: np.take_along_axis(rows, idx[..., None], axis=-1)[..., 0],
        out.sum(axis=0)[:, None],
    )
    if not tie_break:
        return rank.mean(axis=1)
    return break_ties(rank.mean(axis=1), attack_r_tie_key(tgt, ref, out, tie_key))


def check_tie_key(tie_key: object) -> str:
    """``tie_key`` if it names one of :data:`TIE_KEYS`, else :class:`ValidationError`."""
    if tie_key not in TIE_KEYS:
        raise ValidationError(f"tie_key: expected one of {', '.join(TIE_KEYS)}, got {tie_key!r}")
    return str(tie_key)


def attack_r_tie_key(
    target: NDArray[np.float64],
    reference: NDArray[np.float64],
    out: NDArray[np.bool_],
    tie_key: str = TIE_KEY_DEFAULT,
) -> NDArray[np.float64]:
    r"""Attack-R's secondary key, mean over queries, shape ``(n,)``.

    * ``"percentile"``: :math:`z = (s_\theta(x) - \mu_{out}(x)) / \sigma_{out}(x)`, with the
      mean and the standard deviation (``ddof=0``) of the record's OUT signals; where
      :math:`\sigma_{out} = 0` (one OUT reference, or equal signals) the median of the positive
      :math:`\sigma_{out}` over records and queries (a global scale, as LiRA's fixed variance),
      and :math:`s_\theta - \mu_{out}` if there is none. :math:`\Phi(z)` is the record's
      percentile under a Gaussian fit of its OUT signals: Attack-R's rank continued past the
      smallest and largest reference.
    * ``"calibrated"``: :math:`s_\theta(x) - \mu_{out}(x)` (Watson et al.'s calibrated signal).

    ``target`` is ``(n, q)``, ``reference`` ``(m, n, q)``, ``out`` ``(m, n)`` bool.
    """
    mu = masked_mean(reference, out)[0]
    diff = target - mu
    if check_tie_key(tie_key) == "calibrated":
        return diff.mean(axis=1)
    sd = np.sqrt(masked_mean((reference - mu[None]) ** 2, out)[0])
    positive = sd[sd > 0]
    if positive.size == 0:
        return diff.mean(axis=1)
    sd = np.where(sd > 0, sd, np.median(positive))
    return (diff / sd).mean(axis=1)


def attack_p_scores(
    target: ArrayLike, population_target: ArrayLike, *, tie_break: bool = TIE_BREAK_DEFAULT
) -> NDArray:
    """Attack-P (Ye et al., CCS 2022): interpolated rank among population records' signals.

    Parameters
    ----------
    target : array-like of shape (n, q) or (n,)
        Target model's signal on the audited records, higher = member.
    population_target : array-like of shape (z, q) or (z,)
        Target model's signal on population records (in no training set).
    tie_break : bool
        Order records of equal rank (outside the population's range) by the target's signal
        (:func:`break_ties`); ``False`` gives the paper's rank exactly.

    Returns
    -------
    ndarray of shape (n,)
        Mean over queries of the rank in [0, 1]; per query, a monotone function of the
        target's signal (Attack-P ranks records like the global threshold attack).

    Examples
    --------
    >>> import numpy as np
    >>> attack_p_scores(np.array([0.5, 2.5]), np.array([0.0, 1.0, 2.0, 3.0])).round(4)
    array([0.1667, 0.8333])
    """
    tgt = as_queries(target, "target", 1)
    pop = as_queries(population_target, "population_target", 1)
    if pop.shape[1] != tgt.shape[1]:
        raise ValidationError(
            f"population_target: expected {tgt.shape[1]} queries per record like target, got "
            f"shape {pop.shape}"
        )
    if pop.shape[0] == 0:
        raise MissingRequirementError("population_target: needs at least one population record")
    score = np.zeros(tgt.shape[0])
    for k in range(tgt.shape[1]):
        values = np.sort(pop[:, k])
        below = np.searchsorted(values, tgt[:, k], side="left")
        score += interpolated_rank(tgt[:, k], below, values.__getitem__, values.size)
    score /= tgt.shape[1]
    return break_ties(score, tgt.mean(axis=1)) if tie_break else score


def calibrated_scores(target: ArrayLike, reference: ArrayLike, keep: ArrayLike) -> NDArray:
    r"""Calibrated loss (Watson et al., ICLR 2022), offline.

    Returns the mean over queries of :math:`s_\theta(x) - \overline{s}_{out}(x)`, shape (n,);
    shapes of the inputs as in :func:`attack_r_scores`; every record needs an OUT reference.

    Examples
    --------
    >>> import numpy as np
    >>> reference = np.array([[2.0, 0.1], [1.5, 0.3], [0.2, 1.8], [0.1, 2.2]])  # 4 models
    >>> keep = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=bool)          # who trained on what
    >>> target = np.array([1.9, 0.2])   # record 0 looks like an IN signal, record 1 like an OUT one
    >>> calibrated_scores(target, reference, keep)   # target minus the mean OUT signal
    array([1.75, 0.  ])
    """
    tgt, ref, kp = check_reference_signals(target, reference, keep)
    require_references(kp, "out", "calibrated loss")
    return (tgt - masked_mean(ref, ~kp)[0]).mean(axis=1)


def sablayrolles_scores(target: ArrayLike, reference: ArrayLike, keep: ArrayLike) -> NDArray:
    r"""Per-record threshold of Sablayrolles et al. (ICML 2019), online.

    Returns the mean over queries of :math:`s_\theta(x) - (\overline{s}_{in}(x) +
    \overline{s}_{out}(x))/2`, shape (n,); every record needs an IN and an OUT reference.

    Examples
    --------
    >>> import numpy as np
    >>> reference = np.array([[2.0, 0.1], [1.5, 0.3], [0.2, 1.8], [0.1, 2.2]])  # 4 models
    >>> keep = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=bool)          # who trained on what
    >>> target = np.array([1.9, 0.2])   # record 0 looks like an IN signal, record 1 like an OUT one
    >>> sablayrolles_scores(target, reference, keep)  # target minus the IN/OUT midpoint
    array([ 0.95, -0.9 ])
    """
    tgt, ref, kp = check_reference_signals(target, reference, keep)
    require_references(kp, "in", "Sablayrolles et al.")
    require_references(kp, "out", "Sablayrolles et al.")
    mid = (masked_mean(ref, kp)[0] + masked_mean(ref, ~kp)[0]) / 2.0
    return (tgt - mid).mean(axis=1)


class _NegLossReferenceAttack(Attack):
    """Registered attack = ``score_fn(-loss of target, -loss of references, keep, **params)``
    with the attack's hyper-parameters (:meth:`params`) as keywords."""

    score_fn: ClassVar[Callable[..., NDArray]]

    def _score(self, data: AttackData) -> NDArray[np.float64]:
        return type(self).score_fn(
            -data.signal(SIGNAL, "target"),
            -data.signal(SIGNAL, "references"),
            np.asarray(data.keep),
            **self.params(),
        )


@register("attack_r")
class AttackR(_NegLossReferenceAttack):
    """Attack-R on the negative loss; ``equalize``, ``tie_break`` and ``tie_key`` as in
    :func:`attack_r_scores`."""

    info = AttackInfo(
        name="attack_r",
        title="Attack-R: rank of the target's loss among the record's OUT reference losses",
        paper=YE,
        signals=(SIGNAL,),
        needs_references=True,
        needs_out_references=True,
    )

    score_fn = staticmethod(attack_r_scores)

    def __init__(
        self,
        equalize: bool = EQUALIZE_DEFAULT,
        tie_break: bool = TIE_BREAK_DEFAULT,
        tie_key: str = TIE_KEY_DEFAULT,
    ) -> None:
        self.equalize = bool(equalize)
        self.tie_break = bool(tie_break)
        self.tie_key = check_tie_key(tie_key)


@register("calibrated_loss")
class CalibratedLossAttack(_NegLossReferenceAttack):
    info = AttackInfo(
        name="calibrated_loss",
        title="Calibrated loss: target loss vs the mean OUT reference loss (offline)",
        paper=(
            "Watson, Guo, Cormode, Sablayrolles. On the Importance of Difficulty Calibration "
            "in Membership Inference Attacks. ICLR 2022"
        ),
        signals=(SIGNAL,),
        needs_references=True,
        needs_out_references=True,
    )
    score_fn = staticmethod(calibrated_scores)


@register("sablayrolles")
class SablayrollesAttack(_NegLossReferenceAttack):
    info = AttackInfo(
        name="sablayrolles",
        title="Per-record threshold half way between the IN and OUT mean losses (online)",
        paper=(
            "Sablayrolles, Douze, Schmid, Ollivier, Jégou. White-box vs Black-box: Bayes "
            "Optimal Strategies for Membership Inference. ICML 2019"
        ),
        signals=(SIGNAL,),
        needs_references=True,
        needs_in_references=True,
        needs_out_references=True,
    )
    score_fn = staticmethod(sablayrolles_scores)


@register("attack_p")
class AttackP(Attack):
    """Attack-P on the negative loss; ``tie_break`` as in :func:`attack_p_scores`."""

    info = AttackInfo(
        name="attack_p",
        title="Attack-P: rank of the target's loss among its losses on population records",
        paper=YE,
        signals=(SIGNAL,),
        needs_population=True,
    )

    def __init__(self, tie_break: bool = TIE_BREAK_DEFAULT) -> None:
        self.tie_break = bool(tie_break)

    def _score(self, data: AttackData) -> NDArray[np.float64]:
        return attack_p_scores(
            -data.signal(SIGNAL, "target"),
            -data.signal(SIGNAL, "population_target"),
            tie_break=self.tie_break,
        )
