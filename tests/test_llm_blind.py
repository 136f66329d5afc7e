"""The blind baseline: flags shifted member/non-member splits, stays quiet on random ones."""

from __future__ import annotations

import numpy as np
import pytest

from miaudit.exceptions import ValidationError
from miaudit.llm.blind import blind_baseline, blind_verdict, largest_year
from miaudit.llm.corpus import PYDOC_SOURCE, python_docs_corpus


@pytest.fixture(scope="module")
def corpus():
    return python_docs_corpus()


def test_corpus_is_deduplicated_real_text(corpus):
    texts = [r.text for r in corpus]
    assert len(texts) > 2000
    assert len(set(texts)) == len(texts)
    assert sum(r.source == PYDOC_SOURCE for r in corpus) > 500
    assert len({r.source for r in corpus}) > 20


def test_shifted_split_is_flagged(corpus):
    rng = np.random.default_rng(0)
    pydoc = [r.text for r in corpus if r.source == PYDOC_SOURCE]
    modules = [r.text for r in corpus if r.source != PYDOC_SOURCE]
    members = list(rng.choice(pydoc, 150, replace=False))
    non_members = list(rng.choice(modules, 150, replace=False))
    is_member = np.r_[np.ones(150, bool), np.zeros(150, bool)]
    blind = blind_baseline(members + non_members, is_member, seed=0)
    assert set(blind) == {"bag_of_words", "year", "length", "rare_words"}
    # An attack no better than chance: the verdict must be withheld.
    chance = {"loss": rng.normal(size=300)}
    v = blind_verdict(blind, is_member, chance, fpr=0.01)
    assert v.distinguishable
    assert v.blind_auc["bag_of_words"][0] > 0.75
    assert v.withhold
    assert "WITHOUT the model" in v.message and "withheld" in v.message


def test_random_split_is_not_flagged(corpus):
    rng = np.random.default_rng(1)
    texts = [corpus[i].text for i in rng.choice(len(corpus), 300, replace=False)]
    is_member = rng.random(300) < 0.5
    blind = blind_baseline(texts, is_member, seed=0)
    perfect = {"oracle": is_member.astype(float) + rng.normal(scale=0.01, size=300)}
    v = blind_verdict(blind, is_member, perfect, fpr=0.01)
    assert not v.distinguishable
    assert not v.withhold
    assert v.best_attack == "oracle" and v.attack_tpr == 1.0


def test_year_detector_and_out_of_fold_direction():
    assert largest_year("in 1999 and 2023, not 12345 or 3000") == 2023.0
    assert np.isnan(largest_year("no year here"))
    # Members are older: the direction (older = member) is learned on the training folds.
    members = [f"An event that happened in {y}." for y in range(1950, 1990)]
    non_members = [f"An event that happened in {y}." for y in range(2000, 2040)]
    is_member = np.r_[np.ones(40, bool), np.zeros(40, bool)]
    s = blind_baseline(members + non_members, is_member, methods=["year"], seed=0)["year"]
    assert s[:40].min() > s[40:].max()


def test_bad_input():
    with pytest.raises(ValidationError, match="is_member: 2 labels for 3 texts"):
        blind_baseline(["a b", "c d", "e f"], [True, False])
    with pytest.raises(ValidationError, match="unknown blind method"):
        blind_baseline(["a b", "c d"], [True, False], methods=["vibes"])
    with pytest.raises(ValidationError, match="at least 2 members"):
        blind_baseline(["a b", "c d", "e f"], [True, False, False])
