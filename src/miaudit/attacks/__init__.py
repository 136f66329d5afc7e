"""Membership inference attacks, registered by name.

>>> from miaudit import attacks
>>> "lira" in attacks.names()
True
>>> loss = attacks.create("loss")   # an Attack; .score(AttackData) -> (n,) scores, higher = member
>>> loss.info.signals
('cross_entropy_loss',)

Each family lives in its own module of this package and registers itself with
``@register("name")``: every public module here is imported on first use (module discovery), so
a new attack is one new file. Attacks of other packages arrive through the ``miaudit.attacks``
entry-point group, and a config may name any attack class as ``"module:Class"``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from miaudit.exceptions import ValidationError
from miaudit.registry import Registry, check_call

if TYPE_CHECKING:
    from miaudit.attacks.base import Attack, AttackData, AttackInfo

#: Names of :mod:`miaudit.attacks.base` that this package re-exports, imported on first use so
#: that the registry (and ``miaudit attacks``, see :mod:`miaudit.attacks._catalog`) can be
#: reached without importing numpy.
_BASE_NAMES = ("Attack", "AttackData", "AttackInfo")


def __getattr__(name: str) -> Any:
    if name in _BASE_NAMES:
        from miaudit.attacks import base

        return getattr(base, name)
    raise AttributeError(f"module 'miaudit.attacks' has no attribute {name!r}")


def check_attack_class(name: str, cls: Any) -> type[Attack]:
    """``cls`` if it is an :class:`Attack` subclass whose ``info`` names registered signals.

    Raises
    ------
    ValidationError
        Naming ``name`` and what is wrong.
    """
    from miaudit.attacks.base import Attack, AttackInfo
    from miaudit.signals import SIGNALS

    if not (isinstance(cls, type) and issubclass(cls, Attack)):
        raise ValidationError(
            f"attack {name!r}: expected a subclass of miaudit.attacks.Attack, got {cls!r}"
        )
    info = getattr(cls, "info", None)
    if not isinstance(info, AttackInfo):
        raise ValidationError(f"attack {name!r}: {cls.__name__}.info must be an AttackInfo")
    unknown = [s for s in info.signals if s not in SIGNALS]
    if unknown:
        raise ValidationError(
            f"attack {name!r}: info.signals names unregistered signals {unknown}; valid "
            f"signals: {', '.join(SIGNALS.names())}"
        )
    return cls


#: Every attack: the modules of this package, then the ``miaudit.attacks`` entry points.
REGISTRY: Registry[type[Attack]] = Registry(
    "attack", discover="miaudit.attacks", entry_points="miaudit.attacks", check=check_attack_class
)


def register(name: str) -> Callable[[type[Attack]], type[Attack]]:
    """Class decorator registering an :class:`Attack` subclass; checks ``info.name`` matches."""

    def decorator(cls: type[Attack]) -> type[Attack]:
        check_attack_class(name, cls)
        if cls.info.name != name:
            raise ValueError(f"attack {cls.__name__}: info.name {cls.info.name!r} != {name!r}")
        return REGISTRY.register(name)(cls)

    return decorator


def get(name: str) -> type[Attack]:
    """The attack class registered as ``name``, or imported from ``"module:Class"``.

    Raises
    ------
    UnknownNameError
        For an unregistered name (the message lists the valid names and the closest).
    """
    return REGISTRY.resolve(name)


def create(name: str, **params: Any) -> Attack:
    """Instantiate attack ``name`` with ``params``; unknown parameters are a clear error."""
    cls = get(name)
    check_call(cls.__init__, f"attack {name!r}", None, **params)
    return cls(**params)


def names() -> list[str]:
    """Sorted names of all registered attacks."""
    return REGISTRY.names()


def infos() -> list[AttackInfo]:
    """:class:`AttackInfo` of every registered attack, sorted by name."""
    return [cls.info for _, cls in REGISTRY.items()]


__all__ = [
    "REGISTRY",
    "Attack",
    "AttackData",
    "AttackInfo",
    "check_attack_class",
    "create",
    "get",
    "infos",
    "names",
    "register",
]
