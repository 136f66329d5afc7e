"""The report's guidance: what the headline means, which records are exposed and why, what to
try next.

Reference points used in the text:

* **chance**: an attack that flags records at random at false-positive rate :math:`f` flags a
  fraction :math:`f` of the members too, so TPR = FPR is "no better than guessing"; the report
  gives the TPR as a multiple of the FPR.
* **differential privacy**: an :math:`(\\varepsilon, \\delta)`-DP training algorithm bounds every
  attack by :math:`\\mathrm{TPR} \\le e^{\\varepsilon}\\,\\mathrm{FPR} + \\delta` (Kairouz, Oh,
  Viswanath, ICML 2015), so the multiple of chance is at most about :math:`e^{\\varepsilon}`.
* **a published audit**: LiRA (Carlini, Chien, Nasr, Song, Terzis, Tramèr, "Membership Inference
  Attacks From First Principles", IEEE S&P 2022) identifies about 8% of the training records of
  its CIFAR-10 models at 0.1% FPR (:data:`LIRA_CIFAR10_TPR`), 80× chance.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import numpy as np

from miaudit._format import format_fpr

if TYPE_CHECKING:
    from miaudit.audit.result import AuditResult

__all__ = ["LIRA_CIFAR10_FPR", "LIRA_CIFAR10_TPR", "defence_configs", "guidance_section"]

#: LiRA's TPR on CIFAR-10 at :data:`LIRA_CIFAR10_FPR` (Carlini et al., S&P 2022).
LIRA_CIFAR10_TPR = 0.08
LIRA_CIFAR10_FPR = 0.001
#: TPR / FPR at or below which the headline reads "no better than chance".
CHANCE_MULTIPLE = 1.5
#: TPR / FPR from which the headline reads "strong".
STRONG_MULTIPLE = 10.0
#: A class is over-represented among the top records when its share is this many times its
#: share among all records.
OVER_REPRESENTED = 1.5
#: Top records are outliers when their median nearest-neighbour distance is this many times
#: the typical one.
OUTLIER_RATIO = 1.2
#: Pixel size (CSS px) of the digit images drawn in the report.
PIXEL = 5


def _e(x: Any) -> str:
    return html.escape(str(x))


def defence_configs(recipe: str | None) -> list[tuple[str, str, str]]:
    """``(defence, why, YAML lines)`` for the defences worth auditing next."""
    head = f"training:\n  recipe: {recipe or 'torch-mlp'}\n  params:\n"
    return [
        (
            "weight decay (L2 regularisation)",
            "shrinks the train–test gap that membership attacks feed on; cheap, usually costs "
            "little accuracy",
            head + "    weight_decay: 0.0005",
        ),
        (
            "dropout",
            "another regulariser; try 0.2–0.5 on the hidden layers",
            head + "    dropout: 0.3",
        ),
        (
            "early stopping",
            "stops each model where its held-out loss stops improving, before it memorises; "
            "helps when the gap opens late in training",
            head + "    early_stopping: 5",
        ),
        (
            "DP-SGD (differential privacy)",
            "clips each record's gradient and adds noise: a proven bound TPR ≤ e^ε·FPR + δ on "
            "every attack, at some cost in accuracy",
            head + "    dp: {noise_multiplier: 1.0, max_grad_norm: 1.0}",
        ),
    ]


def _meaning(result: AuditResult) -> str:
    if not result.reliable:
        return (
            "<p><b>No reading is possible</b>: a sanity check failed (above), so the numbers "
            "cannot be read as evidence of privacy or of leakage. Fix the cause and re-run.</p>"
        )
    f = result.headline_fpr
    r = result.metrics[result.best_attack].at(f)
    multiple = r.tpr / f if f > 0 else float("inf")
    if multiple <= CHANCE_MULTIPLE:
        verdict = "no better than chance at this false-positive rate"
    elif multiple < STRONG_MULTIPLE:
        verdict = "modest leakage: better than chance, but a flagged record is usually wrong"
    else:
        verdict = "strong leakage: an attacker can single out some training records with few errors"
    return (
        f"<p>At {_e(format_fpr(f))} false positives the best attack ({_e(result.best_attack)}) "
        f"finds <b>{100 * r.tpr:.2f}%</b> of the training records. Guessing at random finds "
        f"{_e(format_fpr(f))} of them (chance = the FPR), so this is "
        f"<b>{multiple:.1f}× chance</b>: {verdict}.</p>"
        "<p>For scale: LiRA (Carlini et al., S&amp;P 2022) finds about "
        f"{100 * LIRA_CIFAR10_TPR:.0f}% of the training records of its CIFAR-10 models at "
        f"{format_fpr(LIRA_CIFAR10_FPR)} FPR ({LIRA_CIFAR10_TPR / LIRA_CIFAR10_FPR:.0f}× "
        "chance), a level the field reads as substantial leakage; a model trained with "
        "(ε, δ)-differential privacy cannot exceed e<sup>ε</sup>× chance (plus δ).</p>"
    )


def _svg_image(pixels: list[list[float]]) -> str:
    a = np.asarray(pixels, dtype=np.float64)
    lo, hi = float(a.min()), float(a.max())
    g = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    h, w = a.shape
    rects = "".join(
        f"<rect x='{j * PIXEL}' y='{i * PIXEL}' width='{PIXEL}' height='{PIXEL}' "
        f"fill='rgb({v},{v},{v})'/>"
        for i in range(h)
        for j in range(w)
        for v in (int(255 * (1.0 - g[i, j])),)
    )
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{w * PIXEL}' height='{h * PIXEL}' "
        f"style='margin:2px;border:1px solid #ccc'>{rects}</svg>"
    )


def _exposed(result: AuditResult) -> str:
    ex = result.exposure
    if not ex:
        return ""
    parts = [f"<h3>Which records are most exposed, and why</h3><p>The {len(ex['top_ids'])} "
             "records the best attack flags most often (table above) compared with all "
             "audited records. Exposed records are typically outliers, rare classes or "
             "mislabelled.</p>"]
    top, all_ = ex.get("label_share_top"), ex.get("label_share_all")
    if top and all_:
        rows = "".join(
            f"<tr><td class='name'>{_e(k)}</td><td>{100 * top.get(k, 0.0):.0f}%</td>"
            f"<td>{100 * v:.0f}%</td></tr>"
            for k, v in all_.items()
        )
        over = [k for k, v in top.items() if v >= OVER_REPRESENTED * all_.get(k, 0.0)]
        parts.append(
            "<table id='label-shares'><tr><th class='name'>label</th><th>top records</th>"
            f"<th>all records</th></tr>{rows}</table>"
            + (
                f"<p>Over-represented among the top records: label(s) {_e(', '.join(over))}."
                "</p>"
                if over
                else ""
            )
        )
    if "top_nn_distance_median" in ex:
        t, a = ex["top_nn_distance_median"], ex["all_nn_distance_median"]
        ratio = t / a if a > 0 else float("inf")
        reading = (
            "they are outliers, far from every other record, so a model can only fit them "
            "by memorising them"
            if ratio >= OUTLIER_RATIO
            else "they are not unusually isolated; look at their labels and content"
        )
        parts.append(
            f"<p id='nn-distance'>Nearest-neighbour distance (Euclidean, features as given): "
            f"median <b>{t:.3g}</b> for the top records vs {a:.3g} for a typical record "
            f"({ratio:.2f}×): {reading}.</p>"
        )
    if ex.get("images"):
        imgs = "".join(
            f"<figure style='display:inline-block;margin:2px;text-align:center'>"
            f"{_svg_image(img)}<figcaption class='muted'>{_e(rid)}</figcaption></figure>"
            for img, rid in zip(ex["images"], ex["top_ids"], strict=False)
        )
        parts.append(f"<div id='exposed-images'>{imgs}</div>")
    return "".join(parts)


def guidance_section(result: AuditResult) -> str:
    """The "What this means and what to do" section of the HTML report."""
    recipe = (result.config.get("training") or {}).get("recipe") if result.config else None
    defences = "".join(
        f"<li><b>{_e(name)}</b>: {_e(why)}<pre>{_e(yaml)}</pre></li>"
        for name, why, yaml in defence_configs(recipe)
    )
    scores_only = result.config.get("mode", "scores") == "scores"
    next_steps = (
        "<h3>Defences to evaluate next</h3><p>Run the same config with one change each, into "
        "its own output folder, then put the runs side by side with <code>miaudit compare "
        "RUN_A RUN_B ...</code> (ROC curves, TPR with intervals and a significance test, "
        f"train/test accuracy):</p><ul>{defences}</ul>"
    )
    return (
        "<h2 id='guidance'>What this means and what to do</h2>"
        f"{_meaning(result)}{'' if scores_only else _exposed(result)}{next_steps}"
    )
