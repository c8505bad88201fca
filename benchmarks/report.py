"""What the benchmarks share: facts about the machine (tables: ``sampling_matters.tables``)."""

from __future__ import annotations

import datetime
import os
import platform
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

BUSY_WARNING = 0.1  # warn when other processes used more than this share of the CPUs


def busy_cpu_seconds() -> float | None:
    """CPU seconds all processes have used since boot (``/proc/stat``), None off Linux."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    idle = ticks[3] + ticks[4]  # idle, iowait; steal counts as busy
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds of this process and its finished child processes."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def others_share(busy_start: float | None, own_start: float, elapsed: float) -> float | None:
    """Fraction of all CPUs that other processes used since ``busy_start``."""
    busy_end = busy_cpu_seconds()
    if busy_start is None or busy_end is None:
        return None
    others = (busy_end - busy_start) - (own_cpu_seconds() - own_start)
    return max(0.0, others) / (elapsed * (os.cpu_count() or 1))


def others_text(share: float | None) -> str:
    """The header line saying how busy the machine was."""
    if share is None:
        return "CPU used by other processes during the run: unknown"
    text = f"other processes used {share:.0%} of the CPUs during the run"
    if share > BUSY_WARNING:
        text += " (**the machine was busy: timings are inflated and noisy**)"
    return text


def cpu_model() -> str:
    """The CPU's model name."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_facts(threads: int) -> dict[str, Any]:
    """What a timing table says about the machine before its run: date, CPU, threads, load."""
    return {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": cpu_model(),
        "threads": threads,
        "load": f"{os.getloadavg()[0]:.2f}",
    }


class RunClock:
    """Wall time of a run and the CPU other processes used meanwhile (:func:`others_share`)."""

    def __init__(self) -> None:
        self.busy, self.own, self.start = busy_cpu_seconds(), own_cpu_seconds(), time.perf_counter()

    def stop(self, info: dict[str, Any]) -> None:
        """Record ``elapsed`` (s) and ``others`` (share of the CPUs) in ``info``."""
        info["elapsed"] = time.perf_counter() - self.start
        info["others"] = others_share(self.busy, self.own, info["elapsed"])


def fact_lines(info: Mapping[str, Any], versions: str) -> list[str]:
    """The header's facts: :func:`machine_facts`, :class:`RunClock` and ``versions``."""
    return [
        f"- date: {info['date']}",
        f"- CPU: {info['cpu']}; torch threads: {info['threads']}",
        f"- load average (1 min) before the run: {info['load']}; {others_text(info['others'])}",
        f"- {versions}",
        f"- run time: {info['elapsed']:.0f} s",
    ]
