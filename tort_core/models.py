"""Backbone factory (timm), heads, multi-crop forward, EMA teacher update, checkpoint init."""

from __future__ import annotations

import functools
import json
import math
import sys
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch import nn

from .config import HeadConfig, ModelConfig, missing_checkpoint
from .errors import ConfigError
from .registry import suggest


def check_model_name(name: str) -> None:
    if not timm.is_model(name):
        raise ConfigError(f"model.name: unknown timm model '{name}'{suggest(name, timm.list_models())}; "
                          f"see timm.list_models()")


# Ways to tell a timm model its input geometry, most specific first. ViT and Swin take
# `dynamic_img_size`: built for the global size, they accept any size their patch grid allows
# (ViT interpolates its position embedding; Swin builds its shifted-window masks per forward and
# pads a grid that is not a whole number of windows). Older Swins only know `strict_img_size`;
# CNNs take neither.
_SPATIAL_KWARGS = (("img_size", "dynamic_img_size"), ("img_size", "strict_img_size"), ("img_size",), ())


def create_backbone(cfg: ModelConfig, img_size: int) -> nn.Module:
    """A timm model without classifier (num_classes=0) returning pooled embeddings.

    The model is built for `img_size` (the global views) and, where the architecture allows it,
    accepts other sizes too (the local views); no weights are ever downloaded (pretrained=False;
    see `load_init`).
    """
    check_model_name(cfg.name)
    kwargs = dict(num_classes=0, drop_path_rate=cfg.drop_path, **dropout_kwargs(cfg))
    values = {"img_size": img_size, "dynamic_img_size": True, "strict_img_size": False}
    for keys in _SPATIAL_KWARGS:
        spatial = {k: values[k] for k in keys}
        try:
            return timm.create_model(cfg.name, pretrained=False, **kwargs, **spatial, **cfg.kwargs)
        except TypeError as err:
            # Only a rejected geometry argument moves on to the next way; anything else is a
            # model.kwargs mistake (e.g. ViT's `depth` given to a Swin, which takes `depths`).
            if not any(f"'{k}'" in str(err) for k in keys):
                if any(f"'{k}'" in str(err) for k in dropout_kwargs(cfg)):
                    raise ConfigError(f"model.dropout_at: timm model '{cfg.name}' has no {cfg.dropout_at} dropout "
                                      f"({err}); use model.dropout_at=head or model.dropout=0") from None
                raise ConfigError(f"model.kwargs: timm model '{cfg.name}' rejects {cfg.kwargs}: {err}") from None
    raise AssertionError("unreachable: the last way passes no geometry argument")  # pragma: no cover


def dropout_kwargs(cfg: ModelConfig) -> dict[str, float]:
    """timm ≥ 0.9's dropout arguments for `model.dropout` at `model.dropout_at` (and attn_dropout).

    timm 0.9 split the old `drop_rate` (dropout after the position embedding, the attention
    projection and both MLP layers: the ViT paper's, big_vision's and Steiner et al.'s placement)
    into pos_drop_rate and proj_drop_rate, and gave `drop_rate` to the head alone. Only arguments
    that are not zero are passed, so models without them (CNNs) still build when dropout is off.
    """
    rates = {"pos_drop_rate": cfg.dropout, "proj_drop_rate": cfg.dropout} if cfg.dropout_at == "blocks" else \
        {"drop_rate": cfg.dropout}
    rates["attn_drop_rate"] = cfg.attn_dropout
    return {k: v for k, v in rates.items() if v > 0}


def check_builds(cfg: ModelConfig, img_size: int) -> None:
    """Build the backbone on the meta device (no memory, no weights: a fraction of a second even at
    ViT-B) so that a model.kwargs that timm rejects fails before any run starts, once per distinct
    model, rather than in every trial of a sweep (and again in each retry)."""
    _check_builds(cfg.name, json.dumps(cfg.kwargs, sort_keys=True, default=str), img_size, cfg.dropout,
                  cfg.drop_path, cfg.dropout_at, cfg.attn_dropout)


@functools.lru_cache(maxsize=256)
def _check_builds(name: str, kwargs: str, img_size: int, dropout: float, drop_path: float, dropout_at: str = "head",
                  attn_dropout: float = 0.0) -> None:
    cfg = ModelConfig(name=name, kwargs=json.loads(kwargs), dropout=dropout, drop_path=drop_path,
                      dropout_at=dropout_at, attn_dropout=attn_dropout)
    try:
        with torch.device("meta"):
            create_backbone(cfg, img_size)
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - timm's own checks raise assertions, value and type errors
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"model.kwargs: timm cannot build '{name}' with {cfg.kwargs} at {img_size} px: "
                          f"{reason}") from None


def compile_module(module: nn.Module, random: str = "eager") -> None:
    """`torch.compile` `module` in place (its forward compiles at the first call).

    By default inductor draws the random numbers of dropout and (on CUDA) stochastic depth inside
    its own kernels, so a compiled run drops other units than the eager run of the same seed;
    `random="eager"` makes those ops call the eager kernels on torch's generator (inductor's
    `fallback_random`, scoped to this module's compilation), so that compiling changes only
    rounding. `"fused"` keeps inductor's draws: fewer passes over the activations.
    """
    module.compile(options={"fallback_random": random == "eager"})


def compiled_graphs() -> int | None:
    """How many graphs dynamo has built in this process so far (None where this torch lacks the
    private counter): the one way to tell that a compile built anything, since e.g. torch 2.11's
    `Module.compile` silently compiles nothing for a module whose forward lives in torch's files."""
    try:
        from torch._dynamo.utils import counters

        return int(counters["stats"]["unique_graphs"])
    except Exception:  # noqa: BLE001 - a private counter; absent in some versions
        return None


def patch_size(backbone: nn.Module) -> int | None:
    """The side of the input patch that a token stands for at the first stage, if fixed."""
    embed = getattr(backbone, "patch_embed", None)
    size = getattr(embed, "patch_size", None)
    if size is None or getattr(embed, "dynamic_img_pad", False):
        return None  # dynamic padding accepts any input size
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def check_view_size(backbone: nn.Module, size: int, key: str) -> None:
    """Fail before training, naming the key, where timm would assert at the first forward."""
    patch = patch_size(backbone)
    if patch is not None and size % patch:
        raise ConfigError(f"{key}: {size} px is not a multiple of the backbone's patch size {patch}; "
                          f"use e.g. {max(patch, round(size / patch) * patch)}")


def embed_dim(backbone: nn.Module) -> int:
    return int(getattr(backbone, "num_features"))


class DINOHead(nn.Module):
    """MLP (nlayers, GELU) → bottleneck → L2-normalise → weight-normalised linear to out_dim.

    `forward` returns (logits, bottleneck): the L2-normalised bottleneck is the representation
    used by k-NN evaluation.
    """

    def __init__(self, in_dim: int, cfg: HeadConfig):
        super().__init__()
        dims = [in_dim] + [cfg.hidden_dim] * (cfg.nlayers - 1) + [cfg.bottleneck_dim]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(dims) - 2:
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        self.apply(self._init)
        self.last_layer = nn.utils.parametrizations.weight_norm(
            nn.Linear(cfg.bottleneck_dim, cfg.out_dim, bias=False)
        )
        gain = self.last_layer.parametrizations.weight.original0
        gain.data.fill_(1.0)
        if cfg.norm_last_layer:
            gain.requires_grad = False

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = F.normalize(self.mlp(x), dim=-1, p=2)
        return self.last_layer(z), z


def resolution_groups(views: list[torch.Tensor]) -> list[tuple[int, int]]:
    """[(start, end)) index ranges of consecutive views that share a resolution."""
    groups, start = [], 0
    for i in range(1, len(views) + 1):
        if i == len(views) or views[i].shape[-1] != views[start].shape[-1]:
            groups.append((start, i))
            start = i
    return groups


def forward_views(backbone: nn.Module, views: list[torch.Tensor]) -> torch.Tensor:
    """Embed a list of [B, C, H, W] views with one forward per resolution → [len(views)·B, D]."""
    outs = [backbone(torch.cat(views[a:b])) for a, b in resolution_groups(views)]
    return torch.cat(outs)


def region_tokens(backbone: nn.Module, feats: torch.Tensor) -> torch.Tensor:
    """The spatial tokens in `forward_features` output → [N, T, D].

    ViT: the patch tokens (prefix tokens such as CLS and registers dropped); Swin: the last stage's
    H×W grid (timm keeps it NHWC); CNNs: the NCHW feature map.
    """
    if feats.dim() == 3:
        return feats[:, int(getattr(backbone, "num_prefix_tokens", 0)):]
    if feats.dim() == 4:
        if getattr(backbone, "output_fmt", "NCHW") == "NHWC":
            return feats.flatten(1, 2)
        return feats.flatten(2).transpose(1, 2)
    raise ConfigError(f"model.name: '{type(backbone).__name__}' has no spatial tokens "
                      f"(forward_features gives shape {tuple(feats.shape)}); the region loss needs a ViT, Swin or CNN")


def forward_views_regions(backbone: nn.Module,
                          views: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Like `forward_views`, also returning the region tokens of every view.

    Returns the pooled embeddings [V·B, D] (the same numbers as `forward_views`: timm's forward is
    forward_features then forward_head), the region tokens flattened view-major to [Σ_v B·T_v, D],
    and T_v, the number of tokens of each view (local views have fewer).
    """
    pooled, tokens, counts = [], [], []
    for a, b in resolution_groups(views):
        feats = backbone.forward_features(torch.cat(views[a:b]))
        pooled.append(backbone.forward_head(feats, pre_logits=True))
        regions = region_tokens(backbone, feats)
        tokens.append(regions.reshape(-1, regions.shape[-1]))
        counts += [regions.shape[1]] * (b - a)
    return torch.cat(pooled), torch.cat(tokens), counts


# ---------------------------------------------------------------------------------------------
# Teacher: a copy of the student at step 0, then an EMA after every optimiser step.

def cosine_momentum(step: int, total_steps: int, base: float, final: float = 1.0) -> float:
    """Momentum at `step` (0-based) of a cosine from `base` (first step) to `final` (last step)."""
    if total_steps <= 1:
        return final
    progress = min(step, total_steps - 1) / (total_steps - 1)
    return final - (final - base) * (math.cos(math.pi * progress) + 1) / 2


def stepped_cosine(index: int, length: int, base: float, final: float = 1.0) -> float:
    """Value `index` of DINO's `cosine_scheduler(base, final, ...)` array of `length` values (no
    warm-up): final + (base − final)·(1 + cos(π·index/length))/2, never quite `final`. The original
    Tort code read it at the batch's index within its epoch (teacher.momentum_index=batch_in_epoch)."""
    return final + 0.5 * (base - final) * (1 + math.cos(math.pi * index / length))


@torch.no_grad()
def ema_update(teacher_params: list[torch.Tensor], student_params: list[torch.Tensor], momentum: float) -> None:
    """θ_t ← m·θ_t + (1 − m)·θ_s, one fused foreach call for all parameters."""
    torch._foreach_lerp_(teacher_params, student_params, 1.0 - momentum)


# ---------------------------------------------------------------------------------------------
# Fine-tuning init from a local file (safe loading: tensors only, never code).

def _unwrap(state: dict) -> dict:
    for key in ("student_backbone", "backbone", "state_dict", "model", "student"):
        if key in state and isinstance(state[key], dict):
            return _unwrap(state[key])
    return state


def load_init(backbone: nn.Module, path: Path) -> tuple[int, int]:
    """Load backbone weights from a local checkpoint; returns (#loaded, #missing) tensors."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"model.init: {missing_checkpoint(path)}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user error
        raise ConfigError(f"model.init: cannot read '{path}' as a weights-only checkpoint ({type(err).__name__})") from None
    state = _unwrap(state)
    state = {k.removeprefix("module.").removeprefix("backbone."): v for k, v in state.items()
             if not k.startswith(("head.", "fc.", "classifier."))}
    # timm's per-family filter (e.g. ViT's) resamples position embeddings to this img_size.
    filter_fn = getattr(sys.modules.get(type(backbone).__module__), "checkpoint_filter_fn", None)
    if filter_fn is not None:
        try:
            state = filter_fn(state, backbone)
        except Exception:  # noqa: BLE001 - a foreign layout: the shape-matched load below still applies
            state = dict(state)
    own = backbone.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise ConfigError(f"model.init: no tensor in '{path}' matches the backbone's names and shapes")
    backbone.load_state_dict(usable, strict=False)
    return len(usable), len(own) - len(usable)
