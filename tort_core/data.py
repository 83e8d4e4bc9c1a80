"""Dataset registry: the embedded default, the thesis's four datasets, and any ImageFolder tree.

Every dataset yields `(PIL RGB image, int label)`; transforms are applied by `Transformed`, so the
same raw dataset serves the multi-crop training views and the evaluation transform. Nothing is ever
downloaded: a missing or malformed root fails with one line naming the expected layout.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset, Subset

from .catalog import DATASET_INFO
from .errors import ConfigError, DataError
from .registry import DATASETS


@dataclass
class DatasetPair:
    train: Dataset
    test: Dataset
    num_classes: int
    name: str
    val: Dataset | None = None  # carved out of the training split (data.val_fraction), else None


class Transformed(Dataset):
    """Apply `transform` to the image of an `(image, label)` dataset."""

    def __init__(self, base: Dataset, transform: Callable | None):
        self.base = base
        self.transform = transform

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int):
        image, label = self.base[index]
        return (self.transform(image) if self.transform else image), label


class InMemoryImages(Dataset):
    def __init__(self, images: list[Image.Image], labels: list[int]):
        # Tuples: a dataset shared by several runs (the per-process cache) cannot be edited in place.
        self.images = tuple(images)
        self.labels = tuple(labels)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.images[index], self.labels[index]


def _as_is(item: Any) -> Any:
    return item


def in_memory(ds: Dataset) -> bool:
    while isinstance(ds, Subset):
        ds = ds.dataset
    return isinstance(ds, (InMemoryImages, DecodedImages))


class DecodedImages(Dataset):
    """A split's images decoded once and kept, up to `max_bytes` of pixels; the rest are read as
    before. Every epoch then starts from pixels instead of the compressed file: once augmentation
    runs on the device, decoding is most of what a loader worker does (from 500-px JPEGs ≈ 2.9
    CPU-ms an image, against ≈ 0.5 ms for the rest of sota's worker half). The images are the
    decoder's own output, so what trains on them is unchanged; like `InMemoryImages` they are
    shared, never modified in place. `workers` loader processes decode them, in order.
    """

    def __init__(self, base: Dataset, max_bytes: int, workers: int = 0, generator: Any = None):
        from torch.utils.data import DataLoader

        self.base = base
        images: list[Image.Image] = []
        labels: list[int] = []
        self.nbytes = 0
        loader = DataLoader(base, batch_size=None, num_workers=workers, collate_fn=_as_is, generator=generator)
        for image, label in loader:
            size = image.width * image.height * len(image.getbands())
            if self.nbytes + size > max_bytes:
                break
            images.append(image)
            labels.append(label)
            self.nbytes += size
        self.images, self.labels = tuple(images), tuple(labels)

    @property
    def cached(self) -> int:
        return len(self.images)

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int):
        if index < len(self.images):
            return self.images[index], self.labels[index]
        return self.base[index]


def load_dataset(name: str, root: Path | None, options: Any = None, *, cache: bool = False) -> DatasetPair:
    """The registered dataset `name` from `root`; `options` is `data.splits` ("standard" when None).

    With `cache=True` the loaded pair is kept for the life of the process and later calls with the
    same dataset get it without loading (or decoding) again: a Ray actor that runs several trials
    of a sweep loads each dataset once. Every call returns its own shallow copies of the split
    datasets, so a caller that sets an attribute (e.g. a torchvision dataset's `transform`) does not
    change what the next caller gets; the images themselves are shared and never modified in place.
    The cache assumes the files under `root` do not change while the process lives
    (`clear_dataset_cache()` forgets everything).
    """
    factory = DATASETS.get(name)
    key = _cache_key(name, factory, root, options) if cache else None
    if key is None:
        return factory(root, options)
    pair = _DATASET_CACHE.get(key)
    if pair is None:
        pair = factory(root, options)
        _DATASET_CACHE[key] = pair
    return DatasetPair(copy.copy(pair.train), copy.copy(pair.test), pair.num_classes, pair.name, copy.copy(pair.val))


# (name, factory, resolved root, options) → the pair as loaded; see load_dataset(cache=True).
_DATASET_CACHE: dict[tuple, DatasetPair] = {}


def _cache_key(name: str, factory: Callable, root: Path | None, options: Any) -> tuple | None:
    where = None if root is None else str(Path(root).expanduser().resolve())
    key = (name, factory, where, options)
    try:
        hash(key)
    except TypeError:
        return None  # options that cannot be a key: load every time
    return key


def clear_dataset_cache() -> None:
    _DATASET_CACHE.clear()


def limit(pair: DatasetPair, train: int | None, test: int | None) -> DatasetPair:
    """The first `train` / `test` images of each split (None keeps the split whole)."""
    cut = lambda ds, n: ds if n is None or n >= len(ds) else Subset(ds, range(n))  # noqa: E731
    return DatasetPair(cut(pair.train, train), cut(pair.test, test), pair.num_classes, pair.name, pair.val)


# ---------------------------------------------------------------------------------------------
# A validation split carved out of the training split (data.val_fraction).

# The carve is part of the dataset, not of the run: the same images are held out whatever the
# run's seed, so runs of different seeds select their epochs on the same validation images.
VAL_SPLIT_SEED = 0


def dataset_labels(ds: Dataset) -> list[int]:
    """Every label of `ds` in order, read from the dataset's own label list where it keeps one
    (torchvision's and tort's datasets do); otherwise by loading each item."""
    if isinstance(ds, Subset):
        labels = dataset_labels(ds.dataset)
        return [labels[i] for i in ds.indices]
    if isinstance(ds, DecodedImages):
        return dataset_labels(ds.base)
    for attr in ("labels", "targets", "_labels"):  # ours; ImageFolder; Flowers102, FGVCAircraft, OxfordIIITPet
        if isinstance(getattr(ds, attr, None), (list, tuple)):
            return [int(y) for y in getattr(ds, attr)]
    if isinstance(getattr(ds, "_samples", None), list):  # StanfordCars: (path, label)
        return [int(label) for _, label in ds._samples]
    return [int(ds[i][1]) for i in range(len(ds))]  # type: ignore[arg-type]


def carve_validation(pair: DatasetPair, fraction: float, seed: int = VAL_SPLIT_SEED) -> DatasetPair:
    """`pair` with a stratified `fraction` of its training split moved into `val` (the same
    stratified split as the embedded dataset's train/test, `stratified_split`)."""
    labels = np.asarray(dataset_labels(pair.train))
    n_val = math.ceil(fraction * len(labels))
    classes = len(np.unique(labels))
    if n_val < classes or len(labels) - n_val < classes:
        raise ConfigError(f"data.val_fraction: {fraction:g} of {len(labels)} training images leaves {n_val} for "
                          f"validation and {len(labels) - n_val} for training; a stratified split needs at least "
                          f"{classes} (one per class) on each side")
    keep, val = stratified_split(labels, test_size=fraction, seed=seed)
    return DatasetPair(Subset(pair.train, sorted(keep.tolist())), pair.test, pair.num_classes, pair.name,
                       Subset(pair.train, sorted(val.tolist())))


# ---------------------------------------------------------------------------------------------
# Embedded default: scikit-learn's bundled UCI handwritten digits (real scans, ships in the wheel).

DIGITS_SIZE = 32


@DATASETS.register("digits")
def _digits(root: Path | None, options: Any = None) -> DatasetPair:
    """1,797 real 8×8 handwritten digits (10 classes), upscaled to 32 px RGB; fixed 75/25 split."""
    scans, target = _digits_arrays()
    pixels = (scans * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    images = [
        Image.fromarray(p, mode="L").resize((DIGITS_SIZE, DIGITS_SIZE), Image.BICUBIC).convert("RGB")
        for p in pixels
    ]
    labels = [int(t) for t in target]
    # The split is part of the dataset, not of the run: fixed seed, stratified.
    idx_train, idx_test = stratified_split(np.asarray(labels), test_size=0.25, seed=0)
    pick = lambda idx: InMemoryImages([images[i] for i in idx], [labels[i] for i in idx])  # noqa: E731
    return DatasetPair(pick(idx_train), pick(idx_test), DATASET_INFO["digits"].classes, "digits")


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits: (1797, 8, 8) scans in 0–16 and their labels.

    Read from the CSV that scikit-learn ships, as its `load_digits` does, without importing
    scikit-learn: that import (scipy included) costs 1.5–3 s in every fresh process, e.g. each new
    sweep worker. Falls back to `load_digits` if the file is not where scikit-learn keeps it.
    """
    import gzip
    import importlib.util

    spec = importlib.util.find_spec("sklearn")  # locates the package without importing it
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if path is not None and path.is_file():
        with gzip.open(path, "rt") as fh:
            data = np.loadtxt(fh, delimiter=",")
        return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images, bunch.target


def stratified_split(labels: np.ndarray, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices: scikit-learn's `train_test_split(arange(n), test_size=test_size,
    random_state=seed, stratify=labels)`, step for step (StratifiedShuffleSplit and its
    `_approximate_mode`), so the split is the one the project always used, without importing
    scikit-learn. tests/tort_core/test_data.py checks it against scikit-learn."""
    n = len(labels)
    n_test = math.ceil(test_size * n)
    n_train = n - n_test
    classes, y_index, counts = np.unique(labels, return_inverse=True, return_counts=True)
    class_indices = np.split(np.argsort(y_index, kind="stable"), np.cumsum(counts)[:-1])
    rng = np.random.RandomState(seed)
    n_i = _approximate_mode(counts, n_train, rng)
    t_i = _approximate_mode(counts - n_i, n_test, rng)
    train: list[int] = []
    test: list[int] = []
    for i in range(len(classes)):
        members = class_indices[i].take(rng.permutation(counts[i]), mode="clip")
        train.extend(members[: n_i[i]])
        test.extend(members[n_i[i]: n_i[i] + t_i[i]])
    return rng.permutation(train), rng.permutation(test)


def _approximate_mode(counts: np.ndarray, n_draws: int, rng: np.random.RandomState) -> np.ndarray:
    # scikit-learn's sklearn.utils.extmath._approximate_mode: per-class draws proportional to the
    # class sizes, the remainder given by largest fractional part, ties broken by `rng`.
    continuous = counts / counts.sum() * n_draws
    floored = np.floor(continuous)
    need = int(n_draws - floored.sum())
    if need > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (inds,) = np.where(remainder == value)
            add = min(len(inds), need)
            floored[rng.choice(inds, size=add, replace=False)] += 1
            need -= add
            if need == 0:
                break
    return floored.astype(int)


# ---------------------------------------------------------------------------------------------
# The thesis's datasets, through torchvision from a local root (download=False, always).

def _require_root(root: Path | None, name: str, layout: str) -> Path:
    if root is None:
        raise DataError(f"dataset '{name}' needs a local root: pass --data-root DIR (or set TORT_DATA_ROOT) "
                        f"holding {layout}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"dataset '{name}': data root '{root}' is not a directory; expected {layout}")
    return root


def _torchvision(name: str, cls_name: str, extra: dict[str, Any] | None = None):
    """Register torchvision's `cls_name` as `name`; its splits, classes and layout are the catalog's."""
    info = DATASET_INFO[name]

    def factory(root: Path | None, options: Any = None) -> DatasetPair:
        """options: data.splits; the split names are the catalog's (standard: train/test,
        original: the original code's)."""
        import torchvision.datasets as tvd

        splits = info.original_splits if options == "original" else (info.train, info.test)
        root = _require_root(root, name, info.layout)
        cls = getattr(tvd, cls_name)
        try:
            train = cls(str(root), split=splits[0], download=False, **(extra or {}))
            test = cls(str(root), split=splits[1], download=False, **(extra or {}))
        except (RuntimeError, FileNotFoundError, OSError, KeyError, IndexError) as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise DataError(f"dataset '{name}' not found under '{root}' ({reason}); expected {info.layout}; "
                            f"nothing is downloaded") from None
        return DatasetPair(train, test, info.classes, name)

    DATASETS.register(name)(factory)
    return factory


_torchvision("flowers102", "Flowers102")
_torchvision("fgvc_aircraft", "FGVCAircraft")
_torchvision("stanford_cars", "StanfordCars")
_torchvision("oxford_pet", "OxfordIIITPet", extra={"target_types": "category"})


# ---------------------------------------------------------------------------------------------
# Any ImageFolder tree with train/ and test/ (or val/).

IMAGEFOLDER_LAYOUT = DATASET_INFO["imagefolder"].layout


def load_image(path: str) -> Image.Image:
    """An image file as RGB (torchvision's ImageFolder loader), or DataError naming the file."""
    try:
        with open(path, "rb") as fh:
            return Image.open(fh).convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"image '{path}' cannot be decoded ({err}); repair or remove it") from None


def image_problem(path: str) -> str | None:
    """Why `path` cannot be a training image, or None: empty, not an image PIL can parse, damaged
    structure (PIL's verify), or a JPEG cut short (no end-of-image marker). Cheap (≈ 0.1 ms an image:
    no pixel decode), so every image of a folder is checked before a run starts; a cut-off JPEG
    otherwise fails mid-epoch, or in some decoders silently yields grey pixels."""
    try:
        with open(path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size == 0:
                return "empty file"
            with Image.open(fh) as image:
                kind = image.format
                image.verify()
            if kind == "JPEG":
                fh.seek(-min(32, os.fstat(fh.fileno()).st_size), os.SEEK_END)
                if b"\xff\xd9" not in fh.read():
                    return "truncated JPEG (no end-of-image marker)"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        return str(err).splitlines()[0] if str(err) else type(err).__name__
    return None


def check_images(root: Path, paths: list[str]) -> None:
    """DataError naming the unreadable images under `root`, if any (tort's documented choice: say
    which files, up front, rather than skip images and train on a different dataset than asked)."""
    bad = [(p, why) for p in paths if (why := image_problem(p)) is not None]
    if bad:
        shown = "; ".join(f"{os.path.relpath(p, root)}: {why}" for p, why in bad[:3])
        raise DataError(f"imagefolder root '{root}': {len(bad)} of {len(paths)} images cannot be read ({shown}"
                        f"{'; …' if len(bad) > 3 else ''}); repair or remove them, then rerun")


@DATASETS.register("imagefolder")
def _imagefolder(root: Path | None, options: Any = None) -> DatasetPair:
    from torchvision.datasets import ImageFolder

    root = _require_root(root, "imagefolder", IMAGEFOLDER_LAYOUT)
    train_dir = root / "train"
    test_dir = next((root / s for s in ("test", "val") if (root / s).is_dir()), None)
    if not train_dir.is_dir() or test_dir is None:
        raise DataError(f"imagefolder root '{root}' lacks train/ and test/ (or val/); expected {IMAGEFOLDER_LAYOUT}")
    try:
        train = ImageFolder(str(train_dir), loader=load_image)
        test = ImageFolder(str(test_dir), loader=load_image)
    except (FileNotFoundError, RuntimeError) as err:
        raise DataError(f"imagefolder root '{root}': {str(err).splitlines()[0]}; expected {IMAGEFOLDER_LAYOUT}") from None
    check_images(root, [path for path, _ in train.samples + test.samples])
    if train.classes != test.classes:
        missing = sorted(set(train.classes) ^ set(test.classes))[:3]
        raise DataError(f"imagefolder root '{root}': train/ and {test_dir.name}/ have different class folders "
                        f"(e.g. {missing}); both need the same <class> folders")
    return DatasetPair(train, test, len(train.classes), f"imagefolder:{root.name}")
