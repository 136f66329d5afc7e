r"""Member and non-member texts from local files, and duplicates between the two sets.

Formats (all read from local files; nothing is downloaded)
    * **JSONL** (``.jsonl``): one JSON object per line, the text in ``text_field``
      (default ``"text"``), optionally a label in ``label_field``.
    * **JSON** (``.json``): a list of such objects, or a list of strings.
    * **CSV** (``.csv``): a header row; the text in column ``text_field``.
    * **Text folder**: every ``*.txt`` file (sorted by name) is one text; its id is the file name.
    * **WikiMIA** (Shi et al., ICLR 2024): rows ``{"input": text, "label": 1 | 0}``, 1 =
      member (seen in pre-training), as JSONL, JSON list, CSV or Parquet.
    * **MIMIR** (Duan et al., COLM 2024): either rows ``{"member": text, "nonmember": text,
      "member_neighbors": [...], "nonmember_neighbors": [...]}`` (the Hugging Face dataset
      ``iamgroot42/mimir``, JSONL / JSON / Parquet) or one JSON object with lists
      ``{"member": [...], "nonmember": [...]}`` (also accepted: ``members``/``nonmembers``).

Files must be UTF-8 (a file that is not gets an error naming the file and the byte offset).

Duplicates
    A non-member that also occurs among the members (exactly, after normalising case and
    whitespace) makes the membership question ill-posed, and near-duplicates make a
    "non-member" easy to recognise as seen. Following MIMIR's n-gram filter (Duan et al. 2024,
    "13_0.8"), the overlap of a non-member ``y`` with the member set ``M`` is

    .. math::

        \mathrm{overlap}(y) = \frac{|\{g \in G_n(y) : g \in \bigcup_{x \in M} G_n(x)\}|}
                                   {|G_n(y)|}

    with ``G_n`` the set of word ``n``-grams (a text of fewer than ``n`` words has its whole word
    sequence as its single gram). ``overlap ≥ threshold`` flags ``y``. :func:`find_duplicates`
    reports; :func:`remove_duplicates` drops the flagged non-members (and exact duplicates among
    the members themselves).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from miaudit.exceptions import ValidationError
from miaudit.llm.target import check_texts

__all__ = [
    "DEFAULT_NGRAM",
    "DEFAULT_OVERLAP_THRESHOLD",
    "DuplicateReport",
    "TextSplit",
    "find_duplicates",
    "load_member_split",
    "load_mimir",
    "load_texts",
    "load_wikimia",
    "remove_duplicates",
]

#: Word n-gram length of the near-duplicate filter (MIMIR's recommended "13_0.8").
DEFAULT_NGRAM = 13
#: Overlap at or above which a non-member counts as a near-duplicate of the members.
DEFAULT_OVERLAP_THRESHOLD = 0.8
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass
class TextSplit:
    """Member and non-member texts with ids.

    Attributes
    ----------
    members, non_members : list of str
    member_ids, non_member_ids : list of str
    source : str
        Where the split came from (for the report).
    """

    members: list[str]
    non_members: list[str]
    member_ids: list[str] = field(default_factory=list)
    non_member_ids: list[str] = field(default_factory=list)
    source: str = ""

    def __post_init__(self) -> None:
        self.members = check_texts(self.members, "members")
        self.non_members = check_texts(self.non_members, "non_members")
        if not self.member_ids:
            self.member_ids = [f"member-{i}" for i in range(len(self.members))]
        if not self.non_member_ids:
            self.non_member_ids = [f"non_member-{i}" for i in range(len(self.non_members))]
        for name, ids, texts in (
            ("member_ids", self.member_ids, self.members),
            ("non_member_ids", self.non_member_ids, self.non_members),
        ):
            if len(ids) != len(texts):
                raise ValidationError(f"{name}: {len(ids)} ids for {len(texts)} texts")
        all_ids = [*self.member_ids, *self.non_member_ids]
        if len(set(all_ids)) != len(all_ids):
            raise ValidationError("record ids: member and non-member ids must all be distinct")

    @property
    def texts(self) -> list[str]:
        """Members then non-members."""
        return [*self.members, *self.non_members]

    @property
    def record_ids(self) -> list[str]:
        return [*self.member_ids, *self.non_member_ids]

    @property
    def is_member(self) -> list[bool]:
        return [True] * len(self.members) + [False] * len(self.non_members)


# ----------------------------------------------------------------------------- reading
def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError(
            f"{path}: not UTF-8 text (invalid byte at offset {exc.start}); re-encode the file "
            "as UTF-8"
        ) from None
    except OSError as exc:
        raise ValidationError(f"{path}: cannot read ({exc.strerror})") from None


def _rows(path: Path) -> list[Any]:
    """Rows of a JSONL / JSON / CSV / Parquet file."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pandas as pd

        return list(pd.read_parquet(path).to_dict("records"))
    text = _read_text(path)
    if suffix == ".jsonl":
        rows = []
        for i, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValidationError(f"{path}, line {i}: invalid JSON ({exc.msg})") from None
        return rows
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValidationError(f"{path}: invalid JSON ({exc.msg}, line {exc.lineno})") from None
        return data if isinstance(data, list) else [data]
    if suffix == ".csv":
        return list(csv.DictReader(text.splitlines()))
    raise ValidationError(
        f"{path}: unknown file type {suffix!r}; expected .jsonl, .json, .csv, .parquet or a "
        "folder of .txt files"
    )


def load_texts(
    path: str | Path, *, text_field: str = "text", id_field: str | None = None
) -> tuple[list[str], list[str]]:
    """Texts and ids from a JSONL / JSON / CSV / Parquet file or a folder of ``.txt`` files.

    Returns
    -------
    (texts, ids) : lists of str
        Ids from ``id_field`` when given, file names for a folder, else ``"<stem>-<row>"``.
    """
    p = Path(path)
    if p.is_dir():
        files = sorted(p.glob("*.txt"))
        if not files:
            raise ValidationError(f"{p}: folder holds no .txt files")
        texts = [_read_text(f) for f in files]
        return check_texts(texts, str(p)), [f.name for f in files]
    if not p.exists():
        raise ValidationError(f"{p}: no such file or folder")
    texts, ids = [], []
    for i, row in enumerate(_rows(p)):
        if isinstance(row, str):
            texts.append(row)
        elif isinstance(row, dict):
            if text_field not in row:
                raise ValidationError(
                    f"{p}, row {i}: no field {text_field!r} (fields: {', '.join(map(str, row))});"
                    " set text_field"
                )
            texts.append(row[text_field])
        else:
            raise ValidationError(f"{p}, row {i}: expected an object or a string")
        if id_field is not None:
            if not isinstance(row, dict) or id_field not in row:
                raise ValidationError(f"{p}, row {i}: no id field {id_field!r}")
            ids.append(str(row[id_field]))
        else:
            ids.append(f"{p.stem}-{i}")
    return check_texts(texts, str(p)), ids


def load_member_split(
    members: str | Path,
    non_members: str | Path,
    *,
    text_field: str = "text",
    id_field: str | None = None,
) -> TextSplit:
    """Members and non-members from two files or folders (see :func:`load_texts`)."""
    m, mid = load_texts(members, text_field=text_field, id_field=id_field)
    n, nid = load_texts(non_members, text_field=text_field, id_field=id_field)
    if id_field is None:
        mid = [f"member-{x}" for x in mid]
        nid = [f"non_member-{x}" for x in nid]
    return TextSplit(m, n, mid, nid, source=f"{members} | {non_members}")


def load_wikimia(path: str | Path) -> TextSplit:
    """A WikiMIA file: rows ``{"input": text, "label": 1 (member) | 0 (non-member)}``."""
    p = Path(path)
    if not p.is_file():
        raise ValidationError(f"{p}: no such file")
    members, non_members, mid, nid = [], [], [], []
    for i, row in enumerate(_rows(p)):
        if not isinstance(row, dict) or "input" not in row or "label" not in row:
            raise ValidationError(
                f"{p}, row {i}: expected a WikiMIA row {{'input': text, 'label': 1 or 0}}"
            )
        label = row["label"]
        if str(label).strip() in ("1", "1.0", "True", "true"):
            members.append(row["input"])
            mid.append(f"wikimia-{i}")
        elif str(label).strip() in ("0", "0.0", "False", "false"):
            non_members.append(row["input"])
            nid.append(f"wikimia-{i}")
        else:
            raise ValidationError(f"{p}, row {i}: label: expected 1 or 0, got {label!r}")
    return TextSplit(members, non_members, mid, nid, source=f"WikiMIA {p.name}")


def load_mimir(path: str | Path) -> TextSplit:
    """A MIMIR file: rows with ``member`` and ``nonmember`` texts, or one object with the
    lists ``member`` and ``nonmember``. Provided neighbour lists are ignored (the
    neighbourhood attack makes its own)."""
    p = Path(path)
    if not p.is_file():
        raise ValidationError(f"{p}: no such file")
    rows = _rows(p)
    members: list[str] = []
    non_members: list[str] = []
    keys = (("member", "nonmember"), ("members", "nonmembers"))
    if len(rows) == 1 and isinstance(rows[0], dict):
        obj = rows[0]
        for mk, nk in keys:
            if isinstance(obj.get(mk), list) and isinstance(obj.get(nk), list):
                members, non_members = list(obj[mk]), list(obj[nk])
                break
    if not members:
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise ValidationError(f"{p}, row {i}: expected an object")
            found = [(mk, nk) for mk, nk in keys if mk in row or nk in row]
            if not found:
                raise ValidationError(
                    f"{p}, row {i}: expected MIMIR fields 'member' and 'nonmember'"
                )
            mk, nk = found[0]
            if row.get(mk) is not None:
                members.append(row[mk])
            if row.get(nk) is not None:
                non_members.append(row[nk])
    return TextSplit(
        members,
        non_members,
        [f"mimir-member-{i}" for i in range(len(members))],
        [f"mimir-nonmember-{i}" for i in range(len(non_members))],
        source=f"MIMIR {p.name}",
    )


# ----------------------------------------------------------------------------- duplicates
def normalise(text: str) -> str:
    """Lower case, words joined by single spaces (for exact-duplicate checks)."""
    return " ".join(_WORD.findall(text.lower()))


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    """Word ``n``-grams of ``text`` (lower case); the whole text if it has fewer words."""
    words = _WORD.findall(text.lower())
    if len(words) < n:
        return {tuple(words)} if words else set()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


@dataclass
class DuplicateReport:
    """Duplicates between members and non-members.

    Attributes
    ----------
    exact_pairs : list of (member index, non-member index)
        Equal after :func:`normalise`.
    overlap : list of float
        Per non-member: fraction of its word n-grams found among the members' n-grams.
    near_duplicates : list of int
        Non-members with ``overlap ≥ threshold`` (includes exact duplicates).
    member_exact_duplicates : list of int
        Members equal to an earlier member.
    n, threshold : int, float
    """

    exact_pairs: list[tuple[int, int]]
    overlap: list[float]
    near_duplicates: list[int]
    member_exact_duplicates: list[int]
    n: int
    threshold: float

    def to_dict(self) -> dict[str, Any]:
        """Summary for ``metrics.json`` (counts and the first few indices)."""
        return {
            "ngram": self.n,
            "threshold": self.threshold,
            "n_exact_pairs": len(self.exact_pairs),
            "n_near_duplicate_non_members": len(self.near_duplicates),
            "n_duplicate_members": len(self.member_exact_duplicates),
            "max_overlap": max(self.overlap, default=0.0),
            "near_duplicate_non_members": self.near_duplicates[:50],
        }


def find_duplicates(
    members: Sequence[str],
    non_members: Sequence[str],
    *,
    n: int = DEFAULT_NGRAM,
    threshold: float = DEFAULT_OVERLAP_THRESHOLD,
) -> DuplicateReport:
    """Exact and n-gram near-duplicates of ``non_members`` among ``members`` (MIMIR filter)."""
    m = check_texts(members, "members")
    nm = check_texts(non_members, "non_members")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValidationError(f"n: expected a positive integer, got {n!r}")
    if not 0 < threshold <= 1:
        raise ValidationError(f"threshold: expected a fraction in (0, 1], got {threshold!r}")
    first: dict[str, int] = {}
    member_dups = []
    for i, t in enumerate(m):
        key = normalise(t)
        if key in first:
            member_dups.append(i)
        else:
            first[key] = i
    exact = [(first[normalise(t)], j) for j, t in enumerate(nm) if normalise(t) in first]
    pool: set[tuple[str, ...]] = set()
    for t in m:
        pool |= ngrams(t, n)
    overlap = []
    for t in nm:
        g = ngrams(t, n)
        overlap.append(len(g & pool) / len(g) if g else 0.0)
    exact_set = {j for _, j in exact}
    near = sorted({j for j, o in enumerate(overlap) if o >= threshold} | exact_set)
    return DuplicateReport(exact, overlap, near, member_dups, n, float(threshold))


def remove_duplicates(
    split: TextSplit,
    *,
    n: int = DEFAULT_NGRAM,
    threshold: float = DEFAULT_OVERLAP_THRESHOLD,
) -> tuple[TextSplit, DuplicateReport]:
    """``split`` without near-duplicate non-members and repeated members, and the report."""
    rep = find_duplicates(split.members, split.non_members, n=n, threshold=threshold)
    drop_m = set(rep.member_exact_duplicates)
    drop_n = set(rep.near_duplicates)
    keep_m = [i for i in range(len(split.members)) if i not in drop_m]
    keep_n = [j for j in range(len(split.non_members)) if j not in drop_n]
    if not keep_n:
        raise ValidationError(
            "non_members: every non-member is a near-duplicate of a member; nothing is left"
        )
    out = TextSplit(
        _pick(split.members, keep_m),
        _pick(split.non_members, keep_n),
        _pick(split.member_ids, keep_m),
        _pick(split.non_member_ids, keep_n),
        source=split.source,
    )
    return out, rep


def _pick(items: Sequence[str], idx: Iterable[int]) -> list[str]:
    return [items[i] for i in idx]
