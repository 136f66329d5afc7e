"""Vectorised training of ``K`` torch models at once: the ``torch-mlp`` and ``torch-cnn`` recipes.

One training step of a chunk of ``K`` models:

1. every model draws its own ``B`` record positions from its own stream (below);
2. the ``K·B`` rows are gathered into one preallocated ``(K, B, *input_shape)`` buffer
   (``torch.index_select``), with per-model augmentation (flip, pad-and-crop) for images;
3. one forward and one backward pass for all ``K`` models (batched matrix products, see
   :mod:`miaudit.train.architectures`);
4. one optimiser step on the stacked parameters (:class:`StackedSGD`, :class:`StackedAdam`):
   PyTorch's ``SGD``/``Adam`` update rules applied element-wise to the stacked tensors, with a
   learning rate per model — exactly ``K`` independent optimisers.

**Subsets of different sizes.** The keep matrix gives model ``k`` its own subset of ``n_k``
records (with the balanced LiRA construction ``n_k`` varies around ``pkeep·n``). Model ``k``
reads an endless stream made of independent random permutations of its subset, ``B`` records per
step, and an epoch of model ``k`` is ``S_k = ⌈n_k / B⌉`` steps (its last batch of an epoch is
filled from its next permutation, so every batch has exactly ``B`` records and no model ever sees
a record outside its subset). Model ``k`` trains for ``T_k = epochs · S_k`` steps with its own
learning-rate schedule over ``T_k``. The chunk runs ``max_k T_k`` steps in lock-step; a model
that has finished keeps computing (its batch is part of the batched products) but its learning
rate is 0, so its weights no longer change. With balanced keep matrices the ``T_k`` differ by a
few steps per epoch at most, so little work is wasted, and a model is trained exactly as it would
be alone.

**Chunk size.** :meth:`TorchRecipe.bytes_per_model` estimates the memory of one model
(parameters, gradients, optimiser state, activations of a batch, its observations); the engine
puts as many models in a chunk as the memory budget allows.

**Determinism.** Every model has three ``torch.Generator`` streams seeded with
:func:`miaudit.train.recipes.model_seed` ``(seed, model_id, stream)``: its initial weights
(:data:`INIT_STREAM`), its minibatch order (:data:`ORDER_STREAM`) and its dropout masks and
augmentations (:data:`NOISE_STREAM`). Nothing a model draws depends on the other models in its
chunk, so the same config and seed give the same model whether it is trained alone, in a chunk,
on resume or on extension; only floating-point reductions inside batched kernels may differ in
the last bits between chunk sizes.
"""

from __future__ import annotations

import functools
import itertools
import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from numpy.typing import NDArray

from miaudit._progress import report_epoch
from miaudit._threads import torch_threads
from miaudit.exceptions import ValidationError
from miaudit.registry import Registry
from miaudit.train.architectures import (
    KERNEL,
    StackedCNN,
    StackedMLP,
    StackedNet,
    conv_blocks,
)
from miaudit.train.queries import apply_queries, identity_view, mirror, n_queries, shift
from miaudit.train.recipes import (
    RECIPES,
    ModelResult,
    Recipe,
    TorchCNNConfig,
    TorchMLPConfig,
    TorchTrainConfig,
    accuracies,
    check_chunk,
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
#: Adam's ``ε`` (PyTorch's default).
ADAM_EPS = 1e-8
#: FLOP of one training step of a vectorised MLP group (:meth:`TorchMLPRecipe.group_size`):
#: about 6 ms of a core's float32 matrix-product throughput, where the per-step overhead of
#: the Python loop and kernel launches (~0.1 ms) stops mattering.
GROUP_STEP_FLOP = 1e9
#: Largest value of a ``uint8`` (:func:`compact_rows`).
UINT8_MAX = 255
#: Rows per block of :func:`compact_rows`'s lossless check.
COMPACT_CHECK_ROWS = 4096
#: ``standardize``: a feature whose standard deviation over a model's training records is at
#: most this times ``max(1, |mean|)`` is treated as constant (divided by 1, not by ~0).
STANDARDIZE_REL_STD = 1e-6
#: Rows per block of :meth:`InputScaling.fit` (the second pass holds ``K × block × d`` floats).
STANDARDIZE_BLOCK_ROWS = 512
#: Random streams of a model (see the module docstring); DP-SGD's Gaussian noise and the choice
#: of early stopping's validation records have their own.
INIT_STREAM, ORDER_STREAM, NOISE_STREAM, DP_NOISE_STREAM, VALIDATION_STREAM = 0, 1, 2, 3, 4
#: DP-SGD: the padded batch of a step has room for the largest Poisson batch of its models,
#: rounded up to a multiple of this many rows.
DP_BATCH_ROUND = 8
#: DP-SGD: geometric gaps drawn at once for a Poisson batch of expected size ``m``:
#: ``m + DP_GAP_MARGIN·√m + DP_GAP_EXTRA`` (more are drawn in the rare case they fall short).
DP_GAP_MARGIN, DP_GAP_EXTRA = 6.0, 16

__all__ = [
    "DP_NOISE_STREAM",
    "INIT_STREAM",
    "LR_SCHEDULES",
    "NOISE_STREAM",
    "OPTIMIZERS",
    "ORDER_STREAM",
    "DPSchedule",
    "EarlyStopping",
    "InputScaling",
    "StackedAdam",
    "StackedOptimizer",
    "StackedSGD",
    "TorchCNNRecipe",
    "TorchMLPRecipe",
    "TorchRecipe",
    "TrainedGroup",
    "dp_schedule",
    "learning_rates",
    "model_generators",
    "poisson_sample",
    "query_ensemble",
    "train_ensemble",
    "train_ensemble_dp",
    "unit_scaled",
]


# ----------------------------------------------------------------------------- optimisers
def _per_model(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``(K,)`` values shaped ``(K, 1, ..., 1)`` to broadcast against ``like``."""
    return values.view(-1, *([1] * (like.ndim - 1)))


class StackedOptimizer(ABC):
    """An element-wise optimiser on stacked parameters with one learning rate per model.

    :meth:`step` reads ``p.grad`` of every parameter and updates ``p`` in place. Before each
    backward pass the training loop asks :meth:`grad_decay` for the factor by which the network
    keeps the previous ``p.grad`` (see :meth:`StackedNet.loss_and_grad`).
    """

    def __init__(self, params: Sequence[torch.Tensor], cfg: TorchTrainConfig) -> None:
        self.params = list(params)
        self.cfg = cfg

    def grad_decay(self) -> float:
        """``p.grad ← grad_decay·p.grad + ∇`` in the next backward pass (0: a fresh gradient)."""
        return 0.0

    @abstractmethod
    def step(self, lr: torch.Tensor) -> None:
        """One update with learning rates ``lr`` of shape ``(K,)`` (0 freezes a model)."""


OPTIMIZERS: Registry[type[StackedOptimizer]] = Registry("optimizer")


@OPTIMIZERS.register("sgd-momentum")
class StackedSGD(StackedOptimizer):
    """PyTorch's ``SGD`` (no dampening, no Nesterov): ``v ← ∇ + λθ`` on the first step, else
    ``v ← μv + ∇ + λθ``; ``θ ← θ - η_k v``.

    The momentum buffer ``v`` lives in ``p.grad``: the backward pass computes ``μv + ∇`` in place
    (:meth:`grad_decay` is ``μ`` after the first step), this step adds ``λθ`` and updates ``θ``.
    """

    def __init__(self, params: Sequence[torch.Tensor], cfg: TorchTrainConfig) -> None:
        super().__init__(params, cfg)
        self.started = False

    def grad_decay(self) -> float:
        return self.cfg.momentum if self.started else 0.0

    @torch.no_grad()
    def step(self, lr: torch.Tensor) -> None:
        for p in self.params:
            velocity = p.grad
            if self.cfg.weight_decay:
                velocity.add_(p, alpha=self.cfg.weight_decay)
            p.addcmul_(velocity, _per_model(-lr, p))
        self.started = True


@OPTIMIZERS.register("adam")
class StackedAdam(StackedOptimizer):
    """PyTorch's ``Adam`` (L2 weight decay, no AMSGrad): ``g ← ∇ + λθ``;
    ``m ← β₁m + (1-β₁)g``; ``v ← β₂v + (1-β₂)g²``;
    ``θ ← θ - η_k/(1-β₁ᵗ) · m / (√v / √(1-β₂ᵗ) + ε)``."""

    def __init__(self, params: Sequence[torch.Tensor], cfg: TorchTrainConfig) -> None:
        super().__init__(params, cfg)
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = 0

    @torch.no_grad()
    def step(self, lr: torch.Tensor) -> None:
        cfg = self.cfg
        beta1, beta2 = cfg.betas
        self.t += 1
        correction1 = 1.0 - beta1**self.t
        root_correction2 = math.sqrt(1.0 - beta2**self.t)
        for p, m, v in zip(self.params, self.m, self.v, strict=True):
            g = p.grad
            if cfg.weight_decay:
                g = g.add(p, alpha=cfg.weight_decay)
            m.lerp_(g, 1.0 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
            denom = (v.sqrt() / root_correction2).add_(ADAM_EPS)
            p.addcmul_(m / denom, _per_model(-lr / correction1, p))


# ----------------------------------------------------------------------------- schedules
def _constant(cfg: TorchTrainConfig, epoch: NDArray, step: NDArray, total: NDArray) -> NDArray:
    return np.ones(np.broadcast(epoch, step, total).shape)


def _cosine(cfg: TorchTrainConfig, epoch: NDArray, step: NDArray, total: NDArray) -> NDArray:
    return 0.5 * (1.0 + np.cos(np.pi * step / total))


def _step(cfg: TorchTrainConfig, epoch: NDArray, step: NDArray, total: NDArray) -> NDArray:
    return cfg.lr_step_gamma ** (epoch // cfg.lr_step_epochs)


#: ``schedule(cfg, epoch, step, total) -> learning-rate multiplier`` on broadcastable arrays:
#: ``step`` counts a model's steps from 0, ``total`` is its number of steps, ``epoch`` its epoch.
LR_SCHEDULES: Registry[Callable[[TorchTrainConfig, NDArray, NDArray, NDArray], NDArray]] = Registry(
    "learning-rate schedule"
)
LR_SCHEDULES.register("constant")(_constant)
LR_SCHEDULES.register("cosine")(_cosine)
LR_SCHEDULES.register("step")(_step)


def learning_rates(cfg: TorchTrainConfig, steps_per_epoch: Sequence[int]) -> torch.Tensor:
    """Learning rate of every model at every lock-step step, shape ``(max_k T_k, K)``.

    Model ``k`` with ``S_k`` steps per epoch runs ``T_k = epochs · S_k`` steps; at step ``t``
    its rate is ``lr · schedule(cfg, t // S_k, t, T_k)`` for ``t < T_k`` and 0 afterwards.
    """
    per_epoch = np.asarray(steps_per_epoch, dtype=np.int64)[None, :]
    total = cfg.epochs * per_epoch
    t = np.arange(int(total.max()))[:, None]
    rates = cfg.lr * LR_SCHEDULES.get(cfg.lr_schedule)(cfg, t // per_epoch, t, total)
    return torch.from_numpy(np.where(t < total, rates, 0.0).astype(np.float32))


# ----------------------------------------------------------------------------- randomness
def model_generators(seed: int, model_ids: Sequence[int], stream: int) -> list[torch.Generator]:
    """One ``torch.Generator`` per model for random stream ``stream`` (:func:`model_seed`)."""
    return [torch.Generator().manual_seed(model_seed(seed, int(i), stream)) for i in model_ids]


class _SampleStream:
    """Endless stream of independent random permutations of one model's subset.

    The stream is a fixed sequence (it does not depend on how much is taken at a time).
    """

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
    generators: Sequence[torch.Generator],
    batch: int,
    widths: Sequence[int],
    p: float,
    device: torch.device,
) -> list[torch.Tensor] | None:
    """Inverted-dropout masks ``(K, B, h)`` on ``device``: 0 with probability ``p``, else
    ``1/(1-p)`` (drawn on the CPU from each model's generator, so every device trains the same
    model)."""
    if p == 0.0:
        return None
    return [
        (_stacked_rand(generators, (batch, h)) >= p).to(device, torch.float32).div_(1.0 - p)
        for h in widths
    ]


def _augment(x: torch.Tensor, generators: Sequence[torch.Generator], cfg: TorchTrainConfig) -> None:
    """Flip and pad-and-crop images ``x`` ``(K, B, c, H, W)`` in place, per model and record."""
    k, batch = x.shape[:2]
    flat = x.view(k * batch, *x.shape[2:])
    if cfg.augment_flip:
        flip = (_stacked_rand(generators, (batch,)) < 0.5).reshape(-1).to(x.device)
        # A select rather than boolean indexing: no host-device synchronisation on a GPU.
        flat.copy_(torch.where(flip.view(-1, *[1] * (flat.ndim - 1)), mirror(flat), flat))
    if cfg.augment_crop:
        pad = cfg.augment_crop
        offsets = torch.stack(
            [torch.randint(-pad, pad + 1, (batch, 2), generator=g) for g in generators]
        ).reshape(-1, 2).to(x.device)
        flat.copy_(shift(flat, offsets[:, 0], offsets[:, 1], pad))


def augments(cfg: TorchTrainConfig) -> bool:
    """Whether training batches are augmented (flip or pad-and-crop)."""
    return bool(cfg.augment_flip or cfg.augment_crop)


def _check_augmentation(cfg: TorchTrainConfig, input_shape: tuple[int, ...]) -> None:
    if augments(cfg) and len(input_shape) != 3:
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
def compact_rows(rows: torch.Tensor) -> torch.Tensor:
    """``rows`` as ``uint8`` when that is lossless (every value an integer in 0..255: binary,
    count and pixel features), else unchanged.

    Training gathers ``K·B`` rows a step; gathering bytes and widening the batch to float32 moves
    a quarter of the memory that gathering float32 rows does, with the same result.
    """
    if rows.numel() == 0 or rows.dtype == torch.uint8:
        return rows
    if float(rows.min()) < 0 or float(rows.max()) > UINT8_MAX:
        return rows
    narrow = rows.to(torch.uint8)
    # Compared in blocks of rows, so the check needs no second full-size float copy.
    for start in range(0, rows.shape[0], COMPACT_CHECK_ROWS):
        block = slice(start, start + COMPACT_CHECK_ROWS)
        if not torch.equal(narrow[block].to(rows.dtype), rows[block]):
            return rows
    return narrow


def unit_scaled(X: torch.Tensor) -> bool:
    """Whether every value of ``X`` lies in [0, 1] (pixels over their maximum, binary and
    one-hot indicators: the scale the recipes' defaults are tuned for)."""
    return X.numel() == 0 or (float(X.min()) >= 0.0 and float(X.max()) <= 1.0)


@dataclass(frozen=True)
class InputScaling:
    """Per-model feature standardisation of a group of ``K`` models (``standardize``).

    Model ``k`` trains on ``(x - shift[k]) · scale[k]``, with ``shift[k]`` the mean and
    ``1 / scale[k]`` the ``ddof=0`` standard deviation of each feature over the model's own
    training records (1 for a feature constant there).

    Attributes
    ----------
    shift, scale : tensors of shape (K, d), float32
    """

    shift: torch.Tensor
    scale: torch.Tensor

    @classmethod
    def fit(cls, X: torch.Tensor, keep: NDArray[np.bool_]) -> InputScaling:
        """Statistics of the flattened records ``X`` ``(n, ...)`` over each row of ``keep``
        ``(K, n)``, in float64 and two passes over blocks of rows (the means, then the squared
        deviations from each model's own mean, so nothing cancels). A feature whose deviation
        is at most ``STANDARDIZE_REL_STD · max(1, |mean|)`` over a model's records is constant
        there: scale 1."""
        flat = X.reshape(X.shape[0], -1)
        weights = torch.from_numpy(keep.astype(np.float64)).to(flat.device)
        counts = weights.sum(dim=1, keepdim=True)
        mean = torch.zeros(keep.shape[0], flat.shape[1], dtype=torch.float64, device=flat.device)
        for start in range(0, flat.shape[0], STANDARDIZE_BLOCK_ROWS):
            block = flat[start : start + STANDARDIZE_BLOCK_ROWS].to(torch.float64)
            mean += weights[:, start : start + STANDARDIZE_BLOCK_ROWS] @ block
        mean /= counts
        var = torch.zeros_like(mean)
        for start in range(0, flat.shape[0], STANDARDIZE_BLOCK_ROWS):
            block = flat[start : start + STANDARDIZE_BLOCK_ROWS].to(torch.float64)
            w = weights[:, start : start + STANDARDIZE_BLOCK_ROWS].unsqueeze(2)
            var += ((block.unsqueeze(0) - mean.unsqueeze(1)).square_() * w).sum(dim=1)
        std = (var / counts).sqrt()
        constant = std <= STANDARDIZE_REL_STD * mean.abs().clamp_min(1.0)
        scale = torch.where(constant, torch.ones_like(std), 1.0 / std)
        return cls(mean.to(torch.float32), scale.to(torch.float32))

    def apply_(self, rows: torch.Tensor) -> torch.Tensor:
        """Standardise the first ``d`` columns of the batch ``rows`` ``(K, B, ≥ d)`` in place
        (the MLP's rows end with a column of ones, which is left as it is)."""
        d = self.shift.shape[1]
        rows[..., :d].sub_(self.shift.unsqueeze(1)).mul_(self.scale.unsqueeze(1))
        return rows


class EarlyStopping:
    """Early stopping of each of ``K`` models on its own held-out OUT records.

    Model ``k``'s validation records are a random ``validation_fraction`` of the records it
    does not train on (drawn from its :data:`VALIDATION_STREAM`). At the end of each of *its
    own* epochs (every ``⌈n_k / B⌉`` steps) :meth:`epoch_end` measures its mean cross-entropy
    there (one forward pass of all models over the union of the validation records), keeps a
    copy of its weights when the loss went down, and freezes it (learning rate 0 from then on,
    :attr:`active`) once it has gone ``patience`` epochs without improving. Every decision
    about a model depends on its own weights and records only, so it stops, and keeps, exactly
    what it would trained alone: the group, the chunk and the device do not matter. A model
    without validation records (no OUT records, or too few for the fraction) trains all its
    epochs. :meth:`restore` puts back each stopped model's best weights.

    The validation records are non-members chosen to select the model's epoch, so they look
    very slightly more like members than other non-members do.
    """

    def __init__(
        self,
        X: torch.Tensor,
        y: torch.Tensor,
        keep: NDArray[np.bool_],
        cfg: TorchTrainConfig,
        model_ids: Sequence[int],
    ) -> None:
        k, n = keep.shape
        chosen = np.zeros((k, n), dtype=bool)
        for j, model_id in enumerate(model_ids):
            out = np.flatnonzero(~keep[j])
            rng = np.random.default_rng(model_seed(cfg.seed, int(model_id), VALIDATION_STREAM))
            size = round(cfg.validation_fraction * out.size)
            chosen[j, rng.choice(out, size, replace=False)] = True
        union = np.flatnonzero(chosen.any(axis=0))
        self.records = union  # positions of the validation records, all models together
        device = X.device
        self.X = X[torch.from_numpy(union).to(device)]
        self.y = y[torch.from_numpy(union).to(device)]
        self.weight = torch.from_numpy(chosen[:, union].astype(np.float32)).to(device)
        counts = self.weight.sum(dim=1)
        self.has_records = counts > 0
        self.weight /= counts.clamp_min(1.0).unsqueeze(1)
        self.patience = cfg.early_stopping
        self.best_loss = torch.full((k,), math.inf, device=device)
        self.bad_epochs = torch.zeros(k, dtype=torch.int64, device=device)
        self.epochs_done = torch.zeros(k, dtype=torch.int64, device=device)
        self.best_epoch = torch.zeros(k, dtype=torch.int64, device=device)
        self.active = torch.ones(k, dtype=torch.bool, device=device)
        self.best: list[torch.Tensor] | None = None

    @torch.no_grad()
    def validation_loss(self, net: StackedNet, scaling: InputScaling | None) -> torch.Tensor:
        """Each model's mean cross-entropy on its validation records ``(K,)`` (inf without
        any)."""
        if self.X.shape[0] == 0:
            return torch.full_like(self.best_loss, math.inf)
        if scaling is None:
            logits = net.predict(self.X)
        else:
            assert isinstance(net, StackedMLP)
            logits = net.predict(self.X, (scaling.shift, scaling.scale))
        ce = torch.logsumexp(logits, dim=2) - logits.gather(
            2, self.y.view(1, -1, 1).expand(logits.shape[0], -1, 1)
        ).squeeze(2)
        loss = (ce * self.weight).sum(dim=1)
        return torch.where(self.has_records, loss, math.inf)

    @torch.no_grad()
    def epoch_end(
        self, net: StackedNet, scaling: InputScaling | None, ended: torch.Tensor
    ) -> torch.Tensor:
        """Models ``ended`` ``(K,)`` bool finished an epoch: record it; returns which of them
        improved (their weights are kept)."""
        ended = ended & self.active
        loss = self.validation_loss(net, scaling)
        improved = ended & (loss < self.best_loss) & self.has_records
        storage = net.storage()
        if self.best is None:
            self.best = [t.detach().clone() for t in storage]
        elif bool(improved.any()):
            for saved, live in zip(self.best, storage, strict=True):
                saved[improved] = live[improved]
        self.epochs_done += ended.to(self.epochs_done.dtype)
        self.best_loss = torch.where(improved, loss, self.best_loss)
        self.best_epoch = torch.where(improved, self.epochs_done, self.best_epoch)
        self.bad_epochs = torch.where(
            improved, 0, self.bad_epochs + ended.to(self.bad_epochs.dtype)
        )
        self.active &= ~(self.has_records & (self.bad_epochs >= self.patience))
        return improved

    @torch.no_grad()
    def restore(self, net: StackedNet) -> None:
        """Each model with validation records gets the weights of its best epoch back."""
        if self.best is None:
            return
        rows = self.has_records
        for saved, live in zip(self.best, net.storage(), strict=True):
            live[rows] = saved[rows]


class _Batches:
    """Each step's ``K·B`` training rows gathered into one preallocated ``(K, B, ·)`` buffer."""

    def __init__(
        self,
        net: StackedNet,
        X: torch.Tensor,
        k: int,
        batch: int,
        cfg: TorchTrainConfig,
        noise_generators: Sequence[torch.Generator],
        source: torch.Tensor | None,
    ) -> None:
        self.net, self.k, self.batch, self.cfg = net, k, batch, cfg
        self.noise_generators = noise_generators
        self.augment = augments(cfg)
        # Augmentation works on images, so it gathers the records themselves and builds the
        # net's rows afterwards; otherwise the rows are built once and gathered directly.
        if self.augment:
            self.source = X
        else:
            self.source = net.batch_source(compact_rows(X)) if source is None else source
        on = self.source.device
        self.gathered = torch.empty(
            (k * batch, *self.source.shape[1:]), dtype=self.source.dtype, device=on
        )
        self.rows = (
            self.gathered
            if self.source.dtype == torch.float32
            else torch.empty(self.gathered.shape, dtype=torch.float32, device=on)
        )

    def take(self, idx: torch.Tensor) -> torch.Tensor:
        """Rows of record positions ``idx`` ``(K·B,)``, shaped ``(K, B, *row_shape)``."""
        torch.index_select(self.source, 0, idx, out=self.gathered)
        rows = self.gathered
        if self.augment:
            images = rows.view(self.k, self.batch, *rows.shape[1:])
            _augment(images, self.noise_generators, self.cfg)
            rows = self.net.batch_source(rows)
        elif rows is not self.rows:
            rows = self.rows.copy_(rows)
        return rows.view(self.k, self.batch, *rows.shape[1:])


def train_ensemble(
    net: StackedNet,
    X: torch.Tensor,
    y: torch.Tensor,
    keep: NDArray[np.bool_],
    cfg: TorchTrainConfig,
    order_generators: Sequence[torch.Generator],
    noise_generators: Sequence[torch.Generator],
    source: torch.Tensor | None = None,
    scaling: InputScaling | None = None,
    on_epoch: Callable[[], None] | None = None,
    stopping: EarlyStopping | None = None,
) -> NDArray[np.float64]:
    """Train the ``K`` models of ``net`` in place, model ``k`` on records ``keep[k]``.

    Parameters
    ----------
    net : StackedNet
        ``K`` freshly initialised models.
    X : tensor of shape (n, *input_shape), float32
    y : tensor of shape (n,), int64
        Records and labels, on the device of ``net``.
    keep : ndarray of shape (K, n), bool
        Every row must have at least one True.
    cfg : TorchTrainConfig
    order_generators, noise_generators : sequences of K torch.Generator (CPU)
        Per-model randomness: minibatch order; dropout masks and augmentations.
    source : tensor, optional
        ``net.batch_source(compact_rows(X))``, when the caller has it already (several groups
        of models trained on the same records).
    scaling : InputScaling, optional
        Standardise each model's batch with its own statistics.
    on_epoch : callable, optional
        Called after every ``max_k ⌈n_k / B⌉`` steps (an epoch of the largest model), for
        progress bars.
    stopping : EarlyStopping, optional
        Checked at the end of each model's own epochs; a model that has run out of patience
        is frozen (learning rate 0), the loop ends when all are, and each model gets its best
        epoch's weights back.

    Returns
    -------
    ndarray of shape (K,)
        Mean training loss of each model over its last epoch (with ``stopping``, for a model
        with validation records: over the steps of its best epoch).
    """
    k = net.n_models
    device = net.device
    subsets = [torch.from_numpy(np.flatnonzero(row)) for row in keep]
    sizes = [s.numel() for s in subsets]
    if min(sizes) == 0:
        raise ValidationError("keep: every model needs at least one training record")
    batch = cfg.batch_size
    per_epoch = [math.ceil(size / batch) for size in sizes]
    rates = learning_rates(cfg, per_epoch).to(device)
    total = torch.tensor([cfg.epochs * s for s in per_epoch])
    last_epoch_start = total - torch.tensor(per_epoch)
    first_loss_step = int(last_epoch_start.min())
    total, last_epoch_start = total.to(device), last_epoch_start.to(device)
    streams = [_SampleStream(s, g) for s, g in zip(subsets, order_generators, strict=True)]
    optimizer = OPTIMIZERS.get(cfg.optimizer)(net.storage(), cfg)
    batches = _Batches(net, X, k, batch, cfg, noise_generators, source)
    widths = net.hidden_sizes()
    block = max(per_epoch)
    last_loss = torch.zeros(k, device=device)
    epoch_loss = torch.zeros(k, device=device)
    best_loss = torch.zeros(k, device=device)
    steps_per_epoch = torch.tensor(per_epoch, device=device)
    order = torch.empty(0)
    for t in range(rates.shape[0]):
        if t % block == 0:
            order = torch.stack([s.take(block * batch) for s in streams])
        j = t % block
        idx = order[:, j * batch : (j + 1) * batch].reshape(-1).to(device, non_blocking=True)
        rows = batches.take(idx)
        if scaling is not None:
            scaling.apply_(rows)
        masks = _dropout_masks(noise_generators, batch, widths, cfg.dropout, device)
        need_loss = t >= first_loss_step or stopping is not None
        loss = net.loss_and_grad(
            rows,
            y[idx].view(k, batch),
            label_smoothing=cfg.label_smoothing,
            dropout_masks=masks,
            grad_decay=optimizer.grad_decay(),
            need_loss=need_loss,
        )
        optimizer.step(rates[t] if stopping is None else rates[t] * stopping.active)
        if need_loss:
            assert loss is not None
            last_loss += torch.where((t >= last_epoch_start) & (t < total), loss, 0.0)
            if stopping is not None:
                epoch_loss += loss
        if on_epoch is not None and (t + 1) % block == 0:
            on_epoch()
        if stopping is not None:
            ended = ((t + 1) % steps_per_epoch == 0) & (t < total)  # each model's own epochs
            if bool(ended.any()):
                improved = stopping.epoch_end(net, scaling, ended)
                best_loss = torch.where(improved, epoch_loss / steps_per_epoch, best_loss)
                epoch_loss = torch.where(ended, 0.0, epoch_loss)
                if not bool(stopping.active.any()):
                    break
    last = last_loss.cpu() / torch.tensor(per_epoch)
    if stopping is not None:
        stopping.restore(net)
        stopped = stopping.has_records.cpu()
        return torch.where(stopped, best_loss.cpu(), last).numpy().astype(np.float64)
    return last.numpy().astype(np.float64)


# ----------------------------------------------------------------------------- DP-SGD
def poisson_sample(rng: np.random.Generator, n: int, q: float) -> NDArray[np.int64]:
    """Poisson sampling: the positions ``0 ≤ j < n`` each included independently with
    probability ``q``, ascending.

    Drawn as the partial sums of geometric gaps (``P[G = g] = (1-q)^{g-1} q``, ``g ≥ 1``): the
    successes of a Bernoulli(q) sequence, in ``O(qn)`` draws instead of ``n`` uniforms.
    """
    if q >= 1.0:
        return np.arange(n, dtype=np.int64)
    expected = n * q
    size = int(expected + DP_GAP_MARGIN * math.sqrt(expected) + DP_GAP_EXTRA)
    pos = np.cumsum(rng.geometric(q, size)) - 1
    while pos[-1] < n:
        pos = np.concatenate([pos, pos[-1] + np.cumsum(rng.geometric(q, size))])
    return pos[: np.searchsorted(pos, n)]


@dataclass(frozen=True)
class DPSchedule:
    """The DP-SGD parameters of one model (:func:`dp_schedule`).

    Attributes
    ----------
    sample_rate : float
        ``q = min(1, B/n)``.
    steps : int
        ``T = epochs · ⌈n/B⌉`` noisy steps.
    noise_multiplier : float
        ``σ`` (given, or found for ``target_epsilon``).
    epsilon : float
        The accountant's epsilon of ``T`` steps at ``(σ, q)`` and ``delta`` (inf for ``σ = 0``).
    """

    sample_rate: float
    steps: int
    noise_multiplier: float
    epsilon: float

    def info(self, cfg: TorchTrainConfig) -> dict[str, Any]:
        """What :class:`~miaudit.train.recipes.ModelResult` ``.privacy`` records."""
        dp = cfg.dp
        assert dp is not None
        return {
            "epsilon": self.epsilon,
            "delta": dp.delta,
            "accountant": dp.accountant,
            "noise_multiplier": self.noise_multiplier,
            "max_grad_norm": dp.max_grad_norm,
            "sample_rate": self.sample_rate,
            "steps": self.steps,
        }


@functools.lru_cache(maxsize=4096)
def _noise_for(target: float, delta: float, q: float, steps: int, accountant: str) -> float:
    from miaudit.audit.accounting import noise_multiplier_for

    return noise_multiplier_for(target, delta, q, steps=steps, accountant=accountant)


@functools.lru_cache(maxsize=4096)
def _epsilon_of(sigma: float, q: float, steps: int, delta: float, accountant: str) -> float:
    from miaudit.audit.accounting import epsilon

    return math.inf if sigma == 0.0 else epsilon(sigma, q, steps, delta, accountant)


def dp_schedule(cfg: TorchTrainConfig, n_train: int) -> DPSchedule:
    """Sampling rate, steps, noise multiplier and epsilon of a model with ``n_train`` records.

    ``q = min(1, B/n)`` and ``T = epochs·⌈n/B⌉`` (the steps a non-private model of the same
    config takes); ``σ`` is ``dp.noise_multiplier`` or, for ``dp.target_epsilon``, the smallest
    noise multiplier whose epsilon after ``T`` steps is at most the target
    (:func:`miaudit.audit.accounting.noise_multiplier_for`, Opacus's search); epsilon is the
    accountant's (:func:`miaudit.audit.accounting.epsilon`). Both are cached per
    ``(q, T)``: with the prv accountant a search takes seconds.
    """
    dp = cfg.dp
    if dp is None:
        raise ValidationError("dp: this config trains without DP-SGD (dp is None)")
    batch = cfg.batch_size
    q = min(1.0, batch / n_train)
    steps = cfg.epochs * math.ceil(n_train / batch)
    if dp.noise_multiplier is not None:
        sigma = dp.noise_multiplier
    else:
        assert dp.target_epsilon is not None
        sigma = _noise_for(dp.target_epsilon, dp.delta, q, steps, dp.accountant)
    eps = _epsilon_of(sigma, q, steps, dp.delta, dp.accountant)
    return DPSchedule(q, steps, sigma, eps)


def _sq_row_norms(source: torch.Tensor) -> torch.Tensor:
    """``‖row‖²`` of every row of ``source`` (float32; computed in blocks, so byte rows are
    never widened all at once)."""
    out = torch.empty(source.shape[0], device=source.device)
    for start in range(0, source.shape[0], COMPACT_CHECK_ROWS):
        block = source[start : start + COMPACT_CHECK_ROWS].to(torch.float32)
        out[start : start + COMPACT_CHECK_ROWS] = torch.linalg.vector_norm(block, dim=1).square_()
    return out


def train_ensemble_dp(
    net: StackedMLP,
    X: torch.Tensor,
    y: torch.Tensor,
    keep: NDArray[np.bool_],
    cfg: TorchTrainConfig,
    model_ids: Sequence[int],
    source: torch.Tensor | None = None,
    on_epoch: Callable[[], None] | None = None,
) -> tuple[NDArray[np.float64], list[DPSchedule]]:
    r"""Train the ``K`` MLPs of ``net`` with DP-SGD, model ``k`` on records ``keep[k]``.

    Every step, model ``k`` (``n_k`` records, :func:`dp_schedule`: rate ``q_k``, noise
    multiplier ``σ_k``) draws a Poisson batch of its records (:func:`poisson_sample`, from its
    :data:`ORDER_STREAM`); the batches of the ``K`` models are padded to one ``(K, B_max, ·)``
    tensor (padding rows have weight 0); the network computes
    :math:`\sum_b \bar g_b / (q_k n_k)` with ghost clipping
    (:meth:`~miaudit.train.architectures.StackedMLP.dp_loss_and_grad`), and the loop adds
    :math:`\mathcal N(0, (\sigma_k C / (q_k n_k))^2)` to every coordinate of the gradient — drawn
    on the CPU from the model's :data:`DP_NOISE_STREAM` — before the optimiser step (momentum,
    Adam and weight decay are post-processing of the noisy gradient). Dropout masks come from
    the model's :data:`NOISE_STREAM`, one row per sampled record. Nothing a model draws depends
    on the other models of its group. Models run ``T_k = epochs·⌈n_k/B⌉`` steps with the
    learning-rate schedule of :func:`learning_rates`. (No ``standardize``: statistics of a
    model's own records would reach it without noise.)

    Returns
    -------
    losses : ndarray of shape (K,)
        Mean training loss of each model over the sampled records of its last epoch's steps.
    schedules : list of DPSchedule
    """
    dp = cfg.dp
    assert dp is not None
    k = net.n_models
    device = net.device
    subsets = [np.flatnonzero(row) for row in keep]
    sizes = [s.size for s in subsets]
    if min(sizes) == 0:
        raise ValidationError("keep: every model needs at least one training record")
    schedules = [dp_schedule(cfg, n) for n in sizes]
    batch = cfg.batch_size
    per_epoch = [math.ceil(size / batch) for size in sizes]
    rates = learning_rates(cfg, per_epoch).to(device)
    total = np.array([s.steps for s in schedules])
    last_epoch_start = total - np.array(per_epoch)
    expected = np.array([s.sample_rate * n for s, n in zip(schedules, sizes, strict=True)])
    sigmas = np.array([s.noise_multiplier for s in schedules])
    noise_std = [float(v) for v in sigmas * dp.max_grad_norm / expected]
    threads = torch.get_num_threads()
    # one Mersenne Twister per model draws its noise serially: with spare intra-op threads,
    # the models' draws run side by side
    pool = ThreadPoolExecutor(min(threads, k)) if threads > 1 and k > 1 else None
    samplers = [
        np.random.default_rng(model_seed(cfg.seed, int(i), ORDER_STREAM)) for i in model_ids
    ]
    noise_generators = model_generators(cfg.seed, model_ids, DP_NOISE_STREAM)
    dropout_generators = model_generators(cfg.seed, model_ids, NOISE_STREAM)
    optimizer = OPTIMIZERS.get(cfg.optimizer)(net.storage(), cfg)
    if source is None:
        source = net.batch_source(compact_rows(X))
    row_sq = _sq_row_norms(source)
    storage = net.storage()
    n_params = sum(t[0].numel() for t in storage)
    noise = torch.empty(k, n_params)
    widths = net.hidden_sizes()
    weight_per_row = torch.from_numpy(1.0 / expected).to(torch.float32)
    last_loss = np.zeros(k)
    gathered: torch.Tensor | None = None
    widened: torch.Tensor | None = None
    try:
        for t in range(rates.shape[0]):
            picks = [
                subset[poisson_sample(rng, subset.size, sch.sample_rate)]
                for subset, rng, sch in zip(subsets, samplers, schedules, strict=True)
            ]
            counts = [p.size for p in picks]
            width = max(DP_BATCH_ROUND, -(-max(counts) // DP_BATCH_ROUND) * DP_BATCH_ROUND)
            idx = np.empty((k, width), dtype=np.int64)
            weight = torch.zeros(k, width)
            for j, p in enumerate(picks):
                idx[j, : p.size] = p
                idx[j, p.size :] = subsets[j][0]
                weight[j, : p.size] = weight_per_row[j]
            idx_t = torch.from_numpy(idx).view(-1).to(device, non_blocking=True)
            gathered = _gather(source, idx_t, gathered)
            rows = gathered[: k * width]
            if rows.dtype != torch.float32:
                if widened is None or widened.shape[0] < rows.shape[0]:
                    widened = torch.empty(gathered.shape, device=device)
                rows = widened[: k * width].copy_(rows)
            rows = rows.view(k, width, -1)
            masks = None
            if cfg.dropout:
                masks = []
                for h in widths:
                    m = torch.zeros(k, width, h)
                    for j, g in enumerate(dropout_generators):
                        m[j, : counts[j]] = (torch.rand((counts[j], h), generator=g) >= cfg.dropout)
                    masks.append(m.div_(1.0 - cfg.dropout).to(device))
            need_loss = bool((t >= last_epoch_start).any())
            loss, _ = net.dp_loss_and_grad(
                rows,
                y[idx_t].view(k, width),
                weight.to(device),
                max_grad_norm=dp.max_grad_norm,
                input_sq_norms=row_sq[idx_t].view(k, width),
                label_smoothing=cfg.label_smoothing,
                dropout_masks=masks,
                grad_decay=optimizer.grad_decay(),
                need_loss=need_loss,
            )
            _add_noise(storage, noise, noise_std, noise_generators, pool)
            optimizer.step(rates[t])
            if need_loss:
                assert loss is not None
                counting = (t >= last_epoch_start) & (t < total)
                last_loss += np.where(counting, loss.cpu().numpy(), 0.0)
            if on_epoch is not None and (t + 1) % max(per_epoch) == 0:
                on_epoch()
    finally:
        if pool is not None:
            pool.shutdown()
    return last_loss / np.array(per_epoch), schedules


def _gather(source: torch.Tensor, idx: torch.Tensor, buf: torch.Tensor | None) -> torch.Tensor:
    """``source[idx]`` into the prefix of ``buf`` (grown when too small); returns the buffer."""
    if buf is None or buf.shape[0] < idx.numel():
        shape = (idx.numel(), *source.shape[1:])
        buf = torch.empty(shape, dtype=source.dtype, device=source.device)
    torch.index_select(source, 0, idx, out=buf[: idx.numel()])
    return buf


@torch.no_grad()
def _add_noise(
    storage: Sequence[torch.Tensor],
    noise: torch.Tensor,
    std: Sequence[float],
    generators: Sequence[torch.Generator],
    pool: ThreadPoolExecutor | None = None,
) -> None:
    """``p.grad += N(0, std_k²)`` for every coordinate of model ``k``: one draw of all its
    coordinates from its own generator on the CPU (``noise``, ``(K, P)``), then added to each
    stored tensor's gradient. Drawing is single-threaded per generator; with a ``pool`` the
    models' draws run side by side (the result is the same)."""

    def draw(j: int) -> None:
        if std[j] == 0.0:
            noise[j].zero_()
        else:
            noise[j].normal_(0.0, std[j], generator=generators[j])

    if pool is None:
        for j in range(len(generators)):
            draw(j)
    else:
        list(pool.map(draw, range(len(generators))))
    on = noise.to(storage[0].device, non_blocking=True)
    offset = 0
    for p in storage:
        size = p[0].numel()
        p.grad.view(p.shape[0], -1).add_(on[:, offset : offset + size])
        offset += size


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
            logits = net.predict(view.to(net.device).contiguous()).cpu().numpy()
            if out is None:
                out = np.empty((net.n_models, n, q, logits.shape[-1]), dtype=np.float32)
            out[:, start : start + batch, j, :] = logits
    assert out is not None
    return out


# ----------------------------------------------------------------------------- recipes
@dataclass
class TrainedGroup:
    """Models trained as one vectorised group (:meth:`TorchRecipe.train_models`).

    Attributes
    ----------
    span : slice
        Their positions in the chunk's ``model_ids`` (rows of its keep matrix).
    model_ids : list of int
    net : StackedNet
        The trained models, in the order of ``model_ids``.
    losses : ndarray of shape (len(model_ids),)
        Mean training loss of each model over its last epoch.
    seconds : float
        Wall-clock training time of the group.
    privacy : list of dict, optional
        DP-SGD: each model's :meth:`DPSchedule.info` (sampling rate, steps, noise, epsilon).
    """

    span: slice
    model_ids: list[int]
    net: StackedNet
    losses: NDArray[np.float64]
    seconds: float
    privacy: list[dict[str, Any]] | None = None


class TorchRecipe(Recipe):
    """Shared logic of the vectorised torch recipes."""

    vectorised: ClassVar[bool] = True
    config: TorchTrainConfig

    def describe(self) -> dict[str, Any]:
        """As :meth:`Recipe.describe`, without ``device`` (it does not change the models) and
        without ``dp`` when it is None."""
        out = super().describe()
        out["config"].pop("device", None)
        if out["config"].get("dp", "absent") is None:
            # left out when off, so that the hash of every non-private run is unchanged
            out["config"].pop("dp")
        if not out["config"].get("early_stopping", 0):
            out["config"].pop("early_stopping", None)
            out["config"].pop("validation_fraction", None)
        return out

    def build(
        self, input_shape: tuple[int, ...], n_classes: int, model_ids: Sequence[int]
    ) -> StackedNet:
        """Freshly initialised stacked models ``model_ids`` (their :data:`INIT_STREAM`)."""
        generators = model_generators(self.config.seed, model_ids, INIT_STREAM)
        return self._build(input_shape, n_classes, generators)

    def _build(
        self, input_shape: tuple[int, ...], n_classes: int, generators: list[torch.Generator]
    ) -> StackedNet:
        raise NotImplementedError

    def _param_count(self, input_shape: tuple[int, ...], n_classes: int) -> int:
        net = self._build(input_shape, n_classes, model_generators(0, [0], INIT_STREAM))
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
        """Train ``len(model_ids)`` models (:meth:`train_models`), then query them."""
        check_chunk(keep, model_ids, len(X))
        Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        results: list[ModelResult] = []
        began = time.perf_counter()
        groups = self.train_models(X, y, n_classes, keep, model_ids)
        train_share = (time.perf_counter() - began) / max(len(model_ids), 1)
        for group in groups:
            results += self._query_group(group, Xt, y, keep[group.span], queries, train_share)
        return results

    def group_size(self, input_shape: tuple[int, ...], n_classes: int, n_models: int) -> int:
        """Models per vectorised step: ``⌈F / f⌉`` (at least 1, at most all), where ``f`` is
        one model's FLOP per training step (:meth:`step_flop`) and ``F`` is
        :data:`GROUP_STEP_FLOP`: enough that a step outweighs the fixed cost of launching its
        kernels from Python, and no more, so that the group's parameters and momenta stay in
        cache between steps and groups can train side by side on the cores
        (:meth:`train_models`). For the 600 → 256 → 100 MLP at batch 128 that is 8 models, for
        the small CNN on 8×8 digits 4, on 32×32×3 images 1; for small MLPs, all. Off the CPU,
        all: an accelerator wants the largest batched products it can get."""
        if not self._on_cpu():
            return n_models
        return min(n_models, self._cpu_group_size(input_shape, n_classes))

    def _on_cpu(self) -> bool:
        return torch.device(self.config.device).type == "cpu"

    def _cpu_group_size(self, input_shape: tuple[int, ...], n_classes: int) -> int:
        """``max(1, ⌈GROUP_STEP_FLOP / step_flop⌉)``: the CPU group size before the chunk's
        model count bounds it."""
        return max(1, math.ceil(GROUP_STEP_FLOP / self.step_flop(input_shape, n_classes)))

    def max_models_per_chunk(self, input_shape: tuple[int, ...], n_classes: int) -> int | None:
        """On the CPU, one group per torch thread (:meth:`train_models` trains that many side by
        side), so that a chunk's models reach the store as soon as its groups finish instead of
        after every model of a memory-sized chunk; off the CPU, no bound."""
        if not self._on_cpu():
            return None
        return self._cpu_group_size(input_shape, n_classes) * max(1, torch.get_num_threads())

    def step_flop(self, input_shape: tuple[int, ...], n_classes: int) -> int:
        """About ``6·B·M`` FLOP per model and training step: ``M`` multiply-adds per record in the
        forward pass, twice that backward, two FLOP each, batch ``B``. Default: ``M`` = the
        parameter count (fully connected layers)."""
        return 6 * self.config.batch_size * self._param_count(input_shape, n_classes)

    def train_models(
        self,
        X: NDArray[np.float32] | torch.Tensor,
        y: NDArray[np.int64] | torch.Tensor,
        n_classes: int,
        keep: NDArray[np.bool_],
        model_ids: Sequence[int],
    ) -> list[TrainedGroup]:
        """Train models ``model_ids``, model ``j`` on records ``keep[j]``, in vectorised groups
        of :meth:`group_size` models.

        Each group trains for all its epochs before its thread takes the next group, so that a
        group's parameters stay in the processor's caches from one step to the next. On the CPU,
        called from the main thread with ``T = torch.get_num_threads() > 1`` and at least ``T``
        groups, ``T`` groups train side by side, each on one thread with one intra-op thread:
        independent small matrix products keep the cores busier than splitting every product
        across cores (torch's thread count is process-wide and is set to 1 meanwhile, so do not
        run other torch work in other threads then). Every model comes out as if it were trained
        alone (its own random streams), whatever the grouping and threading.
        """
        input_shape = tuple(X.shape[1:])
        _check_augmentation(self.config, input_shape)
        if len(model_ids) == 0:
            return []
        device = torch.device(self.config.device)
        Xt = torch.as_tensor(X).to(device, torch.float32).contiguous()
        yt = torch.as_tensor(y).to(device, torch.int64).contiguous()
        size = self.group_size(input_shape, n_classes, len(model_ids))
        spans = [slice(s, s + size) for s in range(0, len(model_ids), size)]
        seed = self.config.seed
        source = None
        if not augments(self.config):
            probe = self.build(input_shape, n_classes, [int(model_ids[0])]).to(device)
            # Compacted first: the rows are then built in bytes, never as a float copy.
            source = probe.batch_source(compact_rows(Xt))

        standardize = self.standardizes(torch.as_tensor(X))  # decided on the host copy

        def train_group(span: slice) -> TrainedGroup:
            ids = [int(i) for i in model_ids[span]]
            began = time.perf_counter()
            net = self.build(input_shape, n_classes, ids).to(device)
            scaling = InputScaling.fit(Xt, keep[span]) if standardize else None
            on_epoch = functools.partial(report_epoch, ids)
            privacy = None
            if self.config.dp is not None:
                assert isinstance(net, StackedMLP)
                losses, schedules = train_ensemble_dp(
                    net, Xt, yt, keep[span], self.config, ids, source, on_epoch
                )
                privacy = [sch.info(self.config) for sch in schedules]
            else:
                losses = train_ensemble(
                    net,
                    Xt,
                    yt,
                    keep[span],
                    self.config,
                    model_generators(seed, ids, ORDER_STREAM),
                    model_generators(seed, ids, NOISE_STREAM),
                    source,
                    scaling,
                    on_epoch,
                    EarlyStopping(Xt, yt, keep[span], self.config, ids)
                    if self.config.early_stopping
                    else None,
                )
            if scaling is not None:
                assert isinstance(net, StackedMLP)
                net.fold_input_affine(scaling.shift, scaling.scale)
            seconds = time.perf_counter() - began
            return TrainedGroup(span, ids, net, losses, seconds, privacy)

        threads = torch.get_num_threads()
        side_by_side = (
            device.type == "cpu"
            and threads > 1
            and len(spans) >= threads
            # torch's thread count is process-wide: change it only from the main thread, not
            # from inside an executor's worker threads running other chunks.
            and threading.current_thread() is threading.main_thread()
        )
        if not side_by_side:
            return [train_group(span) for span in spans]
        with torch_threads(1), ThreadPoolExecutor(
            max_workers=threads, initializer=torch.set_num_threads, initargs=(1,)
        ) as pool:
            return list(pool.map(train_group, spans))

    def progress_epochs(self) -> int:
        """``epochs``: the training loops report each one (:func:`report_epoch`)."""
        return self.config.epochs

    def standardizes(self, X: torch.Tensor) -> bool:
        """Whether the models train on standardised features (:class:`InputScaling`):
        never, unless the recipe offers it (``torch-mlp``'s ``standardize``)."""
        return False

    def _query_group(
        self,
        group: TrainedGroup,
        Xt: torch.Tensor,
        y: NDArray[np.int64],
        keep: NDArray[np.bool_],
        queries: Sequence[str],
        train_seconds: float,
    ) -> list[ModelResult]:
        """Observations, accuracies and weights of one trained group; ``train_seconds`` is each
        model's share of the chunk's training wall time."""
        net, model_ids, losses = group.net, group.model_ids, group.losses
        started = time.perf_counter()
        obs = query_ensemble(net, Xt, queries)
        view = identity_view(queries)
        identity = (
            obs[:, :, view, :]
            if view is not None
            else query_ensemble(net, Xt, ["identity"])[:, :, 0, :]
        )
        query_seconds = time.perf_counter() - started
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
                    train_seconds=train_seconds,
                    query_seconds=query_seconds / k,
                    weights=states[j],
                    weights_format="safetensors",
                    final_loss=float(losses[j]),
                    privacy=None if group.privacy is None else group.privacy[j],
                )
            )
        return results


@RECIPES.register("torch-mlp")
class TorchMLPRecipe(TorchRecipe):
    """Vectorised MLP ensemble (:class:`~miaudit.train.architectures.StackedMLP`)."""

    name = "torch-mlp"
    config_class = TorchMLPConfig
    config: TorchMLPConfig

    def _build(
        self, input_shape: tuple[int, ...], n_classes: int, generators: list[torch.Generator]
    ) -> StackedNet:
        cfg = self.config
        d = int(np.prod(input_shape))
        return StackedMLP(d, cfg.hidden_sizes, n_classes, cfg.activation, generators)

    def standardizes(self, X: torch.Tensor) -> bool:
        """``standardize`` resolved on the records ``X``: ``"auto"`` is on unless every value
        lies in [0, 1] (:func:`unit_scaled`) or the models train with DP-SGD (their own
        records' statistics are not private)."""
        choice = self.config.standardize
        if choice == "auto":
            return self.config.dp is None and not unit_scaled(X)
        return bool(choice)


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

    def step_flop(self, input_shape: tuple[int, ...], n_classes: int) -> int:
        """``6·B·M`` with ``M`` the multiply-adds of one record: each 3×3 convolution
        ``H·W·c_out·c_in·9`` at its block's resolution, plus the head's parameters."""
        if len(input_shape) != 3:
            return super().step_flop(input_shape, n_classes)
        blocks, (c, height, width) = conv_blocks(input_shape, self.config.channels)
        macs = sum(b.height * b.width * b.c_out * b.c_in * KERNEL * KERNEL for b in blocks)
        head = [c * height * width, *self.config.hidden_sizes, n_classes]
        macs += sum(a * b for a, b in itertools.pairwise(head))
        return 6 * self.config.batch_size * macs

    def _activation_floats(self, input_shape: tuple[int, ...], n_classes: int) -> int:
        if len(input_shape) != 3:
            return super()._activation_floats(input_shape, n_classes)
        blocks, _ = conv_blocks(input_shape, self.config.channels)
        conv = sum(b.c_out * b.height * b.width for b in blocks)
        return conv + super()._activation_floats(input_shape, n_classes)
