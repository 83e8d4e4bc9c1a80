"""Datasets: the embedded digits, ImageFolder trees, and one-line errors for bad roots."""

import numpy as np
import pytest
from PIL import Image

from tort_core.data import DATASETS, DecodedImages, in_memory, limit, load_dataset
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


# ---------------------------------------------------------------------------------------------
# The digits without scikit-learn, and the per-process dataset cache (a reused sweep worker).

def test_digits_are_scikit_learns_digits_and_split(digits):
    """The digits are read from scikit-learn's CSV and split without importing scikit-learn: the
    same images, labels and split (order included) as load_digits + train_test_split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    labels = [int(t) for t in bunch.target]
    idx_train, idx_test = train_test_split(np.arange(len(labels)), test_size=0.25, random_state=0, stratify=labels)
    pixels = (bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    for ds, idx in ((digits.train, idx_train), (digits.test, idx_test)):
        assert len(ds) == len(idx)
        for j, i in enumerate(idx):
            image, label = ds[j]
            expected = Image.fromarray(pixels[i], mode="L").resize((32, 32), Image.BICUBIC).convert("RGB")
            assert label == labels[i] and np.array_equal(np.asarray(image), np.asarray(expected)), (j, i)


@pytest.mark.parametrize("seed, test_size, n, classes", [(0, 0.25, 50, 3), (1, 0.3, 101, 7), (7, 0.5, 40, 4)])
def test_stratified_split_is_train_test_split(seed, test_size, n, classes):
    from sklearn.model_selection import train_test_split

    from tort_core.data import stratified_split

    labels = np.random.RandomState(seed).randint(0, classes, n)  # uneven classes: remainders and ties
    expected = train_test_split(np.arange(n), test_size=test_size, random_state=seed, stratify=labels)
    got = stratified_split(labels, test_size=test_size, seed=seed)
    assert [list(a) for a in got] == [list(a) for a in expected]


@pytest.mark.slow
def test_digits_load_without_importing_scikit_learn():
    import subprocess
    import sys

    code = ("import sys; from tort_core.data import load_dataset; d = load_dataset('digits', None); "
            "assert len(d.train) == 1347, len(d.train); print(sorted(m for m in sys.modules if m.startswith('sklearn')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.fixture
def fresh_cache():
    from tort_core.data import clear_dataset_cache

    clear_dataset_cache()
    yield
    clear_dataset_cache()


def test_the_cache_loads_once_and_returns_equal_data(fresh_cache, digits):
    import tort_core.data as data_module

    first = load_dataset("digits", None, cache=True)
    again = load_dataset("digits", None, cache=True)
    assert again.train is not first.train and again.test is not first.test  # each caller its own objects
    assert again.train.images is first.train.images  # ... over the same loaded images: not loaded again
    for a, b in ((first.train, digits.train), (first.test, digits.test)):
        assert len(a) == len(b) and a.labels == b.labels
        assert all(np.array_equal(np.asarray(a[i][0]), np.asarray(b[i][0])) for i in range(0, len(a), 37))
    assert (again.num_classes, again.name) == (10, "digits")
    # without cache=True nothing is kept or reused
    plain = load_dataset("digits", None)
    assert plain.train.images is not first.train.images
    assert len(data_module._DATASET_CACHE) == 1


def test_the_cache_is_keyed_by_dataset_root_and_options(fresh_cache, tmp_path, monkeypatch):
    import tort_core.data as data_module

    for name in ("one", "two"):
        _tree(tmp_path / name, "train", ["a", "b"])
        _tree(tmp_path / name, "test", ["a", "b"], n=1)
    one = load_dataset("imagefolder", tmp_path / "one", cache=True)
    # the same root spelled differently is the same entry; another root is another entry
    same = load_dataset("imagefolder", tmp_path / "two" / ".." / "one", cache=True)
    two = load_dataset("imagefolder", tmp_path / "two", cache=True)
    assert same.train.samples is one.train.samples
    assert two.train.samples is not one.train.samples and two.train.root.endswith("two/train")
    assert len(data_module._DATASET_CACHE) == 2
    # options are part of the key; options that cannot be a key are never cached
    seen = []
    monkeypatch.setitem(DATASETS._items, "probe", lambda root, options: seen.append(options) or one)
    load_dataset("probe", None, {"a": 1}, cache=True)
    load_dataset("probe", None, {"a": 1}, cache=True)
    load_dataset("probe", None, ("a", 1), cache=True)
    load_dataset("probe", None, ("a", 1), cache=True)
    load_dataset("probe", None, ("a", 2), cache=True)
    assert seen == [{"a": 1}, {"a": 1}, ("a", 1), ("a", 2)]


def test_callers_cannot_change_what_the_cache_holds(fresh_cache, tmp_path):
    from tort_core.config import build_config
    from tort_core.recipes import RECIPES

    _tree(tmp_path, "train", ["a", "b"])
    _tree(tmp_path, "test", ["a", "b"], n=1)
    folder = load_dataset("imagefolder", tmp_path, cache=True)
    folder.train.transform = lambda image: "changed"  # a torchvision dataset's own transform
    folder.train.samples = []
    again = load_dataset("imagefolder", tmp_path, cache=True)
    assert again.train.transform is None and len(again.train) == 4 and again.train[0][0].mode == "RGB"

    digits = load_dataset("digits", None, cache=True)
    before = [np.asarray(digits.train[i][0]).copy() for i in range(8)]
    with pytest.raises(TypeError):
        digits.train.images[0] = None  # the images of a cached dataset are a tuple
    # the real training views and a limit() leave the cached images and splits as they were
    cfg = build_config("tort", "demo")
    transform = RECIPES.get("tort")().train_transform(cfg)
    for i in range(8):
        transform(digits.train[i][0])
    small = limit(digits, 4, 2)
    assert (len(small.train), len(small.test)) == (4, 2) and small is not digits
    fresh = load_dataset("digits", None, cache=True)
    assert (len(fresh.train), len(fresh.test)) == (1347, 450)
    assert all(np.array_equal(np.asarray(fresh.train[i][0]), before[i]) for i in range(8))


@pytest.mark.parametrize("workers", [0, 1])
def test_decoded_images_are_the_decoders_pixels_up_to_the_budget(tmp_path, workers):
    _tree(tmp_path, "train", ["a", "b"], n=3)  # six 12×12 RGB images: 432 bytes each decoded
    _tree(tmp_path, "test", ["a", "b"], n=1)
    files = load_dataset("imagefolder", tmp_path).train
    decoded = DecodedImages(files, max_bytes=4 * 432 + 100, workers=workers)
    assert decoded.cached == 4 and decoded.nbytes == 4 * 432 and len(decoded) == 6  # the last two past the budget
    for i in range(6):
        (a, la), (b, lb) = decoded[i], files[i]
        assert la == lb and a.mode == b.mode == "RGB" and np.array_equal(np.asarray(a), np.asarray(b))
    assert decoded[0][0] is decoded[0][0]  # kept, not decoded again
    assert in_memory(decoded) and not in_memory(files)
