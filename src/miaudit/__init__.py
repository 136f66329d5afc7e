"""miaudit: membership inference attacks and the privacy audits built on them.

Every score produced by miaudit follows one convention: higher means "more likely a member".

>>> from miaudit import Audit                      # doctest: +SKIP
>>> result = Audit("audit.yaml").run()             # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from miaudit.exceptions import MiauditError, ValidationError

__version__ = "0.1.0"

#: Heavy public names, imported on first use so that ``import miaudit`` stays light.
_LAZY = {
    "Audit": "miaudit.audit.pipeline",
    "AuditResult": "miaudit.audit.result",
    "AuditConfig": "miaudit.config",
    "load_config": "miaudit.config",
}

__all__ = ["Audit", "AuditConfig", "AuditResult", "MiauditError", "ValidationError",
           "__version__", "load_config"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'miaudit' has no attribute {name!r}")
