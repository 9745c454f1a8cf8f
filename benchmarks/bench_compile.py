"""Would compiling the map tail make the attention term cheaper? Eager versus torch.compile.

In a cached FMA/MIP step the student pays for its own map: the channel means inside the
forward pass, then the *tail* — resize the per-layer maps to the image size, min-max
normalise each, combine them (mean or max), normalise again, and the attention loss
against the teacher's map — forward and backward. The tail is some 40 small operations
on (L, B, H, W) maps, the kind of code a compiler fuses into a few loops. This script
times the tail of the book's small student at batch 128 both ways, interleaved (medians
of paired ratios), and checks first that both compute the same loss and gradients:

- ``eager`` — the package's code (``atcam_fast.maps_from_raw`` with its hand-written
  min-max backward, then :func:`atkd_lite.losses.attention_loss`);
- ``compiled`` — what a distiller with ``compile_maps=MODE`` runs: the same formulas in
  plain operations (``atcam.traceable_maps_from_raw``) and the same loss, compiled together
  with ``torch.compile`` (inductor; on the CPU it needs a C++ compiler).

It prints the two times, their ratio, the compile time, the number of training steps
after which compiling has paid for itself (compile time ÷ time saved per step) and the
largest differences. The compile time is a first compile on the machine: the script
compiles into an empty inductor cache of its own (``--warm-cache``: the user's cache,
as a second run of a notebook finds it). ``ATCam`` and ``compile_maps`` compile nothing
by default; this is the measurement that decides it (``benchmarks/RESULTS.md``).

Usage::

    python benchmarks/bench_compile.py                  # batch 128, 30 rounds, FMA and MIP
    python benchmarks/bench_compile.py --device cuda --mode reduce-overhead  # GPU, CUDA graphs
    python benchmarks/bench_compile.py --no-compile     # eager only (no C++ compiler)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import interleaved, median, paired, parse_timing_args, provenance  # noqa: E402

import atkd_lite as ak  # noqa: E402
from atkd_lite.atcam_fast import maps_from_raw, traceable_maps_from_raw  # noqa: E402
from atkd_lite.device import COMPILE_MODES  # noqa: E402
from atkd_lite.losses import attention_loss  # noqa: E402
from atkd_lite.methods.atcam_maps import _compiled_attention, _RawMaps  # noqa: E402


def student_raw_maps(batch: int, device: torch.device) -> tuple[list[torch.Tensor], tuple[int, int]]:
    """The small student's raw per-layer maps ``mean_c |A|`` for ``batch`` digits (detached)."""
    torch.manual_seed(0)
    data = ak.load_dataset("mnist5k", "train").subset(range(batch))
    student = ak.student_cnn("small").to(device).train()
    x = data.float_images(device)
    with torch.no_grad():  # mean_c |A|, the raw per-layer maps
        _, raw = ak.ATCam(student).features(x, reduce=lambda a: a.abs().mean(dim=1))
    return raw, tuple(x.shape[-2:])


def eager_tail(raw, target, size, combine):
    maps, _ = maps_from_raw(raw, size, combine)
    return attention_loss(maps, target)


def plain_tail(raw, target, size, combine):
    """The same formulas in plain operations (what the compiler traces and fuses)."""
    return attention_loss(traceable_maps_from_raw(raw, size, combine)[0], target)


def compiled_tail(mode: str):
    """The tail as a distiller with ``compile_maps=mode`` computes it from a cached teacher
    map: the student's map and the loss, compiled together as one graph."""
    maps_and_loss = _compiled_attention(mode)

    def tail(raw, target, size, combine):
        return maps_and_loss(_RawMaps(raw, size), target, combine, "l2")

    return tail


def make_step(tail, raw, target, size, combine):
    """One forward and backward of ``tail``: returns the loss and the raw maps' gradients."""
    def step():
        leaves = [m.detach().clone().requires_grad_() for m in raw]
        loss = tail(leaves, target, size, combine)
        loss.backward()
        return loss.detach(), [m.grad for m in leaves]

    return step


def check_same(name: str, a, b, rtol: float = 1e-4, atol: float = 1e-6) -> float:
    """Largest |difference| of two (loss, gradients) results; raise if they disagree."""
    (loss_a, grads_a), (loss_b, grads_b) = a, b
    worst = 0.0
    for x, y in [(loss_a, loss_b), *zip(grads_a, grads_b)]:
        diff = (x.float() - y.float()).abs().max().item()
        if not torch.allclose(x.float(), y.float(), rtol=rtol, atol=atol):
            raise AssertionError(f"{name}: compiled and eager results differ (max |Δ| "
                                 f"{diff:.3g}); the benchmark would not compare the same "
                                 "computation")
        worst = max(worst, diff)
    return worst


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--combine", default="fma,mip", help="comma-separated: fma, mip")
    ap.add_argument("--mode", default="default", choices=COMPILE_MODES,
                    help="torch.compile mode (default: default; reduce-overhead = CUDA graphs)")
    ap.add_argument("--no-compile", action="store_true",
                    help="time the eager tail only (e.g. where no C++ compiler is installed)")
    ap.add_argument("--warm-cache", action="store_true",
                    help="compile with the user's inductor cache (default: an empty one)")
    args, dev, clock = parse_timing_args(ap, argv)
    if not args.no_compile and not args.warm_cache:  # a first compile, as on a fresh machine
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench_compile_")
    print(f"small student's map tail, forward + backward; batch {args.batch}, "
          f"{args.rounds} rounds; compile mode {args.mode}; {provenance(dev)}")
    raw, size = student_raw_maps(args.batch, dev)
    torch.manual_seed(1)
    target = torch.rand(args.batch, *size, device=dev)
    print("| combine | eager (ms) | compiled (ms) | compiled ÷ eager | compile time (s) | "
          "pays after (steps) | max abs diff |\n|---|---|---|---|---|---|---|")
    for combine in args.combine.split(","):
        eager = make_step(eager_tail, raw, target, size, combine)
        steps = {"eager": eager}
        row = ["-"] * 5
        if not args.no_compile:
            t0 = time.perf_counter()
            compiled = make_step(compiled_tail(args.mode), raw, target, size, combine)
            first = compiled()  # compiles
            compile_s = time.perf_counter() - t0
            row[2] = f"{compile_s:.1f}"
            row[4] = f"{check_same(combine, eager(), first):.1e}"
            steps["compiled"] = compiled
        times = interleaved(steps, args.rounds, warmup=args.warmup, device=dev, clock=clock)
        if "compiled" in times:
            row[0] = f"{1000 * median(times['compiled']):.3f}"
            row[1] = f"{paired(times, 'compiled', 'eager'):.2f}"
            row[3] = pays_after(compile_s, median(times["eager"]) - median(times["compiled"]))
        print(f"| {combine} | {1000 * median(times['eager']):.3f} | {' | '.join(row)} |")
    return 0


def pays_after(compile_s: float, saved_s: float) -> str:
    """Steps after which compiling has paid for itself: ``compile_s / saved_s``, rounded up
    ("never" when a step saves nothing)."""
    return "never" if saved_s <= 0 else f"{-(-compile_s // saved_s):.0f}"


if __name__ == "__main__":
    sys.exit(main())
