"""The plan of an ablation: its names and seeds checked, its runs, their configurations."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sampling_matters import _checks
from sampling_matters.ablation.pml_row import PML_LOSS
from sampling_matters.config import TrainConfig

__all__ = [
    "ABLATION_KEYS",
    "DEFAULT_LOSSES",
    "DEFAULT_SAMPLINGS",
    "MAX_SEEDS",
    "METRICS",
    "RunResult",
    "RunSpec",
    "check_names",
    "check_seeds",
    "plan_runs",
    "run_config",
    "shared_config",
    "shared_settings",
]

DEFAULT_LOSSES = ("contrastive", "triplet-squared", "triplet", "margin")
DEFAULT_SAMPLINGS = ("uniform", "hard", "semihard", "distance-weighted")
ABLATION_KEYS = ("loss", "sampling", "seed", "steps", "epochs", "out")
"""Settings the ablation sets per run; shared settings may not hold them."""
METRICS = ("recall@1", "recall@2", "recall@4", "recall@8", "map@r", "nmi")
"""The test metrics an ablation reports of each run."""
MAX_SEEDS = 1000


@dataclass(frozen=True)
class RunSpec:
    """One run of the grid."""

    loss: str
    sampling: str
    seed: int

    @property
    def name(self) -> str:
        """The run's directory name, ``<loss>--<sampling>--seed<k>``."""
        return f"{self.loss}--{self.sampling}--seed{self.seed}"


@dataclass(frozen=True)
class RunResult:
    """What one run gave: its status, test metrics (empty if none) and wall time."""

    spec: RunSpec
    status: str  # "ok" | "collapsed" | "diverged" | "failed"
    metrics: dict[str, float] = field(default_factory=dict)
    wall_s: float = math.nan
    note: str = ""


def check_names(value: str | Sequence[str], allowed: Iterable[str], what: str) -> tuple[str, ...]:
    """Names from a comma-separated string or a sequence, each checked against ``allowed``.

    Args:
        value: e.g. ``"triplet,margin"`` or ``["triplet", "margin"]``.
        allowed: the valid names.
        what: how the error message names them (``"loss"``, ``"sampling"``).

    Returns:
        The names, in the order given.

    Raises:
        ValueError: on an empty list, an unknown name or a repeated one.
    """
    names = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
    names = [n for n in names if n]
    valid = sorted(allowed)
    if not names:
        raise ValueError(f"no {what} given; expected some of {valid}")
    for name in names:
        if name not in valid:
            raise ValueError(f"unknown {what} {name!r}; expected one of {valid}")
    if len(set(names)) != len(names):
        raise ValueError(f"{what} names repeat in {names}")
    return tuple(names)


def check_seeds(value: int | str | Sequence[int]) -> tuple[int, ...]:
    """The seeds: S (an int, or a string of one) means 0..S-1; a list names them.

    Args:
        value: ``3``, ``"3"``, ``"0,4,7"`` or ``[0, 4, 7]``.

    Returns:
        The seeds, in order.

    Raises:
        ValueError: on a count below 1, a negative, repeated or non-integer seed.
    """
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if not all(re.fullmatch(r"-?\d+", p) for p in parts) or not parts:
            raise ValueError(f"seeds must be a count S or a list like 0,4,7, got {value!r}")
        value = int(parts[0]) if len(parts) == 1 and "," not in value else [int(p) for p in parts]
    if isinstance(value, bool):
        raise ValueError(f"seeds must be a count >= 1 or a list of seeds, got {value!r}")
    if isinstance(value, int):
        if not 1 <= value <= MAX_SEEDS:
            raise ValueError(
                f"seeds must be in [1, {MAX_SEEDS}] (the number of seeds), got {value}"
            )
        return tuple(range(value))
    seeds = list(value)
    if not seeds or any(not _checks.is_integer(s) or not 0 <= s < 2**63 for s in seeds):
        raise ValueError(f"seeds must be integers in [0, 2**63), got {seeds}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds repeat in {seeds}")
    return tuple(int(s) for s in seeds)


def plan_runs(
    losses: Sequence[str], samplings: Sequence[str], seeds: Sequence[int], with_pml: bool
) -> list[RunSpec]:
    """Every run, seed by seed, so that an interrupted ablation has whole grids first."""
    runs = []
    for seed in seeds:
        runs += [RunSpec(loss, sampling, seed) for loss in losses for sampling in samplings]
        if with_pml:
            runs.append(RunSpec(PML_LOSS, "distance-weighted", seed))
    return runs


def shared_config(settings: dict[str, Any], steps: int) -> TrainConfig:
    """The configuration every run shares, checked (the grid fills in loss and sampling).

    Raises:
        ValueError: on an unknown key, a key the ablation sets itself, or a bad value.
    """
    owned = sorted(set(settings) & set(ABLATION_KEYS))
    if owned:
        raise ValueError(
            f"setting(s) {owned} are set by the ablation itself (losses, samplings, seeds, "
            "steps, out); remove them from the shared settings"
        )
    return TrainConfig.from_flat({**settings, "steps": steps})


def run_config(settings: dict[str, Any], spec: RunSpec, steps: int, runs: Path) -> TrainConfig:
    """The configuration of one run (the PML row keeps the margin loss's settings)."""
    loss = "margin" if spec.loss == PML_LOSS else spec.loss
    values = {**settings, "loss": loss, "sampling": spec.sampling, "seed": spec.seed}
    return TrainConfig.from_flat({**values, "steps": steps, "out": str(runs / spec.name)})


def shared_settings(config: TrainConfig) -> dict[str, Any]:
    """The flat settings every run shares, ``steps`` included (lists for tuples, as in JSON)."""
    flat = config.flat()
    return {
        k: list(v) if isinstance(v, tuple) else v
        for k, v in flat.items()
        if k not in ABLATION_KEYS or k == "steps"
    }
