"""One model, three threat models: full outputs, the top-1 score rounded to 1 decimal, labels only.

Generates the table of ``docs/threat-models.md``. A 20→128→10 ReLU MLP over-fits half of 4,000
records of overlapping Gaussian classes; 8 reference models train on random halves (each record
IN for 4 and OUT for 4). Every attack is run against the target behind each restriction
(:mod:`miaudit.targets.restrict`); :func:`miaudit.targets.check_capabilities` refuses an attack
whose signal the restricted target cannot give. The reference models are the attacker's own,
queried with full access. All 4,000 records are audited (2,000 members), so FPR 0.1 % allows 2
false positives.

Run:  python examples/threat_models.py   (about a minute on one core)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from miaudit import attacks
from miaudit.attacks.label_only import (
    LabelOnlyAugmentationAttack,
    LabelOnlyBoundaryAttack,
    augmentation_scores,
    boundary_distance,
    choose_noise_scale,
    gap_scores,
)
from miaudit.attacks.lira import lira_scores
from miaudit.exceptions import MissingRequirementError
from miaudit.metrics import auc, tpr_at_fpr
from miaudit.signals import cross_entropy_loss, logit_scaled_confidence
from miaudit.targets import TorchTarget, check_capabilities
from miaudit.targets.restrict import LabelOnly, Rounded, TopK

N_RECORDS, N_FEATURES, N_CLASSES = 4_000, 20, 10
HIDDEN, EPOCHS, LR = 128, 200, 2e-2
N_REFERENCES = 8
NOISE = 1.6
FPR = 1e-3
BUDGET = 200
SIGMAS = (0.3, 0.6, 1.0)
N_NOISE = 20


def make_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(N_CLASSES, N_FEATURES))
    y = rng.integers(N_CLASSES, size=N_RECORDS)
    X = centers[y] + NOISE * rng.normal(size=(N_RECORDS, N_FEATURES))
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


def main() -> None:
    torch.set_num_threads(1)
    start = time.perf_counter()
    X, y = make_data()
    rng = np.random.default_rng(1)
    member = rng.random(N_RECORDS) < 0.5
    halves = rng.random((N_REFERENCES // 2, N_RECORDS)) < 0.5
    keep = np.concatenate([halves, ~halves])
    target = TorchTarget(train(X[member], y[member], 0))
    refs = [TorchTarget(train(X[k], y[k], i + 1)) for i, k in enumerate(keep)]
    ref_logits = np.stack([r.predict(X) for r in refs])
    sigma = choose_noise_scale(refs, keep, X, y, SIGMAS, n_noise=N_NOISE)
    print(
        f"models trained in {time.perf_counter() - start:.0f}s; noise scale chosen on the "
        f"references: {sigma}"
    )

    def lira(t: Any) -> np.ndarray:
        tgt = logit_scaled_confidence(t.predict(X), y, kind=t.kind)[:, None]
        ref = logit_scaled_confidence(ref_logits, y, kind="logits")[..., None]
        return lira_scores(tgt, ref, keep, online=True)

    # (row name, what check_capabilities sees, score function of the restricted target)
    rows: list[tuple[str, Any, Callable[[Any], np.ndarray]]] = [
        ("LiRA online (8 refs)", attacks.get("lira"), lira),
        ("loss", attacks.get("loss"), lambda t: -cross_entropy_loss(t.predict(X), y, t.kind)),
        (
            "top-1 score (p_y if y is the top class, else 0)",
            SimpleNamespace(name="top1_score", needs_capabilities=("top_k",)),
            lambda t: TopK(t, 1).predict(X)[np.arange(N_RECORDS), y],
        ),
        ("gap (correctness)", attacks.get("correctness"), lambda t: gap_scores(t, X, y)),
        (
            f"augmentation (noise {sigma}, {N_NOISE} views, per-class thresholds)",
            LabelOnlyAugmentationAttack,
            lambda t: augmentation_scores(
                t, X, y, references=refs, keep=keep, sigma=sigma, n_noise=N_NOISE
            ),
        ),
        (
            f"boundary distance ({BUDGET} queries/record)",
            LabelOnlyBoundaryAttack,
            lambda t: boundary_distance(t, X, y, budget=BUDGET, seed=0).distance,
        ),
    ]
    threat_models = {
        "full outputs (logits)": target,
        "top-1 score, 1 decimal": TopK(Rounded(target, 1), 1),
        "label only": LabelOnly(target),
    }
    print(f"\nTPR at {FPR:.1%} FPR (AUC), {member.sum()} members, {(~member).sum()} non-members\n")
    print("| attack | " + " | ".join(threat_models) + " |")
    print("|---" * (len(threat_models) + 1) + "|")
    for name, attack, score in rows:
        cells = []
        for restricted in threat_models.values():
            try:
                check_capabilities(attack, restricted)
            except MissingRequirementError as exc:
                needs = str(exc).split("needs the target's ")[1].split(" (")[0]
                cells.append(f"refused (needs {needs})")
                continue
            s = score(restricted)
            cells.append(f"{tpr_at_fpr(s, member, FPR).tpr:.3f} ({auc(s, member):.3f})")
        print(f"| {name} | " + " | ".join(cells) + " |")
    acc = gap_scores(target, X, y)
    print(
        f"\ntarget accuracy: members {acc[member].mean():.3f}, non-members "
        f"{acc[~member].mean():.3f}; total {time.perf_counter() - start:.0f}s"
    )


if __name__ == "__main__":
    main()
