"""data.val_fraction: a stratified validation split carved from the training split, evaluated every epoch."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tort_core.config import build_config
from tort_core.data import VAL_SPLIT_SEED, carve_validation, dataset_labels, limit
from tort_core.errors import ConfigError
from tort_core.trainer import Callback, fit

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def test_the_carve_is_stratified_disjoint_and_fixed(digits):
    pair = carve_validation(digits, 0.2)
    train_idx, val_idx = set(pair.train.indices), set(pair.val.indices)
    assert not train_idx & val_idx and train_idx | val_idx == set(range(len(digits.train)))
    assert len(val_idx) == int(np.ceil(0.2 * len(digits.train)))
    whole = Counter(dataset_labels(digits.train))
    val = Counter(dataset_labels(pair.val))
    assert all(abs(val[c] - 0.2 * whole[c]) <= 1 for c in whole)  # every class in proportion
    assert carve_validation(digits, 0.2).val.indices == pair.val.indices  # the same images every time
    assert pair.test is digits.test


def test_the_carve_does_not_follow_the_run_seed(digits):
    seen = []

    class Sizes(Callback):
        def on_fit_start(self, cfg, info):
            seen.append((info["train_size"], info["val_size"]))
            raise KeyboardInterrupt  # the split is made; no need to train

    for seed in (0, 1):
        cfg = build_config("sota", "demo", overrides={"seed": seed, "data.val_fraction": 0.25,
                                                      "data.train_limit": 200})
        with pytest.raises(KeyboardInterrupt):
            fit(cfg, callbacks=[Sizes()], data=digits)
    assert seen == [(150, 50), (150, 50)]
    assert VAL_SPLIT_SEED == 0


def test_too_small_a_validation_split_fails_naming_the_key(digits):
    with pytest.raises(ConfigError, match=r"data\.val_fraction: 0\.05 of 64 training images leaves 4 for validation"):
        carve_validation(limit(digits, 64, None), 0.05)


@pytest.mark.skipif(not (SHARED / "flowers17").is_dir(), reason="shared flowers17 not present")
def test_labels_of_a_folder_dataset_are_read_without_decoding():
    from torchvision.datasets import ImageFolder

    ds = ImageFolder(str(SHARED / "flowers17" / "train"))
    labels = dataset_labels(ds)
    assert len(labels) == len(ds) and labels[:5] == [ds[i][1] for i in range(5)]


@pytest.mark.slow
def test_a_run_records_validation_metrics_every_epoch(tiny_cfg, digits):
    cfg = tiny_cfg("sota", **{"data.val_fraction": 0.25, "data.train_limit": 96})
    result = fit(cfg, data=digits)
    assert result.status == "completed" and len(result.records) == cfg.total_epochs
    for record in result.records:
        assert 0 <= record["val_top1"] <= 100 and 0 <= record["val_knn_top1"] <= 100
        assert "test_top1" in record and "knn_top1" in record
