"""Stacked-parameter networks: ``K`` independent models evaluated by one batched computation.

Every parameter tensor has a leading model axis of size ``K``; model ``k`` owns slice ``[k]``.
Models never share a parameter or a gradient: the training loss is the *sum* of the ``K``
per-model losses, so the gradient of the sum with respect to slice ``k`` is model ``k``'s own
gradient, and element-wise optimisers (SGD with momentum, Adam) applied to the stacked tensors are
exactly ``K`` independent optimisers.

Two architectures:

* :class:`StackedMLP` — ``d → h_1 → … → h_L → C`` fully connected with tanh or ReLU. Its forward
  *and backward* passes are written by hand as batched matrix products (``torch.baddbmm`` /
  ``torch.bmm`` on ``(K, B, ·)`` tensors), with no autograd graph: per step this is ``2L + 1``
  batched GEMMs and a handful of element-wise kernels, whatever ``K``. The first layer's bias is
  the last row of its weight matrix, multiplied by a column of ones that the training batches
  carry (:meth:`StackedNet.batch_source`); every stored tensor is contiguous, so each
  weight-gradient product writes its result in one batched call.
* :class:`StackedCNN` — a small CNN for images ``(c, H, W)`` (8×8 digits, 32×32×3 CIFAR): blocks of
  3×3 convolution (padding 1) → ReLU → 2×2 max-pool, then the MLP head. The ``K`` models'
  convolutions run as one grouped convolution (``groups=K``: the input of model ``k`` is channel
  group ``k``); the backward pass uses autograd.

Initialisation follows PyTorch's ``nn.Linear``/``nn.Conv2d`` defaults (Kaiming-uniform with
``a=√5``, i.e. weights and biases ``~ Uniform(-1/√fan_in, 1/√fan_in)``), drawn for each model from
its own generator, so model ``k``'s initial weights do not depend on which other models share its
chunk.
"""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

from miaudit.exceptions import ValidationError
from miaudit.registry import Registry

#: Spatial reduction of each CNN block (2×2 max-pooling with stride 2).
POOL = 2
#: Convolution kernel size of each CNN block (padding keeps the spatial size).
KERNEL = 3
#: Added to a per-sample gradient norm before dividing the clipping norm by it (Opacus's
#: ``clip_factor = max_grad_norm / (norm + 1e-6)``, clamped at 1).
CLIP_EPS = 1e-6

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "StackedCNN",
    "StackedMLP",
    "StackedNet",
    "clip_factors",
    "conv_blocks",
    "cross_entropy_sum_grad",
    "uniform_init",
]


@dataclass(frozen=True)
class Activation:
    """An element-wise activation whose derivative is a function of its *output*.

    Attributes
    ----------
    forward_ : callable
        Applies the activation in place to a tensor and returns it (manual backward).
    fn : callable
        The out-of-place activation (for autograd).
    backward_ : callable
        ``(g, a) ↦ g ⊙ f'(f^{-1}(a))``, written into ``g``: the gradient at the pre-activation
        from the gradient ``g`` at the output and the output ``a = f(z)`` itself (tanh:
        ``g(1 - a²)``; ReLU: ``g·1[a > 0]``), one fused ATen kernel, so the pre-activation need
        not be kept.
    """

    forward_: Callable[[torch.Tensor], torch.Tensor]
    fn: Callable[[torch.Tensor], torch.Tensor]
    backward_: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _tanh_backward_(g: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    return torch.ops.aten.tanh_backward.grad_input(g, a, grad_input=g)


def _relu_backward_(g: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    return torch.ops.aten.threshold_backward.grad_input(g, a, 0.0, grad_input=g)


ACTIVATIONS: Registry[Activation] = Registry("activation")
ACTIVATIONS.register("tanh")(Activation(torch.tanh_, torch.tanh, _tanh_backward_))
ACTIVATIONS.register("relu")(Activation(torch.relu_, torch.relu, _relu_backward_))


def uniform_init(
    shape: Sequence[int], fan_in: int, generators: Sequence[torch.Generator]
) -> torch.Tensor:
    """Stacked ``(K, *shape)`` tensor, slice ``k`` drawn from ``Uniform(±1/√fan_in)`` with
    ``generators[k]`` (PyTorch's default ``nn.Linear``/``nn.Conv2d`` initialisation)."""
    bound = 1.0 / math.sqrt(fan_in)
    return torch.stack(
        [(torch.rand(tuple(shape), generator=g) * 2.0 - 1.0) * bound for g in generators]
    )


def cross_entropy_sum_grad(
    logits: torch.Tensor, y: torch.Tensor, label_smoothing: float, need_loss: bool = True
) -> tuple[torch.Tensor | None, torch.Tensor]:
    r"""Per-model mean cross-entropy and the gradient of its batch *sum* with respect to the logits.

    With smoothed targets :math:`t = (1-\varepsilon)\,\mathrm{onehot}(y) + \varepsilon / C`
    (Szegedy et al., CVPR 2016; PyTorch's ``label_smoothing``), the loss of model ``k`` on its
    batch of ``B`` records is :math:`\frac1B\sum_b -\sum_c t_{bc}\log\mathrm{softmax}(z_b)_c`
    and the gradient of the summed loss at record ``b`` is :math:`\mathrm{softmax}(z_b) - t_b`
    (the caller scales by :math:`1/B`, inside its matrix products).

    Parameters
    ----------
    logits : tensor of shape (K, B, C)
    y : tensor of shape (K, B), int64
    label_smoothing : float in [0, 1)
    need_loss : bool
        Whether to compute the loss (else only the softmax is computed).

    Returns
    -------
    loss : tensor of shape (K,), or None when ``need_loss`` is false
    grad : tensor of shape (K, B, C)

    The gradient is computed the same way whether or not the loss is (``torch.softmax``), so a
    model's training does not depend on which steps report a loss.
    """
    n_classes = logits.shape[-1]
    loss = None
    if need_loss:
        logp = torch.log_softmax(logits, dim=-1)
        loss_b = -(1.0 - label_smoothing) * logp.gather(-1, y.unsqueeze(-1)).squeeze(-1)
        if label_smoothing:
            loss_b = loss_b - (label_smoothing / n_classes) * logp.sum(-1)
        loss = loss_b.mean(dim=1)
    grad = torch.softmax(logits, dim=-1)
    grad.scatter_add_(
        -1,
        y.unsqueeze(-1),
        torch.full(y.shape, label_smoothing - 1.0, device=grad.device).unsqueeze(-1),
    )
    if label_smoothing:
        grad.sub_(label_smoothing / n_classes)
    return loss, grad


def clip_factors(sq_norms: torch.Tensor, max_grad_norm: float) -> torch.Tensor:
    r"""Per-sample clipping factors :math:`\min(1, C / (\lVert g_i \rVert + 10^{-6}))` from the
    squared norms :math:`\lVert g_i \rVert^2` (Opacus's ``DPOptimizer.clip_and_accumulate``;
    Abadi et al., CCS 2016, Algorithm 1)."""
    return (max_grad_norm / (sq_norms.sqrt() + CLIP_EPS)).clamp_(max=1.0)


class StackedNet(ABC):
    """``K`` models of one architecture with stacked parameters (see module docstring)."""

    #: Stacked parameters, each of shape ``(K, ...)``; ``names[i]`` names ``params[i]``.
    params: list[torch.Tensor]
    names: list[str]

    @property
    def n_models(self) -> int:
        return int(self.params[0].shape[0])

    @property
    def device(self) -> torch.device:
        return self.params[0].device

    @abstractmethod
    def to(self, device: torch.device | str) -> StackedNet:
        """Move every parameter (and gradient) to ``device``; returns ``self``."""

    def storage(self) -> list[torch.Tensor]:
        """The tensors an optimiser updates, each with its gradient in ``.grad`` and a leading
        model axis; together they hold every parameter exactly once (default: :attr:`params`)."""
        return self.params

    def batch_source(self, X: torch.Tensor) -> torch.Tensor:
        """The rows that training batches are gathered from, one per record of ``X``
        ``(n, *input_shape)``; :meth:`loss_and_grad` receives ``(K, B, *row_shape)`` batches of
        them (default: ``X`` itself)."""
        return X

    @abstractmethod
    def loss_and_grad(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        label_smoothing: float,
        dropout_masks: Sequence[torch.Tensor] | None,
        grad_decay: float = 0.0,
        need_loss: bool = True,
    ) -> torch.Tensor | None:
        """Forward and backward pass on each model's own batch: ``p.grad ← grad_decay·p.grad + ∇``.

        ``∇`` is the gradient of the model's *mean* loss over its batch.

        With ``grad_decay = μ`` the gradients *are* SGD's momentum buffers ``v ← μv + ∇``, which
        the MLP accumulates inside its matrix products (``baddbmm`` with ``beta = μ``) at no
        extra cost.

        Parameters
        ----------
        x : tensor of shape (K, B, *row_shape)
            Model ``k``'s batch is ``x[k]``: rows of :meth:`batch_source`.
        y : tensor of shape (K, B), int64
        label_smoothing : float
        dropout_masks : list of tensors of shape (K, B, h_l), optional
            Inverted-dropout masks (0 or ``1/(1-p)``) for the output of each hidden layer of the
            head.
        grad_decay : float
            Factor of the previous gradient kept in ``p.grad`` (0: plain gradient).
        need_loss : bool
            Whether to compute the losses (the gradient does not need them).

        Returns
        -------
        tensor of shape (K,) or None
            Each model's mean training loss on its batch (None when ``need_loss`` is false).
        """

    @abstractmethod
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(K, B, C)`` of every model on the *same* records ``x`` ``(B, *input_shape)``."""

    @abstractmethod
    def hidden_sizes(self) -> list[int]:
        """Widths of the head's hidden layers (the shapes of the dropout masks)."""

    def state_dicts(self) -> list[dict[str, NDArray[np.float32]]]:
        """One ``{name: array}`` dict per model (contiguous float32 copies, not views of the
        live parameters)."""
        return [
            {
                n: np.array(p[k].detach().cpu().numpy(), dtype=np.float32, order="C", copy=True)
                for n, p in zip(self.names, self.params, strict=True)
            }
            for k in range(self.n_models)
        ]

    def load_state_dicts(self, states: Sequence[dict[str, NDArray]]) -> None:
        """Overwrite the stacked parameters with ``states`` (one dict per model, in order)."""
        if len(states) != self.n_models:
            raise ValidationError(
                f"states: expected {self.n_models} model state dicts, got {len(states)}"
            )
        with torch.no_grad():
            for name, p in zip(self.names, self.params, strict=True):
                for k, state in enumerate(states):
                    if name not in state:
                        raise ValidationError(
                            f"states[{k}]: missing tensor {name!r}; has {sorted(state)}"
                        )
                    value = torch.as_tensor(np.asarray(state[name], dtype=np.float32))
                    if value.shape != p.shape[1:]:
                        raise ValidationError(
                            f"states[{k}][{name!r}]: expected shape {tuple(p.shape[1:])}, "
                            f"got {tuple(value.shape)}"
                        )
                    p[k].copy_(value)


def _linear_params(
    sizes: Sequence[int], generators: Sequence[torch.Generator], prefix: str = ""
) -> tuple[list[torch.Tensor], list[str]]:
    """Stacked weights ``(K, d_in, d_out)`` and biases ``(K, d_out)`` of a chain of layers."""
    params, names = [], []
    for i, (d_in, d_out) in enumerate(itertools.pairwise(sizes)):
        params.append(uniform_init((d_in, d_out), d_in, generators))
        names.append(f"{prefix}linear{i}.weight")
        params.append(uniform_init((d_out,), d_in, generators))
        names.append(f"{prefix}linear{i}.bias")
    return params, names


@dataclass(frozen=True)
class ConvBlock:
    """One ``3×3 conv → ReLU → 2×2 max-pool`` block of :class:`StackedCNN`: ``c_in → c_out``
    channels on ``height × width`` inputs."""

    c_in: int
    c_out: int
    height: int
    width: int


def conv_blocks(
    input_shape: Sequence[int], channels: Sequence[int]
) -> tuple[list[ConvBlock], tuple[int, int, int]]:
    """The blocks a CNN with ``channels`` builds on ``(c, H, W)`` images — a block only while
    the spatial size is at least :data:`POOL` — and the ``(c, H, W)`` shape of their output."""
    c, height, width = map(int, input_shape)
    blocks = []
    for c_out in channels:
        if min(height, width) < POOL:
            break
        blocks.append(ConvBlock(c, int(c_out), height, width))
        c, height, width = int(c_out), height // POOL, width // POOL
    return blocks, (c, height, width)


def _fold_affine(
    weight: torch.Tensor, bias: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(diag(scale_k) W_k, b_k - (shift_k ⊙ scale_k) W_k)``: a first layer ``(K, d, h)``,
    ``(K, h)`` that takes raw ``x`` where the given one takes ``(x - shift_k) · scale_k``
    (new tensors; the inputs are left as they are)."""
    shift, scale = shift.to(weight), scale.to(weight)
    folded_bias = bias - torch.bmm((shift * scale).unsqueeze(1), weight).squeeze(1)
    return weight * scale.unsqueeze(2), folded_bias


class StackedMLP(StackedNet):
    """``K`` MLPs ``d → hidden_sizes → C`` with a hand-written batched backward pass.

    Layer ``i`` is ``h @ W_i + b_i`` with ``W_i`` of shape ``(d_in, d_out)`` (the transpose of
    ``nn.Linear.weight``). The first layer is stored as the *augmented* matrix ``[W_0; b_0]``,
    :attr:`first` ``(K, d + 1, h_1)``: the training batches end with a column of ones
    (:meth:`batch_source`), so one matrix product computes ``x W_0 + b_0`` and one more computes
    both gradients. Deeper layers keep ``W_i`` ``(K, d_in, d_out)`` and ``b_i`` ``(K, d_out)``.
    Every stored tensor is contiguous with its gradient in ``.grad`` (:meth:`storage`), so each
    weight-gradient product is one batched call; :attr:`params` are ``linear{i}.weight`` and
    ``linear{i}.bias`` (views of :attr:`first` for ``i = 0``). Safetensors files hold one model's
    ``linear{i}.weight`` (``(d_in, d_out)``) and ``linear{i}.bias``.

    Parameters
    ----------
    n_features : int
        Input dimension ``d`` (images are flattened).
    hidden_sizes : sequence of int
        Hidden layer widths (may be empty: multinomial logistic regression).
    n_classes : int
    activation : str
        A name in :data:`ACTIVATIONS`.
    generators : sequence of torch.Generator
        One per model, for the initial weights.
    """

    def __init__(
        self,
        n_features: int,
        hidden_sizes: Sequence[int],
        n_classes: int,
        activation: str,
        generators: Sequence[torch.Generator],
    ) -> None:
        self.sizes = [int(n_features), *map(int, hidden_sizes), int(n_classes)]
        self.activation = ACTIVATIONS.get(activation)
        initial, _ = _linear_params(self.sizes, generators)
        weight0, bias0, *deeper = initial
        self._bind([torch.cat([weight0, bias0.unsqueeze(1)], dim=1), *deeper])

    def _bind(self, stored: list[torch.Tensor]) -> None:
        """Make ``stored`` (the augmented first layer, then each deeper layer's weight and
        bias) the parameters, with zero gradients unless they have some."""
        for t in stored:
            if t.grad is None:
                t.grad = torch.zeros_like(t)
        self._stored = stored
        self.first = stored[0]
        d = self.sizes[0]
        first_weight, first_bias = self.first[:, :d], self.first[:, d]
        first_weight.grad, first_bias.grad = self.first.grad[:, :d], self.first.grad[:, d]
        self.params = [first_weight, first_bias, *stored[1:]]
        self.names = [
            f"linear{i}.{kind}" for i in range(self.n_layers) for kind in ("weight", "bias")
        ]
        self._work: dict[str, torch.Tensor] = {}

    def to(self, device: torch.device | str) -> StackedMLP:
        moved = []
        for t in self._stored:
            assert t.grad is not None
            m = t.to(device)
            m.grad = t.grad.to(device)
            moved.append(m)
        self._bind(moved)
        return self

    def storage(self) -> list[torch.Tensor]:
        return list(self._stored)

    @torch.no_grad()
    def fold_input_affine(self, shift: torch.Tensor, scale: torch.Tensor) -> None:
        r"""Make each model take raw features where it was trained on ``(x - shift_k)·scale_k``.

        The first layer computes :math:`((x - s_k) \odot c_k) W_k + b_k = x\,W_k' + b_k'` with
        :math:`W_k' = \operatorname{diag}(c_k) W_k` and :math:`b_k' = b_k - (s_k \odot c_k) W_k`,
        so the change of the stored weights leaves every prediction as it was (up to float
        rounding).

        Parameters
        ----------
        shift, scale : tensors of shape (K, d)
        """
        d = self.sizes[0]
        weight, bias = self.first[:, :d], self.first[:, d]
        folded_weight, folded_bias = _fold_affine(weight, bias, shift, scale)
        weight.copy_(folded_weight)
        bias.copy_(folded_bias)

    def batch_source(self, X: torch.Tensor) -> torch.Tensor:
        """``[X_flat, 1]``: the flattened records with a column of ones, ``(n, d + 1)``."""
        flat = X.reshape(X.shape[0], -1)
        ones = torch.ones(flat.shape[0], 1, dtype=flat.dtype, device=flat.device)
        return torch.cat([flat, ones], dim=1)

    def hidden_sizes(self) -> list[int]:
        return self.sizes[1:-1]

    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    def _buffer(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        """A work tensor reused by every training step (no allocation per step)."""
        buf = self._work.get(name)
        if buf is None or buf.shape != shape:
            buf = self._work[name] = torch.empty(shape, device=self.first.device)
        return buf

    def _layer(self, h: torch.Tensor, i: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """``h @ W_i + b_i`` (into ``out`` when given) for a layer after the first."""
        w, b = self.params[2 * i], self.params[2 * i + 1]
        if out is None:
            return torch.baddbmm(b.unsqueeze(1), h, w)
        return torch.baddbmm(b.unsqueeze(1), h, w, out=out)

    def loss_and_grad(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        label_smoothing: float,
        dropout_masks: Sequence[torch.Tensor] | None,
        grad_decay: float = 0.0,
        need_loss: bool = True,
    ) -> torch.Tensor | None:
        """Manual forward/backward (see :meth:`StackedNet.loss_and_grad`); ``x`` is
        ``(K, B, d + 1)``, rows of :meth:`batch_source`.

        Backward, for layer ``i`` with input ``h_i`` and output gradient ``g_i`` (``(K, B, ·)``,
        the gradient of the batch *sum* of the losses): ``∂W_i = h_iᵀ g_i / B``,
        ``∂b_i = Σ_b g_i / B`` (for the first layer both are one product with the augmented input
        ``[x, 1]``), and, except for the first layer (no input gradient is needed),
        ``g_{i-1} = f'(a_{i-1}) ⊙ m_{i-1} ⊙ (g_i W_iᵀ)`` where ``a`` is the activation output and
        ``m`` the dropout mask.
        """
        k, batch = x.shape[:2]
        if x.shape[2] != self.sizes[0] + 1:
            raise ValidationError(
                f"x: expected rows of width {self.sizes[0] + 1} (features and a column of ones, "
                f"see batch_source), got {x.shape[2]}"
            )
        inputs = [x]
        acts = []
        for i, width in enumerate(self.sizes[1:-1]):
            out = self._buffer(f"act{i}", (k, batch, width))
            a = torch.bmm(x, self.first, out=out) if i == 0 else self._layer(inputs[-1], i, out)
            acts.append(self.activation.forward_(a))
            if dropout_masks:
                a = torch.mul(a, dropout_masks[i], out=self._buffer(f"drop{i}", a.shape))
            inputs.append(a)
        last = self.n_layers - 1
        logits_buf = self._buffer("logits", (k, batch, self.sizes[-1]))
        logits = (
            torch.bmm(x, self.first, out=logits_buf)
            if last == 0
            else self._layer(inputs[-1], last, logits_buf)
        )
        loss, g = cross_entropy_sum_grad(logits, y, label_smoothing, need_loss)
        scale = 1.0 / batch
        for i in reversed(range(self.n_layers)):
            if i == 0:
                self.first.grad.baddbmm_(x.transpose(1, 2), g, beta=grad_decay, alpha=scale)
                break
            w, b = self.params[2 * i], self.params[2 * i + 1]
            w.grad.baddbmm_(inputs[i].transpose(1, 2), g, beta=grad_decay, alpha=scale)
            bias_grad = b.grad
            if grad_decay:
                bias_grad.mul_(grad_decay).add_(g.sum(dim=1), alpha=scale)
            else:
                torch.mul(g.sum(dim=1), scale, out=bias_grad)
            g = torch.bmm(
                g, w.transpose(1, 2), out=self._buffer(f"grad{i}", (k, batch, self.sizes[i]))
            )
            if dropout_masks:
                g.mul_(dropout_masks[i - 1])
            self.activation.backward_(g, acts[i - 1])
        return loss

    def _flat_buffer(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        """A work tensor of ``shape`` that is the prefix of a storage kept across steps and grown
        to the largest size asked for (DP-SGD batches change size every step)."""
        numel = math.prod(shape)
        buf = self._work.get(name)
        if buf is None or buf.numel() < numel:
            buf = self._work[name] = torch.empty(numel, device=self.first.device)
        return buf[:numel].view(shape)

    def dp_loss_and_grad(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        weight: torch.Tensor,
        *,
        max_grad_norm: float,
        input_sq_norms: torch.Tensor | None = None,
        label_smoothing: float = 0.0,
        dropout_masks: Sequence[torch.Tensor] | None = None,
        grad_decay: float = 0.0,
        need_loss: bool = True,
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        r"""DP-SGD's clipped gradient sum: ``p.grad ← grad_decay·p.grad + Σ_b w_b c_b ∇ℓ_b``.

        ``∇ℓ_b`` is the gradient of record ``b``'s own loss, ``c_b = min(1, C/(‖∇ℓ_b‖ + 1e-6))``
        its clipping factor (:func:`clip_factors`) and ``w_b`` the caller's row weight: ``1/(qn)``
        (the expected batch size) for a sampled record, 0 for a padding row. No noise is added
        (the training loop adds it to ``p.grad``).

        **Ghost clipping** (Goodfellow, "Efficient Per-Example Gradient Computations", 2015; Li,
        Tramèr, Liang & Hashimoto, "Large Language Models Can Be Strong Differentially Private
        Learners", ICLR 2022): record ``b``'s gradient of a dense layer with input ``h_b`` and
        output gradient ``g_b`` is the outer product ``h_b g_bᵀ`` (weight) and ``g_b`` (bias), so

        .. math:: \lVert \nabla\ell_b \rVert^2 = \sum_i \lVert h_{i,b} \rVert^2
                  \lVert g_{i,b} \rVert^2 + \lVert g_{i,b} \rVert^2,

        where the first layer's bias term is part of its augmented input ``[x_b, 1]``. The
        per-sample gradients are never formed: the backward pass first computes every layer's
        output gradient ``g_i`` (``(K, B, ·)``), then the norms, then scales row ``b`` of every
        ``g_i`` by ``w_b c_b`` before the usual weight-gradient products (scaling the logits'
        gradient row scales all of the record's layer gradients, the backward pass being
        linear in it).

        Parameters
        ----------
        x : tensor of shape (K, B, d + 1)
            Rows of :meth:`batch_source`.
        y : tensor of shape (K, B), int64
        weight : tensor of shape (K, B)
            Row weights ``w_b`` (0 for padding rows).
        max_grad_norm : float
            ``C``.
        input_sq_norms : tensor of shape (K, B), optional
            ``‖[x_b, 1]‖²`` when the caller has them (precomputed per record), else computed.
        label_smoothing, dropout_masks, grad_decay, need_loss
            As :meth:`loss_and_grad`.

        Returns
        -------
        loss : tensor of shape (K,) or None
            Each model's mean loss over its rows of positive weight.
        sq_norms : tensor of shape (K, B)
            Squared per-sample gradient norms (before clipping).
        """
        k, batch = x.shape[:2]
        if x.shape[2] != self.sizes[0] + 1:
            raise ValidationError(
                f"x: expected rows of width {self.sizes[0] + 1} (features and a column of ones, "
                f"see batch_source), got {x.shape[2]}"
            )
        buffer = self._flat_buffer
        inputs = [x]
        acts = []
        for i, width in enumerate(self.sizes[1:-1]):
            out = buffer(f"dp_act{i}", (k, batch, width))
            a = torch.bmm(x, self.first, out=out) if i == 0 else self._layer(inputs[-1], i, out)
            acts.append(self.activation.forward_(a))
            if dropout_masks:
                a = torch.mul(a, dropout_masks[i], out=buffer(f"dp_drop{i}", a.shape))
            inputs.append(a)
        last = self.n_layers - 1
        logits_buf = buffer("dp_logits", (k, batch, self.sizes[-1]))
        logits = (
            torch.bmm(x, self.first, out=logits_buf)
            if last == 0
            else self._layer(inputs[-1], last, logits_buf)
        )
        _, g = cross_entropy_sum_grad(logits, y, label_smoothing, need_loss=False)
        loss = None
        if need_loss:
            logp = torch.log_softmax(logits, dim=-1)
            loss_b = -(1.0 - label_smoothing) * logp.gather(-1, y.unsqueeze(-1)).squeeze(-1)
            if label_smoothing:
                loss_b = loss_b - (label_smoothing / self.sizes[-1]) * logp.sum(-1)
            used = (weight > 0).to(loss_b.dtype)
            loss = (loss_b * used).sum(1) / used.sum(1).clamp(min=1.0)
        # output gradients of every layer, unscaled
        grads = [g]
        for i in reversed(range(1, self.n_layers)):
            w = self.params[2 * i]
            gi = torch.bmm(
                grads[0], w.transpose(1, 2), out=buffer(f"dp_grad{i}", (k, batch, self.sizes[i]))
            )
            if dropout_masks:
                gi.mul_(dropout_masks[i - 1])
            self.activation.backward_(gi, acts[i - 1])
            grads.insert(0, gi)
        # per-sample squared norms: Σ_i (‖h_i‖² + [i > 0]) ‖g_i‖²
        if input_sq_norms is None:
            input_sq_norms = torch.linalg.vector_norm(x, dim=-1).square_()
        sq = input_sq_norms * torch.linalg.vector_norm(grads[0], dim=-1).square_()
        for i in range(1, self.n_layers):
            h_sq = torch.linalg.vector_norm(inputs[i], dim=-1).square_().add_(1.0)
            sq.addcmul_(h_sq, torch.linalg.vector_norm(grads[i], dim=-1).square_())
        scale = clip_factors(sq, max_grad_norm).mul_(weight).unsqueeze(-1)
        for i in reversed(range(self.n_layers)):
            gi = grads[i].mul_(scale)
            if i == 0:
                self.first.grad.baddbmm_(x.transpose(1, 2), gi, beta=grad_decay)
                break
            w, b = self.params[2 * i], self.params[2 * i + 1]
            w.grad.baddbmm_(inputs[i].transpose(1, 2), gi, beta=grad_decay)
            if grad_decay:
                b.grad.mul_(grad_decay).add_(gi.sum(dim=1))
            else:
                torch.sum(gi, dim=1, out=b.grad)
        return loss, sq

    @torch.no_grad()
    def predict(
        self, x: torch.Tensor, input_affine: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Shared input: the first layer is one GEMM ``(B, d) @ (d, K·h_1)``.

        ``input_affine = (shift, scale)`` (each ``(K, d)``): the logits of models that take
        ``(x - shift_k)·scale_k``, from raw ``x`` (the map folded into a copy of the first layer,
        as :meth:`fold_input_affine` does in place)."""
        h = x.reshape(x.shape[0], -1)
        w0, b0 = self.params[0], self.params[1]
        if input_affine is not None:
            w0, b0 = _fold_affine(w0, b0, *input_affine)
        k, d, h1 = w0.shape
        first = (h @ w0.permute(1, 0, 2).reshape(d, k * h1)).view(-1, k, h1).transpose(0, 1)
        first = first + b0.unsqueeze(1)
        if self.n_layers == 1:
            return first
        a = self.activation.forward_(first.contiguous())
        for i in range(1, self.n_layers - 1):
            a = self.activation.forward_(self._layer(a, i))
        return self._layer(a, self.n_layers - 1)


class StackedCNN(StackedNet):
    """``K`` small CNNs: ``[conv3×3 → ReLU → maxpool2] × len(channels)`` then an MLP head.

    A block is added only while the spatial size is at least :data:`POOL`; for 8×8 inputs with
    ``channels=(32, 64)`` the head sees ``64·2·2`` features, for 32×32 ``64·8·8``. Convolution
    weights are stored ``(K, c_out, c_in, 3, 3)`` (``nn.Conv2d`` layout per model); the head's
    layers as ``(K, d_in, d_out)`` weights and ``(K, d_out)`` biases named ``head.linear{i}.*``.

    Parameters
    ----------
    input_shape : (c, H, W)
    channels : sequence of int
        Output channels of each convolution block.
    hidden_sizes : sequence of int
        Hidden widths of the fully connected head.
    n_classes : int
    activation : str
        Activation of the head (convolutions use ReLU).
    generators : sequence of torch.Generator
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        channels: Sequence[int],
        hidden_sizes: Sequence[int],
        n_classes: int,
        activation: str,
        generators: Sequence[torch.Generator],
    ) -> None:
        if len(input_shape) != 3:
            raise ValidationError(
                f"torch-cnn: expects images of shape (channels, height, width), got input shape "
                f"{tuple(input_shape)}"
            )
        self.input_shape = tuple(map(int, input_shape))
        self.params, self.names = [], []
        blocks, (c, height, width) = conv_blocks(input_shape, channels)
        for i, block in enumerate(blocks):
            fan_in = block.c_in * KERNEL * KERNEL
            self.params += [
                uniform_init((block.c_out, block.c_in, KERNEL, KERNEL), fan_in, generators),
                uniform_init((block.c_out,), fan_in, generators),
            ]
            self.names += [f"conv{i}.weight", f"conv{i}.bias"]
        self.n_blocks = len(blocks)
        self.head_sizes = [c * height * width, *map(int, hidden_sizes), int(n_classes)]
        head, head_names = _linear_params(self.head_sizes, generators, prefix="head.")
        self.params += head
        self.names += head_names
        self.activation = ACTIVATIONS.get(activation)
        for p in self.params:
            p.grad = None
            p.requires_grad_(True)

    def hidden_sizes(self) -> list[int]:
        return self.head_sizes[1:-1]

    def to(self, device: torch.device | str) -> StackedCNN:
        self.params = [p.detach().to(device).requires_grad_(True) for p in self.params]
        return self

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` laid out ``(B, K·c, H, W)`` (model-major channels) → ``(K, B, features)``.

        Computed in the channels-last memory format, in which oneDNN's grouped convolutions and
        pooling run about twice as fast on CPU (the logical layout, hence the result, is the
        same)."""
        k = self.n_models
        x = x.contiguous(memory_format=torch.channels_last)
        for i in range(self.n_blocks):
            w, b = self.params[2 * i], self.params[2 * i + 1]
            weight = w.flatten(0, 1).contiguous(memory_format=torch.channels_last)
            x = F.conv2d(x, weight, b.flatten(), padding=KERNEL // 2, groups=k)
            x = F.max_pool2d(F.relu(x), POOL)
        batch = x.shape[0]
        return x.reshape(batch, k, -1).transpose(0, 1)

    def _head(self, h: torch.Tensor, dropout_masks: Sequence[torch.Tensor] | None) -> torch.Tensor:
        n_layers = len(self.head_sizes) - 1
        offset = 2 * self.n_blocks
        for i in range(n_layers):
            w, b = self.params[offset + 2 * i], self.params[offset + 2 * i + 1]
            h = torch.baddbmm(b.unsqueeze(1), h, w)
            if i < n_layers - 1:
                h = self.activation.fn(h)
                if dropout_masks:
                    h = h * dropout_masks[i]
        return h

    def loss_and_grad(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        label_smoothing: float,
        dropout_masks: Sequence[torch.Tensor] | None,
        grad_decay: float = 0.0,
        need_loss: bool = True,
    ) -> torch.Tensor:
        """Autograd backward of the summed per-model losses (:meth:`StackedNet.loss_and_grad`)."""
        k, batch = x.shape[:2]
        grouped = x.transpose(0, 1).reshape(batch, k * x.shape[2], *x.shape[3:])
        logits = self._head(self._features(grouped), dropout_masks)
        loss = (
            F.cross_entropy(
                logits.reshape(k * batch, -1),
                y.reshape(-1),
                label_smoothing=label_smoothing,
                reduction="none",
            )
            .view(k, batch)
            .mean(dim=1)
        )
        previous = [p.grad for p in self.params]
        for p in self.params:
            p.grad = None
        loss.sum().backward()
        if grad_decay:
            with torch.no_grad():
                for p, old in zip(self.params, previous, strict=True):
                    p.grad = old.mul_(grad_decay).add_(p.grad)
        return loss.detach()

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        grouped = x.repeat(1, self.n_models, 1, 1)
        return self._head(self._features(grouped), None)
