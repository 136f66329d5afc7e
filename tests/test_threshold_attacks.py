"""Population attacks: direction on an over-fit model, class-dependent thresholds, requirements."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier

from miaudit import attacks
from miaudit.attacks import AttackData
from miaudit.attacks.threshold import best_threshold
from miaudit.exceptions import MissingRequirementError, UnknownNameError, ValidationError
from miaudit.metrics import auc
from miaudit.signals import cross_entropy_loss

POPULATION_ATTACKS = ["loss", "confidence", "entropy", "modified_entropy", "correctness"]


@pytest.fixture(scope="module")
def overfit():
    """A random forest trained on a random half of sklearn digits, queried on all of it."""
    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    member = np.zeros(y.size, dtype=bool)
    member[rng.permutation(y.size)[: y.size // 2]] = True
    model = RandomForestClassifier(n_estimators=50, random_state=0, n_jobs=1)
    model.fit(x[member], y[member])
    return model.predict_proba(x), y, member


@pytest.mark.parametrize(
    ("name", "min_auc"),
    [("loss", 0.7), ("confidence", 0.7), ("entropy", 0.7), ("modified_entropy", 0.7)],
)
def test_members_score_higher_on_an_overfit_model(overfit, name, min_auc):
    probs, y, member = overfit
    scores = attacks.create(name).score(AttackData(labels=y, target=probs, kind="probs"))
    assert scores.shape == y.shape
    assert auc(scores, member) > min_auc  # measured ≈ 0.78 for all four


def test_loss_score_is_the_negative_cross_entropy(overfit):
    probs, y, _ = overfit
    scores = attacks.create("loss").score(AttackData(labels=y, target=probs, kind="probs"))
    np.testing.assert_array_equal(scores, -cross_entropy_loss(probs, y, kind="probs"))


def test_correctness_is_training_accuracy_gap(overfit):
    probs, y, member = overfit
    scores = attacks.create("correctness").score(AttackData(labels=y, target=probs, kind="probs"))
    correct = probs.argmax(axis=1) == y
    np.testing.assert_array_equal(scores, correct.astype(float))
    # AUC of a 0/1 score = (1 + train accuracy - test accuracy) / 2 = 0.5 + gap / 2
    gap = correct[member].mean() - correct[~member].mean()
    assert auc(scores, member) == pytest.approx(0.5 + gap / 2, abs=1e-12)


def test_scores_average_over_queries():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(5, 3, 4))  # (n, q, C)
    labels = rng.integers(0, 4, 5)
    scores = attacks.create("loss").score(AttackData(labels=labels, target=logits))
    np.testing.assert_allclose(scores, -cross_entropy_loss(logits, labels).mean(axis=1))


# ----------------------------------------------------------------- class-dependent thresholds
# Two reference models, six records (labels 0,0,0,1,1,1), reference losses and keep below.
REF_LOSS = np.array([[0.1, 0.5, 0.9, 0.2, 1.0, 2.0], [0.3, 0.2, 1.5, 0.4, 0.8, 3.0]])
KEEP = np.array([[1, 0, 0, 1, 1, 0], [0, 1, 0, 0, 1, 0]], dtype=bool)
LABELS = np.array([0, 0, 0, 1, 1, 1])
TARGET_LOSS = np.array([0.15, 0.4, 1.0, 0.5, 1.2, 0.1])


def _brute_threshold(in_values: np.ndarray, out_values: np.ndarray) -> float:
    """Loop over candidate thresholds; the documented midpoint of the first best value."""
    cand = sorted(set(in_values.tolist()) | set(out_values.tolist()))
    best, best_i = -np.inf, 0
    for i, t in enumerate(cand):
        ba = ((in_values >= t).mean() + (out_values < t).mean()) / 2
        if ba > best:
            best, best_i = ba, i
    lower = cand[best_i - 1] if best_i > 0 else cand[0] - 1.0
    return (cand[best_i] + lower) / 2


def _loss_data(labels=LABELS, ref=REF_LOSS, keep=KEEP, target=TARGET_LOSS) -> AttackData:
    return AttackData.from_signals(
        labels,
        {"cross_entropy_loss": {"target": target, "references": ref}},
        keep=keep,
    )


def test_class_thresholds_hand_computed():
    # class 0 (oriented -loss): IN {-0.1, -0.2}, OUT {-0.5, -0.9, -0.3, -1.5}: separable,
    #   best candidate -0.2, threshold midway to -0.3: -0.25.
    # class 1: IN {-0.2, -1.0, -0.8}, OUT {-2.0, -0.4, -3.0}: TPR - FPR is largest (2/3) at
    #   candidate -1.0; threshold midway to -2.0: -1.5.
    attack = attacks.create("loss", class_thresholds=True)
    data = _loss_data()
    np.testing.assert_allclose(attack.class_thresholds_from_references(data), [-0.25, -1.5])
    want = -TARGET_LOSS - np.array([-0.25, -0.25, -0.25, -1.5, -1.5, -1.5])
    np.testing.assert_allclose(attack.score(data), want)  # [0.1, -0.15, -0.75, 1.0, 0.3, 1.4]


def test_class_thresholds_match_brute_force_and_fall_back_for_missing_classes():
    rng = np.random.default_rng(3)
    m, n = 4, 60
    labels = rng.integers(0, 3, n)
    labels[labels == 2] = 1
    labels[:2] = 2  # class 2: two records that no reference trained on
    keep = rng.random((m, n)) < 0.5
    keep[:, :2] = False
    ref = rng.exponential(size=(m, n)) * np.where(keep, 0.5, 1.0)
    data = _loss_data(labels, ref, keep, rng.exponential(size=n))
    got = attacks.create("loss", class_thresholds=True).class_thresholds_from_references(data)
    lab = np.broadcast_to(labels, (m, n))
    overall = _brute_threshold(-ref[keep], -ref[~keep])
    for c in range(2):
        sel = lab == c
        assert got[c] == pytest.approx(_brute_threshold(-ref[sel & keep], -ref[sel & ~keep]))
    assert got[2] == pytest.approx(overall)  # no IN references for class 2


def test_best_threshold_ignores_nan():
    # IN {2}, OUT {1}: candidate 2 separates them, threshold midway: 1.5
    assert best_threshold(np.array([np.nan, 2.0]), np.array([1.0, np.nan])) == 1.5
    assert np.isnan(best_threshold(np.array([np.nan]), np.array([1.0])))


# ------------------------------------------------------------------------------ requirements
def test_class_thresholds_need_reference_models():
    data = AttackData.from_signals(LABELS, {"cross_entropy_loss": {"target": TARGET_LOSS}})
    with pytest.raises(MissingRequirementError, match=r"attack 'loss' needs reference models"):
        attacks.create("loss", class_thresholds=True).score(data)
    no_keep = AttackData.from_signals(
        LABELS, {"cross_entropy_loss": {"target": TARGET_LOSS, "references": REF_LOSS}}
    )
    with pytest.raises(MissingRequirementError, match=r"needs the keep matrix"):
        attacks.create("loss", class_thresholds=True).score(no_keep)


def test_missing_target_outputs_name_the_signal():
    data = AttackData(labels=[0, 1])
    with pytest.raises(MissingRequirementError, match=r"signal 'cross_entropy_loss' of target"):
        attacks.create("loss").score(data)


def test_registry_errors():
    assert set(POPULATION_ATTACKS) <= set(attacks.names())
    with pytest.raises(UnknownNameError, match=r"unknown attack 'los'. Did you mean 'loss'\?"):
        attacks.get("los")
    with pytest.raises(ValidationError, match=r"attack 'loss': bad parameters \['k'\]"):
        attacks.create("loss", k=3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"labels": [[0, 1]]}, r"labels: expected shape \(n,\)"),
        ({"labels": [0, 1], "target": np.zeros((3, 2))}, r"target: has 3 records but labels has 2"),
        ({"labels": [0, 5], "target": np.zeros((2, 2))}, r"labels: labels must be in 0..1"),
    ],
)
def test_attack_data_validation(kwargs, match):
    with pytest.raises(ValidationError, match=match):
        AttackData(**kwargs)
