"""``sampling-matters figures``: draw the paper's analyses, from their registry.

The figures are those of :data:`sampling_matters.analysis.FIGURES`; some add a panel of
a trained run's embedding (``--run`` or ``--embeddings``) or draw runs' logs (``--logs``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from sampling_matters._optional import require
from sampling_matters.cli.parser import path_argument
from sampling_matters.cli.runs import SPLITS, embed_split
from sampling_matters.runs import check_folder

if TYPE_CHECKING:
    from sampling_matters.analysis import FigureSpec

__all__ = ["add_figures"]


def add_figures(parser: argparse.ArgumentParser) -> None:
    """Draw the paper's analyses, each as NAME.png and the data behind it as NAME.csv."""
    from sampling_matters.analysis import DEFAULT_DIMS, FIGURES

    width = max(map(len, FIGURES))
    listed = [
        f"  {i} {name:<{width}}  {spec.help}" for i, (name, spec) in enumerate(FIGURES.items(), 1)
    ]
    parser.description = (
        f"{parser.description}\n\nfigures (--only takes their numbers or names):\n"
        + "\n".join(listed)
    )
    parser.add_argument("--out", type=path_argument, required=True, help="folder for the files")
    parser.add_argument(
        "--only",
        help="comma-separated figures by number or name (default "
        f"{_figure_numbers(lambda spec: not spec.needs_logs)}, "
        f"and {_figure_numbers(lambda spec: spec.needs_logs)} with --logs)",
    )
    parser.add_argument(
        "--dims",
        default=",".join(map(str, DEFAULT_DIMS)),
        help="figure 1's dimensions (%(default)s)",
    )
    parser.add_argument(
        "--draws", type=int, default=10_000, help="Monte-Carlo draws per estimate (%(default)s)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every draw (%(default)s)")
    _add_embedding_flags(parser)
    parser.add_argument(
        "--logs",
        type=path_argument,
        nargs="+",
        metavar="RUN",
        help=f"runs whose log.csv figure {_figure_numbers(lambda spec: spec.needs_logs)} draws",
    )
    parser.set_defaults(handler=_figures)


def _add_embedding_flags(parser: argparse.ArgumentParser) -> None:
    """--run or --embeddings: the trained embedding some figures add a panel of."""
    trained = parser.add_mutually_exclusive_group()
    panel = _figure_numbers(lambda spec: spec.reads_embeddings)
    trained.add_argument(
        "--run", type=path_argument, help=f"add a panel of this run's embedding to fig. {panel}"
    )
    trained.add_argument(
        "--embeddings", type=path_argument, help="the same from a file written by embed"
    )
    parser.add_argument("--data", help="data spec that --run embeds (default: the run's)")
    parser.add_argument("--split", choices=SPLITS, help="the split --run embeds (default train)")


def _figure_numbers(which: Callable[[FigureSpec[Any]], bool]) -> str:
    """``1,2,3,4``: the numbers of the figures that ``which`` picks."""
    from sampling_matters.analysis import FIGURES

    return ",".join(str(i) for i, spec in enumerate(FIGURES.values(), 1) if which(spec))


def _figures(args: argparse.Namespace) -> int:
    from sampling_matters.analysis import write_figures
    from sampling_matters.analysis.registry import check_figures

    if (args.data is not None or args.split is not None) and args.run is None:
        raise ValueError("--data and --split need --run RUN, the model that embeds them")
    require("matplotlib")  # before any work
    check_folder(args.out, "--out")
    logs = args.logs or ()
    dims = _figure_dims(args.dims)
    figures = check_figures(  # before embedding anything
        None if args.only is None else args.only.split(","),
        dims=dims,
        draws=args.draws,
        seed=args.seed,
        embeddings=args.run is not None or args.embeddings is not None,
        logs=bool(logs),
    )
    embeddings, name = _figure_embeddings(args)
    written = write_figures(
        args.out,
        figures=figures,
        dims=dims,
        draws=args.draws,
        seed=args.seed,
        embeddings=embeddings,
        embeddings_name=name,
        logs=logs,
    )
    print("\n".join(str(path) for path in written))
    return 0


def _figure_dims(text: str) -> tuple[int, ...]:
    """--dims: comma-separated integers (their range is checked with the other inputs)."""
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"dims must be comma-separated integers >= 2, got {text!r}") from None


def _figure_embeddings(
    args: argparse.Namespace,
) -> tuple[tuple[torch.Tensor, torch.Tensor] | None, str]:
    """Figure 2's optional embedding (from --embeddings FILE, or --run RUN embedding --data)."""
    if args.embeddings is not None:
        from sampling_matters.files import load_embeddings

        saved = load_embeddings(args.embeddings)
        return (saved.embeddings, saved.labels), args.embeddings.name
    if args.run is None:
        return None, ""
    from sampling_matters.training import load_run

    model, config = load_run(args.run)
    spec = config.data.data if args.data is None else args.data
    split = args.split or "train"
    embeddings, labels, _ = embed_split(model, spec, split, config)
    return (embeddings, labels), f"{args.run.name}: {split} split"
