"""The optimiser: Lookahead's slow update as foreach calls, torch's fused step, and their choice."""

import copy as copy_module

import pytest
import torch
from timm.optim import Lookahead

from tort_core.config import build_config
from tort_core.errors import ConfigError
from tort_core.optim import ForeachLookahead, create_optimizer, uses_fused


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 3),
                                torch.nn.Linear(3, 3))
    model[3].requires_grad_(False)  # a frozen layer: no gradient, no slow weights
    return model


def _train(model, optimizer, steps: int = 7, sync: bool = True) -> None:
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(5, 6, generator=gen)
        optimizer.zero_grad(set_to_none=True)
        model(x).square().mean().backward()
        optimizer.step()
    if sync:
        optimizer.sync_lookahead()  # as at an epoch's end


def test_foreach_lookahead_computes_timms_lookahead_bit_for_bit():
    ours, theirs = _model(), _model()
    opt_ours = ForeachLookahead(torch.optim.AdamW(ours.parameters(), lr=0.05, weight_decay=0.04), alpha=0.5, k=3)
    opt_theirs = Lookahead(torch.optim.AdamW(theirs.parameters(), lr=0.05, weight_decay=0.04), alpha=0.5, k=3)
    _train(ours, opt_ours)  # 7 steps: slow updates after steps 3 and 6, then the epoch-end sync
    _train(theirs, opt_theirs)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(a, b)
    moved = [p for p in ours.parameters() if p.requires_grad]
    assert all(torch.equal(opt_ours.state_dict()["state"][i]["lookahead_slow_buff"], p) for i, p in enumerate(moved))
    # Same state keys, so checkpoints of either load into the other.
    assert opt_ours.state_dict().keys() == opt_theirs.state_dict().keys()
    assert {k for s in opt_ours.state_dict()["state"].values() for k in s} == \
        {k for s in opt_theirs.state_dict()["state"].values() for k in s}
    assert not ours[3].weight.requires_grad and len(opt_ours.state_dict()["state"]) == len(moved)


def test_fused_adamw_matches_the_foreach_step_and_resumes_exactly():
    def build(model, fused):
        return create_optimizer(model.parameters(), name="lookahead_adamw", lr=0.05, weight_decay=0.04, momentum=0.9,
                                fused=fused, device=torch.device("cpu"))

    fused_model, foreach_model = _model(), _model()
    fused_opt, foreach_opt = build(fused_model, "on"), build(foreach_model, "off")
    assert fused_opt._base_optimizer.defaults["fused"] is True
    assert not foreach_opt._base_optimizer.defaults.get("fused")
    _train(fused_model, fused_opt)
    _train(foreach_model, foreach_opt)
    for a, b in zip(fused_model.parameters(), foreach_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)  # same arithmetic, up to rounding
    # Exact resume: a copy restored from the state dicts (copied, as a checkpoint file would) takes
    # the same next steps.
    copy = _model(seed=9)
    copy.load_state_dict(copy_module.deepcopy(fused_model.state_dict()))
    copy_opt = build(copy, "on")
    copy_opt.load_state_dict(copy_module.deepcopy(fused_opt.state_dict()))
    _train(fused_model, fused_opt, steps=4, sync=False)
    _train(copy, copy_opt, steps=4, sync=False)
    for a, b in zip(fused_model.parameters(), copy.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name, fused, device, expected", [
    ("lookahead_adamw", "auto", "cuda", True),
    ("lookahead_adamw", "auto", "cpu", False),  # CPU runs keep the numerics they always had
    ("adam", "auto", "cuda", True),  # sota
    ("momentum", "auto", "cuda", True),
    ("lookahead_adamw", "off", "cuda", False),
    ("adamw", "on", "cpu", True),
    ("lookahead_nadamw", "auto", "cuda", False),  # timm's own optimisers have no fused step
    ("adamw", "on", "meta", False),  # the benchmark's replay: no fused kernels there
])
def test_auto_uses_the_fused_step_on_cuda_where_torch_has_one(name, fused, device, expected):
    assert uses_fused(name, fused, torch.device(device)) is expected


def test_a_bad_optimizer_fails_when_the_config_is_built_not_in_the_run():
    with pytest.raises(ConfigError, match=r"^--set: optim.name: unknown timm optimizer 'adamx'"):
        build_config("tort", "demo", overrides={"optim.name": "adamx"})
    cfg = build_config("sota", "demo", overrides={"optim.fused": "on"})
    assert cfg.optim.name == "adam" and cfg.content_hash() == build_config("sota", "demo").content_hash()
