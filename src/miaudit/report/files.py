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

``metrics.json`` is written last and atomically, so a folder whose ``metrics.json`` is present
and valid holds a complete set of outputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from miaudit._json import write_json

if TYPE_CHECKING:
    from miaudit.audit.result import AuditResult

__all__ = ["METRICS_FILE", "save_result", "write_metrics", "write_outputs"]

#: Name of the machine-readable summary of an audit.
METRICS_FILE = "metrics.json"


def write_outputs(result: AuditResult, folder: str | Path) -> dict[str, Path]:
    """Every output file but ``metrics.json`` (see the module docstring); returns their paths."""
    from miaudit.report.html import write_report

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "scores_csv": out / "scores.csv",
        "scores_parquet": out / "scores.parquet",
        "vulnerability": out / "vulnerability.csv",
        "models": out / "models.csv",
    }
    result.scores.to_csv(files["scores_csv"])
    result.scores.to_parquet(files["scores_parquet"])
    result.vulnerability.to_csv(files["vulnerability"])
    result.models.to_csv(files["models"], index_label="model")
    files["report"] = write_report(result, out / "report.html")
    return files


def write_metrics(result: AuditResult, folder: str | Path) -> Path:
    """``metrics.json`` (:meth:`AuditResult.metrics_dict`), strict JSON, written atomically."""
    return write_json(result.metrics_dict(), Path(folder) / METRICS_FILE)


def save_result(result: AuditResult, folder: str | Path) -> dict[str, Path]:
    """:func:`write_outputs`, then :func:`write_metrics`; sets ``result.output_dir``."""
    files = write_outputs(result, folder)
    files["metrics"] = write_metrics(result, folder)
    result.output_dir = Path(folder)
    return files
