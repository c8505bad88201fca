"""The embedding model: a staged backbone, a linear head and an L2 normalisation.

A backbone is a sequence of *stages* followed by average pooling; the model can freeze
the whole backbone or only its first stages, and embed from the cached output of the
frozen part (:meth:`EmbeddingModel.frozen_features`, :meth:`EmbeddingModel.embed_frozen`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, TypeVar

import torch
from torch import Tensor, nn

from sampling_matters import _checks
from sampling_matters.data.transforms import Normalization

__all__ = ["EmbeddingModel", "pooled"]

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
            are converted here, its inputs in :meth:`features`): faster for
            convolutional backbones on a CPU (``benchmarks/results/model_speed.md``).
            Leave False for a backbone that reshapes feature maps with ``view``.

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
        return pooled(self.stages(), self._check_images(images))  # (B, F)

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
            return pooled(self.stages(), images)  # (B, F)
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
        return self.embed_features(pooled(self.stages()[self.frozen_stages :], frozen))

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


def pooled(stages: Sequence[nn.Module], images: Tensor) -> Tensor:
    """Run ``stages`` in turn and average-pool the last feature map: ``(B, F)``."""
    x = images
    for stage in stages:
        x = stage(x)
    return x.mean(dim=(2, 3)) if x.dim() == 4 else x  # (B, F)
