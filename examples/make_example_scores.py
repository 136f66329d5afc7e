"""Generate examples/scores.csv, the small score file that `miaudit evaluate` is shown on.

Run once: ``python examples/make_example_scores.py``. Fixed seed, so the file is reproducible.

1,000 members and 1,000 non-members. Non-member scores are N(0, 1). Most member scores are
N(0.3, 1) (the model barely distinguishes them), but 10 % are N(3, 0.7): a few records are
strongly memorised, which is what a low-FPR metric detects and an AUC hides.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

SEED = 0
N_PER_CLASS = 1000
VULNERABLE_FRACTION = 0.10
SHIFT, VULNERABLE_MEAN, VULNERABLE_SD = 0.3, 3.0, 0.7
DECIMALS = 5


def make_scores(rng: np.random.Generator) -> pd.DataFrame:
    vulnerable = rng.random(N_PER_CLASS) < VULNERABLE_FRACTION
    members = np.where(
        vulnerable,
        rng.normal(VULNERABLE_MEAN, VULNERABLE_SD, N_PER_CLASS),
        rng.normal(SHIFT, 1.0, N_PER_CLASS),
    )
    non_members = rng.normal(0.0, 1.0, N_PER_CLASS)
    order = rng.permutation(2 * N_PER_CLASS)
    return pd.DataFrame(
        {
            "record_id": [f"r{i:04d}" for i in range(2 * N_PER_CLASS)],
            "score": np.round(np.r_[members, non_members][order], DECIMALS),
            "is_member": np.r_[np.ones(N_PER_CLASS, int), np.zeros(N_PER_CLASS, int)][order],
        }
    )


if __name__ == "__main__":
    out = Path(__file__).with_name("scores.csv")
    make_scores(np.random.default_rng(SEED)).to_csv(out, index=False)
    print(f"wrote {out}")
