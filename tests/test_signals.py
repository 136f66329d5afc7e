"""Signals against the issue's golden values and direct per-element loops."""

from __future__ import annotations

import math

import numpy as np
import pytest

from miaudit import signals as S
from miaudit.exceptions import UnknownNameError, ValidationError

LOGITS = np.array([[1.0, 2.0, -3.0], [-1.0, 1.0, 0.0]])
LABELS = np.array([1, 2])
PROBS = np.array([[0.1, 0.85, 0.05], [0.1, 0.5, 0.4]])


# --------------------------------------------------------------------------- golden values
def test_golden_values_on_logits():
    np.testing.assert_allclose(
        S.logit_scaled_confidence(LOGITS, LABELS), [0.98185009, -1.12692802], atol=1e-7
    )
    np.testing.assert_allclose(
        S.cross_entropy_loss(LOGITS, LABELS), [0.31817543, 1.40760596], atol=1e-7
    )
    np.testing.assert_allclose(S.confidence(LOGITS, LABELS), [0.72747516, 0.24472847], atol=1e-7)
    np.testing.assert_allclose(S.margin(LOGITS, LABELS), [1.0, -1.0], atol=1e-12)
    np.testing.assert_array_equal(S.correct(LOGITS, LABELS), [1.0, 0.0])


def test_golden_values_on_probabilities():
    np.testing.assert_allclose(
        S.logit_scaled_confidence(PROBS, LABELS, kind="probs"), [1.73460106, -0.40546511], atol=1e-7
    )
    np.testing.assert_allclose(
        S.cross_entropy_loss(PROBS, LABELS, kind="probs"), -np.log([0.85, 0.4]), atol=1e-12
    )
    np.testing.assert_allclose(S.confidence(PROBS, LABELS, kind="probs"), [0.85, 0.4], atol=1e-12)


@pytest.mark.parametrize("n_classes", [2, 4, 10, 1000])
def test_logit_scaled_confidence_does_not_saturate(n_classes):
    logits = np.zeros((2, n_classes))
    logits[:, 0] = 1000.0
    got = S.logit_scaled_confidence(logits, [0, 1])
    # label 0: 1000 - log(C - 1); label 1: 0 - log(e^1000 + (C - 2)) = -1000 - log1p((C-2)e^-1000)
    assert got[0] == pytest.approx(1000.0 - math.log(n_classes - 1), abs=1e-9)
    assert got[1] == pytest.approx(-1000.0, abs=1e-9)
    assert abs(got[0]) > 103.6  # the reference LiRA code stops at ±log(1e45)


# ---------------------------------------------------------------------- loops over elements
def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def _loop_modified_entropy(p: np.ndarray, y: int) -> float:
    total = -(1 - p[y]) * math.log(p[y])
    for i, pi in enumerate(p):
        if i != y:
            total -= pi * math.log(1 - pi)
    return total


def _loop_entropy(p: np.ndarray) -> float:
    return -sum(pi * math.log(pi) for pi in p if pi > 0)


def test_entropy_and_modified_entropy_match_loops():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(50, 7))
    labels = rng.integers(0, 7, 50)
    ment = S.modified_entropy(logits, labels)
    ent = S.entropy(logits)
    for i in range(50):
        p = _softmax(logits[i])
        assert ment[i] == pytest.approx(_loop_modified_entropy(p, labels[i]), rel=1e-10)
        assert ent[i] == pytest.approx(_loop_entropy(p), rel=1e-10)
    # the same from probabilities
    probs = np.apply_along_axis(_softmax, 1, logits)
    np.testing.assert_allclose(S.modified_entropy(probs, labels, kind="probs"), ment, rtol=1e-9)
    np.testing.assert_allclose(S.entropy(probs, kind="probs"), ent, rtol=1e-9)


def test_modified_entropy_of_a_confident_correct_prediction_is_near_zero():
    got = S.modified_entropy(np.array([[50.0, 0.0, 0.0]]), [0])
    assert 0 <= got[0] < 1e-15  # no log(0) blow-up when p_y -> 1 and p_i -> 0


def test_zero_probability_is_floored_at_tiny():
    loss = S.cross_entropy_loss(np.array([[1.0, 0.0]]), [1], kind="probs")
    assert loss[0] == pytest.approx(-math.log(np.finfo(np.float64).tiny))


def test_margin_and_correct_match_loops():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(30, 5))
    labels = rng.integers(0, 5, 30)
    marg = S.margin(logits, labels)
    corr = S.correct(logits, labels)
    for i in range(30):
        others = [logits[i, j] for j in range(5) if j != labels[i]]
        assert marg[i] == pytest.approx(logits[i, labels[i]] - max(others), abs=1e-12)
        assert corr[i] == float(np.argmax(logits[i]) == labels[i])


# -------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("name", sorted(S.SIGNALS))
def test_leading_dimensions_models_records_queries(name):
    rng = np.random.default_rng(2)
    m, n, q, c = 3, 4, 2, 5
    outputs = rng.normal(size=(m, n, q, c))
    labels = rng.integers(0, c, n)
    got = S.compute_signal(name, outputs, labels)
    assert got.shape == (m, n, q)
    for i in range(m):
        for j in range(n):
            for k in range(q):
                one = S.compute_signal(name, outputs[i, j, k][None], labels[j : j + 1])
                assert got[i, j, k] == pytest.approx(one[0], rel=1e-12, abs=1e-12)


def test_full_shape_labels_and_broadcast():
    rng = np.random.default_rng(3)
    outputs = rng.normal(size=(4, 2, 3))  # (n, q, C)
    labels = rng.integers(0, 3, 4)
    a = S.cross_entropy_loss(outputs, labels)  # (n,) aligned with the records axis
    b = S.cross_entropy_loss(outputs, np.repeat(labels[:, None], 2, axis=1))  # full (n, q)
    np.testing.assert_array_equal(a, b)


def test_compute_signal_dispatches_by_name():
    np.testing.assert_array_equal(
        S.compute_signal("cross_entropy_loss", LOGITS, LABELS), S.cross_entropy_loss(LOGITS, LABELS)
    )
    with pytest.raises(UnknownNameError, match=r"unknown signal 'los'. Valid signals: .*loss"):
        S.compute_signal("los", LOGITS, LABELS)


# -------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("outputs", "labels", "kind", "match"),
    [
        ([[np.nan, 1.0, 0.0]], [0], "logits", r"outputs: contains 1 NaN values"),
        ([[np.inf, 1.0, 0.0]], [0], "logits", r"outputs: contains 1 infinite values"),
        ([[0.5, 0.6, 0.1]], [0], "probs", r"outputs: probabilities do not sum to 1"),
        ([[1.5, -0.5]], [0], "probs", r"outputs: probabilities must lie in \[0, 1\]"),
        (LOGITS, [1, 3], "logits", r"labels: labels must be in 0..2 \(3 classes\).*\[3\]"),
        (LOGITS, [1, -1], "logits", r"labels: labels must be in 0..2"),
        (LOGITS, [0.5, 1.0], "logits", r"labels: expected integer class labels"),
        (LOGITS, [0, 1, 2, 0], "logits", r"labels: shape \(4,\) does not match outputs"),
        ([[1.0], [2.0]], [0, 0], "logits", r"outputs: need at least 2 classes"),
        (LOGITS, LABELS, "scores", r"kind: expected 'logits' or 'probs'"),
        ("abc", [0], "logits", r"outputs: expected a numeric array"),
    ],
)
def test_validation_errors(outputs, labels, kind, match):
    with pytest.raises(ValidationError, match=match):
        S.logit_scaled_confidence(outputs, labels, kind=kind)


def test_square_layout_labels_are_ambiguous_and_rejected():
    import numpy as np
    import pytest

    from miaudit.exceptions import ValidationError
    from miaudit.signals import confidence

    logits = np.random.default_rng(0).normal(size=(3, 3, 4))
    with pytest.raises(ValidationError, match="ambiguous"):
        confidence(logits, np.array([0, 1, 2]))
    # (m, n, C) with m != n: labels (n,) follow numpy broadcasting over the models axis.
    logits = np.random.default_rng(1).normal(size=(2, 3, 4))
    labels = np.array([0, 1, 2])
    np.testing.assert_allclose(confidence(logits, labels)[1], confidence(logits[1], labels))
