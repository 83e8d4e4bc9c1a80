"""Recipes: `tort` (the thesis's method), `sota` (the thesis's supervised baseline), and two
published supervised recipes to compare against: `augreg` (Steiner et al.) and `deit` (Touvron et
al.).

A recipe owns everything that differs between training methods: its config defaults (per mode and
per profile), its checks of a config, the training transform, and the modules it trains (a
`systems.TrainingSystem`). The trainer (`trainer.fit`) only calls the `Recipe` and
`TrainingSystem` interfaces, so a new recipe is a new registered class, never an edit of the
trainer.

This module imports no torch: building a config (`config.build_config`) asks the recipe for its
defaults and checks, and a mistake in a spec or a `--set` is reported before torch is imported.
The heavy parts (transforms, systems) are imported by the methods that build them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .registry import RECIPES

if TYPE_CHECKING:
    from .config import Resolved, RunConfig
    from .systems import TrainingSystem


@dataclass(frozen=True)
class Augmentation:
    """How training images become a batch: `transform` per image in the loader workers, `collate`
    to batch them (None: the DataLoader's default), `on_device` per batch once it is on the
    training device (None: nothing left to do)."""

    transform: Callable
    collate: Callable | None = None
    on_device: Callable | None = None


class Recipe:
    """A training method. Tort's recipes take their catalog entry (name, label, summary) from
    `catalog.RECIPE_INFO`; a plug-in's carries its own as the class attribute `info`. Its name is
    the one it is registered under."""

    def defaults(self, mode: str) -> dict[str, Any]:
        """Config values (dotted keys) of this recipe in `mode`, above the field defaults."""
        return {}

    def profile_overrides(self, profile: str, below: Resolved) -> dict[str, Any]:
        """Config values this recipe wants under `profile`, above the profile's own. `below` holds
        what the recipe's defaults and the fidelity preset resolved under the profile
        (`below.get(key)`), for a recipe that scales its own choices rather than replacing them."""
        return {}

    def normalization(self, cfg: RunConfig) -> str:
        """The mean/std (views.NORMALIZATION) of its training views, which evaluation uses too."""
        return "imagenet"

    def validate(self, cfg: RunConfig) -> None:
        """ConfigError for a config this recipe cannot train."""

    def train_transform(self, cfg: RunConfig):
        raise NotImplementedError

    def device_augmentation(self, cfg: RunConfig) -> Augmentation | None:
        """The training augmentation split for `views.augment_on=device`, or None: CPU only."""
        return None

    def build(self, cfg: RunConfig, num_classes: int, steps_per_epoch: int) -> TrainingSystem:
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# Tort

@RECIPES.register("tort")
class TortRecipe(Recipe):
    def train_transform(self, cfg: RunConfig):
        from .views import MultiCropTransform

        return MultiCropTransform(cfg.views)

    def device_augmentation(self, cfg: RunConfig) -> Augmentation:
        from .device_views import DeviceViews, MultiCropDraws, pad_collate

        return Augmentation(MultiCropDraws(cfg.views), pad_collate, DeviceViews(cfg.views, compile=cfg.compile))

    def build(self, cfg: RunConfig, num_classes: int, steps_per_epoch: int) -> TrainingSystem:
        from .systems import TortSystem

        return TortSystem(cfg, num_classes, steps_per_epoch)


# ---------------------------------------------------------------------------------------------
# Supervised recipes: one view per image, a linear head, cross-entropy (soft targets under Mixup).
# They differ only in their defaults: the thesis's baseline (sota) and two published recipes.

def milder_randaugment(policy: str, magnitude: int) -> str:
    """A timm RandAugment string with its magnitude capped at `magnitude` ('rand-m9-mstd0.5' → 'rand-m5-mstd0.5')."""
    return re.sub(r"(?<=-)m(\d+)(?=-|$)", lambda m: f"m{min(int(m.group(1)), magnitude)}", policy)


class SupervisedRecipe(Recipe):
    """The shared machinery of the supervised recipes; subclasses give `defaults`."""

    def profile_overrides(self, profile: str, below: Resolved) -> dict[str, Any]:
        if profile == "demo":
            # No longer a cool-down than the recipe's own (the thesis's baseline and augreg and deit
            # have none), a RandAugment (where the recipe and preset use one) capped at magnitude 5,
            # which 32-px digits survive, crops of at least 40% of the image (Tort's global crops
            # under the demo), and no Mixup or CutMix: with them every supervised recipe stayed at
            # chance in the demo's 4 + 1 epochs (docs/fidelity.md, "Under the demo profile").
            policy = below.get("aug.randaugment")
            lo, hi = below.get("aug.scale")
            return {"optim.cooldown_epochs": min(1, below.get("optim.cooldown_epochs")),
                    "aug.randaugment": milder_randaugment(policy, 5) if policy else policy,
                    "aug.scale": (max(lo, 0.4), hi), "aug.mixup": 0.0, "aug.cutmix": 0.0}
        if profile == "small":
            # No longer a cool-down than the recipe's own; photographs keep the recipe's RandAugment.
            return {"optim.cooldown_epochs": min(1, below.get("optim.cooldown_epochs"))}
        return {}

    def normalization(self, cfg: RunConfig) -> str:
        return cfg.aug.normalize

    def validate(self, cfg: RunConfig) -> None:
        if cfg.loss.enabled != ["supervised"]:
            raise ConfigError(f"loss.enabled: recipe '{cfg.recipe}' trains with ['supervised'] only, "
                              f"got {cfg.loss.enabled}")
        if (cfg.aug.mixup > 0 or cfg.aug.cutmix > 0) and cfg.batch_size % 2:
            raise ConfigError(f"batch_size: Mixup needs an even batch size, got {cfg.batch_size}")

    def train_transform(self, cfg: RunConfig):
        from .views import supervised_transform

        return supervised_transform(cfg.views.global_size, cfg.aug)

    def device_augmentation(self, cfg: RunConfig) -> Augmentation | None:
        if cfg.aug.reprob > 0:
            return None  # timm leaves random erasing to its prefetcher: the workers keep the whole transform
        from .device_randaugment import device_split
        from .device_views import DeviceNormalize, pad_collate
        from .views import NORMALIZATION, supervised_transform

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
        from .systems import SupervisedSystem

        return SupervisedSystem(cfg, num_classes)


_SUPERVISED = {"loss.enabled": ["supervised"], "loss.weights": {"supervised": 1.0}, "eval.knn_features": "backbone"}


@RECIPES.register("sota")
class SotaRecipe(SupervisedRecipe):
    """The thesis's baseline (§4.1: Steiner et al.'s recipe run with timm's training script), as
    its text reads; `fidelity=as_run` gives configs/01 of the original code (tort_core/fidelity.py)."""

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

    def defaults(self, mode: str) -> dict[str, Any]:
        return {
            **_SUPERVISED, "batch_size": 64, "optim.name": "adamw", "optim.lr": 5e-4 * 64 / 512,
            "optim.weight_decay": 0.05, "optim.warmup_lr": 1e-6, "optim.min_lr": 1e-5, "optim.warmup_epochs": 5,
            "optim.warmup_prefix": False, "optim.schedule_unit": "epoch", "optim.cooldown_epochs": 0,
            "optim.clip_grad": None, "model.dropout": 0.0, "model.drop_path": 0.1,
            "aug.randaugment": "rand-m9-mstd0.5-inc1", "aug.mixup": 0.8, "aug.cutmix": 1.0, "aug.reprob": 0.25,
            "aug.color_jitter": 0.3, "loss.label_smoothing": 0.1,
        }
