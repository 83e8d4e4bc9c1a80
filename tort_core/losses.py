"""Losses: distillation (DINO-style), supervised CE, rotation CE, region distillation (EsViT).

A loss is an `nn.Module` with explicit constructor arguments (each described under `Args:`),
registered by name in `registry.LOSSES`. Its classmethod `from_config` is the one place where the
run configuration becomes those arguments; `build_losses` calls it for every enabled loss.

A loss declares the model outputs it `needs` (the names below); the recipe computes only those, so
a disabled loss costs nothing and its head gets no gradient. Adding a loss means registering a
class (here, in its own module listed in `catalog.py`, or in another package through an entry
point); neither the trainer nor the recipe changes, as long as the loss is built from the outputs
listed here. A loss may hold parameters of its own (a predictor head on the embeddings, say): they
are trained with the student. A new output that needs the backbone's internals or a head that
the teacher must follow is added where the outputs are computed: `systems.TortSystem.outputs`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from .registry import LOSSES

if TYPE_CHECKING:
    from .config import RunConfig

# Output names a loss can ask for.
STUDENT_PROJ = "student_proj"  # contrastive-head logits of the student, all views   [V·B, K]
TEACHER_PROJ = "teacher_proj"  # contrastive-head logits of the teacher, global-like [G·B, K]
STUDENT_EMBED = "student_embed"  # pooled backbone embeddings of the student, all views [V·B, D]
TEACHER_EMBED = "teacher_embed"  # pooled backbone embeddings of the teacher, global-like [G·B, D]
CLASS_LOGITS = "class_logits"  # supervised head on the global-like views           [G·B, C]
ROT_LOGITS = "rot_logits"  # rotation head on the global-like views               [G·B, 4]
# Region level: one row per spatial token, view-major (view, sample, token); views differ in their
# token count T_v (StepOutputs.student_regions / teacher_regions).
STUDENT_REGION = "student_region"  # backbone region features of the student, all views [Σ_v B·T_v, D]
TEACHER_REGION = "teacher_region"  # backbone region features of the teacher            [Σ_g B·T_g, D]
STUDENT_DENSE = "student_dense"  # dense-head logits of the student's regions          [Σ_v B·T_v, K]
TEACHER_DENSE = "teacher_dense"  # dense-head logits of the teacher's regions          [Σ_g B·T_g, K]


@dataclass
class StepOutputs:
    batch_size: int
    n_student_views: int
    n_teacher_views: int
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)
    targets: torch.Tensor | None = None  # int labels [G·B] or soft targets [G·B, C]
    rot_labels: torch.Tensor | None = None  # [G·B]
    student_regions: tuple[int, ...] = ()  # T_v, region tokens of each student view
    teacher_regions: tuple[int, ...] = ()  # T_g, region tokens of each teacher view


@dataclass
class LossContext:
    epoch: int
    step: int
    total_steps: int
    num_classes: int


class Loss(nn.Module):
    needs: frozenset[str] = frozenset()

    @classmethod
    def from_config(cls, cfg: RunConfig, num_classes: int) -> Loss:
        """This loss for a run of `cfg` (`num_classes`: the dataset's). A loss without arguments
        needs no override."""
        return cls()

    def forward(self, out: StepOutputs, ctx: LossContext) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def metrics(self) -> dict[str, torch.Tensor]:
        """Per-step diagnostics as detached device tensors (never .item() here)."""
        return {}


def build_losses(cfg: RunConfig, num_classes: int, enabled: list[str] | None = None) -> nn.ModuleDict:
    """The losses `enabled` (default: `loss.enabled`), by name and in that order, each built from
    `cfg` by its `from_config`."""
    return nn.ModuleDict({name: LOSSES.get(name).from_config(cfg, num_classes)
                          for name in (cfg.loss.enabled if enabled is None else enabled)})


def teacher_temperature(epoch: int, teacher_temp: float, warmup_teacher_temp: float,
                        warmup_teacher_temp_epochs: int) -> float:
    """DINO's schedule (main_dino.py's np.linspace): over the W = warmup_teacher_temp_epochs first
    epochs, linear from warmup_teacher_temp at epoch 0 to teacher_temp at epoch W − 1, then flat."""
    w = warmup_teacher_temp_epochs
    if epoch >= w:
        return teacher_temp
    frac = epoch / (w - 1) if w > 1 else 0.0  # linspace(a, b, 1) is [a]
    return warmup_teacher_temp + frac * (teacher_temp - warmup_teacher_temp)


def cross_view_ce(teacher_probs: torch.Tensor, student_logp: torch.Tensor) -> torch.Tensor:
    """Mean over (teacher view i, student view v ≠ i) of the batch-mean cross-entropy.

    teacher_probs [G, B, K], student_logp [V, B, K]; teacher view i and student view i are the same
    crop, so those pairs are skipped.
    """
    g, b = teacher_probs.shape[:2]
    v = student_logp.shape[0]
    pair_ce = -torch.einsum("ibk,vbk->iv", teacher_probs, student_logp) / b  # [G, V]
    # Zero the same-crop pairs and divide by the pair count known on the host: a boolean-mask
    # index (pair_ce[keep]) needs its output size on the host, a device sync every step.
    same = torch.eye(g, v, dtype=torch.bool, device=pair_ce.device)
    return pair_ce.masked_fill(same, 0.0).sum() / (g * v - g)


@LOSSES.register("distill")
class DistillLoss(Loss):
    """DINO self-distillation: centred, sharpened teacher vs student on every other view.

    Args:
        out_dim: width of the projection head's output (the size of the centre).
        student_temp: temperature of the student's softmax.
        teacher_temp: temperature of the teacher's softmax after the warm-up.
        warmup_teacher_temp: the teacher's temperature at epoch 0.
        warmup_teacher_temp_epochs: W, the epochs of linear warm-up from `warmup_teacher_temp` at
            epoch 0 to `teacher_temp` at epoch W − 1 (DINO's linspace; 0: `teacher_temp` throughout).
        center_momentum: momentum of the centre's EMA of the teacher's batch means.
    """

    needs = frozenset({STUDENT_PROJ, TEACHER_PROJ})

    def __init__(self, out_dim: int, student_temp: float = 0.1, teacher_temp: float = 0.04,
                 warmup_teacher_temp: float = 0.04, warmup_teacher_temp_epochs: int = 0,
                 center_momentum: float = 0.9):
        super().__init__()
        self.student_temp = student_temp
        self.teacher_temp = teacher_temp
        self.warmup_teacher_temp = warmup_teacher_temp
        self.warmup_teacher_temp_epochs = warmup_teacher_temp_epochs
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))
        self._metrics: dict[str, torch.Tensor] = {}

    @classmethod
    def from_config(cls, cfg: RunConfig, num_classes: int) -> DistillLoss:
        lc = cfg.loss
        return cls(out_dim=cfg.heads.out_dim, student_temp=lc.student_temp, teacher_temp=lc.teacher_temp,
                   warmup_teacher_temp=lc.warmup_teacher_temp, warmup_teacher_temp_epochs=lc.warmup_teacher_temp_epochs,
                   center_momentum=lc.center_momentum)

    def teacher_temperature(self, epoch: int) -> float:
        return teacher_temperature(epoch, self.teacher_temp, self.warmup_teacher_temp, self.warmup_teacher_temp_epochs)

    def forward(self, out: StepOutputs, ctx: LossContext) -> torch.Tensor:
        s = out.outputs[STUDENT_PROJ].float() / self.student_temp
        t = out.outputs[TEACHER_PROJ].float().detach()
        probs = F.softmax((t - self.center) / self.teacher_temperature(ctx.epoch), dim=-1)
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
        m = self.center_momentum
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
    """Cross-entropy of the class prediction; soft targets (Mixup) or label smoothing.

    Args:
        label_smoothing: weight of the uniform distribution mixed into hard targets (ignored for
            soft targets, which carry their own smoothing).
    """

    needs = frozenset({CLASS_LOGITS})

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.smoothing = label_smoothing

    @classmethod
    def from_config(cls, cfg: RunConfig, num_classes: int) -> SupervisedLoss:
        return cls(label_smoothing=cfg.loss.label_smoothing)

    def forward(self, out: StepOutputs, ctx: LossContext) -> torch.Tensor:
        logits = out.outputs[CLASS_LOGITS].float()
        targets = out.targets
        if targets is not None and targets.dim() == 2:
            return torch.sum(-targets * F.log_softmax(logits, dim=-1), dim=-1).mean()
        return F.cross_entropy(logits, targets, label_smoothing=self.smoothing)


@LOSSES.register("rotation")
class RotationLoss(Loss):
    """Cross-entropy of the 4-way rotation prediction (0°, 90°, 180°, 270°). No arguments."""

    needs = frozenset({ROT_LOGITS})

    def forward(self, out: StepOutputs, ctx: LossContext) -> torch.Tensor:
        return F.cross_entropy(out.outputs[ROT_LOGITS].float(), out.rot_labels)


# ---------------------------------------------------------------------------------------------
# Region level (EsViT's L_R)

def match_regions(student_feats: torch.Tensor, teacher_feats: torch.Tensor) -> torch.Tensor:
    """For each student region, the index of the teacher region with the highest cosine similarity.

    student_feats [..., Ts, D], teacher_feats [..., Tt, D] (leading dims broadcast) → [..., Ts].
    In float32: bf16 rounding would turn near-ties into arbitrary matches.
    """
    s = F.normalize(student_feats.float(), dim=-1)
    t = F.normalize(teacher_feats.float(), dim=-1)
    return (s @ t.transpose(-1, -2)).argmax(dim=-1)


def matched_ce(teacher_probs: torch.Tensor, student_logp: torch.Tensor, match: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each student region against the teacher region it was matched to.

    teacher_probs [..., Tt, K], student_logp [..., Ts, K], match [..., Ts] → [..., Ts].
    """
    lead = match.shape[:-1]
    probs = teacher_probs.expand(*lead, *teacher_probs.shape[-2:])
    idx = match.unsqueeze(-1).expand(*match.shape, probs.shape[-1])
    return -(torch.gather(probs, -2, idx) * student_logp).sum(dim=-1)


def split_regions(rows: torch.Tensor, counts: tuple[int, ...], batch_size: int) -> list[tuple[int, torch.Tensor]]:
    """View-major region rows → [(first view, [n_views, B, T, ·])], one entry per run of views that
    share a token count (i.e. a resolution), so each run is handled in one batched op."""
    out: list[tuple[int, torch.Tensor]] = []
    start, row = 0, 0
    for i in range(1, len(counts) + 1):
        if i == len(counts) or counts[i] != counts[start]:
            n, t = i - start, counts[start]
            out.append((start, rows[row:row + n * batch_size * t].reshape(n, batch_size, t, -1)))
            row += n * batch_size * t
            start = i
    return out


@LOSSES.register("region")
class RegionLoss(DistillLoss):
    """EsViT's region-level distillation L_R.

    Each student region is matched to the teacher region (same teacher view) whose *backbone*
    feature is most cosine-similar, as EsViT matches on the backbone's region features; the
    cross-entropy is taken between the dense head's outputs of the two regions: the teacher's
    centred and sharpened (its own centre, the view-level temperatures and schedule), the
    student's at the student temperature. It is averaged over the student's regions, the batch and
    the view-level loss's pairs (every teacher view vs every *other* student view). The matching
    is a hard assignment: gradients reach the student only through its dense-head logits, and
    through them its backbone.

    Args: those of `DistillLoss`, which it shares (`out_dim` is the dense head's width, the same
    as the projection head's).
    """

    needs = frozenset({STUDENT_REGION, TEACHER_REGION, STUDENT_DENSE, TEACHER_DENSE})

    def forward(self, out: StepOutputs, ctx: LossContext) -> torch.Tensor:
        b = out.batch_size
        t_logits = out.outputs[TEACHER_DENSE].float().detach()
        probs = F.softmax((t_logits - self.center) / self.teacher_temperature(ctx.epoch), dim=-1)
        logp = F.log_softmax(out.outputs[STUDENT_DENSE].float() / self.student_temp, dim=-1)
        s_feats = out.outputs[STUDENT_REGION].detach()
        t_feats = out.outputs[TEACHER_REGION].detach()
        teacher_views = [(first + k, feats[k], p[k])
                         for (first, feats), (_, p) in zip(split_regions(t_feats, out.teacher_regions, b),
                                                           split_regions(probs, out.teacher_regions, b))
                         for k in range(feats.shape[0])]
        student_runs = list(zip(split_regions(s_feats, out.student_regions, b),
                                split_regions(logp, out.student_regions, b)))
        pair_losses = []
        for i, t_feat, t_probs in teacher_views:
            for (first, s_feat), (_, s_logp) in student_runs:
                # All student views of one resolution against teacher view i at once: [n, B, Ts].
                ce = matched_ce(t_probs, s_logp, match_regions(s_feat, t_feat)).mean(dim=(1, 2))
                keep = [k for k in range(ce.shape[0]) if first + k != i]  # same crop: no pair
                pair_losses.append(ce[keep])
        loss = torch.cat(pair_losses).mean()
        self.update_center(t_logits)
        return loss
