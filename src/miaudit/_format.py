"""Plain-text formatting shared by the result, the terminal tables and the HTML report."""

from __future__ import annotations

__all__ = ["format_fpr"]


def format_fpr(fpr: float) -> str:
    """A false-positive rate as a short percentage: ``0.001`` → ``"0.1%"``, ``1e-5`` →
    ``"0.001%"``.

    >>> format_fpr(1e-3)
    '0.1%'
    """
    return f"{100 * fpr:g}%"
