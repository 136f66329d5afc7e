"""Query adapters: one interface over the models miaudit can attack.

A :class:`Target` maps a batch of features ``X`` of shape ``(n, *input_shape)`` to outputs of
shape ``(n, C)`` — logits (``kind == "logits"``) or probabilities (``kind == "probs"``).

Adapters: scikit-learn estimators (``predict_proba``), torch modules, any Python callable, an HTTP
endpoint (:class:`miaudit.targets.http.HttpTarget`) and output-restricting wrappers
(:mod:`miaudit.targets.restrict`: top-k, rounding, temperature, label only, noise).

Threat model: what a target returns
    A target may declare what it returns in an ``outputs`` attribute, a set of
    :data:`CAPABILITIES`: ``"logits"`` (the full logit vector), ``"probs"`` (the full probability
    vector), ``"top_k"`` (only the k largest probabilities), ``"label"`` (the predicted class
    only), ``"loss"`` (the loss on a labelled record), ``"gradients"`` (white-box access to
    per-record gradients). A capability implies the weaker ones (:data:`IMPLIES`: logits ⇒ probs
    ⇒ top_k ⇒ label, probs ⇒ loss). A target without ``outputs`` (or with ``outputs=None``)
    returns what its ``kind`` says: the full logit or probability vector.
    :func:`capabilities` resolves this; :func:`check_capabilities` lets the attack stage refuse,
    with a message naming both sides, an attack whose signal the target cannot give (LiRA
    against a label-only target). Whatever it declares, ``predict`` always returns ``(n, C)``:
    label-only targets return one-hot rows, top-k targets zeros outside the top k.
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

from miaudit.exceptions import MiauditError, MissingRequirementError, ValidationError
from miaudit.registry import Registry

OutputKind = Literal["logits", "probs"]
Capability = Literal["logits", "probs", "top_k", "label", "loss", "gradients"]

#: Every capability a target may declare in its ``outputs`` attribute.
CAPABILITIES: tuple[Capability, ...] = ("logits", "probs", "top_k", "label", "loss", "gradients")

#: What each capability gives for free: the probabilities are the softmax of the logits, the
#: top k and the label are read off the probabilities, the loss ``-log p_y`` is computed from them.
IMPLIES: dict[str, frozenset[str]] = {
    "logits": frozenset({"probs", "top_k", "label", "loss"}),
    "probs": frozenset({"top_k", "label", "loss"}),
    "top_k": frozenset({"label"}),
    "label": frozenset(),
    "loss": frozenset(),
    "gradients": frozenset(),
}

#: The capability each signal of :mod:`miaudit.signals` (and of the label-only and white-box
#: attacks) needs from the target. A signal not listed needs the full probability vector.
SIGNAL_NEEDS: dict[str, Capability] = {
    "logit_scaled_confidence": "probs",
    "cross_entropy_loss": "loss",
    "confidence": "probs",
    "entropy": "probs",
    "modified_entropy": "probs",
    "margin": "probs",
    "correct": "label",
    "augmented_correctness": "label",
    "boundary_distance": "label",
    "gradient_norm": "gradients",
    "white_box_features": "gradients",
}

#: What each capability means, for error messages.
DESCRIBE: dict[str, str] = {
    "logits": "logit vector ('logits')",
    "probs": "full probability vector ('probs')",
    "top_k": "top-k probabilities ('top_k')",
    "label": "predicted label ('label')",
    "loss": "loss ('loss')",
    "gradients": "per-record gradients ('gradients')",
}

#: How a report names the access a target gives, strongest capability first.
ACCESS: tuple[tuple[str, str], ...] = (
    ("logits", "full outputs (logits)"),
    ("probs", "probabilities"),
    ("top_k", "top-k scores"),
    ("label", "label only"),
)


def describe_access(caps: frozenset[str]) -> str:
    """The threat model in words, named by the strongest capability: e.g. ``"label only"``.

    >>> describe_access(frozenset({"label", "top_k"}))
    'top-k scores'
    """
    return next((text for cap, text in ACCESS if cap in caps), ", ".join(sorted(caps)))


#: Attacks that need only the predicted label, suggested when a target gives no more.
LABEL_ONLY_ATTACKS = ("correctness", "label_only_augmentation", "label_only_boundary")

#: Records per forward pass when querying a torch module.
TORCH_QUERY_BATCH = 4096

__all__ = [
    "CAPABILITIES",
    "IMPLIES",
    "SIGNAL_NEEDS",
    "TARGET_LOADERS",
    "CallableTarget",
    "SklearnTarget",
    "Target",
    "TorchTarget",
    "capabilities",
    "check_capabilities",
    "describe_access",
    "load_callable",
    "load_skops",
    "load_target",
    "predict_labels",
    "required_outputs",
]


@runtime_checkable
class Target(Protocol):
    """A model that can be queried: ``predict(X) -> (n, C)`` outputs of kind ``kind``.

    Optional members, read with :func:`getattr` so that any object with ``kind`` and ``predict``
    stays a target: ``outputs`` (a set of :data:`CAPABILITIES`, or None for "what ``kind``
    says") and ``predict_labels(X) -> (n,)`` (the label the model reports, when it reports one
    next to restricted scores; see :func:`predict_labels`).
    """

    kind: OutputKind

    def predict(self, X: NDArray) -> NDArray: ...


def _closure(declared: Any, where: str) -> frozenset[str]:
    """``declared`` (a capability name or an iterable of names) with everything it implies."""
    names = {declared} if isinstance(declared, str) else set(declared)
    unknown = sorted(str(n) for n in names if n not in IMPLIES)
    if unknown:
        raise ValidationError(
            f"{where}: unknown output capabilities {unknown}; valid: {', '.join(CAPABILITIES)}"
        )
    out = set(names)
    for name in names:
        out |= IMPLIES[name]
    return frozenset(out)


def capabilities(target: Any) -> frozenset[str]:
    """Everything ``target`` can return: its declared ``outputs`` and what they imply.

    Parameters
    ----------
    target : Target
        Any object with ``kind`` and ``predict``; ``outputs`` is optional.

    Returns
    -------
    frozenset of str
        Capabilities from :data:`CAPABILITIES`. A target without ``outputs`` returns its
        ``kind`` (``"logits"`` or ``"probs"``) and what that implies.
    """
    declared = getattr(target, "outputs", None)
    name = type(target).__name__
    if declared is None:
        kind = getattr(target, "kind", None)
        if kind not in ("logits", "probs"):
            raise ValidationError(
                f"target {name}: kind must be 'logits' or 'probs', got {kind!r} (or declare "
                f"outputs, a set of {', '.join(CAPABILITIES)})"
            )
        declared = kind
    return _closure(declared, f"target {name}.outputs")


def _info(attack: Any) -> Any:
    """The :class:`~miaudit.attacks.AttackInfo` of an attack, its class, or the info itself."""
    return getattr(attack, "info", attack)


def required_outputs(attack: Any) -> frozenset[str]:
    """The capabilities an attack needs from the target.

    Parameters
    ----------
    attack : AttackInfo, Attack or Attack subclass

    Returns
    -------
    frozenset of str
        ``info.needs_capabilities`` (all needed) when declared; otherwise derived from the
        signals it reads (``info.signals``) through :data:`SIGNAL_NEEDS` — a signal not listed
        there needs the full probabilities, and so does an attack that reads raw outputs
        (``info.needs_outputs``).
    """
    info = _info(attack)
    names = set(info.needs_capabilities)
    if not names:
        names = {SIGNAL_NEEDS.get(str(s), "probs") for s in info.signals}
        if info.needs_outputs:
            names.add("probs")
    _closure(names, f"attack {info.name!r}.needs_capabilities")
    return frozenset(names)


def check_capabilities(attack: Any, target: Any) -> None:
    """Refuse an attack whose signal the target cannot give.

    Parameters
    ----------
    attack : AttackInfo, Attack or Attack subclass
        What the attack needs: see :func:`required_outputs`.
    target : Target

    Raises
    ------
    MissingRequirementError
        Naming the attack, what it needs, what the target returns and which attacks fit, e.g.
        LiRA (logit-scaled confidence, needs probabilities) against a label-only target.
    """
    have = capabilities(target)
    missing = sorted(required_outputs(attack) - have)
    if not missing:
        return
    info = _info(attack)
    name = info.name
    signals = ", ".join(info.signals) or "raw outputs"
    hint = (
        f"; attacks that need only labels: {', '.join(LABEL_ONLY_ATTACKS)}"
        if "label" in have
        else ""
    )
    needs = " and ".join(DESCRIBE[m] for m in missing)
    raise MissingRequirementError(
        f"attack {name!r} needs the target's {needs} (its signal: {signals}), "
        f"but target {type(target).__name__} returns only: {', '.join(sorted(have)) or 'nothing'}"
        f"{hint}"
    )


def predict_labels(target: Any, X: NDArray) -> NDArray[np.int64]:
    """The class the target predicts for each record, shape ``(n,)``.

    Uses ``target.predict_labels(X)`` when the target has it (a restricted API that reports
    the label next to rounded or noisy scores), else ``argmax`` of ``target.predict(X)``
    (ties go to the lowest class index).
    """
    fn = getattr(target, "predict_labels", None)
    if callable(fn):
        out = np.asarray(fn(X))
    else:
        out = np.asarray(target.predict(X)).argmax(axis=-1)
    if out.shape != (len(X),):
        raise ValidationError(
            f"target {type(target).__name__}: expected {len(X)} labels, got shape {out.shape}"
        )
    return out.astype(np.int64)


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
    outputs: frozenset[str] | None = None

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
    """A torch module returning logits; queried in eval mode without gradients, in batches.

    Holding the module, it also gives white-box access: ``outputs`` defaults to the logits
    and per-record gradients (:mod:`miaudit.attacks.white_box`).
    """

    module: Any
    kind: OutputKind = "logits"
    batch_size: int = TORCH_QUERY_BATCH
    outputs: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.outputs is None:
            self.outputs = frozenset({self.kind, "gradients"})

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
    outputs: frozenset[str] | None = None

    def predict(self, X: NDArray) -> NDArray:
        out = np.asarray(self.fn(X), dtype=np.float64)
        if out.ndim != 2 or out.shape[0] != len(X):
            raise ValidationError(
                f"target callable: expected outputs of shape ({len(X)}, n_classes), got {out.shape}"
            )
        return out


def load_callable(spec: str) -> Callable[..., Any]:
    """Import ``"package.module:function"`` and return the attribute.

    Refused (:class:`~miaudit.trust.UntrustedCodeError`, nothing imported) while a config
    without ``trust_code: true`` is validated or run (:mod:`miaudit.trust`).
    """
    if ":" not in spec:
        raise ValidationError(
            f"callable {spec!r}: expected 'module:function' (e.g. 'mypkg.models:predict')"
        )
    from miaudit.trust import require_code_trust

    require_code_trust("callable", spec)
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


TargetLoader = Callable[[str, int, "OutputKind | None", Sequence[str]], Target]
"""``loader(spec, n_classes, kind, trusted) -> Target``."""

#: How ``target.model`` is loaded, by the file's suffix (``".skops"``), or ``"callable"`` for a
#: ``module:function`` spec; a new model format is one registered loader.
TARGET_LOADERS: Registry[TargetLoader] = Registry("target loader")


@TARGET_LOADERS.register(".skops")
def _skops_target(
    spec: str, n_classes: int, kind: OutputKind | None, trusted: Sequence[str]
) -> Target:
    if kind == "logits":
        raise ValidationError(
            f"{spec}: a scikit-learn model returns probabilities, "
            "not logits (set output_kind: probs or leave it unset)"
        )
    return SklearnTarget(load_skops(spec, trusted), n_classes=n_classes)


def _refuse_pickle(
    spec: str, n_classes: int, kind: OutputKind | None, trusted: Sequence[str]
) -> Target:
    raise MiauditError(
        f"{spec}: pickle files can run arbitrary code when loaded and are not read. Save "
        "the model with skops (skops.io.dump) or give a 'module:function' callable"
    )


for _suffix in (".pkl", ".pickle", ".joblib"):
    TARGET_LOADERS.add(_suffix, _refuse_pickle)
del _suffix


@TARGET_LOADERS.register("callable")
def _callable_target(
    spec: str, n_classes: int, kind: OutputKind | None, trusted: Sequence[str]
) -> Target:
    return CallableTarget(load_callable(spec), kind=kind or "logits")


def load_target(
    spec: str,
    n_classes: int,
    *,
    kind: OutputKind | None = None,
    trusted: Sequence[str] = (),
) -> Target:
    """The :class:`Target` named by ``spec``, through :data:`TARGET_LOADERS`.

    ``spec`` is a ``.skops`` file (a scikit-learn classifier; outputs are probabilities) or
    ``module:function`` (a Python callable returning logits, or probabilities if
    ``kind="probs"``). Torch weights in ``.safetensors`` need the architecture: wrap the
    module in a callable. Pickle files are refused.
    """
    path = Path(spec)
    if path.suffix.lower() in TARGET_LOADERS:
        key = path.suffix.lower()
    elif ":" in spec and not path.exists():
        key = "callable"
    else:
        raise ValidationError(
            f"target.model {spec!r}: expected a .skops file or 'module:function' (a callable "
            "returning logits or probabilities)"
        )
    return TARGET_LOADERS.get(key)(spec, n_classes, kind, trusted)
