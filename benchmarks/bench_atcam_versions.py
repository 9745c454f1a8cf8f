"""Before and after, in one run: ATCam of an earlier commit against the working tree's.

Loads ``atkd_lite/atcam.py`` as it was at ``--commit`` (``git show``) next to the current
one and times, interleaved in a fresh random order every repetition, a plain forward and
FMA maps from each version, on the book's teacher, the generic ``nn.Sequential`` CNN and
ResNet-18 (no gradient, as for a teacher), and — with ``--train`` — a student's training
step with the FMA attention term (forward, loss, backward) next to a plain step. It also
checks that both versions give the same maps (and gradients).

Usage::

    python benchmarks/bench_atcam_versions.py --commit 4006533 --threads 1 --clock cpu
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_atcam import MODELS  # noqa: E402
from common import ROOT, interleaved, median, paired, provenance  # noqa: E402

import atkd_lite as ak  # noqa: E402
from atkd_lite import atcam as current  # noqa: E402
from atkd_lite.losses import attention_loss  # noqa: E402


def load_version(commit: str):
    """The module ``atkd_lite/atcam.py`` as it was at ``commit``."""
    source = subprocess.run(["git", "show", f"{commit}:atkd_lite/atcam.py"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / f"atcam_{commit}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"atcam_{commit}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def teacher_rows(old, batch, reps, clock):
    rows = []
    for name, (build, channels, side) in MODELS.items():
        torch.manual_seed(0)
        model = build().eval()
        x = torch.randn(batch, channels, side, side)
        cams = {"before": old.ATCam(model), "after": current.ATCam(model)}
        with torch.no_grad():
            maps = {k: cam(x)[1] for k, cam in cams.items()}  # also learns the order
            same = torch.equal(maps["before"], maps["after"])
            fns = {"plain": lambda m=model, x=x: m(x)}
            fns.update({k: (lambda c=c, x=x: c(x)) for k, c in cams.items()})
            times = interleaved(fns, reps, warmup=3, clock=clock)
        rows.append((f"{name}: FMA ÷ plain forward", paired(times, "before", "plain"),
                     paired(times, "after", "plain"), same))
    return rows


def student_rows(old, batch, reps, clock):
    torch.manual_seed(0)
    data = ak.load_dataset("mnist5k", "train").subset(range(batch))
    x, y = data.float_images(), data.labels
    target = torch.rand(batch, *x.shape[-2:])
    student0 = ak.student_cnn("small").train()

    def step_fn(module):
        student = copy.deepcopy(student0)
        opt = torch.optim.AdamW(student.parameters(), lr=1e-3)
        cam = module.ATCam(student) if module is not None else None

        def step():
            if cam is None:
                loss = F.cross_entropy(student(x), y)
            else:
                logits, maps = cam(x)
                loss = F.cross_entropy(logits, y) + attention_loss(maps, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return step, student, cam

    grads = {}
    for key, module in (("before", old), ("after", current)):
        _, student, cam = step_fn(module)
        logits, maps = cam(x)
        (F.cross_entropy(logits, y) + attention_loss(maps, target)).backward()
        grads[key] = torch.cat([p.grad.flatten() for p in student.parameters()])
    same = torch.equal(grads["before"], grads["after"])
    fns = {"plain": step_fn(None)[0], "before": step_fn(old)[0], "after": step_fn(current)[0]}
    times = interleaved(fns, reps, warmup=3, clock=clock)
    return [("small student: step with FMA term ÷ plain step", paired(times, "before", "plain"),
             paired(times, "after", "plain"), same),
            ("  (plain student step, ms)", median(times["plain"]) * 1e3,
             median(times["plain"]) * 1e3, True)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commit", default="4006533", help="the earlier commit (default 4006533)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--train", action="store_true", help="also time a student training step")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    old = load_version(args.commit)
    print(f"ATCam at {args.commit} (before) and in this tree (after); batch {args.batch}, "
          f"{args.reps} repetitions, clock {args.clock}; {provenance()}")
    rows = teacher_rows(old, args.batch, args.reps, args.clock)
    if args.train:
        rows += student_rows(old, args.batch, args.reps, args.clock)
    print("\n| measurement | before | after | same numbers |\n|---|---|---|---|")
    for name, before, after, same in rows:
        print(f"| {name} | {before:.3f} | {after:.3f} | {'yes' if same else 'NO'} |")
    print(f"\nload average at the end: {provenance().rsplit('load average ', 1)[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
