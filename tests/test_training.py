import csv
import json

import numpy as np
import pytest
import torch
import yaml

import sampling_matters as sm
from sampling_matters import training
from sampling_matters.data.datasets import ImageDataset
from sampling_matters.models import build_model
from sampling_matters.training import TrainConfig, criterion, features, train


def config(folder, out, **overrides):
    values = {
        "data": f"folder:{folder}",
        "model": "small-cnn",
        "steps": 8,
        "classes_per_batch": 3,
        "samples_per_class": 3,
        "val_fraction": 0.25,
        "out": str(out),
        "log_every": 2,
        "embedding_dim": 16,
        "eval_batch_size": 32,
    }
    values.update(overrides)
    return TrainConfig.from_flat(values)


def test_run_directory_follows_the_contract(contract, run_contract, glyph_folder, tmp_path):
    metrics = train(config(glyph_folder, tmp_path / "run"), progress=False)
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} >= {
        "config.yaml",
        "best.pt",
        "last.pt",
        "log.csv",
        "metrics.json",
    }
    assert json.loads((run / "metrics.json").read_text()) == metrics
    assert set(metrics) == run_contract and metrics["n_classes"] == 8
    assert all(0 <= metrics[k] <= 1 for k in contract - {"n_queries", "n_classes"})
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["loss"] == "margin" and saved["steps"] == 8
    rows = list(csv.DictReader((run / "log.csv").open()))
    assert rows and set(rows[0]) == set(training.LOG_COLUMNS)
    assert all(float(r["negative_distance"]) > 0 for r in rows if r["loss"] != "nan")


@pytest.mark.parametrize(
    ("loss", "sampling"),
    [("triplet", "semihard"), ("contrastive", "uniform"), ("triplet-squared", "hard")],
)
def test_other_losses_train(run_contract, glyph_folder, tmp_path, loss, sampling):
    metrics = train(
        config(glyph_folder, tmp_path, loss=loss, sampling=sampling, steps=3), progress=False
    )
    assert set(metrics) == run_contract


def test_a_fixed_beta_stays_put_and_offsets_still_learn(glyph_folder, tmp_path):
    fixed = config(glyph_folder, tmp_path / "fixed", steps=6, learn_beta=False)
    train(fixed, progress=False)
    state = torch.load(tmp_path / "fixed" / "last.pt", weights_only=True)
    assert float(state["loss"]["beta0"]) == pytest.approx(1.2, abs=1e-7)  # never moved
    groups = state["optimiser"]["param_groups"]
    assert len(groups) == 2 and all(g.get("name") != "beta" for g in groups)  # no β group
    offsets = config(
        glyph_folder, tmp_path / "class", steps=6, learn_beta=False, beta_per_class=True
    )
    train(offsets, progress=False)
    state = torch.load(tmp_path / "class" / "last.pt", weights_only=True)
    assert float(state["loss"]["beta0"]) == pytest.approx(1.2, abs=1e-7)
    assert state["loss"]["beta_class"].abs().sum() > 0  # the class offsets moved
    learned = config(glyph_folder, tmp_path / "learned", steps=6)
    train(learned, progress=False)
    state = torch.load(tmp_path / "learned" / "last.pt", weights_only=True)
    assert float(state["loss"]["beta0"]) != pytest.approx(1.2, abs=1e-5)


def test_frozen_backbone_with_cached_features(run_contract, glyph_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("SAMPLING_MATTERS_CACHE", str(tmp_path / "cache"))
    frozen = {"freeze_backbone": True, "cache_features": True, "steps": 4}
    metrics = train(config(glyph_folder, tmp_path / "a", **frozen), progress=False)
    assert set(metrics) == run_contract
    stored = sorted((tmp_path / "cache" / "features").glob("*.pt"))
    assert len(stored) == 3  # train, validation and test features, kept for the next run
    calls = {"n": 0}
    original = features.embed_dataset

    def counting(*args, **kwargs):
        calls["n"] += kwargs.get("output") == "frozen"
        return original(*args, **kwargs)

    monkeypatch.setattr(features, "embed_dataset", counting)
    again = train(config(glyph_folder, tmp_path / "b", **frozen), progress=False)
    assert calls["n"] == 0 and again == metrics  # same features from disk, same run


def test_partly_frozen_backbone_trains_its_last_stages_on_cached_maps(
    run_contract, glyph_folder, tmp_path, monkeypatch
):
    monkeypatch.setenv("SAMPLING_MATTERS_CACHE", str(tmp_path / "cache"))
    partial = {"frozen_stages": 2, "cache_features": True, "steps": 6}
    metrics = train(config(glyph_folder, tmp_path / "run", **partial), progress=False)
    assert set(metrics) == run_contract
    stored = torch.load(next((tmp_path / "cache" / "features").glob("*.pt")))
    assert stored[0].dim() == 4  # (N, C, h, w) maps of the first two blocks, not pooled
    first = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["model"]
    torch.manual_seed(0)  # the run's own seed: the same initial weights
    start = build_model("small-cnn", embedding_dim=16, pretrained=False)
    initial = start.state_dict()
    frozen = [k for k in initial if k.startswith("backbone.body.") and int(k.split(".")[2]) < 14]
    trained = [k for k in initial if k.startswith("backbone.body.2") and k.endswith("weight")]
    assert frozen and trained
    assert all(torch.equal(first[k], initial[k]) for k in frozen)  # blocks 1–2 unchanged
    assert not all(torch.equal(first[k], initial[k]) for k in trained)  # blocks 3–4 learnt


def test_feature_key_changes_with_the_images_the_labels_and_the_model(glyph_folder, tmp_path):
    images = np.zeros((6, 8, 8), dtype=np.uint8)
    base = config(glyph_folder, tmp_path)
    key = features._fingerprint(ImageDataset(images, [0, 0, 1, 1, 2, 2], kind="glyph"), base)
    edited = images.copy()
    edited[3, 4, 4] = 1
    assert key != features._fingerprint(
        ImageDataset(edited, [0, 0, 1, 1, 2, 2], kind="glyph"), base
    )
    relabelled = ImageDataset(images, [0, 1, 1, 1, 2, 2], kind="glyph")
    assert key != features._fingerprint(relabelled, base)
    for other in ({"image_size": 24}, {"frozen_stages": 2}):
        changed = config(glyph_folder, tmp_path, **other)
        assert key != features._fingerprint(
            ImageDataset(images, [0, 0, 1, 1, 2, 2], kind="glyph"), changed
        )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lossy": 1}, "unknown configuration key"),
        ({"loss": "hinge"}, "unknown loss"),
        ({"sampling": "random"}, "unknown sampling"),
        ({"epochs": 2}, "exactly one of steps and epochs"),
        ({"cache_features": True}, "cache_features needs freeze_backbone or frozen_stages"),
        ({"freeze_backbone": True, "frozen_stages": 2}, "not both"),
        ({"loss": "triplet", "beta_per_class": True}, "belong to the margin loss"),
    ],
)
def test_bad_configuration(glyph_folder, tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        config(glyph_folder, tmp_path, **overrides)


def test_automatic_settings_are_decided_and_recorded(glyph_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(glyph_folder.parent)
    relative = f"folder:{glyph_folder.name}"
    train(config(glyph_folder, tmp_path / "run", data=relative, steps=2), progress=False)
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["augment"] == "glyph"  # small grey images on a plain background
    assert saved["backbone_lr"] == saved["lr"]  # small-cnn is trained from scratch
    assert saved["data"] == f"folder:{glyph_folder}"  # absolute: usable from anywhere


def test_backbone_rate_follows_where_the_backbone_starts():
    base = TrainConfig.from_flat({"steps": 1, "lr": 0.002})
    assert training.resolve(base, "glyph").optim.backbone_lr == 0.002
    pretrained = TrainConfig.from_flat({"steps": 1, "lr": 0.002, "model": "resnet50"})
    assert training.resolve(pretrained, "photo").optim.backbone_lr == pytest.approx(0.0002)
    scratch = TrainConfig.from_flat({"steps": 1, "model": "resnet50", "pretrained": False})
    assert training.resolve(scratch, "photo").optim.backbone_lr == 0.001
    given = TrainConfig.from_flat({"steps": 1, "backbone_lr": 0.05, "augment": "none"})
    resolved = training.resolve(given, "glyph")
    assert resolved.optim.backbone_lr == 0.05 and resolved.data.augment == "none"


@pytest.mark.parametrize(("select", "why"), [("map@r", "best validation map@r"), ("last", "last")])
def test_metrics_say_which_checkpoint_was_scored(glyph_folder, tmp_path, select, why):
    metrics = train(config(glyph_folder, tmp_path, steps=8, select=select), progress=False)
    assert why in metrics["checkpoint"] and 1 <= metrics["checkpoint_step"] <= 8
    rows = list(csv.DictReader((tmp_path / "log.csv").open()))
    assert any(r["val_map@r"] not in ("", "nan") for r in rows)
    if select == "last":
        assert metrics["checkpoint_step"] == 8


def test_without_validation_the_last_model_is_scored(glyph_folder, tmp_path):
    metrics = train(config(glyph_folder, tmp_path, steps=5, val_fraction=0.0), progress=False)
    assert metrics["checkpoint_step"] == 5 and "no validation split" in metrics["checkpoint"]


def test_augment_none_and_photo_train(glyph_folder, tmp_path):
    for augment in ("none", "photo"):
        out = tmp_path / augment
        train(config(glyph_folder, out, steps=2, augment=augment), progress=False)
        assert yaml.safe_load((out / "config.yaml").read_text())["augment"] == augment


def test_a_validation_fraction_that_cannot_split_is_an_error(glyph_folder, tmp_path):
    with pytest.raises(ValueError, match=r"val_fraction 0\.1 of the 8 training classes"):
        train(config(glyph_folder, tmp_path, val_fraction=0.1), progress=False)


# ------------------------------------------------------- loss settings and the memory


@pytest.mark.parametrize(
    ("overrides", "margin", "cutoff"),
    [
        ({}, 0.2, 1.4),  # α + β⁽⁰⁾ = 0.2 + 1.2: the paper's values
        ({"margin": 0.3, "beta": 1.0}, 0.3, 1.3),  # the cutoff follows α + β⁽⁰⁾ ...
        ({"margin": 0.3, "beta": 1.0, "nonzero_loss_cutoff": 1.5}, 0.3, 1.5),  # ... unless set
        ({"loss": "triplet", "margin": 0.3, "beta": 1.0}, 0.3, 1.4),  # no β: the paper's
        ({"loss": "contrastive"}, 1.0, 1.4),  # the contrastive loss's own α
    ],
)
def test_margin_and_cutoff_are_decided_and_reach_the_loss_and_strategy(overrides, margin, cutoff):
    given = TrainConfig.from_flat({"steps": 1, "density": "empirical", **overrides})
    decided = training.resolve(given, "glyph")
    assert (decided.loss.margin, decided.loss.nonzero_loss_cutoff) == (margin, cutoff)
    loss = criterion.build_loss(decided, 10, 4, torch.Generator())
    assert loss.margin == margin
    assert loss.sampling == sm.sampling.DistanceWeighted(
        nonzero_loss_cutoff=cutoff, density="empirical"
    )
    assert training.resolve(decided, "glyph") == decided  # deciding twice changes nothing


def test_semihard_band_follows_the_margin_but_not_the_contrastive_one():
    def strategy(**overrides):
        values = {"steps": 1, "sampling": "semihard", "max_reference_positives": 3, **overrides}
        return criterion.build_strategy(TrainConfig.from_flat(values).loss)

    assert strategy() == sm.sampling.SemiHard(margin=0.2, max_reference_positives=3)
    assert strategy(loss="triplet", margin=0.3).margin == 0.3
    assert strategy(loss="contrastive", margin=0.5).margin == 0.2  # α is a distance there
    assert strategy(sampling="hard", density="empirical") == sm.sampling.Hard(
        max_reference_positives=3
    )  # density belongs to distance weighted sampling: no effect


def test_a_run_with_a_memory_records_its_settings_and_logs_the_references(glyph_folder, tmp_path):
    memory = {"memory_size": 20, "memory_warmup": 2, "margin": 0.3, "beta": 1.0}
    train(config(glyph_folder, tmp_path, steps=5, log_every=1, **memory), progress=False)
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert {k: saved[k] for k in memory} == memory
    assert saved["nonzero_loss_cutoff"] == 1.3  # α + β⁽⁰⁾, decided and recorded
    rows = [r for r in csv.DictReader((tmp_path / "log.csv").open()) if r["loss"] != "nan"]
    assert [float(r["references"]) for r in rows] == [0, 0, 18, 20, 20]  # warm-up 2, then M
    state = torch.load(tmp_path / "last.pt", weights_only=True)["memory"]
    assert (state["count"], state["step"]) == (20, 5)


class RecordingLoss(sm.losses.MarginLoss):
    """The margin loss, keeping what each call was given."""

    def __init__(self):
        super().__init__(generator=torch.Generator().manual_seed(0))
        self.calls = []

    def forward(self, embeddings, labels, indices=None, *, references=None, reference_labels=None):
        refs = None if references is None else (references.clone(), reference_labels.clone())
        self.calls.append((embeddings.detach().clone(), labels.clone(), refs))
        return super().forward(
            embeddings, labels, indices, references=references, reference_labels=reference_labels
        )


def test_each_step_reads_the_memory_before_the_loss_and_fills_it_after(glyph_folder, tmp_path):
    made = []

    def factory(settings):
        made.append(RecordingLoss())
        return made[0]

    settings = config(glyph_folder, tmp_path, steps=5, val_fraction=0.0, memory_size=20)
    train(settings, progress=False, loss_factory=factory)
    calls = made[0].calls
    assert calls[0][2] is None  # step 0: an empty memory, no references
    for step in range(1, 5):  # the last 20 embeddings of the steps before, oldest first
        earlier = torch.cat([embeddings for embeddings, _, _ in calls[:step]])[-20:]
        earlier_labels = torch.cat([labels for _, labels, _ in calls[:step]])[-20:]
        references, reference_labels = calls[step][2]
        assert torch.equal(references, earlier) and torch.equal(reference_labels, earlier_labels)
        assert references.device == calls[step][0].device and not references.requires_grad


def test_a_memory_warm_up_as_long_as_an_epoch_run_is_refused_before_anything_is_written(
    glyph_folder, tmp_path
):
    out = tmp_path / "run"  # 8 training classes of 6 images, 3 × 3 batches: 6 per epoch
    settings = config(
        glyph_folder, out, steps=None, epochs=2, val_fraction=0.0, memory_size=8, memory_warmup=12
    )
    with pytest.raises(
        ValueError, match=r"\(12\) must be below the run's 12 steps \(2 epochs of 6"
    ):
        train(settings, progress=False)
    assert not out.exists()


def test_a_memory_with_a_loss_that_takes_no_references_is_refused(glyph_folder, tmp_path):
    class NoReferences(torch.nn.Module):
        def forward(self, embeddings, labels, indices=None):
            return embeddings.sum()

    settings = config(glyph_folder, tmp_path / "run", memory_size=8)
    with pytest.raises(ValueError, match=r"takes no references.*memory_size 0"):
        train(settings, progress=False, loss_factory=lambda _: NoReferences())
