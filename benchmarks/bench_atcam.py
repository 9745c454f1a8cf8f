"""What do attention maps cost? ATCam (FMA, MIP) and SALS relative to a plain forward.

Measures, in one run with interleaved repetitions, on the CPU and on CUDA when present,
the median over repetitions of each variant's time divided by the plain forward's time in
the same repetition (:func:`atkd_lite.experiments.overhead.attention_overhead`), for three networks:

- ``teacher`` — the book's teacher (:func:`atkd_lite.teacher_cnn`, 1x28x28), whose
  capture points are its post-ReLU block outputs;
- ``generic`` — a small ``nn.Sequential`` CNN (4 convs of width 32-64 with batch norm,
  1x28x28) without declared capture points: ATCam captures its convs' signed outputs;
- ``resnet18`` — torchvision's ResNet-18 (3x32x32), also captured at its convs.

Ratios: FMA ÷ plain and MIP ÷ plain, ``cam(x)`` versus ``model(x)`` both under
``torch.no_grad()`` (goal: <= 1.10 on the CPU, <= 1.15 on a GPU, at batch 128); SALS ÷
plain, ``saliency_map(model, x)`` (a forward and a backward to the input; reported),
timed in repetitions of its own (its memory churn would disturb the others). And the
floor, read ÷ plain (:data:`atkd_lite.experiments.overhead.FLOOR`), timed with FMA and MIP: the same
capture with each captured map read once (a channel sum) and nothing else computed. No
map made from the captured outputs can cost less, so a goal below the floor cannot be met
by any change to the map computation, only by reading less (fewer or smaller layers).

Usage::

    python benchmarks/bench_atcam.py                 # batch 128, 30 repetitions, all models
    python benchmarks/bench_atcam.py --quick         # CI size: batch 32, 5 repetitions
    python benchmarks/bench_atcam.py --threads 1 --clock cpu   # steadier on a busy machine
    python benchmarks/bench_atcam.py --compile reduce-overhead  # ATCam(compile=...), GPU
    python benchmarks/bench_atcam.py --compile-model  # network + maps in one compiled graph

With ``--compile-model`` (``ATCam(compile_model=True)``) the network, the capture and the
maps are one compiled graph, and the plain forward it is divided by is the network compiled
alone (``torch.compile(model)``, what a user who compiles runs); the floor and SALS, both
eager, are not timed then. The eager floor does not bound this regime: the reads of the
captured maps fuse into the network's own kernels.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import compile_in_process, generic_cnn, provenance, resnet18  # noqa: E402

import atkd_lite as ak  # noqa: E402
from atkd_lite.device import COMPILE_MODES  # noqa: E402
from atkd_lite.experiments.overhead import FLOOR, attention_overhead  # noqa: E402

#: name -> (builder, input channels, input side)
MODELS = {
    "teacher": (lambda: ak.teacher_cnn(), 1, 28),
    "generic": (generic_cnn, 1, 28),
    "resnet18": (resnet18, 3, 32),
}


def goal(device: torch.device) -> float:
    """The FMA/MIP ÷ plain goal on this device (1.10 on the CPU, 1.15 on a GPU)."""
    return 1.10 if device.type == "cpu" else 1.15


def bench(device, batch: int, reps: int, warmup: int, size: int = 28, model: str = "teacher",
          clock: str = "wall", variants=("plain", "fma", "mip", "sals"),
          compile: bool | str = False, compile_model: bool = False):
    """Per-variant median seconds and median paired ratio to ``plain`` for one network.

    The measuring code is :func:`atkd_lite.experiments.overhead.attention_overhead` (the book's chapter
    "Attention maps" calls it too), on a freshly initialised network seeded with 0.
    ``size`` applies to the book's teacher; the other networks use their own input size.
    """
    build, channels, side = MODELS[model]
    torch.manual_seed(0)
    return attention_overhead(device=device, batch=batch, reps=reps, warmup=warmup,
                              size=size if model == "teacher" else side, model=build(),
                              in_channels=channels, variants=variants, clock=clock,
                              compile=compile, compile_model=compile_model)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="reduced CI-size run (batch 32, 5 repetitions, 1 warm-up)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default 128)")
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions (default 30)")
    parser.add_argument("--size", type=int, default=28,
                        help="image side of the book's teacher in pixels (default 28)")
    parser.add_argument("--models", default=",".join(MODELS),
                        help=f"comma-separated subset of {','.join(MODELS)}")
    parser.add_argument("--no-sals", action="store_true", help="skip the SALS variant")
    parser.add_argument("--cpu-only", action="store_true", help="skip CUDA even if present")
    parser.add_argument("--compile", default=None, choices=COMPILE_MODES,
                        help="ATCam(compile=MODE): its map computation compiled (default: eager)")
    parser.add_argument("--compile-model", action="store_true",
                        help="ATCam(compile_model=True): network, capture and maps in one "
                             "compiled graph, against the network compiled alone (implies "
                             "--compile default; no floor or SALS)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's choice); 1 is steadier "
                             "on a busy machine")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="CPU timings: elapsed time (default) or this process's CPU "
                             "time (leaves out waiting for a core; use with --threads 1)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    compile_in_process()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {list(MODELS)}")
    batch = args.batch or (32 if args.quick else 128)
    reps = args.reps or (5 if args.quick else 30)
    warmup = 1 if args.quick else 5
    variants = ("plain", "fma", "mip", FLOOR) + (() if args.no_sals else ("sals",))
    if args.compile_model:  # the first call is eager, the second compiles
        warmup, variants = max(warmup, 2), ("plain", "fma", "mip")

    devices = [torch.device("cpu")]
    if torch.cuda.is_available() and not args.cpu_only:
        devices.append(torch.device("cuda"))
    how = f"; ATCam compile={args.compile}" if args.compile else ""
    if args.compile_model:
        how = (f"; ATCam compile_model=True, compile={args.compile or 'default'}: "
               f"÷ the network compiled alone")
    print(f"batch {batch}, median of {reps} interleaved repetitions{how}; {provenance()}")
    for device in devices:
        clock = args.clock if device.type == "cpu" else "wall"
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        print(f"\n[{device.type}: {name}] clock: {clock}; goal FMA/MIP ÷ plain <= "
              f"{goal(device):.2f}")
        print("| model | plain forward (ms) | FMA ÷ plain | MIP ÷ plain | SALS ÷ plain "
              "| floor: read ÷ plain | goal met |")
        print("|---|---|---|---|---|---|---|")
        for model in models:
            t, ratio = bench(device, batch, reps, warmup, args.size, model, clock,
                             variants, compile=args.compile or False,
                             compile_model=args.compile_model)
            met = all(ratio[k] <= goal(device) for k in ("fma", "mip"))
            sals, floor = (f"{ratio[k]:.3f}" if k in ratio else "-" for k in ("sals", FLOOR))
            print(f"| {model} | {t['plain'] * 1e3:.2f} | {ratio['fma']:.3f} | "
                  f"{ratio['mip']:.3f} | {sals} | {floor} | "
                  f"{'yes' if met else 'no'} |", flush=True)
    print(f"\nload average at the end: {provenance().rsplit('load average ', 1)[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
