"""The loss × sampling ablation: reports, resume, failures, bad input, the CLI, the PML row.

Most tests swap ``training.train`` for a fake that writes a run's files instantly with
known metrics, so the tables can be checked to the digit; one module fixture trains
real (tiny) runs through the command line.
"""

import csv
import importlib
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from sampling_matters import ablation, training
from sampling_matters.ablation import check_seeds, run_ablation, run_status
from sampling_matters.cli import main
from sampling_matters.config import TrainConfig

LOSS_INDEX = {"contrastive": 0, "triplet-squared": 1, "triplet": 2, "margin": 3}
SAMPLING_INDEX = {"uniform": 0, "hard": 1, "semihard": 2, "distance-weighted": 3}


def pml_available():
    try:
        importlib.import_module("pytorch_metric_learning")
    except ImportError:
        return False
    return True


def known_metrics(loss, sampling, seed):
    """Every metric = 0.5 + 0.1·loss + 0.05·sampling + 0.02·seed (48 queries, 8 classes)."""
    value = 0.5 + 0.1 * LOSS_INDEX[loss] + 0.05 * SAMPLING_INDEX[sampling] + 0.02 * seed
    metrics = {m: value for m in ablation.METRICS}
    return {**metrics, "r_precision": value, "n_queries": 48, "n_classes": 8}


def write_log(run, loss=0.5, distance=0.8):
    with (run / "log.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, training.LOG_COLUMNS, restval="nan")
        writer.writeheader()
        writer.writerow(
            {"step": 2, "epoch": 1, "loss": loss, "active_fraction": 0.5}
            | {"negative_distance": distance, "negative_distance_std": 0.1, "fallback": 0.0}
            | {"references": 0.0, "images_per_s": 100.0}
        )
        writer.writerow({"step": 2, "epoch": 1, "images_per_s": 0.0, "val_recall@1": 0.9})


class FakeTrain:
    """Stands in for ``training.train``: records its calls, writes metrics.json and log.csv.

    ``behaviour`` maps a run name to ``"raise-nan"``, ``"raise"``, ``"nan-metrics"``,
    ``"collapse"`` or ``"kill"`` (writes last.pt, then raises KeyboardInterrupt once).
    """

    def __init__(self, behaviour=None):
        self.behaviour = dict(behaviour or {})
        self.calls = []

    def __call__(self, config, *, resume, progress, loss_factory):
        run = Path(config.run.out)
        self.calls.append((run.name, resume, config, loss_factory))
        run.mkdir(parents=True, exist_ok=True)
        what = self.behaviour.get(run.name)
        if what == "kill":
            (run / "last.pt").write_bytes(b"checkpoint")
            del self.behaviour[run.name]
            raise KeyboardInterrupt
        if what == "raise-nan":
            raise ValueError("embeddings contain NaN or Inf")
        if what == "raise":
            raise RuntimeError("the disk is full")
        metrics = known_metrics(config.loss.loss, config.loss.sampling, config.run.seed)
        if what == "nan-metrics":
            metrics["recall@1"] = math.nan
        write_log(run, distance=0.01 if what == "collapse" else 0.8)
        (run / "metrics.json").write_text(json.dumps(metrics))
        return metrics


@pytest.fixture
def fake(monkeypatch):
    def install(behaviour=None):
        fake_train = FakeTrain(behaviour)
        monkeypatch.setattr(training, "train", fake_train)
        return fake_train

    return install


def grid(tmp_path, settings, extra=None, **options):
    values = {
        "steps": 2,
        "out": tmp_path / "ablation",
        "losses": "contrastive,triplet",
        "samplings": "uniform,hard",
        "seeds": 2,
    }
    values.update(options)
    return run_ablation({**settings, **(extra or {})}, **values)


def read_csv(out):
    with (out / "ablation.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


# ------------------------------------------------------------------------ reports


def test_grid_writes_the_three_reports(fake, tiny_settings, tmp_path, capsys):
    train = fake()
    results = grid(tmp_path, tiny_settings)
    out = tmp_path / "ablation"
    assert len(results) == len(train.calls) == 8
    rows = read_csv(out)
    assert [(r["loss"], r["sampling"], r["seed"]) for r in rows] == [
        (loss, sampling, str(seed))
        for seed in (0, 1)
        for loss in ("contrastive", "triplet")
        for sampling in ("uniform", "hard")
    ]
    assert {r["status"] for r in rows} == {"ok"}
    assert float(rows[-1]["recall@1"]) == pytest.approx(0.5 + 0.2 + 0.05 + 0.02)
    assert all(float(r["wall_s"]) >= 0 for r in rows)
    markdown = (out / "ablation.md").read_text()
    assert "8 of 8 runs finished" in markdown and "**2 steps** per run" in markdown
    # contrastive + uniform: 50% and 52% over the two seeds -> 51.0 ± 1.4 (sample std)
    assert "| contrastive | uniform | 2/2 | 51.0 ± 1.4 | 51.0 ± 1.4 |" in markdown
    assert "| triplet | hard | 2/2 | 76.0 ± 1.4 |" in markdown
    assert "| **triplet** | 71.0 | 76.0 |" in markdown  # the R@1 grid
    assert "collapsed" in markdown and "diverged" in markdown  # the rules are stated
    with Image.open(out / "ablation.png") as image:
        assert image.format == "PNG" and image.size[0] > 100
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("ablate [")]
    assert len(lines) == 8 and lines[0].startswith("ablate [1/8] contrastive--uniform--seed0")
    assert "R@1 50.0%" in lines[0]


def test_every_run_gets_the_same_budget_and_settings(fake, tiny_settings, tmp_path):
    train = fake()
    grid(tmp_path, tiny_settings, seeds="3,5")
    configs = [config for _, _, config, _ in train.calls]
    assert {c.optim.steps for c in configs} == {2}
    assert {c.data.classes_per_batch for c in configs} == {3}
    assert sorted({c.run.seed for c in configs}) == [3, 5]
    names = {name for name, *_ in train.calls}
    assert "triplet--hard--seed5" in names and len(names) == 8
    assert all(c.run.out.endswith(name) for name, _, c, _ in train.calls)


def test_run_status_rules(tmp_path):
    metrics = known_metrics("margin", "uniform", 0)
    write_log(tmp_path)
    assert run_status(metrics, tmp_path) == ("ok", "")
    chance = (48 / 8 - 1) / (48 - 1)
    low = {**metrics, "recall@1": 1.4 * chance}
    assert run_status(low, tmp_path)[0] == "collapsed"
    assert run_status({**metrics, "nmi": math.inf}, tmp_path)[0] == "diverged"
    write_log(tmp_path, distance=0.01)
    status, note = run_status(metrics, tmp_path)
    assert status == "collapsed" and "negative distance" in note
    write_log(tmp_path, loss="inf")
    assert run_status(metrics, tmp_path)[0] == "diverged"


# ------------------------------------------------------------------------- resume


def test_a_killed_ablation_resumes_where_it_stopped(fake, tiny_settings, tmp_path):
    train = fake({"triplet--uniform--seed0": "kill"})
    with pytest.raises(KeyboardInterrupt):
        grid(tmp_path, tiny_settings)
    out = tmp_path / "ablation"
    assert len(read_csv(out)) == 2  # the runs done before the kill are reported
    killed = out / "runs" / "triplet--uniform--seed0"
    assert json.loads((killed / "ablation-run.json").read_text())["outcome"] == "interrupted"
    train.calls.clear()
    grid(tmp_path, tiny_settings)
    calls = {name: resume for name, resume, _, _ in train.calls}
    assert "contrastive--uniform--seed0" not in calls  # done: skipped
    assert calls["triplet--uniform--seed0"] is True  # cut: resumed from last.pt
    assert calls["triplet--hard--seed0"] is False and len(calls) == 6  # the rest: fresh
    assert len(read_csv(out)) == 8
    record = json.loads((killed / "ablation-run.json").read_text())
    assert record["sessions"] == 2 and record["outcome"] == "done"


def test_settings_cannot_change_under_an_ablation(fake, tiny_settings, tmp_path):
    fake()
    grid(tmp_path, tiny_settings, seeds=1)
    with pytest.raises(ValueError, match=r"other settings.*'steps'"):
        grid(tmp_path, tiny_settings, seeds=1, steps=3)
    grid(tmp_path, tiny_settings, seeds=2)  # more seeds, same settings: fine


def test_a_setting_added_later_counts_as_its_default(fake, tiny_settings, tmp_path):
    fake()
    grid(tmp_path, tiny_settings, seeds=1)
    path = tmp_path / "ablation" / "ablation.json"
    stored = json.loads(path.read_text())
    del stored["settings"]["learn_beta"]  # as an older version wrote it
    path.write_text(json.dumps(stored))
    grid(tmp_path, tiny_settings, seeds=1)  # at its default: the same ablation
    path.write_text(json.dumps(stored))
    with pytest.raises(ValueError, match="learn_beta"):
        grid(tmp_path, tiny_settings, {"learn_beta": False}, seeds=1)


@pytest.mark.parametrize(
    ("extra", "message"),
    [({"beta_per_class": True}, "learns one β"), ({"learn_beta": False}, "learns its β")],
)
def test_the_pml_row_refuses_beta_settings_it_cannot_follow(
    fake, tiny_settings, tmp_path, extra, message
):
    pytest.importorskip("pytorch_metric_learning")
    train = fake()
    with pytest.raises(ValueError, match=message):
        grid(tmp_path, tiny_settings, extra, losses="margin", with_pml=True)
    assert train.calls == []


SAMPLING_SETTINGS = {"density": "empirical", "memory_size": 16, "memory_warmup": 1}


def test_density_and_memory_settings_reach_every_run_and_are_recorded(
    fake, tiny_settings, tmp_path
):
    train = fake()
    grid(tmp_path, tiny_settings, SAMPLING_SETTINGS, seeds=1, samplings="distance-weighted")
    loss_settings = [config.loss for _, _, config, _ in train.calls]
    assert len(loss_settings) == 2 and all(
        (s.density, s.memory_size, s.memory_warmup) == ("empirical", 16, 1) for s in loss_settings
    )
    out = tmp_path / "ablation"
    recorded = json.loads((out / "ablation.json").read_text())["settings"]
    assert {k: recorded[k] for k in SAMPLING_SETTINGS} == SAMPLING_SETTINGS
    assert "`density='empirical'`" in (out / "ablation.md").read_text()
    with pytest.raises(ValueError, match=r"other settings.*'density'"):  # another ablation
        grid(tmp_path, tiny_settings, {**SAMPLING_SETTINGS, "density": "sphere"}, seeds=1)


def test_ablate_flags_for_density_and_memory_reach_the_runs(fake, glyph_folder, tmp_path):
    train = fake()
    command = ["ablate", "--data", f"folder:{glyph_folder}", "--losses", "margin,triplet"]
    command += ["--samplings", "distance-weighted", "--seeds", "1", "--steps", "300"]
    command += ["--density", "empirical", "--memory-size", "256", "--memory-warmup", "100"]
    assert main([*command, "--out", str(tmp_path / "ablation"), "--quiet"]) == 0
    assert {
        (c.loss.density, c.loss.memory_size, c.loss.memory_warmup) for *_, c, _ in train.calls
    } == {("empirical", 256, 100)}
    assert len(train.calls) == 2


def test_a_memory_warm_up_longer_than_the_budget_is_refused_before_any_run(
    fake, tiny_settings, tmp_path
):
    train = fake()
    with pytest.raises(ValueError, match=r"'memory_warmup' \(5\) must be below the run's 2 steps"):
        grid(tmp_path, tiny_settings, {"memory_size": 16, "memory_warmup": 5})
    assert train.calls == [] and not (tmp_path / "ablation").exists()


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"memory_size": 16}, "memory_size=16"),
        ({"density": "empirical"}, "density='empirical'"),
        ({"margin": 0.3}, "margin=0.3"),
        ({"nonzero_loss_cutoff": 1.2}, "nonzero_loss_cutoff=1.2"),
    ],
)
def test_the_pml_row_refuses_sampling_settings_its_recipe_cannot_follow(
    fake, tiny_settings, tmp_path, extra, named
):
    pytest.importorskip("pytorch_metric_learning")
    train = fake()
    with pytest.raises(ValueError, match=f"cannot follow {named}"):
        grid(tmp_path, tiny_settings, extra, losses="margin", with_pml=True)
    assert train.calls == []
    grid(tmp_path, tiny_settings, {"margin": 0.2}, losses="margin", with_pml=True, seeds=1)


# ----------------------------------------------------------------------- failures


def test_a_failing_run_is_marked_and_the_rest_go_on(fake, tiny_settings, tmp_path):
    train = fake(
        {
            "contrastive--hard--seed0": "raise-nan",
            "triplet--uniform--seed1": "raise",
            "triplet--hard--seed0": "nan-metrics",
            "contrastive--uniform--seed1": "collapse",
        }
    )
    grid(tmp_path, tiny_settings)
    out = tmp_path / "ablation"
    status = {(r["loss"], r["sampling"], r["seed"]): r for r in read_csv(out)}
    assert len(train.calls) == len(status) == 8
    assert status["contrastive", "hard", "0"]["status"] == "diverged"
    assert "NaN" in status["contrastive", "hard", "0"]["note"]
    assert status["triplet", "uniform", "1"]["status"] == "failed"
    assert "disk is full" in status["triplet", "uniform", "1"]["note"]
    assert status["triplet", "hard", "0"]["status"] == "diverged"
    assert status["contrastive", "uniform", "1"]["status"] == "collapsed"
    assert sum(r["status"] == "ok" for r in status.values()) == 4
    markdown = (out / "ablation.md").read_text()
    assert "| contrastive | hard | 1/2 | 57.0 |" in markdown  # only the finite seed
    assert "seed 0 diverged" in markdown and "seed 1 failed" in markdown
    train.calls.clear()
    grid(tmp_path, tiny_settings)
    assert train.calls == []  # failures are results: not retried by default
    grid(tmp_path, tiny_settings, retry_failed=True)
    assert sorted(name for name, *_ in train.calls) == [
        "contrastive--hard--seed0",
        "triplet--uniform--seed1",
    ]


# ---------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"losses": "contrastive,hinge"}, r"unknown loss 'hinge'.*'triplet-squared'"),
        ({"samplings": "hardest"}, r"unknown sampling 'hardest'.*'distance-weighted'"),
        ({"samplings": "hard,hard"}, r"sampling names repeat"),
        ({"seeds": 0}, r"seeds must be in \[1, 1000\].*got 0"),
        ({"seeds": "1,x"}, r"seeds must be a count S or a list.*'1,x'"),
        ({"seeds": [0, -1]}, r"seeds must be integers in \[0, 2\*\*63\)"),
        ({"steps": 0}, r"steps must be a positive integer.*got 0"),
    ],
)
def test_bad_input_names_the_value(fake, tiny_settings, tmp_path, options, message):
    train = fake()
    with pytest.raises(ValueError, match=message):
        grid(tmp_path, tiny_settings, **options)
    assert train.calls == [] and not (tmp_path / "ablation").exists()


def test_settings_the_ablation_owns_are_refused(fake, tiny_settings, tmp_path):
    fake()
    with pytest.raises(ValueError, match=r"\['loss', 'seed'\] are set by the ablation"):
        run_ablation({**tiny_settings, "seed": 1, "loss": "margin"}, steps=2, out=tmp_path)
    with pytest.raises(ValueError, match="unknown configuration key"):
        run_ablation({**tiny_settings, "bogus": 1}, steps=2, out=tmp_path)


def test_seed_forms():
    assert check_seeds(3) == check_seeds("3") == (0, 1, 2)
    assert check_seeds("0,4,7") == check_seeds([0, 4, 7]) == (0, 4, 7)
    assert check_seeds("5,") == (5,)


# ------------------------------------------------------------ real runs: CLI + PML


@pytest.fixture(scope="module")
def cli_ablation(glyph_folder, tmp_path_factory):
    """A real ablation through the CLI: margin × (uniform, distance-weighted) (+ PML), 1 seed."""
    out = tmp_path_factory.mktemp("cli-ablation") / "ablation"
    command = [
        "ablate",
        "--data",
        f"folder:{glyph_folder}",
        "--model",
        "small-cnn",
        "--losses",
        "margin",
        "--samplings",
        "uniform,distance-weighted",
        "--seeds",
        "1",
        "--steps",
        "2",
        "--classes-per-batch",
        "3",
        "--samples-per-class",
        "3",
        "--val-fraction",
        "0",
        "--embedding-dim",
        "16",
        "--out",
        str(out),
        "--quiet",
    ]
    status = main([*command, "--with-pml"] if pml_available() else command)
    assert status == 0
    return out


def test_cli_ablation_end_to_end(cli_ablation, run_contract):
    rows = read_csv(cli_ablation)
    expected = [("margin", "uniform"), ("margin", "distance-weighted")]
    expected += [("pml-margin", "distance-weighted")] if pml_available() else []
    assert [(r["loss"], r["sampling"]) for r in rows] == expected
    assert all(r["status"] in ("ok", "collapsed") and r["seed"] == "0" for r in rows)
    assert all(0 <= float(r[m]) <= 1 for r in rows for m in ablation.METRICS)
    for r in rows:
        run = cli_ablation / "runs" / f"{r['loss']}--{r['sampling']}--seed0"
        assert set(json.loads((run / "metrics.json").read_text())) == run_contract
        assert float(r["wall_s"]) == pytest.approx(
            json.loads((run / "ablation-run.json").read_text())["wall_s"], abs=0.01
        )
    assert "| margin | distance-weighted | 1/1 |" in (cli_ablation / "ablation.md").read_text()


def test_cli_rejects_bad_names(cli_ablation, glyph_folder, capsys):
    bad = ["ablate", "--data", f"folder:{glyph_folder}", "--steps", "2", "--out"]
    assert main([*bad, str(cli_ablation.parent / "x"), "--losses", "hinge"]) == 2
    assert "unknown loss 'hinge'" in capsys.readouterr().err


def test_a_removed_result_is_trained_again_alone(cli_ablation, tmp_path, monkeypatch, capsys):
    out = tmp_path / "copy"
    shutil.copytree(cli_ablation, out)
    run = out / "runs" / "margin--uniform--seed0"
    (run / "metrics.json").unlink()
    calls = []
    real = training.train

    def counting(config, **options):
        calls.append((config.run.out, options["resume"]))
        return real(config, **options)

    monkeypatch.setattr(training, "train", counting)
    command = replay(out)  # writes shared.yaml beside the copy
    assert main(["ablate", "--config", str(tmp_path / "shared.yaml"), *command]) == 0
    assert calls == [(str(run), True)]  # only that run, resumed from its last.pt
    assert capsys.readouterr().out.startswith("# Loss × sampling ablation")
    assert (run / "metrics.json").exists()
    assert json.loads((run / "ablation-run.json").read_text())["sessions"] == 2


def replay(out):
    """The fixture's command for the copied ablation (shared settings from its ablation.json)."""
    shared = json.loads((out / "ablation.json").read_text())["settings"]
    import yaml

    steps = shared.pop("steps")
    (out.parent / "shared.yaml").write_text(yaml.safe_dump(shared))
    command = ["--losses", "margin", "--samplings", "uniform,distance-weighted", "--seeds", "1"]
    command += ["--steps", str(steps), "--out", str(out), "--quiet"]
    return [*command, "--with-pml"] if pml_available() else command


def test_pml_row_trains_beta_in_its_own_group(cli_ablation):
    pytest.importorskip("pytorch_metric_learning")
    state = torch.load(
        cli_ablation / "runs" / "pml-margin--distance-weighted--seed0" / "last.pt",
        weights_only=True,
    )
    assert float(state["loss"]["loss.beta"]) != pytest.approx(1.2, abs=1e-6)  # β moved
    groups = state["optimiser"]["param_groups"]
    beta = [g for g in groups if g.get("name") == "beta"]
    assert len(beta) == 1 and len(beta[0]["params"]) == 1
    assert beta[0]["initial_lr"] == pytest.approx(TrainConfig().optim.beta_lr)  # the default


def test_missing_pml_names_the_extra(
    fake, glyph_folder, tiny_settings, tmp_path, monkeypatch, capsys
):
    fake()

    real = importlib.import_module

    def no_pml(name, *args):
        if name.startswith("pytorch_metric_learning"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", no_pml)  # require imports through it
    with pytest.raises(ImportError, match=r"bench"):
        grid(tmp_path, tiny_settings, with_pml=True)
    command = ["ablate", "--data", f"folder:{glyph_folder}", "--steps", "2", "--with-pml"]
    assert main([*command, "--out", str(tmp_path / "x")]) == 2
    assert "'bench' extra" in capsys.readouterr().err
