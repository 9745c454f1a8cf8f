"""Where and how code runs: device, seeds, precision, model modes, safe files, checks.

This is the package's leaf module: it imports nothing from the rest of ``atkd_lite``, and
every other module takes these helpers from here (never from each other's private names).

- :func:`get_device` picks ``cuda`` → ``mps`` → ``cpu`` (or validates the one you name);
- :func:`seed_everything` seeds Python, NumPy and torch;
- :func:`autocast_context` is mixed precision on CUDA; :func:`float32_math` switches it off
  again where the maths must stay in float32 (maps, losses), :func:`at_least_float32`
  upcasts half-precision tensors;
- :func:`eval_mode` and :func:`frozen` put models in eval mode (and freeze them) for a
  block and restore them afterwards, also when the block raises;
- :func:`atomic_write` writes a file so that a reader never sees half of it;
- :func:`check_int`, :func:`check_number`, :func:`check_images` are the argument checks
  whose messages say what to do.

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
import math
import os
import random
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = [
    "at_least_float32",
    "atomic_write",
    "autocast_context",
    "check_images",
    "check_int",
    "check_number",
    "eval_mode",
    "float32_math",
    "frozen",
    "get_device",
    "progress_bar",
    "seed_everything",
    "synchronize",
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


def autocast_context(device: torch.device, amp: bool | None = None):
    """Autocast on CUDA (bf16 where supported, else fp16); a no-op elsewhere or if amp=False."""
    if device.type != "cuda" or amp is False:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


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

def atomic_write(path, write: Callable[[Path], object] | bytes) -> Path:
    """Write a file so that readers see the old content or the new, never a part.

    ``write`` is the bytes to write, or a function that writes the file at the temporary
    path it is given (e.g. ``lambda tmp: torch.save(obj, tmp)``). The temporary file is
    unique (``tempfile.mkstemp``) and lives in the target's folder, is flushed to disk
    (``fsync``) and renamed over the target (``os.replace``, atomic on POSIX); it is
    removed if anything fails.

    Symlinks: a link to a regular file is followed, and the file it points to is
    replaced (the link stays). A target that exists but is not a regular file (a
    directory, a device such as ``/dev/null``, a FIFO, a socket) is refused before
    anything is written.

    Returns:
        Path: the path written (the symlink's target for a symlink).

    Raises:
        IsADirectoryError: the target is a directory.
        ValueError: the target is another kind of non-regular file.
    """
    path = Path(path)
    if str(path).endswith(os.sep):
        raise IsADirectoryError(f"{path} names a folder; give a file name, e.g. "
                                f"{path / 'out.pt'}")
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    if target.exists():
        mode = target.stat().st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(f"{path} is a folder; give a file name inside it, e.g. "
                                    f"{path / 'out.pt'}")
        if not stat.S_ISREG(mode):
            raise ValueError(f"{path} exists and is not a regular file (a device, a FIFO or "
                             "a socket); refusing to replace it: choose another output path")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
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
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return target


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
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")
    return float(value)


def check_images(x, name: str = "x") -> None:
    """A batch of images: a tensor shaped (B, C, H, W).

    Raises:
        TypeError: not a tensor.
        ValueError: not 4-D (with the fix for a single image).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor shaped (B, C, H, W); "
                        f"got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(
            f"{name} must be a 4-D batch shaped (B, C, H, W); got shape {tuple(x.shape)}. "
            "For a single image of shape (C, H, W) pass x.unsqueeze(0)."
        )
