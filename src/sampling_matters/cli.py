"""The ``sampling-matters`` command: prepare, train, eval, embed, search.

Every subcommand has ``--help`` with an example. ``train`` takes its settings from
flags, on top of an optional ``--config FILE.yaml`` whose keys are the flags' names
(``classes-per-batch`` or ``classes_per_batch``); an unknown key or flag is an error
that names it.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from sampling_matters.data.packages import PackageDownloadError, ToolNotFoundError
from sampling_matters.training import TrainConfig

__all__ = ["main"]

EXAMPLES = {
    "prepare": "sampling-matters prepare kanji",
    "train": (
        "sampling-matters train --data kanji --model small-cnn --loss margin "
        "--sampling distance-weighted --steps 2500 --out runs/kanji\n"
        "  sampling-matters train --resume runs/kanji   # after a kill"
    ),
    "eval": "sampling-matters eval runs/kanji",
    "embed": "sampling-matters embed runs/kanji --data kanji --split test --out runs/kanji/test.pt",
    "search": (
        "sampling-matters search runs/kanji --gallery runs/kanji/test.pt "
        "--query my_glyph.png -k 10 --sheet search.png"
    ),
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (ValueError, FileNotFoundError, ToolNotFoundError, PackageDownloadError) as error:
        print(f"sampling-matters {args.command}: error: {error}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sampling-matters",
        description="Deep embedding learning with distance weighted sampling (Wu et al., 2017).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, build in (
        ("prepare", _prepare_parser),
        ("train", _train_parser),
        ("eval", _eval_parser),
        ("embed", _embed_parser),
        ("search", _search_parser),
        ("figures", _figures_parser),
        ("ablate", _ablate_parser),
    ):
        build(
            commands.add_parser(
                name,
                help=(build.__doc__ or "").strip().splitlines()[0],
                description=(build.__doc__ or "").strip(),
                epilog=f"example:\n  {EXAMPLES[name]}",
                formatter_class=argparse.RawDescriptionHelpFormatter,
            )
        )
    return parser


# ---------------------------------------------------------------------------- prepare


def _prepare_parser(parser: argparse.ArgumentParser) -> None:
    """Fetch and build an offline data set (emoji, kanji, fashion-mnist) into the cache."""
    parser.add_argument("name", choices=("emoji", "kanji", "fashion-mnist"))
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help="default ~/.cache/sampling-matters"
    )
    parser.set_defaults(handler=_prepare)


def _prepare(args: argparse.Namespace) -> int:
    from sampling_matters.data.offline import prepare

    path = prepare(args.name, cache_dir=args.cache_dir)
    print(path)
    return 0


# ------------------------------------------------------------------------------ train


def _train_parser(parser: argparse.ArgumentParser) -> None:
    """Train an embedding; writes config.yaml, best.pt, last.pt, log.csv, metrics.json."""
    parser.add_argument("--config", type=Path, help="YAML file of defaults (keys = flag names)")
    parser.add_argument(
        "--resume",
        type=Path,
        metavar="RUN",
        help="continue the killed run RUN from its last epoch, with its config.yaml",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    for section in TrainConfig().sections():
        for f in fields(section):
            _add_field_flag(parser, f.name, getattr(section, f.name))
    parser.set_defaults(handler=_train)


def _add_field_flag(parser: argparse.ArgumentParser, name: str, default: Any) -> None:
    flag = "--" + name.replace("_", "-")
    if isinstance(default, bool):
        parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
    elif isinstance(default, tuple):
        parser.add_argument(flag, type=float, nargs="+", default=None)
    else:
        kind = (
            type(default)
            if default is not None
            else (int if name in ("steps", "epochs", "image_size") else str)
        )
        parser.add_argument(flag, type=kind, default=None, help=f"default {default!r}")


def _train(args: argparse.Namespace) -> int:
    from sampling_matters.training import train

    config = _train_config(args)
    metrics = train(config, resume=args.resume is not None, progress=not args.quiet)
    print(json.dumps(metrics, indent=2))
    return 0


def _train_config(args: argparse.Namespace) -> TrainConfig:
    values: dict[str, Any] = _read_yaml(args.config) if args.config else {}
    if args.resume is not None:
        if not (args.resume / "config.yaml").exists():
            raise FileNotFoundError(f"{args.resume} has no config.yaml: is it a training run?")
        values.update(_read_yaml(args.resume / "config.yaml"))
        values["out"] = str(args.resume)
    values.update(_flag_settings(args))
    return TrainConfig.from_flat(values)


def _flag_settings(args: argparse.Namespace, exclude: Sequence[str] = ()) -> dict[str, Any]:
    """The training settings given as flags (those left unset are absent)."""
    known = {f.name for section in TrainConfig().sections() for f in fields(section)}
    values = {name: getattr(args, name, None) for name in known - set(exclude)}
    return {name: value for name, value in values.items() if value is not None}


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    with path.open() as handle:
        loaded = yaml.safe_load(handle) or {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{path} must hold a mapping of setting names to values")
    return {str(key).replace("-", "_"): value for key, value in loaded.items()}


# ------------------------------------------------------------------------- eval/embed


def _eval_parser(parser: argparse.ArgumentParser) -> None:
    """Print the test metrics of a run's best model as JSON."""
    parser.add_argument("run", type=Path)
    parser.add_argument("--data", help="data spec to evaluate on (default: the run's)")
    parser.set_defaults(handler=_eval)


def _eval(args: argparse.Namespace) -> int:
    from sampling_matters.evaluation import evaluate

    model, config = _load_run(args.run)
    embeddings, labels, _ = _embed_split(model, args.data or config.data.data, "test", config)
    print(json.dumps(evaluate(embeddings, labels), indent=2))
    return 0


def _embed_parser(parser: argparse.ArgumentParser) -> None:
    """Embed a data set with a run's best model and save embeddings, labels and items."""
    parser.add_argument("run", type=Path)
    parser.add_argument("--data", required=True, help="data spec, e.g. kanji or folder:PATH")
    parser.add_argument("--split", default="test", choices=("train", "test", "all"))
    parser.add_argument("--out", type=Path, required=True, help="file to write (torch.save)")
    parser.set_defaults(handler=_embed)


def _embed(args: argparse.Namespace) -> int:
    model, config = _load_run(args.run)
    embeddings, labels, items = _embed_split(model, args.data, args.split, config)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"embeddings": embeddings, "labels": labels, "items": items}, args.out)
    print(f"{len(items)} embeddings of dimension {embeddings.shape[1]} -> {args.out}")
    return 0


def _load_run(run: Path) -> tuple[Any, TrainConfig]:
    from sampling_matters.models import build_model

    if not (run / "best.pt").exists():
        raise FileNotFoundError(f"{run} has no best.pt: is it a training run directory?")
    state = torch.load(run / "best.pt", map_location="cpu", weights_only=False)
    config = TrainConfig.from_flat(state["config"])
    model = build_model(
        config.model.model,
        embedding_dim=config.model.embedding_dim,
        pretrained=False,
        freeze_backbone=config.model.freeze_backbone,
    )
    model.load_state_dict(state["model"])
    return model.eval(), config


def _embed_split(
    model: Any, spec: str, split: str, config: TrainConfig
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    from sampling_matters import data
    from sampling_matters.data.transforms import eval_transform
    from sampling_matters.training import embed_dataset

    dataset = data.load(spec, split)
    size = config.data.image_size or model.input_size
    dataset = dataset.with_transform(
        eval_transform(
            dataset.kind, size, normalization=model.normalization, channels=model.channels
        )
    )
    embeddings, labels = embed_dataset(model, dataset, device=torch.device("cpu"))
    return embeddings, labels, data.item_names(spec, split, dataset)


# ----------------------------------------------------------------------------- search


def _search_parser(parser: argparse.ArgumentParser) -> None:
    """Find the nearest gallery items of query images; print them and draw a contact sheet."""
    parser.add_argument("run", type=Path)
    parser.add_argument("--gallery", type=Path, required=True, help="a file written by embed")
    queries = parser.add_mutually_exclusive_group(required=True)
    queries.add_argument("--query", nargs="+", help="image files or gallery item names")
    queries.add_argument("--random-queries", type=int, help="this many gallery items as queries")
    parser.add_argument("-k", type=int, default=10, help="neighbours per query")
    parser.add_argument("--sheet", type=Path, default=Path("search.png"), help="contact sheet PNG")
    parser.set_defaults(handler=_search)


def _search(args: argparse.Namespace) -> int:
    from sampling_matters.search import random_queries, search

    model, config = _load_run(args.run)
    queries = args.query or random_queries(args.gallery, args.random_queries)
    results = search(model, config, args.gallery, queries, args.k, args.sheet)
    for query, neighbours in zip(queries, results, strict=True):
        print(query)
        for rank, (item, distance) in enumerate(neighbours, 1):
            print(f"  {rank:3d}  {distance:.4f}  {item}")
    print(f"contact sheet -> {args.sheet}")
    return 0


# ---------------------------------------------------------------------------- figures


def _figures_parser(parser: argparse.ArgumentParser) -> None:
    """Draw the paper's analyses, each as NAME.png and the data behind it as NAME.csv."""
    parser.add_argument("--out", type=Path, required=True, help="folder for the files")
    parser.add_argument(
        "--only",
        help="figures by number or name: 1 sphere_distances, 2 sampled_distances, "
        "3 gradient_variance, 4 loss_shapes, 5 training_curves (default 1-4, and 5 with --logs)",
    )
    parser.add_argument(
        "--dims", default="2,3,4,8,16,32,128,512", help="figure 1's dimensions (%(default)s)"
    )
    parser.add_argument(
        "--draws", type=int, default=10_000, help="Monte-Carlo draws per estimate (%(default)s)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every draw (%(default)s)")
    trained = parser.add_mutually_exclusive_group()
    trained.add_argument("--run", type=Path, help="add a panel of this run's embedding to fig. 2")
    trained.add_argument("--embeddings", type=Path, help="the same from a file written by embed")
    parser.add_argument("--data", help="data spec that --run embeds (default: the run's)")
    parser.add_argument("--split", default="train", choices=("train", "test", "all"))
    parser.add_argument(
        "--logs", type=Path, nargs="+", metavar="RUN", help="runs whose log.csv figure 5 draws"
    )
    parser.set_defaults(handler=_figures)


def _figures(args: argparse.Namespace) -> int:
    from sampling_matters import analysis

    if args.data is not None and args.run is None:
        raise ValueError("--data needs --run RUN, the model that embeds it")
    logs = args.logs or ()
    trained = args.run is not None or args.embeddings is not None
    figures = analysis.parse_figures(args.only) if args.only else None
    if figures is not None:  # check before embedding anything
        analysis.check_figures(figures, embeddings=trained, logs=bool(logs))
    dims = analysis.parse_dims(args.dims)
    embeddings, name = _figure_embeddings(args)
    written = analysis.write_figures(
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


def _figure_embeddings(
    args: argparse.Namespace,
) -> tuple[tuple[torch.Tensor, torch.Tensor] | None, str]:
    """Figure 2's optional embedding (from --embeddings FILE, or --run RUN embedding --data)."""
    if args.embeddings is not None:
        from sampling_matters.analysis import load_embeddings

        return load_embeddings(args.embeddings), args.embeddings.name
    if args.run is None:
        return None, ""
    model, config = _load_run(args.run)
    spec = args.data or config.data.data
    embeddings, labels, _ = _embed_split(model, spec, args.split, config)
    return (embeddings, labels), f"{args.run.name}: {args.split} split"


# ----------------------------------------------------------------------------- ablate


def _ablate_parser(parser: argparse.ArgumentParser) -> None:
    """Train every loss × sampling for every seed; write ablation.csv, .md and .png.

    Each run goes to OUT/runs/<loss>--<sampling>--seed<k>/ with the same settings and
    budget. Run the same command again after an interruption: finished runs are kept,
    a cut run resumes from its last.pt. Any train flag (or --config key) is a setting
    shared by every run.
    """
    from sampling_matters.ablation import ABLATION_KEYS, DEFAULT_LOSSES, DEFAULT_SAMPLINGS

    parser.description = inspect.cleandoc(_ablate_parser.__doc__ or "")
    parser.add_argument("--losses", default=",".join(DEFAULT_LOSSES), help="comma-separated")
    parser.add_argument("--samplings", default=",".join(DEFAULT_SAMPLINGS), help="comma-separated")
    parser.add_argument("--seeds", default="3", help="S (seeds 0..S-1) or a list like 0,4,7")
    parser.add_argument("--steps", type=int, required=True, help="training steps of every run")
    parser.add_argument("--out", type=Path, required=True, help="the ablation's directory")
    parser.add_argument("--config", type=Path, help="YAML file of shared settings")
    parser.add_argument(
        "--with-pml",
        action="store_true",
        help="add pytorch-metric-learning's MarginLoss + DistanceWeightedMiner (bench extra)",
    )
    parser.add_argument("--retry-failed", action="store_true", help="retrain failed runs")
    parser.add_argument("--quiet", action="store_true", help="no progress line per run")
    for section in TrainConfig().sections():
        for f in fields(section):
            if f.name not in ABLATION_KEYS:
                _add_field_flag(parser, f.name, getattr(section, f.name))
    parser.set_defaults(handler=_ablate)


def _ablate(args: argparse.Namespace) -> int:
    from sampling_matters.ablation import ABLATION_KEYS, import_pml, run_ablation

    settings = _read_yaml(args.config) if args.config else {}
    settings.update(_flag_settings(args, exclude=ABLATION_KEYS))
    if args.with_pml:
        try:
            import_pml()
        except ImportError as error:  # a missing extra is a usage error, not a crash
            raise ValueError(str(error)) from error
    run_ablation(
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
