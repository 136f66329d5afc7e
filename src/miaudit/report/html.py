"""The self-contained HTML report of an audit: one file, plots embedded, no network assets.

Every number shown for an attack is in a cell carrying ``data-attack``, ``data-metric`` and
``data-value`` (the exact value, as in ``metrics.json``), so the report can be checked by
machine against ``metrics.json``.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from miaudit._format import format_fpr
from miaudit.defaults import TOP_RECORDS
from miaudit.metrics import MetricsSummary
from miaudit.report.guidance import guidance_section
from miaudit.report.plots import plot_roc, plot_score_histograms

if TYPE_CHECKING:
    from miaudit.audit.result import AuditResult
    from miaudit.audit.sanity import Check

__all__ = ["render_report", "write_report"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:1100px;color:#222;line-height:1.45;padding:0 1rem}
h1{margin-bottom:.2rem} h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
.headline{font-size:1.25rem;background:#fff4e5;border-left:6px solid #f08c00;padding:.8rem 1rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:right}
th{background:#f4f4f4} td.name,th.name{text-align:left}
img{max-width:100%} pre{background:#f7f7f7;padding:.8rem;overflow-x:auto;font-size:.8rem}
.muted{color:#666;font-size:.85rem} .best{font-weight:bold} .nan{color:#b00}
td.ci{white-space:nowrap}
.noverdict{background:#fdecea;border-left-color:#c92a2a}
.check{border-left:6px solid #c92a2a;background:#fff5f5;padding:.5rem 1rem;margin:.5rem 0}
.check.warn{border-left-color:#f08c00;background:#fff9f0}
"""

#: Left end of the ROC's FPR axis at most (with a single non-member, 1/n would be 1).
MAX_AXIS_MIN_FPR = 0.1

#: Marks a TPR whose target FPR is below the evaluation's resolution.
_BELOW = "†"


def _e(x: Any) -> str:
    return html.escape(str(x))


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _cell(attack: str, metric: str, value: float, text: str) -> str:
    return (
        f'<td class="ci" data-attack="{_e(attack)}" data-metric="{_e(metric)}" '
        f'data-value="{value!r}">{_e(text)}</td>'
    )


def _checks_section(checks: list[Check]) -> str:
    """Each failed sanity check with its reason and fix (:mod:`miaudit.audit.sanity`)."""
    if not checks:
        return ""
    items = "".join(
        f"<div class='check {_e(c.severity)}' data-check='{_e(c.id)}'><b>"
        f"{'Check failed' if c.severity == 'fail' else 'Warning'}: {_e(c.id)}</b><br>"
        f"{_e(c.reason)}<br><i>Fix:</i> {_e(c.fix)}</div>"
        for c in checks
    )
    return f"<h2 id='checks'>Sanity checks</h2>{items}"


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _metrics_table(metrics: dict[str, MetricsSummary], best: str) -> str:
    first = next(iter(metrics.values()))
    fprs = [r.target_fpr for r in first.tpr_at_fpr]
    head = "".join(f"<th>TPR @ {_e(format_fpr(f))} FPR</th>" for f in fprs)
    rows = []
    for name, s in metrics.items():
        lo, hi = s.auc_interval
        cells = [
            _cell(name, "auc", s.auc, f"{s.auc:.4f} [{lo:.3f}–{hi:.3f}]"),
            _cell(name, "balanced_accuracy", s.balanced_accuracy, f"{s.balanced_accuracy:.4f}"),
            _cell(name, "advantage", s.advantage, f"{s.advantage:.4f}"),
        ]
        for f in fprs:
            r = s.at(f)
            a, b = r.tpr_interval
            mark = "" if r.reachable else _BELOW
            cells.append(
                _cell(name, f"tpr@{f!r}", r.tpr, f"{_pct(r.tpr)}{mark} [{_pct(a)}–{_pct(b)}]")
            )
        eps = s.epsilon.epsilon
        cells.append(_cell(name, "epsilon", eps, f"{eps:.3f}"))
        cls = ' class="name best"' if name == best else ' class="name"'
        rows.append(f"<tr><td{cls}>{_e(name)}</td>{''.join(cells)}</tr>")
    n_non = first.n_non_members
    any_below = any(not r.reachable for s in metrics.values() for r in s.tpr_at_fpr)
    below_note = (
        f"{_BELOW} target FPR below the resolution 1/{n_non} of the evaluation: the value is "
        "the TPR at zero false positives. "
        if any_below
        else ""
    )
    note = (
        f"<p class='muted'>{below_note}Intervals: AUC "
        f"bootstrap ({first.n_bootstrap} resamples), TPR Clopper–Pearson, both at "
        f"{100 * (1 - first.alpha):g}%. ε: empirical lower bound on the DP ε "
        f"(δ = {first.epsilon.delta:g}, threshold chosen "
        f"{_e(first.epsilon.selection.replace('_', ' '))}).</p>"
    )
    nans = [f"{_e(k)}: {v.n_nan}" for k, v in metrics.items() if v.n_nan]
    if nans:
        note += (
            f"<p class='nan'>NaN scores (ranked lowest, i.e. as non-members): "
            f"{', '.join(nans)}.</p>"
        )
    return (
        f"<table><tr><th class='name'>attack</th><th>AUC [interval]</th>"
        f"<th>balanced accuracy</th><th>advantage</th>{head}<th>ε lower bound</th></tr>"
        f"{''.join(rows)}</table>{note}"
    )


def _frame_table(df: pd.DataFrame, index_name: str, float_fmt: str = "{:.4f}") -> str:
    cols = [index_name, *df.columns]
    head = "".join(
        f"<th class='name'>{_e(c)}</th>" if i == 0 else f"<th>{_e(c)}</th>"
        for i, c in enumerate(cols)
    )
    floats = [pd.api.types.is_float_dtype(df[c]) for c in df.columns]
    body = []
    for idx, *values in df.itertuples(name=None):
        cells = [f"<td class='name'>{_e(idx)}</td>"]
        for v, is_float in zip(values, floats, strict=True):
            cells.append(f"<td>{_e(float_fmt.format(v) if is_float else v)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _models_section(models: pd.DataFrame) -> str:
    if models.empty:
        return "<p>No model information.</p>"
    parts = []
    for col in ("train_accuracy", "test_accuracy"):
        if col in models and models[col].notna().any():
            parts.append(
                f"{col.replace('_', ' ')}: mean {models[col].mean():.4f} "
                f"(sd {models[col].std(ddof=0):.4f})"
            )
    gap = ""
    if {"train_accuracy", "test_accuracy"} <= set(models.columns):
        g = float((models["train_accuracy"] - models["test_accuracy"]).mean())
        if np.isfinite(g):
            gap = (
                f"<p>Train–test accuracy gap: <b>{g:.4f}</b>. A large gap means the "
                "models memorise their training records; membership attacks feed on it.</p>"
            )
    return (
        f"<p>{len(models)} models. {'; '.join(parts)}.</p>{gap}{_store_note(models)}"
        f"<details><summary>per model</summary>{_frame_table(models, 'model')}</details>"
    )


def _store_note(models: pd.DataFrame) -> str:
    """Say how many models were read from the run store (a cached re-run trains nothing)."""
    if "from_store" not in models:
        return ""
    stored = int(models["from_store"].eq(True).sum())
    if not stored:
        return ""
    trained = int(models["from_store"].eq(False).sum())
    return (
        f"<p id='from-store'><b>{stored} of {len(models)} models came from the run store</b> "
        f"(trained by an earlier run with the same data, split and recipe); {trained} were "
        "trained by this run, so the training time below covers only those.</p>"
    )


def render_report(result: AuditResult, roc_png: Path, hist_png: Path) -> str:
    """The HTML text of the report (images read from the given PNG files and embedded)."""
    cfg = result.config
    top_n = int(cfg.get("report", {}).get("top_records", TOP_RECORDS)) if cfg else TOP_RECORDS
    top = result.vulnerability.head(top_n)
    attack_rows = "".join(
        f"<tr><td class='name'>{_e(k)}</td><td class='name'>{_e(v.get('title', ''))}</td>"
        f"<td class='name'>{_e(v.get('paper', ''))}</td>"
        f"<td class='name'>{_e(json.dumps(v.get('params', {})))}</td>"
        f"<td class='name'>{_e(v.get('threat_model', 'full outputs (logits)'))}</td></tr>"
        for k, v in result.attacks.items()
    )
    timings = "".join(
        f"<tr><td class='name'>{_e(k)}</td><td>{v:.2f}</td></tr>" for k, v in result.timings.items()
    )
    versions = ", ".join(f"{_e(k)} {_e(v)}" for k, v in result.versions.items())
    n_targets = result.scores["target"].nunique() if "target" in result.scores else 1
    yaml_text = _e(_to_yaml(cfg))
    scores_only = cfg.get("mode", "scores") == "scores"
    headline_cls = "headline" if result.reliable else "headline noverdict"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>miaudit report</title><style>{_CSS}</style></head><body>
<h1>Membership inference audit</h1>
<p class="muted">miaudit {_e(result.versions.get("miaudit", ""))} · mode
{_e(cfg.get("mode", "scores"))} · {n_targets} target(s) · seed {_e(cfg.get("seed", ""))}</p>
<p class="{headline_cls}" id="headline">{_e(result.headline)}</p>{_privacy_note(result)}
{_checks_section(result.checks)}
<p>Scores are higher for records an attack believes were in the training set. A true positive
is a training record flagged as such; a false positive is a record the model never saw,
flagged anyway. Read the table at low false-positive rates: an attack that flags a few
records with near certainty matters more than one that is right slightly more often than a
coin on average.</p>
<h2>Attacks compared</h2>
{_img(roc_png, "ROC curves, log-log")}
{_metrics_table(result.metrics, result.best_attack)}
<h2>Score distributions</h2>
{_img(hist_png, "score histograms of members and non-members")}
{"" if scores_only else _models_and_records(result, top)}
{guidance_section(result)}
<h2>Attacks run</h2>
<table><tr><th class="name">label</th><th class="name">attack</th><th class="name">paper</th>
<th class="name">parameters</th><th class="name">threat model (what the attack saw)</th></tr>
{attack_rows}</table>{_target_note(result.target)}
<h2>Run</h2>
<table><tr><th class="name">stage</th><th>seconds</th></tr>{timings}</table>
<p class="muted">Versions: {versions}</p>
<details><summary>configuration</summary><pre>{yaml_text}</pre></details>
</body></html>
"""


def _models_and_records(result: AuditResult, top: pd.DataFrame) -> str:
    """The models section and the most-exposed-records table (audits that trained models)."""
    return f"""<h2>The models</h2>
{_models_section(result.models)}
<h2>Most exposed records</h2>
<p>Flagged by <b>{_e(result.best_attack)}</b> at {_e(format_fpr(result.flag_fpr))} FPR per
target: <i>n_in</i> targets trained on the record, <i>n_flagged</i> of them flagged it,
<i>n_false_flags</i> targets that did not train on it flagged it
anyway.{_scores_note(result.config)}</p>
{_frame_table(top, "record_id")}
"""


def _privacy_note(result: AuditResult) -> str:
    """DP-SGD models: the accountant's ε beside the audit's lower bound; the canary audit's
    bounds when canaries were planted."""
    claim = result.privacy_claim()
    out = ""
    if claim is not None:
        out = f'<p id="privacy"><b>Differential privacy:</b> {_e(claim["sentence"])}.</p>'
    if result.canary_audit:
        out += (
            f'<p id="canary-audit"><b>Canary audit:</b> '
            f'{_e(result.canary_audit["sentence"])}.</p>'
        )
    return out


def _target_note(target: dict[str, Any]) -> str:
    """The audited model's access and, for an API, the queries it answered."""
    if not target:
        return ""
    text = f"<p>Target: {_e(target.get('type', ''))}, returning {_e(', '.join(target['returns']))}."
    usage = target.get("usage")
    if usage:
        budget = usage.get("budget")
        text += (
            f" It answered {usage['queries']:,} queries in {usage['requests']:,} requests "
            f"({usage['failures']:,} failed and were retried)"
            + (f"; query budget {budget:,}." if budget is not None else ".")
        )
    return text + "</p>"


def _scores_note(cfg: dict[str, Any]) -> str:
    if cfg.get("mode") == "scores":
        return ""
    return (
        " Every record's scores are in <code>scores.csv</code> / <code>scores.parquet</code>, "
        "keyed by record id."
    )


def _to_yaml(cfg: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(cfg, sort_keys=False) if cfg else "(none)"


def write_report(result: AuditResult, path: Path) -> Path:
    """Draw the plots next to ``path`` (``roc.png``, ``score_histograms.png``) and write the
    self-contained report to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n_non = next(iter(result.metrics.values())).n_non_members
    roc_png = plot_roc(
        result.rocs,
        path.parent / "roc.png",
        min_fpr=min(1.0 / n_non, MAX_AXIS_MIN_FPR),
        summaries=result.metrics,
        legend_fpr=result.headline_fpr,
    )
    member = result.scores["is_member"].to_numpy(bool)
    hist_png = plot_score_histograms(
        {k: result.scores[k].to_numpy(float) for k in result.metrics},
        member,
        path.parent / "score_histograms.png",
    )
    path.write_text(render_report(result, roc_png, hist_png), encoding="utf-8")
    return path
