"""The dataset registry: every built-in dataset and file loader is reachable by name.

>>> from miaudit.data import load_dataset, list_datasets
>>> ds = load_dataset("digits")                       # doctest: +SKIP
>>> ds = load_dataset("csv", path="train.csv", label_col="label")  # doctest: +SKIP

A dataset is registered as a function ``(**params) -> Dataset`` with
``@register_dataset("name")``; :func:`load_dataset` checks the parameters against the function's
signature so that a misspelt parameter is an error that lists the valid ones.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from miaudit.data.base import Dataset
from miaudit.registry import Registry, check_call

DatasetFactory = Callable[..., Dataset]
"""A function that builds a :class:`~miaudit.data.base.Dataset` from keyword parameters."""

#: Built-in datasets and file loaders, then the ``miaudit.datasets`` entry points.
DATASETS: Registry[DatasetFactory] = Registry(
    "dataset",
    modules=("miaudit.data.builtin", "miaudit.data.loaders"),
    entry_points="miaudit.datasets",
)


def register_dataset(name: str) -> Callable[[DatasetFactory], DatasetFactory]:
    """Decorator registering a dataset factory under ``name``."""
    return DATASETS.register(name)


def list_datasets() -> list[str]:
    """Sorted names of all registered datasets and file loaders."""
    return DATASETS.names()


def dataset_parameters(name: str) -> dict[str, Any]:
    """Parameters of dataset ``name`` and their defaults (``inspect.Parameter.empty`` if none)."""
    sig = inspect.signature(DATASETS.get(name))
    return {p.name: p.default for p in sig.parameters.values()}


def load_dataset(name: str, **params: Any) -> Dataset:
    """Build the registered dataset ``name`` with ``params``.

    Parameters
    ----------
    name : str
        A name from :func:`list_datasets` (case-insensitive).
    **params
        The dataset's parameters (see :func:`dataset_parameters`).

    Raises
    ------
    UnknownNameError
        If ``name`` is not registered; the message lists the valid names.
    ValidationError
        If a parameter is unknown or a required one is missing; the message lists the valid
        parameters.
    """
    factory = DATASETS.get(name)
    check_call(factory, f"dataset {name!r}", **params)
    return factory(**params)
