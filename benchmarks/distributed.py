"""Training in 2 processes: throughput, the collectives' time, and the global pool's worth.

Three parts, each a section of ``results/distributed.md``:

- ``speed``: images per second of ``sampling-matters train --data kanji`` in 1 process
  (16 classes × 5 images a step, torch's threads on every core) and in 2 processes
  (``--nproc 2``, 8 classes × 5 each: the same global batch; torchrun gives each
  process one thread), the median of ``log.csv``'s ``images_per_s`` after the first
  logging interval, over ``--speed-steps`` steps (no evaluation in between).
- ``comm``: the collectives that a 2-process step adds, timed alone in 2 processes
  (gloo, one thread each) with a step's shapes: the gathered global batch (40 rows of
  the 128-d embedding a process), the all-reduce of a gradient the size of the small
  CNN's parameters (DDP's, in one bucket here), and the two scalars (the loss, the stop
  flag). In training DDP overlaps its all-reduce with the backward pass, so this is an
  upper bound of what the step waits for.
- ``quality``: kanji, the small CNN, 2 processes × 8 classes × 5 images a step, with
  each process sampling from the global batch (``--pool global``) against each sampling
  only from its own share (``--pool local``), the same images seen, seeds paired, test
  Recall@1 and MAP@R with the 95% interval of the paired difference.

The quality runs are recorded under ``results/runs/distributed/`` (see ``finished.py``):
run the same command again after an interruption, or in a fresh clone, and finished runs
are read back. Time the speed part with nothing else running::

    .venv/bin/python benchmarks/distributed.py --part speed,comm
    .venv/bin/python benchmarks/distributed.py --part quality --seeds 3 --steps 1000

Needs the prepared set (``sampling-matters prepare kanji``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from finished import RECORDS, read_metrics, train_once
from sampling_matters.tables import markdown_table, mean_std, paired

RESULTS = Path(__file__).resolve().parent / "results"
PARTS = ("speed", "comm", "quality")
POOLS = ("global", "local")
GLOBAL_CLASSES, K = 16, 5
GPU_NOTE = (
    "No GPU machine was lent to this project's runs, so the NCCL gradient test and the "
    "GPU throughput of the issue are not measured here."
)
CLI = [sys.executable, "-m", "sampling_matters", "train"]


def train_command(nproc: int, *flags: str) -> list[str]:
    """``sampling-matters train`` in ``nproc`` processes, on the global batch of 16 × 5."""
    per_process = str(GLOBAL_CLASSES // nproc)
    launch = ["--nproc", str(nproc)] if nproc > 1 else []
    return [
        *CLI,
        *launch,
        "--data",
        "kanji",
        "--classes-per-batch",
        per_process,
        "--samples-per-class",
        str(K),
        "--quiet",
        *flags,
    ]


def run(command: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "RANK")}
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")


# --------------------------------------------------------------------------- speed


def images_per_second(nproc: int, steps: int) -> float:
    """The median ``images_per_s`` of a run's log after its first interval."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "run"
        every = max(steps // 6, 1)
        run(
            train_command(
                nproc, "--steps", str(steps), "--log-every", str(every), "--out", str(out)
            )
        )
        with (out / "log.csv").open(newline="") as handle:
            rows = [r for r in csv.DictReader(handle) if r["val_recall@1"] in ("", "nan")]
    speeds = [float(r["images_per_s"]) for r in rows[1:]]
    return statistics.median(speeds)


def speed(args: argparse.Namespace) -> dict[str, Any]:
    one = images_per_second(1, args.speed_steps)
    two = images_per_second(2, args.speed_steps)
    return {"one": one, "two": two, "steps": args.speed_steps}


# ---------------------------------------------------------------------------- comm


def _comm_worker(r: int, store: str, out: str, reps: int) -> None:
    import torch.distributed as dist

    from sampling_matters import distributed
    from sampling_matters.models import build_model

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=r, world_size=2)
    model = build_model("small-cnn", embedding_dim=128, pretrained=False)
    n_params = sum(p.numel() for p in model.parameters())
    embeddings = torch.randn(GLOBAL_CLASSES // 2 * K, 128)
    labels = torch.arange(len(embeddings))
    gradient = torch.zeros(n_params)
    times: dict[str, list[float]] = {"gather": [], "gradients": [], "scalars": []}
    for _ in range(reps):
        start = time.perf_counter()
        distributed.gather(embeddings, labels)
        middle = time.perf_counter()
        dist.all_reduce(gradient)
        end = time.perf_counter()
        distributed.total(torch.tensor(1.0))
        distributed.total(torch.tensor(0))
        times["gather"].append(middle - start)
        times["gradients"].append(end - middle)
        times["scalars"].append(time.perf_counter() - end)
    dist.destroy_process_group()
    if r == 0:
        medians = {k: statistics.median(v) for k, v in times.items()}
        Path(out).write_text(
            json.dumps({"ms": {k: 1e3 * v for k, v in medians.items()}, "params": n_params})
        )


def comm(args: argparse.Namespace) -> dict[str, Any]:
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as folder:
        result = Path(folder) / "comm.json"
        mp.spawn(_comm_worker, args=(str(Path(folder) / "store"), str(result), args.reps), nprocs=2)
        return json.loads(result.read_text())


# ------------------------------------------------------------------------- quality


def quality(args: argparse.Namespace) -> dict[str, dict[int, dict[str, float]]]:
    results: dict[str, dict[int, dict[str, float]]] = {}
    for seed in range(args.seeds):
        for pool in POOLS:
            name = f"kanji-{args.steps}/pool-{pool}/seed{seed}"
            out = args.runs / name
            flags = ["--steps", str(args.steps), "--seed", str(seed), "--pool", pool]

            def command(resume: bool, out: Path = out, flags: list[str] = flags) -> None:
                if resume:  # the run's own settings, from its config.yaml
                    run([*CLI, "--nproc", "2", "--resume", str(out), "--quiet"])
                else:
                    run(train_command(2, *flags, "--out", str(out)))

            record = None if args.records == "none" else Path(args.records) / name
            train_once(out, command, record)
            results.setdefault(pool, {})[seed] = read_metrics(out)
            write(args, {"quality": results})
            print(f"pool {pool} seed {seed}: {results[pool][seed]}", file=sys.stderr, flush=True)
    return results


# -------------------------------------------------------------------------- report


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{os.cpu_count()} CPU cores ({cpu}), {gpu}, torch {torch.__version__}"


def render(found: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        "# Training in 2 processes",
        "",
        f"Generated by `benchmarks/distributed.py` on {time.strftime('%Y-%m-%d')}, on "
        f"{machine()}. {GPU_NOTE if not torch.cuda.is_available() else ''}",
        "",
    ]
    if "speed" in found:
        lines += speed_section(found["speed"])
    if "comm" in found:
        lines += comm_section(found["comm"], found.get("speed"))
    if "quality" in found:
        lines += quality_section(found["quality"], args)
    return "\n".join(lines) + "\n"


def speed_section(s: dict[str, Any]) -> list[str]:
    rows = [
        ["1 process, 16 × 5 a step", f"{s['one']:.0f}", "1.00"],
        ["2 processes, 8 × 5 each (`--nproc 2`)", f"{s['two']:.0f}", f"{s['two'] / s['one']:.2f}"],
    ]
    cores = os.cpu_count()
    return [
        "## Throughput",
        "",
        f"`sampling-matters train --data kanji`, {s['steps']} steps, the global batch of "
        f"{GLOBAL_CLASSES} × {K} images either way; median images per second of `log.csv`. "
        f"This machine has {cores} cores, so 2 processes (one thread each) share the cores "
        "that 1 process uses with its own threads: more processes do not add compute here, "
        "they only add the collectives. The speed-up belongs to machines with a core set "
        "or a GPU per process.",
        "",
        *markdown_table(["set-up", "images / s", "vs 1 process"], rows),
        "",
    ]


def comm_section(c: dict[str, Any], s: dict[str, Any] | None) -> list[str]:
    ms = c["ms"]
    total = sum(ms.values())
    rows = [
        ["gather the global batch (40 × 128 a process)", f"{ms['gather']:.2f}"],
        [f"all-reduce a gradient of {c['params']:,} parameters", f"{ms['gradients']:.2f}"],
        ["two scalars (the loss, the stop flag)", f"{ms['scalars']:.2f}"],
        ["total", f"{total:.2f}"],
    ]
    lines = [
        "## The collectives of a step",
        "",
        "Timed alone in 2 processes (gloo, one thread each), median of the repetitions; in "
        "training DDP overlaps the gradient's all-reduce with the backward pass.",
        "",
        *markdown_table(["collective", "ms"], rows),
        "",
    ]
    if s is not None:
        step_ms = 1e3 * GLOBAL_CLASSES * K / s["two"]
        lines += [
            f"Against the 2-process step ({step_ms:.0f} ms at {s['two']:.0f} images / s): "
            f"{100 * total / step_ms:.1f}% of it.",
            "",
        ]
    return lines


def quality_section(
    q: dict[str, dict[int, dict[str, float]]], args: argparse.Namespace
) -> list[str]:
    seeds = sorted(set(q.get("global", {})) & set(q.get("local", {})))
    rows = []
    for pool in POOLS:
        done = q.get(pool, {})
        rows.append(
            [
                f"`--pool {pool}`",
                str(len(done)),
                mean_std([m["recall@1"] for m in done.values()], scale=100),
                mean_std([m["map@r"] for m in done.values()], scale=100),
            ]
        )
    deltas = {
        metric: paired([(q["global"][s][metric], q["local"][s][metric]) for s in seeds], scale=100)
        for metric in ("recall@1", "map@r")
    }
    return [
        "## The global pool against each process's own",
        "",
        f"Kanji, the small CNN from scratch, {args.steps} steps of 2 processes × 8 classes × "
        f"{K} images (the same images seen in both arms), seeds paired; test metrics on the "
        "unseen classes. Identical runs are not bit-identical across machines' thread "
        "schedules, so a seed's run-to-run noise is part of the spread.",
        "",
        *markdown_table(["pool", "seeds", "R@1 %", "MAP@R %"], rows),
        "",
        f"Global − local, paired by seed (95% t interval): R@1 {deltas['recall@1']}, "
        f"MAP@R {deltas['map@r']}.",
        "",
    ]


def write(args: argparse.Namespace, found: dict[str, Any]) -> None:
    """Merge ``found`` into the results kept beside the table, and rewrite the table."""
    kept_path = args.out.with_suffix(".json")
    kept = json.loads(kept_path.read_text()) if kept_path.exists() else {}
    kept.update(found)
    kept_path.write_text(json.dumps(kept, indent=2, sort_keys=True) + "\n")
    if "quality" in kept:
        kept["quality"] = {p: {int(s): m for s, m in v.items()} for p, v in kept["quality"].items()}
    args.out.write_text(render(kept, args))


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", default=",".join(PARTS))
    parser.add_argument("--speed-steps", type=int, default=120)
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--runs", type=Path, default=Path("runs/distributed"))
    parser.add_argument("--out", type=Path, default=RESULTS / "distributed.md")
    parser.add_argument("--records", default=str(RECORDS / "distributed"))
    args = parser.parse_args()
    unknown = set(args.part.split(",")) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; known: {list(PARTS)}")
    return args


def main() -> None:
    args = parse()
    parts = args.part.split(",")
    if "speed" in parts:
        write(args, {"speed": speed(args)})
    if "comm" in parts:
        write(args, {"comm": comm(args)})
    if "quality" in parts:
        quality(args)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
