"""The sota recipe's device augmentation (crop, flip, RandAugment on the device) against timm's
PIL pipeline it replaces: each op against Pillow, the worker half's draws against timm's, a seed's
image on both paths, and the distribution of images from independent draws."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps
from scipy.stats import ks_2samp
from sklearn.datasets import load_sample_images
from timm.data import auto_augment as taa
from timm.data.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torchvision.transforms.functional import pil_to_tensor

from tort_core import device_randaugment as D
from tort_core.config import build_config
from tort_core.device_views import DeviceNormalize, pad_collate
from tort_core.recipes import RECIPES
from tort_core.views import posterize_any_bits, supervised_transform

FILL = (124, 116, 104)  # timm's fill colour for ImageNet's mean


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    """Two real photographs (427×640) that ship with scikit-learn."""
    return [Image.fromarray(a) for a in load_sample_images().images]


@pytest.fixture(scope="module")
def square(photos) -> Image.Image:
    """RandAugment runs on the square crop: a 64-px one keeps Pillow's side fast."""
    return photos[0].crop((200, 100, 400, 300)).resize((64, 64), Image.Resampling.BICUBIC)


def _levels(image: Image.Image) -> torch.Tensor:
    return pil_to_tensor(image)[None].float()


def _one(kind: int) -> torch.Tensor:
    return torch.tensor([float(kind)])


# ---------------------------------------------------------------------------------------------
# Each op against Pillow

@pytest.mark.parametrize("kind, arg, reference", [
    (D.AUTOCONTRAST, 0, ImageOps.autocontrast),
    (D.EQUALIZE, 0, ImageOps.equalize),
    (D.INVERT, 0, ImageOps.invert),
    (D.POSTERIZE, 1, lambda im: ImageOps.posterize(im, 1)),
    (D.POSTERIZE, 3, lambda im: ImageOps.posterize(im, 3)),
    (D.SOLARIZE, 230, lambda im: ImageOps.solarize(im, 230)),
    (D.SOLARIZE_ADD, 99, lambda im: taa.solarize_add(im, 99)),
])
def test_point_ops_are_pillows_exactly(square, kind, arg, reference):
    x = _levels(square)
    ours = D.apply_tables(x, D.point_tables(x, _one(kind), torch.tensor([float(arg)])))
    assert torch.equal(ours[0], _levels(reference(square))[0])


@pytest.mark.parametrize("kind, enhancer", [(D.COLOR, ImageEnhance.Color), (D.CONTRAST, ImageEnhance.Contrast),
                                            (D.BRIGHTNESS, ImageEnhance.Brightness),
                                            (D.SHARPNESS, ImageEnhance.Sharpness)])
@pytest.mark.parametrize("factor", [0.3, 0.95, 1.72])
def test_enhance_ops_are_pillows_exactly(square, kind, enhancer, factor):
    """Image.blend in float32 and truncated, as Pillow; below 1 it interpolates, above it extrapolates and clips."""
    ours = D.blends(_levels(square), _one(kind), torch.tensor([factor]))
    assert torch.equal(ours[0], _levels(enhancer(square).enhance(factor))[0])


def test_autocontrast_tables_are_pillows_for_every_span():
    """Pillow's table divides 255 by the span in Python; `255.0 / tensor` would be a reciprocal
    times 255, one unit in the last place off for 54 spans, and a truncated level off."""
    g = torch.Generator().manual_seed(0)
    for _ in range(40):
        lo, hi = sorted(torch.randint(0, 256, (2,), generator=g).tolist())
        x = torch.randint(lo, hi + 1, (1, 3, 16, 16), generator=g).float()
        image = Image.fromarray(x[0].permute(1, 2, 0).to(torch.uint8).numpy())
        ours = D.apply_tables(x, D.point_tables(x, _one(D.AUTOCONTRAST), torch.zeros(1)))
        assert torch.equal(ours[0], _levels(ImageOps.autocontrast(image))[0]), (lo, hi)


@pytest.mark.parametrize("op, value", [(taa.rotate, 23.7), (taa.rotate, -28.1), (taa.rotate, -0.3), (taa.shear_x, 0.27),
                                       (taa.shear_y, -0.21), (taa.translate_x_rel, 0.4), (taa.translate_y_rel, -0.33),
                                       (taa.translate_x_abs, -17.5), (taa.translate_y_abs, 80.0)])
@pytest.mark.parametrize("resample", [Image.Resampling.BILINEAR, Image.Resampling.BICUBIC])
def test_affine_ops_are_pillows_exactly(square, op, value, resample):
    """Same source coordinates, filters, fill and float64 operations (Image.rotate's matrix from
    the angle reduced mod 360, as Pillow does)."""
    reference = _levels(op(square, value, fillcolor=FILL, resample=resample))[0]
    matrix = torch.tensor([D._affine_matrix(64, op, value)], dtype=torch.float64)
    ours = D.warp(_levels(square), matrix, _one(resample == Image.Resampling.BICUBIC), torch.tensor(FILL).float())[0]
    assert torch.equal(ours, reference)


def test_posterize_to_zero_bits_is_black_on_both_paths(square):
    """Pillow ≥ 12 refuses 0 bits; timm's policies ask for it (inc1 at magnitude 10, any policy below 2.5)."""
    x = _levels(square)
    assert _levels(posterize_any_bits(square, 0)).eq(0).all()
    assert D.apply_tables(x, D.point_tables(x, _one(D.POSTERIZE), torch.zeros(1))).eq(0).all()


@pytest.mark.slow  # ~3 s each on 2 cores: whole photographs through both paths
@pytest.mark.parametrize("policy", ["rand-m9-mstd0.5", "rand-m9-n3-mstd0.5", "rand-m7-mstd0.5-inc1",
                                    "rand-mstd1-tweights", "rand-m9-mstd101"])
def test_the_device_randaugment_stage_is_timms_pixel_for_pixel(photos, policy):
    """Each seed's ops, magnitudes and filters as the workers recorded them, applied on the device
    to the same cropped and flipped image as timm's PIL RandAugment: identical levels."""
    aug = build_config("sota", "thesis", overrides={"aug.randaugment": policy}).aug
    transform = supervised_transform(48, aug, uint8=True)
    crop, flip, randaugment = transform.transforms[:3]
    draws, device_half = D.device_split(transform)
    fill = torch.tensor(device_half.fill)
    for seed in range(60):
        torch.manual_seed(seed), random.seed(seed), np.random.seed(seed)
        _, row = draws(photos[seed % 2])
        torch.manual_seed(seed), random.seed(seed), np.random.seed(seed)
        base = flip(crop(photos[seed % 2]))
        reference = randaugment(base)
        ours = D.rand_augment(_levels(base), row[None], draws.layers, fill)
        assert torch.equal(ours[0], _levels(reference)[0]), (seed, row[D.LAYER0 + D.KIND::D.LAYER_WIDTH].tolist())


def test_each_sample_gets_its_own_op_and_the_others_pass_unchanged(square, photos):
    second = photos[1].crop((0, 0, 300, 300)).resize((64, 64))
    x = torch.cat([_levels(square), _levels(second), _levels(square)])
    kinds = torch.tensor([float(D.INVERT), float(D.BRIGHTNESS), D.NONE])
    ours = D.blends(x, kinds, torch.tensor([0.0, 0.5, 0.0]))
    assert torch.equal(ours[0], x[0]) and torch.equal(ours[2], x[2])  # not blends: untouched
    assert torch.equal(ours[1], _levels(ImageEnhance.Brightness(second).enhance(0.5))[0])
    tables = D.point_tables(x, kinds, torch.zeros(3))
    pointed = D.apply_tables(x, tables)
    assert torch.equal(pointed[0], 255 - x[0]) and torch.equal(pointed[1:], x[1:])


# ---------------------------------------------------------------------------------------------
# The worker half and the whole path against timm's pipeline

def _seeded(transform, image, seed):
    torch.manual_seed(seed), random.seed(seed), np.random.seed(seed)  # timm draws from all three
    out = transform(image)
    return out, (torch.rand(1).item(), random.random(), float(np.random.rand()))


@pytest.fixture(scope="module")
def sota():
    cfg = build_config("sota", "thesis", overrides={"views.augment_on": "device"})
    recipe = RECIPES.get("sota")()
    return recipe.train_transform(cfg), recipe.device_augmentation(cfg)


def test_the_worker_half_makes_exactly_timms_draws(photos, sota):
    cpu, split = sota
    assert isinstance(split.transform, D.SupervisedDraws) and isinstance(split.on_device, D.DeviceSupervised)
    layers_seen = set()
    for seed in range(40):
        _, after_cpu = _seeded(cpu, photos[seed % 2], seed)
        (image, row), after_worker = _seeded(split.transform, photos[seed % 2], seed)
        assert after_worker == after_cpu  # same number and kind of draws, from the same generators
        assert row.dtype == torch.float64 and row.shape == (D._row_width(2),)
        top, left, height, width = row[D.CROP].tolist()
        assert top == left == 0 and image.dtype == torch.uint8 and image.shape == (height, width, 3)  # the box alone
        layers_seen.add(int((row[D.LAYER0::D.LAYER_WIDTH] >= 0).sum()))
    assert layers_seen == {0, 1, 2}  # each of the two layers is applied with probability ½


@pytest.mark.slow  # seconds on 2 cores: photographs through both paths
def test_a_seed_gives_the_same_image_on_both_paths_up_to_rounding(photos, sota):
    """The crops differ by a few levels where Pillow resamples vertically first; every op after
    them is Pillow's arithmetic, so the images agree to a fraction of a level on average (an
    equalize or autocontrast after the crop can stretch the crop's differences)."""
    cpu, split = sota
    errors = []
    for seed in range(16):
        reference, _ = _seeded(cpu, photos[seed % 2], seed)
        sample, _ = _seeded(split.transform, photos[seed % 2], seed)
        out, _ = split.on_device(pad_collate([(sample, 0)]))
        errors.append((out[0] - reference).abs().mean().item())
    # Normalised units: 0.01 ≈ 0.6 grey levels. Unrelated images of these photos differ by ~1.
    assert np.median(errors) < 1e-3 and max(errors) < 0.02


STATISTICS = ["mean R", "mean G", "mean B", "std", "edge energy", "chroma"]
MEAN = torch.tensor(IMAGENET_DEFAULT_MEAN).view(3, 1, 1)
STD = torch.tensor(IMAGENET_DEFAULT_STD).view(3, 1, 1)
N_STAT = 200
ALPHA = 0.01 / len(STATISTICS)  # Bonferroni


def _statistics(image: torch.Tensor) -> list[float]:
    v = image * STD + MEAN
    return [*v.mean(dim=(1, 2)).tolist(), v.std().item(), (v[..., 1:] - v[..., :-1]).abs().mean().item(),
            v.std(dim=0).mean().item()]


def _sample(path: str, randaugment: str, photos, seeds) -> np.ndarray:
    cfg = build_config("sota", "thesis", overrides={"views.global_size": 48, "aug.randaugment": randaugment,
                                                     "views.augment_on": "device"})
    recipe = RECIPES.get("sota")()
    if path == "cpu":
        transform = recipe.train_transform(cfg)
        return np.array([_statistics(_seeded(transform, photos[s % 2], s)[0]) for s in seeds])
    split = recipe.device_augmentation(cfg)
    samples = [_seeded(split.transform, photos[s % 2], s)[0] for s in seeds]
    out, _ = split.on_device(pad_collate([(x, 0) for x in samples]))
    return np.array([_statistics(image) for image in out])


@pytest.fixture(scope="module")
def cpu_stats(photos):
    return _sample("cpu", "rand-m9-mstd0.5", photos, range(N_STAT))


def _smallest_p(a: np.ndarray, b: np.ndarray) -> tuple[float, str]:
    return min((ks_2samp(a[:, j], b[:, j]).pvalue, name) for j, name in enumerate(STATISTICS))


@pytest.mark.slow
def test_device_images_have_the_cpu_paths_statistics(photos, cpu_stats):
    device = _sample("device", "rand-m9-mstd0.5", photos, range(10_000, 10_000 + N_STAT))  # independent draws
    p, where = _smallest_p(cpu_stats, device)
    assert p > ALPHA, f"{where}: KS p = {p:.2g}"


@pytest.mark.slow
def test_the_statistics_test_notices_a_changed_randaugment(photos, cpu_stats):
    """Negative control: three ops per image at full magnitude must not pass as equal."""
    device = _sample("device", "rand-m10-n3-p1.0", photos, range(10_000, 10_000 + N_STAT))
    p, where = _smallest_p(cpu_stats, device)
    assert p < ALPHA, f"a device path with a stronger RandAugment passed as equal (smallest p {p:.2g} at {where})"


# ---------------------------------------------------------------------------------------------
# Wiring

def test_a_policy_with_an_op_without_a_device_version_keeps_randaugment_in_the_workers():
    cfg = build_config("sota", "thesis", overrides={"aug.randaugment": "rand-m9-mstd0.5-t3a",  # has GaussianBlur
                                                     "views.augment_on": "device"})
    split = RECIPES.get("sota")().device_augmentation(cfg)
    assert isinstance(split.on_device, DeviceNormalize) and split.collate is None


def test_without_randaugment_timms_colour_jitter_stays_in_the_workers():
    """timm adds ColorJitter(0.4) where no auto-augment policy is given; it has no device version here."""
    cfg = build_config("sota", "thesis", overrides={"aug.randaugment": None, "views.augment_on": "device"})
    split = RECIPES.get("sota")().device_augmentation(cfg)
    assert "ColorJitter" in repr(split.transform) and isinstance(split.on_device, DeviceNormalize)


@pytest.mark.parametrize("augment_on, compile, moved", [("device", False, True), ("device", True, True),
                                                        ("auto", True, True), ("auto", False, False)])
def test_randaugment_moves_where_asked_and_by_default_only_into_compiled_runs(augment_on, compile, moved):
    cfg = build_config("sota", "thesis", overrides={"views.augment_on": augment_on, "compile": compile})
    split = RECIPES.get("sota")().device_augmentation(cfg)
    assert isinstance(split.on_device, D.DeviceSupervised if moved else DeviceNormalize)
    assert isinstance(split.transform, D.SupervisedDraws) == moved


def test_the_device_half_runs_without_host_syncs_or_data_dependent_shapes():
    """On the meta device any .item(), bool() of a tensor or data-dependent shape would raise."""
    b = 4
    images = torch.empty(b, 300, 400, 3, dtype=torch.uint8, device="meta")
    rows = torch.empty(b, D._row_width(2), dtype=torch.float64, device="meta")
    out, _ = D.DeviceSupervised(224, 2, FILL)(((images, rows), torch.empty(b, dtype=torch.long, device="meta")))
    assert out.shape == (b, 3, 224, 224) and out.dtype == torch.float32


@pytest.mark.slow
def test_the_device_half_compiles_as_one_graph_with_the_eager_numerics():
    """fullgraph=True: a graph break would raise. aot_eager traces what inductor would get, in seconds."""
    g = torch.Generator().manual_seed(0)
    n = 12
    crops = torch.randint(0, 256, (n, 3, 32, 32), generator=g).float()
    rows = torch.zeros(n, D._row_width(2), dtype=torch.float64)
    rows[:, D.FLIP] = torch.arange(n) % 2
    kinds = torch.arange(-1, 11).double()  # every kind once in layer 1, shuffled in layer 2
    for layer, order in enumerate((kinds, kinds[torch.randperm(n, generator=g)])):
        base = D.LAYER0 + layer * D.LAYER_WIDTH
        rows[:, base + D.KIND] = order
        rows[:, base + D.ARG] = torch.where(order < D.COLOR, torch.tensor(3.0, dtype=torch.float64), 1.4)
        rows[:, base + D.BICUBIC] = torch.arange(n) % 2
        angle = math.radians(12)
        rows[:, base + 3:base + 9] = torch.tensor([math.cos(angle), math.sin(angle), -2.0, -math.sin(angle),
                                                   math.cos(angle), 3.5], dtype=torch.float64)
    args = (crops, rows, 2, torch.tensor(FILL).float(), torch.full((1, 3, 1, 1), 0.45), torch.full((1, 3, 1, 1), 0.25))
    eager = D.augment(*args)
    compiled = torch.compile(D.augment, dynamic=False, fullgraph=True, backend="aot_eager")(*args)
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=0)
    assert D.DeviceSupervised(32, 2, FILL, compile=True)._augment is not D.augment


def test_the_split_reads_timms_transform_and_refuses_what_it_cannot_split():
    aug = build_config("sota", "thesis").aug
    assert D.device_split(supervised_transform(224, aug, uint8=True)) is not None
    assert D.device_split(supervised_transform(224, aug)) is None  # normalises in the workers: not this split
    nearest = supervised_transform(224, aug, uint8=True)
    nearest.transforms[2].ops[3].kwargs["resample"] = Image.Resampling.NEAREST  # a filter without a device version
    assert D.device_split(nearest) is None
