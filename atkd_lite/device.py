"""Where code runs and in what precision: device, seeds, autocast, compiling, model modes.

- :func:`get_device` picks ``cuda`` → ``mps`` → ``cpu`` (or validates the one you name);
- :func:`seed_everything` seeds Python, NumPy and torch;
- :func:`autocast_context` is mixed precision on CUDA (in :func:`autocast_dtype`'s half
  type: bfloat16 where native, else float16); :func:`float32_math` switches it off
  again where the maths must stay in float32 (maps, losses), :func:`at_least_float32`
  upcasts half-precision tensors;
- :func:`check_compile_mode`, :func:`compile_function`: ``torch.compile`` settings;
- :func:`eval_mode` and :func:`frozen` put models in eval mode (and freeze them) for a
  block and restore them afterwards, also when the block raises;
  :func:`progress_bar` is the package's one progress bar.

It imports nothing from the rest of ``atkd_lite`` but :mod:`~atkd_lite.checks`.

Examples::

    >>> import torch
    >>> from atkd_lite.device import eval_mode
    >>> net = torch.nn.Sequential(torch.nn.Dropout(0.5)).train()
    >>> with eval_mode(net):
    ...     net.training
    False
    >>> net.training
    True
"""

from __future__ import annotations

import contextlib
import inspect
import os
import random
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn

from atkd_lite.checks import check_int

__all__ = [
    "COMPILE_MODES",
    "at_least_float32",
    "autocast_context",
    "autocast_dtype",
    "check_compile_mode",
    "compile_function",
    "cuda_graph_mode",
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
        >>> from atkd_lite.device import autocast_dtype
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
