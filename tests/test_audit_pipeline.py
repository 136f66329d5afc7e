"""End-to-end audits: the demo through the CLI, a model audit of a skops model, bad configs."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from miaudit.audit.pipeline import Audit
from miaudit.cli import app
from miaudit.config import ConfigError, load_config
from miaudit.data import n_in_per_record
from miaudit.data.builtin import load_digits
from miaudit.exceptions import MiauditError

runner = CliRunner()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _Cells(HTMLParser):
    """Collects data-attack/data-metric/data-value cells and embedded images."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[tuple[str, str], float] = {}
        self.images: list[str] = []
        self.headline_parts: list[str] = []
        self._in_headline = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "data-metric" in a:
            self.cells[(a["data-attack"], a["data-metric"])] = float(a["data-value"])
        if tag == "img":
            self.images.append(a["src"])
        if a.get("id") == "headline":
            self._in_headline = True

    def handle_endtag(self, tag):
        if tag == "p":
            self._in_headline = False

    def handle_data(self, data):
        if self._in_headline:
            self.headline_parts.append(data)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    res = runner.invoke(app, ["demo", "--out", str(out), "--references", "4", "--epochs", "15",
                              "--quiet"])
    assert res.exit_code == 0, res.output
    return out


def test_demo_cli_writes_a_self_contained_report_equal_to_metrics_json(demo_run):
    metrics = json.loads((demo_run / "metrics.json").read_text())
    parser = _Cells()
    parser.feed((demo_run / "report.html").read_text())
    # Plots are embedded, valid PNGs, and nothing is fetched from the network.
    assert len(parser.images) >= 2
    for src in parser.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == PNG_MAGIC
    html_text = (demo_run / "report.html").read_text()
    assert not re.search(r"""(src|href)=["']https?://""", html_text)
    # Every number in the table equals metrics.json.
    assert set(metrics["attacks"]) == {"loss", "lira", "lira_offline", "rmia", "attack_r",
                                       "shokri"}
    for name, entry in metrics["attacks"].items():
        m = entry["metrics"]
        assert parser.cells[(name, "auc")] == pytest.approx(m["auc"], abs=0)
        assert parser.cells[(name, "balanced_accuracy")] == m["balanced_accuracy"]
        assert parser.cells[(name, "advantage")] == m["advantage"]
        assert parser.cells[(name, "epsilon")] == m["epsilon"]["epsilon"]
        for r in m["tpr_at_fpr"]:
            assert parser.cells[(name, f"tpr@{r['target_fpr']!r}")] == r["tpr"]
    assert "".join(parser.headline_parts).strip() == metrics["headline"]


def test_demo_scores_are_traceable_to_record_ids(demo_run):
    scores = pd.read_parquet(demo_run / "scores.parquet")
    digits = load_digits()
    assert scores.index.name == "record_id"
    assert set(scores.index) <= set(digits.record_ids)
    # 5 models, each the target once; 10% of 1,797 digits held out as population.
    n_audit = len(digits) - round(0.1 * len(digits))
    assert len(scores) == 5 * n_audit
    by_id = dict(zip(digits.record_ids, digits.y, strict=True))
    assert (scores["label"].to_numpy() == np.array([by_id[i] for i in scores.index])).all()
    # Balanced keep matrix: every record is IN for exactly n_in_per_record(5) of the 5 targets.
    counts = scores.groupby(level=0)["is_member"].sum()
    assert (counts == n_in_per_record(5)).all()


def test_rerun_reuses_models_and_scores(demo_run, tmp_path):
    cfg = yaml.safe_load(runner.invoke(app, ["demo", "--print-config", "--out",
                                             str(demo_run), "--references", "4",
                                             "--epochs", "15"]).output)
    cfg["attacks"] = ["loss", "lira", "confidence"]
    cfg["quiet"] = True
    before = {p.name for p in (demo_run / "cache").iterdir()}
    result = Audit(cfg).run()
    after = {p.name for p in (demo_run / "cache").iterdir()}
    assert len(after - before) == 1  # only the new attack was computed
    assert result.models["from_store"].all()  # models come from the store: none trained
    assert result.metrics_dict()["models"]["n_trained"] == 0


def test_score_cache_is_keyed_by_resolved_parameters_and_scoring_code(demo_run, monkeypatch):
    """A parameter spelled out at its default reuses the cached scores; a change of the attack
    code (here: its hash) recomputes them instead of serving stale scores."""
    from miaudit.audit import pipeline

    cfg = yaml.safe_load(runner.invoke(app, ["demo", "--print-config", "--out",
                                             str(demo_run), "--references", "4",
                                             "--epochs", "15"]).output)
    cfg["quiet"] = True
    cfg["attacks"] = [{"name": "lira", "params": {"equalize": True, "center": "median"}}]
    cache = demo_run / "cache"
    before = {p.name for p in cache.iterdir()}
    Audit(cfg).run()
    assert {p.name for p in cache.iterdir()} == before
    monkeypatch.setattr(pipeline, "scoring_code_hash", lambda: "changed attack code")
    Audit(cfg).run()
    assert len({p.name for p in cache.iterdir()} - before) == 1


def test_model_audit_of_a_skops_sklearn_model(tmp_path):
    import skops.io as sio
    from sklearn.ensemble import RandomForestClassifier

    ds = load_digits(flat=True)
    rng = np.random.default_rng(0)
    member = rng.random(len(ds)) < 0.5
    model = RandomForestClassifier(n_estimators=30, random_state=0)
    model.fit(ds.X[member].reshape(member.sum(), -1), ds.y[member])
    path = tmp_path / "target.skops"
    sio.dump(model, path)
    cfg = {
        "mode": "model",
        "output": str(tmp_path / "out"),
        "target": {"model": str(path)},
        "training": {"recipe": "sklearn", "params": {
            "estimator": "sklearn.ensemble.RandomForestClassifier",
            "params": {"n_estimators": 30}}},
        "n_references": 4,
        "attacks": ["loss", "lira_offline", "attack_r"],
        "fprs": [0.01, 0.1],
        "quiet": True,
    }
    # Tree types are not trusted by skops by default: refused, with the types named.
    with pytest.raises(MiauditError, match=r"not trusted by default.*sklearn\.tree\._tree\.Tree"):
        Audit(cfg, dataset=ds, is_member=member).run()
    cfg["target"]["trusted"] = ["sklearn.tree._tree.Tree"]
    result = Audit(cfg, dataset=ds, is_member=member).run()
    assert set(result.metrics) == {"loss", "lira_offline", "attack_r"}
    s = result.metrics["loss"]
    assert s.n_members + s.n_non_members == len(ds)
    assert s.n_members == member.sum()
    # A random forest memorises its training set: LOSS separates members clearly.
    assert s.auc > 0.7
    assert (result.scores["target"] == "target").all()
    assert (tmp_path / "out" / "report.html").is_file()


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "audit.yaml"
    p.write_text(text)
    return p


def test_unknown_attack_is_a_clear_error_listing_valid_ones(tmp_path):
    p = _write(tmp_path, "data: {name: digits}\nattacks:\n  - loss\n  - lirra\n")
    with pytest.raises(ConfigError, match=r"line 4: attacks.1: unknown attack 'lirra'.*Did you "
                                          r"mean 'lira'.*Valid attacks: .*attack_r"):
        load_config(p)
    res = runner.invoke(app, ["run", str(p)])
    assert res.exit_code == 2
    assert "lirra" in res.output and "Traceback" not in res.output


def test_unknown_key_names_the_yaml_line(tmp_path):
    p = _write(tmp_path, "data:\n  name: digits\nn_referenes: 4\n")
    with pytest.raises(ConfigError, match=r"line 3: n_referenes: unknown key.*n_references"):
        load_config(p)


def test_missing_config_and_missing_data_file(tmp_path):
    res = runner.invoke(app, ["run", str(tmp_path / "nope.yaml")])
    assert res.exit_code == 2 and "config file not found" in res.output
    p = _write(tmp_path, "data: {path: missing.csv, params: {label_col: y}}\n"
                         "n_references: 4\nquiet: true\n")
    res = runner.invoke(app, ["run", str(p)])
    assert res.exit_code == 2
    assert "missing.csv" in res.output


def test_wrong_label_column(tmp_path):
    pd.DataFrame({"f1": [0.1, 0.2] * 20, "y": [0, 1] * 20}).to_csv(tmp_path / "d.csv",
                                                                   index=False)
    p = _write(tmp_path, "data: {path: d.csv, params: {label_col: label}}\n"
                         "n_references: 4\nquiet: true\n")
    res = runner.invoke(app, ["run", str(p)])
    assert res.exit_code == 2
    assert "label" in res.output and "f1" in res.output  # names the column and lists those present


def test_too_few_records_for_the_models(tmp_path):
    pd.DataFrame({"f1": np.arange(6.0), "y": [0, 1] * 3}).to_csv(tmp_path / "d.csv",
                                                                 index=False)
    p = _write(tmp_path, "data: {path: d.csv, params: {label_col: y}}\n"
                         "n_references: 4\nquiet: true\n")
    res = runner.invoke(app, ["run", str(p)])
    assert res.exit_code == 2
    assert "leave 6 records to audit; an audit needs at least 20" in res.output


def test_too_few_references_and_missing_population_fail_before_training(tmp_path):
    p = _write(tmp_path, "data: {name: digits}\nn_references: 2\n")
    with pytest.raises(ConfigError, match=r"n_references: mode 'algorithm' needs at least 3"):
        load_config(p)
    p = _write(tmp_path, "data: {name: digits}\nn_references: 4\nattacks: [lira, rmia]\n"
                         f"output: {tmp_path / 'out'}\nquiet: true\n")
    res = runner.invoke(app, ["run", str(p)])
    assert res.exit_code == 2
    assert "['rmia'] need population records" in res.output
    assert not (tmp_path / "out" / "store").exists()  # nothing was trained


def test_more_references_extend_the_keep_matrix_and_train_only_new_models(tmp_path):
    def run(n_refs: int):
        return Audit(data={"name": "digits", "population": 0.1}, n_references=n_refs,
                     output=str(tmp_path), attacks=["loss", "lira"], quiet=True,
                     training={"recipe": "torch-mlp", "params": {"epochs": 3}}).run()

    first = run(3)
    second = run(7)
    # The 4 models of the first run are reused: their scores as targets are unchanged...
    a = first.scores[first.scores["target"] == 0]["loss"].to_numpy()
    b = second.scores[second.scores["target"] == 0]["loss"].to_numpy()
    np.testing.assert_array_equal(a, b)
    # ...and every record is still IN for exactly half of the 8 models.
    counts = second.scores.groupby(level=0)["is_member"].sum()
    assert (counts == n_in_per_record(8)).all()
    stores = list((tmp_path / "store").iterdir())
    assert len(stores) == 1  # one lineage: extended, not redrawn
    assert second.metrics_dict()["models"]["n_trained"] == 4  # only the 4 new models
    again = run(3)
    assert again.models["from_store"].all()
    assert again.metrics_dict()["models"]["n_trained"] == 0


def test_empty_attack_list_is_a_config_error(tmp_path):
    p = _write(tmp_path, "data: {name: digits}\nattacks: []\nn_references: 3\n")
    with pytest.raises(ConfigError, match=r"line 2: attacks: List should have at least 1 item"):
        load_config(p)


def test_callable_target_returning_probabilities_is_read_as_probabilities(tmp_path):
    from sklearn.linear_model import LogisticRegression

    ds = load_digits(flat=True)
    member = np.random.default_rng(1).random(len(ds)) < 0.5
    model = LogisticRegression(max_iter=300).fit(ds.X[member], ds.y[member])
    cfg = {"mode": "model", "output": str(tmp_path / "o"), "target": {},
           "training": {"recipe": "sklearn", "params": {
               "estimator": "sklearn.linear_model.LogisticRegression",
               "params": {"max_iter": 300}}},
           "n_references": 2, "attacks": ["loss"], "fprs": [0.1], "quiet": True}
    auto = Audit(cfg, dataset=ds, is_member=member, target_predict=model.predict_proba).run()
    cfg["target"] = {"output_kind": "probs"}
    cfg["output"] = str(tmp_path / "p")
    given = Audit(cfg, dataset=ds, is_member=member, target_predict=model.predict_proba).run()
    np.testing.assert_allclose(auto.scores["loss"], given.scores["loss"])
    # LOSS on probabilities: -log p_y of the model.
    p = model.predict_proba(ds.X)[np.arange(len(ds)), ds.y]
    np.testing.assert_allclose(auto.scores["loss"].to_numpy(), np.log(p), atol=1e-6)


def test_string_labels_are_reported_as_written(tmp_path):
    """A CSV with string labels: the models see 0..C-1, scores.csv and the vulnerability table
    show the labels of the file."""
    rng = np.random.default_rng(0)
    n = 120
    names = np.array(["cat", "dog", "emu"])
    y = rng.integers(0, 3, n)
    X = rng.normal(size=(n, 4)) + y[:, None]
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(4)])
    frame["kind"] = names[y]
    frame.to_csv(tmp_path / "d.csv", index=False)
    p = _write(tmp_path, "data: {path: d.csv, params: {label_col: kind}}\n"
                         "training: {recipe: sklearn, params: {estimator: "
                         "sklearn.linear_model.LogisticRegression}}\n"
                         "n_references: 4\nattacks: [loss]\nfprs: [0.1]\n"
                         f"output: {tmp_path / 'out'}\nquiet: true\n")
    result = Audit(load_config(p)).run()
    by_id = dict(enumerate(names[y]))
    assert set(result.scores["label"]) == {"cat", "dog", "emu"}
    assert all(result.scores["label"].to_numpy() == [by_id[i] for i in result.scores.index])
    written = pd.read_csv(tmp_path / "out" / "scores.csv")
    assert set(written["label"]) == {"cat", "dog", "emu"}
    assert set(result.vulnerability["label"]) <= {"cat", "dog", "emu"}


def test_bad_training_parameter_names_its_yaml_line(tmp_path):
    head = "data: {name: digits}\ntraining:\n  recipe: torch-mlp\n  params:\n    epochs: 3\n"
    p = _write(tmp_path, head + "    hiden_sizes: [16]\nn_references: 4\n")
    with pytest.raises(ConfigError, match=r"line 6: training\.params\.hiden_sizes: .*unknown "
                                          r"parameter.*Did you mean 'hidden_sizes'"):
        load_config(p)
    p = _write(tmp_path, head + "    lr: -1\nn_references: 4\n")
    with pytest.raises(ConfigError, match=r"line 6: training\.params\.lr: .*lr: expected a "
                                          r"number in \(0\.0, inf\), got -1"):
        load_config(p)
