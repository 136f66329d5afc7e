"""Query adapters: one interface over the models miaudit can attack.

A :class:`Target` maps a batch of features ``X`` of shape ``(n, *input_shape)`` to outputs of
shape ``(n, C)`` — logits (``kind == "logits"``) or probabilities (``kind == "probs"``).

Adapters: scikit-learn estimators (``predict_proba``), torch modules, and any Python callable.
Model files are loaded without pickle: ``.skops`` for scikit-learn (only types skops trusts by
default, unless the user names more), ``.safetensors`` for torch weights (see
:func:`miaudit.targets.load_target`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from miaudit.exceptions import MiauditError, ValidationError

OutputKind = Literal["logits", "probs"]

#: Records per forward pass when querying a torch module.
TORCH_QUERY_BATCH = 4096

__all__ = [
    "CallableTarget",
    "SklearnTarget",
    "Target",
    "TorchTarget",
    "load_callable",
    "load_skops",
    "load_target",
]


@runtime_checkable
class Target(Protocol):
    """A model that can be queried: ``predict(X) -> (n, C)`` outputs of kind ``kind``."""

    kind: OutputKind

    def predict(self, X: NDArray) -> NDArray: ...


@dataclass
class SklearnTarget:
    """A fitted scikit-learn classifier; outputs are ``predict_proba`` probabilities.

    Features are flattened to ``(n, -1)`` before prediction. Classes the estimator never saw
    get probability 0 in the column of their label (``estimator.classes_`` are mapped to
    ``0..n_classes-1`` columns).
    """

    estimator: Any
    n_classes: int | None = None
    kind: OutputKind = "probs"

    def predict(self, X: NDArray) -> NDArray:
        X2 = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
        proba = np.asarray(self.estimator.predict_proba(X2), dtype=np.float64)
        classes = np.asarray(self.estimator.classes_).astype(np.int64)
        n_classes = self.n_classes or int(classes.max()) + 1
        if classes.size == n_classes and np.array_equal(classes, np.arange(n_classes)):
            return proba
        full = np.zeros((len(X2), n_classes))
        full[:, classes] = proba
        return full


@dataclass
class TorchTarget:
    """A torch module returning logits; queried in eval mode without gradients, in batches."""

    module: Any
    kind: OutputKind = "logits"
    batch_size: int = TORCH_QUERY_BATCH

    def predict(self, X: NDArray) -> NDArray:
        import torch

        self.module.eval()
        device = next(self.module.parameters()).device
        outs = []
        with torch.no_grad():
            for start in range(0, len(X), self.batch_size):
                xb = torch.as_tensor(
                    np.asarray(X[start : start + self.batch_size]),
                    dtype=torch.float32,
                    device=device,
                )
                outs.append(self.module(xb).double().cpu().numpy())
        return np.concatenate(outs) if outs else np.zeros((0, 0))


@dataclass
class CallableTarget:
    """Any function ``fn(X) -> (n, C)`` returning logits or probabilities (say which)."""

    fn: Callable[[NDArray], Any]
    kind: OutputKind = "logits"

    def predict(self, X: NDArray) -> NDArray:
        out = np.asarray(self.fn(X), dtype=np.float64)
        if out.ndim != 2 or out.shape[0] != len(X):
            raise ValidationError(
                f"target callable: expected outputs of shape ({len(X)}, n_classes), got {out.shape}"
            )
        return out


def load_callable(spec: str) -> Callable[..., Any]:
    """Import ``"package.module:function"`` and return the attribute."""
    if ":" not in spec:
        raise ValidationError(
            f"callable {spec!r}: expected 'module:function' (e.g. 'mypkg.models:predict')"
        )
    mod_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(mod_name)
    except ImportError as exc:
        raise MiauditError(f"callable {spec!r}: cannot import module {mod_name!r}: {exc}") from None
    try:
        obj = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise MiauditError(f"callable {spec!r}: module {mod_name!r} has no {attr!r}") from None
    if not callable(obj):
        raise ValidationError(f"callable {spec!r}: {attr!r} is not callable")
    return obj


def load_skops(path: str | Path, trusted: Sequence[str] = ()) -> Any:
    """Load a scikit-learn model saved with ``skops.io.dump``, without pickle.

    Only types that skops trusts by default, plus those listed in ``trusted``, may appear in the
    file; otherwise the error lists the untrusted types so the user can review and allow them.
    """
    import skops.io as sio

    p = Path(path)
    if not p.is_file():
        raise MiauditError(f"model file not found: {p}")
    untrusted = [t for t in sio.get_untrusted_types(file=p) if t not in set(trusted)]
    if untrusted:
        raise MiauditError(
            f"{p}: the file contains types that are not trusted by default: {untrusted}. "
            "Review them; to load the file anyway, list them under target.trusted in the config "
            "(trusted=[...] from Python)"
        )
    return sio.load(p, trusted=list(trusted) or None)


def load_target(
    spec: str,
    n_classes: int,
    *,
    kind: OutputKind | None = None,
    trusted: Sequence[str] = (),
) -> Target:
    """The :class:`Target` named by ``spec``.

    ``spec`` is a ``.skops`` file (a scikit-learn classifier; outputs are probabilities) or
    ``module:function`` (a Python callable returning logits, or probabilities if
    ``kind="probs"``). Torch weights in ``.safetensors`` need the architecture: wrap the
    module in a callable. Pickle files are refused.
    """
    path = Path(spec)
    if path.suffix == ".skops":
        if kind == "logits":
            raise ValidationError(
                f"{path}: a scikit-learn model returns probabilities, "
                "not logits (set output_kind: probs or leave it unset)"
            )
        return SklearnTarget(load_skops(path, trusted), n_classes=n_classes)
    if path.suffix in {".pkl", ".pickle", ".joblib"}:
        raise MiauditError(
            f"{path}: pickle files can run arbitrary code when loaded and are not read. Save "
            "the model with skops (skops.io.dump) or give a 'module:function' callable"
        )
    if ":" in spec and not path.exists():
        return CallableTarget(load_callable(spec), kind=kind or "logits")
    raise ValidationError(
        f"target.model {spec!r}: expected a .skops file or 'module:function' (a callable "
        "returning logits or probabilities)"
    )
