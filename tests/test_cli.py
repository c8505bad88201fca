import csv
import json
import subprocess
import sys

import pytest
import torch
import yaml
from PIL import Image

from sampling_matters.cli import COMMANDS, EXAMPLES, main
from sampling_matters.data import OFFLINE


@pytest.fixture(scope="module")
def trained(glyph_folder, tmp_path_factory):
    run = tmp_path_factory.mktemp("cli") / "run"
    status = main(
        [
            "train",
            "--data",
            f"folder:{glyph_folder}",
            "--model",
            "small-cnn",
            "--steps",
            "4",
            "--classes-per-batch",
            "3",
            "--samples-per-class",
            "3",
            "--embedding-dim",
            "16",
            "--out",
            str(run),
            "--quiet",
        ]
    )
    assert status == 0
    return run


@pytest.fixture(scope="module")
def gallery(trained, glyph_folder):
    """The test split embedded by the trained run (``embed``)."""
    path = trained.parent / "gallery.pt"
    command = ["embed", str(trained), "--data", f"folder:{glyph_folder}", "--split", "test"]
    assert main([*command, "--out", str(path)]) == 0
    return path


def search(run, gallery, *options):
    """``sampling-matters search RUN --gallery FILE OPTIONS…``; the exit status."""
    return main(["search", str(run), "--gallery", str(gallery), *options])


def test_train_writes_the_run(trained):
    assert (trained / "metrics.json").exists() and (trained / "best.pt").exists()


def test_resume_a_run_by_its_directory(trained, capsys):
    before = (trained / "log.csv").read_text()
    assert main(["train", "--resume", str(trained), "--quiet"]) == 0  # already complete
    assert (trained / "log.csv").read_text() == before
    assert json.loads(capsys.readouterr().out)["n_classes"] == 8
    assert main(["train", "--resume", str(trained.parent / "nowhere")]) == 2


def test_eval_prints_the_metrics_json(trained, capsys):
    assert main(["eval", str(trained)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert {"recall@1", "map@r", "nmi", "n_queries", "n_classes"} <= set(metrics)


def test_embed_then_search_with_a_contact_sheet(trained, gallery, glyph_folder, tmp_path, capsys):
    saved = torch.load(gallery, weights_only=True)
    assert saved["embeddings"].shape == (48, 16) and len(saved["items"]) == 48
    query = next((glyph_folder / "class12").iterdir())
    sheet = tmp_path / "sheet.png"
    capsys.readouterr()
    assert search(trained, gallery, "--query", str(query), "-k", "5", "--sheet", str(sheet)) == 0
    printed = capsys.readouterr().out
    assert str(query) in printed and "class" in printed
    with Image.open(sheet) as image:
        assert image.size[0] > 5 * 90 and image.size[1] >= 90


def test_search_with_random_gallery_queries_leaves_each_query_out(
    trained, gallery, tmp_path, capsys
):
    capsys.readouterr()
    sheet = str(tmp_path / "s.png")
    assert search(trained, gallery, "--random-queries", "3", "-k", "4", "--sheet", sheet) == 0
    lines = capsys.readouterr().out.splitlines()
    queries = [
        line for line in lines if not line.startswith(" ") and not line.startswith("contact")
    ]
    assert len(queries) == 3
    for q in queries:
        block = lines[lines.index(q) + 1 : lines.index(q) + 5]
        assert all(q not in line for line in block) and len(block) == 4


def test_a_query_path_with_hashes_is_a_file(trained, gallery, glyph_folder, tmp_path, capsys):
    query = tmp_path / "odd#name#1.png"
    query.write_bytes(next((glyph_folder / "class12").iterdir()).read_bytes())
    capsys.readouterr()
    assert (
        search(
            trained, gallery, "--query", str(query), "-k", "3", "--sheet", str(tmp_path / "s.png")
        )
        == 0
    )
    assert str(query) in capsys.readouterr().out


def help_text(command, capsys):
    """``sampling-matters COMMAND --help`` (the top level's for None); it must exit with 0."""
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"] if command else ["--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_subcommand_has_help_with_an_example(command, capsys):
    assert command in EXAMPLES, f"add an example of `{command}` to EXAMPLES"
    assert EXAMPLES[command] in help_text(command, capsys)


def test_every_example_is_of_a_subcommand():
    assert set(EXAMPLES) <= set(COMMANDS)


def test_a_subcommand_without_an_example_leaves_the_others_alone(monkeypatch, capsys):
    monkeypatch.delitem(EXAMPLES, "eval")
    assert "example:" not in help_text("eval", capsys)
    assert EXAMPLES["embed"] in help_text("embed", capsys)
    assert "eval" in help_text(None, capsys)


def test_prepare_offers_the_offline_sets(capsys):
    assert f"offline data set ({', '.join(OFFLINE)})" in help_text("prepare", capsys)
    with pytest.raises(SystemExit):
        main(["prepare", "mnist"])
    error = capsys.readouterr().err
    assert "invalid choice" in error and all(name in error for name in OFFLINE)


def test_unknown_flag_and_unknown_config_key_are_errors(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--data", "kanji", "--steps", "1", "--lossy", "margin"])
    assert "--lossy" in capsys.readouterr().err
    config = tmp_path / "config.yaml"
    config.write_text("data: kanji\nsteps: 3\nclasses-per-bach: 4\n")
    assert main(["train", "--config", str(config)]) == 2
    assert "classes_per_bach" in capsys.readouterr().err


def test_flags_override_the_config_file(tmp_path):
    from sampling_matters.cli import _parser, _train_config

    config = tmp_path / "config.yaml"
    config.write_text("data: kanji\nsteps: 3\nloss: triplet\n")
    args = _parser().parse_args(["train", "--config", str(config), "--steps", "7"])
    parsed = _train_config(args)
    assert (parsed.optim.steps, parsed.loss.loss, parsed.data.data) == (7, "triplet", "kanji")


def test_python_dash_m():
    done = subprocess.run(
        [sys.executable, "-m", "sampling_matters", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "train" in done.stdout


def test_eval_of_a_missing_run_is_a_clear_error(tmp_path, capsys):
    assert main(["eval", str(tmp_path)]) == 2
    assert "best.pt" in capsys.readouterr().err


LOSS_FLAGS = [
    "--memory-size",
    "512",
    "--memory-warmup",
    "1",
    "--density",
    "empirical",
    "--margin",
    "0.2",
    "--cutoff",
    "0.5",
    "--nonzero-loss-cutoff",
    "1.4",
    "--max-reference-positives",
    "4",
]


def test_train_with_a_cross_batch_memory_and_every_loss_setting(glyph_folder, tmp_path):
    run = tmp_path / "xbm"
    shape = ["--classes-per-batch", "3", "--samples-per-class", "3", "--embedding-dim", "16"]
    command = ["train", "--data", f"folder:{glyph_folder}", "--steps", "4", *shape, *LOSS_FLAGS]
    assert main([*command, "--log-every", "1", "--out", str(run), "--quiet"]) == 0
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert {k: saved[k] for k in ("memory_size", "memory_warmup", "density")} == {
        "memory_size": 512,
        "memory_warmup": 1,
        "density": "empirical",
    }
    assert (saved["margin"], saved["cutoff"], saved["nonzero_loss_cutoff"]) == (0.2, 0.5, 1.4)
    assert saved["max_reference_positives"] == 4
    references = [float(r["references"]) for r in csv.DictReader((run / "log.csv").open())]
    assert references == [0, 9, 18, 27]  # the memory holds the batches before each step


def test_the_loss_flags_reach_the_settings():
    from sampling_matters.cli import _parser, _train_config

    flags = ["--memory-size", "512", "--memory-warmup", "100", "--density", "empirical"]
    flags += ["--margin", "0.2", "--cutoff", "0.5", "--nonzero-loss-cutoff", "1.4"]
    args = _parser().parse_args(["train", "--data", "kanji", "--steps", "2500", *flags])
    loss = _train_config(args).loss
    assert (loss.memory_size, loss.memory_warmup, loss.density) == (512, 100, "empirical")
    assert (loss.margin, loss.cutoff, loss.nonzero_loss_cutoff) == (0.2, 0.5, 1.4)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--memory-size", "-1"], "'memory_size' must be in [0, "),
        (["--memory-size", "many"], "argument --memory-size: invalid int value: 'many'"),
        (["--memory-size", "8", "--memory-warmup", "10"], "the cross-batch memory would never"),
        (["--memory-warmup", "2"], "'memory_warmup' needs a cross-batch memory"),
        (["--density", "uniform"], "'density' must be sphere or empirical, got 'uniform'"),
        (["--cutoff", "1.5"], "'cutoff' must be below nonzero_loss_cutoff 1.4"),
        (["--margin", "0"], "'margin' must be in (0, 2], got 0.0"),
        (["--nonzero-loss-cutoff", "9"], "'nonzero_loss_cutoff' must be in (0, 4]"),
    ],
)
def test_a_bad_loss_setting_is_a_one_line_usage_error(
    glyph_folder, tmp_path, capsys, flags, message
):
    command = ["train", "--data", f"folder:{glyph_folder}", "--steps", "10", *flags]
    try:
        status = main([*command, "--out", str(tmp_path / "run")])
    except SystemExit as exit_info:  # argparse's own type errors
        status = exit_info.code
    error = capsys.readouterr().err.strip()
    assert status == 2 and message in error and "\n" not in error
    assert error.startswith("sampling-matters")
    assert not (tmp_path / "run").exists()
