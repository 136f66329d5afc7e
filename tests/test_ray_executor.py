"""The ``ray`` executor on a local Ray instance: same models as in-process, dead workers retried,
a failed run resumed with only the missing models, the dataset put once, clear errors."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_digits

from miaudit.audit.engine import ChunkTask, RunResult, train_and_query
from miaudit.audit.executors import EXECUTORS, LocalExecutor, make_executor
from miaudit.audit.ray_executor import (
    INSTALL_HINT,
    RayExecutor,
    RayTaskFailedError,
    import_ray,
)
from miaudit.audit.store import Run
from miaudit.data import Dataset
from miaudit.exceptions import ValidationError
from miaudit.train import make_recipe

#: CPUs of the local Ray instance (the test machine is small and shared).
RAY_CPUS = 2
#: Records and models of the small runs.
N_RECORDS = 300
N_MODELS = 8
#: Models per Ray task in the fault tests (4 tasks: some finish before a late one fails).
MODELS_PER_TASK = 2
#: The model whose task is killed.
KILLED_MODEL = 6


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[Any]:
    """A local Ray instance with two CPUs for the whole module, shut down at the end."""
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=RAY_CPUS, include_dashboard=False, log_to_driver=False)
    # the killing wrappers below live in this test module, which workers cannot import
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def digits() -> Dataset:
    d = load_digits()
    return Dataset(
        X=(d.data[:N_RECORDS] / 16).astype(np.float32),
        y=d.target[:N_RECORDS],
        record_ids=np.arange(N_RECORDS),
        n_classes=10,
    )


@pytest.fixture(scope="module")
def recipe() -> Any:
    return make_recipe("torch-mlp", hidden_sizes=(8,), epochs=2, batch_size=32, seed=3)


@pytest.fixture(scope="module")
def local_run(digits: Dataset, recipe: Any, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """The reference: the same models trained in this process."""
    root = tmp_path_factory.mktemp("local")
    return train_and_query(
        digits, N_MODELS, recipe, store_root=root, quiet=True, executor=LocalExecutor(threads=1)
    )


class KillWorker:
    """Wraps the engine's function: a task holding ``model`` kills its worker process
    (``os._exit``) — on its first attempt only when ``once`` (a marker file, created atomically,
    records the attempt and the killed process id), else on every attempt."""

    def __init__(self, fn: Callable[[ChunkTask], Any], marker: Path, model: int, once: bool):
        self.fn, self.marker, self.model, self.once = fn, marker, model, once

    def __call__(self, task: ChunkTask) -> Any:
        if self.model in task.model_ids:
            if not self.once:
                os._exit(1)
            try:
                fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass  # a retry: train
            else:
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                os._exit(1)
        return self.fn(task)


class KillingRayExecutor(RayExecutor):
    """A :class:`RayExecutor` whose tasks run through :class:`KillWorker`."""

    def __init__(self, marker: Path, once: bool, **params: Any) -> None:
        super().__init__(**params)
        self.marker, self.once = marker, once

    def map(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterator[Any]:
        return super().map(KillWorker(fn, self.marker, KILLED_MODEL, self.once), tasks)


def _count_writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Model ids passed to :meth:`Run.write_model`, in order."""
    written: list[int] = []
    write = Run.write_model

    def counting(self: Run, result: Any, keep_row: Any, *args: Any, **kwargs: Any) -> None:
        written.append(result.model_id)
        write(self, result, keep_row, *args, **kwargs)

    monkeypatch.setattr(Run, "write_model", counting)
    return written


def _assert_store_complete(result: RunResult) -> None:
    """Every model once in the manifest, every file intact, no file left half-written."""
    assert result.run.completed_models(verify=True) == list(range(N_MODELS))
    folder = result.run_dir
    assert len(list((folder / "observations").glob("*.npy"))) == N_MODELS
    assert not [p for p in folder.rglob("*") if ".tmp-" in p.name]


# ------------------------------------------------------------------ without Ray
def test_registered_and_parameters_checked() -> None:
    assert "ray" in EXECUTORS.names()
    assert isinstance(make_executor("ray", num_cpus=2, max_retries=1), RayExecutor)
    with pytest.raises(ValidationError, match="executor 'ray': bad parameters"):
        make_executor("ray", cpus=2)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"address": "localhost"}, "address: expected"),
        ({"num_cpus": -1}, "num_cpus: expected a number >= 0"),
        ({"num_cpus": 0, "num_gpus": 0}, "must ask for some CPU or GPU"),
        ({"max_retries": -1}, "max_retries: expected an integer >= 0"),
        ({"memory": 0}, "memory: expected an integer >= 1"),
        ({"retry_exceptions": "yes"}, "retry_exceptions"),
        ({"retry_exceptions": 3}, "retry_exceptions: expected a bool"),
        ({"models_per_task": 0}, "models_per_task"),
    ]
    for bad, match in cases:
        with pytest.raises(ValidationError, match=match):
            RayExecutor(**bad)
    ex = RayExecutor(num_cpus=2.5, retry_exceptions=[OSError, "builtins:TimeoutError"])
    assert ex.threads_per_task == 2 and ex.retry_exceptions == (OSError, TimeoutError)
    with pytest.raises(ValidationError, match="retry_exceptions"):
        RayExecutor(retry_exceptions=["builtins:len"])
    assert list(RayExecutor(n_workers=3).map(abs, [])) == []  # nothing to do: Ray not touched


def test_missing_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails
    with pytest.raises(ImportError, match=INSTALL_HINT.replace("[", r"\[").replace("]", r"\]")):
        import_ray()
    with pytest.raises(ImportError, match="miaudit"):
        list(RayExecutor().map(abs, [1]))


# ------------------------------------------------------------------ on a local Ray instance
def test_same_observations_as_in_process(
    ray_instance: Any,
    digits: Dataset,
    recipe: Any,
    local_run: RunResult,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    puts: list[Any] = []
    put = ray_instance.put

    def counting_put(value: Any, **kwargs: Any) -> Any:
        puts.append(value)
        return put(value, **kwargs)

    monkeypatch.setattr(ray_instance, "put", counting_put)
    ex = RayExecutor(num_cpus=1)
    assert ex.n_workers == RAY_CPUS
    result = train_and_query(digits, N_MODELS, recipe, store_root=tmp_path, quiet=True, executor=ex)
    assert result.trained == tuple(range(N_MODELS))
    np.testing.assert_array_equal(result.observations(), local_run.observations())
    # the engine's function (recipe and dataset) went into the object store once, not per task
    assert len(ex.timings) == RAY_CPUS and len(puts) == 1 and puts[0].X is digits.X
    ids = sorted(i for t in ex.timings for i in (t.model_ids or ()))
    assert ids == list(range(N_MODELS))
    for t in ex.timings:
        assert t.queue_seconds >= 0 and t.run_seconds > 0 and t.received >= t.finished - 1
        assert t.node_id and t.pid > 0 and set(t.as_dict()) >= {"queue_seconds", "node_id"}
    # ...and each model's manifest entry says where and when its task ran
    for i in range(N_MODELS):
        execution = result.run.model_info(i)["execution"]
        assert execution["executor"] == "RayExecutor" and i in execution["model_ids"]
        assert execution["run_seconds"] > 0 and execution["node_id"]
    assert local_run.run.model_info(0)["execution"] == {"executor": "LocalExecutor"}


def test_killed_task_is_retried_nothing_lost_or_doubled(
    ray_instance: Any,
    digits: Dataset,
    recipe: Any,
    local_run: RunResult,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    written = _count_writes(monkeypatch)
    marker = tmp_path / "killed"
    ex = KillingRayExecutor(marker, once=True, max_retries=2, models_per_task=MODELS_PER_TASK)
    result = train_and_query(
        digits, N_MODELS, recipe, store_root=tmp_path / "store", quiet=True, executor=ex
    )
    assert marker.exists()  # a worker did die
    killed_pid = int(marker.read_text())
    retried = [t for t in ex.timings if KILLED_MODEL in (t.model_ids or ())]
    assert len(retried) == 1 and retried[0].pid != killed_pid
    assert sorted(written) == list(range(N_MODELS))  # each model written exactly once
    _assert_store_complete(result)
    np.testing.assert_array_equal(result.observations(), local_run.observations())


def test_failed_run_resumes_with_only_missing_models(
    ray_instance: Any,
    digits: Dataset,
    recipe: Any,
    local_run: RunResult,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = tmp_path / "store"
    dying = KillingRayExecutor(
        tmp_path / "unused", once=False, max_retries=0, models_per_task=MODELS_PER_TASK
    )
    with pytest.raises(RayTaskFailedError, match=rf"models \[{KILLED_MODEL}, 7\].*run again"):
        train_and_query(digits, N_MODELS, recipe, store_root=store, quiet=True, executor=dying)
    written = _count_writes(monkeypatch)
    ex = RayExecutor(models_per_task=MODELS_PER_TASK)
    result = train_and_query(digits, N_MODELS, recipe, store_root=store, quiet=True, executor=ex)
    assert KILLED_MODEL in result.trained and len(result.trained) < N_MODELS  # some were kept
    assert sorted(written) == list(result.trained)
    _assert_store_complete(result)
    np.testing.assert_array_equal(result.observations(), local_run.observations())


def test_task_exception_keeps_its_class(ray_instance: Any) -> None:
    ex = RayExecutor()
    with pytest.raises(ValueError, match="math domain error"):
        list(ex.map(_sqrt, [4.0, -1.0, 9.0]))
    assert sorted(ex.map(_sqrt, [4.0, 9.0])) == [2.0, 3.0]


def _sqrt(x: float) -> float:
    import math

    return math.sqrt(x)
