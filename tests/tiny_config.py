"""The tiny-but-real run settings, and a driver of the trainer's step, shared by tests (a module,
not conftest, so it cannot be shadowed)."""

# Small enough for a CPU test (a few seconds a run), still the real data, model and recipe code.
TINY = {
    "epochs": 2,
    "optim.warmup_epochs": 1,
    "optim.cooldown_epochs": 1,
    "views.n_local": 2,
    "batch_size": 16,
    "data.train_limit": 64,
    "data.test_limit": 48,
    "data.eval_batch_size": 64,
}

TINY_SETS = [f"{k}={v}" for k, v in TINY.items()]


def tiny_config(recipe: str = "tort", **overrides):
    """The demo profile cut to TINY, with `overrides` (the `tiny_cfg` fixture, for any scope)."""
    from tort_core.config import build_config

    return build_config(recipe, "demo", overrides={**TINY, **overrides})

# A two-block backbone, for tests that pay per graph (torch.compile); two, so that stochastic depth
# (0 in the first block, drop_path in the last) drops something.
TWO_BLOCKS = {"model.kwargs": {"patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}}


def train_steps(cfg, batch, steps: int):
    """`steps` of the trainer's own step (`trainer.train_step`) of Tort on one batch, on
    `cfg.device` with the trainer's autocast: each step's metrics and the final state_dict."""
    import torch

    from tort_core.losses import LossContext
    from tort_core.systems import TortSystem
    from tort_core.trainer import (autocast_for, build_optimizer, build_scheduler, resolve_device, seed_all,
                                   train_step)

    device = resolve_device(cfg.device)
    seed_all(0)
    system = TortSystem(cfg, num_classes=10, steps_per_epoch=4).to(device)
    system.train()
    optimizer = build_optimizer(system, cfg)
    scheduler = build_scheduler(optimizer, cfg, 4)
    clip = [p for p in system.trainable().parameters() if p.requires_grad]
    torch.manual_seed(1)  # the rotations each step draws
    metrics = []
    for step in range(steps):
        m, _ = train_step(cfg, system, optimizer, scheduler, clip, batch, LossContext(0, step, 8, 10),
                          autocast_for(cfg, device))
        metrics.append({k: v.detach().clone() for k, v in m.items()})
    return metrics, system.state_dict()


def update_gap(start: dict, a: dict, b: dict) -> float:
    """How far apart two runs' weight updates from the same `start` state_dict are, relative to
    the size of `b`'s update. Compared as a whole, not element by element: Adam's first steps turn
    a gradient that is zero but for rounding (e.g. attention's key bias) into a full-size step."""
    import torch

    keys = [k for k, v in start.items() if v.is_floating_point()]
    update = lambda state: torch.cat([(state[k].float() - start[k].float()).flatten() for k in keys])  # noqa: E731
    return float((update(a) - update(b)).norm() / update(b).norm())
