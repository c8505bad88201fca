"""benchmarks/defaults.py: each arm is paired against its own base, and a run read back
must be the arm's (its flags under today's defaults)."""

import argparse
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import defaults
from sampling_matters.config import TrainConfig


def metrics(recall: float, map_r: float) -> dict[str, float]:
    return {"recall@1": recall, "map@r": map_r}


def test_arms_are_paired_against_their_own_base(tmp_path):
    results = {
        "defaults": {s: metrics(0.97, 0.85 + s / 1000) for s in range(3)},
        "previous-defaults": {s: metrics(0.96, 0.83 + s / 1000) for s in range(3)},
        "photo-augment": {s: metrics(0.93, 0.70 + s / 1000) for s in range(3)},
    }
    args = argparse.Namespace(data="kanji", steps=2500, runs=tmp_path)
    text = defaults.render(results, [0, 1, 2], args)
    first, second = text.split("## Against the previous defaults")
    assert "`photo-augment`" not in first and "`photo-augment`" in second
    # previous-defaults against defaults: exactly −2 MAP@R points on every seed
    assert "| `previous-defaults` |" in first and "-2.0 [-2.0, -2.0]" in first
    # photo-augment against previous-defaults (−13 points), not against defaults (−15)
    assert "-13.0 [-13.0, -13.0]" in second and "Δ R@1 vs previous-defaults" in second
    assert "**met**" in text  # the defaults' target: MAP@R 0.851 ≥ 0.833, R@1 ≥ 0.965


def test_every_arm_names_a_known_base_and_the_previous_defaults_as_flags():
    names = {arm.name for arm in defaults.ARMS}
    assert all(arm.base in names for arm in defaults.ARMS)
    previous = defaults.expected(
        Path("x"), ["--steps", "9", *defaults.BY_NAME["previous-defaults"].flags]
    )
    assert (previous.data.classes_per_batch, previous.data.samples_per_class) == (16, 5)
    assert previous.optim.beta_lr == 0.01
    now = defaults.expected(Path("x"), ["--steps", "9"])
    assert (now.data.classes_per_batch, now.data.samples_per_class, now.optim.beta_lr) == (
        20,
        4,
        1e-3,
    )


def test_a_run_read_back_with_other_settings_than_the_arm_s_is_refused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    other = TrainConfig.from_flat({"data": "kanji", "steps": 2500, "beta_lr": 0.01}).flat()
    (run / "config.yaml").write_text(yaml.safe_dump(other))
    arm = defaults.BY_NAME["batch-16x5"]  # 16 × 5 at today's β rate: not this run
    with pytest.raises(SystemExit, match="other settings"):
        defaults.check_settings(defaults.expected(run, ["--steps", "2500", *arm.flags]), run)
