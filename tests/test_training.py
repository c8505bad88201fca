import csv
import json

import pytest
import torch
import yaml

from sampling_matters import training
from sampling_matters.training import TrainConfig, train


def config(folder, out, **overrides):
    values = {
        "data": f"folder:{folder}",
        "model": "small-cnn",
        "steps": 8,
        "classes_per_batch": 3,
        "samples_per_class": 3,
        "val_fraction": 0.25,
        "out": str(out),
        "log_every": 2,
        "embedding_dim": 16,
        "eval_batch_size": 32,
    }
    values.update(overrides)
    return TrainConfig.from_flat(values)


def test_run_directory_follows_the_contract(contract, glyph_folder, tmp_path):
    metrics = train(config(glyph_folder, tmp_path / "run"), progress=False)
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} >= {
        "config.yaml",
        "best.pt",
        "last.pt",
        "log.csv",
        "metrics.json",
    }
    assert json.loads((run / "metrics.json").read_text()) == metrics
    assert set(metrics) == contract and metrics["n_classes"] == 8
    assert all(0 <= metrics[k] <= 1 for k in contract - {"n_queries", "n_classes"})
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["loss"] == "margin" and saved["steps"] == 8
    rows = list(csv.DictReader((run / "log.csv").open()))
    assert rows and set(rows[0]) == set(training.LOG_COLUMNS)
    assert all(float(r["negative_distance"]) > 0 for r in rows if r["loss"] != "nan")


@pytest.mark.parametrize(
    ("loss", "sampling"),
    [("triplet", "semihard"), ("contrastive", "uniform"), ("triplet-squared", "hard")],
)
def test_other_losses_train(contract, glyph_folder, tmp_path, loss, sampling):
    metrics = train(
        config(glyph_folder, tmp_path, loss=loss, sampling=sampling, steps=3), progress=False
    )
    assert set(metrics) == contract


def test_killed_run_resumes_exactly(glyph_folder, tmp_path, monkeypatch):
    whole = tmp_path / "whole"
    train(config(glyph_folder, whole, steps=24, beta_per_class=True), progress=False)
    killed = tmp_path / "killed"
    original = training._end_epoch
    calls = {"n": 0}

    def end_then_die(*args, **kwargs):
        original(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(training, "_end_epoch", end_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(config(glyph_folder, killed, steps=24, beta_per_class=True), progress=False)
    monkeypatch.setattr(training, "_end_epoch", original)
    assert not (killed / "metrics.json").exists()
    train(config(glyph_folder, killed, steps=24, beta_per_class=True), resume=True, progress=False)
    a = torch.load(whole / "last.pt", weights_only=False)
    b = torch.load(killed / "last.pt", weights_only=False)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert torch.equal(a["loss"]["beta_class"], b["loss"]["beta_class"])
    steps = [int(r["step"]) for r in csv.DictReader((killed / "log.csv").open())]
    assert steps == sorted(steps)


def test_frozen_backbone_with_cached_features(contract, glyph_folder, tmp_path):
    metrics = train(
        config(glyph_folder, tmp_path, freeze_backbone=True, cache_features=True, steps=4),
        progress=False,
    )
    assert set(metrics) == contract


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lossy": 1}, "unknown configuration key"),
        ({"loss": "hinge"}, "unknown loss"),
        ({"sampling": "random"}, "unknown sampling"),
        ({"epochs": 2}, "exactly one of steps and epochs"),
        ({"cache_features": True}, "cache_features needs freeze_backbone"),
        ({"loss": "triplet", "beta_per_class": True}, "belong to the margin loss"),
    ],
)
def test_bad_configuration(glyph_folder, tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        config(glyph_folder, tmp_path, **overrides)
