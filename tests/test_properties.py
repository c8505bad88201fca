"""Property-based tests (hypothesis) of the functional API.

One property for every call: it either returns finite values with valid indices
(losses finite, gradients finite once a loss is backpropagated, distances finite;
every index of returned Triplets in range, anchor != positive, positives sharing the
anchor's label, negatives not), or raises ``ValueError`` with a message. Any other
exception, a NaN/Inf output or an out-of-range index fails.

Strategies draw shapes (dimension 1-4096, fewer rows when the dimension is large),
the four floating dtypes, label layouts, normalised and unnormalised embeddings,
NaN/Inf sprinkled into some examples, and the functions' keyword arguments. Scales
and hyperparameters stay where the exact result is representable in the dtype
(a squared distance of 1e40 has no float32 answer); out-of-range arguments (zero,
negative, NaN, Inf) are drawn on purpose.

``EXAMPLES`` counts the examples tried per function; tests/conftest.py prints it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import Tensor
from torch.nn.functional import normalize

from sampling_matters import batching, distances, evaluation, losses, sampling, sphere
from sampling_matters.sampling import Pairs, SamplingStats, Triplets

EXAMPLES: Counter[str] = Counter()
"""Examples tried, per function under test (reported by tests/conftest.py)."""


def _settings(max_examples: int) -> Any:
    return settings(
        derandomize=True,
        deadline=None,
        max_examples=max_examples,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# ------------------------------------------------------------------------ strategies

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
LABEL_DTYPES = [torch.int64, torch.int64, torch.int32, torch.int16, torch.uint8]
SCALES = {  # unnormalised embeddings: squared distances and gradients stay representable
    torch.float16: [1e-3, 1.0, 10.0, 100.0],
    torch.bfloat16: [1e-6, 1e-3, 1.0, 10.0, 1e3, 1e6],
    torch.float32: [1e-6, 1e-3, 1.0, 10.0, 1e3, 1e6],
    torch.float64: [1e-6, 1e-3, 1.0, 10.0, 1e3, 1e6],
}
LAYOUTS = ["one-class", "distinct", "pk", "shuffled", "singleton", "antipodal", "identical"]
ROW_BUDGET = 1 << 14  # N·D at most: a dimension of 4096 gets 4 rows
MAX_ROWS = 24

seeds = st.integers(0, 2**32 - 1)
specials = st.sampled_from([0.0, -0.0, -1.0, math.nan, math.inf, -math.inf])
margins = st.one_of(st.floats(-1.0, 10.0), specials)
dims = st.one_of(st.integers(1, 8), st.integers(9, 256), st.integers(257, 4096))


@dataclass(frozen=True)
class Batch:
    """Embeddings (N, D) and labels (N,) as a strategy drew them."""

    embeddings: Tensor
    labels: Tensor
    layout: str

    def __repr__(self) -> str:
        x = self.embeddings
        return (
            f"Batch({self.layout}, embeddings={tuple(x.shape)} {x.dtype} "
            f"finite={bool(torch.isfinite(x).all())}, labels={self.labels.tolist()})"
        )


@st.composite
def label_layouts(draw: st.DrawFn, layout: str, max_n: int) -> list[int]:
    """Class ids in one of the LAYOUTS, at most ``max_n`` of them."""
    offset = draw(st.sampled_from([0, 0, -3, 7, 100]))
    if layout == "one-class":
        return [offset] * draw(st.integers(0, max_n))
    if layout == "distinct":
        return [offset + i for i in draw(st.permutations(range(draw(st.integers(0, max_n)))))]
    if layout in ("pk", "singleton"):
        k = draw(st.integers(1 if layout == "pk" else 2, min(4, max_n - (layout == "singleton"))))
        p = draw(st.integers(1, max(1, (max_n - (layout == "singleton")) // k)))
        labels = [offset + 3 * c for c in range(p) for _ in range(k)]
        if layout == "singleton":
            labels.insert(draw(st.integers(0, len(labels))), offset + 3 * p + 1)
        return labels
    classes = 2 if layout == "antipodal" else draw(st.integers(1, 5))
    low = 2 if layout == "antipodal" else 0
    return draw(
        st.lists(st.integers(0, classes - 1).map(offset.__add__), min_size=low, max_size=max_n)
    )


@st.composite
def batches(draw: st.DrawFn, *, unit: st.SearchStrategy[bool] | None = None) -> Batch:
    """A batch of embeddings and labels, L2-normalised where ``unit`` (a coin) draws True."""
    dim = draw(dims)
    max_n = max(3, min(MAX_ROWS, ROW_BUDGET // dim))
    layout = draw(st.sampled_from(LAYOUTS))
    labels = torch.tensor(draw(label_layouts(layout, max_n)), dtype=torch.int64)
    n, dtype = len(labels), draw(st.sampled_from(DTYPES))
    generator = torch.Generator().manual_seed(draw(seeds))
    if layout == "identical":
        x = torch.randn(1, dim, generator=generator, dtype=torch.float64).expand(n, dim)
    elif layout == "antipodal":  # two classes at opposite poles: no admissible negative
        x = torch.zeros(n, dim, dtype=torch.float64)
        x[:, 0] = torch.where(labels == labels.min(), 1.0, -1.0)
    else:
        x = torch.randn(n, dim, generator=generator, dtype=torch.float64)
    unit = st.booleans() if unit is None else unit
    x = normalize(x, dim=1) if draw(unit) else x * draw(st.sampled_from(SCALES[dtype]))
    x = x.to(dtype).contiguous()
    if draw(st.booleans()):
        x = x.T.contiguous().T  # column-major: same values, other strides
    if n and draw(st.integers(0, 4)) == 0:
        x[draw(st.integers(0, n - 1)), draw(st.integers(0, dim - 1))] = draw(
            st.sampled_from([math.nan, math.inf, -math.inf])
        )
    labels = labels.to(draw(st.sampled_from(LABEL_DTYPES)))
    return Batch(x, labels, layout)


@st.composite
def index_tuples(draw: st.DrawFn, labels: Tensor, *, pairs: bool) -> Triplets | Pairs:
    """Triplets from a sampler, random (possibly out-of-range) ones, or Pairs."""
    n = len(labels)
    kind = draw(st.sampled_from(["sampled", "random"] + (["pairs"] if pairs else [])))
    if kind == "sampled":
        generator = torch.Generator().manual_seed(draw(seeds))
        return sampling.uniform(torch.zeros(n, 1), labels, generator=generator)
    lengths = [draw(st.integers(0, 12))] * 2
    lengths += [draw(st.integers(0, 12))] * 2 if kind == "pairs" else lengths[:1]
    dtype = draw(st.sampled_from([torch.int64] * 4 + [torch.int32]))
    fields = [
        torch.tensor(draw(st.lists(st.integers(-1, n), min_size=k, max_size=k)), dtype=dtype)
        for k in lengths
    ]
    return Pairs(*fields) if kind == "pairs" else Triplets(*fields)


@st.composite
def betas(draw: st.DrawFn, n: int) -> float | Tensor:
    """β: a float, or a () or (N,) tensor (sometimes of a wrong shape or with NaN)."""
    value = draw(margins)
    kind = draw(st.sampled_from(["float", "scalar", "per-row", "wrong-shape"]))
    if kind == "float":
        return value
    shape = {"scalar": (), "per-row": (n,), "wrong-shape": (n + 1,)}[kind]
    dtype = draw(st.sampled_from(DTYPES))
    beta = torch.full(shape, 1.2, dtype=torch.float64)
    if beta.numel():
        beta.view(-1)[draw(st.integers(0, beta.numel() - 1))] = value
    return beta.to(dtype).requires_grad_(draw(st.booleans()))


@st.composite
def distance_weighted_kwargs(draw: st.DrawFn) -> dict[str, Any]:
    """Cutoffs (typical, tiny, a hair apart, or invalid), density and bins."""
    regime = draw(st.sampled_from(["typical", "tiny", "tight", "invalid"]))
    if regime == "invalid":
        cutoff = draw(st.one_of(st.floats(-0.5, 2.5), specials))
        nonzero_loss_cutoff = draw(st.one_of(st.floats(-0.5, 3.0), specials))
    else:
        tiny = st.sampled_from([1e-300, 1e-30, 1e-19, 1e-12])
        cutoff = draw(tiny if regime == "tiny" else st.floats(1e-3, 1.9))
        above = [2 * cutoff, math.nextafter(cutoff, math.inf), cutoff + 1.4, math.inf]
        nonzero_loss_cutoff = draw(
            st.sampled_from(above[1:2] if regime == "tight" else above)
            | st.floats(1e-6, 3.0).map(lambda delta: cutoff + delta)
        )
    densities = ["sphere", "empirical"] + (["uniform"] if regime == "invalid" else [])
    return {
        "cutoff": cutoff,
        "nonzero_loss_cutoff": nonzero_loss_cutoff,
        "density": draw(st.sampled_from(densities)),
        "bins": draw(st.integers(-1 if regime == "invalid" else 1, 64)),
    }


def sampling_kwargs(name: str, data: st.DataObject) -> dict[str, Any]:
    """Random keyword arguments of the strategy ``name``."""
    kwargs: dict[str, Any] = {"generator": torch.Generator().manual_seed(data.draw(seeds))}
    if data.draw(st.booleans()):
        kwargs["stats"] = SamplingStats()
    if name == "semihard" and data.draw(st.booleans()):
        kwargs["margin"] = data.draw(margins, label="margin")
    if name == "distance_weighted":
        kwargs.update(data.draw(distance_weighted_kwargs(), label="kwargs"))
    return kwargs


# ------------------------------------------------------------------------- checks


def outcome(call: Callable[[], Any]) -> Any:
    """``call()``; None when it raised a ValueError with a message (others propagate)."""
    try:
        return call()
    except ValueError as error:
        assert str(error).strip(), "ValueError without a message"
        return None


def assert_finite(x: Tensor | None, what: str) -> None:
    assert x is None or bool(torch.isfinite(x).all()), f"{what} has NaN or Inf: {x}"


def assert_valid_triplets(triplets: Triplets, labels: Tensor) -> None:
    """In range, anchor != positive, same label for positives, another for negatives."""
    assert isinstance(triplets, Triplets)
    n = len(labels)
    for index in triplets:
        assert index.dtype == torch.int64 and index.dim() == 1
        assert len(index) == len(triplets.anchor)
        assert bool(((index >= 0) & (index < n)).all()), f"index out of [0, {n}): {index}"
    anchor, positive, negative = triplets
    assert bool((anchor != positive).all())
    assert bool((labels[positive] == labels[anchor]).all())
    assert bool((labels[negative] != labels[anchor]).all())
    sizes = (labels[:, None] == labels[None, :]).sum(1)  # (N,) class size of each item
    assert len(anchor) == int((sizes - 1)[sizes < n].sum()), "a positive pair was left out"


def assert_backward_finite(loss: Tensor, *leaves: Tensor) -> None:
    assert loss.shape == () and loss.is_floating_point()
    assert_finite(loss, "loss")
    loss.backward()
    for leaf in leaves:
        assert_finite(leaf.grad, "gradient")


# ------------------------------------------------------------------------- sampling

SAMPLERS = {
    "uniform": sampling.uniform,
    "hard": sampling.hard,
    "semihard": sampling.semihard,
    "distance_weighted": sampling.distance_weighted,
}


def check_sampling(name: str, data: st.DataObject, batch: Batch) -> None:
    kwargs = sampling_kwargs(name, data)
    EXAMPLES[name] += 1
    triplets = outcome(lambda: SAMPLERS[name](batch.embeddings, batch.labels, **kwargs))
    if triplets is not None:
        assert_valid_triplets(triplets, batch.labels)
        stats = kwargs.get("stats")
        assert stats is None or stats.triplets == len(triplets.anchor)


@pytest.mark.parametrize("name", ["uniform", "hard", "semihard"])
@given(data=st.data())
@_settings(100)
def test_sampling_returns_valid_triplets_or_raises_value_error(name, data):
    check_sampling(name, data, data.draw(batches(), label="batch"))


@given(data=st.data())
@_settings(400)
def test_distance_weighted_returns_valid_triplets_or_raises_value_error(data):
    unit = st.sampled_from([True, True, True, False])  # mostly on the sphere, where it samples
    check_sampling("distance_weighted", data, data.draw(batches(unit=unit), label="batch"))


REFERENCE_KINDS = ["valid"] * 6 + [
    "none",
    "empty",
    "no-labels",
    "no-references",
    "other-dim",
    "other-dtype",
    "nan",
    "bad-cap",
]


@st.composite
def references_beside(draw: st.DrawFn, batch: Batch) -> dict[str, Any]:
    """Reference keyword arguments for a batch: mostly valid (its D and dtype, labels
    overlapping its classes), sometimes empty, mismatched, half missing or with a NaN."""
    kind = draw(st.sampled_from(REFERENCE_KINDS))
    if kind == "none":
        return {}
    dim = batch.embeddings.shape[1]
    m = 0 if kind == "empty" else draw(st.integers(1, max(1, min(2 * MAX_ROWS, ROW_BUDGET // dim))))
    classes = [*sorted(set(batch.labels.long().tolist())), 250, 251]
    labels = draw(st.lists(st.sampled_from(classes), min_size=m, max_size=m))
    generator = torch.Generator().manual_seed(draw(seeds))
    x = torch.randn(m, dim + (kind == "other-dim"), generator=generator, dtype=torch.float64)
    x = normalize(x, dim=1) if draw(st.sampled_from([True, True, True, False])) else 3.0 * x
    other = torch.float32 if batch.embeddings.dtype == torch.float64 else torch.float64
    x = x.to(other if kind == "other-dtype" else batch.embeddings.dtype)
    if kind == "nan":
        x[0, 0] = math.nan
    kwargs = {
        "references": x,
        "reference_labels": torch.tensor(labels).to(draw(st.sampled_from(LABEL_DTYPES))),
        "max_reference_positives": -1 if kind == "bad-cap" else draw(st.integers(0, 10)),
    }
    kwargs.pop({"no-labels": "reference_labels", "no-references": "references"}.get(kind, ""), 0)
    return kwargs


def assert_valid_pool_triplets(
    triplets: Triplets, labels: Tensor, reference_labels: Tensor, cap: int
) -> None:
    """Anchors in the batch, every index in the pool, labels as promised, and every
    in-batch positive pair plus min(cap, its reference positives) per anchor with a
    negative in the pool."""
    pool_labels = torch.cat([labels.long(), reference_labels.long()])  # (P,)
    n, p = len(labels), len(pool_labels)
    assert isinstance(triplets, Triplets)
    for index in triplets:
        assert index.dtype == torch.int64 and index.dim() == 1
        assert len(index) == len(triplets.anchor)
        assert bool(((index >= 0) & (index < p)).all()), f"index out of [0, {p}): {index}"
    anchor, positive, negative = triplets
    assert bool((anchor < n).all()) and bool((anchor != positive).all())
    assert bool((pool_labels[positive] == pool_labels[anchor]).all())
    assert bool((pool_labels[negative] != pool_labels[anchor]).all())
    same = labels.long()[:, None] == pool_labels[None, :]  # (N, P)
    pairs = same[:, :n].sum(1) - 1 + same[:, n:].sum(1).clamp(max=cap)  # (N,)
    assert len(anchor) == int(pairs[same.sum(1) < p].sum()), "a positive pair was left out"


@pytest.mark.parametrize("name", SAMPLERS)
@given(data=st.data())
@_settings(100)
def test_sampling_with_references_returns_valid_pool_triplets_or_raises_value_error(name, data):
    unit = st.sampled_from([True, True, True, False])
    batch = data.draw(batches(unit=unit), label="batch")
    kwargs = sampling_kwargs(name, data) | data.draw(references_beside(batch), label="references")
    EXAMPLES[f"{name} with references"] += 1
    triplets = outcome(lambda: SAMPLERS[name](batch.embeddings, batch.labels, **kwargs))
    if triplets is not None:
        reference_labels = kwargs.get("reference_labels", batch.labels[:0])
        cap = kwargs.get("max_reference_positives", sampling.MAX_REFERENCE_POSITIVES)
        assert_valid_pool_triplets(triplets, batch.labels, reference_labels, cap)
        stats = kwargs.get("stats")
        assert stats is None or stats.triplets == len(triplets.anchor)


# --------------------------------------------------------------------------- losses


@pytest.mark.parametrize("name", ["margin_loss", "triplet_loss", "contrastive_loss"])
@given(data=st.data())
@_settings(80)
def test_loss_is_finite_with_finite_gradients_or_raises_value_error(name, data):
    batch = data.draw(batches(), label="batch")
    x = batch.embeddings.clone().requires_grad_(True)
    tuples = data.draw(index_tuples(batch.labels, pairs=name != "triplet_loss"), label="tuples")
    kwargs: dict[str, Any] = {}
    if data.draw(st.booleans()):
        kwargs["margin"] = data.draw(margins, label="margin")
    leaves = [x]
    if name == "margin_loss":
        beta = data.draw(betas(len(x)), label="beta")
        leaves += [beta] if isinstance(beta, Tensor) and beta.requires_grad else []
        kwargs["nu"] = data.draw(st.one_of(st.floats(0.0, 1.0), specials), label="nu")
        EXAMPLES[name] += 1
        loss = outcome(lambda: losses.margin_loss(x, tuples, beta, **kwargs))
    elif name == "triplet_loss":
        kwargs["squared"] = data.draw(st.booleans())
        EXAMPLES[name] += 1
        loss = outcome(lambda: losses.triplet_loss(x, tuples, **kwargs))
    else:
        EXAMPLES[name] += 1
        loss = outcome(lambda: losses.contrastive_loss(x, tuples, **kwargs))
    if loss is not None:
        assert_backward_finite(loss, *leaves)


MODULES = {"MarginLoss": losses.MarginLoss, "TripletLoss": losses.TripletLoss}
MODULES["ContrastiveLoss"] = losses.ContrastiveLoss


@pytest.mark.parametrize("name", MODULES)
@given(data=st.data())
@_settings(80)
def test_loss_module_is_finite_with_finite_gradients_or_raises_value_error(name, data):
    batch = data.draw(batches(), label="batch")
    kwargs: dict[str, Any] = {
        "sampling": data.draw(st.sampled_from(sorted(sampling.SAMPLINGS))),
        "generator": torch.Generator().manual_seed(data.draw(seeds)),
    }
    if data.draw(st.booleans()):
        kwargs["margin"] = data.draw(margins, label="margin")
    if name == "TripletLoss":
        kwargs["squared"] = data.draw(st.booleans())
    if name == "MarginLoss":
        kwargs["beta"] = data.draw(st.one_of(st.floats(0.0, 2.0), specials), label="beta")
        kwargs["learn_beta"] = data.draw(st.booleans())
        kwargs["nu"] = data.draw(st.one_of(st.floats(0.0, 1.0), specials), label="nu")
        n_classes = st.one_of(st.none(), st.integers(-1, 8), st.just(256))
        kwargs["n_classes"] = data.draw(n_classes, label="n_classes")
    EXAMPLES[name] += 1
    module = outcome(lambda: MODULES[name](**kwargs))
    if module is None:
        return
    x = batch.embeddings.clone().requires_grad_(True)
    loss = outcome(lambda: module(x, batch.labels))
    if loss is not None:
        assert_valid_triplets(module.last_triplets, batch.labels)
        assert_backward_finite(loss, x, *(p for p in module.parameters() if p.requires_grad))


# ------------------------------------------------------------------------ distances


@given(data=st.data())
@_settings(150)
def test_pairwise_distances_are_finite_non_negative_or_raise_value_error(data):
    batch = data.draw(batches(), label="x")
    x = batch.embeddings.clone().requires_grad_(True)
    y = None
    if data.draw(st.booleans()):
        rows = data.draw(st.integers(0, 8))
        dim = x.shape[1] + data.draw(st.sampled_from([0, 0, 0, 1, -1]))
        g = torch.Generator().manual_seed(data.draw(seeds))
        y = torch.randn(rows, max(dim, 0), generator=g).to(x.dtype)
    squared = data.draw(st.booleans())
    EXAMPLES["pairwise_distances"] += 1
    d = outcome(lambda: distances.pairwise_distances(x, y, squared=squared))
    if d is None:
        return
    assert d.shape == (len(x), len(x) if y is None else len(y))
    assert_finite(d, "distances")
    assert bool((d >= 0).all())
    if y is None:
        assert bool((d.diagonal() == 0).all())
    d.sum().backward()
    assert_finite(x.grad, "gradient")


# --------------------------------------------------------------------------- sphere


@given(data=st.data())
@_settings(150)
def test_log_distance_density_is_finite_inside_and_infinite_only_where_documented(data):
    dim = data.draw(st.one_of(st.integers(-1, 8), st.integers(9, 100_000)), label="dim")
    values = data.draw(
        st.lists(st.one_of(st.floats(-1.0, 3.0), st.sampled_from([0.0, 2.0])), max_size=16)
    )
    if data.draw(st.integers(0, 4)) == 0:
        values.append(data.draw(st.sampled_from([math.nan, math.inf, -math.inf])))
    as_float = len(values) == 1 and data.draw(st.booleans())
    d: Tensor | float = values[0] if as_float else torch.tensor(values, dtype=torch.float64)
    if isinstance(d, Tensor):
        d = d.to(data.draw(st.sampled_from(DTYPES)))
    EXAMPLES["log_distance_density"] += 1
    log_q = outcome(lambda: sphere.log_distance_density(d, dim))
    if log_q is None:
        return
    d = torch.as_tensor(d).double()
    assert log_q.shape == d.shape
    assert not bool(log_q.isnan().any()), f"NaN log density at {d[log_q.isnan()]}"
    vanishes = (d < 0) | (d > 2) | ((d == 0) & (dim > 2)) | ((d == 2) & (dim > 3))
    diverges = (d == 2) & (dim == 2)
    assert bool((log_q[vanishes] == -math.inf).all())
    assert bool((log_q[diverges] == math.inf).all())
    assert_finite(log_q[~vanishes & ~diverges], "log density inside (0, 2)")


@given(
    n=st.one_of(st.integers(-2, 24), st.sampled_from([3.0, True])),
    dim=st.one_of(st.integers(-1, 8), st.integers(9, 4096)),
    dtype=st.sampled_from(DTYPES),
    seed=seeds,
)
@_settings(100)
def test_uniform_on_sphere_gives_finite_unit_rows_or_raises_value_error(n, dim, dtype, seed):
    n = min(n, max(1, ROW_BUDGET // max(dim, 1))) if type(n) is int else n
    generator = torch.Generator().manual_seed(seed)
    EXAMPLES["uniform_on_sphere"] += 1
    x = outcome(lambda: sphere.uniform_on_sphere(n, dim, generator, dtype=dtype))
    if x is None:
        return
    assert x.shape == (n, dim) and x.dtype == dtype
    assert_finite(x, "points")
    tolerance = 1e-2 if dtype in (torch.float16, torch.bfloat16) else 1e-4
    assert torch.allclose(
        x.double().norm(dim=1), torch.ones(n, dtype=torch.float64), atol=tolerance
    )


# ------------------------------------------------------------------------- batching


@given(data=st.data())
@_settings(100)
def test_pk_sampler_batches_hold_p_classes_of_k_images_or_raise_value_error(data):
    layout = data.draw(st.sampled_from(LAYOUTS), label="layout")
    labels = data.draw(label_layouts(layout, 40), label="labels")
    as_type = data.draw(st.sampled_from(["list", "numpy", "tensor"]))
    given_labels = {"list": labels, "numpy": np.array(labels), "tensor": torch.tensor(labels)}
    p, k = data.draw(st.integers(-1, 6), label="P"), data.draw(st.integers(-1, 5), label="K")
    small_classes = data.draw(st.sampled_from(["repeat", "drop"]))
    seed, epoch = data.draw(seeds), data.draw(st.integers(0, 10))
    EXAMPLES["PKSampler"] += 1
    sampler = outcome(
        lambda: batching.PKSampler(
            given_labels[as_type], p, k, seed=seed, small_classes=small_classes
        )
    )
    if sampler is None:
        return
    sampler.set_epoch(epoch)
    batches_ = list(sampler)
    assert len(batches_) == len(sampler) > 0
    ids = torch.tensor(labels)
    counts = Counter(labels)
    for batch in batches_:
        assert len(batch) == p * k and all(0 <= i < len(labels) for i in batch)
        runs = ids[torch.tensor(batch)].view(p, k)  # (P, K)
        assert bool((runs == runs[:, :1]).all()), "a run of K mixes classes"
        assert len(set(runs[:, 0].tolist())) == p, "a batch repeats a class"
        assert all(counts[c] >= (k if small_classes == "drop" else 2) for c in runs[:, 0].tolist())
    seen = {i for batch in batches_ for i in batch}
    minimum = k if small_classes == "drop" else 2
    assert seen == {i for i, c in enumerate(labels) if counts[c] >= minimum}


# ----------------------------------------------------------------------- evaluation


@given(data=st.data())
@_settings(60)
def test_evaluate_scores_lie_in_unit_interval_or_raise_value_error(data):
    batch = data.draw(batches(), label="batch")
    kwargs: dict[str, Any] = {
        "ks": data.draw(st.lists(st.integers(-1, 10), max_size=4), label="ks"),
        "with_nmi": data.draw(st.booleans()),
        "backend": data.draw(st.sampled_from(["torch", "auto"])),
        "seed": data.draw(st.integers(0, 1000)),
    }
    if data.draw(st.integers(0, 3)) == 0:
        rows = data.draw(st.integers(0, 8))
        g = torch.Generator().manual_seed(data.draw(seeds))
        gallery = torch.randn(rows, batch.embeddings.shape[1], generator=g)
        kwargs["gallery"] = gallery.to(batch.embeddings.dtype)
        kwargs["gallery_labels"] = torch.randint(-3, 3, (rows,), generator=g)
    EXAMPLES["evaluate"] += 1
    scores = outcome(lambda: evaluation.evaluate(batch.embeddings, batch.labels, **kwargs))
    if scores is None:
        return
    for key in [f"recall@{k}" for k in kwargs["ks"]] + ["map@r", "r_precision"]:
        assert 0.0 <= scores[key] <= 1.0, f"{key} = {scores[key]}"
    assert (0.0 <= scores["nmi"] <= 1.0) if kwargs["with_nmi"] else math.isnan(scores["nmi"])
    assert 1 <= scores["n_queries"] <= len(batch.labels)
    assert scores["n_classes"] == len(torch.unique(batch.labels))
