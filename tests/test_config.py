"""Every setting is checked against its field's type and range, and named when wrong."""

import math
from pathlib import Path

import pytest
import torch

from sampling_matters.config import (
    NEUTRAL_KEYS,
    RECORD_KEYS,
    TrainConfig,
    check_device,
    field_types,
    read_yaml,
)

BASE = {"data": "kanji", "steps": 10}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("steps", "ten"),
        ("steps", 3.5),
        ("steps", True),
        ("learn_beta", "no"),
        ("learn_beta", 1),
        ("seed", "abc"),
        ("seed", -1),
        ("lr", 0),
        ("lr", -1e-3),
        ("lr", math.nan),
        ("backbone_lr", math.inf),
        ("beta_lr", "fast"),
        ("lr_decay", 0),
        ("lr_decay", 1.5),
        ("lr_decay_at", [0.9, 0.5]),
        ("lr_decay_at", [0.5, 1.0]),
        ("lr_decay_at", 0.5),
        ("lr_decay_at", ["a"]),
        ("log_every", 0),
        ("eval_batch_size", 0),
        ("classes_per_batch", 1),
        ("samples_per_class", 1),
        ("embedding_dim", 0),
        ("image_size", 0),
        ("workers", -1),
        ("weight_decay", -0.1),
        ("beta", 0.0),
        ("nu", math.nan),
        ("val_fraction", 1.0),
        ("data", ""),
        ("data", 3),
        ("out", ""),
        ("device", "banana"),
        ("device", "cuda:99" if torch.cuda.is_available() else "cuda"),
        ("loss", "hinge"),
        ("sampling", "random"),
        ("margin", 0.0),
        ("margin", 2.5),
        ("margin", "wide"),
        ("cutoff", 0.0),
        ("cutoff", -0.5),
        ("nonzero_loss_cutoff", 0.0),
        ("nonzero_loss_cutoff", 5.0),
        ("density", "uniform"),
        ("density", None),
        ("max_reference_positives", -1),
        ("max_reference_positives", 2.5),
        ("memory_size", -1),
        ("memory_size", 10**9),
        ("memory_size", None),
        ("memory_warmup", -1),
    ],
)
def test_a_bad_value_is_a_value_error_naming_its_key(key, value):
    with pytest.raises(ValueError, match=key if key not in ("loss", "sampling") else "unknown"):
        TrainConfig.from_flat({**BASE, key: value})


def test_good_values_are_converted_to_the_field_type():
    config = TrainConfig.from_flat({**BASE, "lr": 1, "lr_decay_at": [0.5], "image_size": None})
    assert config.optim.lr == 1.0 and isinstance(config.optim.lr, float)
    assert config.optim.lr_decay_at == (0.5,)
    assert TrainConfig.from_flat({**BASE, "lr_decay_at": []}).optim.lr_decay_at == ()


def test_every_default_passes_its_own_field_check():
    defaults = {**TrainConfig().flat(), "steps": 10}
    assert TrainConfig.from_flat(defaults).flat() == defaults
    assert set(field_types()) == set(defaults)


def test_cuda_without_a_gpu_says_so(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA GPU"):
        check_device("cuda")
    check_device("cpu")
    check_device("auto")


def test_differences_leave_neutral_keys_out():
    a = TrainConfig.from_flat(BASE)
    b = TrainConfig.from_flat({**BASE, "device": "cpu", "out": "elsewhere", "lr": 0.5})
    assert a.differences(b) == {"lr": (0.001, 0.5)}
    assert "device" in NEUTRAL_KEYS


def test_yaml_keys_in_two_spellings_are_an_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("classes-per-batch: 4\nclasses_per_batch: 8\n")
    with pytest.raises(ValueError, match="given twice"):
        read_yaml(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [("steps: [1, 2\n", "not a valid YAML"), ("- 1\n- 2\n", "mapping"), (b"\xff\xfe", "YAML")],
)
def test_a_broken_yaml_file_is_a_value_error(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_yaml(path)


def test_yaml_reading_is_safe(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ValueError, match="not a valid YAML"):
        read_yaml(path)


def test_record_keys_of_a_run_are_read_past(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("data: kanji\nsteps: 3\nskipped_images: 2\n")
    assert read_yaml(path) == {"data": "kanji", "steps": 3}
    assert "skipped_images" in RECORD_KEYS
    with pytest.raises(ValueError, match="not a regular file"):
        read_yaml(tmp_path)
    with pytest.raises(FileNotFoundError, match="missing"):
        read_yaml(tmp_path / "none.yaml")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("lr", 1e300),
        ("image_size", 100_000),
        ("workers", 100_000),
        ("steps", 10**20),
        ("beta", 5.0),
        ("nu", 1e308),
        ("embedding_dim", 1),
        ("weight_decay", 3.0),
    ],
)
def test_values_that_could_only_crash_or_diverge_are_refused(key, value):
    with pytest.raises(ValueError, match=repr(key)):
        TrainConfig.from_flat({**BASE, key: value})


def test_a_key_given_twice_in_one_file_is_an_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 2\nsteps: 3\n")
    with pytest.raises(ValueError, match="'steps' is given twice"):
        read_yaml(path)


def test_fields_set_directly_are_checked_and_converted():
    import pathlib

    import numpy as np

    config = TrainConfig()
    config.optim.steps, config.run.out, config.optim.lr = np.int64(5), pathlib.Path("r/x"), 1
    config.check()
    assert (config.optim.steps, config.run.out, config.optim.lr) == (5, "r/x", 1.0)
    for section, key, value in [("optim", "steps", "2"), ("data", "data", None)]:
        config = TrainConfig.from_flat(BASE)
        setattr(getattr(config, section), key, value)
        with pytest.raises(ValueError, match=repr(key)):
            config.check()
    config = TrainConfig.from_flat(BASE)
    config.loss = None
    with pytest.raises(ValueError, match=r"TrainConfig\.loss"):
        config.check()


def test_a_number_yaml_reads_as_text_gets_a_hint():
    with pytest.raises(ValueError, match="write a number with a dot"):
        TrainConfig.from_flat({**BASE, "lr": "1e-3"})


def test_the_kanji_recipe_is_the_defaults_at_2500_steps():
    """configs/kanji.yaml is what `train --data kanji --steps 2500` runs (defaults.md)."""
    root = Path(__file__).resolve().parent.parent
    recipe = read_yaml(root / "configs" / "kanji.yaml")
    plain = {"data": "kanji", "steps": 2500, "seed": recipe["seed"], "out": recipe["out"]}
    assert TrainConfig.from_flat(recipe) == TrainConfig.from_flat(plain)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"cutoff": 1.5}, r"'cutoff' must be below nonzero_loss_cutoff 1\.4 .*got 1\.5"),
        ({"cutoff": 0.8, "nonzero_loss_cutoff": 0.8}, r"below nonzero_loss_cutoff 0\.8, got 0\.8"),
        ({"cutoff": 1.3, "margin": 0.3, "beta": 1.0}, r"below nonzero_loss_cutoff 1\.3 \(α"),
        ({"memory_warmup": 5}, r"'memory_warmup' needs a cross-batch memory"),
        ({"memory_size": 64, "memory_warmup": 10}, r"below the run's 10 steps.*never be used"),
        ({"memory_size": 64, "memory_warmup": 99}, r"'memory_warmup' \(99\)"),
    ],
)
def test_loss_settings_that_cannot_work_together_are_refused(values, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_flat({**BASE, **values})


def test_loss_settings_default_to_the_losss_own():
    from sampling_matters.config import margin_of, nonzero_loss_cutoff_of, semihard_band

    loss = TrainConfig.from_flat(BASE).loss
    assert (loss.margin, loss.nonzero_loss_cutoff) == (None, None)  # decided by the loss
    assert (loss.cutoff, loss.density, loss.max_reference_positives) == (0.5, "sphere", 8)
    assert (loss.memory_size, loss.memory_warmup) == (0, 0)  # no memory
    margins = {
        name: margin_of(TrainConfig.from_flat({**BASE, "loss": name}).loss)
        for name in ("margin", "triplet", "triplet-squared", "contrastive")
    }
    assert margins == {"margin": 0.2, "triplet": 0.2, "triplet-squared": 0.2, "contrastive": 1.0}
    assert nonzero_loss_cutoff_of(loss) == 1.4  # α + β⁽⁰⁾ = 0.2 + 1.2, the paper's
    follow = TrainConfig.from_flat({**BASE, "margin": 0.3, "beta": 1.0}).loss
    assert nonzero_loss_cutoff_of(follow) == 1.3  # follows α + β⁽⁰⁾ unless set
    kept = TrainConfig.from_flat({**BASE, "margin": 0.3, "beta": 1.0, "nonzero_loss_cutoff": 1.5})
    assert nonzero_loss_cutoff_of(kept.loss) == 1.5
    other = TrainConfig.from_flat({**BASE, "loss": "triplet", "margin": 0.3, "beta": 1.0})
    assert nonzero_loss_cutoff_of(other.loss) == 1.4  # only the margin loss has a β
    contrastive = TrainConfig.from_flat({**BASE, "loss": "contrastive", "margin": 0.5}).loss
    assert semihard_band(follow) == 0.3 and semihard_band(contrastive) is None


def test_settings_of_a_strategy_the_run_does_not_use_are_kept():
    """Accepted and recorded, without effect: an ablation shares them across its grid."""
    config = TrainConfig.from_flat(
        {**BASE, "sampling": "hard", "density": "empirical", "cutoff": 0.3, "margin": 0.1}
    )
    assert (config.loss.density, config.loss.cutoff, config.loss.margin) == ("empirical", 0.3, 0.1)
