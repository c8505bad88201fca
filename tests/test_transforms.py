"""Transforms: shapes, normalisation, no flips for glyphs, explicit and per-worker randomness."""

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from sampling_matters.data.datasets import ImageDataset
from sampling_matters.data.transforms import (
    EFFICIENTNET_LITE,
    IMAGENET,
    NORMALIZATIONS,
    SYMMETRIC,
    UNIT,
    Normalization,
    eval_transform,
    random_resized_crop_box,
    train_transform,
)


def photo(width=60, height=40, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def glyph_l(size=32):
    """A black 'L' on white, hugging the left edge: a flip would move it to the right."""
    pixels = np.full((size, size), 255, dtype=np.uint8)
    pixels[4:28, 3:8] = 0  # the stem
    pixels[23:28, 3:14] = 0  # the foot, pointing right
    return Image.fromarray(pixels)


def ink_centroid_x(tensor):
    """The x centroid (in [0, 1]) of the dark pixels of a (1, H, W) tensor in [0, 1]."""
    ink = (1 - tensor[0]).clamp(min=0)
    columns = torch.arange(ink.shape[1], dtype=torch.float32) + 0.5
    return float((ink.sum(0) * columns).sum() / ink.sum()) / ink.shape[1]


@pytest.mark.parametrize("kind", ["photo", "glyph"])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [16, 33])
def test_shapes_and_dtypes(kind, channels, size):
    image = photo(70, 45) if kind == "photo" else glyph_l()
    normalization = UNIT
    train = train_transform(kind, size, channels=channels, normalization=normalization, generator=0)
    test = eval_transform(kind, size, channels=channels, normalization=normalization)
    for transform in (train, test):
        out = transform(image)
        assert out.shape == (channels, size, size)
        assert out.dtype == torch.float32
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_defaults_per_kind():
    assert train_transform("photo", 8, generator=0)(photo()).shape == (3, 8, 8)
    assert train_transform("glyph", 8, generator=0)(glyph_l()).shape == (1, 8, 8)
    assert eval_transform("photo", 8).normalization == IMAGENET
    assert eval_transform("glyph", 8).normalization == UNIT


def test_grey_glyph_replicated_to_three_channels():
    out = eval_transform("glyph", 16, channels=3, normalization=UNIT)(glyph_l())
    assert out.shape == (3, 16, 16)
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])


@pytest.mark.parametrize(
    ("normalization", "pixel", "expected"),
    [
        (UNIT, 51, 0.2),
        (SYMMETRIC, 0, -1.0),
        (SYMMETRIC, 255, 1.0),
        (EFFICIENTNET_LITE, 255, 1.0),
        (EFFICIENTNET_LITE, 127, 0.0),
        (EFFICIENTNET_LITE, 0, -127 / 128),
    ],
)
def test_normalization_values(normalization, pixel, expected):
    image = Image.new("L", (20, 20), pixel)
    out = eval_transform("glyph", 10, normalization=normalization)(image)
    torch.testing.assert_close(out, torch.full_like(out, expected), atol=1e-5, rtol=0)


def test_imagenet_normalization_per_channel():
    image = Image.new("RGB", (40, 30), (255, 0, 128))
    out = eval_transform("photo", 16, normalization=IMAGENET)(image)
    expected = [(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (128 / 255 - 0.406) / 0.225]
    torch.testing.assert_close(out.mean(dim=(1, 2)), torch.tensor(expected), atol=1e-4, rtol=0)


def test_named_normalizations():
    assert set(NORMALIZATIONS) == {"unit", "symmetric", "imagenet", "efficientnet-lite"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 0}, "size"),
        ({"size": 2.5}, "size"),
        ({"channels": 2}, "channels"),
        ({"channels": 1, "normalization": IMAGENET}, "3 values"),
        ({"kind": "video"}, "kind"),
    ],
)
def test_bad_arguments(kwargs, message):
    arguments = {"kind": "photo", "size": 8, **kwargs}
    with pytest.raises(ValueError, match=message):
        train_transform(arguments.pop("kind"), arguments.pop("size"), **arguments)
    arguments = {"kind": "photo", "size": 8, **kwargs}
    with pytest.raises(ValueError, match=message):
        eval_transform(arguments.pop("kind"), arguments.pop("size"), **arguments)


def test_normalization_checks_std():
    with pytest.raises(ValueError, match="positive"):
        Normalization((0.0,), (0.0,))


def test_photo_eval_is_centre_crop():
    # 80×40 image: left third red, middle green, right third blue; the centre crop is green
    pixels = np.zeros((40, 120, 3), dtype=np.uint8)
    pixels[:, :40, 0] = pixels[:, 40:80, 1] = pixels[:, 80:, 2] = 255
    out = eval_transform("photo", 28, normalization=UNIT)(Image.fromarray(pixels))
    assert out.shape == (3, 28, 28)
    assert float(out[1].mean()) > 0.99 and float(out[0].max()) < 0.01


def test_glyph_eval_resizes_whole_image():
    out = eval_transform("glyph", 16, normalization=UNIT)(glyph_l(32))
    assert ink_centroid_x(out) < 0.3


def test_glyph_never_flipped():
    image = glyph_l()
    transform = train_transform("glyph", 32, normalization=UNIT, generator=1)
    centroids = [ink_centroid_x(transform(image)) for _ in range(200)]
    assert max(centroids) < 0.4  # the original's ink sits at x ≈ 0.2; a flip gives ≈ 0.8


def test_glyph_jitter_varies_and_keeps_background():
    image = glyph_l()
    transform = train_transform("glyph", 32, normalization=UNIT, generator=2)
    outs = torch.stack([transform(image) for _ in range(20)])
    assert len({out.numpy().tobytes() for out in outs}) == 20
    corners = outs[:, 0, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert float(corners.min()) > 0.95  # uncovered pixels take the white background
    white_on_black = Image.eval(image, lambda p: 255 - p)
    dark = torch.stack([transform(white_on_black) for _ in range(20)])
    assert float(dark[:, 0, [0, 0, -1, -1], [0, -1, 0, -1]].max()) < 0.05


def test_photo_flips_both_ways():
    pixels = np.zeros((40, 40), dtype=np.uint8)
    pixels[:, :20] = 255  # bright left half
    image = Image.fromarray(pixels).convert("RGB")
    transform = train_transform("photo", 16, normalization=UNIT, generator=3)
    balance = []
    for _ in range(100):
        out = transform(image)[0]
        balance.append(float(out[:, :8].mean() - out[:, 8:].mean()))
    assert max(balance) > 0.3 and min(balance) < -0.3


def test_random_resized_crop_box_bounds_and_scale():
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        left, top, right, bottom = random_resized_crop_box(120, 90, generator)
        assert 0 <= left < right <= 120 and 0 <= top < bottom <= 90
        area = (right - left) * (bottom - top) / (120 * 90)
        ratio = (right - left) / (bottom - top)
        assert 0.12 < area <= 1.0
        assert 0.7 < ratio < 1.4


def test_random_resized_crop_falls_back_to_centre():
    generator = torch.Generator().manual_seed(0)
    # a 200×10 strip cannot hold a 3/4–4/3 box of 16% area: the fallback clamps the ratio
    left, top, right, bottom = random_resized_crop_box(200, 10, generator)
    assert (top, bottom) == (0, 10) and math.isclose((right - left) / 10, 4 / 3, rel_tol=0.1)
    assert abs((left + right) / 2 - 100) <= 1


@pytest.mark.parametrize("kind", ["photo", "glyph"])
def test_determinism_given_generator(kind):
    image = photo() if kind == "photo" else glyph_l()

    def draws(generator):
        transform = train_transform(kind, 24, generator=generator)
        return torch.stack([transform(image) for _ in range(5)])

    assert torch.equal(draws(7), draws(7))
    assert torch.equal(
        draws(torch.Generator().manual_seed(7)), draws(torch.Generator().manual_seed(7))
    )
    assert not torch.equal(draws(7), draws(8))


def test_no_generator_follows_torch_initial_seed():
    image = photo()
    torch.manual_seed(11)
    first = train_transform("photo", 16)(image)
    torch.manual_seed(11)
    again = train_transform("photo", 16)(image)
    assert torch.equal(first, again)


def test_dataloader_workers_differ_and_reproduce():
    images = np.repeat(np.asarray(photo(32, 32))[None], 4, axis=0)  # 4 identical images
    transform = train_transform("photo", 16, generator=5)
    dataset = ImageDataset(images, [0, 0, 1, 1], kind="photo", transform=transform)

    def run(seed):
        loader = DataLoader(
            dataset, batch_size=1, num_workers=2, generator=torch.Generator().manual_seed(seed)
        )
        return [batch[0][0] for batch in loader]

    first = run(0)
    # items 0 and 1 are the first draws of workers 0 and 1: the same image, other crops
    assert not torch.equal(first[0], first[1])
    assert all(torch.equal(a, b) for a, b in zip(first, run(0)))
    assert not torch.equal(first[0], run(1)[0])  # another epoch seed, other augmentations
