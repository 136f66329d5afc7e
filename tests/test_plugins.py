"""Plug-ins from outside the package: an attack registered by an entry point, run from YAML."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from miaudit.exceptions import ValidationError
from miaudit.registry import Registry, import_object

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "plugin"


def _fake_distribution(root: Path, entry_points: str) -> None:
    """A distribution on ``root`` as pip would install it: the package and its dist-info."""
    shutil.copytree(EXAMPLE / "margin_plugin", root / "margin_plugin")
    info = root / "margin_plugin-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: margin-plugin\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(entry_points)


def _miaudit(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [sys.executable, "-m", "miaudit.cli", *args], capture_output=True, text=True, env=env
    )


def test_entry_point_attack_runs_from_yaml(tmp_path):
    _fake_distribution(tmp_path, "[miaudit.attacks]\nmargin = margin_plugin:MarginAttack\n")
    listed = _miaudit(tmp_path, "attacks")
    assert listed.returncode == 0, listed.stderr
    assert "margin " in listed.stdout and "example plug-in" in listed.stdout

    out = tmp_path / "out"
    config = tmp_path / "audit.yaml"
    config.write_text(
        "mode: algorithm\nseed: 0\nquiet: true\ntrust_code: true\n"
        f"output: {out}\n"
        "data: {name: digits}\n"
        "training: {recipe: torch-mlp, params: {hidden_sizes: [32], epochs: 5}}\n"
        "n_references: 3\n"
        "attacks:\n"
        "  - loss\n"
        "  - margin\n"
        "  - {name: 'margin_plugin:MarginAttack', label: margin_x2, params: {scale: 2.0}}\n"
        "fprs: [0.1]\n"
    )
    ran = _miaudit(tmp_path, "run", str(config))
    assert ran.returncode == 0, ran.stderr
    scores = pd.read_parquet(out / "scores.parquet")
    assert {"loss", "margin", "margin_x2"} <= set(scores.columns)
    np.testing.assert_allclose(scores["margin_x2"], 2 * scores["margin"])
    # The margin is a different statistic from the loss: the plug-in really ran.
    assert not np.allclose(scores["margin"], scores["loss"])
    # An installed plug-in runs without trust_code; an import path in the config needs it.
    config.write_text(config.read_text().replace("trust_code: true", "trust_code: false"))
    refused = _miaudit(tmp_path, "run", str(config))
    assert refused.returncode == 2 and "trust_code: true" in refused.stderr


def test_broken_plugin_is_skipped_with_a_warning(tmp_path):
    _fake_distribution(tmp_path, "[miaudit.attacks]\nbroken = margin_plugin:NoSuchAttack\n")
    listed = _miaudit(tmp_path, "attacks")
    assert listed.returncode == 0, listed.stderr
    assert "lira" in listed.stdout and "broken" not in listed.stdout


def test_registry_import_path_is_checked():
    from miaudit import attacks

    with pytest.raises(ValidationError, match=r"expected a subclass of miaudit\.attacks\.Attack"):
        attacks.get("collections:OrderedDict")
    with pytest.raises(ValidationError, match="expected 'module:attribute'"):
        import_object("no_colon")


def test_registry_discovers_and_suggests():
    reg: Registry[int] = Registry("number")
    reg.add("one", 1)
    assert reg.get("ONE") == 1 and "one" in reg and reg.names() == ["one"]
    with pytest.raises(ValueError, match="already registered"):
        reg.add("one", 2)


@pytest.mark.parametrize("group", ["console_scripts", "pytest11"])
def test_entry_point_scan_finds_what_importlib_metadata_finds(group):
    from importlib.metadata import entry_points

    from miaudit.registry import scan_entry_points

    want = sorted((e.name, e.value) for e in entry_points(group=group))
    assert sorted((e.name, e.value) for e in scan_entry_points(group)) == want
