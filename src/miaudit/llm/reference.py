r"""Reference-model attacks for language models: LiRA (online and offline) and Attack-R.

The one-model attacks of :mod:`miaudit.llm.attacks` compare a text's likelihood under the audited
model with a fixed threshold, so a text that is simply *easy* (short, formulaic, common words)
looks like a member. Reference-model attacks calibrate each text by how likely it is under
models trained the same way *with* and *without* it (difficulty calibration: Watson et al.,
ICLR 2022; Carlini et al., S&P 2022). For language models:

1. draw a balanced keep matrix ``keep`` of shape ``(m, n)`` over the ``n`` candidate texts
   (members and non-members of the target together): every text is IN for exactly
   ``round(m / 2)`` of the ``m`` reference models (:func:`miaudit.data.splits.keep_matrix`,
   the LiRA construction);
2. train reference LM ``i`` on ``{x_j : keep[i, j]}`` with the user's recipe ``train_lm``
   (ideally the target's own recipe and architecture): **m training runs**, the whole cost;
3. score every text under every reference with the ``loss`` attack, the signal
   :math:`s(x) = \frac1N \sum_{t} \log p(x_t \mid x_{<t})` (= −NLL, higher = member;
   :func:`~miaudit.llm.attacks.score_texts`), giving ``signals`` of shape ``(m, n)``;
4. compare the target's signal :math:`s_\theta(x)` with the record's reference signals:

   * **LiRA online** (Carlini et al., "Membership Inference Attacks From First Principles",
     IEEE S&P 2022, Eq. 3): :math:`\log \mathcal N(s_\theta; \mu_{in}, \sigma_{in}^2) -
     \log \mathcal N(s_\theta; \mu_{out}, \sigma_{out}^2)`, Gaussians fitted to the record's
     IN and OUT reference signals;
   * **LiRA offline** (same paper, Eq. 4): :math:`\log \Phi((s_\theta - \mu_{out}) /
     \sigma_{out})`, OUT references only;
   * **Attack-R** (Ye et al., "Enhanced Membership Inference Attacks against Machine Learning
     Models", CCS 2022): the interpolated rank of :math:`s_\theta` among the record's OUT
     reference signals;
   * **RMIA** (Zarifzadeh, Liu & Shokri, "Low-Cost High-Power Membership Inference Attacks",
     ICML 2024), online and offline, by :func:`miaudit.attacks.rmia.rmia_scores` (the same
     function as for classifiers):

     .. math:: \mathrm{Score}(x) = \frac1{|Z|}\sum_{z\in Z}
        1\!\left[\frac{\Pr(x\mid\theta)/\Pr(x)}{\Pr(z\mid\theta)/\Pr(z)} > \gamma\right],
        \qquad \Pr(x) = \frac1m\sum_i \Pr(x\mid\theta_i) \text{ (online)}

     or, offline, :math:`\Pr(x) = \frac{1+a}{2}\overline{\Pr}_{out}(x) + \frac{1-a}{2}`
     (:math:`a` tuned on the references only, :func:`~miaudit.attacks.rmia.tune_rmia_a`).

**What plays** :math:`\Pr(x\mid\theta)` **for a text.** RMIA's signal is a probability in
[0, 1] (the true-class confidence of a classifier). For a text it is the *per-token geometric
mean likelihood* :math:`\Pr(x\mid\theta) = \exp(\frac1N\sum_t \log p_\theta(x_t\mid x_{<t}))
= \exp(s_\theta(x))` (the inverse perplexity, the exponential of the ``loss`` signal), not the
sequence likelihood :math:`\exp(\sum_t \log p_t)`: the sequence likelihood of a text of
:math:`N` tokens is :math:`e^{N s}` (about :math:`e^{-300}` for 100 tokens at 3 nats, near the
float64 floor), so the mean over references would be the largest reference's value alone, and
the factor :math:`\gamma` would mean a different per-token effect for every length, while the
population comparison :math:`r(x)/r(z)` compares texts of different lengths. The per-token mean
keeps every text on the same scale. ``min_k`` (a mean of the smallest token log-probabilities)
is also a log-probability and may be used; ``zlib`` and ``min_k_plus_plus`` are not
(:data:`RMIA_SIGNALS`).

**The population** :math:`Z`: texts that no model trained on, scored under the target and every
reference (``population_target``, ``population_reference``). Without them the candidate texts
themselves serve (no label is read). With one query per text and the default tie-breaking, the
*order* of the scores, hence every AUC and TPR at any FPR, is that of :math:`r(x) =
\Pr(x\mid\theta)/\Pr(x)` whatever :math:`Z` is (the fraction :math:`\#\{z : r(z) < r(x)/\gamma\}
/ |Z|` is non-decreasing in :math:`r(x)` and ties are ordered by :math:`\log r(x)`), so
:math:`Z` only sets the scale of the score in [0, 1]. Online RMIA on texts is therefore the
reference attack :math:`s_\theta(x) - \log \frac1m \sum_i e^{s_{\theta_i}(x)}` with all ``m``
references (IN and OUT) as the reference.

   The Gaussians use one global variance per side below
   :data:`~miaudit.attacks.lira.GLOBAL_VARIANCE_BELOW` (64) references (``variance="auto"``),
   where the LiRA paper (Fig. 9) finds it better than per-record variances; centres are medians
   (the LiRA reference code).

This is the per-example difficulty calibration that Mireshghallah et al. ("Quantifying Privacy
Risks of Masked Language Models Using Membership Inference Attacks", EMNLP 2022) and MIMIR's
``ref`` attack (Duan et al., "Do Membership Inference Attacks Work on Large Language Models?",
COLM 2024) do with *one* reference LM (:math:`\mathrm{NLL}_{ref}(x) - \mathrm{NLL}(x)`, the
``reference`` attack of :mod:`miaudit.llm.attacks`); with many references trained on known
halves of the candidates, each text gets its own IN and OUT distribution, as LiRA does for
classifiers. It is only practical where training is cheap: small or fine-tuned models.

A text whose signal is NaN under the target or under some reference (no predicted token) gets a
NaN score from every attack; the attacks are fitted on the other texts (NaNs are never dropped,
so scores stay aligned with the texts).

Measured (CPU, one thread, AUC and TPR at 1 % FPR; every text IN for 4 of 8 references):

* ``tests/test_llm_reference.py`` (48 Python-docs texts, tiny GPT-2 d=32, 1 layer, target and
  references trained alike, 8 epochs): LOSS AUC 0.79; LiRA online 0.95, offline 0.91,
  Attack-R 0.91;
  RMIA online 0.95 (TPR 0.38 at 1 %, LOSS 0.08), offline 0.93 (0.42) with the tuned
  :math:`a = 1`. Offline with :math:`a < 1` is no better than LOSS (AUC 0.79 at
  :math:`a = 0.4`): per-token likelihoods are about 0.002-0.01, so the constant
  :math:`\frac{1-a}{2}` of the paper's linear approximation (which assumes IN probabilities
  near 1, as a classifier's confidence on its training records) swamps
  :math:`\overline{\Pr}_{out}(x)` and :math:`\Pr(x)` is nearly the same for every text;
  tuning :math:`a` on the references finds this and picks 1.
* The demo's scale (500 records, demo GPT-2 d=64, 2 layers, 16 epochs; plain LOSS AUC 0.86,
  TPR 0.13): references trained with the target's recipe give LiRA online 0.94 / 0.32,
  offline 0.94 / 0.37, Attack-R 0.93 / 0.48. References trained 4 epochs instead of 16 give
  offline 0.89 / 0.14 and Attack-R 0.89 / 0.14 (no better than LOSS at low FPR) and online
  LiRA 0.17 / 0.01, worse than chance: every member's target signal lies far above both
  fitted Gaussians (mean z ≈ 18 under IN, 17 under OUT), where the log-ratio favours the wider
  Gaussian (σ_out = 0.071 > σ_in = 0.059), i.e. says OUT;
  1-epoch references: online 0.88 / 0.23, offline 0.89 / 0.17.

So reference attacks beat plain LOSS **only when the references are good enough**: trained
like the target (architecture, data size, epochs). With an unknown recipe prefer the offline
attacks, which only need the OUT side to be right.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from miaudit._validation import check_count
from miaudit.attacks.calibrated import YE, attack_r_scores
from miaudit.attacks.lira import PAPER as LIRA_PAPER
from miaudit.attacks.lira import lira_scores, resolve_variance
from miaudit.attacks.rmia import DEFAULT_A, rmia_scores, tune_rmia_a
from miaudit.attacks.rmia import PAPER as RMIA_PAPER
from miaudit.audit.result import AuditResult, build_result
from miaudit.data.splits import keep_matrix
from miaudit.exceptions import ValidationError
from miaudit.llm.attacks import ONE_PASS_ATTACKS, attack_info, score_texts
from miaudit.llm.data import TextSplit
from miaudit.llm.target import DEFAULT_BATCH_SIZE, check_texts
from miaudit.metrics import DEFAULT_FPRS

__all__ = [
    "DEFAULT_GAMMA",
    "DEFAULT_RMIA_A",
    "DEFAULT_SIGNAL",
    "DEFAULT_VARIANCE",
    "MIN_REFERENCES",
    "REFERENCE_ATTACKS",
    "RMIA_SIGNALS",
    "ReferenceAudit",
    "TrainLM",
    "audit_with_references",
    "check_attacks",
    "default_attacks",
    "plan_references",
    "reference_attacks",
    "reference_infos",
    "reference_signals",
    "resolve_rmia_a",
    "train_and_score",
]

#: The per-text signal of the references and the target: the ``loss`` attack, −NLL.
DEFAULT_SIGNAL = "loss"
#: Variance of the LiRA Gaussians: ``"auto"`` = one global std per side below 64 references
#: (Carlini et al. 2022, Fig. 9), per-record stds from 64 on.
DEFAULT_VARIANCE = "auto"
#: Fewest references: with a balanced keep matrix each text then has one IN and one OUT model.
MIN_REFERENCES = 2
#: Fewest references for ``a="auto"``: with every text IN for ``m / 2`` of them, a reference
#: playing the target finds OUT models among the others for both its IN and its OUT texts.
MIN_TUNING_REFERENCES = 4
#: Bound of the per-reference training seeds drawn from ``seed``.
_SEED_BOUND = 2**31 - 1

#: The attacks :func:`reference_attacks` returns: name → (title, paper, formula).
REFERENCE_ATTACKS: dict[str, tuple[str, str, str]] = {
    "lira": (
        "LiRA online on the LM loss signal",
        LIRA_PAPER,
        "log N(s; mu_in, sigma_in^2) - log N(s; mu_out, sigma_out^2), s = (1/N) sum_t log p_t",
    ),
    "lira_offline": (
        "LiRA offline on the LM loss signal",
        LIRA_PAPER,
        "log Phi((s - mu_out) / sigma_out), s = (1/N) sum_t log p_t",
    ),
    "attack_r": (
        "Attack-R on the LM loss signal",
        YE,
        "interpolated rank of s among the text's OUT reference signals",
    ),
    "rmia": (
        "RMIA online on the LM per-token likelihood",
        RMIA_PAPER,
        "fraction of z in Z with r(x)/r(z) > gamma, r(x) = exp(s_target(x)) / "
        "mean_i exp(s_i(x)) over all references, s = (1/N) sum_t log p_t",
    ),
    "rmia_offline": (
        "RMIA offline on the LM per-token likelihood",
        RMIA_PAPER,
        "fraction of z in Z with r(x)/r(z) > gamma, r(x) = exp(s_target(x)) / "
        "((1+a)/2 mean_out exp(s_i(x)) + (1-a)/2), s = (1/N) sum_t log p_t",
    ),
}
#: Attacks that need the signal to be a mean token log-probability (RMIA's Pr(x|θ) = exp(s)).
_RMIA = ("rmia", "rmia_offline")
#: Signals that are means of token log-probabilities, so that exp(signal) is a probability.
RMIA_SIGNALS = ("loss", "min_k")
#: RMIA's :math:`\gamma` on per-token likelihoods. The paper's :math:`\gamma = 2` (CIFAR) is a
#: factor on a whole-record probability; per token, a sequence-level factor :math:`\gamma` is
#: :math:`\gamma^{1/N} \approx 1`, and the per-token ratios of texts span too little for 2:
#: in ``tests/test_llm_reference.py`` :math:`\log r(x)` lies within [-0.23, 0.14] (5-95 %), so
#: no pair of texts has :math:`r(x)/r(z) > 2`, every fraction is 0 and offline RMIA's
#: :math:`a` cannot be tuned. ML Privacy Meter's default, 1, counts every dominated text.
DEFAULT_GAMMA = 1.0
#: RMIA's offline ``a``: tuned on the reference models (:func:`~miaudit.attacks.rmia.tune_rmia_a`).
DEFAULT_RMIA_A = "auto"

#: ``train_lm(texts, seed) -> (model, tokenizer)``: the reference training recipe.
TrainLM = Callable[[list[str], int], tuple[Any, Any]]


def _check_signal(signal: str) -> str:
    if signal not in ONE_PASS_ATTACKS:
        raise ValidationError(
            f"signal: expected one of {', '.join(ONE_PASS_ATTACKS)} (a one-pass LLM attack), "
            f"got {signal!r}"
        )
    return signal


def _check_distinct(texts: list[str], name: str) -> None:
    seen: dict[str, int] = {}
    for i, t in enumerate(texts):
        if t in seen:
            raise ValidationError(
                f"{name}[{i}]: the same text as {name}[{seen[t]}]; candidate texts must be "
                "distinct (a duplicate would be IN and OUT of the same reference model)"
            )
        seen[t] = i


def _signal_of(
    model: Any, tokenizer: Any, texts: list[str], signal: str, batch_size: int, quiet: bool | None
) -> NDArray[np.float64]:
    scores = score_texts(model, tokenizer, texts, [signal], batch_size=batch_size, quiet=quiet)
    return np.asarray(scores[signal], dtype=np.float64)


def reference_signals(
    texts: Sequence[str],
    train_lm: TrainLM,
    n_references: int,
    *,
    seed: int = 0,
    signal: str = DEFAULT_SIGNAL,
    batch_size: int = DEFAULT_BATCH_SIZE,
    quiet: bool | None = True,
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    r"""Train ``n_references`` reference LMs on random halves of ``texts`` and score every text
    under every reference.

    Cost: ``n_references`` calls of ``train_lm`` (each on about ``n / 2`` texts) and
    ``n_references`` scoring passes over all ``n`` texts.

    Parameters
    ----------
    texts : sequence of str
        The ``n`` candidate texts: the target's members and non-members together (distinct).
    train_lm : callable
        ``train_lm(texts: list[str], seed: int) -> (model, tokenizer)``: trains a fresh causal
        LM on ``texts``; should be the target's recipe (architecture, epochs, learning rate) as
        far as it is known. For example the demo's trainer wrapped::

            def train_lm(texts, seed):
                model = tiny_gpt2(tok, n_embd=32, n_layer=1, seed=seed)
                train_causal_lm(model, tok, texts, epochs=40, batch_size=8,
                                block_size=32, learning_rate=1e-2, seed=seed)
                return model, tok
    n_references : int
        ``m ≥ 2``; every text is IN for ``round(m / 2)`` references. LiRA's online attack
        needs both IN and OUT references for each text, so ``m ≥ 2``; the LiRA paper uses
        16–256 (more is better, with diminishing returns).
    seed : int
        Seeds the keep matrix and the per-reference training seeds (``seed`` passed to
        ``train_lm`` is drawn from it, one per reference).
    signal : str
        The per-text signal: ``"loss"`` (default, :math:`\frac1N\sum_t \log p_t`) or another
        one-pass attack of :data:`~miaudit.llm.attacks.ONE_PASS_ATTACKS`.
    batch_size : int
        Scoring batch size.
    quiet : bool, optional
        Progress bars of scoring (``True``: none).

    Returns
    -------
    signals : ndarray of shape (m, n), float64
        ``signals[i, j]``: the signal of text ``j`` under reference ``i`` (NaN where undefined).
    keep : ndarray of shape (m, n), bool
        ``keep[i, j]``: reference ``i`` trained on text ``j``; every column has exactly
        ``round(m / 2)`` True.
    """
    checked = check_texts(texts)
    _check_distinct(checked, "texts")
    signal = _check_signal(signal)
    if not callable(train_lm):
        raise ValidationError(
            f"train_lm: expected a callable train_lm(texts, seed) -> (model, tokenizer), "
            f"got {type(train_lm).__name__}"
        )
    keep, seeds = plan_references(len(checked), n_references, seed)
    signals = np.empty(keep.shape, dtype=np.float64)
    for i in range(keep.shape[0]):
        signals[i] = train_and_score(
            checked, keep[i], int(seeds[i]), train_lm, signal=signal, batch_size=batch_size,
            quiet=quiet,
        )  # fmt: skip
    return signals, keep


def plan_references(
    n_texts: int, n_references: int, seed: int = 0
) -> tuple[NDArray[np.bool_], NDArray[np.int64]]:
    """The keep matrix ``(m, n)`` (every text IN for ``round(m / 2)`` references) and the ``m``
    training seeds that :func:`reference_signals` draws from ``seed``."""
    m = check_count(n_references, "n_references", MIN_REFERENCES)
    rng = np.random.default_rng(seed)
    keep = keep_matrix(m, n_texts, rng)
    seeds = rng.integers(0, _SEED_BOUND, size=m)
    return keep, seeds


def train_and_score(
    texts: list[str],
    keep_row: NDArray[np.bool_],
    seed: int,
    train_lm: TrainLM,
    *,
    signal: str = DEFAULT_SIGNAL,
    batch_size: int = DEFAULT_BATCH_SIZE,
    quiet: bool | None = True,
) -> NDArray[np.float64]:
    """Train one reference on ``texts[keep_row]`` with ``train_lm(.., seed)`` and return the
    ``signal`` of every text under it, shape ``(n,)``."""
    train = [t for t, k in zip(texts, keep_row, strict=True) if k]
    if not train:
        raise ValidationError(
            f"n_references={len(keep_row)} with {len(texts)} texts: a reference would train on "
            "no text; use more texts"
        )
    out = train_lm(train, seed)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise ValidationError(
            f"train_lm: expected it to return (model, tokenizer), got {type(out).__name__}"
        )
    model, tokenizer = out
    return _signal_of(model, tokenizer, texts, signal, batch_size, quiet)


def default_attacks(signal: str = DEFAULT_SIGNAL) -> tuple[str, ...]:
    """The attacks of :data:`REFERENCE_ATTACKS` that apply to ``signal`` (RMIA only to
    :data:`RMIA_SIGNALS`)."""
    return tuple(a for a in REFERENCE_ATTACKS if a not in _RMIA or signal in RMIA_SIGNALS)


def check_attacks(attacks: Sequence[str] | None, signal: str = DEFAULT_SIGNAL) -> tuple[str, ...]:
    """``attacks`` checked against :data:`REFERENCE_ATTACKS` and ``signal`` (None: all that
    apply, :func:`default_attacks`)."""
    if attacks is None:
        return default_attacks(signal)
    names = tuple(attacks)
    unknown = [a for a in names if a not in REFERENCE_ATTACKS]
    if unknown or not names:
        raise ValidationError(
            f"attacks: expected names among {', '.join(REFERENCE_ATTACKS)}, got {list(names)}"
        )
    if signal not in RMIA_SIGNALS and any(a in _RMIA for a in names):
        raise ValidationError(
            f"attacks: RMIA needs a mean token log-probability as its signal (Pr(x) = exp(s)): "
            f"signal {' or '.join(RMIA_SIGNALS)}, got {signal!r}"
        )
    return names


def _likelihood(signal: NDArray[np.float64], name: str) -> NDArray[np.float64]:
    r""":math:`\exp(s)`, the per-token geometric-mean likelihood, from a log-probability signal."""
    if signal.size and signal.max() > 0.0:
        raise ValidationError(
            f"{name}: RMIA reads the signal as a mean token log-probability (<= 0), found "
            f"{signal.max():.4g}; use signal {' or '.join(RMIA_SIGNALS)}"
        )
    return np.exp(signal)


def reference_attacks(
    target_signal: ArrayLike,
    ref_signals: ArrayLike,
    keep: ArrayLike,
    *,
    variance: str = DEFAULT_VARIANCE,
    attacks: Sequence[str] | None = None,
    gamma: float = DEFAULT_GAMMA,
    a: float | str = DEFAULT_RMIA_A,
    population_target: ArrayLike | None = None,
    population_reference: ArrayLike | None = None,
) -> dict[str, NDArray[np.float64]]:
    r"""LiRA online/offline, Attack-R and RMIA online/offline on per-text LM signals
    (higher = member).

    Parameters
    ----------
    target_signal : array-like of shape (n,)
        The audited model's signal on the ``n`` texts (same signal as the references').
    ref_signals : array-like of shape (m, n)
        From :func:`reference_signals`.
    keep : array-like of shape (m, n), bool
        From :func:`reference_signals`.
    variance : {"auto", "global", "per_record"}
        Of the LiRA Gaussians; ``"auto"`` (default) is ``"global"`` below 64 references.
    attacks : sequence of str, optional
        Among :data:`REFERENCE_ATTACKS`; default all (RMIA only when every finite signal is
        ``<= 0``, i.e. a mean token log-probability).
    gamma : float
        RMIA's dominance factor :math:`\gamma` (default :data:`DEFAULT_GAMMA` = 1, see there).
    a : float or "auto"
        Offline RMIA's :math:`a`; ``"auto"`` (default) tunes it on the references alone
        (:func:`~miaudit.attacks.rmia.tune_rmia_a`; the audited labels are never read).
    population_target, population_reference : array-like of shape (z,) and (m, z), optional
        RMIA's population :math:`Z`: the signals of texts in no training set under the target
        and the references. Default: the candidate texts themselves (see the module docstring:
        with one query per text the order of RMIA's scores does not depend on :math:`Z`).

    Returns
    -------
    dict of str to ndarray of shape (n,), float64
        ``"lira"``: :func:`~miaudit.attacks.lira.lira_scores` online; ``"lira_offline"``:
        offline, one-sided; ``"attack_r"``: :func:`~miaudit.attacks.calibrated.attack_r_scores`;
        ``"rmia"``, ``"rmia_offline"``: :func:`~miaudit.attacks.rmia.rmia_scores` on
        :math:`\exp(s)`. Texts with a NaN signal (target or any reference) get NaN from every
        attack; the attacks are fitted on the others (and left out of the default population).
    """
    tgt = np.asarray(target_signal, dtype=np.float64)
    ref = np.asarray(ref_signals, dtype=np.float64)
    kp = np.asarray(keep)
    if tgt.ndim != 1:
        raise ValidationError(f"target_signal: expected shape (n,), got {tgt.shape}")
    if ref.ndim != 2 or ref.shape[1] != tgt.shape[0]:
        raise ValidationError(
            f"ref_signals: expected shape (n_references, {tgt.shape[0]}), got {ref.shape}"
        )
    if kp.shape != ref.shape:
        raise ValidationError(f"keep: expected shape {ref.shape}, got {kp.shape}")
    if kp.dtype != np.bool_:
        raise ValidationError(f"keep: expected a bool array, got dtype {kp.dtype}")
    variance = resolve_variance(variance, ref.shape[0])
    ok = np.isfinite(tgt) & np.isfinite(ref).all(axis=0)
    if not ok.any():
        raise ValidationError("target_signal, ref_signals: no text has finite signals everywhere")
    t, r, k = (tgt, ref, kp) if ok.all() else (tgt[ok], ref[:, ok], kp[:, ok])
    if attacks is None:
        log_prob = t.max() <= 0.0 and r.max() <= 0.0
        names = tuple(n for n in REFERENCE_ATTACKS if n not in _RMIA or log_prob)
    else:
        names = check_attacks(attacks, DEFAULT_SIGNAL)
    found: dict[str, NDArray[np.float64]] = {}
    if "lira" in names:
        found["lira"] = lira_scores(t, r, k, online=True, variance=variance)
    if "lira_offline" in names:
        found["lira_offline"] = lira_scores(t, r, k, online=False, variance=variance)
    if "attack_r" in names:
        found["attack_r"] = attack_r_scores(t, r, k)
    if any(n in _RMIA for n in names):
        found.update(_rmia(t, r, k, names, gamma, a, population_target, population_reference))
    out: dict[str, NDArray[np.float64]] = {}
    for name in names:
        full = np.full(tgt.shape, np.nan)
        full[ok] = found[name]
        out[name] = full
    return out


def _rmia(
    t: NDArray[np.float64],
    r: NDArray[np.float64],
    k: NDArray[np.bool_],
    names: Sequence[str],
    gamma: float,
    a: float | str,
    population_target: ArrayLike | None,
    population_reference: ArrayLike | None,
) -> dict[str, NDArray[np.float64]]:
    r"""RMIA online/offline on :math:`\exp(s)` with the given population or the candidates."""
    if (population_target is None) != (population_reference is None):
        raise ValidationError(
            "population_target, population_reference: give both (RMIA's population Z) or neither"
        )
    pt, pr = t, r
    if population_target is not None and population_reference is not None:
        pt = np.asarray(population_target, dtype=np.float64)
        pr = np.asarray(population_reference, dtype=np.float64)
        if pt.ndim != 1 or pr.shape != (r.shape[0], pt.shape[0]):
            raise ValidationError(
                f"population_target, population_reference: expected shapes (z,) and "
                f"({r.shape[0]}, z), got {pt.shape} and {pr.shape}"
            )
        if not (np.isfinite(pt).all() and np.isfinite(pr).all()):
            raise ValidationError("population_target, population_reference: NaN or inf signals")
    p_t, p_r = _likelihood(t, "target_signal"), _likelihood(r, "ref_signals")
    p_pt, p_pr = _likelihood(pt, "population_target"), _likelihood(pr, "population_reference")
    out: dict[str, NDArray[np.float64]] = {}
    if "rmia" in names:
        out["rmia"] = rmia_scores(p_t, p_r, k, p_pt, p_pr, online=True, gamma=gamma)
    if "rmia_offline" in names:
        if a == "auto":
            a = tune_rmia_a(p_r, k, p_pr, gamma=gamma)
        elif isinstance(a, str):
            raise ValidationError(f"a: expected a number in [0, 1] or 'auto', got {a!r}")
        out["rmia_offline"] = rmia_scores(
            p_t, p_r, k, p_pt, p_pr, online=False, gamma=gamma, a=float(a)
        )
    return out


@dataclass
class ReferenceAudit:
    """What :func:`audit_with_references` found.

    Attributes
    ----------
    scores : dict of str to ndarray of shape (n,)
        ``"loss"`` (the target's signal alone, the baseline) and the attacks of
        :func:`reference_attacks`; higher = member; members first, then non-members.
    target_signal : ndarray of shape (n,)
    reference_signals : ndarray of shape (m, n)
    keep : ndarray of shape (m, n), bool
    is_member : ndarray of shape (n,), bool
    result : AuditResult
        Metrics of every score (``result.metrics``), saved with ``result.save(folder)``.
    """

    scores: dict[str, NDArray[np.float64]]
    target_signal: NDArray[np.float64]
    reference_signals: NDArray[np.float64]
    keep: NDArray[np.bool_]
    is_member: NDArray[np.bool_]
    result: AuditResult = field(repr=False)


def resolve_rmia_a(
    ref_signals: ArrayLike,
    keep: ArrayLike,
    a: float | str = DEFAULT_RMIA_A,
    *,
    gamma: float = DEFAULT_GAMMA,
    population_reference: ArrayLike | None = None,
) -> float:
    r"""Offline RMIA's :math:`a`: ``a`` itself, or for ``"auto"`` the value
    :func:`~miaudit.attacks.rmia.tune_rmia_a` picks with each reference in turn as the target
    (its own keep row as labels), on :math:`\exp(s)` of the texts with finite signals under
    every reference; the population defaults to those texts."""
    if a != "auto":
        if isinstance(a, str):
            raise ValidationError(f"a: expected a number in [0, 1] or 'auto', got {a!r}")
        return float(a)
    ref = np.asarray(ref_signals, dtype=np.float64)
    ok = np.isfinite(ref).all(axis=0)
    kp = np.asarray(keep)[:, ok]
    p_r = _likelihood(ref[:, ok], "ref_signals")
    pr = (
        p_r
        if population_reference is None
        else _likelihood(np.asarray(population_reference, dtype=np.float64), "population_reference")
    )
    if ref.shape[0] < MIN_TUNING_REFERENCES:
        raise ValidationError(
            f"a: 'auto' tunes offline RMIA's a with each reference in turn as the target, which "
            f"needs at least {MIN_TUNING_REFERENCES} references (so that the others have OUT "
            f"models for its members and non-members); got {ref.shape[0]}. Use more references "
            "or give a number in [0, 1]"
        )
    return tune_rmia_a(p_r, kp, pr, gamma=gamma)


def reference_infos(
    names: Sequence[str],
    *,
    signal: str = DEFAULT_SIGNAL,
    n_references: int,
    variance: str = DEFAULT_VARIANCE,
    gamma: float = DEFAULT_GAMMA,
    a: float | None = None,
    cost: str | None = None,
) -> dict[str, dict[str, Any]]:
    """``{"name", "title", "paper", "formula", "cost", "params"}`` of each reference attack,
    as the result's ``attacks`` (the formula names the signal actually used)."""
    infos: dict[str, dict[str, Any]] = {}
    for name in names:
        title, paper, formula = REFERENCE_ATTACKS[name]
        params: dict[str, Any] = {"n_references": n_references, "signal": signal}
        if name in _RMIA:
            params["gamma"] = gamma
            if name == "rmia_offline":
                params["a"] = a
        else:
            params["variance"] = variance
        infos[name] = {
            "name": name,
            "title": title if signal == DEFAULT_SIGNAL else f"{title.split(' on ')[0]} on {signal}",
            "paper": paper,
            "formula": formula
            if signal == DEFAULT_SIGNAL
            else formula.replace("(1/N) sum_t log p_t", f"the {signal} score"),
            "cost": cost
            or f"{n_references} reference LM training runs + {n_references} scoring passes",
            "params": params,
        }
    return infos


def audit_with_references(
    members: Sequence[str],
    non_members: Sequence[str],
    *,
    model: Any,
    tokenizer: Any = None,
    train_lm: TrainLM,
    n_references: int,
    seed: int = 0,
    signal: str = DEFAULT_SIGNAL,
    variance: str = DEFAULT_VARIANCE,
    attacks: Sequence[str] | None = None,
    gamma: float = DEFAULT_GAMMA,
    a: float | str = DEFAULT_RMIA_A,
    batch_size: int = DEFAULT_BATCH_SIZE,
    fprs: Sequence[float] = DEFAULT_FPRS,
    quiet: bool | None = True,
) -> ReferenceAudit:
    """Reference-model audit of a language model: the target's signal, ``n_references``
    references trained on random halves of ``members + non_members`` (:func:`reference_signals`)
    and the attacks of :func:`reference_attacks`, next to plain LOSS.

    Parameters
    ----------
    members, non_members : sequence of str
        Texts the target trained on and texts it did not (same distribution, all distinct).
    model, tokenizer
        The audited causal LM, as :func:`~miaudit.llm.attacks.score_texts` takes it.
    train_lm : callable
        ``train_lm(texts, seed) -> (model, tokenizer)``, see :func:`reference_signals`.
    n_references : int
        Number of reference LMs to train (the cost: that many training runs).
    seed, signal, batch_size, quiet
        As :func:`reference_signals`; ``seed`` also seeds the metrics' bootstrap.
    variance, gamma, a : str, float, float or "auto"
        As :func:`reference_attacks`; the :math:`a` used is in the result's attack params.
    attacks : sequence of str, optional
        Among :data:`REFERENCE_ATTACKS`; default all that apply to ``signal``
        (:func:`default_attacks`).
    fprs : sequence of float
        FPRs of the metrics.

    Returns
    -------
    ReferenceAudit
    """
    split = TextSplit(list(members), list(non_members))
    texts = split.texts
    is_member = np.array(split.is_member, dtype=bool)
    signal = _check_signal(signal)
    names = check_attacks(attacks, signal)
    target = _signal_of(model, tokenizer, texts, signal, batch_size, quiet)
    refs, keep = reference_signals(
        texts, train_lm, n_references, seed=seed, signal=signal, batch_size=batch_size, quiet=quiet
    )
    a_used = resolve_rmia_a(refs, keep, a, gamma=gamma) if "rmia_offline" in names else None
    found = reference_attacks(
        target, refs, keep, variance=variance, attacks=names, gamma=gamma,
        a=DEFAULT_A if a_used is None else a_used,
    )  # fmt: skip
    scores = {signal: target, **found}
    infos: dict[str, dict[str, Any]] = {
        signal: attack_info(signal),
        **reference_infos(
            names,
            signal=signal,
            n_references=n_references,
            variance=variance,
            gamma=gamma,
            a=a_used,
        ),
    }
    result = build_result(
        {n: s[None, :] for n, s in scores.items()},
        is_member[None, :],
        np.asarray(split.record_ids, dtype=object),
        None,
        ["target"],
        fprs=fprs,
        seed=seed,
        attacks=infos,
    )
    result.config = {
        **result.config,
        "mode": "llm",
        "llm": {
            "n_members": int(is_member.sum()),
            "n_non_members": int((~is_member).sum()),
            "n_references": n_references,
            "signal": signal,
            "n_nan_scores": {n: int(np.isnan(s).sum()) for n, s in scores.items()},
        },
    }
    return ReferenceAudit(scores, target, refs, keep, is_member, result)
