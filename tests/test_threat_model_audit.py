"""`miaudit run` in mode: model against a real prediction API on 127.0.0.1, under restricted
outputs: the attacks that fit run and say what they saw; those that do not are refused."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from miaudit.cli import app

runner = CliRunner()
N_RECORDS, N_FEATURES, N_CLASSES = 160, 8, 3


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[str, Path, dict[str, int]]]:
    """A model trained on half of a CSV's records, served as JSON probabilities."""
    X, y = make_classification(
        n_samples=N_RECORDS, n_features=N_FEATURES, n_informative=6, n_classes=N_CLASSES,
        random_state=0,
    )
    member = np.random.default_rng(0).permutation(N_RECORDS) < N_RECORDS // 2
    model = LogisticRegression(max_iter=500).fit(X[member], y[member])
    folder = tmp_path_factory.mktemp("api")
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(N_FEATURES)])
    frame["label"] = y
    frame["is_member"] = member
    frame.to_csv(folder / "records.csv", index=False)
    seen = {"queries": 0}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            rows = json.loads(self.rfile.read(int(self.headers["content-length"])))["inputs"]
            with lock:
                seen["queries"] += len(rows)
            proba = model.predict_proba(np.asarray(rows, dtype=np.float64).reshape(len(rows), -1))
            data = json.dumps({"outputs": proba.tolist()}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/predict", folder, seen
    finally:
        server.shutdown()
        server.server_close()


def _config(folder: Path, url: str, out: Path, attacks: str, restrict: str) -> Path:
    path = folder / f"{out.name}.yaml"
    path.write_text(
        "mode: model\nseed: 0\nquiet: true\n"
        f"output: {out}\n"
        "data: {path: records.csv, params: {label_col: label}}\n"
        "training:\n  recipe: sklearn\n"
        "  params: {estimator: sklearn.linear_model.LogisticRegression,"
        " params: {max_iter: 500}}\n"
        "n_references: 4\n"
        f"target: {{http: {{url: '{url}', kind: probs, budget: 100000}}, restrict: {restrict}}}\n"
        f"attacks: {attacks}\n"
        "fprs: [0.1]\n"
    )
    return path


def test_label_only_api_audit_reports_its_threat_model_and_queries(served, tmp_path):
    url, folder, seen = served
    before = seen["queries"]
    out = tmp_path / "label-only"
    config = _config(
        folder, url, out,
        "[correctness, {name: label_only_boundary, params: {budget: 40}}]",
        "[{label_only: true}]",
    )
    result = runner.invoke(app, ["run", str(config)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    boundary = metrics["attacks"]["label_only_boundary"]["threat_model"]
    assert boundary.startswith("label only, ") and "queries per record" in boundary
    assert "budget 40" in boundary
    assert metrics["attacks"]["correctness"]["threat_model"] == "label only"
    target = metrics["target"]
    assert target["returns"] == ["label"]
    # The API's own count of the records it was sent equals what the audit reports.
    assert target["usage"]["queries"] == seen["queries"] - before
    assert target["usage"]["queries"] <= 100000
    html = (out / "report.html").read_text()
    assert "label only" in html and "queries per record" in html


def test_attack_the_target_cannot_feed_is_refused_before_training(served, tmp_path):
    url, folder, _ = served
    out = tmp_path / "refused"
    config = _config(folder, url, out, "[loss, lira]", "[{label_only: true}]")
    result = runner.invoke(app, ["run", str(config)])
    assert result.exit_code == 2
    assert "lira" in result.output and "label" in result.output
    assert not (out / "store").exists()  # nothing was trained
