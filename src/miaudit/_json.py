"""JSON as miaudit writes it: one float convention, strict output, atomic files.

Non-finite floats are written as the strings ``"nan"``, ``"inf"`` and ``"-inf"`` (JSON has no
literal for them, and ``NaN`` tokens break strict parsers); :func:`parse_float` reads them back.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from pathlib import Path
from typing import Any

__all__ = ["dumps", "json_float", "jsonable", "parse_float", "write_json"]


def json_float(x: float) -> float | str:
    """``x`` as a JSON value: the float itself, or ``"nan"``/``"inf"``/``"-inf"``."""
    v = float(x)
    if math.isfinite(v):
        return v
    return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")


def parse_float(x: float | str) -> float:
    """Inverse of :func:`json_float` (``float("nan")`` etc. parse the strings)."""
    return float(x)


def _default(value: Any) -> Any:
    """numpy scalars and arrays, paths: as JSON values (non-finite floats via json_float)."""
    if hasattr(value, "tolist"):
        return _finite(value.tolist())
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def jsonable(value: Any) -> Any:
    """``value`` with every float (nested in dicts, lists, tuples) as :func:`json_float`
    writes it, so that strict JSON can hold it."""
    return _finite(value)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return json_float(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def dumps(obj: Any) -> str:
    """Indented, strict JSON (no ``NaN``/``Infinity`` tokens: non-finite floats as strings)."""
    return json.dumps(_finite(obj), indent=2, allow_nan=False, default=_default) + "\n"


def write_json(obj: Any, path: str | Path) -> Path:
    """Write :func:`dumps` ``(obj)`` to ``path`` atomically (temporary file, then rename),
    creating parent folders; a symlink at ``path`` is replaced, not followed."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(dumps(obj))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)
    return p
