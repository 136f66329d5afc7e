"""One call from texts and a language model to a saved audit report.

:func:`audit_texts` runs, in order: the duplicate check between members and non-members
(reported, or removed), the attacks (the one-pass attacks share one forward pass per batch),
the blind baseline (no model) and its verdict, then :func:`miaudit.audit.result.build_result`.
The LLM-specific findings go into ``result.config["llm"]`` (so they appear in ``metrics.json``
and in the report's configuration section) and the blind scores into extra ``blind_*`` columns
of ``result.scores`` (``scores.csv``); they are never attacks in the metrics table. Attacks
scored elsewhere (the reference attacks of :mod:`miaudit.llm.reference_run`) join the same
result through ``_finish``'s ``more_scores``/``more_infos`` (:func:`finish_result` builds it).

:func:`audit_canaries` evaluates randomised canaries: per repetition tier, the inserted
canaries against the never-inserted controls, and their exposure.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from miaudit.audit.result import AuditResult, build_result
from miaudit.audit.sanity import Check
from miaudit.exceptions import ValidationError
from miaudit.llm.attacks import (
    DEFAULT_K,
    LLM_ATTACKS,
    ONE_PASS_ATTACKS,
    AttackContext,
    attack_info,
    check_k,
)
from miaudit.llm.blind import blind_baseline, blind_verdict
from miaudit.llm.canaries import (
    DEFAULT_CANDIDATES,
    MIN_FIT_CANDIDATES,
    CanarySet,
    exposure,
    exposure_estimates,
)
from miaudit.llm.data import (
    DEFAULT_NGRAM,
    DEFAULT_OVERLAP_THRESHOLD,
    TextSplit,
    find_duplicates,
    remove_duplicates,
)
from miaudit.llm.mlm import MASKED_LM_ATTACKS, is_masked_lm
from miaudit.llm.target import DEFAULT_BATCH_SIZE, LanguageModelTarget, as_target
from miaudit.metrics import DEFAULT_FPRS, tpr_at_fpr
from miaudit.registry import check_call

__all__ = ["audit_canaries", "audit_texts", "default_attacks", "finish_result"]

_LOG = logging.getLogger("miaudit")
#: FPR of the per-tier canary table.
CANARY_FPR = 1e-2
#: The fix shown when the blind baseline tells members from non-members.
_SHIFT_FIX = (
    "Draw members and non-members from the same distribution (same sources, same dates; remove "
    "duplicates), then audit again; the blind baseline needs no model, so a split it can tell "
    "apart says nothing about the model."
)
#: The fix shown when no blind baseline separates the split but one still does as well as the
#: best attack at the headline FPR: the attacks are too weak there to be told from a guess.
_WEAK_ATTACK_FIX = (
    "The split looks unshifted, but at this FPR the attacks do no better than a model-free "
    "guess: read the AUCs and a higher FPR, audit more records (the low-FPR end of a few "
    "hundred non-members is a handful of records), or run stronger attacks (reference models)."
)


def default_attacks(target: LanguageModelTarget, mask_model: Any = None) -> list[str]:
    """The attacks :func:`audit_texts` runs when none are named: for a causal LM the one-pass
    attacks plus ``lowercase``; for a masked LM ``mlm_pll``, plus ``mlm_ratio`` when
    ``mask_model`` (its reference masked LM) is given."""
    if is_masked_lm(target.model):
        pll, ratio = MASKED_LM_ATTACKS
        return [pll, ratio] if mask_model is not None else [pll]
    return [*ONE_PASS_ATTACKS, "lowercase"]


def _run_attacks(
    target: LanguageModelTarget,
    texts: list[str],
    names: Sequence[str],
    *,
    k: float,
    reference: Any,
    mask_model: Any,
    recall_prefix: Sequence[str] | None,
    params: Mapping[str, Mapping[str, Any]],
    seed: int,
    quiet: bool | None,
) -> dict[str, NDArray[np.float64]]:
    specs = [LLM_ATTACKS.get(n) for n in names]
    if is_masked_lm(target.model):
        causal = [n for n in names if n not in MASKED_LM_ATTACKS]
        if causal:
            raise ValidationError(
                f"attacks: {causal} read a causal LM's next-token probabilities and the audited "
                f"model is a masked LM; valid attacks: {', '.join(MASKED_LM_ATTACKS)}"
            )
    for key in params:
        if key not in names:
            raise ValidationError(f"params: {key!r} is not among the attacks ({', '.join(names)})")
    for a in specs:
        check_call(a.fn, f"LLM attack {a.name!r}", None, **params.get(a.name, {}))
    ref = None
    if reference is not None:  # on the audited model's device
        ref = as_target(reference, name="reference", device=target.device)
    ctx = AttackContext(
        texts=texts,
        target=target,
        k=check_k(k),
        moments=any(a.needs_moments for a in specs),
        reference=ref,
        mask_model=mask_model,
        recall_prefix=None if recall_prefix is None else list(recall_prefix),
        seed=seed,
        quiet=quiet,
    )
    return {a.name: a.fn(ctx, **params.get(a.name, {})) for a in specs}


def audit_texts(
    members: Sequence[str] | TextSplit,
    non_members: Sequence[str] | None = None,
    *,
    model: Any,
    tokenizer: Any = None,
    attacks: Sequence[str] | None = None,
    k: float = DEFAULT_K,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | None = None,
    max_length: int | None = None,
    reference: Any = None,
    mask_model: tuple[Any, Any] | None = None,
    recall_prefix: Sequence[str] | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    member_ids: Sequence[str] | None = None,
    non_member_ids: Sequence[str] | None = None,
    duplicates: Literal["report", "remove"] = "report",
    ngram: int = DEFAULT_NGRAM,
    overlap_threshold: float = DEFAULT_OVERLAP_THRESHOLD,
    blind: bool = True,
    fprs: Sequence[float] = DEFAULT_FPRS,
    seed: int = 0,
    quiet: bool | None = None,
    output_dir: str | Path | None = None,
) -> AuditResult:
    """Membership audit of a language model on member and non-member texts.

    Parameters
    ----------
    members : sequence of str, or TextSplit
        Texts the model trained on (or a :class:`~miaudit.llm.data.TextSplit` holding both
        sets and their ids; then ``non_members`` must be None).
    non_members : sequence of str
        Texts it did not train on, from the same distribution.
    model : str, Path, transformers model or LanguageModelTarget
        A local folder (loaded with ``local_files_only=True``), or an in-memory model with
        ``tokenizer``.
    attacks : sequence of str, optional
        Default: the four one-pass attacks (``loss``, ``zlib``, ``min_k``,
        ``min_k_plus_plus``) plus ``lowercase``; add ``reference``, ``recall``,
        ``neighbourhood`` and ``gradient_norm`` with their resources. For a masked LM
        (``...ForMaskedLM``) only :data:`~miaudit.llm.mlm.MASKED_LM_ATTACKS` apply; default
        ``mlm_pll``, plus ``mlm_ratio`` with ``mask_model`` as its reference
        (:func:`default_attacks`).
    k, batch_size, device, max_length, reference, mask_model, recall_prefix, params
        As :func:`miaudit.llm.score_texts`.
    duplicates : {"report", "remove"}
        Near-duplicates (word ``ngram``-gram overlap ≥ ``overlap_threshold``) are reported in
        ``config["llm"]["duplicates"]``; with ``"remove"`` they are dropped before scoring.
    blind : bool
        Run the blind baseline and its verdict (default; strongly recommended).
    fprs : sequence of float
        FPRs of the metrics.
    seed : int
        Seed of the blind folds, the bootstrap and the neighbours.
    quiet : bool, optional
        Progress bars (``None``: on a terminal).
    output_dir : str or Path, optional
        When given, the result is saved there (``metrics.json``, ``scores.csv``,
        ``report.html``, ...).

    Returns
    -------
    AuditResult
        ``config["llm"]`` holds ``blind_baseline`` (verdict, AUCs, TPRs, message),
        ``duplicates``, ``n_members``, ``n_non_members`` and ``attacks`` (formula variants).
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if isinstance(members, TextSplit):
        if non_members is not None:
            raise ValidationError("non_members: already given by the TextSplit in members")
        split = members
    else:
        if non_members is None:
            raise ValidationError("non_members: expected a sequence of texts, got None")
        split = TextSplit(
            list(members),
            list(non_members),
            list(member_ids or []),
            list(non_member_ids or []),
        )
    if duplicates not in ("report", "remove"):
        raise ValidationError(f"duplicates: expected 'report' or 'remove', got {duplicates!r}")
    if duplicates == "remove":
        split, dup = remove_duplicates(split, n=ngram, threshold=overlap_threshold)
    else:
        dup = find_duplicates(
            split.members, split.non_members, n=ngram, threshold=overlap_threshold
        )
    if dup.near_duplicates and duplicates == "report":
        _LOG.warning(
            "%d non-members are near-duplicates of members (%d-gram overlap >= %.2f); "
            "consider duplicates='remove'",
            len(dup.near_duplicates),
            ngram,
            overlap_threshold,
        )
    timings["duplicates"] = time.perf_counter() - t0

    kw: dict[str, Any] = {"batch_size": batch_size, "device": device, "max_length": max_length}
    target = as_target(model, tokenizer, **{k_: v for k_, v in kw.items() if v is not None})
    names = list(attacks) if attacks is not None else default_attacks(target, mask_model)
    texts = split.texts
    is_member = np.array(split.is_member, dtype=bool)
    t1 = time.perf_counter()
    scores = _run_attacks(
        target,
        texts,
        names,
        k=k,
        reference=reference,
        mask_model=mask_model,
        recall_prefix=recall_prefix,
        params=dict(params or {}),
        seed=seed,
        quiet=quiet,
    )
    timings["attacks"] = time.perf_counter() - t1
    return _finish(
        scores,
        is_member,
        texts,
        split.record_ids,
        names,
        params=dict(params or {}),
        k=k,
        blind=blind,
        fprs=fprs,
        seed=seed,
        timings=timings,
        extra={
            "source": split.source,
            "duplicates": {**dup.to_dict(), "action": duplicates},
        },
        output_dir=output_dir,
    )


def _finish(
    scores: Mapping[str, NDArray[np.float64]],
    is_member: NDArray[np.bool_],
    texts: list[str],
    record_ids: Sequence[str],
    names: Sequence[str],
    *,
    params: Mapping[str, Mapping[str, Any]],
    k: float,
    blind: bool,
    fprs: Sequence[float],
    seed: int,
    timings: dict[str, float],
    extra: dict[str, Any],
    output_dir: str | Path | None,
    more_scores: Mapping[str, NDArray[np.float64]] | None = None,
    more_infos: Mapping[str, dict[str, Any]] | None = None,
) -> AuditResult:
    """The result of the one-model attacks ``names`` (their descriptions from the registry)
    and of ``more_scores``, attacks described by ``more_infos`` (e.g. the reference attacks of
    :mod:`miaudit.llm.reference_run`): :func:`finish_result`."""
    infos: dict[str, dict[str, Any]] = {}
    for n in names:
        info = attack_info(n, **params.get(n, {}))
        if n in ("min_k", "min_k_plus_plus"):
            info["params"] = {**info["params"], "k": k}
        infos[n] = info
    every = {n: scores[n] for n in names}
    more = dict(more_scores or {})
    missing = sorted(set(more) - set(more_infos or {}))
    if missing:
        raise ValidationError(f"more_infos: no description of the attacks {missing}")
    clash = sorted(set(more) & set(every))
    if clash:
        raise ValidationError(f"attacks: {clash} are both one-model and extra attacks")
    every.update(more)
    infos.update({n: dict((more_infos or {})[n]) for n in more})
    return finish_result(
        every, infos, is_member, record_ids, texts=texts, blind=blind, fprs=fprs, seed=seed,
        timings=timings, extra=extra, output_dir=output_dir,
    )  # fmt: skip


def finish_result(
    scores: Mapping[str, NDArray[np.float64]],
    infos: Mapping[str, dict[str, Any]],
    is_member: NDArray[np.bool_],
    record_ids: Sequence[str],
    *,
    texts: list[str] | None = None,
    blind: bool,
    blind_scores: Mapping[str, NDArray[np.float64]] | None = None,
    fprs: Sequence[float],
    seed: int,
    timings: dict[str, float],
    extra: dict[str, Any],
    output_dir: str | Path | None,
) -> AuditResult:
    """Metrics of every attack in ``scores`` (described by ``infos``), the blind baseline and
    its verdict against every attack, the LLM findings in ``config["llm"]``; saved to
    ``output_dir`` when given.

    Parameters
    ----------
    scores : mapping of str to ndarray of shape (n,)
        Every attack's scores, in the order of the metrics table.
    infos : mapping of str to dict
        Each attack's ``{"name", "title", "paper", "formula", "cost", "params"}``.
    texts : list of str, optional
        The audited texts, for the blind baseline (needed when ``blind`` and no
        ``blind_scores``).
    blind : bool
        Run the blind baseline's verdict.
    blind_scores : mapping of str to ndarray, optional
        Blind-baseline scores already computed (:func:`~miaudit.llm.blind.blind_baseline`);
        default: computed here from ``texts``.
    extra : dict
        More LLM findings, after the attack summaries in ``config["llm"]``.
    """
    t2 = time.perf_counter()
    result = build_result(
        {n: np.asarray(s, dtype=np.float64)[None, :] for n, s in scores.items()},
        is_member[None, :],
        np.asarray(record_ids, dtype=object),
        None,
        ["target"],
        fprs=fprs,
        seed=seed,
        attacks=dict(infos),
    )
    timings["metrics"] = time.perf_counter() - t2
    llm: dict[str, Any] = {
        "n_members": int(is_member.sum()),
        "n_non_members": int((~is_member).sum()),
        "attacks": {n: infos[n]["formula"] for n in scores},
        "n_nan_scores": {n: int(np.isnan(s).sum()) for n, s in scores.items()},
        **extra,
    }
    if blind:
        t3 = time.perf_counter()
        if blind_scores is None:
            if texts is None:
                raise ValidationError("texts: the blind baseline needs the audited texts")
            blind_scores = blind_baseline(texts, is_member, seed=seed)
        verdict = blind_verdict(
            blind_scores, is_member, dict(scores), fpr=result.headline_fpr, seed=seed
        )
        for name, s in blind_scores.items():
            result.scores[f"blind_{name}"] = s
        llm["blind_baseline"] = verdict.to_dict()
        if verdict.withhold or verdict.distinguishable:
            _LOG.warning("%s", verdict.message)
            # Members and non-members told apart without the model: whatever the attacks find
            # may be the split, not membership (Das, Zhang & Tramer 2024), so the headline
            # says "no reliable verdict".
            result.checks.insert(0, Check(
                id="blind_baseline",
                severity="fail",
                reason=verdict.message,
                fix=_SHIFT_FIX if verdict.distinguishable else _WEAK_ATTACK_FIX,
            ))
        timings["blind_baseline"] = time.perf_counter() - t3
    result.timings.update(timings)
    result.config = {**result.config, "mode": "llm", "llm": llm}
    if output_dir is not None:
        result.save(output_dir)
    return result


def audit_canaries(
    target: LanguageModelTarget,
    canaries: CanarySet,
    *,
    attacks: Sequence[str] = ("loss", "min_k_plus_plus"),
    k: float = DEFAULT_K,
    fpr: float = CANARY_FPR,
    n_candidates: int = DEFAULT_CANDIDATES,
    exposure_per_tier: int | None = None,
    seed: int = 0,
    quiet: bool | None = None,
) -> pd.DataFrame:
    """Per repetition tier: TPR at ``fpr`` of each attack (inserted canaries of the tier vs all
    never-inserted controls), its AUC, and the mean exposure of the tier's inserted canaries.

    Parameters
    ----------
    exposure_per_tier : int, optional
        Exposure of at most this many inserted canaries per tier (and as many controls),
        ``n_candidates`` passes each; ``None``: all. ``0``: skip exposure.

    Returns
    -------
    pandas.DataFrame
        One row per tier plus a ``"control"`` row (exposure of never-inserted canaries):
        ``n``, ``tpr_<attack>``, ``auc_<attack>``, ``exposure_mean``, ``exposure_max`` (the
        sampled rank exposure, at most ``log2(n_candidates)`` bits) and, with at least
        ``MIN_FIT_CANDIDATES + 1`` candidates, ``exposure_extrapolated_mean``/``_max`` (the
        skew-normal extrapolation over the whole secret space, Carlini et al. 2019 Sec. 4.3)
        with ``exposure_extrapolation_reliable``, the share of canaries whose extrapolation
        is trustworthy (:attr:`~miaudit.llm.canaries.ExposureEstimates.reliable`).
    """
    from miaudit.metrics import auc

    if not (canaries.inserted.any() and (~canaries.inserted).any()):
        raise ValidationError("canaries: need both inserted canaries and never-inserted controls")
    scores = _run_attacks(
        target,
        canaries.texts,
        list(attacks),
        k=k,
        reference=None,
        mask_model=None,
        recall_prefix=None,
        params={},
        seed=seed,
        quiet=quiet,
    )
    controls = np.flatnonzero(~canaries.inserted)
    rng = np.random.default_rng(seed)
    rows = []
    groups = [
        (int(t), np.flatnonzero(canaries.inserted & (canaries.tier == t)))
        for t in sorted(set(canaries.tier.tolist()))
    ]
    for tier, members in [*groups, ("control", controls)]:
        row: dict[str, Any] = {"tier": tier, "n": len(members)}
        if tier != "control" and len(members):
            idx = np.concatenate([members, controls])
            lab = np.r_[np.ones(len(members), bool), np.zeros(len(controls), bool)]
            for a in attacks:
                row[f"tpr_{a}"] = tpr_at_fpr(scores[a][idx], lab, fpr).tpr
                row[f"auc_{a}"] = auc(scores[a][idx], lab)
        if exposure_per_tier != 0 and len(members):
            pick = members
            if exposure_per_tier is not None and len(members) > exposure_per_tier:
                pick = np.sort(rng.choice(members, exposure_per_tier, replace=False))
            how: dict[str, Any] = {"which": pick.tolist(), "n_candidates": n_candidates,
                                   "seed": seed, "quiet": quiet}  # fmt: skip
            if n_candidates - 1 >= MIN_FIT_CANDIDATES:
                est = exposure_estimates(target, canaries, **how)
                ex = est.sampled
                row["exposure_extrapolated_mean"] = float(est.extrapolated.mean())
                row["exposure_extrapolated_max"] = float(est.extrapolated.max())
                row["exposure_extrapolation_reliable"] = float(est.reliable.mean())
            else:
                ex = exposure(target, canaries, **how)
            row["exposure_mean"] = float(ex.mean())
            row["exposure_max"] = float(ex.max())
        rows.append(row)
    return pd.DataFrame(rows).set_index("tier")
