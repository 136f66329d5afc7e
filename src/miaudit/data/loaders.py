"""Loaders for users' files: tables, NumPy archives, Purchase-100, Texas-100 and CIFAR folders.

Every loader is a registered dataset (``load_dataset("csv", path=..., label_col=...)``);
:func:`load_file` picks the loader of a single file from its suffix through the
:data:`FILE_FORMATS` registry. Each loaded :class:`~miaudit.data.base.Dataset` records the source
path and the SHA-256 of every file read in ``meta`` so that a run can tell when its data changed.

Record ids: the id column of a table or the ``ids`` array of an archive when given; otherwise the
row position in the file (``0..n-1`` for tables and archives, ``"<name>-<i>"`` for the
benchmark files), which is stable as long as the file is.

Safe loading (DESIGN.md): NumPy archives are read with ``allow_pickle=False``. CIFAR's "python
version" batches *are* pickles, and unpickling an untrusted file can run arbitrary code, so
:func:`load_cifar10` / :func:`load_cifar100` refuse unless called with ``allow_pickle=True``;
even then only NumPy arrays, dicts, lists, bytes and numbers are unpickled.
"""

from __future__ import annotations

import codecs
import difflib
import hashlib
import inspect
import pickle
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from miaudit._validation import check_labels
from miaudit.data.base import Dataset
from miaudit.data.registry import register_dataset
from miaudit.exceptions import MissingColumnError, ValidationError
from miaudit.registry import Registry, check_call

FileLoader = Callable[..., Dataset]
"""A function ``(path, **options) -> Dataset`` reading one file."""

FILE_FORMATS: Registry[FileLoader] = Registry("file format")
"""Single-file loaders keyed by lower-case suffix (``".csv"``, ``".parquet"``, ``".npz"``)."""

MAX_LOGIT_BYTES = 8 * 2**30
"""Most bytes the float32 logits of one model over all records may take (``n · C · 4``): more
means the labels are not class indices (e.g. ids or prices in the label column)."""

MIN_CLASSES = 2
"""A membership audit needs a classifier: at least two classes in the labels."""

HASH_BLOCK_BYTES = 1 << 20
"""Bytes read at a time when hashing a source file."""

PURCHASE100_N_CLASSES = 100
TEXAS100_N_CLASSES = 100
BENCHMARK_FIRST_LABEL = 1
"""Purchase-100 and Texas-100 as distributed number their classes 1..100."""

CIFAR_SIDE = 32
CIFAR_CHANNELS = 3
CIFAR_MAX_INTENSITY = 255.0
"""CIFAR pixels are uint8; dividing by this maps them to [0, 1]."""


def register_format(*suffixes: str) -> Callable[[FileLoader], FileLoader]:
    """Decorator registering a single-file loader for each of ``suffixes`` (e.g. ``".csv"``)."""

    def decorator(fn: FileLoader) -> FileLoader:
        for suffix in suffixes:
            FILE_FORMATS.register(suffix)(fn)
        return fn

    return decorator


# ----------------------------------------------------------------------------------- helpers


PathKind = Literal["file", "directory"]
_IS_KIND: dict[PathKind, Callable[[Path], bool]] = {"file": Path.is_file, "directory": Path.is_dir}


def _existing(path: str | Path, kind: PathKind = "file", what: str = "path") -> Path:
    """``path`` (``~`` expanded) when it is an existing ``kind``, else an error naming ``what``."""
    p = Path(path).expanduser()
    if _IS_KIND[kind](p):
        return p
    other: PathKind = "directory" if kind == "file" else "file"
    state = f"is a {other}, expected a {kind}" if _IS_KIND[other](p) else f"no such {kind}"
    raise ValidationError(f"{what}: {state}: {p}")


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(HASH_BLOCK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def _provenance(name: str, *files: Path) -> dict[str, Any]:
    return {
        "loader": name,
        "source": [str(f) for f in files],
        "sha256": {f.name: file_sha256(f) for f in files},
    }


def encode_labels(
    values: NDArray, name: str, n_classes: int | None = None
) -> tuple[NDArray[np.int64], int, list[str] | None]:
    """Class labels ``0..C-1`` from integer or string labels.

    Parameters
    ----------
    values : ndarray of shape (n,)
        Integer labels (used as they are) or strings/objects (mapped to ``0..C-1`` in sorted
        order of their text).
    name : str
        Field name for error messages.
    n_classes : int, optional
        Number of classes ``C``; default: ``max label + 1`` for integers, the number of distinct
        strings otherwise.

    Returns
    -------
    labels : ndarray of shape (n,), int64
    n_classes : int
    label_names : list of str or None
        ``label_names[c]`` is the original label of class ``c`` when strings were mapped.
    """
    arr = np.asarray(values)
    if arr.dtype.kind in "OUS":
        missing = pd.isna(arr)
        if missing.any():
            raise ValidationError(f"{name}: {int(missing.sum())} missing labels")
        text = arr.astype(str)
        label_names, y = np.unique(text, return_inverse=True)
        c = len(label_names) if n_classes is None else int(n_classes)
        if c < len(label_names):
            raise ValidationError(
                f"{name}: {len(label_names)} distinct labels but n_classes={n_classes}"
            )
        return y.astype(np.int64), c, label_names.tolist()
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise ValidationError(f"{name}: {int(np.isnan(arr).sum())} missing (NaN) labels")
    if n_classes is None:
        n_classes = int(np.max(arr)) + 1 if arr.size else 1
    return check_labels(arr, max(int(n_classes), 1), name=name), int(n_classes), None


def _numeric_features(frame: pd.DataFrame, name: str) -> NDArray[np.float32]:
    """Feature matrix of a table; non-numeric or NaN columns are an error naming them."""
    non_numeric = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if non_numeric:
        raise ValidationError(
            f"{name}: feature columns must be numeric; non-numeric: {non_numeric[:10]} "
            "(encode them, or pass feature_cols)"
        )
    X = frame.to_numpy(dtype=np.float32)
    bad = ~np.isfinite(X)
    if bad.any():
        cols = [str(c) for c, b in zip(frame.columns, bad.any(axis=0), strict=True) if b]
        raise ValidationError(
            f"{name}: {int(bad.sum())} NaN or infinite feature values in columns {cols[:10]}"
        )
    return X


def check_classes(y: NDArray[np.int64], n_classes: int, name: str) -> None:
    """Errors that would otherwise surface only after training (the audit pipeline checks
    them before it trains): fewer than two distinct labels, or so many classes that the logits
    would not fit in memory (:data:`MAX_LOGIT_BYTES`) or that outnumber the records."""
    n = len(y)
    if n == 0:
        raise ValidationError(f"{name}: no records (the file has a header but no rows)")
    distinct = int(np.unique(y).size)
    if distinct < MIN_CLASSES:
        raise ValidationError(
            f"{name}: every record has the same label; a membership audit needs a classifier "
            f"trained on at least {MIN_CLASSES} classes (check label_col)"
        )
    logit_bytes = n * int(n_classes) * np.dtype(np.float32).itemsize
    if n_classes > n or logit_bytes > MAX_LOGIT_BYTES:
        raise ValidationError(
            f"{name}: {n_classes:,} classes for {n:,} records (logits would take "
            f"{logit_bytes / 2**30:.1f} GiB per model); labels must be class indices "
            "0..C-1 or class names — is label_col the right column?"
        )


def _table_error(path: Path, exc: Exception) -> ValidationError:
    """A one-line error for a table that cannot be parsed."""
    if isinstance(exc, UnicodeDecodeError):
        return ValidationError(
            f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8"
        )
    if isinstance(exc, pd.errors.EmptyDataError):
        return ValidationError(f"{path}: the file is empty (expected a header row and records)")
    text = str(exc).strip().splitlines()
    return ValidationError(f"{path}: cannot read the table: {text[-1] if text else exc}")


def _string_ids(frame: pd.DataFrame, id_col: str, name: str) -> NDArray:
    """The id column as strings exactly as written; missing or repeated ids are errors."""
    col = frame[id_col]
    missing = np.flatnonzero(col.isna().to_numpy())
    if missing.size:
        raise ValidationError(
            f"{name}: id_col {id_col!r} has {missing.size} missing ids (first at data row "
            f"{int(missing[0]) + 1}); every record needs an id"
        )
    ids = np.asarray([str(v) for v in col.tolist()], dtype=object)
    values, counts = np.unique(ids.astype(str), return_counts=True)
    if (counts > 1).any():
        raise ValidationError(
            f"{name}: id_col {id_col!r} repeats ids {values[counts > 1][:5].tolist()}; "
            "ids must be unique"
        )
    return ids


def dataset_from_frame(
    frame: pd.DataFrame,
    label_col: str,
    *,
    name: str,
    id_col: str | None = None,
    feature_cols: Sequence[str] | None = None,
    n_classes: int | None = None,
    extra_cols: Sequence[str] = (),
) -> Dataset:
    """A :class:`Dataset` from a table: one label column, optional id column, numeric features.

    Features are ``feature_cols`` (default: every column except the label, id and extra
    columns), in table order. String labels are mapped to ``0..C-1`` and the mapping is kept in
    ``meta["label_names"]``. Ids are the id column, or the row positions ``0..n-1``.
    ``extra_cols`` (e.g. a membership column for a model audit) are not features: their values
    are kept in ``meta["columns"][name]``.
    """
    columns = [str(c) for c in frame.columns]
    frame = frame.set_axis(columns, axis=1)
    wanted = {"label_col": [label_col], "id_col": [id_col] if id_col else []}
    wanted["feature_cols"] = list(feature_cols) if feature_cols is not None else []
    wanted["extra_cols"] = list(extra_cols)
    for field, cols in wanted.items():
        missing = [c for c in cols if c not in columns]
        if missing:
            raise MissingColumnError(
                f"{name}: {field} {missing} not found; columns present: {', '.join(columns)}",
                field=field,
                missing=missing,
            )
    if feature_cols is None:
        named = (label_col, id_col, *extra_cols)
        feature_cols = [c for c in columns if c not in named]
        # A saved pandas index ("Unnamed: 0") or a 0..n-1 row number is not a feature; on a
        # class-sorted file it carries the label. Named feature_cols are taken as given.
        from miaudit.scorefile import index_like_columns

        index_cols = [c for c in index_like_columns(frame[feature_cols]) if c not in named]
        if index_cols:
            warnings.warn(
                f"{name}: ignoring index-like column(s) {index_cols} (a saved row index, not a "
                "feature); name them in feature_cols to keep them",
                stacklevel=3,
            )
            feature_cols = [c for c in feature_cols if c not in index_cols]
    if not feature_cols:
        raise ValidationError(f"{name}: no feature columns besides the label and id columns")
    if len(frame) == 0:
        raise ValidationError(f"{name}: no records (the file has a header but no rows)")
    X = _numeric_features(frame[list(feature_cols)], name)
    y, c, label_names = encode_labels(
        frame[label_col].to_numpy(), f"{name}: {label_col}", n_classes
    )
    ids = _string_ids(frame, id_col, name) if id_col else np.arange(len(frame), dtype=np.int64)
    meta: dict[str, Any] = {"feature_names": list(feature_cols)}
    if extra_cols:
        meta["columns"] = {c: frame[c].to_numpy() for c in extra_cols}
    if label_names is not None:
        meta["label_names"] = label_names
    return Dataset(X=X, y=y, record_ids=ids, n_classes=c, name=name, meta=meta)


# ------------------------------------------------------------------------ tables and archives


@register_dataset("csv")
@register_format(".csv", ".tsv")
def load_csv(
    path: str | Path,
    label_col: str,
    id_col: str | None = None,
    feature_cols: Sequence[str] | None = None,
    n_classes: int | None = None,
    sep: str | None = None,
    extra_cols: Sequence[str] = (),
) -> Dataset:
    """A CSV (or TSV) file with a header row, a label column and numeric feature columns.

    ``sep`` defaults to a tab for ``.tsv`` files and a comma otherwise. See
    :func:`dataset_from_frame` for labels, features and ids.
    """
    p = _existing(path)
    delimiter = sep if sep is not None else ("\t" if p.suffix.lower() == ".tsv" else ",")
    try:
        # Ids as strings exactly as written: "000123" stays "000123", "1" and "01" differ.
        frame = pd.read_csv(
            p, sep=delimiter, dtype={id_col: str} if id_col else None, encoding="utf-8"
        )
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise _table_error(p, exc) from None
    ds = dataset_from_frame(
        frame,
        label_col,
        name=str(p),
        id_col=id_col,
        feature_cols=feature_cols,
        n_classes=n_classes,
        extra_cols=extra_cols,
    )
    ds.meta.update(_provenance("csv", p))
    return ds


@register_dataset("parquet")
@register_format(".parquet", ".pq")
def load_parquet(
    path: str | Path,
    label_col: str,
    id_col: str | None = None,
    feature_cols: Sequence[str] | None = None,
    n_classes: int | None = None,
    extra_cols: Sequence[str] = (),
) -> Dataset:
    """A Parquet file with a label column and numeric feature columns (see :func:`load_csv`)."""
    p = _existing(path)
    try:
        frame = pd.read_parquet(p)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise ValidationError(
            f"{p}: not a readable Parquet file ({str(exc).splitlines()[0] if str(exc) else exc})"
        ) from None
    ds = dataset_from_frame(
        frame,
        label_col,
        name=str(p),
        id_col=id_col,
        feature_cols=feature_cols,
        n_classes=n_classes,
        extra_cols=extra_cols,
    )
    ds.meta.update(_provenance("parquet", p))
    return ds


def _check_npz(path: Path) -> None:
    """Refuse an archive that is not a zip of ``.npy`` files, or whose array headers claim more
    bytes than the archive holds (before anything is allocated)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with zf.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
                    else:
                        shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
                claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
                if claimed > info.file_size:
                    raise ValidationError(
                        f"{path}: array {info.filename[:-4]!r} claims shape {shape} "
                        f"({claimed:,} bytes) but holds {info.file_size:,} bytes; the file is "
                        "damaged or crafted"
                    )
    except (zipfile.BadZipFile, ValueError, EOFError, OSError) as exc:
        raise ValidationError(f"{path}: not a valid .npz archive ({exc})") from None


@register_dataset("npz")
@register_format(".npz")
def load_npz(
    path: str | Path,
    x_key: str = "X",
    y_key: str = "y",
    ids_key: str = "ids",
    n_classes: int | None = None,
    extra_cols: Sequence[str] = (),
) -> Dataset:
    """A NumPy ``.npz`` archive with features ``X`` ``(n, ...)``, labels ``y`` and optional ids.

    Read with ``allow_pickle=False`` (object arrays are refused). ``ids`` is used when present,
    otherwise the row positions ``0..n-1``. Arrays named in ``extra_cols`` (e.g. ``is_member``)
    are kept in ``meta["columns"]``.
    """
    p = _existing(path)
    _check_npz(p)
    with np.load(p, allow_pickle=False) as archive:
        keys = sorted(archive.files)
        wanted = [("x_key", x_key), ("y_key", y_key)] + [("extra_cols", c) for c in extra_cols]
        for field, key in wanted:
            if key not in keys:
                raise MissingColumnError(
                    f"{p}: {field} {key!r} not in the archive; arrays present: {', '.join(keys)}",
                    field=field,
                    missing=[key],
                )
        try:
            X = archive[x_key]
            labels = archive[y_key]
            ids = archive[ids_key] if ids_key in keys else np.arange(len(labels), dtype=np.int64)
            extra = {c: archive[c] for c in extra_cols}
        except ValueError as exc:  # object arrays need pickle, which is refused
            raise ValidationError(f"{p}: cannot read the archive safely ({exc})") from None
    y, c, label_names = encode_labels(labels, f"{p}: {y_key}", n_classes)
    ds = Dataset(X=X, y=y, record_ids=ids, n_classes=c, name=str(p))
    if label_names is not None:
        ds.meta["label_names"] = label_names
    if extra:
        ds.meta["columns"] = extra
    ds.meta.update(_provenance("npz", p))
    return ds


@register_dataset("file")
def load_file(path: str | Path, **options: Any) -> Dataset:
    """Load one file with the loader registered for its suffix (see :data:`FILE_FORMATS`).

    ``options`` are passed on, e.g. ``load_file("train.csv", label_col="label")``.
    """
    p = _existing(path)
    loader = FILE_FORMATS.get(p.suffix.lower() or "(no suffix)")
    valid = [q for q in inspect.signature(loader).parameters if q != "path"]
    unknown = [k for k in options if k not in valid]
    if unknown:
        hints = [
            f"{k!r} (did you mean {close[0]!r}?)" if close else repr(k)
            for k in unknown
            for close in [difflib.get_close_matches(k, valid, n=1)]
        ]
        raise ValidationError(
            f"data.params: unknown parameter {', '.join(hints)} for the {p.suffix} loader; "
            f"valid parameters: {', '.join(valid)}"
        )
    check_call(loader, f"{p.suffix or p.name} loader", p, **options)
    return loader(p, **options)


# -------------------------------------------------------------------- Purchase-100, Texas-100


def _benchmark_labels(raw: NDArray, name: str, n_classes: int) -> NDArray[np.int64]:
    """Labels ``1..n_classes`` of the distributed files shifted to ``0..n_classes-1``."""
    raw = np.asarray(raw)
    if raw.size and raw.min() < BENCHMARK_FIRST_LABEL:
        raise ValidationError(
            f"{name}: labels must be {BENCHMARK_FIRST_LABEL}..{n_classes} as distributed; "
            f"found {raw.min()}"
        )
    return check_labels(raw - BENCHMARK_FIRST_LABEL, n_classes, name=name)


def _read_headerless(path: Path, name: str) -> NDArray[np.float32]:
    try:
        table = pd.read_csv(path, header=None, dtype=np.float32)
    except (ValueError, pd.errors.ParserError) as exc:
        raise ValidationError(f"{name}: not a comma-separated numeric file ({exc})") from None
    return table.to_numpy()


@register_dataset("purchase100")
def load_purchase100(path: str | Path, n_classes: int = PURCHASE100_N_CLASSES) -> Dataset:
    """Purchase-100 as distributed by Shokri et al.: the text file ``dataset_purchase``.

    Each line is ``label,f1,...,f600`` with labels ``1..100`` and binary features. Labels become
    ``0..99``; ids are ``"purchase100-000000"`` … in file order.
    """
    p = _existing(path)
    table = _read_headerless(p, str(p))
    X, y = table[:, 1:], _benchmark_labels(table[:, 0], f"{p}: labels", n_classes)
    ids = np.array([f"purchase100-{i:06d}" for i in range(len(y))])
    meta = _provenance("purchase100", p)
    return Dataset(X=X, y=y, record_ids=ids, n_classes=n_classes, name="purchase100", meta=meta)


TEXAS100_LAYOUTS = (Path("."), Path("100"), Path("texas") / "100")
"""Where ``feats`` and ``labels`` may sit below the path given to :func:`load_texas100`."""


@register_dataset("texas100")
def load_texas100(path: str | Path, n_classes: int = TEXAS100_N_CLASSES) -> Dataset:
    """Texas-100 as distributed by Shokri et al.: the files ``texas/100/feats`` and ``labels``.

    ``feats`` holds one comma-separated line of binary features per record, ``labels`` one
    label ``1..100`` per line. ``path`` is the folder holding the two files or any folder above
    it in the archive layout (``dataset_texas/texas/100``). Ids are ``"texas100-000000"`` ….
    """
    root = _existing(path, "directory")
    folders = [root / sub for sub in TEXAS100_LAYOUTS]
    found = [f for f in folders if (f / "feats").is_file() and (f / "labels").is_file()]
    if not found:
        tried = ", ".join(str(f) for f in folders)
        raise ValidationError(f"path: no 'feats' and 'labels' files in any of {tried}")
    feats, labels = found[0] / "feats", found[0] / "labels"
    X = _read_headerless(feats, str(feats))
    raw = _read_headerless(labels, str(labels))
    if raw.ndim != 2 or raw.shape[1] != 1:
        raise ValidationError(f"{labels}: expected one label per line, got {raw.shape[1]} columns")
    if raw.shape[0] != X.shape[0]:
        raise ValidationError(f"texas100: {X.shape[0]} feature rows but {raw.shape[0]} labels")
    y = _benchmark_labels(raw[:, 0], f"{labels}: labels", n_classes)
    ids = np.array([f"texas100-{i:06d}" for i in range(len(y))])
    meta = _provenance("texas100", feats, labels)
    return Dataset(X=X, y=y, record_ids=ids, n_classes=n_classes, name="texas100", meta=meta)


# ------------------------------------------------------------------------------------ CIFAR


def _numpy_reconstruct() -> Callable[..., Any]:
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    return _reconstruct


_SAFE_PICKLE_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}
"""The only globals a CIFAR batch may reference: what NumPy arrays and bytes pickle to."""


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that resolves only :data:`_SAFE_PICKLE_GLOBALS` (no arbitrary callables)."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _SAFE_PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise ValidationError(
                f"refusing to unpickle {module}.{name}: a CIFAR batch holds only arrays, "
                "lists and bytes"
            ) from None


def read_cifar_batch(path: Path) -> dict[bytes, Any]:
    """Unpickle one CIFAR "python version" batch (a dict with bytes keys)."""
    with path.open("rb") as fh:
        batch = _ArrayUnpickler(fh, encoding="bytes").load()
    if not isinstance(batch, dict):
        raise ValidationError(f"{path}: expected a pickled dict, got {type(batch).__name__}")
    return batch


@dataclass(frozen=True)
class CifarLayout:
    """The files and keys of one CIFAR "python version" folder.

    Attributes
    ----------
    name : str
        ``"cifar10"`` or ``"cifar100"``.
    splits : dict
        Split name → batch file names, in order.
    label_key : bytes
        Key of the labels in each batch (``b"labels"``; CIFAR-100: ``b"fine_labels"``).
    meta_file, names_key : str, bytes
        File and key of the class names.
    n_classes : int
    """

    name: str
    splits: dict[str, tuple[str, ...]]
    label_key: bytes
    meta_file: str
    names_key: bytes
    n_classes: int

    def files(self, split: str) -> tuple[str, ...]:
        """Batch files of ``split`` (``"all"`` = every split, train first)."""
        if split == "all":
            return tuple(f for files in self.splits.values() for f in files)
        if split not in self.splits:
            valid = ", ".join([*self.splits, "all"])
            raise ValidationError(f"split: unknown split {split!r}; valid splits: {valid}")
        return self.splits[split]


CIFAR10 = CifarLayout(
    name="cifar10",
    splits={"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
    label_key=b"labels",
    meta_file="batches.meta",
    names_key=b"label_names",
    n_classes=10,
)
CIFAR100 = CifarLayout(
    name="cifar100",
    splits={"train": ("train",), "test": ("test",)},
    label_key=b"fine_labels",
    meta_file="meta",
    names_key=b"fine_label_names",
    n_classes=100,
)


def load_cifar(path: str | Path, layout: CifarLayout, split: str, allow_pickle: bool) -> Dataset:
    """Images ``(n, 3, 32, 32)`` float32 in [0, 1] from a CIFAR "python version" folder.

    ``b"data"`` rows are 3,072 uint8 values, the red, green and blue 32×32 planes in row-major
    order, so a reshape to ``(3, 32, 32)`` is already channels-first. Ids are
    ``"<name>-<file>-<row>"`` (e.g. ``"cifar10-data_batch_1-00042"``). Class names from the meta
    file are kept in ``meta["label_names"]`` when it is present.
    """
    files = layout.files(split)
    folder = _existing(path, "directory")
    if not allow_pickle:
        raise ValidationError(
            f"{layout.name}: the CIFAR python batches are pickle files, and unpickling an "
            "untrusted file can run arbitrary code; pass allow_pickle=True if you trust "
            f"{folder} (only arrays, lists and bytes are unpickled even then)"
        )
    paths = [_existing(folder / f, what=f"{layout.name} batch") for f in files]
    images: list[NDArray] = []
    labels: list[NDArray] = []
    ids: list[str] = []
    for p in paths:
        batch = read_cifar_batch(p)
        for key in (b"data", layout.label_key):
            if key not in batch:
                raise ValidationError(f"{p}: no {key!r} entry; entries: {sorted(batch)}")
        data = np.asarray(batch[b"data"])
        pixels = CIFAR_CHANNELS * CIFAR_SIDE * CIFAR_SIDE
        if data.ndim != 2 or data.shape[1] != pixels:
            raise ValidationError(f"{p}: b'data' has shape {data.shape}, expected (n, {pixels})")
        images.append(data.reshape(-1, CIFAR_CHANNELS, CIFAR_SIDE, CIFAR_SIDE))
        labels.append(np.asarray(batch[layout.label_key]))
        ids.extend(f"{layout.name}-{p.name}-{i:05d}" for i in range(data.shape[0]))
    X = np.concatenate(images).astype(np.float32) / np.float32(CIFAR_MAX_INTENSITY)
    meta = _provenance(layout.name, *paths)
    meta["split"] = split
    meta_path = folder / layout.meta_file
    if meta_path.is_file():
        names = read_cifar_batch(meta_path).get(layout.names_key)
        if names is not None:
            meta["label_names"] = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    return Dataset(
        X=X,
        y=np.concatenate(labels),
        record_ids=np.array(ids),
        n_classes=layout.n_classes,
        name=layout.name,
        meta=meta,
    )


@register_dataset("cifar10")
def load_cifar10(path: str | Path, split: str = "train", allow_pickle: bool = False) -> Dataset:
    """CIFAR-10 from ``cifar-10-batches-py`` (``data_batch_1..5``, ``test_batch``).

    ``split``: ``"train"`` (50,000), ``"test"`` (10,000) or ``"all"``. Needs
    ``allow_pickle=True`` (see :func:`load_cifar`).
    """
    return load_cifar(path, CIFAR10, split, allow_pickle)


@register_dataset("cifar100")
def load_cifar100(path: str | Path, split: str = "train", allow_pickle: bool = False) -> Dataset:
    """CIFAR-100 from ``cifar-100-python`` (``train``, ``test``; fine labels, 100 classes).

    ``split``: ``"train"`` (50,000), ``"test"`` (10,000) or ``"all"``. Needs
    ``allow_pickle=True`` (see :func:`load_cifar`).
    """
    return load_cifar(path, CIFAR100, split, allow_pickle)
