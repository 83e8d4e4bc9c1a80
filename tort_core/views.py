"""Multi-crop views (2 global, 1 masked global, N local), masking, rotation and eval transforms.

The CPU transform produces *unrotated* views; rotation happens per sample on the batch in the
training step (`sample_rotations` + `rotate`), so the teacher can be given either the rotated or
the unrotated global-like views without augmenting twice.
"""

from __future__ import annotations

import math

import torch
from PIL import Image, ImageFilter, ImageOps
from timm.data.constants import (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, IMAGENET_INCEPTION_MEAN,
                                 IMAGENET_INCEPTION_STD)
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

from .config import AugConfig, ViewsConfig

BICUBIC = InterpolationMode.BICUBIC

# Index layout of the list returned by MultiCropTransform.
GLOBAL_LIKE = 3  # global 1, global 2, masked


# Mean and std by name (aug.normalize): ImageNet's, and 0.5 (values in [-1, 1]: timm's ViT default
# config until 2022 and big_vision's value_range(-1, 1)).
NORMALIZATION = {"imagenet": (tuple(IMAGENET_DEFAULT_MEAN), tuple(IMAGENET_DEFAULT_STD)),
                 "inception": (tuple(IMAGENET_INCEPTION_MEAN), tuple(IMAGENET_INCEPTION_STD))}


def _normalize(stats: str = "imagenet") -> T.Compose:
    mean, std = NORMALIZATION[stats]
    return T.Compose([T.ToTensor(), T.Normalize(mean, std)])


class PILGaussianBlur:
    """Gaussian blur with a radius drawn uniformly from `sigma`, by PIL's own filter (as DINO).

    PIL blurs in place on the image; torchvision's GaussianBlur converts to a tensor and back,
    which was 10× slower on small images.
    """

    def __init__(self, sigma: tuple[float, float]):
        self.sigma = sigma

    def __call__(self, img: Image.Image) -> Image.Image:
        radius = torch.empty(1).uniform_(*self.sigma).item()
        return img.filter(ImageFilter.GaussianBlur(radius=radius))


def _blur(p: float, sigma: tuple[float, float]) -> T.RandomApply:
    return T.RandomApply([PILGaussianBlur(sigma)], p=p)


class MaskErase:
    """Erase one rectangle (to 0, the mean after normalisation) covering an area fraction drawn
    uniformly from `scale`, with an aspect ratio drawn log-uniformly from `ratio`.

    Unlike torchvision's RandomErasing it never silently skips: the rectangle is clamped to fit.
    """

    def __init__(self, scale: tuple[float, float], ratio: tuple[float, float]):
        self.scale = scale
        self.ratio = ratio

    def box(self, height: int, width: int) -> tuple[int, int, int, int]:
        area = height * width * torch.empty(1).uniform_(*self.scale).item()
        log_r = torch.empty(1).uniform_(math.log(self.ratio[0]), math.log(self.ratio[1])).item()
        aspect = math.exp(log_r)
        h = min(height, max(1, round(math.sqrt(area * aspect))))
        w = min(width, max(1, round(area / h)))
        i = int(torch.randint(0, height - h + 1, (1,)).item())
        j = int(torch.randint(0, width - w + 1, (1,)).item())
        return i, j, h, w

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        i, j, h, w = self.box(img.shape[-2], img.shape[-1])
        img = img.clone()
        img[..., i : i + h, j : j + w] = 0
        return img


class MultiCropTransform:
    """PIL image → [global 1, global 2, masked, local × n_local] normalised tensors."""

    def __init__(self, cfg: ViewsConfig):
        self.n_local = cfg.n_local
        flip_jitter = [
            T.RandomHorizontalFlip(p=0.5),
            T.RandomApply([T.ColorJitter(*cfg.color_jitter)], p=cfg.jitter_prob),
            T.RandomGrayscale(p=cfg.grayscale_prob),
        ]
        g_crop = T.RandomResizedCrop(cfg.global_size, scale=cfg.global_scale, interpolation=BICUBIC)
        self.global1 = T.Compose([g_crop, *flip_jitter, _blur(cfg.blur_prob_global1, cfg.blur_sigma), _normalize()])
        self.global2 = T.Compose([
            g_crop, *flip_jitter, _blur(cfg.blur_prob_global2, cfg.blur_sigma),
            T.RandomSolarize(threshold=128, p=cfg.solarize_prob), _normalize(),
        ])
        self.masked = T.Compose([g_crop, *flip_jitter, _normalize(), MaskErase(cfg.mask_scale, cfg.mask_ratio)])
        self.local = T.Compose([
            T.RandomResizedCrop(cfg.local_size, scale=cfg.local_scale, interpolation=BICUBIC),
            *flip_jitter, _blur(cfg.blur_prob_local, cfg.blur_sigma), _normalize(),
        ])

    def __call__(self, image: Image.Image) -> list[torch.Tensor]:
        views = [self.global1(image), self.global2(image), self.masked(image)]
        views.extend(self.local(image) for _ in range(self.n_local))
        return views


def eval_transform(size: int, crop_pct: float, normalize: bool = True, stats: str = "imagenet") -> T.Compose:
    """Resize the short side to ⌊size / crop_pct⌋ (timm's rule), centre crop, then normalised
    float32 with the `stats` mean/std (or, normalize=False, the uint8 image as a tensor, for
    `DeviceNormalize` to finish with the same arithmetic)."""
    return T.Compose([
        T.Resize(math.floor(size / crop_pct), interpolation=BICUBIC),
        T.CenterCrop(size),
        _normalize(stats) if normalize else T.PILToTensor(),
    ])


def posterize_any_bits(img: Image.Image, bits_to_keep: int, **_) -> Image.Image:
    """timm's posterize for every bit count its policies produce: keeping 0 bits gives black, as in
    the TF implementation timm follows and in Pillow < 12, where Pillow ≥ 12 raises mid-epoch."""
    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size, 0)
    return ImageOps.posterize(img, bits_to_keep)


def supervised_transform(size: int, aug: AugConfig, uint8: bool = False):
    """The single-view pipeline of the supervised recipes: timm's training transform (random
    resized crop, flip, RandAugment or else colour jitter, random erasing).

    uint8: stop before normalising (timm's prefetcher layout): the device normalises the batch
    (timm then leaves random erasing to its prefetcher: recipes keep such runs on the CPU)."""
    from timm.data import create_transform
    from timm.data.auto_augment import RandAugment, posterize

    mean, std = NORMALIZATION[aug.normalize]
    transform = create_transform(
        input_size=size, is_training=True, scale=aug.scale, hflip=aug.hflip, color_jitter=aug.color_jitter or None,
        auto_augment=aug.randaugment, interpolation=aug.interpolation, re_prob=aug.reprob, re_mode="pixel",
        mean=mean, std=std, use_prefetcher=uint8,
    )
    for stage in getattr(transform, "transforms", []):
        if isinstance(stage, RandAugment):
            for op in stage.ops:
                if op.aug_fn is posterize:
                    op.aug_fn = posterize_any_bits
    return transform


# ---------------------------------------------------------------------------------------------
# Rotation: per sample, exact multiples of 90°, label k ∈ {0, 1, 2, 3} = k·90° counter-clockwise.

def sample_rotations(n: int, prob: float, device: torch.device | str = "cpu", group: int = 1) -> torch.Tensor:
    """Rotation labels of n samples: each sample's angle is 90/180/270° uniformly; whether it is
    rotated at all (else 0) is drawn with probability `prob` once per run of `group` consecutive
    samples: 1 (each on its own), or the batch size (the original code's rand_rot: a view's whole
    batch is rotated or none of it)."""
    angle = torch.randint(1, 4, (n,))
    rotated = torch.rand(n // group) < prob
    if group > 1:
        rotated = rotated.repeat_interleave(group)
    return (angle * rotated).to(device, non_blocking=True)


def rotate(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Rotate each image of a square batch `x` [B, C, H, W] by `k[b]`·90°, without host syncs."""
    if x.shape[-1] != x.shape[-2]:
        raise ValueError("per-sample rotation needs square views")
    k = k.view(-1, 1, 1, 1)
    out = torch.where(k == 1, torch.rot90(x, 1, dims=(-2, -1)), x)
    out = torch.where(k == 2, torch.rot90(x, 2, dims=(-2, -1)), out)
    return torch.where(k == 3, torch.rot90(x, 3, dims=(-2, -1)), out)
