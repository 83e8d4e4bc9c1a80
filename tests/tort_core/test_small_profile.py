"""The `small` profile: the demo's ViT on real photographs from a local ImageFolder root."""
import math
from pathlib import Path

import pytest

from tests.adversarial.cli_runner import run_main
from tort_core.catalog import PROFILE_INFO
from tort_core.config import PROFILES, build_config

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.mark.parametrize("recipe", ["tort", "sota", "augreg", "deit"])
def test_every_recipe_resolves_under_small(recipe):
    cfg = build_config(recipe, "small", overrides={"data.root": "/data/flowers17"}, check_names=False)
    assert (cfg.data.dataset, cfg.views.global_size, cfg.views.local_size) == ("imagefolder", 48, 24)
    assert cfg.epochs == 20 and cfg.optim.cooldown_epochs <= 1
    assert cfg.model.kwargs["patch_size"] == 8 and cfg.views.global_size % 8 == 0 and cfg.views.local_size % 8 == 0


def test_small_is_described_and_keeps_the_recipes_randaugment():
    assert set(PROFILE_INFO) == set(PROFILES) and "small" in PROFILE_INFO
    assert build_config("sota", "small", check_names=False).aug.randaugment == build_config(
        "sota", "thesis", check_names=False).aug.randaugment  # photographs survive magnitude 9
    assert build_config("sota", "demo", check_names=False).aug.randaugment != build_config(
        "sota", "thesis", check_names=False).aug.randaugment


def test_small_without_a_root_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("TORT_DATA_ROOT", raising=False)
    code, _, err = run_main(monkeypatch, capsys, "train", "--profile", "small", "--out", tmp_path / "run")
    assert code == 2 and "--data-root" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "flowers17").is_dir(), reason="the shared flowers17 copy is not next to this checkout")
def test_a_short_small_run_on_photographs_learns_and_its_teacher_does_not_go_uniform(tmp_path):
    from tort_core.trainer import fit

    cfg = build_config("tort", "small", overrides={"data.root": str(SHARED / "flowers17"), "epochs": 3,
                                                    "optim.warmup_epochs": 1, "threads": 1})
    res = fit(cfg, tmp_path)
    last = res.records[-1]
    assert res.status == "completed"
    assert last["test_top1"] > 2 * 100 / 17  # twice chance on 17 classes after 4 short epochs
    assert last["teacher_entropy"] < 0.95 * math.log(cfg.heads.out_dim)
