"""Start-up time of the ``miaudit`` command: ``--help``, ``attacks``, ``attacks lira`` and
``evaluate``.

Prints the best of ``REPEATS`` wall times of each command next to ``python -c pass`` (the
interpreter alone), measured in the same run. Target (issue 9): ``--help`` and ``attacks`` under
0.5 s on 2 cores. ``attacks`` reads the listing from a cache file that its first run writes
(:mod:`miaudit.attacks._catalog`); ``attacks (no cache)`` times that first run, with the cache
folder emptied before each run.

    python benchmarks/cli_startup.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

#: Runs of each command; the best is reported (the others measure the machine's noise).
REPEATS = 5
#: The target for ``--help`` and ``attacks``, in seconds.
TARGET_SECONDS = 0.5
ROOT = Path(__file__).resolve().parents[1]


def best_time(
    argv: list[str], env: dict[str, str] | None = None, before: Callable[[], object] | None = None
) -> float:
    """Best wall time of ``REPEATS`` runs of ``argv`` (each must exit 0) in environment ``env``
    (default: this one), calling ``before()`` ahead of each run, untimed."""
    times = []
    for _ in range(REPEATS):
        if before is not None:
            before()
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, cwd=ROOT, env=env)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    cli = [sys.executable, "-m", "miaudit.cli"]
    with tempfile.TemporaryDirectory() as out, tempfile.TemporaryDirectory() as cache:
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "miaudit --help": [*cli, "--help"],
            "miaudit attacks": [*cli, "attacks"],
            "miaudit attacks lira": [*cli, "attacks", "lira"],
            "miaudit evaluate examples/scores.csv": [
                *cli, "evaluate", "examples/scores.csv", "--id-col", "record_id", "-q", "-o", out,
            ],
        }
        results = {name: best_time(argv) for name, argv in commands.items()}
        cold = Path(cache) / "home"
        results["miaudit attacks (no cache)"] = best_time(
            [*cli, "attacks"],
            env={**os.environ, "XDG_CACHE_HOME": str(cold)},
            before=lambda: shutil.rmtree(cold, ignore_errors=True),
        )
    base = results["python -c pass"]
    print(f"best of {REPEATS} runs, seconds (target for --help and attacks: < {TARGET_SECONDS})")
    for name, seconds in results.items():
        extra = "" if name.startswith("python") else f"   (+{seconds - base:.3f} over python)"
        print(f"{name:<40} {seconds:7.3f}{extra}")


if __name__ == "__main__":
    main()
