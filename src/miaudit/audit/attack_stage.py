"""The attack stage of an audit: every requested attack against every target model.

Model outputs on all records are held once, as ``outputs`` of shape ``(M, N, q, C)`` (a memory
map is fine) for ``M`` models. Each signal is computed once for all models (:class:`SignalBank`)
and every target's :class:`~miaudit.attacks.AttackData` receives slices of it.

In an *algorithm audit* (Carlini et al., S&P 2022, Sec. VI) every model takes a turn as the
target and the others serve as its references (:class:`miaudit.data.splits.LeaveOneOut`);
scores of all targets are pooled into one ROC. In a *model audit* there is one target: the
user's model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from miaudit import attacks
from miaudit._progress import progress
from miaudit._validation import check_array, check_keep
from miaudit.attacks.base import Attack, AttackData
from miaudit.config import AttackSpec
from miaudit.exceptions import ValidationError
from miaudit.signals import OutputKind, compute_signal

#: One target and its references: ``(target_index, reference_indices)``, as yielded by
#: :class:`miaudit.data.splits.LeaveOneOut`. ``target_index == EXTERNAL_TARGET`` means the
#: target's outputs are passed separately (a model audit of the user's model).
TargetSplit = tuple[int, NDArray[np.int64]]
EXTERNAL_TARGET = -1


class SignalBank:
    """Signals of ``M`` models on ``N`` records, each computed once, model by model.

    Parameters
    ----------
    outputs : array of shape (M, N, q, C)
        Logits or probabilities of every model on every record (a memory map is fine: signals are
        computed one model at a time).
    labels : ndarray of shape (N,)
    kind : {"logits", "probs"}
    """

    def __init__(self, outputs: NDArray, labels: NDArray, kind: OutputKind = "logits") -> None:
        if np.ndim(outputs) != 4:
            raise ValidationError(
                f"outputs: expected shape (n_models, n_records, n_queries, n_classes), got "
                f"{np.shape(outputs)}"
            )
        if np.shape(outputs)[1] != len(labels):
            raise ValidationError(
                f"outputs: {np.shape(outputs)[1]} records but labels has {len(labels)}"
            )
        self.outputs = outputs
        self.labels = np.asarray(labels)
        self.kind = kind
        self._signals: dict[str, NDArray[np.float64]] = {}

    def get(self, name: str) -> NDArray[np.float64]:
        """Signal ``name`` of every model: shape (M, N, q), float64."""
        if name not in self._signals:
            self._signals[name] = np.stack(
                [
                    compute_signal(name, np.asarray(m), self.labels, kind=self.kind)
                    for m in self.outputs
                ]
            )
        return self._signals[name]


def attack_data(
    bank: SignalBank,
    split: TargetSplit,
    keep: NDArray[np.bool_],
    audit_idx: NDArray[np.int64],
    population_idx: NDArray[np.int64],
    signal_names: Sequence[str] = (),
    target_outputs: NDArray | None = None,
    *,
    with_outputs: bool = True,
    target_signals: Mapping[str, NDArray] | None = None,
) -> AttackData:
    """The :class:`AttackData` for one target: audited records ``audit_idx``, population records
    ``population_idx``, signals in ``signal_names`` sliced from ``bank``.

    ``target_signals`` (name → (N, q)) are signals of the external target computed by querying
    it (:meth:`~miaudit.attacks.Attack.query_signals`), handed over as its precomputed signals.

    ``target_outputs`` (shape (N, q, C)) replaces ``bank.outputs[target]`` for an external
    target (``target == EXTERNAL_TARGET``). With ``with_outputs=False`` only the signals are
    handed over (no attack of the stage reads raw outputs), and the reference models' outputs
    are never gathered.
    """
    target, refs = split
    refs = np.asarray(refs, dtype=np.int64)
    if target == EXTERNAL_TARGET:
        if target_outputs is None:
            raise ValidationError("target_outputs: required for an external target")
        tgt = check_array(target_outputs, "target_outputs", ndim=3)
    else:
        tgt = np.asarray(bank.outputs[target])
    has_pop = population_idx.size > 0
    pop_labels = bank.labels[population_idx] if has_pop else None
    if with_outputs:
        ref_outs = np.asarray(bank.outputs[refs]) if refs.size else None  # gathered once
        data = AttackData(
            labels=bank.labels[audit_idx],
            target=tgt[audit_idx],
            references=ref_outs[:, audit_idx] if ref_outs is not None else None,
            keep=keep[refs][:, audit_idx] if refs.size else None,
            population_labels=pop_labels,
            population_target=tgt[population_idx] if has_pop else None,
            population_references=ref_outs[:, population_idx]
            if has_pop and ref_outs is not None
            else None,
            kind=bank.kind,
        )
    else:
        data = AttackData(labels=bank.labels[audit_idx], population_labels=pop_labels,
                          kind=bank.kind)
    for name in signal_names:
        if target == EXTERNAL_TARGET:
            sig_t = compute_signal(name, tgt, bank.labels, kind=bank.kind)
        else:
            sig_t = bank.get(name)[target]
        data.set_signal(name, "target", sig_t[audit_idx])
        if has_pop:
            data.set_signal(name, "population_target", sig_t[population_idx])
        if refs.size:
            sig = bank.get(name)[refs]
            data.set_signal(name, "references", sig[:, audit_idx])
            if has_pop:
                data.set_signal(name, "population_references", sig[:, population_idx])
    for name, values in (target_signals or {}).items():
        data.set_signal(name, "target", np.asarray(values)[audit_idx])
        if has_pop:
            data.set_signal(name, "population_target", np.asarray(values)[population_idx])
    if not with_outputs and refs.size:
        data.keep = check_keep(keep[refs][:, audit_idx], shape=(refs.size, audit_idx.size))
    return data


def needs(instances: Sequence[Attack]) -> tuple[list[str], bool]:
    """What a set of attacks reads: the union of their declared signals (sorted) and whether any
    reads raw outputs (an attack that declares no signal is assumed to)."""
    wanted = sorted({s for a in instances for s in a.info.signals})
    outputs = any(a.info.needs_outputs or not a.info.signals for a in instances)
    return wanted, outputs


def score_targets(
    bank: SignalBank,
    keep: NDArray[np.bool_],
    splits: Sequence[TargetSplit],
    specs: Sequence[AttackSpec],
    audit_idx: NDArray[np.int64],
    population_idx: NDArray[np.int64],
    target_outputs: NDArray | None = None,
    quiet: bool | None = None,
    target_signals: Mapping[str, NDArray] | None = None,
) -> dict[str, NDArray[np.float64]]:
    """Scores of every attack on every target (a progress bar over targets on a terminal).

    ``target_signals``: see :func:`attack_data`.

    Returns
    -------
    dict
        Attack display label → scores of shape ``(len(splits), len(audit_idx))``, higher = member.
    """
    instances = {spec.display: attacks.create(spec.name, **spec.params) for spec in specs}
    out = {label: np.empty((len(splits), audit_idx.size)) for label in instances}
    wanted, with_outputs = needs(list(instances.values()))
    label = ", ".join(instances)
    for i, split in enumerate(progress(splits, f"attacking ({label})", quiet=quiet)):
        data = attack_data(
            bank, split, keep, audit_idx, population_idx, wanted, target_outputs,
            with_outputs=with_outputs,
            target_signals=target_signals,
        )
        for label, attack in instances.items():
            out[label][i] = attack.score(data)
    return out
