"""The torch-free catalog names exactly what the registries hold, and its facts match the data."""

from __future__ import annotations

import math

from tort_core.catalog import DATASET_INFO, LOSS_INFO, PROFILE_INFO, RECIPE_INFO, metric_info


def test_each_catalog_module_registers_exactly_the_names_the_catalog_gives_it():
    import importlib

    from tort_core.config import PROFILES
    from tort_core.registry import DATASETS, LOSSES, RECIPES

    for registry, catalog in ((DATASETS, DATASET_INFO), (RECIPES, RECIPE_INFO), (LOSSES, LOSS_INFO)):
        for module in {info.module for info in catalog.values()}:
            importlib.import_module(module)
        assert registry.loaded() == sorted(catalog), registry.kind  # nothing unlisted, nothing missing
        assert all(registry.info(name) is catalog[name] for name in catalog)
    assert list(PROFILES) == list(PROFILE_INFO)


def test_the_embedded_dataset_has_the_sizes_and_classes_the_catalog_states(digits):
    info = DATASET_INFO["digits"]
    assert info.sizes == (len(digits.train), len(digits.test))
    assert info.classes == digits.num_classes and math.isclose(info.chance, 10.0)


def test_metric_entries_cover_prefixed_and_per_loss_names():
    assert metric_info("final_test_top1").label == "final test top-1 (%)"
    assert metric_info("best_loss_distill").higher_is_better is False
    assert metric_info("loss_rotation").label == "rotation loss"
    assert metric_info("samples_per_s").machine and not metric_info("knn_top1").machine
    assert metric_info("something_new").label == "something_new"
