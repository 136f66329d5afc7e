"""Per-record membership signals computed from a model's outputs.

All functions take ``outputs`` of shape ``(..., C)`` — logits (``kind="logits"``, the default)
or probabilities (``kind="probs"``) over ``C`` classes, with any leading dimensions such as
``(n_records, C)``, ``(n_records, n_queries, C)`` or ``(n_models, n_records, n_queries, C)`` —
and integer ``labels`` in ``0..C-1``. They return an array of shape ``outputs.shape[:-1]``.

``labels`` may have the full shape ``outputs.shape[:-1]``, any shape that broadcasts to it, or
shape ``(n_records,)`` when ``outputs`` is laid out ``(..., n_records, n_queries, C)``: it is then
aligned with the records axis.

Directions: ``logit_scaled_confidence``, ``confidence``, ``margin``, ``correct`` are larger for
members; ``cross_entropy_loss``, ``entropy`` and ``modified_entropy`` are smaller for members
(attacks negate them so that every *score* is larger for members).

All math is in float64. Probabilities are floored at the smallest positive float64 before a
logarithm (``log 0`` would be ``-inf``), i.e. at ``log(tiny) ≈ -708.4``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from miaudit._validation import check_array, check_labels
from miaudit.exceptions import ValidationError
from miaudit.registry import Registry

OutputKind = Literal["logits", "probs"]

_LOG_TINY = float(np.log(np.finfo(np.float64).tiny))
#: Largest allowed |sum(p) - 1| for ``kind="probs"``: float32 softmax outputs of many classes
#: round to about 1e-6; an error of 1e-3 means the input is not a probability vector.
PROB_SUM_TOLERANCE = 1e-3

__all__ = [
    "SIGNALS",
    "compute_signal",
    "confidence",
    "correct",
    "cross_entropy_loss",
    "entropy",
    "log_probabilities",
    "logit_scaled_confidence",
    "margin",
    "modified_entropy",
]


def _prepare(
    outputs: ArrayLike, labels: ArrayLike, kind: OutputKind
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Validate inputs; return (log-probabilities (..., C), labels broadcast to (...,))."""
    if kind not in ("logits", "probs"):
        raise ValidationError(f"kind: expected 'logits' or 'probs', got {kind!r}")
    out = check_array(outputs, "outputs", min_ndim=1)
    n_classes = out.shape[-1]
    if n_classes < 2:
        raise ValidationError(
            f"outputs: need at least 2 classes on the last axis, got shape {out.shape}"
        )
    if kind == "probs":
        if np.any(out < 0) or np.any(out > 1):
            raise ValidationError(
                "outputs: probabilities must lie in [0, 1]; found values in "
                f"[{out.min():.4g}, {out.max():.4g}] (pass kind='logits' for logits)"
            )
        sums = out.sum(axis=-1)
        worst = float(np.max(np.abs(sums - 1.0))) if sums.size else 0.0
        if worst > PROB_SUM_TOLERANCE:
            raise ValidationError(
                f"outputs: probabilities do not sum to 1 over the last axis (largest deviation "
                f"{worst:.3g}); pass kind='logits' if these are logits"
            )
        with np.errstate(divide="ignore"):
            logp = np.maximum(np.log(out), _LOG_TINY)
    else:
        from scipy.special import log_softmax

        logp = log_softmax(out, axis=-1)
    lab = check_labels(labels, n_classes)
    lead = out.shape[:-1]
    if lab.shape != lead:
        lab = _align_labels(lab, lead, np.shape(labels), out.shape)
    return logp, lab


def _align_labels(
    lab: NDArray[np.int64],
    lead: tuple[int, ...],
    given: tuple[int, ...],
    out_shape: tuple[int, ...],
) -> NDArray[np.int64]:
    """Broadcast labels to ``lead``: by numpy's rules, or a 1-d ``(n,)`` along the records axis
    of outputs laid out ``(..., n, q, C)``. Both readings possible and different → error."""
    readings = []
    try:
        readings.append(np.broadcast_to(lab, lead))
    except ValueError:
        pass
    if lab.ndim == 1 and len(lead) >= 2 and lab.shape[0] == lead[-2]:
        readings.append(np.broadcast_to(lab[:, None], lead))
    if not readings:
        raise ValidationError(
            f"labels: shape {given} does not match outputs of shape {out_shape} (expected "
            f"{lead}, something that broadcasts to it, or (n_records,) for outputs laid out "
            "(..., n_records, n_queries, C))"
        )
    if len(readings) == 2 and not np.array_equal(readings[0], readings[1]):
        raise ValidationError(
            f"labels: shape {given} is ambiguous for outputs of shape {out_shape}: it matches "
            "both the last and the second-to-last leading axis; pass labels of the full shape "
            f"{lead}"
        )
    return readings[0]


def _take(x: NDArray, labels: NDArray[np.int64]) -> NDArray:
    return np.take_along_axis(x, labels[..., None], axis=-1)[..., 0]


def _others(logp: NDArray, labels: NDArray[np.int64]) -> NDArray:
    """log-probabilities with the true class masked to -inf."""
    masked = logp.copy()
    np.put_along_axis(masked, labels[..., None], -np.inf, axis=-1)
    return masked


def log_probabilities(outputs: ArrayLike, kind: OutputKind = "logits") -> NDArray[np.float64]:
    """Log-probabilities ``log p`` of shape ``outputs.shape`` (log-softmax of logits)."""
    logp, _ = _prepare(outputs, np.zeros(np.shape(outputs)[:-1], dtype=np.int64), kind)
    return logp


def logit_scaled_confidence(
    outputs: ArrayLike, labels: ArrayLike, kind: OutputKind = "logits"
) -> NDArray[np.float64]:
    r"""Logit-scaled confidence :math:`\log\frac{p_y}{1-p_y}` (Carlini et al., S&P 2022).

    Computed exactly as :math:`z_y - \log\sum_{j\ne y} e^{z_j}` (equivalently
    :math:`\log p_y - \log\sum_{j \ne y} p_j`), so a logit margin of 1,000 gives
    ``1000 - log(C - 1)``; the LiRA reference code's ``log(p + 1e-45)`` saturates at ±103.6.

    Examples
    --------
    >>> import numpy as np
    >>> logit_scaled_confidence(np.array([[2.0, 0.0, 0.0]]), np.array([0])).round(4)  # 2 - log 2
    array([1.3069])
    """
    from scipy.special import logsumexp

    logp, lab = _prepare(outputs, labels, kind)
    return _take(logp, lab) - logsumexp(_others(logp, lab), axis=-1)


def cross_entropy_loss(
    outputs: ArrayLike, labels: ArrayLike, kind: OutputKind = "logits"
) -> NDArray[np.float64]:
    r"""Cross-entropy loss :math:`-\log p_y` (smaller for members; Yeom et al., CSF 2018).

    Examples
    --------
    >>> import numpy as np
    >>> cross_entropy_loss(np.array([[2.0, 0.0, 0.0]]), np.array([0])).round(4)
    array([0.2395])
    """
    logp, lab = _prepare(outputs, labels, kind)
    return -_take(logp, lab)


def confidence(
    outputs: ArrayLike, labels: ArrayLike, kind: OutputKind = "logits"
) -> NDArray[np.float64]:
    r"""True-class probability :math:`p_y` (the RMIA signal)."""
    logp, lab = _prepare(outputs, labels, kind)
    return np.exp(_take(logp, lab))


def entropy(
    outputs: ArrayLike, labels: ArrayLike | None = None, kind: OutputKind = "logits"
) -> NDArray[np.float64]:
    r"""Prediction entropy :math:`-\sum_i p_i \log p_i` (smaller for members). Labels unused."""
    if labels is None:
        labels = np.zeros(np.shape(outputs)[:-1], dtype=np.int64)
    logp, _ = _prepare(outputs, labels, kind)
    p = np.exp(logp)
    return -np.sum(p * logp, axis=-1)


def modified_entropy(
    outputs: ArrayLike, labels: ArrayLike, kind: OutputKind = "logits"
) -> NDArray[np.float64]:
    r"""Modified entropy of Song & Mittal (USENIX Security 2021), smaller for members.

    .. math:: \mathrm{Mentr}(p, y) = -(1-p_y)\log p_y - \sum_{i\ne y} p_i \log(1-p_i)
    """
    logp, lab = _prepare(outputs, labels, kind)
    p = np.exp(logp)
    log1m = np.maximum(np.log(-np.expm1(np.minimum(logp, -np.finfo(np.float64).tiny))), _LOG_TINY)
    lp_y = _take(logp, lab)
    one_minus_py = -np.expm1(lp_y)
    term_y = -one_minus_py * lp_y
    others = p * log1m
    np.put_along_axis(others, lab[..., None], 0.0, axis=-1)
    return term_y - np.sum(others, axis=-1)


def margin(
    outputs: ArrayLike, labels: ArrayLike, kind: OutputKind = "logits"
) -> NDArray[np.float64]:
    r"""Logit margin :math:`z_y - \max_{j\ne y} z_j` (the "hinge" statistic).

    For ``kind="probs"`` the same difference of log-probabilities, which equals the logit
    margin of any logits that produce those probabilities.
    """
    logp, lab = _prepare(outputs, labels, kind)
    return _take(logp, lab) - np.max(_others(logp, lab), axis=-1)


def correct(
    outputs: ArrayLike, labels: ArrayLike, kind: OutputKind = "logits"
) -> NDArray[np.float64]:
    """1.0 where the predicted class (argmax, first on ties) equals the label, else 0.0."""
    logp, lab = _prepare(outputs, labels, kind)
    return (np.argmax(logp, axis=-1) == lab).astype(np.float64)


SignalFn = Callable[..., NDArray[np.float64]]

#: Signals by name. Each maps ``(outputs, labels, kind)`` to an array of ``outputs.shape[:-1]``.
#: A new signal is one function registered with ``@SIGNALS.register("name")``.
SIGNALS: Registry[SignalFn] = Registry("signal")
for _fn in (
    logit_scaled_confidence,
    cross_entropy_loss,
    confidence,
    entropy,
    modified_entropy,
    margin,
    correct,
):
    SIGNALS.add(_fn.__name__, _fn)
del _fn


def compute_signal(
    name: str, outputs: ArrayLike, labels: ArrayLike, kind: OutputKind = "logits"
) -> NDArray[np.float64]:
    """Compute the signal registered as ``name`` (see :data:`SIGNALS`).

    Raises
    ------
    UnknownNameError
        For an unregistered name (the message lists the valid ones).
    """
    return SIGNALS.get(name)(outputs, labels, kind=kind)
