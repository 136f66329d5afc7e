"""Datasets (built-in, synthetic, and loaders for users' files) and keep-matrix splits."""

from miaudit.data.base import Dataset
from miaudit.data.registry import (
    DATASETS,
    dataset_parameters,
    list_datasets,
    load_dataset,
    register_dataset,
)
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
    "DATASETS",
    "MIN_RECORDS",
    "Dataset",
    "DesignatedTarget",
    "LeaveOneOut",
    "SeedLike",
    "as_generator",
    "check_keep",
    "dataset_parameters",
    "embed_keep",
    "extend_keep_matrix",
    "keep_matrix",
    "list_datasets",
    "load_dataset",
    "n_in_per_record",
    "paired_keep_matrix",
    "population_split",
    "register_dataset",
]
