"""Damaged images in a user's ImageFolder tree are named before any training, and an image that
breaks later (in a loader worker) still surfaces as one line naming the file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from tort_core.data import image_problem, load_dataset
from tort_core.errors import DataError


def _tree(root: Path) -> Path:
    for split in ("train", "test"):
        for c, colour in (("a", (200, 30, 30)), ("b", (30, 30, 200))):
            (root / split / c).mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (24, 24), colour).save(root / split / c / f"{i}.jpg", quality=90)
    return root


@pytest.mark.parametrize("damage, reason", [
    (lambda p: p.write_bytes(b""), "empty file"),
    (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "truncated"),
    (lambda p: p.write_bytes(p.read_bytes()[:-2]), "truncated JPEG"),
    (lambda p: p.write_bytes(b"GIF89a not really"), ""),
    (lambda p: p.write_text("hello"), "cannot identify"),
])
def test_a_damaged_image_is_named_before_training(tmp_path, damage, reason):
    root = _tree(tmp_path / "data")
    bad = root / "train" / "b" / "1.jpg"
    damage(bad)
    assert image_problem(str(bad)) is not None
    with pytest.raises(DataError) as err:
        load_dataset("imagefolder", root)
    message = str(err.value)
    assert "1 of 12 images cannot be read" in message and "train/b/1.jpg" in message and reason in message.lower().replace("jpeg", "JPEG")
    assert "\n" not in message


def test_intact_images_pass_the_check(tmp_path):
    root = _tree(tmp_path / "data")
    pair = load_dataset("imagefolder", root)
    assert len(pair.train) == 6 and all(image_problem(p) is None for p, _ in pair.train.samples)


def test_an_image_that_breaks_in_a_loader_worker_is_one_line_naming_it(tmp_path):
    import torch.utils.data as tud

    import cli

    root = _tree(tmp_path / "data")
    pair = load_dataset("imagefolder", root)
    broken = Path(pair.train.samples[0][0])
    broken.write_bytes(b"")  # damaged after the check
    loader = tud.DataLoader(pair.train, batch_size=None, num_workers=1, collate_fn=lambda x: x)
    with pytest.raises(DataError) as err:
        list(loader)
    line = cli.one_line(err.value)
    assert line.startswith(f"image '{broken}' cannot be decoded") and "Traceback" not in line


def test_the_shared_real_photographs_pass_the_check():
    shared = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "flowers17"
    if not shared.is_dir():
        pytest.skip("the shared flowers17 copy is not next to this checkout")
    pair = load_dataset("imagefolder", shared)
    assert len(pair.train) == 680 and pair.num_classes == 17
