"""Whether a configuration may make miaudit import and run Python code that it names.

A YAML (or dict) config names code in three places: ``module:function`` strings (the
``callable`` recipe's ``train``, a ``target.model``, an opacus model factory), ``module:Class``
attacks, and import paths of classes (an ``sklearn`` estimator outside scikit-learn). Importing
a module runs its top-level code and calling the object runs more, so a config that anyone may
have written must not do either unless the user says so: ``trust_code: true`` in the config or
``miaudit run --trust-code`` (see ``docs/security.md``).

Every import of named code goes through :func:`require_code_trust`, which refuses while an
untrusted config is being validated or run (:func:`code_trust` ``(False)``). Outside such a
context (plain Python: ``make_recipe("callable", train="pkg.mod:train")``) the caller wrote the
code that names the object and is trusted.

>>> with code_trust(False):
...     code_allowed()
False
>>> code_allowed()
True
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from miaudit.exceptions import MiauditError

#: What an error tells the user to do to allow code named by a config.
TRUST_HINT = (
    "set 'trust_code: true' in the config (or pass --trust-code to 'miaudit run') only if you "
    "trust that code: importing and calling it can do anything your account can"
)

__all__ = ["TRUST_HINT", "UntrustedCodeError", "code_allowed", "code_trust", "require_code_trust"]

_lock = threading.Lock()
#: Number of untrusted contexts open in this process. Process-wide (not per thread) so that a
#: worker thread started inside an untrusted run cannot escape the refusal.
_untrusted_depth = 0


class UntrustedCodeError(MiauditError, ValueError):
    """A config names Python code to import or run but does not say ``trust_code: true``."""


@contextmanager
def code_trust(allowed: bool) -> Iterator[None]:
    """Within the block, named code is imported only if ``allowed`` (no-op when True)."""
    global _untrusted_depth
    if allowed:
        yield
        return
    with _lock:
        _untrusted_depth += 1
    try:
        yield
    finally:
        with _lock:
            _untrusted_depth -= 1


def code_allowed() -> bool:
    """False while any untrusted config is being validated or run in this process."""
    return _untrusted_depth == 0


def require_code_trust(what: str, spec: str) -> None:
    """Raise :class:`UntrustedCodeError` unless named code may be imported now.

    Parameters
    ----------
    what : str
        What names the code, for the message (e.g. ``"training.params.train"``).
    spec : str
        The import path named (``"module:attribute"`` or ``"package.module.Class"``).
    """
    if not code_allowed():
        raise UntrustedCodeError(
            f"{what} {spec!r} names Python code that miaudit would import and run, and this "
            f"config does not allow that; {TRUST_HINT}"
        )
