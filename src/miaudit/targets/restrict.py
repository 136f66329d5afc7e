r"""Output-restricting wrappers: a weaker threat model, or a defence, around any target.

Each wrapper takes a :class:`~miaudit.targets.Target` and returns less than it: an API that
shows only the top classes, rounds its scores, sharpens or flattens them, shows only the label,
or perturbs the scores while keeping the label (MemGuard-like). Wrapped targets are targets
again, so they stack (``TopK(Rounded(t, 2), 3)``) and go anywhere a target goes. Every
wrapper declares what it still returns in ``outputs`` (:func:`miaudit.targets.capabilities`),
so that :func:`miaudit.targets.check_capabilities` refuses an attack it cannot feed.

===============================  ==============================================  ==============
wrapper                          output                                          returns
===============================  ==============================================  ==============
``TopK(t, k)``                   the k largest probabilities, 0 elsewhere        top_k, label
``Rounded(t, d)``                probabilities rounded to d decimals             probs, label
``Temperature(t, T)``            :math:`\mathrm{softmax}(z / T)`                 as ``t``
``LabelOnly(t)``                 one-hot of the predicted label                  label
``NoisyOutputs(t, sigma, seed)`` :math:`\mathrm{softmax}(\log p + \sigma\,\xi)`,  probs, label
                                 label kept (MemGuard-like)
===============================  ==============================================  ==============

The label a restricted API reports is the label of the unrestricted model (as a real API's
"top class" field): every wrapper has ``predict_labels(X)`` giving the inner target's label,
which :func:`miaudit.targets.predict_labels` (and so every label-only attack) uses. Rounding,
top-k, noise and temperature therefore never change what a label-only attack sees — the
observation of Choquette-Choo et al. (ICML 2021) that output perturbation such as MemGuard
(Jia et al., CCS 2019) leaves label-only attacks intact.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from miaudit._validation import check_count
from miaudit.exceptions import ValidationError
from miaudit.registry import Registry
from miaudit.signals import OutputKind, log_probabilities
from miaudit.targets import capabilities, predict_labels

__all__ = [
    "RESTRICTIONS",
    "LabelOnly",
    "NoisyOutputs",
    "Rounded",
    "Temperature",
    "TopK",
    "probabilities",
    "restrict",
]

#: Largest number of decimals :class:`Rounded` accepts (float64 holds about 15 decimal digits).
MAX_DECIMALS = 15


def probabilities(target: Any, X: NDArray) -> NDArray[np.float64]:
    """The inner target's outputs on ``X`` as probabilities, shape ``(n, C)``, float64.

    Logits go through a softmax; probabilities are taken as they are (an inner top-k or
    rounded target's rows need not sum to 1) after a range check.
    """
    out = np.asarray(target.predict(X), dtype=np.float64)
    if out.ndim != 2 or out.shape[0] != len(X):
        raise ValidationError(
            f"target {type(target).__name__}: expected outputs of shape ({len(X)}, n_classes), "
            f"got {out.shape}"
        )
    if target.kind == "logits":
        return np.exp(log_probabilities(out, kind="logits"))
    if out.size and not (np.all(np.isfinite(out)) and out.min() >= 0.0 and out.max() <= 1.0):
        raise ValidationError(
            f"target {type(target).__name__}: probabilities must lie in [0, 1], got values in "
            f"[{np.nanmin(out):.4g}, {np.nanmax(out):.4g}]"
        )
    return out


def _restricted(inner: Any, allowed: frozenset[str]) -> frozenset[str]:
    """Declared outputs of a wrapper: what it allows of what the inner target gives."""
    return frozenset(capabilities(inner) & allowed)


@dataclass
class TopK:
    """Only the ``k`` largest probabilities, the others set to 0 (not renormalised).

    Parameters
    ----------
    target : Target
    k : int
        Classes shown, ``k >= 1``; ``k=1`` is the "top-1 with its score" API.
    """

    target: Any
    k: int
    kind: OutputKind = field(default="probs", init=False)
    outputs: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        self.k = check_count(self.k, "k", 1)
        self.outputs = _restricted(self.target, frozenset({"top_k", "label"}))

    def predict(self, X: NDArray) -> NDArray[np.float64]:
        p = probabilities(self.target, X)
        if self.k >= p.shape[1]:
            return p
        # the k largest per row; ties at the k-th value go to the lowest class index
        order = np.argsort(-p, axis=1, kind="stable")[:, : self.k]
        out = np.zeros_like(p)
        rows = np.arange(len(p))[:, None]
        out[rows, order] = p[rows, order]
        return out

    def predict_labels(self, X: NDArray) -> NDArray[np.int64]:
        return predict_labels(self.target, X)


@dataclass
class Rounded:
    """Probabilities rounded to ``decimals`` decimals (``np.round``, half to even).

    Rounded rows no longer sum to 1, which :mod:`miaudit.signals` refuses; with ``normalize``
    (the default) each row is divided by its sum — the attacker's own post-processing, which
    keeps every ratio the API shows — and a row rounded to all zeros becomes uniform.
    ``normalize=False`` returns the API's values as they are. A rounded probability can be 0:
    signals that take its logarithm (loss, logit-scaled confidence) are clipped by
    :mod:`miaudit.signals`. The predicted label is the unrounded one (:func:`predict_labels`);
    ``argmax`` of the rounded vector may tie.
    """

    target: Any
    decimals: int
    normalize: bool = True
    kind: OutputKind = field(default="probs", init=False)
    outputs: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        self.decimals = check_count(self.decimals, "decimals", 0)
        if self.decimals > MAX_DECIMALS:
            raise ValidationError(f"decimals: expected at most {MAX_DECIMALS}, got {self.decimals}")
        self.outputs = _restricted(self.target, frozenset({"probs", "top_k", "label", "loss"}))

    def predict(self, X: NDArray) -> NDArray[np.float64]:
        out = np.round(probabilities(self.target, X), self.decimals)
        if not self.normalize:
            return out
        sums = out.sum(axis=1, keepdims=True)
        n_classes = out.shape[1]
        return np.where(sums > 0, out / np.where(sums > 0, sums, 1.0), 1.0 / n_classes)

    def predict_labels(self, X: NDArray) -> NDArray[np.int64]:
        return predict_labels(self.target, X)


@dataclass
class Temperature:
    r"""Outputs at temperature ``T``: logits :math:`z / T` (or :math:`\log p / T` for a target
    that returns probabilities, which gives the same softmax).

    ``T > 1`` flattens the probabilities, ``T < 1`` sharpens them; the label is unchanged.
    """

    target: Any
    temperature: float
    kind: OutputKind = field(default="logits", init=False)
    outputs: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        t = float(self.temperature)
        if not (np.isfinite(t) and t > 0):
            raise ValidationError(f"temperature: expected a positive number, got {t!r}")
        self.temperature = t
        self.outputs = capabilities(self.target) - {"gradients"}

    def predict(self, X: NDArray) -> NDArray[np.float64]:
        out = np.asarray(self.target.predict(X), dtype=np.float64)
        if self.target.kind == "probs":
            out = log_probabilities(out, kind="probs")
        return out / self.temperature

    def predict_labels(self, X: NDArray) -> NDArray[np.int64]:
        return predict_labels(self.target, X)


@dataclass
class LabelOnly:
    """Only the predicted label, as one-hot rows ``(n, C)`` (``kind="probs"``)."""

    target: Any
    kind: OutputKind = field(default="probs", init=False)
    outputs: frozenset[str] = field(default=frozenset({"label"}), init=False)

    def predict(self, X: NDArray) -> NDArray[np.float64]:
        out = np.asarray(self.target.predict(X))
        labels = predict_labels(self.target, X)
        onehot = np.zeros(out.shape, dtype=np.float64)
        onehot[np.arange(len(labels)), labels] = 1.0
        return onehot

    def predict_labels(self, X: NDArray) -> NDArray[np.int64]:
        return predict_labels(self.target, X)


def _record_seeds(X: NDArray, seed: int) -> list[int]:
    """One 64-bit seed per record: BLAKE2b of ``seed`` and the record's bytes."""
    rows = np.ascontiguousarray(np.asarray(X, dtype=np.float64).reshape(len(X), -1))
    key = int(seed).to_bytes(8, "little", signed=True)
    return [
        int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8, key=key).digest(), "little")
        for row in rows
    ]


@dataclass
class NoisyOutputs:
    r"""MemGuard-like defence: noisy scores, same label.

    Returns :math:`\mathrm{softmax}(\log p + \sigma\,\xi)` with :math:`\xi \sim N(0, I)`; when
    the noise changes the top class, the scores of the old and the new top class are swapped,
    so the reported label never changes (MemGuard, Jia et al., CCS 2019, keeps the label too;
    it chooses the noise adversarially against an attack model, this wrapper draws it at
    random). The noise of a record is a function of ``seed`` and the record's bytes, so that
    querying the same record again returns the same scores and averaging repeated queries
    removes nothing.

    Parameters
    ----------
    target : Target
    sigma : float
        Standard deviation of the noise on the log-probabilities, ``>= 0``.
    seed : int
    """

    target: Any
    sigma: float
    seed: int = 0
    kind: OutputKind = field(default="probs", init=False)
    outputs: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        s = float(self.sigma)
        if not (np.isfinite(s) and s >= 0):
            raise ValidationError(f"sigma: expected a non-negative number, got {s!r}")
        self.sigma = s
        self.outputs = _restricted(self.target, frozenset({"probs", "top_k", "label", "loss"}))

    def predict(self, X: NDArray) -> NDArray[np.float64]:
        p = probabilities(self.target, X)
        labels = predict_labels(self.target, X)
        noise = (
            np.stack(
                [
                    np.random.default_rng(s).standard_normal(p.shape[1])
                    for s in _record_seeds(X, self.seed)
                ]
            )
            if len(X)
            else np.zeros_like(p)
        )
        z = np.log(np.maximum(p, np.finfo(np.float64).tiny)) + self.sigma * noise
        rows = np.arange(len(z))
        top = z.argmax(axis=1)
        z_label, z_top = z[rows, labels].copy(), z[rows, top].copy()
        z[rows, top] = z_label
        z[rows, labels] = z_top
        return np.exp(log_probabilities(z, kind="logits"))

    def predict_labels(self, X: NDArray) -> NDArray[np.int64]:
        return predict_labels(self.target, X)


# ------------------------------------------------------------------------ from a config
def _noise(target: Any, value: Any) -> NoisyOutputs:
    params = value if isinstance(value, dict) else {"sigma": value}
    return NoisyOutputs(target, **params)


#: Restrictions by the key a config gives them: ``{top_k: 1}``, ``{round: 2}``,
#: ``{temperature: 2.0}``, ``{label_only: true}``, ``{noise: 0.5}`` or ``{noise: {sigma, seed}}``.
RESTRICTIONS: Registry[Any] = Registry("output restriction")
RESTRICTIONS.add("top_k", lambda t, v: TopK(t, v))
RESTRICTIONS.add("round", lambda t, v: Rounded(t, v))
RESTRICTIONS.add("temperature", lambda t, v: Temperature(t, v))
RESTRICTIONS.add("label_only", lambda t, v: LabelOnly(t) if v else t)
RESTRICTIONS.add("noise", _noise)


def restrict(target: Any, specs: Sequence[Mapping[str, Any]]) -> Any:
    """``target`` wrapped by each restriction of ``specs`` in order (innermost first).

    Parameters
    ----------
    target : Target
    specs : sequence of mappings
        Each with one key of :data:`RESTRICTIONS` and its value, e.g.
        ``[{"round": 1}, {"top_k": 1}]`` is ``TopK(Rounded(target, 1), 1)``.

    Examples
    --------
    >>> from miaudit.targets import CallableTarget
    >>> t = restrict(CallableTarget(lambda X: X, kind="probs"), [{"round": 1}, {"top_k": 1}])
    >>> type(t).__name__, type(t.target).__name__
    ('TopK', 'Rounded')
    """
    for i, spec in enumerate(specs):
        if not isinstance(spec, Mapping) or len(spec) != 1:
            raise ValidationError(
                f"restrict[{i}]: expected one key ({', '.join(RESTRICTIONS.names())}) with its "
                f"value, got {spec!r}"
            )
        ((key, value),) = spec.items()
        try:
            target = RESTRICTIONS.get(str(key))(target, value)
        except TypeError as exc:
            raise ValidationError(f"restrict[{i}].{key}: bad value {value!r} ({exc})") from None
    return target
