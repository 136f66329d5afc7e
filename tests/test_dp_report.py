"""An algorithm audit of a DP-SGD recipe: the accountant's ε in the models table, metrics.json,
the CLI and the report, beside the audit's lower bound at its stated confidence."""

from __future__ import annotations

import json

import yaml
from typer.testing import CliRunner

from miaudit.cli import app

runner = CliRunner()


def test_dp_audit_reports_claimed_and_proven_epsilon(tmp_path):
    config = {
        "mode": "algorithm",
        "seed": 0,
        "output": str(tmp_path / "out"),
        "data": {"name": "digits"},
        "training": {
            "recipe": "torch-mlp",
            "params": {
                "hidden_sizes": [32],
                "epochs": 4,
                "dp": {"noise_multiplier": 1.0, "max_grad_norm": 1.0, "accountant": "rdp"},
            },
        },
        "n_references": 3,
        "attacks": ["loss", "lira"],
        "fprs": [0.1],
    }
    path = tmp_path / "dp.yaml"
    path.write_text(yaml.safe_dump(config))
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 0, result.output
    assert "Differential privacy: claimed ε = " in result.output
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    claim = metrics["privacy"]
    assert 0 < claim["claimed_epsilon"] < 100 and claim["claimed_delta"] == 1e-5
    # A valid bound never exceeds what the accountant guarantees (up to its confidence).
    assert 0 <= claim["audit_epsilon"] <= claim["claimed_epsilon"]
    assert claim["confidence"] == 1 - 2 * 0.05  # Bonferroni over the two attacks
    html = (tmp_path / "out" / "report.html").read_text()
    assert 'id="privacy"' in html and "claimed ε" in html
