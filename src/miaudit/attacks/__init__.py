"""Membership inference attacks, registered by name.

>>> from miaudit import attacks
>>> attacks.names()            # doctest: +ELLIPSIS
[...]
>>> loss = attacks.get("loss")()  # an Attack; .score(AttackData) -> (n,) scores, higher = member

Each family lives in its own module and registers itself with ``@register("name")``.
"""

from __future__ import annotations

from typing import Any

from miaudit.attacks.base import Attack, AttackData, AttackInfo
from miaudit.registry import Registry, check_call

REGISTRY: Registry[type[Attack]] = Registry("attack")


def register(name: str):
    """Class decorator registering an :class:`Attack` subclass; checks ``info.name`` matches."""

    def decorator(cls: type[Attack]) -> type[Attack]:
        if cls.info.name != name:
            raise ValueError(f"attack {cls.__name__}: info.name {cls.info.name!r} != {name!r}")
        return REGISTRY.register(name)(cls)

    return decorator


def get(name: str) -> type[Attack]:
    """The attack class registered as ``name`` (error lists the valid names)."""
    _load_all()
    return REGISTRY.get(name)


def create(name: str, **params: Any) -> Attack:
    """Instantiate attack ``name`` with ``params``; unknown parameters are a clear error."""
    cls = get(name)
    check_call(cls.__init__, f"attack {name!r}", None, **params)
    return cls(**params)


def names() -> list[str]:
    """Sorted names of all registered attacks."""
    _load_all()
    return REGISTRY.names()


def infos() -> list[AttackInfo]:
    """:class:`AttackInfo` of every registered attack, sorted by name."""
    _load_all()
    return [REGISTRY.get(n).info for n in REGISTRY.names()]


list = names  # the documented ``miaudit.attacks.list()``

_MODULES = ("population", "lira", "rmia", "reference", "shokri", "risk_score")


def _load_all() -> None:
    """Import every attack module so that it registers itself."""
    import importlib

    for mod in _MODULES:
        try:
            importlib.import_module(f"miaudit.attacks.{mod}")
        except ModuleNotFoundError as exc:
            if exc.name != f"miaudit.attacks.{mod}":
                raise


__all__ = [
    "REGISTRY",
    "Attack",
    "AttackData",
    "AttackInfo",
    "create",
    "get",
    "infos",
    "names",
    "register",
]
