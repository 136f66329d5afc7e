"""The in-memory dataset every other stage consumes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from miaudit._validation import check_array, check_labels
from miaudit.exceptions import ValidationError


@dataclass
class Dataset:
    """Features, labels and stable record ids.

    Attributes
    ----------
    X : ndarray of shape (n, *input_shape), float32
        Features. Images are channels-first ``(n, channels, height, width)``.
    y : ndarray of shape (n,), int64
        Class labels in ``0..n_classes-1``.
    record_ids : ndarray of shape (n,)
        Unique ids (str or int) that follow each record from input to report.
    n_classes : int
        Number of classes (labels may not use all of them).
    name : str
        Where the data came from (a registry name or a file path).
    meta : dict
        Free-form provenance (generator parameters, source file checksum, ...).
    """

    X: NDArray[np.float32]
    y: NDArray[np.int64]
    record_ids: NDArray
    n_classes: int
    name: str = "custom"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.X = check_array(self.X, f"{self.name}: X", min_ndim=2, dtype=np.float32)
        n = self.X.shape[0]
        self.y = check_labels(self.y, int(self.n_classes), name=f"{self.name}: y")
        if self.y.shape != (n,):
            raise ValidationError(f"{self.name}: y has shape {self.y.shape}, expected ({n},)")
        ids = np.asarray(self.record_ids)
        if ids.shape != (n,):
            raise ValidationError(f"{self.name}: record_ids has shape {ids.shape}, expected ({n},)")
        if len(np.unique(ids)) != n:
            raise ValidationError(f"{self.name}: record_ids are not unique")
        self.record_ids = ids

    def __len__(self) -> int:
        return int(self.X.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.X.shape[1:])

    def subset(self, index: NDArray) -> Dataset:
        """The records at ``index`` (positions or a boolean mask), ids kept."""
        return Dataset(
            X=self.X[index],
            y=self.y[index],
            record_ids=self.record_ids[index],
            n_classes=self.n_classes,
            name=self.name,
            meta=dict(self.meta),
        )
