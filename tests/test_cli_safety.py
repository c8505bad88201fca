"""The command line on bad input, run as a user runs it: one subprocess per case.

Every case asserts: a non-zero exit, one line on stderr that names the problem, no
traceback, and the files of the run it touches byte-identical before and after. Files
crafted to run code when unpickled must run nothing. The cases run two at a time.
"""

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
import yaml

from sampling_matters.cli import main


class Payload:
    """A pickle that, when loaded with pickle's full power, creates a file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@dataclass(frozen=True)
class Case:
    """A command (``{run}``, ``{glyphs}``, ``{tmp}``, ``{gallery}`` filled in) and its error."""

    id: str
    argv: tuple[str, ...]
    expect: str  # a substring of the one stderr line
    setup: str = ""  # a name in SETUPS: how the case's own copy of the run is damaged
    files: dict[str, str] = field(default_factory=dict)  # {tmp}-relative files to write


def config_case(name, text, expect):
    """``train --config FILE`` with FILE holding ``text`` (plus a valid base)."""
    return Case(
        f"config-{name}",
        ("train", "--config", "{tmp}/c.yaml", "--out", "{tmp}/new", "--quiet"),
        expect,
        files={"c.yaml": "data: folder:{glyphs}\nclasses-per-batch: 3\n" + text},
    )


TRAIN = ("train", "--data", "folder:{glyphs}", "--classes-per-batch", "3", "--quiet")
NEW = ("--out", "{tmp}/new")
EMBED = ("embed", "{run}", "--data", "folder:{glyphs}", "--out")
SEARCH = ("search", "{run}", "--gallery", "{gallery}", "--sheet", "{tmp}/s.png")
QUERIES = ("search", "{run}", "--random-queries", "2")  # then --gallery
FIGURE = ("figures", "--out", "{tmp}/f", "--only", "2", "--embeddings")
ABLATE = ("ablate", "--data", "folder:{glyphs}", "--samplings", "uniform", "--quiet")

CASES = [
    # train: where the run goes, and resumes
    Case("out-empty", (*TRAIN, "--steps", "2", "--out", ""), "'out'"),
    Case("out-holds-a-run", (*TRAIN, "--steps", "2", "--out", "{run}"), "--overwrite"),
    Case("out-is-a-file", (*TRAIN, "--steps", "2", "--out", "{run}/log.csv"), "is a file"),
    Case("resume-changes-loss", ("train", "--resume", "{run}", "--loss", "triplet"), "loss"),
    Case("resume-changes-steps", ("train", "--resume", "{run}", "--steps", "9"), "steps 4 -> 9"),
    Case("resume-other-out", ("train", "--resume", "{run}", "--out", "{tmp}/b"), "--out"),
    Case("resume-and-overwrite", ("train", "--resume", "{run}", "--overwrite"), "choose one"),
    Case("resume-not-a-run", ("train", "--resume", "{tmp}"), "no config.yaml"),
    Case("resume-truncated", ("train", "--resume", "{run}"), "last.pt is truncated", "cut-last"),
    Case("resume-empty-last", ("train", "--resume", "{run}"), "last.pt", "empty-last"),
    Case("resume-code", ("train", "--resume", "{run}"), "refused", "evil-last"),
    Case("resume-in-use", ("train", "--resume", "{run}"), "being trained by process", "locked"),
    Case("resume-bad-config", ("train", "--resume", "{run}"), "'lr'", "bad-config"),
    # train: settings
    config_case("steps-text", "steps: ten\n", "'steps' must be an integer"),
    config_case("steps-float", "steps: 3.5\n", "'steps' must be an integer"),
    config_case("bool-text", "steps: 3\nlearn_beta: 'no'\n", "'learn_beta' must be true or"),
    config_case("seed-text", "steps: 3\nseed: abc\n", "'seed' must be an integer"),
    config_case("lr-zero", "steps: 3\nlr: 0\n", "'lr' must be in (0, 10]"),
    config_case("lr-nan", "steps: 3\nlr: .nan\n", "'lr' must be in (0, 10]"),
    config_case("decay", "steps: 3\nlr-decay: 1.5\n", "'lr_decay' must be in (0, 1]"),
    config_case("decay-at", "steps: 3\nlr_decay_at: [0.9, 0.5]\n", "'lr_decay_at' must be"),
    config_case("log-every", "steps: 3\nlog_every: 0\n", "'log_every' must be"),
    config_case("device", "steps: 3\ndevice: banana\n", "'device' must be"),
    config_case("twice", "steps: 3\nlog-every: 2\nlog_every: 3\n", "given twice"),
    config_case("unknown-key", "steps: 3\nstepz: 3\n", "stepz"),
    config_case("not-yaml", "steps: [3\n", "not a valid YAML"),
    config_case("python-tag", "steps: !!python/object/apply:os.getcwd []\n", "not a valid YAML"),
    config_case("both-budgets", "steps: 3\nepochs: 2\n", "exactly one of steps and epochs"),
    Case("config-missing", (*TRAIN, "--config", "{tmp}/none.yaml", *NEW), "missing"),
    Case("flag-steps", (*TRAIN, "--steps", "-3", *NEW), "'steps'"),
    Case("flag-lr-inf", (*TRAIN, "--steps", "3", "--lr", "inf", *NEW), "'lr'"),
    Case("flag-k", (*TRAIN, "--steps", "3", "--samples-per-class", "1", *NEW), "samples_per_class"),
    # train: data
    Case("data-missing", ("train", "--data", "folder:{tmp}/no", "--steps", "2"), "does not exist"),
    Case("data-unknown", ("train", "--data", "banana", "--steps", "2"), "unknown data spec"),
    Case(
        "data-bad-image",
        ("train", "--data", "folder:{tmp}/bad", "--steps", "2", *NEW),
        "bad.png: truncated",
        "bad-folder",
    ),
    Case("data-few-classes", (*TRAIN, "--classes-per-batch", "50", "--steps", "2", *NEW), "class"),
    # eval
    Case("eval-code", ("eval", "{run}"), "refused", "evil-best"),
    Case("eval-truncated", ("eval", "{run}"), "best.pt is truncated", "cut-best"),
    Case("eval-not-a-run", ("eval", "{tmp}"), "no best.pt"),
    Case("eval-foreign-dict", ("eval", "{run}"), "lacks 'config'", "dict-best"),
    Case("eval-missing-data", ("eval", "{run}", "--data", "folder:{tmp}/no"), "does not exist"),
    # embed
    Case("embed-over-best", (*EMBED, "{run}/best.pt"), "would overwrite the run's own best.pt"),
    Case("embed-over-config", (*EMBED, "{run}/config.yaml"), "would overwrite"),
    Case("embed-out-folder", (*EMBED, "{tmp}"), "is a folder"),
    # search
    Case("search-zero-queries", (*SEARCH, "--random-queries", "0"), "must be >= 1"),
    Case("search-k-zero", (*SEARCH, "--random-queries", "2", "-k", "0"), "k must be in"),
    Case("search-gallery-code", (*QUERIES, "--gallery", "{tmp}/evil.pt"), "refused", "evil-pt"),
    Case("search-gallery-is-run", (*QUERIES, "--gallery", "{run}/best.pt"), "lacks 'embeddings'"),
    Case("search-gallery-missing", (*QUERIES, "--gallery", "{tmp}/no.pt"), "missing"),
    Case("search-item-range", (*SEARCH, "--query", "folder:{glyphs}#test#999"), "in [0, 47]"),
    Case("search-item-text", (*SEARCH, "--query", "folder:{glyphs}#test#abc"), "index must be"),
    Case("search-query-missing", (*SEARCH, "--query", "{tmp}/nope.png"), "is not an image file"),
    Case(
        "search-query-corrupt",
        (*SEARCH, "--query", "{tmp}/bad/class00/bad.png"),
        "cannot read the image",
        "bad-folder",
    ),
    Case("search-sheet-run-file", (*SEARCH[:4], *QUERIES[2:], "--sheet", "{run}/log.csv"), ".png"),
    Case(
        "search-sheet-folder",
        (*SEARCH[:4], *QUERIES[2:], "--sheet", "{tmp}/dir.png"),
        "is a folder",
        "sheet-folder",
    ),
    # figures
    Case("figures-code", (*FIGURE, "{tmp}/evil.pt"), "refused", "evil-pt"),
    Case("figures-not-embeddings", (*FIGURE, "{run}/best.pt"), "lacks 'embeddings'"),
    # usage errors, one line too
    Case("usage-type", ("train", "--steps", "x"), "invalid int value: 'x'"),
    Case("usage-unknown", ("train", "--stepz", "3"), "unrecognized arguments: --stepz 3"),
    Case("usage-empty-path", ("eval", ""), "the path is empty"),
    # bounds, duplicates, impossible splits
    config_case("duplicate", "steps: 2\nsteps: 3\n", "'steps' is given twice"),
    Case("flag-lr-huge", (*TRAIN, "--steps", "3", "--lr", "1e300", *NEW), "'lr' must be in"),
    Case("flag-dim-1", (*TRAIN, "--steps", "3", "--embedding-dim", "1", *NEW), "embedding_dim"),
    Case("flag-val-split", (*TRAIN, "--steps", "3", "--val-fraction", "0.9", *NEW), "val_fraction"),
    Case("resume-no-last", ("train", "--resume", "{run}"), "no last.pt", "no-last"),
    # outputs that are not files to write
    Case("embed-out-fifo", (*EMBED, "{tmp}/pipe.pt"), "not a regular file", "fifo"),
    Case("embed-out-under-file", (*EMBED, "{run}/log.csv/x.pt"), "is a file, not a folder"),
    Case("train-out-under-file", (*TRAIN, "--steps", "2", "--out", "{run}/log.csv/r"), "is a file"),
    Case("figures-out-under-file", ("figures", "--out", "{run}/log.csv/f"), "is a file"),
    Case("prepare-under-file", ("prepare", "kanji", "--cache-dir", "{run}/log.csv/c"), "is a file"),
    Case(
        "search-sheet-is-query",
        (*SEARCH[:4], "--query", "{tmp}/q.png", "--sheet", "{tmp}/q.png"),
        "is one of the query or gallery images",
        "query-png",
    ),
    Case("search-too-many-random", (*SEARCH, "--random-queries", "1000"), "in [1, 48]"),
    Case("search-empty-query", (*SEARCH, "--query", ""), "a query is empty"),
    Case("eval-empty-data", ("eval", "{run}", "--data", ""), "--data is empty"),
    Case("figures-split-alone", ("figures", "--out", "{tmp}/f", "--split", "test"), "need --run"),
    Case("ablate-out-is-run", (*ABLATE, "--steps", "2", "--out", "{run}"), "training run's folder"),
    # ablate
    Case(
        "ablate-all-fail",
        (
            *ABLATE,
            "--losses",
            "margin",
            "--seeds",
            "2",
            "--steps",
            "2",
            "--classes-per-batch",
            "50",
            "--out",
            "{tmp}/a",
        ),
        "all 2 runs failed",
    ),
]


def digest(folder):
    """sha256 of every file under ``folder``, by relative path."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def world(glyph_folder, tmp_path_factory):
    """A trained run and its test gallery, shared read-only by every case."""
    root = tmp_path_factory.mktemp("safety")
    run = root / "run"
    train = ["train", "--data", f"folder:{glyph_folder}", "--steps", "4", "--quiet"]
    small = ["--classes-per-batch", "3", "--samples-per-class", "3", "--embedding-dim", "8"]
    assert main([*train, *small, "--val-fraction", "0", "--out", str(run)]) == 0
    gallery = root / "gallery.pt"
    test = ["--data", f"folder:{glyph_folder}", "--split", "test"]
    assert main(["embed", str(run), *test, "--out", str(gallery)]) == 0
    return {"run": run, "gallery": gallery, "glyphs": glyph_folder}


def damage(setup, run, tmp, glyphs):
    """Prepare the case's own copy of the run (and its scratch folder)."""
    if setup in ("cut-last", "cut-best"):
        path = run / ("last.pt" if setup == "cut-last" else "best.pt")
        path.write_bytes(path.read_bytes()[:300])
    elif setup == "empty-last":
        (run / "last.pt").write_bytes(b"")
    elif setup in ("evil-last", "evil-best"):
        name = "last.pt" if setup == "evil-last" else "best.pt"
        torch.save({"model": Payload(tmp / "ran"), "config": {}}, run / name)
    elif setup == "dict-best":
        torch.save({"model": {}}, run / "best.pt")
    elif setup == "evil-pt":
        torch.save({"embeddings": Payload(tmp / "ran"), "labels": torch.zeros(2)}, tmp / "evil.pt")
    elif setup == "locked":
        (run / ".lock").write_text(f"{os.getpid()}\n")  # this test process: alive
    elif setup == "bad-config":
        values = yaml.safe_load((run / "config.yaml").read_text())
        (run / "config.yaml").write_text(yaml.safe_dump({**values, "lr": -1.0}))
    elif setup == "bad-folder":
        shutil.copytree(glyphs, tmp / "bad")
        image = (tmp / "bad" / "class00" / "0.png").read_bytes()
        (tmp / "bad" / "class00" / "bad.png").write_bytes(image[: len(image) // 2])
    elif setup == "sheet-folder":
        (tmp / "dir.png").mkdir()
    elif setup == "no-last":
        (run / "last.pt").unlink()
    elif setup == "fifo":
        os.mkfifo(tmp / "pipe.pt")
    elif setup == "query-png":
        shutil.copy(next((glyphs / "class12").iterdir()), tmp / "q.png")


def run_case(case, world, root):
    """Run one case in its own folder; returns (exit status, stderr, before, after)."""
    tmp = root / case.id
    tmp.mkdir()
    run = tmp / "run"
    shutil.copytree(world["run"], run)
    names = {"run": run, "tmp": tmp, "gallery": world["gallery"], "glyphs": world["glyphs"]}
    for name, text in case.files.items():
        (tmp / name).write_text(text.format(**names))
    damage(case.setup, run, tmp, world["glyphs"])
    before = digest(run)
    argv = [arg.format(**names) for arg in case.argv]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "default"}
    done = subprocess.run(
        [sys.executable, "-m", "sampling_matters", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    return done.returncode, done.stderr, before, digest(run), tmp


@pytest.fixture(scope="module")
def outcomes(world, tmp_path_factory):
    """Every case's outcome, run two at a time (each is mostly Python start-up)."""
    root = tmp_path_factory.mktemp("cases")
    gallery = digest(world["run"])
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {case.id: pool.submit(run_case, case, world, root) for case in CASES}
        results = {name: future.result() for name, future in futures.items()}
    assert digest(world["run"]) == gallery  # the shared run, untouched
    return results


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_one_clear_line_and_changes_nothing(case, outcomes):
    status, stderr, before, after, tmp = outcomes[case.id]
    lines = stderr.strip().splitlines()
    assert status != 0, stderr
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    assert len(lines) == 1, stderr
    assert lines[0].startswith("sampling-matters ") and ": error: " in lines[0], stderr
    assert case.expect in lines[0], stderr
    assert after == before, "the run's files changed"
    assert not (tmp / "ran").exists(), "a crafted file ran code"


def test_every_case_is_counted():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)) >= 75


def train_command(data, out, *options):
    """``python -m sampling_matters train`` of a tiny run."""
    small = ("--classes-per-batch", "3", "--embedding-dim", "8", "--quiet")
    module = (sys.executable, "-m", "sampling_matters", "train")
    return [*module, "--data", f"folder:{data}", *small, *options, "--out", str(out)]


def test_skip_bad_images_trains_and_records_the_count(world, tmp_path):
    shutil.copytree(world["glyphs"], tmp_path / "bad")
    image = (tmp_path / "bad" / "class12" / "0.png").read_bytes()
    (tmp_path / "bad" / "class12" / "cut.png").write_bytes(image[:40])
    out = tmp_path / "run"
    command = train_command(tmp_path / "bad", out, "--steps", "2", "--skip-bad-images")
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "warning: 1 of 49 image files are bad and were left out" in done.stderr
    assert "cut.png" in done.stderr and "Traceback" not in done.stderr
    assert yaml.safe_load((out / "config.yaml").read_text())["skipped_images"] == 1
    assert (out / "skipped_images.txt").read_text().strip().endswith("cut.png")
    assert (out / "metrics.json").exists()


def test_ctrl_c_writes_last_pt_prints_the_resume_command_and_exits_130(world, tmp_path):
    out = tmp_path / "run"
    command = train_command(world["glyphs"], out, "--steps", "100000", "--log-every", "1")
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not _logged_steps(out / "log.csv", 3):
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    stderr = process.communicate(timeout=120)[1]
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert f"sampling-matters train --resume {out}" in stderr
    step = torch.load(out / "last.pt", weights_only=True)["progress"]["step"]
    assert f"interrupted at step {step} of 100000" in stderr
    assert not (out / ".lock").exists()


def _logged_steps(log: Path, n: int) -> bool:
    return log.exists() and len(log.read_text().splitlines()) > n
