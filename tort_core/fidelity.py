"""The thesis as written, as run, and corrected: named presets over the choices where they differ.

The thesis's text and the code that produced its numbers (the original repository, `detkov/tort`)
disagree in places, and some of the code's choices are bugs. Each such choice is one config key
(documented in its field), and `fidelity` picks a coherent set of values:

- `written`: the thesis's text, completed where it is silent. These are the recipes' own defaults,
  so this preset adds nothing (and every trial id from before it existed stays what it was).
- `as_run`: every choice of the original code, bugs included (train_tort.py, train_sl.py,
  configs/01, tort_aug.py, dataset.py).
- `modern`: `written`, corrected where the text is known to be wrong.

Resolution order (`config.build_config`), later layers winning:

    field defaults → recipe defaults (mode) → fidelity preset → profile → --set / spec overrides

so a single key can still be switched on its own (`--set fidelity=as_run --set teacher.init=copy`),
and a profile (which scales a run: model, crop sizes, data, epochs) applies to every preset.
docs/fidelity.md holds the table with its sources; tests/tort_core/test_fidelity.py pins each
preset's resolved values against those sources. Torch-free: imported by the config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FIDELITIES = ("written", "as_run", "modern")

_SAME = object()  # a Choice's modern value where it is the written one


@dataclass(frozen=True)
class Choice:
    """One config key where the thesis's readings differ, with its value under each preset."""

    row: str  # the deviation it belongs to (one row of docs/fidelity.md may set several keys)
    key: str
    written: Any
    as_run: Any
    modern: Any = _SAME
    recipes: tuple[str, ...] = ("tort",)
    modes: tuple[str, ...] = ("scratch", "finetune")
    source: str = ""  # where the as-run value comes from (file of the original repository)

    def value(self, fidelity: str) -> Any:
        if fidelity == "modern":
            return self.written if self.modern is _SAME else self.modern
        return getattr(self, fidelity)


THESIS = ("tort", "sota")

CHOICES: tuple[Choice, ...] = (
    # Tort
    Choice("teacher start", "teacher.init", "copy", "independent",
           source="train_tort.py: the teacher is a second create_model(...) and is never loaded from the student"),
    Choice("teacher momentum", "teacher.momentum_index", "global_step", "batch_in_epoch",
           source="train_tort.py: m = momentum_scheduler[batch_idx] (batch within the epoch)"),
    Choice("mask scale", "views.mask_scale", (0.4, 0.6), (0.2, 0.6),
           source="train_tort_parser.py: --masked_crop_scale default (0.2, 0.6); only exp_scripts/experiments_34.py "
                  "(the mask-scale ablation) sets it"),
    Choice("rotation", "views.rotation_draw", "per_sample", "per_view_batch",
           source="tort_aug.py: rand_rot (one draw per view batch)"),
    Choice("LR schedule", "optim.schedule_unit", "step", "epoch", recipes=THESIS,
           source="train_tort.py / train_sl.py: timm create_scheduler (t_in_epochs=True), "
                  "lr_scheduler.step(epoch + 1)"),
    Choice("LR schedule", "optim.warmup_prefix", True, False, recipes=THESIS,
           source="timm CosineLRScheduler default warmup_prefix=False: the cosine counts the warm-up epochs"),
    Choice("no weight decay on", "optim.decay_tokens", False, True,
           source="train_tort.py: create_optimizer_v2(student) on a MultiCropWrapper, which has no no_weight_decay()"),
    Choice("data splits", "data.splits", "standard", "original", recipes=THESIS,
           source="dataset.py: dataset_config"),
    Choice("objectives ablation", "loss.keep_distill", False, True,
           source="exp_scripts/experiments_21.py sets rep_w; tort_loss.py weighs by con_w (train_tort_parser.py "
                  "default 1)"),
    Choice("k-NN", "eval.knn_protocol", "bank", "cv",
           source="train_tort.py: cross_val_score(KNeighborsClassifier(n_neighbors=20, metric='cosine'), ...) on "
                  "the validation features"),
    Choice("k-NN", "eval.knn_weights", "softmax", "uniform", source="scikit-learn KNeighborsClassifier default"),
    Choice("k-NN", "eval.knn_features", "head", "logits",
           source="train_tort.py: the features are the student's con_head output (out_dim)"),
    # sota (scratch): configs/01/<dataset>-train.yaml through train_sl.py
    Choice("sota optimiser", "optim.name", "adam", "adam", "adamw", recipes=("sota",), modes=("scratch",),
           source="configs/01/*-train.yaml: opt: adam, weight_decay: 0.1 (torch Adam: L2 added to the gradient)"),
    Choice("sota augmentation", "aug.randaugment", "rand-m9-mstd0.5", None, "rand-m9-mstd0.5-inc1",
           recipes=("sota",), source="train_sl_parser.py: --aa default None"),
    Choice("sota augmentation", "aug.mixup", 0.2, 0.0, recipes=("sota",),
           source="train_sl_parser.py: --mixup default 0"),
    Choice("sota augmentation", "optim.clip_grad", 1.0, None, recipes=("sota",),
           source="train_sl_parser.py: --clip_grad default None"),
    Choice("sota augmentation", "model.drop_path", 0.1, 0.0, recipes=("sota",),
           source="train_sl_parser.py: --drop_path default None"),
    Choice("sota augmentation", "optim.cooldown_epochs", 0, 3, recipes=("sota",),
           source="train_sl_parser.py: --cooldown_epochs default 3"),
    Choice("sota augmentation", "aug.interpolation", "bicubic", "random", recipes=("sota",),
           source="train_sl_parser.py: --train_interpolation default 'random'"),
    Choice("sota augmentation", "views.eval_crop_pct", 0.875, 0.9, recipes=("sota",),
           source="timm (Jan 2022) vit_base_patch16_224 default_cfg: crop_pct 0.9, via resolve_data_config"),
    Choice("sota augmentation", "aug.normalize", "imagenet", "inception", recipes=("sota",),
           source="timm (Jan 2022) vit_base_patch16_224 default_cfg: IMAGENET_INCEPTION_MEAN/STD (0.5)"),
    Choice("sota precision", "amp", True, False, recipes=("sota",),
           source="configs/01 set no amp; train_sl_parser.py --amp default False: float32"),
    # sota (fine-tuning): configs/01/<dataset>-finetune.yaml
    Choice("sota fine-tuning", "optim.name", "momentum", "sgd", recipes=("sota",), modes=("finetune",),
           source="configs/01/*-finetune.yaml: opt: sgd (timm: SGD with Nesterov momentum)"),
    Choice("sota fine-tuning", "optim.lr", 1e-3, 3e-3, recipes=("sota",), modes=("finetune",),
           source="configs/01/*-finetune.yaml: lr: 0.003 (the thesis text: 1e-3)"),
)


def preset(recipe: str, mode: str, fidelity: str) -> dict[str, Any]:
    """The keys `fidelity` sets for `recipe` in `mode` (none for `written`: the recipes' defaults)."""
    if fidelity not in FIDELITIES:
        raise ValueError(f"fidelity must be one of {', '.join(FIDELITIES)}, got {fidelity!r}")
    if fidelity == "written":
        return {}
    return {c.key: c.value(fidelity) for c in CHOICES if recipe in c.recipes and mode in c.modes}


def choices(recipe: str, mode: str = "scratch") -> list[Choice]:
    """The choices that apply to `recipe` in `mode`, in table order."""
    return [c for c in CHOICES if recipe in c.recipes and mode in c.modes]
