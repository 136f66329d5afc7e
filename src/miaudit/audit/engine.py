"""Train what is missing, query it, keep it: the driver between data, recipes and the run store.

>>> result = train_and_query(dataset, 16, make_recipe("torch-mlp", epochs=20),
...                          queries=["identity", "mirror"], store_root="runs")  # doctest: +SKIP
>>> result.observations().shape          # (16, n_records, 2, n_classes)  # doctest: +SKIP

What a call does:

1. hashes the recipe's typed config, the query list, the dataset's fingerprint and the
   training code (:func:`miaudit.provenance.training_code_hash`: package version and the
   sources of ``train/``, the engine and the query adapters, so that a changed training line
   never reuses old models) (:func:`miaudit.audit.store.config_hash`) and opens that run
   folder, holding its lock (:mod:`miaudit.audit.lock`) until the call returns;
2. settles the keep matrix: an explicit one, or ``n_models`` rows — the stored rows when the run
   already has as many, the stored matrix extended with
   :func:`miaudit.data.splits.extend_keep_matrix` when more are asked for (existing rows never
   change), or a fresh :func:`miaudit.data.splits.keep_matrix`;
3. lists the finished models whose files pass their checksums; the others are *missing*;
4. splits the missing models into chunks (the vectorised torch recipes put as many models in a
   chunk as the memory budget allows), hands the chunks to the executor and writes each model to
   the store as soon as its chunk returns, with a progress bar over model-epochs (ETA).

Interrupting a run (Ctrl-C, a crash, an exception in a task) loses at most the chunks in flight;
calling again with the same arguments trains only what is missing.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from miaudit._progress import TrainingProgress
from miaudit._validation import check_array, check_labels
from miaudit.audit.executors import Executor, make_executor
from miaudit.audit.lock import folder_lock
from miaudit.audit.store import FORMAT_VERSION, Run, RunStore, dataset_fingerprint, row_hash
from miaudit.data.base import Dataset
from miaudit.data.splits import check_keep, extend_keep_matrix, keep_matrix
from miaudit.exceptions import ValidationError
from miaudit.provenance import config_hash, training_code_hash
from miaudit.train import recipes as recipes_module
from miaudit.train.queries import apply_queries, n_queries, resolve_queries
from miaudit.train.recipes import ModelResult, Recipe

#: Default memory budget for the models in flight (all workers together), in bytes.
DEFAULT_MEMORY_BUDGET = 4 * 2**30

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "ChunkTask",
    "RunResult",
    "TrainChunk",
    "resolve_recipe",
    "train_and_query",
]


@dataclass(frozen=True)
class ChunkTask:
    """A work unit: models ``model_ids`` with their keep rows ``keep`` ``(k, n_records)``."""

    model_ids: tuple[int, ...]
    keep: NDArray[np.bool_]


@dataclass
class TrainChunk:
    """The function an executor runs on each :class:`ChunkTask` (picklable)."""

    recipe: Recipe
    X: NDArray[np.float32]
    y: NDArray[np.int64]
    n_classes: int
    queries: tuple[str, ...]

    def __call__(self, task: ChunkTask) -> list[ModelResult]:
        results = self.recipe.train_chunk(
            self.X, self.y, self.n_classes, task.keep, task.model_ids, self.queries
        )
        got = sorted(r.model_id for r in results)
        if got != sorted(task.model_ids):
            raise RuntimeError(
                f"recipe {self.recipe.name!r} returned models {got} for chunk {task.model_ids}"
            )
        return results


@dataclass
class RunResult:
    """The models of one call of :func:`train_and_query`.

    Attributes
    ----------
    run : Run
        The run folder (manifest, files).
    keep : ndarray of shape (m, n_records), bool
        Keep matrix of the requested models (row ``i`` is model ``i``).
    record_ids : ndarray of shape (n_records,)
        Ids of the records, in the order of the observations' record axis.
    trained : tuple of int
        Models trained by this call (the others were already in the store).
    """

    run: Run
    keep: NDArray[np.bool_]
    record_ids: NDArray
    trained: tuple[int, ...]

    @property
    def model_ids(self) -> list[int]:
        return list(range(self.keep.shape[0]))

    @property
    def config_hash(self) -> str:
        return self.run.config_hash

    @property
    def run_dir(self) -> Path:
        return self.run.folder

    @property
    def model_info(self) -> dict[int, dict[str, Any]]:
        """Per model: ``train_acc``, ``test_acc`` (OUT records), ``n_train``, ``final_loss``,
        ``train_seconds``, ``query_seconds``, files and checksums."""
        return {i: self.run.model_info(i) for i in self.model_ids}

    def observations(
        self, model_ids: Sequence[int] | None = None, *, verify: bool = True
    ) -> NDArray[np.float32]:
        """Logits ``(m, n_records, q, C)`` of ``model_ids`` (default: all requested models)."""
        ids = self.model_ids if model_ids is None else list(model_ids)
        unknown = sorted(set(ids) - set(self.model_ids))
        if unknown:
            raise ValidationError(
                f"model_ids: {unknown[:5]} are not in this result (models 0..{len(self.keep) - 1})"
            )
        return self.run.load_observations(ids, verify=verify)

    def weights(self, model_id: int, trusted: Sequence[str] = ()) -> Any:
        """A model's saved weights (see :meth:`Run.load_weights`)."""
        return self.run.load_weights(model_id, trusted=trusted)


def resolve_recipe(recipe: Recipe | str | Any) -> Recipe:
    """A :class:`Recipe` from a recipe, a registered name (default config) or a config object."""
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, str):
        return recipes_module.make_recipe(recipe)
    for name in recipes_module.names():
        cls = recipes_module.get(name)
        if type(recipe) is cls.config_class:
            return cls(recipe)
    raise ValidationError(
        f"recipe: expected a Recipe, a recipe name ({', '.join(recipes_module.names())}) or a "
        f"recipe config, got {type(recipe).__name__}"
    )


def _check_dataset(dataset: Dataset) -> None:
    if not isinstance(dataset, Dataset):
        raise ValidationError(
            f"dataset: expected a miaudit.data.Dataset, got {type(dataset).__name__}"
        )
    check_array(dataset.X, f"{dataset.name}: X", min_ndim=2, dtype=np.float32)
    check_labels(dataset.y, dataset.n_classes, name=f"{dataset.name}: y")


def _settle_keep(
    run: Run, keep: ArrayLike | int, n_records: int, split_seed: int, pkeep: float
) -> NDArray[np.bool_]:
    """The keep matrix of the requested models; stores it (merged with stored rows)."""
    stored = run.keep
    if isinstance(keep, (int, np.integer)) and not isinstance(keep, bool):
        n_models = int(keep)
        if n_models < 1:
            raise ValidationError(f"keep: expected a number of models >= 1, got {n_models}")
        provenance = {"split_seed": int(split_seed), "pkeep": float(pkeep)}
        if stored is None:
            new = keep_matrix(n_models, n_records, seed=split_seed, pkeep=pkeep)
        elif n_models <= stored.shape[0]:
            return stored[:n_models]
        else:
            seed = np.random.default_rng([int(split_seed), stored.shape[0]])
            new = extend_keep_matrix(stored, n_models - stored.shape[0], seed=seed, pkeep=pkeep)
        run.set_keep(new, provenance)
        return new
    arr = check_keep(keep)
    if arr.shape[1] != n_records:
        raise ValidationError(
            f"keep: has shape {arr.shape}, i.e. {arr.shape[1]} records, but the dataset has "
            f"{n_records} records; expected shape (n_models, {n_records})"
        )
    empty = np.flatnonzero(~arr.any(axis=1))
    if empty.size:
        raise ValidationError(
            f"keep: models {empty[:5].tolist()} have no training record (all-False rows)"
        )
    merged = arr
    if stored is not None and stored.shape[0] > arr.shape[0]:
        merged = stored.copy()
        merged[: arr.shape[0]] = arr
    if stored is None or not np.array_equal(merged, stored):
        run.set_keep(merged, {"given": True})
    return arr


class _ModelStream:
    """Models of the chunks as the executor yields them, each with where and when its task ran
    (for the manifest), with a length for the progress bar."""

    def __init__(
        self, chunks: Iterator[list[ModelResult]], n_models: int, executor: Executor
    ) -> None:
        self.chunks = chunks
        self.n_models = n_models
        self.executor = executor

    def __len__(self) -> int:
        return self.n_models

    def __iter__(self) -> Iterator[tuple[ModelResult, dict[str, Any]]]:
        kind = type(self.executor).__name__
        for chunk in self.chunks:
            execution: dict[str, Any] = {"executor": kind}
            # Executors that time their tasks (Ray) append the timing of a task just before
            # yielding its result.
            timings = getattr(self.executor, "timings", None)
            if timings:
                last = timings[-1]
                if {r.model_id for r in chunk} <= set(getattr(last, "model_ids", None) or ()):
                    execution.update(last.as_dict())
            for result in chunk:
                yield result, execution


def _chunks(
    missing: list[int],
    keep: NDArray[np.bool_],
    recipe: Recipe,
    executor: Executor,
    sizes: tuple[tuple[int, ...], int, int, int],
    memory_budget: int,
) -> list[ChunkTask]:
    per = recipe.models_per_chunk()
    if per is None:
        budget = memory_budget / max(1, executor.n_workers)
        per = max(1, int(budget // recipe.bytes_per_model(*sizes)))
        cap = recipe.max_models_per_chunk(sizes[0], sizes[1])
        if cap is not None:
            per = min(per, cap)
    per = max(1, min(per, math.ceil(len(missing) / max(1, executor.n_workers))))
    return [
        ChunkTask(tuple(missing[i : i + per]), keep[missing[i : i + per]])
        for i in range(0, len(missing), per)
    ]


def train_and_query(
    dataset: Dataset,
    keep: ArrayLike | int,
    recipe: Recipe | str | Any,
    *,
    queries: Sequence[str] | str = ("identity",),
    store_root: str | Path,
    executor: str | Executor = "local",
    split_seed: int = 0,
    pkeep: float = 0.5,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    quiet: bool | None = None,
    wait: bool = False,
) -> RunResult:
    """Train the models of ``keep`` that the store lacks, query every model on every record.

    Parameters
    ----------
    dataset : Dataset
        Records (``X`` float32, ``y`` in ``0..n_classes-1``, record ids).
    keep : array-like of shape (m, n_records), bool, or int
        The keep matrix, or a number of models ``m`` (rows from the store, extended, or drawn
        with :func:`~miaudit.data.splits.keep_matrix` ``(m, n_records, split_seed, pkeep)``).
    recipe : Recipe, str or recipe config
        E.g. ``make_recipe("torch-mlp", epochs=20)`` or ``TorchMLPConfig(epochs=20)``.
    queries : sequence of str
        Registered query names (:mod:`miaudit.train.queries`).
    store_root : str or Path
        Root of the run store.
    executor : str or Executor
        ``"local"`` (default), ``"processes"``, or an executor instance.
    split_seed, pkeep : int, float
        Used only when ``keep`` is a number of models.
    memory_budget : int
        Bytes for the models in flight, all workers together (sizes vectorised chunks).
    quiet : bool, optional
        Progress bar: None = only on a terminal outside CI.
    wait : bool
        If another process writes to the run folder, wait for it (default: fail at once,
        :class:`~miaudit.audit.lock.FolderBusyError`).

    Returns
    -------
    RunResult
    """
    _check_dataset(dataset)
    recipe_obj = resolve_recipe(recipe)
    query_names = resolve_queries(queries)
    apply_queries(torch.from_numpy(dataset.X[:1]), query_names)  # image-only queries fail here
    ex = make_executor(executor)
    if isinstance(memory_budget, bool) or not isinstance(memory_budget, int) or memory_budget < 1:
        raise ValidationError(
            f"memory_budget: expected a positive number of bytes, got {memory_budget!r}"
        )
    n = len(dataset)
    description = {
        "format_version": FORMAT_VERSION,
        "code": training_code_hash(),
        "recipe": recipe_obj.describe(),
        "queries": list(query_names),
        "dataset": {
            "fingerprint": dataset_fingerprint(dataset.X, dataset.y, dataset.record_ids),
            "n_records": n,
            "input_shape": list(dataset.input_shape),
            "n_classes": int(dataset.n_classes),
        },
    }
    store = RunStore(store_root)
    folder = store.run_dir(config_hash(description), recipe_obj.name)
    with folder_lock(folder, wait=wait, what="run folder"):
        run = store.open(description, dataset.record_ids, recipe=recipe_obj.name)
        keep_arr = _settle_keep(run, keep, n, split_seed, pkeep)
        done = {
            i
            for i in run.completed_models(verify=True)
            if i < keep_arr.shape[0]
            and run.model_info(i)["keep_row_sha256"] == row_hash(keep_arr[i])
        }
        missing = [i for i in range(keep_arr.shape[0]) if i not in done]
        if missing:
            sizes = (dataset.input_shape, int(dataset.n_classes), n, n_queries(query_names))
            tasks = _chunks(missing, keep_arr, recipe_obj, ex, sizes, memory_budget)
            fn = TrainChunk(recipe_obj, dataset.X, dataset.y, int(dataset.n_classes), query_names)
            stream = _ModelStream(ex.map(fn, tasks), len(missing), ex)
            with TrainingProgress(
                len(missing),
                recipe_obj.progress_epochs(),
                f"training {len(missing)} {recipe_obj.name} models",
                quiet=quiet,
            ) as bar:
                for result, execution in stream:
                    run.write_model(result, keep_arr[result.model_id], execution)
                    bar.model_done(result.model_id)
    return RunResult(run=run, keep=keep_arr, record_ids=dataset.record_ids, trained=tuple(missing))
