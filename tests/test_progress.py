"""Progress bars: redrawn on a terminal, a few whole lines in a log file."""

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

import pytest

from sampling_matters import _progress
from sampling_matters._progress import tqdm, write

LOOP = """
import sys
from sampling_matters import _progress
_progress.LOG_INTERVAL_S = float(sys.argv[1])
for _ in _progress.tqdm(range(2000), desc="loop", unit="item"):
    pass
"""


def run_loop(stderr, interval):
    subprocess.run(
        [sys.executable, "-c", LOOP, str(interval)],
        stderr=stderr,
        check=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


@pytest.mark.parametrize(("interval", "most"), [(0.0, 22), (10.0, 2)])
def test_stderr_to_a_file_is_a_few_lines(tmp_path, interval, most):
    log = tmp_path / "log.txt"
    with log.open("w") as stderr:
        run_loop(stderr, interval)
    text = log.read_text()
    lines = text.splitlines()
    assert "\r" not in text and "\x1b" not in text
    assert 2 <= len(lines) <= most  # 0%, at most one per 5 % (and interval), 100%
    assert lines[0].startswith("loop:   0%") and lines[-1].startswith("loop: 100%")
    assert all(len(line) <= _progress.LOG_WIDTH for line in lines)


def test_a_terminal_gets_the_redrawn_bar():
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # 80 columns
    try:
        run_loop(follower, 10.0)
        os.close(follower)
        follower = -1
        output = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    assert b"\r" in output and b"100%" in output


@pytest.fixture
def log(monkeypatch, capsys):
    """What the bars write to stderr, captured (no terminal); no least time between lines."""
    monkeypatch.setattr(_progress, "LOG_INTERVAL_S", 0.0)
    return lambda: capsys.readouterr().err


def test_disable_writes_nothing(log):
    assert sum(tqdm(range(100), desc="off", disable=True)) == 4950
    assert log() == ""


def test_a_bar_updated_by_hand_from_a_resumed_count(log):
    bar = tqdm(total=100, initial=40, desc="train", unit="step")
    for _ in range(60):
        bar.update(1)
        bar.set_postfix(loss=0.5)  # no extra line
    bar.close()
    lines = log().splitlines()
    assert lines[0].startswith("train:  40%") and lines[-1].startswith("train: 100%")
    assert len(lines) == 1 + 60 // 5  # one each 5 steps (5 % of 100), the last one is 100%
    assert "loss=0.5" in lines[-1]


def test_a_message_is_a_line_on_stdout_and_breaks_no_report(monkeypatch, capsys):
    monkeypatch.setattr(_progress, "LOG_INTERVAL_S", 0.0)
    for i in tqdm(range(20), desc="build"):
        if i == 10:
            write("halfway")
    out, err = capsys.readouterr()
    assert out == "halfway\n"
    lines = err.splitlines()
    assert len(lines) == 1 + 20  # every item is 5 %: 0 %, then one line each
    assert [line.split("|")[0] for line in lines[10:12]] == ["build:  50%", "build:  55%"]


def test_without_a_total_a_line_a_minute(capsys):
    for _ in tqdm(iter(range(1000)), desc="stream"):
        pass
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and lines[-1].startswith("stream: 1000it")
