"""The command line trains as well as a plain loop of the functional API, same settings.

A plain loop is what a user would write from the library's pieces: P×K batches, the
glyph augmentation, the small CNN, ``distance_weighted`` + ``margin_loss`` with a learned
β, AdamW on every parameter at one rate, the same step schedule. Trained for a few
hundred steps on the glyph fixture, both must end within noise of each other on the
test classes (mean over seeds).
"""

import json
import statistics

import pytest
import torch
from torch.utils.data import DataLoader

import sampling_matters as sm
from sampling_matters import data
from sampling_matters.cli import main
from sampling_matters.data.transforms import eval_transform, train_transform
from sampling_matters.evaluation import evaluate
from sampling_matters.models import build_model

STEPS, P, K, DIM, SEEDS = 300, 4, 3, 32, (0, 1)
TOLERANCE = 0.1  # absolute, on the mean over seeds; the test split holds 48 images


def cli_run(folder, out, seed):
    """``sampling-matters train`` with nothing but the budget, the batch shape and a seed."""
    options = ["--steps", str(STEPS), "--classes-per-batch", str(P), "--samples-per-class"]
    command = ["train", "--data", f"folder:{folder}", *options, str(K), "--seed", str(seed)]
    assert main([*command, "--embedding-dim", str(DIM), "--out", str(out), "--quiet"]) == 0
    return json.loads((out / "metrics.json").read_text())


def plain_run(folder, seed):
    """The same training written by hand from the functional API."""
    torch.manual_seed(seed)
    model = build_model("small-cnn", embedding_dim=DIM)
    train, test = data.load(f"folder:{folder}", "train"), data.load(f"folder:{folder}", "test")
    size, norm, channels = model.input_size, model.normalization, model.channels
    augment = train_transform("glyph", size, normalization=norm, channels=channels, generator=seed)
    sampler = sm.PKSampler(train.labels, P, K, seed=seed)
    loader = DataLoader(train.with_transform(augment), batch_sampler=sampler)
    beta = torch.nn.Parameter(torch.tensor(1.2))
    optimiser = torch.optim.AdamW([*model.parameters(), beta], lr=1e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimiser, [STEPS * 6 // 10, STEPS * 85 // 100])
    generator = torch.Generator().manual_seed(seed + 1)
    step, epoch = 0, 0
    while step < STEPS:
        sampler.set_epoch(epoch)
        for images, labels, _ in loader:
            embeddings = model(images)
            triplets = sm.distance_weighted(embeddings.detach(), labels, generator=generator)
            loss = sm.margin_loss(embeddings, triplets, beta.expand(len(labels)))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            step += 1
            if step == STEPS:
                break
        epoch += 1
    model.eval()
    evaluation = eval_transform("glyph", size, normalization=norm, channels=channels)
    with torch.no_grad():
        images = torch.stack([evaluation(test.image(i)) for i in range(len(test))])
        return evaluate(model(images), test.labels, progress=False)


@pytest.mark.slow
def test_the_command_line_trains_like_a_plain_loop(glyph_folder, tmp_path):
    ours = [cli_run(glyph_folder, tmp_path / f"cli{seed}", seed) for seed in SEEDS]
    plain = [plain_run(glyph_folder, seed) for seed in SEEDS]
    for metric in ("recall@1", "map@r"):
        a = statistics.fmean(run[metric] for run in ours)
        b = statistics.fmean(run[metric] for run in plain)
        print(f"{metric}: command line {a:.3f}, plain loop {b:.3f}")
        assert abs(a - b) <= TOLERANCE, (metric, a, b)
