"""Losses: the distillation loss against an independent computation, centring, temperatures."""

import itertools

import torch
import torch.nn.functional as F

from tort_core.config import build_config
from tort_core.losses import (CLASS_LOGITS, ROT_LOGITS, STUDENT_PROJ, TEACHER_PROJ, DistillLoss, LossContext,
                              RotationLoss, StepOutputs, SupervisedLoss, teacher_temperature)

CTX = LossContext(epoch=0, step=0, total_steps=10, num_classes=5)


def reference_distill(student, teacher, center, s_temp, t_temp, n_student, n_teacher, b):
    """DINO's loss written out with explicit loops over view pairs and samples."""
    total, pairs = 0.0, 0
    for i in range(n_teacher):
        for v in range(n_student):
            if v == i:
                continue  # the same crop
            ce = 0.0
            for n in range(b):
                t = teacher[i * b + n]
                q = torch.exp((t - center) / t_temp) / torch.exp((t - center) / t_temp).sum()
                s = student[v * b + n] / s_temp
                logp = s - torch.log(torch.exp(s).sum())
                ce += -(q * logp).sum()
            total += ce / b
            pairs += 1
    return total / pairs


def test_distill_matches_an_independent_computation():
    torch.manual_seed(0)
    b, k, n_student, n_teacher = 4, 7, 5, 3
    loss_fn = DistillLoss(out_dim=k, student_temp=0.2, teacher_temp=0.05)
    loss_fn.center.copy_(torch.randn(1, k) * 0.1)
    center = loss_fn.center.clone()
    student, teacher = torch.randn(n_student * b, k), torch.randn(n_teacher * b, k)
    out = StepOutputs(b, n_student, n_teacher, {STUDENT_PROJ: student, TEACHER_PROJ: teacher})
    got = loss_fn(out, CTX)
    want = reference_distill(student.double(), teacher.double(), center.double()[0], 0.2, 0.05, n_student, n_teacher, b)
    assert torch.allclose(got.double(), want, atol=1e-5)


def test_distill_skips_same_view_pairs():
    # Identical student and teacher outputs on the diagonal would give the minimum CE if the
    # same-view pairs were counted; make the off-diagonal pairs uninformative to expose it.
    b, k = 2, 4
    loss_fn = DistillLoss(out_dim=k, student_temp=1.0, teacher_temp=1.0)
    teacher = torch.tensor([[5.0, 0, 0, 0]] * b + [[0, 5.0, 0, 0]] * b)
    student = torch.cat([teacher, torch.zeros(b, k)])  # view 2 is uniform
    out = StepOutputs(b, 3, 2, {STUDENT_PROJ: student, TEACHER_PROJ: teacher})
    got = loss_fn(out, CTX)
    q = F.softmax(teacher.view(2, b, k), -1)
    logp = F.log_softmax(student.view(3, b, k), -1)
    pairs = [(i, v) for i, v in itertools.product(range(2), range(3)) if i != v]
    want = torch.stack([-(q[i] * logp[v]).sum(-1).mean() for i, v in pairs]).mean()
    assert torch.allclose(got, want, atol=1e-6)


def test_centre_is_an_ema_of_teacher_batch_means():
    k = 3
    loss_fn = DistillLoss(out_dim=k, center_momentum=0.9)
    assert "center" in dict(loss_fn.named_buffers())
    teacher = torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    out = StepOutputs(1, 2, 2, {STUDENT_PROJ: torch.zeros(2, k), TEACHER_PROJ: teacher})
    loss_fn(out, CTX)
    assert torch.allclose(loss_fn.center, 0.1 * torch.tensor([[2.0, 2.0, 2.0]]))
    loss_fn(out, CTX)
    assert torch.allclose(loss_fn.center, (0.9 * 0.1 + 0.1) * torch.tensor([[2.0, 2.0, 2.0]]))


def test_teacher_temperature_follows_dinos_linspace_warm_up_then_stays():
    # DINO's main_dino.py: concatenate(linspace(warmup_teacher_temp, teacher_temp, W), ones(rest) * teacher_temp)
    # reaches teacher_temp at epoch W − 1, not W.
    warm = DistillLoss(8, teacher_temp=0.06, warmup_teacher_temp=0.02, warmup_teacher_temp_epochs=4)
    assert [round(warm.teacher_temperature(e), 6) for e in range(6)] == [0.02, 0.033333, 0.046667, 0.06, 0.06, 0.06]
    assert [teacher_temperature(e, 0.06, 0.02, 4) for e in range(6)] == [warm.teacher_temperature(e) for e in range(6)]
    assert [teacher_temperature(e, 0.06, 0.02, 1) for e in range(3)] == [0.02, 0.06, 0.06]  # linspace(a, b, 1) == [a]
    thesis = DistillLoss.from_config(build_config("tort", "thesis", check_names=False), num_classes=102)
    assert [thesis.teacher_temperature(e) for e in (0, 50, 102)] == [0.04] * 3  # the thesis: constant 0.04


def test_lower_teacher_temperature_sharpens_the_target():
    torch.manual_seed(1)
    teacher, student = torch.randn(6, 8), torch.randn(6, 8)
    out = StepOutputs(2, 3, 3, {STUDENT_PROJ: student, TEACHER_PROJ: teacher})
    sharp = DistillLoss(8, teacher_temp=0.02, warmup_teacher_temp=0.02)
    soft = DistillLoss(8, teacher_temp=0.5, warmup_teacher_temp=0.5)
    sharp(out, CTX), soft(out, CTX)
    assert sharp.metrics()["teacher_entropy"] < soft.metrics()["teacher_entropy"]


def test_supervised_and_rotation_are_cross_entropies():
    logits, labels = torch.randn(6, 5), torch.tensor([0, 1, 2, 3, 4, 0])
    sup = SupervisedLoss(label_smoothing=0.1)
    out = StepOutputs(2, 3, 3, {CLASS_LOGITS: logits}, targets=labels)
    assert torch.allclose(sup(out, CTX), F.cross_entropy(logits, labels, label_smoothing=0.1))
    soft = F.one_hot(labels, 5).float()
    out_soft = StepOutputs(2, 3, 3, {CLASS_LOGITS: logits}, targets=soft)
    assert torch.allclose(SupervisedLoss()(out_soft, CTX), F.cross_entropy(logits, labels), atol=1e-6)
    rot_logits, rot = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    out_rot = StepOutputs(2, 3, 3, {ROT_LOGITS: rot_logits}, rot_labels=rot)
    assert torch.allclose(RotationLoss()(out_rot, CTX), F.cross_entropy(rot_logits, rot))
