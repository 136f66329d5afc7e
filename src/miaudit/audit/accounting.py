"""Privacy accounting of DP-SGD: epsilon of a training run, and the noise for a target epsilon.

The accountants are Opacus's (:mod:`opacus.accountants`), chosen by name as plug-ins; nothing
here re-implements an accountant, so the numbers are the ones Opacus's ``PrivacyEngine`` reports
for the same run.

=========  =================================  ===============================================
name       Opacus class                       what it computes
=========  =================================  ===============================================
``prv``    ``PRVAccountant``                  privacy random variables (Gopi, Lee & Wutschitz,
                                              NeurIPS 2021): a numerical upper bound within
                                              ``eps_error``; Opacus's default, the tightest
``rdp``    ``RDPAccountant``                  Rényi DP of the subsampled Gaussian (Mironov,
                                              Talwar & Zhang 2019): an upper bound, looser
``gdp``    ``GaussianAccountant``             Gaussian DP by the central limit theorem (Dong,
                                              Roth & Su 2022; Bu et al. 2020): an
                                              **approximation**, not a bound; accurate only
                                              for many steps and a small sample rate
=========  =================================  ===============================================

A training run of DP-SGD is summarised by ``noise_multiplier`` (sigma: noise standard
deviation over the clipping norm), ``sample_rate`` (q: expected batch size over dataset size,
with Poisson sampling) and ``steps`` (``epochs / q`` for whole epochs).

Any other name registered with :func:`opacus.accountants.register_accountant` is accepted too.
Opacus is an optional dependency (``pip install miaudit[dp]``), imported on first use.
"""

from __future__ import annotations

import difflib
import math
from typing import Any

from miaudit._validation import check_count, check_positive, check_probability
from miaudit.exceptions import UnknownNameError, ValidationError

__all__ = [
    "ACCOUNTANTS",
    "DEFAULT_ACCOUNTANT",
    "DEFAULT_EPSILON_TOLERANCE",
    "epsilon",
    "make_accountant",
    "noise_multiplier_for",
]

#: The built-in accountant names and the Opacus class each one selects.
ACCOUNTANTS: dict[str, str] = {
    "prv": "PRVAccountant",
    "rdp": "RDPAccountant",
    "gdp": "GaussianAccountant",
}
#: The accountant used when none is named (Opacus's default too).
DEFAULT_ACCOUNTANT = "prv"
#: Precision of the search for a noise multiplier: the epsilon reached is within this of the
#: target, and never above it (the default of Opacus's ``get_noise_multiplier``).
DEFAULT_EPSILON_TOLERANCE = 0.01


def _opacus() -> Any:
    try:
        import opacus.accountants as accountants
    except ImportError as exc:  # pragma: no cover - opacus is installed in dev and CI
        raise ImportError(
            f"privacy accounting needs Opacus: pip install 'miaudit[dp]' (import failed: {exc})"
        ) from exc
    return accountants


def make_accountant(accountant: str = DEFAULT_ACCOUNTANT) -> Any:
    """A fresh Opacus accountant selected by name (see the module docstring).

    Parameters
    ----------
    accountant : str
        ``"prv"``, ``"rdp"``, ``"gdp"`` (case-insensitive), or a name registered with
        :func:`opacus.accountants.register_accountant`.

    Returns
    -------
    opacus.accountants.IAccountant

    Raises
    ------
    UnknownNameError
        For a name Opacus does not know; the message lists the valid names.
    """
    if not isinstance(accountant, str):
        raise ValidationError(
            f"accountant: expected a name such as {sorted(ACCOUNTANTS)}, got "
            f"{type(accountant).__name__} {accountant!r}"
        )
    name = accountant.strip().lower()
    try:
        return _opacus().create_accountant(mechanism=name)
    except ValueError:
        close = difflib.get_close_matches(name, list(ACCOUNTANTS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownNameError(
            f"accountant: unknown accountant {accountant!r}.{hint} Valid accountants: "
            + ", ".join(sorted(ACCOUNTANTS))
        ) from None


def _check_run(noise_multiplier: Any, sample_rate: Any, steps: Any) -> tuple[float, float, int]:
    sigma = check_positive(noise_multiplier, "noise_multiplier")
    q = check_probability(sample_rate, "sample_rate", open_interval=False)
    if q == 0.0:
        raise ValidationError(f"sample_rate: expected a value in (0, 1], got {sample_rate!r}")
    return sigma, q, check_count(steps, "steps", minimum=1)


def epsilon(
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
    delta: float,
    accountant: str = DEFAULT_ACCOUNTANT,
    **options: Any,
) -> float:
    """Epsilon of ``steps`` DP-SGD steps at ``delta``, by an Opacus accountant.

    The same number as ``accountant.get_epsilon(delta)`` after Opacus recorded ``steps`` calls
    of ``accountant.step(noise_multiplier=..., sample_rate=...)`` (as its ``PrivacyEngine``
    does during training).

    Parameters
    ----------
    noise_multiplier : float
        sigma > 0: noise standard deviation over the clipping norm.
    sample_rate : float
        q in (0, 1]: the Poisson sampling rate of a batch (batch size / dataset size).
    steps : int
        Number of noisy gradient steps, ``>= 1``.
    delta : float
        In (0, 1).
    accountant : str
        ``"prv"`` (default), ``"rdp"`` or ``"gdp"`` (module docstring).
    **options
        Passed to the accountant's ``get_epsilon``: ``eps_error`` / ``delta_error`` (prv),
        ``alphas`` (rdp), ``poisson`` (gdp).

    Returns
    -------
    float
        Epsilon (an upper bound for prv and rdp; an approximation for gdp).
    """
    sigma, q, n = _check_run(noise_multiplier, sample_rate, steps)
    d = check_probability(delta, "delta")
    acc = make_accountant(accountant)
    # the history Opacus itself keeps for n identical steps (and builds in get_noise_multiplier)
    acc.history = [(sigma, q, n)]
    return float(acc.get_epsilon(delta=d, **options))


def noise_multiplier_for(
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    *,
    steps: int | None = None,
    epochs: float | None = None,
    accountant: str = DEFAULT_ACCOUNTANT,
    epsilon_tolerance: float = DEFAULT_EPSILON_TOLERANCE,
    **options: Any,
) -> float:
    """Smallest noise multiplier (within the tolerance) whose epsilon is at most the target.

    Delegates to :func:`opacus.accountants.utils.get_noise_multiplier` (bisection on sigma):
    the epsilon of the returned sigma is ``<= target_epsilon`` and within
    ``epsilon_tolerance`` of it. Give exactly one of ``steps`` and ``epochs``
    (``steps = int(epochs / sample_rate)``, as Opacus computes it).

    Parameters
    ----------
    target_epsilon : float
        > 0.
    delta : float
        In (0, 1).
    sample_rate : float
        In (0, 1].
    steps : int, optional
        Number of steps, ``>= 1``.
    epochs : float, optional
        Number of epochs, > 0.
    accountant : str
        ``"prv"`` (default), ``"rdp"`` or ``"gdp"``.
    epsilon_tolerance : float
        > 0.
    **options
        Passed to the accountant's ``get_epsilon`` (see :func:`epsilon`).

    Returns
    -------
    float
        The noise multiplier sigma.

    Raises
    ------
    ValidationError
        On bad input, or when the budget cannot be met (Opacus gives up above its largest
        sigma).
    """
    eps = check_positive(target_epsilon, "target_epsilon")
    d = check_probability(delta, "delta")
    q = check_probability(sample_rate, "sample_rate", open_interval=False)
    if q == 0.0:
        raise ValidationError(f"sample_rate: expected a value in (0, 1], got {sample_rate!r}")
    tol = check_positive(epsilon_tolerance, "epsilon_tolerance")
    if (steps is None) == (epochs is None):
        raise ValidationError(
            f"steps, epochs: give exactly one of them, got steps={steps!r}, epochs={epochs!r}"
        )
    if steps is not None:
        n = check_count(steps, "steps", minimum=1)
    else:
        e = check_positive(epochs, "epochs")
        n = int(e / q)
        if n < 1:
            raise ValidationError(
                f"epochs: {epochs!r} epochs at sample_rate {q} make no step (epochs / sample_rate"
                " < 1)"
            )
    make_accountant(accountant)  # an unknown name fails here, before the search
    from opacus.accountants.utils import get_noise_multiplier

    try:
        sigma = get_noise_multiplier(
            target_epsilon=eps,
            target_delta=d,
            sample_rate=q,
            steps=n,
            accountant=accountant.strip().lower(),
            epsilon_tolerance=tol,
            **options,
        )
    except ValueError as exc:
        raise ValidationError(
            f"target_epsilon: cannot reach epsilon {eps} at delta {d} with sample_rate {q} and "
            f"{n} steps ({exc})"
        ) from None
    if not math.isfinite(sigma):  # pragma: no cover - defensive
        raise ValidationError(f"target_epsilon: no finite noise multiplier reaches {eps}")
    return float(sigma)
