r"""Canaries for fine-tuning audits, and their exposure (Carlini et al., USENIX Security 2019).

A canary is a text of a fixed format with a random secret, e.g. ``"the secret code is 4 8 1 5
9 2"``. Membership is randomised, so that no distribution shift can explain a detection:
each canary gets a repetition tier (1, 4 or 16 copies, round robin) and a fair coin; heads, its
copies are inserted into the training data, tails, it is a never-inserted control. The audit
then asks, per tier, how well an attack tells the inserted canaries from the controls
(TPR at low FPR), and how exposed each inserted secret is.

Exposure (Carlini et al. 2019, "The Secret Sharer", Def. 4)
    With ``R`` a set of candidate secrets of the same format that contains the true one, and
    ``rank`` the position of the true secret when the candidates are sorted by the model's
    log-perplexity ``−Σ_t log p(x_t | x_<t)`` of the full canary text (most likely first),

    .. math::

        \mathrm{exposure} = \log_2 |R| - \log_2 \mathrm{rank}.

    Here ``R`` is the true secret plus ``n_candidates − 1`` secrets drawn uniformly at random
    (distinct from it), so exposure lies in ``[0, log2 n_candidates]``; ties with the true
    secret count against it (rank = 1 + number of candidates at most as likely, excluding
    itself). Cost: ``n_candidates`` short passes per canary.

Exposure by extrapolation (Carlini et al. 2019, Sec. 4.3)
    When the randomness space ``S`` (``|alphabet| ** length`` secrets) is too large to
    enumerate, the sampled rank can only say "more likely than all ``n`` candidates" (exposure
    capped at ``log2 n``). The paper fits a skew-normal density ``ρ`` to the log-perplexities
    of the random candidates and reads the exposure over the *full* space from its tail:

    .. math::

        \mathrm{exposure}_{\mathrm{ext}} = -\log_2 \int_{-\infty}^{P(s)} \rho(v)\,dv
        = -\log_2 F_{\mathrm{SN}}\big(P(s);\ \hat a, \hat\xi, \hat\omega\big),

    ``P(s)`` the log-perplexity of the canary with the true secret ``s``, ``F_SN`` the
    skew-normal CDF (:data:`scipy.stats.skewnorm`) fitted by maximum likelihood to the
    ``n_candidates − 1`` random candidates (the true secret is not part of the fit). It can
    exceed ``log2 n_candidates``; it is capped at ``log2 |S|``, the largest exposure over the
    full space. :func:`exposure_estimates` returns both numbers, labelled.

    Reliability: the extrapolated value rests on the fitted tail wherever the secret is likelier
    than every sampled candidate (``beyond_sample``); there the skew-normal's tail shape was
    never checked against data, and errors of several bits are usual (measured on candidates
    drawn from a known skew-normal, ``a = 4``: with 1,000 candidates the estimate of an
    exposure of 20 bits was off by up to 6.4 bits over 20 draws; with 5,000 by up to 2.2).
    A fit that the Kolmogorov–Smirnov distance rejects (``poor_fit``) makes the extrapolation
    meaningless whatever the rank.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from miaudit._validation import as_generator
from miaudit.exceptions import ValidationError
from miaudit.llm.target import LanguageModelTarget

__all__ = [
    "DEFAULT_ALPHABET",
    "DEFAULT_TEMPLATE",
    "DEFAULT_TIERS",
    "CanarySet",
    "ExposureEstimates",
    "SkewNormalFit",
    "exposure",
    "exposure_estimates",
    "insert_canaries",
    "make_canaries",
    "skew_normal_exposure",
]

#: Canary format; ``{secret}`` is replaced by the random secret.
DEFAULT_TEMPLATE = "the secret code is {secret}"
#: Symbols of a secret; written separated by spaces (one token each for most tokenizers).
DEFAULT_ALPHABET = "0123456789"
#: Symbols per secret.
DEFAULT_SECRET_LENGTH = 6
#: Copies of an inserted canary, by tier (memaudit and Carlini et al. use such tiers).
DEFAULT_TIERS = (1, 4, 16)
#: Probability that a canary is inserted (a fair coin: randomised membership).
INSERT_PROBABILITY = 0.5
#: Candidates per canary for the exposure.
DEFAULT_CANDIDATES = 1000
#: Fewest random candidates a skew-normal (3 parameters) is fitted to.
MIN_FIT_CANDIDATES = 10
#: Coefficient ``c`` of the Kolmogorov–Smirnov 5 % critical distance ``c / sqrt(n)``; a fit
#: farther from the candidates' empirical CDF is flagged ``poor_fit`` (approximate: the
#: parameters were fitted to the same candidates, which makes the test conservative).
KS_CRITICAL_COEFFICIENT = 1.36


@dataclass
class CanarySet:
    """Canaries with their random secrets, tiers and coins.

    Attributes
    ----------
    secrets : list of str
    texts : list of str
        The canary texts (template filled with the secret).
    tier : ndarray of int, shape (n,)
        Copies the canary gets if inserted.
    inserted : ndarray of bool, shape (n,)
        The coin: inserted into the training data (member) or a never-inserted control.
    template, alphabet : str
    length : int
    """

    secrets: list[str]
    texts: list[str]
    tier: NDArray[np.int64]
    inserted: NDArray[np.bool_]
    template: str = DEFAULT_TEMPLATE
    alphabet: str = DEFAULT_ALPHABET
    length: int = DEFAULT_SECRET_LENGTH
    ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.ids:
            self.ids = [f"canary-{i}" for i in range(len(self.texts))]

    @property
    def copies(self) -> NDArray[np.int64]:
        """Copies inserted into the training data (0 for a control)."""
        return np.where(self.inserted, self.tier, 0)

    def fill(self, secret: str) -> str:
        """The canary text of ``secret``."""
        return self.template.format(secret=secret)


def _secret(rng: np.random.Generator, alphabet: str, length: int) -> str:
    return " ".join(alphabet[i] for i in rng.integers(0, len(alphabet), size=length))


def make_canaries(
    n: int,
    *,
    template: str = DEFAULT_TEMPLATE,
    alphabet: str = DEFAULT_ALPHABET,
    length: int = DEFAULT_SECRET_LENGTH,
    tiers: Sequence[int] = DEFAULT_TIERS,
    seed: Any = 0,
) -> CanarySet:
    """``n`` canaries with distinct random secrets, tiers round robin, fair insertion coins."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValidationError(f"n: expected an integer >= 2, got {n!r}")
    if "{secret}" not in template:
        raise ValidationError(f"template: must contain '{{secret}}', got {template!r}")
    if len(set(alphabet)) < 2:
        raise ValidationError(f"alphabet: expected at least 2 distinct symbols, got {alphabet!r}")
    if not tiers or any(isinstance(t, bool) or not isinstance(t, int) or t < 1 for t in tiers):
        raise ValidationError(f"tiers: expected positive integers, got {tiers!r}")
    space = len(alphabet) ** length
    if n > space // 2:
        raise ValidationError(f"n: {n} canaries need a larger secret space than {space}")
    rng = as_generator(seed)
    secrets: list[str] = []
    seen: set[str] = set()
    while len(secrets) < n:
        s = _secret(rng, alphabet, length)
        if s not in seen:
            seen.add(s)
            secrets.append(s)
    tier = np.array([tiers[i % len(tiers)] for i in range(n)], dtype=np.int64)
    inserted = rng.random(n) < INSERT_PROBABILITY
    return CanarySet(
        secrets=secrets,
        texts=[template.format(secret=s) for s in secrets],
        tier=tier,
        inserted=inserted,
        template=template,
        alphabet=alphabet,
        length=length,
    )


def insert_canaries(texts: Sequence[str], canaries: CanarySet, *, seed: Any = 0) -> list[str]:
    """``texts`` plus ``tier`` copies of each inserted canary, shuffled with ``seed``."""
    out = list(texts)
    for text, copies in zip(canaries.texts, canaries.copies, strict=True):
        out.extend([text] * int(copies))
    order = as_generator(seed).permutation(len(out))
    return [out[i] for i in order]


def _check_candidates(canaries: CanarySet, n_candidates: int) -> int:
    """The size ``|S|`` of the secret space, after checking ``n_candidates``."""
    if isinstance(n_candidates, bool) or not isinstance(n_candidates, int) or n_candidates < 2:
        raise ValidationError(f"n_candidates: expected an integer >= 2, got {n_candidates!r}")
    space = len(canaries.alphabet) ** canaries.length
    if n_candidates > space:
        raise ValidationError(f"n_candidates: {n_candidates} exceeds the secret space {space}")
    return space


def _candidate_log_perplexities(
    target: LanguageModelTarget,
    canaries: CanarySet,
    idx: list[int],
    n_candidates: int,
    seed: Any,
    quiet: bool | None,
) -> NDArray[np.float64]:
    """Log-perplexities ``−Σ_t log p(x_t | x_<t)``, shape ``(len(idx), n_candidates)``:
    column 0 the true secret's canary, the others distinct random secrets of its format."""
    rng = as_generator(seed)
    texts: list[str] = []
    for i in idx:
        true = canaries.secrets[i]
        pool: list[str] = [true]
        seen = {true}
        while len(pool) < n_candidates:
            s = _secret(rng, canaries.alphabet, canaries.length)
            if s not in seen:
                seen.add(s)
                pool.append(s)
        texts.extend(canaries.fill(s) for s in pool)
    stats_ = target.token_stats(texts, moments=False, quiet=quiet, description="exposure")
    logppl = np.array([-s.log_probs.sum() for s in stats_], dtype=np.float64)
    return logppl.reshape(len(idx), n_candidates)


def _sampled_exposure(block: NDArray[np.float64]) -> tuple[float, int]:
    """``(log2 |R| − log2 rank, rank)`` of ``block[0]`` among ``block`` (ties count against)."""
    rank = 1 + int(np.sum(block[1:] <= block[0]))
    return math.log2(block.shape[0]) - math.log2(rank), rank


def exposure(
    target: LanguageModelTarget,
    canaries: CanarySet,
    *,
    which: Sequence[int] | None = None,
    n_candidates: int = DEFAULT_CANDIDATES,
    seed: Any = 0,
    quiet: bool | None = True,
) -> NDArray[np.float64]:
    """Sampled exposure in bits (Def. 4 over the true secret plus ``n_candidates − 1`` random
    ones) of the canaries ``which`` (default all), shape ``(len(which),)``.

    See :func:`exposure_estimates` for the extrapolated full-space estimate as well.
    """
    _check_candidates(canaries, n_candidates)
    idx = list(range(len(canaries.texts))) if which is None else [int(i) for i in which]
    logppl = _candidate_log_perplexities(target, canaries, idx, n_candidates, seed, quiet)
    return np.array([_sampled_exposure(row)[0] for row in logppl], dtype=np.float64)


@dataclass(frozen=True)
class SkewNormalFit:
    """A skew-normal fitted to candidate log-perplexities.

    Attributes
    ----------
    shape, loc, scale : float
        ``a``, ``ξ``, ``ω`` of :data:`scipy.stats.skewnorm` (maximum likelihood).
    ks_statistic : float
        Kolmogorov–Smirnov distance between the fit and the candidates' empirical CDF.
    poor_fit : bool
        ``ks_statistic > KS_CRITICAL_COEFFICIENT / sqrt(n)``.
    """

    shape: float
    loc: float
    scale: float
    ks_statistic: float
    poor_fit: bool


def skew_normal_exposure(
    candidates: NDArray[np.floating[Any]] | Sequence[float],
    secret: float,
    *,
    space_size: int | None = None,
) -> tuple[float, SkewNormalFit]:
    r"""Exposure by extrapolation (Carlini et al. 2019, Sec. 4.3) of one secret.

    .. math::

        \mathrm{exposure}_{\mathrm{ext}} = \min\big(-\log_2 F_{\mathrm{SN}}(P(s);
        \hat a, \hat\xi, \hat\omega),\ \log_2 |S|\big)

    with the skew-normal fitted by maximum likelihood to ``candidates`` (log-perplexities of
    random secrets, *not* including the true one).

    Parameters
    ----------
    candidates : array-like of float, shape (m,)
        Log-perplexities of random candidates of the secret's format; ``m >=``
        :data:`MIN_FIT_CANDIDATES`.
    secret : float
        Log-perplexity ``P(s)`` of the canary with the true secret.
    space_size : int, optional
        ``|S|``; caps the exposure at ``log2 |S|``. ``None``: no cap (a CDF that underflows
        to 0 then gives ``inf``).

    Returns
    -------
    exposure : float
        In bits; NaN when the candidates or the secret are not finite or all candidates are
        equal (no distribution to fit).
    fit : SkewNormalFit
    """
    x = np.asarray(candidates, dtype=np.float64)
    if x.ndim != 1 or x.shape[0] < MIN_FIT_CANDIDATES:
        raise ValidationError(
            f"candidates: expected at least {MIN_FIT_CANDIDATES} log-perplexities in a 1-d "
            f"array, got shape {x.shape}"
        )
    if space_size is not None and (isinstance(space_size, bool) or space_size < 1):
        raise ValidationError(f"space_size: expected a positive integer, got {space_size!r}")
    nan_fit = SkewNormalFit(math.nan, math.nan, math.nan, math.nan, True)
    if not (np.all(np.isfinite(x)) and math.isfinite(secret)) or np.ptp(x) == 0:
        return math.nan, nan_fit
    shape, loc, scale = (float(v) for v in stats.skewnorm.fit(x))
    ks = float(stats.kstest(x, stats.skewnorm(shape, loc, scale).cdf).statistic)
    fit = SkewNormalFit(shape, loc, scale, ks, ks > KS_CRITICAL_COEFFICIENT / math.sqrt(x.shape[0]))
    with np.errstate(divide="ignore"):
        bits = -float(stats.skewnorm.logcdf(secret, shape, loc, scale)) / math.log(2)
    if space_size is not None:
        bits = min(bits, math.log2(space_size))
    return bits, fit


@dataclass(frozen=True)
class ExposureEstimates:
    """Both exposure estimates of some canaries (all arrays of shape ``(n,)``).

    Attributes
    ----------
    which : ndarray of int
        Canary indices.
    sampled : ndarray of float
        Def. 4 over ``R`` = the true secret + ``n_candidates − 1`` random ones:
        ``log2 n_candidates − log2 rank``, in ``[0, log2 n_candidates]``.
    extrapolated : ndarray of float
        Sec. 4.3 over the full space ``S``: ``−log2 F_SN(P(s))`` from a skew-normal fitted to
        the random candidates, capped at ``log2 |S|``.
    log_perplexity : ndarray of float
        ``P(s)`` of each canary.
    rank : ndarray of int
        Rank of the true secret among the ``n_candidates`` (1 = likeliest).
    beyond_sample : ndarray of bool
        ``rank == 1``: the secret is likelier than every sampled candidate; ``sampled`` is at
        its cap and ``extrapolated`` rests on the fitted tail alone (unreliable).
    fits : list of SkewNormalFit
    n_candidates, space_size : int
    """

    which: NDArray[np.int64]
    sampled: NDArray[np.float64]
    extrapolated: NDArray[np.float64]
    log_perplexity: NDArray[np.float64]
    rank: NDArray[np.int64]
    beyond_sample: NDArray[np.bool_]
    fits: list[SkewNormalFit]
    n_candidates: int
    space_size: int

    @property
    def reliable(self) -> NDArray[np.bool_]:
        """Where the extrapolation is backed by data: inside the sample, an accepted fit,
        a finite value."""
        poor = np.array([f.poor_fit for f in self.fits], dtype=bool)
        return ~self.beyond_sample & ~poor & np.isfinite(self.extrapolated)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready values, each estimate named by its method."""
        return {
            "which": self.which.tolist(),
            "exposure_sampled": self.sampled.tolist(),
            "exposure_extrapolated": self.extrapolated.tolist(),
            "log_perplexity": self.log_perplexity.tolist(),
            "rank": self.rank.tolist(),
            "beyond_sample": self.beyond_sample.tolist(),
            "reliable": self.reliable.tolist(),
            "skewnorm": [
                {"a": f.shape, "loc": f.loc, "scale": f.scale, "ks": f.ks_statistic}
                for f in self.fits
            ],
            "n_candidates": self.n_candidates,
            "space_size": self.space_size,
            "methods": {
                "exposure_sampled": "Carlini et al. 2019 Def. 4: log2 n_candidates - log2 rank "
                "among the true secret + random candidates",
                "exposure_extrapolated": "Carlini et al. 2019 Sec. 4.3: -log2 CDF of a "
                "skew-normal fitted to the candidates' log-perplexities, capped at log2 |S|",
            },
        }


def exposure_estimates(
    target: LanguageModelTarget,
    canaries: CanarySet,
    *,
    which: Sequence[int] | None = None,
    n_candidates: int = DEFAULT_CANDIDATES,
    seed: Any = 0,
    quiet: bool | None = True,
) -> ExposureEstimates:
    """Sampled and extrapolated exposure of the canaries ``which`` (default all) from one set
    of ``n_candidates`` log-perplexities per canary (the same candidates as :func:`exposure`
    with the same seed, so ``sampled`` equals its result).

    Cost: ``n_candidates`` short passes and one skew-normal fit per canary.
    """
    space = _check_candidates(canaries, n_candidates)
    if n_candidates - 1 < MIN_FIT_CANDIDATES:
        raise ValidationError(
            f"n_candidates: the extrapolation fits {MIN_FIT_CANDIDATES} or more random "
            f"candidates; got {n_candidates - 1}"
        )
    idx = list(range(len(canaries.texts))) if which is None else [int(i) for i in which]
    logppl = _candidate_log_perplexities(target, canaries, idx, n_candidates, seed, quiet)
    sampled, ranks, extrapolated, fits = [], [], [], []
    for row in logppl:
        bits, rank = _sampled_exposure(row)
        sampled.append(bits)
        ranks.append(rank)
        ext, fit = skew_normal_exposure(row[1:], float(row[0]), space_size=space)
        extrapolated.append(ext)
        fits.append(fit)
    rank_arr = np.array(ranks, dtype=np.int64)
    return ExposureEstimates(
        which=np.array(idx, dtype=np.int64),
        sampled=np.array(sampled, dtype=np.float64),
        extrapolated=np.array(extrapolated, dtype=np.float64),
        log_perplexity=logppl[:, 0].copy(),
        rank=rank_arr,
        beyond_sample=rank_arr == 1,
        fits=fits,
        n_candidates=n_candidates,
        space_size=space,
    )
