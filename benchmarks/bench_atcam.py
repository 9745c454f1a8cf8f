"""What do attention maps cost? ATCam (FMA, MIP) and SALS relative to a plain teacher forward.

Measures, in one run with interleaved repetitions, on the CPU and on CUDA when present,
the median over repetitions of each variant's time divided by the plain forward's time in
the same repetition:

- FMA ÷ plain and MIP ÷ plain: ``cam(x)`` under ``torch.no_grad()`` versus ``teacher(x)``
  under ``torch.no_grad()`` (target: <= 1.10, the paper's "little extra compute");
- SALS ÷ plain: ``saliency_map(teacher, x)`` (a forward and a backward to the input).

Usage::

    python benchmarks/bench_atcam.py            # batch 128, 30 repetitions
    python benchmarks/bench_atcam.py --quick    # CI size: batch 32, 5 repetitions
"""

from __future__ import annotations

import argparse

import torch

from atkd_lite.cost import attention_overhead


def bench(device: torch.device, batch: int, reps: int, warmup: int, size: int):
    """Per-variant median seconds and median paired ratio to ``plain``, reps interleaved.

    Each repetition times every variant once, so a ratio is formed from calls that ran
    seconds apart; its median is robust to slow drifts in machine load, which a ratio
    of two separately taken medians is not. The measuring code is
    :func:`atkd_lite.cost.attention_overhead` (the book's chapter "Attention maps"
    calls it too); this is the same measurement on a freshly initialised teacher.
    """
    return attention_overhead(device=device, batch=batch, reps=reps, warmup=warmup, size=size)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="reduced CI-size run (batch 32, 5 repetitions, 1 warm-up)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default 128)")
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions (default 30)")
    parser.add_argument("--size", type=int, default=28, help="image side in pixels (default 28)")
    parser.add_argument("--cpu-only", action="store_true", help="skip CUDA even if present")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's choice); 1 is steadier "
                             "on a busy machine")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    batch = args.batch or (32 if args.quick else 128)
    reps = args.reps or (5 if args.quick else 30)
    warmup = 1 if args.quick else 5

    devices = [torch.device("cpu")]
    if torch.cuda.is_available() and not args.cpu_only:
        devices.append(torch.device("cuda"))
    print(f"teacher_cnn(), batch {batch}, {args.size}x{args.size}, median of {reps} interleaved "
          f"repetitions, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    for device in devices:
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        t, ratio = bench(device, batch, reps, warmup, args.size)
        print(f"[{device.type}: {name}] plain forward {t['plain'] * 1e3:.2f} ms")
        for key, label in (("fma", "FMA"), ("mip", "MIP"), ("sals", "SALS")):
            note = "target <= 1.10" if key != "sals" else "forward + backward to the input"
            print(f"  {label:4s} / plain = {ratio[key]:.3f}   "
                  f"({t[key] * 1e3:.2f} ms; {note})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
