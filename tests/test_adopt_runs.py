"""benchmarks/adopt_runs.py: another benchmark's finished runs become an ablation's cell
only when they were trained with the settings the ablation gives that cell."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import adopt_runs
from sampling_matters.ablation.plan import RunSpec, shared_config, shared_settings
from sampling_matters.ablation.record import recorded_result

SETTINGS = {"data": "kanji", "model": "small-cnn"}
STEPS = 40


def ablation(root: Path) -> Path:
    """An ablation folder as ``ablate`` starts it: its shared settings only."""
    out = root / "ablation"
    out.mkdir()
    flat = shared_settings(shared_config(SETTINGS, STEPS))
    (out / "ablation.json").write_text(json.dumps({"settings": flat}))
    return out


def finished_run(folder: Path, seed: int, loss: str = "margin", wall: float = 12.5) -> None:
    """What ``train()`` leaves in a finished run's folder, and the benchmark's wall time."""
    values = {**SETTINGS, "loss": loss, "sampling": "distance-weighted", "seed": seed}
    values |= {"steps": STEPS, "out": str(folder)}
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(
        "".join(f"{k}: {json.dumps(v)}\n" for k, v in values.items())
    )
    for name in ("best.pt",):  # a record keeps none: last.pt is not there
        (folder / name).write_bytes(b"checkpoint")
    (folder / "log.csv").write_text("step,loss\n40,0.1\n")
    (folder / "metrics.json").write_text(json.dumps({"recall@1": 0.9 + seed / 100}))
    (folder / "wall_s.txt").write_text(f"{wall}\n")


def test_finished_runs_of_the_same_settings_become_the_cell(tmp_path):
    out, source = ablation(tmp_path), tmp_path / "defaults"
    for seed in (0, 1):
        finished_run(source / f"seed{seed}", seed)
    (source / "seed2").mkdir()  # started, not finished: left alone

    adopted = adopt_runs.adopt(out, "margin--distance-weighted", source)

    assert [p.name for p in adopted] == [f"margin--distance-weighted--seed{s}" for s in (0, 1)]
    run = adopted[1]
    assert f"out: {run}" in (run / "config.yaml").read_text().splitlines()
    result = recorded_result(RunSpec("margin", "distance-weighted", 1), run)
    assert result is not None and result.metrics == {"recall@1": 0.91}
    assert result.wall_s == 12.5
    assert not (out / "runs" / "margin--distance-weighted--seed2").exists()
    assert adopt_runs.adopt(out, "margin--distance-weighted", source) == []  # kept, not redone


def test_a_run_with_other_settings_is_refused(tmp_path):
    out, source = ablation(tmp_path), tmp_path / "defaults"
    finished_run(source / "seed0", 0, loss="triplet")
    with pytest.raises(SystemExit, match=r"other settings \(loss\)"):
        adopt_runs.adopt(out, "margin--distance-weighted", source)
    assert not (out / "runs").exists()


def test_a_cell_needs_its_loss_and_sampling_and_the_ablation_its_settings(tmp_path):
    with pytest.raises(SystemExit, match=r"no ablation\.json"):
        adopt_runs.adopt(tmp_path, "margin--distance-weighted", tmp_path)
    with pytest.raises(SystemExit, match="expected LOSS--SAMPLING"):
        adopt_runs.adopt(ablation(tmp_path), "margin", tmp_path)
