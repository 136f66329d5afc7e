"""Keep matrices, target schemes and population records (miaudit.data.splits)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from miaudit.data.splits import (
    DesignatedTarget,
    LeaveOneOut,
    as_generator,
    check_keep,
    embed_keep,
    extend_keep_matrix,
    keep_matrix,
    n_in_per_record,
    paired_keep_matrix,
    population_split,
)
from miaudit.exceptions import ValidationError

# ----------------------------------------------------------------------------- keep_matrix


@pytest.mark.parametrize(
    ("n_models", "pkeep", "expected"),
    [(2, 0.5, 1), (3, 0.5, 2), (5, 0.5, 3), (7, 0.5, 4), (64, 0.5, 32), (10, 0.25, 3), (8, 0.3, 2)],
)
def test_n_in_per_record_rounds_half_up(n_models, pkeep, expected):
    assert n_in_per_record(n_models, pkeep) == expected


@pytest.mark.parametrize(("n_models", "pkeep"), [(16, 0.5), (7, 0.5), (10, 0.25), (5, 0.8)])
def test_keep_matrix_every_record_in_exactly_k_models(n_models, pkeep):
    keep = keep_matrix(n_models, 301, seed=3, pkeep=pkeep)
    assert keep.shape == (n_models, 301)
    assert keep.dtype == np.bool_
    k = int(np.floor(pkeep * n_models + 0.5))
    for j in range(keep.shape[1]):
        assert sum(bool(keep[i, j]) for i in range(n_models)) == k


def test_keep_matrix_matches_lira_reference_construction():
    # LiRA train.py: keep = np.random.uniform(0,1,size=(M,N)); order = keep.argsort(0);
    # keep = order < int(pkeep * M). Same draws from the same generator must give the same matrix.
    rng = np.random.default_rng(123)
    u = rng.uniform(0, 1, size=(8, 50))
    reference = u.argsort(0) < int(0.5 * 8)
    np.testing.assert_array_equal(keep_matrix(8, 50, seed=123), reference)


def test_keep_matrix_reproducible_and_seed_dependent():
    a = keep_matrix(8, 200, seed=1)
    np.testing.assert_array_equal(a, keep_matrix(8, 200, seed=1))
    np.testing.assert_array_equal(a, keep_matrix(8, 200, seed=np.random.default_rng(1)))
    assert (a != keep_matrix(8, 200, seed=2)).any()


def test_keep_matrix_subsets_are_uniform():
    # With M=4, k=2 each record's IN set is one of C(4,2)=6 subsets, each with probability 1/6.
    n = 6000
    keep = keep_matrix(4, n, seed=11)
    subsets = list(itertools.combinations(range(4), 2))
    counts = np.zeros(len(subsets))
    for j in range(n):
        counts[subsets.index(tuple(np.flatnonzero(keep[:, j])))] += 1
    assert stats.chisquare(counts).pvalue > 1e-3
    # Records per model ~ Binomial-like around n/2.
    assert np.all(np.abs(keep.sum(axis=1) - n / 2) < 4 * np.sqrt(n / 4))


def test_keep_matrix_validation_errors():
    with pytest.raises(ValidationError, match="n_models: expected an integer >= 1"):
        keep_matrix(0, 10, seed=0)
    with pytest.raises(ValidationError, match="every record would be IN for every model"):
        keep_matrix(1, 10, seed=0)
    with pytest.raises(ValidationError, match="every record would be IN for no model"):
        keep_matrix(4, 10, seed=0, pkeep=0.1)
    with pytest.raises(ValidationError, match=r"pkeep: expected a value in \(0, 1\)"):
        keep_matrix(4, 10, seed=0, pkeep=1.0)
    with pytest.raises(ValidationError, match=r"pkeep: expected a value in \(0, 1\)"):
        keep_matrix(4, 10, seed=0, pkeep=0.0)
    with pytest.raises(ValidationError, match="n_records: expected an integer >= 2"):
        keep_matrix(4, 1, seed=0)
    with pytest.raises(ValidationError, match="n_records: expected an integer, got float"):
        keep_matrix(4, 10.0, seed=0)
    with pytest.raises(
        ValidationError, match=r"seed: expected an int or a numpy\.random\.Generator"
    ):
        keep_matrix(4, 10, seed=None)
    with pytest.raises(ValidationError, match="seed: expected a non-negative integer"):
        keep_matrix(4, 10, seed=-1)


def test_as_generator_passes_generator_through():
    rng = np.random.default_rng(0)
    assert as_generator(rng) is rng
    with pytest.raises(ValidationError, match="got bool"):
        as_generator(True)


# ----------------------------------------------------------------------- paired_keep_matrix


@pytest.mark.parametrize("n_records", [10, 11, 2, 3])
def test_paired_keep_matrix_complementary_halves(n_records):
    keep = paired_keep_matrix(5, n_records, seed=0)
    assert keep.shape == (10, n_records)
    for i in range(5):
        a, b = keep[2 * i], keep[2 * i + 1]
        assert not (a & b).any()
        assert (a | b).all()
        assert a.sum() == n_records // 2
        assert b.sum() == n_records - n_records // 2
    np.testing.assert_array_equal(keep.sum(axis=0), np.full(n_records, 5))


def test_paired_keep_matrix_reproducible_and_pairs_differ():
    keep = paired_keep_matrix(3, 100, seed=4)
    np.testing.assert_array_equal(keep, paired_keep_matrix(3, 100, seed=4))
    assert (keep[0] != keep[2]).any()


def test_paired_keep_matrix_each_record_in_first_half_with_probability_half():
    n_pairs = 2000
    keep = paired_keep_matrix(n_pairs, 4, seed=9)
    freq = keep[0::2].mean(axis=0)  # P(record in model 2i) = (n//2)/n = 1/2
    assert np.all(np.abs(freq - 0.5) < 4 * np.sqrt(0.25 / n_pairs))


def test_paired_keep_matrix_validation():
    with pytest.raises(ValidationError, match="n_pairs: expected an integer >= 1"):
        paired_keep_matrix(0, 10, seed=0)
    with pytest.raises(ValidationError, match="n_records: expected an integer >= 2"):
        paired_keep_matrix(2, 1, seed=0)


# ----------------------------------------------------------------------- extend_keep_matrix


@pytest.mark.parametrize(("m_old", "m_new", "pkeep"), [(8, 8, 0.5), (4, 12, 0.5), (5, 4, 0.5)])
def test_extend_keeps_old_rows_and_balance(m_old, m_new, pkeep):
    old = keep_matrix(m_old, 400, seed=0, pkeep=pkeep)
    ext = extend_keep_matrix(old, m_new, seed=1, pkeep=pkeep)
    assert ext.shape == (m_old + m_new, 400)
    np.testing.assert_array_equal(ext[:m_old], old)
    k = int(np.floor(pkeep * (m_old + m_new) + 0.5))
    for j in range(400):
        assert int(ext[:, j].sum()) == k


def test_extend_is_reproducible_and_chainable():
    old = keep_matrix(4, 300, seed=0)
    a = extend_keep_matrix(old, 4, seed=5)
    np.testing.assert_array_equal(a, extend_keep_matrix(old, 4, seed=5))
    assert (a != extend_keep_matrix(old, 4, seed=6)).any()
    b = extend_keep_matrix(a, 8, seed=7)
    np.testing.assert_array_equal(b[:8], a)
    np.testing.assert_array_equal(b.sum(axis=0), np.full(300, 8))


def test_extend_chooses_new_models_uniformly():
    # 2 old models, each record IN for 1 of them; adding 4 models with k = 3 asks for 2 of the
    # 4 new models per record: each of the C(4,2)=6 choices should be equally likely.
    old = paired_keep_matrix(1, 6000, seed=0)
    new = extend_keep_matrix(old, 4, seed=2)[2:]
    subsets = list(itertools.combinations(range(4), 2))
    counts = np.zeros(len(subsets))
    for j in range(new.shape[1]):
        counts[subsets.index(tuple(np.flatnonzero(new[:, j])))] += 1
    assert stats.chisquare(counts).pvalue > 1e-3


def test_extend_cannot_balance_errors():
    old = keep_matrix(8, 20, seed=0)  # every record IN for 4
    with pytest.raises(ValidationError, match=r"20 records are already IN for more than 3"):
        extend_keep_matrix(old, 2, seed=0, pkeep=0.3)  # k = round(3.0) = 3 < 4
    zeros = np.zeros((4, 5), dtype=bool)
    with pytest.raises(ValidationError, match=r"5 records would need more than 2 new models"):
        extend_keep_matrix(zeros, 2, seed=0)  # k = 3 but only 2 new models
    with pytest.raises(ValidationError, match="n_new_models: expected an integer >= 1"):
        extend_keep_matrix(old, 0, seed=0)


def test_check_keep_errors():
    with pytest.raises(ValidationError, match=r"keep: expected a 2-d \(n_models, n_records\)"):
        check_keep(np.zeros(4, dtype=bool))
    with pytest.raises(ValidationError, match=r"keep: expected bool or 0/1 values; found 1 others"):
        check_keep(np.array([[0, 1, 2]]))
    with pytest.raises(ValidationError, match="got dtype float64"):
        check_keep(np.array([[0.0, 1.0]]))
    np.testing.assert_array_equal(check_keep([[0, 1]]), [[False, True]])


# ------------------------------------------------------------------------ population / embed


def test_population_records_are_never_in():
    n, z = 500, 120
    audit, pop = population_split(n, z, seed=0)
    assert pop.size == z and audit.size == n - z
    assert np.intersect1d(audit, pop).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([audit, pop])), np.arange(n))
    keep = embed_keep(keep_matrix(16, audit.size, seed=1), audit, n)
    assert keep.shape == (16, n)
    assert not keep[:, pop].any()
    np.testing.assert_array_equal(keep[:, audit].sum(axis=0), np.full(audit.size, 8))
    _, p2 = population_split(n, z, seed=0)
    np.testing.assert_array_equal(pop, p2)


def test_population_split_too_small():
    with pytest.raises(
        ValidationError, match="data set too small: n_population=10 of n_records=10"
    ):
        population_split(10, 10, seed=0)
    with pytest.raises(ValidationError, match="leaves 1 records"):
        population_split(10, 9, seed=0)
    with pytest.raises(ValidationError, match="n_population: expected an integer >= 1"):
        population_split(10, 0, seed=0)


def test_embed_keep_errors():
    with pytest.raises(ValidationError, match="columns: has 2 entries but keep has 3"):
        embed_keep(np.ones((2, 3), dtype=bool), [0, 1], 5)
    with pytest.raises(ValidationError, match="columns: record index 7 is out of range for 5"):
        embed_keep(np.ones((2, 2), dtype=bool), [0, 7], 5)
    with pytest.raises(ValidationError, match="columns: 1 record indices are repeated"):
        embed_keep(np.ones((2, 2), dtype=bool), [1, 1], 5)


# ----------------------------------------------------------------------------- target schemes


def test_leave_one_out_iterates_every_model_as_target():
    keep = keep_matrix(5, 30, seed=0)
    loo = LeaveOneOut(keep)
    pairs = list(loo)
    assert len(loo) == 5 and len(pairs) == 5
    for t, (target, refs) in enumerate(pairs):
        assert target == t
        assert refs.tolist() == [i for i in range(5) if i != t]
        np.testing.assert_array_equal(loo.membership(t), keep[t])
    with pytest.raises(ValidationError, match="target: index 5 is out of range for 5 models"):
        loo.membership(5)


def test_leave_one_out_needs_two_models():
    with pytest.raises(ValidationError, match="keep has 1 model; need at least 2"):
        LeaveOneOut(np.ones((1, 4), dtype=bool))


def test_designated_target():
    t = DesignatedTarget(members=[4, 0, 2], non_members=[1, 3])
    np.testing.assert_array_equal(t.evaluation_indices, [4, 0, 2, 1, 3])
    np.testing.assert_array_equal(t.is_member, [True, True, True, False, False])
    np.testing.assert_array_equal(t.keep_row(6), [True, False, True, False, True, False])
    with pytest.raises(ValidationError, match="non_members: record index 3 is out of range for 3"):
        DesignatedTarget(members=[0], non_members=[3]).keep_row(3)


def test_designated_target_errors():
    with pytest.raises(
        ValidationError, match=r"overlap: 2 record indices are in both, e\.g\. \[2, 3\]"
    ):
        DesignatedTarget(members=[1, 2, 3], non_members=[2, 3, 4])
    with pytest.raises(ValidationError, match="members: is empty"):
        DesignatedTarget(members=[], non_members=[1])
    with pytest.raises(ValidationError, match="members: record indices must be >= 0"):
        DesignatedTarget(members=[-1], non_members=[1])
    with pytest.raises(ValidationError, match="non_members: expected integer record indices"):
        DesignatedTarget(members=[0], non_members=[1.5])
