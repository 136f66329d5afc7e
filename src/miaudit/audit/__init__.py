"""Audit machinery: the training/query engine, the run store, executors and the attack stage.

The names below are imported lazily, so that ``import miaudit.audit.attack_stage`` does not pull
in torch.

* :func:`train_and_query` (:mod:`miaudit.audit.engine`) — train what the store lacks, query it.
* :class:`RunStore`, :class:`Run` (:mod:`miaudit.audit.store`) — crash-safe, resumable runs.
* :data:`EXECUTORS`, :class:`LocalExecutor`, :class:`ThreadExecutor`, :class:`ProcessExecutor`
  (:mod:`miaudit.audit.executors`).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "train_and_query": "engine",
    "RunResult": "engine",
    "RunStore": "store",
    "Run": "store",
    "CorruptFileError": "store",
    "EXECUTORS": "executors",
    "Executor": "executors",
    "LocalExecutor": "executors",
    "ProcessExecutor": "executors",
    "ThreadExecutor": "executors",
    "make_executor": "executors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"miaudit.audit.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'miaudit.audit' has no attribute {name!r}")
