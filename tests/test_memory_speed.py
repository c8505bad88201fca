"""benchmarks/memory_speed.py: every row on tiny tensors (nothing about speed is asserted)."""

import math
import sys
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("pytorch_metric_learning")  # in [bench], which [dev] installs

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import memory_speed as ms

TINY = ms.Sizes(n=16, m=64, d=8, alone=80)  # alone: a size the committed table has


@pytest.fixture(scope="module")
def results():
    torch.manual_seed(0)
    out = ms.run(TINY, with_pml=True, peaks=lambda name: ms.peak_beyond_inputs(name, TINY))
    out.info = {"date": "D", "cpu": "C", "threads": 1, "load": "0", "elapsed": 1.0, "others": 0}
    return out


def test_memory_overlaps_the_batch_classes():
    data = ms.make_data(TINY)
    assert data.memory.shape == (64, 8) and data.pool.shape == (80, 8)
    assert torch.equal(data.pool, torch.cat([data.batch, data.memory]))
    assert torch.isin(data.labels, data.memory_labels).any()
    for batch in data.pool_labels.view(-1, TINY.n):  # each batch: P classes × K
        assert set(torch.bincount(batch)[batch.unique()].tolist()) == {ms.K}


def test_every_row_is_measured_and_finite(results):
    assert set(results.speed) == set(ms.PEAK_NAMES) == set(results.peaks)
    assert all(t.ms > 0 and t.reps >= 1 for t in results.speed.values())
    assert all(math.isfinite(mib) and mib >= 0 for mib in results.peaks.values())
    pml = results.pml
    assert pml.miner and pml.ours and pml.forward
    assert math.isfinite(pml.miner.ms / pml.ours.ms) and pml.ours.ms > 0
    assert [row.d for row in results.alone] == list(ms.DIMS)
    for row in results.alone:
        assert row.committed is not None, "the committed table has n = 80"
        ratios = [row.today["sphere"].ms / row.today["cdist"].ms]
        ratios.append(row.committed["sphere"] / row.committed["cdist"])
        assert all(math.isfinite(r) and r > 0 for r in ratios)


def test_ours_and_pml_draw_negatives_of_other_classes(results):
    assert results.triplets > 0 and results.ours_other_classes
    assert results.pml.triplets > 0 and results.pml.other_classes


def test_table_has_every_section(results):
    text = ms.render(results, with_pml=True)
    for heading in ("## Against the floor", "CrossBatchMemory", "## Peak memory", "alone"):
        assert heading in text
    assert "targets not judged (quick sizes)" in text
    assert "nan×" not in text and "inf×" not in text


def test_pml_mines_the_batch_against_memory_and_batch():
    data = ms.make_data(TINY)
    xbm = ms.pml_memory(data)
    xbm(data.batch, data.labels)
    embeddings, labels, ref, ref_labels = xbm.miner.inputs
    assert torch.equal(embeddings, data.batch) and torch.equal(labels, data.labels)
    assert torch.equal(ref, torch.cat([data.memory, data.batch]))
    assert torch.equal(ref_labels, torch.cat([data.memory_labels, data.labels]))


def test_committed_table_is_read():
    committed = ms.read_committed()
    assert committed is not None and committed.date != "unknown"
    assert set(committed.rows[(4096, 128)]) == {"cdist", "sphere", "empirical"}


def test_a_call_past_its_cap_is_stopped():
    start = time.perf_counter()
    assert ms.capped(lambda: time.sleep(10), 0.05) == (None, None)
    assert time.perf_counter() - start < 5
    seconds, value = ms.capped(lambda: 3, 10)
    assert value == 3 and seconds is not None


def test_peak_in_a_subprocess():
    mib = ms.peak_in_subprocess("sphere", TINY, threads=1)
    assert math.isfinite(mib) and mib >= 0
