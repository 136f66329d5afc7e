"""Tiny language models built locally: a byte-level BPE tokenizer and a BERT-style one, both
trained with ``tokenizers``; GPT-2-style and BERT-style models from a config (random weights);
the causal-LM and masked-LM trainers of the demo. Nothing is downloaded.

Used by the demo, the tests and the benchmark; also handy to try the attacks offline.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch

from miaudit._progress import progress
from miaudit.llm.target import _require_transformers

__all__ = [
    "BERT_SPECIALS",
    "END_OF_TEXT",
    "tiny_bert",
    "tiny_gpt2",
    "train_bpe_tokenizer",
    "train_causal_lm",
    "train_masked_lm",
    "train_mlm_tokenizer",
]

#: The one special token (GPT-2's): separator, end of text and padding.
END_OF_TEXT = "<|endoftext|>"
#: BERT's masking recipe (Devlin et al. 2019): the share of tokens chosen as targets, and of
#: those the shares replaced by the mask token and by a random token (the rest stay as they are).
MLM_TARGET_RATE = 0.15
MLM_MASK_SHARE = 0.8
MLM_RANDOM_SHARE = 0.1
#: Share of the steps spent on linear learning-rate warm-up before the cosine decay.
WARMUP_SHARE = 0.05


def _seeded_model(model_class: Any, config: Any, seed: int) -> Any:
    """``model_class(config)`` in eval mode, its random weights drawn from ``seed`` under a
    forked torch RNG (the global state is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config)
    return model.eval()


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
    return _seeded_model(transformers.GPT2LMHeadModel, cfg, seed)


#: The special tokens of a BERT-style tokenizer.
BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def train_mlm_tokenizer(texts: Iterable[str], vocab_size: int = 1024) -> Any:
    """A BERT-style tokenizer for a masked LM (lower-cased, ``[CLS] text [SEP]``, the special
    tokens of :data:`BERT_SPECIALS`), trained on ``texts`` with ``tokenizers``, as a
    ``transformers.PreTrainedTokenizerFast``: what :func:`tiny_bert` needs.

    Sub-words are byte-pair merges learned within words (BERT's normaliser and
    pre-tokeniser), without WordPiece's ``##`` continuation marks: ``tokenizers``' BPE trainer
    gives the same vocabulary in every process, while its WordPiece trainer (and BPE with a
    continuation prefix or an end-of-word suffix) breaks ties between merges of equal count in
    an order that changes from one process to the next (measured: three runs, three
    vocabularies), which would make a demo's numbers change from run to run.
    """
    transformers = _require_transformers()
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    pad, unk, cls, sep, mask = BERT_SPECIALS
    tok = Tokenizer(models.BPE(unk_token=unk))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(BERT_SPECIALS), show_progress=False
    )
    tok.train_from_iterator(list(texts), trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}",
        special_tokens=[(cls, tok.token_to_id(cls)), (sep, tok.token_to_id(sep))],
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token=unk,
        pad_token=pad,
        cls_token=cls,
        sep_token=sep,
        mask_token=mask,
    )


def tiny_bert(
    tokenizer: Any,
    *,
    max_positions: int = 128,
    hidden_size: int = 32,
    n_layer: int = 2,
    n_head: int = 2,
    intermediate_size: int = 64,
    seed: int = 0,
) -> Any:
    """A ``BertForMaskedLM`` from a config sized for ``tokenizer`` (no dropout; random weights
    from ``seed``; the global torch RNG state is left as it was)."""
    transformers = _require_transformers()
    cfg = transformers.BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=n_layer,
        num_attention_heads=n_head,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_positions,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=tokenizer.pad_token_id,
    )
    return _seeded_model(transformers.BertForMaskedLM, cfg, seed)


def _pack(ids: list[list[int]], block: int, eos: int, rng: np.random.Generator) -> torch.Tensor:
    """Texts in random order, joined by ``eos``, cut into ``(n_blocks, block)``."""
    stream: list[int] = []
    for i in rng.permutation(len(ids)):
        stream.extend(ids[i])
        stream.append(eos)
    n = max(1, len(stream) // block)
    stream = (stream + [eos] * block)[: n * block]
    return torch.tensor(stream, dtype=torch.long).view(n, block)


def _warmup_cosine(model: Any, learning_rate: float, steps: int) -> tuple[Any, Any]:
    """AdamW (no weight decay) with linear warm-up over :data:`WARMUP_SHARE` of ``steps`` and
    cosine decay to 0 afterwards."""
    opt = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.0)
    warm = max(1, int(steps * WARMUP_SHARE))

    def lr_at(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + np.cos(np.pi * (step - warm) / max(1, steps - warm)))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lr_at)


def train_causal_lm(
    model: Any,
    tokenizer: Any,
    texts: list[str],
    *,
    epochs: float,
    batch_size: int,
    block_size: int,
    learning_rate: float,
    seed: int = 0,
    quiet: bool | None = None,
) -> list[float]:
    """Train ``model`` for ``epochs`` passes over ``texts`` packed into blocks of
    ``block_size`` tokens (a new random packing each epoch), AdamW with linear warm-up (5 %)
    and cosine decay. Returns the training loss of each step."""
    ids = tokenizer(texts, add_special_tokens=True)["input_ids"]
    eos = tokenizer.convert_tokens_to_ids(END_OF_TEXT)
    rng = np.random.default_rng(seed)
    n_tokens = sum(len(x) + 1 for x in ids)
    steps = max(1, round(epochs * n_tokens / (batch_size * block_size)))
    gen = torch.Generator().manual_seed(seed)
    batches = _batches(lambda: _pack(ids, block_size, eos, rng), batch_size, gen)

    def loss_of(x: torch.Tensor) -> torch.Tensor:
        return model(input_ids=x, attention_mask=torch.ones_like(x), labels=x).loss

    return _fit(
        model, learning_rate, steps, batches, loss_of, "training the demo language model", quiet
    )


def _batches(
    repack: Callable[[], torch.Tensor], batch_size: int, gen: torch.Generator | None = None
) -> Iterator[torch.Tensor]:
    """Batches of ``batch_size`` rows of ``repack()``, endlessly: a new packing whenever one is
    used up, its rows in an order drawn from ``gen`` (in order without one)."""
    while True:
        blocks = repack()
        order = (
            torch.randperm(len(blocks), generator=gen)
            if gen is not None
            else torch.arange(len(blocks))
        )
        for pos in range(0, len(blocks), batch_size):
            yield blocks[order[pos : pos + batch_size]]


def _fit(
    model: Any,
    learning_rate: float,
    steps: int,
    batches: Iterator[torch.Tensor],
    loss_of: Callable[[torch.Tensor], torch.Tensor],
    description: str,
    quiet: bool | None,
) -> list[float]:
    """``steps`` optimiser steps of :func:`_warmup_cosine`'s AdamW on ``loss_of(batch)``, the
    gradient clipped to norm 1; the model is left in eval mode. Returns each step's loss."""
    opt, sched = _warmup_cosine(model, learning_rate, steps)
    model.train()
    losses: list[float] = []
    for _ in progress(steps, description, quiet=quiet):
        loss = loss_of(next(batches))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses


def _mask_for_mlm(
    x: torch.Tensor, special: torch.Tensor, mask_id: int, vocab: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's corruption of a batch ``x`` (ids, shape ``(b, L)``): each non-special token is a
    target with probability :data:`MLM_TARGET_RATE`; a target becomes the mask token with
    probability :data:`MLM_MASK_SHARE`, a uniformly random token with
    :data:`MLM_RANDOM_SHARE`, else stays. Returns ``(inputs, labels)``, labels ``-100`` off
    target."""
    u = torch.rand(x.shape, generator=gen)
    target = (u < MLM_TARGET_RATE) & ~special
    v = torch.rand(x.shape, generator=gen)
    inputs = x.clone()
    inputs[target & (v < MLM_MASK_SHARE)] = mask_id
    swap = target & (v >= MLM_MASK_SHARE) & (v < MLM_MASK_SHARE + MLM_RANDOM_SHARE)
    inputs[swap] = torch.randint(vocab, (int(swap.sum()),), generator=gen)
    labels = torch.where(target, x, torch.full_like(x, -100))
    return inputs, labels


def _mlm_windows(body: torch.Tensor, cls: int, sep: int) -> torch.Tensor:
    """Rows of ``body`` (``(n, L)`` token ids) wrapped as ``[CLS] row [SEP]``, ``(n, L + 2)``."""
    n = len(body)
    ends = [torch.full((n, 1), t, dtype=torch.long) for t in (cls, sep)]
    return torch.cat([ends[0], body, ends[1]], dim=1)


def train_masked_lm(
    model: Any,
    tokenizer: Any,
    texts: list[str],
    *,
    epochs: float,
    batch_size: int,
    block_size: int,
    learning_rate: float,
    seed: int = 0,
    quiet: bool | None = None,
) -> list[float]:
    """Train a masked LM (e.g. :func:`tiny_bert`) with BERT's objective (Devlin et al. 2019:
    15% of the tokens are targets, 80/10/10 mask/random/kept) for ``epochs`` passes over
    ``texts``. The texts (without special tokens) are packed, in a new random order each
    epoch, into windows of ``block_size − 2`` tokens wrapped in ``[CLS] … [SEP]``; targets are
    drawn afresh each step. AdamW with linear warm-up and cosine decay, as
    :func:`train_causal_lm`. Returns the training loss of each step."""
    needed = (tokenizer.mask_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id)
    if any(t is None for t in needed):
        raise ValueError("train_masked_lm: the tokenizer needs mask, [CLS] and [SEP] tokens")
    if block_size < 3:
        raise ValueError(f"block_size: expected at least 3 ([CLS] token [SEP]), got {block_size}")
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    rng = np.random.default_rng(seed)
    inner = block_size - 2
    n_tokens = sum(len(x) + 1 for x in ids)
    steps = max(1, round(epochs * n_tokens / (batch_size * inner)))
    gen = torch.Generator().manual_seed(seed)
    batches = _batches(lambda: _mlm_windows(_pack(ids, inner, sep, rng), cls, sep), batch_size)

    def loss_of(x: torch.Tensor) -> torch.Tensor:
        special = (x == cls) | (x == sep)
        inputs, labels = _mask_for_mlm(x, special, tokenizer.mask_token_id, len(tokenizer), gen)
        return model(input_ids=inputs, attention_mask=torch.ones_like(x), labels=labels).loss

    return _fit(
        model, learning_rate, steps, batches, loss_of, "training the masked language model", quiet
    )
