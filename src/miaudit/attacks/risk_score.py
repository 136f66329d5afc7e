r"""Privacy risk score of Song & Mittal, "Systematic Evaluation of Privacy Risks of Machine
Learning Models", USENIX Security 2021.

The risk score of a record is the posterior probability that it is a member given the target
model's signal :math:`s` on it (the modified entropy :math:`\mathrm{Mentr}` by default):

.. math:: r(x) = \frac{\pi\,P_{in}(s \mid y)}{\pi\,P_{in}(s \mid y) + (1 - \pi)\,P_{out}(s \mid y)},

where :math:`P_{in}(\cdot \mid y)` and :math:`P_{out}(\cdot \mid y)` are normalised histograms of
the reference models' signals on the IN and on the OUT records of class :math:`y` (the
paper's shadow-model estimate), and :math:`\pi` is the prior probability of membership (0.5 in
the paper, which gives :math:`P_{in}/(P_{in} + P_{out})`). Higher = member.

Binning (as the authors' code): per class, ``n_bins`` bins spanning the smallest to the largest
reference signal of that class (IN and OUT together), logarithmically spaced by default
(``log_bins=True``, for non-negative signals such as the modified entropy; values below
:data:`LOG_BIN_FLOOR` are raised to it), linearly otherwise. Bins are half-open ``[e_i,
e_{i+1})`` except the last, which is closed; a target value below the first edge falls in the
first bin and one above the last edge in the last bin. A bin with no reference signal at all
gives the prior. Classes without both IN and OUT reference signals use the histograms of all
classes pooled. With ``q`` queries the signal is averaged over queries first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from miaudit._validation import check_count, check_probability
from miaudit.attacks import register
from miaudit.attacks._reference_stats import check_reference_signals, require_in_and_out
from miaudit.attacks.base import Attack, AttackData, AttackInfo
from miaudit.exceptions import ValidationError

__all__ = [
    "DEFAULT_N_BINS",
    "DEFAULT_PRIOR",
    "LOG_BIN_FLOOR",
    "PrivacyRiskScoreAttack",
    "RiskHistogram",
    "privacy_risk_scores",
]

#: Bins per class histogram (the authors' code uses 5).
DEFAULT_N_BINS = 5
#: Prior probability of membership (the paper's 0.5).
DEFAULT_PRIOR = 0.5
#: With logarithmic bins, signals below this are raised to it (the authors' ``small_delta``).
LOG_BIN_FLOOR = 1e-10

SIGNAL = "modified_entropy"
PAPER = (
    "Song, Mittal. Systematic Evaluation of Privacy Risks of Machine Learning Models. "
    "USENIX Security 2021"
)


def _bin_index(edges: NDArray[np.float64], values: NDArray[np.float64]) -> NDArray[np.int64]:
    """Bin of each value among ``[e_i, e_{i+1})`` (the last bin closed); values outside the
    edges go to the end bins."""
    idx = np.searchsorted(edges, values, side="right") - 1
    return np.clip(idx, 0, edges.size - 2)


@dataclass(frozen=True)
class RiskHistogram:
    """Normalised IN and OUT histograms over shared bin edges.

    Attributes
    ----------
    edges : ndarray of shape (n_bins + 1,)
    p_in, p_out : ndarray of shape (n_bins,)
        Fraction of the IN (OUT) reference signals in each bin.
    """

    edges: NDArray[np.float64]
    p_in: NDArray[np.float64]
    p_out: NDArray[np.float64]

    def bin_of(self, values: NDArray[np.float64]) -> NDArray[np.int64]:
        """Index of the bin of each value; values outside the edges go to the end bins."""
        return _bin_index(self.edges, values)

    @classmethod
    def fit(
        cls, in_values: NDArray[np.float64], out_values: NDArray[np.float64], n_bins: int, log: bool
    ) -> RiskHistogram:
        """Histogram the IN and OUT values (both non-empty) over ``n_bins`` shared bins."""
        both = np.concatenate([in_values, out_values])
        lo, hi = float(both.min()), float(both.max())
        if log:
            edges = np.logspace(np.log10(lo), np.log10(hi), n_bins + 1)
        else:
            edges = np.linspace(lo, hi, n_bins + 1)
        edges[0], edges[-1] = lo, hi
        p_in = np.bincount(_bin_index(edges, in_values), minlength=n_bins) / in_values.size
        p_out = np.bincount(_bin_index(edges, out_values), minlength=n_bins) / out_values.size
        return cls(edges, p_in, p_out)

    def risk(self, values: NDArray[np.float64], prior: float) -> NDArray[np.float64]:
        """:math:`\\pi P_{in} / (\\pi P_{in} + (1-\\pi) P_{out})` in each value's bin."""
        idx = self.bin_of(values)
        num = prior * self.p_in[idx]
        den = num + (1.0 - prior) * self.p_out[idx]
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), prior)


def privacy_risk_scores(
    target: ArrayLike,
    reference: ArrayLike,
    keep: ArrayLike,
    labels: ArrayLike,
    *,
    n_bins: int = DEFAULT_N_BINS,
    log_bins: bool = True,
    prior: float = DEFAULT_PRIOR,
) -> NDArray[np.float64]:
    """Privacy risk score (Song & Mittal, USENIX Security 2021), higher = member.

    Parameters
    ----------
    target : array-like of shape (n, q) or (n,)
        Target model's signal (any orientation; the modified entropy by default).
    reference : array-like of shape (m, n, q) or (m, n)
        Reference models' signal on the same records.
    keep : array-like of shape (m, n), bool
    labels : array-like of shape (n,)
        Class of each record (one histogram pair per distinct value).
    n_bins : int
        Bins per class histogram.
    log_bins : bool
        Logarithmically spaced bins (signals must be non-negative).
    prior : float
        Prior probability of membership, in (0, 1).

    Returns
    -------
    ndarray of shape (n,)
        Posterior probability of membership, in [0, 1].
    """
    tgt, ref, kp = check_reference_signals(target, reference, keep)
    lab = np.asarray(labels)
    if lab.shape != (tgt.shape[0],):
        raise ValidationError(f"labels: expected shape ({tgt.shape[0]},), got {lab.shape}")
    n_bins = check_count(n_bins, "n_bins", 1)
    prior = check_probability(prior, "prior")
    x, r = tgt.mean(axis=1), ref.mean(axis=2)
    if log_bins:
        worst = min(float(x.min()), float(r.min()))
        if worst < 0:
            raise ValidationError(
                f"log_bins: logarithmic bins need non-negative signals, found {worst:.4g}; "
                "pass log_bins=False"
            )
        x, r = np.maximum(x, LOG_BIN_FLOOR), np.maximum(r, LOG_BIN_FLOOR)
    require_in_and_out(kp, "privacy risk score", "signal to histogram")
    pooled: RiskHistogram | None = None
    scores = np.empty(x.size)
    for c in np.unique(lab):
        records = lab == c
        vin, vout = r[:, records][kp[:, records]], r[:, records][~kp[:, records]]
        if vin.size and vout.size:
            hist = RiskHistogram.fit(vin, vout, n_bins, log_bins)
        else:
            if pooled is None:
                pooled = RiskHistogram.fit(r[kp], r[~kp], n_bins, log_bins)
            hist = pooled
        scores[records] = hist.risk(x[records], prior)
    return scores


@register("privacy_risk_score")
class PrivacyRiskScoreAttack(Attack):
    """Song & Mittal privacy risk score on the modified entropy. Parameters: ``n_bins``,
    ``log_bins``, ``prior``; see :func:`privacy_risk_scores`."""

    info = AttackInfo(
        name="privacy_risk_score",
        title="Privacy risk score: P(member | signal) from per-class IN/OUT histograms",
        paper=PAPER,
        signals=(SIGNAL,),
        needs_references=True,
    )

    def __init__(
        self, n_bins: int = DEFAULT_N_BINS, log_bins: bool = True, prior: float = DEFAULT_PRIOR
    ) -> None:
        self.n_bins = check_count(n_bins, "n_bins", 1)
        self.log_bins = bool(log_bins)
        self.prior = check_probability(prior, "prior")

    def _score(self, data: AttackData) -> NDArray[np.float64]:
        return privacy_risk_scores(
            data.signal(SIGNAL, "target"),
            data.signal(SIGNAL, "references"),
            np.asarray(data.keep),
            np.asarray(data.labels),
            n_bins=self.n_bins,
            log_bins=self.log_bins,
            prior=self.prior,
        )
