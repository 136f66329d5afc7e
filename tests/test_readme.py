"""The README's examples, run exactly as written (in a scratch folder holding the example file
they name): the commands of "Three ways in" and the Python block after them."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _block_after(heading: str, language: str) -> str:
    """The first fenced ``language`` block after ``heading``."""
    start = README.index(heading)
    match = re.search(rf"```{language}\n(.*?)```", README[start:], re.S)
    assert match, f"no {language} block after {heading!r}"
    return match.group(1)


@pytest.mark.slow
def test_readme_commands_and_python_example_run_as_written(tmp_path):
    (tmp_path / "examples").mkdir()
    shutil.copy(ROOT / "examples" / "scores.csv", tmp_path / "examples" / "scores.csv")
    env = {**os.environ, "MPLBACKEND": "Agg"}
    miaudit = [sys.executable, "-m", "miaudit.cli"]
    commands = [line.split("#")[0].strip() for line in _block_after("## Three ways in", "bash")
                .splitlines()]
    for command in filter(None, commands):
        words = shlex.split(command)
        assert words[0] == "miaudit", command
        target = None
        if ">" in words:
            words, target = words[: words.index(">")], words[words.index(">") + 1]
        done = subprocess.run([*miaudit, *words[1:]], cwd=tmp_path, env=env,
                              capture_output=True, text=True)
        assert done.returncode == 0, (command, done.stderr)
        if target is not None:
            (tmp_path / target).write_text(done.stdout)
    assert (tmp_path / "miaudit-evaluate" / "report.html").is_file()
    assert (tmp_path / "miaudit-demo" / "metrics.json").is_file()
    python = _block_after("From Python:", "python")
    done = subprocess.run([sys.executable, "-c", python], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "report.html").is_file()
