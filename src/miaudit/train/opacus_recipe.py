"""The ``opacus`` recipe: any torch module trained with DP-SGD by Opacus, one model at a time.

``make_recipe("opacus", model="pkg.models:make_net", dp={"noise_multiplier": 1.0})`` builds
each model with the factory ``make_net(input_shape, n_classes) -> nn.Module`` (under
``torch.manual_seed`` of the model's seed, so its initial weights are reproducible), wraps it
with Opacus's ``PrivacyEngine.make_private`` (or ``make_private_with_epsilon`` for
``dp.target_epsilon``) with Poisson sampling, trains it for ``epochs`` passes with the
cross-entropy loss, and queries it as the other torch recipes do (logits on every record and
query view). This is the recipe for architectures the vectorised ``torch-mlp`` ensemble does not
cover (CNNs, any module Opacus's per-sample gradients support); for MLPs the ensemble computes
the same DP-SGD steps far faster (``docs/dp.md``).

What Opacus does (Opacus 1.x, Yousefpour et al., "Opacus: User-Friendly Differential Privacy
Library in PyTorch", 2021): a ``DataLoader`` of batch size ``B`` becomes a ``DPDataLoader`` with
sampling rate ``q = 1/⌈n/B⌉`` (one Poisson batch per step, ``⌈n/B⌉`` steps per epoch); each
step computes per-sample gradients with hooks (``GradSampleModule``), clips each to norm
``max_grad_norm``, sums them, adds ``N(0, σ²C²)`` and divides by the expected batch size
``q·n``. The epsilon recorded per model is the engine's accountant's
(``PrivacyEngine.get_epsilon(delta)``) after training, with ``sample_rate`` and ``steps`` from
its history.

Opacus is an optional dependency (``pip install 'miaudit[dp]'``), imported when a model trains.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from numpy.typing import NDArray

from miaudit._progress import report_epoch
from miaudit.exceptions import ValidationError
from miaudit.targets import load_callable
from miaudit.train.recipes import (
    RECIPES,
    DPConfig,
    ModelResult,
    OptimizerName,
    Recipe,
    _as_dp_config,
    _check_choice,
    _check_device,
    _check_positive_int,
    _check_range,
    _fail,
    _jsonable,
    check_chunk,
    model_seed,
)
from miaudit.train.sklearn_recipe import (
    MODEL_OVERHEAD_BYTES,
    _function_path,
    _source_sha256,
    query_trained_model,
)

#: The model's random streams (:func:`~miaudit.train.recipes.model_seed`): initial weights,
#: Poisson batches, DP noise (the numbers of the torch ensembles' streams).
INIT_STREAM, ORDER_STREAM, DP_NOISE_STREAM = 0, 1, 3

__all__ = ["OpacusConfig", "OpacusRecipe", "train_opacus"]


@dataclass(frozen=True)
class OpacusConfig:
    """Config of the ``opacus`` recipe.

    Attributes
    ----------
    model : callable or str
        ``factory(input_shape, n_classes) -> torch.nn.Module`` returning logits, or its import
        path ``"pkg.module:function"``.
    dp : DPConfig or mapping
        DP-SGD settings (:class:`~miaudit.train.recipes.DPConfig`; required): ``max_grad_norm``,
        ``noise_multiplier`` or ``target_epsilon``, ``delta``, ``accountant``.
    optimizer : {"sgd-momentum", "adam"}
        ``torch.optim.SGD`` with ``momentum`` or ``torch.optim.Adam`` with ``betas``.
    lr, momentum, betas, weight_decay
        As :class:`~miaudit.train.recipes.TorchTrainConfig`.
    epochs : int
        Passes over the model's records (``⌈n/B⌉`` Poisson batches each).
    batch_size : int
        ``B``: the expected batch size is ``n/⌈n/B⌉``.
    tag : str
        A label of your own, part of the config hash (bump it when the factory changes in a
        way its source hash cannot see).
    seed : int
        Run seed; model ``i`` uses :func:`~miaudit.train.recipes.model_seed` ``(seed, i)``
        for its initial weights (``torch.manual_seed``), its batches and its noise.
    device : str
        Where the model trains (not part of the config hash).
    """

    model: Any = None
    dp: Any = None
    optimizer: OptimizerName = "sgd-momentum"
    lr: float = 0.05
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    epochs: int = 20
    batch_size: int = 128
    tag: str = ""
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        fn = self.model
        if isinstance(fn, str):
            fn = load_callable(fn)
        if not callable(fn):
            _fail(
                self,
                "model",
                "expected a factory (input_shape, n_classes) -> torch.nn.Module, or its path "
                f"'pkg.module:function', got {self.model!r}",
            )
        object.__setattr__(self, "model", fn)
        if self.dp is None:
            _fail(
                self,
                "dp",
                "the opacus recipe trains with DP-SGD: give dp={'noise_multiplier': ..., "
                "'max_grad_norm': ...} or {'target_epsilon': ..., 'delta': ...}",
            )
        _as_dp_config(self, "dp")
        _check_choice(self, "optimizer", "optimizer", OptimizerName)
        _check_range(self, "lr", 0.0, float("inf"), low_open=True)
        _check_range(self, "momentum", 0.0, 1.0)
        betas = tuple(self.betas) if isinstance(self.betas, (list, tuple)) else ()
        if len(betas) != 2 or not all(
            isinstance(b, (int, float)) and 0.0 <= b < 1.0 for b in betas
        ):
            _fail(self, "betas", f"expected two numbers in [0, 1), got {self.betas!r}")
        object.__setattr__(self, "betas", tuple(float(b) for b in betas))
        _check_range(self, "weight_decay", 0.0, float("inf"))
        _check_positive_int(self, "epochs")
        _check_positive_int(self, "batch_size")
        if not isinstance(self.tag, str):
            _fail(self, "tag", f"expected a string, got {self.tag!r}")
        _check_positive_int(self, "seed", minimum=0)
        _check_device(self, "device")


def _make_optimizer(cfg: OpacusConfig, params: Any) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(
        params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )


def build_module(
    cfg: OpacusConfig, input_shape: tuple[int, ...], n_classes: int, seed: int
) -> torch.nn.Module:
    """The factory's module, its initial weights drawn under ``torch.manual_seed(seed)`` (the
    global generator is restored afterwards), checked by Opacus's ``ModuleValidator``."""
    from opacus.validators import ModuleValidator

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = cfg.model(tuple(input_shape), int(n_classes))
    if not isinstance(module, torch.nn.Module):
        raise ValidationError(
            f"OpacusConfig.model: {_function_path(cfg.model)} returned "
            f"{type(module).__name__}, expected a torch.nn.Module"
        )
    errors = ModuleValidator.validate(module, strict=False)
    if errors:
        raise ValidationError(
            f"OpacusConfig.model: the module from {_function_path(cfg.model)} is not "
            f"compatible with DP-SGD: {'; '.join(map(str, errors[:3]))} (Opacus's "
            "ModuleValidator.fix(module) replaces BatchNorm by GroupNorm)"
        )
    return module


def train_opacus(
    cfg: OpacusConfig,
    X: NDArray[np.float32],
    y: NDArray[np.int64],
    n_classes: int,
    model_id: int,
) -> tuple[torch.nn.Module, dict[str, Any], float]:
    """Train model ``model_id`` with Opacus on records ``X``, ``y`` (its IN records).

    Its initial weights, Poisson batches and noise come from its own seeds
    ``model_seed(cfg.seed, model_id, stream)``.

    Returns
    -------
    module : torch.nn.Module
        The trained model (the factory's module; Opacus's wrapper removed), in eval mode.
    privacy : dict
        ``epsilon`` (``PrivacyEngine.get_epsilon(delta)``), ``delta``, ``accountant``,
        ``noise_multiplier``, ``max_grad_norm``, ``sample_rate``, ``steps``.
    final_loss : float
        Mean loss over the last epoch's batches.
    """
    from opacus import PrivacyEngine

    dp: DPConfig = cfg.dp
    device = torch.device(cfg.device)
    streams = (INIT_STREAM, ORDER_STREAM, DP_NOISE_STREAM)
    seeds = [model_seed(cfg.seed, model_id, s) for s in streams]
    module = build_module(cfg, tuple(X.shape[1:]), n_classes, seeds[0]).to(device)
    data = torch.utils.data.TensorDataset(
        torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)),
        torch.from_numpy(np.asarray(y, dtype=np.int64)),
    )
    batches = torch.Generator().manual_seed(seeds[1])
    loader = torch.utils.data.DataLoader(
        data, batch_size=cfg.batch_size, shuffle=True, generator=batches
    )
    noise = torch.Generator(device=device).manual_seed(seeds[2])
    optimizer = _make_optimizer(cfg, module.parameters())
    common = dict(
        module=module,
        optimizer=optimizer,
        data_loader=loader,
        max_grad_norm=dp.max_grad_norm,
        poisson_sampling=True,
        noise_generator=noise,
    )
    with warnings.catch_warnings():
        # Opacus warns that its RNG is not cryptographically secure (secure_mode=False)
        warnings.simplefilter("ignore", UserWarning)
        engine = PrivacyEngine(accountant=dp.accountant)
        if dp.noise_multiplier is not None:
            private, dp_optimizer, dp_loader = engine.make_private(
                noise_multiplier=dp.noise_multiplier, **common
            )
        else:
            private, dp_optimizer, dp_loader = engine.make_private_with_epsilon(
                target_epsilon=dp.target_epsilon,
                target_delta=dp.delta,
                epochs=cfg.epochs,
                **common,
            )
    criterion = torch.nn.CrossEntropyLoss()
    private.train()
    loss_sum, loss_batches = 0.0, 0
    with warnings.catch_warnings():
        # torch's note on hooks of modules whose inputs need no gradient (Opacus's hooks)
        warnings.filterwarnings(
            "ignore", message="Full backward hook is firing", category=UserWarning
        )
        for epoch in range(cfg.epochs):
            last = epoch == cfg.epochs - 1
            for xb, yb in dp_loader:
                dp_optimizer.zero_grad(set_to_none=True)
                loss = criterion(private(xb.to(device)), yb.to(device))
                loss.backward()
                dp_optimizer.step()
                if last and len(yb):
                    loss_sum += float(loss.detach())
                    loss_batches += 1
            report_epoch([model_id])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        eps = float(engine.get_epsilon(dp.delta)) if dp_optimizer.noise_multiplier else np.inf
    history = engine.accountant.history
    privacy = {
        "epsilon": eps,
        "delta": dp.delta,
        "accountant": dp.accountant,
        "noise_multiplier": float(dp_optimizer.noise_multiplier),
        "max_grad_norm": dp.max_grad_norm,
        "sample_rate": float(history[-1][1]) if history else float(1 / len(dp_loader)),
        "steps": int(sum(h[2] for h in history)),
    }
    private.eval()
    trained = private._module if hasattr(private, "_module") else module
    trained.eval()
    return trained, privacy, loss_sum / max(loss_batches, 1)


@RECIPES.register("opacus")
class OpacusRecipe(Recipe):
    """A user's ``nn.Module`` trained with Opacus's DP-SGD, one model at a time."""

    name: ClassVar[str] = "opacus"
    config_class = OpacusConfig
    config: OpacusConfig

    def describe(self) -> dict[str, Any]:
        """The config without ``device``, the factory as ``module:qualname`` plus the SHA-256 of
        its source (as the ``callable`` recipe)."""
        cfg = self.config
        fields = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
        fields.pop("device")
        fields["model"] = _function_path(cfg.model)
        fields["model_source_sha256"] = _source_sha256(cfg.model)
        fields["dp"] = dataclasses.asdict(cfg.dp)
        return {"recipe": self.name, "config": _jsonable(fields)}

    def bytes_per_model(
        self, input_shape: tuple[int, ...], n_classes: int, n_records: int, n_queries: int
    ) -> int:
        return MODEL_OVERHEAD_BYTES + 4 * n_records * n_queries * n_classes

    def progress_epochs(self) -> int:
        """``epochs``: :func:`train_opacus` reports each one."""
        return self.config.epochs

    def models_per_chunk(self) -> int:
        return 1

    def train_chunk(
        self,
        X: NDArray[np.float32],
        y: NDArray[np.int64],
        n_classes: int,
        keep: NDArray[np.bool_],
        model_ids: Sequence[int],
        queries: Sequence[str],
    ) -> list[ModelResult]:
        """Train each model on its IN records with :func:`train_opacus`, then query it."""
        check_chunk(keep, model_ids, len(X))
        results = []
        for j, model_id in enumerate(model_ids):
            row = keep[j]
            start = time.perf_counter()
            module, privacy, loss = train_opacus(
                self.config, X[row], y[row], n_classes, int(model_id)
            )
            result = query_trained_model(
                module.cpu(), int(model_id), X, y, row, n_classes, queries, "logits", start,
                "opacus recipe",
            )
            result.final_loss = float(loss)
            result.privacy = privacy
            results.append(result)
        return results

