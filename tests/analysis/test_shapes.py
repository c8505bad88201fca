import pytest
import torch

from sampling_matters import analysis
from sampling_matters.analysis.shapes import loss_table
from sampling_matters.losses import (
    LOSSES,
    SampledLoss,
    TripletLoss,
    contrastive_loss,
    margin_loss,
)
from sampling_matters.sampling import Pairs

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


class _SoftTriplet(TripletLoss):
    """A subclass of a loss the figure knows, with other terms: not drawn as a triplet loss."""

    def terms(self, inputs, triplets):
        hinge, penalty = super().terms(inputs, triplets)
        return torch.nn.functional.softplus(hinge), penalty


class _Zero(SampledLoss):
    """A new loss, unknown to the figure."""

    def terms(self, inputs, triplets):
        return inputs.embeddings.new_zeros(len(triplets.anchor)), None


def test_a_loss_the_figure_does_not_know_is_left_out_not_drawn_as_another(monkeypatch):
    monkeypatch.setitem(LOSSES, "soft-triplet", _SoftTriplet)
    monkeypatch.setitem(LOSSES, "zero", _Zero)
    data = analysis.loss_shapes(points=20)
    known = {"contrastive", "triplet", "triplet-squared", "margin"}
    assert data.skipped == ("soft-triplet", "zero") and set(data.labels) == known
    assert {name for name, _ in data.values} == known
    assert "not drawn (losses figure 4 does not know): soft-triplet, zero" in (
        loss_table(data).comments
    )
    for name in ("soft-triplet", "zero"):
        with pytest.raises(ValueError, match=f"figure 4 cannot draw loss '{name}'"):
            analysis.loss_shape(name, "negative", D)
