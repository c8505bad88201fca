"""Latency, errors and peak memory of ``sampling-matters serve`` under a bounded load.

Starts ``sampling-matters serve INDEX`` as a subprocess on a free loopback port, waits
for ``/healthz``, then sends a fixed number of ``POST /api/search`` requests from a
fixed number of threads: half search by id (JSON), half upload an item's image
(multipart), in a seeded order, each asking for ``k`` neighbours. It records every
request's latency and status, and the server's peak resident memory (``VmHWM`` in
``/proc/PID/status``) once the load is done; then it stops the server.

The table goes to ``benchmarks/results/serve_load.md`` (``--out``): p50/p99/max latency
overall and per kind of query, throughput, errors (the target is 0), the server's memory
after loading and at its peak.

Run it::

    .venv/bin/python benchmarks/serve_load.py                      # runs/demo/index
    .venv/bin/python benchmarks/serve_load.py --index runs/x/index --requests 200 --out /tmp/s.md

The server's torch threads follow ``OMP_NUM_THREADS`` when set, as for any run.
"""

from __future__ import annotations

import argparse
import math
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from report import RunClock, fact_lines, machine_facts
from sampling_matters.tables import markdown_table

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_INDEX = ROOT / "runs" / "demo" / "index"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "serve_load.md"
START_TIMEOUT = 300.0  # seconds for the server to load its model and index
UPLOADS = 32  # distinct item images the uploads cycle through


@dataclass(frozen=True)
class Outcome:
    """One request: its kind (``id`` or ``upload``), status (0: no answer) and latency."""

    kind: str
    status: int
    seconds: float
    error: str = ""


def free_port() -> int:
    """A loopback port that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_command(index: Path, port: int) -> list[str]:
    """``sampling-matters serve INDEX --port PORT``, with this interpreter's install."""
    script = shutil.which("sampling-matters", path=str(Path(sys.executable).parent))
    head = [script] if script else [sys.executable, "-m", "sampling_matters"]
    return [*head, "serve", str(index), "--host", "127.0.0.1", "--port", str(port)]


def start_server(index: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """The server, started and answering ``/healthz``; its output goes to ``log``."""
    with log.open("wb") as sink:
        server = subprocess.Popen(
            server_command(index, port), stdout=sink, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    stop_server(server)
    raise RuntimeError(f"the server did not answer within {START_TIMEOUT:.0f} s")


def stop_server(server: subprocess.Popen[bytes]) -> None:
    """Ctrl-C for the server, then a kill if it does not stop."""
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def memory_kib(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` (peak) of a process, in KiB, from ``/proc/PID/status``."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


def plan(ids: Sequence[int], requests: int, seed: int) -> list[tuple[str, int]]:
    """The requests in order: (kind, item id), half by id, half uploads, shuffled."""
    draw = random.Random(seed)
    kinds = ["id", "upload"] * (requests // 2) + ["id"] * (requests % 2)
    draw.shuffle(kinds)
    uploads = draw.sample(list(ids), min(UPLOADS, len(ids)))
    return [(kind, draw.choice(ids) if kind == "id" else draw.choice(uploads)) for kind in kinds]


def send(client: httpx.Client, kind: str, item: int, k: int, images: dict[int, bytes]) -> Outcome:
    """One search, timed; a transport failure is status 0."""
    start = time.perf_counter()
    try:
        if kind == "id":
            response = client.post("/api/search", json={"id": item, "k": k})
        else:
            files = {"image": (f"{item}.png", images[item], "image/png")}
            response = client.post("/api/search", files=files, data={"k": str(k)})
        seconds = time.perf_counter() - start
        good = response.status_code == 200 and len(response.json()["neighbours"]) == k
        return Outcome(kind, response.status_code, seconds, "" if good else response.text[:200])
    except (httpx.HTTPError, ValueError, KeyError) as error:
        return Outcome(kind, 0, time.perf_counter() - start, f"{type(error).__name__}: {error}")


def run_load(base: str, args: argparse.Namespace) -> tuple[list[Outcome], float, dict[str, Any]]:
    """Send the planned requests from ``args.concurrency`` threads; outcomes, seconds, health."""
    limits = httpx.Limits(max_connections=args.concurrency)
    with httpx.Client(base_url=base, timeout=120, limits=limits) as client:
        health = client.get("/healthz").json()
        ids = sorted({client.get("/api/items/random").json()["id"] for _ in range(4 * UPLOADS)})
        order = plan(ids, args.requests, args.seed)
        wanted = {item for kind, item in order if kind == "upload"}
        images = {i: client.get(f"/api/items/{i}/image").content for i in wanted}
        k = min(args.k, health["max_k"])
        lock, outcomes = threading.Lock(), []

        def one(step: tuple[str, int]) -> None:
            outcome = send(client, step[0], step[1], k, images)
            with lock:
                outcomes.append(outcome)

        start = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            list(pool.map(one, order))
        return outcomes, time.perf_counter() - start, {**health, "k": k}


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0-1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(q * len(ordered)))) - 1]


def latency_rows(outcomes: Sequence[Outcome]) -> list[list[str]]:
    """Per kind and overall: requests, errors, p50, p99, max latency (ms)."""
    rows = []
    for name in ("id", "upload", "all"):
        chosen = [o for o in outcomes if name in ("all", o.kind)]
        times = [o.seconds * 1000 for o in chosen]
        errors = sum(o.status != 200 or bool(o.error) for o in chosen)
        rows.append(
            [
                name,
                str(len(chosen)),
                str(errors),
                f"{percentile(times, 0.5):.1f}",
                f"{percentile(times, 0.99):.1f}",
                f"{max(times):.1f}",
            ]
        )
    return rows


def report(
    args: argparse.Namespace,
    outcomes: Sequence[Outcome],
    seconds: float,
    health: dict[str, Any],
    memory: dict[str, dict[str, int]],
    info: dict[str, Any],
) -> str:
    """The markdown page."""
    errors = [o for o in outcomes if o.status != 200 or o.error]
    model = health.get("model", {})
    lines = [
        "# `sampling-matters serve` under load",
        "",
        "Generated by `benchmarks/serve_load.py`: the server runs as a subprocess on a "
        "loopback port; the load is searches by id (JSON) and by upload (an item's PNG, "
        "multipart), half each in a seeded order, from concurrent threads.",
        "",
        f"- index: `{args.index}` ({health['size']} items, {health['dim']}-d, "
        f"{health['index']['factory']}, faiss {health['index']['faiss_version']}); model "
        f"{model.get('name')} of `{model.get('run')}`",
        f"- load: {len(outcomes)} requests, {args.concurrency} concurrent, k = {health['k']}",
        *fact_lines(info, f"Python {sys.version.split()[0]}, httpx {httpx.__version__}"),
        "",
        *markdown_table(
            ["query", "requests", "errors", "p50 ms", "p99 ms", "max ms"], latency_rows(outcomes)
        ),
        "",
        f"- throughput: {len(outcomes) / seconds:.1f} requests/s over {seconds:.1f} s",
        f"- errors: {len(errors)} (target 0)"
        + (f"; first: {errors[0].status} {errors[0].error}" if errors else ""),
        f"- server memory (RSS): {memory['loaded']['VmRSS'] / 1024:.0f} MiB loaded and idle; "
        f"peak {memory['after']['VmHWM'] / 1024:.0f} MiB (VmHWM, the whole run)",
        "",
    ]
    return "\n".join(lines)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--index", type=Path, default=DEFAULT_INDEX, help="an index folder")
    parser.add_argument("--requests", type=int, default=2000, help="searches to send in all")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    parser.add_argument("-k", type=int, default=10, help="neighbours per search")
    parser.add_argument("--seed", type=int, default=0, help="the order of the requests")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the markdown to write")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.concurrency < 1:
        parser.error("--requests and --concurrency must be >= 1")
    if not args.index.is_dir():
        parser.error(f"--index {args.index} is no folder (make demo builds runs/demo/index)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    info, port = machine_facts(0), free_port()
    with tempfile.TemporaryDirectory() as scratch:
        server = start_server(args.index, port, Path(scratch) / "server.log")
        try:
            loaded = memory_kib(server.pid)
            clock = RunClock()
            outcomes, seconds, health = run_load(f"http://127.0.0.1:{port}", args)
            memory = {"loaded": loaded, "after": memory_kib(server.pid)}
        finally:
            stop_server(server)
    clock.stop(info)
    info["threads"] = health.get("threads")  # the server's, which does the work
    text = report(args, outcomes, seconds, health, memory, info)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    errors = sum(o.status != 200 or bool(o.error) for o in outcomes)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
