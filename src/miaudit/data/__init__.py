"""Datasets (built-in, synthetic, and loaders for users' files) and keep-matrix splits."""

from miaudit.data.base import Dataset
from miaudit.data.splits import (
    MIN_RECORDS,
    DesignatedTarget,
    LeaveOneOut,
    SeedLike,
    as_generator,
    check_keep,
    embed_keep,
    extend_keep_matrix,
    keep_matrix,
    n_in_per_record,
    paired_keep_matrix,
    population_split,
)

__all__ = [
    "MIN_RECORDS",
    "Dataset",
    "DesignatedTarget",
    "LeaveOneOut",
    "SeedLike",
    "as_generator",
    "check_keep",
    "embed_keep",
    "extend_keep_matrix",
    "keep_matrix",
    "n_in_per_record",
    "paired_keep_matrix",
    "population_split",
]
