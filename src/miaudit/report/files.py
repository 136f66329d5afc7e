"""Writing an audit's results to a folder: every output file, ``metrics.json`` last.

A result is data (:class:`~miaudit.audit.result.AuditResult`); this module is the one place that
turns it into files:

=====================  =============================================================
file                   what
=====================  =============================================================
``scores.csv``         one row per (target, record): record id, target, label, membership,
``scores.parquet``     one score column per attack (higher = member)
``vulnerability.csv``  one row per record, most exposed first
``models.csv``         one row per model: role, train/test accuracy, training time
``report.html``        the self-contained report (its PNG plots beside it)
``metrics.json``       headline, metrics with intervals, timings, versions, config
=====================  =============================================================

**Written as a set.** :func:`write_outputs` first removes ``metrics.json``, then draws every
file into a private staging folder inside the output folder and renames each over its final
name (``os.replace``: atomic, and a symlink planted at an output path is replaced, never
followed). :func:`write_metrics` then writes ``metrics.json`` last, atomically, with the SHA-256
of every other output under ``"outputs"``. A run killed at any moment therefore leaves either no
``metrics.json`` (an incomplete folder, visibly) or one that describes exactly the files beside
it — never metrics of one run beside scores of another.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from miaudit._json import write_json
from miaudit.exceptions import MiauditError
from miaudit.provenance import sha256_file

if TYPE_CHECKING:
    from miaudit.audit.result import AuditResult

__all__ = [
    "METRICS_FILE",
    "OUTPUT_FILES",
    "output_checksums",
    "save_result",
    "write_metrics",
    "write_outputs",
]

#: Name of the machine-readable summary of an audit.
METRICS_FILE = "metrics.json"
#: The other output files, whose checksums ``metrics.json`` records.
OUTPUT_FILES = (
    "scores.csv",
    "scores.parquet",
    "vulnerability.csv",
    "models.csv",
    "report.html",
    "roc.png",
    "score_histograms.png",
)
#: Name prefix of the private folder in which :func:`write_outputs` draws the files.
STAGING_PREFIX = ".outputs-staging-"


def _staging_dirs(out: Path) -> list[Path]:
    return sorted(p for p in out.glob(f"{STAGING_PREFIX}*") if p.is_dir())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _remove_stale_staging(out: Path) -> None:
    """Staging folders of writers that died (their pid, the name's first field, is gone)."""
    for folder in _staging_dirs(out):
        pid = folder.name[len(STAGING_PREFIX) :].split("-")[0]
        if pid.isdigit() and (int(pid) == os.getpid() or _alive(int(pid))):
            continue
        shutil.rmtree(folder, ignore_errors=True)


def write_outputs(result: AuditResult, folder: str | Path) -> dict[str, Path]:
    """Every output file but ``metrics.json`` (see the module docstring); returns their paths."""
    from miaudit.report.html import write_report

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(out)
    # From here until write_metrics the folder is visibly incomplete.
    (out / METRICS_FILE).unlink(missing_ok=True)
    stage = out / f"{STAGING_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    stage.mkdir()
    try:
        result.scores.to_csv(stage / "scores.csv")
        result.scores.to_parquet(stage / "scores.parquet")
        result.vulnerability.to_csv(stage / "vulnerability.csv")
        result.models.to_csv(stage / "models.csv", index_label="model")
        write_report(result, stage / "report.html")
        files: dict[str, Path] = {}
        for staged in sorted(stage.iterdir()):
            _fsync(staged)
            target = out / staged.name
            if target.is_dir() and not target.is_symlink():
                raise MiauditError(f"{target}: is a folder; cannot write the output file there")
            os.replace(staged, target)
            files[staged.name] = target
    except OSError as exc:
        raise MiauditError(
            f"{out}: cannot write the outputs ({exc.strerror or exc}"
            f"{': ' + str(exc.filename) if exc.filename else ''}); no metrics.json was written"
        ) from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return {
        "scores_csv": files["scores.csv"],
        "scores_parquet": files["scores.parquet"],
        "vulnerability": files["vulnerability.csv"],
        "models": files["models.csv"],
        "report": files["report.html"],
    }


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def output_checksums(folder: str | Path) -> dict[str, str]:
    """SHA-256 of every output file in ``folder`` (:data:`OUTPUT_FILES` that exist)."""
    out = Path(folder)
    return {
        name: sha256_file(out / name) for name in OUTPUT_FILES if (out / name).is_file()
    }


def write_metrics(result: AuditResult, folder: str | Path) -> Path:
    """``metrics.json`` (:meth:`AuditResult.metrics_dict` and the SHA-256 of every other
    output under ``"outputs"``), strict JSON, written atomically and last."""
    data = {**result.metrics_dict(), "outputs": output_checksums(folder)}
    return write_json(data, Path(folder) / METRICS_FILE)


def save_result(result: AuditResult, folder: str | Path) -> dict[str, Path]:
    """:func:`write_outputs`, then :func:`write_metrics`; sets ``result.output_dir``."""
    files = write_outputs(result, folder)
    files["metrics"] = write_metrics(result, folder)
    result.output_dir = Path(folder)
    return files
