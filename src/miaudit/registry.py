"""One registry mechanism for every plug-in kind: attacks, signals, datasets, recipes, executors.

Adding an attack (or a dataset, a recipe, an executor) touches one file: the module that defines
it registers itself with ``@REGISTRY.register("name")``. A :class:`Registry` finds its entries
three ways, the first time it is asked for a name:

1. **module discovery** — every public module of a package (``discover="miaudit.attacks"``) is
   imported, so a new file in that folder registers itself with no table to edit;
2. **a static list of modules** (``modules=(...)``) for kinds spread over a few known modules;
3. **entry points** of installed distributions (``entry_points="miaudit.attacks"``): a user's
   package declares, in its ``pyproject.toml``::

       [project.entry-points."miaudit.attacks"]
       my_attack = "my_package.attacks:MyAttack"

   Loading the entry point imports the module; an object that the import did not register
   itself is registered under the entry point's name.

A name may also be a ``"module:attribute"`` import path (:meth:`Registry.resolve`), so that a
YAML config can name a user's class that no package registers.

>>> from miaudit.registry import Registry
>>> colours = Registry("colour")
>>> @colours.register("red")
... def red() -> str:
...     return "#f00"
>>> colours.get("RED")()
'#f00'
>>> colours.get("rde")
Traceback (most recent call last):
...
miaudit.exceptions.UnknownNameError: unknown colour 'rde'. Did you mean 'red'? Valid colours: red
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import logging
import pkgutil
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from miaudit.exceptions import MiauditError, UnknownNameError, ValidationError
from miaudit.trust import require_code_trust

T = TypeVar("T")

_LOG = logging.getLogger("miaudit.registry")

#: Separator of an import path ``"package.module:attribute"``.
IMPORT_PATH_SEPARATOR = ":"

__all__ = [
    "IMPORT_PATH_SEPARATOR",
    "EntryPoint",
    "Registry",
    "check_call",
    "import_object",
    "scan_entry_points",
]


def import_object(spec: str, what: str = "object") -> Any:
    """The attribute named by ``"package.module:attribute"`` (dots allowed after the colon).

    Raises
    ------
    ValidationError
        If ``spec`` has no colon.
    MiauditError
        If the module cannot be imported or has no such attribute.
    UntrustedCodeError
        Inside an untrusted config (:mod:`miaudit.trust`): nothing is imported.
    """
    if IMPORT_PATH_SEPARATOR not in spec:
        raise ValidationError(
            f"{what} {spec!r}: expected 'module:attribute' (e.g. 'mypkg.attacks:MyAttack')"
        )
    require_code_trust(what, spec)
    return _import_path(spec, what)


def _import_path(spec: str, what: str) -> Any:
    """``import_object`` without the trust check (installed plug-ins were trusted when they
    were installed)."""
    mod_name, _, attr = spec.partition(IMPORT_PATH_SEPARATOR)
    try:
        module = importlib.import_module(mod_name)
    except ImportError as exc:
        raise MiauditError(f"{what} {spec!r}: cannot import module {mod_name!r}: {exc}") from None
    obj: Any = module
    try:
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise MiauditError(f"{what} {spec!r}: module {mod_name!r} has no {attr!r}") from None
    return obj


#: Metadata folders of installed distributions, as ``importlib.metadata`` finds them.
_METADATA_SUFFIXES = (".dist-info", ".egg-info")


def scan_entry_points(group: str) -> list[Any]:
    """The entry points of ``group`` declared by the distributions on ``sys.path``.

    The same entries as ``importlib.metadata.entry_points(group=group)`` for distributions
    installed as folders (what pip writes), found without building a ``Distribution`` for each
    of the hundreds installed: only ``entry_points.txt`` files that mention ``[group]`` are
    parsed, and the first distribution of a name on ``sys.path`` wins, as in
    ``importlib.metadata``. This keeps ``miaudit attacks`` fast in large environments.
    """
    import os
    import sys

    header = f"[{group}]"
    seen: set[str] = set()
    found: list[Any] = []
    for folder in sys.path:
        try:
            entries = sorted(os.scandir(folder or "."), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            if not entry.name.endswith(_METADATA_SUFFIXES):
                continue
            dist = entry.name.rsplit(".", 1)[0].split("-", 1)[0].lower().replace("_", "-")
            if dist in seen:
                continue
            seen.add(dist)
            try:
                with open(os.path.join(entry.path, "entry_points.txt"), encoding="utf-8") as f:
                    text = f.read()
            except OSError:
                continue
            if header in text:
                found += _parse_entry_points(text, group)
    return found


@dataclass(frozen=True)
class EntryPoint:
    """One ``name = module:attribute [extras]`` line of an ``entry_points.txt`` (the part of
    ``importlib.metadata.EntryPoint`` that plug-in loading needs, without importing
    ``importlib.metadata`` and the e-mail and zip machinery it pulls in)."""

    name: str
    value: str
    group: str

    def load(self) -> Any:
        """Import the module and return the attribute (the module without one)."""
        target = self.value.split("[", 1)[0].strip()
        if IMPORT_PATH_SEPARATOR not in target:
            return importlib.import_module(target)
        return _import_path(target, f"{self.group} entry point {self.name!r}")


def _parse_entry_points(text: str, group: str) -> list[EntryPoint]:
    """The ``name = value`` lines of section ``[group]`` of an ``entry_points.txt``."""
    out: list[EntryPoint] = []
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
        elif section == group and "=" in line:
            name, _, value = line.partition("=")
            out.append(EntryPoint(name.strip(), value.strip(), group))
    return out


class Registry(Generic[T]):
    """Maps unique, case-insensitive names to objects of one kind.

    Parameters
    ----------
    kind : str
        What the registry holds ("attack", "dataset", ...); used in error messages.
    discover : str, optional
        A package whose public modules (names not starting with ``_``) are imported on first
        use, so that each registers what it defines.
    modules : sequence of str
        Modules imported on first use (full dotted names).
    entry_points : str, optional
        The entry-point group whose entries are loaded on first use.
    check : callable, optional
        ``check(name, obj)`` is called for every object registered, and raises on a bad one.
    """

    def __init__(
        self,
        kind: str,
        *,
        discover: str | None = None,
        modules: Sequence[str] = (),
        entry_points: str | None = None,
        check: Callable[[str, Any], Any] | None = None,
    ) -> None:
        self.kind = kind
        self.discover = discover
        self.modules = tuple(modules)
        self.entry_points = entry_points
        self.check = check
        self._items: dict[str, T] = {}
        self._loaded = not (discover or modules or entry_points)
        self._loading = False
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ filling
    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register the decorated object under ``name`` (lower-case, unique)."""
        key = name.lower()

        def decorator(obj: T) -> T:
            if key in self._items and self._items[key] is not obj:
                raise ValueError(f"{self.kind} {key!r} is already registered")
            if self.check is not None:
                self.check(key, obj)
            self._items[key] = obj
            return obj

        return decorator

    def add(self, name: str, obj: T) -> T:
        """Register ``obj`` under ``name`` (the non-decorator form of :meth:`register`)."""
        return self.register(name)(obj)

    def load(self) -> None:
        """Import the discovered and listed modules and load the entry points (once)."""
        if self._loaded:
            return
        with self._lock:
            if self._loaded or self._loading:  # a module asking while it is being imported
                return
            self._loading = True
            try:
                for module in self._module_names():
                    importlib.import_module(module)
                if self.entry_points:
                    self._load_entry_points(self.entry_points)
                self._loaded = True
            finally:
                self._loading = False

    def _module_names(self) -> list[str]:
        names = list(self.modules)
        if self.discover:
            package = importlib.import_module(self.discover)
            names += [
                f"{self.discover}.{info.name}"
                for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name)
                if not info.name.startswith("_")
            ]
        return names

    def _load_entry_points(self, group: str) -> None:
        for ep in sorted(scan_entry_points(group), key=lambda e: e.name):
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plug-in must not break miaudit itself
                _LOG.warning("%s plug-in %r (%s) failed to load: %s", self.kind, ep.name,
                             ep.value, exc)
                continue
            if not any(v is obj for v in self._items.values()):
                self.add(ep.name, obj)

    # ------------------------------------------------------------------ lookup
    def get(self, name: str) -> T:
        """Return the object registered as ``name``.

        Raises
        ------
        UnknownNameError
            If ``name`` is not registered; the message lists every valid name and the closest.
        """
        self.load()
        key = str(name).lower()
        if key not in self._items:
            valid = sorted(self._items)
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}.{hint} Valid {self.kind}s: {', '.join(valid)}"
            )
        return self._items[key]

    def resolve(self, name: str) -> T:
        """:meth:`get` for a registered name; for ``"module:attribute"`` the imported object
        (checked by ``check`` when the registry has one).

        Importing runs the module's code: callers decide whether a config may do that.
        """
        if IMPORT_PATH_SEPARATOR in str(name):
            obj = import_object(str(name), self.kind)
            if self.check is not None:
                self.check(str(name), obj)
            return obj
        return self.get(name)

    def names(self) -> list[str]:
        """Sorted list of registered names."""
        self.load()
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        """``(name, object)`` pairs sorted by name."""
        self.load()
        return sorted(self._items.items())

    def __contains__(self, name: object) -> bool:
        self.load()
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self.load()
        return len(self._items)

    def is_empty(self) -> bool:
        """Whether nothing is registered yet; unlike ``len()``, imports and loads nothing."""
        return not self._items

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._items)} registered)"


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
