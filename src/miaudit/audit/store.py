"""The run store: trained models and their observations on disk, crash-safe and resumable.

Layout of a store root::

    <root>/
      <recipe>-<config hash, 16 hex>/        one folder per configuration (a "run")
        manifest.json                        what is in the folder, with checksums
        keep.npy                             keep matrix (n_models, n_records), bool
        record_ids.npy                       record ids, in the order of the observations
        observations/model_00000.npy         logits (n_records, q, C), float32, one per model
        models/model_00000.safetensors       torch weights (or model_00000.skops)

**Config hash.** ``config_hash(description)`` is the SHA-256 of the canonical JSON (sorted keys,
no whitespace) of the recipe's description (recipe name and typed config), the query list and
the dataset fingerprint (:func:`dataset_fingerprint`: SHA-256 of the bytes of ``X``, ``y`` and the
record ids, with shapes and dtypes). A different config or different data lands in a different
folder, so observations of one configuration are never read for another.

**Writes.** Every file is written to a temporary name in the same folder, flushed and
``fsync``-ed, then renamed over its final name (``os.replace`` is atomic on POSIX and Windows);
the folder is ``fsync``-ed after the rename. A model's weights and observations are written
first, then the manifest (also atomically) records them with their SHA-256 and size. A crash
at any point leaves either the old manifest or the new one, never a half-written file under a
name the manifest trusts.

**Reads.** A model counts as finished only if its manifest entry exists and every file it names
exists with the recorded size and SHA-256 (:meth:`Run.completed_models`); otherwise the problem
is logged (logger ``miaudit.store``), the entry and its files are dropped, and the model is
trained again. Each entry also holds the SHA-256 of the model's keep row, so a model is never
reused for a different training subset.

**One writer.** :func:`miaudit.audit.engine.train_and_query` holds the folder's OS lock
(:mod:`miaudit.audit.lock`) while it writes. Temporary files (``*.tmp-*``) left by a crash are
removed when a run is opened, but only when no other process holds the lock (they may be its
in-flight writes).

**Keep matrix.** Each stored keep matrix has its own content-named file
(``keep-<sha256 prefix>.npy``); the manifest names the current one. Writing a new matrix
writes its file, then the manifest (the one atomic step that switches to it), then removes the
old file, so a crash never leaves a manifest and a keep matrix that disagree.

**Damage.** A manifest that is not valid JSON or lacks a key is moved aside
(``manifest.json.corrupt-<time>``) with a warning and the run starts afresh; a keep matrix whose
checksum fails is dropped with a warning (models whose keep-row hash no longer matches the
settled matrix are trained again).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from miaudit._json import json_float, jsonable
from miaudit.data.splits import check_keep
from miaudit.exceptions import MiauditError, ValidationError
from miaudit.provenance import (
    canonical_json,
    config_hash,
    dataset_fingerprint,
    package_versions,
    sha256_bytes,
    sha256_file,
)
from miaudit.train.recipes import ModelResult

_LOG = logging.getLogger("miaudit.store")

#: Version of the folder layout and manifest schema.
FORMAT_VERSION = 1
#: Hex digits of the config hash used in folder names (64 bits: collisions are negligible; the
#: full hash is in the manifest and is checked on open).
HASH_PREFIX = 16
MANIFEST = "manifest.json"
KEEP_FILE = "keep.npy"
#: Content-named keep matrix files: ``keep-<KEEP_NAME_DIGITS hex digits of SHA-256>.npy``.
KEEP_NAME_DIGITS = 16
#: Keys every manifest must have.
MANIFEST_KEYS = ("config_hash", "record_ids", "keep", "models")
IDS_FILE = "record_ids.npy"
OBS_DIR = "observations"
MODEL_DIR = "models"
_TMP_MARK = ".tmp-"

__all__ = [
    "FORMAT_VERSION",
    "CorruptFileError",
    "Run",
    "RunStore",
    "canonical_json",
    "config_hash",
    "dataset_fingerprint",
    "package_versions",
    "row_hash",
]


class CorruptFileError(MiauditError):
    """A file named by a manifest is missing, truncated or does not match its checksum."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ----------------------------------------------------------------------------- atomic writes
def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not supported on every platform (e.g. Windows)
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: Path, data: bytes) -> dict[str, Any]:
    """Write ``data`` to ``path`` atomically (temp file, fsync, rename, fsync folder).

    Returns
    -------
    dict
        ``{"file": name, "sha256": hex, "bytes": size}`` for the manifest.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}{_TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise MiauditError(
            f"{path}: cannot write {len(data)} bytes ({exc.strerror or exc}); the previous "
            "file, if any, is unchanged (free disk space or check permissions, then run again)"
        ) from None
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)
    return {"sha256": sha256_bytes(data), "bytes": len(data)}


def _npy_bytes(arr: NDArray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _weights_bytes(weights: Any, fmt: str) -> bytes:
    if fmt == "safetensors":
        from safetensors.numpy import save

        return save({k: np.ascontiguousarray(v) for k, v in weights.items()})
    if fmt == "skops":
        import skops.io as sio

        return sio.dumps(weights)
    raise ValidationError(f"weights format: expected 'safetensors' or 'skops', got {fmt!r}")


# ----------------------------------------------------------------------------- store
class RunStore:
    """A folder holding one sub-folder per configuration (see module docstring).

    Parameters
    ----------
    root : str or Path
        Created if missing.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def run_dir(self, config_hash: str, recipe: str = "run") -> Path:
        """Folder of the run with this config hash (``<recipe>-<first 16 hex digits>``)."""
        return self.root / f"{recipe}-{config_hash[:HASH_PREFIX]}"

    def open(
        self,
        description: dict[str, Any],
        record_ids: ArrayLike,
        *,
        recipe: str = "run",
    ) -> Run:
        """Open (or create) the run of ``description`` (the input of :func:`config_hash`)."""
        digest = config_hash(description)
        return Run(self.run_dir(digest, recipe), digest, description, np.asarray(record_ids))

    def runs(self) -> list[Path]:
        """Run folders under the root (those with a manifest)."""
        if not self.root.is_dir():
            return []
        return sorted(p.parent for p in self.root.glob(f"*/{MANIFEST}"))


class Run:
    """One run folder: its manifest, keep matrix, models and observations.

    Normally obtained from :meth:`RunStore.open`. Opening checks that an existing manifest
    belongs to the same config hash and record ids, and removes temporary files left by a crash.
    """

    def __init__(
        self, folder: Path, digest: str, description: dict[str, Any], record_ids: NDArray
    ) -> None:
        self.folder = Path(folder)
        self.config_hash = digest
        self.folder.mkdir(parents=True, exist_ok=True)
        self._remove_temporary_files()
        path = self.folder / MANIFEST
        self.record_ids = record_ids
        self._keep_lost = False
        manifest = self._read_manifest(path)
        if manifest is not None:
            self.manifest = manifest
            if self.manifest.get("config_hash") != digest:
                raise MiauditError(
                    f"{path}: belongs to config hash {self.manifest.get('config_hash')!r}, "
                    f"not {digest!r} (two configs share the first {HASH_PREFIX} hex digits?)"
                )
            try:
                stored_ids = self._load_array(self.manifest["record_ids"])
            except (CorruptFileError, ValueError, OSError) as exc:
                raise CorruptFileError(
                    f"{self.folder}: the stored record ids cannot be read ({exc}); delete the "
                    "folder to start afresh"
                ) from None
            if not np.array_equal(stored_ids, _storable_ids(record_ids)):
                raise MiauditError(
                    f"{self.folder}: the stored record ids differ from the dataset's although "
                    "the dataset fingerprint matches; delete the folder to start afresh"
                )
        else:
            self.manifest = {
                "format": "miaudit-run",
                "format_version": FORMAT_VERSION,
                "config_hash": digest,
                "description": description,
                "versions": package_versions(),
                "created": _now(),
                "keep": None,
                "models": {},
            }
            entry = atomic_write(self.folder / IDS_FILE, _npy_bytes(_storable_ids(record_ids)))
            self.manifest["record_ids"] = {"file": IDS_FILE, **entry}
            self._write_manifest()

    # --------------------------------------------------------------- manifest and files
    def _read_manifest(self, path: Path) -> dict[str, Any] | None:
        """The manifest, or None (no manifest, or a damaged one moved aside with a warning)."""
        if not path.exists():
            return None
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(manifest, dict):
                raise ValueError(f"expected an object, got {type(manifest).__name__}")
            missing = [k for k in MANIFEST_KEYS if k not in manifest]
            if missing:
                raise ValueError(f"missing keys {missing}")
            if not isinstance(manifest["models"], dict):
                raise ValueError("'models' is not an object")
            return manifest
        except (ValueError, UnicodeDecodeError, OSError) as exc:
            aside = path.with_name(f"{MANIFEST}.corrupt-{datetime.now():%Y%m%dT%H%M%S%f}")
            os.replace(path, aside)
            _LOG.warning(
                "%s: damaged manifest (%s) moved to %s; the run starts afresh",
                path,
                exc,
                aside.name,
            )
            return None

    def _remove_temporary_files(self) -> None:
        """Remove ``*.tmp-*`` files of interrupted writes, unless another process holds the
        folder's lock (then they may be its writes in flight)."""
        from miaudit.audit.lock import try_folder_lock

        with try_folder_lock(self.folder) as free:
            if not free:
                _LOG.info("%s: another process writes here; its temporary files stay", self.folder)
                return
            for tmp in self.folder.rglob(f"*{_TMP_MARK}*"):
                _LOG.info("removing %s left by an interrupted write", tmp)
                tmp.unlink(missing_ok=True)

    def _write_manifest(self) -> None:
        self.manifest["updated"] = _now()
        text = json.dumps(self.manifest, indent=1, sort_keys=True)
        atomic_write(self.folder / MANIFEST, text.encode())

    def _verify(self, entry: dict[str, Any]) -> Path:
        """Path of a manifest file entry after checking its size and SHA-256."""
        path = self.folder / entry["file"]
        if not path.is_file():
            raise CorruptFileError(f"{path}: missing")
        size = path.stat().st_size
        if size != entry["bytes"]:
            raise CorruptFileError(
                f"{path}: {size} bytes, expected {entry['bytes']} (truncated or overwritten)"
            )
        digest = sha256_file(path)
        if digest != entry["sha256"]:
            raise CorruptFileError(f"{path}: SHA-256 {digest[:12]}… does not match the manifest")
        return path

    def _load_array(self, entry: dict[str, Any]) -> NDArray:
        return np.load(self._verify(entry), allow_pickle=False)

    # --------------------------------------------------------------- keep matrix
    @property
    def keep(self) -> NDArray[np.bool_] | None:
        """The stored keep matrix (all models ever requested), or None."""
        entry = self.manifest.get("keep")
        if entry is None:
            return None
        try:
            return self._load_array(entry)
        except (CorruptFileError, ValueError, OSError) as exc:
            _LOG.warning("%s: stored keep matrix dropped (%s)", self.folder, exc)
            self.manifest["keep"] = None
            self._keep_lost = True
            return None

    def set_keep(self, keep: ArrayLike, provenance: dict[str, Any] | None = None) -> None:
        """Store ``keep`` ``(m, n)``. Rows of finished models must be unchanged (checked via
        each model's keep-row hash)."""
        arr = check_keep(keep)
        if arr.shape[1] != len(self.record_ids):
            raise ValidationError(
                f"keep: has {arr.shape[1]} record columns but the run has "
                f"{len(self.record_ids)} records"
            )
        stale = []
        for key, info in self.manifest["models"].items():
            i = int(key)
            if i < arr.shape[0] and info["keep_row_sha256"] != row_hash(arr[i]):
                if self._keep_lost:
                    stale.append(key)
                    continue
                raise ValidationError(
                    f"keep: row {i} differs from the subset model {i} of run "
                    f"{self.folder.name} was trained on; keep the stored rows (extend the "
                    "matrix instead of redrawing it) or use another store root"
                )
        for key in stale:
            _LOG.warning("model %s will be trained again: its keep row changed", key)
            self._drop(key)
        data = _npy_bytes(arr)
        name = f"keep-{sha256_bytes(data)[:KEEP_NAME_DIGITS]}.npy"
        old = self.manifest.get("keep")
        entry = atomic_write(self.folder / name, data)
        self.manifest["keep"] = {"file": name, **entry, "shape": list(arr.shape)}
        if provenance is not None:
            self.manifest["keep"]["provenance"] = provenance
        self._write_manifest()  # the one step that switches to the new matrix
        self._keep_lost = False
        if old is not None and old.get("file") not in (None, name):
            (self.folder / old["file"]).unlink(missing_ok=True)

    # --------------------------------------------------------------- models
    def completed_models(self, verify: bool = True) -> list[int]:
        """Ids of the finished models whose files are intact (sorted).

        With ``verify``, every file is checked (size and SHA-256); a bad one is logged, the
        model's entry and files are dropped from the run, and the model is not listed.
        """
        bad = []
        for key, info in self.manifest["models"].items():
            if not verify:
                continue
            try:
                for name in ("observations", "weights"):
                    if info.get(name) is not None:
                        self._verify(info[name])
            except CorruptFileError as exc:
                _LOG.warning("model %s will be trained again: %s", key, exc)
                bad.append(key)
        for key in bad:
            self._drop(key)
        if bad:
            self._write_manifest()
        return sorted(int(k) for k in self.manifest["models"])

    def _drop(self, key: str) -> None:
        info = self.manifest["models"].pop(key)
        for name in ("observations", "weights"):
            if info.get(name) is not None:
                (self.folder / info[name]["file"]).unlink(missing_ok=True)

    def model_info(self, model_id: int) -> dict[str, Any]:
        """Manifest entry of a finished model (accuracies, timings, files)."""
        try:
            return self.manifest["models"][str(int(model_id))]
        except KeyError:
            raise ValidationError(
                f"model {model_id} is not finished in run {self.folder.name}; finished: "
                f"{sorted(int(k) for k in self.manifest['models'])}"
            ) from None

    def write_model(
        self,
        result: ModelResult,
        keep_row: NDArray[np.bool_],
        execution: dict[str, Any] | None = None,
    ) -> None:
        """Write one model's weights and observations atomically, then record them.

        ``execution`` (where and when the model's task ran: the executor, and for Ray the node,
        queue and run times) is recorded in the model's manifest entry."""
        obs = np.ascontiguousarray(result.observations, dtype=np.float32)
        if obs.ndim != 3 or obs.shape[0] != len(self.record_ids):
            raise ValidationError(
                f"model {result.model_id}: observations must have shape (n_records, q, C) with "
                f"n_records = {len(self.record_ids)}, got {obs.shape}"
            )
        stem = f"model_{result.model_id:05d}"
        obs_name = f"{OBS_DIR}/{stem}.npy"
        entry: dict[str, Any] = {
            "observations": {
                "file": obs_name,
                **atomic_write(self.folder / obs_name, _npy_bytes(obs)),
                "shape": list(obs.shape),
            },
            "weights": None,
        }
        if result.weights is not None and result.weights_format is not None:
            name = f"{MODEL_DIR}/{stem}.{result.weights_format}"
            data = _weights_bytes(result.weights, result.weights_format)
            entry["weights"] = {
                "file": name,
                "format": result.weights_format,
                **atomic_write(self.folder / name, data),
            }
        entry.update(
            keep_row_sha256=row_hash(keep_row),
            n_train=int(result.n_train),
            train_acc=_json_float(result.train_acc),
            test_acc=_json_float(result.test_acc),
            final_loss=_json_float(result.final_loss),
            train_seconds=float(result.train_seconds),
            query_seconds=float(result.query_seconds),
            finished=_now(),
        )
        if execution is not None:
            entry["execution"] = execution
        if result.privacy is not None:  # DP-SGD: the accountant's epsilon (inf as "inf")
            entry["privacy"] = jsonable(result.privacy)
        self.manifest["models"][str(result.model_id)] = entry
        self._write_manifest()

    def observation_paths(self, model_ids: Iterable[int]) -> list[Path]:
        """Paths of the observation files of ``model_ids`` (not verified)."""
        return [self.folder / self.model_info(i)["observations"]["file"] for i in model_ids]

    def load_observations(
        self, model_ids: Sequence[int] | None = None, *, verify: bool = True
    ) -> NDArray[np.float32]:
        """Observations of ``model_ids`` (default: every finished model), shape ``(m, n, q, C)``.

        Each file is memory-mapped and copied into one float32 array; with ``verify`` its
        SHA-256 is checked first (:class:`CorruptFileError` if it does not match).
        """
        ids = self.completed_models(verify=False) if model_ids is None else list(model_ids)
        if not ids:
            raise ValidationError(f"run {self.folder.name}: no models to load")
        entries = [self.model_info(i)["observations"] for i in ids]
        shape = tuple(entries[0]["shape"])
        out = np.empty((len(ids), *shape), dtype=np.float32)
        for j, entry in enumerate(entries):
            path = self._verify(entry) if verify else self.folder / entry["file"]
            out[j] = np.load(path, mmap_mode="r", allow_pickle=False)
        return out

    def load_weights(self, model_id: int, trusted: Sequence[str] = ()) -> Any:
        """A finished model's weights: ``{name: ndarray}`` (safetensors) or the scikit-learn
        estimator (skops, only trusted types — see :func:`miaudit.targets.load_skops`)."""
        entry = self.model_info(model_id)["weights"]
        if entry is None:
            raise ValidationError(f"model {model_id}: its weights were not saved")
        path = self._verify(entry)
        if entry["format"] == "safetensors":
            from safetensors.numpy import load_file

            return load_file(path)
        from miaudit.targets import load_skops

        return load_skops(path, trusted=trusted)


def row_hash(row: NDArray[np.bool_]) -> str:
    """SHA-256 of a keep row (bit-packed, with its length): which records a model trained on."""
    return sha256_bytes(
        np.packbits(np.asarray(row, dtype=bool)).tobytes() + str(row.size).encode()
    )


def _json_float(value: float | None) -> float | str | None:
    """None stays None (not measured); a float as :func:`miaudit._json.json_float` writes it
    (NaN as ``"nan"``: the one convention of every JSON file miaudit writes)."""
    return None if value is None else json_float(value)


def _storable_ids(ids: NDArray) -> NDArray:
    """Record ids as a pickle-free array (object arrays of strings become unicode)."""
    if ids.dtype == object:
        return np.asarray([str(v) for v in ids.tolist()])
    return ids
