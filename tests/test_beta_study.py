"""benchmarks/beta_study.py: four β arms trained for real on the glyph folder, 1 seed."""

import csv
import json
import sys
from pathlib import Path

import pytest

from sampling_matters import training
from sampling_matters.ablation import run_ablation

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import beta_study


@pytest.fixture(scope="module")
def study(tiny_settings, tmp_path_factory):
    """An ablation of the margin × distance-weighted cell, then the β study like it."""
    root = tmp_path_factory.mktemp("beta")
    shared = {**tiny_settings, "beta_lr": 0.05}
    run_ablation(
        shared,
        steps=6,
        out=root / "ablation",
        losses="margin",
        samplings="distance-weighted",
        seeds=1,
        progress=False,
    )
    args = ["--like", str(root / "ablation"), "--seeds", "1"]
    beta_study.main([*args, "--out", str(root / "beta"), "--results", str(root / "results")])
    return root


def rows(study):
    with (study / "results" / "beta.csv").open(newline="") as handle:
        return {r["arm"]: r for r in csv.DictReader(handle)}


def test_every_arm_is_reported_with_its_beta(study):
    by_arm = rows(study)
    assert list(by_arm) == ["fixed", "global", "per-class", "per-image"]
    assert float(by_arm["fixed"]["beta0"]) == pytest.approx(1.2, abs=1e-4)
    assert float(by_arm["global"]["beta0"]) != pytest.approx(1.2, abs=1e-4)
    assert by_arm["fixed"]["offset_std"] == by_arm["global"]["offset_std"] == "nan"
    assert float(by_arm["per-class"]["offset_std"]) > 0
    assert float(by_arm["per-image"]["offset_std"]) > 0
    assert all(0 <= float(r["recall@1"]) <= 1 for r in by_arm.values())
    text = (study / "results" / "beta.md").read_text()
    assert "| per-image | 1/1 |" in text and "`steps=6`" in text
    assert "cell of the ablation in `ablation`" in text


def test_each_arm_trains_with_its_own_beta_settings(study):
    for arm, values in beta_study.ARMS.items():
        settings = json.loads((study / "beta" / arm / "ablation.json").read_text())["settings"]
        assert {k: settings[k] for k in values} == values
        assert settings["beta_lr"] == 0.05 and settings["steps"] == 6  # the ablation's


def test_the_global_arm_is_the_ablations_run(study):
    name = "margin--distance-weighted--seed0"
    ours = study / "beta" / "global" / "runs" / name / "metrics.json"
    theirs = study / "ablation" / "runs" / name / "metrics.json"
    assert json.loads(ours.read_text()) == json.loads(theirs.read_text())
    assert float(rows(study)["global"]["recall@1"]) == pytest.approx(
        json.loads(theirs.read_text())["recall@1"], abs=1e-6
    )


def test_a_finished_study_trains_nothing_again(study, monkeypatch):
    calls = []
    monkeypatch.setattr(training, "train", lambda config, **_: calls.append(config))
    args = ["--like", str(study / "ablation"), "--seeds", "1", "--out", str(study / "beta")]
    beta_study.main([*args, "--results", str(study / "results")])
    assert calls == []


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="holds no ablation"):
        beta_study.main(["--like", str(tmp_path), "--out", "x", "--results", str(tmp_path)])
    with pytest.raises(SystemExit, match="give --steps"):
        beta_study.main(["--out", str(tmp_path / "x"), "--results", str(tmp_path)])
    with pytest.raises(ValueError, match="unknown arm 'learned'"):
        args = ["--steps", "2", "--arms", "learned", "--out", "x", "--results", str(tmp_path)]
        beta_study.main(args)
