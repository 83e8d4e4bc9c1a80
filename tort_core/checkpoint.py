"""Checkpoint files: atomic writes, weights-only loading, and a writer process that takes the write
off the training loop.

A tort ViT-B checkpoint (student, teacher, AdamW moments, Lookahead's slow weights) is ≈ 1.9 GB.
Written in the loop, `torch.save` stalls training for seconds per epoch, which on a GPU can rival
an epoch of the thesis's small datasets. `BackgroundWriter` instead copies the tensors into a
shared buffer (the loop's only cost: one memory copy) and a separate process serialises them and
writes the file. It is a process, not a thread: a thread serialising in Python would hold the GIL
and slow the loop's dispatch exactly when it should overlap.

Both writers publish a file only when it is complete (written aside, then `os.replace`), so a
reader or a resumed run sees the previous checkpoint or the new one, never part of one. A writer
whose trainer died discards what it was writing rather than publish it late.

A writer process outlives the run that started it: `release` hands it to the next run in the same
process (a reused Ray actor's next trial), which would otherwise start another interpreter and
import torch again, seconds of a core taken from a trial that on a GPU may itself last seconds.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import mmap
import os
import pickle
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .errors import ConfigError, DataError

_ALIGN = 64  # byte alignment of each tensor in the shared buffer (any dtype's view is aligned)


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
# Writers: `save` (may return before the file is written), `wait` (until it is), `close`.

class SyncWriter:
    """`torch.save` in the loop: the loop waits for the whole write."""

    mode = "sync"

    def save(self, path: Path, payload: dict[str, Any]) -> None:
        save_checkpoint(path, payload)

    def wait(self) -> None: ...

    def release(self) -> None: ...

    def close(self) -> None: ...


def background_supported() -> bool:
    return hasattr(os, "memfd_create") and hasattr(socket, "send_fds")


def write_mode(mode: str, device: torch.device) -> str:
    """What `checkpoint_write` means here: auto = background on CUDA (where a step is short next
    to a write), sync on a CPU (where training dwarfs the write and a second process costs a core)."""
    if mode == "background" and not background_supported():
        raise ConfigError("checkpoint_write: 'background' needs Linux (memfd_create); use --set checkpoint_write=sync")
    if mode == "background" or (mode == "auto" and device.type == "cuda" and background_supported()):
        return "background"
    return "sync"


_spare_lock = threading.Lock()
_spare: BackgroundWriter | None = None  # a writer process released by an earlier run, idle


def checkpoint_writer(mode: str, device: torch.device) -> SyncWriter | BackgroundWriter:
    """The writer for `checkpoint_write` (see `write_mode`): for background writes the process an
    earlier run released, if it is still alive, else a new one. A run ends its use with `release`."""
    if write_mode(mode, device) != "background":
        return SyncWriter()
    writer = _take_spare()
    if writer is not None and writer.alive:
        return writer
    if writer is not None:
        writer.close()
    return BackgroundWriter()


def _take_spare() -> BackgroundWriter | None:
    global _spare
    with _spare_lock:
        writer, _spare = _spare, None
    return writer


def _keep_spare(writer: BackgroundWriter) -> None:
    global _spare
    with _spare_lock:
        if _spare is None:
            _spare, writer = writer, None
    if writer is not None:
        writer.close()  # runs ran side by side: one idle process is enough


@atexit.register
def _stop_spare() -> None:
    writer = _take_spare()
    if writer is not None:
        writer.close()


@dataclass(frozen=True)
class _Slot:
    """Stands in a payload for its i-th tensor, which travels through the shared buffer."""
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


Layout = tuple[tuple[str, tuple[int, ...], int], ...]  # (dtype name, shape, byte offset) per tensor


def _layout(tensors: list[torch.Tensor]) -> tuple[Layout, int]:
    entries, offset = [], 0
    for t in tensors:
        entries.append((str(t.dtype).removeprefix("torch."), tuple(t.shape), offset))
        offset += -(-t.numel() * t.element_size() // _ALIGN) * _ALIGN
    return tuple(entries), max(offset, _ALIGN)


def _views(buffer: mmap.mmap, layout: Layout) -> list[torch.Tensor]:
    """One tensor per layout entry, each its own storage over its range of `buffer` (so torch.save
    writes them as separate storages, as it does the originals)."""
    views = []
    for dtype_name, shape, offset in layout:
        dtype = getattr(torch, dtype_name)
        numel = 1
        for s in shape:
            numel *= s
        if numel == 0:
            views.append(torch.empty(shape, dtype=dtype))
            continue
        views.append(torch.frombuffer(buffer, dtype=dtype, count=numel, offset=offset).view(shape))
    return views


# Framing on the socket between trainer and writer: 8-byte length, then a pickle.
def _pickle(message: Any) -> bytes:
    return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)


def _send(sock: socket.socket, message: Any, fds: list[int] = ()) -> None:
    _send_body(sock, _pickle(message), fds)


def _send_body(sock: socket.socket, body: bytes, fds: list[int] = ()) -> None:
    header = struct.pack("!Q", len(body))
    if fds:
        socket.send_fds(sock, [header], list(fds))
    else:
        sock.sendall(header)
    sock.sendall(body)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _recv(sock: socket.socket) -> tuple[Any, list[int]] | None:
    """The next message and any file descriptors sent with it; None when the peer is gone."""
    header, fds, _, _ = socket.recv_fds(sock, 8, 4)
    if not header:
        return None
    if len(header) < 8:
        rest = _recv_exact(sock, 8 - len(header))
        if rest is None:
            return None
        header += rest
    body = _recv_exact(sock, struct.unpack("!Q", header)[0])
    # The only peer is the other end of a private socketpair: this trainer or the writer it started.
    return (pickle.loads(body), fds) if body is not None else None


class BackgroundWriter:
    """Checkpoints written by a separate process from a snapshot in shared memory.

    `save` waits for the previous write (there is one buffer), copies the payload's tensors into
    the buffer (from the GPU, too) and returns; the writer process serialises that snapshot,
    writes it aside and renames it into place. `wait` returns when the last file is in place and
    raises `CheckpointError` if it could not be written. The buffer is an anonymous memfd, shared
    by passing its descriptor: nothing in /dev/shm (often small in containers), and nothing left
    behind when either process dies.
    """

    mode = "background"

    def __init__(self) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        package_root = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root,
                                                                         os.environ.get("PYTHONPATH")]))}
        code = "import sys; from tort_core.checkpoint import _writer_main; _writer_main(int(sys.argv[1]), int(sys.argv[2]))"
        # A fresh interpreter, not a fork: the trainer has threads (loader, Ray) and a CUDA context.
        # Its own session: a Ctrl-C in the terminal stops the trainer, which then waits for the
        # write in flight, instead of killing the writer midway.
        self._proc = subprocess.Popen([sys.executable, "-c", code, str(child.fileno()), str(os.getpid())],
                                      pass_fds=[child.fileno()], env=env, stdin=subprocess.DEVNULL,
                                      start_new_session=True)
        child.close()
        self._sock = parent
        self._layout: Layout | None = None
        self._buffer: mmap.mmap | None = None
        self._views: list[torch.Tensor] = []
        self._pinned: int | None = None  # address of the buffer while page-locked for the GPU
        self._pin_refused = False
        self._pending: Path | None = None
        self._broken: str | None = None  # why the channel to the writer can no longer be trusted
        self.last_write_seconds: float | None = None  # the writer's time for the last file

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def alive(self) -> bool:
        """Whether the process runs and the channel to it can be trusted."""
        return not self._broken and self._proc.poll() is None

    def save(self, path: Path, payload: dict[str, Any]) -> None:
        self.wait()
        tensors: list[torch.Tensor] = []
        skeleton = _split(payload, tensors)
        try:
            message = _pickle(("save", str(path), skeleton))
        except Exception as err:  # noqa: BLE001 - nothing was sent: the writer is still usable
            raise CheckpointError(f"checkpoint {path}: the payload cannot be pickled: {err}") from None
        layout, size = _layout(tensors)
        if layout != self._layout:
            self._allocate(layout, size)
        devices = {t.device for t in tensors if t.is_cuda}
        if devices:
            self._pin(next(iter(devices)))
        with torch.no_grad():
            for view, t in zip(self._views, tensors):
                # Into page-locked memory a device→host copy runs at the bus's speed, queued
                # behind the steps already on the stream; the synchronise below waits for all.
                view.copy_(t, non_blocking=self._pinned is not None)
        for device in devices:
            torch.cuda.synchronize(device)
        self._request(message)
        self._pending = Path(path)

    def _pin(self, device: torch.device) -> None:
        """Page-lock the buffer for CUDA copies, once per buffer. Where the driver refuses, copies
        go through pageable memory: slower, the same bytes."""
        if self._pinned is not None or self._pin_refused or self._buffer is None:
            return
        address = torch.frombuffer(self._buffer, dtype=torch.uint8).data_ptr()
        if int(torch.cuda.cudart().cudaHostRegister(address, len(self._buffer), 0)) == 0:
            self._pinned = address
            return
        self._pin_refused = True
        # The refusal stays as CUDA's last error, which the next kernel-launch check anywhere in
        # training would raise: launch one here, so that it is read (and cleared) now.
        with contextlib.suppress(RuntimeError):  # the refusal itself: read, nothing else to do
            torch.empty(1, device=device).fill_(0)
            torch.cuda.synchronize(device)

    def _unpin(self) -> None:
        if self._pinned is not None:
            torch.cuda.cudart().cudaHostUnregister(self._pinned)
            self._pinned = None

    def _allocate(self, layout: Layout, size: int) -> None:
        self._unpin()
        self._pin_refused = False
        size = -(-size // mmap.PAGESIZE) * mmap.PAGESIZE  # whole pages, as page-locking wants
        fd = os.memfd_create("tort-checkpoint", os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, size)
            buffer = mmap.mmap(fd, size)
            self._request(_pickle(("buffer", size, layout)), fds=[fd])
        finally:
            os.close(fd)  # both mappings keep the memory alive; it is freed when both are gone
        self._views = _views(buffer, layout)
        self._buffer, self._layout = buffer, layout

    def _request(self, body: bytes, fds: list[int] = ()) -> None:
        if self._broken:
            raise CheckpointError(f"checkpoint writer (pid {self.pid}) unusable: {self._broken}")
        try:
            _send_body(self._sock, body, fds)
        except BaseException as err:
            # A message cut off midway (the writer gone, or an interrupt) desynchronises the stream.
            self._broken = f"{type(err).__name__}: {err}"
            if isinstance(err, OSError):
                raise CheckpointError(f"checkpoint writer (pid {self.pid}) is gone: {err}") from None
            raise

    def wait(self) -> None:
        """Return once the last checkpoint is in place; raise CheckpointError if it is not."""
        if self._pending is None:
            return
        try:
            reply = _recv(self._sock)
        except BaseException as err:
            self._broken = f"{type(err).__name__}: {err}"
            self._pending, path = None, self._pending
            if isinstance(err, OSError):
                raise CheckpointError(f"checkpoint writer (pid {self.pid}) failed while writing {path}: {err}") from None
            raise
        path, self._pending = self._pending, None
        if reply is None:
            self._broken = "exited"
            raise CheckpointError(f"checkpoint writer (pid {self.pid}) exited while writing {path}")
        (status, detail), _ = reply
        if status != "done":
            raise CheckpointError(f"could not write checkpoint {path}: {detail}")
        self.last_write_seconds = detail

    def release(self) -> None:
        """End a run's use of this writer: wait for its last checkpoint (raising CheckpointError
        as `wait` does), free the snapshot buffer on both sides, and keep the process idle for the
        next run in this process (`checkpoint_writer` hands it out). One that can no longer be
        trusted is stopped instead."""
        try:
            self.wait()
        finally:  # a failed last write, too, leaves no buffer behind
            if self._layout is not None:
                self._drop_buffer()
                if self.alive:
                    with contextlib.suppress(CheckpointError):  # the channel broke: stopped below
                        self._request(_pickle(("release",)))
            if self.alive:
                _keep_spare(self)
            else:
                self.close()

    def _drop_buffer(self) -> None:
        self._unpin()
        self._views = []  # the tensors view the mapping: drop them first
        self._buffer, self._layout = None, None

    def close(self) -> None:
        """Wait for the last write, then stop the writer."""
        if self._layout is None and self._pending is None and not self._broken:
            self._broken = "idle"  # no buffer, no write: nothing to wait for, not even its start
        try:
            if not self._broken:
                self.wait()
        finally:
            if not self._broken:
                with contextlib.suppress(OSError):  # the writer already exited: nothing to stop
                    _send(self._sock, ("stop",))
            self._sock.close()
            try:
                self._proc.wait(timeout=0 if self._broken else 30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._drop_buffer()


def _writer_main(fd: int, trainer_pid: int) -> None:
    """The writer process: apply the trainer's messages until it says stop or goes away."""
    sock = socket.socket(fileno=fd)
    views: list[torch.Tensor] = []
    while True:
        received = _recv(sock)
        if received is None:
            return  # the trainer is gone
        message, fds = received
        kind = message[0]
        if kind == "stop":
            return
        if kind == "release":
            views = []  # the last view of the buffer gone, its mapping goes too
            continue
        if kind == "buffer":
            _, size, layout = message
            views = _views(mmap.mmap(fds[0], size), layout)  # the views hold the only reference
            os.close(fds[0])
            continue
        _, path, skeleton = message
        path = Path(path)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        t0 = time.perf_counter()
        try:
            torch.save(_join(skeleton, views), tmp)
            if os.getppid() != trainer_pid:
                # The trainer died mid-write: a retry may already be running in this directory,
                # and a late rename could replace its newer checkpoint. Discard.
                tmp.unlink(missing_ok=True)
                return
            os.replace(tmp, path)
            reply = ("done", time.perf_counter() - t0)
        except BaseException as err:  # noqa: BLE001 - reported to the trainer, which raises it
            tmp.unlink(missing_ok=True)
            if not isinstance(err, Exception):
                raise  # a signal or exit: leave nothing half-written behind
            reply = ("error", f"{type(err).__name__}: {err}")
        try:
            _send(sock, reply)
        except OSError:
            return
