"""The subcommands that use a trained run's best model: ``eval``, ``embed``, ``search``.

``search`` takes a run folder with ``--gallery FILE`` (an embedding file, searched
exactly), or an index folder built by ``index`` (:mod:`sampling_matters.cli.index`),
told apart by the index's ``meta.json``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from sampling_matters.cli.parser import path_argument
from sampling_matters.config import TrainConfig
from sampling_matters.runs import check_output

__all__ = ["SPLITS", "add_embed", "add_eval", "add_search", "embed_split"]

SPLITS = ("train", "test", "all")
"""The splits a run's model can embed."""


def add_eval(parser: argparse.ArgumentParser) -> None:
    """Print the test metrics of a run's best model as JSON."""
    parser.add_argument("run", type=path_argument)
    parser.add_argument("--data", help="data spec to evaluate on (default: the run's)")
    _add_skip_flag(parser)
    parser.set_defaults(handler=_eval)


def add_embed(parser: argparse.ArgumentParser) -> None:
    """Embed a data set with a run's best model and save embeddings, labels and items."""
    parser.add_argument("run", type=path_argument)
    parser.add_argument("--data", required=True, help="data spec, e.g. kanji or folder:PATH")
    parser.add_argument("--split", default="test", choices=SPLITS)
    parser.add_argument(
        "--out", type=path_argument, required=True, help="file to write (torch.save)"
    )
    _add_skip_flag(parser)
    parser.set_defaults(handler=_embed)


def add_search(parser: argparse.ArgumentParser) -> None:
    """Find the nearest gallery items of query images; print them and draw a contact sheet.

    The first argument is an index folder (built by `index`: searched through faiss;
    queries may also be indexed ids, #ID), or a run folder with --gallery FILE (written
    by `embed`: searched exactly).
    """
    parser.add_argument("run", type=path_argument, metavar="INDEX|RUN")
    parser.add_argument(
        "--gallery", type=path_argument, help="with a run folder: a file written by embed"
    )
    queries = parser.add_mutually_exclusive_group(required=True)
    queries.add_argument(
        "--query", nargs="+", help="image files, gallery item names, or #ID (with an index)"
    )
    queries.add_argument("--random-queries", type=int, help="this many gallery items as queries")
    parser.add_argument("-k", type=int, default=10, help="neighbours per query")
    parser.add_argument(
        "--sheet", type=path_argument, default=None, help="contact sheet PNG (default search.png)"
    )
    parser.set_defaults(handler=_search)


def embed_split(
    model: Any, spec: str, split: str, config: TrainConfig, skip_bad: bool = False
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The embeddings, labels and item names of a split, every image file checked first."""
    from sampling_matters import data
    from sampling_matters.data.transforms import eval_transform
    from sampling_matters.training import embed_dataset, image_kind, load_checked

    if not spec.strip():
        raise ValueError("--data is empty: give a data spec such as kanji or folder:PATH")
    spec = data.absolute(spec)
    dataset = load_checked(spec, split, skip_bad=skip_bad, progress=True)
    kind = image_kind(config, dataset)
    size = config.data.image_size or model.input_size
    transform = eval_transform(
        kind, size, normalization=model.normalization, channels=model.channels
    )
    dataset = dataset.with_kind(kind).with_transform(transform)
    embeddings, labels = embed_dataset(model, dataset, device=torch.device("cpu"))
    return embeddings, labels, data.item_names(spec, split, dataset)


def _add_skip_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--skip-bad-images",
        action="store_true",
        help="leave unreadable image files out, with a warning (else: an error naming them)",
    )


def _eval(args: argparse.Namespace) -> int:
    from sampling_matters.evaluation import evaluate
    from sampling_matters.training import load_run

    model, config = load_run(args.run)
    spec = config.data.data if args.data is None else args.data
    embeddings, labels, _ = embed_split(model, spec, "test", config, args.skip_bad_images)
    print(json.dumps(evaluate(embeddings, labels), indent=2))
    return 0


def _embed(args: argparse.Namespace) -> int:
    from sampling_matters.files import save_embeddings
    from sampling_matters.training import load_run

    check_output(args.out, "--out")
    model, config = load_run(args.run)
    embeddings, labels, items = embed_split(
        model, args.data, args.split, config, args.skip_bad_images
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_embeddings(args.out, embeddings, labels, items)
    print(f"{len(items)} embeddings of dimension {embeddings.shape[1]} -> {args.out}")
    return 0


def _search(args: argparse.Namespace) -> int:
    from sampling_matters.files import load_embeddings
    from sampling_matters.index import is_index_folder
    from sampling_matters.search import random_queries, search
    from sampling_matters.training import load_run

    if is_index_folder(args.run):
        from sampling_matters.cli.index import search_index

        return search_index(args)
    if args.gallery is None:
        raise ValueError(
            f"{args.run} is no index folder (it has no meta.json): give an index built by "
            "sampling-matters index, or a run folder with --gallery FILE (written by embed)"
        )
    args.sheet = Path("search.png") if args.sheet is None else args.sheet
    if args.random_queries is not None and args.random_queries < 1:
        raise ValueError(f"--random-queries must be >= 1, got {args.random_queries}")
    if args.sheet.suffix.lower() != ".png":
        raise ValueError(f"--sheet {args.sheet} must name a .png file")
    check_output(args.sheet, "--sheet")
    gallery = load_embeddings(args.gallery)
    model, config = load_run(args.run)
    queries = args.query or random_queries(gallery, args.random_queries)
    _check_sheet_is_no_image(args.sheet, [*queries, *(gallery.items or [])])
    results = search(model, config, gallery, queries, args.k, args.sheet)
    for query, neighbours in zip(queries, results, strict=True):
        print(query)
        for rank, (item, distance) in enumerate(neighbours, 1):
            print(f"  {rank:3d}  {distance:.4f}  {item}")
    print(f"contact sheet -> {args.sheet}")
    return 0


def _check_sheet_is_no_image(sheet: Path, images: Sequence[str]) -> None:
    """Refuse a contact sheet path that is one of the query or gallery images."""
    target = sheet.resolve()
    if any(Path(image).resolve() == target for image in images if image.strip()):
        raise ValueError(f"--sheet {sheet} is one of the query or gallery images: choose another")
