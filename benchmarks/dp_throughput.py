"""Throughput of DP-SGD in the vectorised MLP ensemble against non-private training and Opacus.

The benchmark MLP of ``train_throughput.py`` (600 → 256 → 100, tanh, on ``purchase-like``:
20,000 records, each model on its half from a balanced keep matrix, batch 128, SGD lr 0.05
momentum 0.9), trained three ways with the same hyper-parameters and subsets:

1. ``torch-mlp`` without DP (the vectorised ensemble);
2. ``torch-mlp`` with ``dp={"noise_multiplier": σ, "max_grad_norm": C}``: Poisson sampling,
   ghost clipping inside the ensemble's hand-written backward pass, Gaussian noise per model;
3. the ``opacus`` recipe: ``nn.Sequential`` wrapped by Opacus's ``PrivacyEngine`` (Poisson
   sampling, hook-based per-sample gradients), one model at a time.

Printed: models/minute of each, the DP ensemble's time per model over the non-private
ensemble's (target ≤ 1.5×), the DP ensemble's models/minute over Opacus's (target ≥ 5×), mean
test accuracies and the accountant's epsilon. The ratios are given in wall time and in CPU
seconds of this process (steadier on a machine shared with other jobs). Training time includes
the accountant's epsilon of every model (``--accountant``; ``rdp`` by default here, prv takes
seconds per distinct subset size) but not the one-time import of Opacus's accountant, which is
paid before the timings and printed.

Usage::

    python benchmarks/dp_throughput.py                 # 16 models, 3 epochs, 2 Opacus models
    python benchmarks/dp_throughput.py --epochs 20 --opacus-epochs 1   # the issue's 20 epochs
    python benchmarks/dp_throughput.py --quick         # 4 models, 1 epoch, 1 Opacus model

On a machine shared with other jobs the numbers are noisy: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np
import torch
from torch import nn

from miaudit.data import keep_matrix, load_dataset
from miaudit.train import make_recipe
from miaudit.train.ensemble import dp_schedule, query_ensemble


def mlp_factory(hidden: int):
    """``factory(input_shape, n_classes)`` of the 600 → hidden → C tanh MLP (opacus recipe)."""

    def make(input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
        return nn.Sequential(
            nn.Flatten(), nn.Linear(math.prod(input_shape), hidden), nn.Tanh(),
            nn.Linear(hidden, n_classes),
        )

    return make


def test_accuracy(pred: np.ndarray, y: np.ndarray, keep: np.ndarray) -> float:
    """Mean accuracy of ``pred`` ``(K, n)`` on each model's OUT records."""
    return float(np.mean([(pred[k][~keep[k]] == y[~keep[k]]).mean() for k in range(len(keep))]))


def time_ensemble(recipe, X, y, classes, keep) -> tuple[float, float, float, list]:
    """(wall seconds, CPU seconds, mean test accuracy, trained groups) of
    ``recipe.train_models``."""
    ids = list(range(len(keep)))
    start, start_cpu = time.perf_counter(), time.process_time()
    groups = recipe.train_models(X, y, classes, keep, ids)
    seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    pred = np.concatenate(
        [query_ensemble(g.net, X, ["identity"])[:, :, 0].argmax(-1) for g in groups]
    )
    return seconds, cpu, test_accuracy(pred, y.numpy(), keep), groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 models, 1 epoch, 1 Opacus model")
    parser.add_argument("--models", type=int, default=16)
    parser.add_argument("--opacus-models", type=int, default=2)
    parser.add_argument(
        "--opacus-epochs",
        type=int,
        default=None,
        help="epochs Opacus trains for the timing (default: --epochs); its models/min are "
        "scaled to --epochs (Opacus's cost per epoch is constant)",
    )
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--noise-multiplier", type=float, default=1.0)
    parser.add_argument("--max-grad-norm", type=float, default=1.0)
    parser.add_argument("--accountant", default="rdp")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.quick:
        args.models, args.epochs, args.opacus_models = 4, 1, 1
    torch.set_num_threads(args.threads)

    data = load_dataset("purchase-like", n_records=args.records, seed=args.seed)
    classes = int(data.n_classes)
    X = torch.from_numpy(np.ascontiguousarray(data.X, dtype=np.float32))
    y = torch.from_numpy(np.asarray(data.y, dtype=np.int64))
    keep = keep_matrix(args.models, len(data), seed=args.seed)
    common = dict(
        hidden_sizes=(args.hidden,), activation="tanh", optimizer="sgd-momentum", lr=args.lr,
        momentum=args.momentum, epochs=args.epochs, batch_size=args.batch, seed=args.seed,
    )
    dp = {
        "noise_multiplier": args.noise_multiplier,
        "max_grad_norm": args.max_grad_norm,
        "accountant": args.accountant,
    }
    print(
        f"purchase-like: {len(data)} records, {X.shape[1]} features, {classes} classes; "
        f"MLP {X.shape[1]} → {args.hidden} → {classes} tanh, {args.epochs} epochs, batch "
        f"{args.batch}, SGD lr {args.lr} momentum {args.momentum}; DP σ "
        f"{args.noise_multiplier}, C {args.max_grad_norm}, {args.accountant}; torch threads "
        f"{torch.get_num_threads()}; records per model {keep.sum(1).min()}..{keep.sum(1).max()}"
    )

    plain = make_recipe("torch-mlp", **common)
    private = make_recipe("torch-mlp", dp=dp, **common)
    # One-time cost of the process, not of a model: importing Opacus's accountant (~2 s of
    # CPU on the first epsilon). Paid here, outside the timings, and printed.
    start_cpu = time.process_time()
    dp_schedule(private.config, int(keep.sum(1).min()))
    print(f"first accountant call (imports Opacus): {time.process_time() - start_cpu:.2f} s CPU, "
          "not counted below")
    plain_s, plain_cpu, plain_acc, _ = time_ensemble(plain, X, y, classes, keep)
    dp_s, dp_cpu, dp_acc, groups = time_ensemble(private, X, y, classes, keep)
    eps = [info["epsilon"] for g in groups for info in g.privacy]

    n_op = min(args.opacus_models, args.models)
    op_epochs = args.opacus_epochs or args.epochs
    op_params = {k: v for k, v in common.items() if k not in ("hidden_sizes", "activation")}
    op_params["epochs"] = op_epochs
    opacus = make_recipe("opacus", model=mlp_factory(args.hidden), dp=dp, **op_params)
    start, start_cpu = time.perf_counter(), time.process_time()
    results = opacus.train_chunk(
        data.X, data.y, classes, keep[:n_op], list(range(n_op)), ["identity"]
    )
    op_s, op_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    op_acc = float(np.mean([r.test_acc for r in results]))
    op_eps = [r.privacy["epsilon"] for r in results]

    def rate(n: int, seconds: float) -> float:
        return n / seconds * 60

    r_plain, r_dp = rate(args.models, plain_s), rate(args.models, dp_s)
    r_op = rate(n_op, op_s) * op_epochs / args.epochs
    print(f"ensemble, no DP : {r_plain:8.2f} models/min ({plain_s:.1f} s for {args.models}; "
          f"mean test acc {plain_acc:.3f})")
    print(f"ensemble, DP-SGD: {r_dp:8.2f} models/min ({dp_s:.1f} s for {args.models}; "
          f"mean test acc {dp_acc:.3f}; epsilon {min(eps):.3f}..{max(eps):.3f})")
    print(f"opacus, 1 by 1  : {r_op:8.2f} models/min of {args.epochs} epochs ({op_s:.1f} s for "
          f"{n_op} of {op_epochs} epochs; mean test acc {op_acc:.3f}; epsilon "
          f"{min(op_eps):.3f}..{max(op_eps):.3f} after {op_epochs} epochs)")
    op_cpu_per_model = op_cpu / n_op * args.epochs / op_epochs
    print(f"DP ensemble time per model / non-private ensemble: {r_plain / r_dp:.2f}x wall, "
          f"{dp_cpu / plain_cpu:.2f}x CPU seconds (target <= 1.5x)")
    print(f"DP ensemble models/min / Opacus: {r_dp / r_op:.2f}x wall, "
          f"{op_cpu_per_model / (dp_cpu / args.models):.2f}x CPU seconds per model "
          "(target >= 5x)")


if __name__ == "__main__":
    main()
