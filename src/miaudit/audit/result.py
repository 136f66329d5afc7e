"""The result of an audit: metrics, per-record scores with ids, per-record vulnerability."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from miaudit._format import format_fpr
from miaudit._json import jsonable
from miaudit.audit.sanity import Check, failed, run_checks
from miaudit.defaults import (
    DEFAULT_ALPHA,
    DEFAULT_DELTA,
    DEFAULT_N_BOOTSTRAP,
    FLAG_FPR,
    HEADLINE_FPR,
)
from miaudit.metrics import (
    MetricsSummary,
    TprAtFpr,
    roc_curve,
    summarize,
    tpr_at_fpr,
)
from miaudit.provenance import package_versions


@dataclass
class AuditResult:
    """Everything an audit produced.

    Attributes
    ----------
    metrics : dict of str to MetricsSummary
        Attack label → metrics over all (target, record) pairs pooled.
    scores : pandas.DataFrame
        Long format, one row per (target, record): index ``record_id``; columns ``target`` (model
        index, or ``"target"`` for a user's model), ``label``, ``is_member``, then one column per
        attack with its score (higher = member).
    vulnerability : pandas.DataFrame
        One row per record, index ``record_id``, sorted most exposed first: ``label``, ``n_in``
        (targets that trained on it), ``n_flagged`` (of those, how many flagged it at the
        report's flag FPR with the best attack), ``flag_rate``, ``mean_score_in``,
        ``n_false_flags`` (targets that did not train on it but flagged it).
    models : pandas.DataFrame
        One row per model: ``role`` ("target and reference" for the models of an algorithm
        audit; "target" or "reference" in a model audit), ``train_accuracy`` (on its members),
        ``test_accuracy`` (on its non-members), ``n_train``, ``train_seconds``, ``from_store``
        (read from the run store rather than trained by this run).
    attacks : dict
        Attack label → ``{"name", "title", "paper", "params"}``.
    rocs : dict
        Attack label → ``(fpr, tpr)`` arrays of the pooled ROC.
    best_attack : str
        Label of the attack with the highest TPR at the headline FPR.
    headline_fpr : float
    flag_fpr : float
    timings : dict of str to float
        Seconds spent in each stage.
    config : dict
        The configuration (JSON form).
    versions : dict of str to str
        Package versions.
    target : dict
        Model audits: what the user's model returns (``returns``) and, for an API, the queries
        it answered (``usage``).
    checks : list of Check
        Failed sanity checks (:mod:`miaudit.audit.sanity`), failures first; any of severity
        ``fail`` turns the headline into "no reliable verdict".
    canary_audit : dict
        Audits with planted canaries (``data.canaries``): the multi-run, one-run and
        Gaussian-DP ε lower bounds (:func:`miaudit.audit.canary_audit.audit_canaries`).
    exposure : dict
        What the most exposed records have in common (:mod:`miaudit.audit.exposure`): label
        distribution, nearest-neighbour distances, images of 8×8 data; empty when unknown.
    """

    metrics: dict[str, MetricsSummary]
    scores: pd.DataFrame
    vulnerability: pd.DataFrame
    models: pd.DataFrame
    attacks: dict[str, dict[str, Any]]
    rocs: dict[str, tuple[NDArray, NDArray]]
    best_attack: str
    headline_fpr: float
    flag_fpr: float
    timings: dict[str, float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    output_dir: Path | None = None
    target: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    exposure: dict[str, Any] = field(default_factory=dict)
    canary_audit: dict[str, Any] = field(default_factory=dict)

    @property
    def reliable(self) -> bool:
        """False when a sanity check of severity ``fail`` fired."""
        return not failed(self.checks)

    @property
    def headline(self) -> str:
        """One plain sentence: how many training records the best attack identifies, or
        "No reliable verdict: ..." when a sanity check failed."""
        fails = failed(self.checks)
        if fails:
            return no_verdict_headline(fails)
        return headline(self.metrics[self.best_attack], self.best_attack, self.headline_fpr)

    def privacy_claim(self) -> dict[str, Any] | None:
        """Models trained with DP-SGD: the accountant's ε beside what the audit proves.

        ``claimed_epsilon`` is the largest accountant ε over the models (at its δ); the audit's
        ``audit_epsilon`` is the largest (valid, split) ε lower bound over the ``k`` attacks
        run. Taking the largest of ``k`` bounds spends the confidence ``k`` times (Bonferroni):
        it holds at ``1 - k·alpha``, as ``confidence`` says. None when no model has an ε.
        """
        if "epsilon" not in self.models or self.models["epsilon"].isna().all():
            return None
        claimed = float(self.models["epsilon"].max())
        claimed_delta = float(self.models["delta"].max())
        best = max(self.metrics, key=lambda k: self.metrics[k].epsilon.epsilon)
        bound = self.metrics[best].epsilon
        confidence = max(0.0, 1.0 - len(self.metrics) * bound.alpha)
        return {
            "claimed_epsilon": claimed,
            "claimed_delta": claimed_delta,
            "audit_epsilon": bound.epsilon,
            "audit_delta": bound.delta,
            "confidence": confidence,
            "attack": best,
            "n_attacks": len(self.metrics),
            "sentence": (
                f"claimed ε = {claimed:.2f} (δ = {claimed_delta:g}, the accountant's); the audit "
                f"proves ε ≥ {bound.epsilon:.2f} (δ = {bound.delta:g}) at "
                f"{100 * confidence:.0f}% confidence ({best}, the strongest of "
                f"{len(self.metrics)} attacks)"
            ),
        }

    def metrics_dict(self) -> dict[str, Any]:
        """What ``metrics.json`` holds."""
        return {
            "headline": self.headline,
            "reliable_verdict": self.reliable,
            "checks": [c.to_dict() for c in self.checks],
            "best_attack": self.best_attack,
            "headline_fpr": self.headline_fpr,
            "attacks": {
                k: {**self.attacks[k], "metrics": v.to_dict()} for k, v in self.metrics.items()
            },
            "models": {
                "n_models": len(self.models),
                "mean_train_accuracy": _mean(self.models, "train_accuracy"),
                "mean_test_accuracy": _mean(self.models, "test_accuracy"),
                "n_trained": _n_trained(self.models),
            },
            **({"target": self.target} if self.target else {}),
            **({"privacy": claim} if (claim := self.privacy_claim()) else {}),
            **({"canary_audit": jsonable(self.canary_audit)} if self.canary_audit else {}),
            **({"exposure": _without_images(self.exposure)} if self.exposure else {}),
            "timings_seconds": self.timings,
            "versions": self.versions,
            "config": self.config,
        }

    def to_html(self, path: str | Path) -> Path:
        """Write the self-contained HTML report to ``path`` (:mod:`miaudit.report.html`)."""
        from miaudit.report.html import write_report

        return write_report(self, Path(path))

    def save(self, folder: str | Path) -> dict[str, Path]:
        """Write every output file into ``folder`` (:func:`miaudit.report.files.save_result`)."""
        from miaudit.report.files import save_result

        return save_result(self, folder)


def build_result(
    scores: Mapping[str, NDArray[np.float64]],
    is_member: NDArray[np.bool_],
    record_ids: NDArray,
    labels: NDArray | None,
    targets: Sequence[Any],
    *,
    fprs: Sequence[float],
    alpha: float = DEFAULT_ALPHA,
    delta: float = DEFAULT_DELTA,
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
    seed: int = 0,
    flag_fpr: float = FLAG_FPR,
    epsilon_selection: Literal["split", "best_on_same_data"] = "split",
    attacks: Mapping[str, dict[str, Any]] | None = None,
    models: pd.DataFrame | None = None,
) -> AuditResult:
    """Metrics, pooled ROCs, headline and per-record views from scores of ``T`` targets.

    Parameters
    ----------
    scores : mapping of str to ndarray of shape (T, n)
        Attack label → scores (higher = member) of ``n`` records for each of ``T`` targets.
    is_member : ndarray of shape (T, n), bool
        Whether target ``t`` trained on record ``j``.
    record_ids : ndarray of shape (n,)
    labels : ndarray of shape (n,), optional
    targets : sequence of length T
        Names of the targets (model indices, or ``"target"``).
    """
    metrics = {
        k: summarize(
            v.ravel(),
            is_member.ravel(),
            fprs,
            alpha=alpha,
            delta=delta,
            n_bootstrap=n_bootstrap,
            rng=seed,
            epsilon_selection=epsilon_selection,
        )
        for k, v in scores.items()
    }
    rocs = {k: roc_curve(v.ravel(), is_member.ravel())[:2] for k, v in scores.items()}
    h_fpr = choose_headline_fpr(metrics)
    best = best_attack(metrics, h_fpr)
    vuln = per_record_vulnerability(scores[best], is_member, record_ids, labels, flag_fpr)
    t, n = is_member.shape
    long = pd.DataFrame(
        {
            "target": np.repeat(np.asarray(targets, dtype=object), n),
            **({} if labels is None else {"label": np.tile(np.asarray(labels), t)}),
            "is_member": is_member.ravel(),
            **{k: v.ravel() for k, v in scores.items()},
        },
        index=pd.Index(np.tile(np.asarray(record_ids), t), name="record_id"),
    )
    models = models if models is not None else pd.DataFrame()
    checks = run_checks(metrics, best, scores=scores, labels=labels, models=models)
    return AuditResult(
        metrics=metrics,
        scores=long,
        vulnerability=vuln,
        models=models,
        attacks=dict(attacks or {k: {"name": k} for k in scores}),
        rocs=rocs,
        best_attack=best,
        headline_fpr=h_fpr,
        flag_fpr=flag_fpr,
        versions=package_versions(),
        checks=checks,
    )


def _without_images(exposure: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in exposure.items() if k != "images"}


def _n_trained(models: pd.DataFrame) -> int | None:
    """Models trained by this run (the others were read from the run store), if known."""
    if "from_store" not in models:
        return None
    return int(models["from_store"].eq(False).sum())  # the user's target has None there


def _mean(df: pd.DataFrame, col: str) -> float | None:
    if col not in df or df[col].isna().all():
        return None
    return float(df[col].mean())


def choose_headline_fpr(summaries: Mapping[str, MetricsSummary]) -> float:
    """:data:`HEADLINE_FPR` if every summary can reach it, else the smallest reported FPR that
    all can reach, else the largest reported FPR."""
    first = next(iter(summaries.values()))
    fprs = sorted(r.target_fpr for r in first.tpr_at_fpr)
    reachable = [f for f in fprs if all(s.at(f).reachable for s in summaries.values())]
    if HEADLINE_FPR in reachable:
        return HEADLINE_FPR
    return reachable[0] if reachable else fprs[-1]


def best_attack(summaries: Mapping[str, MetricsSummary], fpr: float) -> str:
    """Attack label with the highest TPR at ``fpr`` (ties broken by AUC)."""
    return max(summaries, key=lambda k: (summaries[k].at(fpr).tpr, summaries[k].auc))


def headline(summary: MetricsSummary, attack: str, fpr: float) -> str:
    """E.g. "At 0.1% false positives, the best attack (lira) identifies 8.3% [7.1–9.6%] of
    training records."."""
    r: TprAtFpr = summary.at(fpr)
    lo, hi = r.tpr_interval
    text = (
        f"At {format_fpr(fpr)} false positives, the best attack ({attack}) identifies "
        f"{100 * r.tpr:.1f}% [{100 * lo:.1f}–{100 * hi:.1f}%] of training records"
    )
    if not r.reachable:
        text += (
            f" (the evaluation has {summary.n_non_members} non-members, so this is the "
            "rate at zero false positives)"
        )
    elif r.tpr <= fpr:
        text += ", no better than guessing"
    return text + "."


def no_verdict_headline(fails: Sequence[Check]) -> str:
    """"No reliable verdict: <first reason's first sentence>" (+ how many more checks failed)."""
    sentence = fails[0].reason.split(". ")[0].rstrip(".")
    more = f" ({len(fails) - 1} more failed check(s))" if len(fails) > 1 else ""
    return (
        f"No reliable verdict. {sentence}{more}. "
        "The numbers below do not show that the model is private; see the checks."
    )


def per_record_vulnerability(
    scores: NDArray[np.float64],
    is_member: NDArray[np.bool_],
    record_ids: ArrayLike,
    labels: NDArray | None,
    flag_fpr: float,
) -> pd.DataFrame:
    """How often each record is exposed across targets by one attack.

    Parameters
    ----------
    scores : ndarray of shape (T, n)
        Scores of one attack on ``n`` records for ``T`` targets.
    is_member : ndarray of shape (T, n), bool
        Whether each target trained on each record.
    record_ids, labels : sequences of length n (labels may be None: no label column)
    flag_fpr : float
        For each target, the threshold is the one :func:`~miaudit.metrics.tpr_at_fpr` picks at
        this FPR on that target's scores; a record is flagged when its score reaches it.

    Returns
    -------
    pandas.DataFrame
        Index ``record_id``; columns ``label``, ``n_in``, ``n_flagged``, ``flag_rate``,
        ``mean_score_in``, ``n_false_flags``; sorted by ``flag_rate`` then ``mean_score_in``,
        descending.
    """
    flagged = np.zeros_like(is_member)
    for t in range(scores.shape[0]):
        thr = tpr_at_fpr(scores[t], is_member[t], flag_fpr).threshold
        flagged[t] = np.nan_to_num(scores[t], nan=-np.inf) >= thr
    n_in = is_member.sum(axis=0)
    n_flagged = (flagged & is_member).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(n_in > 0, n_flagged / np.maximum(n_in, 1), np.nan)
        mean_in = np.where(
            n_in > 0,
            np.nansum(np.where(is_member, scores, 0.0), axis=0) / np.maximum(n_in, 1),
            np.nan,
        )
    df = pd.DataFrame(
        {
            **({} if labels is None else {"label": np.asarray(labels)}),
            "n_in": n_in,
            "n_flagged": n_flagged,
            "flag_rate": rate,
            "mean_score_in": mean_in,
            "n_false_flags": (flagged & ~is_member).sum(axis=0),
        },
        index=pd.Index(np.asarray(record_ids), name="record_id"),
    )
    return df.sort_values(["flag_rate", "mean_score_in"], ascending=False, na_position="last")
