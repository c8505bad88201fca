"""The ablation's folder: not a training run's, and one budget for all its runs.

``OUT/ablation.json`` records the settings every run shares; an ablation run again in
the same folder must have the same ones once any run has started.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sampling_matters.ablation.plan import shared_settings
from sampling_matters.ablation.record import read_json
from sampling_matters.config import NEUTRAL_KEYS, TrainConfig
from sampling_matters.data.cache import write_text_atomic
from sampling_matters.runs import check_folder, holds_run

__all__ = ["check_out", "check_same_settings"]


def check_same_settings(out: Path, settings: dict[str, Any]) -> None:
    """Refuse to mix budgets: ``OUT/ablation.json`` must match the settings, if it exists."""
    path = out / "ablation.json"
    before = read_json(path).get("settings")
    if before is not None:
        # a key written by an older version is absent: it had the default value
        before = {**shared_settings(TrainConfig.from_flat({"steps": 1})), **before}
        differ = sorted(
            k
            for k in set(before) | set(settings)
            if k not in NEUTRAL_KEYS and before.get(k) != settings.get(k)
        )
        if differ and _started(out):
            changes = {k: (before.get(k), settings.get(k)) for k in differ}
            raise ValueError(
                f"{out} holds an ablation with other settings {changes} (before, now); "
                "use another output directory"
            )
    write_text_atomic(path, json.dumps({"settings": settings}, indent=2))


def _started(out: Path) -> bool:
    """Whether a run of the ablation in ``out`` has written anything (a failed start has not)."""
    runs = out / "runs"
    return runs.is_dir() and any(p.is_file() for p in runs.rglob("*"))


def check_out(out: Path) -> None:
    """Refuse an ablation folder that is a training run's, or holds reports of no ablation."""
    check_folder(out, "--out")
    if (out / "config.yaml").exists() or holds_run(out):
        raise ValueError(f"{out} is a training run's folder; an ablation needs a folder of its own")
    reports = [n for n in ("ablation.md", "ablation.csv", "ablation.png") if (out / n).exists()]
    if reports and not (out / "ablation.json").exists():
        raise ValueError(
            f"{out} holds {', '.join(reports)} but no ablation.json (the record of an ablation's "
            "settings): they were not written here by ablate; choose another --out"
        )
