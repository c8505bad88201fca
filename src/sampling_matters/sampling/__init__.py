"""In-batch example selection: which (anchor, positive, negative) triplets to train on.

Every strategy pairs each anchor with each of its positives (all ordered pairs of
distinct same-class items, in any label order) and picks one negative per pair:

- :func:`uniform`: a negative drawn uniformly from the anchor's negatives.
- :func:`hard`: the anchor's closest negative.
- :func:`semihard`: FaceNet's rule, the closest negative farther than the positive.
- :func:`distance_weighted`: the paper's Section 4, a negative drawn with
  probability ∝ q(D_an)^-1 among those that can still produce loss.

All run under ``no_grad``, are fully vectorised (no Python loop over anchors or
labels) and return index tensors on the input's device, so the loss reads the
embeddings again with gradients. Given a ``torch.Generator`` they are deterministic.
Anything a strategy cannot do as asked (an anchor without negatives, an empty
semi-hard band) is counted in an optional :class:`SamplingStats`, never hidden.

Every strategy also samples beyond the batch: given ``references`` (M, D) and
``reference_labels`` (M,) (a cross-batch memory, other processes' batches), the
anchors stay the batch's rows and positives and negatives come from the pool
``torch.cat([embeddings, references])``, which the triplets index. Each strategy is
also an object with its settings as fields (:class:`Uniform`, :class:`Hard`,
:class:`SemiHard`, :class:`DistanceWeighted`; :func:`make_sampling` builds one by name).

Modules: :mod:`~.triplets` (what strategies return and report), :mod:`~.groups` (a
batch grouped by label, shared by every strategy), :mod:`~.pool` (the batch and its
references, shared by every strategy), :mod:`~.simple` (uniform, hard, semi-hard),
:mod:`~.density` (distance weighted sampling's weights), :mod:`~.weighted` (distance
weighted sampling), :mod:`~.strategies` (the strategy objects), :mod:`~.registry`
(:data:`SAMPLINGS`, :func:`make_sampling`).
"""

from sampling_matters.sampling.density import distance_bins
from sampling_matters.sampling.pool import MAX_REFERENCE_POSITIVES
from sampling_matters.sampling.registry import SAMPLINGS, make_sampling
from sampling_matters.sampling.simple import hard, semihard, uniform
from sampling_matters.sampling.strategies import (
    DistanceWeighted,
    Hard,
    SemiHard,
    Strategy,
    Uniform,
)
from sampling_matters.sampling.triplets import Pairs, SamplingFunction, SamplingStats, Triplets
from sampling_matters.sampling.weighted import distance_weighted

__all__ = [
    "MAX_REFERENCE_POSITIVES",
    "SAMPLINGS",
    "DistanceWeighted",
    "Hard",
    "Pairs",
    "SamplingFunction",
    "SamplingStats",
    "SemiHard",
    "Strategy",
    "Triplets",
    "Uniform",
    "distance_bins",
    "distance_weighted",
    "hard",
    "make_sampling",
    "semihard",
    "uniform",
]
