"""Recipe registry: `tort` (the thesis's method), `sota` (the thesis's supervised baseline), and
two published supervised recipes to compare against: `augreg` (Steiner et al.) and `deit`
(Touvron et al.).

A recipe owns everything that differs between training methods: its config defaults, the
training transform, the modules (a `TrainingSystem`), and the optimiser/schedule choices. The
trainer (`trainer.fit`) only calls the `TrainingSystem` interface, so a new recipe is a new
registered class, never an edit of the trainer.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .config import RunConfig
from .device_randaugment import device_split
from .device_views import DeviceNormalize, DeviceViews, MultiCropDraws, pad_collate
from .errors import ConfigError
from .losses import (CLASS_LOGITS, ROT_LOGITS, STUDENT_DENSE, STUDENT_PROJ, STUDENT_REGION, TEACHER_DENSE,
                     TEACHER_PROJ, TEACHER_REGION, LossContext, StepOutputs, build_losses)
from .models import (DINOHead, check_view_size, compile_module, cosine_momentum, create_backbone, ema_update,
                     embed_dim, forward_views, forward_views_regions, load_init, stepped_cosine)
from .registry import Registry
from .views import GLOBAL_LIKE, NORMALIZATION, MultiCropTransform, rotate, sample_rotations, supervised_transform


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


@dataclass(frozen=True)
class Augmentation:
    """How training images become a batch: `transform` per image in the loader workers, `collate`
    to batch them (None: the DataLoader's default), `on_device` per batch once it is on the
    training device (None: nothing left to do)."""

    transform: Callable
    collate: Callable | None = None
    on_device: Callable | None = None


class Recipe:
    name: str
    uses_aug = False  # trains on the single-view `aug` pipeline (profiles scale its RandAugment)

    def defaults(self, mode: str) -> dict[str, Any]:
        return {}

    def normalization(self, cfg: RunConfig) -> str:
        """The mean/std (views.NORMALIZATION) of its training views, which evaluation uses too."""
        return "imagenet"

    def validate(self, cfg: RunConfig) -> None:
        pass

    def train_transform(self, cfg: RunConfig):
        raise NotImplementedError

    def device_augmentation(self, cfg: RunConfig) -> Augmentation | None:
        """The training augmentation split for `views.augment_on=device`, or None: CPU only."""
        return None

    def build(self, cfg: RunConfig, num_classes: int, steps_per_epoch: int) -> TrainingSystem:
        raise NotImplementedError


RECIPES: Registry[type[Recipe]] = Registry("recipe")


def _backbone(cfg: RunConfig) -> nn.Module:
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
CROSS_VIEW = frozenset({STUDENT_PROJ, STUDENT_REGION, STUDENT_DENSE})
REGION_OUTPUTS = frozenset({STUDENT_REGION, TEACHER_REGION, STUDENT_DENSE, TEACHER_DENSE})
TEACHER_OUTPUTS = frozenset({TEACHER_PROJ, TEACHER_REGION, TEACHER_DENSE})


class TortSystem(TrainingSystem):
    def __init__(self, cfg: RunConfig, num_classes: int, steps_per_epoch: int):
        super().__init__()
        self.cfg = cfg
        backbone = _backbone(cfg)
        dim = embed_dim(backbone)
        self.student = nn.ModuleDict({"backbone": backbone, "proj": DINOHead(dim, cfg.heads)})
        self.class_head = nn.Linear(dim, num_classes)
        self.rot_head = nn.Linear(dim, 4)
        # The teacher starts as an exact copy of the student (teacher.init=copy) or as a network of
        # its own (independent: the original code), then follows the student by EMA.
        if cfg.teacher.init == "copy":
            self.teacher = copy.deepcopy(self.student)
        else:
            self.teacher = nn.ModuleDict({"backbone": _backbone(cfg), "proj": DINOHead(dim, cfg.heads)})
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        enabled = list(cfg.loss.enabled)
        self.weights = {name: cfg.loss.weights.get(name, 1.0) for name in enabled}
        if cfg.loss.keep_distill and "distill" not in enabled:
            # The original's objective ablation switched distillation off with a key its code never
            # read: distillation ran on at its code's weight, 1.0.
            enabled.append("distill")
            self.weights["distill"] = 1.0
        self.losses = build_losses(cfg.loss.model_copy(update={"enabled": enabled}), cfg.heads.out_dim,
                                   cfg.total_epochs)
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
        return nn.ModuleDict({"student": self.student, "class_head": self.class_head, "rot_head": self.rot_head})

    def training_step(self, batch, ctx: LossContext):
        views, labels = batch
        b = labels.shape[0]
        group = b if self.cfg.views.rotation_draw == "per_view_batch" else 1
        rot = sample_rotations(GLOBAL_LIKE * b, self.cfg.views.rot_prob, labels.device, group)
        global_like = [rotate(views[i], rot[i * b:(i + 1) * b]) for i in range(GLOBAL_LIKE)]
        # Supervised and rotation heads only see global-like views: skip local views when no loss
        # compares them (the supervised-only and rotation-only ablations).
        student_views = global_like + list(views[GLOBAL_LIKE:]) if self.needs & CROSS_VIEW else global_like
        emb, s_tokens, s_counts = self._encode(self.student["backbone"], student_views)
        glob = emb[: GLOBAL_LIKE * b]
        outputs: dict[str, torch.Tensor] = {}
        if STUDENT_PROJ in self.needs:
            outputs[STUDENT_PROJ] = self.student["proj"](emb)[0]
        if STUDENT_REGION in self.needs:
            outputs[STUDENT_REGION] = s_tokens
        if STUDENT_DENSE in self.needs:
            outputs[STUDENT_DENSE] = self.student["dense"](s_tokens)[0]
        if CLASS_LOGITS in self.needs:
            outputs[CLASS_LOGITS] = self.class_head(glob)
        if ROT_LOGITS in self.needs:
            outputs[ROT_LOGITS] = self.rot_head(glob)
        if self.needs & TEACHER_OUTPUTS:
            teacher_views = global_like if self.cfg.views.teacher_rotated else list(views[:GLOBAL_LIKE])
            with torch.no_grad():
                t_emb, t_tokens, t_counts = self._encode(self.teacher["backbone"], teacher_views)
                if TEACHER_PROJ in self.needs:
                    outputs[TEACHER_PROJ] = self.teacher["proj"](t_emb)[0]
                if TEACHER_REGION in self.needs:
                    outputs[TEACHER_REGION] = t_tokens
                if TEACHER_DENSE in self.needs:
                    outputs[TEACHER_DENSE] = self.teacher["dense"](t_tokens)[0]
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


@RECIPES.register("tort")
class TortRecipe(Recipe):
    name = "tort"

    def train_transform(self, cfg: RunConfig):
        return MultiCropTransform(cfg.views)

    def device_augmentation(self, cfg: RunConfig) -> Augmentation:
        return Augmentation(MultiCropDraws(cfg.views), pad_collate, DeviceViews(cfg.views, compile=cfg.compile))

    def build(self, cfg: RunConfig, num_classes: int, steps_per_epoch: int) -> TrainingSystem:
        return TortSystem(cfg, num_classes, steps_per_epoch)


# ---------------------------------------------------------------------------------------------
# Supervised recipes: one view per image, a linear head, cross-entropy (soft targets under Mixup).
# They differ only in their defaults: the thesis's baseline (sota) and two published recipes.

class SupervisedSystem(TrainingSystem):
    def __init__(self, cfg: RunConfig, num_classes: int):
        super().__init__()
        self.cfg = cfg
        self.backbone = _backbone(cfg)
        # Dropout is the backbone's (model.dropout at model.dropout_at); the head adds none.
        self.head = nn.Linear(embed_dim(self.backbone), num_classes)
        self.losses = build_losses(cfg.loss, num_classes, cfg.total_epochs)
        self.mixup = None
        if cfg.aug.mixup > 0 or cfg.aug.cutmix > 0:
            from timm.data import Mixup

            self.mixup = Mixup(mixup_alpha=cfg.aug.mixup, cutmix_alpha=cfg.aug.cutmix,
                               label_smoothing=cfg.loss.label_smoothing, num_classes=num_classes)

    def trainable(self) -> nn.Module:
        return nn.ModuleDict({"backbone": self.backbone, "head": self.head})

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


class SupervisedRecipe(Recipe):
    """The shared machinery of the supervised recipes; subclasses give `defaults`."""

    uses_aug = True

    def normalization(self, cfg: RunConfig) -> str:
        return cfg.aug.normalize

    def validate(self, cfg: RunConfig) -> None:
        if cfg.loss.enabled != ["supervised"]:
            raise ConfigError(f"loss.enabled: recipe '{self.name}' trains with ['supervised'] only, "
                              f"got {cfg.loss.enabled}")
        if (cfg.aug.mixup > 0 or cfg.aug.cutmix > 0) and cfg.batch_size % 2:
            raise ConfigError(f"batch_size: Mixup needs an even batch size, got {cfg.batch_size}")

    def train_transform(self, cfg: RunConfig):
        return supervised_transform(cfg.views.global_size, cfg.aug)

    def device_augmentation(self, cfg: RunConfig) -> Augmentation | None:
        if cfg.aug.reprob > 0:
            return None  # timm leaves random erasing to its prefetcher: the workers keep the whole transform
        transform = supervised_transform(cfg.views.global_size, cfg.aug, uint8=True)
        # Eagerly, RandAugment's warps (16 taps per pixel, each its own float64 kernels) write ≈ 23 GB
        # per batch of 64 at 224 px (counted op by op on the meta device); compiled, they fuse. So `auto`
        # moves RandAugment only into a compiled run; `device` always does. The device RandAugment
        # normalises with ImageNet's mean/std.
        full = (cfg.views.augment_on == "device" or cfg.compile) and cfg.aug.normalize == "imagenet"
        split = device_split(transform, compile=cfg.compile) if full else None
        if split is None:  # or a policy with an op that has no device version: only normalising moves
            return Augmentation(transform, None, DeviceNormalize(*NORMALIZATION[cfg.aug.normalize]))
        draws, on_device = split
        return Augmentation(draws, pad_collate, on_device)

    def build(self, cfg: RunConfig, num_classes: int, steps_per_epoch: int) -> TrainingSystem:
        return SupervisedSystem(cfg, num_classes)


_SUPERVISED = {"loss.enabled": ["supervised"], "loss.weights": {"supervised": 1.0}, "eval.knn_features": "backbone"}


@RECIPES.register("sota")
class SotaRecipe(SupervisedRecipe):
    """The thesis's baseline (§4.1: Steiner et al.'s recipe run with timm's training script), as
    its text reads; `fidelity=as_run` gives configs/01 of the original code (tort_core/fidelity.py)."""

    name = "sota"

    def defaults(self, mode: str) -> dict[str, Any]:
        base = {
            **_SUPERVISED, "batch_size": 64, "optim.name": "adam", "optim.lr": 3e-3, "optim.warmup_lr": 1e-6,
            "optim.warmup_epochs": 3, "optim.cooldown_epochs": 0, "optim.weight_decay": 0.1,
            "optim.clip_grad": 1.0, "model.dropout": 0.1, "model.dropout_at": "blocks", "model.drop_path": 0.1,
            "loss.label_smoothing": 0.0,
        }
        if mode == "finetune":
            base.update({"optim.name": "momentum", "optim.lr": 1e-3, "optim.momentum": 0.9, "optim.weight_decay": 0.0})
        return base


@RECIPES.register("augreg")
class AugRegRecipe(SupervisedRecipe):
    """Steiner et al., "How to train your ViT?" (2021), as published for ViT-B/16 trained from
    scratch on ImageNet-1k, the smallest data the paper trains on (big_vision configs/vit_i1k.py:
    aug medium2, with its dropout and stochastic depth): Adam with decoupled weight decay 0.1 in the
    paper's sense (big_vision's wd = 0.1 · lr: torch AdamW's weight_decay), gradient clipping at 1,
    linear warm-up from 0 and cosine decay to 0 per step, dropout 0.1 in the blocks, stochastic depth
    0.1, RandAugment(2, 15) as TensorFlow's (every chosen op applied, magnitude not clipped at 10),
    Mixup α 0.5, inputs in [-1, 1]. docs/fidelity.md lists what stays different (batch size,
    softmax instead of sigmoid cross-entropy, TF RandAugment's Cutout)."""

    name = "augreg"

    def defaults(self, mode: str) -> dict[str, Any]:
        base = {
            **_SUPERVISED, "batch_size": 64, "optim.name": "adamw", "optim.lr": 1e-3, "optim.weight_decay": 0.1,
            "optim.betas": (0.9, 0.999), "optim.warmup_lr": 0.0, "optim.min_lr": 0.0, "optim.warmup_epochs": 10,
            "optim.cooldown_epochs": 0, "optim.clip_grad": 1.0, "model.dropout": 0.1, "model.dropout_at": "blocks",
            "model.drop_path": 0.1, "aug.randaugment": "rand-m15-n2-mmax15-p1.0", "aug.mixup": 0.5,
            "aug.scale": (0.05, 1.0), "aug.interpolation": "bilinear", "aug.normalize": "inception",
            "aug.color_jitter": 0.0, "loss.label_smoothing": 0.0,
        }
        if mode == "finetune":
            # The paper's transfer recipe (vision_transformer: configs/augreg.py, configs/common.py,
            # train.py): SGD with momentum 0.9, lr 0.03, no weight decay, clipping at 1, no dropout.
            base.update({"optim.name": "momentum", "optim.lr": 0.03, "optim.weight_decay": 0.0, "model.dropout": 0.0,
                         "model.drop_path": 0.0, "aug.randaugment": None, "aug.mixup": 0.0})
        return base


@RECIPES.register("deit")
class DeitRecipe(SupervisedRecipe):
    """Touvron et al., DeiT (2021), main.py's defaults: AdamW lr 5e-4 · batch/512 (its linear scaling
    rule), weight decay 0.05, 5 warm-up epochs from 1e-6, cosine to 1e-5 stepped per epoch, no
    cool-down epochs (main.py never runs them), no dropout, stochastic depth 0.1, RandAugment
    m9-mstd0.5-inc1, Mixup 0.8 / CutMix 1.0, label smoothing 0.1, random erasing 0.25, no clipping.
    Not reproduced: repeated augmentation (a multi-process sampler) and EMA (off by default)."""

    name = "deit"

    def defaults(self, mode: str) -> dict[str, Any]:
        return {
            **_SUPERVISED, "batch_size": 64, "optim.name": "adamw", "optim.lr": 5e-4 * 64 / 512,
            "optim.weight_decay": 0.05, "optim.warmup_lr": 1e-6, "optim.min_lr": 1e-5, "optim.warmup_epochs": 5,
            "optim.warmup_prefix": False, "optim.schedule_unit": "epoch", "optim.cooldown_epochs": 0,
            "optim.clip_grad": None, "model.dropout": 0.0, "model.drop_path": 0.1,
            "aug.randaugment": "rand-m9-mstd0.5-inc1", "aug.mixup": 0.8, "aug.cutmix": 1.0, "aug.reprob": 0.25,
            "aug.color_jitter": 0.3, "loss.label_smoothing": 0.1,
        }
