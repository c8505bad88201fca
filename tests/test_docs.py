"""Every ```python block in README.md and docs/*.md runs as written (one namespace per page)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [
    ROOT / "README.md",
    *sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "architecture.md"),
]  # architecture.md's recipes extend the registries: tests/test_architecture.py runs them apart
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_page_code_runs(page, tmp_path, monkeypatch):
    blocks = BLOCK.findall(page.read_text())
    if page.name != "README.md":
        assert blocks, f"{page.name} has no runnable example"
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem}"}
    for number, code in enumerate(blocks, 1):
        exec(compile(code, f"{page.name}[block {number}]", "exec"), namespace)
