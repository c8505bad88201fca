"""The ``emoji`` set: one emoji drawn by up to four vendors, like Stanford Online Products.

Sources are the npm packages ``emoji-datasource-{google,twitter,apple,facebook}``
(version :data:`EMOJI_VERSION`). Each holds ``package/emoji.json`` and
``package/img/<vendor>/64/<image>``: 64×64 RGBA PNGs, composited here on white. A class
is one entry of ``emoji.json`` (skin-tone variations are not used); its images are the
drawings of the vendors that drew it (``has_img_<vendor>``). Classes are numbered in the
order of the entry's ``sort_order`` (Unicode's emoji order), which the zero-shot split
follows.
"""

from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from sampling_matters._progress import tqdm
from sampling_matters.data.cache import BuiltSet
from sampling_matters.data.packages import fetch_npm, sha256

__all__ = [
    "EMOJI_VERSION",
    "VENDORS",
    "VENDOR_LICENCES",
    "EmojiClass",
    "build_emoji",
    "emoji_classes",
    "load_emoji_image",
    "unpack_vendor",
]

EMOJI_VERSION = "16.0.0"
"""The version of the ``emoji-datasource-*`` packages."""

VENDORS = ("google", "twitter", "apple", "facebook")
"""The vendors whose drawings make the images, in the order images are stored."""

VENDOR_LICENCES = {
    "google": "Apache-2.0 (Noto Emoji, Google)",
    "twitter": "CC-BY-4.0 (Twemoji, Twitter)",
    "apple": "Apple's copyright; research use only",
    "facebook": "Facebook's copyright; research use only",
}
"""The licence of each vendor's images."""

IMAGE_SIZE = 64


@dataclass(frozen=True)
class EmojiClass:
    """One emoji and its drawings.

    Attributes:
        name: the entry's ``short_name`` (unique), e.g. ``"grinning"``.
        unified: the code points, e.g. ``"1F600"``.
        sort_order: the entry's place in Unicode's emoji order.
        images: the PNG of each vendor that drew it, as ``(vendor, path)``.
    """

    name: str
    unified: str
    sort_order: int
    images: tuple[tuple[str, Path], ...]


def unpack_vendor(tarball: Path, vendor: str, destination: Path) -> Path:
    """Unpack ``emoji.json`` and the 64-pixel images of ``vendor`` from an npm tarball.

    Args:
        tarball: the ``emoji-datasource-<vendor>-<version>.tgz`` from ``npm pack``.
        vendor: the vendor the tarball draws.
        destination: where to unpack; gets ``package/emoji.json`` and
            ``package/img/<vendor>/64/*.png``.

    Returns:
        The ``package`` folder.
    """
    wanted = re.compile(rf"package/(emoji\.json|img/{re.escape(vendor)}/64/[^/]+\.png)")
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive:
            if not (member.isfile() and wanted.fullmatch(member.name)):
                continue
            target = destination / member.name  # the pattern admits no ".." or absolute path
            target.parent.mkdir(parents=True, exist_ok=True)
            source = archive.extractfile(member)
            if source is not None:
                target.write_bytes(source.read())
    return destination / "package"


def emoji_classes(packages: Mapping[str, Path]) -> list[EmojiClass]:
    """The emoji that at least one of the vendors drew, in ``sort_order``.

    Args:
        packages: each vendor's unpacked ``package`` folder (see :func:`unpack_vendor`).
            A vendor's image counts only if its own ``emoji.json`` says
            ``has_img_<vendor>`` and the file is there.

    Returns:
        The classes, with their images in the order of ``packages``.
    """
    entries: dict[str, dict[str, Any]] = {}
    drawn: dict[str, list[tuple[str, Path]]] = {}
    for vendor, package in packages.items():
        for entry in json.loads((package / "emoji.json").read_text(encoding="utf-8")):
            path = package / "img" / vendor / str(IMAGE_SIZE) / entry["image"]
            if entry.get(f"has_img_{vendor}") and path.is_file():
                entries.setdefault(entry["unified"], entry)
                drawn.setdefault(entry["unified"], []).append((vendor, path))
    classes = [
        EmojiClass(
            name=str(entries[key]["short_name"]),
            unified=key,
            sort_order=int(entries[key]["sort_order"]),
            images=tuple(images),
        )
        for key, images in drawn.items()
    ]
    return sorted(classes, key=lambda emoji: (emoji.sort_order, emoji.unified))


def load_emoji_image(path: Path) -> npt.NDArray[np.uint8]:
    """A (64, 64, 3) uint8 RGB image: the PNG at ``path`` composited on white."""
    with Image.open(path) as opened:
        rgba = opened.convert("RGBA")
    if rgba.size != (IMAGE_SIZE, IMAGE_SIZE):
        rgba = rgba.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"), dtype=np.uint8)


def build_emoji(
    downloads: Path, work: Path, progress: bool, say: Callable[[str], None]
) -> BuiltSet:
    """Fetch the four vendors' packages and build the ``emoji`` set.

    Args:
        downloads: the folder of cached downloads.
        work: a scratch folder for unpacking.
        progress: show progress bars.
        say: prints a line for the user (the licences).

    Returns:
        The set; class c is the c-th emoji in ``sort_order``.
    """
    sources, packages = [], {}
    for vendor in tqdm(VENDORS, desc="emoji: fetch", unit="package", disable=not progress):
        name = f"emoji-datasource-{vendor}"
        tarball = fetch_npm(downloads, name, EMOJI_VERSION)
        packages[vendor] = unpack_vendor(tarball, vendor, work / vendor)
        sources.append(_source(name, tarball, VENDOR_LICENCES[vendor]))
        say(f"emoji: {vendor} images: {VENDOR_LICENCES[vendor]}")
    say("emoji: emoji.json and the packages' code: MIT (emoji-datasource, Cal Henderson)")
    classes = emoji_classes(packages)
    images, labels = _load_images(classes, progress)
    metadata = {
        "sources": sources,
        "images_per_vendor": _count_vendors(classes),
        "class_order": "emoji.json sort_order (Unicode emoji order), then unified code",
        "image_format": "64x64 RGB, RGBA composited on white",
    }
    return BuiltSet(images, labels, [emoji.name for emoji in classes], metadata)


def _load_images(
    classes: Sequence[EmojiClass], progress: bool
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    paths = [(label, path) for label, emoji in enumerate(classes) for _, path in emoji.images]
    images = np.empty((len(paths), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    bar = tqdm(paths, desc="emoji: images", unit="image", disable=not progress)
    for row, (_, path) in enumerate(bar):
        images[row] = load_emoji_image(path)
    return images, np.array([label for label, _ in paths], dtype=np.int64)


def _count_vendors(classes: Sequence[EmojiClass]) -> dict[str, int]:
    return {
        vendor: sum(drawer == vendor for emoji in classes for drawer, _ in emoji.images)
        for vendor in VENDORS
    }


def _source(package: str, tarball: Path, licence: str) -> dict[str, str]:
    return {
        "package": f"npm:{package}",
        "version": EMOJI_VERSION,
        "file": tarball.name,
        "sha256": sha256(tarball),
        "licence": licence,
    }
