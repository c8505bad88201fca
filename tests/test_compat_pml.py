"""The pytorch-metric-learning adapter: each recipe trains, records, and runs through train()."""

import importlib
import json
import math

import pytest
import torch

from sampling_matters import training
from sampling_matters.compat import pml
from sampling_matters.config import TrainConfig

pytest.importorskip("pytorch_metric_learning")


def batch(n_classes=4, per_class=4, dim=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(n_classes * per_class, dim, generator=generator)
    embeddings = torch.nn.functional.normalize(embeddings, dim=1).requires_grad_()
    return embeddings, torch.arange(n_classes * per_class) // per_class


def config(**settings):
    return TrainConfig.from_flat({"steps": 1, **settings})


@pytest.mark.parametrize("name", pml.NAMES)
def test_each_recipe_gives_a_finite_loss_with_gradients(name):
    torch.manual_seed(0)  # PML's miners draw from the global random state
    loss = pml.factory(name)(config())
    embeddings, labels = batch()
    value = loss(embeddings, labels, torch.arange(len(labels)))
    assert value.dim() == 0 and math.isfinite(float(value.detach()))
    value.backward()
    assert embeddings.grad is not None and bool(torch.isfinite(embeddings.grad).all())
    assert 0 <= loss.last_active_fraction <= 1
    if name == "contrastive":  # every pair, no miner: no triplets
        assert loss.last_triplets is None and loss.last_stats.triplets == 0
    else:
        assert loss.last_triplets is not None
        assert loss.last_stats.triplets == len(loss.last_triplets.anchor) > 0
        anchor, positive, negative = loss.last_triplets
        assert bool((labels[anchor] == labels[positive]).all())
        assert bool((labels[anchor] != labels[negative]).all())


def test_the_margin_recipe_takes_beta_from_the_config():
    loss = pml.factory("margin")(config(beta=0.9, nu=0.01))
    assert loss.loss.beta.item() == pytest.approx(0.9) and loss.loss.nu == 0.01
    assert loss.loss.learn_beta and loss.loss.margin == 0.2
    assert loss.miner.cutoff == 0.5 and loss.miner.nonzero_loss_cutoff == 1.4
    values = loss.beta_values(torch.tensor([0, 1, 1]))
    assert values.tolist() == pytest.approx([0.9] * 3)


def test_the_margin_active_fraction_counts_pair_terms():
    torch.manual_seed(1)
    loss = pml.margin(beta=1.3)
    embeddings, labels = batch(dim=3)
    embeddings = embeddings.detach()
    loss(embeddings, labels)
    t = loss.last_triplets
    active = 0
    for a, p, n in zip(t.anchor.tolist(), t.positive.tolist(), t.negative.tolist(), strict=True):
        d_ap = float((embeddings[a] - embeddings[p]).norm())
        d_an = float((embeddings[a] - embeddings[n]).norm())
        active += (d_ap - 1.3 + 0.2 > 0) + (1.3 - d_an + 0.2 > 0)
    assert loss.last_active_fraction == pytest.approx(active / (2 * len(t.anchor)))


def test_recipes_without_beta_have_no_beta_group():
    for name in ("contrastive", "triplet"):
        loss = pml.factory(name)(config())
        assert loss.beta_param_group(0.1)["params"] == []
        assert math.isnan(float(loss.beta_values(torch.arange(3)).mean()))
    fixed = pml.factory("margin")(config(learn_beta=False))
    assert fixed.beta_param_group(0.1)["params"] == []
    assert fixed.beta_values(torch.arange(2)).tolist() == pytest.approx([1.2, 1.2])


def test_the_margin_recipe_refuses_a_beta_per_class():
    with pytest.raises(ValueError, match="learns one β"):
        pml.factory("margin")(config(beta_per_class=True))


def test_unknown_recipe_is_named():
    with pytest.raises(ValueError, match=r"unknown PML recipe 'arcface'.*'margin'"):
        pml.factory("arcface")


def test_missing_pml_names_the_extra(monkeypatch):
    real = importlib.import_module

    def no_pml(name, *args):
        if name.startswith("pytorch_metric_learning"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args)

    factory = pml.factory("triplet")  # building the factory imports nothing
    monkeypatch.setattr(importlib, "import_module", no_pml)  # require imports through it
    with pytest.raises(ImportError, match="'bench' extra"):
        factory(config())


@pytest.mark.parametrize("learn_beta", [True, False])
def test_train_runs_the_pml_margin_loss(tiny_settings, tmp_path, run_contract, learn_beta):
    out = tmp_path / "run"
    values = {**tiny_settings, "steps": 3, "log_every": 1, "learn_beta": learn_beta}
    settings = TrainConfig.from_flat({**values, "out": str(out)})
    metrics = training.train(settings, progress=False, loss_factory=pml.factory("margin"))
    assert set(json.loads((out / "metrics.json").read_text())) == run_contract
    assert 0 <= metrics["recall@1"] <= 1
    last_row = (out / "log.csv").read_text().splitlines()[-1].split(",")
    beta = float(last_row[training.LOG_COLUMNS.index("beta")])  # logged
    state = torch.load(out / "last.pt", weights_only=True)
    groups = [g for g in state["optimiser"]["param_groups"] if g.get("name") == "beta"]
    if learn_beta:
        assert beta != pytest.approx(1.2, abs=1e-6)  # learned
        assert float(state["loss"]["loss.beta"]) == pytest.approx(beta, abs=0.05)
        assert len(groups) == 1 and groups[0]["initial_lr"] == pytest.approx(
            TrainConfig().optim.beta_lr
        )
    else:
        assert beta == pytest.approx(1.2) and groups == []  # fixed: no group to train
