"""AttackData validation and attack construction errors."""

import numpy as np
import pytest

from miaudit.attacks import AttackData, create
from miaudit.exceptions import MiauditError, ValidationError


def _outputs(n: int, q: int = 1, c: int = 3) -> np.ndarray:
    return np.zeros((n, q, c))


def test_population_lengths_must_agree():
    with pytest.raises(ValidationError, match="population_target: has 4 records but "
                                              "population_labels has 3"):
        AttackData(labels=[0, 1], target=_outputs(2), population_labels=[0, 1, 2],
                   population_target=_outputs(4))
    with pytest.raises(ValidationError, match="population_references: has 2 records"):
        AttackData(labels=[0, 1], target=_outputs(2), population_labels=[0, 1, 2],
                   population_references=np.zeros((2, 2, 1, 3)))


def test_population_labels_are_checked_like_labels():
    with pytest.raises(ValidationError, match="population_labels: expected integer class "
                                              "labels, got fractional"):
        AttackData(labels=[0, 1], target=_outputs(2), population_labels=[0.5, 1.0],
                   population_target=_outputs(2))
    with pytest.raises(ValidationError, match=r"population_labels: labels must be in 0\.\.2"):
        AttackData(labels=[0, 1], target=_outputs(2), population_labels=[0, 7],
                   population_target=_outputs(2))


def test_unknown_attack_parameter_lists_the_valid_ones():
    with pytest.raises(ValidationError, match=r"attack 'lira': bad parameters \['centre'\].*"
                                              r"valid parameters: .*center"):
        create("lira", centre="mean")


def test_errors_inside_an_attack_constructor_are_not_reported_as_bad_parameters():
    # A valid parameter with a bad value reaches the constructor's own check.
    with pytest.raises(MiauditError) as info:
        create("lira", center="mode")
    assert "bad parameters" not in str(info.value)
    assert "center" in str(info.value)
