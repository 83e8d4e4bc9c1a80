"""The fidelity presets resolve to the values their sources state.

Every expected value below is copied from a source, not computed by the code under test:
- the thesis (§3.2–4.4) for `written`;
- the original repository `detkov/tort` at aca9ec6 for `as_run`: train_tort.py, train_tort_parser.py,
  tort_aug.py, dataset.py, exp_scripts/experiments_41.py (the four datasets' Tort runs),
  train_sl.py, train_sl_parser.py and configs/01/*.yaml (the baseline), with timm as of Jan 2022
  (commit 010b486, which its REQUIREMENTS.md points to) for the library defaults it relied on;
- big_vision configs/vit_i1k.py + optax.py (Steiner et al.) for `augreg`;
- facebookresearch/deit main.py for `deit`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tort_core.config import build_config, known_keys
from tort_core.errors import ConfigError
from tort_core.fidelity import CHOICES, preset

ROOT = Path(__file__).resolve().parents[2]


def resolved(cfg, keys):
    flat = _flat(cfg.model_dump())
    return {k: _norm(flat[k]) for k in keys}


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k not in ("kwargs", "weights"):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _norm(v):
    return list(v) if isinstance(v, tuple) else v


def check(cfg, expected: dict):
    got = resolved(cfg, expected)
    wrong = {k: (got[k], _norm(v)) for k, v in expected.items() if got[k] != _norm(v)}
    assert not wrong, f"(resolved, source) differ: {wrong}"


# --- Tort --------------------------------------------------------------------------------------

# Thesis §3.2, §4.2.1, §4.3, §4.4 (and §3.5's loss weights).
TORT_WRITTEN = {
    "views.global_size": 224, "views.local_size": 96, "views.n_local": 6, "views.global_scale": (0.4, 1.0),
    "views.mask_scale": (0.4, 0.6), "views.rot_prob": 0.5, "batch_size": 32, "epochs": 100,
    "optim.lr": 5e-4, "optim.min_lr": 1e-6, "optim.warmup_lr": 1e-8, "optim.warmup_epochs": 10,
    "optim.cooldown_epochs": 3, "optim.name": "lookahead_adamw", "optim.weight_decay": 0.04, "optim.clip_grad": 3.0,
    "teacher.momentum": 0.9998, "teacher.final_momentum": 1.0, "loss.student_temp": 0.1, "loss.teacher_temp": 0.04,
    "loss.center_momentum": 0.9, "loss.weights": {"distill": 1.0, "supervised": 2.5, "rotation": 1.0},
    "eval.knn_k": 20, "model.name": "vit_base_patch16_224",
    # "two equally initialized networks" (§3.3), "from 0.9998 to 1 using cosine schedule" (§4.3)
    "teacher.init": "copy", "teacher.momentum_index": "global_step",
}

# The original code, as its Tort runs were launched (exp_scripts/experiments_41.py → train_tort.py).
TORT_AS_RUN = {
    # experiments_41.py common_params
    "teacher.momentum": 0.9998, "heads.out_dim": 1024, "loss.warmup_teacher_temp": 0.04, "loss.teacher_temp": 0.04,
    "loss.warmup_teacher_temp_epochs": 0, "views.n_local": 6, "loss.weights": {"distill": 1.0, "supervised": 2.5,
                                                                                "rotation": 1.0},
    "views.rot_prob": 0.5, "loss.label_smoothing": 0.0, "batch_size": 32, "heads.norm_last_layer": True,
    "optim.lr": 5e-4, "optim.min_lr": 1e-6, "optim.warmup_lr": 1e-8, "optim.name": "lookahead_adamw",
    "optim.clip_grad": 3.0, "optim.weight_decay": 0.04, "epochs": 100, "optim.warmup_epochs": 10,
    "optim.cooldown_epochs": 3,
    # train_tort_parser.py defaults the series leaves alone
    "views.mask_scale": (0.2, 0.6), "views.global_scale": (0.4, 1.0), "views.local_scale": (0.05, 0.4),
    "loss.student_temp": 0.1, "loss.center_momentum": 0.9, "model.drop_path": 0.1,
    # train_tort.py: teacher = create_model(...) of its own; momentum_scheduler[batch_idx]
    "teacher.init": "independent", "teacher.momentum_index": "batch_in_epoch",
    # tort_aug.py rand_rot: `if np.random.random() > rot_prob: return batch, zeros` per view batch
    "views.rotation_draw": "per_view_batch",
    # timm create_scheduler: CosineLRScheduler(t_initial=epochs, warmup_t=warmup_epochs) with its
    # defaults t_in_epochs=True, warmup_prefix=False; lr_scheduler.step(epoch + 1) once per epoch
    "optim.schedule_unit": "epoch", "optim.warmup_prefix": False,
    # create_optimizer_v2(student): MultiCropWrapper has no no_weight_decay(): pos_embed and cls_token decay
    "optim.decay_tokens": True,
    # dataset.py: Flowers102 train/val, FGVCAircraft train/val
    "data.splits": "original",
    # experiments_21.py sets rep_w; tort_loss.py weighs the distillation by con_w (parser default 1)
    "loss.keep_distill": True,
    # valid_one_epoch_ssl: KNeighborsClassifier(n_neighbors=20, metric='cosine') (uniform weights),
    # cross_val_score (5 folds) on the con_head outputs of the validation split
    "eval.knn_k": 20, "eval.knn_protocol": "cv", "eval.knn_weights": "uniform", "eval.knn_features": "logits",
}


def test_tort_as_written_is_the_thesis_text():
    check(build_config("tort", "thesis"), TORT_WRITTEN)


def test_tort_as_run_is_the_original_code():
    check(build_config("tort", "thesis", overrides={"fidelity": "as_run"}), TORT_AS_RUN)


def test_tort_modern_is_the_written_text_for_every_choice():
    written, modern = build_config("tort", "thesis"), build_config("tort", "thesis", overrides={"fidelity": "modern"})
    assert {k: v for k, v in written.flat().items() if k != "fidelity"} == \
        {k: v for k, v in modern.flat().items() if k != "fidelity"}


# --- sota: the thesis's baseline -------------------------------------------------------------

# configs/01/<dataset>-train.yaml through train_sl.py with train_sl_parser.py's defaults, timm (Jan 2022).
SOTA_AS_RUN = {
    "batch_size": 64, "optim.name": "adam", "optim.betas": (0.9, 0.999), "optim.lr": 0.003, "optim.weight_decay": 0.1,
    "optim.warmup_epochs": 3, "optim.warmup_lr": 1e-6, "loss.label_smoothing": 0.0,
    "model.dropout": 0.1,
    "optim.min_lr": 1e-6, "optim.cooldown_epochs": 3, "optim.clip_grad": None, "model.drop_path": 0.0,  # parser
    "aug.randaugment": None, "aug.color_jitter": 0.4, "aug.mixup": 0.0, "aug.cutmix": 0.0, "aug.reprob": 0.0,
    "aug.scale": (0.08, 1.0), "aug.hflip": 0.5, "aug.interpolation": "random",
    "amp": False,  # no --amp: float32
    # timm create_scheduler: per epoch, the cosine's clock includes the warm-up
    "optim.schedule_unit": "epoch", "optim.warmup_prefix": False,
    # timm ViT of Jan 2022: drop_rate → pos_drop, Attention.proj_drop, Mlp.drop (fc1, fc2); no head dropout
    "model.dropout_at": "blocks", "model.attn_dropout": 0.0,
    # create_optimizer_v2(model) on the timm model: its no_weight_decay() = pos_embed, cls_token
    "optim.decay_tokens": False,
    # resolve_data_config(vit_base_patch16_224): crop_pct 0.9, IMAGENET_INCEPTION_MEAN/STD
    "views.eval_crop_pct": 0.9, "aug.normalize": "inception",
    "data.splits": "original",
}

# configs/01/<dataset>-finetune.yaml: opt sgd (timm: Nesterov), lr 0.003, weight_decay 0.
SOTA_AS_RUN_FINETUNE = {**SOTA_AS_RUN, "optim.name": "sgd", "optim.momentum": 0.9, "optim.lr": 0.003,
                        "optim.weight_decay": 0.0}

# thesis-recipe's summary of §4.1 + the thesis's stated values, as tort has read them.
SOTA_WRITTEN = {
    "batch_size": 64, "optim.name": "adam", "optim.lr": 0.003, "optim.weight_decay": 0.1, "optim.warmup_epochs": 3,
    "optim.warmup_lr": 1e-6, "optim.clip_grad": 1.0, "model.dropout": 0.1, "model.dropout_at": "blocks",
    "model.drop_path": 0.1, "aug.randaugment": "rand-m9-mstd0.5", "aug.mixup": 0.2, "loss.label_smoothing": 0.0,
    "optim.cooldown_epochs": 0, "optim.schedule_unit": "step", "views.eval_crop_pct": 0.875,
    "aug.normalize": "imagenet", "data.splits": "standard",
}


def test_sota_as_run_is_configs_01_exactly(tmp_path):
    init = tmp_path / "w.pt"
    init.write_bytes(b"")
    check(build_config("sota", "thesis", overrides={"fidelity": "as_run"}), SOTA_AS_RUN)
    check(build_config("sota", "thesis", "finetune", overrides={"fidelity": "as_run", "model.init": str(init)}),
          SOTA_AS_RUN_FINETUNE)


def test_sota_as_written_and_modern():
    check(build_config("sota", "thesis"), SOTA_WRITTEN)
    # modern: decoupled weight decay (Steiner et al.'s AdamW) and timm's increasing RandAugment
    check(build_config("sota", "thesis", overrides={"fidelity": "modern"}),
          {**SOTA_WRITTEN, "optim.name": "adamw", "aug.randaugment": "rand-m9-mstd0.5-inc1"})


# --- published recipes -----------------------------------------------------------------------

# big_vision configs/vit_i1k.py (B/16 → aug medium2: randaug(2,15), mixup p=0.5; the paper's
# regularised B/16: dropout 0.1, stochastic depth 0.1), optax.py (decoupled weight decay wd = 1e-4
# with lr 1e-3, i.e. 0.1 relative to the learning rate), utils.create_learning_rate_schedule
# (linear warm-up from 0, cosine to 0, per step), pp: inception_crop area 5–100 %, value_range(-1, 1),
# eval resize_small(256) + central_crop(224).
AUGREG = {
    "optim.name": "adamw", "optim.lr": 1e-3, "optim.weight_decay": 1e-4 / 1e-3, "optim.betas": (0.9, 0.999),
    "optim.clip_grad": 1.0, "optim.warmup_lr": 0.0, "optim.min_lr": 0.0, "optim.cooldown_epochs": 0,
    "optim.schedule_unit": "step", "optim.warmup_prefix": True, "optim.decay_tokens": False,
    "model.dropout": 0.1, "model.dropout_at": "blocks", "model.attn_dropout": 0.0, "model.drop_path": 0.1,
    "aug.mixup": 0.5, "aug.cutmix": 0.0, "aug.scale": (0.05, 1.0), "aug.normalize": "inception",
    "aug.interpolation": "bilinear", "views.eval_crop_pct": 224 / 256, "loss.label_smoothing": 0.0,
}

# facebookresearch/deit main.py defaults, lr scaled by its rule lr · batch / 512.
DEIT = {
    "batch_size": 64, "optim.name": "adamw", "optim.lr": 5e-4 * 64 / 512, "optim.weight_decay": 0.05,
    "optim.warmup_lr": 1e-6, "optim.min_lr": 1e-5, "optim.warmup_epochs": 5, "optim.cooldown_epochs": 0,
    "optim.clip_grad": None, "optim.schedule_unit": "epoch", "optim.warmup_prefix": False, "model.dropout": 0.0,
    "model.drop_path": 0.1, "aug.randaugment": "rand-m9-mstd0.5-inc1", "aug.color_jitter": 0.3, "aug.mixup": 0.8,
    "aug.cutmix": 1.0, "aug.reprob": 0.25, "loss.label_smoothing": 0.1, "aug.interpolation": "bicubic",
    "views.eval_crop_pct": 0.875, "aug.normalize": "imagenet",
}


def test_augreg_is_steiner_et_al_as_published():
    cfg = build_config("augreg", "thesis")
    check(cfg, AUGREG)
    # randaug(2, 15) as TensorFlow's: 2 ops, magnitude 15 not clipped at timm's 10, each chosen op applied
    sections = set(cfg.aug.randaugment.split("-"))
    assert {"rand", "n2", "m15", "mmax15"} <= sections and any(s in sections for s in ("p1", "p1.0"))


def test_deit_is_main_py():
    check(build_config("deit", "thesis"), DEIT)


# --- how presets resolve ---------------------------------------------------------------------

def test_written_adds_nothing_and_the_table_states_the_defaults():
    assert all(preset(r, m, "written") == {} for r in ("tort", "sota") for m in ("scratch", "finetune"))
    for c in CHOICES:
        for recipe in c.recipes:
            for mode in c.modes:
                cfg = build_config(recipe, "thesis", mode, overrides=_init_for(mode))
                assert _norm(_flat(cfg.model_dump())[c.key]) == _norm(c.written), (recipe, mode, c.key)


def _init_for(mode):
    if mode != "finetune":
        return {}
    path = Path(__file__)  # any existing file: finetune only needs model.init to exist at build time
    return {"model.init": str(path)}


@pytest.mark.parametrize("choice", [c for c in CHOICES if c.as_run != c.written], ids=lambda c: c.key)
def test_each_as_run_choice_switches_back_on_its_own(choice):
    recipe, mode = choice.recipes[0], choice.modes[0]
    overrides = {**_init_for(mode), "fidelity": "as_run"}
    as_run = _flat(build_config(recipe, "thesis", mode, overrides=overrides).model_dump())
    one_back = _flat(build_config(recipe, "thesis", mode, overrides={**overrides, choice.key: choice.written})
                     .model_dump())
    assert _norm(one_back[choice.key]) == _norm(choice.written) and _norm(as_run[choice.key]) == _norm(choice.as_run)
    assert {k for k in as_run if as_run[k] != one_back[k]} == {choice.key}


def test_overrides_beat_the_preset_and_the_profile_scales_it():
    cfg = build_config("tort", "demo", overrides={"fidelity": "as_run", "views.mask_scale": [0.3, 0.5]})
    assert cfg.views.mask_scale == (0.3, 0.5) and cfg.teacher.init == "independent"
    # demo: at most 1 cool-down epoch, RandAugment (where used) at magnitude ≤ 5, none where the preset has none
    assert build_config("sota", "demo", overrides={"fidelity": "as_run"}).optim.cooldown_epochs == 1
    assert build_config("sota", "demo", overrides={"fidelity": "as_run"}).aug.randaugment is None
    assert build_config("sota", "demo").aug.randaugment == "rand-m5-mstd0.5"
    assert build_config("augreg", "demo").aug.randaugment == "rand-m5-n2-mmax15-p1.0"
    assert build_config("tort", "demo").aug.randaugment == "rand-m9-mstd0.5"  # tort does not use it: untouched


def test_the_preset_is_part_of_the_result():
    written, as_run = build_config("tort", "demo"), build_config("tort", "demo", overrides={"fidelity": "as_run"})
    assert written.flat()["fidelity"] == "written" and as_run.flat()["fidelity"] == "as_run"
    assert written.content_hash() != as_run.content_hash()
    assert "fidelity" in known_keys()


def test_an_unknown_preset_fails_naming_the_choices():
    with pytest.raises(ConfigError, match=r"fidelity: unknown preset 'as-run' \(did you mean 'as_run'\?\); "
                                          r"choose one of: written, as_run, modern"):
        build_config("tort", "demo", overrides={"fidelity": "as-run"})


def test_recipes_without_a_thesis_reading_resolve_alike_under_every_preset():
    for recipe in ("augreg", "deit"):
        flats = [{k: v for k, v in build_config(recipe, "demo", overrides={"fidelity": f}).flat().items()
                  if k != "fidelity"} for f in ("written", "as_run", "modern")]
        assert flats[0] == flats[1] == flats[2]


def test_docs_hold_every_choice():
    text = (ROOT / "docs" / "fidelity.md").read_text()
    missing = [c.key for c in CHOICES if f"`{c.key}`" not in text]
    assert not missing, f"docs/fidelity.md does not mention {missing}"


@pytest.mark.slow  # expands 114 trials
def test_the_errata_sweep_switches_one_choice_per_row_and_ends_on_the_as_run_preset():
    from tort_core.sweep.expand import expand
    from tort_core.sweep.spec import load_spec

    trials = [t for t in expand(load_spec(ROOT / "sweeps" / "as_run.yaml")).trials if t.seed == 0]
    base = _flat(trials[0].config.model_dump())
    assert trials[0].config.fidelity == "written" and base == _flat(build_config(
        "tort", "thesis", overrides={"data.dataset": "flowers102"}).model_dump())
    rows = {}
    for t in trials[1:-1]:
        flat = _flat(t.config.model_dump())
        rows[t.index] = sorted(k for k in flat if flat[k] != base[k])
    single = [keys for keys in rows.values() if "loss.enabled" not in keys]
    rows_of = {c.row for c in CHOICES if "tort" in c.recipes}
    assert {next(c.row for c in CHOICES if c.key == keys[0]) for keys in single} == rows_of - {"objectives ablation"}
    assert all(len({next(c.row for c in CHOICES if c.key == k) for k in keys}) == 1 for keys in single)
    # the last row is the as-run preset itself, and the baselines sweep's tort as-run is the same trial
    as_run = build_config("tort", "thesis", overrides={"fidelity": "as_run", "data.dataset": "flowers102"})
    assert trials[-1].id == as_run.content_hash()
    baselines = expand(load_spec(ROOT / "sweeps" / "baselines.yaml")).trials
    assert trials[-1].id in {t.id for t in baselines}
    assert {(t.config.recipe, t.config.fidelity) for t in baselines} == {
        ("tort", "written"), ("sota", "written"), ("augreg", "written"), ("deit", "written"), ("tort", "as_run"),
        ("sota", "as_run")}
