"""Datasets (built-in, synthetic, and loaders for users' files) and keep-matrix splits.

The file loaders (``load_file``, ``FILE_FORMATS``, ``register_format``) are imported on first
use, so that importing :mod:`miaudit.data` for its splits does not import pandas.
"""

from typing import Any

from miaudit._validation import SeedLike, as_generator, check_keep
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
    embed_keep,
    extend_keep_matrix,
    keep_matrix,
    n_in_per_record,
    nested_keep_matrix,
    paired_keep_matrix,
    population_split,
)

__all__ = [
    "DATASETS",
    "FILE_FORMATS",
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
    "load_file",
    "n_in_per_record",
    "nested_keep_matrix",
    "paired_keep_matrix",
    "population_split",
    "register_dataset",
    "register_format",
]

_LAZY_LOADERS = ("FILE_FORMATS", "load_file", "register_format")


def __getattr__(name: str) -> Any:
    if name in _LAZY_LOADERS:
        from miaudit.data import loaders

        return getattr(loaders, name)
    raise AttributeError(f"module 'miaudit.data' has no attribute {name!r}")
