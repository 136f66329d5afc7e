r"""DC-PDD: token probabilities calibrated by token frequencies in a reference corpus (Zhang et
al., "Pretraining Data Detection for Large Language Models: A Divergence-based Calibration
Method", EMNLP 2024).

The idea comes from divergence-from-randomness in information retrieval: a token the model
finds likely *and* that is rare in general text says more about membership than a frequent one.
With ``p_t = p(x_t | x_<t)`` the model's probability of the ``t``-th token and ``f(v)`` the
token's frequency in a reference corpus ``D'``:

1. Token frequencies with Laplace smoothing over the tokenizer's vocabulary ``V``
   (``|V| = len(tokenizer)``), ``N'`` the number of tokens of ``D'``:

   .. math:: f(v) = \frac{\mathrm{count}_{D'}(v) + 1}{N' + |V|}.

2. A cross-entropy-like term per token, clipped at the upper bound ``a``:

   .. math:: \alpha_t = \min\big(-p_t \log f(x_t),\ a\big).

3. The score over the first occurrences only (each distinct token id counts once, at the
   first position where it is predicted), ``FOS(x)``:

   .. math:: \beta(x) = \frac{1}{|\mathrm{FOS}(x)|} \sum_{t \in \mathrm{FOS}(x)} \alpha_t
      \qquad (\text{higher} = \text{member}).

``a = 0.01`` by default (the value of the authors' code and MIMIR's port). ``p_t`` is a
probability, not a log-probability, as in the paper.

Differences from the authors' code, stated:
    * The authors prepend a start-of-text token so that the first token is predicted too;
      here, as for every other attack of :mod:`miaudit.llm.attacks`, the first token of the
      tokenization is never predicted and ``FOS`` runs over the predicted tokens ``x_2 ...
      x_L`` (the shared forward pass is reused: no extra model pass).
    * The authors count frequencies on a C4 subset fetched from the internet, truncating each
      text at 1,024 tokens; here the corpus is texts the user supplies (any local corpus of the
      same kind of text, never the audited texts), tokenized whole with the target's
      tokenizer and its defaults (special tokens counted as the tokenizer adds them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from miaudit.exceptions import ValidationError
from miaudit.llm.target import check_texts

__all__ = [
    "DEFAULT_CLIP",
    "TokenFrequencies",
    "as_token_frequencies",
    "dc_pdd_score",
    "first_occurrences",
    "token_frequencies",
]

#: Upper bound ``a`` of the per-token term (the authors' code and MIMIR use 0.01).
DEFAULT_CLIP = 0.01
#: Pseudo-count added to every vocabulary entry (Laplace smoothing, as in the paper).
LAPLACE_PSEUDO_COUNT = 1


@dataclass(frozen=True)
class TokenFrequencies:
    """Token counts of a reference corpus under one tokenizer.

    Attributes
    ----------
    counts : ndarray of int, shape (|V|,)
        ``count_{D'}(v)`` for every token id ``v``.
    n_texts : int
        Texts counted.
    """

    counts: NDArray[np.int64]
    n_texts: int

    @property
    def n_tokens(self) -> int:
        """``N'``, the corpus's number of tokens."""
        return int(self.counts.sum())

    @property
    def log_frequencies(self) -> NDArray[np.float64]:
        """``log f(v) = log((count(v) + 1) / (N' + |V|))`` (Laplace smoothing)."""
        v = self.counts.shape[0]
        num = self.counts.astype(np.float64) + LAPLACE_PSEUDO_COUNT
        return np.log(num) - np.log(self.n_tokens + LAPLACE_PSEUDO_COUNT * v)


def token_frequencies(
    texts: Sequence[str], tokenizer: Any, *, vocab_size: int | None = None
) -> TokenFrequencies:
    """Count the tokens of ``texts`` (tokenizer defaults, ``add_special_tokens=True``).

    Parameters
    ----------
    texts : sequence of str
        The reference corpus ``D'``.
    tokenizer : the audited model's tokenizer
    vocab_size : int, optional
        ``|V|``; default ``len(tokenizer)``.
    """
    checked = check_texts(texts, "corpus")
    v = len(tokenizer) if vocab_size is None else int(vocab_size)
    ids = tokenizer(checked, add_special_tokens=True)["input_ids"]
    flat = np.fromiter((int(t) for row in ids for t in row), dtype=np.int64)
    if flat.size and (flat.min() < 0 or flat.max() >= v):
        raise ValidationError(
            f"corpus: token id {int(flat.max())} is outside the vocabulary of {v} tokens"
        )
    return TokenFrequencies(np.bincount(flat, minlength=v).astype(np.int64), len(checked))


def as_token_frequencies(corpus: Any, tokenizer: Any) -> TokenFrequencies:
    """A frequency table from a :class:`TokenFrequencies`, a sequence of texts, or a local
    file / folder of texts (:func:`miaudit.llm.data.load_texts`: JSONL/JSON/CSV/Parquet with a
    ``text`` field, or ``.txt`` files)."""
    if isinstance(corpus, TokenFrequencies):
        if corpus.counts.shape[0] < len(tokenizer):
            raise ValidationError(
                f"corpus: the frequency table covers {corpus.counts.shape[0]} token ids, the "
                f"tokenizer has {len(tokenizer)}"
            )
        return corpus
    if isinstance(corpus, (str, Path)):
        from miaudit.llm.data import load_texts

        corpus = load_texts(corpus)[0]
    return token_frequencies(corpus, tokenizer)


def first_occurrences(token_ids: Sequence[int] | NDArray[np.int64]) -> NDArray[np.int64]:
    """Positions where a token id occurs for the first time, in order."""
    seen: set[int] = set()
    keep = []
    for j, t in enumerate(token_ids):
        if int(t) not in seen:
            seen.add(int(t))
            keep.append(j)
    return np.array(keep, dtype=np.int64)


def dc_pdd_score(
    log_probs: NDArray[np.float64],
    token_ids: Sequence[int] | NDArray[np.int64],
    log_frequencies: NDArray[np.float64],
    a: float = DEFAULT_CLIP,
) -> float:
    r"""``β = mean_{t ∈ FOS} min(−p_t log f(x_t), a)`` of one text.

    Parameters
    ----------
    log_probs : ndarray of shape (N,)
        ``log p_t`` of the predicted tokens.
    token_ids : sequence of int, length N
        The predicted tokens' ids, aligned with ``log_probs``.
    log_frequencies : ndarray of shape (|V|,)
        ``log f(v)`` (:attr:`TokenFrequencies.log_frequencies`).
    a : float
        Upper bound of each term (> 0).
    """
    ids = np.asarray(token_ids, dtype=np.int64)
    if ids.shape != log_probs.shape:
        raise ValidationError(
            f"token_ids: expected {log_probs.shape[0]} ids aligned with log_probs, got "
            f"{ids.shape[0]}"
        )
    keep = first_occurrences(ids)
    alpha = -np.exp(log_probs[keep]) * log_frequencies[ids[keep]]
    return float(np.minimum(alpha, a).mean())


def check_clip(a: Any) -> float:
    """``a`` as a positive float."""
    if isinstance(a, bool) or not isinstance(a, (int, float)) or not a > 0:
        raise ValidationError(f"dc_pdd.a: expected a positive number, got {a!r}")
    return float(a)
