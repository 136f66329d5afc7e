"""Membership inference on language models (needs the optional extra ``miaudit[llm]``).

Entry points
    :func:`score_texts`      attack scores of texts under a causal LM (higher = member)
    :func:`audit_texts`      full audit: duplicates, attacks, blind baseline, saved report
    :func:`audit_canaries`   per-tier canary detection and exposure (fine-tuning audits)
    :func:`blind_baseline`   out-of-fold scores that never query the model
    :func:`audit_with_references`  LiRA / Attack-R with reference LMs trained on random halves
    :func:`run_llm_demo`     (in :mod:`miaudit.llm.demo`) the offline demo

Importing this package imports torch but not transformers; transformers is imported when a
model is loaded or built. Nothing in miaudit imports this package.
"""

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
from miaudit.llm.canaries import CanarySet, exposure, insert_canaries, make_canaries
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
from miaudit.llm.reference import audit_with_references, reference_attacks, reference_signals
from miaudit.llm.target import LanguageModelTarget, TokenStats, load_language_model

__all__ = [
    "LLM_ATTACKS",
    "ONE_PASS_ATTACKS",
    "AttackContext",
    "BlindVerdict",
    "CanarySet",
    "DuplicateReport",
    "LLMAttack",
    "LanguageModelTarget",
    "TextSplit",
    "TokenStats",
    "audit_canaries",
    "audit_texts",
    "audit_with_references",
    "blind_baseline",
    "blind_verdict",
    "exposure",
    "find_duplicates",
    "insert_canaries",
    "llm_attack",
    "load_language_model",
    "load_member_split",
    "load_mimir",
    "load_texts",
    "load_wikimia",
    "make_canaries",
    "reference_attacks",
    "reference_signals",
    "remove_duplicates",
    "score_texts",
]
