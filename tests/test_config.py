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
