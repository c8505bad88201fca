"""The paper's analyses and figures: q(d), sampled distances, gradient variance, losses.

Five figures, one module each, holding its pure data function (tensors in a small
dataclass), the CSV table and the matplotlib ``Figure`` of that data, and its entry
in :data:`FIGURES` (:mod:`.registry`), which the ``figures`` command and the tests
iterate over:

1. :mod:`.sphere`, :func:`sphere_distances`: the exact density q(d) of distances
   between uniform points on S^(n-1) (the paper's Eq. 1) against Monte-Carlo histograms.
2. :mod:`.sampled`, :func:`sampled_distances`: the anchor–negative distances each
   sampling strategy draws, on uniform points with random labels or on given embeddings.
3. :mod:`.gradients`, :func:`gradient_variance`: the paper's Section 4 argument. The
   gradient of a loss with respect to a negative is w(D_an) · h_an / ‖h_an‖; when the
   embeddings are noisy, the direction h_an / ‖h_an‖ is noisy where ‖h_an‖ is small,
   so hard negatives give high-variance gradients.
4. :mod:`.shapes`, :func:`loss_shapes`: contrastive, triplet (plain and squared) and
   margin loss as functions of one distance, with their gradients from the library's
   own loss code.
5. :mod:`.curves`, :func:`training_curves`: sampled negative distances, active
   fraction and β over a training run, read from its ``log.csv``.

:func:`write_figures` writes each figure as a PNG and the data behind it as a CSV
(comment lines starting with ``#`` state the set-up; every value is finite).
matplotlib is imported only inside the plotting functions, so ``import
sampling_matters`` stays light, and figures are drawn with the Agg canvas without
touching pyplot's global state.
"""

from sampling_matters.analysis._common import FigureSpec, Settings, Table, new_figure
from sampling_matters.analysis.curves import (
    TrainingCurve,
    plot_training_curves,
    read_log,
    training_curves,
)
from sampling_matters.analysis.gradients import (
    GradientVariance,
    direction_variance,
    expected_variance,
    gradient_variance,
    plot_gradient_variance,
)
from sampling_matters.analysis.registry import FIGURES, write_figures
from sampling_matters.analysis.sampled import (
    NONZERO_LOSS_CUTOFF,
    STRATEGIES,
    SampledDistances,
    pk_batches,
    plot_sampled_distances,
    sampled_distances,
    uniform_batches,
    usable_classes,
)
from sampling_matters.analysis.shapes import LossShapes, loss_shape, loss_shapes, plot_loss_shapes
from sampling_matters.analysis.sphere import (
    DEFAULT_DIMS,
    SphereDistances,
    exact_bin_density,
    plot_sphere_distances,
    sphere_distances,
)

__all__ = [
    "DEFAULT_DIMS",
    "FIGURES",
    "NONZERO_LOSS_CUTOFF",
    "STRATEGIES",
    "FigureSpec",
    "GradientVariance",
    "LossShapes",
    "SampledDistances",
    "Settings",
    "SphereDistances",
    "Table",
    "TrainingCurve",
    "direction_variance",
    "exact_bin_density",
    "expected_variance",
    "gradient_variance",
    "loss_shape",
    "loss_shapes",
    "new_figure",
    "pk_batches",
    "plot_gradient_variance",
    "plot_loss_shapes",
    "plot_sampled_distances",
    "plot_sphere_distances",
    "plot_training_curves",
    "read_log",
    "sampled_distances",
    "sphere_distances",
    "training_curves",
    "uniform_batches",
    "usable_classes",
    "write_figures",
]
