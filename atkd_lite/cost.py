"""What a model costs: parameters, bytes, multiply-adds, latency, and fair timing.

Every cost measurement of the package is here:

- :func:`count_parameters`, :func:`model_size_bytes` — exact and machine independent;
- :func:`multiply_adds` — the multiply-accumulate operations of one forward pass
  (convolutions and linear layers, the layers that dominate a CNN's compute);
- :func:`layer_summary` — one row per block: output shape and parameters;
- :func:`cpu_latency`, :func:`footprint`, :func:`model_costs` — measured CPU latency
  (median of repeated runs; varies with the machine and its load) with the counts above;
- :func:`interleaved_times`, :func:`settle_heap` — timing several callables fairly
  (interleaved in a random order each round, on a settled heap).

What the attention maps cost next to a plain forward pass is an experiment built on these:
:func:`atkd_lite.experiments.overhead.attention_overhead`.

Defined in the book's chapters "Teacher and student" (sizes) and "Efficiency" (time).

Examples::

    >>> import atkd_lite as ak
    >>> from atkd_lite.cost import count_parameters, multiply_adds
    >>> multiply_adds(ak.student_cnn("small")) < multiply_adds(ak.teacher_cnn()) / 10
    True
    >>> count_parameters(ak.teacher_cnn()) > 10 * count_parameters(ak.student_cnn())
    True
"""

from __future__ import annotations

import copy
import io
import random
import time
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from atkd_lite.checks import check_int
from atkd_lite.device import eval_mode, get_device, synchronize

__all__ = [
    "count_parameters",
    "cpu_latency",
    "footprint",
    "interleaved_times",
    "layer_summary",
    "model_costs",
    "model_size_bytes",
    "multiply_adds",
    "settle_heap",
]

#: bytes of the block :func:`settle_heap` allocates and frees (just under glibc's 32 MiB
#: ceiling for its adaptive threshold)
SETTLE_BYTES = 31 << 20


def settle_heap() -> None:
    """Put the CPU heap in the steady state a long training run reaches, before timing.

    glibc serves a large allocation from fresh pages (``mmap``) until a block of that size
    has once been freed; after that, such buffers come from the heap and are reused. A
    fresh page costs a page fault when first written, and on these machines faulting in a
    batch-128 feature map costs several times more than computing it. So a process that
    has not yet freed a large block times page faults, not arithmetic: on the 2-core
    machine of ``benchmarks/RESULTS.md`` a plain batch-128 forward pass of the book's
    teacher took ~70 ms there and ~42 ms in the steady state, and a variant
    that keeps fewer buffers alive (ATCam's early reduction) looks cheaper than it is (an
    ATCam ÷ plain ratio of 0.96 instead of 1.1). A training loop reaches the steady state
    within its first batches (the teacher cache, an evaluation pass); this function
    reaches it at once, by allocating and freeing one block of ``SETTLE_BYTES`` (the
    adaptive threshold only rises, so calling it again changes nothing). The process
    keeps the raised threshold: from then on freed large buffers stay in its heap for
    reuse (as they do in a training run) instead of going back to the system. Elsewhere
    than glibc it does no harm.
    """
    block = torch.empty(SETTLE_BYTES // 4, dtype=torch.float32)
    del block


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (optionally only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def model_size_bytes(model: nn.Module) -> int:
    """Bytes of the serialised ``state_dict`` (parameters and buffers), as saved to disk."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


@torch.no_grad()
def cpu_latency(model: nn.Module, input_shape=(1, 1, 28, 28), repeats: int = 50,
                warmup: int = 5, threads: int | None = None) -> float:
    """Median CPU latency of one forward pass, in seconds (model copied to CPU, eval mode).

    Args:
        model: the network (left unchanged; a CPU copy is timed).
        input_shape: the batch shape, (1, C, H, W) for per-image latency.
        repeats: timed repetitions; the median is returned.
        warmup: untimed repetitions first.
        threads: torch threads to use while timing (default: the current setting).
    """
    m = copy.deepcopy(model).cpu().eval()
    x = torch.zeros(input_shape)
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        for _ in range(warmup):
            m(x)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            m(x)
            times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old_threads)
    times.sort()
    return times[len(times) // 2]



def _check(model, input_shape) -> tuple[int, ...]:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"input_shape must be a batch shape (B, C, H, W), got {input_shape!r}")
    return shape


def _run_with_hooks(model: nn.Module, input_shape, modules, hook) -> None:
    """One eval-mode forward on zeros with ``hook`` on ``modules``; hooks always removed."""
    device = next(model.parameters(), torch.zeros(())).device
    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        with eval_mode(model), torch.no_grad():
            model(torch.zeros(input_shape, device=device))
    finally:
        for h in handles:
            h.remove()


def multiply_adds(model: nn.Module, input_shape=(1, 1, 28, 28)) -> int:
    """Multiply-accumulate operations of one forward pass of a batch shaped ``input_shape``.

    Counts ``Conv2d`` (output elements × in-channels/groups × kernel area) and ``Linear``
    (output elements × in-features); batch norm, activations and pooling are ignored
    (a few operations per activation, small next to the convolutions).

    Args:
        model (nn.Module): the network.
        input_shape: batch shape; ``(1, C, H, W)`` for the cost per image.

    Returns:
        int: multiply-adds (one multiply-add = two floating-point operations).
    """
    shape = _check(model, input_shape)
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += output.numel() * (module.in_channels // module.groups) * kh * kw
        else:
            total += output.numel() * module.in_features

    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    _run_with_hooks(model, shape, layers, hook)
    return total


def layer_summary(model: nn.Module, input_shape=(1, 1, 28, 28), depth: int = 2) -> list[dict]:
    """One row per module at ``depth`` (dots in its name + 1), in the order they run.

    For the book's CNNs, depth 2 gives the conv blocks (``features.s1c1``), the pools and
    the head's layers.

    Args:
        model (nn.Module): the network.
        input_shape: batch shape of the probe input.
        depth (int): module depth to list (1 = the model's direct children).

    Returns:
        list of dict: ``name``, ``type``, ``output_shape`` (without the batch dimension)
        and ``parameters`` (of that module, including its children).

    Examples::

        >>> import atkd_lite as ak
        >>> rows = layer_summary(ak.student_cnn())
        >>> rows[0]["name"], rows[0]["output_shape"]
        ('features.s1c1', (8, 28, 28))
    """
    shape = _check(model, input_shape)
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive int, got {depth!r}")
    named = [(n, m) for n, m in model.named_modules() if n and n.count(".") + 1 == depth]
    if not named:
        raise ValueError(f"the model has no modules at depth {depth}; try depth=1")
    names = {id(m): n for n, m in named}
    rows: list[dict] = []

    def hook(module, inputs, output):
        out = output if isinstance(output, torch.Tensor) else output[0]
        rows.append({"name": names[id(module)], "type": type(module).__name__,
                     "output_shape": tuple(out.shape[1:]),
                     "parameters": count_parameters(module)})

    _run_with_hooks(model, shape, [m for _, m in named], hook)
    return rows


def footprint(model: nn.Module, input_shape=(1, 1, 28, 28), repeats: int = 50,
              threads: int | None = 1) -> dict:
    """Parameters, size, multiply-adds and CPU latency of ``model`` for one input batch.

    Args:
        model (nn.Module): the network (not changed; latency is timed on a CPU copy).
        input_shape: batch shape, ``(1, C, H, W)`` for per-image figures.
        repeats (int): timed forward passes; the median is reported.
        threads (int, optional): torch threads while timing (1 by default: a small
            device has few cores, and one thread makes numbers comparable across
            machines); None = the current setting.

    Returns:
        dict: ``parameters`` (int), ``size_kb`` (serialised state dict, kilobytes of
        1,000 bytes), ``multiply_adds`` (int), ``latency_ms`` (median, milliseconds).
    """
    shape = _check(model, input_shape)
    return {
        "parameters": count_parameters(model),
        "size_kb": model_size_bytes(model) / 1000,
        "multiply_adds": multiply_adds(model, shape),
        "latency_ms": 1000 * cpu_latency(model, shape, repeats=repeats, threads=threads),
    }


def model_costs(models: Mapping[str, nn.Module], input_shape: Sequence[int] = (1, 1, 28, 28),
                repeats: int = 50, threads: int | None = 1) -> list[dict]:
    """Parameters, serialised bytes and median CPU latency of each model.

    Args:
        models: name -> model (each is copied to the CPU for timing; left unchanged).
        input_shape: the batch timed, ``(1, C, H, W)`` for the latency of one image.
        repeats: timed forward passes per model (the median is reported).
        threads: torch threads while timing (1: what one core of a small device gives,
            and less disturbed by other work on the machine); None = current setting.

    Returns:
        list of dict: ``name``, ``parameters``, ``bytes``, ``latency_ms``.
    """
    if not models:
        raise ValueError("give at least one model, e.g. {'teacher': teacher}")
    rows = []
    for name, model in models.items():
        if not isinstance(model, nn.Module):
            raise TypeError(f"{name!r} is a {type(model).__name__}, not a torch.nn.Module")
        rows.append({"name": name, "parameters": count_parameters(model),
                     "bytes": model_size_bytes(model),
                     "latency_ms": 1e3 * cpu_latency(model, tuple(input_shape), repeats=repeats,
                                                     threads=threads)})
    return rows


def interleaved_times(fns: Mapping[str, object], rounds: int, warmup: int = 2,
                      device=None, clock: str = "wall") -> dict[str, list[float]]:
    """Seconds per call of each callable, ``rounds`` times, in a fresh random order each round.

    Timings of two variants are only comparable when they share the machine's state, so
    every round runs each callable once, in a seeded random order (no callable always runs
    first, or always right after another and inherits its caches and heap); ratios are
    then taken round by round. ``clock="cpu"`` uses this process's CPU time
    (``time.process_time``), which leaves out the time spent waiting for a core on a
    busy machine (use it with one torch thread); ``"wall"`` the elapsed time (needed for
    CUDA, where the device is synchronised around each call). The heap is settled first
    (:func:`settle_heap`), so that large CPU buffers are timed as a training run meets
    them, reused rather than faulted in afresh.

    Args:
        fns (mapping): name -> callable without arguments.
        rounds (int): timed rounds.
        warmup (int): untimed rounds first.
        device: the device to synchronise (default cuda → mps → cpu).
        clock (str): ``"wall"`` or ``"cpu"``.

    Returns:
        dict: name -> list of ``rounds`` seconds.

    Raises:
        ValueError: non-positive ``rounds``, negative ``warmup``, an unknown clock, or
            ``clock="cpu"`` on a GPU.

    Examples::

        >>> from atkd_lite.cost import interleaved_times
        >>> times = interleaved_times({"a": lambda: None, "b": lambda: None}, rounds=3,
        ...                           device="cpu")
        >>> sorted(times), len(times["a"])
        (['a', 'b'], 3)
    """
    rounds, warmup = check_int("rounds", rounds, 1), check_int("warmup", warmup, 0)
    if clock not in ("wall", "cpu"):
        raise ValueError(f"clock must be 'wall' or 'cpu'; got {clock!r}")
    dev = get_device(device)
    if clock == "cpu" and dev.type != "cpu":
        raise ValueError(f"clock='cpu' measures CPU work; on {dev.type} use clock='wall'")
    now = time.process_time if clock == "cpu" else time.perf_counter
    settle_heap()  # time arithmetic, not first-touch page faults (see settle_heap)
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    order = random.Random(0)
    for r in range(warmup + rounds):
        for name in order.sample(names, len(names)):
            synchronize(dev)
            t0 = now()
            fns[name]()
            synchronize(dev)
            if r >= warmup:
                times[name].append(now() - t0)
    return times
