"""How a command ends: its failures as one line on stderr, and the exit status.

A usage error (a bad value, a missing file, a run in use, a missing tool or package
download) is ``sampling-matters COMMAND: error: …`` with status 2, and so is a missing
optional package, naming the extra that installs it. Ctrl-C gives 130 (``train`` says
how to resume); anything unforeseen is one line with status 1, its traceback shown with
``SAMPLING_MATTERS_DEBUG=1``. Warnings are one line each too.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from functools import partial

from sampling_matters._optional import missing_extra
from sampling_matters.data.packages import PackageDownloadError, ToolNotFoundError
from sampling_matters.runs import RunInUseError

__all__ = ["USER_ERRORS", "call_handler", "one_line"]

USER_ERRORS = (
    ValueError,
    OSError,  # a missing, unreadable or unwritable file, named in the message
    RunInUseError,
    ToolNotFoundError,
    PackageDownloadError,
)
"""The errors that are the user's to fix: exit status 2, the message alone."""


def call_handler(args: argparse.Namespace) -> int:
    """Run the parsed command's handler; returns the exit status."""
    prefix = f"sampling-matters {args.command}"
    try:
        with warnings.catch_warnings():
            warnings.showwarning = partial(_show_warning, prefix)
            return int(args.handler(args) or 0)
    except KeyboardInterrupt as stop:
        print(f"{prefix}: {_interrupted(stop)}", file=sys.stderr)
        return 130
    except USER_ERRORS as error:
        print(f"{prefix}: error: {one_line(error)}", file=sys.stderr)
        return 2
    except Exception as error:  # unforeseen: one line, the traceback on request
        missing = missing_extra(error) if isinstance(error, ImportError) else None
        if missing is not None:  # an optional package: say which extra installs it
            print(
                f"{prefix}: error: {args.command} needs {missing.package}{missing.reason}: "
                f"{missing.hint}",
                file=sys.stderr,
            )
            return 2
        if os.environ.get("SAMPLING_MATTERS_DEBUG"):
            raise
        print(
            f"{prefix}: internal error: {type(error).__name__}: {one_line(error)} "
            "(run again with SAMPLING_MATTERS_DEBUG=1 for the traceback, and report it)",
            file=sys.stderr,
        )
        return 1


def one_line(error: BaseException | str) -> str:
    r"""The message on one line: a line ending in ':' runs on, others end with ';'.

    Example:
        >>> one_line(ValueError("bad files:\n  a.png\n  b.png"))
        'bad files: a.png; b.png'
    """
    text = ""
    for line in (part.strip() for part in str(error).splitlines()):
        if line:
            text += line if not text else (" " if text.endswith(":") else "; ") + line
    return text or type(error).__name__


def _show_warning(prefix: str, message: Warning | str, *args: object, **kwargs: object) -> None:
    """A warning as one line on stderr: ``sampling-matters COMMAND: warning: …``."""
    print(f"{prefix}: warning: {one_line(message)}", file=sys.stderr)


def _interrupted(stop: KeyboardInterrupt) -> str:
    from sampling_matters.training import TrainingInterrupted

    if isinstance(stop, TrainingInterrupted):
        return (
            f"interrupted at step {stop.step} of {stop.total}; last.pt is saved. "
            f"Resume with: sampling-matters train --resume {stop.out}"
        )
    return "interrupted"
