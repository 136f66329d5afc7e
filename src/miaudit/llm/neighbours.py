r"""Neighbour texts for the neighbourhood attack (Mattern et al., Findings of ACL 2023).

A neighbour of ``x`` differs from it in one token. For each position ``i`` of ``x`` (under the
masked LM's tokenizer), the masked LM reads ``x`` with dropout (rate
:data:`~miaudit.llm.attacks.NEIGHBOUR_DROPOUT`) applied to the input embedding of token ``i``
only — the token stays visible but blurred, so proposals fit its context and keep its meaning —
and proposes its :data:`~miaudit.llm.attacks.NEIGHBOUR_TOP_K` likeliest replacements other than
the original and special tokens. Over all positions, the ``n`` proposals of highest
probability give the ``n`` neighbours. The replacement is spliced into the original string at
the token's character span (fast tokenizers), so the rest of the text is unchanged byte for
byte; a slow tokenizer falls back to decoding the edited ids.

Cost: one masked-LM forward per token of ``x`` (all positions of a text in one batch of
``L`` rows, chunked by :data:`MLM_ROWS_PER_PASS`). Dropout masks come from a
:class:`torch.Generator` seeded with ``seed``, so neighbours are reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from miaudit._progress import progress
from miaudit.exceptions import ValidationError

#: Dropout applied to the embedding of the replaced token when proposing neighbours (Mattern
#: et al. 2023 / MIMIR use 0.7).
NEIGHBOUR_DROPOUT = 0.7
#: Candidate replacements considered per position when proposing neighbours (MIMIR: top 6).
NEIGHBOUR_TOP_K = 6

__all__ = ["MLM_ROWS_PER_PASS", "make_neighbours"]

#: Rows (copies of one text, one blurred position each) per masked-LM forward pass.
MLM_ROWS_PER_PASS = 32
#: Context assumed for a masked LM whose config states none.
_FALLBACK_MLM_CONTEXT = 512


def make_neighbours(
    texts: Sequence[str],
    mlm: Any,
    tokenizer: Any,
    n_neighbours: int,
    *,
    seed: int = 0,
    dropout: float | None = None,
    top_k: int | None = None,
    quiet: bool | None = True,
) -> list[list[str]]:
    """Up to ``n_neighbours`` one-token neighbours of each text (fewer when it has fewer
    distinct proposals).

    Parameters
    ----------
    texts : sequence of str
    mlm : transformers masked LM (e.g. ``BertForMaskedLM``), accepting ``inputs_embeds``
    tokenizer : its tokenizer
    n_neighbours : int
    seed : int
        Seed of the embedding-dropout masks.
    dropout, top_k : optional
        Default :data:`NEIGHBOUR_DROPOUT`, :data:`NEIGHBOUR_TOP_K`.
    """
    rate = NEIGHBOUR_DROPOUT if dropout is None else float(dropout)
    if not 0 <= rate < 1:
        raise ValidationError(f"dropout: expected a rate in [0, 1), got {dropout!r}")
    k = NEIGHBOUR_TOP_K if top_k is None else int(top_k)
    if not callable(getattr(mlm, "get_input_embeddings", None)):
        raise ValidationError("mask_model: expected a transformers masked LM (e.g. BERT)")
    cfg = getattr(mlm, "config", None)
    ctx = int(getattr(cfg, "max_position_embeddings", _FALLBACK_MLM_CONTEXT))
    device = next(mlm.parameters()).device
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    special = set(int(i) for i in getattr(tokenizer, "all_special_ids", []))
    fast = bool(getattr(tokenizer, "is_fast", False))
    out: list[list[str]] = []
    was_training = mlm.training
    mlm.eval()
    try:
        with torch.inference_mode():
            for text in progress(texts, "neighbours", quiet=quiet):
                enc = tokenizer(
                    text,
                    add_special_tokens=True,
                    truncation=True,
                    max_length=ctx,
                    return_offsets_mapping=fast,
                )
                ids = [int(i) for i in enc["input_ids"]]
                offsets = enc["offset_mapping"] if fast else None
                out.append(
                    _neighbours_of(
                        text,
                        ids,
                        offsets,
                        mlm,
                        tokenizer,
                        special,
                        n_neighbours,
                        rate,
                        k,
                        gen,
                        device,
                    )
                )
    finally:
        mlm.train(was_training)
    return out


def _neighbours_of(
    text: str,
    ids: list[int],
    offsets: Any,
    mlm: Any,
    tokenizer: Any,
    special: set[int],
    n: int,
    rate: float,
    k: int,
    gen: torch.Generator,
    device: torch.device,
) -> list[str]:
    positions = [i for i, t in enumerate(ids) if t not in special]
    if offsets is not None:
        positions = [i for i in positions if offsets[i][1] > offsets[i][0]]
    if not positions:
        return []
    x = torch.tensor([ids], device=device)
    emb = mlm.get_input_embeddings()(x)[0]  # (L, d)
    banned = torch.tensor(sorted(special), dtype=torch.long, device=device)
    proposals: list[tuple[float, int, int]] = []
    for lo in range(0, len(positions), MLM_ROWS_PER_PASS):
        pos = positions[lo : lo + MLM_ROWS_PER_PASS]
        rows = emb.unsqueeze(0).repeat(len(pos), 1, 1)
        keep = (torch.rand((len(pos), emb.shape[1]), generator=gen) >= rate).to(emb.dtype)
        scale = keep.to(device) / (1.0 - rate)
        r = torch.arange(len(pos), device=device)
        p_idx = torch.tensor(pos, device=device)
        rows[r, p_idx] = rows[r, p_idx] * scale
        logits = mlm(inputs_embeds=rows).logits[r, p_idx].float()  # (P, V)
        probs = torch.softmax(logits, dim=-1)
        probs[r, x[0, p_idx]] = 0.0  # never "replace" a token by itself
        if banned.numel():
            probs[:, banned] = 0.0
        top_p, top_t = probs.topk(min(k, probs.shape[-1]), dim=-1)
        for j, i in enumerate(pos):
            for pr, tok in zip(top_p[j].tolist(), top_t[j].tolist(), strict=True):
                if pr > 0:
                    proposals.append((pr, i, int(tok)))
    proposals.sort(key=lambda c: -c[0])
    seen: set[str] = {text}
    result: list[str] = []
    for _, i, tok in proposals:
        if offsets is not None:
            s, e = offsets[i]
            piece = tokenizer.decode([tok]).strip()
            piece = piece[2:] if piece.startswith("##") else piece
            cand = text[:s] + piece + text[e:]
        else:
            new = list(ids)
            new[i] = tok
            cand = tokenizer.decode(new, skip_special_tokens=True)
        if cand.strip() and cand not in seen:
            seen.add(cand)
            result.append(cand)
            if len(result) == n:
                break
    return result
