r"""Give an ablation's cell the finished runs of another benchmark that ran the same command.

The ``defaults`` arm of ``defaults.py`` (``sampling-matters train --data kanji --steps 2500
--seed S``) is, run for run, the margin + distance weighted cell of the full-budget kanji
ablation. Training it again would spend a quarter of an hour a seed on one core to measure
the same thing. This script copies those runs into the ablation's folder instead:
it first checks that every setting the ablation gives the run equals the one the run was
trained with (``finished.check_settings``), then records the run's wall time as the
ablation records its own. ``sampling-matters ablate`` with the ablation's command reads
them back as done::

    .venv/bin/python benchmarks/adopt_runs.py --ablation runs/ablation-kanji-2500 \
        --cell margin--distance-weighted \
        --source benchmarks/results/runs/defaults/kanji-2500/defaults

``--source`` holds one folder per seed, ``seed<S>``: the runs themselves, or their records
under ``results/runs/`` (no checkpoints: the ablation needs none of a finished run).
Unfinished ones are left alone, and a run the ablation already has is not overwritten.
"""

from __future__ import annotations

import argparse
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from finished import WALL, check_settings, wall_seconds
from sampling_matters.ablation.plan import RunSpec, run_config
from sampling_matters.ablation.record import read_json, record_session

COPIED = ("config.yaml", "log.csv", "best.pt", "last.pt", "metrics.json")
"""A run's files, where it has them (a benchmark's record keeps no checkpoints);
``metrics.json`` last, as it marks the run done."""


def adopt(ablation: Path, cell: str, source: Path) -> list[Path]:
    """Copy the finished runs ``source/seed<S>`` into ``ablation/runs/<cell>--seed<S>``.

    Raises:
        SystemExit: on a missing ablation, a malformed cell, or a run with other settings.
    """
    settings = dict(read_json(ablation / "ablation.json").get("settings", {}))
    if not settings:
        raise SystemExit(f"{ablation} holds no ablation.json: start the ablation first")
    steps = int(settings.pop("steps"))
    loss, sep, sampling = cell.partition("--")
    if not sep:
        raise SystemExit(f"--cell {cell!r}: expected LOSS--SAMPLING, e.g. margin--uniform")
    adopted = []
    for run in sorted(source.glob("seed*")):
        seed = re.fullmatch(r"seed(\d+)", run.name)
        if seed is None or not (run / "metrics.json").exists():
            continue
        config = run_config(
            settings, RunSpec(loss, sampling, int(seed[1])), steps, ablation / "runs"
        )
        try:
            check_settings(config, run)
        except SystemExit as error:  # its "remove it" is about a run folder, not a source
            detail = str(error).removesuffix("; remove it")
            raise SystemExit(f"{detail}: it cannot be the ablation's {cell} cell") from None
        target = Path(config.run.out)
        if (target / "metrics.json").exists():
            continue
        target.mkdir(parents=True, exist_ok=True)
        for name in (n for n in COPIED if (run / n).exists()):
            shutil.copyfile(run / name, target / name)
        text = (target / "config.yaml").read_text()
        (target / "config.yaml").write_text(re.sub(r"(?m)^out: .*$", f"out: {target}", text))
        record_session(target, wall_seconds(run), "done")
        adopted.append(target)
    return adopted


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ablation", type=Path, required=True, help="the ablation's --out")
    parser.add_argument("--cell", required=True, help="LOSS--SAMPLING, the runs' cell")
    parser.add_argument("--source", type=Path, required=True, help=f"seed<S>/ folders ({WALL})")
    args = parser.parse_args(argv)
    for target in adopt(args.ablation, args.cell, args.source):
        print(f"adopted {target}")


if __name__ == "__main__":
    main()
