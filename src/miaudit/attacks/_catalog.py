"""The list of attacks that ``miaudit attacks`` prints, read from source without importing them.

Listing the attacks through the registry imports every attack module and numpy with them,
about half of the command's start-up time. Yet what the listing shows is written as literals in
the source of each built-in attack::

    @register("loss")
    class LossAttack(...):
        info = AttackInfo(name="loss", title="LOSS: ...", needs_references=False, ...)

so :func:`attack_listing` reads it with :mod:`ast` from the public modules of this package (the
ones module discovery imports) and keeps the result in a JSON file under the user's cache folder
(``$XDG_CACHE_HOME/miaudit`` or ``~/.cache/miaudit``), valid while the size and modification time
of every module stay the same. The registry itself answers instead, so that the listing is
always the registry's content, whenever

* a module registers an attack in a way this reader does not follow (an ``info`` that is not
  literal, a registered class without its own ``info``, a ``register`` call that is not the
  decorator of a module-level class, ``register`` imported under another name, a sub-package);
* plug-in attacks are installed (the ``miaudit.attacks`` entry points): they must be imported to
  be described;
* attacks are already registered in this process (anything may have been added at run time,
  and the classes are at hand anyway).

``tests/test_cli_startup.py`` checks that the listing read from source equals the registry's.
"""

from __future__ import annotations

import ast
import json
import os
import re
import zlib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from miaudit.attacks.base import AttackInfo

__all__ = ["CatalogEntry", "attack_listing", "cache_path", "read_catalog"]

#: Version of the cache file's layout; a file of another version is rebuilt.
CATALOG_FORMAT = 1
#: Environment variable naming the user's cache folder (XDG base directories).
CACHE_HOME_VARIABLE = "XDG_CACHE_HOME"
#: The cache folder when ``$XDG_CACHE_HOME`` is not set, relative to the home folder.
DEFAULT_CACHE_HOME = Path(".cache")
#: Sub-folder of the cache folder that holds miaudit's files.
CACHE_SUBFOLDER = "miaudit"
#: Name of the decorator (and of the registry method) that registers an attack.
REGISTER_NAME = "register"
#: Name of the attack registry in :mod:`miaudit.attacks`.
REGISTRY_NAME = "REGISTRY"
#: Methods of the registry that register an object.
REGISTRY_METHODS = ("register", "add")
#: Class attribute that describes an attack, and the class that it holds.
INFO_ATTRIBUTE = "info"
INFO_CLASS = "AttackInfo"
#: The entry-point group of plug-in attacks.
ENTRY_POINT_GROUP = "miaudit.attacks"
#: What registers an attack, in a module's text: a call of ``register`` (bare or as
#: ``attacks.register``; ``OTHER.register`` belongs to another registry), of ``REGISTRY.register``
#: or ``REGISTRY.add``, or either name imported under another name. Each must be a class
#: decorator that :func:`_module_entries` reads, else the registry answers.
_REGISTRATION_TEXT = re.compile(
    rf"(?<![\w.]){REGISTER_NAME}\s*\(|\battacks\s*\.\s*{REGISTER_NAME}\s*\("
    rf"|\b{REGISTRY_NAME}\s*\.\s*(?:{'|'.join(REGISTRY_METHODS)})\s*\("
    rf"|\b(?:{REGISTER_NAME}|{REGISTRY_NAME})\s+as\s"
)


@dataclass(frozen=True)
class CatalogEntry:
    """What ``miaudit attacks`` prints of one attack: the fields of its
    :class:`~miaudit.attacks.AttackInfo` of the same names (defaults as there)."""

    name: str
    title: str
    needs_references: bool = False
    needs_in_references: bool = False
    needs_out_references: bool = False
    needs_population: bool = False

    @classmethod
    def from_info(cls, info: AttackInfo) -> CatalogEntry:
        """The entry of a registered attack's ``info``."""
        return cls(**{f.name: getattr(info, f.name) for f in fields(cls)})


class _Unreadable(Exception):
    """The source registers attacks in a way that only importing it can tell."""


def attack_listing() -> list[CatalogEntry]:
    """Every registered attack, sorted by name: read from source where that is exact (see the
    module docstring), else from the registry."""
    from miaudit.attacks import REGISTRY

    if REGISTRY.is_empty():
        from miaudit.registry import scan_entry_points

        if not scan_entry_points(ENTRY_POINT_GROUP):
            package_dir = Path(__file__).parent
            entries = read_catalog(package_dir, cache_path(package_dir))
            if entries is not None:
                return entries
    return [CatalogEntry.from_info(cls.info) for _, cls in REGISTRY.items()]


def cache_path(package_dir: Path) -> Path | None:
    """The cache file of the attacks in ``package_dir`` (one per installed copy of miaudit);
    ``None`` without a cache folder (no ``$XDG_CACHE_HOME`` and no home folder)."""
    home = os.environ.get(CACHE_HOME_VARIABLE)
    if not home:
        try:
            home = str(Path.home() / DEFAULT_CACHE_HOME)
        except (RuntimeError, KeyError):  # no $HOME and no password entry to find it in
            return None
    tag = zlib.crc32(str(package_dir.resolve()).encode("utf-8"))
    return Path(home) / CACHE_SUBFOLDER / f"attack-catalog-{tag:08x}.json"


def read_catalog(package_dir: Path, cache: Path | None = None) -> list[CatalogEntry] | None:
    """The attacks that the public modules of ``package_dir`` register, sorted by name, read
    without importing them; ``None`` if only importing them can tell.

    Parameters
    ----------
    package_dir : Path
        The folder of the attack package.
    cache : Path, optional
        A JSON file holding the result for the modules' current sizes and modification times:
        read when it matches, (re)written otherwise (silently skipped where it cannot be).
    """
    modules = _public_modules(package_dir)
    if modules is None:
        return None
    key = {
        "format": CATALOG_FORMAT,
        "folder": str(package_dir.resolve()),
        "modules": [[p.name, s.st_size, s.st_mtime_ns] for p in modules for s in [p.stat()]],
    }
    if cache is not None:
        cached = _read_cache(cache, key)
        if cached is not None:
            return cached
    try:
        entries = sorted(
            (e for path in modules for e in _module_entries(path)), key=lambda e: e.name.lower()
        )
    except (_Unreadable, OSError, SyntaxError, UnicodeDecodeError):
        return None
    if len({e.name.lower() for e in entries}) != len(entries):
        return None  # the registry refuses a name registered twice: let it say so
    if cache is not None:
        _write_cache(cache, key, entries)
    return entries


def _public_modules(package_dir: Path) -> list[Path] | None:
    """The ``.py`` files that module discovery imports, by name; ``None`` if it would also
    import something else (a sub-package, a compiled module)."""
    import pkgutil

    paths = []
    for info in sorted(pkgutil.iter_modules([str(package_dir)]), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        path = package_dir / f"{info.name}.py"
        if info.ispkg or not path.is_file():
            return None
        paths.append(path)
    return paths


def _read_cache(cache: Path, key: dict[str, Any]) -> list[CatalogEntry] | None:
    try:
        data = json.loads(cache.read_text(encoding="utf-8"))
        if data["key"] != key:
            return None
        return [CatalogEntry(**entry) for entry in data["entries"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_cache(cache: Path, key: dict[str, Any], entries: list[CatalogEntry]) -> None:
    text = json.dumps({"key": key, "entries": [asdict(e) for e in entries]}, indent=1)
    partial = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, cache)  # atomic: a reader sees the old file or the new one
    except OSError:
        partial.unlink(missing_ok=True)


def _module_entries(path: Path) -> list[CatalogEntry]:
    """The attacks that the module at ``path`` registers.

    Raises
    ------
    _Unreadable
        If the module registers an attack (:data:`_REGISTRATION_TEXT`) anywhere but as the
        decorator of a module-level class whose body assigns a literal ``info = AttackInfo(...)``.
    """
    text = path.read_text(encoding="utf-8")
    registrations = len(_REGISTRATION_TEXT.findall(text))
    if not registrations:
        return []
    entries = [
        _class_entry(node, _literal_name(decorator))
        for node in ast.parse(text, filename=str(path)).body
        if isinstance(node, ast.ClassDef)
        for decorator in node.decorator_list
        if isinstance(decorator, ast.Call) and _is_registration(decorator)
    ]
    if len(entries) != registrations:
        raise _Unreadable(f"{path.name}: an attack registered other than by a class decorator")
    return entries


def _is_registration(call: ast.Call) -> bool:
    """Whether ``call`` calls ``register`` or ``REGISTRY.register``/``add``."""
    func = call.func
    if isinstance(func, ast.Name):
        return func.id == REGISTER_NAME
    return (
        isinstance(func, ast.Attribute)
        and func.attr in REGISTRY_METHODS
        and isinstance(func.value, ast.Name)
        and func.value.id == REGISTRY_NAME
    )


def _literal_name(call: ast.Call) -> str:
    """The name that ``@register("name")`` registers (as written)."""
    if len(call.args) != 1 or call.keywords:
        raise _Unreadable("register() takes the name alone")
    try:
        name = ast.literal_eval(call.args[0])
    except ValueError:
        raise _Unreadable("a registered name that is not a literal") from None
    if not isinstance(name, str):
        raise _Unreadable("a registered name that is not a string")
    return name


def _class_entry(node: ast.ClassDef, name: str) -> CatalogEntry:
    """The entry of class ``node`` registered as ``name``, from its literal ``info``."""
    infos = [
        stmt.value
        for stmt in node.body
        if isinstance(stmt, ast.Assign)
        and [ast.unparse(t) for t in stmt.targets] == [INFO_ATTRIBUTE]
    ]
    if len(infos) != 1:
        raise _Unreadable(f"class {node.name}: no single `{INFO_ATTRIBUTE} = ...` of its own")
    call = infos[0]
    if not (isinstance(call, ast.Call) and ast.unparse(call.func) == INFO_CLASS) or call.args:
        raise _Unreadable(f"class {node.name}: {INFO_ATTRIBUTE} is not {INFO_CLASS}(key=...)")
    listed = {f.name for f in fields(CatalogEntry)}
    values: dict[str, Any] = {}
    for keyword in call.keywords:
        if keyword.arg is None:
            raise _Unreadable(f"class {node.name}: {INFO_CLASS}(**...)")
        if keyword.arg in listed:
            try:
                values[keyword.arg] = ast.literal_eval(keyword.value)
            except ValueError:
                raise _Unreadable(f"class {node.name}: {keyword.arg} is not a literal") from None
    if values.get("name") != name or not isinstance(values.get("title"), str):
        raise _Unreadable(f"class {node.name}: info.name is not {name!r} or no literal title")
    if not all(isinstance(v, bool) for k, v in values.items() if k not in ("name", "title")):
        raise _Unreadable(f"class {node.name}: a needs_ flag that is not True or False")
    return CatalogEntry(**values)
