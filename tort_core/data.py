"""Dataset registry: the embedded default, the thesis's four datasets, and any ImageFolder tree.

Every dataset yields `(PIL RGB image, int label)`; transforms are applied by `Transformed`, so the
same raw dataset serves the multi-crop training views and the evaluation transform. Nothing is ever
downloaded: a missing or malformed root fails with one line naming the expected layout.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from .errors import DataError
from .registry import Registry


@dataclass
class DatasetPair:
    train: Dataset
    test: Dataset
    num_classes: int
    name: str


DATASETS: Registry[Callable[[Path | None, Any], DatasetPair]] = Registry("dataset")


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
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.images[index], self.labels[index]


def load_dataset(name: str, root: Path | None, options: Any = None) -> DatasetPair:
    return DATASETS.get(name)(root, options)


def limit(pair: DatasetPair, train: int | None, test: int | None) -> DatasetPair:
    """The first `train` / `test` images of each split (None keeps the split whole)."""
    from torch.utils.data import Subset

    cut = lambda ds, n: ds if n is None or n >= len(ds) else Subset(ds, range(n))  # noqa: E731
    return DatasetPair(cut(pair.train, train), cut(pair.test, test), pair.num_classes, pair.name)


# ---------------------------------------------------------------------------------------------
# Embedded default: scikit-learn's bundled UCI handwritten digits (real scans, ships in the wheel).

DIGITS_SIZE = 32


@DATASETS.register("digits")
def _digits(root: Path | None, options: Any = None) -> DatasetPair:
    """1,797 real 8×8 handwritten digits (10 classes), upscaled to 32 px RGB; fixed 75/25 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    pixels = (bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    images = [
        Image.fromarray(p, mode="L").resize((DIGITS_SIZE, DIGITS_SIZE), Image.BICUBIC).convert("RGB")
        for p in pixels
    ]
    labels = [int(t) for t in bunch.target]
    # The split is part of the dataset, not of the run: fixed seed, stratified.
    idx_train, idx_test = train_test_split(
        np.arange(len(labels)), test_size=0.25, random_state=0, stratify=labels
    )
    pick = lambda idx: InMemoryImages([images[i] for i in idx], [labels[i] for i in idx])  # noqa: E731
    return DatasetPair(pick(idx_train), pick(idx_test), 10, "digits")


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


def _torchvision(name: str, cls_name: str, splits: tuple[str, str], num_classes: int, layout: str,
                 extra: dict[str, Any] | None = None):
    def factory(root: Path | None, options: Any = None) -> DatasetPair:
        import torchvision.datasets as tvd

        root = _require_root(root, name, layout)
        cls = getattr(tvd, cls_name)
        try:
            train = cls(str(root), split=splits[0], download=False, **(extra or {}))
            test = cls(str(root), split=splits[1], download=False, **(extra or {}))
        except (RuntimeError, FileNotFoundError, OSError, KeyError, IndexError) as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise DataError(f"dataset '{name}' not found under '{root}' ({reason}); expected {layout}; "
                            f"nothing is downloaded") from None
        return DatasetPair(train, test, num_classes, name)

    DATASETS.register(name)(factory)
    return factory


_torchvision("flowers102", "Flowers102", ("train", "test"), 102,
             "ROOT/flowers-102/{jpg/, imagelabels.mat, setid.mat}")
_torchvision("fgvc_aircraft", "FGVCAircraft", ("trainval", "test"), 100,
             "ROOT/fgvc-aircraft-2013b/data/{images/, images_variant_*.txt}")
_torchvision("stanford_cars", "StanfordCars", ("train", "test"), 196,
             "ROOT/stanford_cars/{cars_train/, cars_test/, devkit/, cars_test_annos_withlabels.mat}")
_torchvision("oxford_pet", "OxfordIIITPet", ("trainval", "test"), 37,
             "ROOT/oxford-iiit-pet/{images/, annotations/}", extra={"target_types": "category"})


# ---------------------------------------------------------------------------------------------
# Any ImageFolder tree with train/ and test/ (or val/).

IMAGEFOLDER_LAYOUT = "ROOT/train/<class>/<image> and ROOT/test/<class>/<image> (or ROOT/val/)"


@DATASETS.register("imagefolder")
def _imagefolder(root: Path | None, options: Any = None) -> DatasetPair:
    from torchvision.datasets import ImageFolder

    root = _require_root(root, "imagefolder", IMAGEFOLDER_LAYOUT)
    train_dir = root / "train"
    test_dir = next((root / s for s in ("test", "val") if (root / s).is_dir()), None)
    if not train_dir.is_dir() or test_dir is None:
        raise DataError(f"imagefolder root '{root}' lacks train/ and test/ (or val/); expected {IMAGEFOLDER_LAYOUT}")
    try:
        train = ImageFolder(str(train_dir))
        test = ImageFolder(str(test_dir))
    except (FileNotFoundError, RuntimeError) as err:
        raise DataError(f"imagefolder root '{root}': {str(err).splitlines()[0]}; expected {IMAGEFOLDER_LAYOUT}") from None
    if train.classes != test.classes:
        missing = sorted(set(train.classes) ^ set(test.classes))[:3]
        raise DataError(f"imagefolder root '{root}': train/ and {test_dir.name}/ have different class folders "
                        f"(e.g. {missing}); both need the same <class> folders")
    return DatasetPair(train, test, len(train.classes), f"imagefolder:{root.name}")
