"""What tort knows by name, without importing torch: datasets, recipes, losses, profiles and metrics.

Each entry carries the facts that help text, validation, cost estimates, the report and the plots
need (a dataset's classes and split sizes, a metric's label and direction) and names the module
that implements it. The registries (`registry.DATASETS`, `RECIPES`, `LOSSES`) read their built-in
names here and import that module only when the implementation is needed; a test checks that each
module registers exactly the names listed. Plug-ins of other packages bring their own entries
(see `registry.py`). Reading a name here costs no torch import, so a typo in a spec fails in well
under a second.

    from tort_core.catalog import DATASET_INFO, RECIPE_INFO, LOSS_INFO, metric_info
    DATASET_INFO["flowers102"].classes      # 102
    metric_info("final_test_top1").label    # 'final test top-1 (%)'
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class DatasetInfo:
    """A registered dataset. `splits` maps split name → image count; `train`/`test` name the splits
    a run trains and evaluates on (None where they come from the user's folders)."""

    name: str
    label: str
    classes: int | None  # None: read from the folders (imagefolder)
    source: str  # where a user gets it (nothing is downloaded at run time)
    needs_root: bool = True
    splits: dict[str, int] = field(default_factory=dict)
    train: str = "train"
    test: str = "test"
    layout: str = ""
    module: str = "tort_core.data"  # where the dataset's loader is registered
    original: tuple[str, str] | None = None  # (train, eval) splits of the original Tort code, where they differ

    @property
    def original_splits(self) -> tuple[str, str]:
        """The (train, eval) splits under data.splits=original: the original code's (its dataset.py)."""
        return self.original or (self.train, self.test)

    @property
    def sizes(self) -> tuple[int, int] | None:
        """(train, test) image counts of the splits a run uses, or None if unknown."""
        if self.train in self.splits and self.test in self.splits:
            return self.splits[self.train], self.splits[self.test]
        return None

    @property
    def chance(self) -> float | None:
        """Top-1 accuracy (%) of a uniform guess."""
        return 100.0 / self.classes if self.classes else None


DATASET_INFO: dict[str, DatasetInfo] = {d.name: d for d in (
    DatasetInfo("digits", "UCI handwritten digits (8×8 scans, upscaled to 32 px)", 10,
                "embedded: the copy that ships inside scikit-learn (UCI ML repository, Optical Recognition of "
                "Handwritten Digits)", needs_root=False, splits={"train": 1347, "test": 450}),
    DatasetInfo("flowers102", "Oxford Flowers-102", 102,
                "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/ (Nilsback & Zisserman, 2008)",
                splits={"train": 1020, "val": 1020, "test": 6149},
                layout="ROOT/flowers-102/{jpg/, imagelabels.mat, setid.mat}", original=("train", "val")),
    DatasetInfo("fgvc_aircraft", "FGVC-Aircraft (variants)", 100,
                "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/ (Maji et al., 2013)",
                splits={"train": 3334, "val": 3333, "trainval": 6667, "test": 3333}, train="trainval",
                layout="ROOT/fgvc-aircraft-2013b/data/{images/, images_variant_*.txt}", original=("train", "val")),
    DatasetInfo("stanford_cars", "Stanford Cars", 196,
                "https://ai.stanford.edu/~jkrause/cars/car_dataset.html (Krause et al., 2013)",
                splits={"train": 8144, "test": 8041},
                layout="ROOT/stanford_cars/{cars_train/, cars_test/, devkit/, cars_test_annos_withlabels.mat}"),
    DatasetInfo("oxford_pet", "Oxford-IIIT Pet (breeds)", 37,
                "https://www.robots.ox.ac.uk/~vgg/data/pets/ (Parkhi et al., 2012)",
                splits={"trainval": 3680, "test": 3669}, train="trainval",
                layout="ROOT/oxford-iiit-pet/{images/, annotations/}"),
    DatasetInfo("imagefolder", "any ImageFolder tree", None, "your own folder of images",
                layout="ROOT/train/<class>/<image> and ROOT/test/<class>/<image> (or ROOT/val/)"),
)}

# The thesis's four datasets, in the order of its figures 4.1–4.4 (scratch) and 4.5–4.8 (fine-tune).
THESIS_DATASETS = ("flowers102", "fgvc_aircraft", "stanford_cars", "oxford_pet")


@dataclass(frozen=True)
class Entry:
    """A recipe's or a loss's entry: its name, a label for tables and figures, a one-line summary,
    and the module that registers its implementation."""

    name: str
    label: str
    summary: str
    module: str


@dataclass(frozen=True)
class RecipeInfo(Entry):
    module: str = "tort_core.recipes"


RECIPE_INFO: dict[str, RecipeInfo] = {r.name: r for r in (
    RecipeInfo("tort", "Tort", "the thesis's method: supervised cross-entropy + DINO-style self-distillation "
               "(EMA teacher, multi-crop with a masked view) + rotation prediction"),
    RecipeInfo("sota", "sota (thesis baseline)", "the thesis's supervised baseline after Steiner et al., run "
               "with timm's training script (fidelity=as_run: the original code's configs/01 exactly)"),
    RecipeInfo("augreg", "AugReg (Steiner et al.)", "Steiner et al.'s 'How to train your ViT?' recipe as "
               "published: AdamW-style decoupled weight decay 0.1, dropout and stochastic depth 0.1, "
               "RandAugment(2, 15), Mixup 0.5, clipping at 1"),
    RecipeInfo("deit", "DeiT (Touvron et al.)", "DeiT's training recipe: AdamW, RandAugment, Mixup + CutMix, "
               "label smoothing, random erasing, stochastic depth"),
)}


@dataclass(frozen=True)
class LossInfo(Entry):
    module: str = "tort_core.losses"


LOSS_INFO: dict[str, LossInfo] = {x.name: x for x in (
    LossInfo("distill", "distillation", "DINO self-distillation: centred, sharpened EMA teacher vs student, "
             "every teacher view against every other student view"),
    LossInfo("supervised", "supervised", "cross-entropy of the class head on the global-like views"),
    LossInfo("rotation", "rotation", "cross-entropy of the 4-way rotation head on the global-like views"),
    LossInfo("region", "region distillation", "EsViT's region-level distillation (best-matching regions)"),
)}


@dataclass(frozen=True)
class ProfileInfo:
    """A profile: a named overlay that scales the whole run (`config.PROFILES` holds its values)."""

    name: str
    summary: str


PROFILE_INFO: dict[str, ProfileInfo] = {p.name: p for p in (
    ProfileInfo("thesis", "the thesis's scale: ViT-B/16, 224/96-px views, 100 epochs, Flowers-102"),
    ProfileInfo("demo", "a tiny ViT on the embedded digits, 32/16-px views, 4 epochs: minutes on a CPU"),
    ProfileInfo("small", "the demo's ViT on real photographs (an ImageFolder --data-root), 48/24-px views, 20 "
                         "epochs: minutes per run on a CPU"),
)}


@dataclass(frozen=True)
class MetricInfo:
    """A per-epoch metric (or a trial-level one built from it: `final_<m>`, `best_<m>`).

    `higher_is_better` is None where neither direction is better (lr, momentum); `kind` groups
    metrics: accuracy (%, chance-relative), loss, diagnostic, schedule, speed, memory."""

    name: str
    label: str
    kind: str
    higher_is_better: bool | None = None
    unit: str = ""
    machine: bool = False  # measures the machine and process, not what the run computed


METRIC_INFO: dict[str, MetricInfo] = {m.name: m for m in (
    MetricInfo("test_top1", "test top-1 (%)", "accuracy", True, "%"),
    MetricInfo("knn_top1", "k-NN top-1 (%)", "accuracy", True, "%"),
    MetricInfo("val_top1", "validation top-1 (%)", "accuracy", True, "%"),
    MetricInfo("val_knn_top1", "validation k-NN top-1 (%)", "accuracy", True, "%"),
    MetricInfo("train_top1", "train top-1 (%)", "accuracy", True, "%"),
    MetricInfo("loss", "loss (weighted sum)", "loss", False),
    MetricInfo("lr", "learning rate", "schedule"),
    MetricInfo("momentum", "teacher EMA momentum", "schedule"),
    MetricInfo("teacher_temp", "teacher temperature", "schedule"),
    MetricInfo("grad_norm", "gradient norm (before clipping)", "diagnostic"),
    MetricInfo("teacher_entropy", "teacher entropy per sample (nats)", "diagnostic"),
    MetricInfo("teacher_batch_entropy", "entropy of the teacher's batch mean (nats)", "diagnostic"),
    MetricInfo("train_seconds", "training seconds per epoch", "speed", False, "s", machine=True),
    MetricInfo("data_wait_seconds", "seconds waiting for data per epoch", "speed", False, "s", machine=True),
    MetricInfo("eval_seconds", "evaluation seconds per epoch", "speed", False, "s", machine=True),
    MetricInfo("checkpoint_seconds", "checkpoint seconds per epoch", "speed", False, "s", machine=True),
    MetricInfo("epoch_seconds", "seconds per epoch", "speed", False, "s", machine=True),
    MetricInfo("samples_per_s", "training images per second", "speed", True, "img/s", machine=True),
    MetricInfo("peak_mem_mb", "peak memory (MB)", "memory", False, "MB", machine=True),
    MetricInfo("distill_settling_epoch", "epoch the distillation loss made 90% of its drop", "convergence", False),
)}

# Record keys that measure the machine and the process (speed, memory), not what the run computed.
MACHINE_METRICS = frozenset(m.name for m in METRIC_INFO.values() if m.machine)


def metric_info(name: str) -> MetricInfo:
    """The entry for `name`, including `loss_<loss>`, `final_<m>`, `best_<m>` and `valsel_<m>`; an unknown name
    gets a neutral entry labelled with its own name."""
    if name in METRIC_INFO:
        return METRIC_INFO[name]
    for prefix in ("final_", "best_"):
        if name.startswith(prefix):
            base = metric_info(name[len(prefix):])
            return MetricInfo(name, f"{prefix[:-1]} {base.label}", base.kind, base.higher_is_better, base.unit,
                              base.machine)
    if name.startswith("valsel_"):  # the value at the epoch of the best validation top-1
        base = metric_info(name[len("valsel_"):])
        return MetricInfo(name, f"{base.label} at the best-val_top1 epoch (validation-selected)", base.kind,
                          base.higher_is_better, base.unit, base.machine)
    if name.startswith("loss_"):
        loss = name[len("loss_"):]
        label = LOSS_INFO[loss].label if loss in LOSS_INFO else loss
        return MetricInfo(name, f"{label} loss", "loss", False)
    return MetricInfo(name, name, "other")


def metric_label(name: str) -> str:
    return metric_info(name).label


def chance_top1(classes: int | None) -> float:
    """Top-1 accuracy (%) of a uniform guess over `classes`; NaN if unknown."""
    return 100.0 / classes if classes else math.nan
