"""docs/architecture.md holds: the layers' import rules, and every recipe runs as written.

The rule table is read from the page, so the page and the code cannot drift apart: a
module that imports a layer its row does not allow fails here, and so does a new
top-level module that the table does not name. The recipes run in a fresh interpreter
(each registers a new strategy, loss, data set, figure or subcommand in the project's
registries, which must not leak into other tests).
"""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "sampling_matters"
PAGE = ROOT / "docs" / "architecture.md"
ROW = re.compile(r"^\| ((?:`[\w.]+`(?:, )?)+) \| [^|]+ \| ([^|]*) \|$", re.MULTILINE)
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
ANYONE = {"__version__"}  # the package's version string, read from its __init__


def allowed() -> dict[str, set[str]]:
    """module → the project's modules it may import, from the page's table."""
    rules = {}
    for names, imports in ROW.findall(PAGE.read_text()):
        may = set(re.findall(r"`([\w.]+)`", imports))
        for name in re.findall(r"`([\w.]+)`", names):
            rules[name] = may
    return rules


def top_level(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def imported(path: Path) -> set[str]:
    """The top-level project modules that ``path`` imports (at run time or for types)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] == "sampling_matters":
                found |= {parts[1]} if len(parts) > 1 else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {
                a.name.split(".")[1] for a in node.names if a.name.startswith("sampling_matters.")
            }
    return found - {top_level(path)} - ANYONE


MODULES = sorted(
    {top_level(p) for p in PACKAGE.rglob("*.py")} - {"__init__", "__main__"},
)


def test_the_table_names_every_module_and_nothing_else():
    assert sorted(allowed()) == MODULES


@pytest.mark.parametrize("module", MODULES)
def test_a_module_imports_only_what_its_layer_allows(module):
    rules = allowed()
    files = [p for p in PACKAGE.rglob("*.py") if top_level(p) == module]
    wrong = {
        f"{p.relative_to(PACKAGE)} imports {name}"
        for p in files
        for name in imported(p)
        if name not in rules.get(module, set())
    }
    assert not wrong, f"{sorted(wrong)}; the rules are in docs/architecture.md"


def test_the_recipes_run_as_written(tmp_path):
    code = "\n".join(BLOCK.findall(PAGE.read_text()))
    assert code.count("# recipe:") == 5
    script = tmp_path / "recipes.py"
    script.write_text(code)
    env = {**os.environ, "SAMPLING_MATTERS_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
