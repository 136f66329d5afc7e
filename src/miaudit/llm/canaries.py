r"""Canaries for fine-tuning audits, and their exposure (Carlini et al., USENIX Security 2019).

A canary is a text of a fixed format with a random secret, e.g. ``"the secret code is 4 8 1 5
9 2"``. Membership is randomised, so that no distribution shift can explain a detection:
each canary gets a repetition tier (1, 4 or 16 copies, round robin) and a fair coin; heads, its
copies are inserted into the training data, tails, it is a never-inserted control. The audit
then asks, per tier, how well an attack tells the inserted canaries from the controls
(TPR at low FPR), and how exposed each inserted secret is.

Exposure (Carlini et al. 2019, "The Secret Sharer", Def. 4)
    With ``R`` a set of candidate secrets of the same format that contains the true one, and
    ``rank`` the position of the true secret when the candidates are sorted by the model's
    log-perplexity ``−Σ_t log p(x_t | x_<t)`` of the full canary text (most likely first),

    .. math::

        \mathrm{exposure} = \log_2 |R| - \log_2 \mathrm{rank}.

    Here ``R`` is the true secret plus ``n_candidates − 1`` secrets drawn uniformly at random
    (distinct from it), so exposure lies in ``[0, log2 n_candidates]``; ties with the true
    secret count against it (rank = 1 + number of candidates at most as likely, excluding
    itself). Cost: ``n_candidates`` short passes per canary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from miaudit._validation import as_generator
from miaudit.exceptions import ValidationError
from miaudit.llm.target import LanguageModelTarget

__all__ = [
    "DEFAULT_ALPHABET",
    "DEFAULT_TEMPLATE",
    "DEFAULT_TIERS",
    "CanarySet",
    "exposure",
    "insert_canaries",
    "make_canaries",
]

#: Canary format; ``{secret}`` is replaced by the random secret.
DEFAULT_TEMPLATE = "the secret code is {secret}"
#: Symbols of a secret; written separated by spaces (one token each for most tokenizers).
DEFAULT_ALPHABET = "0123456789"
#: Symbols per secret.
DEFAULT_SECRET_LENGTH = 6
#: Copies of an inserted canary, by tier (memaudit and Carlini et al. use such tiers).
DEFAULT_TIERS = (1, 4, 16)
#: Probability that a canary is inserted (a fair coin: randomised membership).
INSERT_PROBABILITY = 0.5
#: Candidates per canary for the exposure.
DEFAULT_CANDIDATES = 1000


@dataclass
class CanarySet:
    """Canaries with their random secrets, tiers and coins.

    Attributes
    ----------
    secrets : list of str
    texts : list of str
        The canary texts (template filled with the secret).
    tier : ndarray of int, shape (n,)
        Copies the canary gets if inserted.
    inserted : ndarray of bool, shape (n,)
        The coin: inserted into the training data (member) or a never-inserted control.
    template, alphabet : str
    length : int
    """

    secrets: list[str]
    texts: list[str]
    tier: NDArray[np.int64]
    inserted: NDArray[np.bool_]
    template: str = DEFAULT_TEMPLATE
    alphabet: str = DEFAULT_ALPHABET
    length: int = DEFAULT_SECRET_LENGTH
    ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.ids:
            self.ids = [f"canary-{i}" for i in range(len(self.texts))]

    @property
    def copies(self) -> NDArray[np.int64]:
        """Copies inserted into the training data (0 for a control)."""
        return np.where(self.inserted, self.tier, 0)

    def fill(self, secret: str) -> str:
        """The canary text of ``secret``."""
        return self.template.format(secret=secret)


def _secret(rng: np.random.Generator, alphabet: str, length: int) -> str:
    return " ".join(alphabet[i] for i in rng.integers(0, len(alphabet), size=length))


def make_canaries(
    n: int,
    *,
    template: str = DEFAULT_TEMPLATE,
    alphabet: str = DEFAULT_ALPHABET,
    length: int = DEFAULT_SECRET_LENGTH,
    tiers: Sequence[int] = DEFAULT_TIERS,
    seed: Any = 0,
) -> CanarySet:
    """``n`` canaries with distinct random secrets, tiers round robin, fair insertion coins."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValidationError(f"n: expected an integer >= 2, got {n!r}")
    if "{secret}" not in template:
        raise ValidationError(f"template: must contain '{{secret}}', got {template!r}")
    if len(set(alphabet)) < 2:
        raise ValidationError(f"alphabet: expected at least 2 distinct symbols, got {alphabet!r}")
    if not tiers or any(isinstance(t, bool) or not isinstance(t, int) or t < 1 for t in tiers):
        raise ValidationError(f"tiers: expected positive integers, got {tiers!r}")
    space = len(alphabet) ** length
    if n > space // 2:
        raise ValidationError(f"n: {n} canaries need a larger secret space than {space}")
    rng = as_generator(seed)
    secrets: list[str] = []
    seen: set[str] = set()
    while len(secrets) < n:
        s = _secret(rng, alphabet, length)
        if s not in seen:
            seen.add(s)
            secrets.append(s)
    tier = np.array([tiers[i % len(tiers)] for i in range(n)], dtype=np.int64)
    inserted = rng.random(n) < INSERT_PROBABILITY
    return CanarySet(
        secrets=secrets,
        texts=[template.format(secret=s) for s in secrets],
        tier=tier,
        inserted=inserted,
        template=template,
        alphabet=alphabet,
        length=length,
    )


def insert_canaries(texts: Sequence[str], canaries: CanarySet, *, seed: Any = 0) -> list[str]:
    """``texts`` plus ``tier`` copies of each inserted canary, shuffled with ``seed``."""
    out = list(texts)
    for text, copies in zip(canaries.texts, canaries.copies, strict=True):
        out.extend([text] * int(copies))
    order = as_generator(seed).permutation(len(out))
    return [out[i] for i in order]


def exposure(
    target: LanguageModelTarget,
    canaries: CanarySet,
    *,
    which: Sequence[int] | None = None,
    n_candidates: int = DEFAULT_CANDIDATES,
    seed: Any = 0,
    quiet: bool | None = True,
) -> NDArray[np.float64]:
    """Exposure in bits of the canaries ``which`` (default all), shape ``(len(which),)``."""
    if isinstance(n_candidates, bool) or not isinstance(n_candidates, int) or n_candidates < 2:
        raise ValidationError(f"n_candidates: expected an integer >= 2, got {n_candidates!r}")
    space = len(canaries.alphabet) ** canaries.length
    if n_candidates > space:
        raise ValidationError(f"n_candidates: {n_candidates} exceeds the secret space {space}")
    idx = list(range(len(canaries.texts))) if which is None else [int(i) for i in which]
    rng = as_generator(seed)
    texts: list[str] = []
    for i in idx:
        true = canaries.secrets[i]
        pool: list[str] = [true]
        seen = {true}
        while len(pool) < n_candidates:
            s = _secret(rng, canaries.alphabet, canaries.length)
            if s not in seen:
                seen.add(s)
                pool.append(s)
        texts.extend(canaries.fill(s) for s in pool)
    stats = target.token_stats(texts, moments=False, quiet=quiet, description="exposure")
    logppl = np.array([-s.log_probs.sum() for s in stats], dtype=np.float64)
    out = np.empty(len(idx), dtype=np.float64)
    for j in range(len(idx)):
        block = logppl[j * n_candidates : (j + 1) * n_candidates]
        rank = 1 + int(np.sum(block[1:] <= block[0]))
        out[j] = math.log2(n_candidates) - math.log2(rank)
    return out
