"""The training loop: LR schedule, loss subsets, determinism, exact resume, failure status."""

import itertools
import math

import pytest
import torch
from timm.optim import Lookahead

from tiny_config import TWO_BLOCKS, tiny_config, train_steps, update_gap
from tort_core.config import build_config
from tort_core.losses import CLASS_LOGITS, LossContext
from tort_core.models import compiled_graphs
from tort_core.systems import TortSystem
from tort_core.trainer import (MACHINE_METRICS, Callback, EpochBatches, build_optimizer, build_scheduler, epoch_order,
                               fit)


def _lr_at(scheduler, optimizer, step):
    scheduler.step_update(num_updates=step)
    return optimizer.param_groups[0]["lr"]


def test_lr_schedule_at_the_recipes_key_points():
    cfg = build_config("tort", "thesis", overrides={"model.name": "vit_tiny_patch16_224"})
    spe = 7  # steps per epoch
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=cfg.optim.lr)
    scheduler = build_scheduler(optimizer, cfg, spe)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-8)  # before the first step
    assert _lr_at(scheduler, optimizer, 0) == pytest.approx(1e-8)
    assert _lr_at(scheduler, optimizer, 5 * spe) == pytest.approx((1e-8 + 5e-4) / 2, rel=1e-3)
    assert _lr_at(scheduler, optimizer, 10 * spe) == pytest.approx(5e-4)  # end of warm-up
    assert _lr_at(scheduler, optimizer, 100 * spe) == pytest.approx(1e-6)  # end of the cosine
    cooldown = [_lr_at(scheduler, optimizer, s) for s in range(100 * spe, 103 * spe)]
    assert cooldown == pytest.approx([1e-6] * len(cooldown))  # flat through the cool-down
    decay = [_lr_at(scheduler, optimizer, s) for s in range(10 * spe, 100 * spe, spe)]
    assert all(a > b for a, b in zip(decay, decay[1:]))


def test_optimizer_is_lookahead_adamw_without_decay_on_norms_and_biases(tiny_cfg):
    cfg = tiny_cfg()
    system = TortSystem(cfg, 10, 4)
    optimizer = build_optimizer(system, cfg)
    assert isinstance(optimizer, Lookahead) and isinstance(optimizer._base_optimizer, torch.optim.AdamW)
    decays = {g["weight_decay"] for g in optimizer.param_groups}
    assert decays == {0.0, cfg.optim.weight_decay}
    no_decay = next(g for g in optimizer.param_groups if g["weight_decay"] == 0.0)["params"]
    assert any(p is system.student["backbone"].pos_embed for p in no_decay)
    assert not any(p is system.teacher["backbone"].pos_embed for g in optimizer.param_groups for p in g["params"])


SUBSETS = [list(c) for r in (1, 2, 3) for c in itertools.combinations(["distill", "supervised", "rotation"], r)]


@pytest.mark.parametrize("subset", SUBSETS, ids=["+".join(s) for s in SUBSETS])
def test_each_loss_subset_trains_a_step_and_only_its_heads_get_gradients(tiny_cfg, subset):
    torch.manual_seed(0)
    cfg = tiny_cfg(**{"loss.enabled": subset})
    system = TortSystem(cfg, num_classes=10, steps_per_epoch=4)
    b = 4
    views = [torch.randn(b, 3, 32, 32) for _ in range(3)] + [torch.randn(b, 3, 16, 16) for _ in range(2)]
    labels = torch.randint(0, 10, (b,))
    loss, metrics = system.training_step((views, labels), LossContext(0, 0, 8, 10))
    assert torch.isfinite(loss)
    assert {k for k in metrics if k.startswith("loss_")} == {f"loss_{n}" for n in subset}
    loss.backward()
    has_grad = lambda m: any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())  # noqa: E731
    assert has_grad(system.student["backbone"])
    assert has_grad(system.student["proj"]) == ("distill" in subset)
    assert has_grad(system.class_head) == ("supervised" in subset)
    assert has_grad(system.rot_head) == ("rotation" in subset)
    assert all(p.grad is None for p in system.teacher.parameters())


def _metrics(records):
    return [{k: v for k, v in r.items() if k not in MACHINE_METRICS} for r in records]


# Runs that several tests read, trained once per module (each test that reads one only reads it).

class Written(Callback):
    """Whether each epoch wrote a checkpoint."""

    def __init__(self):
        self.epochs = []

    def on_epoch_end(self, record, checkpoint):
        self.epochs.append(checkpoint is not None)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The tiny run (2 epochs + 1 cool-down) in a run directory, its checkpoints written in the loop."""
    run_dir = tmp_path_factory.mktemp("tiny-run")
    return fit(tiny_config(checkpoint_write="sync"), run_dir), run_dir


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory):
    """One epoch of the tiny run, in a run directory."""
    run_dir = tmp_path_factory.mktemp("one-epoch")
    return fit(tiny_config(epochs=1, **{"optim.warmup_epochs": 0, "optim.cooldown_epochs": 0}), run_dir), run_dir


@pytest.fixture(scope="module")
def every_other_epoch_run(tmp_path_factory):
    """3 + 1 cool-down epochs checkpointed every second epoch (after epochs 2 and 4)."""
    written = Written()
    run_dir = tmp_path_factory.mktemp("every-other")
    return fit(tiny_config(epochs=3, checkpoint_every=2), run_dir, callbacks=[written]), written.epochs


@pytest.mark.slow
def test_same_seed_gives_identical_metrics_and_another_seed_does_not(tiny_cfg, tiny_run):
    a, _ = tiny_run  # checkpointed every epoch: writing them changes nothing either
    b = fit(tiny_cfg())
    c = fit(tiny_cfg(seed=4))
    assert a.status == b.status == "completed" and len(a.records) == 3  # 2 epochs + 1 cool-down
    assert _metrics(a.records) == _metrics(b.records)
    assert _metrics(a.records) != _metrics(c.records)
    for key in ("loss", "loss_distill", "loss_supervised", "loss_rotation", "lr", "momentum", "test_top1",
                "knn_top1", "teacher_entropy", "epoch_seconds", "samples_per_s", "peak_mem_mb", "data_wait_seconds"):
        assert math.isfinite(a.records[-1][key]), key
    assert all(0 <= r["data_wait_seconds"] <= r["train_seconds"] for r in a.records)


def test_each_epoch_is_its_own_shuffle_cut_into_full_batches():
    batches = list(EpochBatches(10, 3, seed=7, start=2, end=5))
    assert len(batches) == len(EpochBatches(10, 3, seed=7, start=2, end=5)) == 3 * 3  # 10 // 3 steps, 3 epochs
    for k, epoch in enumerate(range(2, 5)):
        keys = [key for batch in batches[3 * k:3 * k + 3] for key in batch]
        assert keys == [(epoch, i) for i in epoch_order(10, 7, epoch)[:9]]  # the remainder is dropped
    assert epoch_order(10, 7, 2) != epoch_order(10, 7, 3) and epoch_order(10, 7, 2) != epoch_order(10, 8, 2)


@pytest.mark.slow
def test_one_loader_pass_spans_all_epochs_so_workers_never_restart_cold(tiny_cfg, monkeypatch):
    """The workers prefetch across the epoch boundary (while the trainer evaluates) instead of
    being sent a new epoch after it; what each step sees is unchanged."""
    drawn = []  # (pass, epoch) of each batch handed to the loader
    real_iter = EpochBatches.__iter__

    def recording_iter(self):
        this_pass = object()
        for batch in real_iter(self):
            drawn.append((this_pass, batch[0][0]))
            yield batch

    monkeypatch.setattr(EpochBatches, "__iter__", recording_iter)
    cfg = tiny_cfg(epochs=2, **{"data.num_workers": 1})
    result = fit(cfg)
    assert result.status == "completed" and len(result.records) == 3  # 2 epochs + 1 cool-down
    assert len({p for p, _ in drawn}) == 1  # one pass...
    assert sorted({e for _, e in drawn}) == [0, 1, 2]  # ...through every epoch


@pytest.mark.parametrize("recipe", ["sota", "tort"])
def test_loader_workers_change_no_number(tiny_cfg, recipe):
    # num_workers is a speed setting (a one-CPU sweep trial runs with 0): the views are seeded per
    # image either way, and without workers that seeding must not reset the training process's own
    # stream (dropout and stochastic depth, on in both recipes), or a sweep trial would not
    # reproduce `tort train` of the same trial id.
    cfg = tiny_cfg(recipe)
    assert cfg.model.drop_path > 0 or cfg.model.dropout > 0
    runs = [fit(tiny_cfg(recipe, **{"data.num_workers": w})) for w in (0, 1)]
    assert all(r.status == "completed" for r in runs)
    # equal up to float rounding: the thread count of the training process differs between the two
    for a, b in zip(_metrics(runs[0].records), _metrics(runs[1].records), strict=True):
        assert a == pytest.approx(b, rel=1e-4)


class Interrupt(Exception):
    pass


class StopAfter(Callback):
    def __init__(self, epochs):
        self.epochs = epochs

    def on_epoch_end(self, record, checkpoint):
        if record["epoch"] == self.epochs:
            raise Interrupt


class StartEpoch(Callback):
    """Records the epoch each fit starts at (> 0: resumed from a checkpoint)."""

    def __init__(self):
        self.epochs = []

    def on_fit_start(self, cfg, info):
        self.epochs.append(info["start_epoch"])


@pytest.mark.slow
@pytest.mark.parametrize("recipe, workers, augment_on",
                         [("tort", 0, "cpu"), ("tort", 1, "cpu"), ("tort", 1, "device"), ("sota", 1, "cpu"),
                          ("sota", 0, "device")])
def test_interrupted_and_resumed_run_ends_like_an_uninterrupted_one(tiny_cfg, tmp_path, recipe, workers, augment_on):
    cfg = tiny_cfg(recipe, epochs=3, **{"data.num_workers": workers, "views.augment_on": augment_on})
    full = fit(cfg, tmp_path / "full")
    with pytest.raises(Interrupt):
        fit(cfg, tmp_path / "cut", callbacks=[StopAfter(2)])
    start = StartEpoch()
    resumed = fit(cfg, tmp_path / "cut", callbacks=[start])
    assert start.epochs == [2]  # it continued after epoch 2 instead of starting over
    assert _metrics(resumed.records) == _metrics(full.records)
    assert resumed.records[-1]["epoch"] == cfg.total_epochs


@pytest.mark.slow
def test_with_checkpoint_every_a_killed_run_resumes_from_its_last_checkpoint_and_ends_the_same(
        tiny_cfg, tmp_path, every_other_epoch_run):
    cfg = tiny_cfg(epochs=3, checkpoint_every=2)  # 3 + 1 cool-down epochs: checkpoints after 2 and 4
    full, written = every_other_epoch_run
    assert written == [False, True, False, True]
    with pytest.raises(Interrupt):
        fit(cfg, tmp_path / "cut", callbacks=[StopAfter(3)])
    start = StartEpoch()
    resumed = fit(cfg, tmp_path / "cut", callbacks=[start])
    assert start.epochs == [2]  # epoch 3 had no checkpoint: it is computed again
    assert _metrics(resumed.records) == _metrics(full.records)
    assert cfg.content_hash() == tiny_cfg(epochs=3).content_hash()  # where resume points fall is not the experiment


@pytest.mark.slow
def test_background_checkpoints_resume_exactly_and_hold_what_sync_ones_hold(tiny_cfg, tmp_path, tiny_run):
    from tort_core.checkpoint import load_checkpoint

    cfg = tiny_cfg(checkpoint_write="background")  # 2 epochs + 1 cool-down
    assert cfg.content_hash() == tiny_cfg().content_hash()  # how checkpoints are written is not the experiment
    full, sync_dir = tiny_run
    with pytest.raises(Interrupt):
        fit(cfg, tmp_path / "cut", callbacks=[StopAfter(2)])
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["epoch"] == 1  # epoch 2's write landed as fit raised
    start = StartEpoch()
    resumed = fit(cfg, tmp_path / "cut", callbacks=[start])
    assert start.epochs == [2]
    assert _metrics(resumed.records) == _metrics(full.records)
    assert all(r["checkpoint_seconds"] > 0 for r in resumed.records[2:])  # the epochs this fit ran
    assert math.isnan(resumed.records[1]["checkpoint_seconds"])  # taken before its write was timed
    sync, background = (load_checkpoint(d / "checkpoint.pt") for d in (sync_dir, tmp_path / "cut"))
    assert sync["system"].keys() == background["system"].keys()
    assert all(torch.equal(sync["system"][k], background["system"][k]) for k in sync["system"])
    assert sync["optimizer"]["param_groups"] == background["optimizer"]["param_groups"]
    assert sorted(p.name for p in (tmp_path / "cut").iterdir() if "tmp" in p.name) == []


@pytest.mark.slow
def test_cached_evaluation_gives_the_same_records(tiny_cfg):
    one_epoch = {"epochs": 1, "optim.warmup_epochs": 0, "optim.cooldown_epochs": 0}
    cached, uncached = (tiny_cfg(**one_epoch, **{"eval.cache": c}) for c in ("on", "off"))
    assert cached.content_hash() == uncached.content_hash()  # where eval images are kept is not the experiment
    a, b = fit(cached).records, fit(uncached).records
    assert _metrics(a) == _metrics(b)
    assert all("knn_top1" in r and "test_top1" in r for r in a)


@pytest.mark.slow
def test_decoded_training_images_give_the_same_records(tiny_cfg, tmp_path):
    import numpy as np
    from PIL import Image

    g = np.random.default_rng(0)
    for split, n in (("train", 12), ("test", 4)):
        for c in ("a", "b"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(n):  # photographs' stand-ins: JPEGs, so decoding is real work
                Image.fromarray(g.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(tmp_path / split / c / f"{i}.jpg")
    one_epoch = {"epochs": 1, "optim.warmup_epochs": 0, "optim.cooldown_epochs": 0, "data.dataset": "imagefolder",
                 "data.root": str(tmp_path), "data.train_limit": None, "data.test_limit": None}
    kept, decoded_each_epoch = (tiny_cfg(**one_epoch, **{"data.decoded_cache_mb": mb}) for mb in (64, 0))
    assert kept.content_hash() == decoded_each_epoch.content_hash()
    assert _metrics(fit(kept).records) == _metrics(fit(decoded_each_epoch).records)


@pytest.mark.slow
def test_checkpoint_holds_everything_needed_to_resume(one_epoch_run):
    _, run_dir = one_epoch_run
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert {"system", "optimizer", "scheduler", "rng", "epoch", "global_step", "records"} <= set(state)
    keys = state["system"].keys()
    assert any(k.startswith("student.") for k in keys) and any(k.startswith("teacher.") for k in keys)
    assert "losses.distill.center" in keys


@pytest.mark.slow
def test_each_epoch_records_what_its_checkpoint_cost(every_other_epoch_run):
    records = every_other_epoch_run[0].records  # checkpoints after epochs 2 and 4
    written = [r["checkpoint_seconds"] > 0 for r in records]
    assert written == [False, True, False, True]
    for r in records:
        assert r["epoch_seconds"] == pytest.approx(r["train_seconds"] + r["eval_seconds"] + r["checkpoint_seconds"])


@pytest.mark.slow
def test_resume_refuses_a_checkpoint_of_another_config(tiny_cfg, one_epoch_run):
    from tort_core.errors import ConfigError

    _, run_dir = one_epoch_run
    before = sorted((p.name, p.read_bytes()) for p in run_dir.iterdir())
    with pytest.raises(ConfigError, match="different config"):
        fit(tiny_cfg(epochs=1, **{"optim.warmup_epochs": 0, "optim.cooldown_epochs": 0, "seed": 9}), run_dir)
    assert sorted((p.name, p.read_bytes()) for p in run_dir.iterdir()) == before  # refused before touching it


def test_a_non_finite_loss_stops_the_run_with_a_failed_status(tiny_cfg, tmp_path):
    cfg = tiny_cfg(**{"optim.lr": 1e30, "optim.min_lr": 1e29, "optim.warmup_epochs": 0, "optim.clip_grad": None,
                      "finite_check_every": 1})
    ends = []

    class End(Callback):
        def on_fit_end(self, result):
            ends.append(result.status)

    result = fit(cfg, tmp_path, callbacks=[End()])
    assert result.status == "failed" and "non-finite loss" in result.error
    assert ends == ["failed"]
    assert len(result.records) < cfg.total_epochs


def test_supervised_head_sees_the_global_like_views_only(tiny_cfg):
    cfg = tiny_cfg(**{"loss.enabled": ["supervised"]})
    system = TortSystem(cfg, 10, 4)
    seen = {}
    system.class_head.register_forward_hook(lambda m, i, o: seen.update(n=o.shape[0]))
    views = [torch.randn(4, 3, 32, 32) for _ in range(3)] + [torch.randn(4, 3, 16, 16) for _ in range(2)]
    system.training_step((views, torch.zeros(4, dtype=torch.long)), LossContext(0, 0, 8, 10))
    assert seen["n"] == 3 * 4
    assert CLASS_LOGITS in system.needs


@pytest.mark.slow
def test_a_compiled_step_computes_what_the_eager_step_does(tiny_cfg):
    # compile=true is a speed option only: the same losses and gradient norm, and the same weight
    # updates (student, teacher by EMA, heads) as eager, up to float rounding; with dropout and
    # stochastic depth on, the same units dropped (compile_random=eager). A two-block backbone keeps
    # the compilation (two view sizes, forward and backward) to about 40 s on two cores.
    torch.manual_seed(0)
    views = [torch.randn(4, 3, 32, 32) for _ in range(3)] + [torch.randn(4, 3, 16, 16) for _ in range(2)]
    batch = (views, torch.randint(0, 10, (4,)))
    cfg = lambda **kw: tiny_cfg(**TWO_BLOCKS, **{"model.dropout": 0.1}, **kw)  # noqa: E731
    _, start = train_steps(cfg(), batch, steps=0)
    eager, eager_state = train_steps(cfg(), batch, steps=3)
    graphs = compiled_graphs()
    compiled, compiled_state = train_steps(cfg(compile=True), batch, steps=3)
    assert compiled_graphs() > graphs  # it did compile
    for e, c in zip(eager, compiled):
        assert e.keys() == c.keys() and {"loss", "loss_distill", "loss_rotation", "grad_norm"} <= e.keys()
        for k in e:
            torch.testing.assert_close(c[k], e[k], rtol=1e-5, atol=1e-6, msg=k)
    assert compiled_state.keys() == eager_state.keys()
    assert update_gap(start, compiled_state, eager_state) < 1e-4  # 6e-6 on the 2-core VM
