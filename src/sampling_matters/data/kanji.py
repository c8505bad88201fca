"""The ``kanji`` set: the 2,965 level-1 kanji of JIS X 0208 drawn by 48 font faces.

Like CUB-200-2011 it has many classes with many images each. A class is one kanji;
classes are numbered by JIS code (row, then cell), which the zero-shot split follows.
Its images are the kanji rendered, 32×32 grey, white ink on black, by each font face of
the Debian packages in :data:`KANJI_FONTS` (unpacked with ``dpkg-deb -x``, never
installed). An image is kept only where the face's character map has the kanji
(fontTools), FreeType renders it, and it has ink and differs from every other kanji of
that face (a face that maps kanji it lacks to one placeholder glyph loses those). A
face that covers fewer than half the kanji is left out, and so is a face whose images
are a near copy of a face kept before it (mean absolute difference below
:data:`NEAR_DUPLICATE` over a probe of every 8th kanji that both have): the same
outlines at another spacing, a proportional twin, or a regional variant that changes a
few forms.
A package that cannot be fetched is skipped with a warning.
"""

from __future__ import annotations

import logging
import shutil
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

from sampling_matters._optional import require
from sampling_matters._progress import tqdm
from sampling_matters.data.cache import BuiltSet
from sampling_matters.data.packages import (
    PackageDownloadError,
    deb_version,
    debian_licence,
    extract_deb,
    fetch_deb,
    require_tool,
    sha256,
)

__all__ = [
    "GLYPH_SIZE",
    "KANJI_FONTS",
    "MARGIN",
    "MIN_COVERAGE",
    "NEAR_DUPLICATE",
    "Face",
    "FontSource",
    "RenderedFace",
    "build_kanji",
    "font_faces",
    "jis_level1_kanji",
    "near_duplicate_of",
    "render_face",
    "render_glyph",
]

GLYPH_SIZE = 32
"""Images are GLYPH_SIZE × GLYPH_SIZE pixels."""

MARGIN = 1
"""Pixels left blank on each side: the ink fits in (GLYPH_SIZE − 2·MARGIN)²."""

NEAR_DUPLICATE = 0.02
"""A face whose mean absolute difference (in [0, 1]) from a kept face is below this is a copy."""

MIN_COVERAGE = 0.5
"""A face must draw at least this fraction of the kanji."""

PROBE_STRIDE = 8
"""Faces are compared on every PROBE_STRIDE-th kanji (371 of the 2,965)."""

MIN_PROBES = 20
"""Two faces that share fewer probe kanji are not compared."""

_FONT_SUFFIXES = (".ttf", ".otf", ".ttc", ".otc")


@dataclass(frozen=True)
class FontSource:
    """The font faces to take from one Debian package.

    Attributes:
        package: the Debian package.
        files: globs on font file names; the default takes every font file.
        faces: a text that a face's full name must contain ("" takes every face).
    """

    package: str
    files: tuple[str, ...] = ("*",)
    faces: str = ""


KANJI_FONTS = (
    FontSource("fonts-noto-cjk", ("NotoSansCJK-Regular.ttc", "NotoSerifCJK-Regular.ttc"), "JP"),
    FontSource("fonts-ipafont-gothic", ("ipag.ttf",)),
    FontSource("fonts-ipafont-mincho", ("ipam.ttf",)),
    FontSource("fonts-ipaexfont-gothic"),
    FontSource("fonts-ipaexfont-mincho"),
    FontSource("fonts-vlgothic", ("VL-Gothic-Regular.ttf",)),
    FontSource("fonts-horai-umefont"),
    FontSource("fonts-konatu", ("Konatu.ttf",)),
    FontSource("fonts-motoya-l-cedar"),
    FontSource("fonts-motoya-l-maruberi"),
    FontSource("fonts-seto"),
    FontSource("fonts-kiloji"),
    FontSource("fonts-hanazono", ("HanaMinA.ttf",)),
    FontSource("fonts-sawarabi-gothic"),
    FontSource("fonts-sawarabi-mincho"),
    FontSource("fonts-aoyagi-kouzan-t"),
    FontSource("fonts-aoyagi-soseki"),
    FontSource("fonts-kouzan-mouhitsu"),
    FontSource("fonts-morisawa-bizud-gothic", ("BIZUDGothic-Regular.ttf",)),
    FontSource("fonts-morisawa-bizud-mincho", ("BIZUDMincho-Regular.ttf",)),
    FontSource("fonts-dejima-mincho"),
    FontSource("fonts-dotgothic16"),
    FontSource("fonts-kanjistrokeorders"),
    FontSource("fonts-mplus", ("Mplus1-Regular.otf",)),
    FontSource("fonts-train"),
    FontSource("fonts-reggae"),
    FontSource("fonts-rocknroll"),
    FontSource("fonts-stick"),
    FontSource("fonts-yusei-magic"),
    FontSource("fonts-klee", ("KleeOne-Regular.ttf",)),
    FontSource("fonts-droid-fallback"),
    FontSource("fonts-arphic-ukai"),
    FontSource("fonts-arphic-uming"),
    FontSource("fonts-wqy-zenhei"),
    FontSource("fonts-lxgw-wenkai", ("LXGWWenKai-Regular.ttf",)),
    FontSource("fonts-oradano-mincho-gsrr"),
    FontSource("fonts-misaki"),
    FontSource("fonts-mona"),
    FontSource("fonts-monapo"),
    FontSource("fonts-yozvox-yozfont-standard-kana", ("YOzR*.ttf",)),
)
"""The Debian packages whose faces draw the kanji: one weight per family, in this order
(which decides which of two near-duplicate faces is kept)."""


@dataclass(frozen=True)
class Face:
    """One face of a font file.

    Attributes:
        path: the font file.
        index: the face's index in the file (0 unless a collection).
        name: the face's full name.
        codepoints: the code points its character map covers.
    """

    path: Path
    index: int
    name: str
    codepoints: frozenset[int] = field(repr=False)


@dataclass(frozen=True)
class RenderedFace:
    """The kanji that one face draws.

    Attributes:
        name: the face's full name.
        images: (K, GLYPH_SIZE, GLYPH_SIZE) uint8, zero where ``drawn`` is False.
        drawn: (K,) bool, which of the K kanji have an image.
    """

    name: str
    images: npt.NDArray[np.uint8] = field(repr=False)
    drawn: npt.NDArray[np.bool_] = field(repr=False)


def jis_level1_kanji() -> list[str]:
    """The 2,965 level-1 kanji of JIS X 0208 in JIS order (rows 16–47, cells 1–94).

    Decoded from EUC-JP bytes (0xA0 + row, 0xA0 + cell) with Python's own codec; row 47
    ends at cell 51.

    Example:
        >>> kanji = jis_level1_kanji()
        >>> len(kanji), kanji[0], kanji[-1]
        (2965, '亜', '腕')
    """
    kanji = []
    for row in range(16, 48):
        for cell in range(1, 95):
            try:
                kanji.append(bytes((0xA0 + row, 0xA0 + cell)).decode("euc_jp"))
            except UnicodeDecodeError:
                continue
    return kanji


def font_faces(path: Path, contains: str = "") -> list[Face]:
    """The faces of the font file at ``path`` (several for a ``.ttc`` collection).

    Args:
        path: a ``.ttf``, ``.otf``, ``.ttc`` or ``.otc`` file.
        contains: only faces whose full name contains this text ("" for all).

    Raises:
        MissingExtraError: fontTools is not installed (the ``data`` extra).
    """
    tt_lib = _fonttools()
    collection = path.suffix.lower() in (".ttc", ".otc")
    opened = tt_lib.TTCollection(str(path), lazy=True) if collection else None
    fonts = opened.fonts if opened is not None else [tt_lib.TTFont(str(path), lazy=True)]
    try:
        named = [(index, _full_name(font, path, index)) for index, font in enumerate(fonts)]
        return [
            Face(path, index, name, frozenset(fonts[index].getBestCmap() or {}))
            for index, name in named
            if contains in name
        ]
    finally:
        for font in fonts:
            font.close()


def render_glyph(
    font: ImageFont.FreeTypeFont, char: str, size: int = GLYPH_SIZE, margin: int = MARGIN
) -> npt.NDArray[np.uint8] | None:
    """``char`` drawn white on black, its ink centred in a ``size`` × ``size`` image.

    The glyph is drawn once on a larger canvas and its ink cropped and centred, at the
    font's own size unless the ink would not fit inside ``margin``; then it is drawn
    smaller until it does.

    Returns:
        (size, size) uint8, or None when the glyph has no ink.

    Raises:
        OSError: FreeType cannot render the glyph (a broken font program).
    """
    room = size - 2 * margin
    while True:
        ink = _ink(font, char, canvas=3 * size)
        if ink is None:
            return None
        if max(ink.shape) <= room or font.size <= 1:
            break
        shrunk = int(font.size * room / max(ink.shape))
        font = font.font_variant(size=max(1, min(int(font.size) - 1, shrunk)))
    ink = ink[:room, :room]  # only if even a 1-pixel font overflows
    glyph = np.zeros((size, size), dtype=np.uint8)
    top, left = (size - ink.shape[0]) // 2, (size - ink.shape[1]) // 2
    glyph[top : top + ink.shape[0], left : left + ink.shape[1]] = ink
    return glyph


def _ink(font: ImageFont.FreeTypeFont, char: str, canvas: int) -> npt.NDArray[np.uint8] | None:
    """The inked pixels of ``char``, cropped to their bounding box (None if there are none).

    The glyph's middle is put at the middle of a ``canvas``-pixel square; ink that
    would leave the canvas raises OSError, as a broken glyph does.
    """
    image = Image.new("L", (canvas, canvas), 0)
    ImageDraw.Draw(image).text((canvas // 2, canvas // 2), char, font=font, fill=255, anchor="mm")
    pixels = np.asarray(image, dtype=np.uint8)
    rows, cols = np.flatnonzero(pixels.any(axis=1)), np.flatnonzero(pixels.any(axis=0))
    if len(rows) == 0:
        return None
    if rows[0] == 0 or cols[0] == 0 or rows[-1] == canvas - 1 or cols[-1] == canvas - 1:
        raise OSError(f"the glyph of {char!r} leaves a {canvas}-pixel canvas")
    return pixels[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def render_face(face: Face, chars: Sequence[str], size: int = GLYPH_SIZE) -> RenderedFace:
    """Render every character of ``chars`` that ``face`` has.

    A character is left out where the face's character map lacks it, FreeType fails on
    it, it has no ink, or its image equals another character's image in this face.
    """
    font = ImageFont.truetype(str(face.path), size - 2 * MARGIN, index=face.index)
    images = np.zeros((len(chars), size, size), dtype=np.uint8)
    drawn = np.zeros(len(chars), dtype=bool)
    for k, char in enumerate(chars):
        if ord(char) not in face.codepoints:
            continue
        try:
            glyph = render_glyph(font, char, size)
        except OSError:  # a broken hinting program, for instance
            continue
        if glyph is not None:
            images[k], drawn[k] = glyph, True
    drawn &= ~_repeated(images, drawn)
    images[~drawn] = 0
    return RenderedFace(face.name, images, drawn)


def _repeated(images: npt.NDArray[np.uint8], drawn: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Which drawn images equal another drawn image (a placeholder glyph)."""
    keys = [image.tobytes() if ok else b"" for image, ok in zip(images, drawn, strict=True)]
    counts = Counter(keys)
    return np.array([ok and counts[key] > 1 for key, ok in zip(keys, drawn, strict=True)])


def near_duplicate_of(
    candidate: RenderedFace, kept: Sequence[RenderedFace], threshold: float = NEAR_DUPLICATE
) -> RenderedFace | None:
    """The first face of ``kept`` that ``candidate`` nearly copies, if any.

    Two faces are near copies when the mean absolute difference of their images, in
    [0, 1], is below ``threshold`` over the probe characters both draw (every
    :data:`PROBE_STRIDE`-th character; at least :data:`MIN_PROBES` of them).
    """
    probe = slice(None, None, PROBE_STRIDE)
    images, drawn = candidate.images[probe].astype(np.int16), candidate.drawn[probe]
    for other in kept:
        both = drawn & other.drawn[probe]
        if both.sum() < MIN_PROBES:
            continue
        difference = np.abs(images[both] - other.images[probe][both])
        if difference.mean() / 255.0 < threshold:
            return other
    return None


def build_kanji(
    downloads: Path, work: Path, progress: bool, say: Callable[[str], None]
) -> BuiltSet:
    """Fetch the font packages of :data:`KANJI_FONTS` and build the ``kanji`` set.

    Args:
        downloads: the folder of cached downloads.
        work: a scratch folder for unpacking (each package is removed once rendered).
        progress: show a progress bar over the packages.
        say: prints a line for the user (each package's licence, what was left out).

    Returns:
        The set; class c is the c-th level-1 kanji in JIS order, named by the kanji.
    """
    for tool in ("apt-get", "dpkg-deb"):
        require_tool(tool)
    _fonttools()
    chars = jis_level1_kanji()
    kept: list[RenderedFace] = []
    sources: list[dict[str, Any]] = []
    left_out: list[dict[str, str]] = []
    bar = tqdm(KANJI_FONTS, desc="kanji: fonts", unit="package", disable=not progress)
    with _quiet_fonttools():
        for source in bar:
            used = _use_package(source, downloads, work, chars, kept, left_out, say)
            if used is not None:
                sources.append(used)
            bar.set_postfix(faces=len(kept))
    images, labels = _stack(kept)
    metadata = {
        "sources": sources,
        "faces": [face.name for face in kept],
        "images_per_face": {face.name: int(face.drawn.sum()) for face in kept},
        "left_out": left_out,
        "class_order": "JIS X 0208 code (row, cell)",
        "image_format": f"{GLYPH_SIZE}x{GLYPH_SIZE} grey, white ink on black, ink centred",
        "near_duplicate_threshold": NEAR_DUPLICATE,
    }
    say(f"kanji: {len(kept)} faces kept, {len(left_out)} left out (see the metadata)")
    return BuiltSet(images, labels, chars, metadata)


def _use_package(
    source: FontSource,
    downloads: Path,
    work: Path,
    chars: Sequence[str],
    kept: list[RenderedFace],
    left_out: list[dict[str, str]],
    say: Callable[[str], None],
) -> dict[str, Any] | None:
    """Render the faces of one package into ``kept``; its source record, or None if skipped."""
    try:
        deb = fetch_deb(downloads, source.package)
    except PackageDownloadError as error:
        warnings.warn(f"kanji: skipping {source.package}: {error}", RuntimeWarning, stacklevel=2)
        left_out.append({"package": source.package, "reason": str(error)})
        return None
    root = extract_deb(deb, work / source.package)
    try:
        licence = debian_licence(root, source.package)
        say(f"kanji: {source.package}: {licence}")
        names = []
        for face in _faces(root, source):
            reason = _admit(render_face(face, chars), kept, len(chars))
            if reason:
                left_out.append({"package": source.package, "face": face.name, "reason": reason})
            else:
                names.append(face.name)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {
        "package": f"debian:{source.package}",
        "version": deb_version(deb),
        "file": deb.name,
        "sha256": sha256(deb),
        "licence": licence,
        "faces": names,
    }


def _admit(rendered: RenderedFace, kept: list[RenderedFace], n_chars: int) -> str:
    """Append ``rendered`` to ``kept`` and return "", or return why it is left out."""
    n_drawn = int(rendered.drawn.sum())
    if n_drawn < MIN_COVERAGE * n_chars:
        return f"draws only {n_drawn} of the {n_chars} kanji"
    original = near_duplicate_of(rendered, kept)
    if original is not None:
        return f"near duplicate of {original.name}"
    kept.append(rendered)
    return ""


def _faces(root: Path, source: FontSource) -> Iterator[Face]:
    """The faces that ``source`` selects among the font files unpacked under ``root``."""
    files = sorted(
        path
        for path in root.rglob("*")
        if path.suffix.lower() in _FONT_SUFFIXES
        and not path.is_symlink()  # links may point outside the unpacked tree
        and path.is_file()
        and any(path.match(pattern) for pattern in source.files)
    )
    seen: set[str] = set()
    for path in files:
        if path.name in seen:  # the same file installed under two folders
            continue
        seen.add(path.name)
        yield from font_faces(path, source.faces)


def _stack(
    faces: Sequence[RenderedFace],
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """All images, class by class (kanji in JIS order), faces in the order kept."""
    if not faces:
        raise RuntimeError("kanji: no font face could be used; see the warnings above")
    images = np.stack([face.images for face in faces], axis=1)  # (K, F, S, S)
    drawn = np.stack([face.drawn for face in faces], axis=1)  # (K, F)
    labels = np.nonzero(drawn)[0].astype(np.int64)
    return images[drawn], labels


def _full_name(font: Any, path: Path, index: int) -> str:
    name = font["name"].getDebugName(4) if "name" in font else None
    return str(name) if name else f"{path.stem}#{index}"


def _fonttools() -> Any:
    """The module ``fontTools.ttLib``, or an ImportError that names the ``data`` extra."""
    return require("fontTools.ttLib")


@contextmanager
def _quiet_fonttools() -> Iterator[None]:
    """Silence fontTools' warnings about odd tables while fonts are read."""
    logger = logging.getLogger("fontTools")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
