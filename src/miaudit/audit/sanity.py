"""Sanity checks run before any verdict: is the audit able to say anything at all?

A membership audit measures what models *learned* about their training records. Its numbers
mean nothing when the models learned nothing, when the scores point the wrong way, or when the
evaluation is too small for the FPR asked. Each check here is a pure function of the data an
:class:`~miaudit.audit.result.AuditResult` holds (metrics, models table, per-record scores) and
returns :class:`Check` objects with the reason and the fix.

================================  ========  ===================================================
check                             severity  fires when
================================  ========  ===================================================
``models_did_not_learn``          fail      mean train accuracy ≤ majority-class rate +
                                            :data:`LEARN_MARGIN` (the models fit their own
                                            training records no better than always answering the
                                            most frequent class)
``constant_outputs``              fail      for every target, an output-based attack's scores
                                            take at most ``max(n_classes, 2)`` distinct values
                                            (to :data:`DISTINCT_DIGITS` significant digits) over
                                            at least :data:`MIN_RECORDS_CONSTANT` records: the
                                            model answers (almost) the same for every input
``no_generalization_gap``         warn      mean train accuracy − mean test accuracy <
                                            :data:`GAP_TOLERANCE` (expected for DP-SGD and strong
                                            regularisation; suspicious otherwise)
``inverted_scores``               fail/warn an attack's AUC bootstrap interval lies below 0.5 and
                                            AUC < 0.5 − :data:`INVERTED_MARGIN`: the scores
                                            rank non-members higher (fail for the headline
                                            attack, warn for the others)
``too_few_non_members``           warn      a requested FPR is below 1 / (number of non-members):
                                            the TPR there is the TPR at zero false positives
================================  ========  ===================================================

A failed check (severity ``fail``) makes the headline say "no reliable verdict" instead of a
number (:meth:`miaudit.audit.result.AuditResult.headline`).

Examples
--------
>>> [c.id for c in check_models(train_accuracy=[0.55, 0.6], test_accuracy=[0.6, 0.62],
...                             majority_rate=0.63)]
['models_did_not_learn', 'no_generalization_gap']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from miaudit._format import format_fpr
from miaudit.metrics import MetricsSummary

__all__ = [
    "DISTINCT_DIGITS",
    "GAP_TOLERANCE",
    "INVERTED_MARGIN",
    "LEARN_MARGIN",
    "MIN_RECORDS_CONSTANT",
    "Check",
    "check_inverted",
    "check_models",
    "check_outputs_constant",
    "check_resolution",
    "failed",
    "run_checks",
]

#: Train accuracy must exceed the majority-class rate by more than this for the models to
#: count as having learned something.
LEARN_MARGIN = 0.02
#: Train − test accuracy below this is "no generalisation gap".
GAP_TOLERANCE = 0.005
#: AUC this far below 0.5 (and an interval entirely below 0.5) is "clearly inverted".
INVERTED_MARGIN = 0.02
#: Significant digits to which scores are rounded when counting distinct values.
DISTINCT_DIGITS = 6
#: The constant-output check needs at least this many records per target.
MIN_RECORDS_CONSTANT = 20
#: Attacks whose score is a direct function of one model's output on the record (so a constant
#: model gives at most one score per class).
OUTPUT_ATTACKS = ("loss", "confidence", "entropy", "modified_entropy")

Severity = Literal["fail", "warn"]


@dataclass(frozen=True)
class Check:
    """One failed sanity check.

    Attributes
    ----------
    id : str
        Stable name (module docstring table).
    severity : {"fail", "warn"}
        ``fail``: the audit's verdict cannot be trusted; ``warn``: read the numbers with care.
    reason : str
        What was seen, with the numbers.
    fix : str
        What to do about it.
    attack : str or None
        The attack concerned, if any.
    """

    id: str
    severity: Severity
    reason: str
    fix: str
    attack: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.reason} Fix: {self.fix}"


def failed(checks: Sequence[Check]) -> list[Check]:
    """The checks of severity ``fail``."""
    return [c for c in checks if c.severity == "fail"]


def _clean(values: ArrayLike | None) -> np.ndarray:
    if values is None:
        return np.empty(0)
    a = pd.to_numeric(pd.Series(np.asarray(values, dtype=object).ravel()), errors="coerce")
    return a.dropna().to_numpy(float)


def check_models(
    train_accuracy: ArrayLike | None,
    test_accuracy: ArrayLike | None,
    majority_rate: float | None,
) -> list[Check]:
    """Did the models learn, and do they fit their training records better than others?

    Parameters
    ----------
    train_accuracy, test_accuracy : array-like of shape (n_models,), optional
        Accuracy of each model on its members / non-members (None or NaN: unknown).
    majority_rate : float, optional
        Fraction of the most frequent class among the audited records.
    """
    train, test = _clean(train_accuracy), _clean(test_accuracy)
    out: list[Check] = []
    if train.size and majority_rate is not None and train.mean() <= majority_rate + LEARN_MARGIN:
        out.append(
            Check(
                "models_did_not_learn",
                "fail",
                f"The models did not learn: mean train accuracy {train.mean():.3f} is not above "
                f"the majority-class rate {majority_rate:.3f} (always answering the most "
                "frequent class). A model that learned nothing leaks nothing, so this audit "
                "says nothing about a model that did.",
                "Make the models learn first: standardise the features (torch-mlp: "
                "training.params: {standardize: true}), raise the learning rate or the epochs "
                "(training.params: {lr: ..., epochs: ...}), check the labels.",
            )
        )
    if train.size and test.size and train.mean() - test.mean() < GAP_TOLERANCE:
        out.append(
            Check(
                "no_generalization_gap",
                "warn",
                f"Train accuracy ({train.mean():.3f}) is not above test accuracy "
                f"({test.mean():.3f}): the models fit their training records no better than "
                "records they never saw.",
                "Expected for DP-SGD or strong regularisation; otherwise check that the models "
                "trained (epochs, learning rate) and that members and non-members come from "
                "the same distribution.",
            )
        )
    return out


def check_outputs_constant(
    scores: Mapping[str, ArrayLike],
    n_classes: int | None,
) -> list[Check]:
    """Models whose outputs are (nearly) the same for every record.

    Parameters
    ----------
    scores : mapping of str to array-like of shape (T, n)
        Output-based attacks' scores (e.g. ``loss``) per target.
    n_classes : int, optional
        Number of classes (a constant model gives at most one score per class).
    """
    limit = max(int(n_classes or 1), 2)
    for name, values in scores.items():
        s = np.atleast_2d(np.asarray(values, dtype=np.float64))
        if s.shape[1] < max(MIN_RECORDS_CONSTANT, 4 * limit):
            continue
        distinct = [
            np.unique(_round_sig(row[np.isfinite(row)], DISTINCT_DIGITS)).size for row in s
        ]
        if max(distinct) <= limit:
            return [
                Check(
                    "constant_outputs",
                    "fail",
                    f"The models give (nearly) the same output for every record: the {name} "
                    f"scores take at most {max(distinct)} distinct values over {s.shape[1]} "
                    "records. Nothing can be read from them, so the low numbers are no sign of "
                    "privacy.",
                    "Check the features (unscaled columns saturate the first layer; "
                    "standardise them), the learning rate and the labels, then re-run.",
                    attack=name,
                )
            ]
    return []


def _round_sig(x: np.ndarray, digits: int) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.where(x == 0, 0.0, np.floor(np.log10(np.abs(x))))
    return np.round(x / 10.0**mag, digits - 1) * 10.0**mag


def check_inverted(metrics: Mapping[str, MetricsSummary], headline_attack: str) -> list[Check]:
    """Attacks whose AUC is clearly below 0.5: their scores point the wrong way."""
    out: list[Check] = []
    for name, s in metrics.items():
        lo, hi = s.auc_interval
        if s.auc < 0.5 - INVERTED_MARGIN and hi < 0.5:
            out.append(
                Check(
                    "inverted_scores",
                    "fail" if name == headline_attack or len(metrics) == 1 else "warn",
                    f"{name}: AUC {s.auc:.3f} [{lo:.3f}–{hi:.3f}] is clearly below 0.5: its "
                    "scores rank non-members above members. Read the other way round, AUC "
                    f"would be {1 - s.auc:.3f}.",
                    "If lower scores mean 'member' (a loss, a distance), flip them: "
                    "`miaudit evaluate --lower-is-member`, or negate the column. Otherwise "
                    "check the membership labels.",
                    attack=name,
                )
            )
    return out


def check_resolution(summary: MetricsSummary) -> list[Check]:
    """Requested FPRs below 1 / (number of non-members)."""
    low = [r.target_fpr for r in summary.tpr_at_fpr if not r.reachable]
    if not low:
        return []
    n = summary.n_non_members
    return [
        Check(
            "too_few_non_members",
            "warn",
            f"{n} non-members cannot measure an FPR below 1/{n} = {100 / n:.2g}%; at "
            f"{', '.join(format_fpr(f) for f in low)} the TPR shown is the TPR at zero false "
            "positives.",
            f"Use at least {int(np.ceil(1 / min(low))):,} non-members (more records or more "
            "target models), or report at a higher FPR.",
        )
    ]


def run_checks(
    metrics: Mapping[str, MetricsSummary],
    headline_attack: str,
    *,
    scores: Mapping[str, ArrayLike] | None = None,
    labels: ArrayLike | None = None,
    models: pd.DataFrame | None = None,
) -> list[Check]:
    """Every check, failures first.

    Parameters
    ----------
    metrics : mapping of str to MetricsSummary
    headline_attack : str
        The attack the headline reports.
    scores : mapping of str to array-like of shape (T, n), optional
        Per-target scores of each attack; the output-based ones (:data:`OUTPUT_ATTACKS`) feed
        the constant-output check.
    labels : array-like of shape (n,), optional
        Class labels of the audited records (majority-class rate, number of classes).
    models : pandas.DataFrame, optional
        ``train_accuracy`` and ``test_accuracy`` columns.
    """
    majority = n_classes = None
    if labels is not None and len(np.asarray(labels)):
        counts = pd.Series(np.asarray(labels)).value_counts(normalize=True)
        majority, n_classes = float(counts.iloc[0]), int(counts.size)
    checks: list[Check] = []
    if models is not None and not models.empty:
        checks += check_models(
            models.get("train_accuracy"), models.get("test_accuracy"), majority
        )
    if scores:
        checks += check_outputs_constant(
            {k: v for k, v in scores.items() if k in OUTPUT_ATTACKS}, n_classes
        )
    checks += check_inverted(metrics, headline_attack)
    if metrics:
        checks += check_resolution(metrics[headline_attack])
    return sorted(checks, key=lambda c: c.severity != "fail")
