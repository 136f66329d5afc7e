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
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from miaudit.exceptions import ValidationError

T = TypeVar("T")

_LOG = logging.getLogger("miaudit")
#: Set (non-empty) by CI services (GitHub Actions, GitLab, ...): no bars there.
CI_ENV_VAR = "CI"

__all__ = ["progress", "progress_enabled"]


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
