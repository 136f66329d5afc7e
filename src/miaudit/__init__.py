"""miaudit: membership inference attacks and the privacy audits built on them.

Every score produced by miaudit follows one convention: higher means "more likely a member".
"""

from miaudit.exceptions import MiauditError, ValidationError

__version__ = "0.1.0"

__all__ = ["MiauditError", "ValidationError", "__version__"]
