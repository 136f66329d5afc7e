r"""Pseudo-log-likelihood of texts under a masked language model, for membership inference
against masked LMs (Mireshghallah et al., "Quantifying Privacy Risks of Masked Language Models
Using Membership Inference Attacks", EMNLP 2022).

A masked LM (BERT, RoBERTa, ...) defines no likelihood of a text, but its pseudo-log-likelihood
(Wang & Cho 2019; Salazar et al., ACL 2020) serves as one: mask each token in turn and add the
log-probability the model gives the true token,

.. math::

    \mathrm{PLL}(x) = \sum_{t \in T(x)} \log p_{\mathrm{MLM}}\big(x_t \mid x_{\setminus t}\big),

where ``x_{\t}`` is ``x`` with token ``t`` replaced by the mask token and ``T(x)`` are the
positions of the text's own tokens (the tokenizer's special tokens — ``[CLS]``, ``[SEP]``,
``<s>`` ... — are never masked nor scored). Mireshghallah et al.'s attack is the likelihood
ratio against a reference masked LM trained on similar, disjoint data:

.. math::

    \mathrm{score}(x) = \mathrm{PLL}_{\mathrm{target}}(x) - \mathrm{PLL}_{\mathrm{ref}}(x)
    \qquad (\text{higher} = \text{member}),

each PLL under its model's own tokenizer (the same tokenizer for both is the clean case).

How texts are scored
    * Tokenizer defaults (``add_special_tokens=True``); the leading and trailing special tokens
      of the encoding wrap every window.
    * A text longer than the model's context ``C`` (``max_position_embeddings``, capped by the
      tokenizer's ``model_max_length`` when set) is cut into consecutive windows of at most
      ``C`` tokens including the special tokens; each token is masked once, with the context of
      its own window only (no overlap).
    * The masked copies of all texts are sorted by length and batched ``rows_per_pass`` at a
      time with right padding and an attention mask (a bidirectional encoder never attends to
      masked-out padding, so a copy scores the same alone or in a batch).

Cost: one forward pass per token of the text (``L`` masked copies, batched), i.e. ``L`` times a
causal LM's scoring pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from miaudit._progress import progress
from miaudit.exceptions import ValidationError
from miaudit.llm.target import TOKENIZER_FILES, _require_transformers, check_texts

__all__ = [
    "DEFAULT_ROWS_PER_PASS",
    "MASKED_LM_ATTACKS",
    "as_masked_lm",
    "is_masked_lm",
    "load_masked_lm",
    "pseudo_log_likelihood",
    "token_pseudo_log_probs",
]

#: The attacks of :mod:`miaudit.llm.attacks` that read a masked LM's pseudo-likelihood: the
#: only ones that apply when the audited model itself is a masked LM (every other attack reads
#: a causal LM's next-token probabilities).
MASKED_LM_ATTACKS = ("mlm_pll", "mlm_ratio")
#: Masked copies per forward pass.
DEFAULT_ROWS_PER_PASS = 64
#: Context assumed for a masked LM whose config states none (BERT's).
FALLBACK_MLM_CONTEXT = 512
#: ``tokenizer.model_max_length`` above this is transformers' "unset" sentinel.
_UNSET_MAX_LENGTH = 10**8


def is_masked_lm(model: Any) -> bool:
    """Whether ``model`` is a transformers masked LM (``...ForMaskedLM``)."""
    return isinstance(model, torch.nn.Module) and "MaskedLM" in type(model).__name__


def load_masked_lm(
    path: str | Path,
    *,
    device: str | torch.device | None = None,
    allow_pickle: bool = False,
) -> tuple[Any, Any]:
    """A masked LM and its tokenizer from a local folder (``local_files_only=True``; weights
    from safetensors unless ``allow_pickle``)."""
    transformers = _require_transformers()
    folder = Path(path)
    if not folder.is_dir():
        raise ValidationError(f"masked LM: {str(folder)!r} is not a folder with a saved model")
    if not any((folder / f).exists() for f in TOKENIZER_FILES):
        raise ValidationError(f"masked LM: the folder {str(folder)!r} has no tokenizer")
    has_safe = any(folder.glob("*.safetensors"))
    if not has_safe and not allow_pickle:
        raise ValidationError(
            f"masked LM: no *.safetensors weights in {str(folder)!r}; pickle-based weights "
            "load only with allow_pickle=True (unsafe for files you do not trust)"
        )
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = transformers.AutoModelForMaskedLM.from_pretrained(
            folder, local_files_only=True, use_safetensors=has_safe
        )
    except Exception as exc:  # transformers raises many types for a broken folder
        raise ValidationError(
            f"masked LM: could not load a masked LM from {str(folder)!r}: {exc}"
        ) from exc
    if device is not None:
        model.to(torch.device(device))
    return model, tokenizer


def as_masked_lm(obj: Any, name: str, device: str | torch.device | None = None) -> tuple[Any, Any]:
    """``(masked LM, tokenizer)`` from a local folder or a ``(model, tokenizer)`` pair."""
    if isinstance(obj, (str, Path)):
        return load_masked_lm(obj, device=device)
    if isinstance(obj, tuple) and len(obj) == 2 and is_masked_lm(obj[0]):
        return obj[0], obj[1]
    raise ValidationError(
        f"{name}: expected a folder with a saved masked LM or a (masked LM, tokenizer) pair, "
        f"got {type(obj).__name__}"
    )


def _context(model: Any, tokenizer: Any) -> int:
    cfg = getattr(model, "config", None)
    c = getattr(cfg, "max_position_embeddings", None)
    length = int(c) if isinstance(c, int) else FALLBACK_MLM_CONTEXT
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < _UNSET_MAX_LENGTH:
        length = min(length, tok_max)
    return length


def _windows(ids: list[int], special: list[int], context: int) -> list[tuple[list[int], list[int]]]:
    """``(window ids, positions of its text tokens)`` covering each text token once: the
    leading and trailing special tokens of the encoding wrap every window; a special token
    inside the text (e.g. a literal ``[SEP]``) is kept as context but never masked."""
    lead = 0
    while lead < len(ids) and special[lead]:
        lead += 1
    trail = 0
    while trail < len(ids) - lead and special[len(ids) - 1 - trail]:
        trail += 1
    end = len(ids) - trail
    room = context - lead - trail
    if room < 1:
        raise ValidationError(f"masked LM: a context of {context} tokens holds no text token")
    out = []
    for i in range(lead, end, room):
        j = min(i + room, end)
        window = ids[:lead] + ids[i:j] + ids[end:]
        out.append((window, [lead + k - i for k in range(i, j) if not special[k]]))
    return out


def token_pseudo_log_probs(
    texts: Sequence[str],
    model: Any,
    tokenizer: Any,
    *,
    rows_per_pass: int = DEFAULT_ROWS_PER_PASS,
    name: str = "texts",
    quiet: bool | None = True,
) -> list[NDArray[np.float64]]:
    """``log p(x_t | x_\\t)`` of every text token of every text, in text order (float64).

    Parameters
    ----------
    texts : sequence of str
    model : transformers masked LM (``input_ids``, ``attention_mask`` → ``.logits (B, T, V)``)
    tokenizer : its tokenizer; must have a mask token
    rows_per_pass : int
        Masked copies per forward pass.

    Raises
    ------
    ValidationError
        For empty texts, a tokenizer without a mask token, or a text with no token of its own.
    """
    checked = check_texts(texts, name)
    if isinstance(rows_per_pass, bool) or not isinstance(rows_per_pass, int) or rows_per_pass < 1:
        raise ValidationError(f"rows_per_pass: expected a positive integer, got {rows_per_pass!r}")
    mask_id = getattr(tokenizer, "mask_token_id", None)
    if mask_id is None:
        raise ValidationError("masked LM: the tokenizer has no mask token")
    pad = getattr(tokenizer, "pad_token_id", None)
    pad_id = int(pad) if pad is not None else 0
    context = _context(model, tokenizer)
    enc = tokenizer(checked, add_special_tokens=True, return_special_tokens_mask=True)
    # One row per (text, window, masked position).
    windows: list[list[int]] = []
    rows: list[tuple[int, int, int]] = []  # (text, window index, position in window)
    n_tokens = []
    for i, (ids, special) in enumerate(
        zip(enc["input_ids"], enc["special_tokens_mask"], strict=True)
    ):
        own = sum(1 for s in special if not s)
        if own == 0:
            raise ValidationError(f"{name}[{i}]: tokenizes to no token of its own")
        n_tokens.append(own)
        for w_ids, positions in _windows([int(x) for x in ids], list(special), context):
            rows.extend((i, len(windows), p) for p in positions)
            windows.append(w_ids)
    rows.sort(key=lambda r: -len(windows[r[1]]))
    out_rows = np.empty(len(rows), dtype=np.float64)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            starts = range(0, len(rows), rows_per_pass)
            for lo in progress(starts, "pseudo-likelihood", quiet=quiet):
                batch = rows[lo : lo + rows_per_pass]
                t = max(len(windows[w]) for _, w, _ in batch)
                x = torch.full((len(batch), t), pad_id, dtype=torch.long)
                att = torch.zeros((len(batch), t), dtype=torch.long)
                for r, (_, w, _) in enumerate(batch):
                    x[r, : len(windows[w])] = torch.tensor(windows[w], dtype=torch.long)
                    att[r, : len(windows[w])] = 1
                pos = torch.tensor([p for _, _, p in batch], dtype=torch.long)
                r_idx = torch.arange(len(batch))
                true = x[r_idx, pos].clone()
                x[r_idx, pos] = int(mask_id)
                picked = _masked_logits(model, x.to(device), att.to(device), r_idx, pos)
                logp = torch.log_softmax(picked, dim=-1)
                got = logp.gather(1, true.to(device)[:, None]).squeeze(1)
                out_rows[lo : lo + len(batch)] = got.double().cpu().numpy()
    finally:
        model.train(was_training)
    # Back to text order: rows of a text by (window, position).
    per_text: list[list[tuple[int, int, float]]] = [[] for _ in checked]
    for (i, w, p), v in zip(rows, out_rows, strict=True):
        per_text[i].append((w, p, float(v)))
    result = []
    for i, items in enumerate(per_text):
        items.sort()
        arr = np.array([v for _, _, v in items], dtype=np.float64)
        assert arr.shape[0] == n_tokens[i]
        result.append(arr)
    return result


def _masked_logits(
    model: Any, x: torch.Tensor, att: torch.Tensor, rows: torch.Tensor, pos: torch.Tensor
) -> torch.Tensor:
    """Logits ``(B, V)`` at the masked position of each row, as float32.

    The vocabulary projection (the output embedding) is applied to the masked positions only:
    a pre-hook hands it ``hidden[rows, pos]`` instead of all ``(B, T)`` positions, so the
    ``(B, T, V)`` logits of a batch are never formed (the projection and its softmax are most
    of a small model's cost). A model whose head does not take that shortcut (the output has
    another shape) falls back to slicing the full logits.
    """
    rows, pos = rows.to(x.device), pos.to(x.device)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    handle = None
    if isinstance(head, torch.nn.Module):

        def select(_module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
            h = args[0]
            if h.dim() == 3 and h.shape[:2] == x.shape:
                return (h[rows, pos], *args[1:])
            return None

        handle = head.register_forward_pre_hook(select)
    try:
        logits = model(input_ids=x, attention_mask=att).logits
    finally:
        if handle is not None:
            handle.remove()
    if logits.dim() == 2 and logits.shape[0] == x.shape[0]:
        return logits.float()
    return logits[rows, pos].float()


def pseudo_log_likelihood(
    texts: Sequence[str],
    model: Any,
    tokenizer: Any,
    *,
    rows_per_pass: int = DEFAULT_ROWS_PER_PASS,
    quiet: bool | None = True,
) -> NDArray[np.float64]:
    """``PLL(x) = Σ_t log p(x_t | x_\\t)`` of each text, shape ``(len(texts),)``, float64."""
    logs = token_pseudo_log_probs(texts, model, tokenizer, rows_per_pass=rows_per_pass, quiet=quiet)
    return np.array([a.sum() for a in logs], dtype=np.float64)
