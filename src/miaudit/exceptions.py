"""Errors raised by miaudit.

Every error names the field at fault and what was expected, so a user never has to read a
traceback from deep inside numpy to learn what was wrong with their input.
"""


class MiauditError(Exception):
    """Base class of every error miaudit raises on purpose."""


class ValidationError(MiauditError, ValueError):
    """Input that does not satisfy a documented contract (shape, range, dtype, finiteness)."""


class UnknownNameError(MiauditError, KeyError):
    """A name (attack, dataset, recipe, signal, config key) that is not registered.

    The message lists the valid names.
    """

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable.
        return str(self.args[0]) if self.args else ""


class MissingRequirementError(MiauditError, ValueError):
    """An attack was asked for without an input it needs (reference models, population data)."""


class SmallSampleWarning(UserWarning):
    """A statistic computed on so few records that its stated uncertainty is understated."""


class MissingColumnError(ValidationError):
    """A column (or an archive's array) that a parameter names is not in the file.

    Attributes
    ----------
    field : str
        The parameter that named it (``"label_col"``, ``"extra_cols"``, ...).
    missing : list of str
        The names not found.
    """

    def __init__(self, message: str, *, field: str, missing: list[str]) -> None:
        super().__init__(message)
        self.field = field
        self.missing = missing


class ParameterError(ValidationError):
    """A bad parameter of a configurable object (a training recipe's config, say).

    Attributes
    ----------
    params : tuple of str
        The parameters at fault (one for a bad value, possibly several unknown ones).
    """

    def __init__(self, message: str, *, params: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.params = params
