r"""Membership inference attacks on language models, one function each, in a registry.

Notation: a text tokenizes to ``L`` tokens (tokenizer defaults); the first is never predicted,
so ``N = L − 1`` tokens have ``ℓ_t = log p(x_t | x_<t)``; ``NLL = −(1/N) Σ_t ℓ_t``. Every score
is "higher = more likely a member".

One-pass attacks (all four share ONE forward pass per batch, see
:class:`~miaudit.llm.target.LanguageModelTarget`):

=================== ========================================================================
``loss``            ``(1/N) Σ_t ℓ_t`` = −NLL. Yeom et al., CSF 2018; Carlini et al., USENIX
                    Security 2021.
``zlib``            ``(1/N) Σ_t ℓ_t / |zlib(x)|``, ``|zlib(x)|`` = bytes of
                    ``zlib.compress(x.encode("utf-8"))`` (MIMIR's form; Carlini et al. 2021).
``min_k``           mean of the ``m = max(1, ⌊k N⌋)`` smallest ``ℓ_t`` (Shi et al., "Detecting
                    Pretraining Data from Large Language Models", ICLR 2024); ``k = 0.2``.
``min_k_plus_plus`` the same over ``z_t = (ℓ_t − μ_t) / σ_t`` with ``μ_t = Σ_v p_v log p_v``,
                    ``σ_t² = Σ_v p_v (log p_v − μ_t)²`` over the full next-token distribution
                    (Zhang et al., "Min-K%++", ICLR 2025).
=================== ========================================================================

Attacks with extra passes (their cost is stated per attack):

=================== ========================================================================
``lowercase``       ``NLL(lower(x)) / NLL(x)`` (Carlini et al. 2021); one more pass.
``reference``       against a local reference LM. ``variant="difference"`` (default, MIMIR):
                    ``NLL_ref(x) − NLL(x)``; ``variant="ratio"`` (Carlini et al. 2021):
                    ``−NLL(x) / NLL_ref(x)``. One pass of the reference model.
``neighbourhood``   ``mean_i NLL(x̃_i) − NLL(x)`` over ``n_neighbours`` neighbours ``x̃_i`` made
                    by a local masked LM (Mattern et al., Findings of ACL 2023): one MLM pass
                    per token of ``x`` (batched) plus ``n_neighbours`` target passes.
``recall``          ``NLL(x | P) / NLL(x)`` with ``P`` a prefix of known non-member texts
                    (Xie et al., "ReCaLL", EMNLP 2024); the prefix's tokens are never scored.
                    One more pass (over ``|P| + L`` tokens).
``gradient_norm``   ``−(1/|Θ|) Σ_θ ‖∇_θ NLL(x)‖_p`` over the model's parameter tensors (MIMIR,
                    Duan et al. 2024; Wang et al. 2024); one forward and backward per text.
``dc_pdd``          ``mean_{t ∈ FOS(x)} min(−p_t log f(x_t), a)``, ``f`` the Laplace-smoothed
                    token frequencies of a reference corpus, ``FOS`` first occurrences (Zhang
                    et al., EMNLP 2024; :mod:`miaudit.llm.dcpdd`); reads the shared pass.
``mlm_pll``         ``PLL(x) = Σ_t log p(x_t | x_\\t)`` under the audited *masked* LM, each text
                    token masked in turn (:mod:`miaudit.llm.mlm`); one MLM pass per token.
``mlm_ratio``       ``PLL_target(x) − PLL_ref(x)`` against a reference masked LM (Mireshghallah
                    et al., EMNLP 2022); one MLM pass per token of each model.
=================== ========================================================================

A new attack is one function registered with :func:`llm_attack`; it receives an
:class:`AttackContext` (the texts, the target, lazily computed shared statistics, resources).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from miaudit.exceptions import MissingRequirementError, ValidationError
from miaudit.llm.dcpdd import (
    DEFAULT_CLIP,
    TokenFrequencies,
    as_token_frequencies,
    check_clip,
    dc_pdd_score,
)
from miaudit.llm.mlm import DEFAULT_ROWS_PER_PASS, as_masked_lm, is_masked_lm, pseudo_log_likelihood
from miaudit.llm.target import (
    DEFAULT_BATCH_SIZE,
    LanguageModelTarget,
    TokenStats,
    as_target,
    check_texts,
)
from miaudit.registry import Registry, check_call

__all__ = [
    "DEFAULT_K",
    "DEFAULT_N_NEIGHBOURS",
    "LLM_ATTACKS",
    "ONE_PASS_ATTACKS",
    "AttackContext",
    "LLMAttack",
    "attack_info",
    "llm_attack",
    "min_k_mean",
    "score_texts",
]

#: Fraction of tokens Min-K% and Min-K%++ average over (Shi et al. 2024 use 20 %).
DEFAULT_K = 0.2
#: Neighbours per text of the neighbourhood attack (MIMIR: 25; Mattern et al.: up to 100).
DEFAULT_N_NEIGHBOURS = 25
#: Default norm of the gradient-norm attack.
DEFAULT_GRAD_P = 2.0


@dataclass(frozen=True)
class LLMAttack:
    """A registered language-model attack.

    Attributes
    ----------
    name : str
    fn : callable
        ``fn(ctx: AttackContext, **params) -> ndarray of shape (n,)``, higher = member.
    title, paper, formula : str
        What the report says about it; ``formula`` is the exact variant computed.
    one_pass : bool
        Whether it only reads the shared per-token statistics (no extra model pass).
    needs_moments : bool
        Whether it reads ``μ_t`` and ``σ_t`` (the shared pass then computes them).
    cost : str
        Extra model passes, in words.
    """

    name: str
    fn: Callable[..., NDArray[np.float64]]
    title: str
    paper: str
    formula: str
    one_pass: bool
    needs_moments: bool = False
    cost: str = "none beyond the shared pass"


#: All language-model attacks, by name.
LLM_ATTACKS: Registry[LLMAttack] = Registry("LLM attack")


def llm_attack(
    name: str,
    *,
    title: str,
    paper: str,
    formula: str,
    one_pass: bool,
    needs_moments: bool = False,
    cost: str = "none beyond the shared pass",
) -> Callable[[Callable[..., NDArray[np.float64]]], Callable[..., NDArray[np.float64]]]:
    """Decorator: register ``fn(ctx, **params)`` as the LLM attack ``name``."""

    def decorator(fn: Callable[..., NDArray[np.float64]]) -> Callable[..., NDArray[np.float64]]:
        LLM_ATTACKS.register(name)(
            LLMAttack(name, fn, title, paper, formula, one_pass, needs_moments, cost)
        )
        return fn

    return decorator


@dataclass
class AttackContext:
    """What an attack function may read: the texts, the target and shared statistics.

    Attributes
    ----------
    texts : list of str
    target : LanguageModelTarget
    k : float
        Fraction of Min-K% / Min-K%++.
    moments : bool
        Whether the shared pass computes ``μ_t`` and ``σ_t``.
    reference : LanguageModelTarget, optional
    mask_model : tuple (masked LM, tokenizer), optional
    recall_prefix : list of str, optional
    seed : int
    quiet : bool, optional
    """

    texts: list[str]
    target: LanguageModelTarget
    k: float = DEFAULT_K
    moments: bool = True
    reference: LanguageModelTarget | None = None
    mask_model: tuple[Any, Any] | None = None
    recall_prefix: list[str] | None = None
    seed: int = 0
    quiet: bool | None = True
    _stats: list[TokenStats] | None = field(default=None, repr=False)
    _nll: NDArray[np.float64] | None = field(default=None, repr=False)
    _pll: list[tuple[Any, Any, NDArray[np.float64]]] = field(default_factory=list, repr=False)

    @property
    def stats(self) -> list[TokenStats]:
        """Per-token statistics of every text (computed once, on first use)."""
        if self._stats is None:
            self._stats = self.target.token_stats(
                self.texts, moments=self.moments, quiet=self.quiet
            )
        return self._stats

    @property
    def nll(self) -> NDArray[np.float64]:
        """``NLL(x)`` of every text, shape ``(n,)``."""
        if self._nll is None:
            self._nll = np.array([-s.log_probs.mean() for s in self.stats], dtype=np.float64)
        return self._nll

    def pll(self, mlm: Any, tokenizer: Any, rows_per_pass: int) -> NDArray[np.float64]:
        """``PLL(x)`` of every text under the masked LM ``mlm`` with ``tokenizer``, computed
        once per (model object, tokenizer object) — ``mlm_pll`` and ``mlm_ratio`` on the same
        model share it. ``rows_per_pass`` only batches the work (the values do not depend on
        it)."""
        for model_, tok_, values in self._pll:
            if model_ is mlm and tok_ is tokenizer:
                return values
        values = pseudo_log_likelihood(
            self.texts, mlm, tokenizer, rows_per_pass=rows_per_pass, quiet=self.quiet
        )
        self._pll.append((mlm, tokenizer, values))
        return values

    def nll_of(
        self, texts: Sequence[str], target: LanguageModelTarget | None = None, **kw: Any
    ) -> NDArray[np.float64]:
        """``NLL`` of other texts under ``target`` (default: the audited model)."""
        t = self.target if target is None else target
        stats = t.token_stats(texts, moments=False, quiet=self.quiet, **kw)
        return np.array([-s.log_probs.mean() for s in stats], dtype=np.float64)


# ----------------------------------------------------------------------------- helpers
def check_k(k: Any) -> float:
    """``k`` of Min-K% as a float in ``(0, 1]``."""
    if isinstance(k, bool) or not isinstance(k, (int, float)) or not 0 < k <= 1:
        raise ValidationError(f"k: expected a fraction in (0, 1], got {k!r}")
    return float(k)


def min_k_mean(values: NDArray[np.float64], k: float) -> float:
    """Mean of the ``max(1, ⌊k N⌋)`` smallest of ``N`` values (NaN-free input assumed).

    ``⌊k N⌋`` is computed with a tolerance of 1e-9 so that ``k N`` that is a whole number up
    to rounding (``0.2 · 10``) is not floored one below.
    """
    n = values.shape[0]
    m = max(1, math.floor(k * n + 1e-9))
    if m >= n:
        return float(values.mean())
    return float(np.partition(values, m - 1)[:m].mean())


def _per_text(ctx: AttackContext, fn: Callable[[TokenStats, str], float]) -> NDArray[np.float64]:
    return np.array([fn(s, t) for s, t in zip(ctx.stats, ctx.texts, strict=True)], np.float64)


# ----------------------------------------------------------------------------- one-pass
@llm_attack(
    "loss",
    title="LOSS (negative mean NLL)",
    paper="Yeom et al., CSF 2018; Carlini et al., USENIX Security 2021",
    formula="(1/N) sum_t log p(x_t | x_<t)",
    one_pass=True,
)
def loss_attack(ctx: AttackContext) -> NDArray[np.float64]:
    """``(1/N) Σ_t ℓ_t`` (= −NLL)."""
    return -ctx.nll


def zlib_bytes(text: str) -> int:
    """``len(zlib.compress(text.encode("utf-8")))`` (default compression level)."""
    return len(zlib.compress(text.encode("utf-8")))


@llm_attack(
    "zlib",
    title="zlib-normalised LOSS",
    paper="Carlini et al., USENIX Security 2021 (MIMIR form)",
    formula='(1/N) sum_t log p_t / len(zlib.compress(x.encode("utf-8")))',
    one_pass=True,
)
def zlib_attack(ctx: AttackContext) -> NDArray[np.float64]:
    """``(1/N) Σ_t ℓ_t / |zlib(x)|``."""
    sizes = np.array([zlib_bytes(t) for t in ctx.texts], dtype=np.float64)
    return -ctx.nll / sizes


@llm_attack(
    "min_k",
    title="Min-K% Prob",
    paper="Shi et al., Detecting Pretraining Data from Large Language Models, ICLR 2024",
    formula="mean of the max(1, floor(k N)) smallest log p_t",
    one_pass=True,
)
def min_k_attack(ctx: AttackContext) -> NDArray[np.float64]:
    """Mean of the ``max(1, ⌊kN⌋)`` smallest ``ℓ_t``."""
    return _per_text(ctx, lambda s, _: min_k_mean(s.log_probs, ctx.k))


@llm_attack(
    "min_k_plus_plus",
    title="Min-K%++",
    paper="Zhang et al., Min-K%++: Improved Baseline for Detecting Pre-Training Data, ICLR 2025",
    formula=(
        "mean of the max(1, floor(k N)) smallest z_t = (log p_t - mu_t) / sigma_t, "
        "mu_t = sum_v p_v log p_v, sigma_t^2 = sum_v p_v (log p_v - mu_t)^2"
    ),
    one_pass=True,
    needs_moments=True,
)
def min_k_plus_plus_attack(ctx: AttackContext) -> NDArray[np.float64]:
    """Min-K% over ``z_t = (ℓ_t − μ_t) / σ_t``; ``σ_t = 0`` (a one-hot distribution) gives
    ``z_t = 0`` when ``ℓ_t = μ_t`` (the token is the certain one)."""

    def one(s: TokenStats, _: str) -> float:
        if s.mu is None or s.sigma is None:
            raise MissingRequirementError("min_k_plus_plus: the shared pass computed no moments")
        diff = s.log_probs - s.mu
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(s.sigma > 0, diff / np.where(s.sigma > 0, s.sigma, 1.0), 0.0)
        return min_k_mean(z, ctx.k)

    return _per_text(ctx, one)


#: The four attacks that read only the shared pass: the default of :func:`score_texts`.
ONE_PASS_ATTACKS = ("loss", "zlib", "min_k", "min_k_plus_plus")


# ----------------------------------------------------------------------------- extra passes
@llm_attack(
    "lowercase",
    title="Lowercase ratio",
    paper="Carlini et al., USENIX Security 2021",
    formula="NLL(lower(x)) / NLL(x)",
    one_pass=False,
    cost="one more pass over the lower-cased texts",
)
def lowercase_attack(ctx: AttackContext) -> NDArray[np.float64]:
    """``NLL(lower(x)) / NLL(x)``: a member's own casing is much likelier than lower case."""
    lower = ctx.nll_of([t.lower() for t in ctx.texts], name="texts (lower-cased)")
    with np.errstate(divide="ignore", invalid="ignore"):
        return lower / ctx.nll


@llm_attack(
    "reference",
    title="Reference-model calibration",
    paper="Carlini et al., USENIX Security 2021; Duan et al. (MIMIR), COLM 2024",
    formula="difference: NLL_ref(x) - NLL(x); ratio: -NLL(x) / NLL_ref(x)",
    one_pass=False,
    cost="one pass of the reference model",
)
def reference_attack(ctx: AttackContext, variant: str = "difference") -> NDArray[np.float64]:
    """``NLL_ref − NLL`` (``variant="difference"``) or ``−NLL / NLL_ref`` (``"ratio"``)."""
    if variant not in ("difference", "ratio"):
        raise ValidationError(
            f"reference.variant: expected 'difference' or 'ratio', got {variant!r}"
        )
    if ctx.reference is None:
        raise MissingRequirementError(
            "reference: needs a reference language model (reference=folder or (model, "
            "tokenizer)); it should be trained on similar data but not on the audited texts"
        )
    ref = ctx.nll_of(ctx.texts, target=ctx.reference, description="reference model")
    if variant == "difference":
        return ref - ctx.nll
    with np.errstate(divide="ignore", invalid="ignore"):
        return -ctx.nll / ref


@llm_attack(
    "recall",
    title="ReCaLL",
    paper="Xie et al., ReCaLL: Membership Inference via Relative Conditional Log-Likelihoods, "
    "EMNLP 2024",
    formula="NLL(x | P) / NLL(x), P = non-member prefix texts joined by blank lines",
    one_pass=False,
    cost="one more pass over prefix + text",
)
def recall_attack(ctx: AttackContext, separator: str = "\n\n") -> NDArray[np.float64]:
    """``LL(x | P) / LL(x) = NLL(x | P) / NLL(x)``; members lose more likelihood when a
    non-member prefix is prepended (Xie et al. 2024), so a larger ratio means member. The
    prefix texts are never scored and must not be among the audited texts."""
    if not ctx.recall_prefix:
        raise MissingRequirementError(
            "recall: needs recall_prefix, a few texts known NOT to be members (never scored)"
        )
    prefix = check_texts(ctx.recall_prefix, "recall_prefix")
    _refuse_audited(
        prefix, ctx.texts, "recall_prefix",
        "a prefix text is also an audited text; prefix texts must be kept out of the evaluation",
    )  # fmt: skip
    cond = ctx.nll_of(ctx.texts, prefix=separator.join(prefix) + separator, description="ReCaLL")
    with np.errstate(divide="ignore", invalid="ignore"):
        return cond / ctx.nll


@llm_attack(
    "neighbourhood",
    title="Neighbourhood comparison",
    paper="Mattern et al., Membership Inference Attacks against Language Models via "
    "Neighbourhood Comparison, Findings of ACL 2023",
    formula="mean_i NLL(neighbour_i) - NLL(x), neighbours by one-token MLM replacements",
    one_pass=False,
    cost="one masked-LM pass per token (batched) + n_neighbours target passes per text",
)
def neighbourhood_attack(
    ctx: AttackContext, n_neighbours: int = DEFAULT_N_NEIGHBOURS
) -> NDArray[np.float64]:
    """``mean_i NLL(x̃_i) − NLL(x)``: a member's loss is lower than its neighbours'."""
    if ctx.mask_model is None:
        raise MissingRequirementError(
            "neighbourhood: needs mask_model=(masked LM, tokenizer), e.g. a local BERT folder"
        )
    if isinstance(n_neighbours, bool) or not isinstance(n_neighbours, int) or n_neighbours < 1:
        raise ValidationError(
            f"neighbourhood.n_neighbours: expected a positive integer, got {n_neighbours!r}"
        )
    from miaudit.llm.neighbours import make_neighbours

    mlm, tok = ctx.mask_model
    neighbours = make_neighbours(ctx.texts, mlm, tok, n_neighbours, seed=ctx.seed, quiet=ctx.quiet)
    flat = [nb for group in neighbours for nb in group]
    nll = ctx.nll_of(flat, name="neighbours", description="neighbours")
    out = np.empty(len(ctx.texts), dtype=np.float64)
    pos = 0
    for i, group in enumerate(neighbours):
        out[i] = nll[pos : pos + len(group)].mean() - ctx.nll[i] if group else np.nan
        pos += len(group)
    return out


@llm_attack(
    "gradient_norm",
    title="Gradient norm",
    paper="Duan et al. (MIMIR), COLM 2024; Wang et al., arXiv 2402.17012",
    formula="-(1/|Theta|) sum_theta ||grad_theta NLL(x)||_p over parameter tensors",
    one_pass=False,
    cost="one forward and backward pass per text (batch of one)",
)
def gradient_norm_attack(ctx: AttackContext, p: float = DEFAULT_GRAD_P) -> NDArray[np.float64]:
    """``−mean_θ ‖∇_θ NLL(x)‖_p``: training drove a member's gradient towards zero.

    Gradients are taken with :func:`torch.autograd.grad`, so ``.grad`` of the model's
    parameters is never touched. A text longer than the context is split into the same windows
    as for scoring and its NLL is the mean over all of its predicted tokens.
    """
    if p not in (1, 2, math.inf, 1.0, 2.0):
        raise ValidationError(f"gradient_norm.p: expected 1, 2 or inf, got {p!r}")
    target = ctx.target
    model = target.model
    params = [q for q in model.parameters() if q.requires_grad]
    if not params:
        raise ValidationError("gradient_norm: the model has no trainable parameters")
    encoded = target.encode(ctx.texts)
    out = np.empty(len(encoded), dtype=np.float64)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            for i, ids in enumerate(encoded):
                windows = list(target._windows(i, ids, 1))
                n = sum(len(w.ids) - w.first for w in windows)
                grads: list[torch.Tensor] | None = None
                for w in windows:
                    x = torch.tensor([w.ids], device=target.device)
                    logits = model(input_ids=x, use_cache=False).logits[0, w.first - 1 : -1]
                    nll = (
                        torch.nn.functional.cross_entropy(
                            logits.float(), x[0, w.first :], reduction="sum"
                        )
                        / n
                    )
                    raw = torch.autograd.grad(nll, params, allow_unused=True)
                    g = [
                        torch.zeros_like(q) if gi is None else gi
                        for gi, q in zip(raw, params, strict=True)
                    ]
                    grads = g if grads is None else [a + b for a, b in zip(grads, g, strict=True)]
                assert grads is not None
                norms = [torch.linalg.vector_norm(gi.double(), ord=p) for gi in grads]
                out[i] = -float(torch.stack(norms).mean())
    finally:
        model.train(was_training)
    return out


# ----------------------------------------------------------------------------- DC-PDD
@llm_attack(
    "dc_pdd",
    title="DC-PDD (frequency-calibrated token probabilities)",
    paper="Zhang et al., Pretraining Data Detection for Large Language Models: A "
    "Divergence-based Calibration Method, EMNLP 2024",
    formula=(
        "mean over first occurrences t of min(-p_t log f(x_t), a), p_t = p(x_t | x_<t), "
        "f(v) = (count_corpus(v) + 1) / (N_corpus + |V|)"
    ),
    one_pass=True,
    cost="none beyond the shared pass (plus tokenizing the reference corpus once)",
)
def dc_pdd_attack(
    ctx: AttackContext, corpus: Any = None, a: float = DEFAULT_CLIP
) -> NDArray[np.float64]:
    """DC-PDD score ``β(x)`` (:mod:`miaudit.llm.dcpdd`). ``corpus``: the reference corpus
    ``D'`` whose token frequencies calibrate the probabilities, as a local file or folder of
    texts, a sequence of texts, or a :class:`~miaudit.llm.dcpdd.TokenFrequencies`; it must not
    contain the audited texts. ``a``: the upper bound of each token's term."""
    clip = check_clip(a)
    if corpus is None:
        raise MissingRequirementError(
            "dc_pdd: needs corpus, a reference corpus of the same kind of text (a local file, "
            "folder, list of texts or TokenFrequencies) that holds none of the audited texts"
        )
    if isinstance(corpus, (str, Path)):
        from miaudit.llm.data import load_texts

        corpus = load_texts(corpus)[0]
    if not isinstance(corpus, TokenFrequencies):
        corpus = check_texts(corpus, "corpus")
        _refuse_audited(
            corpus, ctx.texts, "corpus",
            "an audited text is in the reference corpus; its tokens would lower its own score",
        )  # fmt: skip
    freq = as_token_frequencies(corpus, ctx.target.tokenizer)
    log_f = freq.log_frequencies
    encoded = ctx.target.encode(ctx.texts)
    out = np.empty(len(ctx.texts), dtype=np.float64)
    for i, (s, ids) in enumerate(zip(ctx.stats, encoded, strict=True)):
        out[i] = dc_pdd_score(s.log_probs, ids[1:], log_f, clip)
    return out


# ----------------------------------------------------------------------------- masked LMs
def _audited_mlm(ctx: AttackContext, model: Any, attack: str) -> tuple[Any, Any]:
    """The audited masked LM: the ``model`` parameter, else the audited model itself."""
    if model is not None:
        return as_masked_lm(model, f"{attack}.model", device=ctx.target.device)
    if is_masked_lm(ctx.target.model):
        return ctx.target.model, ctx.target.tokenizer
    raise MissingRequirementError(
        f"{attack}: the audited model is not a masked LM ({type(ctx.target.model).__name__}); "
        f"pass the masked LM as the model (score_texts(mlm, tokenizer, ...)) or as the "
        f"attack parameter model=<folder> or (model, tokenizer)"
    )


@llm_attack(
    "mlm_pll",
    title="Masked-LM pseudo-log-likelihood",
    paper="Mireshghallah et al., Quantifying Privacy Risks of Masked Language Models Using "
    "Membership Inference Attacks, EMNLP 2022 (PLL: Salazar et al., ACL 2020)",
    formula="PLL(x) = sum_t log p_MLM(x_t | x with token t masked), text tokens only",
    one_pass=False,
    cost="one masked-LM pass per token (batched)",
)
def mlm_pll_attack(
    ctx: AttackContext, model: Any = None, rows_per_pass: int = DEFAULT_ROWS_PER_PASS
) -> NDArray[np.float64]:
    """``PLL(x)`` under the audited masked LM (the threshold baseline of Mireshghallah et
    al. 2022); ``model``: a folder or ``(masked LM, tokenizer)``, default the audited model."""
    mlm, tok = _audited_mlm(ctx, model, "mlm_pll")
    return ctx.pll(mlm, tok, rows_per_pass)


@llm_attack(
    "mlm_ratio",
    title="Masked-LM likelihood ratio",
    paper="Mireshghallah et al., Quantifying Privacy Risks of Masked Language Models Using "
    "Membership Inference Attacks, EMNLP 2022",
    formula="PLL_target(x) - PLL_ref(x), PLL(x) = sum_t log p_MLM(x_t | x with t masked)",
    one_pass=False,
    cost="one masked-LM pass per token, for the target and for the reference masked LM",
)
def mlm_ratio_attack(
    ctx: AttackContext,
    model: Any = None,
    reference: Any = None,
    rows_per_pass: int = DEFAULT_ROWS_PER_PASS,
) -> NDArray[np.float64]:
    """``PLL_target(x) − PLL_ref(x)``: the log pseudo-likelihood ratio of Mireshghallah et al.
    2022. ``model`` as :func:`mlm_pll_attack`; ``reference``: a folder or ``(masked LM,
    tokenizer)`` trained on similar data without the audited texts, default ``mask_model``
    (``llm.mask_model`` in a config)."""
    mlm, tok = _audited_mlm(ctx, model, "mlm_ratio")
    if reference is None:
        if ctx.mask_model is None:
            raise MissingRequirementError(
                "mlm_ratio: needs a reference masked LM: the attack parameter reference=<folder> "
                "or (model, tokenizer), or mask_model"
            )
        reference = ctx.mask_model
    ref_mlm, ref_tok = as_masked_lm(reference, "mlm_ratio.reference", device=ctx.target.device)
    return ctx.pll(mlm, tok, rows_per_pass) - ctx.pll(ref_mlm, ref_tok, rows_per_pass)


# ----------------------------------------------------------------------------- entry point
def _refuse_audited(extra: Sequence[str], audited: Sequence[str], name: str, why: str) -> None:
    """Texts an attack reads besides the audited ones (a prefix, a corpus) must not include
    an audited text: :class:`ValidationError` naming the first, ``{name}[i]: {why}``."""
    seen = set(audited)
    clash = next((i for i, t in enumerate(extra) if t in seen), None)
    if clash is not None:
        raise ValidationError(f"{name}[{clash}]: {why}")


def attack_info(name: str, **params: Any) -> dict[str, Any]:
    """``{"name", "title", "paper", "formula", "cost", "params"}`` of a registered attack."""
    a = LLM_ATTACKS.get(name)
    formula = a.formula
    if a.name == "reference":
        variant = params.get("variant", "difference")
        formula = "NLL_ref(x) - NLL(x)" if variant == "difference" else "-NLL(x) / NLL_ref(x)"
        params = {**params, "variant": variant}
    return {
        "name": a.name,
        "title": a.title,
        "paper": a.paper,
        "formula": formula,
        "cost": a.cost,
        "params": params,
    }


def score_texts(
    model: Any,
    tokenizer: Any = None,
    texts: Sequence[str] | None = None,
    attacks: Sequence[str] | None = None,
    *,
    k: float = DEFAULT_K,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | torch.device | None = None,
    max_length: int | None = None,
    reference: Any = None,
    mask_model: tuple[Any, Any] | None = None,
    recall_prefix: Sequence[str] | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    seed: int = 0,
    quiet: bool | None = True,
) -> dict[str, NDArray[np.float64]]:
    """Scores of language-model attacks on ``texts`` (higher = more likely a member).

    Parameters
    ----------
    model : transformers model, LanguageModelTarget, or str / Path
        The audited causal LM (in memory, wrapped, or a local folder — never the hub).
    tokenizer : tokenizer, optional
        Needed with an in-memory model.
    texts : sequence of str
    attacks : sequence of str, optional
        Names from :data:`LLM_ATTACKS`; default :data:`ONE_PASS_ATTACKS`, which all share one
        forward pass per batch.
    k : float
        Fraction of Min-K% and Min-K%++ (fixed a priori, never tuned on the audited labels).
    batch_size, device, max_length
        As :class:`~miaudit.llm.target.LanguageModelTarget` (used when ``model`` is not a
        target already).
    reference : model folder, (model, tokenizer) or LanguageModelTarget, optional
        For ``reference``.
    mask_model : (masked LM, tokenizer), optional
        For ``neighbourhood``.
    recall_prefix : sequence of str, optional
        Known non-member texts for ``recall`` (never scored, must not be in ``texts``).
    params : mapping, optional
        Attack name → keyword parameters (``{"reference": {"variant": "ratio"}}``).
    seed : int
        Seed of the neighbour generation.
    quiet : bool, optional
        Progress bars: ``None`` on a terminal, ``True`` never (default), ``False`` always.

    Returns
    -------
    dict of str to ndarray of shape (len(texts),), float64
    """
    if texts is None:
        raise ValidationError("texts: expected a sequence of strings, got None")
    checked = check_texts(texts)
    names = list(ONE_PASS_ATTACKS if attacks is None else attacks)
    if isinstance(attacks, str):
        names = [attacks]
    if not names:
        raise ValidationError("attacks: expected at least one attack name, got none")
    specs = [LLM_ATTACKS.get(n) for n in names]
    params = dict(params or {})
    for key in params:
        if key not in names:
            raise ValidationError(
                f"params: {key!r} is not among the requested attacks ({', '.join(names)})"
            )
    for a in specs:
        check_call(a.fn, f"LLM attack {a.name!r}", None, **params.get(a.name, {}))
    kw: dict[str, Any] = {"batch_size": batch_size, "device": device, "max_length": max_length}
    target = as_target(model, tokenizer, **_only_set(kw))
    ref = None
    if reference is not None:
        ref = as_target(
            reference,
            name="reference",
            **_only_set({**kw, "max_length": None, "device": device or target.device}),
        )
    ctx = AttackContext(
        texts=checked,
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


def _only_set(kw: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kw.items() if v is not None}
