"""Tests of miaudit.audit.accounting: the numbers are Opacus's own for the same run."""

from __future__ import annotations

import warnings

import pytest

pytest.importorskip("opacus")

from opacus.accountants import GaussianAccountant, PRVAccountant, RDPAccountant
from opacus.accountants.utils import get_noise_multiplier

from miaudit.audit import accounting
from miaudit.exceptions import UnknownNameError, ValidationError

OPACUS_CLASSES = {"prv": PRVAccountant, "rdp": RDPAccountant, "gdp": GaussianAccountant}


@pytest.fixture(autouse=True)
def _quiet_opacus():
    # Opacus warns that GDP is experimental and that RDP's best order is the largest alpha
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


def _opacus_epsilon(name: str, sigma: float, q: float, steps: int, delta: float) -> float:
    """Epsilon the way Opacus's PrivacyEngine gets it: one ``step`` call per training step."""
    acc = OPACUS_CLASSES[name]()
    for _ in range(steps):
        acc.step(noise_multiplier=sigma, sample_rate=q)
    return acc.get_epsilon(delta=delta)


@pytest.mark.parametrize("name", ["prv", "rdp", "gdp"])
@pytest.mark.parametrize(("sigma", "q", "steps"), [(1.0, 0.01, 200), (0.8, 0.05, 60)])
def test_epsilon_equals_opacus(name, sigma, q, steps):
    expected = _opacus_epsilon(name, sigma, q, steps, 1e-5)
    assert accounting.epsilon(sigma, q, steps, 1e-5, accountant=name) == pytest.approx(
        expected, rel=1e-9
    )


def test_default_accountant_is_prv_and_names_are_case_insensitive():
    assert accounting.DEFAULT_ACCOUNTANT == "prv"
    assert isinstance(accounting.make_accountant(), PRVAccountant)
    assert isinstance(accounting.make_accountant(" RDP "), RDPAccountant)
    assert set(accounting.ACCOUNTANTS) == {"prv", "rdp", "gdp"}


def test_accountants_order_as_documented():
    # prv is the tightest upper bound; rdp is looser
    args = (1.0, 0.01, 500, 1e-5)
    assert accounting.epsilon(*args, accountant="prv") < accounting.epsilon(*args, accountant="rdp")


def test_options_reach_the_accountant():
    # a custom RDP order grid changes the bound (the default grid is finer)
    coarse = accounting.epsilon(1.0, 0.01, 200, 1e-5, accountant="rdp", alphas=[2, 4, 8])
    fine = accounting.epsilon(1.0, 0.01, 200, 1e-5, accountant="rdp")
    assert coarse >= fine


@pytest.mark.parametrize("name", ["rdp", "gdp"])
def test_noise_multiplier_equals_opacus(name):
    ours = accounting.noise_multiplier_for(2.0, 1e-5, 0.01, steps=300, accountant=name)
    theirs = get_noise_multiplier(
        target_epsilon=2.0, target_delta=1e-5, sample_rate=0.01, steps=300, accountant=name
    )
    assert ours == theirs
    eps = accounting.epsilon(ours, 0.01, 300, 1e-5, accountant=name)
    assert 2.0 - accounting.DEFAULT_EPSILON_TOLERANCE <= eps <= 2.0


def test_noise_multiplier_epochs_are_steps_over_rate():
    by_epochs = accounting.noise_multiplier_for(3.0, 1e-5, 0.01, epochs=10, accountant="gdp")
    by_steps = accounting.noise_multiplier_for(3.0, 1e-5, 0.01, steps=1000, accountant="gdp")
    assert by_epochs == by_steps


@pytest.mark.slow
def test_noise_multiplier_prv_equals_opacus():
    kwargs = {"target_epsilon": 3.0, "target_delta": 1e-5, "sample_rate": 0.02, "steps": 100}
    ours = accounting.noise_multiplier_for(
        3.0, 1e-5, 0.02, steps=100, accountant="prv", epsilon_tolerance=0.05
    )
    assert ours == get_noise_multiplier(**kwargs, accountant="prv", epsilon_tolerance=0.05)


def test_unknown_accountant_lists_valid_names():
    with pytest.raises(UnknownNameError, match=r"Did you mean 'rdp'.*gdp, prv, rdp"):
        accounting.epsilon(1.0, 0.01, 10, 1e-5, accountant="rpd")
    with pytest.raises(ValidationError, match="accountant:"):
        accounting.make_accountant(3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ((0.0, 0.01, 10, 1e-5), "noise_multiplier"),
        ((1.0, 0.0, 10, 1e-5), "sample_rate"),
        ((1.0, 1.5, 10, 1e-5), "sample_rate"),
        ((1.0, 0.01, 0, 1e-5), "steps"),
        ((1.0, 0.01, 10.5, 1e-5), "steps"),
        ((1.0, 0.01, 10, 0.0), "delta"),
        ((float("nan"), 0.01, 10, 1e-5), "noise_multiplier"),
    ],
)
def test_epsilon_bad_input(args, field):
    with pytest.raises(ValidationError, match=field):
        accounting.epsilon(*args)


def test_noise_multiplier_bad_input():
    with pytest.raises(ValidationError, match="steps, epochs"):
        accounting.noise_multiplier_for(1.0, 1e-5, 0.01)
    with pytest.raises(ValidationError, match="steps, epochs"):
        accounting.noise_multiplier_for(1.0, 1e-5, 0.01, steps=10, epochs=1)
    with pytest.raises(ValidationError, match="target_epsilon"):
        accounting.noise_multiplier_for(-1.0, 1e-5, 0.01, steps=10)
    with pytest.raises(ValidationError, match="epochs"):
        accounting.noise_multiplier_for(1.0, 1e-5, 0.01, epochs=0.001)
