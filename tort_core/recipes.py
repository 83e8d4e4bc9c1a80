"""Recipes: `tort` (the thesis's method) and `sota` (Steiner et al.'s supervised baseline).

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

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .registry import RECIPES

if TYPE_CHECKING:
    from .config import RunConfig
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

    def profile_overrides(self, profile: str) -> dict[str, Any]:
        """Config values this recipe wants under `profile`, above the profile's own."""
        return {}

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
# sota: supervised ViT training after Steiner et al., as run by the thesis with timm's script

@RECIPES.register("sota")
class SotaRecipe(Recipe):
    def defaults(self, mode: str) -> dict[str, Any]:
        base = {
            "batch_size": 64, "optim.name": "adam", "optim.lr": 3e-3, "optim.warmup_lr": 1e-6,
            "optim.warmup_epochs": 3, "optim.cooldown_epochs": 0, "optim.weight_decay": 0.1,
            "optim.clip_grad": 1.0, "model.dropout": 0.1, "model.drop_path": 0.1,
            "loss.enabled": ["supervised"], "loss.weights": {"supervised": 1.0},
            "loss.label_smoothing": 0.0, "eval.knn_features": "backbone",
        }
        if mode == "finetune":
            base.update({"optim.name": "momentum", "optim.lr": 1e-3, "optim.momentum": 0.9, "optim.weight_decay": 0.0})
        return base

    def profile_overrides(self, profile: str) -> dict[str, Any]:
        if profile == "demo":
            # As in the thesis, the baseline has no cool-down; RandAugment is milder on 32-px digits.
            return {"optim.cooldown_epochs": 0, "aug.randaugment": "rand-m5-mstd0.5"}
        return {}

    def validate(self, cfg: RunConfig) -> None:
        if cfg.loss.enabled != ["supervised"]:
            raise ConfigError(f"loss.enabled: recipe 'sota' trains with ['supervised'] only, got {cfg.loss.enabled}")
        if (cfg.aug.mixup > 0 or cfg.aug.cutmix > 0) and cfg.batch_size % 2:
            raise ConfigError(f"batch_size: Mixup needs an even batch size, got {cfg.batch_size}")

    def train_transform(self, cfg: RunConfig):
        from .views import supervised_transform

        return supervised_transform(cfg.views.global_size, cfg.aug)

    def device_augmentation(self, cfg: RunConfig) -> Augmentation:
        from .device_randaugment import device_split
        from .device_views import DeviceNormalize, pad_collate
        from .views import supervised_transform

        transform = supervised_transform(cfg.views.global_size, cfg.aug, uint8=True)
        # Eagerly, RandAugment's warps (16 taps per pixel, each its own float64 kernels) write ≈ 23 GB
        # per batch of 64 at 224 px (counted op by op on the meta device); compiled, they fuse. So `auto`
        # moves RandAugment only into a compiled run; `device` always does.
        full = cfg.views.augment_on == "device" or cfg.compile
        split = device_split(transform, compile=cfg.compile) if full else None
        if split is None:  # or a policy with an op that has no device version: only normalising moves
            return Augmentation(transform, None, DeviceNormalize())
        draws, on_device = split
        return Augmentation(draws, pad_collate, on_device)

    def build(self, cfg: RunConfig, num_classes: int, steps_per_epoch: int) -> TrainingSystem:
        from .systems import SupervisedSystem

        return SupervisedSystem(cfg, num_classes)
