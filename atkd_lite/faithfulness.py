"""Do the maps look at the right place? Attribution maps scored against known boxes.

On the cluttered digits (:func:`atkd_lite.data.cluttered_mnist`) every image has one digit
among fragments of other digits, and its bounding box is known. A map that "looks at the
right place" puts its peak and most of its mass inside that box. This module

- builds every kind of map for a batch with one call, :func:`attribution_maps`:
  ATCam FMA and MIP, SALS (:func:`atkd_lite.saliency_map`), and Captum's ``Saliency``,
  ``IntegratedGradients`` and ``LayerGradCam``;
- scores a model's maps on a dataset with boxes, :func:`score_maps`, with the pointing
  game and the energy inside the box (:mod:`atkd_lite.metrics`);
- runs the whole experiment, :func:`run_faithfulness`: a teacher and students distilled
  with several methods and seeds on the cluttered digits, every map of every model scored
  on the test split, saved with provenance like :func:`atkd_lite.experiments.run_experiment`
  (its runs carry a ``"faithfulness"`` entry). From the command line::

      python -m atkd_lite.faithfulness --output-dir results/cluttered-faithfulness

- reads committed results back (:func:`load_faithfulness`) and tabulates them
  (:func:`faithfulness_summary`, :func:`faithfulness_markdown`).

Every map is normalised per image to [0, 1] (min-max, as ATCam's); class-dependent maps
(SALS, Saliency, IntegratedGradients, GradCAM) explain the model's *predicted* class, so
they show what the model used, right or wrong. IntegratedGradients and Saliency are
scored by magnitude (absolute value); GradCAM keeps Captum's ReLU and is upsampled
bilinearly from the last capture point to the image size.

Defined in the book's chapter "Do the maps look at the right place?".

Examples::

    >>> import atkd_lite as ak
    >>> from atkd_lite.faithfulness import score_maps
    >>> test = ak.load_dataset("cluttered", "test").subset(range(8))
    >>> scores = score_maps(ak.student_cnn("tiny"), test, kinds=("fma", "gradcam"),
    ...                     device="cpu")
    >>> sorted(scores["maps"]), sorted(scores["maps"]["fma"])
    (['fma', 'gradcam'], ['energy', 'pointing'])
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from atkd_lite.atcam import ATCam, normalize_maps
from atkd_lite.data import ImageSet, load_dataset
from atkd_lite.distill import METHODS
from atkd_lite.experiments import (
    ExperimentResults,
    distill_run,
    load_results,
    prepare_experiment,
    simple_settings,
    teacher_cache_for,
)
from atkd_lite.metrics import box_mask, energy_in_box, pointing_game
from atkd_lite.saliency import saliency_map
from atkd_lite.train import get_device

__all__ = [
    "MAP_KINDS",
    "MAP_LABELS",
    "attribution_maps",
    "chance_scores",
    "faithfulness_markdown",
    "faithfulness_summary",
    "load_faithfulness",
    "run_faithfulness",
    "score_maps",
    "scoring_subset",
]

#: the map kinds, in the order of the book's tables
MAP_KINDS = ("fma", "mip", "sals", "saliency", "ig", "gradcam")
#: how tables and figures name them
MAP_LABELS = {"fma": "ATCam FMA", "mip": "ATCam MIP", "sals": "SALS",
              "saliency": "Saliency (Captum)", "ig": "IntegratedGradients",
              "gradcam": "LayerGradCam"}
METRICS = ("pointing", "energy")
DEFAULT_METHODS = ("student", "kd", "fma", "mip", "sals")


def _last_capture_point(model: nn.Module) -> nn.Module:
    if callable(getattr(model, "atkd_capture_points", None)):
        return model.get_submodule(model.atkd_capture_points()[-1])
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(model).__name__} has no Conv2d layer for GradCAM; "
                         "give it an atkd_capture_points() method")
    return convs[-1]


def attribution_maps(model: nn.Module, x: torch.Tensor, kind: str, target=None,
                     ig_steps: int = 16) -> torch.Tensor:
    """One kind of attribution map for a batch, normalised per image to [0, 1].

    Args:
        model (nn.Module): the classifier; put it in eval mode first (BatchNorm).
        x (Tensor): images (B, C, H, W).
        kind (str): one of :data:`MAP_KINDS`: ``"fma"``, ``"mip"`` (ATCam, class-agnostic),
            ``"sals"`` (:func:`~atkd_lite.saliency_map`), ``"saliency"`` (Captum's
            ``Saliency``, absolute gradient), ``"ig"`` (Captum's ``IntegratedGradients``
            from a black image, absolute value), ``"gradcam"`` (Captum's ``LayerGradCam``
            on the last capture point, upsampled).
        target (Tensor or int, optional): class per image; None = the predicted class.
        ig_steps (int): integration steps of IntegratedGradients.

    Returns:
        Tensor: (B, H, W), detached, values in [0, 1] (a map with no variation is all 0).

    Examples::

        >>> import torch, atkd_lite as ak
        >>> from atkd_lite.faithfulness import attribution_maps
        >>> net = ak.student_cnn("tiny").eval()
        >>> attribution_maps(net, torch.rand(2, 1, 28, 28), "gradcam").shape
        torch.Size([2, 28, 28])
    """
    from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Saliency

    if kind not in MAP_KINDS:
        raise ValueError(f"unknown map kind {kind!r}; choose one of {list(MAP_KINDS)}")
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"x must be a batch of images shaped (B, C, H, W), got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if kind in ("fma", "mip"):
        with torch.no_grad():
            return ATCam(model, combine=kind)(x)[1].detach().float()
    if target is None:
        with torch.no_grad():
            target = model(x).argmax(1)
    elif isinstance(target, int):
        target = torch.full((x.shape[0],), target, dtype=torch.long, device=x.device)
    if kind == "sals":
        return saliency_map(model, x, target=target).detach().float()
    x = x.detach().clone().requires_grad_(True)  # Captum needs a leaf with gradients
    if kind == "saliency":
        attr = Saliency(model).attribute(x, target=target, abs=True)
    elif kind == "ig":
        attr = IntegratedGradients(model).attribute(
            x, baselines=torch.zeros_like(x), target=target, n_steps=ig_steps,
            internal_batch_size=max(1, x.shape[0])).abs()
    else:  # gradcam
        attr = LayerGradCam(model, _last_capture_point(model)).attribute(
            x, target=target, relu_attributions=True)
        attr = LayerAttribution.interpolate(attr, tuple(x.shape[-2:]), "bilinear")
    return normalize_maps(attr.detach().float().amax(1))


def chance_scores(boxes: torch.Tensor, size: Sequence[int]) -> dict[str, float]:
    """What a map that knows nothing scores: the mean fraction of the image inside the box.

    A uniform map puts exactly that fraction of its energy in the box, and a peak placed
    uniformly at random lands in the box with that probability, so this is the chance
    level of both :func:`~atkd_lite.metrics.energy_in_box` and
    :func:`~atkd_lite.metrics.pointing_game`.

    Returns:
        dict: ``{"pointing": p, "energy": p}``.
    """
    frac = box_mask(torch.as_tensor(boxes), size).flatten(1).float().mean(1).mean().item()
    return {"pointing": frac, "energy": frac}


def scoring_subset(data: ImageSet, n: int | None, seed: int = 0) -> ImageSet:
    """``n`` images drawn at random (seeded, in index order), or all when ``n`` is None.

    Not the first ``n``: the splits are ordered by class, so a prefix would hold only a
    few classes.
    """
    if n is None or n >= len(data):
        return data
    if n < 1:
        raise ValueError(f"n must be a positive number of images, got {n}")
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n]
    return data.subset(idx.sort().values, name=f"{data.name}[{n} random]")


def score_maps(model: nn.Module, data: ImageSet, kinds: Sequence[str] = MAP_KINDS,
               n: int | None = None, batch_size: int = 100, ig_steps: int = 16,
               device=None) -> dict:
    """Accuracy, pointing game and energy in the box of each kind of map, over ``data``.

    Args:
        model (nn.Module): the classifier (scored in eval mode; its mode is restored).
        data (ImageSet): images with ``boxes`` (e.g. ``load_dataset("cluttered", "test")``).
        kinds (sequence of str): map kinds from :data:`MAP_KINDS`.
        n (int, optional): score only ``n`` images drawn at random with a fixed seed
            (:func:`scoring_subset`; default: all).
        batch_size (int): images per batch.
        ig_steps (int): IntegratedGradients steps.
        device: where to compute (default cuda → mps → cpu).

    Returns:
        dict: ``{"n": images, "accuracy": a, "maps": {kind: {"pointing": p, "energy": e}}}``
        with the means over the images (fractions in [0, 1]).

    Raises:
        ValueError: data without boxes, unknown kinds.
    """
    if getattr(data, "boxes", None) is None:
        raise ValueError(f"{getattr(data, 'name', 'the data')} has no boxes; use a dataset "
                         "with ground-truth boxes, e.g. load_dataset('cluttered', 'test')")
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    bad = [k for k in kinds if k not in MAP_KINDS]
    if bad or not kinds:
        raise ValueError(f"unknown map kind(s) {bad}; choose from {list(MAP_KINDS)}")
    data = scoring_subset(data, n)
    dev = get_device(device)
    was_training = model.training
    model.to(dev).eval()
    sums = {k: {"pointing": 0.0, "energy": 0.0} for k in kinds}
    correct = 0
    try:
        for i in range(0, len(data), batch_size):
            x = data.images[i:i + batch_size].to(dev).float() / 255.0
            y = data.labels[i:i + batch_size].to(dev)
            boxes = data.boxes[i:i + batch_size].to(dev)
            with torch.no_grad():
                pred = model(x).argmax(1)
            correct += (pred == y).sum().item()
            for k in kinds:
                maps = attribution_maps(model, x, k, target=pred, ig_steps=ig_steps)
                sums[k]["pointing"] += pointing_game(maps, boxes).float().sum().item()
                sums[k]["energy"] += energy_in_box(maps, boxes).sum().item()
    finally:
        model.train(was_training)
    total = len(data)
    return {"n": total, "accuracy": correct / total,
            "maps": {k: {m: v / total for m, v in s.items()} for k, s in sums.items()}}


# ---------------------------------------------------------------------------------------
# the experiment

def run_faithfulness(dataset: str = "cluttered", methods: Sequence[str] = DEFAULT_METHODS,
                     seeds: Sequence[int] = (0, 1, 2), per_class: int | None = 100,
                     epochs: int = 30, student_size: str = "small", teacher=None,
                     teacher_epochs: int = 12, kinds: Sequence[str] = MAP_KINDS,
                     score_n: int | None = None, ig_steps: int = 16, output_dir=None,
                     device=None, data_seed: int = 0, progress: bool = True,
                     command: str | None = None, **distill_kwargs) -> ExperimentResults:
    """Teacher and distilled students on a dataset with boxes; every map of every model scored.

    The teacher (:func:`~atkd_lite.train.pretrained_teacher` on ``dataset`` unless given)
    fills one :class:`~atkd_lite.cache.TeacherCache` for the training images; a fresh
    student is distilled with every method and seed from it; then the teacher and every
    student are scored by :func:`score_maps` on the test split.

    Args:
        dataset (str): a dataset with boxes (``"cluttered"``).
        methods (sequence of str): distillation methods (:data:`atkd_lite.distill.METHODS`).
        seeds (sequence of int): one student per method and seed.
        per_class (int, optional): training images per class (None: the whole split).
        epochs (int): student epochs.
        student_size (str): ``tiny`` / ``small`` / ``medium``.
        teacher (nn.Module, optional): a trained teacher.
        teacher_epochs (int): epochs of the default teacher.
        kinds (sequence of str): map kinds to score.
        score_n (int, optional): score on ``score_n`` test images drawn at random with a
            fixed seed (None: all).
        ig_steps (int): IntegratedGradients steps.
        output_dir (path, optional): write results.json/.csv/.md/.png there.
        device: cuda → mps → cpu by default.
        data_seed (int): picks the low-data subset.
        progress (bool): progress bars and one line per run.
        command (str, optional): the command recorded in the provenance.
        **distill_kwargs: passed to :func:`~atkd_lite.distill.distill`.

    Returns:
        ExperimentResults: as :func:`~atkd_lite.experiments.run_experiment`, and each run
        (and ``teacher``) has ``"faithfulness"``: the dict of :func:`score_maps`; the
        settings hold ``kinds``, ``score_n`` and ``chance`` (:func:`chance_scores`).
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
    if not seeds:
        raise ValueError("give at least one seed")
    if load_dataset(dataset, "test").boxes is None:
        raise ValueError(f"{dataset} has no boxes; use dataset='cluttered'")
    setup = prepare_experiment(dataset, per_class, data_seed, teacher, teacher_epochs, device,
                               progress, command)
    train, test, dev, t_start = setup.train, setup.test, setup.device, setup.t_start
    scored = scoring_subset(test, score_n)
    teacher_info = {**setup.teacher_info,
                    "faithfulness": score_maps(setup.teacher, scored, kinds, ig_steps=ig_steps,
                                               device=dev)}
    cache = teacher_cache_for(setup, methods, progress, **distill_kwargs)
    settings = {"dataset": dataset, "train_name": train.name, "train_size": len(train),
                "test_name": test.name, "test_size": len(test), "per_class": per_class,
                "data_seed": data_seed, "student_size": student_size, "epochs": epochs,
                "methods": list(methods), "seeds": list(seeds), "cached": True,
                "kinds": list(kinds), "score_n": len(scored), "ig_steps": ig_steps,
                "chance": chance_scores(scored.boxes, scored.image_size),
                "distill": simple_settings(distill_kwargs)}
    results = ExperimentResults(settings=settings, teacher=teacher_info,
                                provenance=setup.provenance)
    for method in methods:
        for seed in seeds:
            res, record = distill_run(setup, method, seed, epochs, student_size, cache,
                                      **distill_kwargs)
            scores = score_maps(res.student, scored, kinds, ig_steps=ig_steps, device=dev)
            results.runs.append({**record, "faithfulness": scores})
            if output_dir is not None:  # an interrupted experiment keeps its finished runs
                results.provenance["wall_time_s"] = time.perf_counter() - t_start
                results.save(output_dir)
            if progress:
                fma = scores["maps"].get("fma", {}).get("energy", float("nan"))
                print(f"{method:8s} seed {seed}: test accuracy {100 * res.test_acc:.2f}%, "
                      f"FMA energy in box {100 * fma:.1f}%", flush=True)
    results.provenance["wall_time_s"] = time.perf_counter() - t_start
    if output_dir is not None:
        results.save(output_dir)
        _write_faithfulness_md(results, Path(output_dir))
    return results


def _write_faithfulness_md(results: ExperimentResults, out: Path) -> None:
    text = "\n\n".join(faithfulness_markdown(results, m) for m in METRICS) + "\n"
    tmp = out / ".faithfulness.md.tmp"
    tmp.write_text(text)
    tmp.replace(out / "faithfulness.md")


# ---------------------------------------------------------------------------------------
# reading and tabulating

def load_faithfulness(name="cluttered-faithfulness") -> ExperimentResults:
    """Committed faithfulness results by name (shipped with the package), or from a path.

    A plain name is looked up in the package's ``_results`` folder, so it works wherever
    the package is installed (e.g. Colab); anything else is passed to
    :func:`atkd_lite.experiments.load_results`.

    Raises:
        FileNotFoundError: no such results; ValueError: results without map scores.
    """
    res = load_results(name)
    if "faithfulness" not in res.teacher and not any("faithfulness" in r for r in res.runs):
        raise ValueError(f"{name} holds no map scores; make them with run_faithfulness()")
    return res


def faithfulness_summary(results: ExperimentResults) -> list[dict]:
    """One row per model (teacher first, then each method) and map kind.

    Each row: ``model``, ``kind``, ``n`` (seeds), ``accuracy`` and ``accuracy_std``
    (test accuracy over seeds), and the mean and sample std over seeds of each metric:
    ``pointing``, ``pointing_std``, ``energy``, ``energy_std`` (fractions in [0, 1]).
    The teacher is one model, so its stds are 0.
    """
    groups: dict[str, list[dict]] = {}
    if results.teacher.get("faithfulness"):
        groups["teacher"] = [{"test_acc": results.teacher["test_acc"],
                              "faithfulness": results.teacher["faithfulness"]}]
    for run in results.runs:
        if "faithfulness" in run:
            groups.setdefault(run["method"], []).append(run)

    def mean_std(values):
        return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)

    rows = []
    for model, runs in groups.items():
        acc, acc_std = mean_std([r["test_acc"] for r in runs])
        for kind in runs[0]["faithfulness"]["maps"]:
            row = {"model": model, "kind": kind, "n": len(runs), "accuracy": acc,
                   "accuracy_std": acc_std}
            for metric in METRICS:
                row[metric], row[f"{metric}_std"] = mean_std(
                    [r["faithfulness"]["maps"][kind][metric] for r in runs])
            rows.append(row)
    return rows


def faithfulness_markdown(results: ExperimentResults, metric: str = "energy") -> str:
    """A table: models as rows, map kinds as columns, ``metric`` in % (mean ± std over seeds)."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {list(METRICS)}, got {metric!r}")
    rows = faithfulness_summary(results)
    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    title = {"pointing": "pointing game (% of images whose map peaks inside the box)",
             "energy": "energy in the box (% of the map's mass inside the box)"}[metric]
    s = results.settings
    chance = s.get("chance", {}).get(metric)
    lines = [f"{title}, on {s.get('score_n')} images of {s.get('test_name')}; students: "
             f"mean ± std over seeds {s.get('seeds')}"
             + (f"; chance level {100 * chance:.1f}%" if chance is not None else "") + ".", "",
             "| model | test acc. (%) | " + " | ".join(MAP_LABELS.get(k, k) for k in kinds) + " |",
             "|---" * (len(kinds) + 2) + "|"]
    for model in models:
        cells = {r["kind"]: r for r in rows if r["model"] == model}
        first = next(iter(cells.values()))
        acc = f"{100 * first['accuracy']:.1f}"
        if first["n"] > 1:
            acc += f" ± {100 * first['accuracy_std']:.1f}"
        vals = []
        for k in kinds:
            r = cells.get(k)
            if r is None:
                vals.append("")
                continue
            v = f"{100 * r[metric]:.1f}"
            vals.append(v + (f" ± {100 * r[metric + '_std']:.1f}" if r["n"] > 1 else ""))
        lines.append(f"| {model} | {acc} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# command line

def main(argv: list[str] | None = None) -> int:
    """``python -m atkd_lite.faithfulness``: run :func:`run_faithfulness` and save it."""
    p = argparse.ArgumentParser(prog="atkd-lite faithfulness",
                                description="Teacher and distilled students on the cluttered "
                                            "digits; score every attribution map against the "
                                            "digit's box.")
    p.add_argument("--output-dir", default="results/cluttered-faithfulness")
    p.add_argument("--dataset", default="cluttered")
    p.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--per-class", type=int, default=100,
                   help="training images per class; 0 = the whole training split")
    p.add_argument("--epochs", type=int, default=30, help="student epochs")
    p.add_argument("--teacher-epochs", type=int, default=12)
    p.add_argument("--student-size", default="small", choices=["tiny", "small", "medium"])
    p.add_argument("--kinds", nargs="+", default=list(MAP_KINDS), choices=list(MAP_KINDS))
    p.add_argument("--score-n", type=int, default=0, help="test images to score; 0 = all")
    p.add_argument("--ig-steps", type=int, default=16)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    bad = [m for m in args.methods if m not in METHODS]
    if bad:
        p.error(f"unknown method(s) {bad}; choose from {', '.join(METHODS)}")
    if args.epochs < 1 or args.teacher_epochs < 1 or args.per_class < 0 or args.score_n < 0:
        p.error("epochs must be >= 1; --per-class and --score-n must be >= 0")
    command = " ".join(["python -m atkd_lite.faithfulness",
                        *(argv if argv is not None else sys.argv[1:])])
    res = run_faithfulness(dataset=args.dataset, methods=args.methods, seeds=args.seeds,
                           per_class=args.per_class or None, epochs=args.epochs,
                           student_size=args.student_size, teacher_epochs=args.teacher_epochs,
                           kinds=args.kinds, score_n=args.score_n or None,
                           ig_steps=args.ig_steps, output_dir=args.output_dir,
                           device=args.device, progress=not args.no_progress, command=command)
    print(faithfulness_markdown(res, "energy"))
    print(faithfulness_markdown(res, "pointing"))
    print(f"wrote {args.output_dir}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
