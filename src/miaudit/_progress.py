"""Progress bars for long work (training, querying): shown on a terminal, silent in CI and logs.

>>> for epoch in progress(3, "training", quiet=True):
...     pass

A bar is drawn (with :mod:`rich`, on stderr) only when it can help a person watching: ``quiet``
is ``None`` (decide from the environment), stderr is a terminal and the environment variable
``CI`` is unset or empty. ``quiet=True`` never draws; ``quiet=False`` always draws (e.g. in a
notebook, where stderr is not a terminal). At the end one line is logged at INFO level to the
``miaudit`` logger (what ran, how many steps, how long), so logs keep a record without bars.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any, TypeVar

from miaudit.exceptions import ValidationError

T = TypeVar("T")

_LOG = logging.getLogger("miaudit")
#: Set (non-empty) by CI services (GitHub Actions, GitLab, ...): no bars there.
CI_ENV_VAR = "CI"

__all__ = ["TrainingProgress", "progress", "progress_enabled", "report_epoch"]

#: The training bars open in this process, innermost last: :func:`report_epoch` reports to
#: the last one; each bar removes itself (not whatever is last) when it closes.
_EPOCH_SINKS: list[Callable[[Sequence[int]], None]] = []
_SINKS_LOCK = threading.Lock()


def progress_enabled(quiet: bool | None = None) -> bool:
    """Whether :func:`progress` draws a bar for this ``quiet`` setting in this environment."""
    if quiet is not None:
        return not quiet
    return not os.environ.get(CI_ENV_VAR) and sys.stderr.isatty()


def progress(
    iterable_or_total: Iterable[T] | int, description: str, *, quiet: bool | None = None
) -> Iterator[T]:
    """Iterate over ``iterable_or_total`` (or ``range(total)`` for an int), showing a bar.

    Parameters
    ----------
    iterable_or_total : iterable or int
        What to iterate over; an int ``k`` means ``range(k)``. The bar knows the total when
        the iterable has a length.
    description : str
        Shown next to the bar and in the final log line.
    quiet : bool, optional
        ``None``: bar only on a terminal outside CI; ``True``: never; ``False``: always.

    Yields
    ------
    The items of the iterable, unchanged.
    """
    if isinstance(iterable_or_total, bool):
        raise ValidationError("iterable_or_total: expected an iterable or an int, got a bool")
    if isinstance(iterable_or_total, int):
        if iterable_or_total < 0:
            raise ValidationError(
                f"iterable_or_total: expected a non-negative total, got {iterable_or_total}"
            )
        iterable: Iterable = range(iterable_or_total)
    else:
        iterable = iterable_or_total
    total = len(iterable) if hasattr(iterable, "__len__") else None  # type: ignore[arg-type]
    start = time.perf_counter()
    count = 0
    if progress_enabled(quiet):
        from rich.console import Console
        from rich.progress import Progress

        with Progress(console=Console(stderr=True), transient=False) as bar:
            for item in bar.track(iterable, total=total, description=description):
                count += 1
                yield item
    else:
        for item in iterable:
            count += 1
            yield item
    _LOG.info("%s: %d steps in %.1f s", description, count, time.perf_counter() - start)


def report_epoch(model_ids: Sequence[int]) -> None:
    """Tell the training bar of this process, if any, that models ``model_ids`` finished one
    more epoch (called by the torch recipes' training loops; a no-op elsewhere, e.g. in a
    worker process, where the bar moves when each model's result arrives)."""
    with _SINKS_LOCK:
        sink = _EPOCH_SINKS[-1] if _EPOCH_SINKS else None
    if sink is not None:
        sink(model_ids)


@contextmanager
def _epoch_sink(sink: Callable[[Sequence[int]], None]) -> Iterator[None]:
    with _SINKS_LOCK:
        _EPOCH_SINKS.append(sink)
    try:
        yield
    finally:
        with _SINKS_LOCK:
            # this bar's own entry, wherever it is: bars opened on other threads may close in
            # any order
            for i in range(len(_EPOCH_SINKS) - 1, -1, -1):
                if _EPOCH_SINKS[i] is sink:
                    del _EPOCH_SINKS[i]
                    break


class TrainingProgress:
    """A bar over ``n_models × epochs`` units of training, with the time remaining.

    It moves by one unit each time a model in this process finishes an epoch
    (:func:`report_epoch`, from any thread) and, when a model's result arrives
    (:meth:`model_done`), by whatever of that model's epochs were not reported (all of them when
    it trained in another process or has no epochs). Use it as a context manager; the epoch
    reports reach it only inside the ``with`` block.

    >>> with TrainingProgress(2, 3, "training", quiet=True) as bar:
    ...     report_epoch([0, 1])
    ...     bar.model_done(0); bar.model_done(1)
    >>> bar.completed
    6
    """

    def __init__(self, n_models: int, epochs: int, description: str, *, quiet: bool | None):
        self.epochs = max(1, int(epochs))
        self.total = int(n_models) * self.epochs
        self.description = description
        self.quiet = quiet
        self.completed = 0
        self._reported: dict[int, int] = {}
        self._lock = threading.Lock()
        self._stack = ExitStack()
        self._bar: Any = None
        self._task: Any = None
        self._start = 0.0

    def __enter__(self) -> TrainingProgress:
        self._start = time.perf_counter()
        if progress_enabled(self.quiet):
            from rich.console import Console
            from rich.progress import Progress

            self._bar = self._stack.enter_context(Progress(console=Console(stderr=True)))
            self._task = self._bar.add_task(self.description, total=self.total)
        self._stack.enter_context(_epoch_sink(self._on_epoch))
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()
        _LOG.info(
            "%s: %d of %d model-epochs in %.1f s",
            self.description,
            self.completed,
            self.total,
            time.perf_counter() - self._start,
        )

    def _advance(self, units: int) -> None:
        if units <= 0:
            return
        self.completed += units
        if self._bar is not None:
            self._bar.advance(self._task, units)

    def _on_epoch(self, model_ids: Sequence[int]) -> None:
        with self._lock:
            units = 0
            for i in model_ids:
                done = self._reported.get(int(i), 0)
                if done < self.epochs:
                    self._reported[int(i)] = done + 1
                    units += 1
            self._advance(units)

    def model_done(self, model_id: int) -> None:
        """Model ``model_id``'s result arrived: count its epochs not yet reported."""
        with self._lock:
            done = self._reported.get(int(model_id), 0)
            self._reported[int(model_id)] = self.epochs
            self._advance(self.epochs - done)
