"""``sampling-matters train``: train an embedding, or resume a run (``--resume RUN``).

The settings come from flags, on top of an optional ``--config FILE.yaml`` (and, when
resuming, the run's own ``config.yaml``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from sampling_matters.cli.parser import add_setting_flags, flag_settings, path_argument
from sampling_matters.config import TrainConfig, read_yaml

__all__ = ["add_train", "train_config"]


def add_train(parser: argparse.ArgumentParser) -> None:
    """Train an embedding; writes config.yaml, best.pt, last.pt, log.csv, metrics.json.

    An --out folder that already holds a run is refused: continue it with --resume, or
    replace it with --overwrite. Every image file is checked before training; a bad one
    is an error that names it, or, with --skip-bad-images, is left out with a warning.
    Ctrl-C stops at the next step, writes last.pt and prints the resume command.
    --nproc N trains in N processes (torch.distributed: gloo on CPU, NCCL on CUDA), each
    with classes-per-batch classes of one global batch; the same as
    torchrun --nproc-per-node N -m sampling_matters train ….
    """
    parser.add_argument(
        "--config", type=path_argument, help="YAML file of defaults (keys = flag names)"
    )
    parser.add_argument(
        "--resume",
        type=path_argument,
        metavar="RUN",
        help="continue the run RUN from its last.pt, with its config.yaml",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--nproc",
        type=_process_count,
        default=1,
        metavar="N",
        help="train in N processes on this machine, launched by torch.distributed.run "
        "(default 1); a resume needs the run's own N",
    )
    add_setting_flags(parser)
    parser.set_defaults(handler=_train)


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The run's settings: the --config file, then the resumed run's, then the flags."""
    values: dict[str, Any] = read_yaml(args.config) if args.config else {}
    if args.resume is not None:
        _check_resume_args(args)
        values.update(read_yaml(args.resume / "config.yaml"))
        values["out"] = str(args.resume)
    values.update(flag_settings(args))
    return TrainConfig.from_flat(values)


def _process_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if not 1 <= count <= 1024:
        raise argparse.ArgumentTypeError(f"expected a number of processes from 1, got {text!r}")
    return count


def _train(args: argparse.Namespace) -> int:
    from sampling_matters.training import train

    config = train_config(args)
    if args.nproc > 1 and "LOCAL_RANK" not in os.environ:  # not yet one of the processes
        return _launch(args.nproc, args.argv)
    metrics = train(
        config,
        resume=args.resume is not None,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    if os.environ.get("RANK", "0") == "0":  # one process prints (torchrun sets RANK)
        print(json.dumps(metrics, indent=2))
    return 0


def _without_nproc(argv: list[str]) -> list[str]:
    """``argv`` less ``--nproc N`` (the launched processes learn their world from torchrun)."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            kept.append(arg)
    return kept


def _launch(nproc: int, argv: list[str]) -> int:
    """Run this command in ``nproc`` processes with ``torch.distributed.run``; its status.

    The launcher stops every process when one fails, and shows that one's error.
    """
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "sampling_matters",
        *_without_nproc(argv),
    ]
    try:
        return subprocess.run(command, check=False).returncode
    except KeyboardInterrupt:  # the processes write last.pt and stop
        return 130


def _check_resume_args(args: argparse.Namespace) -> None:
    if args.overwrite:
        raise ValueError("--resume continues a run and --overwrite replaces it: choose one")
    if args.out is not None and Path(args.out).resolve() != args.resume.resolve():
        raise ValueError(
            f"--resume {args.resume} continues that run in its own folder; "
            f"--out {args.out} names another: leave --out out"
        )
    if not (args.resume / "config.yaml").is_file():
        raise FileNotFoundError(f"{args.resume} has no config.yaml: is it a training run?")
