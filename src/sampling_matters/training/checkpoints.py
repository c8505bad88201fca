"""The run's files: ``config.yaml``, ``last.pt`` written and restored, ``best.pt`` read back.

A resume first checks that its settings are the run's own (``config.yaml`` and
``last.pt`` record them) and refuses any change; ``last.pt`` restores the model, loss,
optimiser, schedule, progress and random state, so the resumed run continues exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from sampling_matters import distributed, files
from sampling_matters.config import TrainConfig, read_yaml
from sampling_matters.data.cache import write_text_atomic
from sampling_matters.models import EmbeddingModel, build_model_from_config
from sampling_matters.runs import discard
from sampling_matters.training import parallel
from sampling_matters.training.build import _Run
from sampling_matters.training.criterion import decided_loss_settings

_LAST_KEYS = ("model", "loss", "optimiser", "schedule", "progress", "rng")
_BEST_KEYS = ("model", "config")


def _state(
    run: _Run, optimiser: torch.optim.Optimizer, schedule: Any, progress: dict[str, Any]
) -> dict[str, Any]:
    rng = {
        "torch": torch.get_rng_state(),
        "loss": run.sampling.get_state(),
        "augmentation": run.augmentation.get_state(),
    }
    return {
        "model": run.model.state_dict(),
        "loss": run.loss.state_dict(),
        "optimiser": optimiser.state_dict(),
        "schedule": schedule.state_dict(),
        "progress": dict(progress),
        "rng": rng,
        "rng_by_rank": parallel.rng_states(rng),  # every process's (a collective)
        "config": run.config.flat(),
        "memory": None if run.memory is None else run.memory.state_dict(),
    }


def _save_last(
    run: _Run, optimiser: torch.optim.Optimizer, schedule: Any, state: dict[str, Any]
) -> None:
    """Write ``last.pt``: every process calls it, rank 0 writes.

    The first one makes the run: the files it replaced go.
    """
    checkpoint = _state(run, optimiser, schedule, state)
    if not parallel.is_main():
        return
    files.save(checkpoint, run.out / "last.pt")
    if run.aside:
        discard(run.out)
        run.aside = False


def _read_last(out: Path, config: TrainConfig) -> dict[str, Any] | None:
    """The run's ``last.pt`` for a resume, after checking the run's settings; reads only.

    Raises:
        ValueError: ``config`` would change the settings of the run (``config.yaml`` or
            ``last.pt``), or ``last.pt`` is unreadable.
    """
    if (out / "config.yaml").exists():
        _refuse_changes(out, _settings_of(out / "config.yaml", read_yaml), config)
    if not (out / "last.pt").exists():
        return None
    state = files.load_mapping(out / "last.pt", "checkpoint", _LAST_KEYS)
    if isinstance(state.get("config"), dict):
        _refuse_changes(out, _settings_of(state["config"], dict), config)
    return state


_RECORDED_BEFORE = {"nonzero_loss_cutoff": 1.4, "world_size": 1}
"""What a run recorded before a setting existed trained with (the key is missing)."""


def _settings_of(source: Any, read: Callable[[Any], dict[str, Any]]) -> TrainConfig:
    """A run's recorded settings, those that follow the loss decided as when it trained."""
    try:
        config = TrainConfig.from_flat({**_RECORDED_BEFORE, **read(source)})
        return TrainConfig.from_flat({**config.flat(), **decided_loss_settings(config.loss)})
    except ValueError as error:
        raise ValueError(f"the run's recorded settings are invalid: {error}") from None


def _refuse_changes(out: Path, before: TrainConfig, now: TrainConfig) -> None:
    changes = before.differences(now)
    if changes:
        listed = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in sorted(changes.items()))
        raise ValueError(
            f"{out} was trained with other settings; resuming would change {listed}. "
            f"Resume with the run's own settings (sampling-matters train --resume {out}), "
            "or start a new run with another --out"
        )


def _restore(
    state: dict[str, Any], path: Path, run: _Run, optimiser: torch.optim.Optimizer, schedule: Any
) -> dict[str, Any]:
    """Load a ``last.pt`` into the run's objects; its progress (step, epoch, batch, best)."""
    try:
        run.model.load_state_dict(state["model"])
        run.loss.load_state_dict(state["loss"])
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        rng = state.get("rng_by_rank", [state["rng"]])[distributed.rank()]  # older: one
        torch.set_rng_state(rng["torch"])
        run.sampling.set_state(rng["loss"])
        run.augmentation.set_state(rng["augmentation"])
        if run.memory is not None:
            run.memory.load_state_dict(state["memory"])
        saved = state["progress"]
        return {
            "step": int(saved["step"]),
            "epoch": int(saved["epoch"]),
            "batch": int(saved.get("batch", 0)),  # older checkpoints: at an epoch's end
            "best": float(saved["best"]),
            "best_step": int(saved.get("best_step", saved["step"])),
        }
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError) as error:
        raise ValueError(
            f"{path} does not fit this run ({_reason(error)}); start over with --overwrite"
        ) from None


def _reason(error: BaseException, limit: int = 300) -> str:
    """An error's message on one line, cut at ``limit`` characters."""
    text = " ".join(str(error).split()) or repr(error)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def load_run(run: Path) -> tuple[EmbeddingModel, TrainConfig]:
    """A run's best model (in eval mode) and its configuration, from ``RUN/best.pt``.

    Raises:
        FileNotFoundError: ``run`` has no ``best.pt``.
        ValueError: ``best.pt`` is unreadable, holds code, or does not fit its model.
    """
    if not (run / "best.pt").is_file():
        raise FileNotFoundError(f"{run} has no best.pt: is it a training run directory?")
    state = files.load_mapping(run / "best.pt", "checkpoint", _BEST_KEYS)
    if not isinstance(state["config"], dict):
        raise ValueError(f"{run / 'best.pt'} is not a checkpoint: its 'config' is not a mapping")
    config = _settings_of(state["config"], dict)
    model = build_model_from_config(config, pretrained=False)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, TypeError, AttributeError) as error:
        raise ValueError(f"{run / 'best.pt'} does not fit its model ({_reason(error)})") from None
    return model.eval(), config


def _write_config(config: TrainConfig, out: Path, skipped: list[Path]) -> None:
    """``config.yaml``: the settings, the global batch's shape, left-out image files."""
    import yaml

    values: dict[str, Any] = {
        k: list(v) if isinstance(v, tuple) else v for k, v in config.flat().items()
    }
    classes = config.data.classes_per_batch * (config.run.world_size or 1)
    values["global_classes_per_batch"] = classes
    values["global_batch_size"] = classes * config.data.samples_per_class
    if skipped:
        values["skipped_images"] = len(skipped)
        write_text_atomic(out / "skipped_images.txt", "".join(f"{path}\n" for path in skipped))
    write_text_atomic(out / "config.yaml", yaml.safe_dump(values, sort_keys=False))
