"""Which records each model trains on: keep matrices, target schemes and population records.

A *keep matrix* ``keep`` of shape ``(n_models, n_records)``, bool, says that model ``i`` trained on
record ``j`` iff ``keep[i, j]``. Reference-model attacks (LiRA, RMIA, Attack-R) need every record
to be IN for some models and OUT for the others, and LiRA's online variant works best when the two
groups have the same size for every record. The constructions here give exactly that:

* :func:`keep_matrix` — the LiRA construction (Carlini et al., "Membership Inference Attacks From
  First Principles", S&P 2022, reference code ``train.py``): draw ``U ~ Uniform(0, 1)`` of shape
  ``(M, N)``, take ``order = argsort(U, axis=0)`` (an independent random permutation of the model
  ids for every record) and set ``keep = order < k`` with ``k = round(pkeep · M)``. Every column
  holds a permutation of ``0..M-1``, so every record is IN for exactly ``k`` models.
* :func:`paired_keep_matrix` — models ``2i`` and ``2i+1`` train on complementary halves.
* :func:`nested_keep_matrix` — balanced, and its first rows do not depend on how many follow
  (the audit pipeline's matrix: an extended audit reproduces a fresh one).
* :func:`extend_keep_matrix` — more models, old rows untouched, every record still balanced.

Rounding: ``round`` here is *half up* (``floor(x + 0.5)``), not Python's round-half-to-even, so
that ``pkeep = 0.5`` with ``M = 5`` models gives 3 and with ``M = 7`` gives 4 (see
:func:`n_in_per_record`).

Target schemes say which model is audited and which serve as its references:
:class:`LeaveOneOut` (each model in turn is the target) and :class:`DesignatedTarget` (a target
with given member and non-member records). :func:`population_split` reserves *population* records
that no model trains on (RMIA compares against them).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from miaudit._validation import (
    SeedLike,
    as_generator,
    check_count,
    check_keep,
    check_probability,
)
from miaudit.exceptions import ValidationError

MIN_RECORDS = 2
"""Smallest number of records a split accepts: one IN and one OUT record at the very least."""


def n_in_per_record(n_models: int, pkeep: float = 0.5) -> int:
    """Number of models each record is IN for: ``floor(pkeep · n_models + 0.5)``.

    Parameters
    ----------
    n_models : int
        Number of models, ``>= 1``.
    pkeep : float
        Fraction of models that train on each record, in ``(0, 1)``.

    Raises
    ------
    ValidationError
        If the count is 0 (no model would train on any record) or ``n_models`` (no model would
        be OUT for any record): reference attacks need both.
    """
    n_models = check_count(n_models, "n_models", 1)
    pkeep = check_probability(pkeep, "pkeep")
    k = math.floor(pkeep * n_models + 0.5)
    if k == 0 or k == n_models:
        what = "no model" if k == 0 else "every model"
        raise ValidationError(
            f"pkeep={pkeep} with n_models={n_models}: round(pkeep·n_models) = {k}, so every "
            f"record would be IN for {what} and reference attacks need both IN and OUT models; "
            "use more models or a pkeep nearer 0.5"
        )
    return k


def _ranks_along_models(u: NDArray[np.float64]) -> NDArray[np.int64]:
    """Rank of each entry within its column (axis 0): a random permutation of ``0..M-1``."""
    return np.argsort(np.argsort(u, axis=0, kind="stable"), axis=0, kind="stable")


def keep_matrix(
    n_models: int, n_records: int, seed: SeedLike, pkeep: float = 0.5
) -> NDArray[np.bool_]:
    """Random keep matrix in which every record is IN for exactly ``round(pkeep · n_models)``.

    The LiRA construction (Carlini et al., S&P 2022, reference ``train.py``)::

        U = Uniform(0, 1) of shape (n_models, n_records)
        keep = argsort(U, axis=0) < k,     k = floor(pkeep · n_models + 0.5)

    Each column of ``argsort(U, axis=0)`` is a uniformly random permutation of the model ids,
    so each record is IN for exactly ``k`` uniformly chosen models, independently across
    records. The number of records per model is random (mean ``pkeep · n_records``).

    Parameters
    ----------
    n_models : int
        Number of models ``M >= 1`` (in practice ``>= 2``, see :func:`n_in_per_record`).
    n_records : int
        Number of records ``N >= 2``.
    seed : int or numpy.random.Generator
        Source of randomness; the same seed gives the same matrix.
    pkeep : float
        Fraction of models that train on each record, in ``(0, 1)``.

    Returns
    -------
    ndarray of shape (n_models, n_records), bool
    """
    k = n_in_per_record(n_models, pkeep)
    n_records = check_count(n_records, "n_records", MIN_RECORDS)
    rng = as_generator(seed)
    u = rng.uniform(0.0, 1.0, size=(n_models, n_records))
    return np.argsort(u, axis=0) < k


def paired_keep_matrix(n_pairs: int, n_records: int, seed: SeedLike) -> NDArray[np.bool_]:
    """Keep matrix of ``n_pairs`` complementary pairs: models ``2i`` and ``2i+1`` split the data.

    For each pair a uniformly random set of ``floor(n_records / 2)`` records is IN for model
    ``2i`` and the other ``ceil(n_records / 2)`` for model ``2i+1``; pairs are independent. Every
    record is therefore IN for exactly ``n_pairs`` of the ``2 · n_pairs`` models. When
    ``n_records`` is even both halves have exactly ``n_records / 2`` records; when it is odd the
    odd model ``2i+1`` gets the one extra record.

    Parameters
    ----------
    n_pairs : int
        Number of pairs ``P >= 1``.
    n_records : int
        Number of records ``N >= 2``.
    seed : int or numpy.random.Generator
        Source of randomness.

    Returns
    -------
    ndarray of shape (2 · n_pairs, n_records), bool
    """
    n_pairs = check_count(n_pairs, "n_pairs", 1)
    n_records = check_count(n_records, "n_records", MIN_RECORDS)
    rng = as_generator(seed)
    u = rng.uniform(0.0, 1.0, size=(n_pairs, n_records))
    rank = np.argsort(np.argsort(u, axis=1), axis=1)
    first = rank < n_records // 2
    keep = np.empty((2 * n_pairs, n_records), dtype=bool)
    keep[0::2] = first
    keep[1::2] = ~first
    return keep


def extend_keep_matrix(
    keep: ArrayLike, n_new_models: int, seed: SeedLike, pkeep: float = 0.5
) -> NDArray[np.bool_]:
    """Add ``n_new_models`` rows to ``keep`` so that every record is balanced over all models.

    With ``M`` old and ``M'`` new models, the target count is
    ``k = floor(pkeep · (M + M') + 0.5)``. Record ``j``, IN for ``c_j`` old models, is made IN
    for ``r_j = k - c_j`` of the new models, chosen uniformly at random (the rank of an
    independent ``Uniform(0, 1)`` draw per new model, kept when ``rank < r_j``). The old rows
    are returned unchanged, so models already trained keep their data.

    Parameters
    ----------
    keep : array-like of shape (M, N), bool
        The existing keep matrix.
    n_new_models : int
        Number of models to add, ``>= 1``.
    seed : int or numpy.random.Generator
        Source of randomness for the new rows.
    pkeep : float
        Fraction of all ``M + M'`` models that train on each record, in ``(0, 1)``.

    Returns
    -------
    ndarray of shape (M + M', N), bool
        ``result[:M]`` equals ``keep``; every column sums to ``k``.

    Raises
    ------
    ValidationError
        If some record cannot be balanced: it is already IN for more than ``k`` old models
        (``r_j < 0``) or would need more than ``M'`` new ones (``r_j > M'``).
    """
    old = check_keep(keep)
    n_new = check_count(n_new_models, "n_new_models", 1)
    n_old, n_records = old.shape
    k = n_in_per_record(n_old + n_new, pkeep)
    need = k - old.sum(axis=0)
    too_many = np.flatnonzero(need < 0)
    too_few = np.flatnonzero(need > n_new)
    if too_many.size or too_few.size:
        parts = []
        if too_many.size:
            parts.append(
                f"{too_many.size} records are already IN for more than {k} of the {n_old} "
                f"existing models (e.g. record indices {too_many[:5].tolist()})"
            )
        if too_few.size:
            parts.append(
                f"{too_few.size} records would need more than {n_new} new models "
                f"(e.g. record indices {too_few[:5].tolist()})"
            )
        raise ValidationError(
            f"extend_keep_matrix: cannot balance every record at round(pkeep·n_models) = {k} IN "
            f"(pkeep={pkeep}, {n_old} + {n_new} models): {'; '.join(parts)}; "
            "add more models or use the pkeep the matrix was built with"
        )
    rng = as_generator(seed)
    u = rng.uniform(0.0, 1.0, size=(n_new, n_records))
    new = _ranks_along_models(u) < need[None, :]
    return np.concatenate([old, new], axis=0)


def embed_keep(keep: ArrayLike, columns: ArrayLike, n_records: int) -> NDArray[np.bool_]:
    """Place a keep matrix over a subset of records into one over all ``n_records``.

    Parameters
    ----------
    keep : array-like of shape (M, n_sub), bool
        Keep matrix over the records ``columns`` (e.g. the audit records of
        :func:`population_split`).
    columns : array-like of shape (n_sub,), int
        Distinct record positions in ``0..n_records-1``.
    n_records : int
        Total number of records.

    Returns
    -------
    ndarray of shape (M, n_records), bool
        ``full[:, columns] = keep``; every other record (e.g. the population) is OUT of every
        model.
    """
    sub = check_keep(keep)
    n_records = check_count(n_records, "n_records", 1)
    cols = _check_indices(columns, "columns", n_records)
    if cols.size != sub.shape[1]:
        raise ValidationError(
            f"columns: has {cols.size} entries but keep has {sub.shape[1]} record columns"
        )
    full = np.zeros((sub.shape[0], n_records), dtype=bool)
    full[:, cols] = sub
    return full


def population_split(
    n_records: int, n_population: int, seed: SeedLike
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Reserve ``n_population`` random records that no model will ever train on.

    RMIA (Zarifzadeh et al., ICML 2024) compares each audited record with *population* records
    that are OUT of every model. Build the keep matrix over ``audit_idx`` only and
    :func:`embed_keep` it, so the population columns are all False.

    Parameters
    ----------
    n_records : int
        Size of the data set.
    n_population : int
        Number of population records, ``>= 1``; at least :data:`MIN_RECORDS` records must
        remain for the audit.
    seed : int or numpy.random.Generator
        Source of randomness.

    Returns
    -------
    audit_idx : ndarray of shape (n_records - n_population,), int64, sorted
    population_idx : ndarray of shape (n_population,), int64, sorted
        Disjoint; together they are ``0..n_records-1``.
    """
    n_records = check_count(n_records, "n_records", MIN_RECORDS)
    n_population = check_count(n_population, "n_population", 1)
    if n_records - n_population < MIN_RECORDS:
        raise ValidationError(
            f"population_split: data set too small: n_population={n_population} of "
            f"n_records={n_records} leaves {n_records - n_population} records for the audit; "
            f"need at least {MIN_RECORDS}"
        )
    rng = as_generator(seed)
    perm = rng.permutation(n_records)
    return np.sort(perm[n_population:]), np.sort(perm[:n_population])


def _check_indices(
    indices: ArrayLike, name: str, n_records: int | None = None
) -> NDArray[np.int64]:
    """1-d array of distinct non-negative integer positions (``< n_records`` when given)."""
    arr = np.asarray(indices)
    if arr.ndim != 1:
        raise ValidationError(f"{name}: expected a 1-d array of record indices, got {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        raise ValidationError(f"{name}: expected integer record indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise ValidationError(f"{name}: record indices must be >= 0, got {int(arr.min())}")
    if n_records is not None and arr.size and arr.max() >= n_records:
        raise ValidationError(
            f"{name}: record index {int(arr.max())} is out of range for {n_records} records"
        )
    uniq, counts = np.unique(arr, return_counts=True)
    if uniq.size != arr.size:
        raise ValidationError(
            f"{name}: {int((counts > 1).sum())} record indices are repeated, "
            f"e.g. {uniq[counts > 1][:5].tolist()}"
        )
    return arr


@dataclass(frozen=True)
class LeaveOneOut:
    """Each model in turn is the target; all the others are its references.

    The scheme of the LiRA paper's evaluation: with ``M`` models from :func:`keep_matrix`, the
    audit of target ``t`` uses ``keep[t]`` as ground-truth membership and the other ``M - 1``
    models (rows ``keep[refs]``) as references.

    Attributes
    ----------
    keep : ndarray of shape (M, N), bool
        Keep matrix with ``M >= 2`` models.

    Examples
    --------
    >>> keep = keep_matrix(4, 10, seed=0)
    >>> [(t, refs.tolist()) for t, refs in LeaveOneOut(keep)][0]
    (0, [1, 2, 3])
    """

    keep: NDArray[np.bool_]

    def __post_init__(self) -> None:
        keep = check_keep(self.keep)
        if keep.shape[0] < 2:
            raise ValidationError(
                f"LeaveOneOut: keep has {keep.shape[0]} model; need at least 2 "
                "(a target and one reference)"
            )
        object.__setattr__(self, "keep", keep)

    def __len__(self) -> int:
        return int(self.keep.shape[0])

    def __iter__(self) -> Iterator[tuple[int, NDArray[np.int64]]]:
        """Yield ``(target_index, reference_indices)`` for every model, in order."""
        all_models = np.arange(len(self), dtype=np.int64)
        for t in range(len(self)):
            yield t, np.delete(all_models, t)

    def membership(self, target: int) -> NDArray[np.bool_]:
        """Ground-truth membership ``(N,)`` of the records in target ``target``."""
        t = check_count(target, "target", 0)
        if t >= len(self):
            raise ValidationError(f"target: index {t} is out of range for {len(self)} models")
        return self.keep[t].copy()


@dataclass(frozen=True)
class DesignatedTarget:
    """A target model trained on ``members`` and evaluated on ``members`` ∪ ``non_members``.

    Attributes
    ----------
    members : ndarray of shape (n_in,), int64
        Record indices the target trained on (distinct, ``>= 0``, at least one).
    non_members : ndarray of shape (n_out,), int64
        Record indices the target did not train on (distinct, ``>= 0``, at least one, disjoint
        from ``members``).
    """

    members: NDArray[np.int64]
    non_members: NDArray[np.int64]

    def __post_init__(self) -> None:
        members = _check_indices(self.members, "members")
        non_members = _check_indices(self.non_members, "non_members")
        if members.size == 0 or non_members.size == 0:
            empty = "members" if members.size == 0 else "non_members"
            raise ValidationError(f"{empty}: is empty; an audit needs members and non-members")
        both = np.intersect1d(members, non_members)
        if both.size:
            raise ValidationError(
                f"members and non_members overlap: {both.size} record indices are in both, "
                f"e.g. {both[:5].tolist()}"
            )
        object.__setattr__(self, "members", members)
        object.__setattr__(self, "non_members", non_members)

    @property
    def evaluation_indices(self) -> NDArray[np.int64]:
        """Audited records: ``members`` then ``non_members``, shape ``(n_in + n_out,)``."""
        return np.concatenate([self.members, self.non_members])

    @property
    def is_member(self) -> NDArray[np.bool_]:
        """Ground truth aligned with :attr:`evaluation_indices`: True for the members."""
        return np.concatenate(
            [np.ones(self.members.size, dtype=bool), np.zeros(self.non_members.size, dtype=bool)]
        )

    def keep_row(self, n_records: int) -> NDArray[np.bool_]:
        """The target's row of a keep matrix over ``n_records`` records (True at ``members``)."""
        n_records = check_count(n_records, "n_records", MIN_RECORDS)
        for name, idx in (("members", self.members), ("non_members", self.non_members)):
            _check_indices(idx, name, n_records)
        row = np.zeros(n_records, dtype=bool)
        row[self.members] = True
        return row


#: Models of the balanced base of an odd-sized :func:`nested_keep_matrix` (each record OUT of
#: exactly one of them).
ODD_BASE_MODELS = 3


def nested_keep_matrix(
    n_models: int, n_records: int, rng: np.random.Generator
) -> NDArray[np.bool_]:
    """A balanced keep matrix whose rows do not depend on ``n_models`` beyond its parity.

    Even ``M = 2P``: ``P`` complementary pairs
    (:func:`paired_keep_matrix`), every record IN for exactly ``P``.
    Odd ``M = 2P + 1``: a base of :data:`ODD_BASE_MODELS` models in which each record is OUT of
    one model drawn uniformly (so IN for 2 of 3), then ``P - 1`` complementary pairs: every
    record IN for exactly ``P + 1 = n_in_per_record(M)``. The pairs are drawn row by row from
    one stream, so ``nested_keep_matrix(M)[:M']`` equals ``nested_keep_matrix(M')`` for every
    ``M' <= M`` of the same parity and the same ``rng`` state (an extended audit reproduces a
    fresh one). Base models train on about 2/3 of the records, paired models on 1/2.

    Parameters
    ----------
    n_models : int
        ``M >= 2``.
    n_records : int
        ``N >= 2``.
    rng : numpy.random.Generator
        Consumed once (one integer) to seed the streams.

    Returns
    -------
    ndarray of shape (n_models, n_records), bool
    """
    pairs_seq, base_seq = np.random.SeedSequence(int(rng.integers(2**63))).spawn(2)
    if n_models % 2 == 0:
        return paired_keep_matrix(n_models // 2, n_records, np.random.default_rng(pairs_seq))
    out = np.random.default_rng(base_seq).integers(0, ODD_BASE_MODELS, size=n_records)
    base = np.arange(ODD_BASE_MODELS)[:, None] != out[None, :]
    n_pairs = (n_models - ODD_BASE_MODELS) // 2
    if n_pairs == 0:
        return base
    pairs = paired_keep_matrix(n_pairs, n_records, np.random.default_rng(pairs_seq))
    return np.concatenate([base, pairs])
