"""Tort's multi-crop views with everything but decoding moved onto the training device.

Nine augmented views per image is the classic DINO-style bottleneck: on one CPU core the PIL
pipeline of `views.MultiCropTransform` makes ~25 images/s at thesis sizes, so an H100 stepping at
520 samples/s would need 20+ cores. Here the split is:

  CPU (DataLoader worker, `MultiCropDraws`): decode, and *every random draw* of every view — in the
      same order and from the same torch RNG calls as `MultiCropTransform` — packed into a small
      float row per view. The image leaves the worker as uint8; `pad_collate` pads a batch to its
      largest image.
  device (`DeviceViews`, once per batch): RandomResizedCrop as two batched matrix products with
      PIL's own antialiased bicubic weights (rounded to uint8 levels after each pass, as PIL does),
      then flip, colour jitter (per-sample factors and order), grayscale, Gaussian blur
      (per-sample sigma), solarisation, normalisation and the masked view's erased rectangle.
      No host syncs; the photometric part has fixed shapes and can be compiled.

Because the draws are the CPU path's draws, a seed gives the same crops, flips, jitter factors,
blur radii and boxes on both paths; what differs is the arithmetic (float tensors instead of PIL's
uint8 steps, a true Gaussian instead of PIL's three box passes). `tests/tort_core/test_device_views.py`
compares the two per op, per sample and in distribution. The randomness still depends only on
(seed, epoch, index) (`trainer.SeededViews`), so exact resume holds on this path too.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import get_worker_info
from PIL import Image
from timm.data.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torchvision import transforms as T

from .config import ViewsConfig
from .views import GLOBAL_LIKE, MaskErase

# Layout of one view's parameter row.
FLIP, JITTER, BRIGHTNESS, CONTRAST, SATURATION, HUE = 0, 1, 2, 3, 4, 5
ORDER = slice(6, 10)  # the permutation of (brightness, contrast, saturation, hue), as ColorJitter draws it
GRAY, SIGMA, SOLARIZE = 10, 11, 12  # SIGMA 0: not blurred
BOX = slice(13, 17)  # erased rectangle (top, left, height, width); height 0: none
CROP = slice(17, 21)  # RandomResizedCrop's box in the source image (top, left, height, width)
N_PARAMS = 21

SOLARIZE_THRESHOLD = 128  # of 255, as the CPU path's RandomSolarize(threshold=128)
# ITU-R 601-2 luma, as PIL's convert("L") and torchvision's rgb_to_grayscale.
LUMA = (0.299, 0.587, 0.114)


# ---------------------------------------------------------------------------------------------
# CPU half: decode and random draws, in the CPU path's order

class _ViewDraws:
    """One view kind: its crop size and scale, and which optional stages it has."""

    def __init__(self, size: int, scale: tuple[float, float], cfg: ViewsConfig, blur_p: float | None,
                 solarize_p: float | None, erase: MaskErase | None):
        self.size, self.scale = size, scale
        self.jitter = T.ColorJitter(*cfg.color_jitter)
        self.jitter_p, self.gray_p = cfg.jitter_prob, cfg.grayscale_prob
        self.blur_p, self.sigma = blur_p, cfg.blur_sigma
        self.solarize_p, self.erase = solarize_p, erase

    def __call__(self, image: Image.Image) -> list[float]:
        # A list, made a tensor once per image: per-element tensor writes cost more than the draws.
        p = [0.0] * N_PARAMS
        p[BRIGHTNESS] = p[CONTRAST] = p[SATURATION] = 1.0
        p[ORDER] = [0.0, 1.0, 2.0, 3.0]
        # Each draw below mirrors one transform of views.MultiCropTransform, same call, same order.
        p[CROP] = [float(v) for v in T.RandomResizedCrop.get_params(image, self.scale, (3 / 4, 4 / 3))]
        p[FLIP] = float(torch.rand(1) < 0.5)
        if not self.jitter_p < torch.rand(1):  # RandomApply's test
            order, b, c, s, hue = T.ColorJitter.get_params(self.jitter.brightness, self.jitter.contrast,
                                                           self.jitter.saturation, self.jitter.hue)
            p[JITTER] = 1.0
            p[ORDER] = [float(v) for v in order.tolist()]
            for index, factor in ((BRIGHTNESS, b), (CONTRAST, c), (SATURATION, s), (HUE, hue)):
                if factor is not None:
                    p[index] = float(factor)
        p[GRAY] = float(torch.rand(1) < self.gray_p)
        if self.blur_p is not None and not self.blur_p < torch.rand(1):
            p[SIGMA] = torch.empty(1).uniform_(*self.sigma).item()
        if self.solarize_p is not None:
            p[SOLARIZE] = float(torch.rand(1).item() < self.solarize_p)
        if self.erase is not None:
            p[BOX] = [float(v) for v in self.erase.box(self.size, self.size)]
        return p


class MultiCropDraws:
    """PIL image → (uint8 image [H, W, 3], params [views, N_PARAMS]) for
    [global 1, global 2, masked, local × n_local]. Channels stay last, as decoded: the device
    transposes in one pass, where the CPU would take a strided copy per image."""

    def __init__(self, cfg: ViewsConfig):
        g, lo = (cfg.global_size, cfg.global_scale), (cfg.local_size, cfg.local_scale)
        self.views = [
            _ViewDraws(*g, cfg, cfg.blur_prob_global1, None, None),
            _ViewDraws(*g, cfg, cfg.blur_prob_global2, cfg.solarize_prob, None),
            _ViewDraws(*g, cfg, None, None, MaskErase(cfg.mask_scale, cfg.mask_ratio)),
            *[_ViewDraws(*lo, cfg, cfg.blur_prob_local, None, None) for _ in range(cfg.n_local)],
        ]

    def __call__(self, image: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        if image.mode != "RGB":
            image = image.convert("RGB")
        pixels = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True))
        return pixels, torch.tensor([view(image) for view in self.views], dtype=torch.float32)


def pad_collate(samples: list) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
    """[((image, params), label)] → ((images [B, H_max, W_max, 3] uint8, params [B, views, N_PARAMS]),
    labels). Padding goes right and down, so crop boxes keep their coordinates and never reach it."""
    height = max(s[0][0].shape[0] for s in samples)
    width = max(s[0][0].shape[1] for s in samples)
    images = torch.empty(len(samples), height, width, 3, dtype=torch.uint8)
    if get_worker_info() is not None:
        images.share_memory_()  # as default_collate: the batch goes to the main process without a copy
    for i, ((image, _), _) in enumerate(samples):
        h, w = image.shape[:2]
        images[i, :h, :w] = image
        images[i, h:] = 0
        images[i, :h, w:] = 0
    params = torch.stack([s[0][1] for s in samples])
    return (images, params), torch.tensor([s[1] for s in samples])


# ---------------------------------------------------------------------------------------------
# Device half: RandomResizedCrop as two matrix products with PIL's resampling weights

def _bicubic(t: torch.Tensor) -> torch.Tensor:
    """PIL's bicubic kernel (a = −0.5, support 2)."""
    t = t.abs()
    a = -0.5
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = (((t - 5) * t + 8) * t - 4) * a
    return torch.where(t < 1, near, torch.where(t < 2, far, torch.zeros_like(t)))


def resample_weights(start: torch.Tensor, length: torch.Tensor, out_size: int, in_size: int) -> torch.Tensor:
    """[N, out_size, in_size]: the weights by which PIL's antialiased bicubic resize maps the window
    [start, start + length) of an axis of `in_size` pixels onto `out_size` pixels (as
    ImagingResample's precompute_coeffs: the kernel stretched by the downscale factor, normalised
    over the window's pixels)."""
    device = start.device
    scale = (length / out_size).view(-1, 1, 1)
    stretch = scale.clamp(min=1)
    center = (torch.arange(out_size, device=device, dtype=torch.float32).view(1, -1, 1) + 0.5) * scale
    x = torch.arange(in_size, device=device, dtype=torch.float32).view(1, 1, -1) - start.view(-1, 1, 1)
    w = _bicubic((x - center + 0.5) / stretch) * ((x >= 0) & (x < length.view(-1, 1, 1)))
    return w / w.sum(dim=-1, keepdim=True)


def _to_levels(x: torch.Tensor) -> torch.Tensor:
    """Round half up and clip to 0…255, as PIL stores each resampling pass."""
    return x.add(0.5).floor_().clamp_(0, 255)


def resized_crops(images: torch.Tensor, crop: torch.Tensor, size: int) -> torch.Tensor:
    """images [B, 3, H, W] uint8, crop [B, V, 4] (top, left, height, width) → [V·B, 3, size, size]
    floats on the 0…255 grid: view-major, like the CPU path's list of view batches.

    Horizontal pass then vertical, each rounded to uint8 levels, as PIL (Pillow 13 runs some
    reductions vertical pass first: a few pixels then differ by a few levels, on average < 0.25).
    On CUDA the products run in float16 (exact for 0…255; the sums accumulate in float32)."""
    b, v = crop.shape[:2]
    h, w = images.shape[-2:]
    dtype = torch.float16 if images.is_cuda else torch.float32
    top, left, height, width = crop.reshape(-1, 4).unbind(1)
    wx = resample_weights(left, width, size, w).to(dtype).view(b, v, 1, size, w)
    wy = resample_weights(top, height, size, h).to(dtype).view(b, v, 1, size, h)
    x = images.to(dtype).unsqueeze(1)  # [B, 1, 3, H, W]
    rows = _to_levels(x @ wx.transpose(-1, -2))  # [B, V, 3, H, size]
    out = _to_levels(wy @ rows)  # [B, V, 3, size, size]
    return out.transpose(0, 1).reshape(v * b, 3, size, size).float()


# ---------------------------------------------------------------------------------------------
# Device half: batched photometric ops with per-sample parameters, on [N, 3, H, W] floats in [0, 1]

def per_sample(v: torch.Tensor) -> torch.Tensor:
    """[N] → [N, 1, 1, 1]: one value per sample, broadcast over an image batch."""
    return v.view(-1, 1, 1, 1)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """[N, 1, H, W] luma."""
    r, g, b = x.unbind(1)
    return (LUMA[0] * r + LUMA[1] * g + LUMA[2] * b).unsqueeze(1)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    f = per_sample(factor)
    return (f * x + (1 - f) * other).clamp_(0, 1)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (x * per_sample(factor)).clamp(0, 1)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(x, grayscale(x).mean(dim=(-3, -2, -1), keepdim=True), factor)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(x, grayscale(x), factor)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue by `shift` (a fraction of the circle, per sample) through HSV."""
    maxc, argmax = x.max(dim=1)
    minc = x.min(dim=1).values
    delta = maxc - minc
    chroma = delta > 0
    sat = delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc))
    dist = (maxc.unsqueeze(1) - x) / torch.where(chroma, delta, torch.ones_like(delta)).unsqueeze(1)
    rc, gc, bc = dist.unbind(1)
    # Hue sextant from whichever channel is the maximum (ties resolved as argmax does: r, then g).
    hue = torch.where(argmax == 0, bc - gc, torch.where(argmax == 1, 2.0 + rc - bc, 4.0 + gc - rc))
    hue = torch.where(chroma, hue / 6.0, torch.zeros_like(hue))
    hue = torch.remainder(hue + shift.view(-1, 1, 1), 1.0)
    # HSV → RGB: the standard piecewise-linear form, each channel f(n) = v − v·s·clamp(min(k, 4−k), 0, 1)
    # with k = (n + 6h) mod 6, n = 5, 3, 1 for r, g, b.
    n = torch.tensor([5.0, 3.0, 1.0], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    k = torch.remainder(n + 6.0 * hue.unsqueeze(1), 6.0)
    ramp = torch.minimum(k, 4.0 - k).clamp(0, 1)
    v, s = maxc.unsqueeze(1), sat.unsqueeze(1)
    return v - v * s * ramp


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """Separable Gaussian blur with a per-sample standard deviation (0: unchanged), edges replicated.

    `radius` (taps on each side) is fixed per call so that shapes never depend on the data."""
    n, c, h, w = x.shape
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    s = sigma.to(x.dtype).view(-1, 1)
    blurred = s > 0
    kernel = torch.exp(-offsets.square() / (2 * torch.where(blurred, s, torch.ones_like(s)).square()))
    kernel = torch.where(blurred, kernel, (offsets == 0).to(x.dtype))
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # [n·c, taps]
    y = x.reshape(1, n * c, h, w)
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="replicate"), kernel.view(n * c, 1, 1, -1), groups=n * c)
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="replicate"), kernel.view(n * c, 1, -1, 1), groups=n * c)
    return y.view(n, c, h, w)


def erase_boxes(x: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """Zero one rectangle per sample; box [N, 4] = (top, left, height, width), height 0 = none."""
    top, left, height, width = box.unbind(1)
    rows = torch.arange(x.shape[-2], device=x.device, dtype=box.dtype)
    cols = torch.arange(x.shape[-1], device=x.device, dtype=box.dtype)
    in_rows = (rows >= top[:, None]) & (rows < (top + height)[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + width)[:, None])
    return x.masked_fill((in_rows[:, :, None] & in_cols[:, None, :]).unsqueeze(1), 0.0)


def _blend_step(x: torch.Tensor, op: torch.Tensor, p: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """Brightness, contrast or saturation, each sample its own (op 0, 1, 2 as ColorJitter numbers
    them), as one blend: x·f + target·(1 − f), target = black, mean grey or grey. Inactive samples
    (and op 3, hue) get f = 1, the identity."""
    gray = grayscale(x)
    target = torch.where(per_sample(op == 2), gray, per_sample(gray.mean(dim=(-3, -2, -1)) * (op == 1)))
    factor = p[:, BRIGHTNESS:HUE].gather(1, op.clamp(max=2).long().unsqueeze(1)).squeeze(1)
    return _blend(x, target, torch.where(active & (op < 3), factor, torch.ones_like(factor)))


def color_jitter(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """ColorJitter with each sample's own factors and order; samples with JITTER 0 pass unchanged.

    Each sample meets its hue shift once, at its own position in the order, so the batch takes the
    (costly) hue step once: first the blends ordered before each sample's hue, then the hue, then
    the blends after it."""
    on = p[:, JITTER] > 0
    order = p[:, ORDER]
    hue_at = (order == 3).float().argmax(dim=1)  # the position of hue in each sample's order
    for position in range(3):
        x = _blend_step(x, order[:, position], p, on & (position < hue_at))
    x = torch.where(per_sample(on), adjust_hue(x, p[:, HUE]), x)
    for position in range(1, 4):
        x = _blend_step(x, order[:, position], p, on & (position > hue_at))
    return x


def augment(crops: torch.Tensor, p: torch.Tensor, blur_radius: int, mean: torch.Tensor,
            std: torch.Tensor) -> torch.Tensor:
    """Crops [N, 3, H, W] on the 0…255 scale and their params [N, N_PARAMS] → normalised float32 views."""
    x = crops.float() / 255
    x = torch.where(per_sample(p[:, FLIP] > 0), x.flip(-1), x)
    x = color_jitter(x, p)
    x = torch.where(per_sample(p[:, GRAY] > 0), grayscale(x).expand_as(x), x)
    x = gaussian_blur(x, p[:, SIGMA], blur_radius)
    x = torch.where(per_sample(p[:, SOLARIZE] > 0) & (x >= SOLARIZE_THRESHOLD / 255), 1 - x, x)
    x = (x - mean) / std
    return erase_boxes(x, p[:, BOX])


@functools.cache
def channel_constant(values: tuple[float, ...], device: torch.device) -> torch.Tensor:
    """Per-channel constants as [1, C, 1, 1] on `device`, copied there once (not a host→device
    copy per batch)."""
    return torch.tensor(values, dtype=torch.float32, device=device).view(1, -1, 1, 1)


def _imagenet_stats(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """ImageNet mean and std, [1, 3, 1, 1] on `device`."""
    return channel_constant(tuple(IMAGENET_DEFAULT_MEAN), device), channel_constant(tuple(IMAGENET_DEFAULT_STD), device)


class DeviceViews:
    """The device half: a batch ((images, params), labels) from `MultiCropDraws` + `pad_collate` → (views, labels),
    with views laid out as `MultiCropTransform`'s."""

    def __init__(self, cfg: ViewsConfig, compile: bool = False):
        self.cfg = cfg
        # Three standard deviations of the widest blur: the kernel's tails beyond hold < 0.3%.
        self.blur_radius = max(1, math.ceil(3 * cfg.blur_sigma[1]))
        # Eagerly, each of the ~100 elementwise ops is a pass over the batch's memory; compiled, they
        # fuse into a few kernels. Shapes are fixed (drop_last), so one graph per view resolution.
        self._augment = torch.compile(augment, dynamic=False, fullgraph=True) if compile else augment

    @torch.no_grad()
    def __call__(self, batch: Any) -> tuple[list[torch.Tensor], torch.Tensor]:
        (images, params), labels = batch
        images = images.permute(0, 3, 1, 2)  # channels first; resized_crops' products copy it anyway
        b = labels.shape[0]
        mean, std = _imagenet_stats(labels.device)
        views: list[torch.Tensor] = []
        # One batched pass per resolution: the global-like views together, then the local ones.
        for first, last, size in ((0, GLOBAL_LIKE, self.cfg.global_size),
                                  (GLOBAL_LIKE, params.shape[1], self.cfg.local_size)):
            if first == last:
                continue
            crops = resized_crops(images, params[:, first:last, CROP], size)
            p = params[:, first:last].transpose(0, 1).reshape(-1, N_PARAMS)
            views.extend(self._augment(crops, p, self.blur_radius, mean, std).split(b))
        return views, labels


class DeviceNormalize:
    """The supervised recipes' device half: uint8 [B, 3, H, W] images (timm's transform stopped
    before normalising) → normalised float32 with `mean`/`std` (default ImageNet's). Workers then
    ship a quarter of the bytes and skip the float conversion; the arithmetic is the same as the
    CPU path's ToTensor + Normalize."""

    def __init__(self, mean: tuple[float, ...] = tuple(IMAGENET_DEFAULT_MEAN),
                 std: tuple[float, ...] = tuple(IMAGENET_DEFAULT_STD)):
        self.mean, self.std = tuple(mean), tuple(std)

    @torch.no_grad()
    def __call__(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = batch
        mean, std = channel_constant(self.mean, images.device), channel_constant(self.std, images.device)
        # 255 as a device tensor, not a Python number: CUDA divides by a Python scalar by
        # multiplying with its reciprocal, one rounding away from ToTensor's division.
        return (images.float() / channel_constant((255.0,), images.device) - mean) / std, labels
