"""Output-restricting wrappers and the capability check that refuses what they cannot give."""

from __future__ import annotations

import numpy as np
import pytest

from miaudit.exceptions import MissingRequirementError, ValidationError
from miaudit.targets import (
    CallableTarget,
    SklearnTarget,
    TorchTarget,
    capabilities,
    check_capabilities,
    predict_labels,
    required_outputs,
)
from miaudit.targets.restrict import LabelOnly, NoisyOutputs, Rounded, Temperature, TopK

N_FEATURES, N_CLASSES = 5, 6
W = np.random.default_rng(0).normal(size=(N_FEATURES, N_CLASSES))
X = np.random.default_rng(1).normal(size=(50, N_FEATURES))


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture
def target() -> CallableTarget:
    return CallableTarget(lambda x: np.asarray(x) @ W)


def test_default_capabilities_follow_kind(target: CallableTarget) -> None:
    assert capabilities(target) == {"logits", "probs", "top_k", "label", "loss"}
    assert capabilities(SklearnTarget(None)) == {"probs", "top_k", "label", "loss"}
    assert "gradients" in capabilities(TorchTarget(object()))

    class Bare:  # any object with kind + predict is a target
        kind = "probs"

        def predict(self, x: np.ndarray) -> np.ndarray:
            return softmax(x @ W)

    assert capabilities(Bare()) == {"probs", "top_k", "label", "loss"}


def test_top_k_keeps_the_k_largest(target: CallableTarget) -> None:
    p = softmax(X @ W)
    out = TopK(target, 2).predict(X)
    assert ((out > 0).sum(axis=1) == 2).all()
    top2 = np.sort(p, axis=1)[:, -2:]
    np.testing.assert_allclose(np.sort(out, axis=1)[:, -2:], top2)
    assert capabilities(TopK(target, 1)) == {"top_k", "label"}


def test_rounding_and_temperature(target: CallableTarget) -> None:
    p = softmax(X @ W)
    np.testing.assert_allclose(Rounded(target, 1, normalize=False).predict(X), np.round(p, 1))
    normalized = Rounded(target, 1).predict(X)
    np.testing.assert_allclose(normalized.sum(1), 1.0)
    np.testing.assert_allclose(normalized * np.round(p, 1).sum(1, keepdims=True), np.round(p, 1))
    hot = Temperature(target, 2.0)
    np.testing.assert_allclose(softmax(hot.predict(X)), softmax(X @ W / 2.0), rtol=1e-12)
    on_probs = Temperature(Rounded(target, 12), 2.0)  # a target returning probabilities
    np.testing.assert_allclose(softmax(on_probs.predict(X)), softmax(X @ W / 2.0), atol=1e-9)


def test_label_only_and_noise_keep_the_label(target: CallableTarget) -> None:
    labels = (X @ W).argmax(1)
    lo = LabelOnly(target)
    np.testing.assert_array_equal(lo.predict(X), np.eye(N_CLASSES)[labels])
    assert capabilities(lo) == {"label"}
    noisy = NoisyOutputs(target, sigma=3.0, seed=7)
    out = noisy.predict(X)
    np.testing.assert_array_equal(out.argmax(1), labels)
    np.testing.assert_allclose(out.sum(1), 1.0)
    assert not np.allclose(out, softmax(X @ W))
    np.testing.assert_array_equal(noisy.predict(X[::-1]), out[::-1])  # same record, same noise
    for wrapper in (TopK(target, 1), Rounded(target, 0), Temperature(target, 5.0), lo, noisy):
        np.testing.assert_array_equal(predict_labels(wrapper, X), labels)


def test_wrappers_stack(target: CallableTarget) -> None:
    stacked = TopK(Rounded(target, 2), 3)
    assert capabilities(stacked) == {"top_k", "label"}
    assert capabilities(LabelOnly(TopK(target, 1))) == {"label"}
    top1 = TopK(TopK(Rounded(target, 1), 2), 1).predict(X)  # inner rows need not sum to 1
    np.testing.assert_allclose(top1.max(1), Rounded(target, 1).predict(X).max(1))


def test_attacks_refuse_signals_the_target_cannot_give(target: CallableTarget) -> None:
    from miaudit.attacks.lira import LiraAttack
    from miaudit.attacks.rmia import RmiaAttack

    label_only = LabelOnly(target)
    with pytest.raises(MissingRequirementError, match=r"'lira'.*probability.*label"):
        check_capabilities(LiraAttack.info, label_only)
    with pytest.raises(MissingRequirementError, match="rmia"):
        check_capabilities(RmiaAttack, TopK(target, 1))
    check_capabilities(LiraAttack.info, Rounded(target, 1))  # rounded scores still feed LiRA
    check_capabilities(LiraAttack(), target)
    assert required_outputs(LiraAttack.info) == {"probs"}


def test_bad_parameters() -> None:
    t = CallableTarget(lambda x: x)
    with pytest.raises(ValidationError, match="k"):
        TopK(t, 0)
    with pytest.raises(ValidationError, match="decimals"):
        Rounded(t, -1)
    with pytest.raises(ValidationError, match="temperature"):
        Temperature(t, 0.0)
    with pytest.raises(ValidationError, match="sigma"):
        NoisyOutputs(t, -1.0)
    with pytest.raises(ValidationError, match="unknown output capabilities"):
        capabilities(CallableTarget(lambda x: x, outputs=frozenset({"everything"})))
