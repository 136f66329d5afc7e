"""The package's shape: light imports, no import cycles, plug-ins from outside the package."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import miaudit

PACKAGE = Path(miaudit.__file__).parent

#: Modules (and CLI paths) that must work without importing torch.
TORCH_FREE = (
    "miaudit",
    "miaudit.metrics",
    "miaudit.signals",
    "miaudit.attacks",
    "miaudit.audit.result",
    "miaudit.report",
    "miaudit.report.html",
    "miaudit.report.files",
    "miaudit.cli",
    "miaudit.config",
    "miaudit.scorefile",
)


def _run(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


@pytest.mark.parametrize("module", TORCH_FREE)
def test_module_import_leaves_torch_out(module):
    # Listing the attacks imports every attack module: none may import torch either.
    code = f"""
        import sys
        import {module}
        import miaudit.attacks
        miaudit.attacks.infos()
        print(sorted(m for m in ("torch", "scipy.stats", "sklearn") if m in sys.modules))
    """
    assert _run(code) == "[]"


def test_cli_help_attacks_and_evaluate_leave_torch_out(tmp_path):
    code = f"""
        import sys
        from typer.testing import CliRunner
        from miaudit.cli import app
        runner = CliRunner()
        for args in (["--help"], ["attacks"],
                     ["evaluate", {str(Path("examples/scores.csv").resolve())!r},
                      "-q", "-o", {str(tmp_path)!r}]):
            result = runner.invoke(app, args)
            assert result.exit_code == 0, (args, result.output)
        print("torch" in sys.modules)
    """
    assert _run(code) == "False"


def _imports(path: Path) -> set[str]:
    """Modules of miaudit a file imports anywhere (module level or inside functions), except
    under ``if TYPE_CHECKING:``: a function-level import still ties the two modules together."""
    tree = ast.parse(path.read_text())
    skip = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    found: set[str] = set()
    for sub in ast.walk(tree):
        if id(sub) in skip:
            continue
        if isinstance(sub, ast.ImportFrom) and sub.module and sub.level == 0:
            if sub.module.startswith("miaudit"):
                found.add(sub.module)
                # `from miaudit import attacks` imports a submodule
                found.update(f"{sub.module}.{a.name}" for a in sub.names)
        elif isinstance(sub, ast.Import):
            found.update(a.name for a in sub.names if a.name.startswith("miaudit"))
    return found


def _module_graph() -> dict[str, set[str]]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    graph = {}
    for name, path in modules.items():
        deps = set()
        for imp in _imports(path):
            # Importing a.b.c runs a and a.b first: count the deepest existing module.
            while imp and imp not in modules:
                imp = imp.rpartition(".")[0]
            if imp and imp != name:
                deps.add(imp)
        graph[name] = deps
    return graph


def test_no_import_cycles():
    graph = _module_graph()
    # Parent packages are imported before their submodules; an __init__ importing its own
    # submodule is not a cycle.
    for name in graph:
        graph[name] = {d for d in graph[name] if not d.startswith(name + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycle = [*stack[stack.index(dep) :], dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_recipe_option_literals_match_the_engine():
    """The configs check names against Literal types; the engine implements exactly those."""
    from typing import get_args

    from miaudit.train import architectures, ensemble, recipes

    assert sorted(get_args(recipes.ActivationName)) == architectures.ACTIVATIONS.names()
    assert sorted(get_args(recipes.OptimizerName)) == ensemble.OPTIMIZERS.names()
    assert sorted(get_args(recipes.LRScheduleName)) == ensemble.LR_SCHEDULES.names()
