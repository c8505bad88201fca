"""The training loop: a run from its start to its test metrics, one loop for everything.

Each epoch ends with validation, ``last.pt`` and, when it is the one to keep,
``best.pt``; the end scores ``best.pt`` on the test classes into ``metrics.json``.
"""

from __future__ import annotations

import contextlib
import inspect
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

from sampling_matters import distributed, files
from sampling_matters.config import TrainConfig, check_memory_warmup
from sampling_matters.data.cache import write_text_atomic
from sampling_matters.runs import RunLock, check_start, put_back, remove_orphans, set_aside
from sampling_matters.training import parallel
from sampling_matters.training.build import _build, _optimiser, _Run, _schedule
from sampling_matters.training.checkpoints import (
    _BEST_KEYS,
    _read_last,
    _restore,
    _save_last,
    _write_config,
)
from sampling_matters.training.features import _evaluate_model
from sampling_matters.training.log import _Log
from sampling_matters.training.step import _batches, _step
from sampling_matters.training.stop import TrainingInterrupted, _StopRequest


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    loss_factory: Callable[[TrainConfig], nn.Module] | None = None,
) -> dict[str, Any]:
    """Train, validate each epoch, keep the best model, and score it on the test classes.

    Nothing is written before the data (every image file checked), the model and, for
    a resume, the run's ``last.pt`` have loaded, so a refused or failed start leaves an
    existing run as it was. Ctrl-C stops at the next step boundary, writes ``last.pt``
    and raises :class:`TrainingInterrupted`. With ``memory_size`` > 0 each step also
    samples from a cross-batch memory of the last ``memory_size`` embeddings on the
    model's device (read before the loss, the batch added after it), kept in ``last.pt``.

    Args:
        config: the run's configuration; ``config.run.out`` is the run directory.
        resume: continue the run in ``config.run.out`` from its ``last.pt`` (from the
            start when it has none); refused when ``config`` would change its settings.
        overwrite: replace the run in ``config.run.out``. Without ``resume`` or
            ``overwrite``, a folder that holds a run is refused.
        progress: show progress bars.
        loss_factory: builds the loss in place of ``config``'s loss and sampling (an
            external loss, e.g. another library's): a module called as
            ``loss(embeddings, labels, indices)`` (with a cross-batch memory, also with
            ``references=`` and ``reference_labels=``) with the attributes ``last_triplets``,
            ``last_stats`` and ``last_active_fraction``; its ``beta_param_group(lr)``, if
            it has one, is trained at ``beta_lr``, and its ``beta_values(labels,
            indices)``, if it has one, is logged (e.g. :mod:`sampling_matters.compat.pml`).

    Returns:
        The test metrics (also written to ``metrics.json``).

    Raises:
        ValueError: bad settings (a memory warm-up as long as the run, too), a refused
            start, bad image files, an unreadable ``last.pt``.
        RunInUseError: another process trains into the same folder.
        TrainingInterrupted: Ctrl-C.
    """
    config.check()
    with parallel.joined(parallel.device_for(config.run.device)):
        return _train(config, resume, overwrite, progress and parallel.is_main(), loss_factory)


def _train(
    config: TrainConfig,
    resume: bool,
    overwrite: bool,
    progress: bool,
    loss_factory: Callable[[TrainConfig], nn.Module] | None,
) -> dict[str, Any]:
    """:func:`train` in this process (one of several, or the only one)."""
    out = Path(config.run.out)
    parallel.from_main(lambda: check_start(out, resume=resume, overwrite=overwrite))
    run = _build(config, progress)
    config = run.config  # automatic settings decided
    last = _read_last(out, config) if resume else None
    if loss_factory is not None:
        run.loss = loss_factory(config).to(run.device)  # type: ignore[assignment]
    _check_takes_references(run)
    total = _total_steps(run)
    if config.optim.epochs is not None:  # steps: checked with the settings
        batches = f" ({config.optim.epochs} epochs of {len(run.sampler)} batches)"
        check_memory_warmup(config.loss, total, batches)
    optimiser = _optimiser(run.model, run.loss, config)
    schedule = _schedule(optimiser, total, config)
    state: dict[str, Any] = {"step": 0, "epoch": 0, "batch": 0, "best": -1.0, "best_step": 0}
    if last is not None:
        state = _restore(last, out / "last.pt", run, optimiser, schedule)
    cached = isinstance(run.train_set, TensorDataset)
    run.forward = parallel.wrap_model(run.model, cached, run.device)  # after the restore
    main = parallel.is_main()
    created = main and not out.exists()
    if main:
        out.mkdir(parents=True, exist_ok=True)
    try:
        with _locked(out, main), _flushed_denormals(), _start(run, resume, main):
            if main and (not resume or not (out / "config.yaml").exists()):
                _write_config(config, out, run.skipped)
            _loop(run, state, total, optimiser, schedule, resume, progress)
            return _finish(run, state)
    finally:
        if created and not any(out.iterdir()):  # a new folder that a failed start left empty
            out.rmdir()


@contextlib.contextmanager
def _locked(out: Path, main: bool) -> Iterator[None]:
    """The run's lock, held by rank 0 (the process that writes), its orphans removed."""
    if not main:
        yield
        return
    with RunLock(out):
        remove_orphans(out)
        yield


def _check_takes_references(run: _Run) -> None:
    """Refuse a loss that takes no references where it needs them.

    A ``loss_factory``'s loss needs them with a cross-batch memory, or with the other
    processes' rows to sample from.
    """
    shared = distributed.world_size() > 1 and run.config.loss.pool == "global"
    if run.memory is None and not shared:
        return
    try:
        parameters = inspect.signature(run.loss.forward).parameters
    except (TypeError, ValueError):  # no signature to read: let the call decide
        return
    if "references" not in parameters:
        raise ValueError(
            f"the loss {type(run.loss).__name__} takes no references, so it cannot sample "
            "from a cross-batch memory or the other processes' rows: set memory_size 0 "
            "and pool local, or give its forward references= and reference_labels="
        )


def _total_steps(run: _Run) -> int:
    """The run's length in steps (``steps``, or ``epochs`` × batches per epoch)."""
    if run.config.optim.steps is not None:
        return run.config.optim.steps
    return int(run.config.optim.epochs or 1) * len(run.sampler)


@contextlib.contextmanager
def _start(run: _Run, resume: bool, main: bool) -> Iterator[None]:
    """A new start sets aside the run files it finds until its first checkpoint (rank 0).

    If it fails before that, what it wrote goes and the set-aside files come back.
    """
    if not resume and main:
        set_aside(run.out)
        run.aside = True
    try:
        yield
    except BaseException:
        if run.aside:
            put_back(run.out)
        raise


@contextlib.contextmanager
def _flushed_denormals() -> Iterator[None]:
    """Flush denormal floats to zero on the CPU while training, then stop again.

    Weights and gradients that decay towards zero pass through denormal numbers, which
    a CPU handles many times slower than normal ones: steps of the small CNN trained
    from scratch at lr 1e-3 were several times slower without this.
    """
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def _loop(
    run: _Run,
    state: dict[str, Any],
    total: int,
    optimiser: torch.optim.Optimizer,
    schedule: Any,
    resume: bool,
    progress: bool,
) -> None:
    """Train from ``state`` to ``total`` steps; Ctrl-C saves ``last.pt`` and stops."""
    path = run.out / "log.csv" if parallel.is_main() else None
    log = _Log(path, state["step"] if resume else None)
    bar = _progress_bar(total, state["step"], progress)
    with _StopRequest() as stop:
        while state["step"] < total:
            for batch in _batches(run, state["epoch"], state["batch"]):
                images = len(batch[1]) * distributed.world_size()  # the global batch
                log.add(_step(run, batch, optimiser), images)
                schedule.step()
                state["step"] += 1
                state["batch"] += 1
                bar.update(1)
                if state["step"] % run.config.run.log_every == 0:
                    log.flush(state["step"], state["epoch"])
                if state["step"] >= total:
                    break
                if parallel.any_process(stop.requested):
                    _save_last(run, optimiser, schedule, state)
                    bar.close()
                    raise TrainingInterrupted(run.out, state["step"], total)
            state["epoch"] += 1
            state["batch"] = 0
            _end_epoch(run, log, state, optimiser, schedule)
            if parallel.any_process(stop.requested) and state["step"] < total:
                bar.close()
                raise TrainingInterrupted(run.out, state["step"], total)
    bar.close()


def _end_epoch(
    run: _Run, log: _Log, state: dict[str, Any], optimiser: torch.optim.Optimizer, schedule: Any
) -> None:
    """Validate, log, write ``last.pt``, and ``best.pt`` when it is the one to keep.

    ``best.pt`` follows the model unless a validation split and ``select`` (a metric)
    pick an earlier epoch: it is rewritten when the validation score is at least the best
    so far, so a tie keeps the later model.
    """
    parallel.same_buffers(run.model)  # rank 0's BatchNorm statistics everywhere
    scores: dict[str, float] = {}
    if run.val_set is not None:
        found = _evaluate_model(run.model, run.val_set, run.config, run.device, False)
        scores = {k: float(v) for k, v in found.items()}
    nan = float("nan")
    log.flush(state["step"], state["epoch"], scores.get("recall@1", nan), scores.get("map@r", nan))
    select = run.config.run.select
    score = scores.get(select) if select != "last" else None
    if score is None or score >= state["best"]:
        state["best"] = state["best"] if score is None else score
        state["best_step"] = state["step"]
        if parallel.is_main():
            best = {"model": run.model.state_dict(), "config": run.config.flat()}
            files.save(best, run.out / "best.pt")
    _save_last(run, optimiser, schedule, state)
    parallel.barrier()  # best.pt and last.pt are written before any process reads them


def _finish(run: _Run, state: dict[str, Any]) -> dict[str, Any]:
    """Score ``best.pt`` on the test classes; ``metrics.json`` also says which step it is."""
    best = files.load_mapping(run.out / "best.pt", "checkpoint", _BEST_KEYS)
    run.model.load_state_dict(best["model"])
    metrics: dict[str, Any] = {
        **_evaluate_model(run.model, run.test_set, run.config, run.device, True)
    }
    metrics["checkpoint_step"] = state["best_step"]
    metrics["checkpoint"] = _kept(run, state)
    if parallel.is_main():
        write_text_atomic(run.out / "metrics.json", json.dumps(metrics, indent=2))
    return metrics


def _kept(run: _Run, state: dict[str, Any]) -> str:
    """Why ``best.pt`` holds the model of its step, in words."""
    select = run.config.run.select
    if run.val_set is None:
        return "the last model (no validation split)"
    if select == "last":
        return "the last model (select: last)"
    return f"the best validation {select} ({state['best']:.4f}), the later on a tie"


def _progress_bar(total: int, done: int, enabled: bool) -> Any:
    from sampling_matters._progress import tqdm

    return tqdm(total=total, initial=done, disable=not enabled, desc="train", unit="step")
