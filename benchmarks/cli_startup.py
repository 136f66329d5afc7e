"""Start-up time of the ``miaudit`` command: ``--help``, ``attacks`` and ``evaluate``.

Prints the best of ``REPEATS`` wall times of each command next to ``python -c pass`` (the
interpreter alone), measured in the same run. Target (issue 9): ``--help`` and ``attacks`` under
0.5 s on 2 cores.

    python benchmarks/cli_startup.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: Runs of each command; the best is reported (the others measure the machine's noise).
REPEATS = 5
#: The target for ``--help`` and ``attacks``, in seconds.
TARGET_SECONDS = 0.5
ROOT = Path(__file__).resolve().parents[1]


def best_time(argv: list[str]) -> float:
    """Best wall time of ``REPEATS`` runs of ``argv`` (each must exit 0)."""
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, cwd=ROOT)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    cli = [sys.executable, "-m", "miaudit.cli"]
    with tempfile.TemporaryDirectory() as out:
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "miaudit --help": [*cli, "--help"],
            "miaudit attacks": [*cli, "attacks"],
            "miaudit evaluate examples/scores.csv": [
                *cli, "evaluate", "examples/scores.csv", "--id-col", "record_id", "-q", "-o", out,
            ],
        }
        results = {name: best_time(argv) for name, argv in commands.items()}
    base = results["python -c pass"]
    print(f"best of {REPEATS} runs, seconds (target for --help and attacks: < {TARGET_SECONDS})")
    for name, seconds in results.items():
        extra = "" if name.startswith("python") else f"   (+{seconds - base:.3f} over python)"
        print(f"{name:<40} {seconds:7.3f}{extra}")


if __name__ == "__main__":
    main()
