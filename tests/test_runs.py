"""A run directory is never lost: refused starts, resumes, the lock, orphans, Ctrl-C."""

import csv
import hashlib
import os
import signal
import subprocess
import sys

import pytest
import torch
import yaml

from sampling_matters import runs
from sampling_matters.config import TrainConfig
from sampling_matters.runs import LOCK, RunInUseError, RunLock
from sampling_matters.training import TrainingInterrupted, loop, train


@pytest.fixture(scope="module")
def settings(tiny_settings):
    """A TrainConfig of a tiny run on ``folder`` into ``out`` (6 steps, validated)."""

    def make(folder, out, **overrides):
        values = {**tiny_settings, "steps": 6, "val_fraction": 0.25, "log_every": 1}
        values.update(data=f"folder:{folder}", out=str(out), **overrides)
        return TrainConfig.from_flat(values)

    return make


def snapshot(folder):
    """Every file of ``folder`` (hidden ones too) and the sha256 of its bytes."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file()
    }


RUN = ("config.yaml", "best.pt", "last.pt", "log.csv", "metrics.json")


def copy_run(run, to, names=RUN):
    """A copy of some of a run's files in the new folder ``to``."""
    to.mkdir(parents=True)
    for name in names:
        (to / name).write_bytes((run / name).read_bytes())
    return to


@pytest.fixture(scope="module")
def finished(settings, glyph_folder, tmp_path_factory):
    """A finished run (the files that must survive every refused start)."""
    out = tmp_path_factory.mktemp("runs") / "run"
    train(settings(glyph_folder, out), progress=False)
    return out


def test_a_new_run_into_a_run_is_refused_and_changes_nothing(settings, glyph_folder, finished):
    before = snapshot(finished)
    with pytest.raises(ValueError, match=r"--resume .*--overwrite"):
        train(settings(glyph_folder, finished), progress=False)
    assert snapshot(finished) == before


@pytest.mark.parametrize(
    ("change", "named"),
    [({"loss": "triplet"}, "loss 'margin' -> 'triplet'"), ({"embedding_dim": 8}, "embedding_dim")],
)
def test_a_resume_that_changes_settings_is_refused_and_changes_nothing(
    settings, glyph_folder, finished, change, named
):
    before = snapshot(finished)
    with pytest.raises(ValueError, match=named):
        train(settings(glyph_folder, finished, **change), resume=True, progress=False)
    assert snapshot(finished) == before
    # neutral settings (how, not what) may differ, and a plain resume still works
    train(settings(glyph_folder, finished, eval_batch_size=16), resume=True, progress=False)


LOSS_SETTINGS = (
    "margin",
    "cutoff",
    "nonzero_loss_cutoff",
    "density",
    "max_reference_positives",
    "memory_size",
    "memory_warmup",
)
"""Settings a run recorded before they existed lacks (it trained with their old values)."""


def as_recorded_before_the_loss_settings(run, **changes):
    """Strip the loss settings from a run's config.yaml and last.pt, as an older version."""
    recorded = yaml.safe_load((run / "config.yaml").read_text())
    recorded = {k: v for k, v in recorded.items() if k not in LOSS_SETTINGS} | changes
    (run / "config.yaml").write_text(yaml.safe_dump(recorded))
    state = torch.load(run / "last.pt", weights_only=True)
    state["config"] = {k: v for k, v in state["config"].items() if k not in LOSS_SETTINGS}
    state["config"].update(changes)
    del state["memory"]
    torch.save(state, run / "last.pt")


def test_a_run_recorded_before_the_loss_settings_existed_resumes_as_it_trained(
    settings, glyph_folder, finished, tmp_path
):
    old = copy_run(finished, tmp_path / "old")
    as_recorded_before_the_loss_settings(old)
    train(settings(glyph_folder, old), resume=True, progress=False)  # margin 0.2, cutoff 1.4
    other = copy_run(finished, tmp_path / "other")
    as_recorded_before_the_loss_settings(other, beta=1.0)  # it sampled with 1.4, not α + β
    with pytest.raises(ValueError, match=r"nonzero_loss_cutoff 1\.4 -> 1\.2"):
        train(settings(glyph_folder, other, beta=1.0), resume=True, progress=False)
    same = settings(glyph_folder, other, beta=1.0, nonzero_loss_cutoff=1.4)
    train(same, resume=True, progress=False)


@pytest.mark.parametrize("damage", ["truncated", "empty", "code"])
def test_an_unreadable_last_pt_is_refused_and_changes_nothing(
    settings, glyph_folder, finished, tmp_path, damage
):
    copy = copy_run(finished, tmp_path / "copy")
    data = (copy / "last.pt").read_bytes()
    marker = tmp_path / "ran"
    if damage == "code":
        torch.save(Payload(marker), copy / "last.pt")
    else:
        (copy / "last.pt").write_bytes(data[: len(data) // 2] if damage == "truncated" else b"")
    before = snapshot(copy)
    with pytest.raises(ValueError, match=r"last\.pt"):
        train(settings(glyph_folder, copy), resume=True, progress=False)
    assert snapshot(copy) == before and not marker.exists()


class Payload:
    """A pickle that, when loaded with pickle's full power, creates a file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_overwrite_replaces_the_run_only_once_the_new_one_can_start(
    settings, glyph_folder, finished, tmp_path
):
    before = snapshot(finished)
    with pytest.raises(FileNotFoundError, match="nowhere"):  # a failed start: no data
        train(settings(tmp_path / "nowhere", finished), overwrite=True, progress=False)
    assert snapshot(finished) == before
    other = tmp_path / "other"
    train(settings(glyph_folder, other, steps=2), progress=False)
    train(settings(glyph_folder, other, steps=3, loss="triplet"), overwrite=True, progress=False)
    rows = list(csv.DictReader((other / "log.csv").open()))
    assert max(int(r["step"]) for r in rows) == 3
    assert "triplet" in (other / "config.yaml").read_text()


def test_resume_and_overwrite_together_and_an_empty_out_are_errors(
    settings, glyph_folder, tmp_path
):
    with pytest.raises(ValueError, match="choose one"):
        train(settings(glyph_folder, tmp_path / "r"), resume=True, overwrite=True)
    with pytest.raises(ValueError, match="'out'"):
        settings(glyph_folder, "  ")


def test_a_second_training_into_a_folder_in_use_is_refused(settings, glyph_folder, tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        out = tmp_path / "busy"
        out.mkdir()
        (out / LOCK).write_text(f"{sleeper.pid}\n")
        with pytest.raises(RunInUseError, match=str(sleeper.pid)):
            train(settings(glyph_folder, out), progress=False)
        assert not (out / "config.yaml").exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    train(settings(glyph_folder, out, steps=2), resume=True, progress=False)  # stale: taken over
    assert not (out / LOCK).exists() and (out / "metrics.json").exists()


def test_the_lock_is_released_on_error_and_refuses_a_nested_holder(tmp_path):
    with pytest.raises(KeyError), RunLock(tmp_path):
        assert (tmp_path / LOCK).read_text().strip() == str(os.getpid())
        with pytest.raises(RunInUseError):
            RunLock(tmp_path).__enter__()
        raise KeyError("boom")
    assert not (tmp_path / LOCK).exists()


def test_orphan_temporaries_of_a_killed_save_are_removed_at_the_next_start(
    settings, glyph_folder, tmp_path
):
    out = tmp_path / "run"
    train(settings(glyph_folder, out, steps=2), progress=False)
    orphans = [out / ".last.pt.x1y2", out / ".best.pt.abc"]
    for orphan in orphans:
        orphan.write_bytes(b"half a checkpoint")
    (out / ".keep.me").write_text("not ours")
    train(settings(glyph_folder, out, steps=2), resume=True, progress=False)
    assert not any(orphan.exists() for orphan in orphans)
    assert (out / ".keep.me").exists()


def test_outputs_never_overwrite_a_run_file(finished, tmp_path):
    for name in ("best.pt", "last.pt", "config.yaml"):
        with pytest.raises(ValueError, match="would overwrite"):
            runs.check_output(finished / name, "--out")
    with pytest.raises(ValueError, match="is a folder"):
        runs.check_output(finished, "--out")
    runs.check_output(finished / "gallery.pt", "--out")  # another name is fine
    runs.check_output(tmp_path / "best.pt", "--out")  # not a run directory


def interrupt_at(monkeypatch, step):
    """Send this process a real SIGINT during training step ``step`` (1-based)."""
    original, calls = loop._step, {"n": 0}

    def step_then_signal(*args, **kwargs):
        result = original(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == step:
            signal.raise_signal(signal.SIGINT)
        return result

    monkeypatch.setattr(loop, "_step", step_then_signal)


MEMORY = {"memory_size": 12, "memory_warmup": 1}
"""A small cross-batch memory: full after two batches, so the cut run resumes a full one."""


@pytest.mark.parametrize("extra", [{}, MEMORY], ids=["batch", "memory"])
def test_ctrl_c_stops_at_a_step_and_the_resume_is_exact(
    settings, glyph_folder, tmp_path, monkeypatch, extra
):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    before = signal.getsignal(signal.SIGINT)  # the default, or ignored in a background job
    train(settings(glyph_folder, whole, steps=14, beta_per_class=True, **extra), progress=False)
    interrupt_at(monkeypatch, 6)  # inside the second epoch (4 batches each)
    with pytest.raises(TrainingInterrupted) as stopped:
        train(settings(glyph_folder, cut, steps=14, beta_per_class=True, **extra), progress=False)
    assert (stopped.value.step, stopped.value.total) == (6, 14)
    state = torch.load(cut / "last.pt", weights_only=True)
    assert state["progress"]["step"] == 6
    assert (state["memory"] is None) == (not extra)  # the memory's state, when there is one
    assert signal.getsignal(signal.SIGINT) is before  # restored
    monkeypatch.undo()
    again = settings(glyph_folder, cut, steps=14, beta_per_class=True, **extra)
    train(again, resume=True, progress=False)
    assert_same_training(whole, cut)


def assert_same_training(whole, cut):
    """The cut-and-resumed run ends where the whole run ends: weights, β, memory, log steps."""
    a = torch.load(whole / "last.pt", weights_only=True)
    b = torch.load(cut / "last.pt", weights_only=True)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert torch.equal(a["loss"]["beta_class"], b["loss"]["beta_class"])
    if a["memory"] is not None:
        assert a["memory"].keys() == b["memory"].keys()
        for key, value in a["memory"].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["memory"][key])), key
    logged = [[r["step"] for r in csv.DictReader((run / "log.csv").open())] for run in (whole, cut)]
    assert logged[0] == logged[1]


def test_a_run_killed_after_an_epoch_resumes_exactly(settings, glyph_folder, tmp_path, monkeypatch):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    train(settings(glyph_folder, whole, steps=24, beta_per_class=True), progress=False)
    original, calls = loop._end_epoch, {"n": 0}

    def end_then_die(*args, **kwargs):
        original(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt  # as a kill right after last.pt was written

    monkeypatch.setattr(loop, "_end_epoch", end_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(settings(glyph_folder, killed, steps=24, beta_per_class=True), progress=False)
    monkeypatch.undo()
    assert not (killed / "metrics.json").exists()
    train(
        settings(glyph_folder, killed, steps=24, beta_per_class=True), resume=True, progress=False
    )
    assert_same_training(whole, killed)


def fail_at_first_step(monkeypatch):
    def boom(*args, **kwargs):
        raise ValueError("the first step failed")

    monkeypatch.setattr(loop, "_step", boom)


def test_an_overwrite_that_fails_before_a_checkpoint_puts_the_run_back(
    settings, glyph_folder, finished, tmp_path, monkeypatch
):
    copy = copy_run(finished, tmp_path / "copy")
    before = snapshot(copy)
    fail_at_first_step(monkeypatch)
    with pytest.raises(ValueError, match="first step failed"):
        train(settings(glyph_folder, copy, loss="triplet"), overwrite=True, progress=False)
    assert snapshot(copy) == before  # no .replaced folder left either


def test_a_new_run_that_fails_leaves_no_folder_and_can_start_again(
    settings, glyph_folder, tmp_path, monkeypatch
):
    out = tmp_path / "new"
    fail_at_first_step(monkeypatch)
    with pytest.raises(ValueError, match="first step failed"):
        train(settings(glyph_folder, out), progress=False)
    assert not out.exists()
    (out / "log.csv").parent.mkdir()
    (out / "log.csv").write_text("step\n")  # what an older failed start left
    monkeypatch.undo()
    train(settings(glyph_folder, out, steps=2), progress=False)  # not "holds a run"
    assert (out / "metrics.json").exists()


def test_a_start_killed_before_its_first_checkpoint_is_undone_at_the_next(
    settings, glyph_folder, finished, tmp_path
):
    copy = tmp_path / "copy"
    copy_run(finished, copy / runs.ASIDE)
    (copy / "config.yaml").write_text("data: what the killed start wrote\n")
    runs.remove_orphans(copy)
    assert not (copy / runs.ASIDE).exists()
    assert (copy / "best.pt").read_bytes() == (finished / "best.pt").read_bytes()
    assert (copy / "config.yaml").read_bytes() == (finished / "config.yaml").read_bytes()


def test_resuming_a_run_without_last_pt_is_refused(settings, glyph_folder, finished, tmp_path):
    copy = copy_run(finished, tmp_path / "copy", ("config.yaml", "best.pt", "metrics.json"))
    with pytest.raises(ValueError, match=r"no last\.pt"):
        train(settings(glyph_folder, copy), resume=True, progress=False)


def test_a_diverging_run_stops_with_a_clear_error(settings, glyph_folder, tmp_path, monkeypatch):
    from sampling_matters.losses import MarginLoss

    def nan_loss(self, embeddings, labels, indices=None):
        return embeddings.sum() * float("nan")

    monkeypatch.setattr(MarginLoss, "forward", nan_loss)
    with pytest.raises(ValueError, match="diverged: the loss became NaN or Inf"):
        train(settings(glyph_folder, tmp_path / "nan"), progress=False)
