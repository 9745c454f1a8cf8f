"""Where and how code runs: device, seeds, precision, model modes, safe files, checks.

This is the package's leaf module: it imports nothing from the rest of ``atkd_lite``, and
every other module takes these helpers from here (never from each other's private names).

- :func:`get_device` picks ``cuda`` → ``mps`` → ``cpu`` (or validates the one you name);
- :func:`seed_everything` seeds Python, NumPy and torch;
- :func:`autocast_context` is mixed precision on CUDA (in :func:`autocast_dtype`'s half
  type: bfloat16 where native, else float16); :func:`float32_math` switches it off
  again where the maths must stay in float32 (maps, losses), :func:`at_least_float32`
  upcasts half-precision tensors;
- :func:`eval_mode` and :func:`frozen` put models in eval mode (and freeze them) for a
  block and restore them afterwards, also when the block raises;
- :func:`atomic_write` writes a file so that a reader never sees half of it
  (:func:`check_output_file` / :func:`check_output_dir` check a path before any work,
  :func:`sweep_temp_files` removes a killed writer's leftovers), and :class:`FileLock`
  keeps two processes from doing the same work at once;
- :func:`check_int`, :func:`check_number`, :func:`check_images`,
  :func:`check_model_input` are the argument checks whose messages say what to do;
  :func:`unwrap_model` finds the network inside DataParallel/DDP/compile wrappers;
- :func:`model_logits` is the output adapter: the logits inside what a model returns (a
  tensor, a ``(logits, features)`` tuple, a dict with ``"logits"`` or ``"out"``), used
  wherever the package runs a model; :class:`LogitsOnly` wraps a model for code that
  needs a tensor (Captum).

Examples::

    >>> import torch
    >>> from atkd_lite.runtime import eval_mode
    >>> net = torch.nn.Sequential(torch.nn.Dropout(0.5)).train()
    >>> with eval_mode(net):
    ...     net.training
    False
    >>> net.training
    True
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import math
import os
import random
import re
import socket
import stat
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

try:
    import fcntl
except ImportError:  # Windows: FileLock degrades to a no-op with a warning
    fcntl = None

__all__ = [
    "COMPILE_MODES",
    "FileLock",
    "LockHeldError",
    "LogitsOnly",
    "at_least_float32",
    "atomic_write",
    "autocast_context",
    "autocast_dtype",
    "check_compile_mode",
    "check_images",
    "check_int",
    "check_model_input",
    "check_number",
    "check_output_dir",
    "check_output_file",
    "compile_function",
    "cuda_graph_mode",
    "eval_mode",
    "float32_math",
    "frozen",
    "get_device",
    "model_logits",
    "progress_bar",
    "seed_everything",
    "sweep_temp_files",
    "synchronize",
    "tensor_digest",
    "trusted_inputs",
    "unwrap_model",
]


# ---------------------------------------------------------------------------------------
# device, seeds, precision

def get_device(device: str | torch.device | None = None) -> torch.device:
    """The device to use: ``device`` if given (validated), else cuda → mps → cpu.

    Raises:
        ValueError: an unknown or unavailable device, with what is available.
    """
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"unknown device {device!r}; use 'cpu', 'cuda', 'cuda:0', 'mps' "
                         f"or 'auto'") from err
    available = ["cpu"]
    if torch.cuda.is_available():
        available.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        available.append("mps")
    if dev.type not in available:
        raise ValueError(f"device {device!r} is not available on this machine; "
                         f"available: {available} (or 'auto')")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r} does not exist: this machine has "
                         f"{torch.cuda.device_count()} CUDA device(s)")
    return dev


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices).

    Same seed, same result on the CPU *at the same number of torch threads*: the order of
    floating-point sums in a convolution depends on how the work is split.
    """
    check_int("seed", seed, minimum=0)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); a no-op elsewhere. Timing needs it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


#: environment variable that forces autocast's half type on CUDA: ``float16`` or
#: ``bfloat16`` (e.g. ``float16`` on a bf16 GPU, to run the path a T4 takes)
AMP_DTYPE_ENV = "ATKD_LITE_AMP_DTYPE"
_AMP_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The half type autocast uses on ``device``: None off CUDA.

    bfloat16 where the GPU computes it natively (compute capability 8.0 and up: A100, L4,
    H100; or ROCm), else float16, which needs a gradient scaler in training (the T4 of
    Colab's free tier). ``torch.cuda.is_bf16_supported()`` is not the test: by default it
    also says yes where bfloat16 is only emulated, which is slow. ``$ATKD_LITE_AMP_DTYPE``
    (``float16`` / ``bfloat16``) overrides the choice.

    Raises:
        ValueError: ``$ATKD_LITE_AMP_DTYPE`` is set to something else.

    Examples::

        >>> import torch
        >>> from atkd_lite.runtime import autocast_dtype
        >>> autocast_dtype(torch.device("cpu")) is None
        True
    """
    if device.type != "cuda":
        return None
    forced = os.environ.get(AMP_DTYPE_ENV, "").strip().lower()
    if forced:
        if forced not in _AMP_DTYPES:
            raise ValueError(f"{AMP_DTYPE_ENV}={forced!r}: use one of {sorted(_AMP_DTYPES)}, "
                             "or unset it to choose by the GPU")
        return _AMP_DTYPES[forced]
    if torch.version.hip:
        return torch.bfloat16
    index = device.index if device.index is not None else torch.cuda.current_device()
    native = torch.cuda.get_device_capability(index)[0] >= 8
    return torch.bfloat16 if native else torch.float16


def autocast_context(device: torch.device, amp: bool | None = None):
    """Autocast on CUDA in :func:`autocast_dtype`'s type; a no-op elsewhere or if amp=False."""
    if device.type != "cuda" or amp is False:
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=autocast_dtype(device))


def float32_math(device: torch.device):
    """Switch autocast off for a block, so its arithmetic stays in float32.

    Attention maps and losses are computed in float32 even when the networks run in half
    precision: min-max normalisation and L2 normalisation lose most of their digits in
    bfloat16.
    """
    if device.type in ("cpu", "cuda", "xpu", "mps"):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


def at_least_float32(t: torch.Tensor) -> torch.Tensor:
    """Upcast half/bfloat16 (autocast outputs) to float32; keep float32/float64 as they are."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


# ---------------------------------------------------------------------------------------
# compiling

#: the ``torch.compile`` modes that ``ATCam(compile=...)`` and ``compile_maps`` accept
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def check_compile_mode(value, name: str = "compile") -> str | None:
    """The ``torch.compile`` mode a ``compile`` setting asks for.

    Returns None for False or None (do not compile), ``"default"`` for True, and a mode
    from :data:`COMPILE_MODES` as it is.

    Raises:
        ValueError: anything else, naming the setting ``name``.
    """
    if value is False or value is None:
        return None
    if value is True:
        return "default"
    if isinstance(value, str) and value in COMPILE_MODES:
        return value
    raise ValueError(f"{name} must be False, True or a torch.compile mode "
                     f"{list(COMPILE_MODES)}; got {value!r}")


def compile_function(fn: Callable, mode: str) -> Callable:
    """``torch.compile(fn, mode=mode)``, allowing more graphs than the default 8 (one per
    input shape, grad mode and variant) where this torch takes ``recompile_limit`` (from
    torch 2.14; older versions keep their limit)."""
    extra = ({"recompile_limit": 64}
             if "recompile_limit" in inspect.signature(torch.compile).parameters else {})
    return torch.compile(fn, mode=mode, **extra)


def cuda_graph_mode(mode: str | None) -> bool:
    """Whether a compile mode replays CUDA graphs on a GPU: their outputs live in the
    graph's memory pool and are overwritten by its next replay, so what must outlive
    that replay is copied out."""
    return mode in ("reduce-overhead", "max-autotune")


# ---------------------------------------------------------------------------------------
# model modes

@contextlib.contextmanager
def eval_mode(*models: nn.Module) -> Iterator[None]:
    """Put ``models`` in eval mode for a block; restore each one's mode afterwards.

    BatchNorm and dropout behave differently in training; a probe, an evaluation or a map
    must not move BatchNorm's running statistics.
    """
    modes = [m.training for m in models]
    try:
        for m in models:
            m.eval()
        yield
    finally:
        for m, mode in zip(models, modes):
            m.train(mode)


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and ``requires_grad=False`` for every parameter, both restored afterwards.

    The teacher during distillation: it is never updated, and gradients flow only to the
    input where a map needs them (SALS).
    """
    flags = [p.requires_grad for p in model.parameters()]
    with eval_mode(model):
        try:
            for p in model.parameters():
                p.requires_grad_(False)
            yield model
        finally:
            for p, flag in zip(model.parameters(), flags):
                p.requires_grad_(flag)


def progress_bar(iterable, enabled: bool, **kwargs):
    """``tqdm`` over ``iterable`` when ``enabled`` (notebook-aware), else the iterable."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)


# ---------------------------------------------------------------------------------------
# files

def _host_tag() -> str:
    """This machine's name as it appears in temporary-file names (letters, digits, -)."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"


#: ``.{target name}.{pid}@{host}.{random}.tmp``: who wrote a temporary file, so a sweep can
#: tell a dead writer's leftovers from a live writer's work in progress
_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)@(?P<host>[A-Za-z0-9-]*)\.[^.]+\.tmp$")

#: a dead writer's temporary file is removed once it is this old (seconds); a live
#: writer's file changes while it writes, so its modification time is recent
_DEAD_WRITER_AGE_S = 60.0


def _read_umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; done once, at import
    os.umask(mask)
    return mask


#: the permissions of a newly created file (mkstemp's own are 0600)
_NEW_FILE_MODE = 0o666 & ~_read_umask()


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name != "posix":  # os.kill(pid, 0) would *terminate* the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, another user's
        return True
    return True


def sweep_temp_files(folder, max_age_s: float = 24 * 3600, name: str | None = None) -> list[Path]:
    """Remove the temporary files that :func:`atomic_write` left behind in ``folder``.

    A writer killed by SIGKILL (or a power cut) cannot clean up after itself. A leftover
    ``.NAME.PID@HOST.XXXX.tmp`` is removed when its writer is known to be dead (same host,
    no such process, untouched for a minute) or when it is older than ``max_age_s``
    (writers on other machines sharing the folder). Other files are never touched.

    Args:
        folder: the folder to sweep (not recursive); a missing folder is fine.
        max_age_s (float): remove any leftover at least this old (default: one day).
        name (str, optional): only the leftovers of this target file name.

    Returns:
        list of Path: the files removed.

    Examples::

        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = atomic_write(folder / "a.txt", b"hello")
        >>> sweep_temp_files(folder), sorted(p.name for p in folder.iterdir())
        ([], ['a.txt'])
    """
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    now, host, removed = time.time(), _host_tag(), []
    for entry in entries:
        m = _TEMP_RE.match(entry.name)
        if m is None or (name is not None and m["name"] != name):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        age = now - st.st_mtime
        dead = (m["host"] == host and age > _DEAD_WRITER_AGE_S
                and not _pid_alive(int(m["pid"])))
        if dead or age > max_age_s:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def _first_existing(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _check_creatable(folder: Path, what: str) -> None:
    """``folder`` exists as a writable folder, or can be created (its first existing
    ancestor is a writable folder)."""
    existing = _first_existing(folder)
    if not existing.is_dir():
        raise NotADirectoryError(f"{what}: {existing} is a file, so the folder {folder} "
                                 "cannot be created; choose another path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"{what}: the folder {existing} is not writable; choose "
                              "another path")


def check_output_file(path, what: str = "output") -> Path:
    """Check, before any work, that a file can be written at ``path``; returns the target.

    The rules of :func:`atomic_write`: a path ending in a separator or naming a folder,
    and an existing target that is not a regular file (a device, a FIFO, a socket), are
    refused; a symlink to a regular file (or a dangling one) is followed; the folder must
    exist and be writable, or be creatable. Nothing is created.

    Args:
        path: the file to be written.
        what (str): how to name it in messages (e.g. ``"--output"``).

    Returns:
        Path: the file that will be written (the symlink's target for a symlink).

    Raises:
        IsADirectoryError: the path names a folder.
        ValueError: the target exists and is not a regular file.
        NotADirectoryError, PermissionError: the folder cannot be created or written.

    Examples::

        >>> check_output_file("/dev/null")
        Traceback (most recent call last):
        ...
        ValueError: output: /dev/null exists and is not a regular file (a device, a FIFO or a socket); refusing to replace it: choose another path
    """
    text = os.fspath(path)
    path = Path(text)
    if text.endswith(os.sep) or (os.altsep and text.endswith(os.altsep)):
        raise IsADirectoryError(f"{what}: {text} names a folder; give a file name, e.g. "
                                f"{path / 'out.pt'}")
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    if target.exists():
        mode = target.stat().st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(f"{what}: {path} is a folder; give a file name inside "
                                    f"it, e.g. {path / 'out.pt'}")
        if not stat.S_ISREG(mode):
            raise ValueError(f"{what}: {path} exists and is not a regular file (a device, a "
                             "FIFO or a socket); refusing to replace it: choose another path")
    _check_creatable(target.parent if str(target.parent) else Path("."), what)
    return target


def check_output_dir(path, what: str = "output folder") -> Path:
    """Check, before any work, that files can be written into the folder ``path``.

    Raises:
        NotADirectoryError: ``path`` (or a parent) exists and is not a folder.
        PermissionError: it cannot be created or written.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{what}: {path} exists and is not a folder; choose a "
                                 "folder (new or existing) for the results")
    _check_creatable(path, what)
    return path


def tensor_digest(tensors: dict[str, torch.Tensor] | list[torch.Tensor]) -> str:
    """SHA-256 of tensors' names, dtypes, shapes and bytes (detects damaged files).

    torch does not verify the CRCs of the zip records it reads, so a flipped block inside
    a tensor would otherwise load silently.
    """
    items = tensors.items() if isinstance(tensors, dict) else enumerate(tensors)
    h = hashlib.sha256()
    for name, t in items:
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def atomic_write(path, write: Callable[[Path], object] | bytes) -> Path:
    """Write a file so that readers see the old content or the new, never a part.

    ``write`` is the bytes to write, or a function that writes the file at the temporary
    path it is given (e.g. ``lambda tmp: torch.save(obj, tmp)``). The temporary file is
    unique (``tempfile.mkstemp``, named ``.NAME.PID@HOST.XXXX.tmp``) and lives in the
    target's folder, is flushed to disk (``fsync``) and renamed over the target
    (``os.replace``, atomic on POSIX); it is removed if anything fails (and the folder's
    rename is flushed too). A writer killed outright cannot remove it: the next write of
    the same file sweeps such leftovers (:func:`sweep_temp_files`).

    Symlinks: a link to a regular file is followed, and the file it points to is
    replaced (the link stays). A target that exists but is not a regular file (a
    directory, a device such as ``/dev/null``, a FIFO, a socket) is refused before
    anything is written (:func:`check_output_file`).

    Returns:
        Path: the path written (the symlink's target for a symlink).

    Raises:
        IsADirectoryError: the target is a directory.
        ValueError: the target is another kind of non-regular file.

    Examples::

        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "notes.txt"
        >>> atomic_write(out, b"first") == out and out.read_bytes()
        b'first'
    """
    target = check_output_file(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_temp_files(target.parent, name=target.name)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}@{_host_tag()}.",
                                    suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        # mkstemp makes the file private (0600); give it the target's mode, or the mode a
        # new file gets under the process's umask
        if target.exists():
            mode = stat.S_IMODE(target.stat().st_mode)
        else:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        if isinstance(write, (bytes, bytearray, memoryview)):
            with os.fdopen(fd, "wb") as fh:
                fh.write(write)
                fh.flush()
                os.fsync(fh.fileno())
        else:
            os.close(fd)
            write(tmp)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        # the permissions the file had, or a new file's (not mkstemp's private 0600)
        mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else _NEW_FILE_MODE
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_folder(target.parent)
    return target


def _fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (the rename) to disk where the platform allows it."""
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class LockHeldError(RuntimeError):
    """Another process holds a lock that was asked for without waiting."""


_LOCK_WARNED = False


class FileLock:
    """An exclusive lock between processes: ``fcntl.flock`` on a lock file.

    The lock file (created if needed, never deleted: deleting a lock file races with its
    next user) records the holder's ``pid@host``. The operating system releases the lock
    when the holder exits, however it exits, so a killed process never leaves a stale
    lock. Where ``fcntl`` does not exist (Windows) the lock is a no-op and a warning says
    so once: two processes may then both do the locked work (each write stays atomic; only
    the cost doubles).

    Args:
        path: the lock file.

    Examples::

        >>> import tempfile, pathlib
        >>> lock_path = pathlib.Path(tempfile.mkdtemp()) / ".x.lock"
        >>> with FileLock(lock_path) as lock:
        ...     lock.held
        True
    """

    def __init__(self, path):
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def holder(self) -> str:
        """The ``pid@host`` recorded by the last holder ('' if unknown)."""
        try:
            return self.path.read_text().strip()
        except (OSError, UnicodeDecodeError):
            return ""

    def acquire(self, blocking: bool = True, waiting: str | None = None) -> FileLock:
        """Take the lock.

        Args:
            blocking (bool): wait for it; False raises :class:`LockHeldError` at once.
            waiting (str, optional): printed (once) when the lock is busy and we wait.

        Raises:
            LockHeldError: ``blocking=False`` and another process holds it.
        """
        if self._fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is None:
                global _LOCK_WARNED
                if not _LOCK_WARNED:
                    _LOCK_WARNED = True
                    warnings.warn("file locks need fcntl, which this platform lacks: two "
                                  "processes may do the same work at once", stacklevel=2)
            else:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    if not blocking:
                        raise LockHeldError(f"{self.path} is held by another process "
                                            f"({self.holder() or 'unknown'})") from None
                    if waiting:
                        print(waiting, flush=True)
                    fcntl.flock(fd, fcntl.LOCK_EX)
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}@{_host_tag()}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        """Give the lock back (closing the file releases it)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# ---------------------------------------------------------------------------------------
# argument checks

def check_int(name: str, value, minimum: int | None = None) -> int:
    """``value`` as an int (not a bool, not a float), at least ``minimum``.

    Raises:
        ValueError: naming the argument, what it must be and what it got.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def check_number(name: str, value, lo: float | None = None, hi: float | None = None,
                 positive: bool = False) -> float:
    """``value`` as a finite float in ``[lo, hi]`` (and > 0 if ``positive``).

    Raises:
        ValueError: naming the argument, what it must be and what it got (NaN and
            infinity included).
    """
    if (isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating))
            or not math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        if hi is None:
            raise ValueError(f"{name} must be >= {lo}, got {value}")
        if lo is None:
            low = "(0" if positive else "(-inf"
            raise ValueError(f"{name} must be in {low}, {hi}], got {value}")
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")
    return float(value)


_CHECKS = threading.local()


@contextlib.contextmanager
def trusted_inputs() -> Iterator[None]:
    """Skip the NaN/infinity scan of :func:`check_images` for a block (this thread).

    The scan reads a flag back from the device, which stalls a GPU pipeline; the training
    loop turns it off for batches it builds itself (uint8 images, finite by construction,
    and a non-finite loss is caught at the end of each epoch anyway).
    """
    old = getattr(_CHECKS, "trusted", False)
    _CHECKS.trusted = True
    try:
        yield
    finally:
        _CHECKS.trusted = old


def check_images(x, name: str = "x", finite: bool = False) -> None:
    """A batch of images: a tensor shaped (B, C, H, W) (and, if ``finite``, no NaN or
    infinity, unless inside :func:`trusted_inputs`).

    Raises:
        TypeError: not a tensor.
        ValueError: not 4-D (with the fix for a single image); NaN or infinite values.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor shaped (B, C, H, W); "
                        f"got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(
            f"{name} must be a 4-D batch shaped (B, C, H, W); got shape {tuple(x.shape)}. "
            "For a single image of shape (C, H, W) pass x.unsqueeze(0)."
        )
    if (finite and x.is_floating_point() and not getattr(_CHECKS, "trusted", False)
            and x.numel() and not _all_finite(x)):
        bad = int((~torch.isfinite(x)).flatten(1).any(1).sum())
        raise ValueError(f"{name} holds NaN or infinite values (in {bad} of {x.shape[0]} "
                         "images); clean the images first, e.g. x.nan_to_num(0.0)")


def _all_finite(x: torch.Tensor) -> bool:
    """Whether every value of a floating tensor is finite, in one read and no full-size
    temporary: a sum is finite only if every term is (NaN and ±inf propagate); a sum that
    overflows is checked again exactly."""
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    return bool(torch.isfinite(x.sum(dtype=acc))) or bool(torch.isfinite(x).all())


def _autocast_on(device: torch.device) -> bool:
    try:
        return bool(torch.is_autocast_enabled(device.type))
    except TypeError:  # torch < 2.4: one flag per device family
        if device.type == "cpu":
            return bool(torch.is_autocast_cpu_enabled())
        return bool(torch.is_autocast_enabled())


def check_model_input(x, model: nn.Module, name: str = "x") -> None:
    """Images ``x`` that ``model`` can take: a finite floating-point (B, C, H, W) batch of
    the model's weight dtype (any floating dtype under autocast).

    Raises:
        TypeError: not a tensor; integer images (e.g. uint8 0–255, with the conversion);
            another float dtype than the weights' outside autocast (with the fix).
        ValueError: not 4-D; NaN or infinite values.

    Examples::

        >>> import torch
        >>> net = torch.nn.Conv2d(1, 2, 3)
        >>> check_model_input(torch.zeros(1, 1, 8, 8, dtype=torch.uint8), net)
        Traceback (most recent call last):
        ...
        TypeError: x holds torch.uint8 values, but the model needs floating-point images; for 8-bit images (0-255) pass x.float() / 255
    """
    check_images(x, name, finite=True)
    if not x.is_floating_point():
        raise TypeError(f"{name} holds {x.dtype} values, but the model needs floating-point "
                        f"images; for 8-bit images (0-255) pass {name}.float() / 255")
    weight = next((p for p in model.parameters() if p.is_floating_point()), None)
    if weight is not None and weight.dtype != x.dtype and not _autocast_on(x.device):
        raise TypeError(f"{name} is {x.dtype} but the model's weights are {weight.dtype}; "
                        f"pass {name}.to({weight.dtype}) (or convert the model with "
                        f"model.to({x.dtype}))")


def unwrap_model(model: nn.Module) -> nn.Module:
    """The network inside ``nn.DataParallel``, ``DistributedDataParallel`` and
    :func:`torch.compile` wrappers (``.module`` / ``._orig_mod``, nested in any order).

    Attention maps hook the network's own modules and run it eagerly: a wrapper renames
    every module (``module.conv1``), hides ``atkd_capture_points()``, runs replicas whose
    hooks each see a part of the batch (DataParallel) or traces hooks away (compile).

    Examples::

        >>> import torch
        >>> net = torch.nn.Conv2d(1, 2, 3)
        >>> unwrap_model(torch.nn.DataParallel(net)) is net
        True
    """
    for _ in range(16):  # wrappers nest a few levels at most
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            break
    return model


# ---------------------------------------------------------------------------------------
# what a model returns

#: the dict keys under which :func:`model_logits` looks for the logits, in this order
LOGITS_KEYS = ("logits", "out")


def model_logits(output, who: str = "the model") -> torch.Tensor:
    """The logits inside a model's output: the output adapter.

    Knowledge-distillation codebases' networks rarely return just a tensor: many return
    ``(logits, features)``, torchvision's segmentation models a dict with ``"out"``,
    Hugging Face models an output object that is a dict with ``"logits"``. Everything in
    the package that runs a model (ATCam, SALS, the distillers, evaluation) takes the
    logits through this one function:

    - a tensor is the logits themselves;
    - a tuple or list: its first element (which must be a tensor);
    - a mapping (dict, Hugging Face ``ModelOutput``): the entry ``"logits"``, else
      ``"out"`` (in that order, ``runtime.LOGITS_KEYS``).

    Args:
        output: what ``model(x)`` returned.
        who (str): how to name the model in the error (e.g. ``"the teacher"``).

    Returns:
        Tensor: the logits (not checked for shape here; callers that need (B, K) say so).

    Raises:
        TypeError: anything else, naming the type found and what to do.

    Examples::

        >>> import torch
        >>> z = torch.zeros(2, 10)
        >>> model_logits(z) is z, model_logits((z, [torch.ones(2, 4, 7, 7)])) is z
        (True, True)
        >>> model_logits({"aux": None, "logits": z}) is z
        True
        >>> model_logits("cat")
        Traceback (most recent call last):
        ...
        TypeError: the model returned str; the package takes the logits from a tensor, the first element of a tuple or list, or the 'logits' or 'out' entry of a dict: make forward() return one of these (e.g. wrap the model in a module whose forward returns the logits tensor)
    """
    found = output
    if isinstance(output, (tuple, list)) and output:
        found = output[0]
    elif hasattr(output, "keys") and hasattr(output, "__getitem__"):  # dict, ModelOutput
        keys = list(output.keys())
        key = next((k for k in LOGITS_KEYS if k in keys), None)
        if key is None:
            raise TypeError(
                f"{who} returned a {type(output).__name__} with the keys {keys}, none of "
                f"them {' or '.join(repr(k) for k in LOGITS_KEYS)}; return the logits "
                "under 'logits' (or wrap the model in a module whose forward returns the "
                "logits tensor)")
        found = output[key]
    if isinstance(found, torch.Tensor):
        return found
    what = type(output).__name__
    if found is not output:
        what = f"{what} whose logits entry is a {type(found).__name__}"
    elif isinstance(output, (tuple, list)):
        what = f"an empty {what}"
    raise TypeError(
        f"{who} returned {what}; the package takes the logits from a tensor, the first "
        "element of a tuple or list, or the 'logits' or 'out' entry of a dict: make "
        "forward() return one of these (e.g. wrap the model in a module whose forward "
        "returns the logits tensor)")


class LogitsOnly(nn.Module):
    """A model whose forward returns only the logits (:func:`model_logits` of its output).

    For code outside the package that needs a plain tensor, e.g. Captum's attribution
    methods. The wrapped network is ``.model``; its modules keep their names under it
    (``model.layer1``).

    Examples::

        >>> import torch
        >>> class Pair(torch.nn.Module):
        ...     def forward(self, x):
        ...         return x.flatten(1)[:, :3], x
        >>> LogitsOnly(Pair())(torch.zeros(2, 1, 4, 4)).shape
        torch.Size([2, 3])
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return model_logits(self.model(*args, **kwargs))
