"""Image transforms: PIL image → normalised (C, H, W) float tensor, with Pillow and torch.

Two kinds of images, two kinds of augmentation (``ImageDataset.kind``):

- **photos**: training takes a random resized crop (area 16–100% of the image, aspect
  ratio 3/4–4/3, the ImageNet practice the paper follows) resized to ``size`` and
  flips it horizontally half the time; evaluation resizes the shorter side to
  ``size``·8/7 and takes the centre ``size``×``size`` crop (the usual 256 → 224 rule).
- **glyphs** (characters, icons): training jitters them with a small random affine
  map (rotation ±8°, translation ±8%, scale 0.9–1.1, shear ±5°) and never flips them
  (a mirrored character is another character or none); evaluation resizes to
  ``size``×``size``.

Every transform ends with :class:`Normalization`, ``(x − mean) / std`` on pixels in
[0, 1], chosen for the model: :data:`IMAGENET` (torchvision's ResNet),
:data:`EFFICIENTNET_LITE` (``(p − 127) / 128`` on 0–255 pixels), :data:`UNIT` (no
change, [0, 1]) or :data:`SYMMETRIC` ([−1, 1]).

Randomness is explicit. A training transform takes a ``torch.Generator`` or an integer
seed. In :class:`torch.utils.data.DataLoader` workers each worker holds a copy of the
transform, and copies of one generator would repeat each other's augmentations; so
inside a worker a transform reseeds itself once, from its own seed mixed with the
worker's seed (``get_worker_info().seed``, which the loader draws afresh each epoch
from its ``generator`` or from ``torch.initial_seed()``). Augmentations then differ
across workers and epochs and are reproducible once the loader is seeded. With no
generator and no seed, a transform seeds itself from ``torch.initial_seed()`` of the
process it runs in (the worker's seed inside a worker).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import get_worker_info

from sampling_matters.data.datasets import Kind

__all__ = [
    "EFFICIENTNET_LITE",
    "IMAGENET",
    "NORMALIZATIONS",
    "SYMMETRIC",
    "UNIT",
    "AffineJitter",
    "EvalTransform",
    "GlyphTrainTransform",
    "Normalization",
    "PhotoTrainTransform",
    "affine_resize",
    "eval_transform",
    "random_affine",
    "random_resized_crop_box",
    "resize_center_crop",
    "to_tensor",
    "train_transform",
]

Box = tuple[int, int, int, int]
"""A crop box ``(left, top, right, bottom)`` in pixels, as Pillow takes it."""


@dataclass(frozen=True)
class Normalization:
    """Per-channel ``(x − mean) / std`` applied to pixels x in [0, 1].

    Args:
        mean: one value (every channel) or one per channel.
        std: one positive value (every channel) or one per channel.
    """

    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        if not self.mean or not self.std:
            raise ValueError(f"mean and std need at least one value, got {self}")
        if not all(s > 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std}")

    def check_channels(self, channels: int) -> None:
        """Raise ``ValueError`` unless mean and std fit images of ``channels`` channels."""
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, channels):
                raise ValueError(
                    f"normalization {name} has {len(values)} values for {channels}-channel "
                    f"images: give 1 value or {channels}"
                )

    def __call__(self, x: Tensor) -> Tensor:
        """Normalise a (C, H, W) tensor of pixels in [0, 1]."""
        mean = torch.tensor(self.mean, dtype=x.dtype).view(-1, 1, 1)  # (C or 1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype).view(-1, 1, 1)
        return (x - mean) / std


UNIT = Normalization()
"""Pixels left in [0, 1] (a small CNN trained from scratch)."""
SYMMETRIC = Normalization((0.5,), (0.5,))
"""Pixels mapped to [−1, 1]."""
IMAGENET = Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
"""ImageNet mean and std, as torchvision's pretrained ResNet-50 expects."""
EFFICIENTNET_LITE = Normalization((127 / 255,), (128 / 255,))
"""``(p − 127) / 128`` on 0–255 pixels p, as the EfficientNet-Lite weights expect."""
NORMALIZATIONS: dict[str, Normalization] = {
    "unit": UNIT,
    "symmetric": SYMMETRIC,
    "imagenet": IMAGENET,
    "efficientnet-lite": EFFICIENTNET_LITE,
}
"""The named normalisations, for configuration files and the command line."""


def to_tensor(image: Image.Image, channels: int, normalization: Normalization) -> Tensor:
    """A PIL image as a normalised (C, H, W) float32 tensor, C = ``channels`` (1 or 3).

    Grey images are replicated to 3 channels; colour images are made grey for 1.
    """
    image = image.convert(_mode(channels))
    array = np.asarray(image, dtype=np.float32) / 255.0  # (H, W) or (H, W, 3)
    tensor = torch.from_numpy(array)
    tensor = tensor[None] if tensor.dim() == 2 else tensor.permute(2, 0, 1).contiguous()
    return normalization(tensor)  # (C, H, W)


def _mode(channels: int) -> str:
    return "L" if channels == 1 else "RGB"


# --- photos ---------------------------------------------------------------------------


def random_resized_crop_box(
    width: int,
    height: int,
    generator: torch.Generator,
    *,
    scale: tuple[float, float] = (0.16, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    attempts: int = 10,
) -> Box:
    """A random crop box of area fraction in ``scale`` and aspect ratio (w/h) in ``ratio``.

    The ImageNet (Inception) rule: draw the area uniformly and the log aspect ratio
    uniformly; retry up to ``attempts`` times while the box does not fit, then fall
    back to the largest centred box whose ratio is clamped into ``ratio``.

    Example:
        >>> box = random_resized_crop_box(100, 80, torch.Generator().manual_seed(0))
        >>> left, top, right, bottom = box
        >>> 0 <= left < right <= 100 and 0 <= top < bottom <= 80
        True
    """
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(attempts):
        u = torch.rand(4, generator=generator, dtype=torch.float64).tolist()
        target = area * (scale[0] + (scale[1] - scale[0]) * u[0])
        aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * u[1])
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            left = min(int(u[2] * (width - w + 1)), width - w)
            top = min(int(u[3] * (height - h + 1)), height - h)
            return left, top, left + w, top + h
    return _centre_box(width, height, ratio)


def _centre_box(width: int, height: int, ratio: tuple[float, float]) -> Box:
    aspect = width / height
    if aspect < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif aspect > ratio[1]:
        w, h = round(height * ratio[1]), height
    else:
        w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


def resize_center_crop(
    image: Image.Image, size: int, *, resize_ratio: float = 8 / 7
) -> Image.Image:
    """Resize the shorter side to ``round(size · resize_ratio)``, then crop the centre square.

    Example:
        >>> resize_center_crop(Image.new("RGB", (300, 200)), 28).size
        (28, 28)
    """
    shorter = max(size, round(size * resize_ratio))
    width, height = image.size
    factor = shorter / min(width, height)
    new_w, new_h = max(shorter, round(width * factor)), max(shorter, round(height * factor))
    resized = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return resized.crop((left, top, left + size, top + size))


# --- glyphs ---------------------------------------------------------------------------


class AffineJitter(NamedTuple):
    """One random affine map about the image centre.

    Attributes:
        angle: rotation in degrees (counter-clockwise).
        translate: (dx, dy) as fractions of the output size.
        scale: zoom factor.
        shear: horizontal shear in degrees.
    """

    angle: float
    translate: tuple[float, float]
    scale: float
    shear: float


def random_affine(
    generator: torch.Generator,
    *,
    degrees: float = 8.0,
    translate: float = 0.08,
    scale: tuple[float, float] = (0.9, 1.1),
    shear: float = 5.0,
) -> AffineJitter:
    """Draw rotation in ±``degrees``, translation in ±``translate``, scale, shear in ±``shear``.

    Example:
        >>> jitter = random_affine(torch.Generator().manual_seed(0))
        >>> abs(jitter.angle) <= 8 and 0.9 <= jitter.scale <= 1.1
        True
    """
    u = (2 * torch.rand(5, generator=generator, dtype=torch.float64) - 1).tolist()  # in [-1, 1)
    middle, half = (scale[0] + scale[1]) / 2, (scale[1] - scale[0]) / 2
    return AffineJitter(
        angle=degrees * u[0],
        translate=(translate * u[1], translate * u[2]),
        scale=middle + half * u[3],
        shear=shear * u[4],
    )


def affine_resize(image: Image.Image, jitter: AffineJitter | None, size: int) -> Image.Image:
    """Resize to ``size``×``size`` and apply ``jitter`` about the centre, in one resampling.

    Uncovered pixels take the background: the median of the image's border pixels,
    so white-on-black and black-on-white glyphs both keep a clean background.

    Example:
        >>> affine_resize(Image.new("L", (40, 30), 255), None, 16).size
        (16, 16)
    """
    if jitter is None:
        return image.resize((size, size), Image.Resampling.BILINEAR)
    width, height = image.size
    angle, shear = math.radians(jitter.angle), math.radians(jitter.shear)
    rotate = np.array([[math.cos(angle), math.sin(angle)], [-math.sin(angle), math.cos(angle)]])
    forward = rotate @ np.array([[1.0, math.tan(shear)], [0.0, 1.0]]) * jitter.scale  # (2, 2)
    # output pixel u -> input pixel: K · forward⁻¹ · (u − centre_out − t) + centre_in
    inverse = np.diag([width / size, height / size]) @ np.linalg.inv(forward)  # (2, 2)
    shift = np.array([size / 2 + jitter.translate[0] * size, size / 2 + jitter.translate[1] * size])
    offset = np.array([width / 2, height / 2]) - inverse @ shift  # (2,)
    coefficients = (*inverse[0], offset[0], *inverse[1], offset[1])
    return image.transform(
        (size, size),
        Image.Transform.AFFINE,
        tuple(float(c) for c in coefficients),
        resample=Image.Resampling.BILINEAR,
        fillcolor=_background(image),
    )


def _background(image: Image.Image) -> int | tuple[int, ...]:
    pixels: npt.NDArray[np.uint8] = np.asarray(image)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])  # (B[, C])
    median = np.median(border, axis=0).round().astype(int)
    return int(median) if median.ndim == 0 else tuple(int(v) for v in median)


# --- randomness -----------------------------------------------------------------------


@dataclass
class _Randomness:
    """A generator that reseeds itself once in each DataLoader worker (see module doc)."""

    source: torch.Generator | int | None
    _generator: torch.Generator | None = field(default=None, init=False, repr=False)
    _context: int | None = field(default=None, init=False, repr=False)

    def generator(self) -> torch.Generator:
        info = get_worker_info()
        context = None if info is None else int(info.seed)
        if self._generator is None or context != self._context:
            self._generator = self._make(context)
            self._context = context
        return self._generator

    def _make(self, worker_seed: int | None) -> torch.Generator:
        if worker_seed is None:
            if isinstance(self.source, torch.Generator):
                return self.source
            seed = torch.initial_seed() if self.source is None else self.source
            return torch.Generator().manual_seed(seed)
        if isinstance(self.source, torch.Generator):
            base = self.source.initial_seed()
        else:
            base = 0 if self.source is None else self.source
        return torch.Generator().manual_seed(_mix(base, worker_seed))


def _mix(*seeds: int) -> int:
    """A 63-bit seed from several integers (stable across runs and platforms)."""
    digest = hashlib.blake2b(":".join(map(str, seeds)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


# --- the transforms -------------------------------------------------------------------


@dataclass
class PhotoTrainTransform:
    """Random resized crop to ``size``, horizontal flip with probability 1/2, normalise."""

    size: int
    normalization: Normalization
    channels: int
    randomness: _Randomness
    scale: tuple[float, float] = (0.16, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    def __call__(self, image: Image.Image) -> Tensor:
        """The (C, size, size) augmented tensor of ``image``."""
        generator = self.randomness.generator()
        box = random_resized_crop_box(*image.size, generator, scale=self.scale, ratio=self.ratio)
        crop = image.resize((self.size, self.size), Image.Resampling.BILINEAR, box=box)
        if float(torch.rand((), generator=generator)) < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return to_tensor(crop, self.channels, self.normalization)


@dataclass
class GlyphTrainTransform:
    """Resize to ``size`` with a small random affine jitter (never a flip), normalise."""

    size: int
    normalization: Normalization
    channels: int
    randomness: _Randomness

    def __call__(self, image: Image.Image) -> Tensor:
        """The (C, size, size) augmented tensor of ``image``."""
        jitter = random_affine(self.randomness.generator())
        image = image.convert(_mode(self.channels))
        return to_tensor(affine_resize(image, jitter, self.size), self.channels, self.normalization)


@dataclass(frozen=True)
class EvalTransform:
    """The deterministic transform: centre crop (photos) or plain resize (glyphs)."""

    kind: Kind
    size: int
    normalization: Normalization
    channels: int

    def __call__(self, image: Image.Image) -> Tensor:
        """The (C, size, size) tensor of ``image``."""
        image = image.convert(_mode(self.channels))
        if self.kind == "photo":
            image = resize_center_crop(image, self.size)
        else:
            image = affine_resize(image, None, self.size)
        return to_tensor(image, self.channels, self.normalization)


def train_transform(
    kind: Kind,
    size: int,
    *,
    normalization: Normalization | None = None,
    channels: Literal[1, 3] | None = None,
    generator: torch.Generator | int | None = None,
) -> PhotoTrainTransform | GlyphTrainTransform:
    """The training augmentation for ``kind`` (see the module doc).

    Args:
        kind: ``"photo"`` or ``"glyph"``.
        size: output height and width in pixels.
        normalization: defaults to :data:`IMAGENET` for photos, :data:`UNIT` for glyphs.
        channels: output channels, 1 (grey) or 3 (RGB; grey images are replicated, for
            ImageNet backbones); defaults to 3 for photos, 1 for glyphs.
        generator: a ``torch.Generator`` or an integer seed for the random parameters;
            ``None`` seeds from ``torch.initial_seed()``. In DataLoader workers the
            transform reseeds itself per worker (module doc).

    Returns:
        A picklable callable PIL image → (C, size, size) float32 tensor.

    Example:
        >>> transform = train_transform("glyph", 16, generator=0)
        >>> transform(Image.new("L", (32, 32))).shape
        torch.Size([1, 16, 16])
    """
    norm, chans = _check(kind, size, normalization, channels)
    randomness = _Randomness(generator)
    if kind == "photo":
        return PhotoTrainTransform(size, norm, chans, randomness)
    return GlyphTrainTransform(size, norm, chans, randomness)


def eval_transform(
    kind: Kind,
    size: int,
    *,
    normalization: Normalization | None = None,
    channels: Literal[1, 3] | None = None,
) -> EvalTransform:
    """The evaluation transform for ``kind``; arguments as in :func:`train_transform`.

    Example:
        >>> eval_transform("photo", 32)(Image.new("RGB", (64, 48))).shape
        torch.Size([3, 32, 32])
    """
    norm, chans = _check(kind, size, normalization, channels)
    return EvalTransform(kind, size, norm, chans)


def _check(
    kind: Kind, size: int, normalization: Normalization | None, channels: int | None
) -> tuple[Normalization, int]:
    """The normalisation and channel count to use, or a ValueError saying what is wrong."""
    if kind not in ("photo", "glyph"):
        raise ValueError(f"kind must be 'photo' or 'glyph', got {kind!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive integer number of pixels, got {size!r}")
    chans = (3 if kind == "photo" else 1) if channels is None else channels
    if chans not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    norm = normalization if normalization is not None else (IMAGENET if kind == "photo" else UNIT)
    norm.check_channels(chans)
    return norm, chans
