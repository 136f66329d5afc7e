"""Training recipes: how reference models are trained, and their typed configurations.

A *recipe* turns a chunk of rows of the keep matrix into trained models and their observations:

=================  ===================================================================
name               what
=================  ===================================================================
``torch-mlp``      vectorised ensemble of MLPs (:mod:`miaudit.train.ensemble`)
``torch-cnn``      vectorised ensemble of small CNNs for images (8×8, 32×32×3)
``sklearn``        any scikit-learn classifier, cloned per model, joblib-parallel
``callable``       a user function ``train(X, y, seed) -> model``
``opacus``         any ``nn.Module`` trained with DP-SGD by Opacus, one model at a time
=================  ===================================================================

DP-SGD: ``torch-mlp`` trains with DP-SGD when its config has ``dp`` (:class:`DPConfig`).

Each recipe has a frozen config dataclass (:class:`TorchMLPConfig`, :class:`TorchCNNConfig`,
:class:`~miaudit.train.sklearn_recipe.SklearnConfig`,
:class:`~miaudit.train.sklearn_recipe.CallableConfig`) that validates itself at construction and
has a canonical JSON description (:meth:`Recipe.describe`) from which the run store derives the
config hash. Build one with :func:`make_recipe`::

    recipe = make_recipe("torch-mlp", hidden_sizes=(256,), epochs=20)

Seeds: model ``i`` of a run with ``config.seed = s`` uses its own random streams derived from
``(s, i)`` (:func:`model_seed`) for its initial weights, its minibatch order, and its dropout
masks and augmentations. A model's training therefore does not depend on which other models
share its chunk, and a resumed or extended run trains model ``i`` exactly as a fresh run would.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, NoReturn, get_args

import numpy as np
from numpy.typing import NDArray

from miaudit.exceptions import ParameterError, ValidationError
from miaudit.registry import Registry

WeightsFormat = Literal["safetensors", "skops"]

#: Largest seed handed to torch/numpy generators (63 bits: positive as a signed 64-bit int).
_SEED_BITS = 63

__all__ = [
    "RECIPES",
    "DPConfig",
    "ModelResult",
    "Recipe",
    "TorchCNNConfig",
    "TorchMLPConfig",
    "TorchTrainConfig",
    "make_recipe",
    "model_seed",
]


def model_seed(seed: int, model_id: int, stream: int = 0) -> int:
    """Seed of random stream ``stream`` of model ``model_id`` in a run seeded ``seed``: 63 bits
    of ``numpy.random.SeedSequence([seed, model_id, stream])`` (independent for every model and
    stream; the torch recipes use stream 0 for the initial weights, 1 for the minibatch order
    and 2 for dropout and augmentation)."""
    entropy = [int(seed), int(model_id), int(stream)]
    state = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 32 | int(state[1])) >> (64 - _SEED_BITS))


# ----------------------------------------------------------------------------- config helpers
def _fail(config: object, field_name: str, message: str) -> NoReturn:
    raise ParameterError(f"{type(config).__name__}.{field_name}: {message}", params=(field_name,))


def _check_range(
    config: object,
    name: str,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    high_open: bool = True,
) -> None:
    value = getattr(config, name)
    ok = isinstance(value, (int, float)) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low)
    ok = ok and (value < high if high_open else value <= high)
    if not ok:
        lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
        _fail(config, name, f"expected a number in {lo}{low}, {high}{hi}, got {value!r}")


def _check_positive_int(config: object, name: str, minimum: int = 1) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        _fail(config, name, f"expected an integer >= {minimum}, got {value!r}")


def _as_int_tuple(config: object, name: str, minimum: int = 1) -> None:
    value = getattr(config, name)
    try:
        items = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        _fail(config, name, f"expected a sequence of integers, got {value!r}")
    if any(v < minimum for v in items) or any(
        isinstance(v, bool) or (isinstance(v, float) and not float(v).is_integer()) for v in value
    ):
        _fail(config, name, f"expected integers >= {minimum}, got {value!r}")
    object.__setattr__(config, name, items)


def _check_choice(config: object, name: str, kind: str, choices: Any) -> None:
    """``config.<name>`` must be one of the ``Literal`` type ``choices`` (case-insensitive)."""
    value = getattr(config, name)
    valid = sorted(get_args(choices))
    key = str(value).lower()
    if key not in valid:
        close = difflib.get_close_matches(key, valid, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        _fail(config, name, f"unknown {kind} {value!r}.{hint} Valid {kind}s: {', '.join(valid)}")
    object.__setattr__(config, name, key)


#: The closed option sets of the torch recipes; the engine implements each name
#: (:data:`miaudit.train.architectures.ACTIVATIONS`, :data:`miaudit.train.ensemble.OPTIMIZERS`,
#: :data:`miaudit.train.ensemble.LR_SCHEDULES`, checked against these by the tests).
ActivationName = Literal["tanh", "relu"]
OptimizerName = Literal["sgd-momentum", "adam"]
LRScheduleName = Literal["constant", "cosine", "step"]
#: Opacus accountants by name (:mod:`miaudit.audit.accounting`).
AccountantName = Literal["prv", "rdp", "gdp"]
#: Default ``delta`` of DP-SGD runs.
DEFAULT_DP_DELTA = 1e-5


# ----------------------------------------------------------------------------- DP-SGD
@dataclass(frozen=True)
class DPConfig:
    r"""DP-SGD (Abadi et al., "Deep Learning with Differential Privacy", CCS 2016) settings.

    Each step samples every training record independently with probability
    :math:`q = \min(1, B / n)` (Poisson sampling; ``B`` the ``batch_size``, ``n`` the model's
    training records), clips each record's gradient to norm at most ``C = max_grad_norm``
    (Opacus's factor :math:`\min(1, C / (\lVert g_i \rVert + 10^{-6}))`), and uses

    .. math:: \tilde g = \frac{1}{qn}\Big(\sum_{i \in \text{batch}} \bar g_i
              + \mathcal N(0, \sigma^2 C^2 I)\Big)

    (the expected-batch-size normalisation of Opacus). Give either ``noise_multiplier``
    (``σ``) or ``target_epsilon`` (``σ`` is then the smallest one whose epsilon at ``delta``
    after the model's steps is at most the target, :func:`miaudit.audit.accounting.
    noise_multiplier_for`). The epsilon of each trained model is computed by ``accountant``.

    Attributes
    ----------
    max_grad_norm : float
        Clipping norm ``C > 0``.
    noise_multiplier : float, optional
        ``σ >= 0`` (0: clipping only, no privacy: epsilon is infinite).
    target_epsilon : float, optional
        ``ε > 0`` to reach after all of a model's steps.
    delta : float
        ``δ`` in (0, 1) of the reported epsilon.
    accountant : {"prv", "rdp", "gdp"}
        Opacus accountant (:mod:`miaudit.audit.accounting`).
    """

    max_grad_norm: float = 1.0
    noise_multiplier: float | None = None
    target_epsilon: float | None = None
    delta: float = DEFAULT_DP_DELTA
    accountant: AccountantName = "prv"

    def __post_init__(self) -> None:
        _check_range(self, "max_grad_norm", 0.0, math.inf, low_open=True)
        if (self.noise_multiplier is None) == (self.target_epsilon is None):
            _fail(
                self,
                "noise_multiplier",
                "give exactly one of noise_multiplier and target_epsilon, got "
                f"noise_multiplier={self.noise_multiplier!r}, "
                f"target_epsilon={self.target_epsilon!r}",
            )
        if self.noise_multiplier is not None:
            _check_range(self, "noise_multiplier", 0.0, math.inf)
            object.__setattr__(self, "noise_multiplier", float(self.noise_multiplier))
        else:
            _check_range(self, "target_epsilon", 0.0, math.inf, low_open=True)
            object.__setattr__(self, "target_epsilon", float(self.target_epsilon or 0.0))
        _check_range(self, "delta", 0.0, 1.0, low_open=True)
        _check_choice(self, "accountant", "accountant", AccountantName)
        object.__setattr__(self, "max_grad_norm", float(self.max_grad_norm))
        object.__setattr__(self, "delta", float(self.delta))


def _as_dp_config(config: object, name: str = "dp") -> None:
    """``config.<name>``: None, a :class:`DPConfig`, or a mapping of its fields."""
    value = getattr(config, name)
    if value is None or isinstance(value, DPConfig):
        return
    if not isinstance(value, dict):
        _fail(
            config,
            name,
            "expected None, a DPConfig or a mapping such as {'noise_multiplier': 1.0, "
            f"'max_grad_norm': 1.0}}, got {value!r}",
        )
    valid = [f.name for f in dataclasses.fields(DPConfig)]
    unknown = sorted(set(map(str, value)) - set(valid))
    if unknown:
        close = difflib.get_close_matches(unknown[0], valid, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        _fail(config, name, f"unknown key(s) {unknown}.{hint} Valid keys: {', '.join(valid)}")
    object.__setattr__(config, name, DPConfig(**value))


# ----------------------------------------------------------------------------- torch configs
@dataclass(frozen=True)
class TorchTrainConfig:
    """Hyper-parameters shared by the vectorised torch recipes.

    Attributes
    ----------
    hidden_sizes : tuple of int
        Widths of the fully connected hidden layers.
    activation : str
        ``"tanh"`` or ``"relu"`` (:data:`miaudit.train.architectures.ACTIVATIONS`).
    optimizer : str
        ``"sgd-momentum"`` (PyTorch ``SGD``: ``v ← μv + g + λθ``, ``θ ← θ - ηv``) or ``"adam"``
        (PyTorch ``Adam`` with L2 weight decay added to the gradient).
    lr : float
        Learning rate ``η > 0``.
    momentum : float
        ``μ`` of SGD, in ``[0, 1)``.
    betas : (float, float)
        Adam's ``β₁, β₂`` in ``[0, 1)``.
    weight_decay : float
        L2 coefficient ``λ >= 0`` (applied to weights and biases, as PyTorch does).
    dropout : float
        Drop probability of the hidden layers' outputs (inverted dropout), in ``[0, 1)``.
    label_smoothing : float
        ``ε`` in ``[0, 1)``: targets ``(1-ε)·onehot + ε/C``.
    epochs : int
        Passes over each model's subset (see :mod:`miaudit.train.ensemble` for unequal sizes).
    batch_size : int
        Records per minibatch and model.
    lr_schedule : str
        ``"constant"``, ``"cosine"`` (``η·(1 + cos(π t/T))/2`` over the ``T`` steps) or
        ``"step"`` (``η·γ^⌊epoch / lr_step_epochs⌋``).
    lr_step_epochs : int
        Period of the ``"step"`` schedule.
    lr_step_gamma : float
        Factor ``γ`` of the ``"step"`` schedule, in ``(0, 1]``.
    augment_flip : bool
        Images: mirror each training record horizontally with probability 1/2.
    augment_crop : int
        Images: pad-and-crop — reflect-pad by this many pixels and crop a random window of the
        original size (0 disables it).
    seed : int
        Run seed; model ``i`` uses :func:`model_seed` ``(seed, i)``.
    device : str
        Where the models train and are queried: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``…
        (any ``torch.device`` this machine has). Random draws (initial weights, minibatch order,
        dropout, augmentation) are made on the CPU from each model's own generators, so a model
        is the same on every device up to floating-point rounding; the device is therefore not
        part of the config hash (like ``n_jobs`` of ``sklearn``).
    dp : DPConfig or mapping, optional
        Train with DP-SGD (:class:`DPConfig`; ``torch-mlp`` only). None (default): plain
        training, and the field is left out of the config hash.
    early_stopping : int
        Patience in epochs (0, the default: off). Each model holds out a random
        ``validation_fraction`` of its OUT records (records it never trains on, so the members
        stay exactly its IN records); after each of its own epochs its loss there is measured;
        a model that has gone ``early_stopping`` epochs without a lower validation loss is
        frozen, and each model keeps its weights from its best epoch (what it would get trained
        alone). Left out of the config hash when 0; not combined with ``dp`` (the number of
        steps would depend on the data).
    validation_fraction : float
        Share of each model's OUT records used as its validation set, in (0, 1).
    """

    hidden_sizes: tuple[int, ...] = (256,)
    activation: ActivationName = "tanh"
    optimizer: OptimizerName = "sgd-momentum"
    lr: float = 0.05
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    dropout: float = 0.0
    label_smoothing: float = 0.0
    epochs: int = 20
    batch_size: int = 128
    lr_schedule: LRScheduleName = "constant"
    lr_step_epochs: int = 10
    lr_step_gamma: float = 0.1
    augment_flip: bool = False
    augment_crop: int = 0
    seed: int = 0
    device: str = "cpu"
    dp: DPConfig | None = None
    early_stopping: int = 0
    validation_fraction: float = 0.2

    def __post_init__(self) -> None:
        _as_int_tuple(self, "hidden_sizes")
        _check_choice(self, "activation", "activation", ActivationName)
        _check_choice(self, "optimizer", "optimizer", OptimizerName)
        _check_choice(self, "lr_schedule", "learning-rate schedule", LRScheduleName)
        _check_range(self, "lr", 0.0, math.inf, low_open=True)
        _check_range(self, "momentum", 0.0, 1.0)
        betas = tuple(self.betas) if isinstance(self.betas, (list, tuple)) else ()
        if len(betas) != 2 or not all(
            isinstance(b, (int, float)) and 0.0 <= b < 1.0 for b in betas
        ):
            _fail(self, "betas", f"expected two numbers in [0, 1), got {self.betas!r}")
        object.__setattr__(self, "betas", tuple(float(b) for b in betas))
        _check_range(self, "weight_decay", 0.0, math.inf)
        _check_range(self, "dropout", 0.0, 1.0)
        _check_range(self, "label_smoothing", 0.0, 1.0)
        _check_positive_int(self, "epochs")
        _check_positive_int(self, "batch_size")
        _check_positive_int(self, "lr_step_epochs")
        _check_range(self, "lr_step_gamma", 0.0, 1.0, low_open=True, high_open=False)
        if not isinstance(self.augment_flip, bool):
            _fail(self, "augment_flip", f"expected true or false, got {self.augment_flip!r}")
        _check_positive_int(self, "augment_crop", minimum=0)
        _check_positive_int(self, "seed", minimum=0)
        _check_device(self, "device")
        _as_dp_config(self, "dp")
        _check_positive_int(self, "early_stopping", minimum=0)
        _check_range(self, "validation_fraction", 0.0, 1.0, low_open=True)
        if self.early_stopping and self.dp is not None:
            _fail(
                self,
                "early_stopping",
                "early stopping with DP-SGD is not implemented (the number of steps, and so "
                "the accountant's epsilon, would depend on the data); set it to 0",
            )
        if self.dp is not None and (self.augment_flip or self.augment_crop):
            _fail(
                self,
                "dp",
                "DP-SGD with augment_flip/augment_crop is not implemented (set both off, or use "
                "the opacus recipe)",
            )


def _check_device(cfg: Any, field_name: str) -> None:
    """``cfg.<field_name>`` must name a torch device that this machine can allocate on (checked
    by allocating an empty tensor there; the CPU always can, and is not checked)."""
    value = getattr(cfg, field_name)
    if not isinstance(value, str):
        _fail(cfg, field_name, f"expected a device name such as 'cpu' or 'cuda', got {value!r}")
    if value == "cpu":
        return
    import torch

    try:
        torch.empty(0, device=torch.device(value))
    except Exception as exc:  # backends fail with assorted exception types
        text = str(exc).strip()
        first = text.splitlines()[0].split(". ")[0] if text else type(exc).__name__
        _fail(cfg, field_name, f"device {value!r} is not usable here ({first})")


@dataclass(frozen=True)
class TorchMLPConfig(TorchTrainConfig):
    """``torch-mlp``: an MLP on flattened features (see :class:`TorchTrainConfig`).

    Attributes
    ----------
    standardize : bool or "auto"
        Standardise each feature per model: ``x' = (x - μ_k) / σ_k`` with the mean and the
        (``ddof=0``) standard deviation over model ``k``'s *own* training records (a constant
        feature keeps ``σ_k = 1``), so that nothing about its OUT records leaks into the model.
        After training the map is folded into the first layer (``W' = diag(1/σ_k) W``,
        ``b' = b - (μ_k/σ_k) W``): the stored model takes raw features, like any other.
        ``"auto"`` (default): on unless every feature value lies in [0, 1] (pixels over their
        maximum, binary and one-hot indicators: the scale the defaults are tuned for), and
        always off with ``dp`` (the statistics of a model's own records are not private;
        ``standardize: true`` with ``dp`` is refused). Raw
        features of very different scales (e.g. scikit-learn's breast_cancer, areas in the
        thousands beside ratios below 1) otherwise leave the default MLP below the
        majority-class rate.
    """

    standardize: bool | Literal["auto"] = "auto"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (isinstance(self.standardize, bool) or self.standardize == "auto"):
            _fail(self, "standardize", f"expected true, false or 'auto', got {self.standardize!r}")
        if self.standardize is True and self.dp is not None:
            _fail(
                self,
                "standardize",
                "standardising with each model's own statistics is not differentially private "
                "(the means and deviations of its training records reach the model without "
                "noise, outside the accountant's epsilon); scale the features beforehand with "
                "public statistics, or set standardize: false",
            )


@dataclass(frozen=True)
class TorchCNNConfig(TorchTrainConfig):
    """``torch-cnn``: conv blocks then an MLP head (see :class:`TorchTrainConfig`).

    Attributes
    ----------
    channels : tuple of int
        Output channels of each ``3×3 conv → ReLU → 2×2 max-pool`` block.
    """

    hidden_sizes: tuple[int, ...] = (128,)
    activation: ActivationName = "relu"
    channels: tuple[int, ...] = (32, 64)

    def __post_init__(self) -> None:
        super().__post_init__()
        _as_int_tuple(self, "channels")
        if not self.channels:
            _fail(self, "channels", "expected at least one convolution block")
        if self.dp is not None:
            _fail(
                self,
                "dp",
                "DP-SGD is implemented for torch-mlp only; train CNNs with DP-SGD with the "
                "opacus recipe (make_recipe('opacus', model='pkg.module:factory', ...))",
            )


# ----------------------------------------------------------------------------- results
@dataclass
class ModelResult:
    """One trained model, as handed to the run store.

    Attributes
    ----------
    model_id : int
        Row of the keep matrix.
    observations : ndarray of shape (n_records, q, C), float32
        Logits of the model on every record and query.
    train_acc, test_acc : float
        Accuracy (identity query) on the model's IN records and on its OUT records (NaN when
        it has none).
    n_train : int
        Number of IN records.
    train_seconds, query_seconds : float
        Wall time of training and querying. In a vectorised chunk of ``K`` models these are the
        chunk's times divided by ``K``.
    weights : object
        What the store saves: ``{name: ndarray}`` (safetensors), a scikit-learn estimator
        (skops), or None (not persisted).
    weights_format : {"safetensors", "skops"} or None
    final_loss : float or None
        Mean training loss over the last epoch (torch recipes).
    privacy : dict or None
        DP-SGD runs: ``epsilon`` (by the accountant), ``delta``, ``accountant``,
        ``noise_multiplier``, ``max_grad_norm``, ``sample_rate``, ``steps``; None otherwise.
    """

    model_id: int
    observations: NDArray[np.float32]
    train_acc: float
    test_acc: float
    n_train: int
    train_seconds: float
    query_seconds: float
    weights: Any = None
    weights_format: WeightsFormat | None = None
    final_loss: float | None = None
    privacy: dict[str, Any] | None = None


def accuracies(
    logits: NDArray, y: NDArray[np.int64], keep_row: NDArray[np.bool_]
) -> tuple[float, float]:
    """(train, test) accuracy of ``argmax logits`` ``(n, C)`` on IN / OUT records of one model.

    NaN for a side with no records.
    """
    correct = np.argmax(logits, axis=-1) == y
    n_in = int(keep_row.sum())
    n_out = keep_row.size - n_in
    train = float(correct[keep_row].mean()) if n_in else float("nan")
    test = float(correct[~keep_row].mean()) if n_out else float("nan")
    return train, test


# ----------------------------------------------------------------------------- recipe base
class Recipe(ABC):
    """A registered way of training models. Subclasses set :attr:`name` and
    :attr:`config_class` and implement :meth:`train_chunk`."""

    name: ClassVar[str]
    config_class: ClassVar[type]
    #: Whether :meth:`train_chunk` trains many models in one vectorised computation (the
    #: engine then sizes chunks from the memory budget) or one after another.
    vectorised: ClassVar[bool] = False

    def __init__(self, config: Any) -> None:
        if not isinstance(config, self.config_class):
            raise ValidationError(
                f"recipe {self.name!r}: expected a {self.config_class.__name__}, got "
                f"{type(config).__name__}"
            )
        self.config = config

    def describe(self) -> dict[str, Any]:
        """JSON-able description of the recipe and config (the input of the config hash)."""
        return {"recipe": self.name, "config": _jsonable(dataclasses.asdict(self.config))}  # type: ignore[call-overload]

    def models_per_chunk(self) -> int | None:
        """Models per work unit, or None to size chunks from the memory budget
        (:meth:`bytes_per_model`)."""
        return None

    def max_models_per_chunk(self, input_shape: tuple[int, ...], n_classes: int) -> int | None:
        """An upper bound on the models of a memory-sized chunk (None: none). Smaller chunks
        are written to the store, and counted by the progress bar, sooner."""
        return None

    def progress_epochs(self) -> int:
        """Epochs per model that the training bar counts (1: the bar moves per model). Recipes
        that report each finished epoch (:func:`miaudit._progress.report_epoch`) return their
        epoch count, so the bar moves while a group of models trains."""
        return 1

    @abstractmethod
    def bytes_per_model(
        self, input_shape: tuple[int, ...], n_classes: int, n_records: int, n_queries: int
    ) -> int:
        """Estimated peak memory of one model while its chunk trains and is queried."""

    @abstractmethod
    def train_chunk(
        self,
        X: NDArray[np.float32],
        y: NDArray[np.int64],
        n_classes: int,
        keep: NDArray[np.bool_],
        model_ids: Sequence[int],
        queries: Sequence[str],
    ) -> list[ModelResult]:
        """Train the models ``model_ids`` (``keep[i]`` is model ``model_ids[i]``'s IN mask) and
        query each on all records ``X`` with ``queries``."""


def check_chunk(keep: NDArray[np.bool_], model_ids: Sequence[int], n_records: int) -> None:
    """Raise unless ``keep`` has one row of ``n_records`` per model id, each with an IN record."""
    shape = np.shape(keep)
    if len(shape) != 2 or shape != (len(model_ids), n_records):
        raise ValidationError(
            f"keep: expected one row per model, shape ({len(model_ids)}, {n_records}), got {shape}"
        )
    empty = [int(m) for m, row in zip(model_ids, keep, strict=True) if not row.any()]
    if empty:
        raise ValidationError(f"keep: models {empty[:5]} have no training record")


def _jsonable(value: Any) -> Any:
    """Tuples → lists, numpy scalars → Python, recursively (for canonical JSON)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


#: Training recipes: the torch ensembles and the scikit-learn/callable recipes, then the
#: ``miaudit.recipes`` entry points of other packages.
RECIPES: Registry[type[Recipe]] = Registry(
    "training recipe",
    modules=(
        "miaudit.train.ensemble",
        "miaudit.train.sklearn_recipe",
        "miaudit.train.opacus_recipe",
    ),
    entry_points="miaudit.recipes",
)


def get(name: str) -> type[Recipe]:
    """The recipe class registered as ``name`` (the error lists valid names)."""
    return RECIPES.get(name)


def names() -> list[str]:
    """Sorted names of the registered recipes."""
    return RECIPES.names()


def make_config(name: str, **params: Any) -> Any:
    """The config dataclass of recipe ``name`` built from ``params``.

    Raises
    ------
    ValidationError
        For a parameter the config does not have (the message lists the valid ones) or a bad
        value (the message names the field).
    """
    cls = get(name).config_class
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(params) - set(valid))
    if unknown:
        close = difflib.get_close_matches(unknown[0], valid, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ParameterError(
            f"recipe {name!r}: unknown parameter(s) {unknown}.{hint} Valid parameters: "
            f"{', '.join(valid)}",
            params=tuple(unknown),
        )
    return cls(**params)


def make_recipe(name: str, config: Any = None, **params: Any) -> Recipe:
    """Recipe ``name`` with ``config`` (its config dataclass) or keyword ``params``."""
    cls = get(name)
    if config is not None and params:
        raise ValidationError(f"recipe {name!r}: give either config or parameters, not both")
    return cls(config if config is not None else make_config(name, **params))
