"""How long ``make demo`` takes on a fresh clone: the set-up and the demo, timed apart.

The committed HEAD of the repository is cloned (``git clone --quiet``) into a new
temporary folder, and two stages run there one after the other, each timed with
``time.perf_counter`` and its output written to a log in that folder:

- set-up, ``make .venv/.demo``: a new virtual environment, the pinned CPU torch, and the
  package with its ``data,efficientnet,serve`` extras;
- demo, ``make demo``: prepare emoji, train ``configs/demo.yaml``, embed the unseen
  classes, draw the contact sheet, build the index.

What is cold and what is warm:

- cold, always: the clone and its ``.venv``; the data cache (``SAMPLING_MATTERS_CACHE``
  points to a new, empty folder, so ``prepare emoji`` builds ``emoji.npz`` and training
  computes its frozen features anew); ``runs/`` (not in the repository).
- the emoji packages (four npm tarballs, ~340 MB), which ``prepare`` keeps in the data
  cache's ``downloads/``: with ``--downloads fresh`` (the default) npm fetches them from
  its registry into an empty npm cache (``npm_config_cache``), as on a new machine, so
  the demo's time includes the download and depends on the network; with ``--downloads
  linked`` the tarballs already in your own data cache are linked into the empty one and
  nothing is downloaded (for a machine without the registry).
- as found, not touched: pip's own cache (its folder and size before and after are
  recorded) and the sources pip is configured with (where torch's wheel comes from), the
  system Python that ``make`` calls (``python3``), and the operating system's file cache.

The stages run with this process's environment less the variables that would change what
a new user gets: thread counts (``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``), an active
virtual environment, ``PYTHONPATH``, ``PYTHON`` (the Makefile's interpreter) and make's
own variables. Only what is committed is measured: uncommitted changes are not cloned.

After the demo, the clone's ``runs/demo/metrics.json`` (Recall@1, MAP@R) is read and
``runs/demo/index/meta.json`` must exist, both written during this run. The table goes to
``benchmarks/results/demo_time.md`` (``--out``) with a JSON twin beside it (``.json``);
the temporary folder is removed afterwards unless ``--keep``. It takes about ten
minutes and needs a few GB in the temporary folder (``TMPDIR`` moves it); run it on an
idle machine (the header says how busy it was)::

    .venv/bin/python benchmarks/demo_time.py
    .venv/bin/python benchmarks/demo_time.py --dry-run     # the commands, nothing run
    .venv/bin/python benchmarks/demo_time.py --downloads linked --keep --out /tmp/d.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from report import RunClock, cpu_model, machine_facts, others_text
from sampling_matters.data.cache import ENV_VAR, cache_root
from sampling_matters.data.emoji import EMOJI_VERSION, VENDORS
from sampling_matters.tables import markdown_table

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "benchmarks" / "results" / "demo_time.md"
SETUP = ("make", ".venv/.demo")
DEMO = ("make", "demo")
DROPPED = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VIRTUAL_ENV",
    "PYTHONPATH",
    "PYTHON",
    "MAKEFLAGS",
    "MFLAGS",
    "MAKELEVEL",
)
"""Variables of this process's environment that the stages run without."""
TAIL = 40  # lines of a failed stage's log to print


class StageError(RuntimeError):
    """A stage exited with an error; the message names it and ends with its log's tail."""


@dataclass(frozen=True)
class Plan:
    """Where everything goes, all inside one new temporary folder ``root``."""

    repo: Path
    root: Path
    downloads: str  # "fresh" (npm fetches) or "linked" (the user's tarballs)

    @property
    def clone(self) -> Path:
        """The clone of the repository."""
        return self.root / "clone"

    @property
    def cache(self) -> Path:
        """The fresh data cache (``SAMPLING_MATTERS_CACHE``)."""
        return self.root / "data-cache"

    @property
    def npm_cache(self) -> Path:
        """The fresh npm cache (``--downloads fresh``)."""
        return self.root / "npm-cache"

    def log(self, stage: str) -> Path:
        """The log file of ``stage``."""
        return self.root / f"{stage}.log"


# ---------------------------------------------------------------- the plan, as data


def emoji_tarballs() -> list[str]:
    """The names of the four npm tarballs that ``prepare emoji`` keeps in ``downloads/``."""
    return [f"emoji-datasource-{vendor}-{EMOJI_VERSION}.tgz" for vendor in VENDORS]


def clone_command(plan: Plan) -> list[str]:
    """``git clone --quiet REPO CLONE``."""
    return ["git", "clone", "--quiet", str(plan.repo), str(plan.clone)]


def stage_env(base: Mapping[str, str], plan: Plan) -> dict[str, str]:
    """The stages' environment: ``base`` less :data:`DROPPED`, with the fresh caches set.

    An active virtual environment's ``bin`` also leaves ``PATH``, so that ``make`` finds
    the system's ``python3``.
    """
    env = {key: value for key, value in base.items() if key not in DROPPED}
    if base.get("VIRTUAL_ENV"):
        venv_bin = str(Path(base["VIRTUAL_ENV"]) / "bin")
        path = env.get("PATH", "").split(os.pathsep)
        env["PATH"] = os.pathsep.join(part for part in path if part != venv_bin)
    env[ENV_VAR] = str(plan.cache)
    if plan.downloads == "fresh":
        env["npm_config_cache"] = str(plan.npm_cache)
    return env


def env_changes(base: Mapping[str, str], env: Mapping[str, str]) -> list[str]:
    """``env``'s difference from ``base`` as ``env`` arguments: ``-u NAME``, ``NAME=VALUE``."""
    unset = [f"-u {name}" for name in sorted(set(base) - set(env))]
    changed = sorted(name for name in env if base.get(name) != env[name])
    return unset + [f"{name}={shlex.quote(env[name])}" for name in changed]


def describe(plan: Plan, base: Mapping[str, str]) -> str:
    """The commands a run would run, as shell lines (``--dry-run`` prints them)."""
    changes = " ".join(env_changes(base, stage_env(base, plan)))
    lines = [
        f"# in {plan.root} (a new temporary folder)",
        shlex.join(clone_command(plan)),
    ]
    if plan.downloads == "linked":
        source = cache_root() / "downloads"
        lines += [shlex.join(["mkdir", "-p", str(plan.cache / "downloads")])]
        lines += [
            shlex.join(["ln", "-s", str(source / name), str(plan.cache / "downloads" / name)])
            for name in emoji_tarballs()
        ]
    for stage, command in (("setup", SETUP), ("demo", DEMO)):
        lines.append(
            f"cd {shlex.quote(str(plan.clone))} && env {changes} {shlex.join(command)} "
            f"> {shlex.quote(str(plan.log(stage)))} 2>&1"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------- running


def run_stage(
    name: str, command: Sequence[str], cwd: Path, env: Mapping[str, str], log: Path
) -> dict[str, Any]:
    """Run ``command`` with its output in ``log``; its wall time (s) and others' CPU share.

    Returns:
        ``{"seconds": …, "others_share": …}`` (see :class:`report.RunClock`).

    Raises:
        StageError: the command exited non-zero or could not start; the message names the
            stage and the command and ends with the last :data:`TAIL` lines of ``log``.
    """
    clock, info = RunClock(), dict[str, Any]()
    with log.open("wb") as sink:
        try:
            done = subprocess.run(
                list(command), cwd=cwd, env=dict(env), stdout=sink, stderr=subprocess.STDOUT
            )
            status = done.returncode
        except OSError as error:  # no such program, no such folder
            sink.write(f"{error}\n".encode())
            status = -1
    clock.stop(info)
    if status != 0:
        raise StageError(
            f"stage {name!r} ({shlex.join(command)}) failed with exit status {status} after "
            f"{info['elapsed']:.0f} s; the last {TAIL} lines of {log}:\n{tail(log, TAIL)}"
        )
    return {"seconds": info["elapsed"], "others_share": info["others"]}


def tail(path: Path, count: int) -> str:
    """The last ``count`` lines of a text file."""
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-count:])


def link_downloads(plan: Plan) -> None:
    """Link the user's emoji tarballs into the fresh cache's ``downloads/``."""
    source, target = cache_root() / "downloads", plan.cache / "downloads"
    missing = [name for name in emoji_tarballs() if not (source / name).is_file()]
    if missing:
        raise ValueError(
            f"--downloads linked needs {', '.join(missing)} in {source}; "
            "prepare emoji once, or measure with --downloads fresh"
        )
    target.mkdir(parents=True)
    for name in emoji_tarballs():
        (target / name).symlink_to(source / name)


def read_outputs(clone: Path, since: float) -> dict[str, float]:
    """Recall@1 and MAP@R of the clone's demo run, after checking it wrote them now.

    Raises:
        RuntimeError: ``metrics.json`` or ``index/meta.json`` is missing, or older than
            ``since`` (a ``time.time()``).
    """
    run = clone / "runs" / "demo"
    for path in (run / "metrics.json", run / "index" / "meta.json"):
        if not path.is_file() or path.stat().st_mtime < since:
            raise RuntimeError(f"make demo succeeded but did not write {path}")
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    return {"recall_at_1": float(metrics["recall@1"]), "map_at_r": float(metrics["map@r"])}


def pip_cache() -> dict[str, Any]:
    """Pip's cache folder and its size in bytes (0 when absent), as this machine has it."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "cache", "dir"], capture_output=True, text=True
    )
    if done.returncode != 0:
        return {"pip_cache": "disabled or unknown", "bytes": 0}
    folder = Path(done.stdout.strip())
    return {"pip_cache": str(folder), "bytes": folder_bytes(folder)}


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder`` (links not followed; 0 when absent)."""
    if not folder.is_dir():
        return 0
    return sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def pip_sources() -> list[str]:
    """The package sources pip is configured with: local folders by path, others unnamed."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True
    )
    wanted = re.compile(r"^[^=]*\.(find-links|index-url|extra-index-url)='?(.*?)'?$")
    found = [wanted.match(line) for line in done.stdout.splitlines()]
    values = " ".join(m.group(2) for m in found if m).split()
    return sorted({v if v.startswith(("/", "file:")) else "a network index" for v in values})


def python_version(env: Mapping[str, str]) -> str:
    """The version of the ``python3`` that ``make`` finds on the stages' ``PATH``."""
    found = shutil.which("python3", path=env.get("PATH"))
    if found is None:
        return "no python3 on PATH"
    done = subprocess.run([found, "--version"], capture_output=True, text=True)
    return f"{(done.stdout or done.stderr).strip()} ({found})"


def short_commit(clone: Path) -> str:
    """The short hash of the clone's HEAD: the commit measured."""
    done = subprocess.run(
        ["git", "-C", str(clone), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"git rev-parse in {clone} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def download_bytes(plan: Plan) -> int:
    """Bytes of the four emoji tarballs in the fresh cache's ``downloads/`` (links followed)."""
    return sum((plan.cache / "downloads" / name).stat().st_size for name in emoji_tarballs())


def measure(plan: Plan) -> dict[str, Any]:
    """Clone, run both stages, read the demo's metrics: the results (see :func:`render`)."""
    facts = machine_facts(os.cpu_count() or 1)
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    env = stage_env(os.environ, plan)
    pip_before = pip_cache()
    run_stage("clone", clone_command(plan), plan.root, env, plan.log("clone"))
    commit = short_commit(plan.clone)
    if plan.downloads == "linked":
        link_downloads(plan)
    clock, overall = RunClock(), dict[str, Any]()
    setup = run_stage("setup", SETUP, plan.clone, env, plan.log("setup"))
    since = time.time()
    demo = run_stage("demo", DEMO, plan.clone, env, plan.log("demo"))
    clock.stop(overall)
    return {
        "date": date,  # the start
        "commit": commit,
        "setup_s": round(setup["seconds"], 1),
        "demo_s": round(demo["seconds"], 1),
        "total_s": round(setup["seconds"] + demo["seconds"], 1),
        **read_outputs(plan.clone, since),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "load": facts["load"],
        "others_share": overall["others"],
        "setup_others_share": setup["others_share"],
        "demo_others_share": demo["others_share"],
        "python": python_version(env),
        "data_cache": "cold (empty)",
        "downloads": plan.downloads,
        "download_bytes": download_bytes(plan),
        "pip_cache": pip_before["pip_cache"],
        "pip_cache_bytes_before": pip_before["bytes"],
        "pip_cache_bytes_after": pip_cache()["bytes"],
        "pip_sources": pip_sources(),
    }


# ---------------------------------------------------------------- the report


def minutes(seconds: float) -> str:
    """``seconds`` in minutes, one decimal."""
    return f"{seconds / 60:.1f}"


def mib(count: int) -> str:
    """Bytes in MiB, no decimals; "nothing" for none."""
    return f"{count / 2**20:,.0f} MiB" if count else "nothing"


def render(results: Mapping[str, Any]) -> str:
    """The markdown page of one measurement, from :func:`measure`'s results."""
    fresh = results["downloads"] == "fresh"
    downloads = (
        f"fetched by npm from its registry into an empty npm cache "
        f"({mib(results['download_bytes'])}; the demo's time includes the download)"
        if fresh
        else f"linked from an earlier `prepare emoji` ({mib(results['download_bytes'])}; "
        "not downloaded, not in the demo's time)"
    )
    pip = (
        f"`{results['pip_cache']}`: {mib(results['pip_cache_bytes_before'])} before the run, "
        f"{mib(results['pip_cache_bytes_after'])} after"
    )
    sources = ", ".join(f"`{s}`" for s in results["pip_sources"]) or "pip's defaults"
    rows = [
        [
            "set-up",
            f"`{shlex.join(SETUP)}`",
            f"{results['setup_s']:.0f}",
            minutes(results["setup_s"]),
        ],
        ["demo", f"`{shlex.join(DEMO)}`", f"{results['demo_s']:.0f}", minutes(results["demo_s"])],
        ["total", "", f"**{results['total_s']:.0f}**", f"**{minutes(results['total_s'])}**"],
    ]
    lines = [
        "# `make demo` on a fresh clone",
        "",
        "Written by `benchmarks/demo_time.py`: the committed HEAD is cloned into a new "
        "temporary folder, where `make .venv/.demo` (a new virtual environment, the pinned "
        "CPU torch, the package with its `data,efficientnet,serve` extras) and then "
        "`make demo` (prepare emoji, train `configs/demo.yaml`, embed the unseen classes, "
        "the contact sheet, the index) run one after the other, each timed apart.",
        "",
        f"Summary: on a fresh clone, `make demo` took **{minutes(results['total_s'])} min** "
        f"(set-up {minutes(results['setup_s'])} min, demo {minutes(results['demo_s'])} min) "
        f"on {results['cpus']} cores of {results['cpu']}.",
        "",
        f"- date: {results['date']}",
        f"- commit: `{results['commit']}`",
        f"- CPU: {results['cpu']}; {results['cpus']} cores; thread counts left at their "
        f"defaults; make's `python3`: {results['python']}",
        f"- load average (1 min) before the run: {results['load']}; "
        f"{others_text(results['others_share'])}",
        f"- cold: the clone, its `.venv`, the data cache (`{ENV_VAR}` set to an empty folder: "
        "emoji is prepared and its frozen features computed anew), `runs/`",
        f"- the emoji packages: {downloads}",
        f"- as found, not touched: pip's cache {pip}; pip's sources {sources}; the operating "
        "system's file cache",
        "",
        *markdown_table(["stage", "command", "seconds", "minutes"], rows),
        "",
        f"The demo's model on the unseen classes (the clone's `runs/demo/metrics.json`): "
        f"Recall@1 **{results['recall_at_1']:.3f}**, MAP@R **{results['map_at_r']:.3f}**.",
        "",
    ]
    return "\n".join(lines)


def write(results: Mapping[str, Any], out: Path) -> None:
    """The markdown page to ``out`` and the results as JSON beside it (``.json``)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(results), encoding="utf-8")
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


# ---------------------------------------------------------------- the command line


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the markdown to write")
    parser.add_argument("--repo", type=Path, default=REPO, help="the repository to clone")
    parser.add_argument(
        "--downloads",
        choices=("fresh", "linked"),
        default="fresh",
        help="fetch the emoji packages with npm (fresh, the default) or link yours (linked)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the commands and environment; run nothing"
    )
    args = parser.parse_args(argv)
    args.repo = args.repo.resolve()
    if not args.repo.is_dir():
        parser.error(f"--repo {args.repo} is no folder")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    plan = Plan(args.repo, Path(tempfile.mkdtemp(prefix="demo-time-")), args.downloads)
    try:
        if args.dry_run:
            print(describe(plan, os.environ))
            return 0
        results = measure(plan)
    except (StageError, RuntimeError, ValueError) as error:
        print(f"demo_time: {error}", file=sys.stderr)
        if not args.keep:
            print("(run again with --keep to keep the clone and its logs)", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept {plan.root}")
        else:
            shutil.rmtree(plan.root, ignore_errors=True)
    write(results, args.out)
    print(render(results))
    print(f"-> {args.out} and {args.out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
