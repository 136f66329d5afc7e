"""RMIA: the sorted computation against a brute-force loop over all (x, z) pairs, the offline
``a`` tuning against an independent leave-one-out loop, memory, and every error path."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from miaudit import attacks
from miaudit.attacks.base import AttackData
from miaudit.attacks.rmia import DEFAULT_A_GRID, rmia_scores, tune_rmia_a
from miaudit.exceptions import MissingRequirementError, UnknownNameError, ValidationError
from miaudit.metrics import auc
from miaudit.signals import confidence


def _data(m=5, n=30, z=40, q=3, seed=0):
    rng = np.random.default_rng(seed)
    keep = rng.random((m, n)) < 0.5
    keep[0] = ~keep[1]  # every record has an IN and an OUT reference
    ref = rng.beta(2, 2, size=(m, n, q))
    target = rng.beta(2, 2, size=(n, q))
    pop_t = rng.beta(2, 2, size=(z, q))
    pop_r = rng.beta(2, 2, size=(m, z, q))
    return target, ref, keep, pop_t, pop_r


def _brute_force(target, ref, keep, pop_t, pop_r, online, gamma, a, vote):
    """Score(x) = mean_z 1[(p(x)/Pr(x)) / (p(z)/Pr(z)) > gamma], pair by pair."""
    m, n, q = ref.shape
    z = pop_t.shape[0]
    scores = np.empty(n)
    for j in range(n):
        total = 0.0
        for t in range(z):
            wins = []
            for k in range(q):
                if online:
                    pr_x = np.mean(ref[:, j, k])
                    pr_z = np.mean(pop_r[:, t, k])
                else:
                    outs = [ref[i, j, k] for i in range(m) if not keep[i, j]]
                    pr_x = (1 + a) / 2 * np.mean(outs) + (1 - a) / 2
                    pr_z = (1 + a) / 2 * np.mean(pop_r[:, t, k]) + (1 - a) / 2
                wins.append((target[j, k] / pr_x) / (pop_t[t, k] / pr_z) > gamma)
            total += np.mean(wins) if vote == "mean" else float(sum(wins) > q / 2)
        scores[j] = total / z
    return scores


@pytest.mark.parametrize("online", [True, False])
@pytest.mark.parametrize("vote", ["mean", "majority"])
@pytest.mark.parametrize("q", [1, 2, 3])
def test_rmia_matches_brute_force(online, vote, q):
    data = _data(q=q, seed=q)
    got = rmia_scores(*data, online=online, gamma=1.3, a=0.4, vote=vote, tie_break=False)
    want = _brute_force(*data, online=online, gamma=1.3, a=0.4, vote=vote)
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_rmia_hand_computed_example():
    """One record, three population records, two references (one IN, one OUT for x)."""
    target = np.array([[0.9]])
    ref = np.array([[[0.8]], [[0.4]]])
    keep = np.array([[True], [False]])
    pop_t = np.array([[0.5], [0.2], [0.6]])
    pop_r = np.array([[[0.5], [0.4], [0.2]], [[0.3], [0.4], [0.4]]])
    # online: Pr(x) = 0.6 → r(x) = 1.5; Pr(z) = 0.4, 0.4, 0.3 → r(z) = 1.25, 0.5, 2.0;
    # r(x)/r(z) = 1.2, 3, 0.75 → with gamma 1: 2/3, with gamma 2: 1/3.
    assert rmia_scores(target, ref, keep, pop_t, pop_r, gamma=1.0)[0] == pytest.approx(2 / 3)
    assert rmia_scores(target, ref, keep, pop_t, pop_r, gamma=2.0)[0] == pytest.approx(1 / 3)
    # offline a = 0: Pr(x) = 0.5*0.4 + 0.5 = 0.7 → r(x) = 9/7; Pr(z) = 0.7, 0.7, 0.65
    # → r(z) = 5/7, 2/7, 12/13; ratios 1.8, 4.5, 1.393 → gamma 1.5: 2/3.
    got = rmia_scores(target, ref, keep, pop_t, pop_r, online=False, a=0.0, gamma=1.5)
    assert got[0] == pytest.approx(2 / 3)


def test_population_term_is_the_mean_not_the_largest_references():
    """Privacy Meter's quirk (mean of the largest half of the references for z) would give
    Pr(z) = 0.9 here, r(z) = 0.5/0.9 and r(x)/r(z) = 1.8 > gamma; the mean gives Pr(z) = 0.5,
    r(z) = 1 and r(x)/r(z) = 1 < gamma."""
    target, ref, keep = np.array([[0.5]]), np.array([[[0.5]], [[0.5]]]), np.array([[1], [0]])
    pop_t, pop_r = np.array([[0.5]]), np.array([[[0.9]], [[0.1]]])
    got = rmia_scores(target, ref, keep.astype(bool), pop_t, pop_r, gamma=1.5, tie_break=False)
    assert got[0] == 0.0


def test_scores_are_fractions_and_majority_equals_mean_for_one_query():
    data = _data(q=1, seed=4)
    mean = rmia_scores(*data)
    np.testing.assert_array_equal(mean, rmia_scores(*data, vote="majority"))
    assert np.all((mean >= 0) & (mean <= 1))
    np.testing.assert_allclose(mean * 40, np.round(mean * 40), atol=1e-9)


def test_zero_probabilities_give_no_nan():
    target, ref, keep, pop_t, pop_r = _data(q=1, seed=6)
    ref[:, 0] = 0.0
    target[0] = 0.0
    pop_t[0] = 0.0
    scores = rmia_scores(target, ref, keep, pop_t, pop_r)
    assert np.all(np.isfinite(scores))
    assert scores[0] == 0.0


def test_sorted_computation_never_builds_an_n_by_z_matrix():
    """20,000 × 20,000 pairs would be 400 MB as booleans; the sorted version stays small."""
    rng = np.random.default_rng(0)
    n = z = 20_000
    target = rng.random(n)
    ref = rng.random((2, n))
    keep = np.array([np.ones(n, bool), np.zeros(n, bool)])
    pop_t, pop_r = rng.random(z), rng.random((2, z))
    tracemalloc.start()
    rmia_scores(target, ref, keep, pop_t, pop_r, online=False)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20 * 2**20, f"peak {peak / 2**20:.1f} MiB"


# --------------------------------------------------------------------------------------------
# Offline a tuning: reference models only


def _loop_tune(ref, keep, pop_r, grid, gamma=2.0, max_targets=8):
    m = ref.shape[0]
    mean_auc = []
    for a in grid:
        aucs = []
        for i in range(min(m, max_targets)):
            others = [o for o in range(m) if o != i]
            usable = (~keep[others]).sum(axis=0) > 0
            labels = keep[i, usable]
            if labels.all() or not labels.any():
                continue
            s = rmia_scores(
                ref[i, usable],
                ref[others][:, usable],
                keep[others][:, usable],
                pop_r[i],
                pop_r[others],
                online=False,
                gamma=gamma,
                a=a,
            )
            aucs.append(auc(s, labels))
        mean_auc.append(np.mean(aucs))
    return grid[int(np.argmax(mean_auc))], mean_auc


def _signal_data(m, n, z, seed):
    """Probabilities where IN raises p by a record-specific amount (so a matters)."""
    rng = np.random.default_rng(seed)
    keep = rng.random((m, n)) < 0.5
    base = rng.normal(size=(1, n, 1))
    ref = 1 / (1 + np.exp(-(base + 1.5 * keep[..., None] + 0.5 * rng.normal(size=(m, n, 1)))))
    pop_r = 1 / (1 + np.exp(-(rng.normal(size=(1, z, 1)) + 0.5 * rng.normal(size=(m, z, 1)))))
    return ref, keep, pop_r


def test_tune_a_matches_leave_one_out_loop():
    ref, keep, pop_r = _signal_data(m=6, n=200, z=150, seed=1)
    want, mean_auc = _loop_tune(ref, keep, pop_r, list(DEFAULT_A_GRID))
    assert tune_rmia_a(ref, keep, pop_r) == pytest.approx(want)
    assert max(mean_auc) > min(mean_auc)  # the grid is not flat here: the choice matters


def test_registered_offline_auto_a_tunes_on_references_only():
    ref, keep, pop_r = _signal_data(m=5, n=120, z=80, seed=2)
    keep[0] = ~keep[1]  # every record has an OUT reference
    rng = np.random.default_rng(3)
    target, pop_t = rng.random((120, 1)), rng.random((80, 1))
    signals = {
        "confidence": {
            "target": target,
            "references": ref,
            "population_target": pop_t,
            "population_references": pop_r,
        }
    }
    data = AttackData.from_signals(
        np.zeros(120, int), signals, keep=keep, population_labels=np.zeros(80, int)
    )
    a = tune_rmia_a(ref, keep, pop_r)
    got = attacks.create("rmia_offline", a="auto").score(data)
    np.testing.assert_allclose(got, rmia_scores(target, ref, keep, pop_t, pop_r, online=False, a=a))


def test_registered_rmia_uses_true_class_probability():
    rng = np.random.default_rng(8)
    m, n, z, q, c = 4, 12, 9, 2, 3
    labels, pop_labels = rng.integers(0, c, n), rng.integers(0, c, z)
    out = {
        "target": rng.normal(size=(n, q, c)),
        "references": rng.normal(size=(m, n, q, c)),
        "population_target": rng.normal(size=(z, q, c)),
        "population_references": rng.normal(size=(m, z, q, c)),
    }
    keep = np.array([[1] * n, [0] * n, [1] * n, [0] * n], dtype=bool)
    data = AttackData(labels=labels, keep=keep, population_labels=pop_labels, **out)
    got = attacks.create("rmia", gamma=1.5, vote="majority").score(data)
    want = rmia_scores(
        confidence(out["target"], labels),
        confidence(out["references"], labels),
        keep,
        confidence(out["population_target"], pop_labels),
        confidence(out["population_references"], pop_labels),
        gamma=1.5,
        vote="majority",
    )
    np.testing.assert_allclose(got, want)


# --------------------------------------------------------------------------------------------
# Errors


def test_registered_rmia_without_population_names_it():
    ref, keep, _ = _signal_data(m=4, n=10, z=5, seed=0)
    data = AttackData.from_signals(
        np.zeros(10, int), {"confidence": {"target": ref[0], "references": ref}}, keep=keep
    )
    with pytest.raises(MissingRequirementError, match="needs population records"):
        attacks.create("rmia").score(data)


@pytest.mark.parametrize(
    ("index", "match"),
    [
        (0, r"target: RMIA needs probabilities in \[0, 1\]"),
        (1, r"reference: RMIA needs probabilities"),
        (3, r"population_target: RMIA needs probabilities"),
        (4, r"population_reference: RMIA needs probabilities"),
    ],
)
def test_probabilities_out_of_range(index, match):
    data = list(_data())
    data[index] = data[index] + 1.0
    with pytest.raises(ValidationError, match=match):
        rmia_scores(*data)


@pytest.mark.parametrize(
    ("index", "value", "match"),
    [
        (3, lambda d: d[3][:, :2], r"population_target: expected shape \(40, 3\)"),
        (4, lambda d: d[4][:2], r"population_reference: expected shape \(5, z, 3\)"),
        (4, lambda d: d[4][:, :0], "needs at least one population record"),
        (2, lambda d: d[2][:, :4], "keep: expected shape"),
    ],
)
def test_shape_errors(index, value, match):
    data = list(_data())
    data[index] = value(data)
    with pytest.raises((ValidationError, MissingRequirementError), match=match):
        rmia_scores(*data)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"gamma": 0.0}, ValidationError, "gamma: expected a positive number"),
        ({"gamma": float("inf")}, ValidationError, "gamma: expected a positive number"),
        ({"online": False, "a": 1.5}, ValidationError, r"a: expected a value in \[0, 1\]"),
        ({"online": False, "a": "x"}, ValidationError, r"a: expected a number, got 'x'"),
        ({"vote": "median"}, UnknownNameError, "unknown RMIA vote 'median'"),
    ],
)
def test_bad_hyper_parameters(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        rmia_scores(*_data(), **kwargs)


def test_offline_needs_out_references_per_record():
    target, ref, keep, pop_t, pop_r = _data()
    keep[:, :4] = True
    with pytest.raises(MissingRequirementError, match=r"offline RMIA .*OUT.* 4 of 30 records"):
        rmia_scores(target, ref, keep, pop_t, pop_r, online=False)
    assert np.all(np.isfinite(rmia_scores(target, ref, keep, pop_t, pop_r, online=True)))


def test_tune_errors():
    ref, keep, pop_r = _signal_data(m=3, n=20, z=10, seed=0)
    with pytest.raises(MissingRequirementError, match="at least 2 reference models"):
        tune_rmia_a(ref[:1], keep[:1], pop_r[:1])
    with pytest.raises(ValidationError, match=r"grid: expected a value in \[0, 1\]"):
        tune_rmia_a(ref, keep, pop_r, grid=[0.1, 2.0])
    with pytest.raises(ValidationError, match="grid: needs at least one"):
        tune_rmia_a(ref, keep, pop_r, grid=[])
    with pytest.raises(ValidationError, match="max_targets: expected an integer >= 1, got 0"):
        tune_rmia_a(ref, keep, pop_r, max_targets=0)
    with pytest.raises(MissingRequirementError, match="no reference model can play the target"):
        tune_rmia_a(ref, np.ones_like(keep), pop_r)


def test_registered_bad_parameters():
    with pytest.raises(ValidationError, match="gamma: expected a positive number"):
        attacks.create("rmia", gamma=-1)
    with pytest.raises(ValidationError, match=r"a: expected a value in \[0, 1\]"):
        attacks.create("rmia_offline", a=-0.1)
    with pytest.raises(UnknownNameError, match="Valid RMIA votes: majority, mean"):
        attacks.create("rmia", vote="max")
    with pytest.raises(ValidationError, match=r"a: expected a number in \[0, 1\] or 'auto'"):
        attacks.create("rmia_offline", a="tuned")
