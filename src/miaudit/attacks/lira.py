r"""The Likelihood Ratio Attack (LiRA) of Carlini et al., "Membership Inference Attacks From
First Principles", IEEE S&P 2022 (arXiv:2112.03570).

For every record and query, Gaussians are fitted to the signals (logit-scaled confidence
:math:`\phi = \log\frac{p_y}{1 - p_y}`) of the reference models that trained on the record (IN)
and of those that did not (OUT). With :math:`x` the target model's signal:

* online (paper Eq. 3): :math:`\log \mathcal N(x; \mu_{in}, \sigma_{in}^2) -
  \log \mathcal N(x; \mu_{out}, \sigma_{out}^2)`;
* offline, one-sided (paper Eq. 4, the default): :math:`\log \Phi((x - \mu_{out}) /
  \sigma_{out})`, the log of :math:`1 - \Pr[Z > x]` for :math:`Z \sim \mathcal N(\mu_{out},
  \sigma_{out}^2)`;
* offline, two-sided (the reference code ``plot.py``'s choice): :math:`-\log \mathcal N(x;
  \mu_{out}, \sigma_{out}^2)`, which also flags records whose signal is unusually *low*.

The per-query scores are averaged over the ``q`` queries. Every score is higher for members.

Choices where the published code disagrees (see ``docs/attacks.md``):

* ``center``: ``"median"`` (reference code, TensorFlow Privacy's default) or ``"mean"`` (paper).
* ``variance``: ``"per_record"`` — std (ddof 0, around the mean) of the record's IN (OUT) signals
  for each query; ``"global"`` — one std of the residuals :math:`\phi - \mu` pooled over all
  records, queries and reference models, separately for IN and for OUT (TensorFlow Privacy's
  ``fix_variance``; the reference code's ``plot.py`` takes the OUT std from the IN signals, a bug
  not copied here), leaving out records with a single signal on that side (their residual is 0);
  when no record has two signals on a side (two references on complementary halves), the std of
  that side's raw signals pooled over records (the reference code's fixed variance);
  ``"auto"`` — global below :data:`GLOBAL_VARIANCE_BELOW` reference models, where the paper
  (Fig. 9) finds it better.
* Records with fewer than :data:`MIN_SAMPLES_PER_RECORD_STD` signals on one side use that side's
  global std (the std of one sample is 0). Every std is floored at :data:`SIGMA_FLOOR`.
* All IN and OUT references of a record are used; the reference code truncates every record to the
  smallest count over records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from miaudit._validation import check_keep
from miaudit.attacks import register
from miaudit.attacks._reference_stats import (
    EQUALIZE_DEFAULT,
    Side,
    SideStats,
    as_queries,
    check_reference_signals,
    equal_count_masks,
    masked_median,
    masked_stats,
    references_by_record,
    require_references,
    side_stats,
)
from miaudit.attacks.base import Attack, AttackData, AttackInfo
from miaudit.exceptions import MissingRequirementError, ValidationError
from miaudit.registry import Registry

__all__ = [
    "CENTERS",
    "GLOBAL_VARIANCE_BELOW",
    "MIN_SAMPLES_PER_RECORD_STD",
    "OFFLINE_TESTS",
    "SIGMA_FLOOR",
    "VARIANCES",
    "GaussianFit",
    "LiraAttack",
    "LiraOfflineAttack",
    "fit_gaussians",
    "gaussian_logpdf",
    "lira_scores",
    "resolve_variance",
]

#: ``variance="auto"`` uses the global variance with fewer reference models than this: Carlini et
#: al. (2022, Fig. 9) find per-record variances better only from 64 reference models on.
GLOBAL_VARIANCE_BELOW = 64
#: A per-record std needs at least this many signals; records with fewer on a side use that side's
#: global std instead (one sample has std 0, which would make the likelihood degenerate).
MIN_SAMPLES_PER_RECORD_STD = 2
#: Smallest std used, so that a side whose signals are all equal still gives finite scores.
SIGMA_FLOOR = 1e-6

SIGNAL = "logit_scaled_confidence"
PAPER = (
    "Carlini, Chien, Nasr, Song, Terzis, Tramèr. Membership Inference Attacks From First "
    "Principles. IEEE S&P 2022"
)
_HALF_LOG_2PI = 0.5 * np.log(2.0 * np.pi)

Missing = Literal["error", "column_mean"]


@dataclass(frozen=True)
class GaussianFit:
    """Per-record, per-query Gaussian fitted to one side's reference signals.

    Attributes
    ----------
    mean : ndarray of shape (n, q)
        The centre (median or mean).
    std : ndarray of shape (n, q)
        The standard deviation (per record or global), at least :data:`SIGMA_FLOOR`.
    count : ndarray of shape (n,)
        Number of reference signals per record on this side.
    """

    mean: NDArray[np.float64]
    std: NDArray[np.float64]
    count: NDArray[np.int64]


class _References:
    """Validated reference signals and the IN/OUT masks; per-side statistics computed once."""

    def __init__(
        self, x: NDArray[np.float64], in_mask: NDArray[np.bool_], out_mask: NDArray[np.bool_]
    ) -> None:
        self.x = x
        self.masks = {"in": in_mask, "out": out_mask}
        self._stats: dict[str, SideStats] = {}
        self._by_record: NDArray[np.float64] | None = None

    @classmethod
    def from_keep(cls, x: NDArray[np.float64], keep: NDArray[np.bool_]) -> _References:
        """IN = ``keep``, OUT = ``~keep``."""
        return cls(x, keep, ~keep)

    @property
    def n_models(self) -> int:
        return int(self.x.shape[0])

    def mask(self, side: Side) -> NDArray[np.bool_]:
        return self.masks[side]

    def stats(self, side: Side) -> SideStats:
        if side not in self._stats:
            in_mask, out_mask = self.masks["in"], self.masks["out"]
            if np.array_equal(out_mask, ~in_mask):  # one pass gives both sides
                self._stats["in"], self._stats["out"] = side_stats(self.x, in_mask)
            else:
                self._stats[side] = masked_stats(self.x, self.masks[side])
        return self._stats[side]

    def by_record(self) -> NDArray[np.float64]:
        if self._by_record is None:
            self._by_record = references_by_record(self.x)
        return self._by_record


def _mean_center(refs: _References, side: Side) -> NDArray[np.float64]:
    return refs.stats(side).mean


def _median_center(refs: _References, side: Side) -> NDArray[np.float64]:
    return masked_median(refs.x, refs.mask(side), refs.by_record())[0]


#: Location estimators of a side's reference signals, by name: each maps the references and a
#: side to the centre of shape (n, q), NaN where a record has no reference on that side.
CENTERS: Registry[Callable[[_References, Side], NDArray[np.float64]]] = Registry("center")
CENTERS.register("mean")(_mean_center)
CENTERS.register("median")(_median_center)


def _global_std(stats: SideStats, center: NDArray[np.float64]) -> float:
    """One std for a whole side (see the module docstring).

    The std (ddof 0) of the residuals ``x - center`` pooled over all records, queries and
    reference models, as TensorFlow Privacy's ``fix_variance``, but only over records with at
    least :data:`MIN_SAMPLES_PER_RECORD_STD` signals on this side (a single signal is its own
    median, so its residual is 0 and carries no information about the spread). When no record
    has that many (e.g. two reference models trained on complementary halves), the std of the
    side's raw signals pooled over records is used instead: the LiRA reference code's fixed
    variance. Computed from :class:`SideStats`: :math:`\\sum_i (x_i - c)^2 = \\sum_i (x_i -
    \bar x)^2 + k (\bar x - c)^2`.
    """
    sel = stats.count >= MIN_SAMPLES_PER_RECORD_STD
    raw = not sel.any()  # no record has that many: the std of the raw signals
    if raw:
        sel = stats.count > 0
    k = stats.count[sel, None].astype(np.float64)
    mean = stats.mean[sel]
    total = float(k.sum()) * mean.shape[1]
    c = float((k * mean).sum()) / total if raw else center[sel]  # grand mean if raw
    e = mean - c
    first = float((k * e).sum()) / total
    second = float((stats.sq_dev[sel] + k * e * e).sum()) / total
    return float(np.sqrt(max(second - first * first, 0.0)))


def _per_record_std(stats: SideStats, center: NDArray[np.float64]) -> NDArray[np.float64]:
    """Std (ddof 0, around the mean) per record and query; records with fewer than
    :data:`MIN_SAMPLES_PER_RECORD_STD` signals get the global std of this side."""
    std = stats.std()
    few = (stats.count > 0) & (stats.count < MIN_SAMPLES_PER_RECORD_STD)
    if few.any():
        std[few] = _global_std(stats, center)
    return std


def _global_std_array(stats: SideStats, center: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.full(center.shape, _global_std(stats, center))


StdFn = Callable[[SideStats, NDArray[np.float64]], NDArray[np.float64]]

#: How the std of a side is estimated, by name (``"auto"`` is resolved by
#: :func:`resolve_variance`).
VARIANCES: Registry[StdFn] = Registry("LiRA variance")
VARIANCES.register("per_record")(_per_record_std)
VARIANCES.register("global")(_global_std_array)


def resolve_variance(variance: str, n_references: int) -> str:
    """``"auto"`` → ``"global"`` below :data:`GLOBAL_VARIANCE_BELOW` reference models, else
    ``"per_record"``; other names are checked against :data:`VARIANCES` and returned."""
    if variance == "auto":
        return "global" if n_references < GLOBAL_VARIANCE_BELOW else "per_record"
    VARIANCES.get(variance)
    return variance


def _fill_column_mean(a: NDArray[np.float64]) -> None:
    """Replace NaNs in each column of ``a`` (n, q) with that column's mean (in place)."""
    bad = np.isnan(a)
    a[bad] = np.broadcast_to(np.nanmean(a, axis=0), a.shape)[bad]


def fit_gaussians(
    reference: ArrayLike,
    mask: ArrayLike,
    *,
    center: str = "median",
    variance: str = "per_record",
    missing: Missing = "error",
) -> GaussianFit:
    r"""Fit one Gaussian per record and query to the reference signals selected by ``mask``.

    Parameters
    ----------
    reference : array-like of shape (m, n, q) or (m, n)
        Reference models' signals.
    mask : array-like of shape (m, n), bool
        Which signals to use: ``keep`` for the IN side, ``~keep`` for the OUT side.
    center : {"median", "mean"}
        Location estimator :math:`\mu`.
    variance : {"per_record", "global", "auto"}
        See the module docstring; ``"auto"`` counts all ``m`` reference models.
    missing : {"error", "column_mean"}
        Records with no selected signal: ``"error"`` raises :class:`MissingRequirementError`;
        ``"column_mean"`` gives them the mean over records of :math:`\mu` and :math:`\sigma`
        for each query, as TensorFlow Privacy's ``compute_score_lira`` does (used to reproduce
        its golden values).

    Returns
    -------
    GaussianFit
    """
    ref = as_queries(reference, "reference", 2)
    sel = check_keep(mask, "mask", shape=ref.shape[:2])
    if missing not in ("error", "column_mean"):
        raise ValidationError(f"missing: expected 'error' or 'column_mean', got {missing!r}")
    refs = _References.from_keep(ref, sel)
    return _fit(refs, "in", center, resolve_variance(variance, ref.shape[0]), missing)


def _fit(
    refs: _References, side: Side, center: str, variance: str, missing: Missing
) -> GaussianFit:
    """Fit the Gaussians of one side on validated inputs (``variance`` already resolved)."""
    center_fn, std_fn = CENTERS.get(center), VARIANCES.get(variance)
    stats = refs.stats(side)
    count = stats.count
    if not count.any():
        raise MissingRequirementError("mask: selects no reference signal for any record")
    empty = count == 0
    if empty.any() and missing == "error":
        raise MissingRequirementError(
            f"mask: {int(empty.sum())} of {count.size} records have no reference signal to fit"
        )
    mu = center_fn(refs, side)
    sigma = np.array(std_fn(stats, mu), dtype=np.float64)
    if empty.any():
        _fill_column_mean(mu)
        _fill_column_mean(sigma)
    return GaussianFit(mean=mu, std=np.maximum(sigma, SIGMA_FLOOR), count=count)


def gaussian_logpdf(
    x: NDArray[np.float64], mean: NDArray[np.float64], std: NDArray[np.float64]
) -> NDArray[np.float64]:
    r""":math:`\log \mathcal N(x; \mu, \sigma^2) = -\tfrac12 ((x-\mu)/\sigma)^2 - \log\sigma -
    \tfrac12 \log 2\pi`, elementwise (same as ``scipy.stats.norm.logpdf``)."""
    z = (x - mean) / std
    return -0.5 * z * z - np.log(std) - _HALF_LOG_2PI


def _one_sided(x: NDArray[np.float64], fit: GaussianFit) -> NDArray[np.float64]:
    from scipy.special import log_ndtr

    return log_ndtr((x - fit.mean) / fit.std)


def _two_sided(x: NDArray[np.float64], fit: GaussianFit) -> NDArray[np.float64]:
    return -gaussian_logpdf(x, fit.mean, fit.std)


#: Offline LiRA tests by name; each maps ``(x (n, q), OUT fit)`` to per-query scores.
OFFLINE_TESTS: Registry[Callable[[NDArray[np.float64], GaussianFit], NDArray]] = Registry(
    "offline test"
)
OFFLINE_TESTS.register("one_sided")(_one_sided)
OFFLINE_TESTS.register("two_sided")(_two_sided)


def lira_scores(
    target: ArrayLike,
    reference: ArrayLike,
    keep: ArrayLike,
    *,
    online: bool = True,
    center: str = "median",
    variance: str = "per_record",
    offline_test: str = "one_sided",
    equalize: bool = EQUALIZE_DEFAULT,
) -> NDArray[np.float64]:
    r"""LiRA scores (Carlini et al., S&P 2022), higher = member.

    Parameters
    ----------
    target : array-like of shape (n, q) or (n,)
        The audited model's logit-scaled confidence on ``n`` records, ``q`` queries each.
    reference : array-like of shape (m, n, q) or (m, n)
        The same signal of ``m`` reference models on the same records and queries.
    keep : array-like of shape (m, n), bool
        ``keep[i, j]``: reference ``i`` trained on record ``j``.
    online : bool
        Online (IN and OUT references; every record needs at least one of each) or offline (OUT
        references only; every record needs at least one).
    center : {"median", "mean"}
    variance : {"per_record", "global", "auto"}
    offline_test : {"one_sided", "two_sided"}
        Only used offline.
    equalize : bool
        Fit every record's Gaussians to the same number of IN and of OUT references
        (:func:`~miaudit.attacks._reference_stats.equal_count_masks`); default
        :data:`~miaudit.attacks._reference_stats.EQUALIZE_DEFAULT` (on). Needed when the counts
        depend on membership, as in a leave-one-out audit over a balanced keep matrix; off
        reproduces the LiRA reference code.

    Returns
    -------
    ndarray of shape (n,)
        Online: mean over queries of :math:`\log \mathcal N(x; \mu_{in}, \sigma_{in}^2) -
        \log \mathcal N(x; \mu_{out}, \sigma_{out}^2)`. Offline one-sided: mean over queries of
        :math:`\log\Phi((x - \mu_{out})/\sigma_{out})`; two-sided: of
        :math:`-\log \mathcal N(x; \mu_{out}, \sigma_{out}^2)`.

    Raises
    ------
    MissingRequirementError
        When some record lacks the IN (online) or OUT references it needs; the message says how
        many records.

    Examples
    --------
    >>> import numpy as np
    >>> reference = np.array([[2.0, 0.1], [1.5, 0.3], [0.2, 1.8], [0.1, 2.2]])  # 4 models
    >>> keep = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=bool)          # who trained on what
    >>> target = np.array([1.9, 0.2])   # record 0 looks like an IN signal, record 1 like an OUT one
    >>> lira_scores(target, reference, keep, variance="global").round(2)
    array([243.73, -32.66])
    >>> lira_scores(target, reference, keep, online=False, variance="global").round(4)
    array([-0.    , -0.6931])
    """
    tgt, ref, kp = check_reference_signals(target, reference, keep)
    CENTERS.get(center)
    variance = resolve_variance(variance, ref.shape[0])
    test = None if online else OFFLINE_TESTS.get(offline_test)
    mode = "online LiRA" if online else "offline LiRA"
    require_references(kp, "out", mode)
    if online:
        require_references(kp, "in", mode)
    refs = _References(ref, *equal_count_masks(kp)) if equalize else _References.from_keep(ref, kp)
    out = _fit(refs, "out", center, variance, "error")
    if test is not None:
        return test(tgt, out).mean(axis=1)
    fin = _fit(refs, "in", center, variance, "error")
    llr = gaussian_logpdf(tgt, fin.mean, fin.std) - gaussian_logpdf(tgt, out.mean, out.std)
    return llr.mean(axis=1)


class _LiraBase(Attack):
    """A registered LiRA: :func:`lira_scores` with the attack's :meth:`params` as options."""

    online: ClassVar[bool]

    def __init__(
        self, center: str = "median", variance: str = "auto", equalize: bool = EQUALIZE_DEFAULT
    ) -> None:
        CENTERS.get(center)
        resolve_variance(variance, GLOBAL_VARIANCE_BELOW)
        self.center = center
        self.variance = variance
        self.equalize = bool(equalize)

    def _score(self, data: AttackData) -> NDArray[np.float64]:
        return lira_scores(
            data.signal(SIGNAL, "target"),
            data.signal(SIGNAL, "references"),
            np.asarray(data.keep),
            online=self.online,
            **self.params(),  # type: ignore[arg-type]
        )


@register("lira")
class LiraAttack(_LiraBase):
    """Online LiRA. Parameters: ``center`` ("median" | "mean"), ``variance`` ("auto" |
    "per_record" | "global"); see :func:`lira_scores`."""

    info = AttackInfo(
        name="lira",
        title="LiRA online: Gaussian likelihood ratio of IN vs OUT reference signals",
        paper=PAPER,
        signals=(SIGNAL,),
        needs_references=True,
        needs_in_references=True,
        needs_out_references=True,
    )
    online = True


@register("lira_offline")
class LiraOfflineAttack(_LiraBase):
    """Offline LiRA (OUT references only). Parameters: ``center``, ``variance``,
    ``offline_test`` ("one_sided" | "two_sided"); see :func:`lira_scores`."""

    info = AttackInfo(
        name="lira_offline",
        title="LiRA offline: position of the target signal in the OUT reference Gaussian",
        paper=PAPER,
        signals=(SIGNAL,),
        needs_references=True,
        needs_out_references=True,
    )
    online = False

    def __init__(
        self,
        center: str = "median",
        variance: str = "auto",
        offline_test: str = "one_sided",
        equalize: bool = EQUALIZE_DEFAULT,
    ) -> None:
        super().__init__(center, variance, equalize)
        OFFLINE_TESTS.get(offline_test)
        self.offline_test = offline_test
