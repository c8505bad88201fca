"""Other libraries' losses behind the interface of :func:`sampling_matters.training.train`.

Each adapter imports its library only when a loss is built, so the package works without
them: :mod:`sampling_matters.compat.pml` for pytorch-metric-learning (the ``bench`` extra).
"""

from sampling_matters.compat import pml

__all__ = ["pml"]
