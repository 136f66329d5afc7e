"""Threshold attacks: one signal of the target model, no reference models needed.

Each attack scores a record by one signal of the target model, averaged over queries and
oriented so that higher = member:

============================  =====================================  =========================
attack                        score                                  paper
============================  =====================================  =========================
``loss``                      :math:`-\\ell(x, y)`                   Yeom et al., CSF 2018
``confidence``                :math:`p_y`                            Salem et al., NDSS 2019
``entropy``                   :math:`-H(p)`                          Salem et al., NDSS 2019
``modified_entropy``          :math:`-\\mathrm{Mentr}(p, y)`         Song & Mittal, USENIX 2021
``correctness``               :math:`1[\\arg\\max p = y]`            Yeom et al. ("gap" attack)
============================  =====================================  =========================

With ``class_thresholds=True`` the attack instead calibrates one threshold per class on the
reference models (Song & Mittal 2021): for class ``c`` it takes the threshold :math:`t_c` that
maximises balanced accuracy between the reference models' IN and OUT signals of records of class
``c``, and scores a record of class ``y`` by :math:`s(x) - t_y`; the decision "member" is then a
score above 0. Classes absent from the reference data use the threshold over all classes. The
target's own membership labels are never used.
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from miaudit.attacks import register
from miaudit.attacks.base import Attack, AttackData, AttackInfo


def best_threshold(in_values: NDArray, out_values: NDArray) -> float:
    """Threshold ``t`` maximising balanced accuracy of the rule "member iff value >= t".

    Parameters
    ----------
    in_values, out_values : ndarray of shape (k,) and (l,)
        Signal values (higher = member) of known members and known non-members.

    Returns
    -------
    float
        The midpoint between the best unique value and the next smaller one (the smallest value
        minus one when the best is the smallest). NaNs are ignored.

    Examples
    --------
    >>> import numpy as np
    >>> best_threshold(np.array([3.0, 4.0, 5.0]), np.array([1.0, 2.0, 3.5]))
    3.75
    """
    a = np.sort(in_values[np.isfinite(in_values)])
    b = np.sort(out_values[np.isfinite(out_values)])
    if a.size == 0 or b.size == 0:
        return float("nan")
    cand = np.unique(np.concatenate([a, b]))
    tpr = 1.0 - np.searchsorted(a, cand, side="left") / a.size
    fpr = 1.0 - np.searchsorted(b, cand, side="left") / b.size
    i = int(np.argmax(tpr - fpr))
    lower = cand[i - 1] if i > 0 else cand[0] - 1.0
    return float((cand[i] + lower) / 2.0)


class _SignalThresholdAttack(Attack):
    """Score = sign · mean over queries of one signal; optional per-class calibration."""

    sign: ClassVar[float]

    @property
    def signal_name(self) -> str:
        """The one signal this attack thresholds (``info.signals[0]``)."""
        return self.info.signals[0]

    def __init__(self, class_thresholds: bool = False) -> None:
        self.class_thresholds = bool(class_thresholds)

    def _oriented(self, data: AttackData, part: str) -> NDArray[np.float64]:
        return self.sign * data.signal(self.signal_name, part).mean(axis=-1)  # type: ignore[arg-type]

    def _score(self, data: AttackData) -> NDArray[np.float64]:
        target = self._oriented(data, "target")
        if not self.class_thresholds:
            return target
        thresholds = self.class_thresholds_from_references(data)
        return target - thresholds[np.asarray(data.labels)]

    def class_thresholds_from_references(self, data: AttackData) -> NDArray[np.float64]:
        """Per-class thresholds, shape (max label + 1,), calibrated on the reference models."""
        ref = self._oriented(data, "references")  # (m, n)
        keep = np.asarray(data.keep)
        labels = np.broadcast_to(data.labels, ref.shape)
        overall = best_threshold(ref[keep], ref[~keep])
        n_classes = int(np.max(data.labels)) + 1
        out = np.full(n_classes, overall)
        for c in range(n_classes):
            sel = labels == c
            t = best_threshold(ref[sel & keep], ref[sel & ~keep])
            if np.isfinite(t):
                out[c] = t
        return out

    def score(self, data: AttackData) -> NDArray[np.float64]:
        if self.class_thresholds:
            data.require(_with_references(self.info))
        return super().score(data)


def _with_references(info: AttackInfo) -> AttackInfo:
    return replace(info, needs_references=True)


@register("loss")
class LossAttack(_SignalThresholdAttack):
    info = AttackInfo(
        name="loss",
        title="LOSS: negative cross-entropy loss of the target model",
        paper="Yeom, Giacomelli, Fredrikson, Jha. Privacy Risk in Machine Learning. CSF 2018",
        signals=("cross_entropy_loss",),
    )
    sign = -1.0


@register("confidence")
class ConfidenceAttack(_SignalThresholdAttack):
    info = AttackInfo(
        name="confidence",
        title="Confidence: the target model's probability of the true class",
        paper="Salem et al. ML-Leaks. NDSS 2019",
        signals=("confidence",),
    )
    sign = 1.0


@register("entropy")
class EntropyAttack(_SignalThresholdAttack):
    info = AttackInfo(
        name="entropy",
        title="Entropy: negative entropy of the target model's prediction",
        paper="Salem et al. ML-Leaks. NDSS 2019",
        signals=("entropy",),
    )
    sign = -1.0


@register("modified_entropy")
class ModifiedEntropyAttack(_SignalThresholdAttack):
    info = AttackInfo(
        name="modified_entropy",
        title="Modified entropy: negative Mentr, uses the label (Song & Mittal)",
        paper="Song, Mittal. Systematic Evaluation of Privacy Risks of ML Models. USENIX Sec 2021",
        signals=("modified_entropy",),
    )
    sign = -1.0


@register("correctness")
class CorrectnessAttack(_SignalThresholdAttack):
    info = AttackInfo(
        name="correctness",
        title="Gap attack: member iff the target classifies the record correctly",
        paper="Yeom, Giacomelli, Fredrikson, Jha. Privacy Risk in Machine Learning. CSF 2018",
        signals=("correct",),
    )
    sign = 1.0
