"""Throughput of the vectorised CNN ensemble against one-model-at-a-time PyTorch training.

``K`` small CNNs (``torch-cnn``: 3×3 conv 32 → ReLU → max-pool → 3×3 conv 64 → ReLU → max-pool →
128 → C) on random ``32×32×3`` images (CIFAR-10's shape; only speed is measured), each model on
its half of the records from a balanced keep matrix, SGD with momentum, trained (a) by the
``torch-cnn`` recipe (:meth:`TorchRecipe.train_models`: groups sized by each model's FLOP per
step, side by side on the cores) and (b) one after another the way a user writes it
(``nn.Sequential``, ``torch.optim.SGD``, a loop over shuffled minibatches), same
hyper-parameters and subsets.

Printed: the models per vectorised group, models/minute of both and their ratio.

Usage::

    python benchmarks/cnn_throughput.py                # 8 models, 4,000 records, 1 epoch
    python benchmarks/cnn_throughput.py --side 8 --in-channels 1   # digits-sized images
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from _user_loop import fit_like_a_user
from torch import nn

from miaudit.data import keep_matrix
from miaudit.train import make_recipe

#: Channels of the two convolution blocks and width of the hidden layer.
CHANNELS = (32, 64)
HIDDEN = 128


def user_cnn(in_channels: int, side: int, n_classes: int) -> nn.Module:
    """The same architecture as ``torch-cnn`` with ``CHANNELS`` and ``HIDDEN``, as a user
    writes it."""
    layers: list[nn.Module] = []
    c = in_channels
    for c_out in CHANNELS:
        layers += [nn.Conv2d(c, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        c, side = c_out, side // 2
    return nn.Sequential(
        *layers, nn.Flatten(), nn.Linear(c * side * side, HIDDEN), nn.ReLU(),
        nn.Linear(HIDDEN, n_classes),
    )


def train_one_by_one(X, y, keep, args) -> float:
    """The user's loop for every row of ``keep``; returns seconds."""
    start = time.perf_counter()
    for i, row in enumerate(keep):
        torch.manual_seed(i)
        model = user_cnn(X.shape[1], X.shape[2], args.classes)
        fit_like_a_user(
            model, X, y, row, epochs=args.epochs, batch=args.batch, lr=args.lr,
            momentum=args.momentum,
        )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--baseline-models", type=int, default=2)
    parser.add_argument("--records", type=int, default=4000)
    parser.add_argument("--side", type=int, default=32)
    parser.add_argument("--in-channels", type=int, default=3)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    g = torch.Generator().manual_seed(args.seed)
    X = torch.rand(args.records, args.in_channels, args.side, args.side, generator=g)
    y = torch.randint(0, args.classes, (args.records,), generator=g)
    keep = keep_matrix(args.models, args.records, seed=args.seed)
    recipe = make_recipe(
        "torch-cnn", channels=CHANNELS, hidden_sizes=(HIDDEN,), lr=args.lr,
        momentum=args.momentum, epochs=args.epochs, batch_size=args.batch, seed=args.seed,
    )
    shape = tuple(X.shape[1:])
    print(
        f"{args.models} CNNs on {args.records} random {args.side}×{args.side}×{args.in_channels} "
        f"images, {args.epochs} epoch(s), batch {args.batch}; torch threads "
        f"{torch.get_num_threads()}; models per vectorised group: "
        f"{recipe.group_size(shape, args.classes, args.models)}"
    )
    start = time.perf_counter()
    recipe.train_models(X, y, args.classes, keep, list(range(args.models)))
    vec = time.perf_counter() - start
    n_base = min(args.baseline_models, args.models)
    base = train_one_by_one(X, y, keep[:n_base], args)
    vec_rate, base_rate = args.models / vec * 60, n_base / base * 60
    print(f"one model at a time:  {base_rate:8.2f} models/min ({base:.1f} s for {n_base})")
    print(
        f"torch-cnn recipe:     {vec_rate:8.2f} models/min ({vec:.1f} s for {args.models}), "
        f"{vec_rate / base_rate:.2f}x one at a time"
    )


if __name__ == "__main__":
    main()
