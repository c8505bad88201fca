"""Fixtures shared by several test files."""

import numpy as np
import pytest
from PIL import Image, ImageDraw


@pytest.fixture(scope="session")
def glyph_folder(tmp_path_factory):
    """16 classes x 6 grey 32x32 images: a bar at a class-specific angle, jittered."""
    root = tmp_path_factory.mktemp("glyphs")
    rng = np.random.default_rng(0)
    for c in range(16):
        (root / f"class{c:02d}").mkdir()
        for i in range(6):
            image = Image.new("L", (32, 32), 0)
            angle = np.pi * c / 16 + rng.normal(0, 0.05)
            x, y = 16 + 12 * np.cos(angle), 16 + 12 * np.sin(angle)
            ImageDraw.Draw(image).line([(32 - x, 32 - y), (x, y)], fill=255, width=3)
            image.save(root / f"class{c:02d}" / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def tiny_settings(glyph_folder):
    """Flat training settings of a tiny, fast run on the glyph folder (no validation split)."""
    return {
        "data": f"folder:{glyph_folder}",
        "model": "small-cnn",
        "classes_per_batch": 3,
        "samples_per_class": 3,
        "val_fraction": 0.0,
        "embedding_dim": 16,
        "eval_batch_size": 64,
    }


@pytest.fixture
def run_contract(contract):
    """The keys of a run's metrics.json: the metrics, and which checkpoint was scored."""
    return contract | {"checkpoint", "checkpoint_step"}


@pytest.fixture
def contract():
    """The keys of metrics.json (DESIGN.md's metrics contract), written out independently."""
    return {
        "recall@1",
        "recall@2",
        "recall@4",
        "recall@8",
        "map@r",
        "r_precision",
        "nmi",
        "n_queries",
        "n_classes",
    }


def pytest_terminal_summary(terminalreporter):
    """Report the examples the property tests (tests/test_properties.py) tried."""
    import sys

    modules = [m for name, m in sys.modules.items() if name.rpartition(".")[2] == "test_properties"]
    counts = getattr(modules[0], "EXAMPLES", None) if modules else None
    if counts:
        each = ", ".join(f"{name}: {n}" for name, n in counts.items())
        terminalreporter.write_line(
            f"property tests: {sum(counts.values())} examples tried ({each})"
        )
