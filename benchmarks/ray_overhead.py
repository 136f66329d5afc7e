"""What the ``ray`` executor costs on top of training in-process, on one machine.

``--models`` MLPs 600 → 256 → 100 (tanh) on ``purchase-like``, each on its half of the records,
trained and queried by :func:`~miaudit.audit.engine.train_and_query` into a fresh run store
(a) in-process, ``LocalExecutor(threads=cores)`` (one chunk after another; a chunk's vectorised
groups train side by side, one per core, when it has that many), (b) in-process on ``cores``
threads, ``ThreadExecutor(cores, threads_per_worker=1)`` (the same chunks as Ray), and (c)
through a local Ray instance with ``cores`` CPUs, one task per CPU with one torch thread each
(``RayExecutor(num_cpus=1)``). Ray is started, and every executor trains a few models untimed
first (imports, lazy initialisation, Ray's worker processes importing torch and miaudit) —
printed separately, as that is paid once per session, not per run. Ray's workers run at
the driver's priority (``RAY_worker_niceness=0``; Ray's default, 15, would make them yield the
cores to every other job of a shared machine). The executors are then timed
in turn ``--repeats`` times (order reversed every other repeat), so a slow spell of a shared
machine hits all; printed: each wall time, the spread of each executor over its repeats, the
mean queue wait and run time of the Ray tasks, and the ratios Ray / in-process.

Target: Ray ≤ 1.15× the in-process wall time once Ray is started.

Usage::

    python benchmarks/ray_overhead.py                    # 32 models, 2 cores, 2 repeats
    python benchmarks/ray_overhead.py --models 8 --epochs 2 --repeats 1   # a quick look
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from miaudit.audit.engine import RunResult, train_and_query
from miaudit.audit.executors import LocalExecutor, ThreadExecutor
from miaudit.audit.ray_executor import RayExecutor, import_ray
from miaudit.data import load_dataset
from miaudit.train import make_recipe

#: Environment variable with the niceness of Ray's worker processes (Ray's default: 15).
WORKER_NICENESS_ENV = "RAY_worker_niceness"
#: Models compared bit for bit between the executors (a sanity check, not a timing).
CHECKED_MODELS = [0, 1]


def timed_run(
    data: Any, recipe: Any, n_models: int, executor: Any, root: Path
) -> tuple[float, RunResult]:
    """Wall seconds of one ``train_and_query`` into the empty store ``root``, and its result."""
    start = time.perf_counter()
    result = train_and_query(data, n_models, recipe, store_root=root, quiet=True, executor=executor)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=32)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    data = load_dataset("purchase-like", n_records=args.records, seed=args.seed)
    recipe = make_recipe(
        "torch-mlp", hidden_sizes=(args.hidden,), epochs=args.epochs, seed=args.seed
    )
    print(
        f"{args.models} MLPs {data.input_shape[0]}→{args.hidden}→{data.n_classes} on "
        f"{args.records} purchase-like records (half each), {args.epochs} epochs; "
        f"{args.cores} cores, {args.repeats} repeat(s)"
    )

    # Ray runs its workers at nice 15 by default: on a machine shared with other jobs they would
    # yield the cores to everything else, which is a priority, not an overhead, of Ray.
    os.environ.setdefault(WORKER_NICENESS_ENV, "0")
    print(f"{WORKER_NICENESS_ENV}={os.environ[WORKER_NICENESS_ENV]}")
    ray = import_ray()
    start = time.perf_counter()
    ray.init(num_cpus=args.cores, include_dashboard=False, log_to_driver=False)
    started = time.perf_counter() - start
    executors: dict[str, Any] = {
        "local": LocalExecutor(threads=args.cores),
        "threads": ThreadExecutor(n_workers=args.cores, threads_per_worker=1),
        "ray": RayExecutor(num_cpus=1),
    }
    ray_ex = executors["ray"]
    before = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:  # untimed: imports, lazy inits, worker start
        warm = {
            name: timed_run(data, recipe, args.cores, ex, Path(tmp) / name)[0]
            for name, ex in executors.items()
        }
    torch.set_num_threads(before)
    print(
        f"Ray start {started:.1f} s; warm-up runs of {args.cores} models: "
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in warm.items())
        + " (Ray's workers import torch and miaudit) — once per session, not timed below"
    )

    times: dict[str, list[float]] = {name: [] for name in executors}
    queue: list[float] = []
    run: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            results = {}
            names = list(executors) if rep % 2 == 0 else list(reversed(executors))
            for name in names:
                seconds, results[name] = timed_run(
                    data, recipe, args.models, executors[name], Path(tmp) / f"{name}-{rep}"
                )
                torch.set_num_threads(before)
                times[name].append(seconds)
            queue += [t.queue_seconds for t in ray_ex.timings]
            run += [t.run_seconds for t in ray_ex.timings]
            same = all(
                np.array_equal(
                    results[name].observations(CHECKED_MODELS),
                    results["ray"].observations(CHECKED_MODELS),
                )
                for name in executors
            )
            print(
                f"repeat {rep + 1}: "
                + ", ".join(f"{name} {times[name][-1]:6.1f} s" for name in executors)
                + f" ({len(ray_ex.timings)} Ray tasks); models {CHECKED_MODELS} identical: {same}"
            )
    ray.shutdown()

    for name, values in times.items():
        spread = max(values) / min(values) - 1
        print(
            f"{name:>8}: median {statistics.median(values):6.1f} s, spread over repeats "
            f"{100 * spread:.0f}%"
        )
    print(
        f"Ray tasks: mean queue wait {statistics.mean(queue):.2f} s, mean run "
        f"{statistics.mean(run):.1f} s"
    )
    for base in ("local", "threads"):
        ratios = [r / b for r, b in zip(times["ray"], times[base], strict=True)]
        print(
            f"ratio Ray / {base}: median {statistics.median(ratios):.3f} "
            f"(repeats: {', '.join(f'{r:.3f}' for r in ratios)}; target <= 1.15)"
        )


if __name__ == "__main__":
    main()
