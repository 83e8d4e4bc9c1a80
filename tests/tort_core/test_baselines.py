"""The supervised recipes: augreg's weight decay is big_vision's, and dropout sits where each recipe says.

Oracles: big_vision's optax chain (optax.py: clip → scale_by_adam → scale(lr) → add_decayed_weights(wd,
kernels only) → scale_by_schedule → scale(-1)) written out by hand for one step; the timm (Jan 2022)
ViT the original sota ran, whose drop_rate sat after the position embedding, in Attention.proj_drop and
in both Mlp dropouts (timm/models/vision_transformer.py, layers/mlp.py at 010b486).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tort_core.config import build_config
from tort_core.registry import RECIPES
from tort_core.systems import SupervisedSystem
from tort_core.trainer import build_optimizer
from tort_core.views import supervised_transform


def system_for(recipe: str, **overrides) -> SupervisedSystem:
    cfg = build_config(recipe, "demo", overrides=overrides)
    torch.manual_seed(0)
    return RECIPES.get(recipe)().build(cfg, num_classes=10, steps_per_epoch=4), cfg


# --- weight decay ------------------------------------------------------------------------------

# big_vision configs/vit_i1k.py: config.lr = 0.001, config.wd = 0.0001 (absolute, decoupled);
# wd_mults default [(".*/kernel$", 1.0)]: dense and conv kernels decay, biases, LayerNorm scales,
# the position embedding and the class token do not.
BV_LR, BV_WD = 0.001, 0.0001
ADAM_EPS = 1e-8  # optax.scale_by_adam's default


def big_vision_step(p0: torch.Tensor, g: torch.Tensor, kernel: bool, schedule: float) -> torch.Tensor:
    """One step of big_vision's chain from fresh Adam moments, in float64."""
    p0, g = p0.double(), g.double()
    m_hat, v_hat = g, g * g  # first step: bias-corrected moments are g and g²
    update = BV_LR * m_hat / (v_hat.sqrt() + ADAM_EPS)
    if kernel:
        update = update + BV_WD * p0
    return p0 - schedule * update


def is_kernel(name: str, p: torch.Tensor) -> bool:
    return p.ndim >= 2 and not name.endswith(("pos_embed", "cls_token"))


def test_augreg_applies_weight_decay_as_big_vision_does():
    system, cfg = system_for("augreg")
    optimizer = build_optimizer(system, cfg)
    schedule = 0.5  # halfway down the cosine: torch's lr is config.lr times the schedule
    for group in optimizer.param_groups:
        group["lr"] = BV_LR * schedule
    named = dict(system.trainable().named_parameters())
    gen = torch.Generator().manual_seed(1)
    start = {}
    for name, p in named.items():
        p.grad = torch.randn(p.shape, generator=gen) * 1e-3
        start[name] = (p.detach().clone(), p.grad.clone())
    optimizer.step()
    checked = {"kernel": 0, "other": 0}
    for name, p in named.items():
        p0, g = start[name]
        expected = big_vision_step(p0, g, is_kernel(name, p), schedule)
        # float32 rounding: a few units in the last place of the weight (the decay term, 5e-5·|p|,
        # is ~100 times more)
        ulps = 4 * torch.finfo(torch.float32).eps * p0.double().abs().clamp_min(1e-3)
        assert ((p.detach().double() - expected).abs() <= ulps).all(), name
        checked["kernel" if is_kernel(name, p) else "other"] += 1
    assert checked["kernel"] > 10 and checked["other"] > 10
    for token in ("backbone.pos_embed", "backbone.cls_token", "head.weight", "head.bias"):
        assert token in named  # the decayed head kernel and the exempt tokens were all among them


def test_sotas_coupled_l2_is_not_that_update():
    # configs/01: timm's `adam` with weight_decay 0.1 is torch Adam, whose decay is added to the
    # gradient before the moments: a weight with a small gradient moves by about lr · sign(p), not by wd·p.
    system, cfg = system_for("sota", **{"fidelity": "as_run"})
    assert type(build_optimizer(system, cfg)).__name__ == "Adam"
    p = nn.Parameter(torch.full((4, 4), 0.5))
    opt = torch.optim.Adam([p], lr=1e-3, weight_decay=0.1)
    p.grad = torch.full((4, 4), 1e-6)
    opt.step()
    decoupled = 0.5 - 1e-3 * 1e-6 / (1e-6 + ADAM_EPS) - 1e-3 * 0.1 * 0.5
    moved = float(p.detach()[0, 0])
    assert abs(moved - (0.5 - 1e-3)) < 1e-6 and abs(moved - decoupled) > 1e-5


# --- dropout and stochastic depth placement --------------------------------------------------

def dropouts(module: nn.Module) -> dict[str, float]:
    return {name: m.p for name, m in module.named_modules() if isinstance(m, nn.Dropout)}


def in_blocks(depth: int, p: float) -> dict[str, float]:
    """The old timm ViT's drop_rate placement, in timm 1.0's module names."""
    out = {"pos_drop": p}
    for i in range(depth):
        out.update({f"blocks.{i}.attn.proj_drop": p, f"blocks.{i}.mlp.drop1": p, f"blocks.{i}.mlp.drop2": p})
    return out


@pytest.mark.parametrize("recipe, fidelity, where, drop_path", [
    ("sota", "written", "blocks", 0.1),  # Steiner et al.: dropout in the blocks, stochastic depth
    ("sota", "as_run", "blocks", 0.0),   # configs/01: drop 0.1 (old timm: blocks), no drop_path
    ("sota", "modern", "blocks", 0.1),
    ("augreg", "written", "blocks", 0.1),
    ("deit", "written", None, 0.1),      # DeiT: no dropout, drop_path 0.1
    ("tort", "written", None, 0.1),      # the thesis: stochastic depth 0.1, no dropout
])
def test_dropout_sits_where_the_recipe_says(recipe, fidelity, where, drop_path):
    cfg = build_config(recipe, "demo", overrides={"fidelity": fidelity})
    system = RECIPES.get(recipe)().build(cfg, num_classes=10, steps_per_epoch=4)
    backbone = system.backbone if recipe != "tort" else system.student["backbone"]
    depth = len(backbone.blocks)
    active = {k: v for k, v in dropouts(backbone).items() if v > 0}
    assert active == (in_blocks(depth, 0.1) if where == "blocks" else {})
    assert backbone.head_drop.p == 0 and all(b.attn.attn_drop.p == 0 for b in backbone.blocks)
    if recipe != "tort":  # the classifier is a bare linear layer: no second dropout of its own
        assert isinstance(system.head, nn.Linear)
        assert not any(isinstance(m, nn.Dropout) and m.p > 0 for m in system.head.modules())
    # stochastic depth: timm's linear rule up to drop_path in the last block, or none at all
    rates = [getattr(b.drop_path1, "drop_prob", 0.0) for b in backbone.blocks]
    assert rates == pytest.approx([drop_path * i / (depth - 1) for i in range(depth)])


def test_head_dropout_acts_once():
    # dropout_at=head: timm 1.0's head_drop alone (the doubled head dropout sota had is gone)
    system, _ = system_for("sota", **{"model.dropout_at": "head"})
    assert {k: v for k, v in dropouts(system).items() if v > 0} == {"backbone.head_drop": 0.1}


# --- training transforms ---------------------------------------------------------------------

def stages(cfg):
    return list(supervised_transform(cfg.views.global_size, cfg.aug).transforms)


def test_sota_as_run_augments_as_timms_train_py_did():
    cfg = build_config("sota", "thesis", overrides={"fidelity": "as_run"})
    names = [type(s).__name__ for s in stages(cfg)]
    assert "ColorJitter" in names and "RandAugment" not in names and "RandomErasing" not in names
    crop, normalize = stages(cfg)[0], stages(cfg)[-1]
    assert isinstance(crop.interpolation, (tuple, list)) and len(crop.interpolation) == 2  # random: one of two
    assert tuple(normalize.mean.tolist()) == (0.5, 0.5, 0.5) and tuple(normalize.std.tolist()) == (0.5, 0.5, 0.5)


def test_augreg_randaugment_is_tensorflows_2_15():
    cfg = build_config("augreg", "thesis")
    ra = next(s for s in stages(cfg) if type(s).__name__ == "RandAugment")
    assert ra.num_layers == 2
    assert {op.magnitude for op in ra.ops} == {15} and {op.magnitude_max for op in ra.ops} == {15}
    assert {op.prob for op in ra.ops} == {1.0} and {op.magnitude_std for op in ra.ops} == {0}
    crop = stages(cfg)[0]
    assert crop.scale == (0.05, 1.0) and str(crop.interpolation).endswith("BILINEAR")
    assert "ColorJitter" not in [type(s).__name__ for s in stages(cfg)]


def test_deit_erases_on_the_cpu_only():
    cfg = build_config("deit", "thesis")
    erase = next(s for s in stages(cfg) if type(s).__name__ == "RandomErasing")
    assert erase.probability == 0.25 and erase.mode == "pixel"
    assert RECIPES.get("deit")().device_augmentation(cfg) is None  # timm's prefetcher layout drops erasing
