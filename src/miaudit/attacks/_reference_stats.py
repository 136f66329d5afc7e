"""Input checks and per-record statistics shared by the reference-model attacks.

The reference-model attacks (LiRA, RMIA, Attack-R, calibrated losses) all receive

* ``target`` of shape ``(n, q)``: the audited model's signal on ``n`` records, ``q`` queries each
  (a 1-d ``(n,)`` array is read as ``q = 1``);
* ``reference`` of shape ``(m, n, q)``: ``m`` reference models on the same records (a 2-d
  ``(m, n)`` array is read as ``q = 1``);
* ``keep`` of shape ``(m, n)``, boolean: ``keep[i, j]`` is True when reference ``i`` trained on
  record ``j`` (it is IN for ``j``), False when it did not (OUT).

Everything here is float64 and vectorised over records and queries: masked means, medians and
standard deviations over the IN or the OUT references of every record, and interpolated
percentile ranks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from miaudit._validation import check_array, check_keep
from miaudit.exceptions import MissingRequirementError, ValidationError

Side = Literal["in", "out"]

__all__ = [
    "SideStats",
    "as_queries",
    "check_reference_signals",
    "has_in_and_out",
    "interpolated_rank",
    "masked_mean",
    "masked_median",
    "masked_sorted",
    "masked_sum",
    "references_by_record",
    "require_in_and_out",
    "require_references",
    "side_mask",
    "side_stats",
]


def as_queries(x: ArrayLike, name: str, lead_ndim: int = 1) -> NDArray[np.float64]:
    """Finite float64 signal with ``lead_ndim`` leading axes and a query axis.

    A signal without the query axis (``lead_ndim`` dimensions) gets one of length 1.
    """
    arr = check_array(x, name, ndim=(lead_ndim, lead_ndim + 1))
    if arr.ndim == lead_ndim:
        arr = arr[..., None]
    if arr.shape[-1] == 0:
        raise ValidationError(f"{name}: needs at least one query, got shape {arr.shape}")
    return arr


def check_reference_signals(
    target: ArrayLike, reference: ArrayLike, keep: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
    """Validate the ``(target, reference, keep)`` triple of a reference-model attack.

    Returns
    -------
    target : ndarray of shape (n, q)
    reference : ndarray of shape (m, n, q)
    keep : ndarray of shape (m, n), bool
    """
    tgt = as_queries(target, "target", 1)
    ref = as_queries(reference, "reference", 2)
    if ref.shape[1:] != tgt.shape:
        raise ValidationError(
            f"reference: expected shape (n_references, {tgt.shape[0]}, {tgt.shape[1]}) to match "
            f"target of shape {tgt.shape} (records, queries), got {ref.shape}"
        )
    if ref.shape[0] == 0:
        raise MissingRequirementError("reference: needs at least one reference model, got 0")
    return tgt, ref, check_keep(keep, shape=ref.shape[:2])


def side_mask(keep: NDArray[np.bool_], side: Side) -> NDArray[np.bool_]:
    """``keep`` for the IN side, ``~keep`` for the OUT side."""
    if side not in ("in", "out"):
        raise ValidationError(f"side: expected 'in' or 'out', got {side!r}")
    return keep if side == "in" else ~keep


def require_references(
    keep: NDArray[np.bool_], side: Side, attack: str, min_count: int = 1
) -> None:
    """Raise :class:`MissingRequirementError` when some record has fewer than ``min_count``
    reference models on ``side``; the message says how many records lack them."""
    counts = side_mask(keep, side).sum(axis=0)
    lacking = int((counts < min_count).sum())
    if lacking:
        what = side.upper()
        raise MissingRequirementError(
            f"{attack} needs at least {min_count} {what} reference model(s) for every record, "
            f"but {lacking} of {keep.shape[1]} records have fewer (smallest count "
            f"{int(counts.min())}); train more reference models or use a variant that does not "
            f"need {what} references"
        )


def has_in_and_out(keep: NDArray[np.bool_]) -> bool:
    """True when ``keep`` holds at least one IN (True) and one OUT (False) entry."""
    return bool(keep.any()) and not bool(keep.all())


def require_in_and_out(keep: NDArray[np.bool_], attack: str, what: str) -> None:
    """Raise :class:`MissingRequirementError` unless ``keep`` holds IN and OUT entries.

    For attacks that learn from the reference models' IN and OUT signals pooled over records;
    the message reads ``"{attack}: the reference models have no {IN|OUT} {what}"``.
    """
    if not has_in_and_out(keep):
        side = "OUT" if keep.all() else "IN"
        raise MissingRequirementError(f"{attack}: the reference models have no {side} {what}")


def masked_sum(x: NDArray[np.float64], weight: NDArray[np.float64]) -> NDArray[np.float64]:
    """``sum_i weight[i, j] * x[i, j, k]`` for every record ``j`` and query ``k``: shape (n, q).

    One ``einsum`` per query (faster than a single three-index contraction).
    """
    return np.stack([np.einsum("mn,mn->n", weight, x[:, :, k]) for k in range(x.shape[2])], 1)


def masked_mean(
    x: NDArray[np.float64], mask: NDArray[np.bool_]
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Mean over the references selected by ``mask``, per record and query.

    Parameters
    ----------
    x : ndarray of shape (m, n, q)
    mask : ndarray of shape (m, n), bool

    Returns
    -------
    mean : ndarray of shape (n, q)
        NaN where a record has no selected reference.
    count : ndarray of shape (n,)
    """
    count = mask.sum(axis=0)
    total = masked_sum(x, mask.astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count[:, None]
    return mean, count


def references_by_record(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """``x`` of shape (m, n, q) laid out (n, q, m), contiguous, so that rows sort fast."""
    return np.ascontiguousarray(np.moveaxis(x, 0, -1))


def masked_sorted(
    x: NDArray[np.float64],
    mask: NDArray[np.bool_],
    by_record: NDArray[np.float64] | None = None,
) -> NDArray[np.float64]:
    """The references selected by ``mask`` in increasing order, per record and query.

    Parameters
    ----------
    x : ndarray of shape (m, n, q)
    mask : ndarray of shape (m, n), bool
    by_record : ndarray of shape (n, q, m), optional
        :func:`references_by_record` of ``x`` when already computed.

    Returns
    -------
    ndarray of shape (n, q, m)
        Row ``[j, k]`` holds the selected signals of record ``j``, query ``k``, sorted, then
        ``+inf`` for every unselected reference.
    """
    rows = np.moveaxis(x, 0, -1) if by_record is None else by_record
    rows = np.where(mask.T[:, None, :], rows, np.inf)
    rows.sort(axis=-1)
    return rows


def masked_median(
    x: NDArray[np.float64],
    mask: NDArray[np.bool_],
    by_record: NDArray[np.float64] | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Median over the references selected by ``mask``, per record and query.

    Every (record, query) row of :func:`masked_sorted` is read at positions ``(k - 1) // 2``
    and ``k // 2`` of its ``k`` selected values, whose mean is the median (``numpy.median``'s
    definition). Shapes as in :func:`masked_mean`; ``by_record`` as in :func:`masked_sorted`.
    """
    count = mask.sum(axis=0)
    rows = masked_sorted(x, mask, by_record)
    safe = np.maximum(count, 1)[:, None, None]
    lo = np.take_along_axis(rows, np.broadcast_to((safe - 1) // 2, (*rows.shape[:2], 1)), -1)
    hi = np.take_along_axis(rows, np.broadcast_to(safe // 2, (*rows.shape[:2], 1)), -1)
    median = (lo[..., 0] + hi[..., 0]) / 2.0
    median[count == 0] = np.nan
    return median, count


@dataclass(frozen=True)
class SideStats:
    r"""Count, mean and sum of squared deviations of one side's reference signals per record.

    Attributes
    ----------
    count : ndarray of shape (n,)
        Number of references on this side for each record.
    mean : ndarray of shape (n, q)
        Mean signal (NaN where ``count`` is 0).
    sq_dev : ndarray of shape (n, q)
        :math:`\sum_i (x_i - \bar x)^2` over the side's references (NaN where ``count`` is 0).
    """

    count: NDArray[np.int64]
    mean: NDArray[np.float64]
    sq_dev: NDArray[np.float64]

    def std(self) -> NDArray[np.float64]:
        """Per-record std, ddof 0 (``numpy.std``), NaN where ``count`` is 0."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.sqrt(self.sq_dev / self.count[:, None])


def _stats_from_sums(
    count: NDArray[np.int64],
    s1: NDArray[np.float64],
    s2: NDArray[np.float64],
    shift: NDArray[np.float64],
) -> SideStats:
    """:class:`SideStats` from the count and the sums of ``d`` and ``d**2`` (``d = x - shift``)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_d = s1 / count[:, None]
    sq = np.maximum(s2 - s1 * mean_d, 0.0)
    sq[count == 0] = np.nan
    return SideStats(count=count, mean=shift + mean_d, sq_dev=sq)


def side_stats(x: NDArray[np.float64], keep: NDArray[np.bool_]) -> tuple[SideStats, SideStats]:
    r""":class:`SideStats` of the IN side (``keep``) and of the OUT side (``~keep``).

    Both come from the same few passes over ``x`` (m, n, q): with ``d = x - x[0]`` (a shift
    inside each record's range, against cancellation), the sums of ``d`` and ``d**2`` over all
    references and over the IN references; OUT sums are the differences. Then
    :math:`\bar x = x_0 + S_1/k` and :math:`\sum (x - \bar x)^2 = S_2 - S_1^2/k`.
    """
    weight = keep.astype(np.float64)
    shift = x[0]
    d = x - shift
    s1_all, s1_in = d.sum(axis=0), masked_sum(d, weight)
    np.multiply(d, d, out=d)
    s2_all, s2_in = d.sum(axis=0), masked_sum(d, weight)
    count_in = keep.sum(axis=0)
    count_out = keep.shape[0] - count_in
    return (
        _stats_from_sums(count_in, s1_in, s2_in, shift),
        _stats_from_sums(count_out, s1_all - s1_in, s2_all - s2_in, shift),
    )


def masked_stats(x: NDArray[np.float64], mask: NDArray[np.bool_]) -> SideStats:
    """:class:`SideStats` of the references selected by ``mask`` (m, n) — for masks that are not
    the complement of each other (see :func:`equal_count_masks`)."""
    weight = mask.astype(np.float64)
    shift = x[0]
    d = x - shift
    s1 = masked_sum(d, weight)
    np.multiply(d, d, out=d)
    return _stats_from_sums(mask.sum(axis=0), s1, masked_sum(d, weight), shift)


#: Whether reference attacks fit every record to equal IN/OUT reference counts by default (the
#: pure functions and the registered attacks alike). On: in a leave-one-out audit over a
#: balanced keep matrix the counts depend on membership (see :func:`equal_count_masks`), and
#: unequal counts make the score depend on membership even for models that learned nothing.
#: The published reference code does not equalise; pass ``equalize=False`` to match it.
EQUALIZE_DEFAULT = True


def equal_count_masks(keep: NDArray[np.bool_]) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """IN and OUT masks that give every record the same number of references on each side.

    Each side keeps, for every record, its first ``k`` references in model order, where ``k``
    is the smallest count of that side over all records (the LiRA reference code truncates the
    same way). Why it matters: in a leave-one-out audit over a balanced keep matrix, a record
    the target trained on has one IN reference fewer and one OUT reference more than a record
    it did not train on. Statistics fitted to different sample sizes differ in distribution
    (a per-record std from fewer samples is smaller on average), which makes the score depend
    on membership even for models that learned nothing.

    Returns
    -------
    in_mask, out_mask : ndarray of shape (m, n), bool
    """
    out = []
    for side in (keep, ~keep):
        k = int(side.sum(axis=0).min())
        out.append(side & (np.cumsum(side, axis=0) <= k))
    return out[0], out[1]


def interpolated_rank(
    values: NDArray[np.float64],
    below: NDArray[np.int64],
    sorted_values: Callable[[NDArray[np.int64]], NDArray[np.float64]],
    count: NDArray[np.int64] | int,
) -> NDArray[np.float64]:
    r"""Position of ``values`` in sorted samples, by inverting ``numpy.quantile(method="linear")``.

    For ``k`` sorted samples :math:`v_0 \le \dots \le v_{k-1}` and a value :math:`s` with
    :math:`c = \#\{i : v_i < s\}`, the rank is 0 when :math:`c = 0`, 1 when :math:`c = k`, and
    otherwise

    .. math:: \frac{(c - 1) + (s - v_{c-1}) / (v_c - v_{c-1})}{k - 1},

    which is ``numpy.interp(s, v, linspace(0, 1, k))`` for distinct samples: the level
    :math:`\alpha` at which ``numpy.quantile(v, alpha)`` equals :math:`s`.

    Parameters
    ----------
    values : ndarray
        The values :math:`s` to place.
    below : ndarray of int, same shape as ``values``
        :math:`c`, the number of samples strictly below each value.
    sorted_values : callable
        Maps an index array (same shape as ``values``, entries in ``0..k-1``) to the sorted
        samples at those positions.
    count : int or ndarray of int broadcastable to ``values``
        :math:`k`, the number of samples (at least 1).
    """
    count = np.broadcast_to(np.asarray(count), values.shape)
    interior = (below > 0) & (below < count)
    lo_idx = np.where(interior, below - 1, 0)
    lo = sorted_values(lo_idx)
    hi = sorted_values(np.where(interior, below, 0))
    # In the interior v_{c-1} < s <= v_c, so the gap is positive.
    gap = np.where(interior, hi - lo, 1.0)
    inner = (lo_idx + np.where(interior, (values - lo) / gap, 0.0)) / np.maximum(count - 1, 1)
    return np.where(below <= 0, 0.0, np.where(below >= count, 1.0, inner))
