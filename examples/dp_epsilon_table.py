"""The DP-SGD audit table of docs/dp.md, in one command:

    python examples/dp_epsilon_table.py [--quick]

For ε ∈ {1, 4, 16, ∞} it runs an algorithm audit of the torch-mlp recipe with DP-SGD at that
target ε (∞: no DP) on purchase-like data whose first ``N_CANARIES`` records get random labels
(canaries), and prints one row per ε:

* the accountant's ε (Opacus, rdp) of the trained models;
* the multi-run canary bound (Jagielski et al. 2020): every (model, canary) pair a trial, the
  threshold on half the trials, Clopper–Pearson on the other half;
* the one-run bound (Steinke, Nasr & Jagielski 2023) on one model's canaries, guesses chosen
  among fixed candidates with a Bonferroni correction;
* test accuracy and LiRA's TPR at 0.1% FPR over all records.

A valid lower bound stays below the accountant's ε; the gap says how tight the audit is.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import warnings

import numpy as np

from miaudit import Audit
from miaudit.audit.dp import canary_audit, one_run_audit
from miaudit.data import Dataset, load_dataset

EPSILONS = (1.0, 4.0, 16.0, math.inf)
#: Records whose labels are replaced by random ones: the canaries.
N_CANARIES = 500
DELTA = 1e-5
#: Classes of the purchase-like data (fewer than Purchase-100's 100, so that a few thousand
#: records train a useful model).
N_CLASSES = 20
#: Full run: 4,000 records, 8 references, 30 epochs; --quick: a smaller one.
FULL = {"n_records": 4000, "n_references": 8, "epochs": 30}
QUICK = {"n_records": 2000, "n_references": 4, "epochs": 15}


def canary_data(n_records: int, seed: int = 0) -> Dataset:
    """purchase-like records, the first ``N_CANARIES`` with labels drawn at random."""
    ds = load_dataset("purchase-like", n_records=n_records, n_classes=N_CLASSES, seed=seed)
    y = ds.y.copy()
    rng = np.random.default_rng(seed)
    y[:N_CANARIES] = rng.integers(0, ds.n_classes, size=N_CANARIES)
    return Dataset(X=ds.X, y=y, record_ids=ds.record_ids, n_classes=ds.n_classes,
                   name="purchase-like-canaries")


def audit_row(ds: Dataset, epsilon: float, size: dict[str, int], out: str) -> dict[str, float]:
    params: dict[str, object] = {"hidden_sizes": [256], "epochs": size["epochs"],
                                 "batch_size": 64, "lr": 0.05}
    if math.isfinite(epsilon):
        params["dp"] = {"target_epsilon": epsilon, "delta": DELTA, "max_grad_norm": 1.0,
                        "accountant": "rdp"}
    result = Audit(
        dataset=ds, output=out, n_references=size["n_references"], quiet=True,
        training={"recipe": "torch-mlp", "params": params},
        attacks=["loss", "lira"], fprs=[0.01, 0.001], delta=DELTA,
    ).run()
    scores = result.scores
    canary = scores.index.isin(ds.record_ids[:N_CANARIES])
    loss = scores["loss"].to_numpy()
    member = scores["is_member"].to_numpy(bool)
    multi = canary_audit(loss[canary & member], loss[canary & ~member], delta=DELTA)
    first = (scores["target"] == scores["target"].iloc[0]).to_numpy()
    one = one_run_audit(loss[canary & first], member[canary & first], delta=DELTA)
    accountant = result.models["epsilon"].max() if "epsilon" in result.models else math.inf
    return {
        "target ε": epsilon,
        "accountant ε": float(accountant),
        "multi-run ε ≥": multi.epsilon,
        "one-run ε ≥": one.epsilon,
        "test acc": float(result.models["test_accuracy"].mean()),
        "LiRA TPR@0.1%": result.metrics["lira"].at(1e-3).tpr,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller, faster run")
    args = parser.parse_args()
    # Opacus's rdp accountant suggests more orders at small noise; its bound is still valid.
    warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
    size = QUICK if args.quick else FULL
    ds = canary_data(size["n_records"])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, eps in enumerate(EPSILONS):
            rows.append(audit_row(ds, eps, size, f"{tmp}/run{i}"))
    header = list(rows[0])
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        cells = [f"{row[h]:.3g}" if h != "LiRA TPR@0.1%" else f"{100 * row[h]:.2f}%"
                 for h in header]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
