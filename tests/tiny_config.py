"""The tiny-but-real run settings shared by tests (a module, not conftest, so it cannot be shadowed)."""

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
