"""The registry of figures, write_figures and the ``figures`` command, over every figure."""

import csv
import math

import pytest
import torch

from sampling_matters import analysis
from sampling_matters.analysis.registry import check_figures, number
from sampling_matters.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def read_csv(path):
    with path.open() as handle:
        lines = [line for line in handle if not line.startswith("#")]
    return list(csv.DictReader(lines))


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 20_000


def assert_finite_csv(path):
    rows = read_csv(path)
    assert rows
    for row in rows:
        for value in row.values():
            try:
                number = float(value)
            except ValueError:
                continue  # a label
            assert math.isfinite(number), (path.name, row)


@pytest.fixture(scope="module")
def figures(tmp_path_factory, write_run):
    root = tmp_path_factory.mktemp("figures")
    run = write_run(root / "run")
    labels = torch.arange(12).repeat_interleave(5)
    centres = torch.randn(12, 16, generator=torch.Generator().manual_seed(3))
    x = torch.nn.functional.normalize(centres[labels] + 0.2 * torch.randn(60, 16), dim=1)
    written = analysis.write_figures(
        root / "out", dims=(2, 3, 128), draws=400, embeddings=(x, labels), logs=[run]
    )
    return root / "out", written


# -------------------------------------------------------------------------- registry


@pytest.mark.parametrize("name", list(analysis.FIGURES))
def test_every_registered_figure_is_drawn_and_listed_by_the_cli(name, figures, capsys):
    spec = analysis.FIGURES[name]
    assert spec.name == name and spec.help
    assert all(callable(f) for f in (spec.compute, spec.table, spec.plot, spec.check))
    out, written = figures  # every figure: the default, given embeddings and logs
    assert {out / f"{name}.png", out / f"{name}.csv"} <= set(written)
    assert_png(out / f"{name}.png")
    assert_finite_csv(out / f"{name}.csv")
    with pytest.raises(SystemExit, match="0"):
        main(["figures", "--help"])
    text = capsys.readouterr().out
    assert f"{number(name)} {name}" in text and spec.help in text
    assert check_figures([str(number(name))], logs=spec.needs_logs) == (name,)


def test_defaults_are_the_figures_that_need_no_logs():
    assert check_figures() == tuple(n for n, s in analysis.FIGURES.items() if not s.needs_logs)
    assert check_figures(logs=True) == tuple(analysis.FIGURES)
    assert check_figures(["3", "1", "sphere_distances", " "]) == (
        "gradient_variance",
        "sphere_distances",
    )
    for bad in ("0", str(len(analysis.FIGURES) + 1), "figure"):
        with pytest.raises(ValueError, match="unknown figure"):
            check_figures([bad])
    with pytest.raises(ValueError, match="no figure given"):
        check_figures([""])


# --------------------------------------------------------------------- write_figures


def test_write_figures_writes_a_png_and_a_finite_csv_per_figure(figures):
    out, written = figures
    assert written == [out / f"{name}.{ext}" for name in analysis.FIGURES for ext in ("png", "csv")]


def test_figure_csvs_state_their_setup_and_hold_the_data(figures):
    out, _ = figures
    text = (out / "gradient_variance.csv").read_text()
    assert "# set-up: n = 128" in text and "400 draws per distance" in text
    rows = read_csv(out / "gradient_variance.csv")
    assert {row["series"] for row in rows} >= {"curve", "strategy:hard"}
    assert {row["dim"] for row in read_csv(out / "sphere_distances.csv")} == {"2", "3", "128"}
    panels = {row["panel"] for row in read_csv(out / "sampled_distances.csv")}
    assert panels == {"0", "1", "2"}  # n = 16, n = 128, the given embeddings


def test_write_figures_is_seeded_and_order_independent(tmp_path):
    a = analysis.write_figures(tmp_path / "a", figures=["sphere_distances"], dims=(4,), draws=50)
    b = analysis.write_figures(
        tmp_path / "b", figures=["loss_shapes", "sphere_distances"], dims=(4,), draws=50
    )
    assert a[1].read_text() == b[3].read_text()
    c = analysis.write_figures(
        tmp_path / "c", figures=["sphere_distances"], dims=(4,), draws=50, seed=1
    )
    assert a[1].read_text() != c[1].read_text()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"figures": ["histogram"]}, "unknown figure"),
        ({"figures": []}, "no figure given"),
        ({"figures": ["training_curves"]}, "needs runs"),
        ({"dims": (1, 3)}, "each dimension must be an integer in"),
        ({"dims": ()}, "at least one dimension"),
        ({"draws": 1}, "draws"),
        ({"seed": -1}, "seed"),
        ({"figures": ["loss_shapes"], "logs": ["nowhere"]}, "only by figure 5"),
        ({"logs": ["nowhere"]}, "no log.csv"),
        ({"figures": ["1"], "embeddings": (torch.randn(4, 3), torch.zeros(4))}, "only by figure 2"),
        ({"embeddings": (torch.randn(4, 3), torch.zeros(4, dtype=torch.int64))}, "2 classes"),
    ],
)
def test_write_figures_rejects_bad_input(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        analysis.write_figures(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------- CLI


def test_cli_figures_end_to_end(tmp_path, capsys, write_run):
    run = write_run(tmp_path / "run")
    labels = torch.arange(6).repeat_interleave(4)
    torch.save({"embeddings": torch.randn(24, 8), "labels": labels}, tmp_path / "emb.pt")
    command = ["figures", "--out", str(tmp_path / "out"), "--only", "2,5,loss_shapes"]
    command += ["--draws", "100", "--embeddings", str(tmp_path / "emb.pt"), "--logs", str(run)]
    assert main(command) == 0
    printed = capsys.readouterr().out.split()
    names = ("sampled_distances", "training_curves", "loss_shapes")
    assert printed == [str(tmp_path / "out" / f"{n}.{e}") for n in names for e in ("png", "csv")]
    assert all((tmp_path / "out" / p).exists() for p in printed)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--only", "9"], "unknown figure '9'"),
        (["--only", ""], "no figure given"),
        (["--dims", "1,8"], "in [2, 65536]"),
        (["--dims", "2,x"], "dims must be comma-separated integers"),
        (["--dims", ""], "at least one dimension"),
        (["--logs", "nowhere"], "no log.csv"),
        (["--data", "kanji"], "need --run"),
        (["--only", "1", "--embeddings", "e.pt"], "only by figure 2"),
        (["--embeddings", "missing.pt"], "missing.pt is missing"),
        (["--run", "nowhere", "--only", "2"], "best.pt"),
    ],
)
def test_cli_figures_errors(tmp_path, capsys, options, message):
    assert main(["figures", "--out", str(tmp_path / "out"), "--draws", "10", *options]) == 2
    assert message in capsys.readouterr().err


def test_cli_figures_of_a_trained_run(glyph_folder, tmp_path, capsys):
    run = tmp_path / "run"
    train = ["train", "--data", f"folder:{glyph_folder}", "--model", "small-cnn", "--steps", "1"]
    train += ["--classes-per-batch", "3", "--samples-per-class", "3", "--embedding-dim", "8"]
    assert main([*train, "--out", str(run), "--quiet"]) == 0
    out = tmp_path / "out"
    command = ["figures", "--out", str(out), "--only", "2", "--draws", "20", "--run", str(run)]
    assert main(command) == 0
    assert "run: train split, n = 8" in (out / "sampled_distances.csv").read_text()
