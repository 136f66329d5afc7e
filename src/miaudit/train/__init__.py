"""Training recipes for reference models: vectorised torch ensembles, scikit-learn, callables.

>>> from miaudit import train
>>> {"torch-mlp", "torch-cnn", "sklearn", "callable"} <= set(train.names())
True
>>> recipe = train.make_recipe("torch-mlp", hidden_sizes=(64,), epochs=5)

See :mod:`miaudit.train.recipes` for the recipe interface and :mod:`miaudit.train.ensemble` for
the vectorised ensemble; query augmentations are in :mod:`miaudit.train.queries`. The names
below are imported on first use, so that ``import miaudit.train.recipes`` (the configs) does not
import torch; the engine modules that need torch are imported when a recipe is made.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "QUERIES": "queries",
    "apply_queries": "queries",
    "n_queries": "queries",
    "resolve_queries": "queries",
    "RECIPES": "recipes",
    "ModelResult": "recipes",
    "Recipe": "recipes",
    "TorchCNNConfig": "recipes",
    "TorchMLPConfig": "recipes",
    "TorchTrainConfig": "recipes",
    "get": "recipes",
    "make_config": "recipes",
    "make_recipe": "recipes",
    "model_seed": "recipes",
    "names": "recipes",
    "CallableConfig": "sklearn_recipe",
    "SklearnConfig": "sklearn_recipe",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"miaudit.train.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'miaudit.train' has no attribute {name!r}")
