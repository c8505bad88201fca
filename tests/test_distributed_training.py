"""Training in 2 real processes (gloo on CPU): the command line's --nproc, and train().

The command-line tests launch ``sampling-matters train --nproc 2`` (torch.distributed.run)
on the glyph fixture: one run ends with one set of files, a run whose process is killed
resumes and ends as the uninterrupted run does, and a resume in another world is
refused. The in-process test runs :func:`train` in two spawned processes and checks that
the model, β and the cross-batch memory end identical on both.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml

from sampling_matters import distributed
from sampling_matters.cli import main
from sampling_matters.config import TrainConfig

STEPS = 40


def settings(glyph_folder: Path, out: Path) -> list[str]:
    """Flags of a small 2-process run: 2 processes × 2 classes × 3 images a step."""
    return [
        "--data",
        f"folder:{glyph_folder}",
        "--classes-per-batch",
        "2",
        "--samples-per-class",
        "3",
        "--embedding-dim",
        "16",
        "--steps",
        str(STEPS),
        "--out",
        str(out),
        "--quiet",
    ]


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "sampling_matters", "train", *args]


def environment() -> dict[str, str]:
    """The test's environment, less any torchrun variables, one thread a process."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    return {**env, "OMP_NUM_THREADS": "1"}


def launch(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(*args), capture_output=True, text=True, timeout=timeout, env=environment()
    )


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, waiting = [], [pid]
    while waiting:
        for child in children.get(waiting.pop(), []):
            found.append(child)
            waiting.append(child)
    return found


def workers(pid: int) -> list[int]:
    """The training processes that the launcher ``pid`` started (they run sampling_matters)."""
    found = []
    for child in descendants(pid):
        try:
            line = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"sampling_matters" in line and b"torch.distributed.run" not in line:
            found.append(child)
    return found


@pytest.fixture(scope="module")
def finished(glyph_folder, tmp_path_factory):
    """An uninterrupted 2-process run, and what the launcher printed."""
    out = tmp_path_factory.mktemp("two") / "run"
    result = launch("--nproc", "2", *settings(glyph_folder, out))
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def test_a_two_process_run_ends_with_one_set_of_files(finished, run_contract):
    out, result = finished
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == run_contract
    assert result.stdout.count('"recall@1"') == 1  # rank 0 alone prints
    recorded = yaml.safe_load((out / "config.yaml").read_text())
    assert recorded["world_size"] == 2
    assert recorded["global_classes_per_batch"] == 4
    assert recorded["global_batch_size"] == 12
    steps = [int(line.split(",")[0]) for line in (out / "log.csv").read_text().splitlines()[1:]]
    assert steps == sorted(set(steps)) and steps[-1] == STEPS  # one writer: no row twice
    assert sorted(p.name for p in out.iterdir()) == [
        "best.pt",
        "config.yaml",
        "last.pt",
        "log.csv",
        "metrics.json",
    ]


def test_the_sharded_evaluation_scores_every_test_image_in_order(finished, capsys):
    """metrics.json (each process embedded a share) equals one process scoring best.pt."""
    out, _ = finished
    assert main(["eval", str(out)]) == 0
    expected = json.loads(capsys.readouterr().out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_queries"] == expected["n_queries"]
    for key in ("recall@1", "map@r", "r_precision", "nmi"):
        assert metrics[key] == pytest.approx(expected[key], abs=1e-6), key


def test_a_killed_process_stops_the_other_and_the_run_resumes_exactly(
    finished, glyph_folder, tmp_path
):
    out = tmp_path / "run"
    launcher = subprocess.Popen(
        command("--nproc", "2", *settings(glyph_folder, out)),
        env=environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not (out / "last.pt").exists():  # training has begun: an epoch has ended
            assert launcher.poll() is None, launcher.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no last.pt within 240 s"
            time.sleep(0.05)
        ranks = workers(launcher.pid)
        assert len(ranks) == 2, ranks
        os.kill(ranks[-1], signal.SIGKILL)
        status = launcher.wait(timeout=120)  # the launcher stops the other: no hang
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert status != 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in ranks)
    assert not (out / "metrics.json").exists()

    refused = launch("--resume", str(out), "--quiet")  # one process
    assert refused.returncode == 2
    assert "trains in 2 processes" in refused.stderr and "--nproc 2" in refused.stderr

    resumed = launch("--nproc", "2", "--resume", str(out), "--quiet")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    mine = json.loads((out / "metrics.json").read_text())
    theirs = json.loads((finished[0] / "metrics.json").read_text())
    for key in ("recall@1", "map@r", "nmi"):
        assert mine[key] == pytest.approx(theirs[key], abs=1e-6), key


def test_a_refusal_on_rank_0_stops_both_with_its_reason(finished):
    out, _ = finished
    refused = launch("--nproc", "2", "--steps", "5", "--out", str(out), "--quiet", timeout=120)
    assert refused.returncode != 0
    assert "already holds a run" in refused.stderr


# ------------------------------------------------------------- train() in 2 processes


def _train_worker(r: int, store: str, flat: dict, out: str) -> None:
    """Rank r trains; it reports digests of its model, β and memory at the end."""
    import sampling_matters.training.loop as loop
    from sampling_matters.training import train

    result: dict[str, object] = {}
    finish = loop._finish

    def report(run, state):  # at the end of training, before the test metrics
        weights = run.model.state_dict().values()
        result["model"] = [t.tolist() for t in weights if t.is_floating_point()]
        result["beta"] = [t.tolist() for t in run.loss.state_dict().values()]
        memory = run.memory.state_dict().items()
        result["memory"] = {k: v.tolist() for k, v in memory if torch.is_tensor(v)}
        return finish(run, state)

    try:
        torch.set_num_threads(1)
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=r, world_size=2)
        loop._finish = report
        result["metrics"] = train(TrainConfig.from_flat(flat), progress=False)
    except Exception as error:  # reported to the test, not lost in a child process
        result = {"error": f"{type(error).__name__}: {error}", "trace": traceback.format_exc()}
    finally:
        distributed.leave()  # DDP's cycles freed first: no SIGABRT at exit
        Path(out, f"rank{r}.json").write_text(json.dumps(result))


def test_beta_and_the_memory_stay_the_same_on_every_process(tiny_settings, tmp_path):
    """train() in a process group its caller made: per-class β, a cross-batch memory."""
    flat = {
        **tiny_settings,
        "classes_per_batch": 2,
        "steps": 12,
        "beta_per_class": True,
        "memory_size": 24,
        "out": str(tmp_path / "run"),
    }
    mp.spawn(_train_worker, args=(str(tmp_path / "store"), flat, str(tmp_path)), nprocs=2)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert all("error" not in r for r in ranks), ranks
    for key in ("model", "beta", "memory", "metrics"):
        assert ranks[0][key] == ranks[1][key], key
    labels = torch.tensor(ranks[0]["memory"]["labels"])
    assert len(labels) == 24 and len(set(labels[-12:].tolist())) == 4  # the global batch


def test_a_world_of_one_joins_no_group(monkeypatch):
    """torchrun with one process: no process group, the single-process path exactly."""
    from sampling_matters.training import parallel

    monkeypatch.setenv("WORLD_SIZE", "1")
    with parallel.joined(torch.device("cpu")):
        assert not dist.is_initialized()
        assert parallel.is_main() and parallel.from_main(lambda: 3) == 3
        plan = torch.arange(12).view(2, 6)
        assert parallel.process_shard(plan, 3) is plan
    monkeypatch.setenv("WORLD_SIZE", "two")
    with (
        pytest.raises(ValueError, match="WORLD_SIZE 'two' is not a number"),
        parallel.joined(torch.device("cpu")),
    ):
        pass
