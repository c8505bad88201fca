"""The loss × sampling ablation: every combination, every seed, one budget, one table.

:func:`run_ablation` trains each loss × sampling strategy (the paper's Table 1 grid)
for each seed through :func:`sampling_matters.training.train`, with the same data,
model, batches, optimiser and number of steps, each in ``OUT/runs/<loss>--<sampling>
--seed<k>/``. After every run it rewrites ``OUT/ablation.csv`` (one row per run),
``OUT/ablation.md`` (mean ± std over seeds per combination, and a grid of mean
Recall@1) and ``OUT/ablation.png`` (that grid as a heat map), each atomically.

Interrupted, it resumes where it stopped: a run with ``metrics.json`` is done, a run
with ``last.pt`` continues from it, the rest start fresh. A run whose training fails
(a divergence raises, for example) is recorded and the ablation goes on.

How a run is judged (:func:`run_status`):

- ``diverged``: training raised on a non-finite value (NaN / Inf in its message), a
  training row of ``log.csv`` has a non-finite loss, or a test metric is non-finite.
- ``collapsed``: the test Recall@1 is below :data:`COLLAPSE_RECALL_FACTOR` × the
  Recall@1 of a random ranking, ``(N/C − 1)/(N − 1)`` for N test queries in C classes
  (balanced classes assumed); or the embeddings fell onto a point during training: the
  last logged mean distance to the sampled negatives is below
  :data:`COLLAPSE_DISTANCE` (on the unit sphere distances lie in [0, 2], ≈ √2 when
  spread).
- ``failed``: training raised for another reason (the message is kept).
- ``ok``: otherwise.

``with_pml=True`` adds pytorch-metric-learning's ``MarginLoss`` (β learned) with its
``DistanceWeightedMiner`` as the row ``pml-margin`` (``sampling_matters.compat.pml``'s
``margin`` recipe), trained by the same loop through ``train``'s ``loss_factory``.

The package, by feature: :mod:`~sampling_matters.ablation.plan` (names, seeds, the
runs and their configurations), :mod:`~sampling_matters.ablation.runner`
(:func:`run_ablation`), :mod:`~sampling_matters.ablation.record` (each run's record),
:mod:`~sampling_matters.ablation.status` (the rules above),
:mod:`~sampling_matters.ablation.folder` (the output folder's checks),
:mod:`~sampling_matters.ablation.report` (``ablation.csv``, ``ablation.md``),
:mod:`~sampling_matters.ablation.plot` (``ablation.png``) and
:mod:`~sampling_matters.ablation.pml_row` (the PML row).
"""

from sampling_matters.ablation.plan import (
    ABLATION_KEYS,
    DEFAULT_LOSSES,
    DEFAULT_SAMPLINGS,
    MAX_SEEDS,
    METRICS,
    RunResult,
    RunSpec,
    check_names,
    check_seeds,
    plan_runs,
    run_config,
    shared_config,
)
from sampling_matters.ablation.plot import plot_grid
from sampling_matters.ablation.pml_row import PML_LOSS
from sampling_matters.ablation.record import RUN_RECORD
from sampling_matters.ablation.report import (
    CSV_COLUMNS,
    HEADERS,
    Summary,
    mean_std,
    recall_grid,
    render_markdown,
    summarise,
)
from sampling_matters.ablation.runner import run_ablation
from sampling_matters.ablation.status import (
    COLLAPSE_DISTANCE,
    COLLAPSE_RECALL_FACTOR,
    chance_recall,
    run_status,
)

__all__ = [
    "ABLATION_KEYS",
    "COLLAPSE_DISTANCE",
    "COLLAPSE_RECALL_FACTOR",
    "CSV_COLUMNS",
    "DEFAULT_LOSSES",
    "DEFAULT_SAMPLINGS",
    "HEADERS",
    "MAX_SEEDS",
    "METRICS",
    "PML_LOSS",
    "RUN_RECORD",
    "RunResult",
    "RunSpec",
    "Summary",
    "chance_recall",
    "check_names",
    "check_seeds",
    "mean_std",
    "plan_runs",
    "plot_grid",
    "recall_grid",
    "render_markdown",
    "run_ablation",
    "run_config",
    "run_status",
    "shared_config",
    "summarise",
]
