"""Membership inference on language models (needs the optional extra ``miaudit[llm]``)."""

from miaudit.llm.attacks import LLM_ATTACKS, ONE_PASS_ATTACKS, llm_attack, score_texts
from miaudit.llm.target import LanguageModelTarget, TokenStats, load_language_model

__all__ = [
    "LLM_ATTACKS",
    "ONE_PASS_ATTACKS",
    "LanguageModelTarget",
    "TokenStats",
    "llm_attack",
    "load_language_model",
    "score_texts",
]
