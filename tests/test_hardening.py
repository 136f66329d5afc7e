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
