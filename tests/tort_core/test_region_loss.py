"""Region-level distillation (EsViT's L_R) and backbones with spatial tokens (ViT, Swin)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tort_core.config import ModelConfig, build_config
from tort_core.errors import ConfigError
from tort_core.losses import (LOSSES, STUDENT_DENSE, STUDENT_REGION, TEACHER_DENSE, TEACHER_REGION, LossContext,
                              StepOutputs, match_regions)
from tort_core.models import create_backbone, forward_views, forward_views_regions
from tort_core.recipes import RECIPES
from tort_core.trainer import fit

# The demo profile's ViT, and a Swin of the same width and final token grid for 32-px inputs:
# patch 4 → 8×8 tokens, one patch merging → 4×4; window 4, so a 16-px local crop's first-stage grid
# is exactly one window (see docs/training.md, "Region-level loss and Swin backbones").
VIT = {"model.name": "vit_tiny_patch16_224",
       "model.kwargs": {"patch_size": 8, "embed_dim": 128, "depth": 4, "num_heads": 4}}
SWIN = {"model.name": "swin_tiny_patch4_window7_224",
        "model.kwargs": {"patch_size": 4, "embed_dim": 64, "depths": [2, 2], "num_heads": [2, 4], "window_size": 4}}
BACKBONES = {"vit": VIT, "swin": SWIN}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # These models are tiny: on a shared 2-core machine a second intra-op thread mostly spins
    # (a one-epoch fit took 2 s on one thread and 10-18 s on two under load).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _region_inputs(seed: int = 0):
    """Random region features and dense logits: B=2, 3 teacher views of 4 regions, student views
    = those 3 (4 regions) + 2 local views (2 regions), D=3, K=5."""
    g = torch.Generator().manual_seed(seed)
    b, d, k = 2, 3, 5
    s_counts, t_counts = (4, 4, 4, 2, 2), (4, 4, 4)
    rows_s, rows_t = b * sum(s_counts), b * sum(t_counts)
    outputs = {
        STUDENT_REGION: torch.randn(rows_s, d, generator=g),
        TEACHER_REGION: torch.randn(rows_t, d, generator=g),
        STUDENT_DENSE: torch.randn(rows_s, k, generator=g),
        TEACHER_DENSE: torch.randn(rows_t, k, generator=g),
    }
    out = StepOutputs(batch_size=b, n_student_views=len(s_counts), n_teacher_views=len(t_counts), outputs=outputs,
                      student_regions=s_counts, teacher_regions=t_counts)
    return out, b, k


def _rows(x: torch.Tensor, counts: tuple[int, ...], b: int, view: int, sample: int) -> list[torch.Tensor]:
    start = b * sum(counts[:view]) + sample * counts[view]
    return [x[start + r] for r in range(counts[view])]


def _explicit_region_loss(out: StepOutputs, center: torch.Tensor, t_temp: float, s_temp: float) -> float:
    """EsViT's L_R written out with loops, one region at a time."""
    b = out.batch_size
    o, sc, tc = out.outputs, out.student_regions, out.teacher_regions
    pair_values = []
    for i in range(len(tc)):
        for v in range(len(sc)):
            if v == i:
                continue
            total, n = 0.0, 0
            for s in range(b):
                t_feat, t_logit = _rows(o[TEACHER_REGION], tc, b, i, s), _rows(o[TEACHER_DENSE], tc, b, i, s)
                s_feat, s_logit = _rows(o[STUDENT_REGION], sc, b, v, s), _rows(o[STUDENT_DENSE], sc, b, v, s)
                for r in range(len(s_feat)):
                    cos = [float(torch.dot(s_feat[r], tf) / (s_feat[r].norm() * tf.norm())) for tf in t_feat]
                    j = max(range(len(cos)), key=cos.__getitem__)
                    p = torch.softmax((t_logit[j] - center[0]) / t_temp, dim=0)
                    logq = torch.log_softmax(s_logit[r] / s_temp, dim=0)
                    total += float(-(p * logq).sum())
                    n += 1
            pair_values.append(total / n)
    return sum(pair_values) / len(pair_values)


def test_region_loss_matches_explicit_loops():
    cfg = build_config("tort", "demo", overrides={"loss.enabled": ["distill", "region"]}).loss
    out, b, k = _region_inputs()
    loss_fn = LOSSES.get("region")(out_dim=k, student_temp=cfg.student_temp, teacher_temp=cfg.teacher_temp,
                                   center_momentum=cfg.center_momentum)
    loss_fn.center.copy_(torch.randn(1, k, generator=torch.Generator().manual_seed(1)))
    center = loss_fn.center.clone()
    got = loss_fn(out, LossContext(epoch=0, step=0, total_steps=1, num_classes=10))
    want = _explicit_region_loss(out, center, cfg.teacher_temp, cfg.student_temp)
    assert math.isclose(float(got), want, rel_tol=1e-5)
    # Its own centre moves towards the mean teacher dense logit over all regions of all views.
    m = cfg.center_momentum
    expected = m * center + (1 - m) * out.outputs[TEACHER_DENSE].mean(0, keepdim=True)
    assert torch.allclose(loss_fn.center, expected, atol=1e-6)


def test_region_gradient_reaches_only_the_student_dense_logits():
    out, b, k = _region_inputs(seed=2)
    for name in out.outputs:
        out.outputs[name].requires_grad_(True)
    LOSSES.get("region")(out_dim=k)(out, LossContext(0, 0, 1, 10)).backward()
    assert out.outputs[STUDENT_DENSE].grad.abs().sum() > 0
    for name in (STUDENT_REGION, TEACHER_REGION, TEACHER_DENSE):  # hard matching, stop-gradient teacher
        assert out.outputs[name].grad is None


def test_matching_recovers_a_permutation():
    g = torch.Generator().manual_seed(0)
    b, t, d = 3, 16, 8
    teacher = torch.randn(b, t, d, generator=g)
    perm = torch.stack([torch.randperm(t, generator=g) for _ in range(b)])
    # Student region i is teacher region perm[i], rescaled: cosine similarity ignores the norm.
    student = torch.gather(teacher, 1, perm.unsqueeze(-1).expand(-1, -1, d)) * torch.rand(b, t, 1, generator=g).add(0.5)
    assert torch.equal(match_regions(student, teacher), perm)
    # Fewer student regions (a local view) against the same teacher view.
    assert torch.equal(match_regions(student[:, :5], teacher), perm[:, :5])


def _system(backbone: dict, enabled: list[str], **overrides):
    overrides = {"loss.enabled": enabled, "views.n_local": 2, **backbone, **overrides}
    cfg = build_config("tort", "demo", overrides=overrides)
    return RECIPES.get("tort")().build(cfg, num_classes=10, steps_per_epoch=4), cfg


def _batch(cfg, b: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    views = [torch.randn(b, 3, cfg.views.global_size, cfg.views.global_size, generator=g) for _ in range(3)]
    local = cfg.views.local_size
    views += [torch.randn(b, 3, local, local, generator=g) for _ in range(cfg.views.n_local)]
    return views, torch.randint(0, 10, (b,), generator=g)


@pytest.mark.parametrize("family", ["vit", "swin"])
def test_training_step_with_region_loss(family):
    torch.manual_seed(0)
    system, cfg = _system(BACKBONES[family], ["distill", "supervised", "rotation", "region"])
    system.train()
    loss, metrics = system.training_step(_batch(cfg), LossContext(epoch=0, step=0, total_steps=4, num_classes=10))
    assert torch.isfinite(loss) and torch.isfinite(metrics["loss_region"])
    # Near log(out_dim) at init: the randomly initialised dense heads are close to uniform.
    assert abs(float(metrics["loss_region"]) - math.log(cfg.heads.out_dim)) < 1.0
    loss.backward()
    for name, module in (("dense head", system.student["dense"]), ("backbone", system.student["backbone"])):
        grads = [p.grad for p in module.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), name
        assert sum(float(g.abs().sum()) for g in grads) > 0, name
    assert all(p.grad is None for p in system.teacher.parameters())
    # The teacher's dense head follows the student's by the same EMA as the rest of the teacher.
    before = system.teacher["dense"].mlp[0].weight.clone()
    with torch.no_grad():
        system.student["dense"].mlp[0].weight.add_(1.0)
    system.after_optimizer_step(LossContext(epoch=0, step=0, total_steps=4, num_classes=10))
    after = system.teacher["dense"].mlp[0].weight
    m = 1 - cfg.teacher.momentum
    assert torch.allclose(after - before, m * (system.student["dense"].mlp[0].weight - before), atol=1e-6)


@pytest.mark.parametrize("family", ["vit", "swin"])
def test_region_path_keeps_pooled_embeddings(family):
    cfg = build_config("tort", "demo", overrides=BACKBONES[family])
    backbone = create_backbone(cfg.model, cfg.views.global_size).eval()
    views = _batch(cfg, b=2)[0]
    pooled, tokens, counts = forward_views_regions(backbone, views)
    assert torch.equal(pooled, forward_views(backbone, views))
    # 16 regions per 32-px view and 4 per 16-px view for both families (8-px ViT patches; Swin 4×4).
    assert counts == [16] * 3 + [4] * cfg.views.n_local
    assert tokens.shape == (2 * sum(counts), backbone.num_features)


def test_region_loss_leaves_other_losses_and_modules_unchanged():
    torch.manual_seed(0)
    plain, cfg = _system(VIT, ["distill", "supervised", "rotation"])
    torch.manual_seed(0)
    with_region, _ = _system(VIT, ["distill", "supervised", "rotation", "region"])
    assert "dense" not in plain.student and "dense" not in plain.teacher
    state, state_r = plain.state_dict(), with_region.state_dict()
    for key, value in state.items():  # same initialisation of everything that existed before
        assert torch.equal(value, state_r[key]), key
    ctx = LossContext(epoch=0, step=0, total_steps=4, num_classes=10)
    results = []
    for system in (plain, with_region):
        system.train()
        torch.manual_seed(1)
        results.append(system.training_step(_batch(cfg), ctx)[1])
    for name in ("loss_distill", "loss_supervised", "loss_rotation"):
        assert torch.equal(results[0][name], results[1][name]), name


def test_backbone_errors_name_the_key():
    # ViT kwargs given to a Swin: refused when the config is built (the model is built on the meta
    # device), and by the factory itself
    with pytest.raises(ConfigError, match="model.kwargs: .*depth"):
        build_config("tort", "demo", overrides={"model.name": "swin_tiny_patch4_window7_224"})
    with pytest.raises(ConfigError, match="model.kwargs: .*depth"):
        create_backbone(ModelConfig(name="swin_tiny_patch4_window7_224", kwargs={"depth": 4}), 32)
    with pytest.raises(ConfigError, match="views.local_size: 12 px .* patch size 8"):
        _system(VIT, ["distill"], **{"views.local_size": 12})


def test_cnn_backbone_gives_regions():
    # CNNs take neither img_size nor dynamic_img_size; their NCHW feature map gives the regions.
    cfg = build_config("tort", "demo", overrides={"model.name": "resnet10t", "model.kwargs": {}})
    backbone = create_backbone(cfg.model, 64).eval()
    views = [torch.randn(2, 3, 64, 64), torch.randn(2, 3, 32, 32)]  # stride 32: 2×2 and 1×1 maps
    pooled, tokens, counts = forward_views_regions(backbone, views)
    assert counts == [4, 1] and tokens.shape == (2 * 5, backbone.num_features)
    assert torch.equal(pooled, forward_views(backbone, views))


SUBSETS = [["distill"], ["distill", "region"], ["distill", "supervised", "rotation"],
           ["distill", "supervised", "rotation", "region"]]


@pytest.mark.slow
@pytest.mark.parametrize("family", ["vit", "swin"])
@pytest.mark.parametrize("enabled", SUBSETS, ids="+".join)
def test_demo_trains_one_tiny_epoch(family, enabled):
    """Every arm of sweeps/region_loss.yaml through trainer.fit, cut to one tiny epoch."""
    cfg = build_config("tort", "demo", overrides={
        "loss.enabled": enabled, **BACKBONES[family], "epochs": 1, "optim.warmup_epochs": 0,
        "optim.cooldown_epochs": 0, "views.n_local": 2, "batch_size": 16, "data.train_limit": 32,
        "data.test_limit": 32})
    result = fit(cfg)
    assert result.status == "completed", result.error
    record = result.final
    assert all(math.isfinite(record[f"loss_{name}"]) for name in enabled)
    assert math.isfinite(record["knn_top1"])


def test_region_sweep_spec_expands_to_the_tested_arms():
    from pathlib import Path

    from tort_core.sweep.expand import expand
    from tort_core.sweep.spec import load_spec

    spec = load_spec(Path(__file__).parents[2] / "sweeps" / "region_loss.yaml")
    trials = expand(spec, profile="demo").trials
    arms = {(json.dumps(t.config.loss.enabled), t.config.model.name, json.dumps(t.config.model.kwargs))
            for t in trials}
    want = {(json.dumps(e), b["model.name"], json.dumps(b["model.kwargs"]))
            for e in SUBSETS for b in BACKBONES.values()}
    assert arms == want
    assert len(trials) == len(want) * len(spec.seed_list)
