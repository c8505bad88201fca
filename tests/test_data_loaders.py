"""Image folders and the public benchmarks, on tiny fixtures in their exact on-disk formats."""

import shutil

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from sampling_matters.data.benchmarks import (
    load_cars,
    load_cub,
    load_inshop,
    load_lfw_pairs,
    load_sop,
    shared_labels,
)
from sampling_matters.data.folder import load_folder, split_classes
from sampling_matters.data.transforms import UNIT, eval_transform


def write_image(path, shade=0, size=(12, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (shade, 255 - shade, 7)).save(path)


def write_text(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))


def names_of(dataset):
    """The class name of each item."""
    return [dataset.class_names[label] for label in dataset.labels.tolist()]


# --- folder:PATH ----------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path):
    """Five classes (created out of order), 2–3 images each, plus files to ignore."""
    root = tmp_path / "classes"
    counts = {"echo": 2, "alpha": 3, "delta": 2, "charlie": 2, "bravo": 3}
    extensions = [".png", ".JPG", ".jpeg"]
    for k, (name, count) in enumerate(counts.items()):
        for i in range(count):
            write_image(root / name / f"img{i}{extensions[i % 3]}", shade=10 * k)
    write_text(root / "alpha" / "notes.txt", ["not an image"])
    write_text(root / "alpha" / ".hidden.png", ["hidden"])
    (root / "alpha" / "nested").mkdir()
    (root / ".cache").mkdir()
    return root


def test_folder_splits_sorted_first_half(folder):
    train, test = load_folder(folder, "train"), load_folder(folder, "test")
    assert train.class_names == ["alpha", "bravo", "charlie"]  # ⌈5/2⌉ = 3 classes train
    assert test.class_names == ["delta", "echo"]
    assert len(train) == 8 and len(test) == 4
    assert names_of(train) == ["alpha"] * 3 + ["bravo"] * 3 + ["charlie"] * 2
    assert [p.name for p in train.images[:3]] == ["img0.png", "img1.JPG", "img2.jpeg"]
    assert train.kind == "photo" and train.n_classes == 3
    assert load_folder(folder, "all").class_names == [
        "alpha",
        "bravo",
        "charlie",
        "delta",
        "echo",
    ]


def test_folder_items_and_transform(folder):
    dataset = load_folder(folder, "test", kind="glyph", transform=eval_transform("glyph", 8))
    image, label, index = dataset[3]
    assert image.shape == (1, 8, 8) and (label, index) == (1, 3)
    assert dataset.kind == "glyph"


def test_folder_train_fraction(folder):
    assert load_folder(folder, "train", train_fraction=0.4).class_names == ["alpha", "bravo"]
    assert load_folder(folder, "test", train_fraction=0.4).n_classes == 3
    with pytest.raises(ValueError, match="train_fraction"):
        load_folder(folder, "train", train_fraction=1.0)
    with pytest.raises(ValueError, match="at least 2"):
        load_folder(folder, "train", train_fraction=0.2)


def test_split_classes_paper_counts():
    assert len(split_classes(range(200), "train")) == 100
    assert len(split_classes(range(196), "test")) == 98
    assert len(split_classes(range(22634), "train")) == 11317
    assert split_classes([1, 2, 3], "all") == [1, 2, 3]
    with pytest.raises(ValueError, match="split"):
        split_classes([1, 2], "val")


def test_folder_skips_empty_class_with_warning(folder):
    (folder / "aardvark").mkdir()
    write_text(folder / "aardvark" / "readme.md", ["no images here"])
    with pytest.warns(UserWarning, match="skipped 1 of 6 class folders.*aardvark"):
        train = load_folder(folder, "train")
    assert train.class_names == ["alpha", "bravo", "charlie"]


def test_folder_errors(tmp_path, folder):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_folder(tmp_path / "nowhere", "train")
    write_text(tmp_path / "file.txt", ["x"])
    with pytest.raises(NotADirectoryError, match="one sub-folder per class"):
        load_folder(tmp_path / "file.txt", "train")
    (tmp_path / "flat").mkdir()
    write_image(tmp_path / "flat" / "a.png")
    with pytest.raises(ValueError, match="no class sub-folder"):
        load_folder(tmp_path / "flat", "train")
    for name in ["charlie", "delta", "echo"]:
        shutil.rmtree(folder / name)
    with pytest.raises(ValueError, match=r"'test' split .* 1 class"):
        load_folder(folder, "test")
    with pytest.raises(ValueError, match="split"):
        load_folder(folder, "validation")


# --- CUB-200-2011 ---------------------------------------------------------------------


@pytest.fixture
def cub(tmp_path):
    """CUB_200_2011 with 4 classes × 2 images, listed out of class order."""
    root = tmp_path / "CUB_200_2011"
    classes = ["001.Albatross", "002.Auklet", "003.Blackbird", "004.Bunting"]
    write_text(root / "classes.txt", [f"{k + 1} {name}" for k, name in enumerate(classes)])
    images, labels = [], []
    for image_id, class_id in enumerate([3, 1, 4, 2, 1, 2, 3, 4], start=1):
        path = f"{classes[class_id - 1]}/{classes[class_id - 1][4:]}_{image_id:04d}.jpg"
        write_image(root / "images" / path, shade=class_id * 20)
        images.append(f"{image_id} {path}")
        labels.append(f"{image_id} {class_id}")
    write_text(root / "images.txt", images)
    write_text(root / "image_class_labels.txt", labels)
    write_text(root / "train_test_split.txt", [f"{i} {i % 2}" for i in range(1, 9)])
    return root


def test_cub_splits(cub):
    train, test = load_cub(cub, "train"), load_cub(cub, "test")
    assert train.class_names == ["001.Albatross", "002.Auklet"]
    assert test.class_names == ["003.Blackbird", "004.Bunting"]
    assert names_of(train) == ["001.Albatross", "002.Auklet", "001.Albatross", "002.Auklet"]
    assert [p.name for p in train.images] == [
        "Albatross_0002.jpg",
        "Auklet_0004.jpg",
        "Albatross_0005.jpg",
        "Auklet_0006.jpg",
    ]
    assert len(load_cub(cub, "all")) == 8 and train.kind == "photo"
    image, label, _ = train.with_transform(eval_transform("photo", 8, normalization=UNIT))[0]
    assert image.shape == (3, 8, 8) and label == 0


def test_cub_found_from_parent_folder(cub):
    assert load_cub(cub.parent, "test").n_classes == 2


def test_cub_missing_files(cub):
    (cub / "classes.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"classes\.txt not found.*Caltech-UCSD"):
        load_cub(cub, "train")
    with pytest.raises(FileNotFoundError, match=r"images\.txt not found"):
        load_cub(cub / "images", "train")


def test_cub_missing_image_and_bad_rows(cub):
    next((cub / "images" / "002.Auklet").iterdir()).unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of the images listed .* missing"):
        load_cub(cub, "train")
    write_text(cub / "image_class_labels.txt", ["1 3", "2"])
    with pytest.raises(ValueError, match="line 2: expected 2 fields"):
        load_cub(cub, "train")


# --- CARS196 --------------------------------------------------------------------------

CAR_CLASSES = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "BMW M3 2012", "Fiat 500 2012"]
CAR_LABELS = [1, 1, 2, 3, 2, 4, 4, 3, 1]


def write_cars_records(root):
    """cars_annos.mat as the real file is: a 1×N struct array and a 1×C cell of names."""
    fields = ["relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test"]
    annotations = np.zeros((1, len(CAR_LABELS)), dtype=[(f, "O") for f in fields])
    for k, label in enumerate(CAR_LABELS):
        box = [np.array([[v]], dtype=np.uint8) for v in (1, 2, 9, 8)]
        flag = np.array([[k % 2]], dtype=np.uint8)
        path = f"car_ims/{k + 1:06d}.jpg"
        annotations[0, k] = (path, *box, np.array([[label]], dtype=np.uint8), flag)
    names = np.empty((1, len(CAR_CLASSES)), dtype=object)
    names[0, :] = CAR_CLASSES
    scipy.io.savemat(root / "cars_annos.mat", {"annotations": annotations, "class_names": names})


def write_cars_columns(root):
    """A variant: one struct whose fields hold all rows (classes as doubles)."""
    paths = np.empty((1, len(CAR_LABELS)), dtype=object)
    paths[0, :] = [f"car_ims/{k + 1:06d}.jpg" for k in range(len(CAR_LABELS))]
    annotations = {"relative_im_path": paths, "class": np.array([CAR_LABELS], dtype=float)}
    names = np.array(CAR_CLASSES, dtype=object)
    scipy.io.savemat(root / "cars_annos.mat", {"annotations": annotations, "class_names": names})


@pytest.fixture(params=[write_cars_records, write_cars_columns])
def cars(tmp_path, request):
    root = tmp_path / "cars"
    for k, label in enumerate(CAR_LABELS):
        write_image(root / "car_ims" / f"{k + 1:06d}.jpg", shade=label * 30)
    request.param(root)
    return root


def test_cars_splits_ignore_test_flag(cars):
    train, test = load_cars(cars, "train"), load_cars(cars, "test")
    assert train.class_names == CAR_CLASSES[:2] and test.class_names == CAR_CLASSES[2:]
    assert [p.stem for p in train.images] == ["000001", "000002", "000003", "000005", "000009"]
    assert train.labels.tolist() == [0, 0, 1, 1, 0]
    assert test.labels.tolist() == [0, 1, 1, 0]  # images 4, 6, 7, 8: classes 3, 4, 4, 3
    assert len(load_cars(cars, "all")) == len(CAR_LABELS)


def test_cars_errors(tmp_path, cars):
    with pytest.raises(FileNotFoundError, match=r"cars_annos\.mat not found.*Stanford Cars"):
        load_cars(tmp_path, "train")
    (cars / "car_ims" / "000009.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"000009\.jpg"):
        load_cars(cars, "train")
    scipy.io.savemat(cars / "cars_annos.mat", {"annotations": {"path": np.array(["x"])}})
    with pytest.raises(ValueError, match="class_names"):
        load_cars(cars, "train")


# --- Stanford Online Products ---------------------------------------------------------

SOP_HEADER = "image_id class_id super_class_id path"


@pytest.fixture
def sop(tmp_path):
    root = tmp_path / "Stanford_Online_Products"
    train = [(1, 1, "bicycle"), (2, 1, "bicycle"), (3, 2, "chair"), (4, 2, "chair")]
    test = [(5, 3, "chair"), (6, 3, "chair"), (7, 4, "mug"), (8, 4, "mug"), (9, 4, "mug")]
    for name, rows in (("Ebay_train.txt", train), ("Ebay_test.txt", test)):
        lines = []
        for image_id, class_id, category in rows:
            path = f"{category}_final/{class_id}_{image_id}.JPG"
            write_image(root / path, shade=class_id * 40)
            lines.append(
                f"{image_id} {class_id} {1 + ['bicycle', 'chair', 'mug'].index(category)} {path}"
            )
        write_text(root / name, [SOP_HEADER, *lines])
    return root


def test_sop_splits(sop):
    train, test = load_sop(sop, "train"), load_sop(sop, "test")
    assert (len(train), train.class_names) == (4, ["1", "2"])
    assert (len(test), test.class_names) == (5, ["3", "4"])
    assert test.labels.tolist() == [0, 0, 1, 1, 1]
    assert test.images[0] == sop / "chair_final" / "3_5.JPG"
    assert load_sop(sop.parent, "all").n_classes == 4


def test_sop_errors(sop):
    (sop / "Ebay_test.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"Ebay_test\.txt not found.*Stanford Online"):
        load_sop(sop, "test")
    with pytest.raises(ValueError, match="split"):
        load_sop(sop, "query")


# --- In-Shop --------------------------------------------------------------------------


def inshop_rows():
    rows = []
    for item, status_of_view in [
        ("id_00000001", ["train", "train"]),
        ("id_00000004", ["train", "train", "train"]),
        ("id_00000002", ["query", "gallery", "gallery"]),
        ("id_00000003", ["query", "query", "gallery"]),
    ]:
        for view, status in enumerate(status_of_view):
            rows.append((f"img/WOMEN/Dresses/{item}/0{view + 1}_1_front.jpg", item, status))
    return rows


def write_inshop(root, *, partition="list_eval_partition.txt", images="", count=None):
    rows = inshop_rows()
    lines = [str(len(rows) if count is None else count), "image_name item_id evaluation_status"]
    lines += [f"{name}{' ' * 20}{item} {status}" for name, item, status in rows]
    write_text(root / partition, lines)
    for name, item, _ in rows:
        write_image(root / images / name, shade=int(item[-1]) * 50)
    return root


def test_inshop_partition(tmp_path):
    root = write_inshop(tmp_path / "inshop")
    train = load_inshop(root, "train")
    query, gallery = load_inshop(root, "query"), load_inshop(root, "gallery")
    assert train.class_names == ["id_00000001", "id_00000004"] and len(train) == 5
    assert query.class_names == gallery.class_names == ["id_00000002", "id_00000003"]
    assert names_of(query) == ["id_00000002", "id_00000003", "id_00000003"]
    assert names_of(gallery) == ["id_00000002", "id_00000002", "id_00000003"]
    assert query.images[0] == root / "img/WOMEN/Dresses/id_00000002/01_1_front.jpg"
    query_labels, gallery_labels = shared_labels(query, gallery)
    assert query_labels.tolist() == [0, 1, 1] and gallery_labels.tolist() == [0, 0, 1]


def test_inshop_official_layout(tmp_path):
    root = write_inshop(tmp_path / "inshop", partition="Eval/list_eval_partition.txt", images="Img")
    assert len(load_inshop(root, "gallery")) == 3


def test_inshop_errors(tmp_path):
    root = write_inshop(tmp_path / "inshop", count=99)
    with pytest.raises(ValueError, match="announces 99 images"):
        load_inshop(root, "train")
    with pytest.raises(ValueError, match="split"):
        load_inshop(root, "test")
    with pytest.raises(FileNotFoundError, match=r"list_eval_partition\.txt not found.*DeepFashion"):
        load_inshop(tmp_path, "train")


def test_shared_labels_with_disjoint_classes(tmp_path):
    root = write_inshop(tmp_path / "inshop")
    train, gallery = load_inshop(root, "train"), load_inshop(root, "gallery")
    train_labels, gallery_labels = shared_labels(train, gallery)
    assert train_labels.tolist() == [0, 0, 3, 3, 3]  # id_1 → 0, id_4 → 3
    assert gallery_labels.tolist() == [1, 1, 2]


# --- LFW ------------------------------------------------------------------------------

LFW_PAIRS = [
    "2\t2",
    "Alice\t1\t2",
    "Bob\t1\t3",
    "Alice\t1\tBob\t2",
    "Carol\t1\tBob\t1",
    "Carol\t1\t2",
    "Alice\t2\t3",
    "Bob\t3\tCarol\t2",
    "Alice\t3\tCarol\t1",
]


def write_lfw(root, *, images="lfw", pairs="pairs.txt", lines=LFW_PAIRS):
    for name in ["Alice", "Bob", "Carol"]:
        for i in (1, 2, 3):
            write_image(root / images / name / f"{name}_{i:04d}.jpg", shade=i * 60)
    write_text(root / pairs, lines)
    return root


def test_lfw_pairs_and_folds(tmp_path):
    lfw = load_lfw_pairs(write_lfw(tmp_path / "data"))
    assert lfw.same.tolist() == [True, True, False, False] * 2
    assert lfw.folds.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert lfw.pairs.shape == (8, 2) and lfw.pairs.dtype == torch.int64
    paths = [[lfw.images.images[i].name for i in pair] for pair in lfw.pairs.tolist()]
    assert paths[0] == ["Alice_0001.jpg", "Alice_0002.jpg"]
    assert paths[3] == ["Carol_0001.jpg", "Bob_0001.jpg"]
    assert len(lfw.images) == 8  # Bob_0002 … every image some pair uses, once
    people = names_of(lfw.images)
    assert all(people[i] == people[j] for i, j in lfw.pairs[lfw.same].tolist())
    assert all(people[i] != people[j] for i, j in lfw.pairs[~lfw.same].tolist())
    assert lfw.images.class_names == ["Alice", "Bob", "Carol"] and lfw.images.kind == "photo"


@pytest.mark.parametrize(("images", "pairs"), [("", "pairs.txt"), ("lfw", "lfw/pairs.txt")])
def test_lfw_layouts(tmp_path, images, pairs):
    lfw = load_lfw_pairs(write_lfw(tmp_path / "data", images=images, pairs=pairs))
    assert len(lfw.same) == 8


def test_lfw_single_fold_header(tmp_path):
    lines = ["2", "Alice\t1\t2", "Bob\t1\t3", "Alice\t1\tBob\t2", "Carol\t1\tBob\t1"]
    lfw = load_lfw_pairs(write_lfw(tmp_path / "data", lines=lines))
    assert lfw.folds.tolist() == [0, 0, 0, 0]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (LFW_PAIRS[:-1], "2 folds of 2 matched .* has 7"),
        (["ten 300", *LFW_PAIRS[1:]], "line 1"),
        (
            [LFW_PAIRS[0], LFW_PAIRS[3], LFW_PAIRS[2], LFW_PAIRS[1], *LFW_PAIRS[4:]],
            "line 2: expected a matched",
        ),
        ([*LFW_PAIRS[:2], "Bob\tone\t3", *LFW_PAIRS[3:]], "expected an integer"),
    ],
)
def test_lfw_bad_pairs_file(tmp_path, lines, message):
    with pytest.raises(ValueError, match=message):
        load_lfw_pairs(write_lfw(tmp_path / "data", lines=lines))


def test_lfw_missing_files(tmp_path):
    root = write_lfw(tmp_path / "data")
    (root / "lfw" / "Carol" / "Carol_0002.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"Carol_0002\.jpg"):
        load_lfw_pairs(root)
    (root / "pairs.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"pairs\.txt not found.*Labeled Faces"):
        load_lfw_pairs(root)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_lfw_pairs(tmp_path / "nowhere")


def test_loaders_take_a_transform(cub, sop):
    transform = eval_transform("photo", 6, normalization=UNIT)
    for dataset in (
        load_cub(cub, "train", transform=transform),
        load_sop(sop, "test", transform=transform),
    ):
        assert dataset[0][0].shape == (3, 6, 6)


@pytest.mark.parametrize(
    ("mode", "size", "background", "kind"),
    [
        ("L", 32, 0, "glyph"),  # small, grey, plain: characters, digits, icons
        ("RGB", 32, (255, 255, 255), "glyph"),  # grey stored as RGB still counts
        ("RGB", 64, (40, 90, 200), "photo"),  # colour
        ("L", 300, 0, "photo"),  # too large for a glyph
    ],
)
def test_a_folder_kind_is_inferred_from_its_images(tmp_path, mode, size, background, kind):
    from PIL import ImageDraw

    rng = np.random.default_rng(0)
    for c in range(4):
        (tmp_path / f"c{c}").mkdir()
        for i in range(3):
            image = Image.new(mode, (size, size), background)
            colour = 255 if mode == "L" else tuple(int(v) for v in rng.integers(0, 255, 3))
            if kind == "glyph" and mode == "RGB":
                colour = (0, 0, 0)
            ImageDraw.Draw(image).line([(2, 2), (size - 3, size // 2)], fill=colour, width=2)
            image.save(tmp_path / f"c{c}" / f"{i}.png")
    assert load_folder(tmp_path, "train").kind == kind
    assert load_folder(tmp_path, "test", kind="photo").kind == "photo"  # said, not inferred
