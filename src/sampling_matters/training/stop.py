"""Ctrl-C during training: a request to stop at the next step, and the error it ends in."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped training at a step boundary; ``last.pt`` holds that step.

    Attributes:
        out: the run directory.
        step: the steps done.
        total: the run's length in steps.
    """

    def __init__(self, out: Path, step: int, total: int) -> None:
        super().__init__(f"training stopped at step {step} of {total}")
        self.out, self.step, self.total = out, step, total


class _StopRequest:
    """While active, a first Ctrl-C (SIGINT) asks the loop to stop at the next step.

    A second Ctrl-C stops at once. Outside the main thread (where signals cannot be
    caught) it does nothing.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
