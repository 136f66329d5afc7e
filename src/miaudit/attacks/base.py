"""The attack interface: what every registered attack receives and returns.

Following MIMIR, a model's outputs are computed once and handed to every attack: an
:class:`AttackData` holds the outputs (logits or probabilities) of the audited *target* model and,
optionally, of ``m`` *reference* models on the same ``n`` records, the keep matrix saying which
reference trained on which record, and *population* records that no model trained on. Attacks ask
it for signals by name; each signal is computed once and cached.

Shapes (``q`` = queries per record, e.g. augmentations; ``C`` = classes):

=========================  ================  ==========================================
field                      shape             meaning
=========================  ================  ==========================================
``labels``                 ``(n,)``          true class of each record
``target``                 ``(n, q, C)``     target model outputs
``references``             ``(m, n, q, C)``  reference model outputs
``keep``                   ``(m, n)`` bool   ``keep[i, j]``: reference ``i`` trained on ``j``
``population_labels``      ``(z,)``          labels of population records
``population_target``      ``(z, q, C)``     target outputs on population records
``population_references``  ``(m, z, q, C)``  reference outputs on population records
=========================  ================  ==========================================

Every attack returns scores of shape ``(n,)``, float64, **higher = more likely a member**.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from miaudit._validation import check_array, check_keep, check_labels
from miaudit.attacks._reference_stats import Side, require_references
from miaudit.exceptions import MissingRequirementError, ValidationError
from miaudit.signals import SIGNALS, OutputKind, compute_signal

Part = Literal["target", "references", "population_target", "population_references"]
_PARTS: tuple[Part, ...] = ("target", "references", "population_target", "population_references")


@dataclass(frozen=True)
class AttackInfo:
    """What an attack is, where it comes from and what it needs.

    Attributes
    ----------
    name : str
        Registry name.
    title : str
        One-line description.
    paper : str
        Citation of the paper that defines it.
    signals : tuple of str
        Registered signal names (:data:`miaudit.signals.SIGNALS`) the attack reads; the attack
        stage computes these once for all models and hands them over.
    needs_outputs : bool
        Reads the raw model outputs (logits or probabilities), not only signals.
    needs_references : bool
        Needs reference (shadow) models.
    needs_in_references : bool
        Needs, for every record, reference models that trained on it ("online" attacks).
    needs_out_references : bool
        Needs, for every record, reference models that did not train on it.
    needs_population : bool
        Needs population records that no model trained on.
    needs_capabilities : tuple of str
        What the target must return (:data:`miaudit.targets.CAPABILITIES`: ``"logits"``,
        ``"probs"``, ``"top_k"``, ``"label"``, ``"loss"``, ``"gradients"``), all of them; empty:
        derived from ``signals`` (:func:`miaudit.targets.required_outputs`).
    needs_queries : bool
        Queries a live target (e.g. the boundary-distance search) rather than reading outputs
        computed once.
    """

    name: str
    title: str
    paper: str
    signals: tuple[str, ...] = ()
    needs_outputs: bool = False
    needs_references: bool = False
    needs_in_references: bool = False
    needs_out_references: bool = False
    needs_population: bool = False
    needs_capabilities: tuple[str, ...] = ()
    needs_queries: bool = False


def _as_outputs(x: ArrayLike, name: str, lead_ndim: int) -> NDArray[np.float64]:
    """Outputs with ``lead_ndim`` leading dims + (q, C); a missing query axis is added."""
    arr = check_array(x, name, ndim=(lead_ndim + 1, lead_ndim + 2))
    if arr.ndim == lead_ndim + 1:
        arr = arr[..., None, :]
    return arr


@dataclass
class AttackData:
    """Model outputs on the audited records, shared by all attacks (see module docstring).

    Construct it from outputs (``target`` etc.), or with :meth:`from_signals` from precomputed
    signals when the full outputs are too large to hold.
    """

    labels: ArrayLike
    target: ArrayLike | None = None
    references: ArrayLike | None = None
    keep: ArrayLike | None = None
    population_labels: ArrayLike | None = None
    population_target: ArrayLike | None = None
    population_references: ArrayLike | None = None
    kind: OutputKind = "logits"
    _cache: dict[tuple[str, str], NDArray[np.float64]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        labels = np.asarray(self.labels)
        if labels.ndim != 1:
            raise ValidationError(f"labels: expected shape (n,), got {labels.shape}")
        n_classes = None
        if self.target is not None:
            self.target = _as_outputs(self.target, "target", 1)
            n_classes = self.target.shape[-1]
            if self.target.shape[0] != labels.shape[0]:
                raise ValidationError(
                    f"target: has {self.target.shape[0]} records but labels has {labels.shape[0]}"
                )
        self.labels = check_labels(labels, n_classes) if n_classes else labels.astype(np.int64)
        if self.references is not None:
            self.references = _as_outputs(self.references, "references", 2)
            if self.target is not None and self.references.shape[1:] != self.target.shape:
                raise ValidationError(
                    f"references: expected shape (m, {', '.join(map(str, self.target.shape))}) "
                    f"to match target, got {self.references.shape}"
                )
        if self.keep is not None:
            self.keep = check_keep(self.keep, shape=(self.n_references, self.n_records))
        if self.population_target is not None or self.population_references is not None:
            if self.population_labels is None:
                raise ValidationError("population_labels: required with population outputs")
        if self.population_labels is not None:
            pop = np.asarray(self.population_labels)
            if pop.ndim != 1:
                raise ValidationError(f"population_labels: expected shape (z,), got {pop.shape}")
            self.population_labels = (
                check_labels(pop, n_classes, name="population_labels")
                if n_classes
                else check_labels(pop, int(pop.max(initial=0)) + 1, name="population_labels")
            )
        z = self.n_population
        if self.population_target is not None:
            self.population_target = _as_outputs(self.population_target, "population_target", 1)
            if self.population_target.shape[0] != z:
                raise ValidationError(
                    f"population_target: has {self.population_target.shape[0]} records but "
                    f"population_labels has {z}"
                )
        if self.population_references is not None:
            self.population_references = _as_outputs(
                self.population_references, "population_references", 2
            )
            if self.population_references.shape[1] != z:
                raise ValidationError(
                    f"population_references: has {self.population_references.shape[1]} records "
                    f"but population_labels has {z}"
                )

    @classmethod
    def from_signals(
        cls,
        labels: ArrayLike,
        signals: dict[str, dict[Part, ArrayLike]],
        keep: ArrayLike | None = None,
        population_labels: ArrayLike | None = None,
    ) -> AttackData:
        """Build from precomputed signals: ``signals[name][part]`` with part one of
        ``"target"`` (n, q), ``"references"`` (m, n, q), ``"population_target"`` (z, q),
        ``"population_references"`` (m, z, q)."""
        data = cls(labels=labels, population_labels=population_labels)
        for name, parts in signals.items():
            for part, arr in parts.items():
                a = np.asarray(arr, dtype=np.float64)
                lead = 2 if str(part).endswith("references") else 1
                data.set_signal(name, part, a[..., None] if a.ndim == lead else a)
        if keep is not None:
            data.keep = check_keep(keep, shape=(data.n_references, data.n_records))
        return data

    # ------------------------------------------------------------------ sizes
    @property
    def n_records(self) -> int:
        return int(np.shape(self.labels)[0])

    @property
    def n_references(self) -> int:
        if self.references is not None:
            return int(np.shape(self.references)[0])
        for (_, part), arr in self._cache.items():
            if part == "references":
                return int(arr.shape[0])
        return 0

    @property
    def n_population(self) -> int:
        return 0 if self.population_labels is None else int(np.shape(self.population_labels)[0])

    # ---------------------------------------------------------------- signals
    def signal(self, name: str, part: Part = "target") -> NDArray[np.float64]:
        """Signal ``name`` of ``part``: (n, q), (m, n, q), (z, q) or (m, z, q); cached."""
        key = (name, part)
        if key not in self._cache:
            outputs = getattr(self, part)
            if outputs is None:
                raise MissingRequirementError(
                    f"signal {name!r} of {part} is needed but neither {part} outputs nor a "
                    f"precomputed signal were given"
                )
            labels = self.population_labels if part.startswith("population") else self.labels
            assert labels is not None  # population outputs require population labels
            self._cache[key] = compute_signal(name, outputs, labels, kind=self.kind)
        return self._cache[key]

    def set_signal(self, name: str, part: Part, values: ArrayLike) -> None:
        """Provide a precomputed signal (e.g. sliced from signals computed once for many models).

        ``values`` has shape (n, q) / (z, q) for target parts, (m, n, q) / (m, z, q) for
        reference parts.
        """
        if part not in _PARTS:
            raise ValidationError(f"part: expected one of {', '.join(_PARTS)}, got {part!r}")
        lead = 2 if part.endswith("references") else 1
        arr = check_array(values, f"signal {name!r} of {part}", ndim=lead + 1, finite=False)
        self._cache[(name, part)] = arr

    def has_signal(self, name: str, part: Part = "target") -> bool:
        """Whether signal ``name`` of ``part`` was given, or is a registered signal that can be
        computed from the part's outputs."""
        if (name, part) in self._cache:
            return True
        return name in SIGNALS and getattr(self, part) is not None

    def outputs(self, part: Part = "target") -> NDArray[np.float64]:
        """Raw outputs of ``part``; error if they were not given."""
        arr = getattr(self, part)
        if arr is None:
            raise MissingRequirementError(f"the raw outputs of {part} are needed by this attack")
        return arr

    # ----------------------------------------------------------- requirements
    def require(self, info: AttackInfo) -> None:
        """Raise :class:`MissingRequirementError` naming what ``info`` needs and lacks."""
        needs_refs = info.needs_references or info.needs_in_references or info.needs_out_references
        if needs_refs and self.n_references == 0:
            raise MissingRequirementError(
                f"attack {info.name!r} needs reference models, but none were given"
            )
        if needs_refs and self.keep is None:
            raise MissingRequirementError(
                f"attack {info.name!r} needs the keep matrix (which reference trained on which "
                "record)"
            )
        sides: tuple[tuple[Side, bool], ...] = (
            ("in", info.needs_in_references),
            ("out", info.needs_out_references),
        )
        for side, needed in sides:
            if needed:
                require_references(np.asarray(self.keep), side, f"attack {info.name!r}")
        if info.needs_population and self.n_population == 0:
            raise MissingRequirementError(
                f"attack {info.name!r} needs population records (never in any model's training "
                "set), but none were given"
            )


class Attack(ABC):
    """Base class of registered attacks.

    Subclasses set :attr:`info`, take their hyper-parameters as keyword arguments in
    ``__init__`` and implement :meth:`score`.
    """

    info: ClassVar[AttackInfo]

    @abstractmethod
    def _score(self, data: AttackData) -> NDArray[np.float64]:
        """Return scores of shape (n,), higher = member."""

    def score(self, data: AttackData) -> NDArray[np.float64]:
        """Check requirements, then return per-record scores of shape ``(n,)``, higher = member."""
        data.require(self.info)
        scores = np.asarray(self._score(data), dtype=np.float64)
        if scores.shape != (data.n_records,):
            raise AssertionError(
                f"attack {self.info.name!r} returned shape {scores.shape}, "
                f"expected ({data.n_records},)"
            )
        return scores

    def query_signals(self, target: Any, X: NDArray, y: NDArray) -> dict[str, NDArray[np.float64]]:
        """Signals of a live target that an ``info.needs_queries`` attack computes by querying
        it: ``{name: array of shape (n, q)}``, handed back to :meth:`score` as precomputed
        signals of the ``"target"`` part.

        Parameters
        ----------
        target : Target
            The model under audit (its restrictions applied).
        X : ndarray of shape (n, ...)
        y : ndarray of shape (n,)
        """
        raise NotImplementedError(
            f"attack {self.info.name!r} does not query a live target (info.needs_queries is "
            "False)"
        )

    def params(self) -> dict[str, object]:
        """The attack's hyper-parameters (written into results for traceability)."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}
