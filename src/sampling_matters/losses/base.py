"""What every loss module shares: :class:`SampledLoss`, the base that owns the bookkeeping.

A loss module samples triplets with its strategy on detached embeddings (and, if
given, detached references), maps them to per-term losses, reduces them over the
active terms and records what happened (``last_stats``, ``last_triplets``,
``last_active_fraction``) for the training log. :class:`SampledLoss` does all of that;
a subclass holds its hyperparameters and learned parameters and implements
:meth:`SampledLoss.terms`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import NamedTuple, Protocol

import torch
from torch import Tensor, nn

from sampling_matters import distributed
from sampling_matters.losses.terms import active_fraction, reduce_terms
from sampling_matters.losses.validation import (
    check_inputs,
    check_reference_labels,
    check_references,
)
from sampling_matters.sampling import SAMPLINGS, SamplingStats, Triplets

__all__ = [
    "LossInputs",
    "SampledLoss",
    "Sampling",
    "resolve_sampling",
    "sampled_loss",
    "sampling_name",
]

Sampling = Callable[..., Triplets]
"""A strategy ``fn(embeddings, labels, *, generator=None, stats=None) -> Triplets``.

To sample from references too, it also takes keyword-only ``references`` and
``reference_labels``; it is only called with them when a loss is given references.
"""

_SIGNATURE = "fn(embeddings, labels, *, generator=None, stats=None) -> Triplets"


def resolve_sampling(sampling: str | Sampling) -> Sampling:
    """The strategy: a name in :data:`~sampling_matters.sampling.SAMPLINGS`, or a callable.

    A name gives the registry's strategy with its default settings.

    Raises:
        ValueError: an unknown name (the message names the choices), or not a callable.
    """
    if isinstance(sampling, str):
        if sampling not in SAMPLINGS:
            raise ValueError(f"unknown sampling {sampling!r}; expected one of {sorted(SAMPLINGS)}")
        return SAMPLINGS[sampling]()
    if not callable(sampling):
        raise ValueError(
            f"sampling must be one of {sorted(SAMPLINGS)} or a callable {_SIGNATURE}, "
            f"got {sampling!r}"
        )
    return sampling


def sampling_name(sampling: Sampling) -> str:
    """How ``repr`` names a strategy: its registry name if it is a registered default."""
    for name, kind in SAMPLINGS.items():
        if isinstance(sampling, kind) and sampling == kind():
            return repr(name)
    return str(getattr(sampling, "__name__", repr(sampling)))


def _check_takes_references(sampling: Sampling) -> None:
    """Raise ``ValueError`` if the strategy's signature cannot take ``references``."""
    try:
        parameters = inspect.signature(sampling).parameters.values()
    except (TypeError, ValueError):  # no signature to read: let the call decide
        return
    kinds = {p.name: p.kind for p in parameters}
    if "references" not in kinds and inspect.Parameter.VAR_KEYWORD not in kinds.values():
        raise ValueError(
            f"the sampling strategy {sampling_name(sampling)} takes no references; give it "
            "keyword-only references=None and reference_labels=None, or pass no references"
        )


class _Bookkeeping(Protocol):
    """What :func:`sampled_loss` reads and writes on a module."""

    sampling: Sampling
    generator: torch.Generator | None
    last_stats: SamplingStats
    last_triplets: Triplets | None
    last_active_fraction: float


def _sample(
    module: _Bookkeeping,
    embeddings: Tensor,
    labels: Tensor,
    references: Tensor | None,
    reference_labels: Tensor | None,
) -> tuple[Triplets, SamplingStats]:
    """Run the strategy on detached tensors and check the triplets it returned."""
    stats = SamplingStats()
    if references is None:  # a strategy need not know references until it is given some
        triplets = module.sampling(
            embeddings.detach(), labels, generator=module.generator, stats=stats
        )
    else:
        _check_takes_references(module.sampling)
        triplets = module.sampling(
            embeddings.detach(),
            labels,
            references=references.detach(),
            reference_labels=reference_labels,
            generator=module.generator,
            stats=stats,
        )
    check_inputs(embeddings, triplets, (Triplets,), references=references)
    return triplets, stats


def sampled_loss(
    module: _Bookkeeping,
    embeddings: Tensor,
    labels: Tensor,
    terms_of: Callable[[Triplets], tuple[Tensor, Tensor | None]],
    *,
    references: Tensor | None = None,
    reference_labels: Tensor | None = None,
) -> Tensor:
    """Sample with the module's strategy, reduce the per-term losses, record the stats.

    What :meth:`SampledLoss.forward` does; a module that does not derive from
    :class:`SampledLoss` can call it too, given the attributes ``sampling`` (from
    :func:`resolve_sampling`) and ``generator``. It sets ``last_stats``,
    ``last_triplets`` and ``last_active_fraction``, which training logs.

    Args:
        module: holds the strategy and generator, and receives the records.
        embeddings: (N, D) embeddings; anchors are their rows.
        labels: (N,) integer class ids.
        terms_of: maps the sampled triplets (indices into the pool) to the (K,)
            per-term losses and an optional () penalty.
        references: optional (M, D) rows that extend the pool, with the embeddings'
            dimension, dtype and device; detached for sampling, used as given by
            ``terms_of`` (so gradient reaches them only if they require it).
        reference_labels: (M,) class ids of the references; required with them.

    Returns:
        () the loss: (Σ terms + penalty) / #{active terms}, or exactly 0.

    Raises:
        ValueError: references without labels or the reverse, references unlike the
            embeddings, or triplets that do not index the pool.
    """
    check_references(embeddings, references)
    check_reference_labels(references, reference_labels)
    triplets, stats = _sample(module, embeddings, labels, references, reference_labels)
    module.last_stats, module.last_triplets = stats, triplets
    terms, penalty = terms_of(triplets)
    loss, n_active = reduce_terms(terms, penalty, across=_across(module, terms))
    module.last_active_fraction = active_fraction(terms, n_active)
    return loss


def _across(module: object, terms: Tensor) -> tuple[Tensor, int] | None:
    """The global count of active terms and the world, for a loss averaged over processes."""
    if not getattr(module, "across_processes", False) or not distributed.is_distributed():
        return None
    return distributed.total(torch.count_nonzero(terms)), distributed.world_size()


class LossInputs(NamedTuple):
    """What a loss module's ``forward`` was given, as :meth:`SampledLoss.terms` reads it.

    Attributes:
        embeddings: (N, D) the batch, with gradient.
        labels: (N,) the batch's class ids.
        indices: (N,) the batch's data-set indices, or None.
        references: (M, D) rows beyond the batch, or None; the triplets index the pool
            ``torch.cat([embeddings, references])``.
        reference_labels: (M,) their class ids, or None.
    """

    embeddings: Tensor
    labels: Tensor
    indices: Tensor | None
    references: Tensor | None
    reference_labels: Tensor | None


class SampledLoss(nn.Module):
    """The base of every loss module: a sampling strategy, and what its last call did.

    ``forward`` samples triplets on detached tensors, asks :meth:`terms` for the
    per-term losses and reduces them over the active terms (see :func:`sampled_loss`).
    A subclass stores its hyperparameters and parameters and implements :meth:`terms`.

    Args:
        sampling: a name in :data:`sampling_matters.sampling.SAMPLINGS` or a callable
            ``fn(embeddings, labels, *, generator=None, stats=None) -> Triplets``
            (which must also take ``references`` and ``reference_labels`` to be
            called with references).
        generator: the random source handed to the sampling strategy.

    Attributes:
        sampling: the strategy.
        generator: its random source.
        last_stats: the :class:`SamplingStats` of the last call.
        last_active_fraction: the fraction of the last call's terms with non-zero loss.
        last_triplets: the triplets the last call sampled, indices into the pool (None
            before the first call).
        across_processes: set True when every process of a process group computes its
            share of one loss on the global batch (its anchors are its rows, the other
            processes' rows its references): the terms are then averaged over the
            active terms of all processes, scaled so that DDP's averaged gradient is
            one process's gradient on the global batch. False (the default): this
            process's loss alone.
    """

    def __init__(
        self,
        *,
        sampling: str | Sampling = "distance-weighted",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.sampling = resolve_sampling(sampling)
        self.generator = generator
        self.last_stats = SamplingStats()
        self.last_active_fraction = 0.0
        self.last_triplets: Triplets | None = None
        self.across_processes = False

    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor,
        indices: Tensor | None = None,
        *,
        references: Tensor | None = None,
        reference_labels: Tensor | None = None,
    ) -> Tensor:
        """The () loss of triplets sampled from the batch (and the references, if given).

        Args:
            embeddings: (N, D) embeddings (L2-normalised for distance weighted sampling).
            labels: (N,) integer class ids.
            indices: (N,) data-set indices of the embeddings; used by losses with a
                per-image parameter, ignored by the others.
            references: optional (M, D) rows that extend the pool, e.g. a cross-batch
                memory (detached: only the batch is trained) or other processes'
                batches (with gradient, if they require it). Anchors stay batch rows.
            reference_labels: (M,) class ids of the references; required with them.

        Returns:
            () scalar loss.
        """
        inputs = LossInputs(embeddings, labels, indices, references, reference_labels)
        return sampled_loss(
            self,
            embeddings,
            labels,
            lambda triplets: self.terms(inputs, triplets),
            references=references,
            reference_labels=reference_labels,
        )

    def terms(self, inputs: LossInputs, triplets: Triplets) -> tuple[Tensor, Tensor | None]:
        """The per-term losses of the sampled triplets, and an optional penalty.

        Args:
            inputs: what ``forward`` was given.
            triplets: (T,) indices into the pool ``torch.cat([embeddings, references])``,
                anchors in [0, N).

        Returns:
            (K,) non-negative per-term losses and a () penalty added to their sum, or
            None.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement terms()")

    def extra_repr(self) -> str:
        """The strategy, for ``repr``; subclasses put their hyperparameters first."""
        return f"sampling={sampling_name(self.sampling)}"
