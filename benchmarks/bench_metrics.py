"""Time miaudit.metrics on synthetic scores of growing size; prints one line per size.

Run: ``python benchmarks/bench_metrics.py [--sizes 10000 100000] [--n-bootstrap 1000]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from miaudit import metrics

DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
#: Mean shift of member scores (standard normal non-members): AUC ≈ 0.64.
SHIFT = 0.5


def _time(fn, *args, **kwargs) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES))
    parser.add_argument("--n-bootstrap", type=int, default=metrics.DEFAULT_N_BOOTSTRAP)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(
        f"{'records':>10} {'roc_curve':>10} {'auc_interval':>13} {'epsilon':>9} {'summarize':>10}"
    )
    for n in args.sizes:
        member = rng.random(n) < 0.5
        scores = rng.normal(size=n) + SHIFT * member
        b = args.n_bootstrap
        t_roc = _time(metrics.roc_curve, scores, member)
        t_boot = _time(metrics.auc_interval, scores, member, n_bootstrap=b, rng=0)
        t_eps = _time(metrics.epsilon_lower_bound_from_scores, scores, member)
        t_sum = _time(metrics.summarize, scores, member, n_bootstrap=b, rng=0)
        print(f"{n:>10} {t_roc:>9.3f}s {t_boot:>12.3f}s {t_eps:>8.3f}s {t_sum:>9.3f}s")


if __name__ == "__main__":
    main()
