"""Self-checking cache files: an array stored under a key, its checksum in its file name.

A cached array is one file, ``<key>-<first 16 hex digits of the SHA-256 of the file>.npy``,
written atomically (:func:`miaudit.audit.store.atomic_write`). The key says what the entry is
(callers build it with :func:`miaudit.provenance.content_hash` over the inputs *and* the code
that computes it); the checksum in the name is verified on every read, so a truncated, empty,
flipped or foreign file is never used: it is deleted with a one-line warning (logger
``miaudit.cache``) and the caller recomputes the entry.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as d:
...     _ = save_array(d, "scores-abc", np.arange(3.0))
...     load_array(d, "scores-abc")
array([0., 1., 2.])
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from miaudit.provenance import sha256_bytes

_LOG = logging.getLogger("miaudit.cache")

#: Hex digits of the SHA-256 written into a cache file's name.
CHECKSUM_DIGITS = 16
#: Suffix of cache files.
SUFFIX = ".npy"

__all__ = ["CHECKSUM_DIGITS", "load_array", "save_array"]


def _entries(folder: Path, key: str) -> list[Path]:
    return sorted(
        p
        for p in folder.glob(f"{key}-*{SUFFIX}")
        if len(p.name) == len(key) + 1 + CHECKSUM_DIGITS + len(SUFFIX)
    )


def save_array(folder: str | Path, key: str, arr: NDArray) -> Path:
    """Store ``arr`` under ``key`` in ``folder`` (created if missing); returns the file."""
    from miaudit.audit.store import atomic_write

    out = Path(folder)
    buf = io.BytesIO()
    np.save(buf, np.asarray(arr), allow_pickle=False)
    data = buf.getvalue()
    path = out / f"{key}-{sha256_bytes(data)[:CHECKSUM_DIGITS]}{SUFFIX}"
    atomic_write(path, data)
    for other in _entries(out, key):
        if other != path:
            other.unlink(missing_ok=True)
    return path


def load_array(folder: str | Path, key: str) -> NDArray | None:
    """The array stored under ``key``, or None when there is none or it fails its checksum
    (then the file is removed with a one-line warning and the caller recomputes it)."""
    for path in _entries(Path(folder), key):
        expected = path.name[len(key) + 1 : len(key) + 1 + CHECKSUM_DIGITS]
        try:
            data = path.read_bytes()
            if sha256_bytes(data)[:CHECKSUM_DIGITS] != expected:
                raise ValueError("checksum does not match (corrupted or overwritten)")
            return np.load(io.BytesIO(data), allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            _LOG.warning("warning: cache file %s is unusable (%s); recomputing it", path, exc)
            path.unlink(missing_ok=True)
    return None
