"""Tests for sampling_matters.losses: each loss against a plain loop, β, registry, numerics."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.nn.functional import normalize

from sampling_matters.losses import (
    LOSSES,
    ContrastiveLoss,
    LossInputs,
    MarginLoss,
    SampledLoss,
    TripletLoss,
    contrastive_loss,
    make_loss,
    margin_loss,
    triplet_loss,
)
from sampling_matters.sampling import (
    SAMPLINGS,
    Pairs,
    SamplingStats,
    Triplets,
    distance_weighted,
)

N = 24
LAYOUTS = {
    "blocks": torch.arange(N) // 4,
    "shuffled": (torch.arange(N) // 3)[
        torch.randperm(N, generator=torch.Generator().manual_seed(1))
    ],
    "uneven": torch.tensor([0] * 7 + [1] * 2 + [2] * 5 + [3] + [4] * 6 + [5] * 3),
}


def _embeddings(n: int, dim: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return normalize(torch.randn(n, dim, generator=g, dtype=torch.float64), dim=1).to(dtype)


def _sample(sampling: str, x: Tensor, labels: Tensor, seed: int = 0) -> Triplets:
    strategy = SAMPLINGS[sampling]()
    return strategy(x.detach(), labels, generator=torch.Generator().manual_seed(seed))


def _empty() -> Triplets:
    return Triplets(*(torch.zeros(0, dtype=torch.int64) for _ in range(3)))


def _triplet(a: int, p: int, n: int) -> Triplets:
    return Triplets(torch.tensor([a]), torch.tensor([p]), torch.tensor([n]))


# ---------------------------------------------------------------- plain-loop references


def _dist(x: Tensor, i: int, j: int, squared: bool = False) -> Tensor:
    d2 = sum((x[i, k] - x[j, k]) ** 2 for k in range(x.shape[1]))
    assert isinstance(d2, Tensor)
    return d2 if squared else d2.sqrt()


def _loop_reduce(
    x: Tensor, terms: list[Tensor], penalty: Tensor | float = 0.0
) -> tuple[Tensor, float]:
    """The loss and the fraction of active terms."""
    active = sum(1 for t in terms if float(t.detach()) > 0)
    if active == 0:
        return x.sum() * 0, 0.0
    return (sum(terms) + penalty) / active, active / len(terms)  # type: ignore[return-value]


def _loop_contrastive(x: Tensor, pairs: Pairs, margin: float) -> tuple[Tensor, float]:
    terms = [_dist(x, int(a), int(p), squared=True) for a, p in zip(*pairs[:2], strict=True)]
    for a, n in zip(*pairs[2:], strict=True):
        terms.append(torch.relu(margin - _dist(x, int(a), int(n))) ** 2)
    return _loop_reduce(x, terms)


def _loop_triplet(x: Tensor, t: Triplets, margin: float, squared: bool) -> tuple[Tensor, float]:
    terms = []
    for a, p, n in zip(*t, strict=True):
        d_ap, d_an = _dist(x, int(a), int(p), squared), _dist(x, int(a), int(n), squared)
        terms.append(torch.relu(d_ap - d_an + margin))
    return _loop_reduce(x, terms)


def _loop_margin(
    x: Tensor, pairs: Pairs, beta: Callable[[int], Tensor], margin: float, nu: float
) -> tuple[Tensor, float]:
    terms, penalty = [], x.sum() * 0
    for a, p in zip(*pairs[:2], strict=True):
        terms.append(torch.relu(margin + (_dist(x, int(a), int(p)) - beta(int(a)))))
        penalty = penalty + nu * beta(int(a))
    for a, n in zip(*pairs[2:], strict=True):
        terms.append(torch.relu(margin - (_dist(x, int(a), int(n)) - beta(int(a)))))
    return _loop_reduce(x, terms, penalty)


def _assert_same(loss: Tensor, reference: tuple[Tensor, float], inputs: list[Tensor]) -> None:
    """Values and gradients with respect to ``inputs`` agree with the loop's."""
    reference_loss = reference[0]
    torch.testing.assert_close(loss, reference_loss, atol=1e-5, rtol=1e-5)
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    ref_grads = torch.autograd.grad(reference_loss, inputs, allow_unused=True)
    for grad, ref_grad, tensor in zip(grads, ref_grads, inputs, strict=True):
        grad = torch.zeros_like(tensor) if grad is None else grad
        ref_grad = torch.zeros_like(tensor) if ref_grad is None else ref_grad
        torch.testing.assert_close(grad, ref_grad, atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------- against the loops


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("sampling", sorted(SAMPLINGS))
def test_contrastive_matches_loop(layout: str, sampling: str) -> None:
    x = _embeddings(N, 6).requires_grad_()
    triplets = _sample(sampling, x, LAYOUTS[layout])
    for margin in (1.0, 1.3):
        reference = _loop_contrastive(x, triplets.to_pairs(), margin)
        _assert_same(contrastive_loss(x, triplets, margin=margin), reference, [x])


def test_contrastive_accepts_pairs_of_different_counts() -> None:
    x = _embeddings(10, 4).requires_grad_()
    g = torch.Generator().manual_seed(3)
    first = [torch.randint(0, 10, (k,), generator=g) for k in (5, 9)]
    second = [(i + torch.randint(1, 10, i.shape, generator=g)) % 10 for i in first]  # != first
    pairs = Pairs(first[0], second[0], first[1], second[1])
    _assert_same(contrastive_loss(x, pairs, margin=1.2), _loop_contrastive(x, pairs, 1.2), [x])


@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("sampling", sorted(SAMPLINGS))
def test_triplet_matches_loop(layout: str, sampling: str, squared: bool) -> None:
    x = _embeddings(N, 6).requires_grad_()
    triplets = _sample(sampling, x, LAYOUTS[layout])
    reference = _loop_triplet(x, triplets, 0.2, squared)
    _assert_same(triplet_loss(x, triplets, margin=0.2, squared=squared), reference, [x])


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("sampling", sorted(SAMPLINGS))
def test_margin_matches_loop(layout: str, sampling: str) -> None:
    x = _embeddings(N, 6).requires_grad_()
    triplets = _sample(sampling, x, LAYOUTS[layout])
    g = torch.Generator().manual_seed(2)
    beta = (1.0 + 0.3 * torch.rand(N, generator=g, dtype=torch.float64)).requires_grad_()
    for nu in (0.0, 0.1):
        reference = _loop_margin(x, triplets.to_pairs(), lambda i: beta[i], 0.2, nu)
        _assert_same(margin_loss(x, triplets, beta, margin=0.2, nu=nu), reference, [x, beta])
    scalar = _loop_margin(x, triplets.to_pairs(), lambda i: torch.tensor(1.1), 0.2, 0.0)
    _assert_same(margin_loss(x, triplets, 1.1), scalar, [x])


# ---------------------------------------------------------------- modules and β


class _Recorder:
    """A sampling callable that remembers the triplets it returned."""

    def __init__(self, name: str = "uniform") -> None:
        self.fn, self.calls = SAMPLINGS[name](), list[Triplets]()

    def __call__(
        self,
        embeddings: Tensor,
        labels: Tensor,
        *,
        generator: torch.Generator | None = None,
        stats: SamplingStats | None = None,
    ) -> Triplets:
        self.calls.append(self.fn(embeddings, labels, generator=generator, stats=stats))
        return self.calls[-1]


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_module_matches_loop_and_reports(name: str) -> None:
    x, labels = _embeddings(N, 6).requires_grad_(), LAYOUTS["uneven"]
    recorder = _Recorder()
    module = make_loss(name, sampling=recorder, generator=torch.Generator().manual_seed(0))
    loss = module.double()(x, labels)
    t = recorder.calls[-1]
    if name == "contrastive":
        reference = _loop_contrastive(x, t.to_pairs(), 1.0)
    elif name == "margin":
        reference = _loop_margin(x, t.to_pairs(), lambda i: torch.tensor(1.2), 0.2, 0.0)
    else:
        reference = _loop_triplet(x, t, 0.2, squared=name == "triplet-squared")
    _assert_same(loss, reference, [x])
    assert module.last_stats.triplets == len(t.anchor) > 0
    assert module.last_active_fraction == pytest.approx(reference[1])
    assert 0 < module.last_active_fraction < 1


def test_margin_module_beta_terms_match_loop() -> None:
    labels = LAYOUTS["shuffled"]
    indices = torch.randperm(50, generator=torch.Generator().manual_seed(4))[:N]
    recorder = _Recorder("distance-weighted")
    module = MarginLoss(n_classes=8, n_items=50, nu=0.05, sampling=recorder).double()
    assert module.beta_class is not None and module.beta_image is not None
    with torch.no_grad():
        module.beta_class.uniform_(-0.1, 0.1)
        module.beta_image.uniform_(-0.1, 0.1)
    params = [module.beta0, module.beta_class, module.beta_image]

    def beta_of(i: int) -> Tensor:
        return params[0] + params[1][labels[i]] + params[2][indices[i]]

    torch.testing.assert_close(
        module.beta_values(labels, indices), torch.stack([beta_of(i) for i in range(N)])
    )
    x = _embeddings(N, 6).requires_grad_()
    loss = module(x, labels, indices)
    reference = _loop_margin(x, recorder.calls[-1].to_pairs(), beta_of, 0.2, 0.05)
    _assert_same(loss, reference, [x, *params])
    loss = module(x, labels, indices)
    loss.backward()
    anchors = recorder.calls[-1].anchor
    assert module.beta_class.grad is not None and module.beta_image.grad is not None
    assert bool(module.beta_class.grad[labels[anchors].unique()].ne(0).any())
    untouched = torch.ones(50, dtype=torch.bool)
    untouched[indices[anchors]] = False
    assert bool((module.beta_image.grad[untouched] == 0).all())  # only anchors' β move


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.int32])
def test_margin_module_beta_terms_take_labels_and_indices_of_any_integer_dtype(
    dtype: torch.dtype,
) -> None:
    labels, indices = torch.tensor([0, 0, 1, 1, 2, 2]), torch.tensor([5, 4, 3, 2, 1, 0])
    module = MarginLoss(n_classes=3, n_items=6, sampling="uniform")
    assert module.beta_class is not None and module.beta_image is not None
    with torch.no_grad():
        module.beta_class.uniform_(-0.1, 0.1)
        module.beta_image.uniform_(-0.1, 0.1)
    expected = module.beta_values(labels, indices)
    # uint8 once indexed as a boolean mask, int16 not at all (IndexError)
    torch.testing.assert_close(module.beta_values(labels.to(dtype), indices.to(dtype)), expected)
    loss = module(_embeddings(6, 4, dtype=torch.float32), labels.to(dtype), indices.to(dtype))
    assert torch.isfinite(loss)


def test_beta_param_group_holds_exactly_the_beta_parameters() -> None:
    full = MarginLoss(n_classes=3, n_items=7)
    group = full.beta_param_group(0.01)
    assert group["lr"] == 0.01 and group["name"] == "beta"
    assert {id(p) for p in group["params"]} == {id(p) for p in full.parameters()}
    assert len(group["params"]) == 3
    plain = MarginLoss()
    assert plain.beta_class is None and plain.beta_image is None
    assert [id(p) for p in plain.beta_param_group(0.5)["params"]] == [id(plain.beta0)]
    frozen = MarginLoss(beta=0.9, learn_beta=False)
    assert not frozen.beta0.requires_grad and float(frozen.beta0) == pytest.approx(0.9)
    model = nn.Linear(4, 4)
    optimiser = torch.optim.SGD(
        [{"params": model.parameters()}, full.beta_param_group(0.01)], lr=0.1
    )
    assert optimiser.param_groups[1]["lr"] == 0.01


def test_nu_penalty_adds_nu_sum_beta_over_triplets_to_the_numerator() -> None:
    x, labels = _embeddings(N, 6), LAYOUTS["blocks"]
    triplets = _sample("uniform", x, labels)
    beta = torch.linspace(1.0, 1.3, N, dtype=torch.float64)
    base = margin_loss(x, triplets, beta)
    pairs = triplets.to_pairs()
    d_pos = (x[pairs.positive_anchor] - x[pairs.positive]).norm(dim=1)
    d_neg = (x[pairs.negative_anchor] - x[pairs.negative]).norm(dim=1)
    b_pos, b_neg = beta[pairs.positive_anchor], beta[pairs.negative_anchor]
    n_active = int((0.2 + d_pos - b_pos > 0).sum() + (0.2 - d_neg + b_neg > 0).sum())
    penalised = margin_loss(x, triplets, beta, nu=0.3)
    torch.testing.assert_close(penalised - base, 0.3 * beta[triplets.anchor].sum() / n_active)


def test_learned_beta_moves_with_the_optimiser() -> None:
    x, labels = _embeddings(N, 6, dtype=torch.float32), LAYOUTS["blocks"]
    module = MarginLoss(n_classes=6, generator=torch.Generator().manual_seed(0))
    optimiser = torch.optim.SGD([module.beta_param_group(0.5)])
    before = module.beta0.detach().clone()
    module(x.requires_grad_(), labels).backward()
    optimiser.step()
    assert not torch.equal(before, module.beta0.detach())


# ----------------------------------------------------------------------- registry


@pytest.mark.parametrize("sampling", sorted(SAMPLINGS))
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_trains_one_step_with_every_sampling(name: str, sampling: str) -> None:
    torch.manual_seed(0)
    model = nn.Linear(8, 16)
    g = torch.Generator().manual_seed(0)
    inputs, labels = torch.randn(N, 8, generator=g), LAYOUTS["shuffled"]
    loss_fn = make_loss(name, sampling=sampling, generator=g)
    params = [{"params": model.parameters()}]
    if isinstance(loss_fn, MarginLoss):
        params.append(loss_fn.beta_param_group(0.01))
    optimiser = torch.optim.SGD(params, lr=0.1)
    loss = loss_fn(normalize(model(inputs), dim=1), labels)
    loss.backward()
    assert bool(torch.isfinite(loss)) and loss.dim() == 0
    grads = [p.grad for p in model.parameters()]
    assert all(grad is not None and bool(torch.isfinite(grad).all()) for grad in grads)
    optimiser.step()
    assert loss_fn.last_stats.triplets > 0


def test_registry_builds_the_named_modules() -> None:
    assert isinstance(make_loss("contrastive"), ContrastiveLoss)
    assert isinstance(make_loss("margin"), MarginLoss)
    plain, squared = make_loss("triplet"), make_loss("triplet-squared")
    assert isinstance(plain, TripletLoss) and isinstance(squared, TripletLoss)
    assert not plain.squared and squared.squared


# ----------------------------------------------------------------------- numerics


def _finite_step(module: nn.Module, x: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    x = x.detach().requires_grad_()
    loss = module(x, labels)
    (grad,) = torch.autograd.grad(loss, [x])
    assert bool(torch.isfinite(loss)), loss
    assert bool(torch.isfinite(grad).all())
    return loss, grad


@pytest.mark.parametrize("dim", [2, 3, 128, 4096])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_finite_in_any_dimension(name: str, dim: int) -> None:
    module = make_loss(name, generator=torch.Generator().manual_seed(0))
    _finite_step(module, _embeddings(16, dim, dtype=torch.float32), torch.arange(16) // 4)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_half_precision_inputs(name: str, dtype: torch.dtype) -> None:
    module = make_loss(name, generator=torch.Generator().manual_seed(0))
    x = _embeddings(32, 64, dtype=dtype)
    loss, grad = _finite_step(module, x, torch.arange(32) // 4)
    assert loss.dtype == torch.float32 and grad.dtype == dtype


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_identical_embeddings(name: str) -> None:
    x = normalize(torch.ones(12, 8), dim=1)
    loss, grad = _finite_step(make_loss(name), x, torch.arange(12) // 3)
    assert float(loss.detach()) > 0 and bool((grad == 0).all())  # every distance is 0: no direction


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_one_class_gives_zero_loss_and_zero_gradient(name: str) -> None:
    module = make_loss(name)
    loss, grad = _finite_step(
        module, _embeddings(8, 4, dtype=torch.float32), torch.zeros(8, dtype=torch.int64)
    )
    assert float(loss.detach()) == 0.0 and bool((grad == 0).all())
    assert module.last_stats.triplets == 0 and module.last_stats.anchors_without_negative == 8
    assert module.last_active_fraction == 0.0


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_class_with_one_image(name: str) -> None:
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2])
    recorder = _Recorder("distance-weighted")
    module = LOSSES[name](sampling=recorder)
    _finite_step(module, _embeddings(7, 5, dtype=torch.float32), labels)
    t = recorder.calls[-1]
    assert len(t.anchor) == 12 and not bool(((t.anchor == 6) | (t.positive == 6)).any())


def test_zero_triplets() -> None:
    x = _embeddings(5, 3).requires_grad_()
    beta = torch.full((5,), 1.2, dtype=torch.float64, requires_grad=True)
    for loss in (
        contrastive_loss(x, _empty()),
        triplet_loss(x, _empty()),
        triplet_loss(x, _empty(), squared=True),
        margin_loss(x, _empty(), beta, nu=0.5),
    ):
        assert float(loss.detach()) == 0.0 and loss.requires_grad
        grad_x, grad_beta = torch.autograd.grad(loss, [x, beta], allow_unused=True)
        assert grad_x is not None and bool((grad_x == 0).all())
        assert grad_beta is None or bool((grad_beta == 0).all())


def test_zero_active_terms_give_exactly_zero_loss_and_gradient() -> None:
    # anchor 0, positive 1 at the same point (D = 0), negative 2 far away (D = 5)
    x = torch.tensor([[0.0, 0.0], [0.0, 0.0], [3.0, 4.0]], dtype=torch.float64)
    x.requires_grad_()
    beta = torch.full((3,), 1.0, dtype=torch.float64, requires_grad=True)
    t = _triplet(0, 1, 2)
    for loss in (
        contrastive_loss(x, t, margin=1.0),
        triplet_loss(x, t, margin=0.2),
        triplet_loss(x, t, margin=0.2, squared=True),
        margin_loss(x, t, beta, margin=0.2, nu=0.5),  # the penalty is dropped as well
    ):
        assert float(loss.detach()) == 0.0
        grads = torch.autograd.grad(loss, [x, beta], allow_unused=True)
        assert all(grad is None or bool((grad == 0).all()) for grad in grads)
    margin_loss(x, t, beta, nu=0.5).backward()  # still on the graph
    assert x.grad is not None and beta.grad is not None and float(beta.grad.abs().sum()) == 0


def test_module_zero_active_fraction() -> None:
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [-1.0, 0.0]])
    module = TripletLoss(sampling="hard")
    loss = module(x.requires_grad_(), torch.tensor([0, 0, 1, 1]))
    assert float(loss.detach()) == 0.0 and module.last_active_fraction == 0.0
    assert module.last_stats.triplets == 4


# ------------------------------------------------------ references: the functions

M = 10
POOL_LABELS = torch.arange(N + M) % 5  # batch rows 0..N-1, then the references


def _pool_triplets(n: int, m: int, count: int, seed: int = 0) -> Triplets:
    """Random triplets into a pool of n batch rows and m references: anchors in [0, n)."""
    g = torch.Generator().manual_seed(seed)
    anchor = torch.randint(0, n, (count,), generator=g)
    positive, negative = (  # never the anchor itself
        (anchor + torch.randint(1, n + m, (count,), generator=g)) % (n + m) for _ in range(2)
    )
    return Triplets(anchor, positive, negative)


def _with_references(
    name: str, x: Tensor, t: Triplets, refs: Tensor | None, beta: Tensor
) -> Tensor:
    """The functional loss ``name`` on x, the triplets, and the references (or None)."""
    if name == "contrastive":
        return contrastive_loss(x, t, margin=1.3, references=refs)
    if name == "margin":
        return margin_loss(x, t, beta, margin=0.2, nu=0.1, references=refs)
    return triplet_loss(x, t, margin=0.2, squared=name == "triplet-squared", references=refs)


@pytest.mark.parametrize("name", ["contrastive", "margin", "triplet", "triplet-squared"])
def test_functional_losses_with_references_match_the_loop_on_the_pool(name: str) -> None:
    x, refs = _embeddings(N, 6).requires_grad_(), _embeddings(M, 6, seed=1).requires_grad_()
    t = _pool_triplets(N, M, 40)
    assert bool((t.positive >= N).any() and (t.negative >= N).any())
    beta = (1.0 + 0.3 * torch.rand(N, dtype=torch.float64)).requires_grad_()
    pool = torch.cat([x, refs])  # (N + M, 6) the loop reads the pool itself
    if name == "contrastive":
        reference = _loop_contrastive(pool, t.to_pairs(), 1.3)
    elif name == "margin":
        reference = _loop_margin(pool, t.to_pairs(), lambda i: beta[i], 0.2, 0.1)
    else:
        reference = _loop_triplet(pool, t, 0.2, squared=name == "triplet-squared")
    _assert_same(_with_references(name, x, t, refs, beta), reference, [x, refs, beta])


@pytest.mark.parametrize("name", ["contrastive", "margin", "triplet", "triplet-squared"])
def test_gradient_reaches_references_only_when_they_require_it(name: str) -> None:
    x, memory = _embeddings(N, 6).requires_grad_(), _embeddings(M, 6, seed=1)
    t, beta = _pool_triplets(N, M, 40), torch.full((N,), 1.2, dtype=torch.float64)
    loss = _with_references(name, x, t, memory, beta)  # a memory: detached rows
    loss.backward()
    assert memory.grad is None and x.grad is not None and bool(x.grad.ne(0).any())
    batch_only = x.grad.clone()
    x.grad = None
    gathered = memory.clone().requires_grad_()  # another process's rows, with gradient
    _with_references(name, x, t, gathered, beta).backward()
    assert gathered.grad is not None and bool(gathered.grad.ne(0).any())
    torch.testing.assert_close(x.grad, batch_only)  # the batch's gradient is the same
    used = torch.cat([t.positive, t.negative])
    unused = torch.ones(M, dtype=torch.bool)
    unused[used[used >= N] - N] = False
    assert bool((gathered.grad[unused] == 0).all())


def test_references_give_the_loss_of_the_concatenated_pool() -> None:
    x, refs = _embeddings(N, 6), _embeddings(M, 6, seed=1)
    t, pool = _pool_triplets(N, M, 30), torch.cat([x, refs])
    beta = torch.linspace(1.0, 1.3, N, dtype=torch.float64)
    assert torch.equal(triplet_loss(x, t, references=refs), triplet_loss(pool, t))
    assert torch.equal(contrastive_loss(x, t, references=refs), contrastive_loss(pool, t))
    padded = torch.cat([beta, torch.zeros(M, dtype=torch.float64)])  # never read: anchors < N
    assert torch.equal(margin_loss(x, t, beta, references=refs), margin_loss(pool, t, padded))
    empty = refs[:0]  # an empty memory: the batch alone
    t_batch = _sample("uniform", x, LAYOUTS["blocks"])
    assert torch.equal(triplet_loss(x, t_batch, references=empty), triplet_loss(x, t_batch))


def test_references_never_build_the_pool_matrix() -> None:
    # a (200,000)² matrix would need 160 GB; only the sampled pairs are computed
    x, refs = _embeddings(4, 3, dtype=torch.float32), torch.zeros(200_000, 3)
    refs[-1] = torch.tensor([1.0, 0.0, 0.0])
    t = Triplets(torch.tensor([0, 1]), torch.tensor([4 + 199_999, 2]), torch.tensor([3, 4]))
    loss = triplet_loss(x.requires_grad_(), t, references=refs)
    assert bool(torch.isfinite(loss))


# ------------------------------------------------------- references: the modules


class _PoolStrategy:
    """Every (anchor, positive) pair of the pool with a uniform negative, by a plain loop.

    Takes the keywords a strategy takes (``references``, ``reference_labels``,
    ``generator``, ``stats``); records what it was given.
    """

    KEYWORDS = frozenset({"references", "reference_labels", "generator", "stats"})

    def __init__(self) -> None:
        self.given: list[tuple[Tensor, dict[str, Any]]] = []

    def __call__(self, embeddings: Tensor, labels: Tensor, **given: Any) -> Triplets:
        assert set(given) <= self.KEYWORDS, set(given)
        self.given.append((embeddings, given))
        more = given.get("reference_labels")
        pool = labels if more is None else torch.cat([labels, more])
        rows: list[tuple[int, int, int]] = []
        for a in range(len(labels)):
            negatives = (pool != pool[a]).nonzero().view(-1)
            for p in (pool == pool[a]).nonzero().view(-1).tolist():
                if p != a and len(negatives):
                    pick = torch.randint(len(negatives), (1,), generator=given["generator"])
                    rows.append((a, p, int(negatives[pick])))
        if given.get("stats") is not None:
            given["stats"].triplets = len(rows)
        return Triplets(*torch.tensor(rows, dtype=torch.int64).view(-1, 3).T)


def _module_case(name: str) -> tuple[SampledLoss, _PoolStrategy, Tensor, Tensor, Tensor]:
    strategy = _PoolStrategy()
    module = make_loss(name, sampling=strategy, generator=torch.Generator().manual_seed(0))
    x = _embeddings(N, 6).requires_grad_()
    return module.double(), strategy, x, POOL_LABELS[:N], _embeddings(M, 6, seed=1)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_modules_sample_from_references_and_match_the_functions(name: str) -> None:
    module, strategy, x, labels, memory = _module_case(name)
    loss = module(x, labels, references=memory, reference_labels=POOL_LABELS[N:])
    t = module.last_triplets
    assert t is not None and module.last_stats.triplets == len(t.anchor) > 0
    assert bool((t.anchor < N).all() and (t.positive >= N).any() and (t.negative >= N).any())
    embeddings, given = strategy.given[-1]
    assert set(given) == _PoolStrategy.KEYWORDS and not embeddings.requires_grad
    assert given["references"] is not None and not given["references"].requires_grad
    if name == "margin":
        expected = margin_loss(x, t, 1.2, references=memory)
    elif name == "contrastive":
        expected = contrastive_loss(x, t, references=memory)
    else:
        expected = triplet_loss(x, t, squared=name == "triplet-squared", references=memory)
    torch.testing.assert_close(loss, expected)
    assert 0 < module.last_active_fraction <= 1
    loss.backward()
    assert x.grad is not None and memory.grad is None  # a memory: only the batch is trained


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_modules_pass_gradient_to_references_that_require_it(name: str) -> None:
    module, _, x, labels, rows = _module_case(name)
    rows.requires_grad_()
    module(x, labels, references=rows, reference_labels=POOL_LABELS[N:]).backward()
    assert rows.grad is not None and bool(rows.grad.ne(0).any())


def test_strategies_without_references_still_work_without_them() -> None:
    recorder = _Recorder()  # takes no references argument
    module = TripletLoss(sampling=recorder, generator=torch.Generator().manual_seed(0))
    module(_embeddings(N, 6), LAYOUTS["blocks"])
    assert module.last_triplets is recorder.calls[-1]


def test_margin_beta_reads_anchors_only_never_the_per_image_table_at_reference_rows() -> None:
    labels, n_items = POOL_LABELS[:N], N + M + 20
    indices = torch.randperm(n_items, generator=torch.Generator().manual_seed(5))[:N]
    module = MarginLoss(n_classes=5, n_items=n_items, nu=0.05, sampling=_PoolStrategy())
    module = module.double()
    assert module.beta_class is not None and module.beta_image is not None
    with torch.no_grad():
        module.beta_class.uniform_(-0.1, 0.1)
        module.beta_image.uniform_(-0.1, 0.1)
    params = [module.beta0, module.beta_class, module.beta_image]

    def beta_of(i: int) -> Tensor:  # i is an anchor, a batch row
        assert i < N, "β read at a reference row"
        return params[0] + params[1][labels[i]] + params[2][indices[i]]

    x, memory = _embeddings(N, 6).requires_grad_(), _embeddings(M, 6, seed=1)
    loss = module(x, labels, indices, references=memory, reference_labels=POOL_LABELS[N:])
    t = module.last_triplets
    assert t is not None and bool((t.positive >= N).any())
    pool = torch.cat([x, memory])
    _assert_same(loss, _loop_margin(pool, t.to_pairs(), beta_of, 0.2, 0.05), [x, *params])
    module(x, labels, indices, references=memory, reference_labels=POOL_LABELS[N:]).backward()
    t, grad = module.last_triplets, module.beta_image.grad
    assert t is not None and grad is not None
    read = torch.zeros(n_items, dtype=torch.bool)
    read[indices[t.anchor]] = True
    assert bool((grad[~read] == 0).all()) and bool(grad[read].ne(0).any())


def test_a_new_loss_is_one_subclass_with_its_terms() -> None:
    class SoftTriplet(SampledLoss):
        def terms(self, inputs: LossInputs, triplets: Triplets) -> tuple[Tensor, Tensor | None]:
            x, refs = inputs.embeddings, inputs.references
            pool = x if refs is None else torch.cat([x, refs])
            d_ap = (pool[triplets.anchor] - pool[triplets.positive]).norm(dim=1)
            d_an = (pool[triplets.anchor] - pool[triplets.negative]).norm(dim=1)
            return nn.functional.softplus(d_ap - d_an), None

    module = SoftTriplet(sampling=_PoolStrategy(), generator=torch.Generator().manual_seed(0))
    x, memory = _embeddings(N, 6).requires_grad_(), _embeddings(M, 6, seed=1)
    loss = module(x, POOL_LABELS[:N], references=memory, reference_labels=POOL_LABELS[N:])
    loss.backward()
    assert module.last_stats.triplets > 0 and module.last_active_fraction == 1.0
    assert x.grad is not None and "sampling=" in repr(module)
    with pytest.raises(NotImplementedError, match="terms"):
        SampledLoss(sampling="uniform")(x, LAYOUTS["blocks"])


def test_module_repr_names_hyperparameters_and_sampling() -> None:
    assert "margin=0.3, squared=True, sampling='hard'" in repr(
        TripletLoss(margin=0.3, squared=True, sampling="hard")
    )
    assert "margin=0.2, nu=0.0, sampling='distance-weighted'" in repr(MarginLoss())
    assert "sampling=<" in repr(ContrastiveLoss(sampling=_PoolStrategy()))  # a callable's repr


_TAKES_REFERENCES = "references" in inspect.signature(distance_weighted).parameters


@pytest.mark.skipif(not _TAKES_REFERENCES, reason="distance_weighted takes no references yet")
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_modules_with_distance_weighted_sampling_and_a_memory(name: str) -> None:
    g = torch.Generator().manual_seed(0)
    module = make_loss(name, sampling="distance-weighted", generator=g)
    x = _embeddings(32, 16, dtype=torch.float32).requires_grad_()
    memory = _embeddings(256, 16, seed=1, dtype=torch.float32)
    labels, memory_labels = torch.arange(32) // 4, torch.arange(256) % 8
    loss = module(x, labels, references=memory, reference_labels=memory_labels)
    loss.backward()
    t = module.last_triplets
    assert t is not None and bool((t.anchor < 32).all() and (t.negative >= 32).any())
    pool_labels = torch.cat([labels, memory_labels])
    assert bool((pool_labels[t.anchor] == pool_labels[t.positive]).all())
    assert bool((pool_labels[t.anchor] != pool_labels[t.negative]).all())
    assert bool(torch.isfinite(loss)) and x.grad is not None and memory.grad is None


# -------------------------------------------------------------------- bad input

X = _embeddings(4, 3)
T = _triplet(0, 1, 2)
I = torch.tensor([0])  # noqa: E741
L = torch.tensor([0, 0, 1, 1])

BAD_CALLS: dict[str, tuple[Callable[[], object], str]] = {
    "1-d embeddings": (lambda: triplet_loss(X[0], T), r"shape \(N, D\)"),
    "integer embeddings": (lambda: triplet_loss(X.long(), T), "floating-point"),
    "nan embeddings": (lambda: triplet_loss(X * float("nan"), T), "NaN or Inf"),
    "list not triplets": (lambda: triplet_loss(X, [I, I, I]), "Triplets"),  # type: ignore[arg-type]
    "pairs to triplet": (lambda: triplet_loss(X, T.to_pairs()), "Triplets, got Pairs"),  # type: ignore[arg-type]
    "float index": (
        lambda: triplet_loss(X, Triplets(I.float(), I, I)),
        "anchor must be a 1-d int64",
    ),
    "int32 index": (
        lambda: contrastive_loss(X, Triplets(I, I.int(), I)),
        "positive must be a 1-d int64",
    ),
    "2-d index": (lambda: triplet_loss(X, Triplets(I, I, I[None])), "negative must be a 1-d"),
    "out of range": (lambda: triplet_loss(X, _triplet(0, 4, 1)), r"\[0, N\) = \[0, 4\)"),
    "negative index": (lambda: margin_loss(X, _triplet(-1, 0, 1), 1.0), r"\[0, N\)"),
    "unequal lengths": (
        lambda: triplet_loss(X, Triplets(I, torch.tensor([0, 1]), I)),
        "equal lengths",
    ),
    "unequal pairs": (
        lambda: contrastive_loss(X, Pairs(I, torch.tensor([0, 1]), I, I)),
        "equal lengths",
    ),
    "beta shape": (lambda: margin_loss(X, T, torch.ones(3)), r"shape \(\) or \(N,\) = \(4,\)"),
    "beta integer": (lambda: margin_loss(X, T, torch.ones(4).long()), "floating tensor"),
    "beta nan": (lambda: margin_loss(X, T, float("nan")), "beta must be a finite number"),
    "beta tensor inf": (lambda: margin_loss(X, T, torch.full((4,), float("inf"))), "NaN or Inf"),
    "contrastive margin": (lambda: contrastive_loss(X, T, margin=-0.1), "margin must be .* >= 0"),
    "triplet margin": (lambda: triplet_loss(X, T, margin=0.0), "margin must be .* > 0"),
    "margin margin": (lambda: margin_loss(X, T, 1.0, margin=-1.0), "margin must be .* > 0"),
    "negative nu": (lambda: margin_loss(X, T, 1.0, nu=-0.1), "nu must be .* >= 0"),
    "inf margin": (lambda: triplet_loss(X, T, margin=float("inf")), "finite"),
    "bool margin": (lambda: triplet_loss(X, T, margin=True), "margin must be"),
    "unknown loss": (lambda: make_loss("quadruplet"), r"unknown loss .*'contrastive'.*'margin'"),
    "unknown sampling": (lambda: TripletLoss(sampling="easy"), r"unknown sampling .*'hard'"),
    "sampling not callable": (lambda: MarginLoss(sampling=3), "callable"),  # type: ignore[arg-type]
    "module margin": (lambda: ContrastiveLoss(margin=-1), "margin must be"),
    "module beta": (lambda: MarginLoss(beta=-0.5), "beta must be .* >= 0"),
    "n_classes": (lambda: MarginLoss(n_classes=0), "n_classes must be a positive integer"),
    "n_items": (lambda: MarginLoss(n_items=2.5), "n_items must be a positive integer"),  # type: ignore[arg-type]
    "lr": (lambda: MarginLoss().beta_param_group(0.0), "lr must be .* > 0"),
    "labels beyond n_classes": (
        lambda: MarginLoss(n_classes=2)(X, torch.tensor([0, 0, 2, 2])),
        r"labels must lie in \[0, n_classes\) = \[0, 2\)",
    ),
    "missing indices": (
        lambda: MarginLoss(n_items=10)(X, torch.tensor([0, 0, 1, 1])),
        "needs indices",
    ),
    "indices beyond n_items": (
        lambda: MarginLoss(n_items=3)(X, torch.tensor([0, 0, 1, 1]), torch.arange(4)),
        r"indices must lie in \[0, n_items\) = \[0, 3\)",
    ),
    "float indices": (
        lambda: MarginLoss(n_items=3)(X, torch.tensor([0, 0, 1, 1]), torch.zeros(4)),
        "indices must be a 1-d integer tensor",
    ),
    "references of another dimension": (
        lambda: triplet_loss(X, T, references=torch.zeros(2, 4, dtype=X.dtype)),
        r"references must have the embeddings' dimension D = 3",
    ),
    "references of another dtype": (
        lambda: triplet_loss(X, T, references=torch.zeros(2, 3)),
        "references must have the embeddings' dtype torch.float64",
    ),
    "references on another device": (
        lambda: margin_loss(X, T, 1.0, references=torch.zeros(2, 3, dtype=X.dtype, device="meta")),
        "references is on meta",
    ),
    "1-d references": (
        lambda: contrastive_loss(X, T, references=torch.zeros(3, dtype=X.dtype)),
        r"references must have shape \(N, D\)",
    ),
    "nan references": (
        lambda: triplet_loss(X, T, references=torch.full((2, 3), float("nan"), dtype=X.dtype)),
        "references contain NaN",
    ),
    "anchor in the references": (
        lambda: triplet_loss(X, _triplet(4, 0, 1), references=X),
        r"anchors \(rows of embeddings\) must lie in \[0, N\) = \[0, 4\)",
    ),
    "pair anchor in the references": (
        lambda: contrastive_loss(X, Pairs(I, I, I + 5, I), references=X),
        r"anchors \(rows of embeddings\) must lie in \[0, N\)",
    ),
    "index beyond the pool": (
        lambda: triplet_loss(X, _triplet(0, 1, 8), references=X),
        r"\[0, N \+ M\) = \[0, 8\)",
    ),
    "module references without labels": (
        lambda: TripletLoss(sampling=_PoolStrategy())(X, L, references=X),
        "references need their labels",
    ),
    "module labels without references": (
        lambda: TripletLoss(sampling=_PoolStrategy())(X, L, reference_labels=L),
        "reference_labels were given without references",
    ),
    "module reference labels of another length": (
        lambda: MarginLoss(sampling=_PoolStrategy())(X, L, references=X, reference_labels=L[:3]),
        "reference_labels and references must have the same length",
    ),
    "module float reference labels": (
        lambda: MarginLoss(sampling=_PoolStrategy())(
            X, L, references=X, reference_labels=L.double()
        ),
        "reference_labels must be an integer tensor",
    ),
    "module references of another dtype": (
        lambda: ContrastiveLoss(sampling=_PoolStrategy())(
            X, L, references=X.float(), reference_labels=L
        ),
        "references must have the embeddings' dtype",
    ),
    "module reference labels on another device": (
        lambda: ContrastiveLoss(sampling=_PoolStrategy())(
            X, L, references=X, reference_labels=L.to("meta")
        ),
        "reference_labels is on meta but references on cpu",
    ),
    "strategy without references": (
        lambda: TripletLoss(sampling=_Recorder())(X, L, references=X, reference_labels=L),
        "the sampling strategy .*_Recorder.* takes no references",
    ),
    "strategy anchoring a reference row": (
        lambda: TripletLoss(sampling=lambda *a, **k: _triplet(5, 0, 2))(
            X, L, references=X, reference_labels=L
        ),
        r"anchors \(rows of embeddings\)",
    ),
    "bad user sampling": (
        lambda: TripletLoss(sampling=lambda e, lab, generator=None, stats=None: _triplet(0, 9, 1))(
            X, torch.tensor([0, 0, 1, 1])
        ),
        r"\[0, N\)",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CALLS))
def test_bad_input_raises_a_helpful_value_error(case: str) -> None:
    call, message = BAD_CALLS[case]
    with pytest.raises(ValueError, match=message):
        call()
