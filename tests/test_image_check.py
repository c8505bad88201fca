"""The image-file check: real good and broken files, the cache, skip mode."""

import os
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sampling_matters.data import image_check
from sampling_matters.data.datasets import ImageDataset
from sampling_matters.data.folder import load_folder
from sampling_matters.data.image_check import (
    BadImage,
    BadImagesError,
    check_images,
    find_bad_images,
)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """A private cache folder for each test."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("SAMPLING_MATTERS_CACHE", str(folder))
    return folder / "image-checks"


def noise(size, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3), np.uint8))


def save(image, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def truncated(image, path):
    save(image, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def png_declaring(path, width, height):
    """A tiny PNG whose header declares width x height pixels."""

    def chunk(kind, body):
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    return path


@pytest.fixture
def broken(tmp_path):
    """One file of each kind of fault, with the start of its expected reason."""
    root = tmp_path / "broken"
    root.mkdir()
    (root / "empty.png").write_bytes(b"")
    (root / "text.jpg").write_text("this is not an image\n")
    (root / "folder.png").mkdir()
    return {
        root / "empty.png": "empty file",
        root / "text.jpg": "not an image (Pillow cannot identify it)",
        truncated(noise((64, 64)), root / "cut.png"): "truncated or corrupt (",
        truncated(noise((128, 128)), root / "cut.jpg"): "truncated or corrupt (",
        png_declaring(root / "bomb.png", 100_000, 100_000): (
            f"decompression bomb (100000×100000 = 10000000000 pixels, "
            f"over the limit of {Image.MAX_IMAGE_PIXELS})"
        ),
        root / "missing.jpg": "missing",
        root / "folder.png": "unreadable (",
    }


def test_good_png_and_jpeg_pass(tmp_path):
    files = [save(noise((32, 32)), tmp_path / "a.png"), save(noise((64, 48)), tmp_path / "b.jpg")]
    files.append(save(Image.new("L", (9, 5)), tmp_path / "c.jpeg"))  # under 8 px: scale 1
    assert find_bad_images(files) == []


def test_each_fault_is_found_with_its_reason(tmp_path, broken):
    good = save(noise((32, 32)), tmp_path / "good.png")
    paths = [good, *broken]
    found = {bad.path: bad.reason for bad in find_bad_images(paths, cache=False)}
    assert set(found) == set(broken)
    for path, reason in broken.items():
        assert found[path].startswith(reason), (path, found[path])
    assert "truncated" in found[paths[3]]  # Pillow's own message is kept


def test_bomb_over_a_lowered_limit(tmp_path, monkeypatch):
    small = save(noise((20, 20)), tmp_path / "small.png")
    warned = save(noise((40, 40)), tmp_path / "warned.png")  # over the limit: a warning in Pillow
    refused = save(noise((60, 60)), tmp_path / "refused.jpg")  # over twice the limit: an error
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    found = find_bad_images([small, warned, refused])
    assert found == [
        BadImage(warned, "decompression bomb (40×40 = 1600 pixels, over the limit of 1000)"),
        BadImage(refused, "decompression bomb (60×60 = 3600 pixels, over the limit of 1000)"),
    ]


def test_unsupported_pixel_mode(tmp_path):
    lab = save(Image.new("LAB", (8, 8)), tmp_path / "lab.tif")
    (bad,) = find_bad_images([lab])
    assert bad.reason.startswith("unsupported pixel mode (") and "LAB" in bad.reason


def dataset_of(files, labels):
    return ImageDataset(
        files, labels, kind="photo", class_names=["a", "b", "c"][: len(set(labels))]
    )


def test_error_names_each_file_and_reason(tmp_path, broken):
    good = [save(noise((16, 16), seed), tmp_path / f"good{seed}.png") for seed in range(3)]
    files = [*good, *broken]
    labels = [i % 2 for i in range(len(files))]
    with pytest.raises(BadImagesError) as raised:
        check_images(dataset_of(files, labels))
    message = str(raised.value)
    assert message.startswith(f"{len(broken)} of {len(files)} image files are bad:")
    for bad in find_bad_images(files):
        assert f"{bad.path}: {bad.reason}" in message
    assert "fix or remove them, or pass --skip-bad-images to leave them out" in message
    assert isinstance(raised.value, ValueError) and len(raised.value.bad) == len(broken)
    again = pickle.loads(pickle.dumps(raised.value))
    assert str(again) == message


def test_at_most_ten_are_listed(tmp_path):
    files = [tmp_path / f"gone{i:02d}.png" for i in range(13)]
    message = str(BadImagesError(find_bad_images(files), 20))
    assert message.startswith("13 of 20 image files are bad:")
    assert "gone09.png: missing" in message and "gone10.png" not in message
    assert "… and 3 more" in message


def test_skip_mode_warns_and_keeps_labels_consistent(tmp_path):
    for name in ["cat", "dog", "eel"]:
        for i in range(3):
            save(noise((16, 16), i), tmp_path / "set" / name / f"{i}.png")
    (tmp_path / "set" / "cat" / "1.png").write_bytes(b"")
    for i in range(3):  # every dog is bad: the class goes
        (tmp_path / "set" / "dog" / f"{i}.png").write_text("not a dog")
    dataset = load_folder(tmp_path / "set", "all")
    with pytest.warns(UserWarning, match=r"4 of 9 image files are bad and were left out") as caught:
        kept, bad = check_images(dataset, skip=True)
    assert str(tmp_path / "set" / "cat" / "1.png") + ": empty file" in str(caught[0].message)
    assert len(bad) == 4 and len(kept) == 5
    assert kept.class_names == ["cat", "eel"] and kept.n_classes == 2
    assert sorted(kept.labels.tolist()) == [0, 0, 1, 1, 1]
    for path, label in zip(kept.images, kept.labels.tolist()):
        assert Path(path).parent.name == kept.class_names[label]
    assert {b.path for b in bad}.isdisjoint(kept.images)


def test_skip_mode_needs_two_classes(tmp_path):
    files = [save(noise((16, 16)), tmp_path / "a.png"), tmp_path / "gone.png"]
    with pytest.raises(ValueError, match=r"leaves 1 of 2 classes.*at least 2"):
        check_images(dataset_of(files, [0, 1]), skip=True)


def test_a_clean_set_comes_back_unchanged(tmp_path):
    dataset = dataset_of(
        [save(noise((16, 16), i), tmp_path / f"{i}.png") for i in range(4)], [0, 0, 1, 1]
    )
    assert check_images(dataset) == (dataset, [])


def test_in_memory_sets_pass_through():
    dataset = ImageDataset(np.zeros((4, 8, 8), np.uint8), [0, 0, 1, 1], kind="glyph")
    kept, bad = check_images(dataset)
    assert kept is dataset and bad == []


@pytest.fixture
def opened(monkeypatch):
    """Counts the calls of Image.open."""
    calls = []
    real = Image.open

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(Image, "open", counting)
    return calls


def test_second_check_opens_no_image(tmp_path, cache, opened):
    files = [save(noise((16, 16), i), tmp_path / f"{i}.png") for i in range(3)]
    files.append(tmp_path / "gone.png")
    first = find_bad_images(files)
    assert len(opened) == 3 and len(list(cache.glob("*.json"))) == 1
    opened.clear()
    assert find_bad_images(files) == first == [BadImage(files[3], "missing")]
    assert opened == []


def test_a_changed_file_is_checked_again(tmp_path, cache, opened):
    files = [save(noise((16, 16), i), tmp_path / f"{i}.png") for i in range(3)]
    assert find_bad_images(files) == []
    stat = files[1].stat()
    os.utime(files[1], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched
    opened.clear()
    assert find_bad_images(files) == []
    assert len(opened) == 3 and len(list(cache.glob("*.json"))) == 2
    truncated(noise((64, 64)), files[2])  # rewritten: a new size
    assert [bad.path for bad in find_bad_images(files)] == [files[2]]


def test_a_lowered_limit_is_not_answered_from_the_cache(tmp_path, monkeypatch):
    files = [save(noise((40, 40)), tmp_path / "a.png")]
    assert find_bad_images(files) == []
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    assert len(find_bad_images(files)) == 1


def test_no_cache_reads_and_writes_nothing(tmp_path, cache, opened):
    files = [save(noise((16, 16), i), tmp_path / f"{i}.png") for i in range(2)]
    find_bad_images(files)
    opened.clear()
    assert find_bad_images(files, cache=False) == []
    assert len(opened) == 2
    for entry in cache.glob("*.json"):
        entry.unlink()
    find_bad_images(files, cache=False)
    assert not cache.exists() or not list(cache.iterdir())


def test_an_unreadable_file_is_not_cached(tmp_path, cache):
    (tmp_path / "folder.png").mkdir()
    assert find_bad_images([tmp_path / "folder.png"])[0].reason.startswith("unreadable (")
    assert not cache.exists() or not list(cache.glob("*.json"))


def test_a_broken_cache_entry_is_ignored(tmp_path, cache):
    files = [tmp_path / "gone.png"]
    find_bad_images(files)
    (entry,) = cache.glob("*.json")
    entry.write_text("{not json")
    assert find_bad_images(files) == [BadImage(files[0], "missing")]


def test_progress_bar_for_many_files(tmp_path, monkeypatch, capsys):
    files = [save(noise((8, 8)), tmp_path / "a.png")] * 3
    monkeypatch.setattr(image_check, "_PROGRESS_THRESHOLD", 2)
    find_bad_images(files, progress=True, cache=False)
    assert "checking images" in capsys.readouterr().err
    find_bad_images(files, progress=False, cache=False)
    assert "checking images" not in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["truncated", "missing", "text"])
def test_dataset_image_names_a_bad_file(tmp_path, kind):
    path = tmp_path / "broken.jpg"
    if kind == "truncated":
        truncated(noise((128, 128)), path)
    elif kind == "text":
        path.write_text("not an image")
    dataset = ImageDataset([path], [0], kind="photo")
    with pytest.raises(ValueError, match=rf"cannot read image {path}: "):
        dataset.image(0)
