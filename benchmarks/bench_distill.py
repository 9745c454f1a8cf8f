"""Cost of a distillation step, as ratios measured in one run (interleaved, median).

One training step = teacher signals (online or from the cache) + student forward +
losses + backward + optimiser step, on a batch of 128 digits, for the default small
student and the default teacher. All variants run round-robin in the same process (the
order rotates every round), so machine noise hits them alike; the medians are compared:

- online FMA / MIP step ÷ online KD-only step          goal <= 1.10 (attention is cheap)
- cached FMA / MIP step ÷ plain student (CE) step       goal <= 1.5
- cached SALS step ÷ plain student (CE) step            goal <= 4   (double backprop)
- online step ÷ cached step (per method)                the teacher cache's speed-up

Usage::

    python benchmarks/bench_distill.py            # 30 timed rounds
    python benchmarks/bench_distill.py --quick    # 5 rounds, for CI
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time

import torch

import atkd_lite as ak
from atkd_lite.cache import TeacherCache
from atkd_lite.distillers import make_distiller

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
]


def make_step(method, cached, teacher, student0, cache, x, y, idx, dev=None):
    dev = torch.device("cpu") if dev is None else dev
    student = copy.deepcopy(student0).to(dev).train()
    beta = None if method == "at" else 3.0  # AT keeps its own default weight
    distiller = make_distiller(method, student, teacher, alpha=0.5, beta=beta, T=4.0,
                               cache=cache if cached else None,
                               amp=None if dev.type == "cuda" else False)
    distiller.setup(x[:2])
    opt = torch.optim.AdamW(student.parameters(), lr=1e-3)

    def step():
        _, terms = distiller.forward_train(x, y, idx)
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        opt.step()

    return step


def measure(device=None, batch_size: int = 128, rounds: int = 30) -> dict[str, float]:
    """Median seconds per training step of every variant, round-robin on ``device``."""
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
    steps = {name: make_step(m, c, teacher, student0, cache, x, y, idx, dev)
             for name, m, c in VARIANTS}
    times = {name: [] for name in steps}
    names = list(steps)
    for r in range(rounds + 2):  # 2 warm-up rounds
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t0 = time.perf_counter()
            steps[name]()
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            dt = time.perf_counter() - t0
            if r >= 2:
                times[name].append(dt)
    return {k: statistics.median(v) for k, v in times.items()}


def ratio_rows(med: dict[str, float]) -> list[tuple[str, float, str]]:
    """The ratios the goals are stated for: (name, value, goal)."""
    return [
        ("fma online / kd online", med["fma online"] / med["kd online"], "<= 1.10"),
        ("mip online / kd online", med["mip online"] / med["kd online"], "<= 1.10"),
        ("fma cached / ce", med["fma cached"] / med["ce"], "<= 1.5"),
        ("mip cached / ce", med["mip cached"] / med["ce"], "<= 1.5"),
        ("sals cached / ce", med["sals cached"] / med["ce"], "<= 4"),
        ("kd cached / ce", med["kd cached"] / med["ce"], ""),
        ("at cached / ce", med["at cached"] / med["ce"], ""),
        ("kd online / kd cached", med["kd online"] / med["kd cached"], "speed-up"),
        ("fma online / fma cached", med["fma online"] / med["fma cached"], "speed-up"),
        ("mip online / mip cached", med["mip online"] / med["mip cached"], "speed-up"),
        ("sals online / sals cached", med["sals online"] / med["sals cached"], "speed-up"),
        ("at online / at cached", med["at online"] / med["at cached"], "speed-up"),
    ]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="5 timed rounds (CI)")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = ap.parse_args(argv)
    rounds = 5 if args.quick else args.rounds
    dev = ak.get_device(args.device)
    med = measure(dev, args.batch_size, rounds)
    where = (torch.cuda.get_device_name(dev) if dev.type == "cuda"
             else f"CPU ({platform.processor() or platform.machine()}, "
                  f"{torch.get_num_threads()} torch threads)")
    print(f"batch {args.batch_size}, {rounds} rounds, {where}, torch {torch.__version__}")
    print("\nmedian step time (ms)")
    for k, v in med.items():
        print(f"  {k:12s} {1000 * v:8.2f}")
    rows = ratio_rows(med)
    print("\n| ratio | value | goal |\n|---|---|---|")
    for name, value, goal in rows:
        print(f"| {name} | {value:.2f} | {goal} |")


if __name__ == "__main__":
    main()
