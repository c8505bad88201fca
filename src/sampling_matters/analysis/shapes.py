"""Figure 4, ``loss_shapes``: each loss and its gradient as a function of one distance.

Contrastive, triplet (plain and squared) and margin loss on positive and negative
pairs, with their gradients from the library's own loss code (autograd). The module
is ``shapes``, not ``loss_shapes``, so that ``analysis.loss_shapes`` stays the function.

The figure draws the losses it knows: the registry's losses built by those three
modules. Another loss registered in :data:`~sampling_matters.losses.LOSSES` is left
out of the figure (and named in its table), never drawn as one it is not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from sampling_matters import _checks
from sampling_matters.analysis._common import FigureSpec, Settings, Table, new_figure
from sampling_matters.losses import (
    LOSSES,
    ContrastiveLoss,
    MarginLoss,
    TripletLoss,
    contrastive_terms,
    make_loss,
    margin_terms,
    triplet_terms,
)
from sampling_matters.sampling import Pairs, Triplets

if TYPE_CHECKING:
    from matplotlib.figure import Figure

OTHER_DISTANCE = 1.0
"""Figure 4: a triplet's other distance (D_an for positive curves, D_ap for negative ones)."""

_LINE_STYLES = ("-", "--", "-.", ":")


@dataclass(frozen=True)
class LossShapes:
    """Each loss and its gradient as a function of one distance d.

    Attributes:
        distances: (G,) the distances d.
        other_distance: a triplet's fixed other distance.
        labels: loss name -> its label with hyperparameters, e.g. ``margin (β=1.2, α=0.2)``.
        values: (loss name, ``"positive"`` or ``"negative"``) -> (G,) per-pair loss.
        gradients: same keys -> (G,) dℓ/dd.
        skipped: names of registered losses the figure does not know, left out.
    """

    distances: Tensor
    other_distance: float
    labels: dict[str, str]
    values: dict[tuple[str, str], Tensor]
    gradients: dict[tuple[str, str], Tensor]
    skipped: tuple[str, ...] = ()


_Known = ContrastiveLoss | TripletLoss | MarginLoss
_KNOWN = (ContrastiveLoss, TripletLoss, MarginLoss)


def _known_module(loss: str) -> _Known:
    """The module ``loss`` names, with its defaults, if the figure knows how to draw it.

    Raises:
        ValueError: on a name not in LOSSES, or a loss built by another module (a
            subclass included: its terms may differ).
    """
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; expected one of {sorted(LOSSES)}")
    module = make_loss(loss, sampling="uniform")
    if isinstance(module, _KNOWN) and type(module) in _KNOWN:  # not a subclass: same terms
        return module
    raise ValueError(
        f"figure 4 cannot draw loss {loss!r}: it is a {type(module).__name__}, and the "
        "figure knows only ContrastiveLoss, TripletLoss and MarginLoss"
    )


def _drawable(loss: str) -> bool:
    try:
        _known_module(loss)
    except ValueError:
        return False
    return True


def _loss_label(module: _Known) -> str:
    if isinstance(module, MarginLoss):
        return f"(β={float(module.beta0.detach()):g}, α={module.margin:g})"
    return f"(α={module.margin:g})"


def _shape_terms(module: _Known, d: Tensor, pair: str, other: float) -> Tensor:
    """(G,) per-term losses where the anchor–positive or anchor–negative distance is d."""
    n = len(d)
    zero = torch.zeros_like(d)
    varying = torch.stack([d, zero], 1)  # (G, 2) at distance d from the origin
    fixed = torch.tensor([[0.0, other]], dtype=d.dtype)  # (1, 2) at distance `other`
    x = torch.cat([torch.zeros(1, 2, dtype=d.dtype), varying, fixed])  # (G + 2, 2)
    anchor, moving = torch.zeros(n, dtype=torch.int64), torch.arange(1, n + 1)
    if isinstance(module, TripletLoss):
        still = torch.full((n,), n + 1)
        t = (
            Triplets(anchor, moving, still)
            if pair == "positive"
            else Triplets(anchor, still, moving)
        )
        return triplet_terms(x, t, module.margin, module.squared)
    none = torch.zeros(0, dtype=torch.int64)
    pairs = (
        Pairs(anchor, moving, none, none)
        if pair == "positive"
        else Pairs(none, none, anchor, moving)
    )
    if isinstance(module, ContrastiveLoss):
        return contrastive_terms(x, pairs, module.margin)
    return margin_terms(x, pairs, float(module.beta0.detach()), module.margin, 0.0)[0]


def loss_shape(
    loss: str, pair: str, distances: Tensor, *, other_distance: float = OTHER_DISTANCE
) -> tuple[Tensor, Tensor]:
    """One loss's per-pair value and gradient dℓ/dd, from the library's loss code.

    The hyperparameters are the loss module's defaults (:func:`~losses.make_loss`):
    contrastive α = 1, triplet α = 0.2, margin β = 1.2 and α = 0.2. Points sit in the
    plane at the chosen distances from an anchor; autograd gives the gradient.

    Args:
        loss: a name in :data:`sampling_matters.losses.LOSSES` whose module is a
            ContrastiveLoss, TripletLoss or MarginLoss.
        pair: ``"positive"`` (d = D_ap) or ``"negative"`` (d = D_an).
        distances: (G,) distances d > 0 (at d = 0 the distance's gradient is 0).
        other_distance: a triplet's other distance, fixed.

    Returns:
        (G,) float64 losses and (G,) float64 gradients.

    Raises:
        ValueError: on an unknown name, a loss the figure cannot draw, or a bad ``pair``.

    Example:
        >>> value, grad = loss_shape("triplet-squared", "negative", torch.tensor([0.5]))
        >>> value, grad  # (1² − 0.5² + 0.2)₊ and −2 · 0.5
        (tensor([0.9500], dtype=torch.float64), tensor([-1.], dtype=torch.float64))
    """
    module = _known_module(loss)
    if pair not in ("positive", "negative"):
        raise ValueError(f"pair must be 'positive' or 'negative', got {pair!r}")
    d = distances.detach().double().clone().requires_grad_(True)  # (G,)
    terms = _shape_terms(module, d, pair, other_distance)  # (G,)
    (gradient,) = torch.autograd.grad(terms.sum(), d)
    return terms.detach(), gradient


def loss_shapes(*, points: int = 200, other_distance: float = OTHER_DISTANCE) -> LossShapes:
    """Every loss of :data:`~losses.LOSSES` on positive and negative pairs, d ∈ (0, 2).

    The distances are bin midpoints (never 0 and never a loss's kink). A registered loss
    the figure does not know is left out and listed in ``skipped``.

    Args:
        points: distances on the grid.
        other_distance: a triplet's fixed other distance (see :func:`loss_shape`).

    Returns:
        See :class:`LossShapes`.
    """
    _checks.integer("points", points, 2)
    d = (torch.arange(points, dtype=torch.float64) + 0.5) * (2.0 / points)  # (G,)
    drawn = [loss for loss in LOSSES if _drawable(loss)]
    values, gradients = {}, {}
    for loss in drawn:
        for pair in ("positive", "negative"):
            values[loss, pair], gradients[loss, pair] = loss_shape(
                loss, pair, d, other_distance=other_distance
            )
    labels = {name: f"{name} {_loss_label(_known_module(name))}" for name in drawn}
    skipped = tuple(loss for loss in LOSSES if loss not in drawn)
    return LossShapes(d, other_distance, labels, values, gradients, skipped)


def loss_table(data: LossShapes) -> Table:
    """One row per loss, kind of pair and distance: the loss and its gradient."""
    rows = [
        (
            name,
            pair,
            float(d),
            float(data.values[name, pair][g]),
            float(data.gradients[name, pair][g]),
        )
        for (name, pair) in data.values
        for g, d in enumerate(data.distances)
    ]
    comments = [
        "per-pair loss and its gradient d(loss)/dd from the library's loss code (autograd)",
        "hyperparameters: " + "; ".join(data.labels.values()),
        f"triplet losses: the other distance is fixed at {data.other_distance:g} "
        "(D_an for positive pairs, D_ap for negative pairs)",
    ]
    if data.skipped:
        comments.append("not drawn (losses figure 4 does not know): " + ", ".join(data.skipped))
    return Table(comments, ("loss", "pair", "distance", "loss_value", "gradient"), rows)


def plot_loss_shapes(data: LossShapes) -> Figure:
    """Figure 4: loss and dℓ/dd for positive and negative pairs, one line per loss."""
    figure, axes = new_figure(2, 2, (10.5, 7.0))
    d = data.distances.numpy()
    for col, pair in enumerate(("positive", "negative")):
        for (name, label), style in zip(data.labels.items(), _LINE_STYLES, strict=False):
            axes[col].plot(d, data.values[name, pair].numpy(), style, label=label)
            axes[2 + col].plot(d, data.gradients[name, pair].numpy(), style, label=label)
        other = "D_an" if pair == "positive" else "D_ap"
        axes[col].set(
            title=f"{pair} pairs (triplet: {other} fixed at {data.other_distance:g})",
            ylabel="loss ℓ",
            xlim=(0, 2),
        )
        axes[2 + col].set(
            xlabel=f"distance d = {'D_ap' if pair == 'positive' else 'D_an'}",
            ylabel="gradient dℓ/dd",
            xlim=(0, 2),
        )
        axes[2 + col].axhline(0, color="grey", lw=0.5)
    axes[0].legend(fontsize=8)
    axes[3].annotate(
        "triplet-squared: −2d → 0\nas d → 0: the hardest\nnegatives get no push",
        xy=(0.04, -0.08),
        xytext=(1.2, -1.95),
        fontsize=8,
        arrowprops={"arrowstyle": "->", "lw": 0.8},
    )
    figure.suptitle("Loss shapes and gradients (hyperparameters: the library's defaults)")
    return figure


def _compute(s: Settings) -> LossShapes:
    return loss_shapes()


FIGURE = FigureSpec(
    name="loss_shapes",
    help="each loss and its gradient against one distance",
    compute=_compute,
    table=loss_table,
    plot=plot_loss_shapes,
)
