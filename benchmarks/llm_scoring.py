"""Cost of the one-pass LLM attacks: tokens/s of a bare forward pass vs all four attacks.

For each model (random weights from a config, nothing downloaded):

* ``bare``: the forward passes alone (same windows, same length-sorted padded batches, under
  ``torch.inference_mode``), logits computed and dropped;
* ``attacks``: ``miaudit.llm.score_texts`` with ``loss``, ``zlib``, ``min_k`` and
  ``min_k_plus_plus`` together (tokenization, padding, the forward passes, the reductions over
  the vocabulary incl. the moments of Min-K%++, the float64 attack math).

The timed runs alternate (bare, attacks, bare, attacks, ...) in one process so that a change in
machine load hits both alike; the fastest run of each counts. Peak memory is measured in two
more processes that run one phase each, so each peak resident memory (``ru_maxrss``) is its
own; on CUDA the peak allocated GPU memory is reported too. The target is
``attacks / bare ≤ 1.2``.

Models: ``demo`` (the demo's GPT-2: 2 layers, d=128, V=1024, context 128) and ``gpt2-small``
(12 layers, d=768, V=50257, context 1024: 124M parameters).

    python benchmarks/llm_scoring.py                         # both models, CPU, small sizes
    python benchmarks/llm_scoring.py --model gpt2-small --device cuda --n-texts 256 \\
        --length 1024 --batch-size 16
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import time
from typing import Any

import numpy as np
import torch

#: Model configs (GPT2Config keyword arguments).
MODELS: dict[str, dict[str, int]] = {
    "demo": {"n_embd": 128, "n_layer": 2, "n_head": 4, "vocab_size": 1024, "n_positions": 128},
    "gpt2-small": {
        "n_embd": 768,
        "n_layer": 12,
        "n_head": 12,
        "vocab_size": 50257,
        "n_positions": 1024,
    },
}
ATTACKS = ("loss", "zlib", "min_k", "min_k_plus_plus")


class IdsTokenizer:
    """A stand-in tokenizer: the text ``"5 17 3"`` is the token ids ``[5, 17, 3]`` (so that a
    50k vocabulary needs no trained tokenizer)."""

    pad_token_id = 0
    eos_token_id = 0
    model_max_length = 10**30

    def __call__(self, texts: list[str], add_special_tokens: bool = True) -> dict[str, Any]:
        return {"input_ids": [[int(t) for t in x.split()] for x in texts]}


def _model(name: str, device: str, dtype: str) -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(**MODELS[name])).eval()
    return model.to(device=device, dtype=getattr(torch, dtype))


def _texts(name: str, n: int, length: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    v = MODELS[name]["vocab_size"]
    lengths = rng.integers(length // 2, length + 1, size=n)
    return [" ".join(map(str, rng.integers(1, v, size=m))) for m in lengths]


def _phase(kind: str, name: str, args: dict[str, Any], queue: Any) -> None:
    from miaudit.llm import LanguageModelTarget, score_texts

    torch.set_num_threads(args["threads"]) if args["threads"] else None
    device = args["device"]
    model = _model(name, device, args["dtype"])
    target = LanguageModelTarget(model, IdsTokenizer(), batch_size=args["batch_size"])
    texts = _texts(name, args["n_texts"], min(args["length"], target.max_length), 0)
    encoded = target.encode(texts)
    n_pred = sum(len(x) - 1 for x in encoded)
    windows = sorted(
        (w for i, ids in enumerate(encoded) for w in target._windows(i, ids, 1)),
        key=lambda w: -len(w.ids),
    )
    bs = args["batch_size"]
    batches = [windows[i : i + bs] for i in range(0, len(windows), bs)]

    def bare() -> None:
        with torch.inference_mode():
            for b in batches:
                t = max(len(w.ids) for w in b)
                ids = torch.zeros((len(b), t), dtype=torch.long)
                mask = torch.zeros((len(b), t), dtype=torch.long)
                for r, w in enumerate(b):
                    ids[r, : len(w.ids)] = torch.tensor(w.ids)
                    mask[r, : len(w.ids)] = 1
                out = model(
                    input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False
                )
                out.logits.sum().item()  # synchronise (CUDA) and keep the logits alive

    def attacks() -> None:
        score_texts(target, None, texts, ATTACKS)

    # Warm-up (one batch of each), then the timed runs. In "time" mode the two are
    # interleaved, so that a change in machine load hits both alike; the minimum is kept.
    saved = batches
    batches = batches[:1]
    bare()
    batches = saved
    score_texts(target, None, texts[: max(1, bs)], ATTACKS)
    kinds = ["bare", "attacks"] if kind == "time" else [kind]
    runs = {"bare": bare, "attacks": attacks}
    times: dict[str, list[float]] = {k: [] for k in kinds}
    peak_gpu: dict[str, float | None] = {}
    for _ in range(args["repeats"] if kind == "time" else 1):
        for k in kinds:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            runs[k]()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
                peak_gpu[k] = torch.cuda.max_memory_allocated() / 2**20
            times[k].append(time.perf_counter() - t0)
    for k in kinds:
        best = min(times[k])
        queue.put(
            {
                "model": name,
                "phase": k,
                "mode": kind,
                "seconds": best,
                "predicted_tokens": n_pred,
                "tokens_per_second": n_pred / best,
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "peak_gpu_mib": peak_gpu.get(k),
            }
        )


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=[*MODELS, "both"], default="both")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--n-texts", type=int, default=None, help="default: 64 demo, 8 gpt2-small")
    p.add_argument("--length", type=int, default=None, help="max tokens (default 128 / 256)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None, help="also write the rows to this file")
    a = p.parse_args(argv)
    names = list(MODELS) if a.model == "both" else [a.model]
    ctx = mp.get_context("spawn")
    rows = []
    for name in names:
        args = {
            "device": a.device,
            "dtype": a.dtype,
            "n_texts": a.n_texts or (64 if name == "demo" else 8),
            "length": a.length or (128 if name == "demo" else 256),
            "batch_size": a.batch_size,
            "repeats": a.repeats,
            "threads": a.threads,
        }
        res: dict[str, dict[str, Any]] = {}
        for kind in ("time", "bare", "attacks"):  # timing (interleaved), then peak memory
            q = ctx.Queue()
            proc = ctx.Process(target=_phase, args=(kind, name, args, q))
            proc.start()
            for _ in range(2 if kind == "time" else 1):
                row = q.get()
                key = row["phase"] if kind == "time" else f"{row['phase']}_memory"
                res[key] = row
                rows.append(row)
            proc.join()
        for k in ("bare", "attacks"):
            res[k]["peak_rss_mib"] = res[f"{k}_memory"]["peak_rss_mib"]
            res[k]["peak_gpu_mib"] = res[f"{k}_memory"]["peak_gpu_mib"]
        ratio = res["attacks"]["seconds"] / res["bare"]["seconds"]
        print(
            f"{name:>10} ({a.device}, {a.dtype}, {args['n_texts']} texts <= {args['length']} "
            f"tokens, batch {a.batch_size}): bare {res['bare']['tokens_per_second']:,.0f} tok/s, "
            f"4 attacks {res['attacks']['tokens_per_second']:,.0f} tok/s, ratio {ratio:.3f}; "
            f"peak RSS {res['bare']['peak_rss_mib']:.0f} / {res['attacks']['peak_rss_mib']:.0f} "
            "MiB"
            + (
                f", peak GPU {res['bare']['peak_gpu_mib']:.0f} / "
                f"{res['attacks']['peak_gpu_mib']:.0f} MiB"
                if res["bare"]["peak_gpu_mib"] is not None
                else ""
            ),
            flush=True,
        )
        rows.append({"model": name, "ratio": ratio})
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=2)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
