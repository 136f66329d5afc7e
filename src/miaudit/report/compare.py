r"""Comparing audit runs side by side: ``miaudit compare RUN_A RUN_B ...``.

The defence-evaluation view: the same audit run with and without weight decay, dropout or
DP-SGD (or on two versions of a model), each in its own output folder. :func:`compare_runs`
reads each folder's ``metrics.json``, ``scores.parquet`` and ``models.csv`` and writes one
self-contained ``compare.html`` (with ``compare_roc.png``) and ``compare.json``:

* the ROC curve of one attack per run — the attack named by ``attack``, else each run's best
  attack at the headline FPR — on one log-log plot;
* each run's AUC and TPR at every reported FPR, with the intervals of its ``metrics.json``,
  and the mean train and test accuracy of its models;
* for every run after the first, a test of whether its TPR at the headline FPR :math:`f`
  differs from the first run's.

**The test.** A stratified bootstrap of the pooled (target, record) scores of both runs: in
each of ``B`` resamples, members and non-members of each run are drawn with replacement
separately, the TPR at FPR :math:`\le f` is recomputed for each run (threshold chosen anew
on the resampled non-members, as :func:`miaudit.metrics.tpr_at_fpr` does), and the
difference :math:`\Delta^* = \mathrm{TPR}^*_B - \mathrm{TPR}^*_A` recorded. The report gives
the observed difference, the percentile interval of :math:`\Delta^*` at level
:math:`1 - \alpha`, and the two-sided bootstrap p-value :math:`p = \min(1,
2\min(\Pr[\Delta^* \le 0], \Pr[\Delta^* \ge 0]))`; the difference is called significant when
:math:`p < \alpha`. Unlike a two-proportion z-test it includes the uncertainty of the threshold.
Records are resampled as if independent; when the runs pool several targets over the same
records (an algorithm audit) the records are correlated and the interval is somewhat too
narrow, so read a borderline p-value with care.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from miaudit._format import format_fpr
from miaudit._json import write_json
from miaudit.defaults import DEFAULT_ALPHA
from miaudit.exceptions import ValidationError
from miaudit.metrics import roc_curve, tpr_at_fpr

__all__ = [
    "COMPARE_BOOTSTRAP",
    "RunData",
    "compare_runs",
    "load_run",
    "tpr_difference_test",
]

#: Default bootstrap resamples of the significance test.
COMPARE_BOOTSTRAP = 500
#: Files a run folder must hold.
RUN_FILES = ("metrics.json", "scores.parquet")


@dataclass
class RunData:
    """One audit run read back from its output folder."""

    name: str
    folder: Path
    metrics: dict[str, Any]
    scores: pd.DataFrame
    models: pd.DataFrame

    def attack_metrics(self, attack: str) -> dict[str, Any]:
        return dict(self.metrics["attacks"][attack]["metrics"])

    def tpr_row(self, attack: str, fpr: float) -> dict[str, Any] | None:
        for r in self.attack_metrics(attack)["tpr_at_fpr"]:
            if abs(r["target_fpr"] - fpr) <= 1e-12 * max(fpr, 1e-300):
                return dict(r)
        return None

    def member_scores(self, attack: str) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        if attack not in self.scores:
            raise ValidationError(
                f"{self.folder}: scores.parquet has no column {attack!r}; columns: "
                f"{', '.join(map(str, self.scores.columns))}"
            )
        return (
            self.scores[attack].to_numpy(np.float64),
            self.scores["is_member"].to_numpy(bool),
        )

    def accuracy(self, col: str) -> float | None:
        v = (self.metrics.get("models") or {}).get(f"mean_{col}")
        return None if v is None else float(v)


def load_run(folder: str | Path) -> RunData:
    """Read a run folder written by ``miaudit run``/``demo``/``evaluate``.

    Raises
    ------
    ValidationError
        The folder or one of its files is missing or unreadable.
    """
    path = Path(folder)
    if not path.is_dir():
        raise ValidationError(f"{path}: not a run folder (it does not exist or is a file)")
    missing = [f for f in RUN_FILES if not (path / f).is_file()]
    if missing:
        raise ValidationError(
            f"{path}: not a complete run folder; missing {', '.join(missing)} (an audit run "
            "writes metrics.json last; a folder without it was interrupted)"
        )
    try:
        metrics = json.loads((path / "metrics.json").read_text(encoding="utf-8"))
        scores = pd.read_parquet(path / "scores.parquet")
    except (ValueError, OSError) as exc:
        raise ValidationError(f"{path}: could not read the run's files ({exc})") from None
    if "attacks" not in metrics:
        raise ValidationError(
            f"{path}/metrics.json: no 'attacks' section; compare reads the folders of "
            "`miaudit run` and `miaudit demo`"
        )
    models = (
        pd.read_csv(path / "models.csv", index_col=0)
        if (path / "models.csv").is_file()
        else pd.DataFrame()
    )
    return RunData(path.resolve().name, path, metrics, scores, models)


def _unique_names(runs: list[RunData]) -> None:
    seen: dict[str, int] = {}
    for r in runs:
        if r.name in seen:
            seen[r.name] += 1
            r.name = f"{r.name} ({seen[r.name]})"
        else:
            seen[r.name] = 1


def _tpr(scores: NDArray[np.float64], member: NDArray[np.bool_], fpr: float) -> float:
    return float(tpr_at_fpr(scores, member, fpr).tpr)


def tpr_difference_test(
    a: tuple[NDArray[np.float64], NDArray[np.bool_]],
    b: tuple[NDArray[np.float64], NDArray[np.bool_]],
    fpr: float,
    *,
    n_bootstrap: int = COMPARE_BOOTSTRAP,
    alpha: float = DEFAULT_ALPHA,
    seed: int = 0,
) -> dict[str, float | bool]:
    r"""Bootstrap test of :math:`\mathrm{TPR}_B - \mathrm{TPR}_A` at FPR :math:`\le` ``fpr``.

    Parameters
    ----------
    a, b : (scores, is_member)
        Pooled scores (higher = member) and membership of two runs.
    fpr : float
        Target FPR.
    n_bootstrap : int
        Stratified resamples (module docstring).
    alpha : float
        Level of the interval and of the significance decision.
    seed : int

    Returns
    -------
    dict
        ``difference`` (observed), ``interval_low``, ``interval_high``, ``p_value``,
        ``significant`` (``p_value < alpha``), ``n_bootstrap``, ``alpha``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> m = rng.random(4000) < 0.5
    >>> weak, strong = rng.normal(size=4000) + 0.2 * m, rng.normal(size=4000) + 2.0 * m
    >>> t = tpr_difference_test((weak, m), (strong, m), 0.01, n_bootstrap=200)
    >>> bool(t["significant"]), t["difference"] > 0.2
    (True, True)
    """
    rng = np.random.default_rng(seed)
    observed = _tpr(*b, fpr) - _tpr(*a, fpr)
    parts = []
    for s, m in (a, b):
        parts.append((s[m], s[~m]))
    diffs = np.empty(n_bootstrap)
    for i in range(n_bootstrap):
        tprs = []
        for pos, neg in parts:
            rp = pos[rng.integers(0, pos.size, pos.size)]
            rn = neg[rng.integers(0, neg.size, neg.size)]
            tprs.append(
                _tpr(
                    np.concatenate([rp, rn]),
                    np.concatenate([np.ones(rp.size, bool), np.zeros(rn.size, bool)]),
                    fpr,
                )
            )
        diffs[i] = tprs[1] - tprs[0]
    lo, hi = np.quantile(diffs, [alpha / 2, 1 - alpha / 2])
    p = min(1.0, 2.0 * min(float(np.mean(diffs <= 0)), float(np.mean(diffs >= 0))))
    return {
        "difference": float(observed),
        "interval_low": float(lo),
        "interval_high": float(hi),
        "p_value": p,
        "significant": bool(p < alpha),
        "n_bootstrap": int(n_bootstrap),
        "alpha": float(alpha),
    }


def _choose_attack(run: RunData, attack: str | None) -> str:
    if attack is None:
        return str(run.metrics["best_attack"])
    if attack not in run.metrics["attacks"]:
        raise ValidationError(
            f"{run.folder}: no attack {attack!r} in this run; its attacks: "
            f"{', '.join(run.metrics['attacks'])}"
        )
    return attack


def _e(x: Any) -> str:
    return html.escape(str(x))


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def compare_runs(
    folders: list[str | Path],
    out: str | Path,
    *,
    attack: str | None = None,
    fpr: float | None = None,
    n_bootstrap: int = COMPARE_BOOTSTRAP,
    alpha: float = DEFAULT_ALPHA,
    seed: int = 0,
) -> dict[str, Any]:
    """Write ``compare.html``, ``compare_roc.png`` and ``compare.json`` into ``out``.

    Parameters
    ----------
    folders : list of path
        At least two run folders; the first is the baseline of the significance tests.
    out : path
        Output folder.
    attack : str, optional
        Attack to compare in every run; default each run's best attack.
    fpr : float, optional
        FPR of the significance test; default the first run's headline FPR.
    n_bootstrap, alpha, seed
        Of :func:`tpr_difference_test`.

    Returns
    -------
    dict
        What ``compare.json`` holds (``runs``, ``tests``, ``fpr``, ``files``).
    """
    from miaudit.report.plots import plot_roc

    if len(folders) < 2:
        raise ValidationError(f"compare: needs at least two run folders, got {len(folders)}")
    runs = [load_run(f) for f in folders]
    _unique_names(runs)
    fpr = float(fpr if fpr is not None else runs[0].metrics.get("headline_fpr", 1e-3))
    chosen = {r.name: _choose_attack(r, attack) for r in runs}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    curves, n_non = {}, []
    for r in runs:
        s, m = r.member_scores(chosen[r.name])
        curves[f"{r.name}: {chosen[r.name]}"] = roc_curve(s, m)[:2]
        n_non.append(int((~m).sum()))
    roc_png = plot_roc(
        curves,
        out / "compare_roc.png",
        min_fpr=min(1.0 / max(min(n_non), 1), 0.1),
        title="ROC curves of the compared runs (log-log)",
    )
    base = runs[0]
    tests = {
        r.name: tpr_difference_test(
            base.member_scores(chosen[base.name]),
            r.member_scores(chosen[r.name]),
            fpr,
            n_bootstrap=n_bootstrap,
            alpha=alpha,
            seed=seed,
        )
        for r in runs[1:]
    }
    summary_runs = []
    for r in runs:
        a = chosen[r.name]
        am = r.attack_metrics(a)
        summary_runs.append(
            {
                "name": r.name,
                "folder": str(r.folder),
                "attack": a,
                "auc": am["auc"],
                "auc_interval": am["auc_interval"],
                "tpr_at_fpr": am["tpr_at_fpr"],
                "train_accuracy": r.accuracy("train_accuracy"),
                "test_accuracy": r.accuracy("test_accuracy"),
                "headline": r.metrics.get("headline"),
                "reliable_verdict": r.metrics.get("reliable_verdict", True),
            }
        )
    result = {"fpr": fpr, "baseline": base.name, "runs": summary_runs, "tests": tests}
    html_path = out / "compare.html"
    html_path.write_text(_render(result, roc_png), encoding="utf-8")
    json_path = write_json(result, out / "compare.json")
    result["files"] = {"html": str(html_path), "roc": str(roc_png), "json": str(json_path)}
    return result


def _render(result: dict[str, Any], roc_png: Path) -> str:
    from miaudit.report.html import _CSS, _img

    runs = result["runs"]
    fprs = sorted({r["target_fpr"] for run in runs for r in run["tpr_at_fpr"]}, reverse=True)
    head = "".join(f"<th>TPR @ {_e(format_fpr(f))} FPR</th>" for f in fprs)
    rows = []
    for run in runs:
        lo, hi = run["auc_interval"]
        cells = [f"<td class='ci'>{run['auc']:.4f} [{lo:.3f}–{hi:.3f}]</td>"]
        by = {r["target_fpr"]: r for r in run["tpr_at_fpr"]}
        for f in fprs:
            r = by.get(f)
            if r is None:
                cells.append("<td>–</td>")
                continue
            a, b = r["tpr_interval"]
            mark = "" if r["reachable"] else "†"
            cells.append(f"<td class='ci'>{_pct(r['tpr'])}{mark} [{_pct(a)}–{_pct(b)}]</td>")
        for col in ("train_accuracy", "test_accuracy"):
            v = run[col]
            cells.append(f"<td>{'–' if v is None else f'{v:.4f}'}</td>")
        flag = "" if run["reliable_verdict"] else " <span class='nan'>(no reliable verdict)</span>"
        rows.append(
            f"<tr data-run='{_e(run['name'])}'><td class='name'>{_e(run['name'])}{flag}</td>"
            f"<td class='name'>{_e(run['attack'])}</td>{''.join(cells)}</tr>"
        )
    any_below = any(not r["reachable"] for run in runs for r in run["tpr_at_fpr"])
    f = result["fpr"]
    tests = []
    for name, t in result["tests"].items():
        verdict = "significant" if t["significant"] else "not significant"
        tests.append(
            f"<tr data-test='{_e(name)}'><td class='name'>{_e(name)} vs "
            f"{_e(result['baseline'])}</td><td>{100 * t['difference']:+.2f} pts</td>"
            f"<td class='ci'>[{100 * t['interval_low']:+.2f}, {100 * t['interval_high']:+.2f}]</td>"
            f"<td>{t['p_value']:.3g}</td><td class='name'><b>{verdict}</b> at α = "
            f"{t['alpha']:g}</td></tr>"
        )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>miaudit comparison</title>
<style>{_CSS}</style></head><body>
<h1>Audit runs compared</h1>
<p>One attack per run (the attack named with <code>--attack</code>, else each run's best
attack). Higher TPR at low FPR = more leakage; a defence works when it lowers the TPR
significantly without costing too much test accuracy.</p>
{_img(roc_png, "ROC curves of the compared runs")}
<h2>Metrics side by side</h2>
<table><tr><th class="name">run</th><th class="name">attack</th><th>AUC [interval]</th>{head}
<th>train accuracy</th><th>test accuracy</th></tr>{"".join(rows)}</table>
<p class="muted">{"† target FPR below the resolution of the run: TPR at zero false positives. "
if any_below else ""}Intervals as in each run's metrics.json (AUC bootstrap, TPR
Clopper–Pearson).</p>
<h2>Is the difference significant?</h2>
<p>Difference of TPR at {_e(format_fpr(f))} FPR from the baseline
<b>{_e(result["baseline"])}</b>: stratified bootstrap of the pooled scores of both runs (the
threshold re-chosen in each resample), percentile interval and two-sided p-value.</p>
<table><tr><th class="name">comparison</th><th>ΔTPR</th><th>interval</th><th>p-value</th>
<th class="name">verdict</th></tr>{"".join(tests)}</table>
</body></html>
"""
