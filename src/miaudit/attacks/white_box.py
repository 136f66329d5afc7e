r"""White-box signals and attacks: per-record gradients of a torch module.

Per-record gradient norms
    For a record :math:`(x, y)` and parameters :math:`\theta = (\theta_1, \dots, \theta_L)` (one
    tensor per layer parameter), the gradient of the loss
    :math:`g = \nabla_\theta \ell(f_\theta(x), y)` gives the per-parameter norms
    :math:`\|g_l\|_2`, the per-layer norms (the parameters of one module, e.g. its weight and
    bias, pooled) and the total norm :math:`\|g\|_2 = (\sum_l \|g_l\|_2^2)^{1/2}`. Members of
    an over-fit model have small gradients. All records of a batch are differentiated at once
    with ``torch.func`` (``vmap`` over ``grad`` of a single-record loss, as in Opacus'
    functorch mode), and squares are summed in float64.

Uses
    * a signal array ``(n_records, 1)`` (:func:`gradient_norm_signal`, oriented higher = member:
      :math:`-\log \|g\|_2`) for LiRA or RMIA-style tests
      (:func:`miaudit.attacks.lira.lira_scores` takes arrays), or an ``AttackData`` signal;
    * a threshold attack (registered ``gradient_norm``: score :math:`-\|g\|_2`);
    * the features of Nasr, Shokri & Houmansadr, "Comprehensive Privacy Analysis of Deep
      Learning", IEEE S&P 2019 — loss, per-layer gradient norms, sorted top probabilities,
      correctness — for a Shokri-style meta-classifier trained on reference models' features
      labelled IN/OUT (:func:`white_box_features`, :func:`white_box_meta_scores`, registered
      ``white_box_meta``). Nasr et al. feed the full gradient tensors to a convolutional
      attack model; their norms are the compact, architecture-independent summary used here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from miaudit._validation import SeedLike, as_generator, check_array, check_count, check_keep
from miaudit.attacks import register
from miaudit.attacks.base import Attack, AttackData, AttackInfo
from miaudit.exceptions import MissingRequirementError, UnknownNameError, ValidationError

__all__ = [
    "FEATURES_SIGNAL",
    "GRADIENT_SIGNAL",
    "GradientNormAttack",
    "GradientNorms",
    "WhiteBoxMetaAttack",
    "gradient_norm_signal",
    "gradient_norms",
    "white_box_features",
    "white_box_meta_scores",
]

NASR = (
    "Nasr, Shokri, Houmansadr. Comprehensive Privacy Analysis of Deep Learning: Passive and "
    "Active White-box Inference Attacks against Centralized and Federated Learning. S&P 2019"
)
#: Name of the precomputed gradient-norm signal in an AttackData.
GRADIENT_SIGNAL = "gradient_norm"
#: Name of the precomputed white-box feature signal in an AttackData.
FEATURES_SIGNAL = "white_box_features"
#: Records differentiated per vmap call.
DEFAULT_BATCH_SIZE = 256
#: Largest probabilities kept (sorted) among the white-box features.
TOP_PROBABILITIES = 3
#: Smallest norm taken before a logarithm.
_TINY = np.finfo(np.float64).tiny


@dataclass(frozen=True)
class GradientNorms:
    """Per-record gradient norms.

    Attributes
    ----------
    total : ndarray of shape (n,)
        :math:`\\|g\\|_2` over all trainable parameters.
    per_parameter : dict of str to ndarray of shape (n,)
        :math:`\\|g_l\\|_2` for each named parameter (``"0.weight"``, ``"0.bias"``, …).
    per_layer : dict of str to ndarray of shape (n,)
        Norms of the parameters of one module pooled (``"0"``: its weight and bias).
    loss : ndarray of shape (n,)
        The per-record loss.
    """

    total: NDArray[np.float64]
    per_parameter: dict[str, NDArray[np.float64]]
    per_layer: dict[str, NDArray[np.float64]]
    loss: NDArray[np.float64]


def _cross_entropy(logits: Any, target: Any) -> Any:
    import torch.nn.functional as F

    return F.cross_entropy(logits, target)


def gradient_norms(
    module: Any,
    X: ArrayLike,
    y: ArrayLike,
    *,
    loss_fn: Callable[[Any, Any], Any] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> GradientNorms:
    """Per-record gradient norms of ``loss_fn(module(x), y)`` with ``torch.func``.

    Parameters
    ----------
    module : torch.nn.Module
        Evaluated in its current mode (call ``module.eval()`` for dropout/batch-norm models);
        its parameters are not changed and get no ``.grad``.
    X : array of shape (n, *input_shape)
    y : array of shape (n,)
        Integer labels.
    loss_fn : callable, optional
        ``loss_fn(outputs (1, C), labels (1,)) -> scalar``; cross-entropy by default.
    batch_size : int
        Records per vmap call.

    Returns
    -------
    GradientNorms
    """
    import torch
    from torch.func import functional_call, grad, vmap

    loss = loss_fn or _cross_entropy
    batch_size = check_count(batch_size, "batch_size", 1)
    params = {k: v.detach() for k, v in module.named_parameters() if v.requires_grad}
    if not params:
        raise ValidationError("module: has no trainable parameters to differentiate")
    buffers = {k: v.detach() for k, v in module.named_buffers()}
    first = next(iter(params.values()))
    x_all = torch.as_tensor(np.asarray(X), dtype=first.dtype, device=first.device)
    y_all = torch.as_tensor(np.asarray(y), dtype=torch.int64, device=first.device)
    if y_all.shape != (len(x_all),):
        raise ValidationError(f"y: expected shape ({len(x_all)},), got {tuple(y_all.shape)}")

    def one(p: dict[str, Any], x: Any, t: Any) -> tuple[Any, Any]:
        value = loss(functional_call(module, (p, buffers), (x.unsqueeze(0),)), t.unsqueeze(0))
        return value, value

    per_record = vmap(grad(one, has_aux=True), in_dims=(None, 0, 0))
    sq: dict[str, list[NDArray[np.float64]]] = {k: [] for k in params}
    losses = []
    for s in range(0, len(x_all), batch_size):
        grads, values = per_record(params, x_all[s : s + batch_size], y_all[s : s + batch_size])
        for k, g in grads.items():
            sq[k].append(g.detach().double().flatten(1).pow(2).sum(1).cpu().numpy())
        losses.append(values.detach().double().cpu().numpy())
    squares = {k: np.concatenate(v) for k, v in sq.items()}
    layers: dict[str, NDArray[np.float64]] = {}
    for k, v in squares.items():
        layer = k.rsplit(".", 1)[0] if "." in k else k
        layers[layer] = layers.get(layer, 0.0) + v
    total = np.sqrt(sum(squares.values()))
    return GradientNorms(
        total=np.asarray(total, dtype=np.float64),
        per_parameter={k: np.sqrt(v) for k, v in squares.items()},
        per_layer={k: np.sqrt(v) for k, v in layers.items()},
        loss=np.concatenate(losses),
    )


def gradient_norm_signal(module: Any, X: ArrayLike, y: ArrayLike, **kwargs: Any) -> NDArray:
    r"""Signal array ``(n, 1)``: :math:`-\log \|g\|_2` (higher = member), Gaussian-like enough
    for LiRA's parametric test. ``kwargs`` go to :func:`gradient_norms`."""
    total = gradient_norms(module, X, y, **kwargs).total
    return -np.log(np.maximum(total, _TINY))[:, None]


def white_box_features(
    module: Any, X: ArrayLike, y: ArrayLike, **kwargs: Any
) -> NDArray[np.float64]:
    """Nasr et al.-style features per record, shape ``(n, F)``.

    Columns: the loss; :math:`\\log` of every per-layer gradient norm and of the total norm;
    the :data:`TOP_PROBABILITIES` largest probabilities, sorted; whether the prediction is
    correct. ``kwargs`` go to :func:`gradient_norms`.
    """
    import torch

    norms = gradient_norms(module, X, y, **kwargs)
    first = next(module.parameters())
    with torch.no_grad():
        logits = module(torch.as_tensor(np.asarray(X), dtype=first.dtype, device=first.device))
    probs = torch.softmax(logits.double(), dim=-1).cpu().numpy()
    k = min(TOP_PROBABILITIES, probs.shape[1])
    top = -np.sort(-probs, axis=1)[:, :k]
    correct = (probs.argmax(1) == np.asarray(y)).astype(np.float64)
    logs = [np.log(np.maximum(v, _TINY)) for v in (*norms.per_layer.values(), norms.total)]
    return np.column_stack([norms.loss, *logs, top, correct])


def white_box_meta_scores(
    target_features: ArrayLike,
    reference_features: ArrayLike,
    keep: ArrayLike,
    *,
    meta_model: str = "logistic_regression",
    seed: SeedLike = 0,
) -> NDArray[np.float64]:
    """Meta-classifier on white-box features (Shokri-style, Nasr et al.'s features).

    Parameters
    ----------
    target_features : array of shape (n, F)
    reference_features : array of shape (m, n, F)
        Features of ``m`` reference models on the same records.
    keep : array of shape (m, n), bool
        IN/OUT labels of the reference rows.
    meta_model : str
        A name of :data:`miaudit.attacks.shokri.META_MODELS`.
    seed : int or Generator

    Returns
    -------
    ndarray of shape (n,)
        Predicted probability of "member".
    """
    from miaudit.attacks.shokri import META_MODELS

    tgt = check_array(target_features, "target_features", ndim=2)
    ref = check_array(reference_features, "reference_features", ndim=3)
    if ref.shape[1:] != tgt.shape:
        raise ValidationError(
            f"reference_features: expected shape (m, {tgt.shape[0]}, {tgt.shape[1]}), got "
            f"{ref.shape}"
        )
    kp = check_keep(keep, shape=ref.shape[:2])
    if kp.all() or not kp.any():
        raise MissingRequirementError("white_box_meta: reference rows must include IN and OUT")
    rng = as_generator(seed)
    clf = META_MODELS.get(meta_model)(int(rng.integers(np.iinfo(np.int32).max)))
    clf.fit(ref.reshape(-1, ref.shape[2]), kp.reshape(-1))
    member_col = int(np.flatnonzero(clf.classes_)[0])
    return np.asarray(clf.predict_proba(tgt)[:, member_col], dtype=np.float64)


# ------------------------------------------------------------------------ registered attacks
def _precomputed(data: AttackData, name: str, part: str, attack: str) -> NDArray[np.float64]:
    try:
        return data.signal(name, part)  # type: ignore[arg-type]
    except (UnknownNameError, MissingRequirementError, KeyError):
        raise MissingRequirementError(
            f"attack {attack!r} needs the precomputed signal {name!r} of the {part}: it needs "
            "white-box access. Compute it with miaudit.attacks.white_box ("
            "gradient_norms(module, X, y).total[:, None] or white_box_features(module, X, y)) "
            f"and pass it with data.set_signal({name!r}, {part!r}, ...)"
        ) from None


@register("gradient_norm")
class GradientNormAttack(Attack):
    """Threshold attack on the per-record gradient norm: score :math:`-\\|g\\|_2` from the
    precomputed signal ``"gradient_norm"`` (shape (n, 1), the norm itself)."""

    info = AttackInfo(
        name="gradient_norm",
        title="Gradient norm: negative norm of the per-record loss gradient (white box)",
        paper=NASR,
        needs_capabilities=("gradients",),
    )

    def _score(self, data: AttackData) -> NDArray[np.float64]:
        return -_precomputed(data, GRADIENT_SIGNAL, "target", self.info.name).mean(axis=-1)


@register("white_box_meta")
class WhiteBoxMetaAttack(Attack):
    """Meta-classifier on white-box features (:func:`white_box_meta_scores`) from the
    precomputed signal ``"white_box_features"`` of the target (n, F) and references (m, n, F)."""

    info = AttackInfo(
        name="white_box_meta",
        title="White box: meta-classifier on loss, per-layer gradient norms and top "
        "probabilities",
        paper=NASR,
        needs_references=True,
        needs_capabilities=("gradients",),
    )

    def __init__(self, meta_model: str = "logistic_regression", seed: int = 0) -> None:
        self.meta_model = meta_model
        self.seed = seed

    def _score(self, data: AttackData) -> NDArray[np.float64]:
        name = self.info.name
        return white_box_meta_scores(
            _precomputed(data, FEATURES_SIGNAL, "target", name),
            _precomputed(data, FEATURES_SIGNAL, "references", name),
            np.asarray(data.keep),
            meta_model=self.meta_model,
            seed=self.seed,
        )
