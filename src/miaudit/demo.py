"""The embedded default audit (``miaudit demo``): an MLP on scikit-learn's bundled digits.

Seventeen MLPs (one hidden layer of 256 tanh units, trained to 100% training accuracy) are
trained as one vectorised ensemble, each on a random half of the 1,617 audited digits; 180
digits (10%) are held out as population records that no model sees. Each model in turn is the
target and the other 16 its references (leave-one-out); attacks LOSS, LiRA online and
offline, RMIA, Attack-R and Shokri's shadow models run against every target, and the ROC pools
all targets. Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from miaudit.config import AuditConfig, parse_config

#: Reference models of the demo (the target is one more model).
DEMO_REFERENCES = 16
#: Epochs of the demo's MLPs: enough to reach 100% training accuracy on digits.
DEMO_EPOCHS = 60
#: Attacks the demo runs.
DEMO_ATTACKS = ("loss", "lira", "lira_offline", "rmia", "attack_r", "shokri")


def demo_config_dict(
    output: str | Path = "miaudit-demo",
    *,
    n_references: int = DEMO_REFERENCES,
    epochs: int = DEMO_EPOCHS,
    quiet: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    """The demo's configuration as a mapping (what ``miaudit demo --print-config`` shows)."""
    return {
        "mode": "algorithm",
        "seed": seed,
        "output": str(output),
        "data": {"name": "digits", "population": 0.1},
        "training": {
            "recipe": "torch-mlp",
            "params": {"hidden_sizes": [256], "epochs": epochs, "batch_size": 32, "lr": 0.05},
        },
        "n_references": n_references,
        "queries": ["identity"],
        "attacks": list(DEMO_ATTACKS),
        "fprs": [0.01, 0.001, 0.0001],
        "quiet": quiet,
    }


def demo_config(output: str | Path = "miaudit-demo", **kwargs: Any) -> AuditConfig:
    """The demo's validated :class:`~miaudit.config.AuditConfig` (see :func:`demo_config_dict`)."""
    return parse_config(demo_config_dict(output, **kwargs), source="demo")
