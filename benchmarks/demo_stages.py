"""Wall time of ``miaudit demo`` per stage on this machine, and LiRA vs LOSS at 1% FPR.

Usage::

    python benchmarks/demo_stages.py [--references 16] [--epochs 60] [--out DIR]

Target (issue 5): the whole demo under 90 s on 2 CPU cores; LiRA's TPR at 1% FPR above LOSS's.
Prints numbers only; asserts nothing. Runs in a fresh folder so nothing is reused from a cache.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from miaudit.audit.pipeline import Audit
from miaudit.demo import DEMO_EPOCHS, DEMO_REFERENCES, demo_config

#: The FPR at which LiRA and LOSS are compared.
COMPARE_FPR = 1e-2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--references", type=int, default=DEMO_REFERENCES)
    parser.add_argument("--epochs", type=int, default=DEMO_EPOCHS)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="miaudit-demo-bench-"))
    cfg = demo_config(out, n_references=args.references, epochs=args.epochs, quiet=True)
    start = time.perf_counter()
    result = Audit(cfg).run()
    total = time.perf_counter() - start
    print(f"demo: {args.references + 1} models, {args.epochs} epochs, output {out}")
    for stage, seconds in result.timings.items():
        print(f"  {stage:<16} {seconds:8.2f} s")
    print(f"  {'total':<16} {total:8.2f} s   (target < 90 s on 2 cores)")
    print(f"models: train accuracy {result.models['train_accuracy'].mean():.4f}, "
          f"test accuracy {result.models['test_accuracy'].mean():.4f}")
    print(f"TPR at {COMPARE_FPR:.0%} FPR (pooled over all targets):")
    for name, summary in result.metrics.items():
        r = summary.at(COMPARE_FPR)
        lo, hi = r.tpr_interval
        print(f"  {name:<14} {100 * r.tpr:6.2f}%  [{100 * lo:.2f}–{100 * hi:.2f}%]  "
              f"AUC {summary.auc:.4f}")
    lira, loss = result.metrics["lira"].at(COMPARE_FPR), result.metrics["loss"].at(COMPARE_FPR)
    print(f"LiRA / LOSS at {COMPARE_FPR:.0%} FPR: {lira.tpr / max(loss.tpr, 1e-12):.2f}x")


if __name__ == "__main__":
    main()
