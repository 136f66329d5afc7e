"""Training recipes for reference models: vectorised torch ensembles, scikit-learn, callables.

>>> from miaudit import train
>>> train.names()
['callable', 'sklearn', 'torch-cnn', 'torch-mlp']
>>> recipe = train.make_recipe("torch-mlp", hidden_sizes=(64,), epochs=5)

See :mod:`miaudit.train.recipes` for the recipe interface and :mod:`miaudit.train.ensemble` for
the vectorised ensemble; query augmentations are in :mod:`miaudit.train.queries`.
"""

from miaudit.train import ensemble, sklearn_recipe  # noqa: F401  (register the recipes)
from miaudit.train.queries import QUERIES, apply_queries, n_queries, resolve_queries
from miaudit.train.recipes import (
    RECIPES,
    ModelResult,
    Recipe,
    TorchCNNConfig,
    TorchMLPConfig,
    TorchTrainConfig,
    get,
    make_config,
    make_recipe,
    model_seed,
    names,
)
from miaudit.train.sklearn_recipe import CallableConfig, SklearnConfig

__all__ = [
    "QUERIES",
    "RECIPES",
    "CallableConfig",
    "ModelResult",
    "Recipe",
    "SklearnConfig",
    "TorchCNNConfig",
    "TorchMLPConfig",
    "TorchTrainConfig",
    "apply_queries",
    "get",
    "make_config",
    "make_recipe",
    "model_seed",
    "n_queries",
    "names",
    "resolve_queries",
]
