import math

import pytest
import torch

from sampling_matters import distances
from sampling_matters.distances import (
    anchor_distances,
    cosine_similarity,
    pair_distances,
    pairwise_distances,
    safe_sqrt,
    unit_squared_distances,
)


def loop_distances(x, y):
    return torch.tensor([[float((a - b).norm()) for b in y] for a in x], dtype=torch.float64)


def test_against_loop():
    g = torch.Generator().manual_seed(0)
    x, y = (
        torch.randn(7, 5, generator=g, dtype=torch.float64),
        torch.randn(4, 5, generator=g, dtype=torch.float64),
    )
    assert torch.allclose(pairwise_distances(x, y), loop_distances(x, y))
    assert torch.allclose(pairwise_distances(x), loop_distances(x, x))
    assert torch.allclose(pairwise_distances(x, y, squared=True), loop_distances(x, y) ** 2)
    first, second = torch.tensor([0, 3, 6]), torch.tensor([1, 3, 2])
    expected = loop_distances(x, x)[first, second]
    assert torch.allclose(pair_distances(x, first, second), expected)


def test_zero_distance_gradient_is_finite():
    x = torch.ones(4, 3, requires_grad=True)
    d = pairwise_distances(x)
    assert torch.equal(d, torch.zeros(4, 4))
    (grad,) = torch.autograd.grad(d.sum(), x)
    assert torch.isfinite(grad).all()
    p = pair_distances(x, torch.tensor([0, 1]), torch.tensor([1, 1]))
    (grad,) = torch.autograd.grad(p.sum(), x)
    assert torch.equal(grad, torch.zeros_like(grad))
    z = torch.zeros(3, requires_grad=True)
    (grad,) = torch.autograd.grad(safe_sqrt(z).sum(), z)
    assert torch.equal(grad, torch.zeros(3))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_dtypes(dtype):
    x = torch.nn.functional.normalize(torch.randn(16, 32), dim=1).to(dtype)
    reference = loop_distances(x.double(), x.double())
    out = pairwise_distances(x)
    assert out.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert torch.allclose(out.double(), reference, atol=1e-3)
    tolerance = 1e-2 if dtype == torch.bfloat16 else 1e-3  # bfloat16 rounds unit norms by ±0.4%
    assert torch.allclose(unit_squared_distances(x).double(), reference**2, atol=tolerance)
    assert torch.allclose(cosine_similarity(x).double(), 1 - reference**2 / 2, atol=tolerance)


def test_cosine_zero_row():
    sim = cosine_similarity(torch.tensor([[0.0, 0.0], [1.0, 0.0]]))
    assert torch.isfinite(sim).all()
    assert cosine_similarity(torch.eye(2), torch.tensor([[1.0, 1.0]])).allclose(
        torch.full((2, 1), 2**-0.5)
    )


def test_bad_input():
    with pytest.raises(ValueError, match=r"shape \(N, D\)"):
        pairwise_distances(torch.randn(3))
    with pytest.raises(ValueError, match="floating-point"):
        pairwise_distances(torch.ones(3, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="same dimension"):
        pairwise_distances(torch.randn(3, 2), torch.randn(3, 4))


ROUTES = {
    "differences": lambda x, a, o: distances._AnchorSquaredDistances.apply(x, a, o)[0],
    "gram": lambda x, a, o: distances._gram_squared_distances(x, a, o),
}


@pytest.mark.parametrize("route", ROUTES)
def test_anchor_distance_routes_against_loop_and_gradcheck(route):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(12, 6, generator=g, dtype=torch.float64, requires_grad=True)
    anchor = torch.tensor([0, 1, 2, 3, 3, 11])
    others = torch.tensor([[1, 0, 3, 4, 5, 0], [6, 7, 8, 9, 10, 2]])
    got = ROUTES[route](x, anchor, others)
    expected = loop_distances(x.detach(), x.detach())[anchor, others] ** 2
    assert torch.allclose(got, expected)
    assert torch.autograd.gradcheck(lambda y: ROUTES[route](y, anchor, others), (x,))


@pytest.mark.parametrize("route", ROUTES)
def test_anchor_distance_routes_identical_rows_have_no_gradient(route):
    x = torch.nn.functional.normalize(torch.ones(5, 7), dim=1).requires_grad_()
    got = ROUTES[route](x, torch.tensor([0, 1]), torch.tensor([[2, 3]]))
    assert torch.equal(got, torch.zeros(1, 2))
    (grad,) = torch.autograd.grad(distances.safe_sqrt(got).sum(), x)
    assert torch.equal(grad, torch.zeros_like(grad))


def test_anchor_distances_picks_a_route_and_handles_empty():
    x = torch.randn(64, 8, requires_grad=True)
    anchor, other = torch.arange(8), torch.arange(8, 16)
    small = anchor_distances(x, anchor, (other,))[0]  # 64² ≤ 128·8: Gram route
    assert torch.allclose(small, (x[anchor] - x[other]).norm(dim=1), atol=1e-5)
    empty = anchor_distances(x, anchor[:0], (other[:0], other[:0]))
    assert [d.shape for d in empty] == [(0,), (0,)]
    big = torch.randn(300, 8)
    assert torch.allclose(
        anchor_distances(big, anchor, (other,))[0], (big[anchor] - big[other]).norm(dim=1)
    )


def test_non_finite_input_raises_instead_of_giving_distance_zero():
    x = torch.randn(3, 2)
    x[1, 0] = math.nan  # safe_sqrt used to turn the NaN distances into 0
    with pytest.raises(ValueError, match="x must be finite"):
        pairwise_distances(x)
    with pytest.raises(ValueError, match="y must be finite"):
        pairwise_distances(torch.randn(3, 2), torch.tensor([[math.inf, 0.0]]))
    with pytest.raises(ValueError, match=r"y must be a torch\.Tensor"):
        pairwise_distances(torch.randn(3, 2), [[0.0, 1.0]])  # type: ignore[arg-type]
