"""Checkpoint files: atomic writes, weights-only loading, and a writer thread that takes the write
off the training loop.

A tort ViT-B checkpoint (student, teacher, AdamW moments, Lookahead's slow weights) is ≈ 1.9 GB.
Written in the loop, `torch.save` stalls training for seconds per epoch, which on a GPU can rival
an epoch of the thesis's small datasets. `BackgroundWriter` instead copies the tensors into host
memory it keeps (the loop's only cost: one memory copy) and `torch.save`s that snapshot from a
thread while training goes on. torch writes tensor data without holding the GIL, so the loop's
Python runs on meanwhile (docs/design.md, "Checkpoints", has the measurement).

Both writers publish a file only when it is complete (written aside, then `os.replace`), so a
reader or a resumed run sees the previous checkpoint or the new one, never part of one. The
writer thread dies with its process: a killed trainer never publishes a file late, and the next
run removes what the write left beside the checkpoint (`discard_partial_writes`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .errors import STORAGE_ERRNOS, DataError


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    tmp = Path(path).with_name(Path(path).name + ".tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)  # readers never see a half-written checkpoint
    except RuntimeError as err:
        full = _disk_full(tmp.parent)  # torch's writer reports a full disk as "unexpected pos …"
        tmp.unlink(missing_ok=True)
        if full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from err
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)  # a Ctrl-C must not leave a partial copy behind
        raise


def _disk_full(folder: Path, margin: int = 2**20) -> bool:
    with contextlib.suppress(OSError):
        return shutil.disk_usage(folder).free < margin
    return False


class CorruptCheckpoint(DataError):
    """A checkpoint file that cannot be read back: truncated, empty, or not a checkpoint."""

    def __init__(self, path: Path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"checkpoint '{path}' is unreadable ({reason})")


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint at `path`, loaded with torch's weights-only unpickler (no code runs);
    CorruptCheckpoint if it is truncated, empty or not a checkpoint."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except EOFError:
        raise CorruptCheckpoint(path, "empty or truncated") from None
    except RuntimeError as err:  # torch's zip reader: "failed finding central directory", ...
        raise CorruptCheckpoint(path, f"truncated or damaged: {str(err).splitlines()[0][:120]}") from None
    except pickle.UnpicklingError:
        raise CorruptCheckpoint(path, "not a weights-only checkpoint (damaged, or holds objects other than "
                                      "tensors and plain data)") from None


def discard_partial_writes(path: Path) -> None:
    """Remove what writes of `path` killed midway left beside it (`<name>.tmp`, `<name>.<pid>.tmp`):
    never read, but each as large as a checkpoint."""
    path = Path(path)
    for leftover in path.parent.glob(f"{path.name}.*tmp"):
        leftover.unlink(missing_ok=True)


class CheckpointError(RuntimeError):
    """A checkpoint could not be written (reported by the background writer)."""


# ---------------------------------------------------------------------------------------------
# Writers: `save` (may return before the file is written), `wait` (until it is), `release`.

class SyncWriter:
    """`torch.save` in the loop: the loop waits for the whole write."""

    mode = "sync"

    def save(self, path: Path, payload: dict[str, Any]) -> None:
        save_checkpoint(path, payload)

    def wait(self) -> None: ...

    def release(self) -> None: ...

    close = release


def write_mode(mode: str, device: torch.device) -> str:
    """What `checkpoint_write` means here: auto = background on CUDA (where a step is short next
    to a write), sync on a CPU (where training dwarfs the write and the writer would take a core
    from it)."""
    return "background" if mode == "background" or (mode == "auto" and device.type == "cuda") else "sync"


def checkpoint_writer(mode: str, device: torch.device) -> SyncWriter | BackgroundWriter:
    """The writer for `checkpoint_write` (see `write_mode`); a run ends its use with `release`."""
    return BackgroundWriter() if write_mode(mode, device) == "background" else SyncWriter()


@dataclass(frozen=True)
class _Slot:
    """Stands in a payload for its i-th tensor, which the snapshot holds."""
    index: int


def _like(obj: Any, items: Any) -> Any:
    """A container of `obj`'s type holding `items`, with `obj`'s attributes (a state_dict's
    `_metadata`, the module versions that `load_state_dict` reads)."""
    new = type(obj)(items)
    if getattr(obj, "__dict__", None):
        new.__dict__.update(obj.__dict__)
    return new


def _split(obj: Any, tensors: list[torch.Tensor]) -> Any:
    """`obj` with every tensor replaced by a `_Slot`, the tensors appended to `tensors`."""
    if isinstance(obj, torch.Tensor):
        tensors.append(obj.detach())
        return _Slot(len(tensors) - 1)
    if isinstance(obj, dict):
        return _like(obj, ((k, _split(v, tensors)) for k, v in obj.items()))
    if isinstance(obj, (list, tuple)) and not hasattr(obj, "_fields"):
        return _like(obj, (_split(v, tensors) for v in obj))
    return obj


def _join(obj: Any, tensors: list[torch.Tensor]) -> Any:
    if isinstance(obj, _Slot):
        return tensors[obj.index]
    if isinstance(obj, dict):
        return _like(obj, ((k, _join(v, tensors)) for k, v in obj.items()))
    if isinstance(obj, (list, tuple)) and not hasattr(obj, "_fields"):
        return _like(obj, (_join(v, tensors) for v in obj))
    return obj


class BackgroundWriter:
    """Checkpoints written by a thread from a snapshot in host memory.

    `save` waits for the previous write (there is one snapshot), copies the payload's tensors into
    the snapshot (from the GPU too, through page-locked memory) and returns; a thread writes the
    snapshot aside and renames it into place. `wait` returns when the last file is in place, and
    raises the write's error: CheckpointError naming the file, or the OSError of a full disk.
    `release` waits too and frees the snapshot, whose memory is the checkpoint's size.
    """

    mode = "background"

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._pending: Path | None = None
        self._error: BaseException | None = None
        self._snapshot: list[torch.Tensor] = []
        self._layout: tuple | None = None
        self.pinned = False  # whether the snapshot is page-locked (for copies from a GPU)
        self.last_write_seconds: float | None = None  # the thread's time for the last file

    @property
    def snapshot_bytes(self) -> int:
        """Host memory the writer holds for its snapshot (0 after `release`)."""
        return sum(t.numel() * t.element_size() for t in self._snapshot)

    def save(self, path: Path, payload: dict[str, Any]) -> None:
        self.wait()
        tensors: list[torch.Tensor] = []
        skeleton = _split(payload, tensors)
        try:  # what is not a tensor must pickle: refused here, in the loop, before anything is copied
            pickle.dumps(skeleton, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as err:  # noqa: BLE001 - any reason is the same refusal
            raise CheckpointError(f"checkpoint {path}: the payload cannot be pickled: {err}") from None
        cuda = {t.device for t in tensors if t.is_cuda}
        layout = tuple((t.dtype, tuple(t.shape)) for t in tensors)
        if layout != self._layout or (cuda and not self.pinned):
            self._allocate(layout, pin=bool(cuda))
        with torch.no_grad():
            for copy, t in zip(self._snapshot, tensors):
                # Into page-locked memory a device→host copy runs at the bus's speed, queued behind
                # the steps already on the stream; the synchronise below waits for all.
                copy.copy_(t, non_blocking=self.pinned)
        for device in cuda:
            torch.cuda.synchronize(device)
        self._pending = Path(path)
        self._thread = threading.Thread(target=self._write, args=(self._pending, _join(skeleton, self._snapshot)),
                                        name="tort-checkpoint")
        self._thread.start()

    def _allocate(self, layout: tuple, pin: bool) -> None:
        self._snapshot = []  # the old one first: two at once would double the memory
        try:
            self._snapshot = [torch.empty(shape, dtype=dtype, pin_memory=pin) for dtype, shape in layout]
            self.pinned = pin
        except RuntimeError:  # the driver refuses to page-lock this much: pageable copies, slower, the same bytes
            self._snapshot = [torch.empty(shape, dtype=dtype) for dtype, shape in layout]
            self.pinned = False
        self._layout = layout

    def _write(self, path: Path, snapshot: dict[str, Any]) -> None:
        t0 = time.perf_counter()
        try:
            save_checkpoint(path, snapshot)
            self.last_write_seconds = time.perf_counter() - t0
        except BaseException as err:  # noqa: BLE001 - raised in the trainer by wait
            self._error = err

    def wait(self) -> None:
        """Return once the last checkpoint is in place; raise its write's error if it is not."""
        if self._thread is None:
            return
        self._thread.join()
        path, error = self._pending, self._error
        self._thread, self._pending, self._error = None, None, None
        if isinstance(error, OSError) and error.errno in STORAGE_ERRNOS:
            raise error  # as it is: the command line's one line for a full disk
        if error is not None:
            raise CheckpointError(f"could not write checkpoint {path}: {type(error).__name__}: {error}") from error

    def release(self) -> None:
        """End a run's use of this writer: wait for its last checkpoint (raising as `wait` does) and
        free the snapshot."""
        try:
            self.wait()
        finally:
            self._snapshot, self._layout, self.pinned = [], None, False

    close = release
