"""The offline sets: cache protocol, parsers and renderers offline; real builds marked slow."""

import gzip
import importlib
import io
import json
import os
import re
import stat
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sampling_matters import data
from sampling_matters.data import cache, emoji, fashion_mnist, kanji, offline, packages
from sampling_matters.data.cache import BuiltSet, build_once, cache_root, fetch_once
from sampling_matters.data.offline import load_offline, prepare

# --- the cache folder --------------------------------------------------------------------


def test_cache_root_prefers_argument_then_env_then_default(monkeypatch, tmp_path):
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "env"))
    assert cache_root(tmp_path / "arg") == tmp_path / "arg"
    assert cache_root() == tmp_path / "env"
    monkeypatch.delenv(cache.ENV_VAR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "sampling-matters"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_root() == Path.home() / ".cache" / "sampling-matters"


def test_env_var_moves_prepare_and_load(monkeypatch, tmp_path, fake_recipe):
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path))
    assert prepare("emoji", progress=False) == tmp_path / "emoji.npz"
    assert len(load_offline("emoji", "all")) == 10


# --- building and downloading whole or not at all ----------------------------------------


class BuildInterruptedError(Exception):
    pass


def write_then_fail(scratch: Path) -> Path:
    (scratch / "set.npz").write_bytes(b"half a set")
    raise BuildInterruptedError


def test_interrupted_build_leaves_nothing_and_rerun_builds(tmp_path):
    final = tmp_path / "set.npz"
    with pytest.raises(BuildInterruptedError):
        build_once(final, write_then_fail)
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []  # the scratch folder is gone too

    def write(scratch: Path) -> Path:
        (scratch / "set.npz").write_bytes(b"whole")
        return scratch / "set.npz"

    assert build_once(final, write) is True
    assert final.read_bytes() == b"whole"
    assert build_once(final, write_then_fail) is False  # complete: not rebuilt


def test_scratch_left_by_a_killed_process_is_removed(tmp_path):
    abandoned = tmp_path / ".build-set.npz-999999999-x1"  # no process has this id
    abandoned.mkdir()
    (abandoned / "set.npz").write_bytes(b"half")
    live = tmp_path / f".build-set.npz-{os.getpid()}-x2"  # a build still running
    live.mkdir()
    build_once(tmp_path / "set.npz", lambda s: _write(s / "set.npz", b"ok"))
    assert not abandoned.exists() and live.exists()


def test_partial_download_is_never_reused(tmp_path):
    calls = []

    def download(scratch: Path) -> Path:
        calls.append(scratch)
        partial = _write(scratch / "pkg_1.0_all.deb", b"part")
        if len(calls) == 1:
            raise ConnectionError("network went away")
        return _write(partial, b"complete")

    with pytest.raises(ConnectionError):
        fetch_once(tmp_path, "pkg_*.deb", download)
    assert list(tmp_path.glob("pkg_*.deb")) == []
    got = fetch_once(tmp_path, "pkg_*.deb", download)
    assert got == tmp_path / "pkg_1.0_all.deb" and got.read_bytes() == b"complete"
    assert fetch_once(tmp_path, "pkg_*.deb", download) == got
    assert len(calls) == 2  # the third call reused the file


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --- prepare and load_offline with a fake builder ----------------------------------------

N_FAKE_CLASSES = 5


def fake_set() -> BuiltSet:
    labels = np.repeat(np.arange(N_FAKE_CLASSES), 2)
    images = (labels[:, None, None, None] * 40 + np.zeros((1, 4, 4, 3))).astype(np.uint8)
    names = [f"class{c}" for c in range(N_FAKE_CLASSES)]
    return BuiltSet(images, labels, names, {"sources": ["fake"]})


@pytest.fixture
def fake_recipe(monkeypatch):
    """Replace the emoji builder with one that counts its calls and can fail midway."""
    state = {"calls": 0, "fail": False}

    def build(downloads, scratch, progress, say):
        state["calls"] += 1
        (scratch / "junk").write_bytes(b"partial work")
        if state["fail"]:
            raise BuildInterruptedError
        say("fake: licence")
        return fake_set()

    recipe = offline.OfflineRecipe(build, "photo", "fake key")
    monkeypatch.setitem(offline.RECIPES, "emoji", recipe)
    return state


def test_prepare_is_atomic_then_a_no_op(tmp_path, fake_recipe, capsys):
    fake_recipe["fail"] = True
    with pytest.raises(BuildInterruptedError):
        prepare("emoji", cache_dir=tmp_path, progress=False)
    assert not offline.is_prepared("emoji", tmp_path)
    assert [p.name for p in tmp_path.iterdir() if p.name != "downloads"] == []
    fake_recipe["fail"] = False
    path = prepare("emoji", cache_dir=tmp_path, progress=False)
    assert path == tmp_path / "emoji.npz" and offline.is_prepared("emoji", tmp_path)
    assert prepare("emoji", cache_dir=tmp_path) == path
    assert fake_recipe["calls"] == 2
    assert "already prepared" in capsys.readouterr().out
    metadata = offline.read_metadata("emoji", tmp_path)
    assert metadata["n_images"] == 10 and metadata["n_classes"] == N_FAKE_CLASSES
    assert metadata["split"]["train_classes"] == [0, 3] and metadata["sources"] == ["fake"]


def test_splits_are_deterministic_and_zero_shot(tmp_path, fake_recipe):
    prepare("emoji", cache_dir=tmp_path, progress=False)
    train = load_offline("emoji", "train", cache_dir=tmp_path)
    test = load_offline("emoji", "test", cache_dir=tmp_path)
    everything = load_offline("emoji", "all", cache_dir=tmp_path)
    assert train.class_names == ["class0", "class1", "class2"]  # ⌈5/2⌉ classes
    assert test.class_names == ["class3", "class4"]
    assert len(train) + len(test) == len(everything) == 10
    assert train.kind == test.kind == "photo"
    assert test.labels.tolist() == [0, 0, 1, 1]  # renumbered within the split
    assert np.asarray(test.image(0))[0, 0, 0] == 3 * 40  # the images follow their labels
    again = load_offline("emoji", "train", cache_dir=tmp_path)
    assert again.labels.tolist() == train.labels.tolist()
    assert np.array_equal(again.images, train.images)


def test_classes_of_one_image_are_dropped_and_the_rest_renumbered(tmp_path, capsys):
    built = fake_set()
    labels = built.labels.copy()
    labels[1] = N_FAKE_CLASSES  # class 0 keeps one image; a class 5 gets one
    one_short = BuiltSet(built.images, labels, [*built.class_names, "extra"], {})
    kept = offline._drop_small_classes("fake", one_short)
    assert kept.class_names == ["class1", "class2", "class3", "class4"]
    assert kept.labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert kept.images[0, 0, 0, 0] == 40 and kept.metadata["dropped_classes"] == 2
    assert "dropped 2 classes" in capsys.readouterr().out


def test_unknown_names_and_splits_are_refused(tmp_path):
    for call in (
        lambda: prepare("mnist", cache_dir=tmp_path),
        lambda: load_offline("mnist", "train", cache_dir=tmp_path),
    ):
        with pytest.raises(ValueError, match=r"emoji.*kanji.*fashion-mnist"):
            call()
    with pytest.raises(ValueError, match="split"):
        load_offline("emoji", "val", cache_dir=tmp_path)


def test_loading_an_unprepared_set_says_how_to_prepare_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="prepare"):
        load_offline("kanji", "train", cache_dir=tmp_path)


# --- the one list of data sets: the recipe table, followed by the rest and the docs ---------

DOCS = Path(__file__).resolve().parents[1] / "docs"


def first_columns(page: str, header: str) -> list[list[str]]:
    """The first column, without backquotes, of each table in ``docs/PAGE`` headed ``header``."""
    columns = []
    for table in re.findall(r"(?:^\|.*\n)+", (DOCS / page).read_text(), re.MULTILINE):
        cells = [line.split("|")[1].strip() for line in table.splitlines()]
        if cells[0] == header:
            columns.append([cell.strip("`") for cell in cells[2:]])  # after the --- line
    return columns


def test_the_offline_sets_are_those_of_the_recipe_table():
    assert offline.OFFLINE_SETS == data.OFFLINE == tuple(offline.RECIPES)
    assert re.findall(r"^``([\w-]+)``  ", offline.__doc__, re.MULTILINE) == list(data.OFFLINE)


def test_the_docs_list_every_offline_set():
    tables = first_columns("offline-data.md", "name")
    assert len(tables) == 3  # the sets, their build times, their splits
    for names in tables:
        assert sorted(names) == sorted(data.OFFLINE), "docs/offline-data.md: a table misses a set"


def test_the_docs_list_every_data_spec():
    (specs,) = first_columns("data.md", "spec")
    kinds = (*data.SPEC_KINDS, data._PAIRS_KIND)
    assert sorted(specs) == sorted([*data.OFFLINE, *(f"{kind}:PATH" for kind in kinds)])


@pytest.mark.parametrize("name", offline.OFFLINE_SETS)
def test_each_recipe_calls_the_builder_of_its_module(name, monkeypatch, tmp_path):
    module = importlib.import_module(f"sampling_matters.data.{name.replace('-', '_')}")
    builder = f"build_{module.__name__.rpartition('.')[2]}"
    monkeypatch.setattr(module, builder, lambda *args: ("built", args[2]))
    assert offline.RECIPES[name].build(tmp_path, tmp_path, False, print) == ("built", False)


@pytest.mark.parametrize("kind", data.SPEC_KINDS)
def test_each_spec_kind_has_a_loader(kind):
    assert callable(data._loader(kind))


# --- tools and packages -----------------------------------------------------------------


def fake_tool(folder: Path, name: str, script: str) -> None:
    tool = folder / name
    tool.write_text(f"#!/bin/sh\n{script}\n")
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)


def test_a_missing_tool_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(packages.ToolNotFoundError, match=r"npm.*install"):
        packages.fetch_npm(tmp_path, "emoji-datasource-google", "16.0.0")
    with pytest.raises(packages.ToolNotFoundError, match="apt-get"):
        packages.fetch_deb(tmp_path, "fonts-klee")


def test_a_failed_download_names_the_package(monkeypatch, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_tool(bin_dir, "npm", "echo 'npm error network ETIMEDOUT' >&2; exit 1")
    fake_tool(bin_dir, "apt-get", "echo 'E: Failed to fetch' >&2; exit 100")
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(packages.PackageDownloadError, match=r"emoji-datasource-apple.*ETIMEDOUT"):
        packages.fetch_npm(tmp_path, "emoji-datasource-apple", "16.0.0")
    with pytest.raises(packages.PackageDownloadError, match="fonts-seto") as caught:
        packages.fetch_deb(tmp_path, "fonts-seto")
    assert caught.value.package == "fonts-seto"
    assert list(tmp_path.glob("*.deb")) == [] and list(tmp_path.glob(".download-*")) == []


def test_a_downloaded_tarball_is_reused(monkeypatch, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_tool(bin_dir, "npm", "echo x > pkg-1.0.0.tgz; echo call >> ../calls")
    monkeypatch.setenv("PATH", str(bin_dir))
    downloads = tmp_path / "downloads"
    first = packages.fetch_npm(downloads, "pkg", "1.0.0")
    assert packages.fetch_npm(downloads, "pkg", "1.0.0") == first == downloads / "pkg-1.0.0.tgz"
    assert (downloads / "calls").read_text().count("call") == 1


def write_copyright(root: Path, package: str, text: str) -> None:
    path = root / "usr" / "share" / "doc" / package / "copyright"
    path.parent.mkdir(parents=True)
    path.write_text(text)


def test_debian_licence_summarises_the_copyright_file(tmp_path):
    write_copyright(
        tmp_path,
        "fonts-x",
        "Format: https-less\n\nFiles: *\nCopyright: someone\nLicense: OFL-1.1\n\n"
        "Files: debian/*\nCopyright: packager\nLicense: GPL-2+\n\n"
        "Files: extra/*\n  more/*\nLicense: Expat\n\nLicense: OFL-1.1\n full text\n",
    )
    assert packages.debian_licence(tmp_path, "fonts-x") == "OFL-1.1, Expat (MIT)"
    write_copyright(tmp_path, "fonts-y", "Packaged by me.\n\nARPHIC PUBLIC LICENSE\n\ntext\n")
    assert packages.debian_licence(tmp_path, "fonts-y") == "Arphic Public License"
    assert "no copyright file" in packages.debian_licence(tmp_path, "fonts-z")


# --- emoji ------------------------------------------------------------------------------


def png(path: Path, colour: tuple[int, int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGBA", (64, 64), colour)
    image.putpixel((0, 0), (0, 0, 0, 0))  # one transparent pixel
    image.save(path)


def fake_vendor(root: Path, vendor: str, entries: list[dict], drawn: set[str]) -> Path:
    package = root / vendor / "package"
    package.mkdir(parents=True)
    for entry in entries:
        entry = {**entry, f"has_img_{vendor}": entry["unified"] in drawn}
        if entry[f"has_img_{vendor}"]:
            png(package / "img" / vendor / "64" / entry["image"], (200, 10, 10, 255))
    flags = [{**e, f"has_img_{vendor}": e["unified"] in drawn} for e in entries]
    (package / "emoji.json").write_text(json.dumps(flags))
    return package


ENTRIES = [
    {"unified": u, "short_name": n, "image": f"{u.lower()}.png", "sort_order": o}
    for u, n, o in [("1F600", "grinning", 3), ("1F602", "joy", 1), ("2764", "heart", 2)]
]


def test_emoji_classes_follow_sort_order(tmp_path):
    packages_ = {
        "google": fake_vendor(tmp_path, "google", ENTRIES, {"1F600", "1F602", "2764"}),
        "twitter": fake_vendor(tmp_path, "twitter", ENTRIES, {"1F600", "1F602"}),
        "apple": fake_vendor(tmp_path, "apple", ENTRIES, {"1F602"}),
    }
    (packages_["apple"] / "img" / "apple" / "64" / "1f602.png").unlink()  # flagged, missing
    classes = emoji.emoji_classes(packages_)
    assert [c.name for c in classes] == ["joy", "heart", "grinning"]  # sort_order 1, 2, 3
    assert [vendor for vendor, _ in classes[0].images] == ["google", "twitter"]  # apple's missing
    assert [vendor for vendor, _ in classes[1].images] == ["google"]  # prepare drops it


def test_emoji_images_are_composited_on_white(tmp_path):
    png(tmp_path / "e.png", (200, 10, 10, 255))
    image = emoji.load_emoji_image(tmp_path / "e.png")
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert image[0, 0].tolist() == [255, 255, 255] and image[1, 1].tolist() == [200, 10, 10]


def test_unpack_vendor_takes_only_the_json_and_the_64_pixel_images(tmp_path):
    tarball = tmp_path / "emoji-datasource-google-16.0.0.tgz"
    members = {
        "package/emoji.json": b"[]",
        "package/img/google/64/1f600.png": b"png",
        "package/img/google/32/1f600.png": b"small",
        "package/img/google/sheets/64.png": b"sheet",
        "package/README.md": b"readme",
    }
    with tarfile.open(tarball, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    package = emoji.unpack_vendor(tarball, "google", tmp_path / "out")
    found = sorted(p.relative_to(package).as_posix() for p in package.rglob("*") if p.is_file())
    assert found == ["emoji.json", "img/google/64/1f600.png"]


# --- kanji ------------------------------------------------------------------------------


def test_jis_level1_kanji():
    chars = kanji.jis_level1_kanji()
    assert len(chars) == 2965 == len(set(chars))
    assert chars[0] == "亜" and chars[-1] == "腕"  # 16-01 and 47-51
    assert chars[chars.index("院") + 1] == "陰"  # 16-87, 16-88: JIS order, not Unicode order
    assert all(0x4E00 <= ord(c) <= 0x9FFF for c in chars)


def system_font() -> tuple[Path, str]:
    """A font on this machine: one with a kanji if any, else any font and "A"."""
    ttlib = pytest.importorskip("fontTools.ttLib")
    fonts = sorted(
        p
        for folder in ("/usr/share/fonts", "/usr/local/share/fonts", "/Library/Fonts")
        if Path(folder).is_dir()
        for p in Path(folder).rglob("*")
        if p.suffix.lower() in (".ttf", ".otf")
    )
    if not fonts:
        pytest.skip("no font on this machine")
    for path in fonts:
        with ttlib.TTFont(str(path), lazy=True) as font:
            if ord("亜") in (font.getBestCmap() or {}):
                return path, "亜"
    return fonts[0], "A"


def test_render_glyph_centres_the_ink_inside_the_margin():
    from PIL import ImageFont

    path, char = system_font()
    font = ImageFont.truetype(str(path), 60)  # too big: must shrink to fit
    glyph = kanji.render_glyph(font, char)
    assert glyph is not None and glyph.shape == (32, 32) and glyph.dtype == np.uint8
    rows, cols = np.nonzero(glyph)
    assert rows.min() >= 1 and cols.min() >= 1 and rows.max() <= 30 and cols.max() <= 30
    assert abs((rows.min() + rows.max()) / 2 - 15.5) <= 1
    assert abs((cols.min() + cols.max()) / 2 - 15.5) <= 1
    assert kanji.render_glyph(font, " ") is None  # no ink


def test_render_face_keeps_only_characters_in_the_cmap():
    path, char = system_font()
    (face, *_) = kanji.font_faces(path)
    assert face.path == path and face.name
    missing = "\U000f0000"  # private use plane: in no ordinary font
    rendered = kanji.render_face(face, [char, missing])
    assert rendered.drawn.tolist() == [True, False]
    assert rendered.images[1].max() == 0 and rendered.images[0].max() > 0


def face(images, name="f") -> kanji.RenderedFace:
    images = np.asarray(images, dtype=np.uint8)
    return kanji.RenderedFace(name, images, images.reshape(len(images), -1).any(1))


def test_placeholder_glyphs_are_dropped():
    images = np.zeros((4, 2, 2), np.uint8)
    images[0, 0, 0] = images[1, 0, 0] = 255  # the same "tofu" for two characters
    images[2, 1, 1] = 255
    drawn = np.array([True, True, True, False])
    assert kanji._repeated(images, drawn).tolist() == [True, True, False, False]


def test_near_duplicate_faces_are_found():
    rng = np.random.default_rng(0)
    base = rng.integers(1, 256, (200, 4, 4))
    shifted = np.clip(base + 1, 0, 255)  # the same design, a hair different
    other = rng.integers(1, 256, (200, 4, 4))
    kept = [face(base, "base")]
    assert kanji.near_duplicate_of(face(shifted), kept).name == "base"
    assert kanji.near_duplicate_of(face(other), kept) is None
    few = face(np.concatenate([base[:50], np.zeros((150, 4, 4))]))
    assert kanji.near_duplicate_of(few, kept) is None  # too few kanji in common to judge


def test_kanji_skips_a_package_that_fails_with_a_warning(monkeypatch, tmp_path):
    def fail(downloads, package):
        raise packages.PackageDownloadError(package, "network unreachable")

    monkeypatch.setattr(kanji, "fetch_deb", fail)
    monkeypatch.setattr(kanji, "require_tool", lambda name: name)
    monkeypatch.setattr(kanji, "KANJI_FONTS", (kanji.FontSource("fonts-a"),))
    pytest.importorskip("fontTools")
    with (
        pytest.warns(RuntimeWarning, match="fonts-a"),
        pytest.raises(RuntimeError, match="no font"),
    ):
        kanji.build_kanji(tmp_path, tmp_path, False, print)


# --- fashion-mnist ----------------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray, code: int) -> None:
    header = bytes([0, 0, code, array.ndim]) + np.array(array.shape, ">i4").tobytes()
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def test_read_idx_reads_gzip_and_plain_files(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "images-idx3-ubyte.gz", images, 0x08)
    assert np.array_equal(fashion_mnist.read_idx(tmp_path / "images-idx3-ubyte.gz"), images)
    values = np.array([-5, 70000], dtype=np.int32)
    write_idx(tmp_path / "values-idx1", values, 0x0C)
    read = fashion_mnist.read_idx(tmp_path / "values-idx1")
    assert read.tolist() == [-5, 70000] and read.dtype == np.int32


def test_read_idx_refuses_malformed_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"PK\x03\x04")
    with pytest.raises(ValueError, match="not an idx"):
        fashion_mnist.read_idx(tmp_path / "bad")
    write_idx(tmp_path / "short", np.zeros((3, 2), np.uint8), 0x08)
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-1])
    with pytest.raises(ValueError, match="bytes of values"):
        fashion_mnist.read_idx(tmp_path / "short")


def test_build_fashion_mnist_from_an_unpacked_package(monkeypatch, tmp_path):
    root = tmp_path / "root"
    folder = root / "usr/share/datasets/fashion-mnist"
    folder.mkdir(parents=True)
    for part, n in (("train", 6), ("t10k", 4)):
        write_idx(folder / f"{part}-images-idx3-ubyte.gz", np.full((n, 28, 28), n, np.uint8), 8)
        write_idx(folder / f"{part}-labels-idx1-ubyte.gz", np.arange(n, dtype=np.uint8), 8)
    write_copyright(root, "dataset-fashion-mnist", "Files: *\nLicense: Expat\n")
    deb = _write(tmp_path / "dataset-fashion-mnist_1_all.deb", b"deb")
    monkeypatch.setattr(fashion_mnist, "fetch_deb", lambda downloads, package: deb)
    monkeypatch.setattr(fashion_mnist, "extract_deb", lambda deb, destination: root)
    monkeypatch.setattr(fashion_mnist, "deb_version", lambda deb: "1")
    said = []
    built = fashion_mnist.build_fashion_mnist(tmp_path, tmp_path, False, said.append)
    assert built.images.shape == (10, 28, 28) and built.labels.tolist()[:7] == [0, 1, 2, 3, 4, 5, 0]
    assert built.images[:6].max() == 6 and built.images[6:].max() == 4  # train part first
    assert built.class_names[0] == "T-shirt/top" and built.class_names[9] == "Ankle boot"
    assert built.metadata["original_split"] == {"train": [0, 6], "test": [6, 10]}
    assert any("Expat (MIT)" in line for line in said)


# --- the real builds (network: registries) ----------------------------------------------


@pytest.fixture(scope="module")
def real_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("offline-cache")


@pytest.mark.slow
def test_prepare_fashion_mnist(real_cache):
    prepare("fashion-mnist", cache_dir=real_cache, progress=False)
    train = load_offline("fashion-mnist", "train", cache_dir=real_cache)
    test = load_offline("fashion-mnist", "test", cache_dir=real_cache)
    assert len(train) + len(test) == 70_000 and train.n_classes == test.n_classes == 5
    assert train.images.shape[1:] == (28, 28) and train.kind == "glyph"
    assert test.class_names == ["Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


@pytest.mark.slow
def test_prepare_emoji(real_cache):
    prepare("emoji", cache_dir=real_cache, progress=False)
    everything = load_offline("emoji", "all", cache_dir=real_cache)
    assert everything.n_classes >= 1800 and len(everything) >= 7000
    assert everything.images.shape[1:] == (64, 64, 3) and everything.kind == "photo"
    assert np.bincount(everything.labels.numpy()).min() >= 2
    metadata = offline.read_metadata("emoji", real_cache)
    assert len(metadata["sources"]) == 4


@pytest.mark.slow
def test_prepare_kanji(real_cache):
    prepare("kanji", cache_dir=real_cache, progress=False)
    everything = load_offline("kanji", "all", cache_dir=real_cache)
    assert everything.n_classes == 2965 and len(everything) >= 100_000
    assert everything.images.shape[1:] == (32, 32) and everything.kind == "glyph"
    metadata = offline.read_metadata("kanji", real_cache)
    assert len(metadata["faces"]) >= 35
    assert all(source["licence"] for source in metadata["sources"])
