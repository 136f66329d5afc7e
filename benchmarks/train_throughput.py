"""Throughput of the vectorised MLP ensemble against one-model-at-a-time PyTorch training.

The issue's setting: 64 MLPs 600 → 256 → 100 with tanh on ``purchase-like`` (20,000 records),
each model on its half of the records from a balanced keep matrix, 20 epochs, batch 128,
SGD with momentum — trained (a) as one vectorised ensemble (``torch-mlp`` recipe) and (b) one
after another the way a user writes it (``nn.Sequential``, ``torch.optim.SGD``, a loop over
shuffled tensor minibatches), same hyper-parameters, same subsets.

Printed: models/minute of both, their ratio, the achieved GFLOP/s of the vectorised ensemble and
the machine's peak float32 matmul GFLOP/s measured in the same run (best of a few
``torch.matmul`` of two square matrices, before and after the training runs). On a machine
shared with other jobs, wall-clock rates fall whenever the others hold the cores; each line
therefore also gives GFLOP per CPU-second this process used, against the same figure for the
peak matmul — the efficiency of the code while it runs.

FLOPs counted: the matrix products a step performs, per model and step with batch ``B``, layer
sizes ``d → h → C``: forward ``2B(dh + hC)``, weight gradients ``2B(dh + hC)``, the gradient of
the hidden layer ``2B·hC`` (the input needs no gradient) — ``2B(2dh + 3hC)`` in all (the "3×
forward" rule of thumb would also count the input gradient ``2B·dh`` that neither
implementation computes). Only each model's own steps are counted: the lock-step steps of a
model that has already finished its epochs are not.

The vectorised ensemble is timed twice: as one chunk of all models using every core through
torch's intra-op threads, and (``--split threads``, the default) as one chunk per core trained
side by side by the ``threads`` executor with one torch thread each — on a machine shared with
other jobs the second is far less sensitive to being descheduled.

Usage::

    python benchmarks/train_throughput.py            # the issue's full setting
    python benchmarks/train_throughput.py --quick    # 8 models, 3 epochs, 4 baseline models

On a machine shared with other jobs the numbers are noisy: run it when the machine is quiet,
or compare ratios within one run.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import time

import numpy as np
import torch
from _user_loop import fit_like_a_user
from torch import nn

from miaudit.data import keep_matrix
from miaudit.train import make_recipe
from miaudit.train.ensemble import (
    query_ensemble,
)

#: Side of the square matrices of the peak measurement, and how many products are timed.
PEAK_SIZE = 4096
PEAK_REPEATS = 5


def cpu_seconds() -> float:
    """CPU time of this process (all threads) and of its finished child processes."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def peak_gflops(size: int = PEAK_SIZE, repeats: int = PEAK_REPEATS) -> tuple[float, float]:
    """Best float32 ``torch.matmul`` rate of two ``size × size`` matrices: (GFLOP per wall
    second, GFLOP per CPU second)."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=g)
    b = torch.randn(size, size, generator=g)
    out = torch.empty(size, size)
    torch.matmul(a, b, out=out)
    best_wall = best_cpu = math.inf
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), cpu_seconds()
        torch.matmul(a, b, out=out)
        best_wall = min(best_wall, time.perf_counter() - start)
        best_cpu = min(best_cpu, cpu_seconds() - start_cpu)
    flop = 2.0 * size**3
    return flop / best_wall / 1e9, flop / best_cpu / 1e9


def step_flops(batch: int, sizes: list[int]) -> int:
    """Matmul FLOPs of one training step of one MLP (module docstring)."""
    forward = sum(2 * batch * a * b for a, b in itertools.pairwise(sizes))
    input_grads = sum(2 * batch * a * b for a, b in itertools.pairwise(sizes[1:]))
    return 2 * forward + input_grads


def _train_part(part: tuple) -> float:
    """Train one part of the ensemble (in a worker); returns its training seconds."""
    X, y, keep, ids, config, sizes = part
    recipe = make_recipe("torch-mlp", config)
    start = time.perf_counter()
    recipe.train_models(X, y, sizes[-1], keep, ids)
    return time.perf_counter() - start


def train_split(
    X: torch.Tensor, y: torch.Tensor, keep: np.ndarray, config, args, sizes: list[int]
) -> tuple[float, float]:
    """The ensemble split into one vectorised chunk per core, run side by side by the
    ``threads`` (or ``processes``) executor with one torch thread each; returns the wall and
    CPU seconds (with process start for ``processes``)."""
    from miaudit.audit.executors import make_executor

    workers = args.threads
    ids = np.array_split(np.arange(len(keep)), workers)
    parts = [(X, y, keep[i], [int(j) for j in i], config, sizes) for i in ids]
    executor = make_executor(args.split, n_workers=workers, threads_per_worker=1)
    start, start_cpu = time.perf_counter(), cpu_seconds()
    list(executor.map(_train_part, parts))
    return time.perf_counter() - start, cpu_seconds() - start_cpu


def train_one_by_one(
    X: torch.Tensor,
    y: torch.Tensor,
    keep: np.ndarray,
    args: argparse.Namespace,
) -> tuple[float, list[float]]:
    """The user's loop, for every row of ``keep``; returns (seconds, test accuracies)."""
    accs = []
    start = time.perf_counter()
    for i, row in enumerate(keep):
        torch.manual_seed(i)
        model = nn.Sequential(
            nn.Linear(X.shape[1], args.hidden), nn.Tanh(), nn.Linear(args.hidden, args.classes)
        )
        fit_like_a_user(
            model, X, y, row, epochs=args.epochs, batch=args.batch, lr=args.lr,
            momentum=args.momentum,
        )
        with torch.no_grad():
            pred = model(X[torch.from_numpy(~row)]).argmax(1)
        accs.append(float((pred == y[torch.from_numpy(~row)]).float().mean()))
    return time.perf_counter() - start, accs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 models, 3 epochs, 4 baseline")
    parser.add_argument("--models", type=int, default=64)
    parser.add_argument(
        "--baseline-models",
        type=int,
        default=None,
        help="models trained one by one (default: all); rates are per model",
    )
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count(),
        help="torch intra-op threads (default: all cores)",
    )
    parser.add_argument(
        "--split",
        choices=["threads", "processes", "none"],
        default="threads",
        help="also train the ensemble as one chunk per core, side by side, with this executor "
        "(one torch thread per chunk)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.quick:
        args.models, args.epochs = 8, 3
        args.baseline_models = args.baseline_models or 4
    n_base = min(args.baseline_models or args.models, args.models)
    torch.set_num_threads(args.threads)

    from miaudit.data import load_dataset

    data = load_dataset("purchase-like", n_records=args.records, seed=args.seed)
    args.classes = int(data.n_classes)
    X = torch.from_numpy(np.ascontiguousarray(data.X, dtype=np.float32))
    y = torch.from_numpy(np.asarray(data.y, dtype=np.int64))
    keep = keep_matrix(args.models, len(data), seed=args.seed)
    sizes = [X.shape[1], args.hidden, args.classes]
    print(
        f"purchase-like: {len(data)} records, {X.shape[1]} features, {args.classes} classes; "
        f"{args.models} MLPs {' → '.join(map(str, sizes))} tanh, {args.epochs} epochs, batch "
        f"{args.batch}, SGD lr {args.lr} momentum {args.momentum}; torch threads "
        f"{torch.get_num_threads()}"
    )
    print(f"records per model: {keep.sum(1).min()}..{keep.sum(1).max()}")

    peak_before = peak_gflops()

    recipe = make_recipe(
        "torch-mlp",
        hidden_sizes=(args.hidden,),
        activation="tanh",
        optimizer="sgd-momentum",
        lr=args.lr,
        momentum=args.momentum,
        epochs=args.epochs,
        batch_size=args.batch,
        seed=args.seed,
    )
    ids = list(range(args.models))
    start, start_cpu = time.perf_counter(), cpu_seconds()
    groups = recipe.train_models(X, y, args.classes, keep, ids)
    vec_seconds = (time.perf_counter() - start, cpu_seconds() - start_cpu)
    pred = np.concatenate(
        [query_ensemble(g.net, X, ["identity"])[:, :, 0].argmax(-1) for g in groups]
    )
    vec_acc = [float((pred[k][~keep[k]] == data.y[~keep[k]]).mean()) for k in ids]
    print(f"models per vectorised group: {len(groups[0].model_ids)}")

    split_seconds = None
    if args.split != "none":
        split_seconds = train_split(X, y, keep, recipe.config, args, sizes)
        torch.set_num_threads(args.threads)
    base_seconds, base_acc = train_one_by_one(X, y, keep[:n_base], args)
    peak_after = peak_gflops()
    peak, peak_cpu = (max(a, b) for a, b in zip(peak_before, peak_after, strict=True))

    steps = [args.epochs * math.ceil(int(n) / args.batch) for n in keep.sum(1)]
    flops = sum(steps) * step_flops(args.batch, sizes)
    base_rate = n_base / base_seconds * 60

    def report(label: str, seconds: tuple[float, float]) -> None:
        wall, cpu = seconds
        rate = args.models / wall * 60
        achieved = flops / wall / 1e9
        per_cpu = flops / cpu / 1e9
        print(
            f"{label}: {rate:8.2f} models/min ({wall:.1f} s for {args.models}), "
            f"{rate / base_rate:5.2f}x one at a time (target >= 2.5x), {achieved:6.1f} GFLOP/s "
            f"= {100 * achieved / peak:.0f}% of peak (target >= 65%); per CPU-second used "
            f"{per_cpu:.1f} GFLOP = {100 * per_cpu / peak_cpu:.0f}% of the peak's"
        )

    print(
        f"peak float32 matmul ({PEAK_SIZE}², {args.threads} threads): {peak:.1f} GFLOP/s "
        f"({peak_cpu:.1f} GFLOP per CPU-second)"
    )
    print(
        f"one model at a time ({args.threads} torch threads): {base_rate:8.2f} models/min "
        f"({base_seconds:.1f} s for {n_base}; mean test acc {np.mean(base_acc):.3f})"
    )
    print(f"mean test acc of the vectorised models: {np.mean(vec_acc):.3f}")
    report(f"vectorised, one chunk of {args.models}, {args.threads} torch threads", vec_seconds)
    if split_seconds is not None:
        report(
            f"vectorised, {args.threads} chunks side by side ({args.split} executor)", split_seconds
        )


if __name__ == "__main__":
    main()
