"""Plots of attack results: log-log ROC curves and member / non-member score histograms.

Plots draw what :mod:`miaudit.metrics` computed; they do no metric math themselves. They use
matplotlib's object API with the Agg canvas (no pyplot, no global backend change), so they work
on headless machines and do not disturb a user's interactive matplotlib session.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import ArrayLike, NDArray

from miaudit._format import format_fpr
from miaudit._validation import check_array, check_membership, check_same_length
from miaudit.exceptions import ValidationError
from miaudit.metrics import MetricsSummary

__all__ = ["clipped_bin_edges", "plot_roc", "plot_score_histograms"]

#: Resolution of saved figures (dots per inch).
DPI = 150
#: Size of the ROC figure in inches.
#: Up to this many curves the legend sits inside the axes (lower right); more go outside.
LEGEND_INSIDE_MAX = 4
#: Inches added to the ROC figure's width when the legend sits outside the axes.
LEGEND_OUTSIDE_EXTRA_WIDTH = 4.0
ROC_FIGSIZE = (5.5, 5.0)
#: Size of one histogram panel in inches, and panels per row.
HIST_PANEL_SIZE = (4.0, 3.0)
HIST_COLUMNS = 3
#: Histogram bins span these quantiles of an attack's pooled (member and non-member) finite
#: scores, so that a few extreme scores (a LOSS score of -40 among scores near 0) do not
#: squeeze all the others into one bin. Scores outside are counted in the edge bins.
HIST_CLIP_QUANTILES = (0.005, 0.995)
#: Lower axis limit when no curve has a positive FPR and ``min_fpr`` is not given.
FALLBACK_MIN_FPR = 1e-5


F = TypeVar("F", bound=Callable[..., Any])


def _plain_text(fn: F) -> F:
    """Draw with mathtext off: a ``$`` in an attack label or file name is text, not TeX (a
    ``$\\foo$`` label would otherwise abort the plot)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import matplotlib

        with matplotlib.rc_context({"text.parse_math": False}):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _check_curve(name: str, curve: tuple[ArrayLike, ArrayLike]) -> tuple[NDArray, NDArray]:
    try:
        fpr, tpr = curve
    except (TypeError, ValueError):
        raise ValidationError(f"curves[{name!r}]: expected a pair (fpr, tpr)") from None
    fpr = check_array(fpr, f"curves[{name!r}] fpr", ndim=1)
    tpr = check_array(tpr, f"curves[{name!r}] tpr", ndim=1)
    check_same_length(fpr=fpr, tpr=tpr)
    for arr, what in ((fpr, "fpr"), (tpr, "tpr")):
        if arr.size and (arr.min() < 0 or arr.max() > 1):
            raise ValidationError(f"curves[{name!r}] {what}: values must lie in [0, 1]")
    return fpr, tpr


def _legend_label(name: str, summary: MetricsSummary | None, legend_fpr: float) -> str:
    if summary is None:
        return name
    parts = [f"AUC {summary.auc:.3f}"]
    at = summary.find(legend_fpr)
    if at is not None:
        suffix = "" if at.reachable else " (at FPR 0)"
        parts.append(f"TPR@{format_fpr(legend_fpr)} {100 * at.tpr:.1f}%{suffix}")
    return f"{name} ({', '.join(parts)})"


@_plain_text
def plot_roc(
    curves: Mapping[str, tuple[ArrayLike, ArrayLike]],
    path: str | Path,
    *,
    min_fpr: float | None = None,
    title: str = "ROC curve (log-log)",
    summaries: Mapping[str, MetricsSummary] | None = None,
    legend_fpr: float = 1e-3,
) -> Path:
    """Save a log-log ROC plot of one or more curves, with the chance diagonal.

    Parameters
    ----------
    curves : mapping of str to (fpr, tpr)
        Name → ``(fpr, tpr)`` arrays of shape (k,), e.g. the first two outputs of
        :func:`miaudit.metrics.roc_curve`.
    path : str or Path
        Output file (PNG, or any format matplotlib infers from the suffix). Parent folders
        are created.
    min_fpr : float, optional
        Lower limit of both axes: the smallest FPR that the data can resolve,
        ``1 / n_non_members``. Default: the smallest positive FPR over all curves.
    title : str
        Plot title.
    summaries : mapping of str to MetricsSummary, optional
        When a curve's name is present, its legend entry shows the AUC and the TPR at
        ``legend_fpr`` (if that target was computed).
    legend_fpr : float
        Target FPR quoted in the legend.

    Returns
    -------
    Path
        ``path``.
    """
    if not curves:
        raise ValidationError("curves: expected at least one (fpr, tpr) curve")
    checked = {name: _check_curve(name, c) for name, c in curves.items()}
    if min_fpr is None:
        positive = [f[f > 0].min() for f, _ in checked.values() if np.any(f > 0)]
        min_fpr = float(min(positive)) if positive else FALLBACK_MIN_FPR
    elif not (0 < min_fpr < 1) or not math.isfinite(min_fpr):
        raise ValidationError(f"min_fpr: expected a value in (0, 1), got {min_fpr!r}")
    summaries = summaries or {}

    outside = len(curves) > LEGEND_INSIDE_MAX
    width, height = ROC_FIGSIZE
    fig = Figure(figsize=(width + LEGEND_OUTSIDE_EXTRA_WIDTH, height) if outside else ROC_FIGSIZE)
    ax = fig.add_subplot()
    for name, (fpr, tpr) in checked.items():
        # Steps: between two FPRs a threshold rule achieves the TPR of the left point; a straight
        # segment would overstate the TPR (most visibly left of the first nonzero FPR).
        ax.plot(
            fpr,
            tpr,
            lw=1.5,
            drawstyle="steps-post",
            label=_legend_label(name, summaries.get(name), legend_fpr),
        )
    ax.plot([min_fpr, 1], [min_fpr, 1], ls="--", lw=1, color="gray", label="chance")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(min_fpr, 1)
    ax.set_ylim(min_fpr, 1)
    ax.set_xlabel(f"false-positive rate (reachable down to {min_fpr:.2g})")
    ax.set_ylabel("true-positive rate")
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    if outside:
        # Many curves: a legend inside would hide the low-FPR region the plot is about.
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small")
    else:
        ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    return _save(fig, path)


#: Largest absolute score drawn unscaled: matplotlib's tick locators overflow on axes that span
#: nearly the whole float64 range, so larger scores are drawn divided by a power of ten.
MAX_UNSCALED_SCORE = 1e100


def _axis_scale(values: NDArray[np.float64]) -> float:
    """1, or the power of ten that brings the largest ``|value|`` below 10."""
    top = float(np.max(np.abs(values)))
    if top <= MAX_UNSCALED_SCORE:
        return 1.0
    return float(10.0 ** math.floor(math.log10(top)))


def clipped_bin_edges(
    values: NDArray[np.float64], bins: int, quantiles: tuple[float, float] = HIST_CLIP_QUANTILES
) -> tuple[NDArray[np.float64], int]:
    """Edges of ``bins`` equal bins between two quantiles of ``values``, and how many lie outside.

    Parameters
    ----------
    values : ndarray of shape (k,)
        Finite values, ``k >= 1``.
    bins : int
        Number of bins.
    quantiles : (float, float)
        Lower and upper quantile levels (``numpy.quantile``, linear) that bound the bins. When
        they coincide (most values tied) the bins span the full range instead.

    Returns
    -------
    edges : ndarray of shape (bins + 1,)
    n_outside : int
        Number of values below the first or above the last edge.
    """
    lo, hi = (float(v) for v in np.quantile(values, quantiles))
    if lo == hi:
        lo, hi = float(values.min()), float(values.max())
    with np.errstate(over="ignore"):
        span_finite = bool(np.isfinite(hi - lo))
    if span_finite:
        edges = np.histogram_bin_edges(values, bins=bins, range=(lo, hi))
    else:  # scores near ±1.8e308: the width overflows, so space the edges at half scale
        edges = np.linspace(lo / 2, hi / 2, bins + 1) * 2
    return edges, int(np.count_nonzero((values < edges[0]) | (values > edges[-1])))


@_plain_text
def plot_score_histograms(
    scores_by_attack: Mapping[str, ArrayLike],
    is_member: ArrayLike,
    path: str | Path,
    *,
    bins: int = 50,
) -> Path:
    """Save one panel per attack with the score histograms of members and non-members.

    Parameters
    ----------
    scores_by_attack : mapping of str to array-like of shape (n,)
        Attack name → scores (higher = member) on the same ``n`` records.
    is_member : array-like of shape (n,)
        Ground truth, boolean or 0/1.
    path : str or Path
        Output file; parent folders are created.
    bins : int
        Number of bins shared by both histograms of a panel.

    Returns
    -------
    Path
        ``path``.

    Notes
    -----
    Histograms are normalised to densities, so classes of different sizes compare. The bins
    of a panel span the :data:`HIST_CLIP_QUANTILES` quantiles of that attack's finite scores
    (:func:`clipped_bin_edges`); scores beyond are counted in the first or last bin, and the
    axis label says how many. NaN and infinite scores cannot be binned: their number is written
    in the panel title.
    """
    if not scores_by_attack:
        raise ValidationError("scores_by_attack: expected at least one attack's scores")
    m = check_membership(is_member)
    n_panels = len(scores_by_attack)
    n_cols = min(HIST_COLUMNS, n_panels)
    n_rows = math.ceil(n_panels / n_cols)
    fig = Figure(figsize=(HIST_PANEL_SIZE[0] * n_cols, HIST_PANEL_SIZE[1] * n_rows))
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax, (name, scores) in zip(axes, scores_by_attack.items(), strict=False):
        s = check_array(scores, f"scores_by_attack[{name!r}]", ndim=1, finite=False)
        check_same_length(**{f"scores_by_attack[{name!r}]": s, "is_member": m})
        finite = np.isfinite(s)
        xlabel = "score (higher = member)"
        if finite.any():
            scale = _axis_scale(s[finite])
            if scale != 1.0:
                xlabel = f"score / {scale:.0e} (higher = member)"
            edges, n_outside = clipped_bin_edges(s[finite] / scale, bins)
            for sel, label, color in ((m, "members", "C3"), (~m, "non-members", "C0")):
                values = np.clip(s[sel & finite] / scale, edges[0], edges[-1])
                if values.size:
                    ax.hist(values, bins=edges, density=True, alpha=0.5, color=color, label=label)
            if n_outside:
                lo, hi = (f"{100 * q:g}%" for q in HIST_CLIP_QUANTILES)
                xlabel += f"\ntails clipped at {lo}–{hi}: {n_outside} in the edge bins"
            ax.legend(fontsize="small")
        n_bad = int((~finite).sum())
        ax.set_title(name if not n_bad else f"{name} ({n_bad} non-finite not shown)")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("density")
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: Figure, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI)
    return out
