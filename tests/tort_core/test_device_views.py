"""The device half of the views (views.augment_on=device) against the CPU path it replaces.

Three levels: each batched op against its single-image reference (torchvision or PIL); the same
seed giving the same views on both paths up to rounding; and independent draws giving the same
distribution of view statistics (with negative controls showing the test can tell a difference).
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter
from scipy.stats import ks_2samp
from sklearn.datasets import load_sample_images
from timm.data.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms import functional as TF
from torchvision.transforms.functional import pil_to_tensor

from tort_core.config import build_config
from tort_core.device_views import (BOX, BRIGHTNESS, CROP, HUE, JITTER, N_PARAMS, ORDER, SIGMA, DeviceViews,
                                    MultiCropDraws, adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation,
                                    augment, color_jitter, erase_boxes, gaussian_blur, grayscale, pad_collate,
                                    resized_crops)
from tort_core.errors import ConfigError
from tort_core.recipes import RECIPES
from tort_core.trainer import augmentation
from tort_core.views import MaskErase, MultiCropTransform


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    """Two real photographs (427×640) that ship with scikit-learn."""
    return [Image.fromarray(a) for a in load_sample_images().images]


def _batch(n=6, size=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g), g


# ---------------------------------------------------------------------------------------------
# Each op, per sample, against its reference

@pytest.mark.parametrize("ours, reference, lo, hi", [
    (adjust_brightness, v2.functional.adjust_brightness, 0.6, 1.4),
    (adjust_contrast, v2.functional.adjust_contrast, 0.6, 1.4),
    (adjust_saturation, v2.functional.adjust_saturation, 0.8, 1.2),
    (adjust_hue, v2.functional.adjust_hue, -0.5, 0.5),
])
def test_each_jitter_op_applies_each_samples_own_factor_like_torchvision(ours, reference, lo, hi):
    x, g = _batch()
    factors = torch.empty(len(x)).uniform_(lo, hi, generator=g)
    out = ours(x, factors)
    for i, f in enumerate(factors.tolist()):
        torch.testing.assert_close(out[i], reference(x[i], f), atol=2e-5, rtol=0)


def test_color_jitter_applies_each_samples_factors_in_its_own_order():
    x, g = _batch(n=24)
    p = torch.zeros(len(x), N_PARAMS)
    p[:, JITTER] = (torch.rand(len(x), generator=g) < 0.8).float()
    p[:, BRIGHTNESS:HUE] = torch.empty(len(x), 3).uniform_(0.6, 1.4, generator=g)
    p[:, HUE] = torch.empty(len(x)).uniform_(-0.1, 0.1, generator=g)
    p[:, ORDER] = torch.stack([torch.randperm(4, generator=g) for _ in range(len(x))]).float()
    reference_ops = [v2.functional.adjust_brightness, v2.functional.adjust_contrast,
                     v2.functional.adjust_saturation, v2.functional.adjust_hue]
    out = color_jitter(x, p)
    for i in range(len(x)):
        expected = x[i]
        if p[i, JITTER]:
            for op in p[i, ORDER].long().tolist():
                expected = reference_ops[op](expected, p[i, BRIGHTNESS + op].item())
        torch.testing.assert_close(out[i], expected, atol=5e-5, rtol=0)


def test_hue_shift_by_zero_leaves_colours_as_they_were():
    x, _ = _batch()
    torch.testing.assert_close(adjust_hue(x, torch.zeros(len(x))), x, atol=1e-5, rtol=0)


def test_grayscale_is_pils_luma(photos):
    image = photos[0].resize((64, 43))
    ours = grayscale(pil_to_tensor(image).float()[None] / 255) * 255
    reference = pil_to_tensor(image.convert("L")).float()[None]
    assert (ours - reference).abs().max() <= 0.5 + 1e-3  # PIL rounds to the nearest grey level


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
def test_blur_is_pils_gaussian_blur_up_to_rounding(photos, sigma):
    image = photos[1].resize((160, 107))
    x = pil_to_tensor(image).float()[None] / 255
    reference = pil_to_tensor(image.filter(ImageFilter.GaussianBlur(sigma))).float()[None] / 255
    ours = gaussian_blur(x, torch.tensor([sigma]), radius=6)
    error = (ours - reference).abs().mean().item()
    assert error < 1 / 255  # less than one grey level on average (PIL approximates with box passes)
    assert error < 0.5 * (x - reference).abs().mean().item()  # well below the blur's own effect


def test_blur_with_sigma_zero_leaves_that_sample_exactly_as_it_was():
    x, _ = _batch(n=3)
    out = gaussian_blur(x, torch.tensor([0.0, 1.5, 0.0]), radius=5)
    assert torch.equal(out[0], x[0]) and torch.equal(out[2], x[2])
    assert not torch.allclose(out[1], x[1])


def test_erase_zeroes_exactly_each_samples_box():
    x = torch.ones(3, 3, 10, 12)
    box = torch.tensor([[2.0, 3.0, 4.0, 5.0], [0.0, 0.0, 10.0, 12.0], [5.0, 5.0, 0.0, 0.0]])
    out = erase_boxes(x, box)
    expected = torch.ones_like(x)
    expected[0, :, 2:6, 3:8] = 0
    expected[1] = 0
    assert torch.equal(out, expected)


# ---------------------------------------------------------------------------------------------
# The same seed: the same views on both paths

def _views_cfg(**over):
    return build_config("tort", "thesis", overrides={f"views.{k}": v for k, v in over.items()}).views


def _device_views(views_cfg, image, seed):
    torch.manual_seed(seed)
    batch = pad_collate([(MultiCropDraws(views_cfg)(image), 0)])
    views, _ = DeviceViews(views_cfg)(batch)
    return [v[0] for v in views], batch[0][1][0]


def test_the_worker_half_makes_exactly_the_cpu_paths_random_draws(photos):
    cfg = _views_cfg()
    for seed in range(6):
        torch.manual_seed(seed)
        MultiCropTransform(cfg)(photos[seed % 2])
        after_cpu = torch.rand(4)
        torch.manual_seed(seed)
        image, params = MultiCropDraws(cfg)(photos[seed % 2])
        assert torch.equal(torch.rand(4), after_cpu)  # same number and kind of draws, in the same order
        assert params.shape == (3 + cfg.n_local, N_PARAMS)
        assert image.dtype == torch.uint8 and image.shape == (427, 640, 3)
        i, j, h, w = params[2, BOX].tolist()  # the masked view's box is MaskErase's, drawn in turn
        assert h > 0 and w > 0 and params[:2, BOX].abs().sum() == 0


@pytest.mark.parametrize("size, box", [(224, (0, 0, 427, 640)), (224, (10, 37, 300, 251)), (96, (100, 200, 41, 55)),
                                       (96, (3, 5, 96, 96)), (224, (50, 60, 150, 120))])
def test_device_crops_are_pils_resized_crops(photos, size, box):
    """Downscaling, upscaling and 1:1: the batched matrix products reproduce PIL's antialiased
    bicubic resize of the crop. PIL rounds to uint8 between its two passes and this Pillow runs
    some reductions vertical pass first (we always go horizontal first), so a few pixels differ
    by a few grey levels; on average far less than one."""
    top, left, height, width = box
    reference = pil_to_tensor(TF.resized_crop(photos[0], top, left, height, width, [size, size],
                                              InterpolationMode.BICUBIC, antialias=True)).float()
    images = pil_to_tensor(photos[0])[None]
    ours = resized_crops(images, torch.tensor([[box]], dtype=torch.float32), size)[0]
    assert (ours - reference).abs().mean() < 0.25
    assert (ours - reference).abs().max() <= 8


def test_padding_a_batch_changes_no_crop(photos):
    small = photos[0].resize((200, 150))
    draws = MultiCropDraws(_views_cfg(n_local=1))
    torch.manual_seed(0)
    alone = pad_collate([(draws(small), 0)])
    torch.manual_seed(0)
    padded = pad_collate([(draws(small), 0), (draws(photos[1]), 1)])
    assert padded[0][0].shape == (2, 427, 640, 3)
    assert padded[0][0][0, 150:].eq(0).all() and padded[0][0][0, :, 200:].eq(0).all()
    crop = padded[0][1][:1, :, CROP]
    chw = [x.permute(0, 3, 1, 2) for x in (padded[0][0][:1], alone[0][0])]
    torch.testing.assert_close(resized_crops(chw[0], crop, 64), resized_crops(chw[1], crop, 64))


@pytest.mark.slow  # several seconds on 2 cores: photographs through both paths
def test_the_same_seed_gives_the_same_views_on_both_paths_up_to_rounding(photos):
    cfg = _views_cfg()
    errors = []
    for seed in range(4):
        torch.manual_seed(seed)
        cpu = MultiCropTransform(cfg)(photos[seed % 2])
        dev, _ = _device_views(cfg, photos[seed % 2], seed)
        errors += [(a - b).abs().mean().item() for a, b in zip(cpu, dev)]
    # Normalised units: 0.03 ≈ 1.8 grey levels of 255. Unrelated views of these photos differ by ~1.
    assert np.median(errors) < 0.03 and max(errors) < 0.06


# ---------------------------------------------------------------------------------------------
# Independent draws: the same distribution of view statistics

KINDS = {"global 1": [0], "global 2": [1], "masked": [2], "local": [3, 4]}


STATISTICS = ["mean R", "mean G", "mean B", "std", "edge energy", "chroma"]
MEAN = torch.tensor(IMAGENET_DEFAULT_MEAN).view(3, 1, 1)
STD = torch.tensor(IMAGENET_DEFAULT_STD).view(3, 1, 1)


def _statistics(views: list[torch.Tensor]) -> dict[str, np.ndarray]:
    """Per view kind, each view's STATISTICS, in [0, 1] pixel units."""
    out = {}
    for kind, idx in KINDS.items():
        rows = []
        for i in idx:
            v = views[i] * STD + MEAN
            rows.append([*v.mean(dim=(1, 2)).tolist(), v.std().item(), (v[..., 1:] - v[..., :-1]).abs().mean().item(),
                         v.std(dim=0).mean().item()])
        out[kind] = np.array(rows)
    return out


def _sample(path: str, cfg, photos, seeds) -> dict[str, np.ndarray]:
    stats: dict[str, list[np.ndarray]] = {k: [] for k in KINDS}
    for seed in seeds:
        image = photos[seed % 2]
        if path == "cpu":
            torch.manual_seed(seed)
            views = MultiCropTransform(cfg)(image)
        else:
            views, _ = _device_views(cfg, image, seed)
        for kind, rows in _statistics(views).items():
            stats[kind].append(rows)
    return {k: np.concatenate(v) for k, v in stats.items()}


def _smallest_p(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> tuple[float, str]:
    return min((ks_2samp(a[k][:, j], b[k][:, j]).pvalue, f"{k} {name}")
               for k in KINDS for j, name in enumerate(STATISTICS))


N_STAT = 160
ALPHA = 0.01 / (len(KINDS) * len(STATISTICS))  # Bonferroni over every comparison


@pytest.fixture(scope="module")
def small_cfg():
    # Smaller views keep the CPU path fast; the augmentation parameters are the thesis's.
    return _views_cfg(global_size=64, local_size=32, n_local=2)


@pytest.fixture(scope="module")
def cpu_stats(small_cfg, photos):
    return _sample("cpu", small_cfg, photos, range(N_STAT))


@pytest.mark.slow
def test_device_views_have_the_cpu_paths_statistics(small_cfg, photos, cpu_stats):
    device = _sample("device", small_cfg, photos, range(10_000, 10_000 + N_STAT))  # independent draws
    p, where = _smallest_p(cpu_stats, device)
    assert p > ALPHA, f"{where}: KS p = {p:.2g}"


@pytest.mark.slow
@pytest.mark.parametrize("changed", [{"grayscale_prob": 0.0}, {"blur_sigma": (1.0, 4.0)}, {"jitter_prob": 0.0},
                                     {"solarize_prob": 0.6}])
def test_the_statistics_test_notices_a_changed_augmentation(small_cfg, photos, cpu_stats, changed):
    cfg = small_cfg.model_copy(update=changed)
    device = _sample("device", cfg, photos, range(10_000, 10_000 + N_STAT))
    p, where = _smallest_p(cpu_stats, device)
    assert p < ALPHA, f"a device path with {changed} passed as equal (smallest p {p:.2g} at {where})"


# ---------------------------------------------------------------------------------------------
# Wiring

def test_device_views_run_without_host_syncs_or_data_dependent_shapes():
    """On the meta device any .item(), bool() of a tensor or data-dependent shape would raise."""
    cfg = _views_cfg(n_local=2)
    b = 4
    images = torch.empty(b, 300, 400, 3, dtype=torch.uint8, device="meta")
    params = torch.empty(b, 5, N_PARAMS, device="meta")
    views, labels = DeviceViews(cfg)(((images, params), torch.empty(b, dtype=torch.long, device="meta")))
    assert [tuple(v.shape) for v in views] == [(b, 3, 224, 224)] * 3 + [(b, 3, 96, 96)] * 2
    assert all(v.dtype == torch.float32 for v in views)


@pytest.mark.slow
def test_the_device_half_compiles_as_one_graph_with_the_eager_numerics():
    """fullgraph=True: a graph break (a host sync, a Python branch on a tensor) would raise here.
    The aot_eager backend traces exactly what inductor would get, in seconds on a CPU."""
    cfg = _views_cfg(global_size=32, local_size=16, n_local=2)
    x, g = _batch(n=12, size=32)
    crops = (x * 255).round()
    p = torch.zeros(12, N_PARAMS)
    p[:, JITTER] = 1.0
    p[:, BRIGHTNESS:HUE] = torch.empty(12, 3).uniform_(0.6, 1.4, generator=g)
    p[:, HUE] = torch.empty(12).uniform_(-0.1, 0.1, generator=g)
    p[:, ORDER] = torch.stack([torch.randperm(4, generator=g) for _ in range(12)]).float()
    p[:, SIGMA] = torch.empty(12).uniform_(0.1, 2.0, generator=g)
    p[:, BOX] = torch.tensor([4.0, 5.0, 10.0, 8.0])
    mean, std = torch.full((1, 3, 1, 1), 0.45), torch.full((1, 3, 1, 1), 0.25)
    eager = augment(crops, p, 6, mean, std)
    compiled = torch.compile(augment, dynamic=False, fullgraph=True, backend="aot_eager")(crops, p, 6, mean, std)
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=0)
    assert DeviceViews(cfg, compile=True)._augment is not augment


@pytest.mark.parametrize("augment_on, device, on_device", [
    ("cpu", "cpu", False), ("device", "cpu", True), ("auto", "cpu", False), ("auto", "meta", False),
])
def test_augment_on_picks_the_path(augment_on, device, on_device):
    cfg = build_config("tort", "demo", overrides={"views.augment_on": augment_on})
    augment = augmentation(RECIPES.get("tort")(), cfg, torch.device(device))
    assert isinstance(augment.transform, MultiCropDraws if on_device else MultiCropTransform)
    assert (augment.on_device is not None) == on_device and (augment.collate is not None) == on_device


def test_where_views_are_augmented_does_not_change_the_trial_id():
    ids = {build_config("tort", "demo", overrides={"views.augment_on": a}).content_hash() for a in ("cpu", "device")}
    assert len(ids) == 1


def test_a_recipe_without_a_device_path_refuses_augment_on_device():
    name = "cpu-only-test-recipe"
    if name not in RECIPES:
        RECIPES.register(name)(type("CpuOnly", (RECIPES.get("sota"),), {"device_augmentation": lambda self, cfg: None}))
    with pytest.raises(ConfigError, match=rf"views\.augment_on: recipe '{name}' has no device augmentation"):
        build_config(name, "demo", overrides={"views.augment_on": "device"})


def test_sota_normalising_on_the_device_is_the_cpu_paths_arithmetic(photos):
    """Where RandAugment must stay in the workers (a policy with a blur op, which has no device
    version: see test_device_randaugment.py for the rest), they stop at uint8 and the device normalises."""
    cfg = build_config("sota", "thesis", overrides={"aug.randaugment": "rand-m9-mstd0.5-t3a"})
    recipe = RECIPES.get("sota")()
    split = recipe.device_augmentation(cfg)
    def seeded(transform):  # timm draws from Python's and NumPy's generators too
        torch.manual_seed(3), random.seed(3), np.random.seed(3)
        return transform(photos[0])

    cpu, raw = seeded(recipe.train_transform(cfg)), seeded(split.transform)
    assert raw.dtype == torch.uint8 and raw.shape == (3, 224, 224)
    out, labels = split.on_device((raw[None], torch.zeros(1, dtype=torch.long)))
    torch.testing.assert_close(out[0], cpu, atol=1e-5, rtol=0)
