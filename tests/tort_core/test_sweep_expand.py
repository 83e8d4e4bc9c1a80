"""Expansion: grid × zipped groups × seeds × datasets, each trial with its resolved config and a
stable id (the config's content hash), the same in every process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tort_core.config import build_config
from tort_core.sweep import expand, load_spec, spec_from_dict

ROOT = Path(__file__).resolve().parents[2]
SWEEPS = sorted((ROOT / "sweeps").glob("*.yaml"))


def _ids(path: str, profile: str | None = None) -> list[str]:
    return [t.id for t in expand(load_spec(path), profile=profile).trials]


def test_counts_of_the_thesis_ablations():
    counts = {p.stem: len(expand(load_spec(p)).trials) for p in SWEEPS}
    assert counts["teacher_temp"] == counts["student_temp"] == counts["mask_scale"] == 5 * 3
    assert counts["loss_subsets"] == 7 * 3 and counts["epochs"] == 3 * 3 and counts["out_dim"] == 6 * 3
    assert counts["label_smoothing"] == counts["rot_prob"] == counts["teacher_rotated"] == 2 * 3
    assert counts["min_lr"] == 3 * 3


@pytest.mark.parametrize("spec", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_every_spec_expands_under_the_demo_profile(spec):
    exp = expand(load_spec(spec), profile="demo")
    assert exp.trials and {t.dataset for t in exp.trials} == {"digits"}
    assert all(t.config.model.kwargs.get("patch_size") in (4, 8) for t in exp.trials)  # the demo's tiny models
    assert len({t.id for t in exp.trials}) == len(exp.trials)


def test_trial_configs_are_what_build_config_gives():
    exp = expand(load_spec(ROOT / "sweeps/mask_scale.yaml"))
    t = exp.trials[4]
    assert t.axes == {"views.mask_scale": [0.2, 0.4]} and t.seed == 1 and t.dataset == "flowers102"
    assert t.config == build_config("tort", "thesis", overrides={"views.mask_scale": [0.2, 0.4], "seed": 1,
                                                                 "data.dataset": "flowers102"})
    assert t.id == t.config.content_hash()
    assert exp.varying == ["seed", "views.mask_scale"]


@pytest.mark.slow
def test_ids_are_stable_across_processes():
    here = {p.stem: _ids(str(p)) for p in SWEEPS[:4]}
    code = ("import json,sys; from tort_core.sweep import expand, load_spec; "
            "print(json.dumps({a.rsplit('/',1)[1][:-5]: [t.id for t in expand(load_spec(a)).trials] "
            "for a in sys.argv[1:]}))")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    proc = subprocess.run([sys.executable, "-c", code, *[str(p) for p in SWEEPS[:4]]], capture_output=True,
                          text=True, env=env, timeout=300, cwd="/")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == here


def test_ids_do_not_depend_on_sweep_name_or_axis_order():
    a = spec_from_dict({"name": "a", "profile": "demo", "axes": {"loss.teacher_temp": [0.04, 0.06],
                                                                 "views.rot_prob": [0.5, 1.0]}, "seeds": 2})
    b = spec_from_dict({"name": "b", "profile": "demo", "axes": {"views.rot_prob": [1.0, 0.5],
                                                                 "loss.teacher_temp": [0.06, 0.04]}, "seeds": [1, 0]})
    ids_a, ids_b = [t.id for t in expand(a).trials], [t.id for t in expand(b).trials]
    assert len(ids_a) == 8 and sorted(ids_a) == sorted(ids_b)


def test_zip_seeds_and_datasets_multiply():
    spec = spec_from_dict({"name": "z", "profile": "thesis", "datasets": ["flowers102", "oxford_pet"], "seeds": 2,
                           "axes": {"loss.teacher_temp": [0.04, 0.06]},
                           "zip": [{"loss.student_temp": [0.1, 0.2, 0.3], "views.rot_prob": [0.5, 0.6, 0.7]}]})
    exp = expand(spec)
    assert len(exp.trials) == 2 * 2 * 3 * 2
    pairs = {(t.config.loss.student_temp, t.config.views.rot_prob) for t in exp.trials}
    assert pairs == {(0.1, 0.5), (0.2, 0.6), (0.3, 0.7)}
    assert {t.dataset for t in exp.trials} == {"flowers102", "oxford_pet"}
    # the demo profile replaces the spec's thesis datasets with its own embedded one
    demo = expand(spec, profile="demo")
    assert len(demo.trials) == 2 * 2 * 3 and {t.dataset for t in demo.trials} == {"digits"}
    # unless --set names a dataset
    chosen = expand(spec, profile="demo", sets={"data.dataset": "flowers102"})
    assert {t.dataset for t in chosen.trials} == {"flowers102"}


def test_set_on_an_axis_replaces_that_axis():
    exp = expand(load_spec(ROOT / "sweeps/epochs.yaml"), profile="demo",
                 sets={"epochs": 2, "optim.warmup_epochs": 0})
    assert exp.collapsed == ["epochs"] and len(exp.trials) == 3 and exp.varying == ["seed"]
    assert {t.config.epochs for t in exp.trials} == {2}


def test_recipe_as_an_axis_and_relative_paths_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = spec_from_dict({"name": "r", "profile": "demo", "axes": {"recipe": ["tort", "sota"]},
                           "datasets": ["imagefolder"], "overrides": {"data.root": "data"}})
    exp = expand(spec)
    assert [t.config.recipe for t in exp.trials] == ["tort", "sota"]
    assert exp.trials[1].config.optim.name == "adam"  # the sota recipe's defaults, not just its name
    assert all(Path(t.config.data.root) == tmp_path / "data" for t in exp.trials)
