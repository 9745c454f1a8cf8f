"""What the benchmark scripts share: the generic CNNs, interleaved timing, provenance.

- :func:`generic_cnn` and :func:`resnet18` are the networks "a user would bring": no
  ``atkd_capture_points()``, so ATCam captures their ``Conv2d`` layers (signed outputs,
  before batch norm) — the case the book's teacher (which declares post-ReLU capture
  points) flatters;
- :func:`interleaved` times several callables round-robin, in a fresh random order
  every round, and :func:`paired` takes the median over rounds of the ratio of two of them
  measured in the same round (robust to the slow drifts of a shared machine's load);
- :func:`provenance` is the line every result carries: date, commit, machine, threads,
  load average.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import subprocess
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from atkd_lite.cost import interleaved_times
from atkd_lite.device import get_device

ROOT = Path(__file__).resolve().parents[1]


def generic_cnn(in_channels: int = 1, num_classes: int = 10) -> nn.Sequential:
    """A small ``nn.Sequential`` CNN: 4 convs of width 32-64 with batch norm, 28x28 input."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes),
    )


def resnet18(in_channels: int = 3, num_classes: int = 10) -> nn.Module:
    """torchvision's ResNet-18 (random weights), for 3-channel CIFAR-sized input."""
    import torchvision

    model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    if in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    return model


def interleaved(fns: dict[str, Callable[[], object]], rounds: int, warmup: int = 2,
                device: torch.device | str = "cpu",
                clock: str = "wall") -> dict[str, list[float]]:
    """Seconds per call of each callable, ``rounds`` times, round-robin in a random order.

    The package's :func:`atkd_lite.cost.interleaved_times` (the same timing the book's
    attention-overhead figure uses). ``clock="cpu"`` uses this process's CPU time, which
    leaves out the time spent waiting for a core on a busy machine (use it with one torch
    thread); ``"wall"`` the elapsed time (needed for CUDA).
    """
    return interleaved_times(fns, rounds, warmup, device=torch.device(device), clock=clock)


def median(ts: list[float]) -> float:
    return statistics.median(ts)


def paired(times: dict[str, list[float]], num: str, den: str) -> float:
    """Median over rounds of ``time(num) / time(den)`` measured in the same round."""
    return statistics.median(a / b for a, b in zip(times[num], times[den]))


def commit() -> str:
    """The checked-out commit (short hash), with ``+dirty`` if the tree has changes."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, capture_output=True, text=True, timeout=10).stdout
        return (sha or "unknown") + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def load() -> str:
    """The 1/5/15-minute load averages (Unix), or 'n/a'."""
    try:
        return "/".join(f"{v:.2f}" for v in os.getloadavg())
    except (AttributeError, OSError):
        return "n/a"


def provenance(device: torch.device | str = "cpu") -> str:
    """Date, commit, machine, torch, threads and load: one line for a results table."""
    device = torch.device(device)
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"{when}; commit {commit()}; {device.type} ({where}); torch {torch.__version__}; "
            f"{torch.get_num_threads()} torch threads; load average {load()}")


def add_timing_options(parser, device: str = "cpu", warmup: bool = True) -> None:
    """The options every timing script shares: ``--warmup``, ``--device``, ``--threads``,
    ``--clock``; :func:`apply_threads` applies ``--threads``."""
    if warmup:
        parser.add_argument("--warmup", type=int, default=2,
                            help="untimed rounds first (default 2)")
    parser.add_argument("--device", default=device, help=f"{device} (default), cpu, cuda or auto")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="elapsed time (default) or this process's CPU time (CPU only; "
                             "use with --threads 1)")


def apply_threads(args) -> None:
    """Set torch's CPU threads when ``--threads`` was given."""
    if args.threads:
        torch.set_num_threads(args.threads)


def compile_in_process() -> None:
    """Let ``torch.compile`` compile in this process, without its pool of worker processes.

    After a first compilation inductor starts worker processes in the background (each
    imports torch), and for several seconds they take CPU time from whatever is being
    timed: on two cores a KD step right after compiling took 105 ms instead of 77-79 ms
    (and again 78 ms five seconds later). The benchmarks' compiled graphs are small, so
    compiling them in-process costs little, and the timings see a quiet machine.
    """
    import torch._inductor.config as inductor_config

    inductor_config.compile_threads = 1


def parse_timing_args(parser, argv=None, warmup: bool = True):
    """Add the shared timing options to ``parser``, parse ``argv`` and apply ``--threads``.

    Returns ``(args, device, clock)``: the device ``--device`` names (``auto``: cuda → mps →
    cpu) and the clock to time it with (``--clock`` on the CPU; wall clock elsewhere).
    """
    add_timing_options(parser, warmup=warmup)
    args = parser.parse_args(argv)
    apply_threads(args)
    compile_in_process()
    device = get_device(args.device)
    return args, device, args.clock if device.type == "cpu" else "wall"
