"""The optimiser: timm's factory, torch's fused step where it applies, Lookahead without a Python loop.

Per step, the foreach (multi-tensor) Adam/AdamW of torch reads and writes the parameters, gradients
and moments in several passes; the fused step does it in one, and the difference grows with the
model (ViT-B: 86 M parameters; on the 2-core VM the fused AdamW step was 3.6–4.8× faster than
torch's per-tensor CPU default, docs/performance.md). timm's Lookahead updates its slow weights with three kernels per
parameter tensor from a Python loop, every k steps and at each epoch's end: the foreach version
below issues the same arithmetic as three multi-tensor calls.
"""

from __future__ import annotations

import torch
from timm.optim import Lookahead, create_optimizer_v2, get_optimizer_info, list_optimizers

from .errors import ConfigError

# torch's own optimisers with a fused implementation (CUDA and CPU in torch ≥ 2.4).
FUSED_CLASSES = (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD)
FUSED_DEVICES = ("cuda", "cpu", "xpu", "mps")


class ForeachLookahead(Lookahead):
    """timm's Lookahead (same state keys, same checkpoints) with the slow update as foreach calls.

    slow ← slow + α·(fast − slow); fast ← slow: the arithmetic of timm's loop, element for element
    (tests/tort_core/test_optim.py checks the weights bit for bit).
    """

    @torch.no_grad()
    def update_slow(self, group):
        fast = [p for p in group["params"] if p.grad is not None]
        if not fast:
            return
        states = [self._base_optimizer.state[p] for p in fast]
        for state, p in zip(states, fast):
            if "lookahead_slow_buff" not in state:  # once per parameter: the first sync
                state["lookahead_slow_buff"] = torch.empty_like(p).copy_(p)
        slow = [s["lookahead_slow_buff"] for s in states]
        # fast − slow is written into fast, which the last call overwrites anyway: no temporary
        # copy of the whole model.
        torch._foreach_sub_(fast, slow)
        torch._foreach_add_(slow, fast, alpha=group["lookahead_alpha"])
        torch._foreach_copy_(fast, slow)


def split_name(name: str) -> tuple[str, bool]:
    """'lookahead_adamw' → ('adamw', True)."""
    base = name.removeprefix("lookahead_")
    return base, base != name


def check_optimizer(name: str, fused: str) -> None:
    """ConfigError unless `name` is a timm optimizer and `fused` can apply to it."""
    base, _ = split_name(name)
    if base not in list_optimizers():
        raise ConfigError(f"optim.name: unknown timm optimizer '{name}'; see timm.optim.list_optimizers() "
                          f"(a lookahead_ prefix wraps it in Lookahead)")
    if fused == "on" and not issubclass(get_optimizer_info(base).opt_class, FUSED_CLASSES):
        raise ConfigError(f"optim.fused: on, but '{base}' has no fused step in torch; use adam, adamw, sgd or "
                          f"momentum, or optim.fused=auto")


def uses_fused(name: str, fused: str, device: torch.device) -> bool:
    """auto: the fused step on CUDA, where it saves memory passes; elsewhere torch's default (foreach
    on accelerators, per-tensor on the CPU), so CPU runs keep their numerics. on: wherever torch
    has the fused kernels (not on the meta device of the benchmark's replay)."""
    base, _ = split_name(name)
    if fused == "off" or not issubclass(get_optimizer_info(base).opt_class, FUSED_CLASSES):
        return False
    return device.type == "cuda" or (fused == "on" and device.type in FUSED_DEVICES)


def create_optimizer(params, *, name: str, lr: float, weight_decay: float, momentum: float, fused: str,
                     device: torch.device, **kwargs) -> torch.optim.Optimizer:
    check_optimizer(name, fused)
    base, lookahead = split_name(name)
    if uses_fused(name, fused, device):
        kwargs["fused"] = True
    optimizer = create_optimizer_v2(params, opt=base, lr=lr, weight_decay=weight_decay, momentum=momentum,
                                    **kwargs)
    return ForeachLookahead(optimizer) if lookahead else optimizer
