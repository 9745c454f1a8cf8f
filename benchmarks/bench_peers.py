"""Side by side with the libraries a researcher would otherwise pick: same model, batch, device.

Four comparisons, each timed interleaved in one run (in a fresh order every round), as
the median over rounds of ``time(ours) / time(peer)`` in the same round; goal: ours <= 1.0 x
the peer for the same computation.

(a)/(b) **Distillation steps** with the book's teacher and the ``small`` student, batch
    128: a plain training step written with torchdistill's ``KDLoss`` (Hinton) and
    ``ATLoss`` (Zagoruyko & Komodakis, "code" form; features collected by torchdistill's
    ``ForwardHookManager``) against ``atkd_lite``'s distillers (``kd`` and ``at``, the
    steps ``ak.distill`` runs). Before timing, both compute the loss on the same weights
    and batch, and the values must agree (the same computation, not just a similar one).
(c) **Saliency**: Captum's ``Saliency(teacher).attribute(x, target=y, abs=True)`` against
    ``ak.saliency_map(teacher, x, target=y)``; checked: the latter equals the former
    maxed over channels and min-max normalised.
(d) **Attention map of the teacher**: Captum's ``LayerGradCam`` on the last conv block,
    upsampled to the input size (``LayerAttribution.interpolate``), against ATCam FMA
    (``ATCam(teacher).attribute(x)`` under ``torch.no_grad()``). Different maps (Grad-CAM
    needs a backward pass, ATCam does not): this compares what each costs a user who
    wants one attention map per image.

torchdistill is a benchmark-only dependency (``pip install 'atkd-lite[bench]'``, or
``pip install --no-deps torchdistill`` on top of an existing torch: its loss and hook
modules need nothing else). Without it, (a)/(b) are skipped with a message and the script
still exits 0.

Usage::

    python benchmarks/bench_peers.py             # batch 128, 20 rounds, CPU
    python benchmarks/bench_peers.py --quick     # batch 32, 3 rounds (CI)
    python benchmarks/bench_peers.py --device cuda
"""

from __future__ import annotations

import argparse
import copy
import sys
import warnings
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
from atkd_lite.atcam import ATCam, normalize_maps  # noqa: E402
from atkd_lite.distillers import make_distiller  # noqa: E402

ALPHA, T = 0.5, 4.0  # KD weight and temperature, the same on both sides


def torchdistill_available() -> bool:
    try:
        import torchdistill.core.forward_hook  # noqa: F401
        import torchdistill.losses.mid_level  # noqa: F401
    except ImportError:
        return False
    return True


def _ours(method, student, teacher, x, y, idx):
    """A step of atkd_lite's distiller (what ``ak.distill`` runs per batch), and its loss."""
    distiller = make_distiller(method, student, teacher, alpha=ALPHA, T=T, amp=False)
    distiller.setup(x[:2])
    opt = torch.optim.AdamW(student.parameters(), lr=1e-3)

    def loss():
        return distiller.forward_train(x, y, idx)[1]["loss"]

    def step():
        total = loss()
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()

    return step, loss, distiller


def _peer_kd(student, teacher, x, y):
    """A plain training step with torchdistill's KDLoss: alpha*CE + beta*T^2*KL."""
    from torchdistill.losses.mid_level import KDLoss

    # torchdistill's alpha weighs the cross-entropy, beta the soft loss: ours (1-α), α
    kd = KDLoss(student_module_path=".", student_module_io="output",
                teacher_module_path=".", teacher_module_io="output",
                temperature=T, alpha=1 - ALPHA, beta=ALPHA)
    opt = torch.optim.AdamW(student.parameters(), lr=1e-3)

    def loss():
        logits = student(x)
        with torch.no_grad():
            t_logits = teacher(x)
        return kd({".": {"output": logits}}, {".": {"output": t_logits}}, y)

    def step():
        total = loss()
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()

    return step, loss


def _peer_at(student, teacher, x, y, pairs, beta):
    """A plain training step with torchdistill's ATLoss and ForwardHookManager: CE + AT."""
    from torchdistill.core.forward_hook import ForwardHookManager
    from torchdistill.losses.mid_level import ATLoss

    s_names, t_names = student.atkd_capture_points(), teacher.atkd_capture_points()
    at = ATLoss(at_pairs={
        f"pair{k}": {"student": {"io": "output", "path": s_names[i]},
                     "teacher": {"io": "output", "path": t_names[j]}, "weight": beta}
        for k, (i, j) in enumerate(pairs)}, mode="code")
    device = x.device
    s_hooks, t_hooks = ForwardHookManager(device), ForwardHookManager(device)
    for i, j in pairs:
        s_hooks.add_hook(student, s_names[i], requires_input=False, requires_output=True)
        t_hooks.add_hook(teacher, t_names[j], requires_input=False, requires_output=True)
    opt = torch.optim.AdamW(student.parameters(), lr=1e-3)

    def loss():
        logits = student(x)
        with torch.no_grad():
            teacher(x)
        return F.cross_entropy(logits, y) + at(s_hooks.pop_io_dict(), t_hooks.pop_io_dict())

    def step():
        total = loss()
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()

    return step, loss


def _same(name: str, ours: torch.Tensor, peer: torch.Tensor, rtol: float, atol: float) -> float:
    """Assert that two results agree; return the largest absolute difference."""
    diff = (ours.detach().float() - peer.detach().float()).abs().max().item()
    if not torch.allclose(ours.detach().float(), peer.detach().float(), rtol=rtol, atol=atol):
        raise AssertionError(f"{name}: ours and the peer's results differ (max |Δ| {diff:.3g}); "
                             "the benchmark would not compare the same computation")
    return diff


def comparisons(device: torch.device, batch: int, with_torchdistill: bool):
    """name -> (ours, peer, max |Δ| of the results, what is compared)."""
    torch.manual_seed(0)
    data = ak.load_dataset("mnist5k", "train").subset(range(batch))
    x, y = data.float_images(device), data.labels.to(device)
    idx = torch.arange(batch, device=device)
    torch.manual_seed(0)
    teacher = ak.teacher_cnn().to(device).eval()
    frozen = copy.deepcopy(teacher)
    for p in frozen.parameters():
        p.requires_grad_(False)
    torch.manual_seed(1)
    student0 = ak.student_cnn("small").to(device).train()
    out = {}

    if with_torchdistill:
        ours, ours_loss, _ = _ours("kd", copy.deepcopy(student0), frozen, x, y, idx)
        peer, peer_loss = _peer_kd(copy.deepcopy(student0), frozen, x, y)
        diff = _same("KD loss", ours_loss(), peer_loss(), rtol=1e-5, atol=1e-6)
        out["KD step (torchdistill KDLoss)"] = (ours, peer, diff, "same loss")

        ours, ours_loss, distiller = _ours("at", copy.deepcopy(student0), frozen, x, y, idx)
        peer, peer_loss = _peer_at(copy.deepcopy(student0), frozen, x, y, distiller.pairs,
                                   distiller.beta)
        diff = _same("AT loss", ours_loss(), peer_loss(), rtol=1e-5, atol=1e-6)
        out["AT step (torchdistill ATLoss)"] = (ours, peer, diff, "same loss")

    from captum.attr import LayerAttribution, LayerGradCam, Saliency

    # Captum sets requires_grad on the input itself (and undoes it), and says so each call
    warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require")

    saliency = Saliency(teacher)
    ref = normalize_maps(saliency.attribute(x, target=y, abs=True).amax(dim=1))
    diff = _same("saliency", ak.saliency_map(teacher, x, target=y), ref, rtol=1e-5, atol=1e-5)
    out["saliency (Captum Saliency)"] = (
        lambda: ak.saliency_map(teacher, x, target=y),
        lambda: saliency.attribute(x, target=y, abs=True),
        diff, "same map")

    cam = ATCam(teacher, combine="fma")
    gradcam = LayerGradCam(teacher, teacher.get_submodule(teacher.atkd_capture_points()[-1]))

    def ours_cam():
        with torch.no_grad():
            return cam.attribute(x)

    def peer_cam():
        return LayerAttribution.interpolate(gradcam.attribute(x, target=y), tuple(x.shape[-2:]),
                                            interpolate_mode="bilinear")

    if ours_cam().shape != peer_cam().shape:
        raise AssertionError("ATCam and Grad-CAM maps should both be (B, 1, H, W)")
    out["attention map (Captum LayerGradCam)"] = (ours_cam, peer_cam, float("nan"),
                                                  "different maps")
    return out


def measure(device: torch.device, batch: int, rounds: int, clock: str = "wall",
            with_torchdistill: bool | None = None, warmup: int = 2) -> list[dict]:
    """One row per comparison: name, ours/peer median ms, paired ratio, the check made."""
    if with_torchdistill is None:
        with_torchdistill = torchdistill_available()
    rows = []
    for name, (ours, peer, diff, check) in comparisons(device, batch, with_torchdistill).items():
        times = interleaved({"ours": ours, "peer": peer}, rounds, warmup=warmup,
                            device=device, clock=clock)
        rows.append({"name": name, "ours_ms": median(times["ours"]) * 1e3,
                     "peer_ms": median(times["peer"]) * 1e3,
                     "ratio": paired(times, "ours", "peer"),
                     "check": f"{check}, max abs diff {diff:.1e}" if diff == diff else check})
    return rows


MISSING = ("torchdistill is not installed: the KD/AT step comparisons (a, b) are skipped. "
           "Install it with `pip install 'atkd-lite[bench]'` (or `pip install --no-deps "
           "torchdistill`: its loss and hook modules need only torch).")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="batch 32, 3 rounds (CI)")
    ap.add_argument("--batch", type=int, default=None, help="batch size (default 128)")
    ap.add_argument("--rounds", type=int, default=None, help="timed rounds (default 20)")
    args, device, clock = parse_timing_args(ap, argv)
    batch = args.batch or (32 if args.quick else 128)
    rounds = args.rounds or (3 if args.quick else 20)
    have_td = torchdistill_available()
    print(f"batch {batch}, {rounds} rounds, clock {clock}; {provenance(device)}")
    if not have_td:
        print(MISSING)
    rows = measure(device, batch, rounds, clock, have_td, warmup=args.warmup)
    print("\n| comparison | ours (ms) | peer (ms) | ours ÷ peer | goal <= 1.0 met | check |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['ours_ms']:.2f} | {r['peer_ms']:.2f} | {r['ratio']:.3f} | "
              f"{'yes' if r['ratio'] <= 1.0 else 'no'} | {r['check']} |")
    print(f"\nload average at the end: {provenance(device).rsplit('load average ', 1)[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
