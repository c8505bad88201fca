"""The backbones by name: what each needs, :func:`build_model` and its config reader."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from torch import nn

from sampling_matters import _checks
from sampling_matters.data.transforms import EFFICIENTNET_LITE, IMAGENET, UNIT, Normalization
from sampling_matters.models.embedding import EmbeddingModel
from sampling_matters.models.pretrained import (
    WeightsPath,
    build_efficientnet_lite0,
    build_resnet50,
)
from sampling_matters.models.small_cnn import SmallCNN

if TYPE_CHECKING:
    from sampling_matters.config import TrainConfig

__all__ = ["MODELS", "build_model", "build_model_from_config", "from_scratch"]

MODELS: tuple[str, ...] = ("small-cnn", "efficientnet-lite0", "resnet50")
"""The names :func:`build_model` accepts."""


class _Spec(NamedTuple):
    """What :func:`build_model` needs to know about a backbone."""

    build: Callable[[bool, WeightsPath | None], nn.Module]
    feature_dim: int
    input_size: int
    min_input_size: int
    channels: int
    normalization: Normalization
    has_weights: bool  # pretrained weights exist (else it is always trained from scratch)


def _build_small_cnn(pretrained: bool, weights: WeightsPath | None) -> nn.Module:
    """The small CNN; ``pretrained`` is ignored (it is trained from scratch)."""
    if weights is not None:
        raise ValueError(
            "'small-cnn' has no pretrained weights; load a trained model's state dict"
            " with EmbeddingModel.load_state_dict instead"
        )
    return SmallCNN(in_channels=1)


_SPECS: dict[str, _Spec] = {
    "small-cnn": _Spec(_build_small_cnn, 256, 32, 16, 1, UNIT, False),
    "efficientnet-lite0": _Spec(
        build_efficientnet_lite0, 1280, 224, 32, 3, EFFICIENTNET_LITE, True
    ),
    "resnet50": _Spec(build_resnet50, 2048, 224, 32, 3, IMAGENET, True),
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


def build_model_from_config(
    config: TrainConfig, *, pretrained: bool | None = None
) -> EmbeddingModel:
    """The network that a training configuration describes: the one place that reads it.

    Training builds its model here, and so does every reader of a run (``best.pt``
    carries its configuration, so ``load_run`` rebuilds the same network before loading
    the weights). ``pretrained`` overrides ``config.model.pretrained``: a checkpoint's
    weights replace the pretrained ones, so a reader passes False and needs no download.

    Example:
        >>> from sampling_matters.config import TrainConfig
        >>> config = TrainConfig.from_flat({"model": "small-cnn", "embedding_dim": 16, "steps": 1})
        >>> build_model_from_config(config).embedding_dim
        16
    """
    return build_model(
        config.model.model,
        embedding_dim=config.model.embedding_dim,
        pretrained=config.model.pretrained if pretrained is None else pretrained,
        freeze_backbone=config.model.freeze_backbone,
        frozen_stages=config.model.frozen_stages,
        frozen_batchnorm=config.model.frozen_batchnorm,
        input_size=config.data.image_size,
    )
