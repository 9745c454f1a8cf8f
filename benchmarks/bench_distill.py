"""Cost of a distillation step, as ratios measured in one run (interleaved, median).

One training step = teacher signals (online or from the cache) + student forward +
losses + backward + optimiser step, on a batch of 128 digits, for the default small
student and the default teacher. All variants run round-robin in the same process (the
order drawn afresh every round), so machine noise hits them alike; each ratio is the median
over rounds of the two steps' times *in the same round*:

- online FMA / MIP step ÷ online KD-only step          goal <= 1.10 (CPU), <= 1.15 (GPU)
- cached FMA / MIP step ÷ plain student (CE) step       goal <= 1.3
- cached SALS step ÷ plain student (CE) step            goal <= 4   (double backprop)
- online SALS step ÷ online KD step                     reported
- online step ÷ cached step (per method)                the teacher cache's speed-up
- floor: read cached step ÷ plain student (CE) step     the least an attention term costs

The floor step is the CE step plus a term that reads each of the student's captured maps
once (ATCam's capture with :func:`atkd_lite.experiments.overhead.read_once`, a channel sum, averaged into
the loss) and backpropagates through that read: any attention map of the student pays at
least this. (The cached FMA/MIP steps also carry the KD term on the cached logits: compare
with the "kd cached / ce" row, 1.03-1.05 on the CPU.)

SALS steps run in rounds of their own, together with the CE and KD steps they are
compared to (their memory churn would disturb whatever runs next).

Usage::

    python benchmarks/bench_distill.py            # 30 timed rounds
    python benchmarks/bench_distill.py --quick    # 5 rounds, for CI
    python benchmarks/bench_distill.py --threads 1 --clock cpu   # steadier on a busy machine
    python benchmarks/bench_distill.py --compile default   # FMA/MIP maps compiled (compile_maps)

With ``--compile MODE`` the FMA and MIP steps use ``make_distiller(..., compile_maps=MODE)``
(each network's map computation compiled with ``torch.compile``; the first rounds compile,
so the warm-up is at least 3 rounds); every other step is the same as without it.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    interleaved,
    median,
    paired,
    parse_timing_args,
    provenance,
)

import atkd_lite as ak  # noqa: E402
from atkd_lite.atcam import ATCam  # noqa: E402
from atkd_lite.cache import TeacherCache  # noqa: E402
from atkd_lite.device import COMPILE_MODES, autocast_context  # noqa: E402
from atkd_lite.distillers import make_distiller  # noqa: E402
from atkd_lite.experiments.overhead import read_once  # noqa: E402

VARIANTS = [  # (name, method, cached)
    ("ce", "student", False),
    ("kd online", "kd", False),
    ("fma online", "fma", False),
    ("mip online", "mip", False),
    ("sals online", "sals", False),
    ("at online", "at", False),
    ("kd cached", "kd", True),
    ("fma cached", "fma", True),
    ("mip cached", "mip", True),
    ("sals cached", "sals", True),
    ("at cached", "at", True),
    ("read cached", "read", True),
]


def make_read_step(student, x, y):
    """The floor of a step with an attention term: cross-entropy plus each of the student's
    captured maps read once (a channel sum, through ATCam's capture), and the backward
    through that read; no map, no teacher."""
    cam = ATCam(student)  # the capture points the FMA/MIP maps use
    opt = torch.optim.AdamW(student.parameters(), lr=1e-3)

    def step():
        with autocast_context(x.device):  # as the distillers' steps (autocast on CUDA)
            logits, sums = cam.features(x, reduce=read_once)
            loss = F.cross_entropy(logits, y) + sum(s.float().mean() for s in sums)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def make_step(method, cached, teacher, student0, cache, x, y, idx, dev=None, compile=None):
    dev = torch.device("cpu") if dev is None else dev
    student = copy.deepcopy(student0).to(dev).train()
    if method == "read":
        return make_read_step(student, x, y)
    beta = None if method == "at" else 3.0  # AT keeps its own default weight
    extra = {"compile_maps": compile} if compile and method in ("fma", "mip") else {}
    distiller = make_distiller(method, student, teacher, alpha=0.5, beta=beta, T=4.0,
                               cache=cache if cached else None,
                               amp=None if dev.type == "cuda" else False, **extra)
    distiller.setup(x[:2])
    opt = torch.optim.AdamW(student.parameters(), lr=1e-3)

    def step():
        _, terms = distiller.forward_train(x, y, idx)
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        opt.step()

    return step


def measure(device=None, batch_size: int = 128, rounds: int = 30, clock: str = "wall",
            variants=None, warmup: int = 2, compile=None) -> dict[str, list[float]]:
    """Seconds per training step of every variant in every round, round-robin on ``device``.

    ``compile``: a ``torch.compile`` mode for the FMA/MIP steps' maps (``compile_maps``).

    Returns the per-round times (use :func:`common.paired` / :func:`ratio_rows`).
    """
    dev = torch.device("cpu") if device is None else torch.device(device)
    torch.manual_seed(0)
    data = ak.load_dataset("mnist5k", "train").subset(range(batch_size))
    teacher = ak.teacher_cnn().to(dev).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    student0 = ak.student_cnn("small")
    cache = TeacherCache.build(teacher, data, progress=False, device=dev)
    x, y = data.float_images(dev), data.labels.to(dev)
    idx = torch.arange(len(data), device=dev)
    chosen = VARIANTS if variants is None else [v for v in VARIANTS if v[0] in variants]
    steps = {name: make_step(m, c, teacher, student0, cache, x, y, idx, dev, compile)
             for name, m, c in chosen}
    if compile:  # the first calls compile (per shape and grad mode): keep them untimed
        warmup = max(warmup, 3)
    # SALS steps (double backprop) allocate and free several times the memory of the
    # others; timed in the same rounds, that churn changes the heap the next step finds.
    # So they run in rounds of their own, with the KD and CE steps they are compared to.
    sals = [n for n in steps if n.startswith("sals")]
    times = interleaved({n: f for n, f in steps.items() if n not in sals}, rounds,
                        warmup=warmup, device=dev, clock=clock)
    if sals:
        refs = [n for n in ("ce", "kd online") if n in steps]
        second = interleaved({n: steps[n] for n in sals + refs}, rounds, warmup=warmup,
                             device=dev, clock=clock)
        for n in sals:  # SALS over its references of the same rounds, times theirs
            times[n] = second[n]
            for ref in refs:
                times[f"{n} | {ref}"] = second[ref]
    return times


def ratio_rows(times: dict[str, list[float]], device="cpu") -> list[tuple[str, float, str]]:
    """The ratios the goals are stated for: (name, paired median ratio, goal)."""
    online = "<= 1.10" if torch.device(device).type == "cpu" else "<= 1.15"
    rows = [
        ("fma online", "kd online", online),
        ("mip online", "kd online", online),
        ("sals online", "kd online", "reported"),
        ("fma cached", "ce", "<= 1.3"),
        ("mip cached", "ce", "<= 1.3"),
        ("sals cached", "ce", "<= 4"),
        ("kd cached", "ce", ""),
        ("at cached", "ce", ""),
        ("read cached", "ce", "floor"),
        ("kd online", "kd cached", "speed-up"),
        ("fma online", "fma cached", "speed-up"),
        ("mip online", "mip cached", "speed-up"),
        ("sals online", "sals cached", "speed-up"),
        ("at online", "at cached", "speed-up"),
    ]
    out = []
    for a, b, goal in rows:
        # SALS was timed in rounds of its own, with its own CE/KD references
        den = f"{a} | {b}" if f"{a} | {b}" in times else b
        if a in times and den in times:
            out.append((f"{a} / {b}", paired(times, a, den), goal))
    return out


def met(value: float, goal: str) -> str:
    """'yes'/'no' for a goal like '<= 1.10'; '' for rows without one."""
    if not goal.startswith("<="):
        return ""
    return "yes" if value <= float(goal[2:]) else "no"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="5 timed rounds (CI)")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--compile", default=None, choices=COMPILE_MODES,
                    help="FMA/MIP maps compiled with this torch.compile mode (default: eager)")
    args, dev, clock = parse_timing_args(ap, argv)
    rounds = 5 if args.quick else args.rounds
    how = f"; FMA/MIP maps compile={args.compile}" if args.compile else ""
    print(f"batch {args.batch_size}, {rounds} rounds, clock {clock}{how}; {provenance(dev)}")
    times = measure(dev, args.batch_size, rounds, clock, warmup=args.warmup, compile=args.compile)
    print("\nmedian step time (ms)")
    for k, v in times.items():
        if " | " not in k:
            print(f"  {k:12s} {1000 * median(v):8.2f}")
    print("\n| ratio | value | goal | met |\n|---|---|---|---|")
    for name, value, goal in ratio_rows(times, dev):
        print(f"| {name} | {value:.2f} | {goal} | {met(value, goal)} |")
    print(f"\nload average at the end: {provenance(dev).rsplit('load average ', 1)[1]}")


if __name__ == "__main__":
    main()
