"""Mode `syncs`, and the FLOP count every mode uses: one training step replayed on the meta device
(the same shapes, no arithmetic, so a ViT-B step costs seconds on any machine), listing every op
that would make the host wait for the GPU (.item(), float()/bool() of a device tensor,
data-dependent shapes, device→host copies) with the line of code that issued it, and counting the
step's FLOPs with `torch.utils.flop_counter.FlopCounterMode`."""

from __future__ import annotations

import os
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode  # torch's own hook for a dispatch-level spy
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import Row
from benchmarks.step import StepRunner, synthetic_batch
from tort_core.config import RunConfig


@dataclass
class Sync:
    kind: str
    op: str
    where: str


_SCALAR_READ = {"aten::_local_scalar_dense", "aten::equal", "aten::is_nonzero"}
_DATA_DEPENDENT = {"aten::nonzero", "aten::masked_select", "aten::_unique2", "aten::unique_dim",
                   "aten::unique_consecutive", "aten::bincount", "aten::histc"}
_BOOL_INDEXED = {"aten::index", "aten::index_put", "aten::index_put_", "aten::_index_put_impl_"}
_TORCH_DIR = os.path.dirname(torch.__file__)
_THIS = os.path.abspath(__file__)


def _caller() -> str:
    """The innermost frame outside torch and this spy: the line of model/recipe code that asked."""
    root = Path(__file__).resolve().parent.parent
    for frame in reversed(traceback.extract_stack()):
        path = os.path.abspath(frame.filename)
        if path.startswith(_TORCH_DIR) or (path == _THIS and frame.name in ("__torch_dispatch__", "_caller")):
            continue
        try:
            shown = str(Path(path).relative_to(root))
        except ValueError:
            shown = path.split("site-packages/")[-1]
        return f"{shown}:{frame.lineno} ({frame.name})"
    return "?"


class SyncSpy(TorchDispatchMode):
    """Records every op that would block the host on a real accelerator, with the meta device
    standing in for it, and lets the replay go on with a stand-in result.

    A CPU tensor's .item() (an optimiser's step counter) is host-only and not recorded; a copy to
    the device is recorded separately, as it blocks only from pageable memory on some drivers.
    """

    def __init__(self):
        super().__init__()
        self.syncs: list[Sync] = []
        self.h2d: list[Sync] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func._schema.name
        tensors = [a for a in _flat(args, kwargs) if isinstance(a, torch.Tensor)]
        on_device = any(t.device.type == "meta" for t in tensors)
        if name in _SCALAR_READ and on_device:
            self.syncs.append(Sync("scalar read (.item/float/bool)", name, _caller()))
            dtype = tensors[0].dtype
            return True if dtype == torch.bool or name != "aten::_local_scalar_dense" else (
                1.0 if dtype.is_floating_point else 1)
        if name in ("aten::_to_copy", "aten::copy_") and tensors:
            src = tensors[1] if name == "aten::copy_" else tensors[0]
            dst_device = tensors[0].device if name == "aten::copy_" else torch.device(kwargs.get("device") or src.device)
            if src.device.type == "meta" and dst_device.type == "cpu":
                self.syncs.append(Sync("device→host copy", name, _caller()))
                return tensors[0] if name == "aten::copy_" else torch.zeros(
                    src.shape, dtype=kwargs.get("dtype") or src.dtype)
            if src.device.type == "cpu" and dst_device.type == "meta":
                self.h2d.append(Sync("host→device copy", name, _caller()))
        bool_index = name in _BOOL_INDEXED and any(
            isinstance(t, torch.Tensor) and t.dtype in (torch.bool, torch.uint8)
            for t in (args[1] if len(args) > 1 and isinstance(args[1], (list, tuple)) else []))
        if on_device and (name in _DATA_DEPENDENT or bool_index):
            self.syncs.append(Sync("data-dependent shape", name + (" (bool mask)" if bool_index else ""), _caller()))
            import torch.fx.experimental._config as fx_config

            with fx_config.patch(meta_nonzero_assume_all_nonzero=True):
                return func(*args, **kwargs)
        return func(*args, **kwargs)


def _flat(args, kwargs):
    for a in list(args) + list(kwargs.values()):
        if isinstance(a, (list, tuple)):
            yield from a
        else:
            yield a


@dataclass
class StepAnalysis:
    flops_per_step: float | None
    syncs: list[Sync]
    h2d: list[Sync]
    error: str | None = None


def analyse_step(cfg: RunConfig, num_classes: int) -> StepAnalysis:
    """One step on the meta device: its FLOPs and its host syncs. Compilation is left out (same
    FLOPs; the compiled graph is the eager one's ops)."""
    meta = torch.device("meta")
    spy = SyncSpy()
    flops: float | None = None
    try:
        runner = StepRunner(cfg.model_copy(update={"compile": False}), num_classes, meta)
        batch = synthetic_batch(cfg, num_classes, meta)
        with spy, FlopCounterMode(display=False) as counter:
            runner.step(batch)
        flops = float(counter.get_total_flops())
    except Exception as err:  # noqa: BLE001 - report what was found before the replay stopped
        return StepAnalysis(flops, spy.syncs, spy.h2d, f"{type(err).__name__}: {str(err).splitlines()[0]}")
    return StepAnalysis(flops, spy.syncs, spy.h2d)



def row(recipe: str, batch_size: int, a: StepAnalysis) -> Row:
    """The `syncs` mode's row: the host syncs one step makes, where each is issued."""
    where = "; ".join(f"{s.op} at {s.where}" for s in a.syncs) or "none"
    return Row(recipe, "syncs", batch=batch_size,
               note=f"{len(a.syncs)} per step: {where}" + (f" (stopped: {a.error})" if a.error else ""),
               extra={"syncs": [asdict(s) for s in a.syncs], "h2d": [asdict(s) for s in a.h2d],
                      "flops_per_step": a.flops_per_step, "error": a.error})
