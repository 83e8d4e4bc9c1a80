"""Backbones, heads, the EMA teacher and its momentum schedule, checkpoint init."""

import pytest
import torch

from tort_core.config import HeadConfig, ModelConfig
from tort_core.errors import ConfigError
from tort_core.losses import LossContext
from tort_core.models import (DINOHead, compile_module, compiled_graphs, cosine_momentum, create_backbone, ema_update,
                              forward_views, load_init, resolution_groups)
from tort_core.systems import TortSystem

TINY_VIT = ModelConfig(name="vit_tiny_patch16_224", kwargs={"patch_size": 8, "embed_dim": 32, "depth": 2,
                                                             "num_heads": 2})


def test_vit_accepts_global_and_local_resolutions_in_one_model():
    backbone = create_backbone(TINY_VIT, img_size=32)
    views = [torch.randn(2, 3, 32, 32)] * 3 + [torch.randn(2, 3, 16, 16)] * 2
    assert resolution_groups(views) == [(0, 3), (3, 5)]
    assert forward_views(backbone, views).shape == (10, 32)


def test_contrastive_head_shape_and_frozen_weight_norm():
    head = DINOHead(32, HeadConfig(out_dim=64, hidden_dim=48, bottleneck_dim=16))
    logits, z = head(torch.randn(5, 32))
    assert logits.shape == (5, 64) and z.shape == (5, 16)
    assert torch.allclose(z.norm(dim=-1), torch.ones(5), atol=1e-5)
    gain = head.last_layer.parametrizations.weight.original0
    assert not gain.requires_grad and torch.all(gain == 1)
    linears = [m for m in head.mlp if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 3 and linears[0].out_features == 48


def test_momentum_schedule_runs_over_all_steps_including_cooldown():
    total = 103 * 32
    assert cosine_momentum(0, total, 0.9998) == pytest.approx(0.9998)
    assert cosine_momentum(total - 1, total, 0.9998) == pytest.approx(1.0)
    mid = cosine_momentum((total - 1) / 2, total, 0.9998)
    assert mid == pytest.approx(0.9999)
    values = [cosine_momentum(s, total, 0.9998) for s in range(0, total, 97)]
    assert all(a <= b for a, b in zip(values, values[1:]))


def test_teacher_starts_as_a_copy_and_follows_the_ema(tiny_cfg):
    cfg = tiny_cfg()
    system = TortSystem(cfg, num_classes=10, steps_per_epoch=4)
    for (name, s), t in zip(system.student.named_parameters(), system.teacher.parameters()):
        assert torch.equal(s, t), name
        assert not t.requires_grad
    before = [t.clone() for t in system.teacher.parameters()]
    with torch.no_grad():
        for p in system.student.parameters():
            p.add_(1.0)
    info = system.after_optimizer_step(LossContext(epoch=0, step=0, total_steps=system.total_steps, num_classes=10))
    m = info["momentum"]
    assert m == pytest.approx(cfg.teacher.momentum)
    for b, t, s in zip(before, system.teacher.parameters(), system.student.parameters()):
        assert torch.allclose(t, m * b + (1 - m) * s, atol=1e-6)
    last = system.after_optimizer_step(LossContext(0, system.total_steps - 1, system.total_steps, 10))
    assert last["momentum"] == pytest.approx(1.0)


def test_ema_update_formula():
    t, s = [torch.zeros(3)], [torch.ones(3)]
    ema_update(t, s, 0.75)
    assert torch.allclose(t[0], torch.full((3,), 0.25))


def test_init_loads_backbone_weights_from_a_local_file(tmp_path):
    src = create_backbone(TINY_VIT, img_size=32)
    path = tmp_path / "w.pth"
    torch.save({"model": {f"module.{k}": v for k, v in src.state_dict().items()}}, path)
    dst = create_backbone(TINY_VIT, img_size=32)
    loaded, missing = load_init(dst, path)
    assert loaded == len(src.state_dict()) and missing == 0
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v)


def test_init_rejects_missing_or_unmatched_files(tmp_path):
    dst = create_backbone(TINY_VIT, img_size=32)
    with pytest.raises(ConfigError, match="does not exist"):
        load_init(dst, tmp_path / "nope.pt")
    torch.save({"x": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="no tensor"):
        load_init(dst, tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(ConfigError, match="cannot read"):
        load_init(dst, tmp_path / "junk.pt")


def test_unknown_model_name():
    with pytest.raises(ConfigError, match="unknown timm model"):
        create_backbone(ModelConfig(name="vit_nonexistent_42"), 32)


class _LinearDropout(torch.nn.Module):
    """Defined here, not in torch: torch 2.11's `Module.compile` silently compiles nothing when the
    module's forward lives in torch's own files (an `nn.Sequential`, say), as timm's do not."""

    def __init__(self):
        super().__init__()
        self.linear, self.dropout = torch.nn.Linear(64, 256), torch.nn.Dropout(0.5)

    def forward(self, x):
        return self.dropout(self.linear(x))


@pytest.mark.slow
@pytest.mark.parametrize("random", ["eager", "fused"])
def test_a_compiled_module_drops_the_units_eager_drops_unless_its_random_is_fused(random):
    torch.manual_seed(0)
    module = _LinearDropout().train()
    x = torch.randn(32, 64)

    def dropped():  # the units dropout zeroed, from the same generator state
        torch.manual_seed(1)
        return module(x) == 0

    eager = dropped()
    graphs = compiled_graphs()
    compile_module(module, random)
    compiled = dropped()
    assert compiled_graphs() > graphs  # it did compile: equal masks are not eager's run twice
    assert abs(compiled.float().mean() - 0.5) < 0.02  # still dropout at rate 0.5
    assert torch.equal(compiled, eager) == (random == "eager")
