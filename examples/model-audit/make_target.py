"""Make the files of the model-audit example: records.csv and target.skops.

Run once (seeded, so the files are reproducible)::

    python examples/model-audit/make_target.py            # writes next to this script
    python examples/model-audit/make_target.py --out DIR  # or into DIR

``records.csv`` stands for a user's own table: 2,000 records of a 4-class problem with 12
numeric features (``sklearn.datasets.make_classification``; 5% of the labels are flipped at
random, noise that a model can only learn by memorising it), a ``record_id`` column, the
``label`` and an ``is_member`` column: 1 for the random half that the target trained on, 0 for
the other half.

``target.skops`` is the target: a random forest (fully grown trees, so it over-fits) fitted on
the members only, saved with skops (no pickle). ``audit.yaml`` in this folder audits it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import skops.io as sio
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier

SEED = 0
N_RECORDS = 2000
N_FEATURES = 12
N_INFORMATIVE = 8
N_CLASSES = 4
#: Fraction of labels flipped at random by make_classification.
LABEL_NOISE = 0.05
#: Trees of the target forest (the same as the reference recipe in audit.yaml).
N_TREES = 100
#: Fraction of the records the target trains on.
MEMBER_FRACTION = 0.5

FEATURES = [f"f{i:02d}" for i in range(N_FEATURES)]


def make_records(seed: int = SEED) -> pd.DataFrame:
    """The table: ``record_id``, features ``f00..f11``, ``label``, ``is_member`` (0/1)."""
    rng = np.random.default_rng(seed)
    X, y = make_classification(
        n_samples=N_RECORDS,
        n_features=N_FEATURES,
        n_informative=N_INFORMATIVE,
        n_classes=N_CLASSES,
        flip_y=LABEL_NOISE,
        random_state=seed,
    )
    is_member = np.zeros(N_RECORDS, dtype=np.int64)
    is_member[rng.permutation(N_RECORDS)[: round(MEMBER_FRACTION * N_RECORDS)]] = 1
    table = pd.DataFrame(np.round(X, 5), columns=FEATURES)
    table.insert(0, "record_id", [f"rec-{i:04d}" for i in range(N_RECORDS)])
    table["label"] = y
    table["is_member"] = is_member
    return table


def train_target(records: pd.DataFrame, seed: int = SEED) -> RandomForestClassifier:
    """A random forest fitted on the members' features and labels."""
    members = records[records["is_member"] == 1]
    model = RandomForestClassifier(n_estimators=N_TREES, random_state=seed)
    return model.fit(members[FEATURES].to_numpy(), members["label"].to_numpy())


def make_target(folder: str | Path, seed: int = SEED) -> tuple[Path, Path]:
    """Write ``records.csv`` and ``target.skops`` into ``folder``; return their paths."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    records = make_records(seed)
    model = train_target(records, seed)
    csv_path, model_path = out / "records.csv", out / "target.skops"
    records.to_csv(csv_path, index=False)
    sio.dump(model, model_path)
    return csv_path, model_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args()
    csv_path, model_path = make_target(args.out)
    records = pd.read_csv(csv_path)
    model = sio.load(model_path, trusted=["sklearn.tree._tree.Tree"])
    for name, part in (
        ("members", records.is_member == 1),
        ("non-members", records.is_member == 0),
    ):
        acc = model.score(records.loc[part, FEATURES].to_numpy(), records.loc[part, "label"])
        print(f"target accuracy on its {name}: {acc:.3f} ({int(part.sum())} records)")
    print(f"wrote {csv_path} and {model_path}")


if __name__ == "__main__":
    main()
