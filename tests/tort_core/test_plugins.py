"""Registries and plug-ins: every registered recipe and loss trains a step (whatever registered
it), and a package's recipe, loss and dataset are found through entry points, named without
importing them. The plug-in package is simulated: a module and a `.dist-info` folder in a
temporary directory on a subprocess's path; nothing is installed."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tort_core.registry import DATASETS, LOSSES, RECIPES

ROOT = Path(__file__).resolve().parents[2]

# One step of one epoch on 16 of the embedded digits, evaluated on 16: every piece of `fit` runs.
ONE_STEP = {"epochs": 1, "optim.warmup_epochs": 0, "optim.cooldown_epochs": 0, "batch_size": 16,
            "data.train_limit": 16, "data.test_limit": 16, "views.n_local": 2, "data.num_workers": 0}


def _one_step(recipe: str, **overrides):
    from tort_core.config import build_config
    from tort_core.trainer import fit

    cfg = build_config(recipe, "demo", overrides={**ONE_STEP, **overrides})
    result = fit(cfg)
    assert result.status == "completed", result.error
    (record,) = result.records
    return cfg, record


@pytest.mark.parametrize("name", RECIPES.names())
def test_every_registered_recipe_trains_a_step(name):
    cfg, record = _one_step(name)
    assert record["step"] == 1 and math.isfinite(record["loss"])
    for loss in cfg.loss.enabled:
        assert math.isfinite(record[f"loss_{loss}"]), loss
    assert 0 <= record["test_top1"] <= 100 and 0 <= record["knn_top1"] <= 100


@pytest.mark.parametrize("name", LOSSES.names())
def test_every_registered_loss_trains_a_step_alone_in_the_tort_recipe(name):
    _, record = _one_step("tort", **{"loss.enabled": [name]})
    assert math.isfinite(record[f"loss_{name}"]) and record["loss"] == pytest.approx(record[f"loss_{name}"] * {
        "supervised": 2.5}.get(name, 1.0))  # the demo keeps the thesis's weights


@pytest.mark.parametrize("name", [n for n in DATASETS.names() if not DATASETS.info(n).needs_root])
def test_every_dataset_without_a_root_loads_as_its_catalog_entry_says(name):
    from tort_core.data import load_dataset

    info, pair = DATASETS.info(name), load_dataset(name, None)
    assert pair.num_classes == info.classes and info.sizes == (len(pair.train), len(pair.test))
    image, label = pair.train[0]
    assert image.mode == "RGB" and 0 <= label < info.classes


# ---------------------------------------------------------------------------------------------
# A plug-in package: a recipe, a loss on an output the recipe already computes, a dataset.

PLUGIN = '''
"""A package of tort plug-ins, found through its entry points."""
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from tort_core.catalog import DatasetInfo, LossInfo, RecipeInfo
from tort_core.data import DatasetPair, InMemoryImages
from tort_core.losses import STUDENT_EMBED, Loss
from tort_core.recipes import TortRecipe


class PlugRecipe(TortRecipe):
    """Tort with a faster-moving centre."""
    info = RecipeInfo("plugtort", "Tort (plug-in)", "tort whose centre follows the teacher faster")

    def defaults(self, mode):
        return {"loss.center_momentum": 0.8}


class SpreadLoss(Loss):
    """Pushes the student's embeddings apart: the mean squared cosine similarity of all pairs.

    Args:
        power: the exponent of the similarities.
    """
    info = LossInfo("spread", "spread", "mean squared cosine similarity of the student's embeddings")
    needs = frozenset({STUDENT_EMBED})

    def __init__(self, power: float = 2.0):
        super().__init__()
        self.power = power

    def forward(self, out, ctx):
        e = F.normalize(out.outputs[STUDENT_EMBED].float(), dim=-1)
        return (e @ e.T).abs().pow(self.power).mean()


def noise(root, options=None):
    """Random noise in three classes."""
    g = np.random.default_rng(0)
    make = lambda n: InMemoryImages([Image.fromarray(g.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(n)],
                                    [i % 3 for i in range(n)])
    return DatasetPair(make(48), make(24), 3, "noise")


noise.info = DatasetInfo("noise", "random noise", 3, "generated", needs_root=False, splits={"train": 48, "test": 24})
'''

ENTRY_POINTS = """
[tort.recipes]
plugtort = tortplug:PlugRecipe

[tort.losses]
spread = tortplug:SpreadLoss

[tort.datasets]
noise = tortplug:noise
"""


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("site")
    (site / "tortplug.py").write_text(PLUGIN)
    dist = site / "tortplug-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tortplug\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    return site


def _python(site: Path, code: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=timeout)


def test_a_packages_plugins_are_named_without_importing_them(plugin_path):
    proc = _python(plugin_path, """
        import json, sys
        from tort_core.config import build_config
        from tort_core.errors import ConfigError
        from tort_core.registry import DATASETS, LOSSES, RECIPES

        known = {"recipe": "plugtort" in RECIPES, "loss": "spread" in LOSSES, "dataset": "noise" in DATASETS}
        try:
            build_config("tort", "demo", overrides={"loss.enabled": ["distill", "spraed"]})
        except ConfigError as err:
            typo = str(err)
        untouched = [m for m in ("tortplug", "torch") if m in sys.modules]
        cfg = build_config("plugtort", "demo", overrides={"loss.enabled": ["distill", "spread"],
                                                          "data.dataset": "noise"}, check_names=False)
        print(json.dumps({"known": known, "typo": typo, "untouched": untouched,
                          "momentum": cfg.loss.center_momentum, "info": RECIPES.info("plugtort").label,
                          "loss_summary": LOSSES.info("spread").summary, "classes": DATASETS.info("noise").classes}))
    """)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["known"] == {"recipe": True, "loss": True, "dataset": True}
    assert "did you mean 'spread'" in got["typo"]
    assert got["untouched"] == []  # names came from the metadata: neither the plug-in nor torch was imported
    assert got["momentum"] == 0.8  # the plug-in recipe's own defaults
    assert got["info"] == "Tort (plug-in)" and "cosine" in got["loss_summary"] and got["classes"] == 3


@pytest.mark.slow
def test_the_registry_driven_tests_train_the_plugins_too(plugin_path):
    # The parametrised tests above, collected with the plug-in on the path, include its recipe,
    # loss and dataset (and nothing of it was edited into tort).
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__,
                           "-k", "registered or without_a_root", "-k", "plugtort or spread or noise"],
                          capture_output=True, text=True, cwd=ROOT, timeout=600,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_path), str(ROOT)])})
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "3 passed" in proc.stdout, proc.stdout[-3000:]


def test_a_plugin_that_fails_to_import_is_one_line_naming_it(plugin_path, tmp_path):
    broken = tmp_path / "site"
    broken.mkdir()
    (broken / "brokenplug.py").write_text("raise ImportError('needs a package that is not installed')\n")
    dist = broken / "brokenplug-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenplug\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[tort.recipes]\nbroken = brokenplug:Recipe\n")
    proc = _python(broken, """
        from tort_core.config import build_config
        from tort_core.errors import ConfigError
        try:
            build_config("broken", "demo")
        except ConfigError as err:
            print(err)
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ("recipe 'broken': its plug-in failed to load (entry point tort.recipes:broken = "
                                   "brokenplug:Recipe of the package 'brokenplug'): ImportError: needs a package that "
                                   "is not installed")
    listing = subprocess.run([sys.executable, "-m", "cli", "recipes"], capture_output=True, text=True, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join([str(broken), str(ROOT)])}, timeout=120)
    assert listing.returncode == 0, listing.stderr  # the broken one is listed with why; the others still are
    assert "  broken: recipe 'broken': its plug-in failed to load" in listing.stdout and "  sota: " in listing.stdout
