"""Each as-run choice does what the original code did (oracles: its code, transcribed here).

detkov/tort at aca9ec6: train_tort.py (teacher, momentum, k-NN), tort_utils.py (cosine_scheduler),
tort_aug.py (rand_rot), dataset.py (splits); timm's CosineLRScheduler as create_scheduler built it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tort_core.config import build_config
from tort_core.data import load_dataset
from tort_core.evaluate import knn_cross_validated, knn_predict
from tort_core.losses import LossContext
from tort_core.systems import TortSystem
from tort_core.trainer import build_optimizer, build_scheduler
from tort_core.views import sample_rotations


def tort(**overrides) -> tuple[TortSystem, object]:
    cfg = build_config("tort", "demo", overrides=overrides)
    torch.manual_seed(0)
    return TortSystem(cfg, num_classes=10, steps_per_epoch=5), cfg


def test_teacher_copy_or_independent():
    copy, _ = tort()
    assert all(torch.equal(t, s) for t, s in zip(copy.teacher.parameters(), copy.student.parameters()))
    alone, _ = tort(**{"teacher.init": "independent"})
    pairs = list(zip(alone.teacher.parameters(), alone.student.parameters()))
    assert len(pairs) == len(list(copy.teacher.parameters()))
    drawn = [(t, s) for t, s in pairs if s.std() > 0]  # biases and norms start at constants in both
    assert len(drawn) > 10 and all(not torch.equal(t, s) for t, s in drawn)  # weights drawn anew, not copied
    assert not any(p.requires_grad for p in alone.teacher.parameters())


def original_momentum_schedule(base: float, final: float, epochs: int, niter_per_ep: int) -> np.ndarray:
    # tort_utils.cosine_scheduler(base_value, final_value, epochs, niter_per_ep) without warm-up
    iters = np.arange(epochs * niter_per_ep)
    return final + 0.5 * (base - final) * (1 + np.cos(np.pi * iters / len(iters)))


def test_momentum_read_at_the_batch_in_its_epoch_repeats_the_first_epoch():
    system, cfg = tort(**{"teacher.momentum_index": "batch_in_epoch", "teacher.momentum": 0.9998, "epochs": 100})
    spe = system.steps_per_epoch
    schedule = original_momentum_schedule(0.9998, 1.0, cfg.epochs, spe)
    for epoch in (0, 1, cfg.total_epochs - 1):
        got = [system.after_optimizer_step(LossContext(epoch, epoch * spe + i, system.total_steps, 10))["momentum"]
               for i in range(spe)]
        assert got == pytest.approx(schedule[:spe].tolist(), abs=1e-12)  # train_tort.py: momentum_scheduler[batch_idx]
    assert max(got) < 0.99981  # ≈ constant 0.9998 for the whole run


def test_momentum_by_global_step_goes_to_one():
    system, _ = tort(**{"teacher.momentum": 0.9998})
    last = system.total_steps - 1
    ends = [system.after_optimizer_step(LossContext(0, s, system.total_steps, 10))["momentum"] for s in (0, last)]
    assert ends == pytest.approx([0.9998, 1.0])


def test_rotation_drawn_per_view_batch_rotates_a_whole_view_batch_or_none():
    torch.manual_seed(0)
    b, n_views = 16, 3
    seen = set()
    for _ in range(50):
        rot = sample_rotations(n_views * b, 0.5, group=b).view(n_views, b)
        for row in rot:
            assert bool((row == 0).all()) or bool((row > 0).all())  # rand_rot: all rotated or none
            seen.add(bool((row > 0).all()))
            if (row > 0).all():
                assert set(row.tolist()) <= {1, 2, 3}
    assert seen == {True, False}
    mixed = sample_rotations(n_views * b, 0.5).view(n_views, b)  # per sample: rows mix rotated and not
    assert any(0 < int((row > 0).sum()) < b for row in mixed)


def test_the_step_rotates_by_the_configured_draw(monkeypatch):
    import tort_core.systems as systems

    groups = []
    real = systems.sample_rotations
    monkeypatch.setattr(systems, "sample_rotations", lambda *a, **k: (groups.append(a[3]), real(*a, **k))[1])
    system, cfg = tort(**{"views.rotation_draw": "per_view_batch", "views.n_local": 0})
    views = [torch.randn(4, 3, 32, 32) for _ in range(3)]
    system.training_step((views, torch.arange(4)), LossContext(0, 0, 10, 10))
    assert groups == [4]  # one draw per view batch of 4


def timm_2022_epoch_lr(epoch: int, lr: float, min_lr: float, warmup_lr: float, warmup: int, epochs: int) -> float:
    # CosineLRScheduler(t_initial=epochs, warmup_t=warmup, warmup_prefix=False, t_in_epochs=True)._get_lr
    if epoch < warmup:
        return warmup_lr + epoch * (lr - warmup_lr) / warmup
    if epoch >= epochs:
        return min_lr  # cycle_limit 1: the cool-down epochs stay at min_lr
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * epoch / epochs))


def run_schedule(cfg, spe: int) -> list[list[float]]:
    """The LR of every step, driven as trainer.fit drives the scheduler."""
    system, _ = tort()
    optimizer = build_optimizer(system, cfg)
    scheduler = build_scheduler(optimizer, cfg, spe)
    lrs = []
    for epoch in range(cfg.total_epochs):
        epoch_lrs = []
        for i in range(spe):
            epoch_lrs.append(optimizer.param_groups[0]["lr"])
            scheduler.step_update(num_updates=epoch * spe + i + 1)
        scheduler.step(epoch + 1)
        lrs.append(epoch_lrs)
    return lrs


def test_lr_per_epoch_is_timms_create_scheduler():
    cfg = build_config("tort", "thesis", overrides={"fidelity": "as_run", "epochs": 20, "optim.warmup_epochs": 4})
    lrs = run_schedule(cfg, spe=3)
    assert len(lrs) == 23 and all(len(set(e)) == 1 for e in lrs)  # constant within an epoch
    expected = [timm_2022_epoch_lr(e, 5e-4, 1e-6, 1e-8, 4, 20) for e in range(23)]
    assert [e[0] for e in lrs] == pytest.approx(expected, rel=1e-9)


def test_lr_per_step_with_a_warm_up_prefix():
    cfg = build_config("tort", "thesis", overrides={"epochs": 20, "optim.warmup_epochs": 4})
    lrs = [lr for epoch in run_schedule(cfg, spe=3) for lr in epoch]
    warmup, decay = 4 * 3, 16 * 3
    assert lrs[warmup] == pytest.approx(5e-4)  # the cosine starts at the base lr when the warm-up ends
    assert lrs[warmup + decay // 2] == pytest.approx(1e-6 + 0.5 * (5e-4 - 1e-6))
    assert lrs[-1] == pytest.approx(1e-6)


def test_decay_tokens_decides_the_position_embedding_and_class_token():
    for decay_tokens, decayed in ((False, False), (True, True)):
        system, cfg = tort(**{"optim.decay_tokens": decay_tokens})
        optimizer = build_optimizer(system, cfg)
        backbone = system.student["backbone"]
        for token in (backbone.pos_embed, backbone.cls_token):
            group = next(g for g in optimizer.param_groups if any(p is token for p in g["params"]))
            assert (group["weight_decay"] > 0) == decayed
        bias = system.student["backbone"].blocks[0].attn.qkv.bias
        assert next(g for g in optimizer.param_groups if any(p is bias for p in g["params"]))["weight_decay"] == 0


def test_keep_distill_keeps_distillation_on_at_weight_one():
    kept, _ = tort(**{"loss.enabled": ["supervised"], "loss.keep_distill": True})
    assert sorted(kept.losses) == ["distill", "supervised"] and kept.weights == {"supervised": 2.5, "distill": 1.0}
    views = [torch.randn(4, 3, 32, 32) for _ in range(3)] + [torch.randn(4, 3, 16, 16) for _ in range(2)]
    total, metrics = kept.training_step((views, torch.arange(4)), LossContext(0, 0, 10, 10))
    assert torch.allclose(total, 2.5 * metrics["loss_supervised"] + metrics["loss_distill"])
    alone, _ = tort(**{"loss.enabled": ["supervised"]})
    assert list(alone.losses) == ["supervised"]


def test_knn_logits_are_the_contrastive_heads_output():
    system, cfg = tort(**{"eval.knn_features": "logits"})
    _, feats = system.embed(torch.randn(2, 3, 32, 32))
    assert feats.shape == (2, cfg.heads.out_dim)


def test_uniform_votes_count_neighbours():
    bank = torch.tensor([[1.0, 0.0], [0.98, 0.2], [0.0, 1.0], [0.2, 0.98], [0.3, 0.95]])
    labels = torch.tensor([0, 0, 1, 1, 1])
    query = torch.tensor([[1.0, 0.05]])
    # softmax votes: two very close class-0 neighbours beat three far class-1 ones; uniform: 3 > 2
    assert knn_predict(bank, labels, query, k=5, temperature=0.07, num_classes=2).tolist() == [0]
    assert knn_predict(bank, labels, query, k=5, temperature=0.07, num_classes=2, weights="uniform").tolist() == [1]


def test_cross_validated_knn_is_the_original_call():
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(5).repeat(20)
    feats = torch.randn(100, 8, generator=gen) + 2.0 * torch.nn.functional.one_hot(labels, 8)
    x, y = feats.numpy(), labels.numpy()
    # train_tort.py valid_one_epoch_ssl, verbatim
    cls = KNeighborsClassifier(n_neighbors=20, metric='cosine').fit(x, y)
    acc1_knn = 100 * np.mean(cross_val_score(cls, x, y))
    assert knn_cross_validated(feats, labels, 20, 0.07, "uniform") == pytest.approx(acc1_knn)
    assert 50 < acc1_knn < 100


def fake_aircraft(root: Path) -> None:
    """An FGVC-Aircraft tree with annotation files only (no image is read to build the splits)."""
    data = root / "fgvc-aircraft-2013b" / "data"
    (data / "images").mkdir(parents=True)
    (data / "variants.txt").write_text("707-320\nA300B4\n")
    sizes = {"train": 6, "val": 4, "trainval": 10, "test": 8}
    for split, n in sizes.items():
        (data / f"images_variant_{split}.txt").write_text("".join(f"{split}{i:03d} {['707-320', 'A300B4'][i % 2]}\n"
                                                                  for i in range(n)))


def test_original_splits_are_the_original_codes(tmp_path):
    fake_aircraft(tmp_path)
    standard = load_dataset("fgvc_aircraft", tmp_path)
    original = load_dataset("fgvc_aircraft", tmp_path, "original")
    # tort: trainval → test; dataset.py: 'FGVCAircraft': [FGVCAircraft, ['train', 'val']]
    assert (len(standard.train), len(standard.test)) == (10, 8)
    assert (len(original.train), len(original.test)) == (6, 4)
    assert load_dataset("digits", None, "original").test is not None  # datasets it never used: as standard


class _Stop(Exception):
    pass


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["tort", "sota"])
def test_an_as_run_trial_resumes_exactly(tiny_cfg, tmp_path, recipe):
    # per-epoch LR (its scheduler state), the batch-indexed momentum, the independent teacher, the
    # per-view-batch rotation draws and the cross-validated k-NN all survive a resume
    from tort_core.catalog import MACHINE_METRICS
    from tort_core.trainer import Callback, fit

    class StopAfter(Callback):
        def on_epoch_end(self, record, checkpoint):
            if record["epoch"] == 2:
                raise _Stop

    cfg = tiny_cfg(recipe, epochs=3, fidelity="as_run")
    assert cfg.optim.schedule_unit == "epoch"
    full = fit(cfg, tmp_path / "full")
    with pytest.raises(_Stop):
        fit(cfg, tmp_path / "cut", callbacks=[StopAfter()])
    resumed = fit(cfg, tmp_path / "cut")
    keep = lambda rs: [{k: v for k, v in r.items() if k not in MACHINE_METRICS} for r in rs]  # noqa: E731
    assert keep(resumed.records) == keep(full.records)
    lrs = [r["lr"] for r in full.records]
    assert all(a != b for a, b in zip(lrs, lrs[1:]))  # a new lr each epoch: warm-up, cosine, cool-down
