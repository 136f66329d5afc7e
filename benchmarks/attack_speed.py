"""Speed and memory of the reference-model attacks on arrays (issue 4 targets).

LiRA, every variant: n = 50,000 records, m = 256 references, q = 2 queries; target < 2 s each.
RMIA: the same plus z = 25,000 population records; target < 2 s and < 1 GB peak memory.
Also Attack-R and the calibrated losses on the same arrays.

Peak memory is the largest traced Python/numpy allocation during the call (tracemalloc), on top
of the inputs, which are built before. Prints a table; no asserts (timings are noisy on shared
machines). Run:  python benchmarks/attack_speed.py [--records N] [--references M] [--repeat R]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from miaudit.attacks.calibrated import attack_r_scores, calibrated_scores, sablayrolles_scores
from miaudit.attacks.lira import lira_scores
from miaudit.attacks.rmia import rmia_scores

TIME_TARGET_S = 2.0
MEMORY_TARGET_MB = 1024.0


@dataclass
class Row:
    name: str
    seconds: float
    peak_mb: float


def measure(name: str, fn: Callable[[], object], repeat: int) -> Row:
    """Best wall time over ``repeat`` runs, and the peak traced memory of one more run."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return Row(name, best, peak / 2**20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--references", type=int, default=256)
    parser.add_argument("--queries", type=int, default=2)
    parser.add_argument("--population", type=int, default=25_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n, m, q, z = args.records, args.references, args.queries, args.population

    rng = np.random.default_rng(0)
    keep = rng.random((m, n)).argsort(axis=0) < m // 2
    mu = rng.normal(size=(1, n, 1))
    reference = mu + keep[..., None] + rng.normal(size=(m, n, q))
    target = mu[0] + 0.5 + rng.normal(size=(n, q))
    pop_ref = rng.normal(size=(m, z, q))
    pop_target = rng.normal(size=(z, q))
    p_ref, p_target = expit(reference), expit(target)
    p_pop_ref, p_pop_target = expit(pop_ref), expit(pop_target)

    cases: list[tuple[str, Callable[[], object]]] = []
    for center in ("median", "mean"):
        for variance in ("per_record", "global"):
            cases.append(
                (
                    f"lira online {center}/{variance}",
                    lambda c=center, v=variance: lira_scores(
                        target, reference, keep, center=c, variance=v
                    ),
                )
            )
            for test in ("one_sided", "two_sided"):
                cases.append(
                    (
                        f"lira offline {center}/{variance}/{test}",
                        lambda c=center, v=variance, t=test: lira_scores(
                            target,
                            reference,
                            keep,
                            online=False,
                            center=c,
                            variance=v,
                            offline_test=t,
                        ),
                    )
                )
    for online in (True, False):
        cases.append(
            (
                f"rmia {'online' if online else 'offline'} z={z}",
                lambda o=online: rmia_scores(
                    p_target, p_ref, keep, p_pop_target, p_pop_ref, online=o
                ),
            )
        )
    cases += [
        ("attack_r", lambda: attack_r_scores(target, reference, keep)),
        ("calibrated (Watson)", lambda: calibrated_scores(target, reference, keep)),
        ("sablayrolles", lambda: sablayrolles_scores(target, reference, keep)),
    ]

    print(
        f"n={n} records, m={m} references, q={q} queries, z={z} population; best of "
        f"{args.repeat}; input reference array {reference.nbytes / 2**20:.0f} MiB"
    )
    print(f"{'attack':<42} {'seconds':>8} {'peak MiB':>9}  target")
    for name, fn in cases:
        row = measure(name, fn, args.repeat)
        flag = "ok" if row.seconds < TIME_TARGET_S else "SLOW"
        if name.startswith("rmia") and row.peak_mb >= MEMORY_TARGET_MB:
            flag += " MEMORY"
        print(f"{row.name:<42} {row.seconds:8.3f} {row.peak_mb:9.1f}  {flag}")


if __name__ == "__main__":
    main()
