"""The baseline of the throughput benchmarks: one model trained the way a user writes it."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def fit_like_a_user(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    row: np.ndarray,
    *,
    epochs: int,
    batch: int,
    lr: float,
    momentum: float,
) -> nn.Module:
    """Train ``model`` on records ``row`` (bool mask) with ``torch.optim.SGD`` over shuffled
    tensor minibatches, ``epochs`` passes; returns the model."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    xs, ys = X[torch.from_numpy(row)], y[torch.from_numpy(row)]
    for _ in range(epochs):
        perm = torch.randperm(len(xs))
        for s in range(0, len(xs), batch):
            idx = perm[s : s + batch]
            loss = F.cross_entropy(model(xs[idx]), ys[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model
