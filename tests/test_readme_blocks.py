"""benchmarks/readme.py: README's result blocks are a fresh generation from the tables."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import mdtables
import readme


def test_the_committed_readme_blocks_are_a_fresh_generation():
    text = readme.README.read_text(encoding="utf-8")
    assert readme.render(text) == text, "README is stale: run benchmarks/readme.py"
    for name in readme.BLOCKS:
        assert readme.START.format(name=name) in text


def test_blocks_quote_the_tables_cells():
    floor = mdtables.section(
        readme.RESULTS / "sampling_speed.md", "Distance weighted sampling against the distance"
    )
    cell = mdtables.row(floor, {"n": "4096", "d": "512"})["ours ms (sphere)"]
    assert "| 4,096 | 512 | " in "\n".join(readme.sampling_block())
    assert f"{cell} ms" in "\n".join(readme.sampling_block())
    ours = readme._quality_row("kanji", "ours: `MarginLoss`")
    assert f"R@1 {ours['R@1']}, MAP@R {ours['MAP@R']}" in "\n".join(readme.quality_block())


def test_a_missing_or_unknown_block_is_an_error():
    with pytest.raises(ValueError, match="README has no block"):
        readme.render("no markers here")
    every = "\n".join(f"{readme.START.format(name=n)}\n{readme.END}" for n in readme.BLOCKS)
    with pytest.raises(ValueError, match=r"unknown blocks \['typo'\]"):
        readme.render(every + "\n" + readme.START.format(name="typo"))
    assert readme.render(every).count(readme.END) == len(readme.BLOCKS)


def test_markdown_tables_are_read_by_heading_and_column():
    text = "# A\n\n| x | y |\n|---|---|\n| 1 | 2 |\n\n## B two\n\n| x |\n|---|\n| 3 |\n"
    first, second = mdtables.parse(text)
    assert (first.heading, first.rows) == ("A", [{"x": "1", "y": "2"}])
    assert mdtables.row(second, {"x": "3"}) == {"x": "3"}
    with pytest.raises(ValueError, match="no row with"):
        mdtables.row(second, {"x": "4"})


def test_the_demo_time_sentence_reads_its_measurement(tmp_path, monkeypatch):
    monkeypatch.setattr(readme, "RESULTS", tmp_path)
    assert "not measured yet" in readme.demo_time_lines()[0]
    (tmp_path / "demo_time.json").write_text(
        '{"commit": "abc1234", "total_s": 600, "setup_s": 150, "demo_s": 450, "cpu": "a CPU",'
        ' "cpus": 2}'
    )
    said = readme.demo_time_lines()[0]
    assert (
        "(commit abc1234) took 10.0 min on 2 cores of a CPU: 2.5 min" in said and "7.5 min" in said
    )
