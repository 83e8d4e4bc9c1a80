"""The sota recipe's training augmentation with everything but decoding moved onto the device.

timm's pipeline (`views.supervised_transform`) is RandomResizedCrop → horizontal flip →
RandAugment (two ops per image out of fifteen, each applied with probability ½ at a jittered
magnitude) on PIL images in the loader workers: 5–8 ms of CPU per image from sources of 160–500
px, so 2,500 images/s would need 14–23 cores. Here the split is:

  CPU (DataLoader worker, `SupervisedDraws`): decode, and every random draw — timm's own
      objects make them, in their own order, with the PIL work replaced by a recorder — packed
      into one float row per image (`pad_collate` batches them).
  device (`DeviceSupervised`, once per batch): the crop (`device_views.resized_crops`, PIL's
      antialiased bicubic weights), the flip, each image's RandAugment ops with PIL's arithmetic
      (look-up tables for the point ops, float32 blends truncated as Pillow's `Image.blend`,
      affine warps with Pillow's bilinear/bicubic filters in float64 and its fill colour), then
      normalisation.
      Every sample meets every op kind of a layer with fixed shapes and selects its own, so there
      are no host syncs and the whole half compiles as one graph.

A seed therefore gives the same crop, flip, ops and magnitudes on both paths, and from the same
crop the same RandAugment output level for level; the crops themselves differ by a few levels
where Pillow resamples vertically first (`tests/tort_core/test_device_randaugment.py` compares
per op and per policy against Pillow and timm, per image against the CPU path, and in distribution). A RandAugment policy with an op not listed in
`_RECORDED` (timm's blur ops) keeps RandAugment in the workers: `device_split` returns None.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from timm.data import auto_augment as taa
from timm.data.transforms import RandomResizedCropAndInterpolation
from torchvision import transforms as T

from .device_views import _imagenet_stats, channel_constant, per_sample, resized_crops
from .views import posterize_any_bits

# Device op kinds. The first six are point ops (a 256-entry table per sample and channel), the next
# four blends with a "degenerate" image, the last one an affine warp (matrix in the row).
AUTOCONTRAST, EQUALIZE, INVERT, POSTERIZE, SOLARIZE, SOLARIZE_ADD = range(6)
COLOR, CONTRAST, BRIGHTNESS, SHARPNESS = range(6, 10)
AFFINE = 10
NONE = -1.0  # a layer whose op was skipped (RandAugment applies each with probability ½)

# Row layout: the crop box, the flip, then per RandAugment layer: kind, argument, filter (1 bicubic,
# 0 bilinear) and the affine matrix (a, b, c, d, e, f: output pixel centre → source coordinates).
CROP = slice(0, 4)
FLIP = 4
LAYER0, LAYER_WIDTH = 5, 9
KIND, ARG, BICUBIC, MATRIX = 0, 1, 2, slice(3, 9)


def _row_width(layers: int) -> int:
    return LAYER0 + LAYER_WIDTH * layers


def _affine_matrix(size: int, op: Callable, value: float) -> list[float]:
    """The affine data Pillow's Image.transform receives for timm's geometric op `op` at `value`
    on a size × size image (output pixel centre → source coordinates)."""
    if op is taa.rotate:  # as Image.rotate (no expand): about the centre, 15-digit trigonometry
        a = -math.radians(value % 360.0)  # Image.rotate reduces the angle first: other digits after rounding
        m = [round(math.cos(a), 15), round(math.sin(a), 15), 0.0, round(-math.sin(a), 15), round(math.cos(a), 15), 0.0]
        c = size / 2
        m[2] = m[0] * -c + m[1] * -c + c
        m[5] = m[3] * -c + m[4] * -c + c
        return m
    pixels_x = {taa.translate_x_rel: value * size, taa.translate_x_abs: value}.get(op, 0.0)
    pixels_y = {taa.translate_y_rel: value * size, taa.translate_y_abs: value}.get(op, 0.0)
    shear_x = value if op is taa.shear_x else 0.0
    shear_y = value if op is taa.shear_y else 0.0
    return [1.0, shear_x, pixels_x, shear_y, 1.0, pixels_y]


# timm's op functions → the device op kind that replays them.
_POINT = {taa.auto_contrast: AUTOCONTRAST, taa.equalize: EQUALIZE, taa.invert: INVERT, taa.posterize: POSTERIZE,
          posterize_any_bits: POSTERIZE, taa.solarize: SOLARIZE, taa.solarize_add: SOLARIZE_ADD}
_BLEND = {taa.color: COLOR, taa.contrast: CONTRAST, taa.brightness: BRIGHTNESS, taa.sharpness: SHARPNESS}
_WARP = (taa.rotate, taa.shear_x, taa.shear_y, taa.translate_x_rel, taa.translate_y_rel, taa.translate_x_abs,
         taa.translate_y_abs)
_RECORDED = {*_POINT, *_BLEND, *_WARP, taa.desaturate}


class _Recording:
    """Stands in for the PIL image while timm's RandAugment runs: collects each applied op."""

    def __init__(self, size: int, layers: int):
        self.size, self.row = size, [NONE, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0] * layers
        self.applied = 0


def _recorder(op: Callable) -> Callable:
    def record(rec: _Recording, *args: Any, **kwargs: Any) -> _Recording:
        value = float(args[0]) if args else 0.0
        bicubic, matrix = 0.0, None
        if op in _WARP:
            taa._check_args_tf(kwargs)  # timm's own draw of the filter, where it is a random choice
            bicubic = float(kwargs["resample"] == Image.Resampling.BICUBIC)
            matrix = _affine_matrix(rec.size, op, value)
        if op is taa.desaturate:  # Color at the factor desaturate derives
            kind, value = COLOR, min(1.0, max(0.0, 1.0 - value))
        else:
            kind = AFFINE if op in _WARP else _POINT.get(op, _BLEND.get(op))
        base = rec.applied * LAYER_WIDTH
        rec.row[base:base + 3] = [float(kind), value, bicubic]
        if matrix is not None:
            rec.row[base + 3:base + 9] = matrix
        rec.applied += 1
        return rec
    return record


def _unwrap(transform) -> tuple[RandomResizedCropAndInterpolation, T.RandomHorizontalFlip | None,
                                taa.RandAugment | None, list]:
    stages = list(getattr(transform, "transforms", [transform]))
    crop = stages.pop(0)
    if not isinstance(crop, RandomResizedCropAndInterpolation) or isinstance(crop.interpolation, (list, tuple)):
        raise TypeError(f"expected timm's RandomResizedCropAndInterpolation with one filter, got {crop}")
    flip = stages.pop(0) if stages and isinstance(stages[0], T.RandomHorizontalFlip) else None
    augment = stages.pop(0) if stages and isinstance(stages[0], taa.RandAugment) else None
    return crop, flip, augment, stages


def device_split(transform, compile: bool = False) -> tuple[SupervisedDraws, DeviceSupervised] | None:
    """The worker and device halves of timm's training transform (built with use_prefetcher=True),
    or None where part of it has no device version here (then the workers keep it all)."""
    try:
        crop, flip, augment, rest = _unwrap(transform)
    except TypeError:
        return None
    if any(type(s).__name__ not in ("MaybePILToTensor", "ToNumpy") for s in rest):
        return None
    if augment is not None:
        filters = {Image.Resampling.BILINEAR, Image.Resampling.BICUBIC}
        resample = [op.kwargs.get("resample") for op in augment.ops]
        if (any(op.aug_fn not in _RECORDED for op in augment.ops)
                or len({tuple(op.kwargs.get("fillcolor", ())) for op in augment.ops}) != 1
                or not all(set(r if isinstance(r, (list, tuple)) else [r]) <= filters for r in resample)):
            return None
    size = crop.size[0]
    if crop.size[0] != crop.size[1] or crop.interpolation != T.InterpolationMode.BICUBIC:
        return None
    layers = augment.num_layers if augment is not None else 0
    fill = augment.ops[0].kwargs["fillcolor"] if augment is not None else (0, 0, 0)
    return SupervisedDraws(crop, flip, augment, size), DeviceSupervised(size, layers, fill, compile)


# ---------------------------------------------------------------------------------------------
# CPU half

class SupervisedDraws:
    """PIL image → (uint8 crop box [h, w, 3], params [row]): the decoded pixels of the drawn crop
    box and every draw of timm's crop, flip and RandAugment, made by timm's own objects in their
    order."""

    def __init__(self, crop: RandomResizedCropAndInterpolation, flip: T.RandomHorizontalFlip | None,
                 augment: taa.RandAugment | None, size: int):
        self.crop, self.flip, self.size = crop, flip, size
        self.layers = augment.num_layers if augment is not None else 0
        self.augment = None
        if augment is not None:
            ops = []
            for op in augment.ops:  # copies whose PIL work is a recorder; the draws stay timm's
                twin = taa.AugmentOp.__new__(taa.AugmentOp)
                twin.__dict__.update(op.__dict__, aug_fn=_recorder(op.aug_fn))
                ops.append(twin)
            self.augment = taa.RandAugment(ops, augment.num_layers, augment.choice_weights)

    def __call__(self, image: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        if image.mode != "RGB":
            image = image.convert("RGB")
        top, left, height, width = self.crop.get_params(image, self.crop.scale, self.crop.ratio)
        flip = float(self.flip is not None and torch.rand(1) < self.flip.p)  # RandomHorizontalFlip's test
        rec = _Recording(self.size, self.layers)
        if self.augment is not None:
            self.augment(rec)
        # Only the crop box is converted and travels: the resize reads no pixel outside it (about
        # half the bytes to copy, pad and ship on average).
        box = image.crop((left, top, left + width, top + height))
        pixels = torch.from_numpy(np.array(box, dtype=np.uint8, copy=True))
        # float64: the affine matrices must reach the device as Pillow computes them (in doubles).
        return pixels, torch.tensor([0.0, 0.0, float(height), float(width), flip] + rec.row, dtype=torch.float64)


# ---------------------------------------------------------------------------------------------
# Device half: RandAugment's ops with Pillow's arithmetic, batched, on [N, 3, H, W] floats
# holding uint8 levels (0…255)

def point_tables(x: torch.Tensor, kind: torch.Tensor, arg: torch.Tensor) -> torch.Tensor:
    """[N, 3, 256] look-up tables (as float levels): each sample's point op, identity for others.
    Built in float64, as ImageOps computes them in Python."""
    n = x.shape[0]
    levels = torch.arange(256, device=x.device, dtype=torch.float64).expand(n, 3, 256)
    k = kind.view(-1, 1, 1)
    a = arg.to(torch.float64).view(-1, 1, 1)
    # AutoContrast (no cutoff): stretch each channel's [lowest, highest] level to [0, 255].
    lo = x.amin(dim=(2, 3)).to(torch.float64).unsqueeze(-1)
    hi = x.amax(dim=(2, 3)).to(torch.float64).unsqueeze(-1)
    # A tensor ÷ tensor: `255.0 / t` runs as 255 · (1/t), a unit in the last place off Python's 255 / t.
    scale = torch.full_like(hi, 255.0) / torch.where(hi > lo, hi - lo, torch.ones_like(hi))
    stretched = torch.where(hi > lo, (levels * scale + (-lo * scale)).trunc().clamp(0, 255), levels)
    # Equalize: each channel's cumulative histogram, in ImageOps.equalize's integer steps.
    codes = x.reshape(n * 3, -1).long()
    hist = torch.zeros(n * 3, 256, dtype=torch.long, device=x.device).scatter_add_(1, codes, torch.ones_like(codes))
    total = hist.sum(dim=1, keepdim=True)
    top = hist.gather(1, codes.amax(dim=1, keepdim=True))  # the count of the highest level present
    step = (total - top) // 255
    below = hist.cumsum(dim=1) - hist
    equalized = torch.where(step > 0, (step // 2 + below) // step.clamp(min=1), torch.arange(256, device=x.device))
    equalized = equalized.clamp(max=255).view(n, 3, 256).to(torch.float64)
    # Posterize keeps the top `bits` bits: floor to a multiple of 2^(8 − bits).
    quantum = torch.exp2(8 - a)
    tables = torch.where(k == AUTOCONTRAST, stretched, levels)
    tables = torch.where(k == EQUALIZE, equalized, tables)
    tables = torch.where(k == INVERT, 255 - levels, tables)
    tables = torch.where(k == POSTERIZE, (levels / quantum).floor() * quantum, tables)
    tables = torch.where(k == SOLARIZE, torch.where(levels < a, levels, 255 - levels), tables)
    tables = torch.where(k == SOLARIZE_ADD, torch.where(levels < 128, (levels + a).clamp(max=255), levels), tables)
    return tables.to(x.dtype)


def apply_tables(x: torch.Tensor, tables: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    return tables.gather(2, x.reshape(n, c, h * w).long()).view(n, c, h, w)


def luma(x: torch.Tensor) -> torch.Tensor:
    """[N, 1, H, W] Pillow's RGB → L: (19595 R + 38470 G + 7471 B + 2^15) >> 16 (exact in float32)."""
    r, g, b = x.unbind(1)
    return torch.floor((r * 19595 + g * 38470 + b * 7471 + 32768) / 65536).unsqueeze(1)


def smooth(x: torch.Tensor) -> torch.Tensor:
    """ImageFilter.SMOOTH (3×3, centre 5, others 1, /13, rounded); the one-pixel border is kept."""
    n, c, h, w = x.shape
    kernel = torch.ones(3, 3, device=x.device, dtype=x.dtype)
    kernel[1, 1] = 5
    kernel = (kernel / 13).expand(c, 1, 3, 3)
    out = x.clone()
    out[:, :, 1:-1, 1:-1] = F.conv2d(x, kernel, groups=c).add(0.5).floor().clamp(0, 255)
    return out


def blends(x: torch.Tensor, kind: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """ImageEnhance's Color, Contrast, Brightness, Sharpness, each sample its own (others pass):
    Image.blend(degenerate, x, f) in float32 as Pillow, truncated to a level."""
    k = per_sample(kind)
    gray = luma(x)
    mean = torch.floor(gray.to(torch.float64).mean(dim=(1, 2, 3), keepdim=True) + 0.5).to(x.dtype)
    degenerate = torch.where(k == COLOR, gray, torch.where(k == CONTRAST, mean, torch.where(
        k == SHARPNESS, smooth(x), torch.zeros_like(x))))
    f = per_sample(factor.to(x.dtype))
    out = (degenerate + f * (x - degenerate)).clamp(0, 255).trunc()
    return torch.where((k >= COLOR) & (k <= SHARPNESS), out, x)


def _interpolate(v: list[torch.Tensor], d: torch.Tensor, cubic: torch.Tensor) -> torch.Tensor:
    """Pillow's affine-transform filters (Geometry.c) at offset d past tap v[1] of four neighbours,
    in its own float64 operations: BILINEAR v1 + (v2 − v1)·d, BICUBIC its nested a = −1 cubic.
    The same operations matter: a value on a level must truncate to that level, as Pillow's does."""
    v0, v1, v2, v3 = v
    linear = v1 + (v2 - v1) * d
    p2, p3, p4 = -v0 + v2, 2 * (v0 - v1) + v2 - v3, -v0 + v1 - v2 + v3
    return torch.where(cubic, v1 + d * (p2 + d * (p3 + d * p4)), linear)


def warp(x: torch.Tensor, matrix: torch.Tensor, bicubic: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """Image.transform(AFFINE) per sample, as Pillow: output pixel (i, j) samples the source at
    matrix · (j + ½, i + ½); outside the source it is `fill`; inside, bilinear (2×2) or bicubic
    (4×4) taps with indices clamped to the edge, rows first, then clipped and truncated to a level.
    All in float64, as Pillow (in float32 a level can truncate one lower, and a following
    equalize can stretch that difference to many levels)."""
    n, c, h, w = x.shape
    m = matrix.to(torch.float64).view(n, 6, 1, 1)
    cols = torch.arange(w, device=x.device, dtype=torch.float64).view(1, 1, w) + 0.5
    rows = torch.arange(h, device=x.device, dtype=torch.float64).view(1, h, 1) + 0.5
    sx = m[:, 0] * cols + m[:, 1] * rows + m[:, 2]  # [N, H, W] source coordinates
    sy = m[:, 3] * cols + m[:, 4] * rows + m[:, 5]
    inside = (sx >= 0) & (sx < w) & (sy >= 0) & (sy < h)
    x0, y0 = (sx - 0.5).floor(), (sy - 0.5).floor()
    dx, dy = (sx - 0.5 - x0).unsqueeze(1), (sy - 0.5 - y0).unsqueeze(1)
    cubic = (bicubic > 0).view(n, 1, 1, 1)
    xi = [(x0 + t).clamp(0, w - 1).long() for t in (-1, 0, 1, 2)]
    rows_at = [(y0 + t).clamp(0, h - 1).long() * w for t in (-1, 0, 1, 2)]
    flat = x.to(torch.float64).reshape(n, c, h * w)

    def tap(row: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
        return flat.gather(2, (row + col).view(n, 1, h * w).expand(n, c, h * w)).view(n, c, h, w)

    across = [_interpolate([tap(r, col) for col in xi], dx, cubic) for r in rows_at]
    out = _interpolate(across, dy, cubic).clamp(0, 255).trunc().to(x.dtype)
    return torch.where(inside.unsqueeze(1), out, fill.view(1, 3, 1, 1).to(x.dtype))


def rand_augment(x: torch.Tensor, params: torch.Tensor, layers: int, fill: torch.Tensor) -> torch.Tensor:
    """Each sample's recorded RandAugment layers, in order; kind NONE passes unchanged."""
    for layer in range(layers):
        p = params[:, LAYER0 + layer * LAYER_WIDTH:LAYER0 + (layer + 1) * LAYER_WIDTH]
        kind, arg = p[:, KIND], p[:, ARG]
        k = per_sample(kind)
        pointed = apply_tables(x, point_tables(x, kind, arg))
        warped = warp(x, p[:, MATRIX], p[:, BICUBIC], fill)
        x = torch.where((k >= 0) & (k < COLOR), pointed,
                        torch.where(k == AFFINE, warped, blends(x, kind, arg)))
    return x


def augment(crops: torch.Tensor, params: torch.Tensor, layers: int, fill: torch.Tensor, mean: torch.Tensor,
            std: torch.Tensor) -> torch.Tensor:
    """Crops [N, 3, S, S] (levels) and their rows → normalised float32 images."""
    x = torch.where(per_sample(params[:, FLIP] > 0), crops.flip(-1), crops)
    x = rand_augment(x, params, layers, fill)
    return (x / 255 - mean) / std


class DeviceSupervised:
    """The device half: ((images [B, H, W, 3] uint8, rows [B, width]), labels) from
    `SupervisedDraws` + `device_views.pad_collate` → (normalised images [B, 3, S, S], labels)."""

    def __init__(self, size: int, layers: int, fill: tuple[int, int, int], compile: bool = False):
        self.size, self.layers, self.fill = size, layers, tuple(float(v) for v in fill)
        self._augment = torch.compile(augment, dynamic=False, fullgraph=True) if compile else augment

    @torch.no_grad()
    def __call__(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        (images, params), labels = batch
        crops = resized_crops(images.permute(0, 3, 1, 2), params[:, None, CROP].float(), self.size)
        mean, std = _imagenet_stats(labels.device)
        fill = channel_constant(self.fill, labels.device)
        return self._augment(crops, params, self.layers, fill, mean, std), labels
