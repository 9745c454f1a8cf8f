"""Where an ATCam call's time goes, step by step, against the floor of reading the maps.

An ATCam FMA call is a plain forward pass with hooks on the capture points, a per-layer
reduction of each captured map inside its hook (``mean_c |A|``), and a tail on the small
raw maps (resize, min-max normalise each layer, combine, normalise again). This script
times, interleaved in one run (median of paired ratios to the plain forward, under
``torch.no_grad()``), the same capture growing one step at a time:

- ``floor`` — each captured map read once (``overhead.read_once``, a channel sum) and nothing
  else: no map made from the captured outputs can cost less;
- ``abs-mean eager`` — ATCam's capture as its call runs it: each map reduced to
  ``mean_c |A|`` in its hook (a ReLU output is summed as it is);
- ``abs-mean compiled`` — the same compiled (what ``ATCam(compile=True)`` runs on the CPU for
  signed capture points; skipped with ``--no-compile``);
- ``ATCam`` and ``ATCam compiled`` — whole calls, ``cam(x)``;
- ``tail alone`` — the tail on the raw maps of one call, timed in the same rounds (in a
  loop, so on data already in cache; compare with the whole call minus the capture);
- ``plain compiled`` and ``ATCam compile_model`` — the network compiled alone
  (``torch.compile(model)``), and compiled with the capture and the maps in one graph
  (``ATCam(compile_model=True)``), where each ``mean_c |A|`` is read inside the network's
  own fused kernels, so the eager floor no longer bounds it (skipped with
  ``--no-compile``).

For a network whose capture points are ReLU outputs (the book's teacher) ``|A| = A`` and
the three capture rows coincide; the generic CNN's and ResNet-18's are signed conv
outputs. Results: ``benchmarks/RESULTS.md``.

Usage::

    python benchmarks/bench_capture.py                       # generic CNN, batch 128
    python benchmarks/bench_capture.py --model teacher --rounds 60
    python benchmarks/bench_capture.py --no-compile          # no C++ compiler
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_atcam import MODELS  # noqa: E402
from common import interleaved, median, paired, parse_timing_args, provenance  # noqa: E402

import atkd_lite as ak  # noqa: E402
import atkd_lite.atcam_fast as atcam_fast  # noqa: E402
from atkd_lite.cost import settle_heap  # noqa: E402
from atkd_lite.device import compile_function  # noqa: E402
from atkd_lite.experiments.overhead import read_once  # noqa: E402


def variants(model: torch.nn.Module, x: torch.Tensor, compile: bool = True) -> dict:
    """The timed callables (see the module docstring), each run under ``torch.no_grad()``."""
    cam = ak.ATCam(model)
    cam_compiled = ak.ATCam(model, compile=True) if compile else None
    cam_whole = ak.ATCam(model, compile_model=True) if compile else None
    model_compiled = compile_function(model, "default") if compile else None

    with torch.no_grad():
        cam(x)  # fixes the capture order; the raw maps of one call, for the tail alone
        raw = cam.raw_maps(x)[1]
    size = tuple(x.shape[-2:])
    fns = {
        "plain": lambda: model(x),
        "floor": lambda: cam.features(x, reduce=read_once),
        "abs-mean eager": lambda: cam.raw_maps(x),  # the capture half of cam(x)
        "abs-mean compiled": lambda: cam_compiled.raw_maps(x),
        "ATCam": lambda: cam(x),
        "ATCam compiled": lambda: cam_compiled(x),
        "tail alone": lambda: atcam_fast.maps_from_raw(raw, size, cam.combine),
        "plain compiled": lambda: model_compiled(x),
        "ATCam compile_model": lambda: cam_whole(x),
    }
    if not compile:
        for name in ("abs-mean compiled", "ATCam compiled", "plain compiled",
                     "ATCam compile_model"):
            del fns[name]
    return {name: _no_grad(fn) for name, fn in fns.items()}


def _no_grad(fn):
    @functools.wraps(fn)
    def run():
        with torch.no_grad():
            return fn()
    return run


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=list(MODELS), default="generic")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--no-compile", action="store_true",
                    help="skip the compiled rows (torch.compile on the CPU needs a C++ compiler)")
    args, dev, clock = parse_timing_args(ap, argv)
    build, channels, side = MODELS[args.model]
    torch.manual_seed(0)
    model = build().to(dev).eval()
    x = torch.randn(args.batch, channels, side, side, device=dev)
    fns = variants(model, x, compile=not args.no_compile)
    with torch.no_grad():  # compile (and fill the caches) before anything is timed
        for _ in range(2):  # compile_model: the first call is eager, the second compiles
            for fn in fns.values():
                fn()
    settle_heap()
    print(f"{args.model}, batch {args.batch}, {args.rounds} rounds, clock {clock}; "
          f"{provenance(dev)}")
    times = interleaved(fns, args.rounds, warmup=args.warmup, device=dev, clock=clock)
    print("\n| step | median (ms) | ÷ plain forward |\n|---|---|---|")
    for name in fns:
        print(f"| {name} | {1e3 * median(times[name]):.2f} | {paired(times, name, 'plain'):.3f} |")
    if "plain compiled" in fns:
        print(f"\nATCam compile_model ÷ plain compiled: "
              f"{paired(times, 'ATCam compile_model', 'plain compiled'):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
