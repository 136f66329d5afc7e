"""The ``ray`` executor: the chunks of a run as Ray Core tasks, on one machine or a cluster.

>>> from miaudit.audit.ray_executor import RayExecutor
>>> ex = RayExecutor(address="auto", num_cpus=4, max_retries=3)        # doctest: +SKIP
>>> train_and_query(data, 256, recipe, store_root="runs", executor=ex)  # doctest: +SKIP

Each task of ``map(fn, tasks)`` is one Ray task that runs ``fn(task)`` — for the engine, it
trains one vectorised chunk of models and queries it — and sends the result back to the caller.
The caller (the *driver*) writes the results to the run store, so only the driver needs the
store: workers never open a file of it, and the store's single-writer rule holds however many
nodes train.

* **Resources.** Every task asks Ray for ``num_cpus`` CPUs, ``num_gpus`` GPUs and ``memory``
  bytes; Ray runs as many at once as the cluster holds (:attr:`RayExecutor.n_workers`). Inside a
  task torch uses ``threads_per_task`` intra-op threads (default: ``num_cpus``, at least 1); a
  task with ``num_gpus >= 1`` sees only its own GPUs (``CUDA_VISIBLE_DEVICES``), so the recipe's
  ``device: cuda`` is the task's GPU.
* **Data once.** ``fn`` (for the engine: the recipe and the dataset) is put into Ray's object
  store once per ``map`` call (:func:`ray.put`) and every task receives a reference to it; numpy
  arrays are then read from shared memory on each node without a copy per task.
* **Faults.** A task whose worker process dies (killed, out of memory, node lost) is run again,
  at most ``max_retries`` times (Ray's ``max_retries``). Exceptions raised by ``fn`` itself are
  not retried unless ``retry_exceptions`` says so (a bad config fails the same way every time).
  When a task fails for good, the tasks not yet finished are cancelled and the error is raised;
  results already yielded are in the store, and calling again trains only what is missing.
* **Progress.** Results are yielded as the tasks finish (:func:`ray.wait`), so the engine's
  progress bar moves with every chunk. Per task, :attr:`RayExecutor.timings` records when it
  was submitted, started and finished, its queue wait, run time and node
  (:class:`TaskTiming`).

Ray is an optional dependency (``pip install 'miaudit[ray]'``); it is imported when the executor
first needs it, not when this module is imported.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import Any, TypeVar

import numpy as np

from miaudit._threads import torch_threads
from miaudit.audit.executors import EXECUTORS
from miaudit.exceptions import MiauditError, ValidationError
from miaudit.registry import import_object

T = TypeVar("T")
R = TypeVar("R")

_LOG = logging.getLogger("miaudit.ray")

#: How to install the optional dependency (named in the error when Ray is missing).
INSTALL_HINT = "pip install 'miaudit[ray]'"
#: Times a task whose worker died is run again before the run fails.
DEFAULT_MAX_RETRIES = 3
#: CPUs each task asks for by default.
DEFAULT_NUM_CPUS = 1.0
#: Addresses with a meaning of their own (besides ``ray://host:port`` and ``host:port``).
SPECIAL_ADDRESSES = ("auto", "local")
#: Prefix of a Ray Client address.
CLIENT_PREFIX = "ray://"
#: torch's warning for a tensor made from a read-only array. Arrays Ray hands a task are
#: read-only views of its shared object store; the recipes only read the dataset (a run through
#: Ray gives the same bits as one in-process, see tests/test_ray_executor.py), so a task does not
#: repeat it to the user.
_READ_ONLY_WARNING = "The given NumPy array is not writable"

__all__ = [
    "DEFAULT_MAX_RETRIES",
    "INSTALL_HINT",
    "RayExecutor",
    "RayTaskFailedError",
    "TaskTiming",
    "import_ray",
]


class RayTaskFailedError(MiauditError, RuntimeError):
    """A Ray task failed for good: its worker died on every attempt, or its node was lost."""


def import_ray() -> ModuleType:
    """The ``ray`` module, or an :class:`ImportError` that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError(
            f"the 'ray' executor needs Ray, which is not installed ({exc}); install it with "
            f"{INSTALL_HINT}"
        ) from exc
    return ray


@dataclass(frozen=True)
class TaskTiming:
    """Where and when one task of a :meth:`RayExecutor.map` call ran.

    Times are seconds since the epoch (``time.time()``): ``submitted`` and ``received`` on the
    driver's clock, ``started`` and ``finished`` on the worker's, so ``queue_seconds`` across
    nodes is only as good as their clock synchronisation (NTP: milliseconds).

    Attributes
    ----------
    index : int
        Position of the task in the sequence given to ``map``.
    model_ids : tuple of int or None
        The task's ``model_ids`` (engine chunks), None for other tasks.
    submitted, started, finished, received : float
        Task handed to Ray; ``fn`` started / returned on the worker (of the attempt that
        succeeded); result taken by the driver.
    node_id, hostname : str
        Ray node id and host name of the worker that ran the successful attempt.
    pid : int
        Its worker process id.
    """

    index: int
    model_ids: tuple[int, ...] | None
    submitted: float
    started: float
    finished: float
    received: float
    node_id: str
    hostname: str
    pid: int

    @property
    def queue_seconds(self) -> float:
        """From submission to the start of the successful attempt: waiting for resources, the
        worker start, fetching the arguments — and any failed attempts before it."""
        return self.started - self.submitted

    @property
    def run_seconds(self) -> float:
        """Wall time of ``fn`` on the worker (the successful attempt)."""
        return self.finished - self.started

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields, with ``queue_seconds`` and ``run_seconds``."""
        out = asdict(self)
        out["model_ids"] = None if self.model_ids is None else list(self.model_ids)
        out.update(queue_seconds=self.queue_seconds, run_seconds=self.run_seconds)
        return out


def _run_task(fn: Callable[[T], R], task: T, threads: int) -> tuple[R, dict[str, Any]]:
    """Body of every Ray task: ``fn(task)`` with ``threads`` torch threads, and where/when."""
    import ray

    started = time.time()
    with torch_threads(threads), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_READ_ONLY_WARNING, category=UserWarning)
        result = fn(task)
    info = {
        "started": started,
        "finished": time.time(),
        "node_id": ray.get_runtime_context().get_node_id(),
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
    }
    return result, info


_REMOTE: dict[int, Any] = {}


def _remote_function(ray: ModuleType) -> Any:
    """:func:`_run_task` as a Ray remote function (made once per Ray module)."""
    key = id(ray)
    if key not in _REMOTE:
        _REMOTE[key] = ray.remote(_run_task)
    return _REMOTE[key]


def _check_number(value: Any, name: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValidationError(f"{name}: expected a finite number, got {value!r}")
    if value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValidationError(f"{name}: expected a number {bound}, got {value!r}")
    return float(value)


def _check_count(value: Any, name: str, *, minimum: int, allow_none: bool = True) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        none = " or None" if allow_none else ""
        raise ValidationError(f"{name}: expected an integer >= {minimum}{none}, got {value!r}")
    return int(value)


def _check_address(address: Any) -> str | None:
    if address is None:
        return None
    if not isinstance(address, str) or not address.strip():
        raise ValidationError(
            f"address: expected None (start a local Ray instance), 'auto' (the cluster this "
            f"machine belongs to), 'ray://host:port' or 'host:port', got {address!r}"
        )
    address = address.strip()
    if address in SPECIAL_ADDRESSES or address.startswith(CLIENT_PREFIX) or ":" in address:
        return address
    raise ValidationError(
        f"address: expected 'auto', 'local', 'ray://host:port' or 'host:port', got {address!r}"
    )


def _check_retry_exceptions(value: Any) -> bool | tuple[type[BaseException], ...]:
    """A bool, or exception classes (given as classes or ``"module:Class"`` strings)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (type, str)):
        value = (value,)
    if isinstance(value, (list, tuple)):
        classes = [import_object(v, "retry_exceptions") if isinstance(v, str) else v for v in value]
        if all(isinstance(c, type) and issubclass(c, BaseException) for c in classes):
            return tuple(classes)
    raise ValidationError(
        f"retry_exceptions: expected a bool or a list of exception classes (or 'module:Class' "
        f"names, e.g. 'builtins:OSError'), got {value!r}"
    )


@EXECUTORS.register("ray")
class RayExecutor:
    """Runs each task as a Ray task, on a local Ray instance or a cluster.

    Parameters
    ----------
    address : str, optional
        ``None`` (default): as :func:`ray.init` without an address — the cluster named by
        the ``RAY_ADDRESS`` environment variable, else the latest one started on this machine
        with ``ray start``, else a new local instance. ``"auto"``: the same, but an error
        instead of a new local instance. ``"local"``: always a new local instance.
        ``"ray://host:port"``: a remote cluster through Ray Client. ``"host:port"``: a
        cluster's GCS address. Ray is connected to on first use, not here; a process already
        connected (``ray.is_initialized()``) is used as it is, whatever the address.
    num_cpus : float
        CPUs each task asks for (default 1; fractions allowed).
    num_gpus : float
        GPUs each task asks for (default 0). Use it with a recipe whose ``device`` is
        ``cuda``; fractions let several tasks share a GPU.
    memory : int, optional
        Bytes of memory each task asks for (Ray schedules by it; it does not cap the task).
    max_retries : int
        Times a task whose worker died (killed, out of memory, node lost) is run again
        (default 3).
    retry_exceptions : bool or list of exception classes
        Also retry tasks whose ``fn`` raised (all exceptions, or these classes, also as
        ``"module:Class"`` names for a config file). Default False: miaudit's own errors are
        deterministic, so a retry would fail the same way.
    threads_per_task : int, optional
        torch intra-op threads inside a task (default: ``num_cpus`` rounded down, at least 1).
    n_workers : int, optional
        Tasks that can run at once, as the engine sizes its chunks by it (default: computed
        from the cluster's resources when first read, see :attr:`n_workers`). Give it for an
        autoscaling cluster, whose current size is not its final one.
    models_per_task : int, optional
        Re-cut the engine's chunks into tasks of this many models (tasks must have
        ``model_ids`` and ``keep``, as :class:`~miaudit.audit.engine.ChunkTask`). Default:
        one task per engine chunk.
    init_kwargs : mapping, optional
        Extra keyword arguments for :func:`ray.init` when this executor connects (e.g.
        ``{"runtime_env": {...}}``, or ``{"num_cpus": 2}`` for a local instance).
    """

    def __init__(
        self,
        address: str | None = None,
        num_cpus: float = DEFAULT_NUM_CPUS,
        num_gpus: float = 0.0,
        memory: int | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        retry_exceptions: bool | Sequence[type[BaseException] | str] = False,
        threads_per_task: int | None = None,
        n_workers: int | None = None,
        models_per_task: int | None = None,
        init_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.address = _check_address(address)
        self.num_cpus = _check_number(num_cpus, "num_cpus")
        self.num_gpus = _check_number(num_gpus, "num_gpus")
        if self.num_cpus == 0 and self.num_gpus == 0:
            raise ValidationError("num_cpus, num_gpus: a task must ask for some CPU or GPU")
        self.memory = _check_count(memory, "memory", minimum=1)
        retries = _check_count(max_retries, "max_retries", minimum=0, allow_none=False)
        self.max_retries: int = retries if retries is not None else DEFAULT_MAX_RETRIES
        self.retry_exceptions = _check_retry_exceptions(retry_exceptions)
        threads = _check_count(threads_per_task, "threads_per_task", minimum=1)
        self.threads_per_task: int = threads or max(1, int(self.num_cpus))
        self._n_workers = _check_count(n_workers, "n_workers", minimum=1)
        self.models_per_task = _check_count(models_per_task, "models_per_task", minimum=1)
        if init_kwargs is not None and not isinstance(init_kwargs, Mapping):
            raise ValidationError(
                f"init_kwargs: expected a mapping of ray.init arguments, got {init_kwargs!r}"
            )
        self.init_kwargs: dict[str, Any] = dict(init_kwargs or {})
        #: Timings of the tasks of the last :meth:`map` call, in the order they finished.
        self.timings: list[TaskTiming] = []
        self._started_ray = False

    # ------------------------------------------------------------------ connection
    def connect(self) -> ModuleType:
        """Connect to Ray (see ``address``) unless this process already is; returns ``ray``."""
        ray = import_ray()
        if not ray.is_initialized():
            kwargs = dict(self.init_kwargs)
            if self.address is not None:
                kwargs["address"] = self.address
            ray.init(**kwargs)
            self._started_ray = True
            _LOG.info("connected to Ray: %s", ray.cluster_resources())
        return ray

    def shutdown(self) -> None:
        """Disconnect from Ray if this executor connected (a local instance it started stops)."""
        if self._started_ray:
            import_ray().shutdown()
            self._started_ray = False

    @property
    def n_workers(self) -> int:
        """Tasks that can run at once: the given ``n_workers``, else the cluster's CPUs (GPUs,
        memory) divided by what one task asks for, at least 1. Reading it connects to Ray."""
        if self._n_workers is not None:
            return self._n_workers
        resources = self.connect().cluster_resources()
        asks = {"CPU": self.num_cpus, "GPU": self.num_gpus, "memory": float(self.memory or 0)}
        fits = [resources.get(key, 0.0) // need for key, need in asks.items() if need > 0]
        return max(1, int(min(fits)))

    @n_workers.setter
    def n_workers(self, value: int | None) -> None:
        self._n_workers = _check_count(value, "n_workers", minimum=1)

    def _options(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            "num_cpus": self.num_cpus,
            "num_gpus": self.num_gpus,
            "max_retries": self.max_retries,
            "retry_exceptions": (
                list(self.retry_exceptions)
                if isinstance(self.retry_exceptions, tuple)
                else self.retry_exceptions
            ),
        }
        if self.memory is not None:
            options["memory"] = self.memory
        return options

    # ------------------------------------------------------------------ tasks
    def _recut(self, tasks: Sequence[T]) -> Sequence[T]:
        """The engine's chunks re-cut into tasks of ``models_per_task`` models."""
        per = self.models_per_task
        if per is None:
            return tasks
        if not all(hasattr(t, "model_ids") and hasattr(t, "keep") for t in tasks):
            raise ValidationError(
                "models_per_task: the tasks are not chunks of models (with model_ids and "
                "keep); leave models_per_task at None"
            )
        kind = type(tasks[0])
        ids = [i for t in tasks for i in t.model_ids]  # type: ignore[attr-defined]
        keep = np.concatenate([np.asarray(t.keep) for t in tasks])  # type: ignore[attr-defined]
        return [
            kind(model_ids=tuple(ids[i : i + per]), keep=keep[i : i + per])  # type: ignore[call-arg]
            for i in range(0, len(ids), per)
        ]

    def map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> Iterator[R]:
        """Run ``fn`` on every task as a Ray task; yield the results as they finish.

        Raises
        ------
        Exception
            What ``fn`` raised (after ``retry_exceptions`` retries), as Ray re-raises it: an
            instance of both the original class and :class:`ray.exceptions.RayTaskError`.
        RayTaskFailedError
            A task's worker died more than ``max_retries`` times, or Ray lost it otherwise.
        """
        self.timings = []
        if not tasks:
            return
        ray = self.connect()
        tasks = self._recut(tasks)
        remote = _remote_function(ray).options(**self._options())
        fn_ref = ray.put(fn)  # once per call: every task gets the reference, not a copy
        submitted: dict[Any, tuple[int, float]] = {}
        for index, task in enumerate(tasks):
            ref = remote.remote(fn_ref, task, self.threads_per_task)
            submitted[ref] = (index, time.time())
        pending = list(submitted)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    index, at = submitted.pop(ref)
                    result, info = self._get(ray, ref, index, tasks[index])
                    ids = getattr(tasks[index], "model_ids", None)
                    timing = TaskTiming(
                        index=index,
                        model_ids=None if ids is None else tuple(int(i) for i in ids),
                        submitted=at,
                        received=time.time(),
                        **info,
                    )
                    self.timings.append(timing)
                    _LOG.debug("task %d done: %s", index, timing.as_dict())
                    yield result
        finally:
            for ref in pending:  # on error or when the caller stops early
                with suppress(Exception):
                    ray.cancel(ref)

    def _get(self, ray: ModuleType, ref: Any, index: int, task: Any) -> tuple[Any, dict]:
        """A finished task's ``(result, info)``; Ray's errors other than ``fn``'s own become
        :class:`RayTaskFailedError` naming the task."""
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError:
            raise  # fn raised: re-raised as its own class
        except ray.exceptions.RayError as exc:
            ids = getattr(task, "model_ids", None)
            what = f"task {index}" + ("" if ids is None else f" (models {list(ids)})")
            raise RayTaskFailedError(
                f"{what} failed after {self.max_retries} retries: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''} — finished models are in the "
                "store; run again to train only the missing ones (raise max_retries or the "
                "task's memory if workers keep dying)"
            ) from exc
