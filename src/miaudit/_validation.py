"""Input validation at the door: every public function checks its arrays here.

Each check raises :class:`~miaudit.exceptions.ValidationError` with a message that names the
argument and says what was expected.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from miaudit.exceptions import ValidationError


def _describe_bad(values: NDArray) -> str:
    n_nan = int(np.isnan(values).sum())
    n_inf = int(np.isinf(values).sum())
    parts = []
    if n_nan:
        parts.append(f"{n_nan} NaN")
    if n_inf:
        parts.append(f"{n_inf} infinite")
    return " and ".join(parts)


def check_array(
    x: ArrayLike,
    name: str,
    *,
    ndim: int | Sequence[int] | None = None,
    min_ndim: int | None = None,
    finite: bool = True,
    dtype: type = np.float64,
) -> NDArray:
    """Convert ``x`` to a numeric array and check its dimensionality and finiteness.

    Parameters
    ----------
    x : array-like
        The input.
    name : str
        The argument name, used in the error message.
    ndim : int or sequence of int, optional
        Allowed numbers of dimensions.
    min_ndim : int, optional
        Smallest allowed number of dimensions.
    finite : bool
        If True, NaN and infinite values are an error.
    dtype : type
        Target dtype (float64 by default: attack math is done in float64).
    """
    try:
        arr: NDArray = np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            f"{name}: expected a numeric array, got {type(x).__name__} ({exc})"
        ) from None
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in allowed:
            want = " or ".join(str(a) for a in allowed)
            raise ValidationError(
                f"{name}: expected an array with {want} dimensions, got shape {arr.shape}"
            )
    if min_ndim is not None and arr.ndim < min_ndim:
        raise ValidationError(
            f"{name}: expected at least {min_ndim} dimensions, got shape {arr.shape}"
        )
    if finite and np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise ValidationError(f"{name}: contains {_describe_bad(arr)} values; all must be finite")
    return arr


def check_membership(is_member: ArrayLike, name: str = "is_member") -> NDArray[np.bool_]:
    """Return a 1-d boolean membership vector.

    Accepts booleans, or numbers / strings that are exactly 0/1 (``"true"``/``"false"``,
    ``"yes"``/``"no"`` are accepted case-insensitively). Anything else is an error that names
    the offending values.
    """
    arr = np.asarray(is_member)
    if arr.ndim != 1:
        raise ValidationError(f"{name}: expected a 1-d array, got shape {arr.shape}")
    if arr.dtype == np.bool_:
        return arr.copy()
    if arr.dtype.kind in "OUS":
        mapping = {
            "true": True,
            "false": False,
            "1": True,
            "0": False,
            "yes": True,
            "no": False,
            "1.0": True,
            "0.0": False,
        }
        lowered = [str(v).strip().lower() for v in arr]
        bad = sorted({v for v in lowered if v not in mapping})
        if bad:
            raise ValidationError(
                f"{name}: membership must be boolean or 0/1; found values {bad[:5]}"
            )
        return np.array([mapping[v] for v in lowered], dtype=bool)
    if arr.dtype.kind in "iuf":
        if arr.dtype.kind == "f" and np.isnan(arr).any():
            raise ValidationError(
                f"{name}: membership contains {int(np.isnan(arr).sum())} NaN values; "
                "it must be boolean or 0/1"
            )
        odd = np.unique(arr[(arr != 0) & (arr != 1)])
        if odd.size:
            raise ValidationError(
                f"{name}: membership must be boolean or 0/1; found values {odd[:5].tolist()}"
            )
        return arr.astype(bool)
    raise ValidationError(f"{name}: membership must be boolean or 0/1, got dtype {arr.dtype}")


def check_both_classes(is_member: NDArray[np.bool_], name: str = "is_member") -> None:
    """Raise unless there is at least one member and one non-member."""
    n_in = int(is_member.sum())
    if n_in == 0:
        raise ValidationError(f"{name}: there are no members (all {is_member.size} are False)")
    if n_in == is_member.size:
        raise ValidationError(f"{name}: there are no non-members (all {is_member.size} are True)")


def check_same_length(**arrays: NDArray) -> None:
    """Raise unless all arrays have the same first dimension."""
    lengths = {k: int(np.shape(v)[0]) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        desc = ", ".join(f"{k} has {v}" for k, v in lengths.items())
        raise ValidationError(f"inconsistent lengths: {desc}")


def check_labels(labels: ArrayLike, n_classes: int, name: str = "labels") -> NDArray[np.int64]:
    """Return integer class labels in ``0..n_classes-1`` or raise naming the bad values."""
    arr = np.asarray(labels)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise ValidationError(f"{name}: contains {_describe_bad(arr)} values")
        if np.any(arr != np.round(arr)):
            raise ValidationError(f"{name}: expected integer class labels, got fractional values")
    elif arr.dtype.kind not in "iub":
        raise ValidationError(f"{name}: expected integer class labels, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    bad = (arr < 0) | (arr >= n_classes)
    if bad.any():
        vals = np.unique(arr[bad])[:5].tolist()
        raise ValidationError(
            f"{name}: labels must be in 0..{n_classes - 1} ({n_classes} classes); "
            f"found {int(bad.sum())} out of range, e.g. {vals}"
        )
    return arr


def check_probability(value: float, name: str, *, open_interval: bool = True) -> float:
    """Check a scalar is a probability (in (0, 1) by default, or [0, 1])."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValidationError(f"{name}: expected a number, got {value!r}") from None
    ok = (0.0 < v < 1.0) if open_interval else (0.0 <= v <= 1.0)
    if not ok or not np.isfinite(v):
        interval = "(0, 1)" if open_interval else "[0, 1]"
        raise ValidationError(f"{name}: expected a value in {interval}, got {value!r}")
    return v


SeedLike = int | np.integer | np.random.Generator
"""An explicit source of randomness: an integer seed or a :class:`numpy.random.Generator`."""


def as_generator(seed: SeedLike, name: str = "seed") -> np.random.Generator:
    """Return a :class:`numpy.random.Generator` for ``seed``.

    Parameters
    ----------
    seed : int or numpy.random.Generator
        A non-negative integer (``numpy.random.default_rng(seed)``) or a generator, returned as
        is (so consecutive calls with one generator draw different numbers). ``None`` is refused:
        miaudit never uses global or unseeded randomness.
    name : str
        Argument name for the error message.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        if seed < 0:
            raise ValidationError(f"{name}: expected a non-negative integer, got {seed}")
        return np.random.default_rng(int(seed))
    raise ValidationError(
        f"{name}: expected an int or a numpy.random.Generator, got {type(seed).__name__} "
        "(pass a seed explicitly; miaudit never uses global randomness)"
    )


def check_count(value: object, name: str, minimum: int = 0) -> int:
    """Return ``value`` as an int, or raise unless it is an integer ``>= minimum``.

    Python and NumPy integers are accepted; booleans, floats (even whole ones) and strings are
    not.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValidationError(f"{name}: expected an integer, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValidationError(f"{name}: expected an integer >= {minimum}, got {value}")
    return int(value)


def check_positive(value: object, name: str) -> float:
    """Return ``value`` as a float, or raise unless it is a finite real number ``> 0``.

    Strings are refused, even numeric ones.
    """
    v = float(value) if isinstance(value, numbers.Real) else math.nan
    if not (math.isfinite(v) and v > 0):
        raise ValidationError(f"{name}: expected a positive number, got {value!r}")
    return v


def check_keep(
    keep: ArrayLike, name: str = "keep", *, shape: tuple[int, int] | None = None
) -> NDArray[np.bool_]:
    """Return a keep matrix ``(n_models, n_records)`` as a new bool array.

    ``keep[i, j]`` says that model ``i`` trained on record ``j``. Booleans and integers that are
    exactly 0/1 are accepted; anything else is an error naming the problem.

    Parameters
    ----------
    keep : array-like of shape (n_models, n_records)
    name : str
        Argument name for the error messages.
    shape : tuple of int, optional
        The exact shape required (sizes the caller took from other arrays). Without it, any
        2-d shape with at least one model and one record.
    """
    arr = np.asarray(keep)
    if shape is not None:
        if arr.shape != tuple(shape):
            raise ValidationError(
                f"{name}: expected shape (n_models, n_records) = {tuple(shape)}, got {arr.shape}"
            )
    elif arr.ndim != 2:
        raise ValidationError(
            f"{name}: expected a 2-d (n_models, n_records) array, got shape {arr.shape}"
        )
    elif arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValidationError(
            f"{name}: expected at least one model and one record, got {arr.shape}"
        )
    if arr.dtype == np.bool_:
        return arr.copy()
    if arr.dtype.kind in "iu":
        bad = (arr != 0) & (arr != 1)
        if bad.any():
            raise ValidationError(
                f"{name}: expected bool or 0/1 values; found {int(bad.sum())} others, "
                f"e.g. {np.unique(arr[bad])[:5].tolist()}"
            )
        return arr.astype(bool)
    raise ValidationError(f"{name}: expected a bool or 0/1 integer array, got dtype {arr.dtype}")
