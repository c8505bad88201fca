"""pytorch-metric-learning (PML) losses behind the loss interface of ``training.train``.

PML is the library users would otherwise pick. Its losses train through our one loop
(``train(config, loss_factory=factory(name))``), so between a run of ours and a run of
PML's only the loss and the sampling differ. ``sampling-matters ablate --with-pml`` and
``benchmarks/quality.py`` use it. PML is imported when a PML loss is first built
(:func:`import_pml`), never before: it is the ``bench`` extra.

:class:`PMLLoss` wraps any PML loss and an optional PML miner. :data:`NAMES` are the
three recipes the benchmarks compare with ours, with these PML settings:

- ``margin`` (:func:`margin`): ``MarginLoss(margin=0.2, nu=ν, beta=β, learn_beta=…)`` on
  the triplets of ``DistanceWeightedMiner(cutoff=0.5, nonzero_loss_cutoff=1.4)``; β, ν
  and ``learn_beta`` come from ``config.loss``. PML learns one β, so
  ``beta_per_class`` / ``beta_per_image`` are refused (:func:`check`).
- ``contrastive`` (:func:`contrastive`): ``ContrastiveLoss(pos_margin=0, neg_margin=1)``
  on every pair of the batch (no miner).
- ``triplet`` (:func:`triplet`): ``TripletMarginLoss(margin=0.2)`` on the triplets of
  ``TripletMarginMiner(margin=0.2, type_of_triplets="semihard")``.

PML's miners draw from the global torch random state, which ``train`` seeds, saves and
restores.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn

from sampling_matters._optional import MissingExtraError, require
from sampling_matters.config import TrainConfig
from sampling_matters.distances import pair_distances
from sampling_matters.sampling import SamplingStats, Triplets

__all__ = [
    "NAMES",
    "ActiveTerms",
    "Mined",
    "PMLLoss",
    "check",
    "contrastive",
    "factory",
    "import_pml",
    "margin",
    "triplet",
]

Mined = tuple[Tensor, ...]
"""A PML miner's output: triplets ``(anchor, positive, negative)`` or pairs
``(anchor1, positive, anchor2, negative)``, each (T,) int64."""

ActiveTerms = Callable[[Tensor, Tensor, "Mined | None"], Tensor]
"""``fn(embeddings, labels, mined) -> (M,) bool``: which terms of the loss are non-zero
(``mined`` is None without a miner: PML then takes every pair or triplet)."""

MARGIN = 0.2
"""α of PML's margin and triplet losses here, as in the paper."""


def import_pml() -> tuple[ModuleType, ModuleType]:
    """pytorch-metric-learning's ``losses`` and ``miners`` modules.

    Raises:
        ImportError: naming the ``bench`` extra and the version, when the library is
            missing (a :class:`~sampling_matters._optional.MissingExtraError` is its cause).
    """
    try:
        losses = require("pytorch_metric_learning.losses")
        miners = require("pytorch_metric_learning.miners")
    except MissingExtraError as error:
        raise ImportError(
            f"the PML losses need pytorch-metric-learning 2.9.0, the {error.extra!r} extra: "
            f"{error.hint}"
        ) from error
    return losses, miners


def _tuples() -> ModuleType:
    """PML's ``loss_and_miner_utils`` (the pairs and triplets its losses train on)."""
    return require("pytorch_metric_learning.utils.loss_and_miner_utils")


class PMLLoss(nn.Module):
    """A PML loss on an optional PML miner's tuples, behind the interface ``train`` uses.

    Called as ``loss(x, y, miner(x, y))``, or ``loss(x, y)`` without a miner (PML then
    uses every pair or triplet of the batch). ``train`` trains the loss's learned β, if
    any, in its own parameter group (:meth:`beta_param_group`) and logs it
    (:meth:`beta_values`).

    Args:
        loss: a loss of ``pytorch_metric_learning.losses``.
        miner: a miner of ``pytorch_metric_learning.miners`` (of triplets or pairs), or
            None.
        active: which of the loss's terms are non-zero, for ``last_active_fraction``
            (:data:`ActiveTerms`); None: unknown (NaN).

    Attributes:
        loss: the PML loss.
        miner: the PML miner, or None.
        last_stats: the :class:`SamplingStats` of the last call (triplets mined only).
        last_active_fraction: the fraction of the last call's terms with non-zero loss.
        last_triplets: the triplets the miner returned last; None for a miner of pairs,
            without a miner, or before the first call.
    """

    def __init__(
        self, loss: nn.Module, miner: nn.Module | None = None, *, active: ActiveTerms | None = None
    ) -> None:
        super().__init__()
        self.loss = loss
        self.miner = miner
        self.active = active
        self.last_stats = SamplingStats()
        self.last_active_fraction = 0.0
        self.last_triplets: Triplets | None = None

    def forward(self, embeddings: Tensor, labels: Tensor, indices: Tensor | None = None) -> Tensor:
        """Mine (if there is a miner), record what was mined, and return PML's loss.

        Args:
            embeddings: (N, D) L2-normalised embeddings.
            labels: (N,) integer class ids.
            indices: unused; accepted so that every loss module shares one signature.

        Returns:
            () scalar loss.
        """
        mined = None if self.miner is None else tuple(self.miner(embeddings, labels))
        triplets = Triplets(*mined) if mined is not None and len(mined) == 3 else None
        self.last_triplets = triplets
        self.last_stats = SamplingStats(triplets=0 if triplets is None else len(triplets.anchor))
        self.last_active_fraction = self._active_fraction(embeddings.detach(), labels, mined)
        return self.loss(embeddings, labels, mined)  # type: ignore[no-any-return]

    def _active_fraction(self, embeddings: Tensor, labels: Tensor, mined: Mined | None) -> float:
        if self.active is None:
            return math.nan
        active = self.active(embeddings, labels, mined)  # (M,)
        return float(active.float().mean()) if len(active) else 0.0

    def _beta(self) -> nn.Parameter | Tensor | None:
        beta = getattr(self.loss, "beta", None)
        return beta if isinstance(beta, Tensor) else None

    def beta_param_group(self, lr: float) -> dict[str, Any]:
        """An optimiser parameter group holding the PML loss's learned β, at ``lr``.

        Its ``params`` are empty when β is fixed (``learn_beta=False``) or the loss has
        none; ``train`` then adds no group.
        """
        beta = self._beta()
        params = [beta] if isinstance(beta, nn.Parameter) and beta.requires_grad else []
        return {"params": params, "lr": float(lr), "name": "beta"}

    def beta_values(self, labels: Tensor, indices: Tensor | None = None) -> Tensor:
        """Each embedding's β (PML's one β, or its β of the embedding's class), for the log.

        Args:
            labels: (N,) integer class ids.
            indices: unused (PML has no β per image).

        Returns:
            (N,) β values; NaN for a loss without β.
        """
        beta = self._beta()
        if beta is None:
            return torch.full((len(labels),), math.nan)
        beta = beta.detach().to(labels.device)  # (1,) or (C,)
        return beta.expand(len(labels)) if beta.numel() == 1 else beta[labels.long()]


# ----------------------------------------------------------------------- the recipes


def _margin_active(loss: Any) -> ActiveTerms:
    """The non-zero pair terms (α + y (D − β))₊ of PML's margin loss, two per triplet."""

    def active(embeddings: Tensor, labels: Tensor, mined: Mined | None) -> Tensor:
        anchor, positive, negative = _tuples().convert_to_triplets(
            mined, labels, t_per_anchor="all"
        )
        beta = torch.as_tensor(loss.beta).detach().to(embeddings)  # (1,) or (C,)
        beta = beta if beta.numel() == 1 else beta[labels[anchor]]  # (1,) or (T,)
        d_ap = pair_distances(embeddings, anchor, positive)  # (T,)
        d_an = pair_distances(embeddings, anchor, negative)  # (T,)
        return torch.cat([d_ap - beta + loss.margin > 0, beta - d_an + loss.margin > 0])

    return active


def _contrastive_active(pos_margin: float, neg_margin: float) -> ActiveTerms:
    """The non-zero pair terms of PML's contrastive loss: D > m₊, D < m₋."""

    def active(embeddings: Tensor, labels: Tensor, mined: Mined | None) -> Tensor:
        a1, p, a2, n = _tuples().convert_to_pairs(mined, labels)
        d_pos, d_neg = pair_distances(embeddings, a1, p), pair_distances(embeddings, a2, n)
        return torch.cat([d_pos > pos_margin, d_neg < neg_margin])  # (P + Q,)

    return active


def _triplet_active(margin: float) -> ActiveTerms:
    """The non-zero triplet terms (D_ap − D_an + α)₊ of PML's triplet margin loss."""

    def active(embeddings: Tensor, labels: Tensor, mined: Mined | None) -> Tensor:
        anchor, positive, negative = _tuples().convert_to_triplets(
            mined, labels, t_per_anchor="all"
        )
        d_ap = pair_distances(embeddings, anchor, positive)  # (T,)
        d_an = pair_distances(embeddings, anchor, negative)  # (T,)
        return d_ap - d_an + margin > 0

    return active


def margin(*, beta: float = 1.2, nu: float = 0.0, learn_beta: bool = True) -> PMLLoss:
    """PML's ``MarginLoss`` on the triplets of its ``DistanceWeightedMiner``.

    Args:
        beta: β's initial value (one β, shared by every class).
        nu: ν, the weight of PML's β penalty (applied only when β is learned).
        learn_beta: whether β is trained (PML's default is not to).

    Returns:
        ``MarginLoss(margin=0.2, nu=nu, beta=beta, learn_beta=learn_beta)`` with
        ``DistanceWeightedMiner(cutoff=0.5, nonzero_loss_cutoff=1.4)``.

    Raises:
        ImportError: PML is missing.
    """
    losses, miners = import_pml()
    loss = losses.MarginLoss(margin=MARGIN, nu=nu, beta=beta, learn_beta=learn_beta)
    miner = miners.DistanceWeightedMiner(cutoff=0.5, nonzero_loss_cutoff=1.4)
    return PMLLoss(loss, miner, active=_margin_active(loss))


def contrastive() -> PMLLoss:
    """PML's ``ContrastiveLoss(pos_margin=0, neg_margin=1)`` on every pair (no miner).

    Raises:
        ImportError: PML is missing.
    """
    losses, _ = import_pml()
    loss = losses.ContrastiveLoss(pos_margin=0, neg_margin=1)
    return PMLLoss(loss, None, active=_contrastive_active(0.0, 1.0))


def triplet() -> PMLLoss:
    """PML's ``TripletMarginLoss(margin=0.2)`` on its semi-hard ``TripletMarginMiner``.

    Raises:
        ImportError: PML is missing.
    """
    losses, miners = import_pml()
    loss = losses.TripletMarginLoss(margin=MARGIN)
    miner = miners.TripletMarginMiner(margin=MARGIN, type_of_triplets="semihard")
    return PMLLoss(loss, miner, active=_triplet_active(MARGIN))


def _margin_of(config: TrainConfig) -> PMLLoss:
    check("margin", config)
    loss = config.loss
    return margin(beta=loss.beta, nu=loss.nu, learn_beta=loss.learn_beta)


def _contrastive_of(config: TrainConfig) -> PMLLoss:
    return contrastive()


def _triplet_of(config: TrainConfig) -> PMLLoss:
    return triplet()


_FACTORIES: dict[str, Callable[[TrainConfig], PMLLoss]] = {
    "margin": _margin_of,
    "contrastive": _contrastive_of,
    "triplet": _triplet_of,
}

NAMES = tuple(_FACTORIES)
"""The recipes :func:`factory` knows."""


def check(name: str, config: TrainConfig) -> None:
    """Refuse, before training, a recipe that PML cannot follow or cannot import.

    Args:
        name: one of :data:`NAMES`.
        config: the settings of the runs that will use it.

    Raises:
        ValueError: an unknown name; for ``margin``, a β per class or per image (PML's
            loss here learns one β).
        ImportError: PML is missing.
    """
    if name not in _FACTORIES:
        raise ValueError(f"unknown PML recipe {name!r}; expected one of {list(NAMES)}")
    import_pml()
    if name == "margin" and (config.loss.beta_per_class or config.loss.beta_per_image):
        raise ValueError(
            "PML's margin loss here learns one β: drop beta_per_class / beta_per_image"
        )


def factory(name: str) -> Callable[[TrainConfig], PMLLoss]:
    """The ``loss_factory`` of ``train`` that builds the PML recipe ``name``.

    PML is imported when the factory is called, not before.

    Args:
        name: one of :data:`NAMES`; ``margin`` takes β, ν and ``learn_beta`` from
            ``config.loss``.

    Returns:
        ``fn(config) -> PMLLoss``.

    Raises:
        ValueError: an unknown name.
    """
    if name not in _FACTORIES:
        raise ValueError(f"unknown PML recipe {name!r}; expected one of {list(NAMES)}")
    return _FACTORIES[name]
