"""Datasets: the embedded digits, ImageFolder trees, and one-line errors for bad roots."""

import numpy as np
import pytest
from PIL import Image

from tort_core.data import DATASETS, limit, load_dataset
from tort_core.errors import DataError


def test_embedded_digits_are_real_and_split_once(digits):
    assert digits.num_classes == 10
    assert len(digits.train) + len(digits.test) == 1797
    image, label = digits.train[0]
    assert image.mode == "RGB" and image.size == (32, 32) and 0 <= label < 10
    labels = [digits.test[i][1] for i in range(len(digits.test))]
    assert set(labels) == set(range(10))  # stratified
    again = load_dataset("digits", None)
    assert np.array_equal(np.asarray(again.train[5][0]), np.asarray(digits.train[5][0]))


def test_limit_cuts_each_split(digits):
    small = limit(digits, 20, 10)
    assert (len(small.train), len(small.test)) == (20, 10)
    assert limit(digits, None, None).train is digits.train


def _tree(root, split, classes, n=2):
    for c in classes:
        d = root / split / c
        d.mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((12, 12, 3), 40 * i, np.uint8)).save(d / f"{i}.png")


def test_imagefolder_with_train_and_test_or_val(tmp_path):
    _tree(tmp_path, "train", ["a", "b", "c"])
    _tree(tmp_path, "val", ["a", "b", "c"], n=1)
    pair = load_dataset("imagefolder", tmp_path)
    assert pair.num_classes == 3 and len(pair.train) == 6 and len(pair.test) == 3
    assert pair.train[0][0].mode == "RGB"


@pytest.mark.parametrize("layout, fragment", [
    ("missing", "is not a directory"),
    ("no-test", "lacks train/ and test/"),
    ("mismatch", "different class folders"),
])
def test_imagefolder_errors_name_the_expected_layout(tmp_path, layout, fragment):
    if layout == "no-test":
        _tree(tmp_path, "train", ["a"])
    if layout == "mismatch":
        _tree(tmp_path, "train", ["a", "b"])
        _tree(tmp_path, "test", ["a", "c"])
    root = tmp_path / "nope" if layout == "missing" else tmp_path
    with pytest.raises(DataError) as info:
        load_dataset("imagefolder", root)
    assert fragment in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["flowers102", "fgvc_aircraft", "stanford_cars", "oxford_pet"])
def test_thesis_datasets_never_download_and_name_their_layout(tmp_path, name):
    assert name in DATASETS
    with pytest.raises(DataError, match="needs a local root"):
        load_dataset(name, None)
    with pytest.raises(DataError) as info:
        load_dataset(name, tmp_path)  # an empty root: torchvision must not fetch anything
    assert "expected ROOT/" in str(info.value) and "nothing is downloaded" in str(info.value)
    assert list(tmp_path.iterdir()) == []
