"""A small name → object registry with a decorator, shared by attacks, datasets and recipes.

Adding an attack (or a dataset, or a training recipe) touches one file: the module that defines
it registers itself with ``@REGISTRY.register("name")``.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from miaudit.exceptions import UnknownNameError, ValidationError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps unique names to objects of one kind.

    Parameters
    ----------
    kind : str
        What the registry holds ("attack", "dataset", ...); used in error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register the decorated object under ``name`` (lower-case, unique)."""
        key = name.lower()

        def decorator(obj: T) -> T:
            if key in self._items:
                raise ValueError(f"{self.kind} {key!r} is already registered")
            self._items[key] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        """Return the object registered as ``name``.

        Raises
        ------
        UnknownNameError
            If ``name`` is not registered; the message lists every valid name and the closest.
        """
        key = str(name).lower()
        if key not in self._items:
            valid = sorted(self._items)
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}.{hint} Valid {self.kind}s: {', '.join(valid)}"
            )
        return self._items[key]

    def names(self) -> list[str]:
        """Sorted list of registered names."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)


def check_call(fn: Callable[..., Any], what: str, *args: Any, **params: Any) -> None:
    """Raise :class:`ValidationError` unless ``fn(*args, **params)`` matches ``fn``'s signature.

    Checks the call without making it, so that an unknown keyword is reported as such (with
    the valid ones listed) and a ``TypeError`` raised *inside* ``fn`` is never mistaken for
    one. ``what`` names the thing called in the message (e.g. ``"attack 'lira'"``).
    """
    sig = inspect.signature(fn)
    try:
        sig.bind(*args, **params)
    except TypeError as exc:
        skip = len(args)
        valid = [p for i, p in enumerate(sig.parameters) if i >= skip]
        raise ValidationError(
            f"{what}: bad parameters {sorted(params)} ({exc}); valid parameters: "
            f"{', '.join(valid) or 'none'}"
        ) from None
