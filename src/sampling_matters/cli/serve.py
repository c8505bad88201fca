"""The ``serve`` subcommand: the search service of an index, over HTTP (uvicorn)."""

from __future__ import annotations

import argparse
import ipaddress
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from sampling_matters._optional import require
from sampling_matters.cli.parser import path_argument

if TYPE_CHECKING:
    from sampling_matters.index import Index, QueryEmbedder

__all__ = ["add_serve"]

_MIB = 2**20


def add_serve(parser: argparse.ArgumentParser) -> None:
    """Serve an index: a JSON search API and a page to try it (FastAPI + uvicorn).

    The model that embeds queries is the index's run's best.pt (--run to name the run
    folder when it moved); it must be the model the index was built with.
    """
    parser.add_argument(
        "index", type=path_argument, help="an index folder (sampling-matters index)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (0: any free)")
    parser.add_argument(
        "--run", type=path_argument, help="the index's run folder (default: where it was built)"
    )
    parser.add_argument(
        "--max-upload-mb", type=float, default=10.0, help="the largest image file a search takes"
    )
    parser.add_argument("--max-k", type=int, default=100, help="the most neighbours per search")
    parser.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    from sampling_matters.serve import create_app  # first: a missing extra fails before work

    uvicorn = require("uvicorn")
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in [0, 65535], got {args.port}")
    if not args.max_upload_mb > 0:
        raise ValueError(f"--max-upload-mb must be > 0, got {args.max_upload_mb}")
    _warn_if_public(args.host)
    index, embedder = _load(args.index, args.run)
    app = create_app(
        index, embedder, max_upload_bytes=int(args.max_upload_mb * _MIB), max_k=args.max_k
    )
    port = args.port or "PORT"  # 0: a free port, which uvicorn's log names
    print(
        f"serving {args.index} ({len(index)} items, {index.dim}-d) at "
        f"http://{_url_host(args.host)}:{port}/  (Ctrl-C stops it)",
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", access_log=False)
    return 0


def _load(folder: Path, run: Path | None) -> tuple[Index, QueryEmbedder]:
    """The index and the model of its run (``run``, else the folder the index names)."""
    from sampling_matters.index import QueryEmbedder, load

    index = load(folder)
    recorded = index.meta.get("run")
    if run is None and recorded is not None and not Path(recorded).is_dir():
        raise FileNotFoundError(
            f"the index's run {recorded} is not a folder (moved?): name it with --run"
        )
    return index, QueryEmbedder.for_index(index, run)


def _warn_if_public(host: str) -> None:
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        warnings.warn(
            f"--host {host} serves the index to other machines; the API has no login",
            stacklevel=2,
        )


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
