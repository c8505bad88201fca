"""The ablation's pytorch-metric-learning row, ``pml-margin``, through ``compat.pml``.

PML's ``MarginLoss`` (β learned) on the triplets of its ``DistanceWeightedMiner``
(:func:`sampling_matters.compat.pml.margin`), trained by the same loop as every other
run, through ``train``'s ``loss_factory``. The row sits in the distance-weighted
column of the grid.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict

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


_RECIPE = {
    "margin": pml.MARGIN,
    "cutoff": 0.5,
    "nonzero_loss_cutoff": 1.4,
    "density": "sphere",
    "memory_size": 0,
}
"""The loss and sampling settings of PML's recipe (:data:`PML_DESCRIPTION`), no memory."""


def check_pml(settings: TrainConfig) -> None:
    """Refuse, before any run trains, settings the PML row cannot follow (or no PML).

    Its recipe is fixed: a shared ``margin``, ``cutoff``, ``nonzero_loss_cutoff`` or
    ``density`` other than the recipe's, or a cross-batch memory, is refused rather
    than left out of that row alone.
    """
    pml.check("margin", settings)
    if not settings.loss.learn_beta:
        raise ValueError("the PML row learns its β: drop learn_beta=False, or with_pml")
    given = asdict(settings.loss)
    other = {k: given[k] for k, v in _RECIPE.items() if given[k] not in (None, v)}
    if other:
        listed = ", ".join(f"{k}={v!r}" for k, v in other.items())
        raise ValueError(
            f"the PML row trains PML's own recipe ({PML_DESCRIPTION}, no cross-batch "
            f"memory) and cannot follow {listed}: drop those settings, or with_pml"
        )


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
