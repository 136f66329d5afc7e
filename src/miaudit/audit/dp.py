r"""Privacy auditing: empirical lower bounds on the epsilon of a differentially private trainer.

Four audits, from the cheapest to run to the most demanding:

* :func:`epsilon_lower_bound_split` — the **valid default** bound for one attack's scores: the
  threshold is chosen on one random half of the records and the Clopper–Pearson bound of
  :func:`miaudit.metrics.epsilon_lower_bound` is computed on the other half.
  :func:`epsilon_lower_bound_optimistic` keeps the old "best threshold on the same records" number
  under a name that says what it is.
* :func:`one_run_audit` — Steinke, Nasr & Jagielski, "Privacy Auditing with One (1) Training
  Run", NeurIPS 2023: ``m`` canaries, each included by a fair coin in **one** training run; the
  auditor guesses "in" for the ``k+`` highest scores, "out" for the ``k-`` lowest and abstains on
  the rest; ``r = k+ + k-`` guesses of which ``v`` are right give a p-value
  (:func:`one_run_p_value`) and an epsilon bound (:func:`one_run_epsilon`).
* :func:`canary_audit` — Jagielski, Ullman & Oprea, "Auditing Differentially Private Machine
  Learning: How Private is Private SGD?", NeurIPS 2020: one canary per training run, many runs
  with the canary IN and OUT; threshold on a held-out split, Clopper–Pearson bound on the rest.
* :func:`gdp_audit` — Nasr et al., "Tight Auditing of Differentially Private Machine Learning",
  USENIX Security 2023: a lower bound on the Gaussian-DP parameter ``mu`` from Clopper–Pearson
  bounds on FPR and FNR, turned into epsilon at ``delta`` by the exact conversion of Dong, Roth &
  Su, "Gaussian Differential Privacy", JRSS-B 2022 (Corollary 2.13).

Every function takes scores with **higher = member** (or "canary IN"), computes in float64, takes
its randomness from an explicit seed or :class:`numpy.random.Generator`, and raises
:class:`~miaudit.exceptions.ValidationError` naming the field on bad input.

What a bound means
    Each bound holds with probability at least ``1 - p`` (or ``1 - alpha``) over the randomness
    of the audit **provided the test was fixed before looking at the outcomes it is evaluated
    on**. Choosing the threshold (or ``k+``/``k-``) on the same outcomes inflates the bound; every
    function here either selects on a held-out split or pays a Bonferroni correction, and says
    which in its result (``selection``).

    The Clopper–Pearson bounds of :func:`epsilon_lower_bound_split` and :func:`canary_audit`
    treat the records as independent trials. That is exactly true of :func:`canary_audit` (one
    training run per trial); for the records of a single model it bounds the attack's own
    error rates, and the claim "the training algorithm is not (eps, delta)-DP" from a single
    model needs the one-run theorem (:func:`one_run_audit`, canaries included by fair coins).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, special, stats

from miaudit._validation import (
    SeedLike,
    as_generator,
    check_array,
    check_both_classes,
    check_membership,
    check_probability,
    check_same_length,
)
from miaudit.exceptions import ValidationError
from miaudit.metrics import (
    DEFAULT_ALPHA,
    EpsilonBound,
    _cp_upper,  # one-sided Clopper–Pearson upper bound, shared with the metrics
    confusion_at,
    epsilon_lower_bound_from_scores,
)

__all__ = [
    "DEFAULT_CALIBRATION_FRACTION",
    "DEFAULT_K_FRACTIONS",
    "DEFAULT_P",
    "GdpAudit",
    "OneRunAudit",
    "canary_audit",
    "epsilon_lower_bound_optimistic",
    "epsilon_lower_bound_split",
    "gdp_audit",
    "gdp_delta",
    "gdp_epsilon",
    "gdp_mu_lower_bound",
    "one_run_audit",
    "one_run_epsilon",
    "one_run_p_value",
]

#: Default significance of the one-run audit: the bound holds with probability >= 95 %.
DEFAULT_P = 0.05
#: Default fraction of the records (or trials, or canaries) used to choose the test.
DEFAULT_CALIBRATION_FRACTION = 0.5
#: Default candidate guess counts of :func:`one_run_audit`, as fractions of the canaries.
DEFAULT_K_FRACTIONS: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
#: First upper end of the epsilon search; doubled until the p-value drops below ``p``.
_EPS_SEARCH_START = 1.0
#: Absolute tolerance of the epsilon root finders (bisection / Brent).
_EPS_TOLERANCE = 1e-9
#: Largest epsilon any search here reports: beyond it ``e^eps`` overflows float64 arithmetic
#: in the conversions, and no audit with fewer than ``e^700`` trials can certify more.
_EPS_MAX = 700.0

OneRunSelection = Literal["bonferroni", "split", "given"]
GdpSelection = Literal["bonferroni", "split", "given"]


# ------------------------------------------------------------------------------ helpers
def _check_int(value: Any, name: str, minimum: int = 0) -> int:
    """An integer ``>= minimum`` (Python/NumPy ints, or floats that are whole numbers)."""
    if isinstance(value, bool):
        raise ValidationError(f"{name}: expected an integer, got the boolean {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValidationError(f"{name}: expected an integer, got {value!r}") from None
    if not math.isfinite(v) or v != math.floor(v):
        raise ValidationError(f"{name}: expected an integer, got {value!r}")
    if v < minimum:
        raise ValidationError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(v)


def _check_delta(delta: Any) -> float:
    d = check_probability(delta, "delta", open_interval=False)
    if d >= 1.0:
        raise ValidationError(f"delta: expected a value in [0, 1), got {delta!r}")
    return d


def _check_counts(m: Any, r: Any, v: Any) -> tuple[int, int, int]:
    m = _check_int(m, "m", minimum=1)
    r = _check_int(r, "r")
    v = _check_int(v, "v")
    if r > m:
        raise ValidationError(f"r: the number of guesses ({r}) exceeds the canaries m ({m})")
    if v > r:
        raise ValidationError(f"v: the correct guesses ({v}) exceed the guesses r ({r})")
    return m, r, v


def _scores(scores: ArrayLike, name: str = "scores") -> tuple[NDArray[np.float64], int]:
    """1-d float64 scores with NaN replaced by ``-inf`` (the lowest score), and the NaN count.

    The same rule as :mod:`miaudit.metrics`: a NaN score is never predicted "member".
    """
    s = check_array(scores, name, ndim=1, finite=False)
    if s.size == 0:
        raise ValidationError(f"{name}: expected at least one score, got none")
    nan = np.isnan(s)
    n_nan = int(nan.sum())
    return (np.where(nan, -np.inf, s) if n_nan else s), n_nan


# ------------------------------------------------------------------ one run: p-value, eps
def one_run_p_value(m: int, r: int, v: int, eps: float, delta: float = 0.0) -> float:
    r"""p-value of ``v`` correct of ``r`` guesses under the null "the trainer is (eps, delta)-DP".

    Steinke, Nasr & Jagielski 2023, Theorem 5.2 / Algorithm 1 (and the code of their
    Appendix D). With :math:`q = e^\varepsilon / (1 + e^\varepsilon)` (the accuracy of
    eps-DP randomised response),

    .. math::
        \beta = P[\mathrm{Bin}(r, q) \ge v], \qquad
        \alpha = \max_{1 \le i \le v} \frac{P[v - i \le \mathrm{Bin}(r, q) < v]}{i},

    .. math::
        p = \min\{1,\; \beta + \alpha \cdot \delta \cdot 2m\}.

    With ``delta = 0`` this is exactly the binomial survival function
    ``scipy.stats.binom.sf(v - 1, r, q)``.

    Parameters
    ----------
    m : int
        Number of canaries, each included in training by an independent fair coin (``>= 1``).
    r : int
        Guesses made (canaries not abstained on), ``0 <= r <= m``.
    v : int
        Correct guesses, ``0 <= v <= r``.
    eps : float
        Epsilon of the null hypothesis, ``>= 0``.
    delta : float
        Delta of the null hypothesis, in [0, 1).

    Returns
    -------
    float
        The p-value in [0, 1]: the largest probability, over every (eps, delta)-DP trainer, of
        at least ``v`` correct guesses.
    """
    m, r, v = _check_counts(m, r, v)
    eps = _check_eps(eps)
    delta = _check_delta(delta)
    return _one_run_p_value(m, r, v, eps, delta)


def _check_eps(eps: Any) -> float:
    try:
        e = float(eps)
    except (TypeError, ValueError):
        raise ValidationError(f"eps: expected a number >= 0, got {eps!r}") from None
    if not (math.isfinite(e) and e >= 0):
        raise ValidationError(f"eps: expected a finite number >= 0, got {eps!r}")
    return e


def _one_run_p_value(m: int, r: int, v: int, eps: float, delta: float) -> float:
    """:func:`one_run_p_value` on validated inputs."""
    if v == 0:
        return 1.0
    q = float(special.expit(eps))  # e^eps / (1 + e^eps), stable for large eps
    beta = float(stats.binom.sf(v - 1, r, q))
    if delta == 0.0:
        return beta
    # P[v - i <= Bin(r, q) < v] for i = 1..v: cumulative sums of pmf(v-1), pmf(v-2), ..., pmf(0)
    below = stats.binom.pmf(np.arange(v - 1, -1, -1), r, q)
    alpha = float(np.max(np.cumsum(below) / np.arange(1, v + 1)))
    return min(1.0, beta + alpha * delta * 2.0 * m)


def one_run_epsilon(m: int, r: int, v: int, delta: float = 0.0, p: float = DEFAULT_P) -> float:
    r"""Largest epsilon rejected at significance ``p`` by ``v`` correct out of ``r`` guesses.

    Steinke, Nasr & Jagielski 2023 (Algorithm 1, Appendix D): the p-value of
    :func:`one_run_p_value` decreases in eps, and the bound is
    :math:`\sup\{\varepsilon : p\text{-value}(\varepsilon) \le p\}`, found by doubling an upper
    end from 1 and then bisecting to an absolute tolerance of 1e-9. The lower end of the final
    bracket is returned, so the bound is never rounded up. With probability at least ``1 - p``
    the trainer is **not** (eps', delta)-DP for any eps' below the result.

    Parameters
    ----------
    m, r, v : int
        Canaries, guesses and correct guesses (see :func:`one_run_p_value`).
    delta : float
        In [0, 1).
    p : float
        Significance in (0, 1); ``p = 0.05`` is 95 % confidence.

    Returns
    -------
    float
        The epsilon lower bound (``>= 0``; 0 when even eps = 0 is not rejected).

    Examples
    --------
    >>> round(one_run_epsilon(1000, 1000, 1000), 2)
    5.81
    """
    m, r, v = _check_counts(m, r, v)
    delta = _check_delta(delta)
    p = check_probability(p, "p")
    return _one_run_epsilon(m, r, v, delta, p)


def _one_run_epsilon(m: int, r: int, v: int, delta: float, p: float) -> float:
    def rejected(eps: float) -> bool:
        return _one_run_p_value(m, r, v, eps, delta) <= p

    if not rejected(0.0):
        return 0.0
    lo, hi = 0.0, _EPS_SEARCH_START
    while rejected(hi):
        lo, hi = hi, 2.0 * hi
        if hi > _EPS_MAX:
            return _EPS_MAX
    while hi - lo > _EPS_TOLERANCE:
        mid = 0.5 * (lo + hi)
        if rejected(mid):
            lo = mid
        else:
            hi = mid
    return lo


# ------------------------------------------------------------------ one run: from scores
@dataclass(frozen=True)
class OneRunAudit:
    """Result of :func:`one_run_audit`.

    Attributes
    ----------
    epsilon : float
        The epsilon lower bound, valid at confidence ``1 - p``.
    m : int
        Canaries the bound is computed on (all of them, or the evaluation split).
    r, v : int
        Guesses made and correct guesses on those canaries.
    k_plus, k_minus : int
        Guesses "in" (highest scores) and "out" (lowest scores) on those canaries.
    delta, p : float
        Parameters of the bound.
    selection : {"bonferroni", "split", "given"}
        How ``k_plus``/``k_minus`` were chosen: the best of ``n_candidates`` fixed candidates,
        each tested at ``p / n_candidates`` (Bonferroni); on a random calibration split of the
        canaries, the bound computed on the others; or given by the caller.
    n_candidates : int
        Candidate ``(k_plus, k_minus)`` pairs considered.
    n_nan : int
        Canaries whose score was NaN (treated as the lowest score).
    """

    epsilon: float
    m: int
    r: int
    v: int
    k_plus: int
    k_minus: int
    delta: float
    p: float
    selection: OneRunSelection
    n_candidates: int
    n_nan: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict."""
        return asdict(self)


def _default_candidates(m: int) -> list[tuple[int, int]]:
    """``(k, 0)`` and ``(k, k)`` for ``k = round(f * m)`` over :data:`DEFAULT_K_FRACTIONS`."""
    ks = sorted({max(1, round(f * m)) for f in DEFAULT_K_FRACTIONS})
    pairs = [(k, 0) for k in ks] + [(k, k) for k in ks if 2 * k <= m]
    return list(dict.fromkeys(pairs))


def _check_candidates(
    candidates: Sequence[tuple[int, int]] | None, m: int
) -> list[tuple[int, int]]:
    if candidates is None:
        return _default_candidates(m)
    out: list[tuple[int, int]] = []
    try:
        items = list(candidates)
    except TypeError:
        raise ValidationError(
            f"candidates: expected a sequence of (k_plus, k_minus) pairs, got {candidates!r}"
        ) from None
    if not items:
        raise ValidationError("candidates: expected at least one (k_plus, k_minus) pair")
    for i, pair in enumerate(items):
        try:
            kp, km = pair
        except (TypeError, ValueError):
            raise ValidationError(
                f"candidates[{i}]: expected a (k_plus, k_minus) pair, got {pair!r}"
            ) from None
        kp = _check_int(kp, f"candidates[{i}].k_plus")
        km = _check_int(km, f"candidates[{i}].k_minus")
        if kp + km < 1:
            raise ValidationError(f"candidates[{i}]: expected at least one guess, got (0, 0)")
        if kp + km > m:
            raise ValidationError(
                f"candidates[{i}]: k_plus + k_minus = {kp + km} exceeds the {m} canaries"
            )
        out.append((kp, km))
    return out


def _guess_counts(
    order: NDArray[np.intp], member: NDArray[np.bool_], k_plus: int, k_minus: int
) -> tuple[int, int]:
    """``(r, v)`` of guessing "in" on ``order[:k_plus]`` and "out" on ``order[-k_minus:]``.

    ``order`` sorts the canaries by decreasing score.
    """
    correct_in = int(member[order[:k_plus]].sum())
    correct_out = int((~member[order[order.size - k_minus :]]).sum()) if k_minus else 0
    return k_plus + k_minus, correct_in + correct_out


def _decreasing_order(s: NDArray[np.float64], rng: np.random.Generator) -> NDArray[np.intp]:
    """Indices sorting ``s`` by decreasing score, ties broken by a random permutation.

    Breaking ties by the input order would let the order of the records (members first, say)
    decide guesses, which the one-run theorem forbids: guesses may depend on the scores only.
    """
    perm = rng.permutation(s.size)
    return perm[np.argsort(-s[perm], kind="stable")]


def _best_candidate(
    s: NDArray[np.float64],
    member: NDArray[np.bool_],
    candidates: list[tuple[int, int]],
    delta: float,
    p: float,
    rng: np.random.Generator,
) -> tuple[float, int, int, int, int]:
    """``(eps, k_plus, k_minus, r, v)`` of the candidate with the largest bound at ``p``."""
    order = _decreasing_order(s, rng)
    m = s.size
    best: tuple[float, int, int, int, int] | None = None
    for kp, km in candidates:
        r, v = _guess_counts(order, member, kp, km)
        eps = _one_run_epsilon(m, r, v, delta, p)
        if best is None or eps > best[0]:
            best = (eps, kp, km, r, v)
    assert best is not None  # candidates is never empty
    return best


def one_run_audit(
    scores: ArrayLike,
    is_member: ArrayLike,
    *,
    delta: float = 0.0,
    p: float = DEFAULT_P,
    selection: OneRunSelection = "bonferroni",
    candidates: Sequence[tuple[int, int]] | None = None,
    k_plus: int | None = None,
    k_minus: int | None = None,
    calibration_fraction: float = DEFAULT_CALIBRATION_FRACTION,
    rng: SeedLike = 0,
) -> OneRunAudit:
    r"""One-run privacy audit from the scores of ``m`` canaries (Steinke, Nasr & Jagielski 2023).

    Each canary was included in the single training run by an independent fair coin
    (``is_member``). The auditor sorts the canaries by score, guesses "in" for the ``k+``
    highest and "out" for the ``k-`` lowest, and abstains on the rest; with ``r = k+ + k-``
    guesses of which ``v`` are right, :func:`one_run_epsilon` gives the bound. Ties in the scores
    are broken by a random permutation drawn from ``rng`` (never by the input order).

    ``k+`` and ``k-`` must not be chosen by looking at the coins. Three valid ways (``selection``):

    * ``"bonferroni"`` (default): every pair of ``candidates`` (default: ``(k, 0)`` and ``(k, k)``
      for ``k`` = 1 %, 2 %, 5 %, 10 %, 20 %, 30 %, 50 % of ``m``) is tested at significance
      ``p / len(candidates)`` on all ``m`` canaries, and the largest bound is returned. By the
      union bound the result holds with probability ``>= 1 - p``.
    * ``"split"``: a random ``calibration_fraction`` of the canaries picks the best candidate
      (as fractions of its size, at significance ``p``); the chosen fractions are applied to
      the other canaries, which alone give the bound (with ``m`` their number). Valid because
      the coins of the evaluation canaries are independent of the calibration canaries.
    * ``"given"``: ``k_plus`` and ``k_minus`` fixed in advance by the caller.

    Parameters
    ----------
    scores : array-like of shape (m,)
        Canary scores, higher = more likely included. NaN counts as the lowest score.
    is_member : array-like of shape (m,)
        The coin flips: True where the canary was included in training.
    delta : float
        In [0, 1).
    p : float
        Significance in (0, 1).
    selection : {"bonferroni", "split", "given"}
        See above.
    candidates : sequence of (k_plus, k_minus), optional
        Candidate guess counts for ``"bonferroni"`` (counts of all canaries) and ``"split"``
        (counts of the calibration canaries).
    k_plus, k_minus : int, optional
        The guess counts for ``"given"``.
    calibration_fraction : float
        In (0, 1); the share of canaries that choose ``k+``/``k-`` under ``"split"``.
    rng : int or numpy.random.Generator
        Seed or generator of the tie-breaking and of the split.

    Returns
    -------
    OneRunAudit
    """
    s, n_nan = _scores(scores)
    member = check_membership(is_member)
    check_same_length(scores=s, is_member=member)
    delta = _check_delta(delta)
    p = check_probability(p, "p")
    gen = as_generator(rng, "rng")
    m = s.size

    if selection == "given":
        if k_plus is None or k_minus is None:
            raise ValidationError('k_plus, k_minus: both are required with selection="given"')
        kp, km = _check_int(k_plus, "k_plus"), _check_int(k_minus, "k_minus")
        if not 1 <= kp + km <= m:
            raise ValidationError(
                f"k_plus, k_minus: expected 1 <= k_plus + k_minus <= m = {m}, got {kp + km}"
            )
        r, v = _guess_counts(_decreasing_order(s, gen), member, kp, km)
        eps = _one_run_epsilon(m, r, v, delta, p)
        return OneRunAudit(eps, m, r, v, kp, km, delta, p, "given", 1, n_nan)
    if k_plus is not None or k_minus is not None:
        raise ValidationError(
            f'k_plus, k_minus: only used with selection="given", got selection={selection!r}'
        )
    if selection == "bonferroni":
        cands = _check_candidates(candidates, m)
        eps, kp, km, r, v = _best_candidate(s, member, cands, delta, p / len(cands), gen)
        return OneRunAudit(eps, m, r, v, kp, km, delta, p, "bonferroni", len(cands), n_nan)
    if selection == "split":
        fraction = check_probability(calibration_fraction, "calibration_fraction")
        n_cal = round(fraction * m)
        if n_cal < 1 or n_cal >= m:
            raise ValidationError(
                f"calibration_fraction: {fraction} of {m} canaries leaves an empty split"
            )
        perm = gen.permutation(m)
        cal, ev = perm[:n_cal], perm[n_cal:]
        cands = _check_candidates(candidates, n_cal)
        _, kp_c, km_c, _, _ = _best_candidate(s[cal], member[cal], cands, delta, p, gen)
        m_ev = ev.size
        kp = min(m_ev, round(kp_c * m_ev / n_cal))
        km = min(m_ev - kp, round(km_c * m_ev / n_cal))
        r, v = _guess_counts(_decreasing_order(s[ev], gen), member[ev], kp, km)
        eps = _one_run_epsilon(m_ev, r, v, delta, p)
        return OneRunAudit(eps, m_ev, r, v, kp, km, delta, p, "split", len(cands), n_nan)
    raise ValidationError(
        f"selection: expected 'bonferroni', 'split' or 'given', got {selection!r}"
    )


# ---------------------------------------------------------- multi-run (Jagielski 2020)
def _in_out(
    scores_in: ArrayLike, scores_out: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Concatenated scores (NaN kept: metrics treats it as -inf) and the IN indicator."""
    a = check_array(scores_in, "scores_in", ndim=1, finite=False)
    b = check_array(scores_out, "scores_out", ndim=1, finite=False)
    if a.size == 0:
        raise ValidationError("scores_in: expected the scores of at least one IN trial")
    if b.size == 0:
        raise ValidationError("scores_out: expected the scores of at least one OUT trial")
    return np.concatenate([a, b]), np.r_[np.ones(a.size, bool), np.zeros(b.size, bool)]


def canary_audit(
    scores_in: ArrayLike,
    scores_out: ArrayLike,
    *,
    delta: float = 0.0,
    alpha: float = DEFAULT_ALPHA,
    threshold: float | None = None,
    calibration_fraction: float = DEFAULT_CALIBRATION_FRACTION,
    rng: SeedLike = 0,
) -> EpsilonBound:
    r"""Multi-run canary audit of Jagielski, Ullman & Oprea (NeurIPS 2020).

    Each trial is one training run, with the canary (or poison set) IN or OUT, and one score
    (higher = IN). A threshold test "IN iff score >= t" is chosen on a stratified random
    ``calibration_fraction`` of the trials (the largest bound there) and evaluated on the other
    trials with :func:`miaudit.metrics.epsilon_lower_bound`:

    .. math::
        \varepsilon \ge \max\left\{\ln\frac{\mathrm{TPR}_{lo} - \delta}{\mathrm{FPR}_{hi}},\;
        \ln\frac{\mathrm{TNR}_{lo} - \delta}{\mathrm{FNR}_{hi}}\right\},

    with one-sided Clopper–Pearson bounds at ``alpha / 2`` each, valid with probability
    ``>= 1 - alpha``. Jagielski et al. choose the threshold on separate trials; the split here
    does the same with the trials at hand.

    Parameters
    ----------
    scores_in : array-like of shape (n_in,)
        Scores of the canary in the runs that trained on it.
    scores_out : array-like of shape (n_out,)
        Scores of the canary in the runs that did not.
    delta : float
        In [0, 1).
    alpha : float
        In (0, 1).
    threshold : float, optional
        A threshold fixed in advance: then every trial is used for the bound (no split).
    calibration_fraction : float
        In (0, 1): share of each side's trials that chooses the threshold.
    rng : int or numpy.random.Generator
        Seed or generator of the split.

    Returns
    -------
    EpsilonBound
        With ``selection="split"`` (or ``"given"`` for a fixed threshold); its counts are those
        of the evaluation trials.
    """
    s, m = _in_out(scores_in, scores_out)
    if threshold is not None:
        return epsilon_lower_bound_from_scores(s, m, delta=delta, alpha=alpha, threshold=threshold)
    return epsilon_lower_bound_from_scores(
        s, m, delta=delta, alpha=alpha, calibration_fraction=calibration_fraction, rng=rng
    )


# ------------------------------------------------------------- attack scores, one model
def epsilon_lower_bound_split(
    scores: ArrayLike,
    is_member: ArrayLike,
    *,
    delta: float = 0.0,
    alpha: float = DEFAULT_ALPHA,
    calibration_fraction: float = DEFAULT_CALIBRATION_FRACTION,
    rng: SeedLike = 0,
) -> EpsilonBound:
    """Valid epsilon lower bound of an attack: threshold on one half, bound on the other.

    A stratified random ``calibration_fraction`` (default one half) of the members and of the
    non-members picks the threshold with the largest bound of
    :func:`miaudit.metrics.epsilon_lower_bound`; the bound reported is that threshold's bound on
    the remaining records only, so the Clopper–Pearson confidence ``1 - alpha`` is not spent on
    the choice (``selection="split"``). This is the default to report; see the module docstring
    for what a bound from a single model's records means.

    Parameters
    ----------
    scores, is_member : array-like of shape (n,)
        Attack scores (higher = member; NaN = lowest) and the truth. At least two records of
        each class.
    delta, alpha : float
        Parameters of the bound.
    calibration_fraction : float
        In (0, 1).
    rng : int or numpy.random.Generator
        Seed or generator of the split.

    Returns
    -------
    EpsilonBound
    """
    return epsilon_lower_bound_from_scores(
        scores,
        is_member,
        delta=delta,
        alpha=alpha,
        calibration_fraction=calibration_fraction,
        rng=rng,
    )


def epsilon_lower_bound_optimistic(
    scores: ArrayLike, is_member: ArrayLike, *, delta: float = 0.0, alpha: float = DEFAULT_ALPHA
) -> EpsilonBound:
    """**Optimistic** epsilon bound: the best threshold chosen on the same records it is scored on.

    The maximum over every threshold of :func:`miaudit.metrics.epsilon_lower_bound`, each valid
    at ``1 - alpha`` alone; the maximum of many is not (``selection="best_on_same_data"``). It is
    what earlier reports showed and is useful to rank attacks; do not report it as a bound (use
    :func:`epsilon_lower_bound_split`).
    """
    return epsilon_lower_bound_from_scores(scores, is_member, delta=delta, alpha=alpha)


# ------------------------------------------------------------------- Gaussian DP (Nasr)
def gdp_delta(mu: float, eps: float) -> float:
    r"""The delta of mu-GDP at epsilon (Dong, Roth & Su 2022, Corollary 2.13).

    .. math::
        \delta(\varepsilon) = \Phi\left(-\frac{\varepsilon}{\mu} + \frac{\mu}{2}\right)
        - e^{\varepsilon}\,\Phi\left(-\frac{\varepsilon}{\mu} - \frac{\mu}{2}\right),

    computed in the log domain. A mu-GDP mechanism is (eps, delta(eps))-DP for every eps >= 0,
    and no smaller delta holds for the Gaussian mechanism.

    Parameters
    ----------
    mu : float
        ``>= 0``.
    eps : float
        ``>= 0``.
    """
    mu = _check_mu(mu)
    eps = _check_eps(eps)
    return _gdp_delta(mu, eps)


def _check_mu(mu: Any) -> float:
    try:
        v = float(mu)
    except (TypeError, ValueError):
        raise ValidationError(f"mu: expected a number >= 0, got {mu!r}") from None
    if not (math.isfinite(v) and v >= 0):
        raise ValidationError(f"mu: expected a finite number >= 0, got {mu!r}")
    return v


def _gdp_log_delta(mu: float, eps: float) -> float:
    a = stats.norm.logcdf(-eps / mu + mu / 2)
    b = eps + stats.norm.logcdf(-eps / mu - mu / 2)
    if b >= a:
        return -math.inf
    return float(a + math.log1p(-math.exp(b - a)))


def _gdp_delta(mu: float, eps: float) -> float:
    if mu == 0.0:
        return 0.0
    return math.exp(_gdp_log_delta(mu, eps))


def gdp_epsilon(mu: float, delta: float) -> float:
    r"""Smallest epsilon with :math:`\delta(\varepsilon) \le \delta` for mu-GDP (Dong, Roth & Su).

    Inverts :func:`gdp_delta`, which decreases in eps, by Brent's method on
    :math:`\ln\delta(\varepsilon) - \ln\delta`. 0 when ``delta >= delta(0) = 2 Phi(mu/2) - 1``.

    Parameters
    ----------
    mu : float
        ``>= 0``.
    delta : float
        In (0, 1).
    """
    mu = _check_mu(mu)
    d = check_probability(delta, "delta")
    return _gdp_epsilon(mu, d)


def _gdp_epsilon(mu: float, delta: float) -> float:
    if mu == 0.0:
        return 0.0
    log_delta = math.log(delta)

    def gap(eps: float) -> float:
        return _gdp_log_delta(mu, eps) - log_delta

    if gap(0.0) <= 0:
        return 0.0
    hi = _EPS_SEARCH_START
    while gap(hi) > 0:
        hi *= 2.0
        if hi > _EPS_MAX:
            return _EPS_MAX
    return float(optimize.brentq(gap, 0.0, hi, xtol=_EPS_TOLERANCE))


def gdp_mu_lower_bound(tp: int, fn: int, fp: int, tn: int, alpha: float = DEFAULT_ALPHA) -> float:
    r"""Lower bound on the Gaussian-DP mu from one test's confusion counts (Nasr et al. 2023).

    A mu-GDP mechanism's tests satisfy :math:`\mathrm{FNR} \ge \Phi(\Phi^{-1}(1 - \mathrm{FPR})
    - \mu)` (Dong, Roth & Su 2022, Eq. 6), so

    .. math::
        \mu \ge \Phi^{-1}(1 - \mathrm{FPR}_{hi}) - \Phi^{-1}(\mathrm{FNR}_{hi}),

    with one-sided Clopper–Pearson upper bounds ``FPR_hi`` (``fp`` of ``fp + tn``) and
    ``FNR_hi`` (``fn`` of ``fn + tp``), each at level ``alpha / 2``: the bound holds with
    probability ``>= 1 - alpha``. Only the test "member iff score >= threshold" is bounded
    (scores follow "higher = member"): adding the reversed test would need the other tails of
    both rates and double the failure probability. A negative value shows nothing and is
    returned as 0.

    Parameters
    ----------
    tp, fn, fp, tn : int
        Confusion counts (at least one member and one non-member).
    alpha : float
        In (0, 1).
    """
    tp, fn, fp, tn = (_check_int(x, k) for x, k in ((tp, "tp"), (fn, "fn"), (fp, "fp"), (tn, "tn")))
    if tp + fn == 0:
        raise ValidationError("tp, fn: there are no members (tp + fn = 0)")
    if fp + tn == 0:
        raise ValidationError("fp, tn: there are no non-members (fp + tn = 0)")
    a = check_probability(alpha, "alpha")
    return float(_gdp_mu(np.array([tp]), np.array([fn]), np.array([fp]), np.array([tn]), a)[0])


def _gdp_mu(
    tp: NDArray[np.int64],
    fn: NDArray[np.int64],
    fp: NDArray[np.int64],
    tn: NDArray[np.int64],
    alpha: float,
) -> NDArray[np.float64]:
    """Vectorised :func:`gdp_mu_lower_bound` on validated counts."""
    level = alpha / 2
    fpr_hi = _cp_upper(fp, fp + tn, level)
    fnr_hi = _cp_upper(fn, fn + tp, level)
    return np.maximum(0.0, stats.norm.isf(fpr_hi) - stats.norm.ppf(fnr_hi))


@dataclass(frozen=True)
class GdpAudit:
    """Result of :func:`gdp_audit`.

    Attributes
    ----------
    epsilon : float
        ``gdp_epsilon(mu, delta)``: the epsilon lower bound at ``delta``.
    mu : float
        The Gaussian-DP lower bound.
    threshold : float
        The test: "IN iff score >= threshold".
    tp, fn, fp, tn : int
        Confusion counts of that test on the trials the bound is computed on.
    delta, alpha : float
        Parameters.
    selection : {"bonferroni", "split", "given"}
        Best of all thresholds each at ``alpha / n_thresholds`` (Bonferroni, as in the
        reference code of Nasr et al.), chosen on a calibration split, or given.
    n_thresholds : int
        Thresholds the Bonferroni correction is paid over (1 otherwise).
    """

    epsilon: float
    mu: float
    threshold: float
    tp: int
    fn: int
    fp: int
    tn: int
    delta: float
    alpha: float
    selection: GdpSelection
    n_thresholds: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (``threshold`` may be ``inf``: written as a string)."""
        d = asdict(self)
        if not math.isfinite(self.threshold):
            d["threshold"] = "inf" if self.threshold > 0 else "-inf"
        return d


def _threshold_counts(
    s: NDArray[np.float64], m: NDArray[np.bool_]
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.int64]]:
    """Every distinct threshold (``+inf`` first, then the scores decreasing), with the
    members / non-members at or above it."""
    thresholds = np.r_[np.inf, np.unique(s)[::-1]]
    pos = np.sort(s[m])
    neg = np.sort(s[~m])
    tp = pos.size - np.searchsorted(pos, thresholds, side="left")
    fp = neg.size - np.searchsorted(neg, thresholds, side="left")
    return (
        np.asarray(thresholds, dtype=np.float64),
        np.asarray(tp, dtype=np.int64),
        np.asarray(fp, dtype=np.int64),
    )


def _best_gdp(
    s: NDArray[np.float64], m: NDArray[np.bool_], alpha: float
) -> tuple[float, float, int]:
    """``(mu, threshold, n_thresholds)`` of the best threshold at per-test level ``alpha``."""
    thresholds, tp, fp = _threshold_counts(s, m)
    n_pos, n_neg = int(m.sum()), int((~m).sum())
    mu = _gdp_mu(tp, n_pos - tp, fp, n_neg - fp, alpha)
    i = int(np.argmax(mu))
    return float(mu[i]), float(thresholds[i]), thresholds.size


def _gdp_at(
    s: NDArray[np.float64],
    m: NDArray[np.bool_],
    threshold: float,
    alpha: float,
    delta: float,
    selection: GdpSelection,
    n_thresholds: int,
) -> GdpAudit:
    tp, fn, fp, tn = confusion_at(s, m, threshold)
    mu = float(_gdp_mu(np.array([tp]), np.array([fn]), np.array([fp]), np.array([tn]), alpha)[0])
    return GdpAudit(
        _gdp_epsilon(mu, delta), mu, float(threshold), tp, fn, fp, tn, delta, alpha,
        selection, n_thresholds,
    )  # fmt: skip


def gdp_audit(
    scores_in: ArrayLike,
    scores_out: ArrayLike,
    *,
    delta: float,
    alpha: float = DEFAULT_ALPHA,
    selection: GdpSelection = "bonferroni",
    threshold: float | None = None,
    calibration_fraction: float = DEFAULT_CALIBRATION_FRACTION,
    rng: SeedLike = 0,
) -> GdpAudit:
    r"""Gaussian-DP audit of Nasr et al. (USENIX Security 2023) from IN/OUT canary scores.

    For a threshold test, :func:`gdp_mu_lower_bound` gives
    :math:`\mu \ge \Phi^{-1}(1 - \mathrm{FPR}_{hi}) - \Phi^{-1}(\mathrm{FNR}_{hi})` and
    :func:`gdp_epsilon` converts mu to epsilon at ``delta`` (Dong, Roth & Su 2022, Cor. 2.13).
    The threshold is chosen (``selection``):

    * ``"bonferroni"`` (default, as in the reference implementation): the best of all ``T``
      distinct thresholds, each bounded at ``alpha / T``; valid at ``1 - alpha``.
    * ``"split"``: on a stratified random ``calibration_fraction`` of the trials (at level
      ``alpha``); the bound is computed on the others.
    * ``"given"``: ``threshold`` fixed in advance; all trials are used.

    Parameters
    ----------
    scores_in, scores_out : array-like of shape (n_in,), (n_out,)
        Canary scores in runs that trained on the canary and in runs that did not. Each trial
        should be an independent training run. NaN is the lowest score.
    delta : float
        In (0, 1).
    alpha : float
        In (0, 1).
    selection : {"bonferroni", "split", "given"}
    threshold : float, optional
        Required for, and only for, ``"given"``.
    calibration_fraction : float
        In (0, 1).
    rng : int or numpy.random.Generator
        Seed or generator of the split.

    Returns
    -------
    GdpAudit
    """
    s, m = _in_out(scores_in, scores_out)
    s = np.where(np.isnan(s), -np.inf, s)
    delta = check_probability(delta, "delta")
    alpha = check_probability(alpha, "alpha")
    if selection == "given":
        if threshold is None:
            raise ValidationError('threshold: required with selection="given"')
        t = float(threshold)
        if math.isnan(t):
            raise ValidationError("threshold: expected a number, got NaN")
        return _gdp_at(s, m, t, alpha, delta, "given", 1)
    if threshold is not None:
        raise ValidationError(
            f'threshold: only used with selection="given", got selection={selection!r}'
        )
    if selection == "bonferroni":
        thresholds, _, _ = _threshold_counts(s, m)
        n_t = thresholds.size
        _, t, _ = _best_gdp(s, m, alpha / n_t)
        result = _gdp_at(s, m, t, alpha / n_t, delta, "bonferroni", n_t)
        return replace(result, alpha=alpha)
    if selection == "split":
        fraction = check_probability(calibration_fraction, "calibration_fraction")
        calib = _stratified_split(m, fraction, as_generator(rng, "rng"))
        _, t, _ = _best_gdp(s[calib], m[calib], alpha)
        return _gdp_at(s[~calib], m[~calib], t, alpha, delta, "split", 1)
    raise ValidationError(
        f"selection: expected 'bonferroni', 'split' or 'given', got {selection!r}"
    )


def _stratified_split(
    m: NDArray[np.bool_], fraction: float, rng: np.random.Generator
) -> NDArray[np.bool_]:
    """Calibration mask with ``round(fraction * k)`` of each class (at least one in each part)."""
    check_both_classes(m, "scores_in/scores_out")
    calib = np.zeros(m.size, dtype=bool)
    for cls, name in ((True, "scores_in"), (False, "scores_out")):
        idx = np.flatnonzero(m == cls)
        if idx.size < 2:
            raise ValidationError(
                f"{name}: need at least 2 trials to split into calibration and evaluation, "
                f"got {idx.size}"
            )
        k = min(max(1, round(fraction * idx.size)), idx.size - 1)
        calib[rng.choice(idx, size=k, replace=False)] = True
    return calib
