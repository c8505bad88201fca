"""``sampling-matters train``: train an embedding, or resume a run (``--resume RUN``).

The settings come from flags, on top of an optional ``--config FILE.yaml`` (and, when
resuming, the run's own ``config.yaml``).
"""

from __future__ import annotations

import argparse
import json
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


def _train(args: argparse.Namespace) -> int:
    from sampling_matters.training import train

    config = train_config(args)
    metrics = train(
        config,
        resume=args.resume is not None,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    print(json.dumps(metrics, indent=2))
    return 0


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
