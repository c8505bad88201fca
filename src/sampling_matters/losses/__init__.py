"""Losses on sampled index tuples: contrastive, triplet, and the paper's margin loss.

Every loss is a pure function of tensors (``contrastive_loss``, ``triplet_loss``,
``margin_loss``) taking embeddings and the :class:`~sampling_matters.sampling.Triplets`
(or :class:`~sampling_matters.sampling.Pairs`) a sampling strategy returned. Distances
are computed only at the sampled pairs (O(T·D), never the N×N matrix) with
:func:`~sampling_matters.distances.pair_distances`, whose safe square root keeps
gradients finite at zero distance; half-precision inputs are computed, and the loss
returned, in float32.

All three share one reduction: the sum of the per-term losses divided by the number
of *active* terms (those with non-zero loss), as in the authors' code. With no active
term (or no term at all) the loss is exactly 0 with an exactly zero gradient, still
attached to the graph so that ``.backward()`` works.

Every function and module also takes keyword-only ``references`` (M, D): rows beyond
the batch (a cross-batch memory, other processes' batches) that extend the pool the
triplets index, ``torch.cat([embeddings, references])``. Anchors are always batch rows;
gradient reaches the references only if they require it.

The modules (:class:`ContrastiveLoss`, :class:`TripletLoss`, :class:`MarginLoss`) derive
from :class:`SampledLoss`, which holds the sampling strategy and records what each call
did; each module holds its hyperparameters (and, for the margin loss, the learned β)
and its terms. ``forward(embeddings, labels, indices=None, *, references=None,
reference_labels=None)`` samples on detached tensors, then calls the same per-term and
reduction steps as the functions.

Modules: :mod:`~.functional` (the three losses as functions), :mod:`~.terms` (per-term
losses and the reduction), :mod:`~.beta` (β: checked, per pair, learned),
:mod:`~.validation` (the checks at the door), :mod:`~.base` (:class:`SampledLoss`, the
bookkeeping every module shares), :mod:`~.modules` (the three modules),
:mod:`~.registry` (:data:`LOSSES`, :func:`make_loss`).
"""

from sampling_matters.losses.base import LossInputs, SampledLoss, resolve_sampling, sampled_loss
from sampling_matters.losses.functional import contrastive_loss, margin_loss, triplet_loss
from sampling_matters.losses.modules import ContrastiveLoss, LossModule, MarginLoss, TripletLoss
from sampling_matters.losses.registry import LOSSES, make_loss
from sampling_matters.losses.terms import contrastive_terms, margin_terms, triplet_terms

__all__ = [
    "LOSSES",
    "ContrastiveLoss",
    "LossInputs",
    "LossModule",
    "MarginLoss",
    "SampledLoss",
    "TripletLoss",
    "contrastive_loss",
    "contrastive_terms",
    "make_loss",
    "margin_loss",
    "margin_terms",
    "resolve_sampling",
    "sampled_loss",
    "triplet_loss",
    "triplet_terms",
]
