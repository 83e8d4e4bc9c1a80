"""Fixed reference scores: chance level and the upper reference, per dataset.

Chance top-1 is 100 / classes. The number of classes comes from `tort_core.catalog.DATASET_INFO`
for registered datasets, and for `imagefolder:<name>` datasets from a `num_classes` column of the
trial rows when the store records one; otherwise chance is unknown (NaN) and the report says so.
The upper reference is 100% top-1 (a perfect classifier), stated wherever scores are normalised:
normalised = (score − chance) / (100 − chance), so chance → 0 and perfect → 1 on every dataset.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from tort_core.catalog import DATASET_INFO, chance_top1

UPPER_REFERENCE = 100.0  # % top-1: a perfect classifier
CLASSES_COLUMN = "num_classes"


def classes_for(dataset: str, trials: pd.DataFrame | None = None) -> int | None:
    """Classes of a dataset label ('flowers102', 'imagefolder:flowers17'); None when unknown."""
    info = DATASET_INFO.get(str(dataset))
    if info is not None and info.classes:
        return int(info.classes)
    if trials is not None and not trials.empty and CLASSES_COLUMN in trials and "dataset" in trials:
        values = pd.to_numeric(trials.loc[trials["dataset"] == dataset, CLASSES_COLUMN], errors="coerce").dropna()
        values = values[values > 0].unique()
        if len(values) == 1:
            return int(values[0])
    return None


def chance_for(dataset: str, trials: pd.DataFrame | None = None) -> float:
    """Top-1 accuracy (%) of a uniform guess on this dataset; NaN when its classes are unknown."""
    return chance_top1(classes_for(dataset, trials))


def chance_text(chance: float) -> str:
    return f"{chance:.2f}%" if math.isfinite(chance) else "chance unknown"


def normalise(scores, chance: float, upper: float = UPPER_REFERENCE) -> np.ndarray:
    """(score − chance) / (upper − chance): 0 at chance, 1 at the upper reference; NaN when
    chance is unknown."""
    x = np.asarray(scores, dtype=float)
    if not math.isfinite(chance) or upper <= chance:
        return np.full(x.shape, math.nan)
    return (x - chance) / (upper - chance)
