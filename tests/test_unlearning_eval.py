"""The end-to-end unlearning evaluation (train, unlearn, U-LiRA, challenge score) and
``miaudit unlearning``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from miaudit.audit.unlearning_eval import UNLEARNERS, evaluate_unlearning, label_signal
from miaudit.cli import app
from miaudit.exceptions import ValidationError

runner = CliRunner()


@pytest.fixture(scope="module")
def memorised():
    """Random labels on 100 Gaussian features: whatever a model knows of a record's label it
    memorised, so training on it (and not unlearning) shows."""
    rng = np.random.default_rng(0)
    return rng.standard_normal((240, 100)), rng.integers(0, 2, 240)


def test_retraining_is_perfect_forgetting_and_doing_nothing_is_caught(memorised):
    X, y = memorised
    kwargs = {"n_models": 24, "n_targets": 6, "quiet": True, "seed": 0}
    exact = evaluate_unlearning(X, y, LogisticRegression(), "retrain", **kwargs)
    nothing = evaluate_unlearning(X, y, LogisticRegression(), "none", **kwargs)
    # retraining from scratch is what the retrained pool is: epsilon 0 everywhere
    assert exact.challenge.score == pytest.approx(1.0)
    lo, hi = exact.balanced_accuracy_interval()
    assert lo < 0.5 < hi, (lo, hi)
    assert nothing.ulira.balanced_accuracy > 0.65
    lo, hi = nothing.balanced_accuracy_interval()
    assert 0.5 < lo <= nothing.ulira.balanced_accuracy <= hi <= 1.0
    assert nothing.challenge.score < 0.2
    # per record: doing nothing leaves records told apart (positive separation), retraining
    # leaves no systematic trace
    assert np.nanmean(nothing.record_separation()) > 1.0
    assert np.nanmean(nothing.record_separation()) > 3 * abs(np.nanmean(exact.record_separation()))


def test_summary_traces_each_forget_record(memorised):
    X, y = memorised
    ids = [f"r{i}" for i in range(len(X))]
    res = evaluate_unlearning(
        X, y, LogisticRegression(), "none", record_ids=ids, n_models=6, n_targets=2,
        n_forget=5, quiet=True,
    )
    out = res.to_dict()
    assert len(out["records"]) == 5 and len(set(res.forget_ids)) == 5
    assert all(r["record_id"] in ids for r in out["records"])
    assert json.dumps(out)  # serialisable


def test_label_signal_is_logit_scaled_confidence_of_the_label():
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    y = np.array([3, 3, 7, 7])  # labels that are not 0..C-1
    model = LogisticRegression().fit(X, y)
    p = model.predict_proba(X)[np.arange(4), [0, 0, 1, 1]]
    np.testing.assert_allclose(label_signal(model, X, y), np.log(p / (1 - p)), rtol=1e-5)
    with pytest.raises(ValidationError, match="never saw"):
        label_signal(model, X, np.array([3, 3, 7, 5]))


def test_bad_settings_are_refused(memorised):
    X, y = memorised
    with pytest.raises(ValidationError, match="n_models"):
        evaluate_unlearning(X, y, LogisticRegression(), n_models=5, n_targets=4)
    with pytest.raises(ValidationError, match="n_forget"):
        evaluate_unlearning(X[:20], y[:20], LogisticRegression(), n_forget=18)
    with pytest.raises(Exception, match="Did you mean 'retrain'"):
        evaluate_unlearning(X, y, LogisticRegression(), "retrian")
    assert {"retrain", "finetune", "none"} <= set(UNLEARNERS.names())


def test_cli_on_a_csv_with_a_users_unlearner(memorised, tmp_path, monkeypatch):
    X, y = memorised
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])]).assign(label=y)
    csv = tmp_path / "records.csv"
    frame.to_csv(csv, index=False)
    (tmp_path / "my_unlearner.py").write_text(
        "from miaudit.audit.unlearning import NoUnlearning\n"
        "def make(features, labels, seed):\n    return NoUnlearning()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    args = [
        "unlearning", "--data", str(csv), "--label-col", "label",
        "--estimator", "LogisticRegression", "--param", "C=1.0", "--unlearner", "my_unlearner:make",
        "--models", "8", "--targets", "2", "--forget", "10", "--out", str(tmp_path / "out"),
    ]
    refused = runner.invoke(app, args)
    assert refused.exit_code != 0 and "trust" in refused.output.lower(), refused.output
    result = runner.invoke(app, [*args, "--trust-code"])
    assert result.exit_code == 0, result.output
    assert "U-LiRA tells unlearned from retrained models" in result.output
    written = json.loads((tmp_path / "out" / "unlearning.json").read_text())
    assert written["config"]["params"] == {"C": 1.0}
    assert written["unlearner"] == "my_unlearner:make"
    assert len(written["records"]) == 10
