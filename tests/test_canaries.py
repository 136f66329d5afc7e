"""Canaries planted for DP audits: the three kinds, their ids, and the canary audit of an
algorithm audit (config ``data.canaries``) in the CLI, metrics.json and the report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from miaudit.audit.pipeline import _audit_canaries_too
from miaudit.cli import app
from miaudit.data import Dataset, load_dataset
from miaudit.data.canaries import CANARY_KINDS, add_canaries
from miaudit.exceptions import ValidationError

runner = CliRunner()


@pytest.fixture(scope="module")
def data() -> Dataset:
    return load_dataset("purchase-like", n_records=600, n_classes=10)


def test_random_label_canaries_change_only_their_labels(data):
    planted = add_canaries(data, 50, "random_label", seed=3)
    ds = planted.dataset
    at = np.flatnonzero(planted.mask(ds.record_ids))
    assert at.size == 50 and len(ds) == len(data)
    assert np.all(ds.y[at] != data.y[at])  # a *different* class each
    assert np.array_equal(np.delete(ds.y, at), np.delete(data.y, at))
    assert np.array_equal(ds.X, data.X)
    assert ds.meta["canaries"] == {"kind": "random_label", "n": 50}
    # every other class is drawn: the labels are not a fixed shift
    assert len(set(((ds.y[at] - data.y[at]) % data.n_classes).tolist())) > 3


def test_ood_canaries_are_new_records_off_the_data(data):
    planted = add_canaries(data, 40, "ood", seed=0)
    ds = planted.dataset
    assert len(ds) == len(data) + 40
    new = ds.X[len(data):]
    lo, hi = data.X.min(axis=0), data.X.max(axis=0)
    assert np.all((new >= lo) & (new <= hi))  # inside each feature's range ...
    # ... but not like any record: the binary features become fractions
    assert np.mean((new > 0) & (new < 1)) > 0.9
    assert planted.record_ids.tolist() == list(ds.record_ids[len(data):])
    assert not np.isin(planted.record_ids, data.record_ids).any()


def test_string_ids_and_natural_canaries():
    ds = Dataset(np.eye(4, dtype=np.float32), [0, 1, 0, 1], ["a", "b", "c", "d"], n_classes=2)
    ood = add_canaries(ds, 2, "ood")
    assert ood.record_ids.tolist() == ["canary-ood-00000", "canary-ood-00001"]
    natural = add_canaries(ds, 2, "natural", seed=1)
    assert np.array_equal(natural.dataset.y, ds.y) and natural.record_ids.size == 2
    with pytest.raises(ValidationError, match="5 > 4"):
        add_canaries(ds, 5, "random_label")
    with pytest.raises(Exception, match="Did you mean 'ood'"):
        add_canaries(ds, 1, "odd")
    assert set(CANARY_KINDS.names()) >= {"random_label", "ood", "natural"}


def test_canaries_in_the_population_move_to_the_audited_records():
    audit, pop = np.arange(0, 80), np.arange(80, 100)
    moved_back = set()
    for seed in range(20):
        a, p = _audit_canaries_too(audit, pop, np.array([1, 99]), np.random.default_rng(seed))
        assert 99 in a and 1 in a and a.size == 80 and p.size == 20
        assert not np.intersect1d(a, p).size
        moved_back |= set(np.setdiff1d(p, pop).tolist())
    assert len(moved_back) > 10  # drawn at random, not the lowest positions


def test_canary_audit_in_cli_metrics_and_report(tmp_path):
    """Non-private models memorise out-of-distribution canaries: the audit proves ε > 0."""
    out = tmp_path / "run"
    cfg = {
        "mode": "algorithm",
        "seed": 0,
        "output": str(out),
        "data": {
            "name": "purchase-like",
            "params": {"n_records": 800, "n_classes": 10},
            "population": 0.2,
            "canaries": {"n": 100, "kind": "ood", "attack": "loss"},
        },
        "training": {"recipe": "torch-mlp", "params": {"hidden_sizes": [64], "epochs": 15}},
        "n_references": 4,
        "attacks": ["loss", "lira"],
        "fprs": [0.01],
    }
    path = tmp_path / "canaries.yaml"
    path.write_text(yaml.safe_dump(cfg))
    result = runner.invoke(app, ["run", str(path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "Canary audit: 100 canaries (loss scores): multi-run ε ≥" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    audit = metrics["canary_audit"]
    assert audit["kind"] == "ood" and audit["n_canaries"] == 100
    assert audit["multi_run"]["epsilon"] > 0.5 and audit["one_run"]["epsilon"] > 0
    # every canary was audited (none lost to the population): 5 targets x 100 trials
    assert audit["n_trials"]["in"] + audit["n_trials"]["out"] == 5 * 100
    assert 'id="canary-audit"' in (out / "report.html").read_text()


def test_canary_config_errors(tmp_path):
    base = {"mode": "algorithm", "data": {"name": "digits"}, "attacks": ["loss"]}
    for canaries, message in [
        ({"n": 5, "attack": "lira"}, "not among the audit's attacks"),
        ({"n": 5, "kind": "odd"}, "unknown canary kind 'odd'. Did you mean 'ood'?"),
        ({"n": 0}, "greater than 0"),
    ]:
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump({**base, "data": {"name": "digits", "canaries": canaries}}))
        result = runner.invoke(app, ["run", str(path)])
        assert result.exit_code == 2 and message in result.output, result.output


def test_one_run_audit_uses_a_fair_coin_model():
    """17 models (the default 16 references + 1): the nested keep matrix's three base rows keep
    each record with probability 2/3, which would make pure-noise scores "prove" epsilon > 0.
    The one-run audit uses a balanced row instead, and proves nothing from noise."""
    import pandas as pd

    from miaudit.audit.canary_audit import audit_canaries
    from miaudit.data.splits import ODD_BASE_MODELS, nested_keep_matrix

    n, m, models = 3000, 600, 17
    epsilons = []
    for seed in range(6):
        rng = np.random.default_rng(100 + seed)
        keep = nested_keep_matrix(models, n, np.random.default_rng(seed))
        assert abs(keep[0].mean() - 2 / 3) < 0.02
        frames = [
            pd.DataFrame(
                {"loss": rng.normal(size=n), "is_member": keep[t], "target": t},
                index=pd.Index(np.arange(n), name="record_id"),
            )
            for t in range(models)
        ]
        out = audit_canaries(pd.concat(frames), np.arange(m), attack="loss", seed=seed)
        assert out["one_run"]["target"] >= ODD_BASE_MODELS
        epsilons.append(out["one_run"]["epsilon"])
    assert sum(e > 0 for e in epsilons) <= 1, epsilons
