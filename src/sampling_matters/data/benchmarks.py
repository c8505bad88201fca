"""The public benchmarks, read from their own on-disk formats, with their standard splits.

- ``cub:PATH``, :func:`load_cub`: CUB-200-2011, classes 1–100 train, 101–200 test.
- ``cars:PATH``, :func:`load_cars`: CARS196, classes 1–98 train, 99–196 test.
- ``sop:PATH``, :func:`load_sop`: Stanford Online Products, ``Ebay_train.txt`` (11,318
  classes) train, ``Ebay_test.txt`` (11,316 classes) test.
- ``inshop:PATH``, :func:`load_inshop`: DeepFashion In-Shop, train / query / gallery.
- ``lfw:PATH``, :func:`load_lfw_pairs`: LFW's ten folds of 300 matched and 300
  mismatched pairs.

None of them can be downloaded by this library: each loader's docstring says where
the data comes from and which files it expects. Every loader returns photos
(``kind="photo"``); labels are 0 … C−1 within the returned set, in the order of the
original class ids, and ``class_names`` give the original names. A missing file or
image raises ``FileNotFoundError`` naming what was expected where.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from sampling_matters.data.datasets import ImageDataset, Transform
from sampling_matters.data.folder import SPLITS, check_split, split_classes

__all__ = [
    "INSHOP_SPLITS",
    "LFWPairs",
    "load_cars",
    "load_cub",
    "load_inshop",
    "load_lfw_pairs",
    "load_sop",
    "shared_labels",
]

INSHOP_SPLITS = ("train", "query", "gallery")
"""In-Shop's partition: train items, and the query and gallery images of the test items."""

Item = tuple[str, int]
"""An image path relative to the image folder, and its original class id."""

_CUB = (
    "CUB-200-2011 comes from the Caltech-UCSD Birds-200-2011 project page (Caltech "
    "Vision Lab): unpack CUB_200_2011.tgz and pass the CUB_200_2011 folder (or its parent), "
    "which holds images.txt, image_class_labels.txt, classes.txt and images/."
)
_CARS = (
    "CARS196 comes from the Stanford Cars Dataset page (Krause et al., 2013; Stanford AI "
    "Lab, or a mirror of it): unpack car_ims.tgz beside cars_annos.mat and pass that folder, "
    "which holds cars_annos.mat and car_ims/."
)
_SOP = (
    "Stanford Online Products comes from its project page (Song et al., 2016; Stanford "
    "CVGL): unzip Stanford_Online_Products.zip and pass the Stanford_Online_Products folder "
    "(or its parent), which holds Ebay_train.txt, Ebay_test.txt and the <category>_final/ "
    "image folders."
)
_INSHOP = (
    "In-Shop comes from the DeepFashion project page (CUHK Multimedia Lab), In-shop Clothes "
    "Retrieval Benchmark: pass the folder holding list_eval_partition.txt (or Eval/"
    "list_eval_partition.txt) and img/ (or Img/img/), unzipped from Img/img.zip."
)
_LFW = (
    "LFW comes from the Labeled Faces in the Wild page (University of Massachusetts, "
    "Amherst): pass the folder holding pairs.txt and the unpacked lfw.tgz (lfw/<name>/"
    "<name>_0001.jpg), or the lfw folder itself with pairs.txt inside it."
)


class LFWPairs(NamedTuple):
    """LFW's verification protocol: image pairs in ten folds.

    Attributes:
        images: every image some pair uses, sorted by path; its classes are the people.
        pairs: (P, 2) int64 indices into ``images``, in the order of ``pairs.txt``.
        same: (P,) bool, True when both images show the same person.
        folds: (P,) int64 fold id of each pair, 0 … F−1 (F = 10 for ``pairs.txt``).
    """

    images: ImageDataset
    pairs: Tensor
    same: Tensor
    folds: Tensor


def load_cub(root: str | Path, split: str, *, transform: Transform | None = None) -> ImageDataset:
    """CUB-200-2011 (Wah et al., 2011): 11,788 photos of 200 bird species.

    The metric-learning split: classes 1–100 train (5,864 images), 101–200 test (5,924
    images), ignoring the official ``train_test_split.txt`` (which splits images, not
    classes). Where to get it and the layout::

        CUB_200_2011/                       (root, or its parent)
            images.txt                      "<image id> <path>"
            image_class_labels.txt          "<image id> <class id 1-200>"
            classes.txt                     "<class id> <name>", e.g. "1 001.Black_footed_Albatross"
            images/<path>

    Args:
        root: the ``CUB_200_2011`` folder or the folder holding it.
        split: ``"train"``, ``"test"`` or ``"all"``.
        transform: the dataset's transform.

    Returns:
        The split's photos; ``class_names`` from ``classes.txt``.
    """
    folder = _locate(Path(root), "images.txt", ("CUB_200_2011",), _CUB)
    paths = _mapping(_read_table(_require(folder, "images.txt", _CUB), 2))
    labels = _mapping(_read_table(_require(folder, "image_class_labels.txt", _CUB), 2))
    classes = _mapping(_read_table(_require(folder, "classes.txt", _CUB), 2))
    names = {_integer(key, "classes.txt"): name for key, name in classes.items()}
    if paths.keys() != labels.keys():
        raise ValueError(
            f"images.txt and image_class_labels.txt in {folder} list different image ids "
            f"({len(paths)} and {len(labels)} ids)"
        )
    items = [(paths[key], _integer(labels[key], "image_class_labels.txt")) for key in paths]
    return _dataset(_by_class(items, split), names, [folder / "images"], folder, transform)


def load_cars(root: str | Path, split: str, *, transform: Transform | None = None) -> ImageDataset:
    """CARS196 (Krause et al., 2013): 16,185 photos of 196 car models.

    The metric-learning split: classes 1–98 train (8,054 images), 99–196 test (8,131
    images), ignoring the annotations' ``test`` flag (the classification split).
    Bounding boxes are not used. Reading ``cars_annos.mat`` needs scipy. Layout::

        root/
            cars_annos.mat   struct array "annotations" (relative_im_path, bbox_x1,
                             bbox_y1, bbox_x2, bbox_y2, class, test) and "class_names"
            car_ims/000001.jpg …

    Args:
        root: the folder holding ``cars_annos.mat`` and ``car_ims/``.
        split: ``"train"``, ``"test"`` or ``"all"``.
        transform: the dataset's transform.

    Returns:
        The split's photos; ``class_names`` from the annotations' ``class_names``.
    """
    folder = _locate(Path(root), "cars_annos.mat", (), _CARS)
    items, class_names = _read_cars_annotations(folder / "cars_annos.mat")
    names = dict(enumerate(class_names, start=1))
    return _dataset(_by_class(items, split), names, [folder], folder, transform)


def load_sop(root: str | Path, split: str, *, transform: Transform | None = None) -> ImageDataset:
    """Stanford Online Products (Song et al., 2016): 120,053 photos of 22,634 products.

    The standard split, as its files give it: ``Ebay_train.txt`` lists 11,318 products
    (59,551 images) for training, ``Ebay_test.txt`` 11,316 products (60,502 images)
    for testing. Layout::

        Stanford_Online_Products/                   (root, or its parent)
            Ebay_train.txt, Ebay_test.txt           header "image_id class_id super_class_id path"
            bicycle_final/111085122871_0.JPG …      the paths the lists give

    Args:
        root: the ``Stanford_Online_Products`` folder or the folder holding it.
        split: ``"train"``, ``"test"`` or ``"all"`` (both lists).
        transform: the dataset's transform.

    Returns:
        The split's photos; ``class_names`` are the product (class) ids.
    """
    check_split(split, SPLITS)
    folder = _locate(Path(root), "Ebay_train.txt", ("Stanford_Online_Products",), _SOP)
    lists = {"train": ["Ebay_train.txt"], "test": ["Ebay_test.txt"]}
    items = [
        (row[3], _integer(row[1], name))
        for name in lists.get(split, ["Ebay_train.txt", "Ebay_test.txt"])
        for row in _read_table(_require(folder, name, _SOP), 4, header=1)
    ]
    names = {label: str(label) for _, label in items}
    return _dataset(items, names, [folder], folder, transform)


def load_inshop(
    root: str | Path, split: str, *, transform: Transform | None = None
) -> ImageDataset:
    """DeepFashion In-Shop Clothes Retrieval (Liu et al., 2016): 52,712 photos of 7,982 items.

    Its protocol: 3,997 items (25,882 images) train; the 3,985 test items' images are
    split into 14,218 queries and 12,612 gallery images, and each query is searched in
    the gallery. Labels are 0 … C−1 within each returned set: compare a query set's
    labels with a gallery's through :func:`shared_labels`. Layout::

        root/
            list_eval_partition.txt (or Eval/list_eval_partition.txt):
                line 1: the number of images; line 2: "image_name item_id evaluation_status";
                then "img/WOMEN/Dresses/id_00000002/02_1_front.jpg id_00000002 train" …
            img/… (or Img/img/…)   the image names are relative to root (or Img/)

    Args:
        root: the folder described above.
        split: ``"train"``, ``"query"`` or ``"gallery"``.
        transform: the dataset's transform.

    Returns:
        The split's photos; ``class_names`` are the item ids (``id_00000002`` …).
    """
    check_split(split, INSHOP_SPLITS)
    folder = _locate(Path(root), "list_eval_partition.txt", ("Eval",), _INSHOP)
    listing = folder / "list_eval_partition.txt"
    rows = _read_inshop_partition(listing)
    item_ids = {item: k for k, item in enumerate(sorted({row[1] for row in rows}))}
    items = [(row[0], item_ids[row[1]]) for row in rows if row[2] == split]
    names = {k: item for item, k in item_ids.items()}
    return _dataset(items, names, [Path(root), Path(root) / "Img"], listing, transform)


def load_lfw_pairs(root: str | Path, *, transform: Transform | None = None) -> LFWPairs:
    """Labeled Faces in the Wild (Huang et al., 2007): the verification pairs of ``pairs.txt``.

    ``pairs.txt`` starts with "10 300": ten folds, each of 300 matched pairs
    ("name i j") followed by 300 mismatched pairs ("name1 i name2 j"); image i of a
    person is ``<name>/<name>_<iiii>.jpg``. (A first line with one number N, as in
    ``pairsDevTrain.txt``, is read as one fold of N + N pairs.) Layout::

        root/
            pairs.txt                 (or lfw/pairs.txt)
            lfw/Aaron_Peirsol/Aaron_Peirsol_0001.jpg …
                (or the people's folders directly in root; lfw-deepfunneled/ and
                lfw_funneled/ are found too)

    Score the pairs with
    :func:`sampling_matters.evaluation.verification_accuracy` ``(distances, same,
    folds=folds)``.

    Args:
        root: the folder described above.
        transform: the image dataset's transform.

    Returns:
        The images involved and the pairs, with their folds.
    """
    base = Path(root)
    listing = _locate(base, "pairs.txt", ("lfw",), _LFW) / "pairs.txt"
    rows, folds = _read_lfw_pairs(listing)
    paths = [path for row in rows for path in (_lfw_path(*row[:2]), _lfw_path(*row[2:]))]
    roots = [base / "lfw", base / "lfw-deepfunneled", base / "lfw_funneled", base]
    image_root = _image_root(roots, paths, listing)
    unique = sorted(set(paths))
    index = {path: k for k, path in enumerate(unique)}
    people = [path.split("/")[0] for path in unique]
    person_ids = {name: k for k, name in enumerate(sorted(set(people)))}
    images = ImageDataset(
        [image_root / path for path in unique],
        [person_ids[name] for name in people],
        kind="photo",
        class_names=sorted(person_ids),
        transform=transform,
    )
    pairs = torch.tensor([index[path] for path in paths], dtype=torch.int64).view(-1, 2)  # (P, 2)
    same = torch.tensor([row[0] == row[2] for row in rows], dtype=torch.bool)  # (P,)
    return LFWPairs(images, pairs, same, torch.tensor(folds, dtype=torch.int64))


def shared_labels(*datasets: ImageDataset) -> tuple[Tensor, ...]:
    """The datasets' labels re-expressed in one id space, matching classes by name.

    Each :class:`ImageDataset` numbers its own classes 0 … C−1; a query set and a
    gallery (In-Shop's protocol) need the same numbers for the same class.

    Returns:
        One (N_i,) int64 tensor per dataset; equal values mean equal class names.

    Example:
        >>> query = ImageDataset([Path("a"), Path("b")], [0, 1], kind="photo",
        ...                      class_names=["id_2", "id_3"])
        >>> gallery = ImageDataset([Path("c"), Path("d")], [0, 1], kind="photo",
        ...                        class_names=["id_1", "id_2"])
        >>> [labels.tolist() for labels in shared_labels(query, gallery)]
        [[1, 2], [0, 1]]
    """
    every = sorted({name for dataset in datasets for name in dataset.class_names})
    ids = {name: k for k, name in enumerate(every)}
    return tuple(
        torch.tensor([ids[name] for name in dataset.class_names], dtype=torch.int64)[dataset.labels]
        for dataset in datasets
    )


# --- shared helpers -------------------------------------------------------------------


def _locate(root: Path, marker: str, subfolders: Sequence[str], help_text: str) -> Path:
    """The folder among ``root`` and ``root/<subfolder>`` that holds the file ``marker``."""
    candidates = [root, *(root / sub for sub in subfolders)]
    for folder in candidates:
        if (folder / marker).is_file():
            return folder
    if not root.exists():
        raise FileNotFoundError(f"{root} does not exist. {help_text}")
    where = " or ".join(str(folder / marker) for folder in candidates)
    raise FileNotFoundError(f"{marker} not found: looked for {where}. {help_text}")


def _require(folder: Path, name: str, help_text: str) -> Path:
    path = folder / name
    if not path.is_file():
        raise FileNotFoundError(f"{name} not found in {folder}. {help_text}")
    return path


def _read_table(path: Path, fields: int, *, header: int = 0) -> list[list[str]]:
    """The rows of a whitespace-separated text file, each of ``fields`` fields.

    Blank lines are skipped; the last field keeps any inner spaces.
    """
    lines = path.read_text(encoding="utf-8").splitlines()[header:]
    rows = []
    for number, line in enumerate(lines, start=header + 1):
        row = line.split(maxsplit=fields - 1)
        if not row:
            continue
        if len(row) != fields:
            raise ValueError(f"{path}, line {number}: expected {fields} fields, got {line!r}")
        rows.append(row)
    return rows


def _integer(text: str, source: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{source}: expected an integer, got {text!r}") from None


def _mapping(rows: list[list[str]]) -> dict[str, str]:
    """The rows of a two-column table as a mapping from the first column to the second."""
    return {key: value for key, value in rows}


def _by_class(items: list[Item], split: str) -> list[Item]:
    """The items whose class is in the split: the first half of the sorted class ids trains."""
    chosen = set(split_classes(sorted({label for _, label in items}), split))
    return [item for item in items if item[1] in chosen]


def _dataset(
    items: list[Item],
    names: Mapping[int, str],
    image_roots: Sequence[Path],
    listing: Path,
    transform: Transform | None,
) -> ImageDataset:
    """An ImageDataset of ``items`` found under the first of ``image_roots`` that holds them."""
    classes = sorted({label for _, label in items})
    if len(classes) < 2:
        raise ValueError(
            f"{listing}: the split has {len(items)} images of {len(classes)} class(es); "
            "metric learning needs at least 2 classes"
        )
    folder = _image_root(image_roots, [path for path, _ in items], listing)
    missing = sorted(set(classes) - names.keys())
    if missing:
        raise ValueError(f"{listing}: no name for class ids {missing[:5]}")
    return ImageDataset(
        [folder / path for path, _ in items],
        [label for _, label in items],
        kind="photo",
        class_names=[names[label] for label in classes],
        transform=transform,
    )


def _image_root(candidates: Sequence[Path], paths: Sequence[str], listing: Path) -> Path:
    """The first candidate folder holding the first listed image; every image must be there."""
    folder = next((c for c in candidates if (c / paths[0]).is_file()), None)
    if folder is None:
        where = " or ".join(str(c) for c in dict.fromkeys(candidates))
        raise FileNotFoundError(f"image {paths[0]} listed in {listing} not found under {where}")
    missing = [path for path in dict.fromkeys(paths) if not (folder / path).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of the images listed in {listing} are missing under {folder}, "
            f"e.g. {', '.join(missing[:3])}"
        )
    return folder


# --- format readers -------------------------------------------------------------------


def _read_cars_annotations(path: Path) -> tuple[list[Item], list[str]]:
    """(relative path, class id) of each annotation and the class names, from cars_annos.mat."""
    try:
        from scipy.io import loadmat  # type: ignore[import-untyped]
    except ImportError as error:
        raise ImportError("load_cars reads cars_annos.mat with scipy: pip install scipy") from error
    mat = loadmat(str(path))
    for key in ("annotations", "class_names"):
        if key not in mat:
            raise ValueError(f"{path} has no {key!r} variable (found {sorted(mat)}). {_CARS}")
    annotations = mat["annotations"]
    fields = set(annotations.dtype.names or ())
    if not {"relative_im_path", "class"} <= fields:
        raise ValueError(
            f"{path}: 'annotations' needs fields relative_im_path and class, has {sorted(fields)}"
        )
    paths = [str(p) for p in _flatten(annotations["relative_im_path"])]
    labels = [_whole(c, f"{path} annotations.class") for c in _flatten(annotations["class"])]
    if len(paths) != len(labels):
        raise ValueError(f"{path}: {len(paths)} image paths but {len(labels)} classes")
    return list(zip(paths, labels, strict=True)), [str(n) for n in _flatten(mat["class_names"])]


def _whole(value: object, source: str) -> int:
    """A whole number read from a .mat file (stored as an integer or a float)."""
    if isinstance(value, int | float | np.integer | np.floating) and float(value).is_integer():
        return int(value)
    raise ValueError(f"{source}: expected whole numbers, got {value!r}")


def _flatten(value: object) -> list[object]:
    """The leaves of a value loadmat returned, however nested (cells, 1×1 arrays, structs)."""
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            return [leaf for element in value.ravel() for leaf in _flatten(element)]
        return list(value.ravel().tolist())
    return [value]


def _read_inshop_partition(path: Path) -> list[list[str]]:
    """The (image name, item id, status) rows of list_eval_partition.txt, checked."""
    head = path.read_text(encoding="utf-8").split("\n", 1)[0].strip()
    rows = _read_table(path, 3, header=2)
    if head.isdigit() and int(head) != len(rows):
        raise ValueError(f"{path}: line 1 announces {head} images, the file lists {len(rows)}")
    statuses = {row[2] for row in rows} - {"train", "query", "gallery"}
    if statuses:
        raise ValueError(
            f"{path}: unknown evaluation_status {sorted(statuses)}; expected train/query/gallery"
        )
    return rows


def _read_lfw_pairs(path: Path) -> tuple[list[tuple[str, int, str, int]], list[int]]:
    """The pairs (name1, i, name2, j) of pairs.txt and each pair's fold, checked."""
    lines = [line.split() for line in path.read_text(encoding="utf-8").splitlines()]
    header = lines[0] if lines else []
    if len(header) not in (1, 2) or not all(value.isdigit() for value in header):
        raise ValueError(
            f"{path}, line 1: expected 'folds pairs_per_fold' (as '10 300'), got {header}"
        )
    n_folds, per_fold = (1, int(header[0])) if len(header) == 1 else map(int, header)
    body = [(number, row) for number, row in enumerate(lines[1:], start=2) if row]
    if len(body) != 2 * n_folds * per_fold:
        raise ValueError(
            f"{path}: line 1 announces {n_folds} folds of {per_fold} matched + {per_fold} "
            f"mismatched pairs ({2 * n_folds * per_fold} rows), the file has {len(body)}"
        )
    rows = [
        _lfw_row(path, number, row, k % (2 * per_fold) < per_fold)
        for k, (number, row) in enumerate(body)
    ]
    return rows, [k // (2 * per_fold) for k in range(len(rows))]


def _lfw_row(path: Path, number: int, row: list[str], matched: bool) -> tuple[str, int, str, int]:
    expected = 3 if matched else 4
    if len(row) != expected:
        kind = "a matched pair 'name i j'" if matched else "a mismatched pair 'name1 i name2 j'"
        raise ValueError(f"{path}, line {number}: expected {kind}, got {' '.join(row)!r}")
    source = f"{path}, line {number}"
    if matched:
        return row[0], _integer(row[1], source), row[0], _integer(row[2], source)
    return row[0], _integer(row[1], source), row[2], _integer(row[3], source)


def _lfw_path(name: str, number: int) -> str:
    return f"{name}/{name}_{number:04d}.jpg"
