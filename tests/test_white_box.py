"""White-box signals: per-record gradient norms with torch.func against single-record backward
passes, and the attacks built on them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from miaudit.attacks.base import AttackData
from miaudit.attacks.lira import lira_scores
from miaudit.attacks.white_box import (
    FEATURES_SIGNAL,
    GRADIENT_SIGNAL,
    GradientNormAttack,
    WhiteBoxMetaAttack,
    gradient_norm_signal,
    gradient_norms,
    white_box_features,
)
from miaudit.exceptions import MissingRequirementError
from miaudit.metrics import auc
from miaudit.targets import TorchTarget, check_capabilities
from miaudit.targets.restrict import LabelOnly

N_FEATURES, N_CLASSES, N_RECORDS = 8, 4, 200
TOL = 1e-5


def mlp(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(N_FEATURES, 32), torch.nn.Tanh(), torch.nn.Linear(32, N_CLASSES)
    )


def loop_norms(model: torch.nn.Module, X: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Independent computation: one backward pass per record."""
    out: dict[str, list[float]] = {k: [] for k, _ in model.named_parameters()}
    out["total"] = []
    for xi, yi in zip(X, y, strict=True):
        model.zero_grad()
        loss = torch.nn.functional.cross_entropy(
            model(torch.as_tensor(xi[None], dtype=torch.float32)), torch.tensor([int(yi)])
        )
        loss.backward()
        total = 0.0
        for k, p in model.named_parameters():
            assert p.grad is not None
            n2 = float(p.grad.double().pow(2).sum())
            out[k].append(n2**0.5)
            total += n2
        out["total"].append(total**0.5)
    return {k: np.asarray(v) for k, v in out.items()}


def test_per_record_norms_equal_single_record_backward_passes(one_torch_thread: None) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, N_FEATURES)).astype(np.float32)
    y = rng.integers(N_CLASSES, size=50)
    model = mlp(0)
    fast = gradient_norms(model, X, y, batch_size=16)
    slow = loop_norms(model, X, y)
    np.testing.assert_allclose(fast.total, slow["total"], rtol=TOL, atol=TOL)
    for k, v in fast.per_parameter.items():
        np.testing.assert_allclose(v, slow[k], rtol=TOL, atol=TOL)
    np.testing.assert_allclose(
        fast.per_layer["0"] ** 2, slow["0.weight"] ** 2 + slow["0.bias"] ** 2, rtol=1e-4
    )


def test_conv_module(one_torch_thread: None) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 3, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 3)
    )
    X = np.random.default_rng(1).normal(size=(10, 1, 6, 6)).astype(np.float32)
    y = np.arange(10) % 3
    np.testing.assert_allclose(
        gradient_norms(model, X, y).total, loop_norms(model, X, y)["total"], rtol=TOL, atol=TOL
    )


def train(X: np.ndarray, y: np.ndarray, seed: int) -> torch.nn.Module:
    model = mlp(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    Xt, yt = torch.tensor(X), torch.tensor(y)
    for _ in range(150):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(Xt), yt).backward()
        opt.step()
    return model


def test_attacks_on_an_overfit_model(one_torch_thread: None) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N_RECORDS, N_FEATURES)).astype(np.float32)
    y = rng.integers(N_CLASSES, size=N_RECORDS)  # random labels: only memorisation fits them
    member = np.arange(N_RECORDS) % 2 == 0
    half = rng.random((2, N_RECORDS)) < 0.5
    keep = np.concatenate([half, ~half])  # every record IN and OUT of some reference
    target = train(X[member], y[member], 0)
    refs = [train(X[k], y[k], i + 1) for i, k in enumerate(keep)]

    norms = gradient_norms(target, X, y).total
    data = AttackData.from_signals(y, {GRADIENT_SIGNAL: {"target": norms}})
    threshold = GradientNormAttack().score(data)
    assert auc(threshold, member) > 0.7

    sig_t = gradient_norm_signal(target, X, y)
    sig_r = np.stack([gradient_norm_signal(r, X, y) for r in refs])
    lira = lira_scores(sig_t, sig_r, keep, online=False)
    assert auc(lira, member) > 0.7

    feats = {
        "target": white_box_features(target, X, y),
        "references": np.stack([white_box_features(r, X, y) for r in refs]),
    }
    meta = WhiteBoxMetaAttack().score(AttackData.from_signals(y, {FEATURES_SIGNAL: feats}, keep))
    assert auc(meta, member) > 0.7

    with pytest.raises(MissingRequirementError, match="white-box"):
        GradientNormAttack().score(AttackData(labels=y))
    check_capabilities(GradientNormAttack, TorchTarget(target))
    with pytest.raises(MissingRequirementError, match="gradients"):
        check_capabilities(GradientNormAttack, LabelOnly(TorchTarget(target)))
