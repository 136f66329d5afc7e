"""Tiny language models built locally: a byte-level BPE tokenizer trained with ``tokenizers``
and a GPT-2-style model from a config (random weights). Nothing is downloaded.

Used by the demo, the tests and the benchmark; also handy to try the attacks offline.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from miaudit.llm.target import _require_transformers

__all__ = ["END_OF_TEXT", "tiny_gpt2", "train_bpe_tokenizer"]

#: The one special token (GPT-2's): separator, end of text and padding.
END_OF_TEXT = "<|endoftext|>"


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 1024) -> Any:
    """A byte-level BPE tokenizer (GPT-2 style) trained on ``texts``, as a
    ``transformers.PreTrainedTokenizerFast`` (``save_pretrained`` works).

    Training is deterministic for the same texts and ``vocab_size``.
    """
    transformers = _require_transformers()
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer)
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=END_OF_TEXT,
        eos_token=END_OF_TEXT,
        pad_token=END_OF_TEXT,
    )


def tiny_gpt2(
    tokenizer: Any,
    *,
    n_positions: int = 128,
    n_embd: int = 64,
    n_layer: int = 2,
    n_head: int = 4,
    seed: int = 0,
    dropout: float = 0.0,
) -> Any:
    """A ``GPT2LMHeadModel`` from a config sized for ``tokenizer`` (random weights from
    ``seed``; the global torch RNG state is left as it was)."""
    transformers = _require_transformers()
    eos = tokenizer.convert_tokens_to_ids(END_OF_TEXT)
    cfg = transformers.GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
        resid_pdrop=dropout,
        embd_pdrop=dropout,
        attn_pdrop=dropout,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.GPT2LMHeadModel(cfg)
    return model.eval()
