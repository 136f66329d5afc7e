"""Executors: same results through one interface, errors propagate, results arrive as completed."""

from __future__ import annotations

import math
import operator

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from miaudit.audit.engine import train_and_query
from miaudit.audit.executors import (
    EXECUTORS,
    Executor,
    LocalExecutor,
    ProcessExecutor,
    ThreadExecutor,
    make_executor,
)
from miaudit.data import Dataset
from miaudit.exceptions import UnknownNameError, ValidationError
from miaudit.train import make_recipe


def test_registry_names_and_protocol():
    assert EXECUTORS.names() == ["local", "processes", "ray", "threads"]
    assert isinstance(make_executor("local"), Executor)
    assert isinstance(make_executor("processes", n_workers=2), ProcessExecutor)
    custom = LocalExecutor(threads=1)
    assert make_executor(custom) is custom


def test_bad_executor_arguments():
    with pytest.raises(UnknownNameError, match="Valid executors: local, processes, ray, threads"):
        make_executor("gpu")
    with pytest.raises(ValidationError, match="executor 'local': bad parameters"):
        make_executor("local", n_workers=3)
    with pytest.raises(ValidationError, match="n_workers: expected a positive integer"):
        ProcessExecutor(n_workers=0)
    with pytest.raises(ValidationError, match="an object with map"):
        make_executor(42)


def test_local_executor_in_order_and_sets_threads():
    before = torch.get_num_threads()
    seen = []

    def fn(x):
        seen.append(torch.get_num_threads())
        return x * x

    assert list(LocalExecutor(threads=1).map(fn, [1, 2, 3])) == [1, 4, 9]
    assert seen == [1, 1, 1]
    assert torch.get_num_threads() == before


def test_local_executor_stops_at_first_error():
    done = []

    def fn(x):
        if x == 2:
            raise ValueError("task 2 failed")
        done.append(x)
        return x

    it = LocalExecutor().map(fn, [0, 1, 2, 3])
    assert next(it) == 0 and next(it) == 1
    with pytest.raises(ValueError, match="task 2 failed"):
        next(it)
    assert done == [0, 1]


def test_thread_executor_results_errors_and_threads():
    before = torch.get_num_threads()
    ex = ThreadExecutor(n_workers=2, threads_per_worker=1)
    seen = []

    def fn(x):
        seen.append(torch.get_num_threads())
        if x < 0:
            raise ValueError(f"negative task {x}")
        return 2 * x

    assert sorted(ex.map(fn, [3, 1, 2])) == [2, 4, 6]
    assert set(seen) == {1}
    with pytest.raises(ValueError, match="negative task -1"):
        list(ex.map(fn, [1, -1, 2]))
    assert torch.get_num_threads() == before
    assert list(ex.map(fn, [])) == []


def test_thread_executor_restores_threads_when_its_results_are_abandoned():
    """A consumer that stops early (an error while writing a model) closes the generator: the
    thread count is restored then, not when the generator is garbage-collected."""
    before = torch.get_num_threads()
    results = ThreadExecutor(n_workers=2, threads_per_worker=1).map(lambda x: x, [1, 2, 3])
    next(results)
    assert torch.get_num_threads() == 1
    results.close()
    assert torch.get_num_threads() == before


def test_threads_give_the_same_models_as_local(tmp_path):
    d = load_digits()
    data = Dataset(
        X=(d.data[:300] / 16).astype(np.float32),
        y=d.target[:300],
        record_ids=np.arange(300),
        n_classes=10,
    )
    recipe = make_recipe("torch-mlp", hidden_sizes=(8,), epochs=2, batch_size=32)
    local = train_and_query(
        data, 4, recipe, store_root=tmp_path / "a", quiet=True, executor=LocalExecutor(threads=1)
    )
    before = torch.get_num_threads()
    threads = train_and_query(
        data, 4, recipe, store_root=tmp_path / "b", quiet=True, executor="threads"
    )
    # the attack stage that follows gets torch's thread count back
    assert torch.get_num_threads() == before
    assert threads.trained == (0, 1, 2, 3)
    np.testing.assert_allclose(threads.observations(), local.observations(), atol=1e-4)


@pytest.mark.slow
def test_process_executor_results_and_errors():
    ex = ProcessExecutor(n_workers=2, threads_per_worker=1)
    assert sorted(ex.map(math.factorial, [5, 3, 4])) == [6, 24, 120]
    with pytest.raises(ValueError, match="math domain error"):
        list(ex.map(math.sqrt, [4.0, -1.0]))
    assert list(ex.map(operator.neg, [])) == []


@pytest.mark.slow
def test_processes_give_the_same_models_as_local(tmp_path):
    d = load_digits()
    data = Dataset(
        X=(d.data[:300] / 16).astype(np.float32),
        y=d.target[:300],
        record_ids=np.arange(300),
        n_classes=10,
    )
    recipe = make_recipe("torch-mlp", hidden_sizes=(8,), epochs=2, batch_size=32)
    local = train_and_query(
        data, 4, recipe, store_root=tmp_path / "a", quiet=True, executor=LocalExecutor(threads=1)
    )
    procs = train_and_query(
        data,
        4,
        recipe,
        store_root=tmp_path / "b",
        quiet=True,
        executor=ProcessExecutor(n_workers=2, threads_per_worker=1),
    )
    assert procs.trained == (0, 1, 2, 3)
    np.testing.assert_allclose(procs.observations(), local.observations(), atol=1e-4)
    np.testing.assert_array_equal(procs.keep, local.keep)
