"""Membership inference on language models (needs the optional extra ``miaudit[llm]``).

Entry points
    :func:`score_texts`      attack scores of texts under a causal LM (higher = member)
    :func:`audit_texts`      full audit: duplicates, attacks, blind baseline, saved report
    :func:`audit_canaries`   per-tier canary detection and exposure (fine-tuning audits)
    :func:`blind_baseline`   out-of-fold scores that never query the model
    :func:`audit_with_references`  LiRA, Attack-R and RMIA with reference LMs trained on
                             random halves of the texts (:mod:`miaudit.llm.reference`)
    :func:`audit_texts_with_references`  the same inside a full audit, references kept in an
                             on-disk store (``llm.references`` of ``mode: llm``)
    :func:`run_llm_demo`     (in :mod:`miaudit.llm.demo`) the offline demo

Attack families beyond the one-pass token attacks
    * **RMIA** on texts (Zarifzadeh, Liu & Shokri 2024): ``rmia`` / ``rmia_offline`` of
      :func:`reference_attacks`, ``Pr(x|θ)`` the per-token geometric-mean likelihood, with an
      optional population of texts no model trained on (``llm.population``).
    * **Masked LMs** (Mireshghallah et al. 2022): ``mlm_pll`` and ``mlm_ratio`` score a masked
      LM (BERT, RoBERTa) by its pseudo-log-likelihood (:func:`pseudo_log_likelihood`,
      :func:`load_masked_lm`; ``llm.model_kind: masked`` in a config).
    * **DC-PDD** (Zhang et al. 2024): ``dc_pdd`` calibrates token probabilities by token
      frequencies in a reference corpus (:func:`token_frequencies`; ``llm.frequency_corpus``).

Importing this package imports torch but not transformers; transformers is imported when a
model is loaded or built. The reference store (:mod:`miaudit.llm.reference_run`: executors,
file locks) is imported on first use of its names. Nothing in miaudit imports this package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from miaudit.llm.attacks import (
    LLM_ATTACKS,
    ONE_PASS_ATTACKS,
    AttackContext,
    LLMAttack,
    llm_attack,
    score_texts,
)
from miaudit.llm.audit import audit_canaries, audit_texts
from miaudit.llm.blind import BlindVerdict, blind_baseline, blind_verdict
from miaudit.llm.canaries import (
    CanarySet,
    ExposureEstimates,
    exposure,
    exposure_estimates,
    insert_canaries,
    make_canaries,
)
from miaudit.llm.data import (
    DuplicateReport,
    TextSplit,
    find_duplicates,
    load_member_split,
    load_mimir,
    load_texts,
    load_wikimia,
    remove_duplicates,
)
from miaudit.llm.dcpdd import TokenFrequencies, dc_pdd_score, token_frequencies
from miaudit.llm.mlm import (
    MASKED_LM_ATTACKS,
    load_masked_lm,
    pseudo_log_likelihood,
    token_pseudo_log_probs,
)
from miaudit.llm.reference import (
    REFERENCE_ATTACKS,
    audit_with_references,
    reference_attacks,
    reference_signals,
    resolve_rmia_a,
)
from miaudit.llm.target import LanguageModelTarget, TokenStats, load_language_model

if TYPE_CHECKING:
    from miaudit.llm.reference_run import (
        ReferenceSpec,
        audit_texts_with_references,
        stored_reference_signals,
    )

#: Names imported from their module on first access (module ``__getattr__``).
_LAZY = {
    "ReferenceSpec": "miaudit.llm.reference_run",
    "audit_texts_with_references": "miaudit.llm.reference_run",
    "stored_reference_signals": "miaudit.llm.reference_run",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'miaudit.llm' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "LLM_ATTACKS",
    "MASKED_LM_ATTACKS",
    "ONE_PASS_ATTACKS",
    "REFERENCE_ATTACKS",
    "AttackContext",
    "BlindVerdict",
    "CanarySet",
    "DuplicateReport",
    "ExposureEstimates",
    "LLMAttack",
    "LanguageModelTarget",
    "ReferenceSpec",
    "TextSplit",
    "TokenFrequencies",
    "TokenStats",
    "audit_canaries",
    "audit_texts",
    "audit_texts_with_references",
    "audit_with_references",
    "blind_baseline",
    "blind_verdict",
    "dc_pdd_score",
    "exposure",
    "exposure_estimates",
    "find_duplicates",
    "insert_canaries",
    "llm_attack",
    "load_language_model",
    "load_masked_lm",
    "load_member_split",
    "load_mimir",
    "load_texts",
    "load_wikimia",
    "make_canaries",
    "pseudo_log_likelihood",
    "reference_attacks",
    "reference_signals",
    "remove_duplicates",
    "resolve_rmia_a",
    "score_texts",
    "stored_reference_signals",
    "token_frequencies",
    "token_pseudo_log_probs",
]
