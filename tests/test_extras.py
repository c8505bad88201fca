"""The core works without the optional packages, and a missing one names its extra.

Each check runs a fresh Python whose imports of the blocked packages fail, as if they
were not installed (a finder first on ``sys.meta_path``).
"""

import os
import subprocess
import sys
import textwrap

import pytest

from sampling_matters import _optional
from sampling_matters._optional import EXTRAS, MissingExtraError, missing_extra, require

OPTIONAL = tuple(EXTRAS)
CORE_ONLY = (*OPTIONAL, "yaml", "tqdm")  # the core modules import torch, numpy, sklearn only

BLOCKER = """
import importlib.abc, sys

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, Blocker())
"""


def run_without(blocked, code):
    """Run ``code`` in a fresh Python that cannot import ``blocked``."""
    source = BLOCKER.format(blocked=set(blocked)) + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", source],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", "SAMPLING_MATTERS_DEBUG": ""},
    )


def test_core_works_with_torch_numpy_and_scikit_learn_only():
    result = run_without(
        CORE_ONLY,
        f"""
        import torch
        import sampling_matters as sm
        from sampling_matters import batching, distances, evaluation, losses, sampling, sphere

        g = torch.Generator().manual_seed(0)
        x = sphere.uniform_on_sphere(64, 16, g).requires_grad_()  # (64, 16)
        labels = torch.arange(64) // 4
        triplets = sampling.distance_weighted(x, labels, generator=g)
        loss = losses.margin_loss(x, triplets, beta=1.2, margin=0.2)
        loss.backward()
        assert torch.isfinite(x.grad).all()
        assert sm.MarginLoss(sampling="distance-weighted")(x, labels) >= 0
        assert distances.pairwise_distances(x.detach()).shape == (64, 64)
        assert len(next(iter(batching.PKSampler(labels, 4, 4, seed=0)))) == 16
        metrics = evaluation.evaluate(x.detach(), labels, progress=True)  # no tqdm: no bar
        assert 0 <= metrics["recall@1"] <= 1 and 0 <= metrics["nmi"] <= 1
        import sampling_matters.analysis  # the data functions; drawing needs figures
        loaded = sorted(m for m in sys.modules if m.partition(".")[0] in {CORE_ONLY!r})
        assert not loaded, loaded
        print("ok")
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def cli_without(blocked, *argv):
    return run_without(
        blocked, f"from sampling_matters.cli import main\nsys.exit(main({list(argv)!r}))"
    )


def test_command_line_starts_without_any_extra():
    result = cli_without(OPTIONAL, "--help")
    assert result.returncode == 0, result.stderr
    assert "figures" in result.stdout


@pytest.mark.parametrize(
    ("blocked", "argv", "line"),
    [
        (
            "matplotlib",
            ["figures", "--out", "{tmp}/figures"],
            "sampling-matters figures: error: figures needs matplotlib: "
            "pip install 'sampling-matters[figures]'",
        ),
        (
            "PIL",
            ["train", "--data", "{tmp}", "--steps", "1", "--out", "{tmp}/run"],
            "sampling-matters train: error: train needs Pillow: "
            "pip install 'sampling-matters[data]'",
        ),
        (
            "matplotlib",
            ["ablate", "--steps", "1", "--out", "{tmp}/ablation"],
            "sampling-matters ablate: error: ablate needs matplotlib: "
            "pip install 'sampling-matters[figures]'",
        ),
    ],
)
def test_missing_extra_is_one_line_naming_it(tmp_path, blocked, argv, line):
    result = cli_without([blocked], *[arg.format(tmp=tmp_path) for arg in argv])
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [line]
    assert list(tmp_path.iterdir()) == []  # refused before any work


def test_require_names_the_extra(monkeypatch):
    for name in ("matplotlib", "matplotlib.figure"):  # import fails: not installed
        monkeypatch.setitem(sys.modules, name, None)  # (even if an earlier test imported it)
    with pytest.raises(MissingExtraError) as caught:
        require("matplotlib.figure")
    assert (caught.value.package, caught.value.extra, caught.value.reason) == (
        "matplotlib",
        "figures",
        "",
    )
    assert str(caught.value) == "this needs matplotlib: pip install 'sampling-matters[figures]'"
    assert isinstance(caught.value, ImportError)


def test_require_says_why_an_installed_package_failed(monkeypatch):
    def broken(name):
        raise ModuleNotFoundError("No module named 'kiwisolver'", name="kiwisolver")

    monkeypatch.setattr(_optional.importlib, "import_module", broken)
    with pytest.raises(MissingExtraError, match=r"matplotlib \(ModuleNotFoundError: .*kiwi"):
        require("matplotlib")


def test_require_refuses_a_package_that_is_no_extra():
    with pytest.raises(ValueError, match="no optional dependency"):
        require("numpy")


def test_missing_extra_only_for_optional_packages():
    assert missing_extra(ModuleNotFoundError(name="fontTools.ttLib")).extra == "data"
    assert missing_extra(ModuleNotFoundError(name="yaml")) is None
    assert missing_extra(ImportError("cannot import name 'x'")) is None


def test_figures_without_matplotlib_names_the_extra(monkeypatch):
    from sampling_matters.analysis._common import new_figure

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"sampling-matters\[figures\]"):
        new_figure(1, 1, (2, 2))
