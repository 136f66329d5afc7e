"""The attack stage hands every target the right slices of signals computed once."""

import numpy as np
import pytest

from miaudit.attacks import AttackData, create
from miaudit.audit.attack_stage import EXTERNAL_TARGET, SignalBank, attack_data, score_targets
from miaudit.config import AttackSpec
from miaudit.data.splits import LeaveOneOut, keep_matrix
from miaudit.exceptions import ValidationError
from miaudit.signals import cross_entropy_loss, logit_scaled_confidence


@pytest.fixture
def setup():
    rng = np.random.default_rng(3)
    m, n, q, c = 5, 40, 2, 4
    outputs = rng.normal(size=(m, n, q, c))
    labels = rng.integers(0, c, n)
    keep = keep_matrix(m, n, seed=1)
    keep[:, 30:] = False  # records 30.. are population records, never IN
    return outputs, labels, keep


def test_signal_bank_matches_direct_computation(setup):
    outputs, labels, _ = setup
    bank = SignalBank(outputs, labels)
    got = bank.get("logit_scaled_confidence")
    assert got.shape == outputs.shape[:-1]
    for i in range(outputs.shape[0]):
        np.testing.assert_allclose(got[i], logit_scaled_confidence(outputs[i], labels))
    assert bank.get("logit_scaled_confidence") is got  # computed once


def test_loss_scores_per_target_equal_negative_mean_loss(setup):
    outputs, labels, keep = setup
    audit, pop = np.arange(30), np.arange(30, 40)
    splits = list(LeaveOneOut(keep))
    out = score_targets(SignalBank(outputs, labels), keep, splits,
                        [AttackSpec(name="loss")], audit, pop)
    assert out["loss"].shape == (5, 30)
    for t in range(5):
        expect = -cross_entropy_loss(outputs[t, :30], labels[:30]).mean(axis=1)
        np.testing.assert_allclose(out["loss"][t], expect)


def test_attack_data_slices_references_and_population(setup):
    outputs, labels, keep = setup
    audit, pop = np.arange(30), np.arange(30, 40)
    refs = np.array([0, 2, 4])
    data = attack_data(SignalBank(outputs, labels), (1, refs), keep, audit, pop,
                       ["logit_scaled_confidence"])
    assert isinstance(data, AttackData)
    np.testing.assert_array_equal(data.keep, keep[refs][:, audit])
    np.testing.assert_allclose(
        data.signal("logit_scaled_confidence", "population_references")[1],
        logit_scaled_confidence(outputs[2, 30:], labels[30:]))
    np.testing.assert_allclose(data.references, outputs[refs][:, audit])


def test_external_target_needs_outputs_and_uses_them(setup):
    outputs, labels, keep = setup
    audit, pop = np.arange(30), np.arange(0)
    bank = SignalBank(outputs, labels)
    with pytest.raises(ValidationError, match="target_outputs"):
        attack_data(bank, (EXTERNAL_TARGET, np.arange(5)), keep, audit, pop)
    external = outputs[0] * 3.0
    scores = score_targets(bank, keep, [(EXTERNAL_TARGET, np.arange(5))],
                           [AttackSpec(name="loss")], audit, pop, target_outputs=external)
    expect = create("loss").score(AttackData(labels=labels[:30], target=external[:30]))
    np.testing.assert_allclose(scores["loss"][0], expect)


def test_signal_bank_rejects_bad_shapes():
    with pytest.raises(ValidationError, match="n_models, n_records, n_queries, n_classes"):
        SignalBank(np.zeros((3, 4, 2)), np.zeros(4, int))
    with pytest.raises(ValidationError, match="labels has 5"):
        SignalBank(np.zeros((3, 4, 1, 2)), np.zeros(5, int))
