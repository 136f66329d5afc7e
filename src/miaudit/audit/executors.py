"""Executors: where the work units of a run (chunks of models) are computed.

Every executor has one method, ``map(fn, tasks)``, which yields ``fn(task)`` for each task *as
it completes* (not necessarily in order), and an attribute ``n_workers`` (how many tasks run at
once). The engine writes each chunk's models to the run store as soon as ``map`` yields them, so
an executor never holds finished results back. If a task raises, ``map`` raises that exception
(after cancelling the tasks not yet started); results already yielded are safe on disk.

=============  ===================================================================
name           what
=============  ===================================================================
``local``      in this process, one task after another (the default)
``threads``    a pool of threads in this process, each running its tasks with single-threaded
               torch kernels (torch releases the GIL inside its kernels)
``processes``  a pool of worker processes (``concurrent.futures``, ``spawn`` start
               method), each with ``threads_per_worker`` torch threads
=============  ===================================================================

``threads`` runs independent chunks side by side instead of splitting every kernel across
cores. On a machine shared with other jobs this is much faster than one chunk with several torch
threads, whose kernels all wait at a barrier for the slowest thread (measured on 2 busy cores:
5× for the MLP ensemble); it needs no process start and no copy of the data.

Adding one (e.g. Ray) is one class with ``map`` and ``n_workers``, registered with
``@EXECUTORS.register("name")``. ``fn`` and the tasks must be picklable for executors that run
elsewhere; the engine's ``fn`` is a small object holding the recipe and the dataset.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import (
    FIRST_COMPLETED,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from concurrent.futures import Executor as FuturesExecutor
from typing import Any, Protocol, TypeVar, runtime_checkable

from miaudit._threads import torch_threads
from miaudit.exceptions import ValidationError
from miaudit.registry import Registry

T = TypeVar("T")
R = TypeVar("R")

__all__ = [
    "EXECUTORS",
    "Executor",
    "LocalExecutor",
    "ProcessExecutor",
    "ThreadExecutor",
    "make_executor",
]


@runtime_checkable
class Executor(Protocol):
    """Runs ``fn`` on each task and yields the results as they complete."""

    n_workers: int

    def map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> Iterator[R]: ...


#: Executors: the in-process ones below, Ray's, then the ``miaudit.executors`` entry points.
EXECUTORS: Registry[type] = Registry(
    "executor", modules=("miaudit.audit.ray_executor",), entry_points="miaudit.executors"
)


def _check_threads(value: int | None, name: str) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValidationError(f"{name}: expected a positive integer or None, got {value!r}")
    return value


@EXECUTORS.register("local")
class LocalExecutor:
    """Runs the tasks in this process, in order.

    Parameters
    ----------
    threads : int, optional
        torch intra-op threads while the tasks run (default: leave torch's setting).
    """

    def __init__(self, threads: int | None = None) -> None:
        self.threads = _check_threads(threads, "threads")
        self.n_workers = 1

    def map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> Iterator[R]:
        with torch_threads(self.threads):
            for task in tasks:
                yield fn(task)


class _PoolExecutor:
    """Shared settings of the pool executors.

    Parameters
    ----------
    n_workers : int, optional
        Tasks run at once (default: the number of CPU cores).
    threads_per_worker : int, optional
        torch intra-op threads per worker (default: cores // n_workers, at least 1).
    """

    def __init__(self, n_workers: int | None = None, threads_per_worker: int | None = None) -> None:
        cores = os.cpu_count() or 1
        self.n_workers = _check_threads(n_workers, "n_workers") or cores
        self.threads_per_worker = _check_threads(threads_per_worker, "threads_per_worker") or max(
            1, cores // self.n_workers
        )


def _as_completed(pool: FuturesExecutor, fn: Callable[[T], R], tasks: Sequence[T]) -> Iterator[R]:
    """Submit every task to ``pool``; yield results as they complete; cancel the rest on error."""
    pending: set[Future[Any]] = {pool.submit(fn, task) for task in tasks}
    try:
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@EXECUTORS.register("threads")
class ThreadExecutor(_PoolExecutor):
    """Runs the tasks on ``n_workers`` threads of this process (parameters: see
    :class:`_PoolExecutor`).

    torch's intra-op thread count is set to ``threads_per_worker`` while the tasks run — it is a
    process-wide setting, so do not run other torch work at the same time.
    """

    def map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> Iterator[R]:
        if not tasks:
            return
        with torch_threads(self.threads_per_worker):
            pool = ThreadPoolExecutor(max_workers=min(self.n_workers, len(tasks)))
            yield from _as_completed(pool, fn, tasks)


#: ``prctl`` option asking Linux to signal a process when its parent dies.
_PR_SET_PDEATHSIG = 1
#: Seconds between a worker's checks that its parent is still alive (where prctl is missing).
PARENT_POLL_SECONDS = 1.0


def _die_with_parent(parent: int) -> None:
    """Make this worker exit when the process that started the pool dies (``kill -9``
    included), so that no orphaned worker keeps its memory: ``PR_SET_PDEATHSIG`` on Linux,
    and everywhere a daemon thread that polls the parent's pid."""
    import signal
    import sys
    import threading
    import time

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(PARENT_POLL_SECONDS)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="miaudit-parent-watch", daemon=True).start()


def _init_worker(threads: int, parent: int | None = None) -> None:
    import torch

    if parent is not None:
        _die_with_parent(parent)
    torch.set_num_threads(threads)


@EXECUTORS.register("processes")
class ProcessExecutor(_PoolExecutor):
    """Runs the tasks in a pool of worker processes started with ``spawn``, each with
    ``threads_per_worker`` torch threads (parameters: see :class:`_PoolExecutor`)."""

    def map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> Iterator[R]:
        import multiprocessing

        if not tasks:
            return
        pool = ProcessPoolExecutor(
            max_workers=min(self.n_workers, len(tasks)),
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(self.threads_per_worker, os.getpid()),
        )
        yield from _as_completed(pool, fn, tasks)


def make_executor(executor: str | Executor, **params: Any) -> Executor:
    """An executor instance from a registered name (with ``params``) or an instance as is.

    Raises
    ------
    UnknownNameError
        For an unregistered name (the message lists the valid ones).
    ValidationError
        For parameters the executor does not take.
    """
    if not isinstance(executor, str):
        if not isinstance(executor, Executor):
            raise ValidationError(
                f"executor: expected a name ({', '.join(EXECUTORS)}) or an object with map() "
                f"and n_workers, got {type(executor).__name__}"
            )
        if params:
            raise ValidationError("executor: parameters are only accepted with an executor name")
        return executor
    cls = EXECUTORS.get(executor)
    try:
        return cls(**params)
    except TypeError as exc:
        raise ValidationError(
            f"executor {executor!r}: bad parameters {sorted(params)} ({exc})"
        ) from None
