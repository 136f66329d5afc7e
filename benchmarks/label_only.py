"""Boundary-distance attack (issue 14): miaudit's batched search against ART's
``LabelOnlyDecisionBoundary`` on the same model and records.

Model: a 600→256→100 tanh MLP trained to 100 % training accuracy on ``--train`` purchase-like
records (binary features, 100 classes); the audited records are ``--records / 2`` of its
training records (members) and as many records it never saw (non-members). Both attacks see
only the predicted label, through the same counting ``predict`` function, with probes clipped
to the data box [0, 1]:

* miaudit: :func:`miaudit.attacks.label_only.boundary_distance` at each of ``--budgets``
  queries per record, all records searched in lock-step (one batched call per step);
* ART (adversarial-robustness-toolbox, imported only here): ``LabelOnlyDecisionBoundary.infer``
  with ``probabilities=True`` (a sigmoid of the HopSkipJump distance minus a tiny threshold, so
  its AUC is the AUC of the distance), HopSkipJump parameters ``--art-max-iter``,
  ``--art-max-eval``, ``--art-init-eval`` (ART's defaults, 50 / 10,000 / 100, take hours on
  1,000 records; issue ART#127).

Printed: queries per record (mean / max), records per second, AUC and balanced accuracy, and the
speed ratio. Target: ≥ 10× ART's records/s at equal or better AUC. No asserts (timings are noisy
on shared machines). Run:  python benchmarks/label_only.py [--records N] [--budgets 120,200] ...
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import torch

from miaudit.attacks.label_only import boundary_distance
from miaudit.data.builtin import purchase_like
from miaudit.metrics import auc, balanced_accuracy
from miaudit.targets import CallableTarget

N_FEATURES, N_CLASSES, HIDDEN = 600, 100, 256
EPOCHS, LR = 300, 1e-3
#: The ART threshold: tiny, so that sigmoid(distance - tau) keeps the order of the distances.
ART_TAU = 1e-9
SPEED_TARGET = 10.0


@dataclass
class Result:
    name: str
    seconds: float
    queries: np.ndarray
    scores: np.ndarray
    per_record: bool = True


class Counting:
    """The model's ``predict`` on numpy rows (logits), counting every row queried."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.rows = 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.rows += len(x)
        with torch.no_grad():
            return self.model(torch.as_tensor(np.asarray(x), dtype=torch.float32)).numpy()


def train(X: np.ndarray, y: np.ndarray, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(N_FEATURES, HIDDEN), torch.nn.Tanh(), torch.nn.Linear(HIDDEN, N_CLASSES)
    )
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    Xt, yt = torch.tensor(X, dtype=torch.float32), torch.tensor(y)
    for _ in range(EPOCHS):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(Xt), yt).backward()
        opt.step()
    return model.eval()


def run_miaudit(model: torch.nn.Module, X: np.ndarray, y: np.ndarray, budget: int) -> Result:
    fn = Counting(model)
    target = CallableTarget(fn)
    start = time.perf_counter()
    res = boundary_distance(target, X, y, budget=budget, seed=0, clip=(0.0, 1.0))
    seconds = time.perf_counter() - start
    assert fn.rows == int(res.queries.sum()), "the reported queries must equal the rows queried"
    return Result(f"miaudit boundary, budget {budget}", seconds, res.queries, res.distance)


def run_art(
    model: torch.nn.Module, X: np.ndarray, y: np.ndarray, args: argparse.Namespace
) -> Result:
    from art.attacks.inference.membership_inference import LabelOnlyDecisionBoundary
    from art.estimators.classification import BlackBoxClassifier

    fn = Counting(model)
    clf = BlackBoxClassifier(
        fn, input_shape=(N_FEATURES,), nb_classes=N_CLASSES, clip_values=(0, 1)
    )
    attack = LabelOnlyDecisionBoundary(clf, distance_threshold_tau=ART_TAU)
    start = time.perf_counter()
    prob = attack.infer(
        X.astype(np.float32),
        y,
        probabilities=True,
        max_iter=args.art_max_iter,
        max_eval=args.art_max_eval,
        init_eval=args.art_init_eval,
        verbose=False,
    )
    seconds = time.perf_counter() - start
    # ART searches record by record inside one call: only the mean per record is known
    queries = np.full(len(X), fn.rows / len(X))
    return Result("ART LabelOnlyDecisionBoundary", seconds, queries, prob[:, 1], per_record=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1_000, help="audited records (half members)")
    parser.add_argument(
        "--train", type=int, default=4_000, help="training records of the model (members)"
    )
    parser.add_argument(
        "--budgets", default="120,200", help="miaudit queries per record (comma-separated)"
    )
    parser.add_argument("--art-max-iter", type=int, default=5)
    parser.add_argument("--art-max-eval", type=int, default=100)
    parser.add_argument("--art-init-eval", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    half = args.records // 2
    data = purchase_like(n_records=args.train + args.records - half, seed=0)
    # the model trains on the first `train` records; audited: `half` of them and the rest
    t0 = time.perf_counter()
    model = train(data.X[: args.train].astype(np.float64), data.y[: args.train], seed=0)
    audited = np.r_[np.arange(half), np.arange(args.train, len(data.X))]
    X, y = data.X[audited].astype(np.float64), data.y[audited]
    member = np.arange(len(audited)) < half
    pred = model(torch.tensor(X, dtype=torch.float32)).argmax(1).detach().numpy()
    print(
        f"model: trained in {time.perf_counter() - t0:.1f}s; accuracy members "
        f"{(pred == y)[member].mean():.3f}, non-members {(pred == y)[~member].mean():.3f}"
    )

    gap = (pred == y).astype(np.float64)
    print(f"gap attack: AUC {auc(gap, member):.4f}, balanced accuracy ", end="")
    print(f"{balanced_accuracy(gap, member):.4f}")
    budgets = [int(b) for b in args.budgets.split(",")]
    results = [run_miaudit(model, X, y, b) for b in budgets] + [run_art(model, X, y, args)]
    print(f"\n{args.records} records, {N_FEATURES} features, {N_CLASSES} classes")
    header = (
        f"{'attack':32s} {'queries/rec':>12s} {'max':>6s} {'records/s':>10s} {'AUC':>7s} "
        f"{'bal.acc':>8s}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        most = f"{r.queries.max():.0f}" if r.per_record else "-"
        print(
            f"{r.name:32s} {r.queries.mean():12.1f} {most:>6s} "
            f"{len(X) / r.seconds:10.1f} {auc(r.scores, member):7.4f} "
            f"{balanced_accuracy(r.scores, member):8.4f}"
        )
    print()
    art = results[-1]
    for ours in results[:-1]:
        ratio = art.seconds / ours.seconds
        better = auc(ours.scores, member) >= auc(art.scores, member)
        print(
            f"{ours.name}: {ratio:.1f}x ART's records/s (target >= {SPEED_TARGET:.0f}x); "
            f"AUC equal or better: {better}"
        )


if __name__ == "__main__":
    main()
