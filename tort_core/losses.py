"""Loss registry: distillation (DINO-style), supervised CE, rotation CE.

A loss is an `nn.Module` registered by name. It declares the model outputs it `needs`; the
recipe computes only those, so a disabled loss costs nothing and its head gets no gradient.
Adding a loss = registering a class here (or anywhere imported); the trainer never changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .config import LossConfig
from .registry import Registry

# Output names a loss can ask for.
STUDENT_PROJ = "student_proj"  # contrastive-head logits of the student, all views   [V·B, K]
TEACHER_PROJ = "teacher_proj"  # contrastive-head logits of the teacher, global-like [G·B, K]
CLASS_LOGITS = "class_logits"  # supervised head on the global-like views           [G·B, C]
ROT_LOGITS = "rot_logits"  # rotation head on the global-like views               [G·B, 4]


@dataclass
class StepOutputs:
    batch_size: int
    n_student_views: int
    n_teacher_views: int
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)
    targets: torch.Tensor | None = None  # int labels [G·B] or soft targets [G·B, C]
    rot_labels: torch.Tensor | None = None  # [G·B]


@dataclass
class LossContext:
    epoch: int
    step: int
    total_steps: int
    num_classes: int


class Loss(nn.Module):
    needs: frozenset[str] = frozenset()

    def forward(self, out: StepOutputs, ctx: LossContext) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def metrics(self) -> dict[str, torch.Tensor]:
        """Per-step diagnostics as detached device tensors (never .item() here)."""
        return {}


LOSSES: Registry[type[Loss]] = Registry("loss")


def build_losses(cfg: LossConfig, out_dim: int, total_epochs: int) -> nn.ModuleDict:
    return nn.ModuleDict({name: LOSSES.get(name)(cfg, out_dim=out_dim, total_epochs=total_epochs)
                          for name in cfg.enabled})


def teacher_temperature(epoch: int, cfg: LossConfig) -> float:
    """Linear warm-up from warmup_teacher_temp to teacher_temp over the warm-up epochs, then flat."""
    if epoch >= cfg.warmup_teacher_temp_epochs:
        return cfg.teacher_temp
    frac = epoch / cfg.warmup_teacher_temp_epochs
    return cfg.warmup_teacher_temp + frac * (cfg.teacher_temp - cfg.warmup_teacher_temp)


def cross_view_ce(teacher_probs: torch.Tensor, student_logp: torch.Tensor) -> torch.Tensor:
    """Mean over (teacher view i, student view v ≠ i) of the batch-mean cross-entropy.

    teacher_probs [G, B, K], student_logp [V, B, K]; teacher view i and student view i are the same
    crop, so those pairs are skipped.
    """
    g, b = teacher_probs.shape[:2]
    v = student_logp.shape[0]
    pair_ce = -torch.einsum("ibk,vbk->iv", teacher_probs, student_logp) / b  # [G, V]
    keep = torch.ones(g, v, dtype=torch.bool, device=pair_ce.device)
    keep[torch.arange(g), torch.arange(g)] = False
    return pair_ce[keep].mean()


@LOSSES.register("distill")
class DistillLoss(Loss):
    """DINO self-distillation: centred, sharpened teacher vs student on every other view."""

    needs = frozenset({STUDENT_PROJ, TEACHER_PROJ})

    def __init__(self, cfg: LossConfig, out_dim: int, total_epochs: int = 1):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("center", torch.zeros(1, out_dim))
        self._metrics: dict[str, torch.Tensor] = {}

    def forward(self, out: StepOutputs, ctx: LossContext) -> torch.Tensor:
        s = out.outputs[STUDENT_PROJ].float() / self.cfg.student_temp
        t = out.outputs[TEACHER_PROJ].float().detach()
        temp = teacher_temperature(ctx.epoch, self.cfg)
        probs = F.softmax((t - self.center) / temp, dim=-1)
        b = out.batch_size
        loss = cross_view_ce(probs.view(out.n_teacher_views, b, -1), F.log_softmax(s, dim=-1).view(out.n_student_views, b, -1))
        self._record(probs)
        self.update_center(t)
        return loss

    @torch.no_grad()
    def update_center(self, teacher_logits: torch.Tensor) -> None:
        batch_center = teacher_logits.mean(dim=0, keepdim=True)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(batch_center)
            batch_center /= torch.distributed.get_world_size()
        m = self.cfg.center_momentum
        self.center.mul_(m).add_(batch_center, alpha=1 - m)

    @torch.no_grad()
    def _record(self, probs: torch.Tensor) -> None:
        # Collapse indicators: per-sample entropy → 0 if one dimension dominates; entropy of the
        # batch mean → low if all samples map to the same output.
        ent = -(probs * probs.clamp_min(1e-12).log()).sum(-1).mean()
        mean_p = probs.mean(0)
        batch_ent = -(mean_p * mean_p.clamp_min(1e-12).log()).sum()
        self._metrics = {"teacher_entropy": ent, "teacher_batch_entropy": batch_ent}

    def metrics(self) -> dict[str, torch.Tensor]:
        return self._metrics


@LOSSES.register("supervised")
class SupervisedLoss(Loss):
    """Cross-entropy of the class prediction; soft targets (Mixup) or label smoothing."""

    needs = frozenset({CLASS_LOGITS})

    def __init__(self, cfg: LossConfig, out_dim: int = 0, total_epochs: int = 1):
        super().__init__()
        self.smoothing = cfg.label_smoothing

    def forward(self, out: StepOutputs, ctx: LossContext) -> torch.Tensor:
        logits = out.outputs[CLASS_LOGITS].float()
        targets = out.targets
        if targets is not None and targets.dim() == 2:
            return torch.sum(-targets * F.log_softmax(logits, dim=-1), dim=-1).mean()
        return F.cross_entropy(logits, targets, label_smoothing=self.smoothing)


@LOSSES.register("rotation")
class RotationLoss(Loss):
    """Cross-entropy of the 4-way rotation prediction (0°, 90°, 180°, 270°)."""

    needs = frozenset({ROT_LOGITS})

    def __init__(self, cfg: LossConfig, out_dim: int = 0, total_epochs: int = 1):
        super().__init__()

    def forward(self, out: StepOutputs, ctx: LossContext) -> torch.Tensor:
        return F.cross_entropy(out.outputs[ROT_LOGITS].float(), out.rot_labels)
