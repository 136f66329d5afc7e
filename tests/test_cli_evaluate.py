"""`miaudit evaluate`, `miaudit attacks`, `--version`; the report table, plots and progress bar."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread
from rich.console import Console
from typer.testing import CliRunner

import miaudit
from miaudit import attacks
from miaudit._progress import progress, progress_enabled
from miaudit.cli import app, load_score_file, parse_fprs
from miaudit.exceptions import ValidationError
from miaudit.metrics import roc_curve, summarize
from miaudit.report.console import metrics_table
from miaudit.report.plots import DPI, ROC_FIGSIZE, plot_roc, plot_score_histograms

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    member = rng.random(n) < 0.5
    return pd.DataFrame(
        {
            "record_id": [f"id{i}" for i in range(n)],
            "score": rng.normal(size=n) + 1.0 * member,
            "is_member": member.astype(int),
        }
    )


def _assert_png(path: Path, shape: tuple[int, int] | None = None) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC
    img = imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    if shape is not None:
        assert img.shape[:2] == shape


#: Keys of evaluate's metrics.json beside the metrics (the verdict and its sanity checks).
VERDICT_KEYS = ("headline", "reliable_verdict", "checks", "lower_is_member", "ignored_columns")


def _metrics_only(got: dict) -> dict:
    assert set(VERDICT_KEYS) <= set(got), sorted(got)
    return {k: v for k, v in got.items() if k not in VERDICT_KEYS}


def _expected_json(name: str, scores, member, fprs, **kw) -> dict:
    """The Python API's numbers, through the same JSON round trip as the file."""
    d = {"input": name, **summarize(scores, member, fprs, **kw).to_dict()}
    return json.loads(json.dumps(d))


# ------------------------------------------------------------------------------ evaluate
def test_evaluate_csv_writes_metrics_equal_to_the_api_and_a_valid_png(tmp_path):
    df = _frame()
    csv = tmp_path / "scores.csv"
    df.to_csv(csv, index=False)
    out = tmp_path / "out"
    args = ["evaluate", str(csv), "--out", str(out), "--fpr", "0.05,0.01", "--fpr", "0.1%"]
    result = runner.invoke(app, [*args, "--seed", "3", "--n-bootstrap", "200", "--alpha", "0.1"])
    assert result.exit_code == 0, result.output
    got = _metrics_only(json.loads((out / "metrics.json").read_text()))
    want = _expected_json(
        "scores.csv",
        df["score"],
        df["is_member"],
        (0.05, 0.01, 0.001),
        alpha=0.1,
        n_bootstrap=200,
        rng=3,
    )
    assert got == want
    height, width = ROC_FIGSIZE[1] * DPI, ROC_FIGSIZE[0] * DPI
    _assert_png(out / "roc.png", (int(height), int(width)))
    auc = summarize(df["score"], df["is_member"], n_bootstrap=1).auc
    assert f"{auc:.4f}" in result.output  # the table shows the number
    assert "TPR @ 0.1% FPR" in result.output


def test_evaluate_parquet_with_custom_columns_and_boolean_membership(tmp_path):
    df = _frame(seed=1).rename(columns={"score": "s", "is_member": "member"})
    df["member"] = df["member"].astype(bool)
    path = tmp_path / "x.parquet"
    df.to_parquet(path)
    out = tmp_path / "o"
    result = runner.invoke(
        app,
        ["evaluate", str(path), "-o", str(out), "--score-col", "s", "--member-col", "member"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    got = _metrics_only(json.loads((out / "metrics.json").read_text()))
    assert got == _expected_json("x.parquet", df["s"], df["member"], (1e-2, 1e-3, 1e-4, 1e-5))
    assert got["tpr_at_fpr"][2]["reachable"] is False  # 1e-4 < 1/~200 non-members
    _assert_png(out / "roc.png")


def test_evaluate_counts_and_reports_nan_scores_with_ids(tmp_path):
    df = _frame(n=100, seed=2)
    df.loc[[3, 7], "score"] = np.nan
    csv = tmp_path / "nan.csv"
    df.to_csv(csv, index=False)
    result = runner.invoke(
        app, ["evaluate", str(csv), "-o", str(tmp_path / "o"), "--id-col", "record_id"]
    )
    assert result.exit_code == 0, result.output
    assert "2 NaN scores" in result.output and "id3, id7" in result.output
    got = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert got["n_nan"] == 2 and got["n_members"] + got["n_non_members"] == 100


def test_evaluate_quiet_prints_nothing(tmp_path):
    csv = tmp_path / "s.csv"
    _frame(n=50).to_csv(csv, index=False)
    result = runner.invoke(app, ["evaluate", str(csv), "-o", str(tmp_path / "o"), "--quiet"])
    assert result.exit_code == 0 and result.output == ""
    assert (tmp_path / "o" / "metrics.json").exists()


@pytest.mark.parametrize(
    ("edit", "extra", "match"),
    [
        (
            None,
            ["--score-col", "nope"],
            r"score column 'nope' not found \(choose it with --score-col\); "
            r"columns present: 'record_id', 'score', 'is_member'",
        ),
        (
            None,
            ["--member-col", "member"],
            r"membership column 'member' not found .*columns present: 'record_id', 'score'",
        ),
        (None, ["--id-col", "rid"], r"id column 'rid' not found"),
        (
            lambda df: df.assign(is_member=df["is_member"] * 2),
            [],
            r"column 'is_member': membership must be boolean or 0/1; found values \[2\]",
        ),
        (
            lambda df: df.assign(is_member=["maybe"] * len(df)),
            [],
            r"column 'is_member': membership must be boolean or 0/1; found values \['maybe'\]",
        ),
        (
            lambda df: df.assign(score=["high"] * len(df)),
            [],
            r"score column 'score' is not numeric .*'high'",
        ),
        (lambda df: df.assign(is_member=0), [], r"column 'is_member': there are no members"),
        (
            lambda df: df.assign(record_id="same"),
            ["--id-col", "record_id"],
            r"id column 'record_id' has 49 duplicate ids, e.g. \['same'\]",
        ),
        (None, ["--fpr", "2"], r"--fpr 2: expected a value in \(0, 1\)"),
        (None, ["--fpr", "0.01,abc"], r"--fpr: could not read 'abc' as a number"),
        (None, ["--alpha", "1.5"], r"alpha: expected a value in \(0, 1\)"),
    ],
)
def test_evaluate_errors_are_one_red_line_with_exit_2(tmp_path, edit, extra, match):
    df = _frame(n=50)
    if edit is not None:
        df = edit(df)
    csv = tmp_path / "s.csv"
    df.to_csv(csv, index=False)
    result = runner.invoke(app, ["evaluate", str(csv), "-o", str(tmp_path / "o"), *extra])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    assert result.stderr.strip().count("\n") == 0  # one line
    assert "Traceback" not in result.output
    assert re.search(match, result.stderr), result.stderr


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("missing.csv", None, r"missing.csv: file not found"),
        ("scores.txt", "a,b\n1,2\n", r"scores.txt: unsupported file type; expected one of .csv"),
        ("bad.parquet", "not parquet", r"bad.parquet: could not read the file"),
    ],
)
def test_evaluate_unreadable_files(tmp_path, name, content, match):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValidationError, match=match):
        load_score_file(path)
    result = runner.invoke(app, ["evaluate", str(path), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "error:" in result.stderr


def test_parse_fprs():
    assert parse_fprs(["0.01, 0.001", "0.5%"]) == (0.01, 0.001, 0.005)
    assert parse_fprs(None) == (1e-2, 1e-3, 1e-4, 1e-5)
    with pytest.raises(ValidationError, match=r"--fpr: no FPR given"):
        parse_fprs([","])


def test_python_m_miaudit_on_the_shipped_example(tmp_path):
    out = tmp_path / "ex"
    env = {**os.environ, "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "miaudit", "evaluate", str(REPO / "examples" / "scores.csv")),
            *("--out", str(out), "--id-col", "record_id", "--quiet"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    df = pd.read_csv(REPO / "examples" / "scores.csv")
    got = _metrics_only(json.loads((out / "metrics.json").read_text()))
    assert got == _expected_json(
        "scores.csv", df["score"], df["is_member"], (1e-2, 1e-3, 1e-4, 1e-5)
    )
    assert (got["n_members"], got["n_non_members"]) == (1000, 1000)
    _assert_png(out / "roc.png")


# ------------------------------------------------------------------- attacks, --version
def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"miaudit {miaudit.__version__}"


def test_attacks_lists_every_registered_attack_with_its_needs():
    result = runner.invoke(app, ["attacks"], terminal_width=200)
    assert result.exit_code == 0
    lines = result.output.strip().splitlines()
    assert [line.split()[0] for line in lines] == attacks.names()
    by_name = {line.split()[0]: line for line in lines}
    assert by_name["loss"].endswith("needs: target model only")
    assert attacks.get("loss").info.title in by_name["loss"]


# ------------------------------------------------------------------------- report table
def _render(table) -> str:
    console = Console(record=True, width=200)
    console.print(table)
    return console.export_text()


def test_metrics_table_shows_the_numbers_in_both_layouts():
    rng = np.random.default_rng(4)
    member = rng.random(500) < 0.5
    a = summarize(rng.normal(size=500) + member, member, (0.1, 1e-4), n_bootstrap=50)
    b = summarize(rng.normal(size=500), member, (0.1,), n_bootstrap=50)
    for layout in ("rows", "columns"):
        text = _render(metrics_table({"a": a, "b": b}, layout=layout))
        assert f"{a.auc:.4f}" in text and f"{b.auc:.4f}" in text
        assert f"{100 * a.at(0.1).tpr:.2f}%" in text
        assert f"{100 * a.at(1e-4).tpr:.2f}%†" in text  # 1e-4 < 1/~250: below resolution
        assert f"{a.epsilon.epsilon:.3f}" in text
        assert "–" in text  # b has no 1e-4 result
    with pytest.raises(ValidationError, match=r"layout: expected 'auto', 'rows' or 'columns'"):
        metrics_table({"a": a}, layout="diagonal")


# -------------------------------------------------------------------------------- plots
def test_plot_roc_and_histograms_write_valid_pngs(tmp_path):
    rng = np.random.default_rng(5)
    member = rng.random(300) < 0.5
    scores = {"good": rng.normal(size=300) + 2 * member, "weak": rng.normal(size=300)}
    scores["weak"][:3] = np.nan
    curves = {k: roc_curve(v, member)[:2] for k, v in scores.items()}
    path = plot_roc(curves, tmp_path / "sub" / "roc.png", min_fpr=1 / 150)
    _assert_png(path)
    path = plot_score_histograms(scores, member, tmp_path / "hist.png")
    _assert_png(path)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda p: plot_roc({}, p), r"curves: expected at least one"),
        (lambda p: plot_roc({"a": ([0, 1], [0, 0.5, 1])}, p), r"inconsistent lengths"),
        (lambda p: plot_roc({"a": ([0, 2], [0, 1])}, p), r"curves\['a'\] fpr: values must lie"),
        (lambda p: plot_roc({"a": [0, 1, 2]}, p), r"curves\['a'\]: expected a pair"),
        (lambda p: plot_roc({"a": ([0, 1], [0, 1])}, p, min_fpr=0), r"min_fpr: expected"),
        (lambda p: plot_score_histograms({}, [1, 0], p), r"scores_by_attack: expected at least"),
        (
            lambda p: plot_score_histograms({"a": [1, 2, 3]}, [1, 0], p),
            r"inconsistent lengths: scores_by_attack\['a'\] has 3, is_member has 2",
        ),
    ],
)
def test_plot_errors(tmp_path, call, match):
    with pytest.raises(ValidationError, match=match):
        call(tmp_path / "x.png")


# ----------------------------------------------------------------------------- progress
def test_progress_yields_everything_and_is_silent_when_not_a_terminal(capsys, caplog):
    with caplog.at_level(logging.INFO, logger="miaudit"):
        assert list(progress(4, "steps")) == [0, 1, 2, 3]  # pytest's stderr is not a TTY
        assert list(progress(iter("ab"), "letters", quiet=True)) == ["a", "b"]
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    assert "steps: 4 steps in" in caplog.text and "letters: 2 steps in" in caplog.text


def test_progress_enabled_rules(monkeypatch):
    assert progress_enabled(True) is False and progress_enabled(False) is True
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    monkeypatch.setenv("CI", "true")
    assert progress_enabled(None) is False
    monkeypatch.delenv("CI")
    assert progress_enabled(None) is True
    with pytest.raises(ValidationError, match=r"iterable_or_total: expected a non-negative"):
        list(progress(-1, "x"))


def test_report_says_how_many_scores_were_nan(tmp_path):
    import numpy as np
    import pandas as pd

    from miaudit.cli import app

    rng = np.random.default_rng(0)
    scores = rng.normal(size=200)
    scores[:7] = np.nan
    pd.DataFrame({"score": scores, "is_member": np.arange(200) % 2}).to_csv(
        tmp_path / "s.csv", index=False)
    res = CliRunner().invoke(app, ["evaluate", str(tmp_path / "s.csv"), "--out",
                                   str(tmp_path / "o"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "NaN scores (ranked lowest, i.e. as non-members): s: 7." in (
        tmp_path / "o" / "report.html").read_text()


def test_evaluate_header_only_file_and_single_non_member(tmp_path):
    from miaudit.cli import app

    (tmp_path / "empty.csv").write_text("score,is_member\n")
    res = CliRunner().invoke(app, ["evaluate", str(tmp_path / "empty.csv"), "--out",
                                   str(tmp_path / "o")])
    assert res.exit_code == 2 and "has no rows" in res.output
    (tmp_path / "one.csv").write_text("score,is_member\n0.1,1\n0.5,1\n0.9,1\n0.2,0\n")
    res = CliRunner().invoke(app, ["evaluate", str(tmp_path / "one.csv"), "--out",
                                   str(tmp_path / "p"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "p" / "report.html").is_file()
