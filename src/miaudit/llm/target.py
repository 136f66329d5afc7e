r"""A causal language model as an audit target: batched, padded, chunked per-token statistics.

One forward pass per batch gives, for every predicted token ``t`` of every text,

.. math::

    \ell_t = \log p(x_t \mid x_{<t}), \qquad
    \mu_t = \sum_v p_v \log p_v, \qquad
    \sigma_t^2 = \sum_v p_v (\log p_v - \mu_t)^2,

where ``p`` is the model's next-token distribution at position ``t`` (``μ_t`` is minus its
entropy). Every token-level attack of :mod:`miaudit.llm.attacks` is a reduction of these three
arrays, so all of them share the same pass.

How texts become batches
    * Each text is tokenized with the tokenizer's defaults (``add_special_tokens=True``). The
      first token has no context and is never predicted: a text of ``L`` tokens has
      ``N = L - 1`` predicted tokens (at least 2 tokens are required).
    * A text longer than the model's context ``C`` is cut into windows of at most ``C`` tokens
      that overlap by ``C - stride`` tokens (default ``stride = C - 1``: one token of overlap, so
      that each token is predicted exactly once and no window boundary leaves a token
      unpredicted); a token is predicted in the first window that contains it with context.
    * Windows are sorted by length (longest first) and grouped into batches of ``batch_size``:
      each batch is padded on the right to its own longest window (dynamic padding). With a
      causal model and right padding, real positions never attend to padding (the attention
      mask also says so) and keep their position ids, so a text scores the same alone or in a
      padded batch.

Memory
    The model's logits ``(B, T, V)`` exist for one batch only. The reductions over the
    vocabulary run over the predicted positions in chunks of at most
    :data:`VOCAB_CHUNK_ELEMENTS` numbers (upcast to float32 when the model runs in half
    precision), so the temporaries stay in cache and are never ``(n, T, V)``. The per-token
    results are returned as float64 (attack math is float64).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import NDArray

from miaudit._progress import progress
from miaudit.exceptions import MissingRequirementError, ValidationError

if TYPE_CHECKING:  # transformers is an optional extra: imported lazily at run time.
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "MIN_TOKENS",
    "TOKENIZER_FILES",
    "VOCAB_CHUNK_ELEMENTS",
    "LanguageModelTarget",
    "TokenStats",
    "as_target",
    "check_texts",
    "load_language_model",
]

#: Default number of windows per forward pass.
DEFAULT_BATCH_SIZE = 8
#: A text must tokenize to at least this many tokens (the first one is never predicted).
MIN_TOKENS = 2
#: Largest number of logits reduced over the vocabulary at once (float32: 4 MiB).
VOCAB_CHUNK_ELEMENTS = 1 << 20
#: Files of which at least one marks a folder that holds a Hugging Face tokenizer.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "vocab.txt",
    "tokenizer.model",
    "spiece.model",
)
#: Context length assumed when neither the model config nor the tokenizer states one.
FALLBACK_CONTEXT = 1024
#: ``tokenizer.model_max_length`` above this is transformers' "unset" sentinel, not a length.
_UNSET_MAX_LENGTH = 10**8
#: Names under which model configs state their context length.
_CONTEXT_ATTRS = ("n_positions", "max_position_embeddings", "n_ctx", "max_sequence_length")


def _require_transformers() -> Any:
    try:
        import transformers
    except ImportError as exc:  # pragma: no cover - the llm extra is installed in dev
        raise MissingRequirementError(
            "language-model audits need the optional dependency 'transformers': "
            "pip install 'miaudit[llm]'"
        ) from exc
    return transformers


@dataclass(frozen=True)
class TokenStats:
    """Per-token statistics of one text (float64, one entry per predicted token).

    Attributes
    ----------
    log_probs : ndarray of shape (N,)
        ``ℓ_t = log p(x_t | x_<t)`` of each predicted token, in text order.
    mu : ndarray of shape (N,) or None
        ``μ_t = Σ_v p_v log p_v`` (minus the entropy of the next-token distribution); ``None``
        when the statistics were computed without the distribution moments.
    sigma : ndarray of shape (N,) or None
        ``σ_t = sqrt(Σ_v p_v (log p_v − μ_t)²)``; ``None`` as ``mu``.
    """

    log_probs: NDArray[np.float64]
    mu: NDArray[np.float64] | None = None
    sigma: NDArray[np.float64] | None = None

    @property
    def n(self) -> int:
        """Number of predicted tokens ``N``."""
        return int(self.log_probs.shape[0])


def check_texts(texts: Any, name: str = "texts") -> list[str]:
    """``texts`` as a list of non-empty strings, or a :class:`ValidationError` naming the
    first bad one."""
    if isinstance(texts, (str, bytes)):
        raise ValidationError(f"{name}: expected a sequence of strings, got a single string")
    try:
        out = list(texts)
    except TypeError:
        raise ValidationError(
            f"{name}: expected a sequence of strings, got {type(texts).__name__}"
        ) from None
    if not out:
        raise ValidationError(f"{name}: expected at least one text, got none")
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise ValidationError(f"{name}[{i}]: expected a string, got {type(t).__name__}")
        if not t.strip():
            raise ValidationError(f"{name}[{i}]: empty text (only whitespace or nothing)")
    return out


@dataclass(frozen=True)
class _Window:
    """One row of a batch: ``ids`` of a window of text ``text``, predicting ``ids[first:]``."""

    text: int
    order: int
    ids: list[int]
    first: int


class LanguageModelTarget:
    """A causal language model and its tokenizer, queried for per-token statistics.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        A causal LM (``AutoModelForCausalLM``-style: called with ``input_ids`` and
        ``attention_mask``, returns ``.logits`` of shape ``(B, T, V)``).
    tokenizer : transformers.PreTrainedTokenizerBase
    device : str or torch.device, optional
        Where the model runs. ``None``: where the model already is (CPU for a freshly loaded
        model). The model is moved there.
    batch_size : int
        Windows per forward pass.
    max_length : int, optional
        Context length ``C``. ``None``: from the model config (``n_positions``,
        ``max_position_embeddings``), capped by ``tokenizer.model_max_length`` when set.
    stride : int, optional
        New tokens per window for texts longer than ``C`` (``1 ≤ stride ≤ C − 1``); default
        ``C − 1``. A smaller stride gives later windows more context at more cost.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        device: str | torch.device | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_length: int | None = None,
        stride: int | None = None,
    ) -> None:
        if not isinstance(model, torch.nn.Module):
            raise ValidationError(
                f"model: expected a torch/transformers model, got {type(model).__name__}"
            )
        if tokenizer is None or not callable(tokenizer):
            raise ValidationError("tokenizer: expected a Hugging Face tokenizer, got None")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValidationError(f"batch_size: expected a positive integer, got {batch_size!r}")
        self.model = model
        self.tokenizer = tokenizer
        if device is not None:
            self.model.to(torch.device(device))  # type: ignore[arg-type]
        self.device = next(model.parameters()).device
        self.batch_size = batch_size
        self.max_length = self._context_length(max_length)
        if stride is None:
            stride = self.max_length - 1
        if isinstance(stride, bool) or not isinstance(stride, int):
            raise ValidationError(f"stride: expected an integer, got {stride!r}")
        if not 1 <= stride <= self.max_length - 1:
            raise ValidationError(
                f"stride: expected 1 <= stride <= max_length - 1 = {self.max_length - 1}, "
                f"got {stride}"
            )
        self.stride = stride
        pad = getattr(tokenizer, "pad_token_id", None)
        if pad is None:
            pad = getattr(tokenizer, "eos_token_id", None)
        self.pad_id = int(pad) if pad is not None else 0

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        device: str | torch.device | None = "cpu",
        dtype: torch.dtype | None = None,
        allow_pickle: bool = False,
        **kwargs: Any,
    ) -> LanguageModelTarget:
        """Load a model and its tokenizer from a local folder (never from the hub).

        Parameters
        ----------
        path : str or Path
            A folder written by ``save_pretrained`` (config, safetensors weights, tokenizer).
        device : str or torch.device, optional
            Default ``"cpu"``.
        dtype : torch.dtype, optional
            E.g. ``torch.bfloat16`` on a GPU; default: as saved (float32 on CPU).
        allow_pickle : bool
            Allow weights in the pickle-based ``pytorch_model.bin`` format (unsafe for
            untrusted files); default: safetensors only.
        **kwargs
            Passed to the constructor (``batch_size``, ``max_length``, ``stride``).
        """
        model, tokenizer = load_language_model(path, dtype=dtype, allow_pickle=allow_pickle)
        return cls(model, tokenizer, device=device, **kwargs)

    # ----------------------------------------------------------------------------- helpers
    def _context_length(self, max_length: int | None) -> int:
        if max_length is not None:
            if isinstance(max_length, bool) or not isinstance(max_length, int):
                raise ValidationError(f"max_length: expected an integer, got {max_length!r}")
            if max_length < MIN_TOKENS:
                raise ValidationError(
                    f"max_length: expected at least {MIN_TOKENS} tokens, got {max_length}"
                )
            return max_length
        cfg = getattr(self.model, "config", None)
        found = [getattr(cfg, a) for a in _CONTEXT_ATTRS if isinstance(getattr(cfg, a, None), int)]
        length = found[0] if found else FALLBACK_CONTEXT
        tok_max = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(tok_max, int) and MIN_TOKENS <= tok_max < _UNSET_MAX_LENGTH:
            length = min(length, tok_max)
        return int(length)

    def encode(
        self, texts: Sequence[str], *, name: str = "texts", min_tokens: int = MIN_TOKENS
    ) -> list[list[int]]:
        """Token ids of each text (tokenizer defaults, ``add_special_tokens=True``).

        Raises
        ------
        ValidationError
            For a non-string or empty text, or one with fewer than ``min_tokens`` tokens.
        """
        checked = check_texts(texts, name)
        ids = self.tokenizer(checked, add_special_tokens=True)["input_ids"]
        out = [list(map(int, x)) for x in ids]
        for i, x in enumerate(out):
            if len(x) < min_tokens:
                raise ValidationError(
                    f"{name}[{i}]: tokenizes to {len(x)} token(s); at least {min_tokens} are "
                    f"needed (the first token is never predicted): {checked[i][:60]!r}"
                )
        return out

    def _windows(self, text: int, ids: list[int], first: int) -> Iterator[_Window]:
        """Windows of at most ``C`` tokens predicting each of ``ids[first:]`` exactly once."""
        c, s = self.max_length, self.stride
        done = first  # every position < done is predicted already (or never predicted)
        start, order = 0, 0
        while done < len(ids):
            # Context for ``done`` (start <= done - 1), and ``done`` inside the window.
            start = max(0, min(start, done - 1), done - c + 1)
            end = min(start + c, len(ids))
            yield _Window(text, order, ids[start:end], done - start)
            done = end
            order += 1
            start += s

    # ----------------------------------------------------------------------------- scoring
    def token_stats(
        self,
        texts: Sequence[str],
        *,
        moments: bool = True,
        prefix: str | None = None,
        name: str = "texts",
        quiet: bool | None = True,
        description: str = "scoring texts",
    ) -> list[TokenStats]:
        """Per-token statistics of each text, one forward pass per batch.

        Parameters
        ----------
        texts : sequence of str
        moments : bool
            Also compute ``μ_t`` and ``σ_t`` (needed by Min-K%++); a little more work per
            token, no extra pass.
        prefix : str, optional
            Text prepended to every text as context (ReCaLL). The prefix's tokens are never
            scored: the statistics cover exactly the tokens a plain call would score.
        quiet : bool, optional
            Progress bar setting (see :func:`miaudit._progress.progress`).

        Returns
        -------
        list of TokenStats
            In the order of ``texts``.
        """
        encoded = self.encode(texts, name=name)
        pre: list[int] = []
        if prefix is not None:
            pre = self.encode([prefix], name="prefix", min_tokens=1)[0]
        windows: list[_Window] = []
        for i, ids in enumerate(encoded):
            # A long prefix is cut from the left: it keeps at most what leaves the text the
            # rest of the context, and at least half the context.
            keep = min(len(pre), max(self.max_length - len(ids), self.max_length // 2))
            p = pre[len(pre) - keep :]
            windows.extend(self._windows(i, p + ids, len(p) + 1))
        windows.sort(key=lambda w: -len(w.ids))
        batches = [
            windows[i : i + self.batch_size] for i in range(0, len(windows), self.batch_size)
        ]
        parts: dict[tuple[int, int], tuple[NDArray, ...]] = {}
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                for batch in progress(batches, description, quiet=quiet):
                    for w, stats in zip(batch, self._batch_stats(batch, moments), strict=True):
                        parts[(w.text, w.order)] = stats
        finally:
            self.model.train(was_training)
        out = []
        for i in range(len(encoded)):
            pieces = []
            order = 0
            while (i, order) in parts:
                pieces.append(parts[(i, order)])
                order += 1
            cols = [np.concatenate(c).astype(np.float64) for c in zip(*pieces, strict=True)]
            out.append(TokenStats(*cols) if moments else TokenStats(cols[0]))
        return out

    def _batch_stats(self, batch: list[_Window], moments: bool) -> list[tuple[NDArray, ...]]:
        """Forward one padded batch; per window, arrays of ``ℓ_t`` (and ``μ_t``, ``σ_t``)."""
        b, t = len(batch), max(len(w.ids) for w in batch)
        ids = torch.full((b, t), self.pad_id, dtype=torch.long)
        mask = torch.zeros((b, t), dtype=torch.long)
        for r, w in enumerate(batch):
            ids[r, : len(w.ids)] = torch.tensor(w.ids, dtype=torch.long)
            mask[r, : len(w.ids)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        logits = self.model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        # Row r predicts ids[r, j] for j in [first, len) from logits[r, j - 1]: a contiguous
        # slice (a view) of the row's logits, so the batch's logits are never copied.
        segments = [
            (logits[r, w.first - 1 : len(w.ids) - 1], ids[r, w.first : len(w.ids)])
            for r, w in enumerate(batch)
        ]
        cols = _vocab_reductions(segments, moments)
        return [tuple(c[r] for c in cols) for r in range(b)]


def _vocab_reductions(
    segments: list[tuple[torch.Tensor, torch.Tensor]], moments: bool
) -> list[list[NDArray[np.float64]]]:
    r"""Per segment ``(logits (R, V), targets (R,))``: ``ℓ`` (and ``μ``, ``σ``) as float64
    arrays, computed over chunks of at most :data:`VOCAB_CHUNK_ELEMENTS` logits.

    ``log p = log_softmax(z)`` (fused), ``p = exp(log p)``, ``μ = Σ_v p log p``, then ``σ²``
    centred, ``Σ_v p (log p − μ)²``, in place. The uncentred ``E[log² p] − μ²`` is faster but
    cancels catastrophically in float32 for near-uniform distributions (``μ ≈ −log V``,
    ``σ`` small: relative errors of order 1 were measured at ``V = 50257``).
    """
    cols: list[list[torch.Tensor]] = [[], [], []] if moments else [[]]
    for z_all, tg_all in segments:
        v = z_all.shape[-1]
        step = max(1, VOCAB_CHUNK_ELEMENTS // v)
        parts: list[list[torch.Tensor]] = [[] for _ in cols]
        for lo in range(0, z_all.shape[0], step):
            z = z_all[lo : lo + step]
            if z.dtype in (torch.float16, torch.bfloat16):
                z = z.float()
            logp = torch.log_softmax(z, dim=-1)
            parts[0].append(logp.gather(1, tg_all[lo : lo + step, None]).squeeze(1))
            if moments:
                p = logp.exp()
                mu = torch.einsum("rv,rv->r", p, logp)
                logp.sub_(mu[:, None])
                p.mul_(logp)
                var = torch.einsum("rv,rv->r", p, logp).clamp_(min=0.0)
                parts[1].append(mu)
                parts[2].append(var.sqrt_())
        for col, chunks in zip(cols, parts, strict=True):
            col.append(torch.cat(chunks))
    # One device-to-host transfer per column, then split back into segments.
    sizes = [int(z.shape[0]) for z, _ in segments]
    return [[x.numpy() for x in torch.cat(col).double().cpu().split(sizes)] for col in cols]


def load_language_model(
    path: str | Path,
    *,
    dtype: torch.dtype | None = None,
    allow_pickle: bool = False,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A causal LM and its tokenizer from a local folder, with ``local_files_only=True``.

    Raises
    ------
    ValidationError
        When ``path`` is not a folder, holds no tokenizer, or holds no loadable model.
    """
    transformers = _require_transformers()
    folder = Path(path)
    if not folder.is_dir():
        raise ValidationError(f"model: {str(folder)!r} is not a folder with a saved model")
    if not any((folder / f).exists() for f in TOKENIZER_FILES):
        raise ValidationError(
            f"model: the folder {str(folder)!r} has no tokenizer (expected one of "
            f"{', '.join(TOKENIZER_FILES)}); save it with tokenizer.save_pretrained(folder)"
        )
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as exc:  # transformers raises many types for a broken tokenizer
        raise ValidationError(
            f"model: could not load the tokenizer in {str(folder)!r}: {exc}"
        ) from exc
    has_safe = any(folder.glob("*.safetensors"))
    if not has_safe and not allow_pickle:
        raise ValidationError(
            f"model: no *.safetensors weights in {str(folder)!r}; pickle-based weights load "
            "only with allow_pickle=True (unsafe for files you do not trust)"
        )
    kwargs: dict[str, Any] = {"local_files_only": True, "use_safetensors": has_safe}
    if dtype is not None:
        kwargs["dtype"] = dtype
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    except Exception as exc:
        raise ValidationError(
            f"model: could not load a causal language model from {str(folder)!r}: {exc}"
        ) from exc
    return model, tokenizer


def as_target(
    model: Any,
    tokenizer: Any = None,
    *,
    name: str = "model",
    **kwargs: Any,
) -> LanguageModelTarget:
    """A :class:`LanguageModelTarget` from a target, a local folder, or a model + tokenizer."""
    if isinstance(model, LanguageModelTarget):
        if tokenizer is not None:
            raise ValidationError(f"tokenizer: {name} is already a target with its tokenizer")
        return model
    if isinstance(model, (str, Path)):
        if tokenizer is not None:
            raise ValidationError(f"tokenizer: {name} is a folder, which holds its tokenizer")
        return LanguageModelTarget.from_pretrained(model, **kwargs)
    if isinstance(model, tuple) and len(model) == 2 and tokenizer is None:
        model, tokenizer = model
    if tokenizer is None:
        raise ValidationError(f"tokenizer: {name} is an in-memory model; pass its tokenizer")
    return LanguageModelTarget(model, tokenizer, **kwargs)
