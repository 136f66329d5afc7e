"""The bad-input corpus: every file is made here, run through the CLI, and must end in exactly
one ``error:`` line (exit code 2), never a traceback."""

from __future__ import annotations

import pickle
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from miaudit.cli import app

runner = CliRunner()

GOOD_ROWS = 40


def _table(n: int = GOOD_ROWS, n_classes: int = 2) -> str:
    rng = np.random.default_rng(0)
    lines = ["rid,f1,f2,label"]
    for i in range(n):
        lines.append(f"{i:06d},{rng.normal():.3f},{rng.normal():.3f},{i % n_classes}")
    return "\n".join(lines) + "\n"


def _config(folder: Path, data: str, extra: str = "") -> Path:
    cfg = folder / "audit.yaml"
    cfg.write_text(
        textwrap.dedent(
            f"""\
            data: {data}
            n_references: 3
            attacks: [loss]
            quiet: true
            output: {folder / "out"}
            training: {{recipe: sklearn, params: {{estimator: LogisticRegression}}}}
            """
        )
        + extra
    )
    return cfg


def _csv_case(content: bytes | str, params: str = "{label_col: label, id_col: rid}") -> Callable:
    def make(folder: Path) -> list[str]:
        path = folder / "data.csv"
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return ["run", str(_config(folder, f"{{path: {path}, params: {params}}}"))]

    return make


def _file_case(name: str, content: bytes, params: str = "{}") -> Callable:
    def make(folder: Path) -> list[str]:
        path = folder / name
        path.write_bytes(content)
        return ["run", str(_config(folder, f"{{path: {path}, params: {params}}}"))]

    return make


def _huge_npz(folder: Path) -> list[str]:
    path = folder / "huge.npz"
    np.savez(path, X=np.zeros((4, 2)), y=np.array([0, 1, 0, 1]))
    import zipfile

    raw = {}
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            raw[info.filename] = zf.read(info)
    header = raw["X.npy"]
    raw["X.npy"] = header.replace(b"(4, 2)", b"(1000000000000, 2)", 1)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in raw.items():
            zf.writestr(name, data)
    return ["run", str(_config(folder, f"{{path: {path}}}"))]


def _npz(y: np.ndarray) -> Callable:
    def make(folder: Path) -> list[str]:
        path = folder / "d.npz"
        rng = np.random.default_rng(0)
        np.savez(path, X=rng.normal(size=(len(y), 3)), y=y)
        return ["run", str(_config(folder, f"{{path: {path}}}"))]

    return make


def _yaml_case(text: bytes) -> Callable:
    def make(folder: Path) -> list[str]:
        cfg = folder / "audit.yaml"
        cfg.write_bytes(text)
        return ["run", str(cfg)]

    return make


def _pickle_as_skops(folder: Path) -> list[str]:
    model = folder / "target.skops"
    model.write_bytes(pickle.dumps({"not": "a model"}))
    data = folder / "data.csv"
    rows = _table().splitlines()
    rows = [rows[0] + ",is_member"] + [f"{r},{i % 2}" for i, r in enumerate(rows[1:])]
    data.write_text("\n".join(rows) + "\n")
    cfg = folder / "audit.yaml"
    cfg.write_text(
        f"mode: model\ndata: {{path: {data}, params: {{label_col: label, id_col: rid}}}}\n"
        f"target: {{model: {model}}}\nn_references: 2\nattacks: [loss]\nquiet: true\n"
        f"output: {folder / 'out'}\n"
    )
    return ["run", str(cfg)]


def _scores_case(name: str, scores: list[float]) -> Callable:
    def make(folder: Path) -> list[str]:
        path = folder / name
        rows = ["score,is_member"] + [f"{s!r},{i % 2}" for i, s in enumerate(scores)]
        path.write_text("\n".join(rows) + "\n")
        return ["evaluate", str(path), "-q", "-o", str(folder / "ev")]

    return make


CASES: dict[str, tuple[Callable, str]] = {
    "empty csv": (_csv_case(b""), "empty"),
    "header-only csv": (_csv_case("rid,f1,f2,label\n"), "no records"),
    "ragged csv": (_csv_case(_table() + "1,2,3,4,5,6\n"), "cannot read the table"),
    "non-utf8 csv": (_csv_case(_table().encode() + b"x,\xff\xfe,1,0\n"), "not UTF-8"),
    "nan id": (_csv_case(_table() + ",0.1,0.2,1\n"), "missing ids"),
    "repeated id": (_csv_case(_table() + "000001,0.1,0.2,1\n"), "repeats ids"),
    "one class": (_csv_case(_table(n_classes=1)), "same label"),
    "misspelled loader param": (
        _csv_case(_table(), "{label_col: label, id_coll: rid}"),
        "did you mean 'id_col'",
    ),
    "missing label column": (_csv_case(_table(), "{label_col: species}"), "label_col"),
    "text named parquet": (_file_case("data.parquet", b"a,b\n1,2\n", "{label_col: b}"),
                           "not a readable Parquet"),
    "npz header claims 1e12 rows": (_huge_npz, "claims shape"),
    "not a zip named npz": (_file_case("d.npz", b"hello"), "not a valid .npz"),
    "9,000,001 classes": (_npz(np.array([0, 9_000_000] * 20)), "classes for 40 records"),
    "non-utf8 yaml": (_yaml_case(b"data: {name: digits}\nseed: \xff\n"), "not UTF-8"),
    "yaml python tag": (_yaml_case(b"data: !!python/object/apply:os.system [ls]\n"),
                        "not valid YAML"),
    "yaml not a mapping": (_yaml_case(b"- a\n- b\n"), "expected a mapping"),
    "unknown key": (_yaml_case(b"data: {name: digits}\nn_refrences: 3\n"), "n_references"),
    "pickle renamed skops": (_pickle_as_skops, "target.skops"),
    "callable without trust": (
        _yaml_case(b"data: {name: digits}\ntraining: {recipe: callable, "
                   b"params: {train: 'os:system'}}\n"),
        "--trust-code",
    ),
    "estimator os:system": (
        _yaml_case(b"data: {name: digits}\ntraining: {recipe: sklearn, "
                   b"params: {estimator: 'os:system'}}\n"),
        "trust_code",
    ),
    "scores of 1.7e308": (_scores_case("s.csv", [1.7e308, -1.7e308] * 10 + [0.5, 0.1]), None),
    "mathtext in score file name": (_scores_case("$\\foo$.csv", [0.1, 0.9] * 10), None),
    "empty score file": (_scores_case("e.csv", []), "no"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gives_one_error_line(tmp_path, case):
    make, expected = CASES[case]
    args = make(tmp_path)
    res = runner.invoke(app, args)
    if expected is None:  # inputs that are valid but used to crash: must simply work
        assert res.exit_code == 0, res.output
        assert "Traceback" not in res.output
        return
    assert res.exit_code == 2, (case, res.output, res.exception)
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, res.output
    assert "Traceback" not in res.output
    assert expected in " ".join(res.output.split()), res.output
