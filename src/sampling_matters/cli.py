"""The ``sampling-matters`` command: prepare, train, eval, embed, search, figures, ablate.

Every subcommand has ``--help`` with an example. ``train`` takes its settings from
flags, on top of an optional ``--config FILE.yaml`` whose keys are the flags' names
(``classes-per-batch`` or ``classes_per_batch``); an unknown key or flag is an error
that names it.

Errors are one line on stderr, ``sampling-matters COMMAND: error: …``, with exit status
2; a missing optional package is one too, naming the extra that installs it. Ctrl-C
exits with 130 (``train`` first writes ``last.pt`` and prints the command that resumes).
A failure the program did not foresee is one line too, saying how to see its traceback
(``SAMPLING_MATTERS_DEBUG=1``), with exit status 1.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import typing
import warnings
from collections.abc import Callable, Sequence
from dataclasses import fields
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import torch

from sampling_matters._optional import missing_extra, require
from sampling_matters.config import TrainConfig, field_types, read_yaml
from sampling_matters.data.packages import PackageDownloadError, ToolNotFoundError
from sampling_matters.runs import RunInUseError, check_folder, check_output

if TYPE_CHECKING:
    from sampling_matters.analysis import FigureSpec

__all__ = ["main"]

EXAMPLES = {
    "prepare": "sampling-matters prepare kanji",
    "train": (
        "sampling-matters train --data kanji --model small-cnn --loss margin "
        "--sampling distance-weighted --steps 2500 --out runs/kanji\n"
        "  sampling-matters train --resume runs/kanji   # after a kill or Ctrl-C"
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

_USER_ERRORS = (
    ValueError,
    OSError,  # a missing, unreadable or unwritable file, named in the message
    RunInUseError,
    ToolNotFoundError,
    PackageDownloadError,
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    prefix = f"sampling-matters {args.command}"
    try:
        with warnings.catch_warnings():
            warnings.showwarning = partial(_show_warning, prefix)
            return int(args.handler(args) or 0)
    except KeyboardInterrupt as stop:
        print(f"{prefix}: {_interrupted(stop)}", file=sys.stderr)
        return 130
    except _USER_ERRORS as error:
        print(f"{prefix}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except Exception as error:  # unforeseen: one line, the traceback on request
        missing = missing_extra(error) if isinstance(error, ImportError) else None
        if missing is not None:  # an optional package: say which extra installs it
            print(
                f"{prefix}: error: {args.command} needs {missing.package}{missing.reason}: "
                f"{missing.hint}",
                file=sys.stderr,
            )
            return 2
        if os.environ.get("SAMPLING_MATTERS_DEBUG"):
            raise
        print(
            f"{prefix}: internal error: {type(error).__name__}: {_one_line(error)} "
            "(run again with SAMPLING_MATTERS_DEBUG=1 for the traceback, and report it)",
            file=sys.stderr,
        )
        return 1


def _show_warning(prefix: str, message: Warning | str, *args: object, **kwargs: object) -> None:
    """A warning as one line on stderr: ``sampling-matters COMMAND: warning: …``."""
    print(f"{prefix}: warning: {_one_line(message)}", file=sys.stderr)


def _one_line(error: BaseException | str) -> str:
    """The message on one line: a line ending in ':' runs on, others end with ';'."""
    text = ""
    for line in (part.strip() for part in str(error).splitlines()):
        if line:
            text += line if not text else (" " if text.endswith(":") else "; ") + line
    return text or type(error).__name__


def _interrupted(stop: KeyboardInterrupt) -> str:
    from sampling_matters.training import TrainingInterrupted

    if isinstance(stop, TrainingInterrupted):
        return (
            f"interrupted at step {stop.step} of {stop.total}; last.pt is saved. "
            f"Resume with: sampling-matters train --resume {stop.out}"
        )
    return "interrupted"


def _path(text: str) -> Path:
    """A path argument; an empty one is a usage error."""
    if not text.strip():
        raise argparse.ArgumentTypeError("the path is empty")
    return Path(text)


class _Parser(argparse.ArgumentParser):
    """A parser whose usage errors are one line, ``PROG: error: … (see PROG --help)``."""

    commands: dict[str, _Parser]

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def _parser() -> _Parser:
    parser = _Parser(
        prog="sampling-matters",
        description="Deep embedding learning with distance weighted sampling (Wu et al., 2017).",
    )
    parser.commands = {}
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, build in (
        ("prepare", _prepare_parser),
        ("train", _train_parser),
        ("eval", _eval_parser),
        ("embed", _embed_parser),
        ("search", _search_parser),
        ("figures", _figures_parser),
        ("ablate", _ablate_parser),
    ):
        command = commands.add_parser(
            name,
            help=(build.__doc__ or "").strip().splitlines()[0],
            description=(build.__doc__ or "").strip(),
            epilog=f"example:\n  {EXAMPLES[name]}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        build(command)
        parser.commands[name] = command
    return parser


# ---------------------------------------------------------------------------- prepare


def _prepare_parser(parser: argparse.ArgumentParser) -> None:
    """Fetch and build an offline data set (emoji, kanji, fashion-mnist) into the cache."""
    parser.add_argument("name", choices=("emoji", "kanji", "fashion-mnist"))
    parser.add_argument(
        "--cache-dir", type=_path, default=None, help="default ~/.cache/sampling-matters"
    )
    parser.set_defaults(handler=_prepare)


def _prepare(args: argparse.Namespace) -> int:
    from sampling_matters.data.offline import prepare

    if args.cache_dir is not None:
        check_folder(args.cache_dir, "--cache-dir")
    path = prepare(args.name, cache_dir=args.cache_dir)
    print(path)
    return 0


# ------------------------------------------------------------------------------ train


def _train_parser(parser: argparse.ArgumentParser) -> None:
    """Train an embedding; writes config.yaml, best.pt, last.pt, log.csv, metrics.json.

    An --out folder that already holds a run is refused: continue it with --resume, or
    replace it with --overwrite. Every image file is checked before training; a bad one
    is an error that names it, or, with --skip-bad-images, is left out with a warning.
    Ctrl-C stops at the next step, writes last.pt and prints the resume command.
    """
    parser.description = inspect.cleandoc(_train_parser.__doc__ or "")
    parser.add_argument("--config", type=_path, help="YAML file of defaults (keys = flag names)")
    parser.add_argument(
        "--resume",
        type=_path,
        metavar="RUN",
        help="continue the run RUN from its last.pt, with its config.yaml",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_setting_flags(parser)
    parser.set_defaults(handler=_train)


def _add_setting_flags(parser: argparse.ArgumentParser, exclude: Sequence[str] = ()) -> None:
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


def _train(args: argparse.Namespace) -> int:
    from sampling_matters.training import train

    config = _train_config(args)
    metrics = train(
        config,
        resume=args.resume is not None,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    print(json.dumps(metrics, indent=2))
    return 0


def _train_config(args: argparse.Namespace) -> TrainConfig:
    values: dict[str, Any] = read_yaml(args.config) if args.config else {}
    if args.resume is not None:
        _check_resume_args(args)
        values.update(read_yaml(args.resume / "config.yaml"))
        values["out"] = str(args.resume)
    values.update(_flag_settings(args))
    return TrainConfig.from_flat(values)


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


def _flag_settings(args: argparse.Namespace, exclude: Sequence[str] = ()) -> dict[str, Any]:
    """The training settings given as flags (those left unset are absent)."""
    known = {f.name for section in TrainConfig().sections() for f in fields(section)}
    values = {name: getattr(args, name, None) for name in known - set(exclude)}
    return {name: value for name, value in values.items() if value is not None}


# ------------------------------------------------------------------------- eval/embed


def _eval_parser(parser: argparse.ArgumentParser) -> None:
    """Print the test metrics of a run's best model as JSON."""
    parser.add_argument("run", type=_path)
    parser.add_argument("--data", help="data spec to evaluate on (default: the run's)")
    _add_skip_flag(parser)
    parser.set_defaults(handler=_eval)


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
    embeddings, labels, _ = _embed_split(model, spec, "test", config, args.skip_bad_images)
    print(json.dumps(evaluate(embeddings, labels), indent=2))
    return 0


def _embed_parser(parser: argparse.ArgumentParser) -> None:
    """Embed a data set with a run's best model and save embeddings, labels and items."""
    parser.add_argument("run", type=_path)
    parser.add_argument("--data", required=True, help="data spec, e.g. kanji or folder:PATH")
    parser.add_argument("--split", default="test", choices=("train", "test", "all"))
    parser.add_argument("--out", type=_path, required=True, help="file to write (torch.save)")
    _add_skip_flag(parser)
    parser.set_defaults(handler=_embed)


def _embed(args: argparse.Namespace) -> int:
    from sampling_matters.files import save_embeddings
    from sampling_matters.training import load_run

    check_output(args.out, "--out")
    model, config = load_run(args.run)
    embeddings, labels, items = _embed_split(
        model, args.data, args.split, config, args.skip_bad_images
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_embeddings(args.out, embeddings, labels, items)
    print(f"{len(items)} embeddings of dimension {embeddings.shape[1]} -> {args.out}")
    return 0


def _embed_split(
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


# ----------------------------------------------------------------------------- search


def _search_parser(parser: argparse.ArgumentParser) -> None:
    """Find the nearest gallery items of query images; print them and draw a contact sheet."""
    parser.add_argument("run", type=_path)
    parser.add_argument("--gallery", type=_path, required=True, help="a file written by embed")
    queries = parser.add_mutually_exclusive_group(required=True)
    queries.add_argument("--query", nargs="+", help="image files or gallery item names")
    queries.add_argument("--random-queries", type=int, help="this many gallery items as queries")
    parser.add_argument("-k", type=int, default=10, help="neighbours per query")
    parser.add_argument("--sheet", type=_path, default=Path("search.png"), help="contact sheet PNG")
    parser.set_defaults(handler=_search)


def _search(args: argparse.Namespace) -> int:
    from sampling_matters.files import load_embeddings
    from sampling_matters.search import random_queries, search
    from sampling_matters.training import load_run

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


# ---------------------------------------------------------------------------- figures


def _figures_parser(parser: argparse.ArgumentParser) -> None:
    """Draw the paper's analyses, each as NAME.png and the data behind it as NAME.csv."""
    from sampling_matters.analysis import DEFAULT_DIMS, FIGURES

    width = max(map(len, FIGURES))
    listed = [
        f"  {i} {name:<{width}}  {spec.help}" for i, (name, spec) in enumerate(FIGURES.items(), 1)
    ]
    parser.description = (
        inspect.cleandoc(_figures_parser.__doc__ or "")
        + "\n\nfigures (--only takes their numbers or names):\n"
        + "\n".join(listed)
    )
    parser.add_argument("--out", type=_path, required=True, help="folder for the files")
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
    trained = parser.add_mutually_exclusive_group()
    panel = _figure_numbers(lambda spec: spec.reads_embeddings)
    trained.add_argument(
        "--run", type=_path, help=f"add a panel of this run's embedding to fig. {panel}"
    )
    trained.add_argument("--embeddings", type=_path, help="the same from a file written by embed")
    parser.add_argument("--data", help="data spec that --run embeds (default: the run's)")
    parser.add_argument(
        "--split", choices=("train", "test", "all"), help="the split --run embeds (default train)"
    )
    parser.add_argument(
        "--logs",
        type=_path,
        nargs="+",
        metavar="RUN",
        help=f"runs whose log.csv figure {_figure_numbers(lambda spec: spec.needs_logs)} draws",
    )
    parser.set_defaults(handler=_figures)


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
    embeddings, labels, _ = _embed_split(model, spec, split, config)
    return (embeddings, labels), f"{args.run.name}: {split} split"


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
    parser.add_argument("--out", type=_path, required=True, help="the ablation's directory")
    parser.add_argument("--config", type=_path, help="YAML file of shared settings")
    parser.add_argument(
        "--with-pml",
        action="store_true",
        help="add pytorch-metric-learning's MarginLoss + DistanceWeightedMiner (bench extra)",
    )
    parser.add_argument("--retry-failed", action="store_true", help="retrain failed runs")
    parser.add_argument("--quiet", action="store_true", help="no progress line per run")
    _add_setting_flags(parser, exclude=ABLATION_KEYS)
    parser.set_defaults(handler=_ablate)


def _ablate(args: argparse.Namespace) -> int:
    from sampling_matters.ablation import ABLATION_KEYS, run_ablation
    from sampling_matters.compat.pml import import_pml

    require("matplotlib")  # the grid's plot: fail now rather than after the training
    settings = read_yaml(args.config) if args.config else {}
    settings.update(_flag_settings(args, exclude=ABLATION_KEYS))
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


if __name__ == "__main__":
    sys.exit(main())
