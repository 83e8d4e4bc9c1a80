"""What only a GPU can check: the device halves and the trainer on CUDA. Skipped without one;
on a GPU machine run them first: `python -m pytest -q tests/tort_core/test_cuda.py`."""

from __future__ import annotations

import math

import pytest
import torch

from tiny_config import TWO_BLOCKS, train_steps, update_gap
from tort_core import device_randaugment as D
from tort_core.config import build_config
from tort_core.device_views import DeviceViews, MultiCropDraws, pad_collate
from tort_core.trainer import MACHINE_METRICS, fit

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

FILL = (124, 116, 104)


def _rows(n: int, g: torch.Generator) -> torch.Tensor:
    """Every op kind in layer 1, shuffled in layer 2, each with a rotation-and-shift matrix."""
    rows = torch.zeros(n, D._row_width(2), dtype=torch.float64)
    rows[:, D.FLIP] = torch.arange(n) % 2
    kinds = (torch.arange(n) % 12 - 1).double()
    for layer, order in enumerate((kinds, kinds[torch.randperm(n, generator=g)])):
        base = D.LAYER0 + layer * D.LAYER_WIDTH
        rows[:, base + D.KIND] = order
        rows[:, base + D.ARG] = torch.where(order < D.COLOR, torch.tensor(3.0, dtype=torch.float64), 1.4)
        rows[:, base + D.BICUBIC] = torch.arange(n) % 2
        rows[:, base + 3:base + 9] = torch.tensor(D._affine_matrix(64, D.taa.rotate, 17.3), dtype=torch.float64)
    return rows


def test_device_randaugment_on_cuda_is_the_cpu_arithmetic_eager_and_compiled():
    g = torch.Generator().manual_seed(0)
    n = 24
    crops = torch.randint(0, 256, (n, 3, 64, 64), generator=g).float()
    rows = _rows(n, g)
    mean, std = torch.full((1, 3, 1, 1), 0.45), torch.full((1, 3, 1, 1), 0.25)
    cpu = D.augment(crops, rows, 2, torch.tensor(FILL).float(), mean, std)
    args = [t.cuda() for t in (crops, rows)] + [2] + [t.cuda() for t in (torch.tensor(FILL).float(), mean, std)]
    eager = D.augment(*args).cpu()
    torch.testing.assert_close(eager, cpu, atol=1e-6, rtol=0)
    compiled = torch.compile(D.augment, dynamic=False, fullgraph=True)(*args).cpu()
    # Fused multiply-adds may move a truncated level: allow one level (1/255/0.25 normalised) on few pixels.
    diff = (compiled - eager).abs()
    assert diff.max() <= 1 / 255 / 0.25 + 1e-6 and (diff > 1e-6).float().mean() < 1e-3


@pytest.mark.parametrize("compile", [False, True])
def test_tort_device_views_on_cuda_match_the_cpu_device_path(compile):
    """Same draws, same arithmetic up to the float16 crop products (exact for levels, rounded per pass)."""
    from PIL import Image

    cfg = build_config("tort", "thesis", overrides={"views.n_local": 2}).views
    # Smooth structure at several scales (the GPU machine may lack scikit-learn's sample photos).
    g = torch.Generator().manual_seed(1)
    coarse = torch.rand(1, 3, 12, 16, generator=g) * 255
    photo = Image.fromarray(torch.nn.functional.interpolate(coarse, size=(300, 400), mode="bicubic")
                            .clamp(0, 255).round().byte()[0].permute(1, 2, 0).numpy())
    torch.manual_seed(0)
    batch = pad_collate([(MultiCropDraws(cfg)(photo), 0), (MultiCropDraws(cfg)(photo), 1)])
    cpu_views, _ = DeviceViews(cfg)(batch)
    cuda_batch = ((batch[0][0].cuda(), batch[0][1].cuda()), batch[1].cuda())
    cuda_views, _ = DeviceViews(cfg, compile=compile)(cuda_batch)
    for a, b in zip(cpu_views, cuda_views):
        assert (a - b.cpu()).abs().mean() < 0.01  # normalised units: ≈ 0.6 grey levels


@pytest.mark.parametrize("recipe", ["tort", "sota"])
def test_a_tiny_run_trains_on_cuda_with_device_augmentation(tiny_cfg, recipe):
    cfg = tiny_cfg(recipe, **{"device": "cuda", "views.augment_on": "device", "data.num_workers": 1})
    result = fit(cfg)
    assert result.status == "completed"
    for r in result.records:
        assert all(math.isfinite(r[k]) for k in MACHINE_METRICS if k in r)
        assert 0 <= r["data_wait_seconds"] <= r["train_seconds"] and r["peak_mem_mb"] > 0


def test_a_compiled_tort_step_on_cuda_computes_what_the_eager_step_does(tiny_cfg):
    # Under bf16 autocast the compiled kernels round differently (a fused chain keeps float32
    # inside), so the match is to bf16 precision. Dropout and stochastic depth (on CUDA inductor
    # would draw both itself) drop the eager run's units: compile_random=eager.
    gen = torch.Generator().manual_seed(0)
    views = [torch.randn(8, 3, s, s, generator=gen).cuda() for s in (32, 32, 32, 16, 16)]
    batch = (views, torch.randint(0, 10, (8,), generator=gen).cuda())
    cfg = lambda **kw: tiny_cfg(**TWO_BLOCKS, device="cuda", **{"model.dropout": 0.1}, **kw)  # noqa: E731
    _, start = train_steps(cfg(), batch, steps=0)
    eager, eager_state = train_steps(cfg(), batch, steps=3)
    compiled, compiled_state = train_steps(cfg(compile=True), batch, steps=3)
    for e, c in zip(eager, compiled):
        assert e.keys() == c.keys() and {"loss", "loss_distill", "loss_rotation", "grad_norm"} <= e.keys()
        for k in e:
            torch.testing.assert_close(c[k].float(), e[k].float(), rtol=3e-2, atol=3e-2, msg=k)
    assert update_gap(start, compiled_state, eager_state) < 0.05


def test_the_background_writer_snapshots_gpu_tensors_at_save(tmp_path):
    from tort_core.checkpoint import BackgroundWriter, load_checkpoint

    params = torch.randn(1000, 100, device="cuda")
    expected = params.cpu().clone()
    writer = BackgroundWriter()
    try:
        writer.save(tmp_path / "c.pt", {"p": params, "step": torch.tensor(3, device="cuda")})
        params.mul_(0)  # the next steps, queued on the GPU while the file is written
        writer.wait()
        assert writer.pinned  # copied through page-locked memory
    finally:
        writer.release()
    state = load_checkpoint(tmp_path / "c.pt")
    assert torch.equal(state["p"], expected) and state["p"].device.type == "cpu" and int(state["step"]) == 3


def test_a_tiny_cuda_run_checkpoints_in_the_background_and_resumes(tiny_cfg, tmp_path):
    from tort_core.checkpoint import load_checkpoint

    cfg = tiny_cfg("tort", epochs=2, device="cuda")  # checkpoint_write=auto: background on CUDA
    first = fit(cfg, tmp_path)
    assert first.status == "completed"
    assert all(r["checkpoint_seconds"] > 0 for r in first.records)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == cfg.total_epochs - 1
    again = fit(cfg, tmp_path)  # everything restored from the last checkpoint, nothing to train
    assert [r["epoch"] for r in again.records] == [r["epoch"] for r in first.records]


def test_device_normalize_on_cuda_is_totensor_and_normalize_bit_for_bit():
    from torchvision import transforms as T

    from tort_core.device_views import DeviceNormalize
    from tort_core.views import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    levels = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(2, 3, 16, 16).contiguous()
    expected = T.Normalize(IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)(levels.float().div(255))
    got, _ = DeviceNormalize()((levels.cuda(), torch.zeros(2)))
    assert torch.equal(got.cpu(), expected)  # the eval cache and sota's device half rely on it


def test_the_fused_step_and_foreach_lookahead_on_cuda():
    from timm.optim import Lookahead

    from tort_core.optim import ForeachLookahead, create_optimizer

    def model(seed):
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.LayerNorm(64), torch.nn.Linear(64, 8)).cuda()

    def train(net, opt):
        gen = torch.Generator(device="cuda").manual_seed(1)
        for _ in range(7):
            opt.zero_grad(set_to_none=True)
            net(torch.randn(16, 64, device="cuda", generator=gen)).square().mean().backward()
            opt.step()
        opt.sync_lookahead()

    nets = [model(0) for _ in range(3)]
    auto = create_optimizer(nets[0].parameters(), name="lookahead_adamw", lr=0.01, weight_decay=0.04, momentum=0.9,
                            fused="auto", device=torch.device("cuda"))
    assert auto._base_optimizer.defaults["fused"] is True  # auto: the fused step on CUDA
    foreach = ForeachLookahead(torch.optim.AdamW(nets[1].parameters(), lr=0.01, weight_decay=0.04, foreach=True))
    loop = Lookahead(torch.optim.AdamW(nets[2].parameters(), lr=0.01, weight_decay=0.04, foreach=True))
    for net, opt in zip(nets, (auto, foreach, loop)):
        train(net, opt)
    for a, b, c in zip(*(n.parameters() for n in nets)):
        assert torch.equal(b, c)  # the foreach slow update is timm's loop, bit for bit
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-6)  # fused: the same step up to rounding
