"""Trial identity: what a trial's id is a hash of, and the fingerprint of file-based data.

A trial id (`RunConfig.content_hash()`) is a hash of what the run computes, not of where or how
fast it runs. Its rules, each here once:

- runtime-only keys (fields marked `runtime` in `config.py`) never count;
- the keys of version 1 of the config (`V1_KEYS`, the fields the id covered when stores were
  first written) always count, as they always did, so an id written then is still the id now;
- every key added since counts only when it differs from its default: adding a field with a
  default changes no existing id, and setting it gives a new one;
- a correction of what a config computes that no config value records (`corrections`) is named in
  the ids of the configs it changes, and only theirs: a result computed before it is never taken
  for one of the corrected code;
- file-based data counts through `data.fingerprint` (sorted relative paths and sizes of the
  dataset's files), filled in when a config is built: two different trees with one folder name
  get different ids, the same tree on two machines the same id.

Pure Python (no torch, no pandas): the analysis and the CLI's validation import it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

# The config's keys as of the first stores (identity scheme version 1). Never edit this list: a key
# added to the config later is hashed only when it differs from its default (see content_hash).
V1_KEYS = frozenset((
    "recipe", "profile", "mode", "seed", "epochs", "batch_size", "device", "amp", "compile", "compile_random",
    "finite_check_every", "checkpoint_every", "checkpoint_write", "model.name", "model.kwargs", "model.drop_path",
    "model.dropout", "model.init", "data.dataset", "data.root", "data.num_workers", "data.eval_batch_size",
    "data.pin_memory", "data.decoded_cache_mb", "data.train_limit", "data.test_limit", "views.global_size",
    "views.local_size", "views.n_local", "views.global_scale", "views.local_scale", "views.mask_scale",
    "views.mask_ratio", "views.rot_prob", "views.teacher_rotated", "views.color_jitter", "views.jitter_prob",
    "views.grayscale_prob", "views.blur_sigma", "views.blur_prob_global1", "views.blur_prob_global2",
    "views.blur_prob_local", "views.solarize_prob", "views.eval_crop_pct", "views.augment_on", "heads.out_dim",
    "heads.hidden_dim", "heads.bottleneck_dim", "heads.nlayers", "heads.norm_last_layer", "loss.enabled",
    "loss.weights", "loss.student_temp", "loss.teacher_temp", "loss.warmup_teacher_temp",
    "loss.warmup_teacher_temp_epochs", "loss.center_momentum", "loss.label_smoothing", "optim.name", "optim.lr",
    "optim.min_lr", "optim.warmup_lr", "optim.warmup_epochs", "optim.cooldown_epochs", "optim.warmup_prefix",
    "optim.weight_decay", "optim.clip_grad", "optim.betas", "optim.momentum", "optim.fused", "teacher.momentum",
    "teacher.final_momentum", "aug.randaugment", "aug.mixup", "aug.cutmix", "aug.scale", "aug.hflip", "eval.knn_k",
    "eval.knn_temperature", "eval.knn_features", "eval.every", "eval.cache", "eval.cache_max_mb",
))


_V1_SECTIONS = frozenset(k.split(".")[0] for k in V1_KEYS if "." in k)
_MISSING = object()


def identity_blob(dump: dict[str, Any], defaults: dict[str, Any], runtime: set[str], leaves: set[str]) -> dict:
    """The nested dict an id hashes: `dump` (a config's JSON dump) without runtime-only keys and
    without post-v1 keys at their default. `defaults` is the default config's dump, `leaves` the
    config's dotted keys (a dict-valued key there, like `model.kwargs`, is a value, not a section)."""

    def walk(d: dict[str, Any], base: dict[str, Any], prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            key = f"{prefix}{k}"
            if key in runtime:
                continue
            if isinstance(v, dict) and key not in leaves:  # a section
                sub = walk(v, base.get(k) or {}, key + ".")
                if sub or key in _V1_SECTIONS:
                    out[k] = sub
                continue
            if key not in V1_KEYS and base.get(k, _MISSING) == v:
                continue  # a field added after v1, at its default: not part of the id
            out[k] = v
        return out

    return walk(dump, defaults, "")




def corrections(cfg: Any) -> list[str]:
    """The corrections that change what `cfg` (a RunConfig) computes although none of its values
    changed, by name, in the order they were made. Each condition is exactly the configs whose
    computation differs from before the correction; never edit one once ids carry it."""
    out = []
    if cfg.recipe == "sota" and cfg.model.dropout > 0 and cfg.model.dropout_at == "head":
        out.append("sota_head_dropout_once")  # was two masks: timm's head dropout and the recipe's own
    loss = cfg.loss
    distills = bool({"distill", "region"} & set(loss.enabled)) or loss.keep_distill
    if distills and loss.warmup_teacher_temp_epochs >= 2 and loss.warmup_teacher_temp != loss.teacher_temp:
        out.append("teacher_temp_linspace")  # DINO's linspace reaches teacher_temp at epoch W - 1, not W
    size, crop = cfg.views.global_size, cfg.views.eval_crop_pct
    if math.floor(size / crop) != int(round(size / crop)):
        out.append("eval_resize_floor")  # timm's floor(size / crop_pct), not rounded
    return out


def hash_blob(blob: dict[str, Any]) -> str:
    text = json.dumps(blob, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# ---------------------------------------------------------------------------------------------
# Data fingerprints

_FINGERPRINTS: dict[str, str | None] = {}  # resolved dataset folder → fingerprint (per process)


def dataset_folder(dataset: str, root: str | Path | None) -> Path | None:
    """The folder that holds `dataset`'s files under `root`: the root itself for an ImageFolder
    tree, the layout's first folder for a torchvision dataset (a root may hold several datasets),
    None for an embedded dataset or an unknown name."""
    from .catalog import DATASET_INFO

    info = DATASET_INFO.get(dataset)
    if root is None or info is None or not info.needs_root:
        return None
    root = Path(root).expanduser()
    parts = info.layout.split("/")
    if dataset != "imagefolder" and len(parts) > 1 and parts[0] == "ROOT" and not any(c in parts[1] for c in "{<"):
        return root / parts[1]
    return root


def data_fingerprint(dataset: str, root: str | Path | None) -> str | None:
    """A hash of the sorted relative paths and sizes of every file of `dataset` under `root` (hidden
    files and folders skipped), or None where there are no files (embedded data, missing root).
    Cheap (no file is read) and cached per folder for the life of the process."""
    folder = dataset_folder(dataset, root)
    if folder is None or not folder.is_dir():
        return None
    key = str(folder.resolve())
    if key not in _FINGERPRINTS:
        h = hashlib.sha256()
        entries = []
        for dirpath, dirnames, filenames in os.walk(key):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = os.path.relpath(dirpath, key)
            for name in filenames:
                if name.startswith("."):
                    continue
                path = os.path.join(dirpath, name)
                try:
                    size = os.stat(path).st_size
                except OSError:
                    continue
                entries.append((os.path.normpath(os.path.join(rel, name)), size))
        for rel, size in sorted(entries):
            h.update(f"{rel}\t{size}\n".encode())
        _FINGERPRINTS[key] = f"{len(entries)}:{h.hexdigest()[:16]}"
    return _FINGERPRINTS[key]


def forget_fingerprints() -> None:
    """Forget the cached fingerprints (a test that changes a tree in place)."""
    _FINGERPRINTS.clear()
