"""The greedy rare-word blind baseline (Das, Zhang & Tramèr 2024): finds a marker word, stays at
chance on random splits, never scores a record with its own label, and drives the verdict."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from miaudit.llm.blind import (
    BLIND_METHODS,
    _folds,
    _rare_words,
    blind_baseline,
    blind_verdict,
    greedy_rare_words,
)
from miaudit.llm.corpus import python_docs_corpus
from miaudit.metrics import auc, auc_interval, tpr_at_fpr

N_PER_CLASS = 150
MARKER = "zorblaxian"  # a made-up word, absent from the corpus
MARKER_RATE = 0.3
REPEATS = 5


@pytest.fixture(scope="module")
def texts():
    return [r.text for r in python_docs_corpus()]


def _split(texts, seed, *, marker):
    """``2 * N_PER_CLASS`` corpus texts; with ``marker``, 30% of the members end with MARKER."""
    rng = np.random.default_rng(seed)
    chosen = [texts[i] for i in rng.choice(len(texts), 2 * N_PER_CLASS, replace=False)]
    is_member = np.r_[np.ones(N_PER_CLASS, bool), np.zeros(N_PER_CLASS, bool)]
    if marker:
        tagged = np.flatnonzero(rng.random(N_PER_CLASS) < MARKER_RATE)
        for i in tagged:
            chosen[i] = f"{chosen[i]} {MARKER}"
    return chosen, is_member


def test_greedy_selection_by_hand():
    # Texts 0-2 positive, 3-4 not. Words: w0 in {0, 1}, w1 in {0, 1, 2, 3}, w2 in {2, 4}.
    rows = [0, 1, 0, 1, 2, 3, 2, 4]
    cols = [0, 0, 1, 1, 1, 1, 2, 2]
    present = sparse.csr_matrix((np.ones(8), (rows, cols)), shape=(5, 3))
    positive = np.array([True, True, True, False, False])
    # Step 1: ratios 2/(0+1), 3/(1+1), 1/(1+1): w0. Texts 0, 1 covered.
    # Step 2: w1 covers {2} vs {3}: 1/2; w2 covers {2} vs {4}: 1/2; tie -> lowest column w1.
    # All positives covered: stop.
    np.testing.assert_array_equal(greedy_rare_words(present, positive), [0, 1])
    np.testing.assert_array_equal(greedy_rare_words(present, positive, max_words=1), [0])
    # The other side (texts 3-4): w0 covers none of them; w1: 1/(3+1); w2: 1/(1+1) -> w2.
    np.testing.assert_array_equal(greedy_rare_words(present, ~positive)[:1], [2])


def test_marker_word_is_found_and_random_split_stays_at_chance(texts):
    marked, random_ = [], []
    for rep in range(REPEATS):
        t, m = _split(texts, rep, marker=True)
        s = blind_baseline(t, m, methods=["rare_words"], seed=rep)["rare_words"]
        marked.append((auc(s, m), tpr_at_fpr(s, m, 0.01).tpr))
        # The same texts, labels drawn at random: nothing to find.
        m_rand = np.random.default_rng(100 + rep).permutation(m)
        s = blind_baseline(t, m_rand, methods=["rare_words"], seed=rep)["rare_words"]
        lo, hi = auc_interval(s, m_rand, n_bootstrap=300, rng=rep)
        random_.append((auc(s, m_rand), lo, hi))
    marked_auc, marked_tpr = np.array(marked).T
    rand_auc, rand_lo, rand_hi = np.array(random_).T
    # The marker alone gives AUC 0.3 * 1 + 0.7 * 0.5 = 0.65 and TPR 0.3 at zero FPR.
    assert marked_auc.min() > 0.6
    assert marked_tpr.min() > 0.2
    assert marked_auc.min() > rand_auc.max()
    assert ((rand_lo < 0.5) & (0.5 < rand_hi)).all()
    assert abs(rand_auc.mean() - 0.5) < 0.05


def test_a_record_is_never_scored_with_its_own_label(texts):
    t, m = _split(texts, 0, marker=True)
    folds = _folds(m, 5, 0)
    base = _rare_words(t, m, folds)
    # Flip every label of one fold (the folds held fixed): that fold's scores do not move,
    # the others' do (their training data changed).
    test = folds[0]
    flipped = m.copy()
    flipped[test] = ~flipped[test]
    again = _rare_words(t, flipped, folds)
    np.testing.assert_array_equal(again[test], base[test])
    rest = np.setdiff1d(np.arange(len(t)), test)
    assert not np.array_equal(again[rest], base[rest])
    # One record alone, too.
    one = m.copy()
    one[test[0]] = ~one[test[0]]
    assert _rare_words(t, one, folds)[test[0]] == base[test[0]]


def test_verdict_follows_rare_words_when_it_is_the_best_blind_method(texts):
    t, m = _split(texts, 0, marker=True)
    blind = blind_baseline(t, m, methods=BLIND_METHODS, seed=0)
    assert set(blind) == {"bag_of_words", "year", "length", "rare_words"}
    fpr = 0.01
    tprs = {k: tpr_at_fpr(v, m, fpr).tpr for k, v in blind.items()}
    others = max(v for k, v in tprs.items() if k != "rare_words")
    assert tprs["rare_words"] > others
    # An attack between the two: exactly k members above every non-member, the rest below.
    k = int(np.ceil(N_PER_CLASS * (tprs["rare_words"] + others) / 2))
    attack = np.where(m, -1.0, np.random.default_rng(0).random(len(m)))
    attack[np.flatnonzero(m)[:k]] = 2.0
    assert others < tpr_at_fpr(attack, m, fpr).tpr <= tprs["rare_words"]
    v = blind_verdict(blind, m, {"attack": attack}, fpr=fpr)
    assert v.best_blind == "rare_words"
    assert v.withhold and "blind rare_words baseline" in v.message
    # Without it, the same attack beats every blind baseline: the verdict stands.
    without = {k: s for k, s in blind.items() if k != "rare_words"}
    assert not blind_verdict(without, m, {"attack": attack}, fpr=fpr).withhold


def test_rare_words_runs_by_default_and_alone():
    t = ["alpha beta", "gamma delta", "alpha eps", "zeta eta"]
    m = [True, True, False, False]
    assert "rare_words" in blind_baseline(t, m, n_folds=2)
    assert set(blind_baseline(t, m, methods=["rare_words"], n_folds=2)) == {"rare_words"}
    # Texts without any token: every score 0, no error.
    assert not blind_baseline(["a", "b", "c", "d"], m, methods=["rare_words"])["rare_words"].any()
