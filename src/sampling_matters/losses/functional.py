"""The three losses as pure functions of embeddings and index tuples.

Every function takes keyword-only ``references`` (M, D): then the index tuples address
the pool ``torch.cat([embeddings, references])``, anchors being rows of ``embeddings``
(indices in [0, N)) and the other indices rows of the pool (in [0, N + M)).
Gradient reaches ``references`` only if they require it: a cross-batch memory passes
detached rows, so only the batch is trained.
"""

from __future__ import annotations

import torch  # noqa: F401  (the examples below use it)
from torch import Tensor

from sampling_matters import _checks
from sampling_matters.losses.terms import (
    contrastive_terms,
    margin_terms,
    reduce_terms,
    triplet_terms,
)
from sampling_matters.losses.validation import check_inputs
from sampling_matters.sampling import Pairs, Triplets

__all__ = ["contrastive_loss", "margin_loss", "triplet_loss"]


def _as_pairs(tuples: Triplets | Pairs) -> Pairs:
    return tuples.to_pairs() if isinstance(tuples, Triplets) else tuples


def contrastive_loss(
    embeddings: Tensor,
    triplets: Triplets | Pairs,
    *,
    margin: float = 1.0,
    references: Tensor | None = None,
) -> Tensor:
    """Contrastive loss (the paper's Section 3), averaged over active pairs.

    ℓ(i, j) = D_ij² for a positive pair and (α − D_ij)₊² for a negative pair, with
    D the Euclidean distance and α = ``margin``. The loss is
    Σ ℓ / #{pairs with ℓ > 0}; exactly 0 (zero gradient) when no pair is active.

    Args:
        embeddings: (N, D) floating embeddings.
        triplets: Triplets of (T,) int64 indices, read as the T positive pairs
            (anchor, positive) and T negative pairs (anchor, negative); or Pairs with
            P positive and Q negative pairs.
        margin: α ≥ 0, the distance beyond which negatives give no loss.
        references: optional (M, D) rows that extend the pool the indices address.

    Returns:
        () scalar loss (float32 for half-precision embeddings).

    Raises:
        ValueError: on a negative margin or malformed embeddings or indices.

    Example:
        >>> x = torch.tensor([[0.0, 0.0], [0.0, 0.5], [1.0, 0.0]])
        >>> t = Triplets(torch.tensor([0]), torch.tensor([1]), torch.tensor([2]))
        >>> contrastive_loss(x, t, margin=1.5)  # (0.5² + (1.5 - 1)²) / 2
        tensor(0.2500)
    """
    _checks.finite_float("margin", margin, 0)
    check_inputs(embeddings, triplets, (Triplets, Pairs), references=references)
    terms = contrastive_terms(embeddings, _as_pairs(triplets), margin, references=references)
    return reduce_terms(terms)[0]


def triplet_loss(
    embeddings: Tensor,
    triplets: Triplets,
    *,
    margin: float = 0.2,
    squared: bool = False,
    references: Tensor | None = None,
) -> Tensor:
    """Triplet loss, averaged over active triplets.

    ℓ(a, p, n) = (D_ap − D_an + α)₊ with plain distances, or, with ``squared=True``,
    (D_ap² − D_an² + α)₊, the form of the paper's Section 3 (FaceNet's). The loss is
    Σ ℓ / #{triplets with ℓ > 0}; exactly 0 (zero gradient) when none is active.

    Args:
        embeddings: (N, D) floating embeddings.
        triplets: Triplets of (T,) int64 indices.
        margin: α > 0 (with α = 0 a collapsed embedding would give zero loss).
        squared: use squared distances.
        references: optional (M, D) rows that extend the pool the indices address.

    Returns:
        () scalar loss (float32 for half-precision embeddings).

    Raises:
        ValueError: on a margin ≤ 0 or malformed embeddings or indices.

    Example:
        >>> x = torch.tensor([[0.0, 0.0], [0.0, 0.5], [1.0, 0.0]])
        >>> t = Triplets(torch.tensor([0]), torch.tensor([1]), torch.tensor([2]))
        >>> triplet_loss(x, t, margin=0.75)  # 0.5 - 1 + 0.75
        tensor(0.2500)

        With references, index N + j is row j of ``references``; the same triplet:

        >>> batch, memory = x[:2], x[2:].detach()  # rows 0, 1 and row 2 of the pool
        >>> triplet_loss(batch, t, margin=0.75, references=memory)
        tensor(0.2500)
    """
    _checks.finite_float("margin", margin, 0, low_open=True)
    check_inputs(embeddings, triplets, (Triplets,), references=references)
    terms = triplet_terms(embeddings, triplets, margin, squared, references=references)
    return reduce_terms(terms)[0]


def margin_loss(
    embeddings: Tensor,
    triplets: Triplets | Pairs,
    beta: float | Tensor,
    *,
    margin: float = 0.2,
    nu: float = 0.0,
    references: Tensor | None = None,
) -> Tensor:
    """The paper's margin loss (Eq. 4) with its ν·β penalty, averaged over active pairs.

    ℓ(i, j) = (α + y_ij (D_ij − β_i))₊ with y = +1 for a positive pair (anchor,
    positive) and y = −1 for a negative pair (anchor, negative), α = ``margin`` and
    β_i the β of the pair's anchor. The loss is

        (Σ_pairs ℓ(i, j) + ν Σ_triplets β_anchor) / #{pairs with ℓ > 0},

    the penalty counting one β per triplet (for Pairs: per positive pair), as the
    authors' code does. With no active pair the loss is exactly 0, penalty included,
    with a zero gradient (for β too).

    Args:
        embeddings: (N, D) floating embeddings.
        triplets: Triplets of (T,) int64 indices, giving the T positive pairs
            (anchor, positive) and T negative pairs (anchor, negative); or Pairs.
        beta: β, the boundary between positive and negative distances: a float, a ()
            tensor, or an (N,) tensor giving each embedding's β as an anchor. Tensors
            may require grad (β is learned).
        margin: α > 0, the half-width of the band around β.
        nu: ν ≥ 0, weight of the penalty on β.
        references: optional (M, D) rows that extend the pool the indices address; β
            stays (N,), read at the anchors, which are rows of ``embeddings``.

    Returns:
        () scalar loss (float32 for half-precision embeddings).

    Raises:
        ValueError: on a margin ≤ 0, a negative ν, a malformed β, embeddings or indices.

    Example:
        >>> x = torch.tensor([[0.0, 0.0], [0.0, 0.5], [1.0, 0.0]])
        >>> t = Triplets(torch.tensor([0]), torch.tensor([1]), torch.tensor([2]))
        >>> margin_loss(x, t, 1.0, margin=0.25)  # positive: (0.25 + 0.5 - 1)₊ = 0 inactive
        tensor(0.2500)
        >>> margin_loss(x, t, 1.0, margin=0.25, nu=0.5)  # (0.25 + 0.5 · 1.0) / 1
        tensor(0.7500)
    """
    _checks.finite_float("margin", margin, 0, low_open=True)
    _checks.finite_float("nu", nu, 0)
    check_inputs(embeddings, triplets, (Triplets, Pairs), beta, references=references)
    pairs = _as_pairs(triplets)
    terms, penalty = margin_terms(embeddings, pairs, beta, margin, nu, references=references)
    return reduce_terms(terms, penalty)[0]
