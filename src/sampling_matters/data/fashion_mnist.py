"""The ``fashion-mnist`` set: Zalando's 70,000 28×28 grey images of ten kinds of clothing.

The source is Debian's package ``dataset-fashion-mnist`` (unpacked, never installed),
which holds the original idx files under ``usr/share/datasets/fashion-mnist/``. The
original training images come first (60,000), then the original test images (10,000);
the zero-shot split ignores that division and puts classes 0–4 in ``train`` and 5–9 in
``test``.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sampling_matters.data.cache import BuiltSet
from sampling_matters.data.packages import (
    deb_version,
    debian_licence,
    extract_deb,
    fetch_deb,
    sha256,
)

__all__ = ["CLASS_NAMES", "DEBIAN_PACKAGE", "build_fashion_mnist", "read_idx"]

DEBIAN_PACKAGE = "dataset-fashion-mnist"

CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
"""The name of each label, from the data set's documentation."""

_FOLDER = Path("usr/share/datasets/fashion-mnist")
_PARTS = ("train", "t10k")

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> npt.NDArray[np.generic]:
    """The array in an idx file (the MNIST format), gzip-compressed or not.

    The header is two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16,
    0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions, then each
    dimension as a big-endian int32; the values follow, big-endian, in C order.

    Raises:
        ValueError: a malformed header or a size that does not match it.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as file:
        data = file.read()
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in _IDX_TYPES:
        raise ValueError(f"{path} is not an idx file (header {data[:4]!r})")
    ndim = data[3]
    shape = tuple(int(n) for n in np.frombuffer(data, ">i4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_TYPES[data[2]])
    offset = 4 + 4 * ndim
    if len(data) - offset != dtype.itemsize * int(np.prod(shape)):
        raise ValueError(f"{path}: {len(data) - offset} bytes of values for shape {shape}")
    values = np.frombuffer(data, dtype, offset=offset).reshape(shape)
    return values.astype(dtype.newbyteorder("="))


def build_fashion_mnist(
    downloads: Path, work: Path, progress: bool, say: Callable[[str], None]
) -> BuiltSet:
    """Fetch Debian's ``dataset-fashion-mnist`` and build the ``fashion-mnist`` set.

    Args:
        downloads: the folder of cached downloads.
        work: a scratch folder for unpacking.
        progress: unused (the build takes a few seconds); kept for a common signature.
        say: prints a line for the user (the licence).

    Returns:
        The set; labels are Fashion-MNIST's own 0–9.
    """
    del progress
    deb = fetch_deb(downloads, DEBIAN_PACKAGE)
    root = extract_deb(deb, work / DEBIAN_PACKAGE)
    licence = debian_licence(root, DEBIAN_PACKAGE)
    say(f"fashion-mnist: {DEBIAN_PACKAGE}: {licence} (Zalando SE)")
    parts = [_read_part(root / _FOLDER, part) for part in _PARTS]
    images = np.concatenate([part_images for part_images, _ in parts])
    labels = np.concatenate([part_labels for _, part_labels in parts])
    metadata = {
        "sources": [
            {
                "package": f"debian:{DEBIAN_PACKAGE}",
                "version": deb_version(deb),
                "file": deb.name,
                "sha256": sha256(deb),
                "licence": licence,
            }
        ],
        "original_split": {"train": [0, len(parts[0][1])], "test": [len(parts[0][1]), len(labels)]},
        "class_order": "Fashion-MNIST's own label order",
    }
    return BuiltSet(images, labels, list(CLASS_NAMES), metadata)


def _read_part(folder: Path, part: str) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    images = read_idx(folder / f"{part}-images-idx3-ubyte.gz")
    labels = read_idx(folder / f"{part}-labels-idx1-ubyte.gz")
    if images.ndim != 3 or labels.shape != images.shape[:1]:
        raise ValueError(f"{folder}/{part}: images {images.shape}, labels {labels.shape}")
    return images.astype(np.uint8), labels.astype(np.int64)
