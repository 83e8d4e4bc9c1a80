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

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import safe_yaml
from .errors import ConfigError
from .fidelity import FIDELITIES, preset
from .registry import DATASETS, LOSSES, RECIPES, suggest

Pair = tuple[float, float]


def _switch(value: Any) -> Any:
    # YAML, in spec files and in --set alike, reads a bare on/off (and yes/no) as a boolean.
    return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value


Switch = Annotated[Literal["auto", "on", "off"], BeforeValidator(_switch)]


# Marks a field that changes where or how fast a run executes but not what it computes: it is left
# out of the trial id (identity.py) and does not separate experimental arms (analysis).
RUNTIME = {"runtime": True}


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
            raise ValueError(missing_checkpoint(v))
        return v


def missing_checkpoint(path: Any) -> str:
    """The message for a `model.init` checkpoint that is not there (wherever that is found)."""
    return f"checkpoint '{path}' does not exist; pass a local .pt/.pth/.safetensors file"


class DataConfig(_Section):
    dataset: str = Field("digits", description="registered dataset name, see `tort datasets`")
    root: Path | None = Field(None, description="local root for file-based datasets (TORT_DATA_ROOT)",
                              json_schema_extra=RUNTIME)
    fingerprint: str | None = Field(
        None, description="derived, not set: the count and a hash of the relative paths and sizes of the dataset's "
        "files under data.root, filled in when the config is built; part of the trial id")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes for training and evaluation images",
                             json_schema_extra=RUNTIME)
    eval_batch_size: int = Field(256, ge=1, description="images per batch at evaluation", json_schema_extra=RUNTIME)
    pin_memory: bool = Field(True, description="page-locked loader batches (used on CUDA only)",
                             json_schema_extra=RUNTIME)
    decoded_cache_mb: int = Field(
        4096, ge=0, description="keep up to this many MB of decoded training images in memory, so that epochs after "
        "the first skip the JPEG decode (0: decode at every epoch)", json_schema_extra=RUNTIME
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

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, v: str) -> str:
        if v not in DATASETS:  # tort's catalog and installed plug-ins: nothing imported
            raise ValueError(DATASETS.unknown(v))
        return v


class ViewsConfig(_Section):
    """Multi-crop views of one image: 2 global, 1 masked global, `n_local` local views."""

    global_size: int = Field(224, ge=8,
        description="side of the global and masked views, and of evaluation images (px)")
    local_size: int = Field(96, ge=4, description="side of the local views (px)")
    n_local: int = Field(6, ge=0, description="local views per image (the thesis's N_a)")
    global_scale: Pair = Field((0.4, 1.0), description="area fraction of the image a global view's random crop covers")
    local_scale: Pair = Field((0.05, 0.4), description="area fraction of the image a local view's random crop covers")
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
    color_jitter: tuple[float, float, float, float] = Field(
        (0.4, 0.4, 0.2, 0.1), description="colour jitter strengths: brightness, contrast, saturation, hue")
    jitter_prob: float = Field(0.8, ge=0, le=1, description="probability that a view is colour-jittered")
    grayscale_prob: float = Field(0.2, ge=0, le=1, description="probability that a view is made grey")
    blur_sigma: Pair = Field((0.1, 2.0), description="range of the Gaussian blur's radius (px)")
    blur_prob_global1: float = Field(1.0, ge=0, le=1, description="blur probability of the first global view")
    blur_prob_global2: float = Field(0.1, ge=0, le=1, description="blur probability of the second global view")
    blur_prob_local: float = Field(0.5, ge=0, le=1, description="blur probability of each local view")
    solarize_prob: float = Field(0.2, ge=0, le=1, description="solarisation probability of the second global view")
    eval_crop_pct: float = Field(0.875, gt=0, le=1, description="centre-crop fraction at evaluation")
    # Runtime-only: both paths make the same random draws and differ only in rounding (device_views).
    augment_on: Literal["auto", "cpu", "device"] = Field(
        "auto", json_schema_extra=RUNTIME, description="where training augmentation runs: cpu (all in the loader workers, as the thesis), device "
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

    out_dim: int = Field(1024, ge=1, description="output width of the contrastive head (the distillation's K)")
    hidden_dim: int = Field(2048, ge=1, description="width of the head's hidden MLP layers")
    bottleneck_dim: int = Field(256, ge=1,
        description="width of the L2-normalised bottleneck (k-NN features with eval.knn_features=head)")
    nlayers: int = Field(3, ge=1, description="layers of the head's MLP, bottleneck included")
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
    student_temp: float = Field(0.1, gt=0, description="temperature of the student's softmax (distill, region)")
    teacher_temp: float = Field(0.04, gt=0,
        description="temperature of the teacher's softmax after its warm-up (distill, region)")
    warmup_teacher_temp: float = Field(0.04, gt=0, description="teacher temperature at epoch 0")
    warmup_teacher_temp_epochs: int = Field(0, ge=0, description="linear warm-up of the teacher temperature")
    center_momentum: float = Field(0.9, ge=0, lt=1,
        description="momentum of the centre's EMA of the teacher's batch means")
    label_smoothing: float = Field(0.0, ge=0, lt=1,
        description="label smoothing of the supervised loss (and of Mixup's targets)")
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
        for name in v:
            if name not in LOSSES:
                raise ValueError(
                    f"unknown loss '{name}'{suggest(name, LOSSES.names())}; known: {', '.join(LOSSES.names())}"
                )
        return v

    @field_validator("weights")
    @classmethod
    def _weights(cls, v: dict[str, float]) -> dict[str, float]:
        for name, w in v.items():
            if name not in LOSSES:
                raise ValueError(f"weight for unknown loss '{name}'{suggest(name, LOSSES.names())}")
            if w < 0:
                raise ValueError(f"weight of '{name}' must be >= 0, got {w}")
        return v


class OptimConfig(_Section):
    name: str = Field("lookahead_adamw", description="timm optimizer name (lookahead_ prefix wraps it)")
    lr: float = Field(5e-4, gt=0, description="base learning rate, reached at the end of the warm-up")
    min_lr: float = Field(1e-6, ge=0,
        description="learning rate at the end of the cosine decay and through the cool-down")
    warmup_lr: float = Field(1e-8, ge=0, description="learning rate at the first step of the warm-up")
    warmup_epochs: int = Field(10, ge=0, description="epochs of linear warm-up from warmup_lr to lr")
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
    weight_decay: float = Field(0.04, ge=0,
        description="weight decay (not on norms and biases, nor, unless optim.decay_tokens, on the position "
        "embedding and class token)")
    clip_grad: float | None = Field(3.0, gt=0, description="global gradient-norm clip; null disables")
    betas: Pair = Field((0.9, 0.999), description="Adam's β1, β2 (adam and adamw optimizers)")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum (fine-tuning)")
    fused: Switch = Field(
        "auto", json_schema_extra=RUNTIME, description="torch's fused optimiser step (Adam, AdamW, SGD): one pass over the weights instead of "
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
    """Augmentation of the single-view supervised pipeline (the supervised recipes: sota, augreg, deit)."""

    # Not timm's "-inc1" variant (timm's train.py default), as earlier versions of tort could not run
    # it: it asks for a 0-bit posterize at high magnitudes, which Pillow ≥ 12 rejects; it now runs
    # (views.posterize_any_bits) but changing the default would change every sota trial id.
    randaugment: str | None = Field("rand-m9-mstd0.5", description="timm RandAugment string; null disables")
    mixup: float = Field(0.2, ge=0, description="Mixup's α (0: off)")
    cutmix: float = Field(0.0, ge=0, description="CutMix's α (0: off)")
    scale: Pair = Field((0.08, 1.0), description="area fraction of the image the random crop covers")
    hflip: float = Field(0.5, ge=0, le=1, description="probability of a horizontal flip")
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
    knn_k: int = Field(20, ge=1, description="neighbours that vote in the k-NN evaluation")
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
        "auto", json_schema_extra=RUNTIME, description="keep both splits' eval-transformed images (uint8, on the GPU when training there) after "
        "the first evaluation instead of decoding and resizing them at every one; auto: when they fit in cache_max_mb"
    )
    cache_max_mb: int = Field(4096, ge=0, json_schema_extra=RUNTIME, description="eval.cache=auto caches when the images take at most this")


class RunConfig(_Section):
    recipe: str = Field("tort", description="the training method, see `tort recipes`")
    profile: str = Field("thesis", description="the named overlay the run was resolved with, see catalog.PROFILE_INFO",
                         json_schema_extra=RUNTIME)
    fidelity: Literal["written", "as_run", "modern"] = Field(
        "written", description="which reading of the thesis the recipe's defaults follow (docs/fidelity.md). "
        "written: the thesis's text, completed where it is silent; as_run: every choice of the original code that "
        "produced its numbers, known bugs included; modern: written, corrected where the text is known to be wrong. "
        "Single keys set after it (--set, a spec) still win. Recipes without a thesis reading (augreg, deit) resolve "
        "the same values under all three"
    )
    mode: Literal["scratch", "finetune"] = Field("scratch",
        description="train from random weights, or fine-tune from model.init")
    seed: int = Field(0, ge=0, lt=2**63, strict=True, description="seeds every random draw of the run")
    epochs: int = Field(100, ge=1, description="warm-up + cosine epochs; cool-down epochs come on top")
    batch_size: int = Field(32, ge=2, description="images per optimiser step (each with all its views)")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N", json_schema_extra=RUNTIME)
    threads: int | None = Field(None, ge=1, json_schema_extra=RUNTIME,
                                description="torch threads for the run; null: the cores this process may use less one "
                                "per loader worker, at least 1")
    amp: bool = Field(True, description="bf16 autocast on CUDA (ignored on CPU)")
    compile: bool = Field(False, description="torch.compile the backbones' forward and the device half of the views")
    compile_random: Literal["eager", "fused"] = Field(
        "eager", description="with compile=true, where dropout and stochastic-depth masks come from: eager (torch's "
        "generator, the masks an eager run draws, so compiling changes only rounding; inductor's fallback_random) or "
        "fused (drawn inside inductor's fused kernels: fewer passes over memory, other masks, its own trial id)"
    )
    finite_check_every: int = Field(20, ge=1, description="steps between non-finite loss checks",
                                    json_schema_extra=RUNTIME)
    checkpoint_every: int = Field(
        1, ge=1, json_schema_extra=RUNTIME, description="epochs between checkpoints (and always the last): the resume points. A tort ViT-B "
        "checkpoint is ~1.9 GB, seconds to write, which can rival a short epoch on a GPU"
    )
    checkpoint_write: Literal["auto", "sync", "background"] = Field(
        "auto", json_schema_extra=RUNTIME, description="sync: torch.save in the loop; background: a writer thread writes a snapshot while "
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
        """A stable id of what the run computes: excludes where and how fast it runs (see identity.py)."""
        from .identity import corrections, hash_blob, identity_blob

        cls = type(self)
        data = identity_blob(self.model_dump(mode="json"), _default_dump(cls), runtime_keys(cls), set(known_keys(cls)))
        fixed = corrections(self)
        if fixed:
            data["corrections"] = fixed
        if not (self.compile and self.compile_random == "fused"):
            data.pop("compile_random")  # eager's masks: nothing else is computed (and older ids still hold)
        if self.data.dataset == "imagefolder" and self.data.root is not None:
            # As ids of version 1 did; the tree's contents count through data.fingerprint.
            data["data"]["folder"] = Path(self.data.root).name
        return hash_blob(data)


def runtime_keys(model: type[BaseModel] | None = None, prefix: str = "") -> set[str]:
    """Dotted keys of the fields marked runtime-only (`json_schema_extra=RUNTIME`)."""
    out: set[str] = set()
    for name, f in (model or RunConfig).model_fields.items():
        ann = f.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out |= runtime_keys(ann, f"{prefix}{name}.")
        elif isinstance(f.json_schema_extra, dict) and f.json_schema_extra.get("runtime"):
            out.add(f"{prefix}{name}")
    return out


_DEFAULT_DUMPS: dict[type, dict[str, Any]] = {}


def _default_dump(cls: type[BaseModel]) -> dict[str, Any]:
    if cls not in _DEFAULT_DUMPS:
        _DEFAULT_DUMPS[cls] = cls().model_dump(mode="json")
    return _DEFAULT_DUMPS[cls]


def varying_keys(columns: dict[str, Any]) -> list[str]:
    """The keys (of a key → values mapping) whose values are not all equal, in the mapping's order.
    Values are compared as given: pass canonical forms where 6 and 6.0 must be equal."""
    return [k for k, values in columns.items() if len(set(values)) > 1]


# Kept for callers of the (section, key) form; derived from the fields' marks.
RUNTIME_ONLY_KEYS = sorted(tuple(k.split(".", 1)) if "." in k else ("", k) for k in runtime_keys())


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
# Profiles: named overlays that scale the whole run (model, crop sizes, data, epochs), the same for
# every recipe. A recipe adjusts a profile in `Recipe.profile_overrides`, which sees what its
# defaults and the fidelity preset resolved below the profile (`Resolved`), so that it scales those
# choices (a milder RandAugment, a shorter cool-down) instead of replacing them.

@dataclass(frozen=True)
class Resolved:
    """The values below a profile: what the recipe's defaults (for the run's mode) and the fidelity
    preset set, by dotted key. `get(key)` is the value so far, else the field default. A recipe reads
    it in `Recipe.profile_overrides` to scale its own choices under a profile."""

    layers: dict[str, Any]

    def get(self, key: str) -> Any:
        return self.layers[key] if key in self.layers else field_default(key)


def field_default(key: str) -> Any:
    """The default of a dotted config key."""
    model: Any = RunConfig
    parts = key.split(".")
    for part in parts[:-1]:
        model = model.model_fields[part].annotation
    return model.model_fields[parts[-1]].get_default(call_default_factory=True)


def _thesis_profile() -> dict[str, Any]:
    return {
        "model.name": "vit_base_patch16_224",
        "views.global_size": 224,
        "views.local_size": 96,
        "epochs": 100,
        "data.dataset": "flowers102",
        "data.num_workers": min(8, os.cpu_count() or 1),
    }


def _demo_profile() -> dict[str, Any]:
    # A tiny ViT on the embedded digits (32 px): crops keep roughly the thesis's 224:96 proportion
    # (32:16, 8-px patches → 16 and 4 tokens), blur radii shrink with the image; a couple of minutes
    # on 2 CPU cores. Every recipe and preset runs 4 epochs of batch 32 at lr 1e-3 with 1 warm-up
    # epoch and 1 cool-down epoch (the supervised recipes: at most their own, and RandAugment capped
    # at magnitude 5, which 32-px digits survive; SupervisedRecipe.profile_overrides).
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
        "optim.cooldown_epochs": 1,
        "optim.lr": 1e-3,
        "teacher.momentum": 0.996,
    }
    return overlay


def _small_profile() -> dict[str, Any]:
    # Real photographs from a local ImageFolder root (`--data-root`, e.g. Oxford Flowers-17) with the
    # demo's ViT (4 blocks, 128 wide, 8-px patches) at 48/24-px views (36 and 9 tokens, near the
    # thesis's 224:96): 20 epochs of ~700 images take a few minutes per run on 2 CPU cores, and
    # every recipe ends well above chance (docs/evidence/). Sizes chosen by measurement there.
    overlay = _demo_profile()
    overlay.update({
        "views.global_size": 48,
        "views.local_size": 24,
        "views.blur_sigma": (0.1, 0.75),
        "data.dataset": "imagefolder",
        "epochs": 20,
        "optim.warmup_epochs": 2,
        "optim.cooldown_epochs": 1,
    })
    return overlay


# name → overlay (a function: a profile may read the machine, as thesis does its CPU count); each
# profile's description is its `catalog.PROFILE_INFO` entry. A recipe adjusts a profile with
# `Recipe.profile_overrides` (sota, augreg and deit: no longer cool-down than their own, a milder
# RandAugment under demo).
PROFILES: dict[str, Callable[[], dict[str, Any]]] = {"thesis": _thesis_profile, "demo": _demo_profile,
                                                     "small": _small_profile}


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
    check_names: bool = True,
) -> RunConfig:
    """Resolve defaults → recipe → fidelity preset → profile (and the recipe's adjustments of it) →
    overrides into a validated RunConfig. The fidelity preset is the one `overrides["fidelity"]`
    names (default: written).

    The checks run cheapest first, and none before the last imports torch: the profile, recipe,
    key, value, dataset and loss names (read from the catalog and the plug-ins' metadata), the
    cross-key and recipe checks; then, with `check_names`, the names only timm knows (model and
    optimizer), which import it. `check_names=False` leaves those to a later `validate_names`."""
    if profile not in PROFILES:
        raise ConfigError(
            f"unknown profile '{profile}'{suggest(profile, list(PROFILES))}; choose one of: {', '.join(PROFILES)}"
        )
    RECIPES.check(recipe)
    overrides = dict(overrides or {})
    for key in overrides:
        check_key(key, where)
    fidelity = overrides.get("fidelity", "written")
    if fidelity not in FIDELITIES:
        raise ConfigError(f"{where}: fidelity: unknown preset {fidelity!r}{suggest(str(fidelity), list(FIDELITIES))}; "
                          f"choose one of: {', '.join(FIDELITIES)} (docs/fidelity.md)")
    rec = RECIPES.get(recipe)()  # tort's recipes import no torch (a plug-in's module may)
    layers: dict[str, Any] = {"recipe": recipe, "profile": profile, "mode": mode, "fidelity": fidelity}
    layers.update(rec.defaults(mode))
    layers.update(preset(recipe, mode, fidelity))
    below = Resolved(dict(layers))
    layers.update(PROFILES[profile]())
    layers.update(rec.profile_overrides(profile, below))
    layers.update(overrides)
    if "data.root" not in layers and os.environ.get("TORT_DATA_ROOT"):
        layers["data.root"] = os.environ["TORT_DATA_ROOT"]
    # Start from the defaults so that `loss.weights.region=0.5` adds one entry to the weights dict
    # instead of replacing it; a whole-dict value (`loss.weights={...}`) still replaces.
    nested: dict[str, Any] = RunConfig().model_dump()
    for key, value in layers.items():
        _set_path(nested, key, value)
    from .identity import data_fingerprint

    nested["data"]["fingerprint"] = data_fingerprint(str(nested["data"].get("dataset")), nested["data"].get("root"))
    try:
        cfg = RunConfig.model_validate(nested)
    except ValidationError as err:
        raise ConfigError(validation_message(err, where)) from None
    rec.validate(cfg)
    # Asks the recipe to build its device half (torch): only for a config that wants it, after the cheap checks.
    if cfg.views.augment_on == "device" and rec.device_augmentation(cfg) is None:
        raise ConfigError(f"{where}: views.augment_on: recipe '{recipe}' has no device augmentation; "
                          f"use views.augment_on=cpu or auto")
    if check_names:
        validate_names(cfg, where)
    return cfg


def check_root_used(datasets: set[str], where: str) -> None:
    """A data root given for datasets that read no files would be silently ignored: say so."""
    from .registry import DATASETS

    if datasets and not any(getattr(DATASETS.info(d), "needs_root", True) for d in datasets):
        names = ", ".join(repr(d) for d in sorted(datasets))
        raise ConfigError(f"{where}: a data root is set but {names} {'is' if len(datasets) == 1 else 'are'} embedded "
                          f"and read no files; name a file-based dataset (imagefolder, flowers102, ...) to use it")


def validate_names(cfg: RunConfig, where: str = "config") -> None:
    """The names only timm knows, the model and the optimizer, and that timm builds the model with
    these kwargs (on the meta device: no memory, no weights). Imports timm (and torch), so it runs
    after every other check (`build_config`)."""
    from .models import check_builds, check_model_name
    from .optim import check_optimizer

    for key, check in (("model.name", lambda: check_model_name(cfg.model.name)),
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
