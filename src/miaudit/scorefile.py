"""Per-record score files: reading a score table and the FPR lists of ``miaudit evaluate``.

>>> parse_fprs(["1%,0.001"])
(0.01, 0.001)
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

__all__ = ["ScoreFile", "load_score_file", "nan_note", "parse_fprs"]

#: File suffixes read as CSV / Parquet.
CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv")
PARQUET_SUFFIXES = (".parquet", ".pq")
#: Record ids listed when reporting NaN scores.
MAX_IDS_SHOWN = 5


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
    """

    path: Path
    scores: NDArray[np.float64]
    is_member: NDArray[np.bool_]
    record_ids: NDArray | None = None


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
    return ScoreFile(path=path, scores=scores, is_member=is_member, record_ids=ids)


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


