"""The ablation's pytorch-metric-learning row, ``pml-margin``, through ``compat.pml``.

PML's ``MarginLoss`` (β learned) on the triplets of its ``DistanceWeightedMiner``
(:func:`sampling_matters.compat.pml.margin`), trained by the same loop as every other
run, through ``train``'s ``loss_factory``. The row sits in the distance-weighted
column of the grid.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sampling_matters.compat import pml
from sampling_matters.config import TrainConfig

__all__ = ["PML_DESCRIPTION", "PML_LOSS", "check_pml", "grid_axes", "loss_factory"]

PML_LOSS = "pml-margin"
"""The row of ``with_pml``: PML's MarginLoss with its DistanceWeightedMiner."""
PML_DESCRIPTION = (
    "pytorch-metric-learning's `MarginLoss(margin=0.2, learn_beta=True)` + "
    "`DistanceWeightedMiner(cutoff=0.5, nonzero_loss_cutoff=1.4)`"
)
"""How the report names the row's loss and miner (markdown)."""


def check_pml(settings: TrainConfig) -> None:
    """Refuse, before any run trains, settings the PML row cannot follow (or no PML)."""
    pml.check("margin", settings)
    if not settings.loss.learn_beta:
        raise ValueError("the PML row learns its β: drop learn_beta=False, or with_pml")


def loss_factory(loss: str) -> Callable[[TrainConfig], pml.PMLLoss] | None:
    """The ``loss_factory`` of ``train`` for a run of the row ``loss``: None but for PML's."""
    return pml.factory("margin") if loss == PML_LOSS else None


def grid_axes(
    losses: Sequence[str], samplings: Sequence[str], with_pml: bool
) -> tuple[list[str], list[str]]:
    """The grid's rows and columns: the PML row sits in the distance-weighted column."""
    if not with_pml:
        return list(losses), list(samplings)
    columns = list(dict.fromkeys([*samplings, "distance-weighted"]))
    return [*losses, PML_LOSS], columns
