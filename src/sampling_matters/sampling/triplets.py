"""What a sampling strategy returns and reports: index tuples, counts, the shared signature."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import NamedTuple, Protocol

import torch
from torch import Tensor

__all__ = ["Pairs", "SamplingFunction", "SamplingStats", "Triplets"]


class Pairs(NamedTuple):
    """Positive and negative pairs as index tensors, each (P,) or (Q,) int64."""

    positive_anchor: Tensor
    positive: Tensor
    negative_anchor: Tensor
    negative: Tensor


class Triplets(NamedTuple):
    """Triplets (anchor, positive, negative) as three (T,) int64 index tensors."""

    anchor: Tensor
    positive: Tensor
    negative: Tensor

    def to_pairs(self) -> Pairs:
        """The T positive pairs (anchor, positive) and T negative pairs (anchor, negative)."""
        return Pairs(self.anchor, self.positive, self.anchor, self.negative)


@dataclass
class SamplingStats:
    """What one call of a sampling strategy did, for logging.

    Attributes:
        triplets: triplets returned.
        anchors_without_negative: anchors with a positive but no negative in the batch
            (for example a batch of one class); their pairs give no triplet.
        fallback: triplets whose negative came from a strategy's fall-back rule:
            distance weighted sampling for an anchor with no admissible negative
            (uniform negative instead), semi-hard for a pair with no negative
            farther than its positive (the farthest negative instead).
        band_empty: semi-hard only: triplets whose negative lies outside the band
            (D_ap, D_ap + margin), because no negative of the anchor is in it.
    """

    triplets: int = 0
    anchors_without_negative: int = 0
    fallback: int = 0
    band_empty: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counts as a plain dict."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


class SamplingFunction(Protocol):
    """The signature every strategy shares (extra hyperparameters are keyword-only)."""

    def __call__(
        self,
        embeddings: Tensor,
        labels: Tensor,
        *,
        generator: torch.Generator | None = None,
        stats: SamplingStats | None = None,
    ) -> Triplets:
        """Select one negative for every (anchor, positive) pair of the batch.

        To sample beyond the batch, a strategy also takes keyword-only ``references``
        (M, D) and ``reference_labels`` (M,) (every built-in one does; a loss passes
        them only when it has references): positives and negatives then come from
        ``torch.cat([embeddings, references])``, anchors from the batch only, and the
        triplets index that pool.
        """
        ...
