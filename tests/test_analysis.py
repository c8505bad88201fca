import csv
import itertools
import math

import pytest
import torch

from sampling_matters import analysis
from sampling_matters.cli import main
from sampling_matters.losses import contrastive_loss, margin_loss
from sampling_matters.sampling import Pairs

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- 1. sphere distances


@pytest.mark.parametrize("dim", [2, 3, 16, 128])
def test_monte_carlo_distances_follow_the_exact_density(dim):
    data = analysis.sphere_distances([dim], draws=20_000, bins=40, generator=gen(dim))
    assert float(data.total_variation()[0]) < 0.03


def test_total_variation_tells_neighbouring_dimensions_apart():
    data = analysis.sphere_distances([16], draws=20_000, bins=40, generator=gen())
    wrong = analysis.exact_bin_density(data.edges, 32)
    tv = 0.5 * float(((data.monte_carlo[0] - wrong).abs() * data.edges.diff()).sum())
    assert tv > 0.12  # sampling noise alone gives about 0.02


@pytest.mark.parametrize("dim", [2, 3, 4, 512])
def test_exact_bin_density_is_normalised_and_finite_where_q_diverges(dim):
    edges = torch.linspace(0.0, 2.0, 101, dtype=torch.float64)
    density = analysis.exact_bin_density(edges, dim)
    assert bool(density.isfinite().all()) and bool((density >= 0).all())
    assert float((density * edges.diff()).sum()) == pytest.approx(1.0, abs=1e-4)


def test_exact_bin_density_matches_the_closed_form_cdf_in_two_dimensions():
    # n = 2: d = 2 sin(θ/2) with θ uniform on [0, π], so P(d <= x) = (2/π) asin(x/2).
    edges = torch.tensor([0.0, 1.0, 1.99, 2.0], dtype=torch.float64)
    mass = analysis.exact_bin_density(edges, 2) * edges.diff()
    cdf = [2 / math.pi * math.asin(x / 2) for x in edges.tolist()]
    expected = torch.tensor([b - a for a, b in itertools.pairwise(cdf)], dtype=torch.float64)
    assert torch.allclose(mass, expected, atol=1e-10)


# ---------------------------------------------------------------- 2. sampled distances


@pytest.fixture(scope="module")
def uniform16():
    batches = analysis.uniform_batches(16, 8, generator=gen(1))
    return analysis.sampled_distances(batches, title="uniform", generator=gen(2))


def test_strategies_order_the_distances_they_draw(uniform16):
    d = uniform16.distances
    assert set(d) == {
        "uniform",
        "hard",
        "semihard",
        "distance-weighted",
        "distance-weighted-empirical",
    }
    assert all(len(v) == 8 * 32 * 4 * 3 for v in d.values())
    assert d["hard"].mean() + 0.1 < d["distance-weighted"].mean() < d["uniform"].mean() - 0.1
    # uniform sampling follows the distances available in the batch, which follow q(d)
    assert abs(float(d["uniform"].mean() - uniform16.negatives.mean())) < 0.02
    assert len(uniform16.negatives) == 8 * (128 * 127 // 2 - 32 * 6)


def test_distance_weighted_spreads_over_the_admissible_range(uniform16):
    weighted, hard = uniform16.distances["distance-weighted"], uniform16.distances["hard"]
    assert float(weighted.max()) < analysis.NONZERO_LOSS_CUTOFF
    assert float(weighted.quantile(0.05)) < float(hard.mean())
    assert float(weighted.quantile(0.95)) > 1.3
    assert float(weighted.std()) > 1.8 * float(hard.std())


def test_the_empirical_density_spreads_where_the_sphere_density_does_not():
    # points of low intrinsic dimension in 128-d, as a trained embedding: the sphere's
    # 1/q(d) in 128 dimensions then favours the closest negatives, like hard mining
    g = gen()
    labels = torch.arange(32).repeat_interleave(4)
    low = torch.randn(32, 6, generator=g)[labels] + 0.35 * torch.randn(128, 6, generator=g)
    x = torch.nn.functional.normalize(low @ torch.randn(6, 128, generator=g), dim=1)
    data = analysis.sampled_distances([(x, labels)] * 4, title="clustered", generator=g)
    d = data.distances
    sphere, empirical = d["distance-weighted"], d["distance-weighted-empirical"]
    assert float(sphere.mean()) < float(d["hard"].mean()) + 0.05
    assert float(empirical.mean()) > float(sphere.mean()) + 0.1
    assert float(empirical.std()) > float(sphere.std())


def test_pk_batches_draw_k_items_of_classes_that_have_k():
    labels = torch.cat([torch.arange(10).repeat_interleave(6), torch.tensor([10, 10])])
    x = torch.randn(len(labels), 8, generator=gen())
    batches = list(analysis.pk_batches(x, labels, 3, classes=4, per_class=3, generator=gen()))
    assert len(batches) == 3
    for embeddings, batch_labels in batches:
        _, counts = batch_labels.unique(return_counts=True)
        assert counts.tolist() == [3, 3, 3, 3] and 10 not in batch_labels
        assert torch.allclose(embeddings.norm(dim=1), torch.ones(12))
    with pytest.raises(ValueError, match="at least 2 classes"):
        analysis.pk_batches(x[:6], labels[:6], 1, generator=gen())


def test_sampled_distances_rejects_unknown_strategies():
    with pytest.raises(ValueError, match="unknown strategies"):
        analysis.sampled_distances([], title="", strategies=["hardest"])


# ---------------------------------------------------------------- 3. gradient variance


def brute_force_variance(distances, dim, sigma, noise_a, noise_n):
    """The set-up written out: noisy points, renormalised, unit direction, its variance."""
    out = []
    for t in distances.tolist():
        cos = 1 - t * t / 2
        a = torch.zeros(dim, dtype=torch.float64)
        n = torch.zeros(dim, dtype=torch.float64)
        a[0], n[0], n[1] = 1.0, cos, math.sqrt(1 - cos * cos)
        a = torch.nn.functional.normalize(a + sigma * noise_a, dim=1)
        n = torch.nn.functional.normalize(n + sigma * noise_n, dim=1)
        g = torch.nn.functional.normalize(n - a, dim=1)
        out.append(float((g - g.mean(0)).square().sum(1).mean()) * len(g) / (len(g) - 1))
    return torch.tensor(out, dtype=torch.float64)


def test_direction_variance_matches_the_brute_force_simulation():
    distances = torch.tensor([0.05, 0.3, 1.0, 2.0])
    fast = analysis.direction_variance(distances, 12, [0.02, 0.2], draws=300, generator=gen(5))
    noise_a, noise_n = torch.randn(2, 300, 12, generator=gen(5), dtype=torch.float64)
    for i, sigma in enumerate([0.02, 0.2]):
        slow = brute_force_variance(distances, 12, sigma, noise_a, noise_n)
        assert torch.allclose(fast[i], slow, atol=1e-10)


def test_gradient_variance_falls_with_distance_and_grows_with_noise():
    distances = torch.linspace(0.05, 2.0, 14)
    v = analysis.direction_variance(distances, 64, [0.01, 0.05, 0.1], draws=2000, generator=gen())
    assert bool((v[:, 1:] < v[:, :-1]).all())  # falls with distance, at every σ
    assert bool((v[1:] > v[:-1]).all())  # grows with σ, at every distance
    assert float(v[0, 0]) > 0.5 and float(v[0, -1]) < 0.01  # noise swamps only short h
    assert bool(((v >= 0) & (v <= 1.001)).all())


def test_hard_negatives_have_the_noisiest_gradients(uniform16):
    data = analysis.gradient_variance(dim=16, sigmas=[0.05], draws=2000, sampled=uniform16)
    v = {name: float(values[0]) for name, values in data.by_strategy.items()}
    assert v["hard"] > 1.2 * v["distance-weighted"] > 1.2 * v["uniform"]
    assert data.active["distance-weighted"] == 1.0 and data.active["uniform"] < 0.8
    with pytest.raises(ValueError, match="dimension 16"):
        analysis.gradient_variance(dim=32, draws=10, sampled=uniform16)


def test_expected_variance_interpolates_linearly():
    grid = torch.tensor([0.0, 1.0, 2.0])
    curves = torch.tensor([[1.0, 0.5, 0.0], [2.0, 2.0, 2.0]])
    mean = analysis.expected_variance(grid, curves, torch.tensor([0.5, 1.5, 3.0]))
    assert torch.allclose(mean, torch.tensor([1 / 3, 2.0], dtype=torch.float64))


# ---------------------------------------------------------------------- 4. loss shapes

D = torch.tensor([0.3, 0.9, 1.3, 1.7], dtype=torch.float64)
CLOSED_FORMS = {  # (loss, pair): (value, gradient), other triplet distance 1, defaults
    ("contrastive", "positive"): (D**2, 2 * D),
    ("contrastive", "negative"): ((1 - D).clamp(min=0) ** 2, -2 * (1 - D).clamp(min=0)),
    ("triplet", "positive"): ((D - 0.8).clamp(min=0), (D > 0.8).double()),
    ("triplet", "negative"): ((1.2 - D).clamp(min=0), -(D < 1.2).double()),
    ("triplet-squared", "positive"): ((D**2 - 0.8).clamp(min=0), 2 * D * (D**2 > 0.8)),
    ("triplet-squared", "negative"): ((1.2 - D**2).clamp(min=0), -2 * D * (D**2 < 1.2)),
    ("margin", "positive"): ((D - 1.0).clamp(min=0), (D > 1.0).double()),
    ("margin", "negative"): ((1.4 - D).clamp(min=0), -(D < 1.4).double()),
}


@pytest.mark.parametrize("key", sorted(CLOSED_FORMS))
def test_loss_shapes_match_their_closed_forms(key):
    value, gradient = analysis.loss_shape(*key, D)
    expected_value, expected_gradient = CLOSED_FORMS[key]
    assert torch.allclose(value, expected_value, atol=1e-9)
    assert torch.allclose(gradient, expected_gradient.double(), atol=1e-9)


def test_squared_triplet_gives_hard_negatives_no_push_plain_triplet_does():
    near = torch.tensor([1e-3, 1e-2, 0.1])
    _, squared = analysis.loss_shape("triplet-squared", "negative", near)
    _, plain = analysis.loss_shape("triplet", "negative", near)
    assert torch.allclose(squared, -2 * near.double(), atol=1e-9)  # → 0 as d → 0
    assert torch.allclose(plain, -torch.ones(3, dtype=torch.float64))
    value, _ = analysis.loss_shape("triplet-squared", "negative", torch.tensor([0.2, 0.5, 0.8]))
    assert float(value[0] + value[2]) < 2 * float(value[1])  # concave in d


def test_loss_shapes_agree_with_the_public_loss_functions():
    x = torch.tensor([[0.0, 0.0], [0.7, 0.0]], dtype=torch.float64)
    one, none = torch.tensor([0]), torch.zeros(0, dtype=torch.int64)
    negative = Pairs(none, none, one, torch.tensor([1]))
    value, _ = analysis.loss_shape("contrastive", "negative", torch.tensor([0.7]))
    assert float(contrastive_loss(x, negative)) == pytest.approx(float(value[0]))
    value, _ = analysis.loss_shape("margin", "negative", torch.tensor([0.7]))
    assert float(margin_loss(x, negative, 1.2)) == pytest.approx(float(value[0]))


def test_loss_shapes_cover_every_loss_on_both_kinds_of_pair():
    data = analysis.loss_shapes(points=50)
    assert len(data.values) == 8 and data.labels["margin"] == "margin (β=1.2, α=0.2)"
    assert float(data.distances.min()) > 0 and float(data.distances.max()) < 2
    with pytest.raises(ValueError, match="unknown loss"):
        analysis.loss_shape("hinge", "negative", D)
    with pytest.raises(ValueError, match="pair"):
        analysis.loss_shape("margin", "anchor", D)


# ------------------------------------------------------------------ 5. training curves

LOG_HEADER = (
    "step,epoch,loss,active_fraction,beta,negative_distance,negative_distance_std,"
    "fallback,images_per_s,val_recall@1\n"
)


def write_run(path, loss="margin", sampling="distance-weighted", beta="1.2"):
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


def test_training_curves_read_the_log_and_label_by_loss_and_sampling(tmp_path):
    run = write_run(tmp_path / "a")
    other = write_run(tmp_path / "b", loss="triplet", sampling="hard", beta="nan")
    margin, triplet = analysis.training_curves([run, other / "log.csv"])
    assert margin.label == "margin + distance-weighted" and triplet.label == "triplet + hard"
    assert margin.step.tolist() == [1, 2, 3]
    assert margin.negative_distance.tolist() == [0.8, 0.9, 1.0]
    assert margin.active_fraction.tolist() == [0.5, 0.4, 0.3]
    assert bool(triplet.beta.isnan().all())


def test_training_curves_tell_runs_with_one_label_apart(tmp_path):
    curves = analysis.training_curves([write_run(tmp_path / "x"), write_run(tmp_path / "y")])
    assert [c.label for c in curves] == [
        "margin + distance-weighted (x)",
        "margin + distance-weighted (y)",
    ]


def test_training_curves_errors(tmp_path):
    with pytest.raises(ValueError, match=r"no log\.csv"):
        analysis.read_log(tmp_path)
    (tmp_path / "log.csv").write_text("step,loss\n1,0.5\n")
    with pytest.raises(ValueError, match="lacks the column"):
        analysis.read_log(tmp_path)


# --------------------------------------------------------------------- write_figures


def read_csv(path):
    with path.open() as handle:
        lines = [line for line in handle if not line.startswith("#")]
    return list(csv.DictReader(lines))


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 20_000


def assert_finite_csv(path):
    rows = read_csv(path)
    assert rows
    for row in rows:
        for value in row.values():
            try:
                number = float(value)
            except ValueError:
                continue  # a label
            assert math.isfinite(number), (path.name, row)


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    root = tmp_path_factory.mktemp("figures")
    run = write_run(root / "run")
    labels = torch.arange(12).repeat_interleave(5)
    centres = torch.randn(12, 16, generator=gen(3))
    x = torch.nn.functional.normalize(centres[labels] + 0.2 * torch.randn(60, 16), dim=1)
    written = analysis.write_figures(
        root / "out", dims=(2, 3, 128), draws=400, embeddings=(x, labels), logs=[run]
    )
    return root / "out", written


def test_write_figures_writes_a_png_and_a_finite_csv_per_figure(figures):
    out, written = figures
    assert written == [out / f"{name}.{ext}" for name in analysis.FIGURES for ext in ("png", "csv")]
    for name in analysis.FIGURES:
        assert_png(out / f"{name}.png")
        assert_finite_csv(out / f"{name}.csv")


def test_figure_csvs_state_their_setup_and_hold_the_data(figures):
    out, _ = figures
    text = (out / "gradient_variance.csv").read_text()
    assert "# set-up: n = 128" in text and "400 draws per distance" in text
    rows = read_csv(out / "gradient_variance.csv")
    assert {row["series"] for row in rows} >= {"curve", "strategy:hard"}
    assert {row["dim"] for row in read_csv(out / "sphere_distances.csv")} == {"2", "3", "128"}
    panels = {row["panel"] for row in read_csv(out / "sampled_distances.csv")}
    assert panels == {"0", "1", "2"}  # n = 16, n = 128, the given embeddings


def test_write_figures_is_seeded_and_order_independent(tmp_path):
    a = analysis.write_figures(tmp_path / "a", figures=["sphere_distances"], dims=(4,), draws=50)
    b = analysis.write_figures(
        tmp_path / "b", figures=["loss_shapes", "sphere_distances"], dims=(4,), draws=50
    )
    assert a[1].read_text() == b[3].read_text()
    c = analysis.write_figures(
        tmp_path / "c", figures=["sphere_distances"], dims=(4,), draws=50, seed=1
    )
    assert a[1].read_text() != c[1].read_text()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"figures": ["histogram"]}, "unknown figure"),
        ({"figures": ["training_curves"]}, "needs runs"),
        ({"dims": (1, 3)}, "each dimension must be an integer in"),
        ({"draws": 1}, "draws"),
        ({"figures": ["loss_shapes"], "logs": ["nowhere"]}, "only by figure 5"),
        ({"embeddings": (torch.randn(4, 3), torch.zeros(4, dtype=torch.int64))}, "2 classes"),
    ],
)
def test_write_figures_rejects_bad_input(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        analysis.write_figures(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_parsers():
    assert analysis.parse_dims("2,16, 512") == (2, 16, 512)
    assert analysis.parse_figures("3,1,sphere_distances") == (
        "gradient_variance",
        "sphere_distances",
    )
    for bad in ("2,x", "1", ""):
        with pytest.raises(ValueError):
            analysis.parse_dims(bad)
    for bad in ("0", "6", "figure"):
        with pytest.raises(ValueError, match="unknown figure"):
            analysis.parse_figures(bad)


# ------------------------------------------------------------------------------- CLI


def test_cli_figures_end_to_end(tmp_path, capsys):
    run = write_run(tmp_path / "run")
    labels = torch.arange(6).repeat_interleave(4)
    torch.save({"embeddings": torch.randn(24, 8), "labels": labels}, tmp_path / "emb.pt")
    command = ["figures", "--out", str(tmp_path / "out"), "--only", "2,5,loss_shapes"]
    command += ["--draws", "100", "--embeddings", str(tmp_path / "emb.pt"), "--logs", str(run)]
    assert main(command) == 0
    printed = capsys.readouterr().out.split()
    names = ("sampled_distances", "training_curves", "loss_shapes")
    assert printed == [str(tmp_path / "out" / f"{n}.{e}") for n in names for e in ("png", "csv")]
    assert all((tmp_path / "out" / p).exists() for p in printed)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--only", "9"], "unknown figure '9'"),
        (["--dims", "1,8"], "in [2, 65536]"),
        (["--logs", "nowhere"], "no log.csv"),
        (["--data", "kanji"], "need --run"),
        (["--only", "1", "--embeddings", "e.pt"], "only by figure 2"),
        (["--embeddings", "missing.pt"], "missing.pt is missing"),
        (["--run", "nowhere", "--only", "2"], "best.pt"),
    ],
)
def test_cli_figures_errors(tmp_path, capsys, options, message):
    assert main(["figures", "--out", str(tmp_path / "out"), "--draws", "10", *options]) == 2
    assert message in capsys.readouterr().err


def test_cli_figures_of_a_trained_run(glyph_folder, tmp_path, capsys):
    run = tmp_path / "run"
    train = ["train", "--data", f"folder:{glyph_folder}", "--model", "small-cnn", "--steps", "1"]
    train += ["--classes-per-batch", "3", "--samples-per-class", "3", "--embedding-dim", "8"]
    assert main([*train, "--out", str(run), "--quiet"]) == 0
    out = tmp_path / "out"
    command = ["figures", "--out", str(out), "--only", "2", "--draws", "20", "--run", str(run)]
    assert main(command) == 0
    assert "run: train split, n = 8" in (out / "sampled_distances.csv").read_text()
