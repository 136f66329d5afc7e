"""The examples under examples/ run as the docs say: digits-audit.yaml and model-audit/.

The configs are loaded as shipped (so a typo in an example fails here) and only shrunk (fewer
reference models, fewer epochs) to keep this file fast.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
import yaml
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from miaudit.audit.pipeline import Audit, n_population
from miaudit.cli import app
from miaudit.config import load_config
from miaudit.data import n_in_per_record
from miaudit.data.builtin import load_digits

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MODEL_AUDIT = EXAMPLES / "model-audit"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: Shrunk settings of the runs in this file (the examples themselves use more).
TEST_REFERENCES = 4
TEST_EPOCHS = 15
TREES_TRUSTED = "sklearn.tree._tree.Tree"

runner = CliRunner()


class _Images(HTMLParser):
    """The ``src`` of every ``<img>``."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.sources.append(dict(attrs)["src"] or "")


def _assert_self_contained(report: Path) -> None:
    text = report.read_text()
    parser = _Images()
    parser.feed(text)
    assert len(parser.sources) >= 2  # ROC and score histograms
    for src in parser.sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == PNG_MAGIC
    assert not re.search(r"""(src|href)=["']https?://""", text)


def _tpr_at_fpr_by_loop(scores: np.ndarray, member: np.ndarray, fpr: float) -> float:
    """Largest TPR over thresholds ``score >= t`` whose FPR is <= ``fpr`` (plain loop)."""
    best = 0.0
    for t in np.unique(scores):
        flagged = scores >= t
        if flagged[~member].mean() <= fpr:
            best = max(best, flagged[member].mean())
    return best


def _write_yaml(cfg: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


# ------------------------------------------------------------------------- algorithm audit
@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    cfg = yaml.safe_load((EXAMPLES / "digits-audit.yaml").read_text())
    cfg["n_references"] = TEST_REFERENCES
    cfg["training"]["params"]["epochs"] = TEST_EPOCHS
    tmp = tmp_path_factory.mktemp("digits")
    out = tmp / "out"
    res = runner.invoke(app, ["run", str(_write_yaml(cfg, tmp / "audit.yaml")), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "report:" in res.output and "identifies" in res.output
    return cfg, out


def test_digits_example_is_a_valid_config_as_shipped() -> None:
    cfg = load_config(EXAMPLES / "digits-audit.yaml")
    assert cfg.mode == "algorithm" and cfg.data.name == "digits"
    assert cfg.output == EXAMPLES / "miaudit-runs" / "digits-audit"  # relative to the file


def test_digits_example_report_and_metrics(digits_run: tuple[dict, Path]) -> None:
    cfg, out = digits_run
    _assert_self_contained(out / "report.html")
    metrics = json.loads((out / "metrics.json").read_text())
    labels = [a if isinstance(a, str) else a.get("label", a["name"]) for a in cfg["attacks"]]
    assert list(metrics["attacks"]) == labels
    two_sided = metrics["attacks"]["lira_offline_2s"]
    assert two_sided["name"] == "lira_offline"
    assert two_sided["params"] == {"offline_test": "two_sided"}
    # Leave-one-out over n_references + 1 models; each audited record is IN for
    # n_in_per_record of them.
    n_models = TEST_REFERENCES + 1
    n_audit = len(load_digits()) - n_population(cfg["data"]["population"], len(load_digits()))
    for entry in metrics["attacks"].values():
        m = entry["metrics"]
        assert m["n_members"] == n_audit * n_in_per_record(n_models)
        assert m["n_members"] + m["n_non_members"] == n_models * n_audit
        assert [r["target_fpr"] for r in m["tpr_at_fpr"]] == cfg["fprs"]


def test_digits_example_scores_file_gives_the_metrics(digits_run: tuple[dict, Path]) -> None:
    _, out = digits_run
    metrics = json.loads((out / "metrics.json").read_text())["attacks"]
    scores = pd.read_csv(out / "scores.csv", index_col="record_id")
    member = scores["is_member"].to_numpy(bool)
    for name in ("loss", "lira"):
        s = scores[name].to_numpy()
        assert roc_auc_score(member, s) == pytest.approx(metrics[name]["metrics"]["auc"], abs=1e-12)
        tpr = metrics[name]["metrics"]["tpr_at_fpr"][0]
        assert _tpr_at_fpr_by_loop(s, member, tpr["target_fpr"]) == pytest.approx(tpr["tpr"])


def test_digits_example_report_lists_top_records(digits_run: tuple[dict, Path]) -> None:
    cfg, out = digits_run
    top = cfg["report"]["top_records"]
    ids = pd.read_csv(out / "vulnerability.csv")["record_id"].tolist()
    html = (out / "report.html").read_text()
    assert all(f">{i}<" in html for i in ids[:top])
    assert not any(f">{i}<" in html for i in ids[top : top + 5])


# ---------------------------------------------------------------------------- model audit
def _make_target_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_target", MODEL_AUDIT / "make_target.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def model_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, Path]:
    folder = tmp_path_factory.mktemp("model-audit")
    _make_target_module().make_target(folder)
    cfg = yaml.safe_load((MODEL_AUDIT / "audit.yaml").read_text())
    cfg["n_references"] = TEST_REFERENCES
    config = _write_yaml(cfg, folder / "audit.yaml")
    out = folder / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)  # as the docs run it: from the example's folder
        res = runner.invoke(app, ["run", "audit.yaml", "--out", str(out)])
    assert res.exit_code == 0, res.output
    return cfg, config, out


def test_make_target_is_seeded_and_overfits() -> None:
    module = _make_target_module()
    a, b = module.make_records(), module.make_records()
    pd.testing.assert_frame_equal(a, b)
    assert a["is_member"].sum() == len(a) // 2
    model = module.train_target(a)
    members = a[a["is_member"] == 1]
    assert model.score(members[module.FEATURES].to_numpy(), members["label"]) == 1.0


def test_model_example_report_and_membership(model_run: tuple[dict, Path, Path]) -> None:
    cfg, config, out = model_run
    _assert_self_contained(out / "report.html")
    records = pd.read_csv(config.parent / "records.csv")
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["attacks"]) == cfg["attacks"]
    n_pop = n_population(cfg["data"]["population"], len(records))
    for entry in metrics["attacks"].values():
        m = entry["metrics"]
        assert m["n_members"] == records["is_member"].sum()
        assert m["n_non_members"] == (records["is_member"] == 0).sum() - n_pop
    # The forest memorises its members: LOSS separates them, LiRA far better at low FPR.
    loss, lira = (metrics["attacks"][k]["metrics"] for k in ("loss", "lira"))
    assert loss["auc"] > 0.6
    assert lira["tpr_at_fpr"][0]["tpr"] > 2 * loss["tpr_at_fpr"][0]["tpr"]


def test_model_example_scores_are_the_targets_own_losses(
    model_run: tuple[dict, Path, Path],
) -> None:
    """The LOSS score of each record id is log p_y of the saved forest on that CSV row."""
    _, config, out = model_run
    records = pd.read_csv(config.parent / "records.csv", index_col="record_id")
    model = sio.load(config.parent / "target.skops", trusted=[TREES_TRUSTED])
    scores = pd.read_parquet(out / "scores.parquet")
    rows = records.loc[scores.index]
    features = rows.drop(columns=["label", "is_member"]).to_numpy()
    proba = model.predict_proba(features)[np.arange(len(rows)), rows["label"].to_numpy()]
    expected = np.log(np.maximum(proba, np.finfo(np.float64).tiny))
    np.testing.assert_allclose(scores["loss"].to_numpy(), expected, rtol=1e-9, atol=1e-9)
    assert (scores["is_member"].to_numpy() == (rows["is_member"] == 1).to_numpy()).all()
    assert (scores["label"].to_numpy() == rows["label"].to_numpy()).all()


def test_model_example_from_python_with_a_callable(model_run: tuple[dict, Path, Path]) -> None:
    """Audit(..., target_predict=) on the same records gives the CLI's scores."""
    from miaudit.data import load_file

    _, config, out = model_run
    cfg = load_config(config).model_copy(update={"output": out, "quiet": True})
    ds = load_file(cfg.data.path, **cfg.data.params, extra_cols=["is_member"])
    model = sio.load(config.parent / "target.skops", trusted=[TREES_TRUSTED])
    result = Audit(
        cfg.model_dump(mode="json") | {"target": {"model": "forest", "output_kind": "probs"}},
        dataset=ds,
        is_member=ds.meta["columns"]["is_member"] == 1,
        target_predict=model.predict_proba,
    ).run()
    cli = pd.read_parquet(out / "scores.parquet")
    pd.testing.assert_frame_equal(result.scores, cli, check_dtype=False)


def test_model_example_runs_from_another_folder(
    model_run: tuple[dict, Path, Path], tmp_path: Path
) -> None:
    _, config, out = model_run
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(elsewhere)
        res = runner.invoke(app, ["run", str(config), "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output


def test_model_example_config_as_shipped() -> None:
    cfg = load_config(MODEL_AUDIT / "audit.yaml")
    assert cfg.mode == "model" and cfg.target is not None
    assert cfg.data.path == MODEL_AUDIT / "records.csv"
    assert TREES_TRUSTED in cfg.target.trusted
    # The references are trained the way make_target.py trained the target.
    assert cfg.training.params["estimator"] == "sklearn.ensemble.RandomForestClassifier"
    assert cfg.training.params["params"] == {"n_estimators": _make_target_module().N_TREES}
