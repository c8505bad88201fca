"""sampling-matters: deep embedding learning with distance weighted sampling.

The paper "Sampling Matters in Deep Embedding Learning" (Wu, Manmatha, Smola,
Krähenbühl, ICCV 2017) as a library: exact sampling strategies (uniform, hard,
semi-hard, distance weighted), the margin loss with learned β and the baselines,
P×K batching, and the geometry of the sphere they rest on.

Example:
    >>> import torch
    >>> import sampling_matters as sm
    >>> embeddings = torch.nn.functional.normalize(torch.randn(32, 16), dim=1)
    >>> labels = torch.arange(32) // 4
    >>> loss_fn = sm.losses.MarginLoss(sampling="distance-weighted")
    >>> bool(loss_fn(embeddings, labels).detach() >= 0)
    True
"""

from sampling_matters import batching, distances, evaluation, losses, memory, sampling, sphere
from sampling_matters.batching import PKSampler
from sampling_matters.losses import (
    LOSSES,
    ContrastiveLoss,
    MarginLoss,
    SampledLoss,
    TripletLoss,
    contrastive_loss,
    make_loss,
    margin_loss,
    triplet_loss,
)
from sampling_matters.memory import CrossBatchMemory
from sampling_matters.sampling import (
    SAMPLINGS,
    DistanceWeighted,
    Hard,
    Pairs,
    SamplingStats,
    SemiHard,
    Strategy,
    Triplets,
    Uniform,
    distance_weighted,
    hard,
    make_sampling,
    semihard,
    uniform,
)
from sampling_matters.sphere import log_distance_density, uniform_on_sphere

__version__ = "0.1.0"

__all__ = [
    "LOSSES",
    "SAMPLINGS",
    "ContrastiveLoss",
    "CrossBatchMemory",
    "DistanceWeighted",
    "Hard",
    "MarginLoss",
    "PKSampler",
    "Pairs",
    "SampledLoss",
    "SamplingStats",
    "SemiHard",
    "Strategy",
    "TripletLoss",
    "Triplets",
    "Uniform",
    "__version__",
    "batching",
    "contrastive_loss",
    "distance_weighted",
    "distances",
    "evaluation",
    "hard",
    "log_distance_density",
    "losses",
    "make_loss",
    "make_sampling",
    "margin_loss",
    "memory",
    "sampling",
    "semihard",
    "sphere",
    "triplet_loss",
    "uniform",
    "uniform_on_sphere",
]
