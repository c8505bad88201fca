"""benchmarks/finished.py: runs trained once, resumed when cut, recorded and restored."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import finished


def fake_training(out: Path, calls: list[bool], fail: bool = False):
    """A stand-in for ``train(resume)`` that writes what a run writes."""

    def train(resume: bool) -> None:
        calls.append(resume)
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text("seed: 0\n")
        (out / "last.pt").write_bytes(b"checkpoint")
        if fail:
            raise KeyboardInterrupt
        (out / "log.csv").write_text("step,loss\n1,0.5\n")
        (out / "metrics.json").write_text(json.dumps({"recall@1": 0.5, "model": "x"}))

    return train


def test_a_cut_run_resumes_and_its_time_adds_up(tmp_path):
    out, calls = tmp_path / "run", []
    with pytest.raises(KeyboardInterrupt):
        finished.train_once(out, fake_training(out, calls, fail=True))
    assert (out / finished.WALL).exists()  # the cut session's time is kept
    first = finished.wall_seconds(out)
    finished.train_once(out, fake_training(out, calls))
    finished.train_once(out, fake_training(out, calls))  # finished: not trained again
    assert calls == [False, True]
    assert finished.wall_seconds(out) >= first
    assert finished.read_metrics(out) == {"recall@1": 0.5}


def test_a_recorded_run_is_restored_into_a_fresh_clone_not_retrained(tmp_path):
    out, record, calls = tmp_path / "run", tmp_path / "record", []
    finished.train_once(out, fake_training(out, calls), record)
    assert calls == [False]
    assert sorted(p.name for p in record.iterdir()) == sorted(finished.KEPT)  # no checkpoint
    fresh = tmp_path / "clone" / "run"
    finished.train_once(fresh, fake_training(fresh, calls), record)
    assert calls == [False]
    assert finished.read_metrics(fresh) == finished.read_metrics(out)
    assert finished.wall_seconds(fresh) == finished.wall_seconds(out)


def test_an_unfinished_run_is_not_recorded_and_a_started_one_is_not_replaced(tmp_path):
    out, record, calls = tmp_path / "run", tmp_path / "record", []
    with pytest.raises(KeyboardInterrupt):
        finished.train_once(out, fake_training(out, calls, fail=True), record)
    assert not record.exists()
    other = tmp_path / "other"
    finished.train_once(other, fake_training(other, calls), record)  # records the finished one
    finished.train_once(out, fake_training(out, calls), record)  # the cut run resumes
    assert calls == [False, False, True]


def test_a_run_config_with_its_record_keys_is_compared_on_its_settings(tmp_path):
    from sampling_matters.config import TrainConfig

    config = TrainConfig.from_flat({"data": "kanji", "seed": 3, "steps": 10})
    written = {**config.flat(), "global_classes_per_batch": 16, "global_batch_size": 80}
    (tmp_path / "config.yaml").write_text(
        "".join(f"{k}: {json.dumps(v)}\n" for k, v in written.items())
    )
    finished.check_settings(config, tmp_path)  # the record keys are no settings
    with pytest.raises(SystemExit, match=r"other settings \(seed\)"):
        other = TrainConfig.from_flat({"data": "kanji", "seed": 4, "steps": 10})
        finished.check_settings(other, tmp_path)
