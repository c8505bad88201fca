"""The command line's parser: one-line usage errors, path arguments, the setting flags.

:func:`build_parser` makes a subcommand of each builder: its docstring gives the help
line and the description, :data:`~sampling_matters.cli.EXAMPLES` the example under it.
The flags of ``train`` (and the shared settings of ``ablate``) are generated from the
config dataclasses' fields and type hints (:func:`add_setting_flags`).
"""

from __future__ import annotations

import argparse
import inspect
import sys
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, NoReturn

from sampling_matters.config import TrainConfig, field_types

__all__ = [
    "Builder",
    "CommandParser",
    "add_setting_flags",
    "build_parser",
    "flag_settings",
    "path_argument",
]

Builder = Callable[[argparse.ArgumentParser], None]
"""Adds a subcommand's arguments and its ``handler`` (``set_defaults``) to its parser."""


class CommandParser(argparse.ArgumentParser):
    """A parser whose usage errors are one line, ``PROG: error: … (see PROG --help)``."""

    commands: dict[str, CommandParser]

    def error(self, message: str) -> NoReturn:
        """Print the usage error ``message`` as one line and exit with status 2."""
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def build_parser(commands: Mapping[str, Builder], examples: Mapping[str, str]) -> CommandParser:
    """The ``sampling-matters`` parser with a subcommand per builder of ``commands``.

    A subcommand without an entry in ``examples`` has no example in its help.
    """
    parser = CommandParser(
        prog="sampling-matters",
        description="Deep embedding learning with distance weighted sampling (Wu et al., 2017).",
    )
    parser.commands = {}
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=CommandParser)
    for name, build in commands.items():
        description = inspect.cleandoc(build.__doc__ or "")
        example = examples.get(name)
        command = subparsers.add_parser(
            name,
            help=description.partition("\n")[0],
            description=description,
            epilog=None if example is None else f"example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        build(command)
        parser.commands[name] = command
    return parser


def path_argument(text: str) -> Path:
    """A path argument; an empty one is a usage error."""
    if not text.strip():
        raise argparse.ArgumentTypeError("the path is empty")
    return Path(text)


def add_setting_flags(parser: argparse.ArgumentParser, exclude: Sequence[str] = ()) -> None:
    """A flag per training setting, typed by its field (``--classes-per-batch INT``)."""
    kinds = field_types()
    for section in TrainConfig().sections():
        for f in fields(section):
            if f.name in exclude:
                continue
            flag, default = "--" + f.name.replace("_", "-"), getattr(section, f.name)
            kind = next((a for a in typing.get_args(kinds[f.name]) if a is not type(None)), None)
            if isinstance(default, bool):
                parser.add_argument(
                    flag,
                    action=argparse.BooleanOptionalAction,
                    default=None,
                    help=f.metadata.get("help"),
                )
            elif isinstance(default, tuple):
                parser.add_argument(flag, type=float, nargs="*", default=None)
            else:
                kind = kind or kinds[f.name]  # X | None gives X
                text = f.metadata.get("help", f"default {default!r}")
                parser.add_argument(flag, type=kind, default=None, help=text)


def flag_settings(args: argparse.Namespace, exclude: Sequence[str] = ()) -> dict[str, Any]:
    """The training settings given as flags (those left unset are absent)."""
    known = {f.name for section in TrainConfig().sections() for f in fields(section)}
    values = {name: getattr(args, name, None) for name in known - set(exclude)}
    return {name: value for name, value in values.items() if value is not None}
