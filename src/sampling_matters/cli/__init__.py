"""The ``sampling-matters`` command: data, training, evaluation, search, figures, ablation.

Every subcommand has ``--help`` with an example. ``train`` takes its settings from
flags, on top of an optional ``--config FILE.yaml`` whose keys are the flags' names
(``classes-per-batch`` or ``classes_per_batch``); an unknown key or flag is an error
that names it.

Errors are one line on stderr, ``sampling-matters COMMAND: error: …``, with exit status
2; a missing optional package is one too, naming the extra that installs it. Ctrl-C
exits with 130 (``train`` first writes ``last.pt`` and prints the command that resumes).
A failure the program did not foresee is one line too, saying how to see its traceback
(``SAMPLING_MATTERS_DEBUG=1``), with exit status 1.

The package: :mod:`~sampling_matters.cli.parser` (the parser, the setting flags),
:mod:`~sampling_matters.cli.errors` (failures as one line, exit statuses), and a module
per group of subcommands: :mod:`~sampling_matters.cli.data` (prepare),
:mod:`~sampling_matters.cli.train` (train, resume), :mod:`~sampling_matters.cli.runs`
(eval, embed, search), :mod:`~sampling_matters.cli.index` (a faiss index of a gallery),
:mod:`~sampling_matters.cli.serve` (the search service and its page),
:mod:`~sampling_matters.cli.figures`, :mod:`~sampling_matters.cli.ablate`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from sampling_matters.cli import ablate, data, figures, index, runs, serve, train
from sampling_matters.cli.errors import call_handler
from sampling_matters.cli.parser import Builder, CommandParser, build_parser

__all__ = ["COMMANDS", "EXAMPLES", "main"]

COMMANDS: dict[str, Builder] = {
    "prepare": data.add_prepare,
    "train": train.add_train,
    "eval": runs.add_eval,
    "embed": runs.add_embed,
    "index": index.add_index,
    "search": runs.add_search,
    "serve": serve.add_serve,
    "figures": figures.add_figures,
    "ablate": ablate.add_ablate,
}
"""Subcommand -> the function that adds its arguments (its docstring is its help)."""

EXAMPLES = {
    "prepare": "sampling-matters prepare kanji",
    "train": (
        "sampling-matters train --data kanji --model small-cnn --loss margin "
        "--sampling distance-weighted --steps 2500 --out runs/kanji\n"
        "  sampling-matters train --resume runs/kanji   # after a kill or Ctrl-C\n"
        "  sampling-matters train --data kanji --nproc 2 --classes-per-batch 8 --out runs/k2"
    ),
    "eval": "sampling-matters eval runs/kanji",
    "embed": "sampling-matters embed runs/kanji --data kanji --split test --out runs/kanji/test.pt",
    "index": (
        "sampling-matters index runs/kanji --data kanji --split test --out runs/kanji/index\n"
        "  sampling-matters index runs/kanji --data folder:more_glyphs --out runs/kanji/index "
        "--append\n"
        "  sampling-matters search runs/kanji/index --query '#3' my_glyph.png -k 10"
    ),
    "search": (
        "sampling-matters search runs/kanji --gallery runs/kanji/test.pt "
        "--query my_glyph.png -k 10 --sheet search.png"
    ),
    "serve": "sampling-matters serve runs/kanji/index  # then open http://127.0.0.1:8000/",
    "figures": (
        "sampling-matters figures --out figures\n"
        "  sampling-matters figures --out figures --only 2,5 --run runs/kanji "
        "--logs runs/kanji runs/kanji-hard"
    ),
    "ablate": (
        "sampling-matters ablate --data kanji --model small-cnn --steps 2500 --seeds 3 "
        "--out runs/ablation\n"
        "  sampling-matters ablate --data kanji --losses triplet,margin "
        "--samplings semihard,distance-weighted --steps 500 --with-pml --out runs/small"
    ),
}
"""Subcommand -> the example under its ``--help`` (a test checks that each has one)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    args.argv = list(sys.argv[1:] if argv is None else argv)  # to relaunch (train --nproc)
    return call_handler(args)


def _parser() -> CommandParser:
    """The parser of every subcommand in :data:`COMMANDS`."""
    return build_parser(COMMANDS, EXAMPLES)


_train_config = train.train_config  # its name when the command line was one module
