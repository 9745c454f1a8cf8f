"""What ATCam's maps and SALS cost next to a plain forward pass: the book's "the attention
term is cheap" measurement (chapter "Efficiency"; ``benchmarks/bench_atcam.py`` is its
command line).

- :func:`attention_overhead` — medians of interleaved repetitions of a plain forward, ATCam
  FMA and MIP, SALS and (on request) the :data:`FLOOR`, and their paired ratios;
- :func:`read_once` — the floor's reduction: each captured map read once, nothing more.

The timing itself is :func:`atkd_lite.cost.interleaved_times` (fair order, settled heap).

Examples::

    >>> from atkd_lite.experiments.overhead import VARIANTS, attention_overhead
    >>> VARIANTS
    ('plain', 'fma', 'mip', 'sals')
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import torch
from torch import nn

from atkd_lite import cost
from atkd_lite.atcam import ATCam
from atkd_lite.checks import check_int
from atkd_lite.device import compile_function, get_device
from atkd_lite.models import teacher_cnn
from atkd_lite.saliency import saliency_map
from atkd_lite.signals import MAPS

__all__ = ["FLOOR", "VARIANTS", "attention_overhead", "read_once"]


#: the timed variants, in the order they are reported
VARIANTS = ("plain", "fma", "mip", "sals")
#: The variant "read", timed only on request, is a forward in which each captured feature
#: map is read once (summed over its channels) and nothing more, through ATCam's capture.
#: Any map made from the captured outputs reads every one of them at least once, so its
#: ratio to the plain forward is the floor under FMA's and MIP's on that network and machine.
FLOOR = "read"


def read_once(a: torch.Tensor) -> torch.Tensor:
    """A captured feature map read once and nothing more: its sum over channels, (B, H, W).

    The :data:`FLOOR` variant's reduction (``ATCam.features(x, reduce=read_once)``); any
    attention map made from a feature map reads all of it at least once.
    """
    return torch.sum(a, dim=1)


def attention_overhead(device=None, batch: int = 128, reps: int = 30, warmup: int = 5,
                       size: int = 28, model: nn.Module | None = None,
                       in_channels: int = 1, variants: Sequence[str] = VARIANTS,
                       clock: str = "wall", compile: bool | str = False,
                       compile_model: bool = False
                       ) -> tuple[dict[str, float], dict[str, float]]:
    """Median time of a plain forward, ATCam FMA/MIP and SALS, and their paired ratios.

    Every repetition times each variant once, in a (seeded) random order drawn afresh for
    each repetition, and each variant's time is divided by the plain forward's time of the
    same repetition; the median of those ratios is robust to slow drifts of
    the machine's load, which a ratio of two separately taken medians is not. SALS is
    timed in repetitions of its own (with a plain forward of its own to divide by): its
    memory churn would change the heap that the other variants find.

    Args:
        device: where to run (``None``: cuda → mps → cpu, as :func:`~atkd_lite.get_device`).
        batch (int): images per call.
        reps (int): timed repetitions (each times every variant once).
        warmup (int): untimed repetitions first (allocator, kernels, caches).
        size (int): image side in pixels; the input is random noise (the cost of a
            forward pass does not depend on the pixel values).
        model (nn.Module, optional): the network to time (put in eval mode; moved to
            ``device``); default a freshly initialised :func:`~atkd_lite.teacher_cnn`
            seeded with 0 (weights do not change the cost either). Any CNN works: without
            ``atkd_capture_points()`` ATCam captures its ``Conv2d`` layers.
        in_channels (int): channels of the random input.
        variants (sequence of str): which of :data:`VARIANTS` to time (``"plain"`` is
            always timed: it is the reference), and :data:`FLOOR` (``"read"``) on request:
            the same capture reading each captured map once and computing nothing else,
            the least that any map made from them can cost.
        clock (str): ``"wall"`` (elapsed time, the default) or ``"cpu"`` (CPU time of
            this process, ``time.process_time``: on a CPU shared with other jobs it
            leaves out the time this process waited for a core; with several torch
            threads it also counts their spinning, so use it with one thread). CUDA
            work is timed by the wall clock only.
        compile (bool or str): ATCam's ``compile`` (its map computation compiled with
            ``torch.compile``; see :class:`~atkd_lite.ATCam`). The first warm-up call
            compiles, so it needs ``warmup >= 1``.
        compile_model (bool): ATCam's ``compile_model`` (the network, capture and maps in
            one compiled graph), timed against the network compiled alone
            (``torch.compile(model)`` in the same mode): the plain forward a user who
            compiles runs. Its first call is eager and its second compiles, so it needs
            ``warmup >= 2``; only ``"plain"``, ``"fma"`` and ``"mip"`` are timed then
            (the floor and SALS run eagerly, so their ratio to a compiled forward would
            compare two regimes), and they are what the default ``variants`` means.

    Returns:
        (dict, dict): ``medians`` — variant -> median seconds per call; ``ratios`` —
        variant -> median over repetitions of ``time(variant) / time(plain)`` (so
        ``ratios["plain"] == 1.0``).

    Raises:
        ValueError: for non-positive ``batch``, ``reps`` or ``size``, negative
            ``warmup``, an unknown variant or clock, or ``clock="cpu"`` on a GPU.

    Examples::

        >>> from atkd_lite.experiments.overhead import attention_overhead
        >>> medians, ratios = attention_overhead(device="cpu", batch=4, reps=2, warmup=0)
        >>> all(t > 0 for t in medians.values())
        True
    """
    batch, reps, size = (check_int("batch", batch, 1), check_int("reps", reps, 1),
                         check_int("size", size, 1))
    warmup = check_int("warmup", warmup, 0)
    if compile and warmup < 1:
        raise ValueError("with compile, give warmup >= 1: the first call compiles, and "
                         "compiling is not what the ratios should time")
    if compile_model:
        if warmup < 2:
            raise ValueError("with compile_model, give warmup >= 2: the first call is eager "
                             "and the second compiles, and neither is what the ratios should "
                             "time")
        compiled_variants = ("plain", "fma", "mip")
        if not isinstance(variants, str):  # (a string is refused below)
            if tuple(variants) == VARIANTS:
                variants = compiled_variants  # the default: what this regime can time
            elif not set(variants) <= set(compiled_variants):
                raise ValueError(f"with compile_model only 'plain', 'fma' and 'mip' are timed "
                                 f"(the floor and SALS run eagerly, not against a compiled "
                                 f"forward); got {list(variants)}")
    known = VARIANTS + (FLOOR,)
    unknown = [v for v in variants if v not in known]
    if isinstance(variants, str) or unknown:
        raise ValueError(f"variants must be a list drawn from {list(known)}; got {variants!r}")
    if clock not in ("wall", "cpu"):
        raise ValueError(f"clock must be 'wall' or 'cpu'; got {clock!r}")
    dev = get_device(device)
    if clock == "cpu" and dev.type != "cpu":
        raise ValueError(f"clock='cpu' measures CPU work; on {dev.type} use clock='wall'")
    if model is None:
        torch.manual_seed(0)
        model = teacher_cnn(in_channels=in_channels)
    elif not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    model = model.to(dev).eval()
    x = torch.randn(batch, in_channels, size, size, device=dev)
    fma = ATCam(model, combine="fma", compile=compile, compile_model=compile_model)
    mip = ATCam(model, combine="mip", compile=compile, compile_model=compile_model)
    forward = compile_function(model, fma.compile) if compile_model else model

    def plain():
        with torch.no_grad():
            forward(x)

    def with_fma():
        with torch.no_grad():
            fma(x)

    def with_mip():
        with torch.no_grad():
            mip(x)

    def sals():
        saliency_map(model, x)

    def read():
        with torch.no_grad():
            fma.features(x, reduce=read_once)

    run = {"plain": plain, "fma": with_fma, "mip": with_mip, "sals": sals, FLOOR: read}
    # SALS (a forward and a backward) allocates and frees several times the memory of a
    # forward; timed in the same repetitions, that churn changes the heap that the next
    # call finds. So it is timed in repetitions of its own, against a plain forward of
    # those repetitions.
    # (the gradient maps are the map signals not made from the captured features)
    gradient = [v for v in variants if v in MAPS and not MAPS[v].uses_features]
    sets = [["plain"] + [v for v in known if v in variants and v != "plain"
                         and v not in gradient]]
    if gradient:
        sets = [group for group in sets if len(group) > 1] + [["plain", *gradient]]
    medians: dict[str, float] = {}
    ratios: dict[str, float] = {}
    for names in sets:
        times = cost.interleaved_times({name: run[name] for name in names}, reps, warmup, dev, clock)
        for name, ts in times.items():  # the first set's plain forward is the one reported
            medians.setdefault(name, statistics.median(ts))
            ratios.setdefault(name, statistics.median(a / b for a, b in zip(ts, times["plain"])))
    return medians, ratios
