"""What do attention maps cost? Time ATCam (FMA, MIP) and SALS against a plain forward.

:func:`attention_overhead` times, in one run with interleaved repetitions, four ways of
running a network on the same batch:

- ``plain``: ``model(x)`` under :func:`torch.no_grad`;
- ``fma`` / ``mip``: ``ATCam(model, combine=...)(x)`` under :func:`torch.no_grad` (one
  forward pass plus the maps);
- ``sals``: :func:`~atkd_lite.saliency_map` (a forward and a backward pass to the input).

It returns each variant's median time and the median over repetitions of the *paired*
ratio ``variant / plain``. Each repetition times every variant once, in a rotating
order, so a ratio is formed from calls that ran moments apart: on a busy machine the
median paired ratio is far steadier than a ratio of two separately taken medians.

``benchmarks/bench_atcam.py`` is the command-line front end; the book's chapter
"Attention maps" runs it at a small size. Defined in the book's chapter "Attention maps".

Examples::

    >>> import torch
    >>> from atkd_lite.benchmark import attention_overhead
    >>> medians, ratios = attention_overhead(device="cpu", batch=8, reps=3, warmup=1)
    >>> sorted(ratios), ratios["plain"]
    (['fma', 'mip', 'plain', 'sals'], 1.0)
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from atkd_lite.atcam import ATCam
from atkd_lite.models import teacher_cnn
from atkd_lite.saliency import saliency_map
from atkd_lite.train import get_device

__all__ = ["VARIANTS", "attention_overhead"]

#: the timed variants, in the order they are reported
VARIANTS = ("plain", "fma", "mip", "sals")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def attention_overhead(device=None, batch: int = 128, reps: int = 30, warmup: int = 5,
                       size: int = 28, model: nn.Module | None = None,
                       in_channels: int = 1) -> tuple[dict[str, float], dict[str, float]]:
    """Median time of a plain forward, ATCam FMA/MIP and SALS, and their paired ratios.

    Args:
        device: where to run (``None``: cuda → mps → cpu, as :func:`~atkd_lite.get_device`).
        batch (int): images per call.
        reps (int): timed repetitions (each times every variant once).
        warmup (int): untimed repetitions first (allocator, kernels, caches).
        size (int): image side in pixels; the input is random noise (the cost of a
            forward pass does not depend on the pixel values).
        model (nn.Module, optional): the network to time (put in eval mode; moved to
            ``device``); default a freshly initialised :func:`~atkd_lite.teacher_cnn`
            seeded with 0 (weights do not change the cost either).
        in_channels (int): channels of the random input.

    Returns:
        (dict, dict): ``medians`` — variant -> median seconds per call; ``ratios`` —
        variant -> median over repetitions of ``time(variant) / time(plain)`` (so
        ``ratios["plain"] == 1.0``). Variants are :data:`VARIANTS`.

    Raises:
        ValueError: for non-positive ``batch``, ``reps`` or ``size``, or negative
            ``warmup``.

    Examples::

        >>> from atkd_lite.benchmark import attention_overhead
        >>> medians, ratios = attention_overhead(device="cpu", batch=4, reps=2, warmup=0)
        >>> all(t > 0 for t in medians.values())
        True
    """
    batch, reps, size = (_positive_int("batch", batch), _positive_int("reps", reps),
                         _positive_int("size", size))
    warmup = _positive_int("warmup", warmup, minimum=0)
    dev = get_device(device)
    if model is None:
        torch.manual_seed(0)
        model = teacher_cnn(in_channels=in_channels)
    elif not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    model = model.to(dev).eval()
    x = torch.randn(batch, in_channels, size, size, device=dev)
    fma, mip = ATCam(model, combine="fma"), ATCam(model, combine="mip")

    def plain():
        with torch.no_grad():
            model(x)

    def with_fma():
        with torch.no_grad():
            fma(x)

    def with_mip():
        with torch.no_grad():
            mip(x)

    def sals():
        saliency_map(model, x)

    variants = {"plain": plain, "fma": with_fma, "mip": with_mip, "sals": sals}
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    names = list(VARIANTS)
    for rep in range(warmup + reps):
        # rotate the order each repetition so no variant always runs first (cache, turbo)
        k = rep % len(names)
        for name in names[k:] + names[:k]:
            _sync(dev)
            t0 = time.perf_counter()
            variants[name]()
            _sync(dev)
            if rep >= warmup:
                times[name].append(time.perf_counter() - t0)
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    ratios = {name: statistics.median(a / b for a, b in zip(ts, times["plain"]))
              for name, ts in times.items()}
    return medians, ratios
