"""GPU check: CUDA agrees with the CPU, and how fast the GPU path is — in one call.

1. **Agreement** (when CUDA is present): on real digits, the teacher's logits, ATCam FMA/MIP
   maps, SALS maps, the KD / attention / AT losses, and a few distillation steps are
   computed on the CPU and on CUDA in float32 (TF32 off) and compared with stated
   tolerances; the same maps under autocast (bf16/fp16) are compared more loosely.
2. **Speed** on the chosen device: teacher training throughput (images/s) over 60,000
   28×28 images (the embedded digits tiled, resident on the device), and the epoch time
   — goal < 1 s on an H100-class card; the ATCam cost ratios of ``bench_atcam.py`` for
   the book's teacher, a generic ``nn.Sequential`` CNN and ResNet-18 (goal <= 1.15 on a
   GPU); the distillation step ratios of ``bench_distill.py`` (with and without the
   teacher cache; online FMA/MIP ÷ KD goal <= 1.15); and ``bench_peers.py``: the KD and
   AT steps against torchdistill's ``KDLoss``/``ATLoss`` (skipped with a message if
   torchdistill is not installed), saliency against Captum's ``Saliency`` and ATCam
   against Captum's ``LayerGradCam`` (goal: ours <= 1.0 × the peer).
3. A short table, printed last (and written to ``--out`` as markdown if given).

Usage::

    python benchmarks/gpu_check.py                 # on CUDA when present, else CPU
    python benchmarks/gpu_check.py --quick         # reduced sizes (CI runs this on CPU)
    python benchmarks/gpu_check.py --compile       # also the compiled teacher, ATCam, steps
                                                   # and ATCam(compile_model=True)
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import compile_in_process  # noqa: E402

import atkd_lite as ak  # noqa: E402
from atkd_lite.atcam import ATCam  # noqa: E402
from atkd_lite.data import ImageSet  # noqa: E402
from atkd_lite.device import COMPILE_MODES  # noqa: E402
from atkd_lite.losses import at_loss, attention_loss, kd_loss  # noqa: E402
from atkd_lite.saliency import saliency_map  # noqa: E402

#: tolerances for CPU-vs-CUDA agreement in float32 (TF32 off)
TOL = {"logits": 1e-3, "maps": 1e-3, "loss_rel": 1e-3, "train_rel": 2e-2, "amp_maps_mean": 0.03}


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.detach().float().cpu() - b.detach().float().cpu()).abs().max().item()


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-12)


def agreement(quick: bool) -> list[tuple[str, float, float, bool]]:
    """Rows (check, measured, tolerance, ok) comparing CPU and CUDA."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    cuda = torch.device("cuda")
    data = ak.load_dataset("mnist5k", "test")
    n = 64 if quick else 256
    x, y = data.float_images()[:n], data.labels[:n]
    torch.manual_seed(0)
    teacher = ak.teacher_cnn().eval()
    # a briefly trained teacher gives meaningful maps (random weights would too, but less so)
    ak.train_model(teacher, data.subset(range(n, n + 512)), epochs=1, progress=False,
                   device="cpu")
    torch.manual_seed(1)
    student = ak.student_cnn("small").eval()
    rows = []

    def both(fn):
        cpu = fn(teacher.cpu(), student.cpu(), x, y)
        gpu = fn(teacher.to(cuda), student.to(cuda), x.to(cuda), y.to(cuda))
        teacher.cpu(), student.cpu()
        return cpu, gpu

    def logits(t, s, xx, yy):
        with torch.no_grad():
            return t(xx), s(xx)

    (tc, sc), (tg, sg) = both(logits)
    rows.append(("teacher logits max|Δ|", _max_diff(tc, tg), TOL["logits"]))
    for combine in ("fma", "mip"):
        def maps(t, s, xx, yy, combine=combine):
            with torch.no_grad():
                return ATCam(t, combine=combine)(xx)[1]
        mc, mg = both(maps)
        rows.append((f"{combine.upper()} maps max|Δ|", _max_diff(mc, mg), TOL["maps"]))

    from common import generic_cnn

    torch.manual_seed(3)
    generic = generic_cnn().eval()
    for combine in ("fma", "mip"):
        def generic_maps(t, s, xx, yy, combine=combine):
            net = generic.to(xx.device)
            with torch.no_grad():
                cam = ATCam(net, combine=combine)
                cam(xx)  # the first call learns the order; the second reduces in the hooks
                return cam(xx)[1]
        mc, mg = both(generic_maps)
        generic.cpu()
        rows.append((f"generic CNN {combine.upper()} maps max|Δ|", _max_diff(mc, mg),
                     TOL["maps"]))

    def sals(t, s, xx, yy):
        return saliency_map(t, xx, target=yy)
    mc, mg = both(sals)
    # saliency is an input gradient: where max-pooling meets a tie, CPU and CUDA may route
    # the gradient to different (equal) inputs, so single pixels can differ (max|Δ| ~3e-2
    # seen on an H200); the map as a whole must agree
    rows.append(("SALS maps mean|Δ|", (mc - mg.cpu()).abs().mean().item(), TOL["maps"]))

    def losses(t, s, xx, yy):
        with torch.no_grad():
            zt, zs = t(xx), s(xx)
            _, mt = ATCam(t)(xx)
            _, ms = ATCam(s)(xx)
            ft = ATCam(t, first=1, last=1).features(xx)[1]
            fs = ATCam(s, first=1, last=1).features(xx)[1]
        return torch.stack([kd_loss(zs, zt), attention_loss(ms, mt), at_loss(fs, ft)])
    lc, lg = both(losses)
    for name, a, b in zip(("KD", "attention", "AT"), lc.tolist(), lg.tolist()):
        rows.append((f"{name} loss rel|Δ|", _rel(a, b), TOL["loss_rel"]))

    # a few distillation steps on each device, float32, same seed
    sub = data.subset(range(n))
    hist = {}
    for dev in ("cpu", "cuda"):
        torch.manual_seed(2)
        s = ak.student_cnn("small")
        res = ak.distill(teacher, s, sub, None, method="fma+kd", epochs=2, batch_size=32,
                         device=dev, amp=False, channels_last=False, progress=False)
        hist[dev] = res.history["loss"][-1]
    teacher.cpu()
    rows.append(("distill fma+kd loss after steps rel|Δ|", _rel(hist["cpu"], hist["cuda"]),
                 TOL["train_rel"]))

    # autocast on CUDA vs float32 on the CPU: maps stay close
    def amp_maps(t, s, xx, yy):
        ctx = ak.runtime.autocast_context(xx.device)
        with torch.no_grad(), ctx:
            return ATCam(t)(xx)[1]
    mc, mg = both(amp_maps)
    mean_diff = (mc - mg.cpu()).abs().mean().item()
    rows.append(("FMA maps under autocast mean|Δ|", mean_diff, TOL["amp_maps_mean"]))
    return [(name, value, tol, value <= tol) for name, value, tol in rows]


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def teacher_throughput(device: torch.device, quick: bool, compile_model: bool) -> dict:
    """Seconds per teacher epoch over 60,000 28×28 images resident on the device."""
    base = ak.load_dataset("mnist5k", "train")
    n = 4_000 if quick else 60_000
    reps = -(-n // len(base))
    images = base.images.repeat(reps, 1, 1, 1)[:n]
    labels = base.labels.repeat(reps)[:n]
    big = ImageSet(images, labels, name=f"mnist5k x{reps} ({n})")
    torch.manual_seed(0)
    model = ak.teacher_cnn()
    batch = 256 if quick else 512
    hist = ak.train_model(model, big, None, epochs=2, batch_size=batch, device=device,
                          augment=2, progress=False, compile=compile_model)
    warm = hist["time_s"][-1]  # the second epoch: kernels chosen, caches warm
    return {"images": n, "batch": batch, "epoch_s": warm, "images_per_s": n / warm,
            "compile": compile_model}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reduced sizes (CI, CPU)")
    parser.add_argument("--device", default="auto", help="device for the timings")
    parser.add_argument("--compile", action="store_true",
                        help="also time torch.compile: the teacher's training and "
                             "ATCam(compile=MODE)")
    parser.add_argument("--compile-mode", default="default", choices=COMPILE_MODES,
                        help="the torch.compile mode for ATCam (default: default; "
                             "reduce-overhead adds CUDA graphs)")
    parser.add_argument("--out", default=None, help="write the final table as markdown here")
    args = parser.parse_args(argv)
    compile_in_process()
    device = ak.get_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    print(f"device: {device} ({name}); torch {torch.__version__}; atkd_lite {ak.__version__}")
    table: list[tuple[str, str, str]] = []
    failures = 0

    if torch.cuda.is_available():
        print("\n== agreement CPU vs CUDA ==")
        for check, value, tol, ok in agreement(args.quick):
            failures += not ok
            print(f"{'ok  ' if ok else 'FAIL'} {check:44s} {value:.2e} (tolerance {tol:.0e})")
            table.append((check, f"{value:.2e}", f"<= {tol:.0e} {'ok' if ok else 'FAIL'}"))
    else:
        print("\n(no CUDA device: agreement checks skipped)")

    print("\n== teacher training throughput ==")
    runs = [teacher_throughput(device, args.quick, False)]
    if args.compile:
        runs.append(teacher_throughput(device, args.quick, True))
    for r in runs:
        label = "teacher epoch" + (" (torch.compile)" if r["compile"] else "")
        print(f"{label}: {r['images']} images, batch {r['batch']}: {r['epoch_s']:.3f} s "
              f"= {r['images_per_s']:,.0f} images/s")
        goal = "goal < 1 s for 60,000 on H100" if r["images"] == 60_000 else "reduced size"
        table.append((f"{label} ({r['images']} images)", f"{r['epoch_s']:.3f} s", goal))
        table.append((f"{label} throughput", f"{r['images_per_s']:,.0f} img/s", ""))

    print("\n== ATCam cost (bench_atcam) ==")
    import bench_atcam

    batch = 32 if args.quick else 128
    reps, warm = (3, 1) if args.quick else (30, 5)
    notes = {"sals": "reported", bench_atcam.FLOOR: "floor: each captured map read once"}
    for model in bench_atcam.MODELS:
        _, ratios = bench_atcam.bench(device, batch, reps, warm, 28, model,
                                      variants=("plain", "fma", "mip", "sals", bench_atcam.FLOOR))
        for k in ("fma", "mip", "sals", bench_atcam.FLOOR):
            print(f"{model}: {k.upper()} ÷ plain forward: {ratios[k]:.2f}")
            table.append((f"{k.upper()} ÷ plain {model} forward (batch {batch})",
                          f"{ratios[k]:.2f}",
                          notes.get(k, f"goal <= {bench_atcam.goal(device):.2f}")))

    if args.compile:  # the map computation compiled: fewer, fused kernels
        mode = args.compile_mode
        print(f"\n== ATCam cost, map computation compiled (ATCam(compile={mode!r})) ==")
        for model in bench_atcam.MODELS:
            _, ratios = bench_atcam.bench(device, batch, reps, max(warm, 2), 28, model,
                                          variants=("plain", "fma", "mip"), compile=mode)
            for k in ("fma", "mip"):
                print(f"{model}: {k.upper()} (compiled) ÷ plain forward: {ratios[k]:.2f}")
                table.append((f"{k.upper()} ÷ plain {model} forward, compile={mode}",
                              f"{ratios[k]:.2f}", f"goal <= {bench_atcam.goal(device):.2f}"))
        print(f"\n== ATCam cost, network and maps one graph (compile_model, {mode!r}) "
              f"÷ the network compiled alone ==")
        for model in bench_atcam.MODELS:
            _, ratios = bench_atcam.bench(device, batch, reps, max(warm, 3), 28, model,
                                          variants=("plain", "fma", "mip"), compile=mode,
                                          compile_model=True)
            for k in ("fma", "mip"):
                print(f"{model}: {k.upper()} ÷ compiled forward: {ratios[k]:.2f}")
                table.append((f"{k.upper()} ÷ compiled {model} forward, compile_model, "
                              f"{mode}", f"{ratios[k]:.2f}",
                              f"goal <= {bench_atcam.goal(device):.2f}"))

    print("\n== distillation steps (bench_distill) ==")
    import bench_distill

    times = bench_distill.measure(device, 32 if args.quick else 128, 3 if args.quick else 20)
    for label, value, goal in bench_distill.ratio_rows(times, device):
        print(f"{label}: {value:.2f} {goal}")
        table.append((f"distill step: {label}", f"{value:.2f}", goal))
    if args.compile:  # the FMA/MIP steps with both networks' maps and the loss compiled
        mode = args.compile_mode
        print(f"\n== distillation steps, compile_maps={mode!r} ==")
        chosen = ("ce", "kd online", "fma online", "mip online", "fma cached", "mip cached")
        times = bench_distill.measure(device, 32 if args.quick else 128,
                                      3 if args.quick else 20, variants=chosen, compile=mode)
        for label, value, goal in bench_distill.ratio_rows(times, device):
            if goal.startswith("<="):  # the goal rows (not the cache's speed-ups)
                print(f"{label} (compiled): {value:.2f} {goal}")
                table.append((f"distill step: {label}, compile_maps={mode}", f"{value:.2f}",
                              goal))

    print("\n== side by side with torchdistill and Captum (bench_peers) ==")
    import bench_peers

    if not bench_peers.torchdistill_available():
        print(bench_peers.MISSING)
    for r in bench_peers.measure(device, batch, 1 if args.quick else 20,
                                 warmup=1 if args.quick else 2):
        print(f"{r['name']}: ours ÷ peer {r['ratio']:.2f} ({r['check']})")
        table.append((f"peer: {r['name']}, ours ÷ peer", f"{r['ratio']:.2f}", "goal <= 1.0"))

    lines = [f"| check ({device}: {name}) | measured | goal / tolerance |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in table]
    print("\n" + "\n".join(lines))
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")
    if failures:
        print(f"\n{failures} agreement check(s) FAILED")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
