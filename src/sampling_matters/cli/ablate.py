"""``sampling-matters ablate``: train every loss × sampling for every seed, and tabulate."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from sampling_matters._optional import require
from sampling_matters.cli.parser import add_setting_flags, flag_settings, path_argument
from sampling_matters.config import read_yaml

__all__ = ["add_ablate"]


def add_ablate(parser: argparse.ArgumentParser) -> None:
    """Train every loss × sampling for every seed; write ablation.csv, .md and .png.

    Each run goes to OUT/runs/<loss>--<sampling>--seed<k>/ with the same settings and
    budget. Run the same command again after an interruption: finished runs are kept,
    a cut run resumes from its last.pt. Any train flag (or --config key) is a setting
    shared by every run.
    """
    from sampling_matters.ablation import ABLATION_KEYS, DEFAULT_LOSSES, DEFAULT_SAMPLINGS

    parser.add_argument("--losses", default=",".join(DEFAULT_LOSSES), help="comma-separated")
    parser.add_argument("--samplings", default=",".join(DEFAULT_SAMPLINGS), help="comma-separated")
    parser.add_argument("--seeds", default="3", help="S (seeds 0..S-1) or a list like 0,4,7")
    parser.add_argument("--steps", type=int, required=True, help="training steps of every run")
    parser.add_argument("--out", type=path_argument, required=True, help="the ablation's directory")
    parser.add_argument("--config", type=path_argument, help="YAML file of shared settings")
    parser.add_argument(
        "--with-pml",
        action="store_true",
        help="add pytorch-metric-learning's MarginLoss + DistanceWeightedMiner (bench extra)",
    )
    parser.add_argument("--retry-failed", action="store_true", help="retrain failed runs")
    parser.add_argument("--quiet", action="store_true", help="no progress line per run")
    add_setting_flags(parser, exclude=ABLATION_KEYS)
    parser.set_defaults(handler=_ablate)


def _ablate(args: argparse.Namespace) -> int:
    from sampling_matters.ablation import ABLATION_KEYS, run_ablation
    from sampling_matters.compat.pml import import_pml

    require("matplotlib")  # the grid's plot: fail now rather than after the training
    settings = read_yaml(args.config) if args.config else {}
    settings.update(flag_settings(args, exclude=ABLATION_KEYS))
    if args.with_pml:
        try:
            import_pml()
        except ImportError as error:  # a missing extra is a usage error, not a crash
            raise ValueError(str(error)) from error
    results = run_ablation(
        settings,
        steps=args.steps,
        out=args.out,
        losses=args.losses,
        samplings=args.samplings,
        seeds=args.seeds,
        with_pml=args.with_pml,
        retry_failed=args.retry_failed,
        progress=not args.quiet,
    )
    print((args.out / "ablation.md").read_text())
    if results and all(not result.metrics for result in results):
        raise ValueError(_failures(results))
    return 0


def _failures(results: Sequence[Any]) -> str:
    """``all 6 runs failed: ValueError: … (4 runs); RuntimeError: … (2 runs)``."""
    counts: dict[str, int] = {}
    for result in results:
        reason = " ".join((result.note or result.status).split())
        counts[reason] = counts.get(reason, 0) + 1
    listed = "; ".join(f"{reason} ({n} run{'s' * (n > 1)})" for reason, n in counts.items())
    return f"all {len(results)} runs failed: {listed}"
