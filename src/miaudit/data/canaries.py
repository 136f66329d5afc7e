"""Canaries for privacy audits of classifiers: records planted so that an audit can measure how
much a training run reveals about them.

A DP audit (Jagielski, Ullman & Oprea 2020; Nasr et al. 2021/2023; Steinke, Nasr & Jagielski
2023) needs records whose membership is random and whose influence on the model is as large as
possible: the empirical epsilon bound is only as strong as the most exposed records it measures.
Three kinds, each a function registered in :data:`CANARY_KINDS` (adding a kind is one function):

=================  ===========================================================================
kind               what
=================  ===========================================================================
``random_label``   existing records whose label is replaced by a different class drawn at
                   random (mislabelled records: the model can only fit them by memorising)
``ood``            new records out of the data's distribution: every feature drawn
                   independently and uniformly over its observed range (pixels or indicators in
                   no real record's combination), with a random label
``natural``        existing records, unchanged (the average-case exposure, for comparison)
=================  ===========================================================================

:func:`add_canaries` returns the dataset with its canaries and their record ids; an audit of the
dataset (``miaudit run`` with ``data.canaries``, or :class:`miaudit.Audit`) gives each canary
a fair coin per model through the keep matrix, like every other record, and the canary
audits of :mod:`miaudit.audit.dp` read their scores by id.

>>> import numpy as np
>>> from miaudit.data import Dataset
>>> ds = Dataset(np.zeros((6, 2), np.float32), np.arange(6) % 3, np.arange(6), n_classes=3)
>>> planted = add_canaries(ds, 2, "ood", seed=0)
>>> len(planted.dataset), planted.record_ids.tolist()
(8, [6, 7])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from miaudit._validation import SeedLike, as_generator, check_count
from miaudit.data.base import Dataset
from miaudit.exceptions import ValidationError
from miaudit.registry import Registry

__all__ = ["CANARY_ID_PREFIX", "CANARY_KINDS", "Canaries", "add_canaries"]

#: Prefix of the record ids of new canaries when the dataset's ids are strings.
CANARY_ID_PREFIX = "canary"

#: ``kind(ds, n, rng) -> (X_new, y_new, replaced)``: ``replaced`` the positions of existing
#: records the kind turns into canaries (with their new labels ``y_new``, ``X_new`` then None),
#: or None when the kind makes ``n`` new records ``X_new``, ``y_new``.
CanaryMaker = Callable[
    [Dataset, int, np.random.Generator],
    tuple[NDArray[np.float32] | None, NDArray[np.int64], NDArray[np.intp] | None],
]

#: Canary kinds by name.
CANARY_KINDS: Registry[CanaryMaker] = Registry("canary kind")


def _pick(ds: Dataset, n: int, rng: np.random.Generator, kind: str) -> NDArray[np.intp]:
    """``n`` distinct positions of existing records, sorted."""
    if n > len(ds):
        raise ValidationError(f"n: {kind} canaries pick existing records; {n} > {len(ds)}")
    return np.sort(rng.choice(len(ds), size=n, replace=False))


def _random_other_label(y: NDArray[np.int64], n_classes: int, rng: np.random.Generator) -> Any:
    """A label drawn uniformly from the ``n_classes - 1`` classes other than each of ``y``."""
    shift = rng.integers(1, n_classes, size=y.shape)
    return (y + shift) % n_classes


@CANARY_KINDS.register("random_label")
def _random_label(
    ds: Dataset, n: int, rng: np.random.Generator
) -> tuple[None, NDArray[np.int64], NDArray[np.intp]]:
    """``n`` existing records, each given a different class drawn uniformly at random."""
    if ds.n_classes < 2:
        raise ValidationError("random_label canaries need at least 2 classes")
    chosen = _pick(ds, n, rng, "random_label")
    return None, _random_other_label(ds.y[chosen], ds.n_classes, rng), chosen


@CANARY_KINDS.register("ood")
def _ood(
    ds: Dataset, n: int, rng: np.random.Generator
) -> tuple[NDArray[np.float32], NDArray[np.int64], None]:
    """``n`` new records: each feature uniform over its observed [min, max]; random labels."""
    flat = ds.X.reshape(len(ds), -1)
    low, high = flat.min(axis=0), flat.max(axis=0)
    X = rng.uniform(low, high, size=(n, flat.shape[1])).astype(np.float32)
    y = rng.integers(0, ds.n_classes, size=n).astype(np.int64)
    return X.reshape(n, *ds.input_shape), y, None


@CANARY_KINDS.register("natural")
def _natural(
    ds: Dataset, n: int, rng: np.random.Generator
) -> tuple[None, NDArray[np.int64], NDArray[np.intp]]:
    """``n`` existing records, unchanged."""
    chosen = _pick(ds, n, rng, "natural")
    return None, ds.y[chosen], chosen


@dataclass(frozen=True)
class Canaries:
    """A dataset with canaries planted (:func:`add_canaries`).

    Attributes
    ----------
    dataset : Dataset
        All records, canaries included (``meta["canaries"]`` describes them).
    record_ids : ndarray of shape (n_canaries,)
        The canaries' ids in ``dataset``.
    kind : str
    """

    dataset: Dataset
    record_ids: NDArray[Any]
    kind: str

    def mask(self, record_ids: Any) -> NDArray[np.bool_]:
        """Which of ``record_ids`` (e.g. a scores table's index) are canaries."""
        return np.isin(np.asarray(record_ids), self.record_ids)


def _new_ids(ids: NDArray[Any], n: int, kind: str) -> NDArray[Any]:
    """Ids for ``n`` new records that no record of ``ids`` has: the next integers for integer
    ids, ``"canary-<kind>-<i>"`` otherwise."""
    if np.issubdtype(ids.dtype, np.integer):
        start = int(ids.max()) + 1 if ids.size else 0
        return np.arange(start, start + n, dtype=ids.dtype)
    new = np.array([f"{CANARY_ID_PREFIX}-{kind}-{i:05d}" for i in range(n)], dtype=object)
    clash = np.isin(new, ids.astype(object))
    if clash.any():
        raise ValidationError(f"record_ids: the dataset already has an id {new[clash][0]!r}")
    return new


def add_canaries(
    ds: Dataset, n: int, kind: str = "random_label", *, seed: SeedLike = 0
) -> Canaries:
    """Plant ``n`` canaries of ``kind`` (a name in :data:`CANARY_KINDS`) in ``ds``.

    Parameters
    ----------
    ds : Dataset
    n : int
        Number of canaries, ``>= 1`` (at most ``len(ds)`` for kinds that pick existing records).
    kind : str
        ``"random_label"``, ``"ood"``, ``"natural"`` or another registered kind.
    seed : int or numpy.random.Generator

    Returns
    -------
    Canaries
        The new dataset (the input is not modified) and the canaries' record ids. Kinds that
        pick existing records keep their ids; new records are appended after the others.
    """
    n = check_count(n, "n", minimum=1)
    maker = CANARY_KINDS.get(kind)
    rng = as_generator(seed, "seed")
    X_new, y_new, replaced = maker(ds, n, rng)
    meta = {**ds.meta, "canaries": {"kind": kind, "n": n}}
    if replaced is not None:
        y = ds.y.copy()
        y[replaced] = y_new
        out = Dataset(ds.X, y, ds.record_ids, ds.n_classes, name=ds.name, meta=meta)
        return Canaries(out, ds.record_ids[replaced], kind)
    assert X_new is not None
    ids = _new_ids(ds.record_ids, n, kind)
    record_ids = np.concatenate([ds.record_ids.astype(ids.dtype), ids])
    out = Dataset(
        np.concatenate([ds.X, X_new]),
        np.concatenate([ds.y, y_new]),
        record_ids,
        ds.n_classes,
        name=ds.name,
        meta=meta,
    )
    return Canaries(out, ids, kind)

