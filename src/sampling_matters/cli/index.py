"""``index`` (build or extend a faiss index of a gallery) and ``search INDEX``."""

from __future__ import annotations

import argparse
import math
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sampling_matters.cli.parser import path_argument
from sampling_matters.index.calibrate import RECALL
from sampling_matters.runs import check_output

__all__ = ["add_index", "search_index"]

SPLITS = ("train", "test", "all")
_ID = re.compile(r"#(\d+)")


def add_index(parser: argparse.ArgumentParser) -> None:
    """Build a faiss index of a gallery embedded by a run's best model, to search it fast.

    The gallery is a data set's split (--data, embedded here in resumable chunks: run the
    same command again after an interruption) or an embedding file written by `embed`
    (--embeddings). --factory auto picks exact search (Flat) up to 100,000 vectors and an
    IVF index with about 4-8·√N lists above; any faiss factory string is accepted. An IVF
    index's nprobe is measured on the gallery: the fewest lists whose recall@10 on 1,000 of
    its vectors reaches --recall with 95% confidence (HNSW: efSearch 64).
    --append adds to an existing index (its ids continue). See docs/search.md.
    """
    parser.add_argument("run", type=path_argument, help="the run whose best model embeds")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="data spec to index, e.g. kanji or folder:PATH")
    source.add_argument(
        "--embeddings", type=path_argument, help="an embedding file written by embed"
    )
    parser.add_argument("--split", default="test", choices=SPLITS, help="with --data")
    parser.add_argument("--out", type=path_argument, required=True, help="the index folder")
    parser.add_argument(
        "--append", action="store_true", help="add to the index in --out (ids continue)"
    )
    parser.add_argument(
        "--factory", default="auto", help="auto, or a faiss factory string such as HNSW32"
    )
    parser.add_argument(
        "--parameters",
        help="faiss search parameters, e.g. nprobe=32 or efSearch=128 (default: an IVF's "
        "nprobe measured on the gallery, see --recall; HNSW: efSearch=64)",
    )
    parser.add_argument(
        "--recall",
        type=_recall,
        default=RECALL,
        help=f"the recall@10 an IVF index's calibrated nprobe reaches (default {RECALL})",
    )
    parser.add_argument(
        "--skip-bad-images",
        action="store_true",
        help="leave unreadable image files out, with a warning (else: an error naming them)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(handler=_index)


def _index(args: argparse.Namespace) -> int:
    from sampling_matters import index
    from sampling_matters.index.gallery import scratch_folder

    old = _check_index_args(args)
    embedder = index.QueryEmbedder(args.run)
    if old is not None:
        old.check_model(embedder)
    embeddings, labels, items, source, embedder = _gallery(args, embedder)
    if old is None:
        built = index.build(
            embeddings,
            labels,
            items,
            factory=args.factory,
            parameters=args.parameters,
            recall=args.recall,
            embedder=embedder,
            sources=[source],
        )
        built.save(args.out)
    else:
        first = len(old)
        old.add(embeddings, labels, items)
        old.meta["sources"].append(source)
        old.save(args.out, replace=True)
        built = old
        print(f"appended ids {first} … {len(old) - 1}")
    shutil.rmtree(scratch_folder(args.out), ignore_errors=True)
    meta = built.meta
    parameters = f" ({meta['parameters']})" if meta["parameters"] else ""
    print(
        f"{len(built)} vectors of dimension {built.dim}, faiss {meta['factory']}{parameters} "
        f"-> {args.out}"
    )
    if old is None and meta.get("calibration"):
        print(_calibration_text(meta["calibration"]))
    hint = built.approximate_hint()
    if hint:
        print(f"note: {hint}")
    return 0


def _calibration_text(measured: dict[str, Any]) -> str:
    """What the calibration chose and measured, in one line."""
    said = (
        f"{measured['parameters']}: recall@{measured['k']} {measured['recall']:.3f} on "
        f"{measured['queries']:,} of the gallery's vectors searched as queries"
    )
    if measured["reached"]:
        return f"{said} (target {measured['target']})"
    return (
        f"note: {said}, below the target {measured['target']} at the most thorough setting "
        "tried: choose another --factory for this gallery, or accept the recall"
    )


def _recall(text: str) -> float:
    """A recall target in (0, 1], for argparse."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1], got {text!r}")
    return value


def _check_index_args(args: argparse.Namespace) -> Any:
    """Refuse bad combinations before any work; the index to append to, or None."""
    from sampling_matters import index

    if args.embeddings is not None and args.split != "test":
        raise ValueError("--split goes with --data; an embedding file is indexed whole")
    if not args.append:
        if args.out.exists() or args.out.is_symlink():
            what = "an index" if index.is_index_folder(args.out) else "something that is no index"
            raise ValueError(
                f"--out {args.out} holds {what} already: add to an index with --append, "
                "or choose a new folder"
            )
        return None
    if args.factory != "auto" or args.parameters is not None or args.recall != RECALL:
        raise ValueError(
            "--factory, --parameters and --recall make a new index; --append keeps the index's"
        )
    if not index.is_index_folder(args.out):
        raise ValueError(
            f"--append: {args.out} is not an index folder (build one without --append)"
        )
    return index.load(args.out)


def _gallery(
    args: argparse.Namespace, embedder: Any
) -> tuple[Tensor, Tensor, list[str] | None, dict[str, Any], Any]:
    """The vectors to index, from --embeddings or --data, and where they came from."""
    from sampling_matters.data import absolute
    from sampling_matters.files import load_embeddings
    from sampling_matters.index.gallery import embed_data, scratch_folder

    if args.embeddings is not None:
        gallery = load_embeddings(args.embeddings)
        source = {"embeddings": str(args.embeddings.absolute()), "count": len(gallery.labels)}
        return gallery.embeddings, gallery.labels, gallery.items, source, embedder
    out = args.out
    scratch = scratch_folder(out)
    try:
        embedded = embed_data(
            embedder,
            args.data,
            args.split,
            scratch=scratch,
            skip_bad=args.skip_bad_images,
            progress=not args.quiet,
        )
    except KeyboardInterrupt:
        print(
            "sampling-matters index: the images embedded so far are kept; run the same "
            "command again to go on from there",
            file=sys.stderr,
        )
        raise
    if embedded.resumed:
        print(f"resumed: {embedded.resumed} images were embedded already ({scratch})")
    source = {"data": absolute(args.data), "split": args.split, "count": len(embedded.labels)}
    return (
        embedded.embeddings,
        embedded.labels,
        embedded.items,
        source,
        embedder.with_kind(embedded.kind),
    )


def search_index(args: argparse.Namespace) -> int:
    """``search INDEX``: the neighbours of image, item or ``#ID`` queries in an index."""
    from sampling_matters import index

    if args.gallery is not None:
        raise ValueError(
            f"{args.run} is an index folder, which holds its gallery: leave --gallery out"
        )
    if args.random_queries is not None and args.random_queries < 1:
        raise ValueError(f"--random-queries must be >= 1, got {args.random_queries}")
    loaded = index.load(args.run)
    sheet = _sheet_path(args.sheet, loaded)
    queries = args.query or _random_ids(len(loaded), args.random_queries)
    if not 1 <= args.k < len(loaded):
        raise ValueError(
            f"k must be in [1, {len(loaded) - 1}] (the index's size - 1), got {args.k}"
        )
    found = _neighbours(loaded, queries, args.k)
    items = loaded.items
    for query, (distances, ids) in zip(queries, found, strict=True):
        print(query)
        for rank, (distance, i) in enumerate(zip(distances.tolist(), ids.tolist(), strict=True), 1):
            label = "—" if i < 0 else int(loaded.labels[i])
            item = "(none found)" if i < 0 else items[i]
            print(f"  {rank:3d}  {distance:.4f}  #{i:<7} label {label:<6}  {item}")
    if sheet is not None:
        _draw_sheet(loaded, queries, found, sheet)
        print(f"contact sheet -> {sheet}")
    return 0


def _sheet_path(sheet: Path | None, loaded: Any) -> Path | None:
    """The sheet to draw: the given one, else search.png when the index knows its images."""
    if sheet is None:
        if not all(loaded.items):
            print("no contact sheet: the index holds no image paths (it was built from vectors)")
            return None
        sheet = Path("search.png")
    if sheet.suffix.lower() != ".png":
        raise ValueError(f"--sheet {sheet} must name a .png file")
    if not all(loaded.items):
        raise ValueError("--sheet: the index holds no image paths (it was built from vectors)")
    check_output(sheet, "--sheet")
    return sheet


def _random_ids(n: int, count: int) -> list[str]:
    if not 1 <= count <= n:
        raise ValueError(
            f"the number of random queries must be in [1, {n}] (the index's size), got {count}"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    return [f"#{int(i)}" for i in order[:count]]


def _query_id(query: str) -> int | None:
    """The id of a ``#ID`` query; None for an image file or item name."""
    if Path(query).is_file():
        return None  # a file, even when its name is #12
    matched = _ID.fullmatch(query.strip())
    if matched is None and query.strip().startswith("#"):
        raise ValueError(f"query {query!r}: an id is # and an integer, such as #12")
    return None if matched is None else int(matched.group(1))


def _neighbours(loaded: Any, queries: list[str], k: int) -> list[tuple[Tensor, Tensor]]:
    """Per query, its ``k`` neighbours (distances, ids), leaving the query itself out."""
    from sampling_matters.index import QueryEmbedder

    ids = [_query_id(query) for query in queries]
    results: dict[int, tuple[Tensor, Tensor]] = {}
    by_id = [(row, i) for row, i in enumerate(ids) if i is not None]
    if by_id:
        distances, found = loaded.search_ids([i for _, i in by_id], k)
        results.update({row: (distances[j], found[j]) for j, (row, _) in enumerate(by_id)})
    images = [row for row, i in enumerate(ids) if i is None]
    if images:
        embedder = QueryEmbedder.for_index(loaded)
        vectors = embedder.embed_items([queries[row] for row in images])
        distances, found = loaded.search(vectors, k + 1)
        items = loaded.items
        for j, row in enumerate(images):
            keep = [
                c for c in range(k + 1) if found[j, c] < 0 or items[found[j, c]] != queries[row]
            ]
            results[row] = (distances[j, keep[:k]], found[j, keep[:k]])
    return [results[row] for row in range(len(queries))]


def _draw_sheet(
    loaded: Any, queries: list[str], found: list[tuple[Tensor, Tensor]], sheet: Path
) -> None:
    from sampling_matters.cli.runs import _check_sheet_is_no_image
    from sampling_matters.data.datasets import Kind
    from sampling_matters.search import contact_sheet, load_item

    items = loaded.items
    kind: Kind = "glyph" if loaded.meta.get("kind") == "glyph" else "photo"
    names = [items[i] if (i := _query_id(q)) is not None else q for q in queries]
    _check_sheet_is_no_image(
        sheet, [*names, *(items[int(i)] for _, ids in found for i in ids if i >= 0)]
    )
    rows = [[load_item(items[int(i)], kind) for i in ids if i >= 0] for _, ids in found]
    contact_sheet([load_item(name, kind) for name in names], rows, sheet)
