"""``miaudit attacks`` lists the attacks read from source (:mod:`miaudit.attacks._catalog`):
the listing must be exactly the registry's, and falls back to the registry whenever the source
cannot say. (Its speed is shown by ``benchmarks/cli_startup.py``, not tested here.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from miaudit import attacks
from miaudit.attacks._catalog import CatalogEntry, cache_path, read_catalog
from miaudit.cli import app

ATTACKS_DIR = Path(attacks.__file__).parent
PLUGIN_EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "plugin"
#: Terminal width wide enough that no listed line wraps.
WIDE = 200
#: The signals keyword of the ``loss`` attack's info, as written in ``threshold.py``.
LOSS_SIGNALS = 'signals=("cross_entropy_loss",),'


#: A new attack module, as a contributor would add it.
NEW_MODULE = """
from miaudit.attacks import register
from miaudit.attacks.base import AttackInfo
from miaudit.attacks.threshold import LossAttack


@register("loss_again")
class LossAgainAttack(LossAttack):
    info = AttackInfo(
        name="loss_again",
        title="LOSS " "again",
        paper="-",
        signals=("cross_entropy_loss",),
        needs_population=True,
    )
"""


def _registry_listing() -> list[CatalogEntry]:
    return [CatalogEntry.from_info(info) for info in attacks.infos()]


def _fresh(code: str, cache_home: Path, pythonpath: Path | None = None) -> str:
    """stdout of ``code`` run by a new interpreter whose cache folder is ``cache_home``."""
    env = {**os.environ, "XDG_CACHE_HOME": str(cache_home), "COLUMNS": str(WIDE)}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, check=True, env=env,
    )
    return out.stdout


def _copy_attacks(tmp_path: Path) -> Path:
    folder = tmp_path / "attacks"
    shutil.copytree(ATTACKS_DIR, folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def test_catalog_read_from_source_is_the_registry():
    # Names, titles and needs of every attack, in the registry's order: they can never drift.
    catalog = read_catalog(ATTACKS_DIR)
    assert catalog is not None, "the attack modules register in a way the catalog cannot read"
    assert catalog == _registry_listing()


def test_catalog_cache_is_used_and_follows_the_source(tmp_path):
    folder, cache = _copy_attacks(tmp_path), tmp_path / "cache" / "catalog.json"
    first = read_catalog(folder, cache)
    assert first == _registry_listing() and cache.is_file()
    # While the modules are unchanged, the cache answers (a title changed there is returned).
    cache.write_text(cache.read_text().replace("LiRA online:", "LiRA (cached):"))
    cached = {e.name: e.title for e in read_catalog(folder, cache) or []}
    assert cached["lira"].startswith("LiRA (cached):")

    # An edited module (another size) is read again, and the cache rewritten.
    lira = folder / "lira.py"
    lira.write_text(lira.read_text().replace("LiRA online:", "LiRA online (edited):"))
    edited = {e.name: e.title for e in read_catalog(folder, cache) or []}
    assert edited["lira"].startswith("LiRA online (edited):")
    assert read_catalog(folder, None) == read_catalog(folder, cache)

    # A new module is listed; a damaged cache file is rebuilt.
    (folder / "loss_again.py").write_text(NEW_MODULE)
    cache.write_text("{not json")
    again = {e.name: e for e in read_catalog(folder, cache) or []}
    assert again["loss_again"] == CatalogEntry("loss_again", "LOSS again", needs_population=True)
    assert "loss_again" in cache.read_text()


def test_catalog_leaves_a_name_registered_twice_to_the_registry(tmp_path):
    folder = _copy_attacks(tmp_path)
    shutil.copy(folder / "threshold.py", folder / "threshold_copy.py")
    assert read_catalog(folder) is None


@pytest.mark.parametrize(
    ("old", "new"),
    [
        # registered by a call, not a decorator
        ('@register("loss")\nclass LossAttack', 'class LossAttack'),
        # registered through the package, or under another name
        ('@register("loss")', '@attacks.register("loss")'),
        ("import register\n", "import register as register\n"),
        # a title that only running the module can tell
        ('title="LOSS: negative cross-entropy loss of the target model"', "title=TITLE"),
        # a registered class without an info of its own
        ('info = AttackInfo(\n        name="loss",', 'INFO = AttackInfo(\n        name="loss",'),
        # a needs flag that is not a literal
        (LOSS_SIGNALS, f"{LOSS_SIGNALS} needs_population=P,"),
        # keywords unpacked from a mapping
        (LOSS_SIGNALS, f"{LOSS_SIGNALS} **EXTRA,"),
    ],
)
def test_catalog_refuses_what_it_cannot_read(tmp_path, old, new):
    folder = _copy_attacks(tmp_path)
    threshold = folder / "threshold.py"
    text = threshold.read_text()
    assert old in text
    text = text.replace(old, new)
    if new == "class LossAttack":
        text += '\nregister("loss")(LossAttack)\n'
    threshold.write_text(text)
    assert read_catalog(folder, tmp_path / "catalog.json") is None


def test_catalog_refuses_a_sub_package(tmp_path):
    folder = _copy_attacks(tmp_path)
    (folder / "extra").mkdir()
    (folder / "extra" / "__init__.py").write_text("")
    assert read_catalog(folder) is None


def test_cli_listing_without_numpy_is_the_registry_listing(tmp_path):
    # A new process lists the attacks from source (twice: building the cache, then reading
    # it), without importing numpy or any attack module, and prints what the registry's
    # classes print.
    code = """
        import sys
        from typer.testing import CliRunner
        from miaudit.cli import app
        result = CliRunner().invoke(app, ["attacks"], terminal_width=200)
        assert result.exit_code == 0, result.output
        loaded = [m for m in ("numpy", "miaudit.attacks.base", "miaudit.attacks.lira")
                  if m in sys.modules]
        print(loaded)
        print(result.output, end="")
    """
    attacks.names()  # the registry is loaded here: this process lists from it
    expected = CliRunner().invoke(app, ["attacks"], terminal_width=WIDE)
    assert expected.exit_code == 0
    for _ in range(2):
        first, _, listing = _fresh(code, tmp_path).partition("\n")
        assert first == "[]"
        assert listing == expected.output
    cache = cache_path(ATTACKS_DIR)
    assert cache is not None and (tmp_path / "miaudit" / cache.name).is_file()


def test_cli_lists_plugin_attacks_and_describes_one(tmp_path):
    root = tmp_path / "site"
    shutil.copytree(PLUGIN_EXAMPLE / "margin_plugin", root / "margin_plugin")
    info = root / "margin_plugin-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: margin-plugin\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(
        "[miaudit.attacks]\nmargin = margin_plugin:MarginAttack\n"
    )
    code = """
        from typer.testing import CliRunner
        from miaudit.cli import app
        for args in (["attacks"], ["attacks", "lira"]):
            result = CliRunner().invoke(app, args, terminal_width=200)
            assert result.exit_code == 0, result.output
            print(result.output)
    """
    out = _fresh(code, tmp_path / "cache", pythonpath=root)
    names = [line.split()[0] for line in out.split("lira:")[0].strip().splitlines()]
    assert names == sorted([*attacks.names(), "margin"])
    assert "parameters:" in out and "formula and details:" in out
