"""Where a result or a cached file came from: content hashes, dataset fingerprints, versions.

The one owner of hashing in miaudit: the run store keys run folders by :func:`config_hash`,
the pipeline keys splits and cached scores by :func:`content_hash`, and every manifest and
``metrics.json`` records :func:`package_versions`.

>>> config_hash({"b": 1, "a": [1, 2]}) == config_hash({"a": [1, 2], "b": 1})
True
>>> len(content_hash("scores", np.arange(3)))
20
"""

from __future__ import annotations

import functools
import hashlib
import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

#: Packages whose versions are written into manifests and results.
VERSIONED_PACKAGES = ("miaudit", "numpy", "torch", "scikit-learn", "skops", "safetensors")
#: Hex digits of :func:`content_hash` (80 bits: collisions between cache entries of one output
#: folder are negligible).
CONTENT_HASH_DIGITS = 20
#: Bytes read at a time when hashing a file.
_HASH_BLOCK = 1 << 20

#: Source files (globs relative to the package) whose code decides a trained model and its
#: observations: a change to any of them invalidates the run store (:func:`training_code_hash`).
TRAINING_SOURCES = ("train/*.py", "audit/engine.py", "targets/__init__.py", "data/base.py")
#: Source files whose code decides a keep matrix (:func:`splits_code_hash`).
SPLITS_SOURCES = ("data/splits.py",)

__all__ = [
    "CONTENT_HASH_DIGITS",
    "SPLITS_SOURCES",
    "TRAINING_SOURCES",
    "VERSIONED_PACKAGES",
    "canonical_json",
    "code_hash",
    "config_hash",
    "content_hash",
    "dataset_fingerprint",
    "package_versions",
    "sha256_bytes",
    "sha256_file",
    "splits_code_hash",
    "training_code_hash",
]


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal values give equal strings."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def config_hash(description: Any) -> str:
    """SHA-256 (hex) of :func:`canonical_json` ``(description)``."""
    return hashlib.sha256(canonical_json(description).encode()).hexdigest()


def content_hash(*parts: Any) -> str:
    """The first :data:`CONTENT_HASH_DIGITS` hex digits of a SHA-256 over ``parts``: arrays by
    dtype, shape and bytes; anything else by its sorted-key JSON (``str`` for non-JSON values);
    a zero byte after each part."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, np.ndarray):
            h.update(str((p.dtype, p.shape)).encode())
            h.update(np.ascontiguousarray(p).tobytes())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()[:CONTENT_HASH_DIGITS]


def _ids_bytes(ids: NDArray) -> bytes:
    if ids.dtype.kind in "iuU":
        return ids.dtype.str.encode() + ids.tobytes()
    return "\x00".join(map(str, ids.tolist())).encode()


def dataset_fingerprint(X: ArrayLike, y: ArrayLike, record_ids: ArrayLike) -> str:
    """SHA-256 (hex) over the shapes, dtypes and bytes of ``X``, ``y`` and ``record_ids``."""
    h = hashlib.sha256()
    for arr in (np.ascontiguousarray(X), np.ascontiguousarray(y)):
        h.update(f"{arr.dtype.str}{arr.shape}".encode())
        h.update(arr.tobytes())
    h.update(_ids_bytes(np.asarray(record_ids)))
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """SHA-256 (hex) of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


def package_versions() -> dict[str, str]:
    """Versions of Python and of :data:`VERSIONED_PACKAGES` (``"absent"`` when not installed)."""
    out = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


@functools.cache
def code_hash(patterns: tuple[str, ...]) -> str:
    """SHA-256 (hex) of the package version and of the package's source files matching
    ``patterns`` (globs relative to the package folder, in sorted order, with their paths).

    A cache entry keyed by it is stale as soon as the code that produced it changes.
    """
    import miaudit

    root = Path(miaudit.__file__).parent
    h = hashlib.sha256(miaudit.__version__.encode())
    for pattern in patterns:
        for path in sorted(root.glob(pattern)):
            h.update(path.relative_to(root).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def training_code_hash() -> str:
    """:func:`code_hash` of :data:`TRAINING_SOURCES` (keys the run store)."""
    return code_hash(TRAINING_SOURCES)


def splits_code_hash() -> str:
    """:func:`code_hash` of :data:`SPLITS_SOURCES` (keys stored keep matrices)."""
    return code_hash(SPLITS_SOURCES)
