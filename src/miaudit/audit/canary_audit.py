r"""Empirical epsilon from planted canaries: the three audits of :mod:`miaudit.audit.dp` on an
audit's per-record scores.

An algorithm audit (``mode: algorithm``) trains every model on a random half of the records, so
each canary planted by :func:`miaudit.data.canaries.add_canaries` is IN for some models and OUT
for the others. With the scores of one attack (chosen *before* looking at the results; taking
the best of several would spend the confidence once per attack):

* **multi-run** (Jagielski, Ullman & Oprea, NeurIPS 2020): every (target model, canary) pair
  is a trial, IN or OUT; :func:`~miaudit.audit.dp.canary_audit` chooses a threshold on half of
  the trials and bounds ε with Clopper–Pearson on the other half.
* **one-run** (Steinke, Nasr & Jagielski, NeurIPS 2023): the canaries of *one* target model
  (one training run), guesses on the highest and lowest scores,
  :func:`~miaudit.audit.dp.one_run_audit` with its Bonferroni choice of the guess counts. The
  bound assumes each canary is IN with probability 1/2: the model used is the first target
  whose share of IN records is within :data:`FAIR_SHARE_TOLERANCE` of 1/2 (with an odd number
  of models, the three base rows of :func:`miaudit.data.splits.nested_keep_matrix` keep each
  record with probability 2/3 and are skipped; on them a model that leaks nothing would
  "prove" ε > 0). A balanced row holds exactly half the records rather than independent
  coins, close to the assumption when the canaries are few beside the records.
* **Gaussian DP** (Nasr et al., USENIX Security 2023): :func:`~miaudit.audit.dp.gdp_audit` on
  the same trials as the multi-run audit.

Pairs from different models of one audit share records and so are not independent trials; the
multi-run and GDP bounds treat them as independent, as published multi-model audits do.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd

from miaudit.audit import dp
from miaudit.defaults import DEFAULT_ALPHA, DEFAULT_DELTA
from miaudit.exceptions import ValidationError

__all__ = ["audit_canaries"]

#: Fewest canary trials of each kind (IN and OUT) for the multi-run and GDP audits.
MIN_TRIALS = 2
#: The one-run audit's model must hold a share of the records within this of 1/2.
FAIR_SHARE_TOLERANCE = 0.05


def audit_canaries(
    scores: pd.DataFrame,
    canary_ids: Any,
    *,
    attack: str = "loss",
    delta: float = DEFAULT_DELTA,
    alpha: float = DEFAULT_ALPHA,
    seed: int = 0,
) -> dict[str, Any]:
    """The three canary audits of the module docstring on an audit's scores.

    Parameters
    ----------
    scores : DataFrame
        An audit's per-record scores (:attr:`miaudit.audit.result.AuditResult.scores`): indexed
        by record id, one column per attack, ``is_member`` and ``target``.
    canary_ids : array-like
        Record ids of the canaries.
    attack : str
        The attack whose scores are used (a column of ``scores``).
    delta, alpha : float
        ``δ`` of the bounds, and their significance (each holds with probability
        ``>= 1 - alpha``).
    seed : int
        Seed of the audits' splits and tie-breaking.

    Returns
    -------
    dict
        ``attack``, ``n_canaries``, ``multi_run``, ``one_run``, ``gdp`` (each the audit's fields,
        with ``epsilon``), ``confidence`` and a ``sentence``.
    """
    if attack not in scores.columns:
        attacks = [c for c in scores.columns if c not in ("is_member", "target", "label")]
        raise ValidationError(
            f"attack: no scores of {attack!r} in this audit; it ran {', '.join(attacks)}"
        )
    canary = scores.index.isin(np.asarray(canary_ids))
    if not canary.any():
        raise ValidationError("canary_ids: none of them is among the audited records")
    values = scores[attack].to_numpy(np.float64)
    member = scores["is_member"].to_numpy(bool)
    trials_in, trials_out = values[canary & member], values[canary & ~member]
    if min(trials_in.size, trials_out.size) < MIN_TRIALS:
        raise ValidationError(
            f"canaries: {trials_in.size} IN and {trials_out.size} OUT trials; need at least "
            f"{MIN_TRIALS} of each (more canaries or more target models)"
        )
    multi = dp.canary_audit(trials_in, trials_out, delta=delta, alpha=alpha, rng=seed)
    gdp = dp.gdp_audit(trials_in, trials_out, delta=delta, alpha=alpha, rng=seed)
    one_target = _fair_target(scores)
    first = (scores["target"] == one_target).to_numpy()
    one = dp.one_run_audit(
        values[canary & first], member[canary & first], delta=delta, p=alpha, rng=seed
    )
    confidence = 1.0 - alpha
    n_canaries = int(np.isin(np.asarray(canary_ids), scores.index).sum())
    sentence = (
        f"{n_canaries} canaries ({attack} scores): "
        f"multi-run ε ≥ {multi.epsilon:.2f}, one-run ε ≥ {one.epsilon:.2f}, Gaussian-DP "
        f"ε ≥ {gdp.epsilon:.2f} (δ = {delta:g}), each at {100 * confidence:g}% confidence"
    )
    return {
        "attack": attack,
        "n_canaries": n_canaries,
        "n_trials": {"in": int(trials_in.size), "out": int(trials_out.size)},
        "multi_run": asdict(multi),
        "one_run": {**asdict(one), "target": one_target},
        "gdp": asdict(gdp),
        "confidence": confidence,
        "sentence": sentence,
    }


def _fair_target(scores: pd.DataFrame) -> Any:
    """The first target whose share of IN records is within :data:`FAIR_SHARE_TOLERANCE` of
    1/2 (the one-run audit's fair coins)."""
    share = scores.groupby("target", sort=False)["is_member"].mean()
    fair = share[(share - 0.5).abs() <= FAIR_SHARE_TOLERANCE]
    if fair.empty:
        raise ValidationError(
            "canaries: no target model trained on about half of the records (shares "
            f"{', '.join(f'{v:.2f}' for v in share)}); the one-run audit needs fair coins"
        )
    target = fair.index[0]
    return target.item() if hasattr(target, "item") else target
