"""The run configuration: thesis defaults, layering, overrides, and one-line errors."""

import pytest

from tort_core.config import RunConfig, build_config, known_keys, parse_sets
from tort_core.errors import ConfigError


def test_defaults_are_the_thesis_recipe():
    cfg = build_config("tort", "thesis")
    assert cfg.model.name == "vit_base_patch16_224"
    assert (cfg.views.global_size, cfg.views.local_size, cfg.views.n_local) == (224, 96, 6)
    assert cfg.views.mask_scale == (0.4, 0.6) and cfg.views.rot_prob == 0.5
    assert cfg.loss.enabled == ["distill", "supervised", "rotation"]
    assert cfg.loss.weights == {"distill": 1.0, "supervised": 2.5, "rotation": 1.0}
    assert (cfg.loss.student_temp, cfg.loss.teacher_temp, cfg.loss.center_momentum) == (0.1, 0.04, 0.9)
    assert cfg.heads.out_dim == 1024 and cfg.heads.hidden_dim == 2048 and cfg.heads.bottleneck_dim == 256
    o = cfg.optim
    assert (o.name, o.lr, o.warmup_lr, o.min_lr, o.warmup_epochs, o.cooldown_epochs) == (
        "lookahead_adamw", 5e-4, 1e-8, 1e-6, 10, 3)
    assert (o.weight_decay, o.clip_grad, cfg.batch_size, cfg.model.drop_path) == (0.04, 3.0, 32, 0.1)
    assert cfg.teacher.momentum == 0.9998 and cfg.epochs == 100 and cfg.total_epochs == 103
    assert cfg.eval.knn_k == 20


def test_sota_recipe_defaults_follow_the_thesis_baseline():
    cfg = build_config("sota", "thesis")
    o = cfg.optim
    assert (o.name, o.lr, o.warmup_epochs, o.warmup_lr, o.weight_decay, o.clip_grad) == (
        "adam", 3e-3, 3, 1e-6, 0.1, 1.0)
    assert o.betas == (0.9, 0.999) and cfg.batch_size == 64 and cfg.model.dropout == 0.1
    assert cfg.loss.enabled == ["supervised"] and cfg.aug.mixup > 0 and cfg.aug.randaugment


def test_profile_then_overrides_win():
    cfg = build_config("tort", "demo", overrides=parse_sets(["views.mask_scale=[0.2, 0.4]", "loss.enabled=[distill]",
                                                             "model.kwargs.depth=2"]))
    assert cfg.data.dataset == "digits" and cfg.views.global_size == 32
    assert cfg.views.mask_scale == (0.2, 0.4) and cfg.loss.enabled == ["distill"]
    assert cfg.model.kwargs["depth"] == 2 and cfg.model.kwargs["patch_size"] == 8


@pytest.mark.parametrize("sets, fragment", [
    (["loss.teacher_tmp=0.1"], "did you mean 'loss.teacher_temp'"),
    (["loss.teacher_temp=0"], "loss.teacher_temp"),
    (["views.mask_scale=[0.6, 0.4]"], "mask_scale"),
    (["views.mask_scale=[0.4, 1.0]"], "mask_scale"),
    (["loss.enabled=[]"], "at least one loss"),
    (["loss.enabled=[distil]"], "did you mean 'distill'"),
    (["epochs=0"], "epochs"),
    (["batch_size=abc"], "batch_size"),
    (["optim.warmup_epochs=200"], "warmup_epochs"),
    (["data.dataset=flowers"], "data.dataset"),
    (["model.name=vit_bse_patch16_224"], "model.name"),
    (["optim.name=adamx"], "optim.name: unknown timm optimizer 'adamx'"),
    (["optim.fused=fast"], "optim.fused"),
    (["compile_random=fast"], "compile_random"),
    (["optim.name=lookahead_nadamw", "optim.fused=on"], "optim.fused: on, but 'nadamw' has no fused step"),
    (["novalue"], "key=value"),
])
def test_bad_overrides_fail_with_one_line_naming_the_key(sets, fragment):
    with pytest.raises(ConfigError) as info:
        build_config("tort", "demo", overrides=parse_sets(sets))
    message = str(info.value)
    assert fragment in message and "\n" not in message


def test_on_and_off_switches_accept_what_yaml_reads_as_booleans():
    # `--set eval.cache=on` and `eval.cache: off` in a spec reach the config as True/False.
    cfg = build_config("tort", "demo", overrides=parse_sets(["eval.cache=on", "optim.fused=off"]))
    assert (cfg.eval.cache, cfg.optim.fused) == ("on", "off")
    assert build_config("tort", "demo", overrides={"eval.cache": False}).eval.cache == "off"


def test_setting_one_entry_of_a_dict_field_keeps_the_others():
    cfg = build_config("tort", "demo", overrides=parse_sets(["loss.weights.supervised=1.0", "model.kwargs.depth=2"]))
    assert cfg.loss.weights == {"distill": 1.0, "supervised": 1.0, "rotation": 1.0}
    assert cfg.model.kwargs["patch_size"] == 8 and cfg.model.kwargs["depth"] == 2
    whole = build_config("tort", "demo", overrides={"loss.weights": {"supervised": 3.0}})
    assert whole.loss.weights == {"supervised": 3.0}


def test_unknown_recipe_and_profile():
    with pytest.raises(ConfigError, match="unknown recipe 'sot'.*did you mean 'sota'"):
        build_config("sot", "demo")
    with pytest.raises(ConfigError, match="unknown profile 'dem'"):
        build_config("tort", "dem")


def test_finetune_needs_a_local_checkpoint():
    with pytest.raises(ConfigError, match="model.init"):
        build_config("sota", "demo", mode="finetune")


def test_content_hash_is_stable_and_ignores_runtime_settings():
    a = build_config("tort", "demo")
    b = build_config("tort", "demo", overrides={"device": "cpu", "data.num_workers": 3, "optim.fused": "on"})
    c = build_config("tort", "demo", overrides={"loss.teacher_temp": 0.06})
    assert a.content_hash() == b.content_hash() != c.content_hash()
    assert RunConfig.model_validate(a.model_dump(mode="json")).content_hash() == a.content_hash()


def test_compile_random_is_in_the_id_only_where_it_changes_the_masks():
    ids = lambda **kw: build_config("sota", "demo", overrides=kw).content_hash()  # noqa: E731
    assert ids(compile_random="fused") == ids()  # not compiled: it changes nothing
    assert ids(compile=True, compile_random="eager") == ids(compile=True)  # eager's masks, the default
    assert ids(compile=True, compile_random="fused") != ids(compile=True)  # other units dropped


def test_imagefolder_trees_get_different_ids_but_roots_of_one_dataset_do_not():
    a = build_config("tort", "demo", overrides={"data.dataset": "imagefolder", "data.root": "/data/flowers17"})
    b = build_config("tort", "demo", overrides={"data.dataset": "imagefolder", "data.root": "/data/cars49"})
    c = build_config("tort", "demo", overrides={"data.dataset": "imagefolder", "data.root": "/mnt/x/flowers17"})
    assert a.content_hash() != b.content_hash() and a.content_hash() == c.content_hash()
    d = build_config("tort", "demo", overrides={"data.root": "/somewhere"})
    assert d.content_hash() == build_config("tort", "demo").content_hash()


def test_flat_keys_are_the_settable_keys():
    cfg = build_config("tort", "demo")
    flat = cfg.flat()
    assert flat["loss.teacher_temp"] == 0.04 and flat["views.mask_scale"] == "[0.4, 0.6]"
    keys = set(known_keys())
    assert {k for k in flat if not k.startswith(("model.kwargs", "loss.weights"))} <= keys
