"""Hardening: configs run no code without trust_code, one writer per folder, checked caches,
history-independent keep matrices, atomic output sets."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest
from typer.testing import CliRunner

from miaudit.cli import app
from miaudit.config import ConfigError, load_config, parse_config
from miaudit.exceptions import ValidationError
from miaudit.train.recipes import make_config

runner = CliRunner()


def _write(folder, text: str, name: str = "audit.yaml"):
    p = folder / name
    p.write_text(textwrap.dedent(text))
    return p


# ------------------------------------------------------------------------------ code execution
@pytest.mark.parametrize(
    "estimator, params",
    [
        ("subprocess.Popen", "{args: [touch, MARKER]}"),
        ("os:system", "{}"),
        ("os.system", "{}"),
        ("builtins:exec", "{}"),
    ],
)
def test_sklearn_estimator_path_runs_nothing(tmp_path, estimator, params):
    marker = tmp_path / "marker"
    cfg = _write(
        tmp_path,
        f"""
        data: {{name: digits}}
        n_references: 3
        training: {{recipe: sklearn, params: {{estimator: "{estimator}",
                    params: {params.replace("MARKER", str(marker))}}}}}
        """,
    )
    with pytest.raises(ConfigError, match="trust_code") as info:
        load_config(cfg)
    assert "line" in str(info.value)
    assert not marker.exists()
    # Trusted, the path is imported but still not called: it is not a classifier class.
    with pytest.raises(ConfigError, match="not a classifier class"):
        load_config(cfg, trust_code=True)
    assert not marker.exists()


def test_sklearn_estimator_short_names_and_non_classifiers():
    from sklearn.ensemble import RandomForestClassifier

    cfg = make_config("sklearn", estimator="RandomForestClassifier", params={"n_estimators": 3})
    assert isinstance(cfg.estimator, RandomForestClassifier)
    with pytest.raises(ValidationError, match="not a classifier class"):
        make_config("sklearn", estimator="sklearn.linear_model.LinearRegression")
    with pytest.raises(ValidationError, match="no class 'NoSuchClassifier'"):
        make_config("sklearn", estimator="NoSuchClassifier")


def test_callable_recipe_target_and_attack_need_trust(tmp_path, monkeypatch):
    module = tmp_path / "evil_mod.py"
    marker = tmp_path / "imported"
    module.write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "def train(X, y, seed):\n    raise SystemExit\n"
        "class Attack:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    base = {"data": {"name": "digits"}, "n_references": 3}
    cases = [
        {"training": {"recipe": "callable", "params": {"train": "evil_mod:train"}}},
        {"attacks": ["loss", "evil_mod:Attack"]},
    ]
    for extra in cases:
        with pytest.raises(ConfigError, match=r"trust_code: true.*--trust-code"):
            parse_config({**base, **extra})
        assert not marker.exists()
        assert "evil_mod" not in sys.modules
    text = (
        "data: {name: digits}\nn_references: 3\n"
        "training: {recipe: callable, params: {train: 'evil_mod:train'}}\n"
    )
    res = runner.invoke(app, ["run", str(_write(tmp_path, text))])
    assert res.exit_code == 2
    assert res.output.count("error:") == 1 and "--trust-code" in res.output
    assert "Traceback" not in res.output
    assert not marker.exists()


def test_callable_target_needs_trust(tmp_path):
    from miaudit.audit.pipeline import Audit

    cfg = {"mode": "model", "data": {"name": "digits"}, "n_references": 2,
           "output": str(tmp_path / "o"), "target": {"model": "os:system"}, "quiet": True,
           "attacks": ["loss"]}
    with pytest.raises(ConfigError, match=r"target\.model: target\.model 'os:system'.*trust_code"):
        Audit(cfg)
    # A config built without validation is refused when it runs, before anything is imported.
    from miaudit.config import AuditConfig

    member = np.zeros(1797, dtype=bool)
    member[::2] = True
    with pytest.raises(Exception, match="trust_code"):
        Audit(AuditConfig.model_validate(cfg), is_member=member).run()


# ------------------------------------------------------------------------------ one writer
def test_second_process_on_a_locked_folder_is_refused(tmp_path):
    import subprocess

    from miaudit.audit.lock import FolderBusyError, folder_lock

    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from miaudit.audit.lock import folder_lock
            with folder_lock({str(tmp_path)!r}):
                print("locked", flush=True)
                time.sleep(30)
        """)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(FolderBusyError, match=f"in use by process {holder.pid}.*--wait"):
            with folder_lock(tmp_path):
                pass
        cfg = _write(tmp_path, f"data: {{name: digits}}\nn_references: 3\noutput: {tmp_path}\n")
        res = runner.invoke(app, ["run", str(cfg)])
        assert res.exit_code == 2 and "--wait" in res.output and "Traceback" not in res.output
    finally:
        holder.kill()
        holder.wait()
    with folder_lock(tmp_path):  # the lock died with its process: the folder is usable
        pass


def test_temp_files_of_another_writer_survive_opening(tmp_path):
    import subprocess

    from miaudit.audit.store import RunStore

    store = RunStore(tmp_path)
    run = store.open({"a": 1}, np.arange(5), recipe="x")
    tmp = run.folder / "observations" / "model_00000.npy.tmp-999-abc"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_bytes(b"in flight")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time\nfrom miaudit.audit.lock import folder_lock\n"
         f"with folder_lock({str(run.folder)!r}):\n    print('locked', flush=True)\n"
         "    time.sleep(30)\n"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        store.open({"a": 1}, np.arange(5), recipe="x")
        assert tmp.exists()  # another process owns it
    finally:
        holder.kill()
        holder.wait()
    store.open({"a": 1}, np.arange(5), recipe="x")
    assert not tmp.exists()  # no writer: left by a crash, removed


# ------------------------------------------------------------------------------ caches
def _small_audit(tmp_path, n_refs: int, **extra):
    from miaudit.audit.pipeline import Audit

    return Audit(
        data={"name": "digits"}, n_references=n_refs, output=str(tmp_path),
        attacks=["loss", "lira"],
        quiet=True, training={"recipe": "sklearn",
                              "params": {"estimator": "LogisticRegression",
                                         "params": {"max_iter": 50}}},
        **extra,
    ).run()


def test_history_independence_and_score_cache_checksum(tmp_path, caplog):
    import warnings

    warnings.simplefilter("ignore")  # sklearn convergence warnings
    extended = tmp_path / "extended"
    _small_audit(extended, 3)
    five = _small_audit(extended, 5)
    fresh = _small_audit(tmp_path / "fresh", 5)
    assert five.metrics_dict()["headline"] == fresh.metrics_dict()["headline"]
    for name in ("loss", "lira"):
        np.testing.assert_array_equal(five.scores[name], fresh.scores[name])
    assert five.metrics_dict()["models"]["n_trained"] == 2  # the 4 models of the 3-run reused
    # A flipped byte in a cached score file is detected and the scores recomputed.
    cache = sorted((fresh.output_dir / "cache").glob("scores-*.npy"))
    assert cache
    for path in cache:
        data = bytearray(path.read_bytes())
        data[-3] ^= 0xFF
        path.write_bytes(bytes(data))
    with caplog.at_level("WARNING", logger="miaudit.cache"):
        again = _small_audit(tmp_path / "fresh", 5)
    assert "recomputing" in caplog.text
    for name in ("loss", "lira"):
        np.testing.assert_array_equal(again.scores[name], fresh.scores[name])


def test_changed_training_code_invalidates_stored_models(tmp_path, monkeypatch):
    from miaudit.audit import engine
    from miaudit.audit.engine import train_and_query
    from miaudit.data import load_dataset
    from miaudit.train.recipes import make_recipe

    ds = load_dataset("digits")
    recipe = make_recipe("sklearn", estimator="GaussianNB")
    first = train_and_query(ds, 2, recipe, store_root=tmp_path, quiet=True)
    assert first.trained == (0, 1)
    same = train_and_query(ds, 2, recipe, store_root=tmp_path, quiet=True)
    assert same.trained == ()
    monkeypatch.setattr(engine, "training_code_hash", lambda: "a changed learning-rate line")
    changed = train_and_query(ds, 2, recipe, store_root=tmp_path, quiet=True)
    assert changed.trained == (0, 1) and changed.run_dir != first.run_dir


# ------------------------------------------------------------------------------ report writes
def _result():
    import pandas as pd

    from miaudit.audit.result import build_result

    rng = np.random.default_rng(0)
    truth = rng.random((1, 60)) < 0.5
    scores = {"a": rng.normal(size=(1, 60)) + truth}
    ids = np.array([f"{i:06d}" for i in range(60)])
    res = build_result(scores, truth, ids, None, [0], fprs=[0.1])
    res.models = pd.DataFrame({"train_accuracy": [1.0]})
    return res


def test_report_writes_are_a_set_even_when_killed(tmp_path, monkeypatch):
    import json
    import os

    from miaudit.provenance import sha256_file
    from miaudit.report import files

    result = _result()
    out = tmp_path / "out"
    files.save_result(result, out)
    real_replace = os.replace
    for k in range(8):  # the k-th rename "dies"
        calls = {"n": 0}

        def dying(src, dst, _k=k, _calls=calls):
            _calls["n"] += 1
            if _calls["n"] > _k:
                raise KeyboardInterrupt("killed")
            return real_replace(src, dst)

        monkeypatch.setattr(files.os, "replace", dying)
        with pytest.raises(KeyboardInterrupt):
            files.save_result(result, out)
        monkeypatch.setattr(files.os, "replace", real_replace)
        metrics = out / "metrics.json"
        if metrics.exists():  # present => valid and describing exactly the files beside it
            data = json.loads(metrics.read_text())
            for name, digest in data["outputs"].items():
                assert sha256_file(out / name) == digest
        assert not list(out.glob(".outputs-staging-*"))
    files.save_result(result, out)
    assert json.loads((out / "metrics.json").read_text())["outputs"]


def test_symlinks_in_the_output_folder_are_replaced_not_followed(tmp_path):
    from miaudit.report import files

    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    for name in ("scores.csv", "report.html", "metrics.json", "roc.png"):
        (out / name).symlink_to(victim)
    files.save_result(_result(), out)
    assert victim.read_text() == "precious"
    assert not any((out / n).is_symlink() for n in ("scores.csv", "report.html", "metrics.json"))


def test_ids_are_read_exactly_as_written(tmp_path):
    from miaudit.data import load_file

    path = tmp_path / "d.csv"
    path.write_text("rid,f,label\n000123,0.5,0\n1,0.1,1\n01,0.2,0\n")
    ds = load_file(path, label_col="label", id_col="rid")
    assert ds.record_ids.tolist() == ["000123", "1", "01"]


def test_yaml_exponent_floats(tmp_path):
    cfg = _write(tmp_path, "data: {name: digits}\nn_references: 3\nalpha: 5.0e-2\n")
    assert load_config(cfg).alpha == 0.05


def test_process_workers_die_with_their_parent(tmp_path):
    import os
    import signal
    import subprocess
    import time

    (tmp_path / "slow_task.py").write_text(
        "import os, time\n"
        "def task(folder):\n"
        "    open(f'{folder}/{os.getpid()}', 'w').close()\n"
        "    time.sleep(120)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            sys.path.insert(0, {str(tmp_path)!r})
            from slow_task import task
            from miaudit.audit.executors import make_executor
            ex = make_executor("processes", n_workers=1)
            list(ex.map(task, [{str(tmp_path)!r}]))
        """)],
    )
    deadline = time.time() + 60
    pids: list[int] = []
    while time.time() < deadline and not pids:
        pids = [int(p.name) for p in tmp_path.iterdir() if p.name.isdigit()]
        time.sleep(0.2)
    assert pids, "the worker never started"
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 10
    alive = True
    while time.time() < deadline and alive:
        try:
            os.kill(pids[0], 0)
            time.sleep(0.2)
        except ProcessLookupError:
            alive = False
    assert not alive, "the worker outlived its parent"
