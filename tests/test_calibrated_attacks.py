"""Attack-R, Attack-P and the calibrated losses against straightforward loops."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from miaudit import attacks
from miaudit.attacks._reference_stats import side_mask
from miaudit.attacks.base import AttackData
from miaudit.attacks.calibrated import (
    attack_p_scores,
    attack_r_scores,
    calibrated_scores,
    sablayrolles_scores,
)
from miaudit.exceptions import MissingRequirementError, ValidationError
from miaudit.signals import cross_entropy_loss


def _data(m=7, n=40, q=2, seed=0):
    rng = np.random.default_rng(seed)
    keep = rng.random((m, n)) < 0.5
    keep[0] = ~keep[1]
    ref = rng.normal(size=(m, n, q)) + keep[..., None]
    target = 1.5 * rng.normal(size=(n, q))
    return target, ref, keep


def _quantile_level(s, values):
    """The level alpha with np.quantile(values, alpha) == s (0 below, 1 above), by bisection on
    numpy's own quantile function (independent of the closed form in the code)."""
    values = np.sort(values)
    if s <= values[0]:
        return 0.0
    if s > values[-1]:
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if np.quantile(values, mid) < s else (lo, mid)
    return (lo + hi) / 2


def test_attack_r_is_the_inverse_of_the_linear_quantile():
    target, ref, keep = _data()
    keep[:, 5] = True
    keep[3, 5] = False  # record 5 has a single OUT reference: a step at its value
    got = attack_r_scores(target, ref, keep, equalize=False, tie_break=False)  # as below
    n, q = target.shape
    want = [
        np.mean([_quantile_level(target[j, k], ref[~keep[:, j], j, k]) for k in range(q)])
        for j in range(n)
    ]
    np.testing.assert_allclose(got, want, atol=1e-9)
    assert got[5] in (0.0, 0.5, 1.0)


def test_attack_r_hand_example():
    ref = np.array([1.0, 2.0, 4.0, 100.0])[:, None]  # last reference is IN, so ignored
    keep = np.array([[0], [0], [0], [1]], dtype=bool)
    # OUT values 1, 2, 4 sit at levels 0, 0.5, 1; 3 is half way between 2 and 4 → 0.75.
    got = attack_r_scores(
        np.array([0.0, 1.5, 3.0, 5.0]), np.repeat(ref, 4, axis=1), keep.repeat(4, 1),
        tie_break=False,
    )
    np.testing.assert_allclose(got, [0.0, 0.25, 0.75, 1.0])


def test_attack_p_is_the_inverse_of_the_linear_quantile():
    rng = np.random.default_rng(1)
    target, pop = rng.normal(size=(30, 3)), rng.normal(size=(25, 3))
    got = attack_p_scores(target, pop)
    want = [
        np.mean([_quantile_level(target[j, k], pop[:, k]) for k in range(3)]) for j in range(30)
    ]
    np.testing.assert_allclose(got, want, atol=1e-9)


def test_calibrated_and_sablayrolles_match_loops():
    target, ref, keep = _data(seed=2)
    m, n, q = ref.shape
    watson, sab = np.empty(n), np.empty(n)
    for j in range(n):
        w, s = [], []
        for k in range(q):
            outs = [ref[i, j, k] for i in range(m) if not keep[i, j]]
            ins = [ref[i, j, k] for i in range(m) if keep[i, j]]
            w.append(target[j, k] - np.mean(outs))
            s.append(target[j, k] - (np.mean(ins) + np.mean(outs)) / 2)
        watson[j], sab[j] = np.mean(w), np.mean(s)
    np.testing.assert_allclose(calibrated_scores(target, ref, keep), watson, rtol=1e-12)
    np.testing.assert_allclose(sablayrolles_scores(target, ref, keep), sab, rtol=1e-12)


def _logit_data(m=6, n=20, z=15, q=2, c=3, seed=3):
    rng = np.random.default_rng(seed)
    labels, pop_labels = rng.integers(0, c, n), rng.integers(0, c, z)
    keep = rng.random((m, n)) < 0.5
    keep[0] = ~keep[1]
    out = {
        "target": rng.normal(size=(n, q, c)),
        "references": rng.normal(size=(m, n, q, c)),
        "population_target": rng.normal(size=(z, q, c)),
    }
    data = AttackData(labels=labels, keep=keep, population_labels=pop_labels, **out)
    return data, out, labels, pop_labels, keep


@pytest.mark.parametrize(
    ("name", "fn"),
    [
        ("attack_r", functools.partial(attack_r_scores, equalize=True)),
        ("calibrated_loss", calibrated_scores),
        ("sablayrolles", sablayrolles_scores),
    ],
)
def test_registered_attacks_use_negative_loss(name, fn):
    data, out, labels, _, keep = _logit_data()
    want = fn(
        -cross_entropy_loss(out["target"], labels),
        -cross_entropy_loss(out["references"], labels),
        keep,
    )
    np.testing.assert_allclose(attacks.create(name).score(data), want)


def test_registered_attack_p_uses_negative_loss_on_population():
    data, out, labels, pop_labels, _ = _logit_data()
    want = attack_p_scores(
        -cross_entropy_loss(out["target"], labels),
        -cross_entropy_loss(out["population_target"], pop_labels),
    )
    np.testing.assert_allclose(attacks.create("attack_p").score(data), want)


def test_registered_attack_p_without_population():
    data = AttackData(labels=np.zeros(3, int), target=np.zeros((3, 2)))
    with pytest.raises(MissingRequirementError, match="'attack_p' needs population records"):
        attacks.create("attack_p").score(data)


@pytest.mark.parametrize(
    ("fn", "side", "match"),
    [
        (attack_r_scores, "out", r"Attack-R .*OUT.* 2 of 40"),
        (calibrated_scores, "out", r"calibrated loss .*OUT.* 2 of 40"),
        (sablayrolles_scores, "out", r"Sablayrolles et al\. .*OUT.* 2 of 40"),
        (sablayrolles_scores, "in", r"Sablayrolles et al\. .*IN.* 2 of 40"),
    ],
)
def test_missing_references_counted(fn, side, match):
    target, ref, keep = _data()
    keep[:, [3, 9]] = side == "out"
    with pytest.raises(MissingRequirementError, match=match):
        fn(target, ref, keep)


def test_attack_p_errors():
    with pytest.raises(ValidationError, match="population_target: expected 2 queries"):
        attack_p_scores(np.zeros((4, 2)), np.zeros((5, 3)))
    with pytest.raises(MissingRequirementError, match="at least one population record"):
        attack_p_scores(np.zeros((4, 1)), np.zeros((0, 1)))
    with pytest.raises(ValidationError, match="population_target: contains 1 NaN"):
        attack_p_scores(np.zeros((4, 1)), np.array([[np.nan], [0.0]]))


def test_shared_input_checks():
    with pytest.raises(ValidationError, match="target: needs at least one query"):
        calibrated_scores(np.zeros((4, 0)), np.zeros((2, 4, 0)), np.zeros((2, 4), bool))
    with pytest.raises(ValidationError, match="side: expected 'in' or 'out'"):
        side_mask(np.zeros((2, 4), bool), "both")


def test_attack_r_tie_keys_against_a_loop():
    """The "percentile" key is each query's z-score under the record's OUT signals (ddof 0),
    averaged over queries; "calibrated" is the mean difference; a record with one OUT
    reference (σ = 0) takes the median positive σ."""
    from miaudit.attacks.calibrated import attack_r_tie_key

    target, ref, keep = _data(m=5, n=30, q=2, seed=4)
    keep[:, 0] = True
    keep[0, 0] = False  # record 0: a single OUT reference
    out = ~keep
    diff = np.empty(target.shape)
    sd = np.empty(target.shape)
    for i in range(target.shape[0]):
        for j in range(target.shape[1]):
            vals = ref[out[:, i], i, j]
            diff[i, j] = target[i, j] - vals.mean()
            sd[i, j] = vals.std()
    assert (sd[0] == 0).all()
    z = diff / np.where(sd > 0, sd, np.median(sd[sd > 0]))
    got = attack_r_tie_key(target, ref, out, "percentile")
    np.testing.assert_allclose(got, z.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(
        attack_r_tie_key(target, ref, out, "calibrated"), diff.mean(axis=1), rtol=1e-12
    )


def test_attack_r_tie_key_orders_only_ties():
    """Both keys keep the paper's order wherever ranks differ, and order the tied records
    by the key; an unknown key is refused by the function and the registered attack."""
    from miaudit.attacks.calibrated import attack_r_tie_key

    target, ref, keep = _data(m=4, n=200, q=1, seed=5)
    target = target * 3  # many records outside their references' range: ties at 0 and 1
    paper = attack_r_scores(target, ref, keep, equalize=False, tie_break=False)
    for key in ("percentile", "calibrated"):
        tied = attack_r_scores(target, ref, keep, equalize=False, tie_key=key)
        order = np.argsort(tied, kind="stable")
        assert (np.diff(paper[order]) >= -1e-9).all()  # primary order kept
        top = np.flatnonzero(paper == 1.0)
        assert top.size > 5
        k = attack_r_tie_key(target, ref, ~keep, key)
        assert np.array_equal(np.argsort(tied[top]), np.argsort(k[top]))
    with pytest.raises(ValidationError, match="tie_key"):
        attack_r_scores(target, ref, keep, tie_key="loss")
    with pytest.raises(ValidationError, match="tie_key"):
        attacks.get("attack_r")(tie_key="loss")
