"""Per-record score files: reading a score table and the FPR lists of ``miaudit evaluate``.

Scores follow miaudit's one direction, higher = member; a column where lower means member (a
loss, a distance) is read with ``lower_is_member=True`` (``--lower-is-member``), which negates
it. Index-like columns (a pandas index written by ``df.to_csv()``, ``Unnamed: 0``, or any
integer column equal to 0..n−1 or 1..n) are dropped with a note, unless named as the score,
membership or id column (:func:`index_like_columns`).

>>> parse_fprs(["1%,0.001"])
(0.01, 0.001)
>>> index_like_columns(pd.DataFrame({"Unnamed: 0": [0, 1, 2], "row": [0, 1, 2], "x": [5, 1, 2]}))
['Unnamed: 0', 'row']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from miaudit._validation import (
    check_array,
    check_both_classes,
    check_membership,
    check_probability,
)
from miaudit.defaults import DEFAULT_FPRS
from miaudit.exceptions import ValidationError

__all__ = ["ScoreFile", "index_like_columns", "load_score_file", "nan_note", "parse_fprs"]

#: File suffixes read as CSV / Parquet.
CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv")
PARQUET_SUFFIXES = (".parquet", ".pq")
#: Record ids listed when reporting NaN scores.
MAX_IDS_SHOWN = 5
#: Column-name prefix pandas gives an unnamed index column read back from CSV.
UNNAMED_PREFIX = "Unnamed:"
#: A column needs at least this many rows before equality with 0..n−1 marks it as an index.
MIN_ROWS_INDEX_LIKE = 3


@dataclass(frozen=True)
class ScoreFile:
    """Scores read from a CSV or Parquet file.

    Attributes
    ----------
    path : Path
        The file.
    scores : ndarray of shape (n,), float64
        Higher = member; may contain NaN (counted by :func:`miaudit.metrics.summarize`).
    is_member : ndarray of shape (n,), bool
    record_ids : ndarray of shape (n,) or None
        The id column, when one was named.
    lower_is_member : bool
        The file's column was negated on reading (lower = member in the file).
    dropped_columns : tuple of str
        Index-like columns that were ignored (:func:`index_like_columns`).
    """

    path: Path
    scores: NDArray[np.float64]
    is_member: NDArray[np.bool_]
    record_ids: NDArray | None = None
    lower_is_member: bool = False
    dropped_columns: tuple[str, ...] = ()

    def notes(self) -> list[str]:
        """Warnings for the user: NaN scores, dropped index-like columns."""
        out = [n for n in (nan_note(self),) if n]
        if self.dropped_columns:
            out.append(
                f"ignored index-like column(s) {', '.join(map(repr, self.dropped_columns))} "
                "(a pandas index written by to_csv, or a column equal to the row number); "
                "write the file with index=False to avoid them"
            )
        return out


def index_like_columns(df: pd.DataFrame) -> list[str]:
    """Columns that hold a row index rather than data.

    A column is index-like when its name starts with ``"Unnamed:"`` (what ``pandas.read_csv``
    calls the index that ``DataFrame.to_csv()`` writes by default) or when it is an integer
    column equal to ``0..n−1`` or ``1..n``. On a file sorted by class, such a column carries the
    label; used as a feature, it leaks it.
    """
    n = len(df)
    out = []
    for col in df.columns:
        name = str(col)
        if name.startswith(UNNAMED_PREFIX):
            out.append(name)
            continue
        values = df[col]
        if n < MIN_ROWS_INDEX_LIKE or not pd.api.types.is_integer_dtype(values):
            continue
        arr = values.to_numpy()
        if np.array_equal(arr, np.arange(n)) or np.array_equal(arr, np.arange(1, n + 1)):
            out.append(name)
    return out


def _read_table(path: Path) -> pd.DataFrame:
    name = path.name.lower()
    if not path.exists():
        raise ValidationError(f"{path}: file not found")
    try:
        if name.endswith(PARQUET_SUFFIXES):
            return pd.read_parquet(path)
        if name.endswith(CSV_SUFFIXES):
            return pd.read_csv(path, sep="\t" if name.endswith(".tsv") else ",")
    except (ValueError, ImportError, OSError) as exc:
        raise ValidationError(f"{path}: could not read the file ({exc})") from None
    raise ValidationError(
        f"{path}: unsupported file type; expected one of "
        f"{', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)}"
    )


def _column(df: pd.DataFrame, col: str, what: str, option: str, path: Path) -> pd.Series:
    if col not in df.columns:
        present = ", ".join(repr(str(c)) for c in df.columns)
        raise ValidationError(
            f"{path.name}: {what} column {col!r} not found (choose it with {option}); "
            f"columns present: {present}"
        )
    return df[col]


def load_score_file(
    path: str | Path,
    *,
    score_col: str = "score",
    member_col: str = "is_member",
    id_col: str | None = None,
    lower_is_member: bool = False,
) -> ScoreFile:
    """Read per-record scores and membership from a CSV/TSV or Parquet file.

    Parameters
    ----------
    path : str or Path
        ``.csv``, ``.csv.gz``, ``.tsv``, ``.parquet`` or ``.pq``.
    score_col : str
        Numeric column of scores (higher = member). Empty cells are NaN and are kept.
    member_col : str
        Membership column: boolean, 0/1, or ``true``/``false``/``yes``/``no``.
    id_col : str, optional
        Column of unique record ids.
    lower_is_member : bool
        The score column is lower = member (a loss, a distance): it is negated, so that the
        returned scores are higher = member like every other score in miaudit.

    Raises
    ------
    ValidationError
        Unreadable file, a missing column (the message lists the columns present),
        non-numeric scores, membership that is not boolean/0-1, no members or no non-members,
        duplicate ids.
    """
    path = Path(path)
    df = _read_table(path)
    if df.empty:
        raise ValidationError(
            f"{path}: the file has no rows (columns: {', '.join(map(str, df.columns))})"
        )
    named = {score_col, member_col, id_col}
    dropped = tuple(c for c in index_like_columns(df) if c not in named)
    raw_scores = _column(df, score_col, "score", "--score-col", path)
    raw_member = _column(df, member_col, "membership", "--member-col", path)
    if not pd.api.types.is_numeric_dtype(raw_scores) or pd.api.types.is_bool_dtype(raw_scores):
        bad = [v for v in raw_scores.unique()[:MAX_IDS_SHOWN] if not _is_number(v)]
        raise ValidationError(
            f"{path.name}: score column {score_col!r} is not numeric (dtype {raw_scores.dtype}); "
            f"e.g. {bad[:3]}"
        )
    scores = check_array(raw_scores.to_numpy(), f"column {score_col!r}", ndim=1, finite=False)
    is_member = check_membership(raw_member.to_numpy(), f"column {member_col!r}")
    check_both_classes(is_member, f"column {member_col!r}")
    ids = None
    if id_col is not None:
        ids = _column(df, id_col, "id", "--id-col", path).to_numpy()
        dup = pd.Series(ids).duplicated()
        if dup.any():
            examples = pd.Series(ids)[dup].unique()[:MAX_IDS_SHOWN].tolist()
            raise ValidationError(
                f"{path.name}: id column {id_col!r} has {int(dup.sum())} duplicate ids, "
                f"e.g. {examples}"
            )
    return ScoreFile(
        path=path,
        scores=-scores if lower_is_member else scores,
        is_member=is_member,
        record_ids=ids,
        lower_is_member=bool(lower_is_member),
        dropped_columns=dropped,
    )


def _is_number(v: object) -> bool:
    try:
        float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def parse_fprs(values: Sequence[str] | None, option: str = "--fpr") -> tuple[float, ...]:
    """Target FPRs from repeated and/or comma-separated option values.

    ``"0.01,0.001"`` and ``"0.1%"`` (a percentage) are accepted. ``None`` or empty gives
    :data:`miaudit.defaults.DEFAULT_FPRS`.
    """
    if not values:
        return DEFAULT_FPRS
    out = []
    for value in values:
        for part in str(value).split(","):
            text = part.strip()
            if not text:
                continue
            scale = 100.0 if text.endswith("%") else 1.0
            try:
                number = float(text.rstrip("%")) / scale
            except ValueError:
                raise ValidationError(f"{option}: could not read {text!r} as a number") from None
            out.append(check_probability(number, f"{option} {text}"))
    if not out:
        raise ValidationError(f"{option}: no FPR given")
    return tuple(out)


def nan_note(sf: ScoreFile) -> str | None:
    nan = np.isnan(sf.scores)
    if not nan.any():
        return None
    note = (
        f"{int(nan.sum())} NaN scores ({int((nan & sf.is_member).sum())} members) are treated "
        "as the lowest score"
    )
    if sf.record_ids is not None:
        ids = ", ".join(str(i) for i in sf.record_ids[nan][:MAX_IDS_SHOWN])
        more = ", ..." if nan.sum() > MAX_IDS_SHOWN else ""
        note += f"; record ids: {ids}{more}"
    return note


