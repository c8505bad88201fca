"""A fast, cached check of every image file of a data set, before training starts.

Each file is opened with Pillow and decoded whole (a JPEG at 1/8 scale: the decoder
still reads the whole stream, so a truncated file is caught, at about twice the speed
of a full decode). A file is bad when it is missing, unreadable, empty, not an image,
truncated or corrupt, in a pixel mode that cannot become RGB, or a decompression bomb:
more pixels than ``PIL.Image.MAX_IMAGE_PIXELS`` (read at each call).

The result is cached under ``cache_root() / "image-checks" / <digest>.json``, the
digest a sha256 of every file's absolute path, size and modification time (ns), in
order, and of the pixel limit: a second check of unchanged files opens no image, and
a changed file changes the digest. A result with an unreadable file is not cached, as
a change of permissions leaves the modification time as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import PIL
import torch
from PIL import Image, UnidentifiedImageError

from sampling_matters.data.cache import cache_root, write_text_atomic
from sampling_matters.data.datasets import ImageDataset

__all__ = ["BadImage", "BadImagesError", "check_images", "find_bad_images"]

_PROGRESS_THRESHOLD = 2000
"""Show a progress bar (when asked) only for more files than this."""

_LISTED = 10
"""How many bad files a message lists by name."""

_HINT = "fix or remove them, or pass --skip-bad-images to leave them out"
"""What the error tells the user to do."""

_CACHE_VERSION = 1
_Stat = tuple[int, int] | str  # (size, mtime_ns), or the reason the file cannot be read


@dataclass(frozen=True)
class BadImage:
    """An image file that cannot be used, and why.

    Attributes:
        path: the file, as it was given.
        reason: a short reason, e.g. ``"empty file"``, ``"missing"``,
            ``"not an image (Pillow cannot identify it)"``,
            ``"truncated or corrupt (image file is truncated)"``.
    """

    path: Path
    reason: str


class BadImagesError(ValueError):
    """Some image files of a data set cannot be used.

    Args:
        bad: the bad files.
        total: how many files were checked.

    Attributes:
        bad: the bad files.
        total: how many files were checked.
    """

    def __init__(self, bad: Sequence[BadImage], total: int) -> None:
        self.bad = list(bad)
        self.total = total
        super().__init__(f"{_describe(self.bad, total, 'are bad')}\n{_HINT}")

    def __reduce__(self) -> tuple[type[BadImagesError], tuple[list[BadImage], int]]:
        return type(self), (self.bad, self.total)


def _describe(bad: Sequence[BadImage], total: int, verb: str) -> str:
    """``"N of TOTAL image files VERB:"`` and up to ten ``"PATH: reason"`` lines.

    Example:
        >>> print(_describe([BadImage(Path("a.png"), "empty file")], 3, "are bad"))
        1 of 3 image files are bad:
          a.png: empty file
    """
    lines = [f"{len(bad)} of {total} image files {verb}:"]
    lines += [f"  {item.path}: {item.reason}" for item in bad[:_LISTED]]
    if len(bad) > _LISTED:
        lines.append(f"  … and {len(bad) - _LISTED} more")
    return "\n".join(lines)


def find_bad_images(
    paths: Sequence[Path], *, progress: bool = False, cache: bool = True
) -> list[BadImage]:
    """Open and decode every file of ``paths``; report those that cannot be used.

    Never raises for a bad file: it is recorded with its reason.

    Args:
        paths: the image files.
        progress: show a progress bar when there are more than 2,000 files.
        cache: read and write the result in the cache (see the module docstring).

    Returns:
        The bad files, in the order of ``paths``.
    """
    return [BadImage(Path(paths[i]), reason) for i, reason in _bad_indices(paths, progress, cache)]


def check_images(
    dataset: ImageDataset, *, skip: bool = False, progress: bool = False
) -> tuple[ImageDataset, list[BadImage]]:
    """Check the image files of ``dataset``; raise on bad ones, or leave them out.

    Args:
        dataset: the data set; one held in memory (a numpy array) passes unchecked.
        skip: leave the bad files out, with a warning, instead of raising.
        progress: show a progress bar when there are more than 2,000 files.

    Returns:
        The data set (without the bad files when ``skip``) and the bad files.

    Raises:
        BadImagesError: some files are bad and ``skip`` is false.
        ValueError: fewer than two classes remain once the bad files are left out.
    """
    if isinstance(dataset.images, np.ndarray):
        return dataset, []
    paths = list(dataset.images)
    found = _bad_indices(paths, progress, cache=True)
    bad = [BadImage(Path(paths[i]), reason) for i, reason in found]
    if not bad:
        return dataset, []
    if not skip:
        raise BadImagesError(bad, len(paths))
    dropped = {i for i, _ in found}
    good = [i for i in range(len(paths)) if i not in dropped]
    _require_two_classes(dataset, good, _describe(bad, len(paths), "are bad"))
    warnings.warn(_describe(bad, len(paths), "are bad and were left out"), stacklevel=2)
    return dataset.select(good), bad


def _require_two_classes(dataset: ImageDataset, good: list[int], listing: str) -> None:
    """Raise ``ValueError`` unless the items ``good`` hold at least two classes."""
    remaining = len(torch.unique(dataset.labels[torch.as_tensor(good, dtype=torch.long)]))
    if remaining < 2:
        raise ValueError(
            f"{listing}\nleaving them out leaves {remaining} of {dataset.n_classes} classes; "
            "metric learning needs at least 2: fix or remove the bad files"
        )


def _bad_indices(paths: Sequence[Path], progress: bool, cache: bool) -> list[tuple[int, str]]:
    """``(index, reason)`` of each bad file of ``paths``, from the cache when it has them."""
    files = [os.path.abspath(path) for path in paths]
    stats = [_stat(file) for file in files]
    if not cache:
        return list(_check_all(files, stats, progress))
    where = cache_root() / "image-checks" / f"{_digest(files, stats)}.json"
    found = _read_cached(where, len(files))
    if found is None:
        found = list(_check_all(files, stats, progress))
        if not any(reason.startswith("unreadable") for _, reason in found):
            _write_cached(where, files, found)
    return found


def _stat(file: str) -> _Stat:
    """``(size, mtime_ns)`` of ``file``, or why it cannot be read."""
    try:
        stat = os.stat(file)
    except FileNotFoundError:
        return "missing"
    except OSError as error:
        return f"unreadable ({error.strerror or error})"
    return stat.st_size, stat.st_mtime_ns


def _digest(files: Sequence[str], stats: Sequence[_Stat]) -> str:
    """A sha256 of the pixel limit, the Pillow version and each (path, size, mtime_ns)."""
    digest = hashlib.sha256(
        f"image-check {_CACHE_VERSION} {Image.MAX_IMAGE_PIXELS} {PIL.__version__}\n".encode()
    )
    for file, stat in zip(files, stats, strict=True):
        digest.update(f"{file}\0{stat}\0".encode(errors="surrogateescape"))
    return digest.hexdigest()


def _check_all(
    files: Sequence[str], stats: Sequence[_Stat], progress: bool
) -> Iterator[tuple[int, str]]:
    """Check each file; yield ``(index, reason)`` for the bad ones."""
    for index, (file, stat) in enumerate(
        _bar(zip(files, stats, strict=True), len(files), progress)
    ):
        reason = stat if isinstance(stat, str) else _check_file(file, stat[0])
        if reason is not None:
            yield index, reason


def _bar(
    items: Iterable[tuple[str, _Stat]], total: int, progress: bool
) -> Iterable[tuple[str, _Stat]]:
    """``items``, in a tqdm bar when ``progress`` and there are many."""
    if not progress or total <= _PROGRESS_THRESHOLD:
        return items
    from sampling_matters._progress import tqdm

    return tqdm(items, total=total, desc="checking images", unit="file")


def _check_file(file: str, size: int) -> str | None:
    """Why ``file`` (of ``size`` bytes) cannot be used, or None when it is a good image."""
    try:
        handle = open(file, "rb")  # noqa: SIM115 -- its errors are told apart from Pillow's
    except FileNotFoundError:
        return "missing"
    except OSError as error:  # a folder, say, or no permission
        return f"unreadable ({error.strerror or error})"
    with handle, warnings.catch_warnings():
        if size == 0:
            return "empty file"
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return _decode(handle, file)


def _decode(handle: IO[bytes], file: str) -> str | None:
    """Decode the open image file ``handle`` whole; why it failed, or None."""
    try:
        with Image.open(handle) as image:
            image.draft(None, (1, 1))  # JPEG: decode at 1/8 scale; other formats: no-op
            image.load()
            return _convertible(image)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        return _bomb(file)
    except UnidentifiedImageError:
        return "not an image (Pillow cannot identify it)"
    except Exception as error:  # any failure of Pillow on this file makes it bad
        return f"truncated or corrupt ({error or type(error).__name__})"


def _convertible(image: Image.Image) -> str | None:
    """None when ``image`` can become RGB and grey, as ``ImageDataset.image`` makes it."""
    pixel = image.crop((0, 0, 1, 1))
    try:
        pixel.convert("RGB"), pixel.convert("L")
    except ValueError as error:
        return f"unsupported pixel mode ({error})"
    return None


def _bomb(file: str) -> str:
    """The reason for a file over ``Image.MAX_IMAGE_PIXELS``, with its size if known."""
    limit = Image.MAX_IMAGE_PIXELS
    width, height = _declared_size(file) or (0, 0)
    if limit is not None and width * height <= limit:  # the size was not the cause
        return f"decompression bomb (over the limit of {limit} pixels)"
    pixels = f"{width}×{height} = {width * height} pixels"
    return f"decompression bomb ({pixels}, over the limit of {limit})"


def _declared_size(file: str) -> tuple[int, int] | None:
    """The size in the header of ``file``, read without Pillow's bomb check (or None)."""
    try:
        with open(file, "rb") as handle:
            prefix = handle.read(16)
            for name in Image.ID:
                factory, accept = Image.OPEN[name]
                if accept is None or accept(prefix) is True:
                    handle.seek(0)
                    with contextlib.suppress(Exception):  # not this format: try the next
                        return factory(handle, file).size
    except OSError:
        pass
    return None


def _read_cached(where: Path, n_files: int) -> list[tuple[int, str]] | None:
    """The cached ``(index, reason)`` list at ``where``, or None if absent or unusable."""
    try:
        stored = json.loads(where.read_text(encoding="utf-8"))
        if stored["version"] != _CACHE_VERSION or stored["n_files"] != n_files:
            return None
        found = [(int(entry["index"]), str(entry["reason"])) for entry in stored["bad"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return found if all(0 <= i < n_files for i, _ in found) else None


def _write_cached(where: Path, files: Sequence[str], found: Sequence[tuple[int, str]]) -> None:
    """Store ``found`` at ``where``, atomically; warn (and go on) if it cannot be written."""
    bad = [{"index": i, "path": files[i], "reason": reason} for i, reason in found]
    text = json.dumps({"version": _CACHE_VERSION, "n_files": len(files), "bad": bad}, indent=1)
    try:
        where.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(where, text)
    except OSError as error:
        warnings.warn(f"could not cache the image check in {where}: {error}", stacklevel=4)
