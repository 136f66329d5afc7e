"""`miaudit audit-dp`: the DP audits of miaudit.audit.dp on a canary score file."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from miaudit.audit import dp
from miaudit.cli import app

runner = CliRunner()


@pytest.fixture
def canaries(tmp_path):
    rng = np.random.default_rng(0)
    member = rng.random(1000) < 0.5
    scores = rng.normal(size=1000) + 3.0 * member
    path = tmp_path / "canaries.csv"
    pd.DataFrame({"score": scores, "is_member": member}).to_csv(path, index=False)
    return path, scores, member


@pytest.mark.parametrize("method", ["one-run", "canary", "gdp"])
def test_audit_dp_matches_the_python_function(canaries, tmp_path, method):
    path, scores, member = canaries
    out = tmp_path / f"{method}.json"
    result = runner.invoke(app, ["audit-dp", str(path), "--method", method, "--claimed", "8",
                                 "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "claimed ε = 8; the audit proves ε ≥ " in result.output
    got = json.loads(out.read_text())["epsilon"]
    if method == "one-run":
        want = dp.one_run_audit(scores, member, delta=1e-5).epsilon
    elif method == "canary":
        want = dp.canary_audit(scores[member], scores[~member], delta=1e-5).epsilon
    else:
        want = dp.gdp_audit(scores[member], scores[~member], delta=1e-5).epsilon
    assert got == pytest.approx(want) and got > 1.0


def test_audit_dp_unknown_method(canaries):
    result = runner.invoke(app, ["audit-dp", str(canaries[0]), "--method", "two-run"])
    assert result.exit_code == 2 and "--method: expected one of" in result.output
