"""``small-cnn``: a small CNN trained from scratch, for 32×32 grey glyphs."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

__all__ = ["SmallCNN"]


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
