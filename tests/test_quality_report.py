"""benchmarks/quality.py's report names the runs that another benchmark trained for it."""

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import quality


def run_folder(folder: Path, out: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(f"seed: 0\nout: {out}\n")
    return folder


def test_a_run_trained_in_its_own_folder_is_not_named(tmp_path):
    own = run_folder(tmp_path / "margin-ours" / "seed0", str(tmp_path / "margin-ours" / "seed0"))
    assert quality.trained_elsewhere(own) == ""


def test_a_run_read_back_from_another_benchmark_names_its_folder(tmp_path):
    inside = run_folder(tmp_path / "a", "runs/defaults/defaults/seed1")  # relative: the project's
    assert quality.trained_elsewhere(inside) == "runs/defaults/defaults/seed1"
    outside = run_folder(tmp_path / "b", "/elsewhere/seed1")
    assert quality.trained_elsewhere(outside) == "/elsewhere/seed1"

    runs = [
        quality.Run("kanji", "ours: margin", "margin", "ours", 1, {}, 1.0, math.nan, True,
                    "runs/defaults/defaults/seed1"),
        quality.Run("kanji", "PML: margin", "margin", "PML", 1, {}, 1.0, math.nan, True),
    ]  # fmt: skip
    section = "\n".join(quality.elsewhere_section(runs))
    assert "| kanji | ours: margin | 1 | `runs/defaults/defaults/seed1` |" in section
    assert "PML" not in section
    assert quality.elsewhere_section(runs[1:]) == []
