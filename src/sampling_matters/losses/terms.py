"""Per-term losses at the sampled pairs, and the one reduction all losses share.

Distances are computed only at the sampled pairs (O(T·D), never the N×N matrix)
with :func:`~sampling_matters.distances.pair_distances`. With ``references`` (M, D)
the indices address the pool ``torch.cat([embeddings, references])`` (rows N..N+M-1
are the references); gradient reaches ``references`` only if they require it. The
reduction divides the sum of the terms by the number of *active* terms (those with
non-zero loss).
"""

from __future__ import annotations

import torch
from torch import Tensor

from sampling_matters.distances import anchor_distances, pair_distances
from sampling_matters.losses.beta import beta_at
from sampling_matters.sampling import Pairs, Triplets

__all__ = ["active_fraction", "contrastive_terms", "margin_terms", "reduce_terms", "triplet_terms"]


def _pair_distances(
    embeddings: Tensor, pairs: Pairs, squared: bool, references: Tensor | None
) -> tuple[Tensor, Tensor]:
    """(P,) positive and (Q,) negative pair distances; anchors gathered once when shared.

    Only the sampled pairs are computed, on the pool's rows: never a matrix of the pool.
    """
    pool = embeddings if references is None else torch.cat([embeddings, references])  # (N+M, D)
    if pairs.positive_anchor is pairs.negative_anchor:  # pairs of Triplets
        d_pos, d_neg = anchor_distances(
            pool, pairs.positive_anchor, (pairs.positive, pairs.negative), squared=squared
        )
        return d_pos, d_neg
    d_pos = pair_distances(pool, pairs.positive_anchor, pairs.positive, squared=squared)
    d_neg = pair_distances(pool, pairs.negative_anchor, pairs.negative, squared=squared)
    return d_pos, d_neg


def contrastive_terms(
    embeddings: Tensor, pairs: Pairs, margin: float, *, references: Tensor | None = None
) -> Tensor:
    """Per-pair contrastive losses: D² for positive pairs, (α − D)₊² for negative pairs."""
    d_pos, d_neg = _pair_distances(embeddings, pairs, False, references)  # (P,), (Q,)
    return torch.cat([d_pos.square(), torch.relu(margin - d_neg).square()])  # (P + Q,)


def triplet_terms(
    embeddings: Tensor,
    triplets: Triplets,
    margin: float,
    squared: bool,
    *,
    references: Tensor | None = None,
) -> Tensor:
    """Per-triplet losses (D_ap − D_an + α)₊, on squared distances if ``squared``."""
    d_ap, d_an = _pair_distances(embeddings, triplets.to_pairs(), squared, references)  # (T,)
    return torch.relu(d_ap - d_an + margin)  # (T,)


def margin_terms(
    embeddings: Tensor,
    pairs: Pairs,
    beta: float | Tensor,
    margin: float,
    nu: float,
    *,
    references: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Per-pair margin losses (α + y (D − β))₊ and the penalty ν Σ β over positive pairs.

    β is read at each pair's anchor, a row of ``embeddings`` (never a reference).
    """
    d_pos, d_neg = _pair_distances(embeddings, pairs, False, references)  # (P,), (Q,)
    beta_pos = beta_at(beta, pairs.positive_anchor, d_pos)  # (P,)
    shared = pairs.positive_anchor is pairs.negative_anchor
    beta_neg = beta_pos if shared else beta_at(beta, pairs.negative_anchor, d_neg)  # (Q,)
    pos = torch.relu(margin + d_pos - beta_pos)  # (P,) y = +1
    neg = torch.relu(margin - d_neg + beta_neg)  # (Q,) y = -1
    penalty = nu * beta_pos.sum() if nu != 0 else None  # () one β per positive pair
    return torch.cat([pos, neg]), penalty  # (P + Q,), ()


def reduce_terms(
    terms: Tensor, penalty: Tensor | None = None, *, across: tuple[Tensor, int] | None = None
) -> tuple[Tensor, Tensor]:
    """Average over active terms: (Σ terms + penalty) / #{terms > 0}, or exactly 0.

    Args:
        terms: (M,) non-negative per-term losses.
        penalty: optional () tensor added to the numerator (dropped when nothing is active).
        across: for a loss computed in W processes, ``(n_global, W)``: the () number of
            active terms summed over the processes, and W. This process's share is then
            W · (Σ terms + penalty) / n_global (the penalty, a sum over this process's
            pairs, is its share like the terms), so that the processes' gradients,
            averaged (as DDP does), are the gradient of one process's loss on the global
            batch.

    Returns:
        The () loss and the () int64 number of active terms (this process's). With no
        active term the loss is exactly 0 and its gradient exactly 0, yet it stays on
        the graph. No host-device synchronisation.
    """
    n_active = torch.count_nonzero(terms)  # () int64
    n_total, world = (n_active, 1) if across is None else across
    total = terms.sum() if penalty is None else terms.sum() + penalty  # ()
    mean = world * total / n_total.clamp_min(1)  # ()
    return torch.where(n_total > 0, mean, torch.zeros_like(mean)), n_active


def active_fraction(terms: Tensor, n_active: Tensor) -> float:
    """The fraction of ``terms`` that are active (0 when there is none)."""
    return float(n_active) / len(terms) if len(terms) else 0.0
