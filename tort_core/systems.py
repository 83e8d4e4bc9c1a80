"""Training systems: the modules a recipe builds and the trainer drives (`TrainingSystem`).

`TortSystem` is the thesis's method (student and EMA teacher with a DINO head, class and rotation
heads, multi-crop views); `SupervisedSystem` a backbone and a linear head (sota, augreg, deit). A system computes
the model outputs its losses ask for (`losses.py` names them), passes them to the losses and sums
the weighted results; which losses run is the config's (`loss.enabled`).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from .config import RunConfig
from .losses import (CLASS_LOGITS, ROT_LOGITS, STUDENT_DENSE, STUDENT_EMBED, STUDENT_PROJ, STUDENT_REGION,
                     TEACHER_DENSE, TEACHER_EMBED, TEACHER_PROJ, TEACHER_REGION, LossContext, StepOutputs,
                     build_losses)
from .models import (DINOHead, check_view_size, compile_module, cosine_momentum, create_backbone, ema_update,
                     embed_dim, forward_views, forward_views_regions, load_init, stepped_cosine)
from .views import GLOBAL_LIKE, rotate, sample_rotations


class TrainingSystem(nn.Module):
    """What the trainer drives. Subclasses implement the four methods below."""

    def trainable(self) -> nn.Module:
        """The module whose parameters the optimiser updates."""
        raise NotImplementedError

    def training_step(self, batch: Any, ctx: LossContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss and per-step metrics (detached device tensors)."""
        raise NotImplementedError

    def after_optimizer_step(self, ctx: LossContext) -> dict[str, float]:
        """Hook after each optimiser step (EMA); returns scalars to record (e.g. momentum)."""
        return {}

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(class logits, k-NN features) for evaluation images."""
        raise NotImplementedError


def build_backbone(cfg: RunConfig) -> nn.Module:
    """The run's timm backbone: built, initialised from `model.init` if given, compiled if asked."""
    backbone = create_backbone(cfg.model, cfg.views.global_size)
    if cfg.model.init is not None:
        load_init(backbone, cfg.model.init)
    if cfg.compile:
        compile_module(backbone, cfg.compile_random)
    return backbone


# ---------------------------------------------------------------------------------------------
# Tort

# Outputs computed from every student view (global-like and local), and those that need the
# backbone's region tokens rather than only its pooled embedding.
CROSS_VIEW = frozenset({STUDENT_PROJ, STUDENT_EMBED, STUDENT_REGION, STUDENT_DENSE})
REGION_OUTPUTS = frozenset({STUDENT_REGION, TEACHER_REGION, STUDENT_DENSE, TEACHER_DENSE})
TEACHER_OUTPUTS = frozenset({TEACHER_PROJ, TEACHER_EMBED, TEACHER_REGION, TEACHER_DENSE})


class TortSystem(TrainingSystem):
    def __init__(self, cfg: RunConfig, num_classes: int, steps_per_epoch: int):
        super().__init__()
        self.cfg = cfg
        backbone = build_backbone(cfg)
        dim = embed_dim(backbone)
        self.student = nn.ModuleDict({"backbone": backbone, "proj": DINOHead(dim, cfg.heads)})
        self.class_head = nn.Linear(dim, num_classes)
        self.rot_head = nn.Linear(dim, 4)
        # The teacher starts as an exact copy of the student (teacher.init=copy) or as a network of
        # its own (independent: the original code), then follows the student by EMA.
        if cfg.teacher.init == "copy":
            self.teacher = copy.deepcopy(self.student)
        else:
            self.teacher = nn.ModuleDict({"backbone": build_backbone(cfg), "proj": DINOHead(dim, cfg.heads)})
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        enabled = list(cfg.loss.enabled)
        self.weights = {name: cfg.loss.weights.get(name, 1.0) for name in enabled}
        if cfg.loss.keep_distill and "distill" not in enabled:
            # The original's objective ablation switched distillation off with a key its code never
            # read: distillation ran on at its code's weight, 1.0.
            enabled.append("distill")
            self.weights["distill"] = 1.0
        self.losses = build_losses(cfg, num_classes, enabled=enabled)
        self.needs = frozenset().union(*(loss.needs for loss in self.losses.values()))
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = cfg.total_epochs * steps_per_epoch
        if self.needs & {STUDENT_DENSE, TEACHER_DENSE}:
            # EsViT's dense head: the view-level head's shape, its own parameters, and a teacher copy
            # that follows by the same EMA. Built last so that the other modules' random init (and so
            # every run without the region loss) stays as it was.
            self.student["dense"] = DINOHead(dim, cfg.heads)
            teacher_dense = copy.deepcopy(self.student["dense"]) if cfg.teacher.init == "copy" else \
                DINOHead(dim, cfg.heads)
            self.teacher["dense"] = teacher_dense.requires_grad_(False)
        check_view_size(backbone, cfg.views.global_size, "views.global_size")
        if cfg.views.n_local and self.needs & CROSS_VIEW:
            check_view_size(backbone, cfg.views.local_size, "views.local_size")

    def train(self, mode: bool = True) -> TortSystem:
        super().train(mode)
        self.teacher.eval()  # the teacher never uses dropout or stochastic depth
        return self

    def trainable(self) -> nn.Module:
        # Built on demand: registering it as a child would store every tensor twice in state_dict.
        # The losses' own parameters (none in tort's losses) train with the student.
        return nn.ModuleDict({"student": self.student, "class_head": self.class_head, "rot_head": self.rot_head,
                              "losses": self.losses})

    def training_step(self, batch, ctx: LossContext):
        views, labels = batch
        b = labels.shape[0]
        group = b if self.cfg.views.rotation_draw == "per_view_batch" else 1
        rot = sample_rotations(GLOBAL_LIKE * b, self.cfg.views.rot_prob, labels.device, group)
        global_like = [rotate(views[i], rot[i * b:(i + 1) * b]) for i in range(GLOBAL_LIKE)]
        # Supervised and rotation heads only see global-like views: skip local views when no loss
        # compares them (the supervised-only and rotation-only ablations).
        student_views = global_like + list(views[GLOBAL_LIKE:]) if self.needs & CROSS_VIEW else global_like
        teacher_views = global_like if self.cfg.views.teacher_rotated else list(views[:GLOBAL_LIKE])
        outputs, s_counts, t_counts = self.outputs(student_views, teacher_views, b)
        out = StepOutputs(batch_size=b, n_student_views=len(student_views), n_teacher_views=GLOBAL_LIKE,
                          outputs=outputs, targets=labels.repeat(GLOBAL_LIKE), rot_labels=rot,
                          student_regions=tuple(s_counts),
                          teacher_regions=tuple(t_counts) if self.needs & TEACHER_OUTPUTS else ())
        total = torch.zeros((), device=labels.device)
        metrics: dict[str, torch.Tensor] = {}
        for name, loss_fn in self.losses.items():
            value = loss_fn(out, ctx)
            total = total + self.weights[name] * value
            metrics[f"loss_{name}"] = value.detach()
            metrics.update(loss_fn.metrics())
        if CLASS_LOGITS in outputs:
            metrics["train_top1"] = (outputs[CLASS_LOGITS].argmax(-1) == out.targets).float().mean()
        return total, metrics

    def outputs(self, student_views: list[torch.Tensor], teacher_views: list[torch.Tensor], b: int):
        """The outputs the losses need (`self.needs`), by name, and the region-token count of each
        student and teacher view. The one place an output is computed: a new one, for a loss that
        cannot build it from these, is one more entry here (and its name in losses.py)."""
        emb, s_tokens, s_counts = self._encode(self.student["backbone"], student_views)
        glob = emb[: GLOBAL_LIKE * b]
        outputs: dict[str, torch.Tensor] = {}
        if STUDENT_PROJ in self.needs:
            outputs[STUDENT_PROJ] = self.student["proj"](emb)[0]
        if STUDENT_EMBED in self.needs:
            outputs[STUDENT_EMBED] = emb
        if STUDENT_REGION in self.needs:
            outputs[STUDENT_REGION] = s_tokens
        if STUDENT_DENSE in self.needs:
            outputs[STUDENT_DENSE] = self.student["dense"](s_tokens)[0]
        if CLASS_LOGITS in self.needs:
            outputs[CLASS_LOGITS] = self.class_head(glob)
        if ROT_LOGITS in self.needs:
            outputs[ROT_LOGITS] = self.rot_head(glob)
        t_counts: list[int] = []
        if self.needs & TEACHER_OUTPUTS:
            with torch.no_grad():
                t_emb, t_tokens, t_counts = self._encode(self.teacher["backbone"], teacher_views)
                if TEACHER_PROJ in self.needs:
                    outputs[TEACHER_PROJ] = self.teacher["proj"](t_emb)[0]
                if TEACHER_EMBED in self.needs:
                    outputs[TEACHER_EMBED] = t_emb
                if TEACHER_REGION in self.needs:
                    outputs[TEACHER_REGION] = t_tokens
                if TEACHER_DENSE in self.needs:
                    outputs[TEACHER_DENSE] = self.teacher["dense"](t_tokens)[0]
        return outputs, s_counts, t_counts

    def _encode(self, backbone: nn.Module, views: list[torch.Tensor]):
        """Pooled embeddings, plus region tokens and per-view token counts when a loss needs them."""
        if self.needs & REGION_OUTPUTS:
            return forward_views_regions(backbone, views)
        return forward_views(backbone, views), None, []

    def after_optimizer_step(self, ctx: LossContext) -> dict[str, float]:
        t = self.cfg.teacher
        if t.momentum_index == "batch_in_epoch":
            # The original: DINO's schedule over epochs × steps values, read at the batch's index in
            # its epoch, so every epoch repeats the first epoch's (≈ t.momentum) values.
            batch = ctx.step - ctx.epoch * self.steps_per_epoch
            m = stepped_cosine(batch, self.cfg.epochs * self.steps_per_epoch, t.momentum, t.final_momentum)
        else:
            m = cosine_momentum(ctx.step, self.total_steps, t.momentum, t.final_momentum)
        if not hasattr(self, "_ema_pairs"):
            self._ema_pairs = (list(self.teacher.parameters()), list(self.student.parameters()))
        ema_update(*self._ema_pairs, m)
        return {"momentum": m}

    @torch.no_grad()
    def embed(self, x):
        emb = self.student["backbone"](x)
        kind = self.cfg.eval.knn_features
        feats = emb if kind == "backbone" else self.student["proj"](emb)[0 if kind == "logits" else 1]
        return self.class_head(emb), feats


# ---------------------------------------------------------------------------------------------
# Supervised recipes (sota, augreg, deit): one view per image, a linear head, cross-entropy (soft
# targets under Mixup/CutMix).

class SupervisedSystem(TrainingSystem):
    def __init__(self, cfg: RunConfig, num_classes: int):
        super().__init__()
        self.cfg = cfg
        self.backbone = build_backbone(cfg)
        # Dropout is the backbone's (model.dropout at model.dropout_at); the head adds none.
        self.head = nn.Linear(embed_dim(self.backbone), num_classes)
        self.losses = build_losses(cfg, num_classes)
        self.mixup = None
        if cfg.aug.mixup > 0 or cfg.aug.cutmix > 0:
            from timm.data import Mixup

            self.mixup = Mixup(mixup_alpha=cfg.aug.mixup, cutmix_alpha=cfg.aug.cutmix,
                               label_smoothing=cfg.loss.label_smoothing, num_classes=num_classes)

    def trainable(self) -> nn.Module:
        return nn.ModuleDict({"backbone": self.backbone, "head": self.head, "losses": self.losses})

    def training_step(self, batch, ctx: LossContext):
        x, y = batch
        targets = y
        if self.mixup is not None:
            x, targets = self.mixup(x, y)
        logits = self.head(self.backbone(x))
        out = StepOutputs(batch_size=y.shape[0], n_student_views=1, n_teacher_views=0,
                          outputs={CLASS_LOGITS: logits}, targets=targets)
        loss = self.losses["supervised"](out, ctx)
        return loss, {"loss_supervised": loss.detach(),
                      "train_top1": (logits.argmax(-1) == y).float().mean()}

    @torch.no_grad()
    def embed(self, x):
        emb = self.backbone(x)
        return self.head(emb), emb
