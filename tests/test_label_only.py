"""Label-only attacks (Choquette-Choo et al., ICML 2021) on a synthetic over-fit MLP."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from miaudit.attacks.base import AttackData
from miaudit.attacks.label_only import (
    BOUNDARY_SIGNAL,
    LabelOnlyAugmentationAttack,
    LabelOnlyBoundaryAttack,
    augmentation_correctness,
    augmentation_scores,
    augmented_views,
    boundary_distance,
    choose_noise_scale,
    gap_scores,
)
from miaudit.exceptions import MissingRequirementError, ValidationError
from miaudit.metrics import auc, balanced_accuracy
from miaudit.targets import TorchTarget, check_capabilities
from miaudit.targets.restrict import LabelOnly, Rounded, TopK

N_RECORDS, N_FEATURES, N_CLASSES = 1_000, 20, 10
HIDDEN, EPOCHS, LR = 128, 150, 2e-2
N_REFERENCES = 3
SIGMAS = (0.3, 0.6, 1.0)
BUDGET = 120


def make_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping Gaussian classes: an MLP fits its half perfectly and generalises poorly."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(N_CLASSES, N_FEATURES))
    y = rng.integers(N_CLASSES, size=N_RECORDS)
    X = centers[y] + 1.6 * rng.normal(size=(N_RECORDS, N_FEATURES))
    return X.astype(np.float32), y


def train(X: np.ndarray, y: np.ndarray, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(N_FEATURES, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, N_CLASSES)
    )
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    Xt, yt = torch.tensor(X), torch.tensor(y)
    for _ in range(EPOCHS):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(Xt), yt).backward()
        opt.step()
    return model.eval()


@dataclass
class Setup:
    X: np.ndarray
    y: np.ndarray
    member: np.ndarray
    target: TorchTarget
    references: list[TorchTarget]
    keep: np.ndarray


@pytest.fixture(scope="module")
def setup() -> Setup:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        X, y = make_data()
        member = np.zeros(N_RECORDS, dtype=bool)
        member[::2] = True
        keep = np.random.default_rng(1).random((N_REFERENCES, N_RECORDS)) < 0.5
        target = TorchTarget(train(X[member], y[member], 0))
        refs = [TorchTarget(train(X[k], y[k], i + 1)) for i, k in enumerate(keep)]
    finally:
        torch.set_num_threads(before)
    return Setup(X, y, member, target, refs, keep)


@pytest.fixture(scope="module")
def scores(setup: Setup) -> dict[str, np.ndarray]:
    s = setup
    sigma = choose_noise_scale(s.references, s.keep, s.X, s.y, SIGMAS, n_noise=20)
    return {
        "gap": gap_scores(s.target, s.X, s.y),
        "augmentation": augmentation_scores(
            s.target, s.X, s.y, references=s.references, keep=s.keep, sigma=sigma, n_noise=20
        ),
        "boundary": boundary_distance(s.target, s.X, s.y, budget=BUDGET, seed=0).distance,
    }


def test_the_model_overfits(setup: Setup) -> None:
    correct = gap_scores(setup.target, setup.X, setup.y)
    assert correct[setup.member].mean() == 1.0
    assert correct[~setup.member].mean() < 0.85


def test_gap_attack_balanced_accuracy_is_half_the_generalisation_gap(setup: Setup) -> None:
    g = gap_scores(setup.target, setup.X, setup.y)
    gap = g[setup.member].mean() - g[~setup.member].mean()
    assert balanced_accuracy(g, setup.member) == pytest.approx(0.5 + gap / 2)


def test_augmentation_and_boundary_beat_the_gap_attack(
    setup: Setup, scores: dict[str, np.ndarray]
) -> None:
    gap = balanced_accuracy(scores["gap"], setup.member)
    for name in ("augmentation", "boundary"):
        assert balanced_accuracy(scores[name], setup.member) > gap + 0.02, name


def test_boundary_search_is_stable_and_within_budget(setup: Setup) -> None:
    s = setup
    a = boundary_distance(s.target, s.X[:200], s.y[:200], budget=BUDGET, seed=3)
    b = boundary_distance(s.target, s.X[:200], s.y[:200], budget=BUDGET, seed=3)
    np.testing.assert_array_equal(a.distance, b.distance)
    assert a.queries.max() <= BUDGET
    wrong = gap_scores(s.target, s.X[:200], s.y[:200]) == 0
    assert (a.distance[wrong] == 0).all() and (a.queries[wrong] == 1).all()
    assert (a.distance[~wrong] > 0).all()
    # more budget never moves a record farther from the boundary (the search keeps its minimum)
    c = boundary_distance(s.target, s.X[:200], s.y[:200], budget=2 * BUDGET, seed=3)
    assert (c.distance <= a.distance + 1e-12).all()


def test_boundary_points_really_change_the_label(setup: Setup) -> None:
    """The distance is an upper bound on the true one (a point at that distance has another
    label), close to it and ranked like it. Checked on a linear model, where the exact distance
    is |x·w| / |w| with w = w_1 - w_0."""
    rng = np.random.default_rng(0)
    W = rng.normal(size=(N_FEATURES, 2))

    class Linear:
        kind = "logits"

        def predict(self, x: np.ndarray) -> np.ndarray:
            return np.asarray(x, dtype=np.float64).reshape(len(x), -1) @ W

    X = rng.normal(size=(300, N_FEATURES))
    y = (X @ W).argmax(1)
    w = W[:, 1] - W[:, 0]
    exact = np.abs(X @ w) / np.linalg.norm(w)
    res = boundary_distance(Linear(), X, y, budget=200, seed=0)
    assert (res.distance >= exact - 1e-9).all()
    assert np.corrcoef(res.distance, exact)[0, 1] > 0.98  # the ranking is what the attack uses
    assert np.median(res.distance / exact) < 1.3


def test_restricted_outputs_leave_label_only_attacks_unchanged(
    setup: Setup, scores: dict[str, np.ndarray]
) -> None:
    s = setup
    sub = slice(0, N_RECORDS // 2)  # half the records, to keep the test fast
    X, y, member = s.X[sub], s.y[sub], s.member[sub]
    full = boundary_distance(s.target, X, y, budget=BUDGET // 2, seed=0).distance
    for restricted in (Rounded(s.target, 1), TopK(s.target, 1)):
        b = boundary_distance(restricted, X, y, budget=BUDGET // 2, seed=0).distance
        g = gap_scores(restricted, s.X, s.y)
        assert abs(auc(b, member) - auc(full, member)) <= 0.02
        assert abs(auc(g, s.member) - auc(scores["gap"], s.member)) <= 0.02


def test_registered_attacks_on_attack_data(setup: Setup) -> None:
    s = setup
    views = augmented_views(s.X, n_noise=10, sigma=0.3, seed=0)
    onehot = np.eye(N_CLASSES)

    def outputs(t: TorchTarget) -> np.ndarray:  # label-only observations (n, q, C)
        return (
            onehot[t.predict(views.reshape(-1, N_FEATURES)).argmax(1)]
            .reshape(views.shape[0], N_RECORDS, N_CLASSES)
            .transpose(1, 0, 2)
        )

    data = AttackData(
        labels=s.y,
        target=outputs(s.target),
        references=np.stack([outputs(r) for r in s.references]),
        keep=s.keep,
        kind="probs",
    )
    aug = LabelOnlyAugmentationAttack().score(data)
    direct = augmentation_scores(
        s.target, s.X, s.y, references=s.references, keep=s.keep, sigma=0.3, n_noise=10
    )
    np.testing.assert_allclose(aug, direct)
    frac = augmentation_correctness(s.target, views, s.y).mean(1)
    np.testing.assert_allclose(
        LabelOnlyAugmentationAttack(class_thresholds=False).score(data), frac
    )

    attack = LabelOnlyBoundaryAttack(class_thresholds=False)
    with pytest.raises(MissingRequirementError, match="boundary_distance"):
        attack.score(AttackData(labels=s.y))
    res = boundary_distance(s.target, s.X, s.y, budget=40, seed=0)
    with_signal = AttackData.from_signals(s.y, {BOUNDARY_SIGNAL: {"target": res.distance}})
    np.testing.assert_allclose(attack.score(with_signal), res.distance)
    check_capabilities(LabelOnlyBoundaryAttack, LabelOnly(s.target))
    check_capabilities(LabelOnlyAugmentationAttack.info, LabelOnly(s.target))


def test_bad_input(setup: Setup) -> None:
    with pytest.raises(ValidationError, match="budget"):
        boundary_distance(setup.target, setup.X, setup.y, budget=5)
    with pytest.raises(ValidationError, match="y: expected shape"):
        boundary_distance(setup.target, setup.X, setup.y[:10])
    with pytest.raises(ValidationError, match="sigma"):
        augmented_views(setup.X, sigma=-1.0)


def test_image_views_are_flips_and_shifts() -> None:
    x = np.arange(2 * 1 * 4 * 4, dtype=np.float64).reshape(2, 1, 4, 4)
    views = augmented_views(x)
    assert views.shape == (10, 2, 1, 4, 4)
    np.testing.assert_array_equal(views[0], x)
    np.testing.assert_array_equal(views[1], x[..., ::-1])
