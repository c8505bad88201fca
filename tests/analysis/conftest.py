"""Fixtures shared by the analysis tests: one panel of sampled distances, runs' logs."""

import pytest
import torch

from sampling_matters import analysis

LOG_HEADER = (
    "step,epoch,loss,active_fraction,beta,negative_distance,negative_distance_std,"
    "fallback,images_per_s,val_recall@1\n"
)


@pytest.fixture(scope="session")
def uniform16():
    """Every strategy's distances on 8 batches of uniform points in 16 dimensions."""
    batches = analysis.uniform_batches(16, 8, generator=torch.Generator().manual_seed(1))
    return analysis.sampled_distances(
        batches, title="uniform", generator=torch.Generator().manual_seed(2)
    )


def _write_run(path, loss="margin", sampling="distance-weighted", beta="1.2"):
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(f"loss: {loss}\nsampling: {sampling}\nsteps: 3\n")
    (path / "log.csv").write_text(
        LOG_HEADER
        + f"1,0,0.9,0.5,{beta},0.8,0.1,0.0,100,nan\n"
        + f"2,0,0.7,0.4,{beta},0.9,0.12,0.0,100,nan\n"
        + "2,1,nan,nan,nan,nan,nan,nan,100,0.4\n"  # a validation-only row
        + f"3,1,0.6,0.3,{beta},1.0,0.15,0.0,100,nan\n"
    )
    return path


@pytest.fixture(scope="session")
def write_run():
    """``write_run(path, loss=, sampling=, beta=)``: a run folder with config.yaml and log.csv."""
    return _write_run
