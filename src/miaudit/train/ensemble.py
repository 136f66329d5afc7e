"""Vectorised training of ``K`` torch models at once: the ``torch-mlp`` and ``torch-cnn`` recipes.

One training step of a chunk of ``K`` models:

1. every model draws its own ``B`` record positions from its own stream (below);
2. the ``K·B`` rows are gathered into one preallocated ``(K, B, *input_shape)`` buffer
   (``torch.index_select``), with per-model augmentation (flip, pad-and-crop) for images;
3. one forward and one backward pass for all ``K`` models (batched matrix products, see
   :mod:`miaudit.train.architectures`);
4. one optimiser step on the stacked parameters (``torch.optim.SGD`` / ``Adam`` with
   ``foreach=True``): element-wise, hence exactly ``K`` independent optimisers.

**Subsets of different sizes.** The keep matrix gives model ``k`` its own subset of ``n_k``
records (with the balanced LiRA construction ``n_k`` varies around ``pkeep·n``). Each model
reads an endless stream made of independent random permutations of its subset, ``B`` records per
step; every model takes ``S = ⌈max_k n_k / B⌉`` steps per epoch, so all ``K`` batches have the
same size ``B``. A model with ``n_k < S·B`` thus sees ``S·B - n_k`` records of its *next*
permutation in an epoch (fewer than ``B`` plus the size difference — a fraction of an epoch);
no model ever sees a record outside its subset. With a single model this is the usual
"shuffle every epoch, last partial batch filled from the next epoch" loop.

**Chunk size.** :meth:`TorchRecipe.bytes_per_model` estimates the memory of one model
(parameters, gradients, optimiser state, activations of a batch, its observations); the engine
puts as many models in a chunk as the memory budget allows.

**Determinism.** Each model has its own ``torch.Generator`` seeded with
:func:`miaudit.train.recipes.model_seed` ``(seed, model_id)``, used in a fixed order (initial
weights, then per epoch its permutations, per step its dropout masks and augmentations). The
same config and seed give the same weights; floating-point reductions inside batched kernels may
differ in the last bits when the same model is trained in a chunk of a different size.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import ClassVar

import numpy as np
import torch
from numpy.typing import NDArray

from miaudit.exceptions import ValidationError
from miaudit.registry import Registry
from miaudit.train.architectures import StackedCNN, StackedMLP, StackedNet
from miaudit.train.queries import apply_queries, mirror, n_queries, shift
from miaudit.train.recipes import (
    RECIPES,
    ModelResult,
    Recipe,
    TorchCNNConfig,
    TorchMLPConfig,
    TorchTrainConfig,
    accuracies,
    model_seed,
)

#: Records per forward pass when querying (all models of the chunk see the same records).
QUERY_BATCH = 1024
#: Bytes of a float32.
FLOAT_BYTES = 4
#: Optimiser state tensors per parameter tensor.
OPTIMIZER_STATE = {"sgd-momentum": 1, "adam": 2}
#: Per-layer activation tensors kept for the backward pass (output, mask, gradient, scratch).
ACTIVATION_COPIES = 4

__all__ = [
    "LR_SCHEDULES",
    "OPTIMIZERS",
    "TorchCNNRecipe",
    "TorchMLPRecipe",
    "TorchRecipe",
    "model_generators",
    "query_ensemble",
    "train_ensemble",
]

# ----------------------------------------------------------------------------- optimisers
OPTIMIZERS: Registry[Callable[[list[torch.Tensor], TorchTrainConfig], torch.optim.Optimizer]] = (
    Registry("optimizer")
)


@OPTIMIZERS.register("sgd-momentum")
def _sgd(params: list[torch.Tensor], cfg: TorchTrainConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, foreach=True
    )


@OPTIMIZERS.register("adam")
def _adam(params: list[torch.Tensor], cfg: TorchTrainConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(
        params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, foreach=True
    )


# ----------------------------------------------------------------------------- schedules
#: ``schedule(cfg, epoch, step, total_steps) -> learning-rate multiplier``; ``step`` counts from 0
#: over the whole run.
LR_SCHEDULES: Registry[Callable[[TorchTrainConfig, int, int, int], float]] = Registry(
    "learning-rate schedule"
)
LR_SCHEDULES.register("constant")(lambda cfg, epoch, step, total: 1.0)
LR_SCHEDULES.register("cosine")(
    lambda cfg, epoch, step, total: 0.5 * (1.0 + math.cos(math.pi * step / total))
)
LR_SCHEDULES.register("step")(
    lambda cfg, epoch, step, total: cfg.lr_step_gamma ** (epoch // cfg.lr_step_epochs)
)


# ----------------------------------------------------------------------------- randomness
def model_generators(seed: int, model_ids: Sequence[int]) -> list[torch.Generator]:
    """One ``torch.Generator`` per model, seeded with :func:`model_seed` ``(seed, id)``."""
    return [torch.Generator().manual_seed(model_seed(seed, int(i))) for i in model_ids]


class _SampleStream:
    """Endless stream of independent random permutations of one model's subset."""

    def __init__(self, subset: torch.Tensor, generator: torch.Generator) -> None:
        self.subset = subset
        self.generator = generator
        self._left = subset[:0]

    def take(self, count: int) -> torch.Tensor:
        pieces = [self._left]
        have = self._left.numel()
        while have < count:
            perm = self.subset[torch.randperm(self.subset.numel(), generator=self.generator)]
            pieces.append(perm)
            have += perm.numel()
        stream = torch.cat(pieces)
        self._left = stream[count:]
        return stream[:count]


def _stacked_rand(generators: Sequence[torch.Generator], shape: tuple[int, ...]) -> torch.Tensor:
    """``(K, *shape)`` uniforms, slice ``k`` from ``generators[k]``."""
    return torch.stack([torch.rand(shape, generator=g) for g in generators])


def _dropout_masks(
    generators: Sequence[torch.Generator], batch: int, widths: Sequence[int], p: float
) -> list[torch.Tensor] | None:
    """Inverted-dropout masks ``(K, B, h)``: 0 with probability ``p``, else ``1/(1-p)``."""
    if p == 0.0:
        return None
    return [
        (_stacked_rand(generators, (batch, h)) >= p).to(torch.float32).div_(1.0 - p) for h in widths
    ]


def _augment(x: torch.Tensor, generators: Sequence[torch.Generator], cfg: TorchTrainConfig) -> None:
    """Flip and pad-and-crop images ``x`` ``(K, B, c, H, W)`` in place, per model and record."""
    k, batch = x.shape[:2]
    flat = x.view(k * batch, *x.shape[2:])
    if cfg.augment_flip:
        flip = (_stacked_rand(generators, (batch,)) < 0.5).reshape(-1)
        flat[flip] = mirror(flat[flip])
    if cfg.augment_crop:
        pad = cfg.augment_crop
        offsets = torch.stack(
            [torch.randint(-pad, pad + 1, (batch, 2), generator=g) for g in generators]
        ).reshape(-1, 2)
        flat.copy_(shift(flat, offsets[:, 0], offsets[:, 1], pad))


def _check_augmentation(cfg: TorchTrainConfig, input_shape: tuple[int, ...]) -> None:
    if (cfg.augment_flip or cfg.augment_crop) and len(input_shape) != 3:
        raise ValidationError(
            f"augment_flip/augment_crop need images (channels, height, width); the data has "
            f"records of shape {input_shape}"
        )
    if cfg.augment_crop and cfg.augment_crop >= min(input_shape[1:]):
        raise ValidationError(
            f"augment_crop: {cfg.augment_crop} pixels must be smaller than the image side "
            f"{min(input_shape[1:])}"
        )


# ----------------------------------------------------------------------------- training
def train_ensemble(
    net: StackedNet,
    X: torch.Tensor,
    y: torch.Tensor,
    keep: NDArray[np.bool_],
    cfg: TorchTrainConfig,
    generators: Sequence[torch.Generator],
) -> NDArray[np.float64]:
    """Train the ``K`` models of ``net`` in place, model ``k`` on records ``keep[k]``.

    Parameters
    ----------
    net : StackedNet
        ``K`` freshly initialised models.
    X : tensor of shape (n, *input_shape), float32
    y : tensor of shape (n,), int64
    keep : ndarray of shape (K, n), bool
        Every row must have at least one True.
    cfg : TorchTrainConfig
    generators : sequence of K torch.Generator
        Per-model randomness (minibatch order, dropout, augmentation).

    Returns
    -------
    ndarray of shape (K, epochs)
        Mean training loss of each model in each epoch.
    """
    k = net.n_models
    subsets = [torch.from_numpy(np.flatnonzero(row)) for row in keep]
    sizes = [s.numel() for s in subsets]
    if min(sizes) == 0:
        raise ValidationError("keep: every model needs at least one training record")
    batch = cfg.batch_size
    steps = math.ceil(max(sizes) / batch)
    total = steps * cfg.epochs
    streams = [_SampleStream(s, g) for s, g in zip(subsets, generators, strict=True)]
    optimizer = OPTIMIZERS.get(cfg.optimizer)(net.params, cfg)
    schedule = LR_SCHEDULES.get(cfg.lr_schedule)
    input_shape = tuple(X.shape[1:])
    flat_x = X.reshape(X.shape[0], -1)
    xbuf = torch.empty(k * batch, flat_x.shape[1])
    widths = net.hidden_sizes()
    augment = cfg.augment_flip or cfg.augment_crop
    losses = np.zeros((k, cfg.epochs))
    for epoch in range(cfg.epochs):
        order = torch.stack([s.take(steps * batch) for s in streams])
        epoch_loss = torch.zeros(k)
        for step in range(steps):
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * schedule(cfg, epoch, epoch * steps + step, total)
            idx = order[:, step * batch : (step + 1) * batch].reshape(-1)
            torch.index_select(flat_x, 0, idx, out=xbuf)
            xb = xbuf.view(k, batch, *input_shape)
            if augment:
                _augment(xb, generators, cfg)
            masks = _dropout_masks(generators, batch, widths, cfg.dropout)
            loss = net.loss_and_grad(
                xb, y[idx].view(k, batch), label_smoothing=cfg.label_smoothing, dropout_masks=masks
            )
            optimizer.step()
            epoch_loss += loss
        losses[:, epoch] = (epoch_loss / steps).numpy()
    return losses


def query_ensemble(
    net: StackedNet, X: torch.Tensor, queries: Sequence[str], batch: int = QUERY_BATCH
) -> NDArray[np.float32]:
    """Logits of every model on every record and query.

    Parameters
    ----------
    net : StackedNet
        ``K`` models.
    X : tensor of shape (n, *input_shape)
    queries : sequence of str
        Registered query names (:mod:`miaudit.train.queries`); ``q`` views in total.
    batch : int
        Records per forward pass.

    Returns
    -------
    ndarray of shape (K, n, q, C), float32
    """
    n = X.shape[0]
    q = n_queries(queries)
    out: NDArray[np.float32] | None = None
    for start in range(0, n, batch):
        views = apply_queries(X[start : start + batch], queries)
        for j, view in enumerate(views):
            logits = net.predict(view.contiguous()).numpy()
            if out is None:
                out = np.empty((net.n_models, n, q, logits.shape[-1]), dtype=np.float32)
            out[:, start : start + batch, j, :] = logits
    assert out is not None
    return out


# ----------------------------------------------------------------------------- recipes
class TorchRecipe(Recipe):
    """Shared logic of the vectorised torch recipes."""

    vectorised: ClassVar[bool] = True
    config: TorchTrainConfig

    def build(
        self, input_shape: tuple[int, ...], n_classes: int, model_ids: Sequence[int]
    ) -> tuple[StackedNet, list[torch.Generator]]:
        """Freshly initialised stacked models ``model_ids`` and their generators."""
        generators = model_generators(self.config.seed, model_ids)
        return self._build(input_shape, n_classes, generators), generators

    def _build(
        self, input_shape: tuple[int, ...], n_classes: int, generators: list[torch.Generator]
    ) -> StackedNet:
        raise NotImplementedError

    def _param_count(self, input_shape: tuple[int, ...], n_classes: int) -> int:
        net = self._build(input_shape, n_classes, model_generators(0, [0]))
        return sum(p[0].numel() for p in net.params)

    def _activation_floats(self, input_shape: tuple[int, ...], n_classes: int) -> int:
        return sum(self.config.hidden_sizes) + n_classes

    def bytes_per_model(
        self, input_shape: tuple[int, ...], n_classes: int, n_records: int, n_queries: int
    ) -> int:
        """``4·(P·(2 + s) + B·(d + 4·a) + n·q·C + Q·a)`` bytes: ``P`` parameters with gradient and
        ``s`` optimiser states, a batch of ``B`` inputs of size ``d`` with ``a`` activations per
        record (:data:`ACTIVATION_COPIES` copies each), the observations, and a query batch of
        ``Q`` records."""
        cfg = self.config
        p = self._param_count(input_shape, n_classes)
        d = int(np.prod(input_shape))
        a = self._activation_floats(input_shape, n_classes)
        floats = (
            p * (2 + OPTIMIZER_STATE[cfg.optimizer])
            + cfg.batch_size * (d + ACTIVATION_COPIES * a)
            + n_records * n_queries * n_classes
            + QUERY_BATCH * a
        )
        return int(FLOAT_BYTES * floats)

    def train_chunk(
        self,
        X: NDArray[np.float32],
        y: NDArray[np.int64],
        n_classes: int,
        keep: NDArray[np.bool_],
        model_ids: Sequence[int],
        queries: Sequence[str],
    ) -> list[ModelResult]:
        """Train ``len(model_ids)`` models as one vectorised ensemble, then query them."""
        input_shape = tuple(X.shape[1:])
        _check_augmentation(self.config, input_shape)
        Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        yt = torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))
        start = time.perf_counter()
        net, generators = self.build(input_shape, n_classes, model_ids)
        losses = train_ensemble(net, Xt, yt, keep, self.config, generators)
        trained = time.perf_counter()
        obs = query_ensemble(net, Xt, queries)
        identity = (
            obs[:, :, 0, :]
            if queries[0] == "identity"
            else query_ensemble(net, Xt, ["identity"])[:, :, 0, :]
        )
        queried = time.perf_counter()
        k = len(model_ids)
        states = net.state_dicts()
        results = []
        for j, model_id in enumerate(model_ids):
            train_acc, test_acc = accuracies(identity[j], y, keep[j])
            results.append(
                ModelResult(
                    model_id=int(model_id),
                    observations=obs[j],
                    train_acc=train_acc,
                    test_acc=test_acc,
                    n_train=int(keep[j].sum()),
                    train_seconds=(trained - start) / k,
                    query_seconds=(queried - trained) / k,
                    weights=states[j],
                    weights_format="safetensors",
                    final_loss=float(losses[j, -1]),
                )
            )
        return results


@RECIPES.register("torch-mlp")
class TorchMLPRecipe(TorchRecipe):
    """Vectorised MLP ensemble (:class:`~miaudit.train.architectures.StackedMLP`)."""

    name = "torch-mlp"
    config_class = TorchMLPConfig

    def _build(
        self, input_shape: tuple[int, ...], n_classes: int, generators: list[torch.Generator]
    ) -> StackedNet:
        cfg = self.config
        d = int(np.prod(input_shape))
        return StackedMLP(d, cfg.hidden_sizes, n_classes, cfg.activation, generators)


@RECIPES.register("torch-cnn")
class TorchCNNRecipe(TorchRecipe):
    """Vectorised small-CNN ensemble (:class:`~miaudit.train.architectures.StackedCNN`)."""

    name = "torch-cnn"
    config_class = TorchCNNConfig
    config: TorchCNNConfig

    def _build(
        self, input_shape: tuple[int, ...], n_classes: int, generators: list[torch.Generator]
    ) -> StackedNet:
        cfg = self.config
        return StackedCNN(
            input_shape, cfg.channels, cfg.hidden_sizes, n_classes, cfg.activation, generators
        )

    def _activation_floats(self, input_shape: tuple[int, ...], n_classes: int) -> int:
        if len(input_shape) != 3:
            return super()._activation_floats(input_shape, n_classes)
        _, height, width = input_shape
        conv = 0
        for c_out in self.config.channels:
            if min(height, width) < 2:
                break
            conv += c_out * height * width
            height, width = height // 2, width // 2
        return conv + super()._activation_floats(input_shape, n_classes)
