"""The run configuration: typed, validated in one place, with the thesis's values as defaults.

A config is resolved in layers, later layers winning:

    field defaults (Tort, thesis) → recipe defaults (per mode) → fidelity preset → profile → --set overrides

The fidelity preset (`fidelity: written | as_run | modern`, tort_core/fidelity.py) picks which
reading of the thesis the choices follow; the profile then scales the run (model, crop sizes,
data, epochs) whatever the preset.

Keys are dotted paths (`loss.teacher_temp`, `views.mask_scale`), the same names that sweep specs,
Parquet columns and `--set` use. Every mistake is reported as one line naming the key.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import safe_yaml
from .errors import ConfigError
from .fidelity import FIDELITIES, preset
from .registry import suggest

Pair = tuple[float, float]


def _switch(value: Any) -> Any:
    # YAML, in spec files and in --set alike, reads a bare on/off (and yes/no) as a boolean.
    return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value


Switch = Annotated[Literal["auto", "on", "off"], BeforeValidator(_switch)]


class _Section(BaseModel):
    # allow_inf_nan=False: `optim.lr: .inf` is YAML for infinity, and no field of a run means it.
    model_config = ConfigDict(extra="forbid", protected_namespaces=(), validate_assignment=True,
                              allow_inf_nan=False)


def _check_range(name: str, pair: Pair, lo_open: bool = True, hi: float = 1.0, hi_open: bool = False) -> Pair:
    lo_v, hi_v = pair
    ok_lo = lo_v > 0 if lo_open else lo_v >= 0
    ok_hi = hi_v < hi if hi_open else hi_v <= hi
    if not (ok_lo and lo_v < hi_v and ok_hi):
        bound = f"0 {'<' if lo_open else '<='} lo < hi {'<' if hi_open else '<='} {hi:g}"
        raise ValueError(f"{name} must satisfy {bound}, got {list(pair)}")
    return pair


class ModelConfig(_Section):
    name: str = Field("vit_base_patch16_224", description="any timm model name")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="extra timm.create_model kwargs")
    drop_path: float = Field(0.1, ge=0, lt=1, description="stochastic depth rate (timm's drop_path_rate: the last "
                             "block's rate, rising linearly from 0 in the first)")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout rate; where it acts: model.dropout_at")
    dropout_at: Literal["head", "blocks"] = Field(
        "head", description="where model.dropout acts. head: once, on the pooled embedding before the heads (timm "
        "≥ 0.9's drop_rate); blocks: after the position embedding, the attention projection and both MLP layers, "
        "none on the head (timm < 0.9's drop_rate, which the original sota ran; big_vision's ViT, Steiner et al.): "
        "timm 1.0's pos_drop_rate = proj_drop_rate = model.dropout"
    )
    attn_dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the attention weights (timm's "
                                "attn_drop_rate); 0 in every recipe here, as in Steiner et al. and the original code")
    init: Path | None = Field(None, description="local checkpoint to fine-tune from (never downloaded)")

    @field_validator("init")
    @classmethod
    def _init_exists(cls, v: Path | None) -> Path | None:
        if v is not None and not Path(v).expanduser().is_file():
            raise ValueError(f"checkpoint '{v}' does not exist; pass a local .pt/.pth/.safetensors file")
        return v


class DataConfig(_Section):
    dataset: str = Field("digits", description="registered dataset name, see `tort datasets`")
    root: Path | None = Field(None, description="local root for file-based datasets (TORT_DATA_ROOT)")
    num_workers: int = Field(0, ge=0)
    eval_batch_size: int = Field(256, ge=1)
    pin_memory: bool = True
    decoded_cache_mb: int = Field(
        4096, ge=0, description="keep up to this many MB of decoded training images in memory, so that epochs after "
        "the first skip the JPEG decode (0: decode at every epoch)"
    )
    train_limit: int | None = Field(None, ge=1, description="use only the first N training images (smoke tests)")
    test_limit: int | None = Field(None, ge=1, description="use only the first N held-out images (smoke tests)")
    splits: Literal["standard", "original"] = Field(
        "standard", description="which splits train and evaluate. standard: the training split (trainval where the "
        "dataset has one) and the official test split; original: the original code's (its dataset.py): Flowers102 "
        "train→val, FGVC-Aircraft train→val, StanfordCars train→test, Oxford-IIIT Pet trainval→test; datasets it "
        "never used keep the standard splits"
    )
    val_fraction: float = Field(
        0.0, ge=0, lt=1, description="carve a stratified validation split of this fraction out of the training "
        "split (fixed seed, independent of the run's seed) and evaluate it every epoch as val_top1 and val_knn_top1 "
        "(k-NN bank: the remaining training images), for choosing epochs without the test split; 0: off"
    )


class ViewsConfig(_Section):
    """Multi-crop views of one image: 2 global, 1 masked global, `n_local` local views."""

    global_size: int = Field(224, ge=8)
    local_size: int = Field(96, ge=4)
    n_local: int = Field(6, ge=0)
    global_scale: Pair = (0.4, 1.0)
    local_scale: Pair = (0.05, 0.4)
    mask_scale: Pair = Field((0.4, 0.6), description="area fraction of the erased rectangle")
    mask_ratio: Pair = Field((0.75, 1.0), description="aspect ratio of the erased rectangle")
    rot_prob: float = Field(0.5, ge=0, le=1, description="probability that a global-like view is rotated")
    rotation_draw: Literal["per_sample", "per_view_batch"] = Field(
        "per_sample", description="what one rot_prob draw decides. per_sample: each global-like view of each image "
        "is rotated or not on its own; per_view_batch: the original code's rand_rot: one draw per view and batch "
        "rotates all of the batch's images of that view (each by its own 90/180/270°) or none"
    )
    teacher_rotated: bool = Field(
        True, description="the teacher sees the same (rotated) global-like views as the student, as in the thesis"
    )
    color_jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1)
    jitter_prob: float = Field(0.8, ge=0, le=1)
    grayscale_prob: float = Field(0.2, ge=0, le=1)
    blur_sigma: Pair = (0.1, 2.0)
    blur_prob_global1: float = Field(1.0, ge=0, le=1)
    blur_prob_global2: float = Field(0.1, ge=0, le=1)
    blur_prob_local: float = Field(0.5, ge=0, le=1)
    solarize_prob: float = Field(0.2, ge=0, le=1)
    eval_crop_pct: float = Field(0.875, gt=0, le=1, description="centre-crop fraction at evaluation")
    augment_on: Literal["auto", "cpu", "device"] = Field(
        "auto", description="where training augmentation runs: cpu (all in the loader workers, as the thesis), device "
        "(tort: workers decode and draw, crops, jitter, blur, solarise and erase run batched on the training device "
        "with the same random draws; sota: workers decode and make timm's draws, crop, flip, RandAugment and "
        "normalisation run on the device), auto (device on CUDA; for sota only with compile=true, else its "
        "workers keep RandAugment and the device normalises)"
    )

    @field_validator("global_scale", "local_scale")
    @classmethod
    def _crop_scale(cls, v: Pair, info) -> Pair:
        lo, hi = v
        if not (0 < lo <= hi <= 1):
            raise ValueError(f"{info.field_name} must satisfy 0 < lo <= hi <= 1, got {list(v)}")
        return v

    @field_validator("mask_scale")
    @classmethod
    def _mask_scale(cls, v: Pair) -> Pair:
        return _check_range("mask_scale", v, hi_open=True)

    @field_validator("mask_ratio", "blur_sigma")
    @classmethod
    def _positive_pair(cls, v: Pair, info) -> Pair:
        if not (0 < v[0] <= v[1]):
            raise ValueError(f"{info.field_name} must satisfy 0 < lo <= hi, got {list(v)}")
        return v


class HeadConfig(_Section):
    """DINO-style contrastive head: MLP (hidden, GELU) → bottleneck → L2 norm → weight-normed layer."""

    out_dim: int = Field(1024, ge=1)
    hidden_dim: int = Field(2048, ge=1)
    bottleneck_dim: int = Field(256, ge=1)
    nlayers: int = Field(3, ge=1)
    norm_last_layer: bool = Field(True, description="freeze the weight norm of the last layer at 1")


class LossConfig(_Section):
    enabled: list[str] = Field(
        default_factory=lambda: ["distill", "supervised", "rotation"],
        description="any non-empty subset of distill, supervised, rotation, region (EsViT's region-level "
                    "distillation; it shares student_temp, teacher_temp and its schedule, and center_momentum)",
    )
    weights: dict[str, float] = Field(
        default_factory=lambda: {"distill": 1.0, "supervised": 2.5, "rotation": 1.0},
        description="weight of each enabled loss in the total; a loss without an entry weighs 1.0 (region)",
    )
    student_temp: float = Field(0.1, gt=0)
    teacher_temp: float = Field(0.04, gt=0)
    warmup_teacher_temp: float = Field(0.04, gt=0, description="teacher temperature at epoch 0")
    warmup_teacher_temp_epochs: int = Field(0, ge=0, description="linear warm-up of the teacher temperature")
    center_momentum: float = Field(0.9, ge=0, lt=1)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    keep_distill: bool = Field(
        False, description="true: distillation stays on at weight 1.0 when loss.enabled leaves it out, as in the "
        "original's objective ablation (its configs set rep_w: 0, a key its code never read; it read con_w, "
        "default 1)"
    )

    @field_validator("enabled")
    @classmethod
    def _enabled(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("at least one loss must be enabled")
        if len(set(v)) != len(v):
            raise ValueError(f"losses listed twice: {v}")
        from .losses import LOSSES

        for name in v:
            if name not in LOSSES:
                raise ValueError(
                    f"unknown loss '{name}'{suggest(name, LOSSES.names())}; known: {', '.join(LOSSES.names())}"
                )
        return v

    @field_validator("weights")
    @classmethod
    def _weights(cls, v: dict[str, float]) -> dict[str, float]:
        from .losses import LOSSES

        for name, w in v.items():
            if name not in LOSSES:
                raise ValueError(f"weight for unknown loss '{name}'{suggest(name, LOSSES.names())}")
            if w < 0:
                raise ValueError(f"weight of '{name}' must be >= 0, got {w}")
        return v


class OptimConfig(_Section):
    name: str = Field("lookahead_adamw", description="timm optimizer name (lookahead_ prefix wraps it)")
    lr: float = Field(5e-4, gt=0)
    min_lr: float = Field(1e-6, ge=0)
    warmup_lr: float = Field(1e-8, ge=0)
    warmup_epochs: int = Field(10, ge=0)
    cooldown_epochs: int = Field(3, ge=0, description="epochs at min_lr after the cosine decay")
    warmup_prefix: bool = Field(True, description="cosine starts after warm-up, so lr == base lr at its end")
    schedule_unit: Literal["step", "epoch"] = Field(
        "step", description="how often the learning rate changes. step: every optimiser step; epoch: once per "
        "epoch, as timm's create_scheduler (the original code, DeiT)"
    )
    decay_tokens: bool = Field(
        False, description="weight-decay the position embedding and class token too. false: they are exempt, as "
        "are biases and norm weights (timm's no_weight_decay(); big_vision decays kernels only); true: only biases "
        "and norm weights are exempt (the original Tort code: its wrapper hid timm's list)"
    )
    weight_decay: float = Field(0.04, ge=0)
    clip_grad: float | None = Field(3.0, gt=0, description="global gradient-norm clip; null disables")
    betas: Pair = (0.9, 0.999)
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum (fine-tuning)")
    fused: Switch = Field(
        "auto", description="torch's fused optimiser step (Adam, AdamW, SGD): one pass over the weights instead of "
                            "the foreach kernels' several; auto: on CUDA. Same arithmetic up to rounding"
    )


class TeacherConfig(_Section):
    momentum: float = Field(0.9998, ge=0, le=1, description="EMA momentum at the first step")
    final_momentum: float = Field(1.0, ge=0, le=1, description="EMA momentum at the last step")
    momentum_index: Literal["global_step", "batch_in_epoch"] = Field(
        "global_step", description="where the cosine momentum schedule is read. global_step: at the step's place "
        "in the whole run (DINO); batch_in_epoch: at the batch's place in its epoch, so every epoch repeats the "
        "first epoch's values and the momentum stays ≈ teacher.momentum (the original code)"
    )
    init: Literal["copy", "independent"] = Field(
        "copy", description="the teacher's start. copy: the student's weights (the thesis: 'equally initialised'; "
        "DINO); independent: a separately initialised network, never copied (the original code)"
    )


class AugConfig(_Section):
    """Augmentation of the single-view supervised pipeline (the sota recipe)."""

    # Not timm's "-inc1" variant (timm's train.py default), as earlier versions of tort could not run
    # it: it asks for a 0-bit posterize at high magnitudes, which Pillow ≥ 12 rejects; it now runs
    # (views.posterize_any_bits) but changing the default would change every sota trial id.
    randaugment: str | None = Field("rand-m9-mstd0.5", description="timm RandAugment string; null disables")
    mixup: float = Field(0.2, ge=0)
    cutmix: float = Field(0.0, ge=0)
    scale: Pair = (0.08, 1.0)
    hflip: float = Field(0.5, ge=0, le=1)
    interpolation: Literal["bicubic", "bilinear", "random"] = Field(
        "bicubic", description="resampling of the training crop (random: bilinear or bicubic per image, timm's "
        "train.py default)"
    )
    color_jitter: float = Field(0.4, ge=0, description="timm's colour jitter strength; timm applies it only "
                                "without RandAugment (aug.randaugment: null)")
    normalize: Literal["imagenet", "inception"] = Field(
        "imagenet", description="mean/std of the supervised recipes' training and evaluation images. imagenet: "
        "(0.485, 0.456, 0.406)/(0.229, 0.224, 0.225); inception: 0.5/0.5, i.e. values in [-1, 1] (timm's ViT "
        "default config, big_vision)"
    )
    reprob: float = Field(0.0, ge=0, le=1, description="random erasing probability (timm, per-pixel noise)")


class EvalConfig(_Section):
    knn_k: int = Field(20, ge=1)
    knn_temperature: float = Field(0.07, gt=0, description="softmax temperature of weighted k-NN votes (DINO)")
    knn_features: Literal["head", "backbone", "logits"] = Field(
        "head", description="head: the contrastive head's L2-normalised bottleneck; backbone: the embedding; "
        "logits: the contrastive head's output (heads.out_dim wide; the original code)"
    )
    knn_protocol: Literal["bank", "cv"] = Field(
        "bank", description="bank: the training split (unaugmented) is the bank, the held-out split the queries "
        "(DINO); cv: the original code's scikit-learn cross_val_score: 5-fold stratified cross-validation inside "
        "the held-out split alone"
    )
    knn_weights: Literal["softmax", "uniform"] = Field(
        "softmax", description="votes of the k neighbours: softmax: exp(cosine / knn_temperature) (DINO); uniform: "
        "one each (scikit-learn's default, the original code)"
    )
    every: int = Field(1, ge=1, description="evaluate every N epochs (and always at the last)")
    cache: Switch = Field(
        "auto", description="keep both splits' eval-transformed images (uint8, on the GPU when training there) after "
        "the first evaluation instead of decoding and resizing them at every one; auto: when they fit in cache_max_mb"
    )
    cache_max_mb: int = Field(4096, ge=0, description="eval.cache=auto caches when the images take at most this")


class RunConfig(_Section):
    recipe: str = "tort"
    profile: str = "thesis"
    fidelity: Literal["written", "as_run", "modern"] = Field(
        "written", description="which reading of the thesis the recipe's defaults follow (docs/fidelity.md). "
        "written: the thesis's text, completed where it is silent; as_run: every choice of the original code that "
        "produced its numbers, known bugs included; modern: written, corrected where the text is known to be wrong. "
        "Single keys set after it (--set, a spec) still win. Recipes without a thesis reading (augreg, deit) resolve "
        "the same values under all three"
    )
    mode: Literal["scratch", "finetune"] = "scratch"
    seed: int = Field(0, ge=0, lt=2**63, strict=True, description="seeds every random draw of the run")
    epochs: int = Field(100, ge=1, description="warm-up + cosine epochs; cool-down epochs come on top")
    batch_size: int = Field(32, ge=2)
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N")
    threads: int | None = Field(None, ge=1, description="torch threads for the run; null: the cores this process "
                                "may use less one per loader worker, at least 1")
    amp: bool = Field(True, description="bf16 autocast on CUDA (ignored on CPU)")
    compile: bool = Field(False, description="torch.compile the backbones' forward and the device half of the views")
    compile_random: Literal["eager", "fused"] = Field(
        "eager", description="with compile=true, where dropout and stochastic-depth masks come from: eager (torch's "
        "generator, the masks an eager run draws, so compiling changes only rounding; inductor's fallback_random) or "
        "fused (drawn inside inductor's fused kernels: fewer passes over memory, other masks, its own trial id)"
    )
    finite_check_every: int = Field(20, ge=1, description="steps between non-finite loss checks")
    checkpoint_every: int = Field(
        1, ge=1, description="epochs between checkpoints (and always the last): the resume points. A tort ViT-B "
        "checkpoint is ~1.9 GB, seconds to write, which can rival a short epoch on a GPU"
    )
    checkpoint_write: Literal["auto", "sync", "background"] = Field(
        "auto", description="sync: torch.save in the loop; background: a writer process writes a snapshot while "
        "training goes on (the loop pays one memory copy); auto: background on CUDA, sync on a CPU"
    )
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    views: ViewsConfig = Field(default_factory=ViewsConfig)
    heads: HeadConfig = Field(default_factory=HeadConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    aug: AugConfig = Field(default_factory=AugConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @model_validator(mode="after")
    def _cross_checks(self) -> RunConfig:
        if self.optim.warmup_epochs >= self.epochs:
            raise ValueError(
                f"optim.warmup_epochs ({self.optim.warmup_epochs}) must be smaller than epochs ({self.epochs}); "
                f"lower it (--set optim.warmup_epochs={max(0, self.epochs - 1)}) or train longer"
            )
        if self.optim.min_lr > self.optim.lr:
            raise ValueError(f"optim.min_lr ({self.optim.min_lr}) must not exceed optim.lr ({self.optim.lr})")
        if self.mode == "finetune" and self.model.init is None:
            raise ValueError("mode 'finetune' needs model.init (--init PATH), a local checkpoint")
        return self

    @property
    def total_epochs(self) -> int:
        return self.epochs + self.optim.cooldown_epochs

    def flat(self) -> dict[str, Any]:
        """Dotted keys → JSON-able scalars (lists and dicts as JSON text), for tables and Parquet."""
        out: dict[str, Any] = {}
        for key, value in flatten(self.model_dump(mode="json")).items():
            out[key] = json.dumps(value) if isinstance(value, (list, dict)) else value
        return out

    def content_hash(self) -> str:
        """A stable id of what the run computes: excludes where and how fast it runs."""
        data = self.model_dump(mode="json")
        for section, key in RUNTIME_ONLY_KEYS:
            (data[section] if section else data).pop(key, None)
        if not (self.compile and self.compile_random == "fused"):
            data.pop("compile_random")  # eager's masks: nothing else is computed (and older ids still hold)
        if self.data.dataset == "imagefolder" and self.data.root is not None:
            # The tree *is* the dataset here; its folder name identifies it on any machine, where
            # the full path of a torchvision root would not.
            data["data"]["folder"] = Path(self.data.root).name
        blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


# Keys that change where or how fast a run executes but not what it computes. views.augment_on is
# one: both paths make the same random draws and differ only in rounding (device_views).
RUNTIME_ONLY_KEYS = [("", "device"), ("", "threads"), ("views", "augment_on"), ("data", "num_workers"), ("data", "pin_memory"),
                     ("data", "eval_batch_size"), ("data", "root"), ("", "finite_check_every"), ("", "profile"),
                     ("", "checkpoint_every"), ("", "checkpoint_write"), ("eval", "cache"),
                     ("eval", "cache_max_mb"), ("data", "decoded_cache_mb"), ("optim", "fused")]


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and k not in _DICT_FIELDS:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


# dict-typed fields: their entries are values, not sub-sections
_DICT_FIELDS = {"kwargs", "weights"}


# ---------------------------------------------------------------------------------------------
# Profiles: named overlays that scale the whole run (model, crop sizes, data, epochs). A profile
# sees what the recipe and the fidelity preset resolved so far, so that it scales their choices
# (a milder RandAugment, a shorter cool-down) instead of replacing them.

@dataclass(frozen=True)
class Resolving:
    """The layers below a profile: `get(key)` is the value so far (else the field default);
    `uses_aug`: the recipe trains on the single-view `aug` pipeline (the supervised recipes)."""

    recipe: str
    layers: dict[str, Any]
    uses_aug: bool = False

    def get(self, key: str) -> Any:
        return self.layers[key] if key in self.layers else field_default(key)


def field_default(key: str) -> Any:
    """The default of a dotted config key."""
    model: Any = RunConfig
    parts = key.split(".")
    for part in parts[:-1]:
        model = model.model_fields[part].annotation
    return model.model_fields[parts[-1]].get_default(call_default_factory=True)


def _thesis_profile(r: Resolving) -> dict[str, Any]:
    return {
        "model.name": "vit_base_patch16_224",
        "views.global_size": 224,
        "views.local_size": 96,
        "epochs": 100,
        "data.dataset": "flowers102",
        "data.num_workers": min(8, os.cpu_count() or 1),
    }


def _milder(policy: str, magnitude: int) -> str:
    """A timm RandAugment string with its magnitude capped at `magnitude` ('rand-m9-mstd0.5' → 'rand-m5-mstd0.5')."""
    return re.sub(r"(?<=-)m(\d+)(?=-|$)", lambda m: f"m{min(int(m.group(1)), magnitude)}", policy)


def _demo_profile(r: Resolving) -> dict[str, Any]:
    # A tiny ViT on the embedded digits (32 px): crops keep roughly the thesis's 224:96 proportion
    # (32:16, 8-px patches → 16 and 4 tokens), blur radii shrink with the image; a couple of minutes
    # on 2 CPU cores. Every recipe and preset runs 4 epochs of batch 32 at lr 1e-3 with 1 warm-up
    # epoch and at most 1 cool-down epoch; RandAugment (where a recipe uses it) is capped at
    # magnitude 5, which 32-px digits survive.
    overlay: dict[str, Any] = {
        "model.name": "vit_tiny_patch16_224",
        "model.kwargs": {"patch_size": 8, "embed_dim": 128, "depth": 4, "num_heads": 4},
        "views.blur_sigma": (0.1, 0.5),
        "views.global_size": 32,
        "views.local_size": 16,
        "views.n_local": 2,
        "views.eval_crop_pct": 1.0,
        "heads.hidden_dim": 512,
        "heads.bottleneck_dim": 128,
        "heads.out_dim": 256,
        "data.dataset": "digits",
        "data.num_workers": 1,  # overlaps augmentation with the step on 2 cores
        "epochs": 4,
        "batch_size": 32,
        "optim.warmup_epochs": 1,
        "optim.cooldown_epochs": min(1, r.get("optim.cooldown_epochs")),
        "optim.lr": 1e-3,
        "teacher.momentum": 0.996,
    }
    policy = r.get("aug.randaugment")
    if r.uses_aug and policy:
        overlay["aug.randaugment"] = _milder(policy, 5)
    return overlay


PROFILES: dict[str, Callable[[Resolving], dict[str, Any]]] = {"thesis": _thesis_profile, "demo": _demo_profile}


# ---------------------------------------------------------------------------------------------
# Overrides

def parse_sets(items: list[str] | None) -> dict[str, Any]:
    """`["loss.teacher_temp=0.06", "views.mask_scale=[0.2,0.4]"]` → dict; values are YAML."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set '{item}': expected key=value, e.g. --set loss.teacher_temp=0.06")
        key, raw = item.split("=", 1)
        key = key.strip()
        try:
            out[key] = safe_yaml.load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            out[key] = raw
        except (safe_yaml.YamlLimitError, safe_yaml.DuplicateKeyError) as err:
            raise ConfigError(f"--set {key}: {err}") from None
    return out


def known_keys(model: type[BaseModel] = RunConfig, prefix: str = "") -> list[str]:
    keys: list[str] = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys.extend(known_keys(ann, f"{prefix}{name}."))
        else:
            keys.append(f"{prefix}{name}")
    return keys


def check_key(key: str, where: str = "--set") -> None:
    keys = known_keys()
    if key in keys:
        return
    head = key.rsplit(".", 1)[0]
    if head in keys and head.split(".")[-1] in _DICT_FIELDS:
        return  # an entry of a dict field, e.g. model.kwargs.depth
    raise ConfigError(f"{where}: unknown key '{key}'{suggest(key, keys)}; see `tort config --keys`")


def _set_path(d: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    for p in parts[:-1]:
        d = d.setdefault(p, {})
    d[parts[-1]] = value


def validation_message(err: ValidationError, where: str) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "config"
    msg = first["msg"].removeprefix("Value error, ")
    more = f" (+{len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{where}: {loc}: {msg}{more}"


def build_config(
    recipe: str = "tort",
    profile: str = "thesis",
    mode: str = "scratch",
    overrides: dict[str, Any] | None = None,
    where: str = "--set",
) -> RunConfig:
    """Resolve defaults → recipe → fidelity preset → profile → overrides into a validated RunConfig.

    The fidelity preset is the one `overrides["fidelity"]` names (default: written)."""
    from .recipes import RECIPES

    if profile not in PROFILES:
        raise ConfigError(
            f"unknown profile '{profile}'{suggest(profile, list(PROFILES))}; choose one of: {', '.join(PROFILES)}"
        )
    rec = RECIPES.get(recipe)()
    overrides = dict(overrides or {})
    for key in overrides:
        check_key(key, where)
    fidelity = overrides.get("fidelity", "written")
    if fidelity not in FIDELITIES:
        raise ConfigError(f"{where}: fidelity: unknown preset {fidelity!r}{suggest(str(fidelity), list(FIDELITIES))}; "
                          f"choose one of: {', '.join(FIDELITIES)} (docs/fidelity.md)")
    layers: dict[str, Any] = {"recipe": recipe, "profile": profile, "mode": mode, "fidelity": fidelity}
    layers.update(rec.defaults(mode))
    layers.update(preset(recipe, mode, fidelity))
    layers.update(PROFILES[profile](Resolving(recipe, dict(layers), getattr(rec, "uses_aug", False))))
    layers.update(overrides)
    if "data.root" not in layers and os.environ.get("TORT_DATA_ROOT"):
        layers["data.root"] = os.environ["TORT_DATA_ROOT"]
    # Start from the defaults so that `loss.weights.region=0.5` adds one entry to the weights dict
    # instead of replacing it; a whole-dict value (`loss.weights={...}`) still replaces.
    nested: dict[str, Any] = RunConfig().model_dump()
    for key, value in layers.items():
        _set_path(nested, key, value)
    try:
        cfg = RunConfig.model_validate(nested)
    except ValidationError as err:
        raise ConfigError(validation_message(err, where)) from None
    rec.validate(cfg)
    if cfg.views.augment_on == "device" and rec.device_augmentation(cfg) is None:
        raise ConfigError(f"{where}: views.augment_on: recipe '{recipe}' has no device augmentation; "
                          f"use views.augment_on=cpu or auto")
    validate_names(cfg, where)
    return cfg


def validate_names(cfg: RunConfig, where: str = "config") -> None:
    """Names that live in registries outside this module: dataset, timm model and timm optimizer;
    and that timm builds the model with these kwargs (on the meta device: no memory, no weights)."""
    from .data import DATASETS
    from .models import check_builds, check_model_name
    from .optim import check_optimizer

    for key, check in (("data.dataset", lambda: DATASETS.get(cfg.data.dataset)),
                       ("model.name", lambda: check_model_name(cfg.model.name)),
                       ("model.kwargs", lambda: check_builds(cfg.model, cfg.views.global_size)),
                       ("optim", lambda: check_optimizer(cfg.optim.name, cfg.optim.fused))):
        try:
            check()
        except ConfigError as err:
            msg = str(err)  # "key: problem", or the problem alone
            if not msg.startswith(f"{key.split('.')[0]}."):
                msg = f"{key}: {msg}"
            raise ConfigError(f"{where}: {msg}") from None


def config_from_dict(data: dict[str, Any], where: str = "config") -> RunConfig:
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(validation_message(err, where)) from None
