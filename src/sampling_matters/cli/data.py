"""``sampling-matters prepare``: build an offline data set into the cache.

Its choices and help are the sets of :data:`sampling_matters.data.OFFLINE`, which come
from the recipe table of :mod:`sampling_matters.data.offline`.
"""

from __future__ import annotations

import argparse

from sampling_matters.cli.parser import path_argument
from sampling_matters.data import OFFLINE
from sampling_matters.data.offline import RECIPES
from sampling_matters.runs import check_folder

__all__ = ["add_prepare"]


def add_prepare(parser: argparse.ArgumentParser) -> None:  # noqa: D103 (__doc__ set below)
    parser.add_argument("name", choices=tuple(RECIPES))  # read when the parser is built
    parser.add_argument(
        "--cache-dir", type=path_argument, default=None, help="default ~/.cache/sampling-matters"
    )
    parser.set_defaults(handler=_prepare)


add_prepare.__doc__ = f"Fetch and build an offline data set ({', '.join(OFFLINE)}) into the cache."


def _prepare(args: argparse.Namespace) -> int:
    from sampling_matters.data.offline import prepare

    if args.cache_dir is not None:
        check_folder(args.cache_dir, "--cache-dir")
    path = prepare(args.name, cache_dir=args.cache_dir)
    print(path)
    return 0
