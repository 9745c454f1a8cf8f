"""Do the maps look at the right place? Attribution maps scored against known boxes.

On the cluttered digits (:func:`atkd_lite.data.cluttered_mnist`) every image has one digit
among fragments of other digits, and its bounding box is known. A map that "looks at the
right place" puts its peak and most of its mass inside that box. This module

- scores a model's maps (every kind of :func:`atkd_lite.attributions.attribution_maps`)
  on a dataset with boxes, :func:`score_maps`, with the pointing game and the energy
  inside the box (:mod:`atkd_lite.metrics`);
- runs the whole experiment, :func:`run_faithfulness`: a teacher and students distilled
  with several methods and seeds on the cluttered digits (the one grid runner), every
  map of every model scored on the test split, saved with provenance (its runs carry a
  ``"faithfulness"`` entry). From the command line::

      atkd-lite faithfulness --output-dir results/cluttered-faithfulness

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
    >>> from atkd_lite.experiments.faithfulness import score_maps
    >>> test = ak.load_dataset("cluttered", "test").subset(range(8))
    >>> scores = score_maps(ak.student_cnn("tiny"), test, kinds=("fma", "gradcam"),
    ...                     device="cpu")
    >>> sorted(scores["maps"]), sorted(scores["maps"]["fma"])
    (['fma', 'gradcam'], ['deletion', 'energy', 'insertion', 'pointing'])
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from atkd_lite.attributions import BASELINES, attribution_maps, model_randomisation
from atkd_lite.data import ImageSet, load_dataset
from atkd_lite.device import eval_mode, get_device
from atkd_lite.experiments.results import ExperimentResults, load_results
from atkd_lite.experiments.runner import (
    GridCell,
    check_grid,
    grid_settings,
    prepare_experiment,
    run_grid,
    teacher_cache_for,
)
from atkd_lite.files import atomic_write
from atkd_lite.metrics import (
    box_mask,
    curve_area,
    deletion_curve,
    energy_in_box,
    insertion_curve,
    pointing_game,
)
from atkd_lite.models import teacher_cnn

__all__ = [
    "DEFAULT_METHODS",
    "MAP_KINDS",
    "MAP_LABELS",
    "METRICS",
    "chance_scores",
    "faithfulness_markdown",
    "faithfulness_summary",
    "load_faithfulness",
    "run_faithfulness",
    "score_maps",
    "scoring_subset",
]

#: the map kinds in the order of the book's tables (the model's maps, then the baselines)
MAP_KINDS = ("fma", "mip", "sals", "saliency", "ig", "gradcam", *BASELINES)
#: how tables and figures name them
MAP_LABELS = {"fma": "ATCam FMA", "mip": "ATCam MIP", "sals": "SALS",
              "saliency": "Saliency (Captum)", "ig": "IntegratedGradients",
              "gradcam": "LayerGradCam", "random": "random", "intensity": "input intensity",
              "edges": "input edges", "centre": "centre prior"}
#: the scores, each a mean over images, are the pointing game and energy in the box (against the
#: box); the areas under the deletion curve (lower is better, the map found the evidence
#: sooner) and the insertion curve (higher is better), on the predicted class's probability
METRICS = ("pointing", "energy", "deletion", "insertion")
#: the fractions of pixels deleted / inserted for the curves
FRACTIONS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
DEFAULT_METHODS = ("student", "kd", "fma", "mip", "sals")
#: the maps checked by cascading model randomisation (one input-only map as reference)
RANDOMISATION_KINDS = ("fma", "mip", "sals", "ig", "gradcam", "intensity")


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
    """Accuracy, and for each kind of map: pointing game, energy in the box, and the areas
    under the deletion and insertion curves (:data:`METRICS`), over ``data``.

    Class-specific maps explain the model's predicted class, and the curves score that
    class's probability.

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
        dict: ``{"n": images, "accuracy": a, "maps": {kind: {metric: value}}}`` with the
        means over the images (fractions in [0, 1]).

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
    model.to(dev)
    sums = {k: dict.fromkeys(METRICS, 0.0) for k in kinds}
    correct = 0
    with eval_mode(model):
        for i in range(0, len(data), batch_size):
            x = data.images[i:i + batch_size].to(dev).float() / 255.0
            y = data.labels[i:i + batch_size].to(dev)
            boxes = data.boxes[i:i + batch_size].to(dev)
            with torch.no_grad():
                pred = model(x).argmax(1)
            correct += (pred == y).sum().item()
            for k in kinds:
                maps = attribution_maps(model, x, k, target=pred, n_steps=ig_steps,
                                        internal_batch_size=max(1, x.shape[0]))
                b = x.shape[0]
                sums[k]["pointing"] += pointing_game(maps, boxes).sum().item()
                sums[k]["energy"] += energy_in_box(maps, boxes).sum().item()
                for name, curve in (("deletion", deletion_curve),
                                    ("insertion", insertion_curve)):
                    sums[k][name] += b * curve_area(FRACTIONS, curve(model, x, pred, maps,
                                                                     FRACTIONS))
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
                     command: str | None = None, randomisation_n: int = 64,
                     **distill_kwargs) -> ExperimentResults:
    """Teacher and distilled students on a dataset with boxes; every map of every model scored.

    The teacher (:func:`~atkd_lite.checkpoints.pretrained_teacher` on ``dataset`` unless given)
    fills one :class:`~atkd_lite.cache.TeacherCache` for the training images; a fresh
    student is distilled with every method and seed from it; then the teacher and every
    student are scored by :func:`score_maps` on the test split.

    Args:
        dataset (str): a dataset with boxes (``"cluttered"``).
        methods (sequence of str): distillation methods (:data:`atkd_lite.methods.registry.METHODS`).
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
        randomisation_n (int): images for the model-randomisation check.
        **distill_kwargs: passed to :func:`~atkd_lite.engine.distill`.

    Returns:
        ExperimentResults: as :func:`~atkd_lite.experiments.lowdata.run_experiment`, and each
        run (and ``teacher``) has ``"faithfulness"``: the dict of :func:`score_maps`; the
        settings hold ``kinds``, ``score_n``, ``chance`` (:func:`chance_scores`),
        ``untrained`` (the scores of an untrained network of the teacher's architecture)
        and ``randomisation`` (:func:`~atkd_lite.attributions.model_randomisation` of the
        teacher on ``randomisation_n`` scored images).
    """
    check_grid(methods, seeds)
    if load_dataset(dataset, "test").boxes is None:
        raise ValueError(f"{dataset} has no boxes; use dataset='cluttered'")
    setup = prepare_experiment(dataset, per_class, data_seed, teacher, teacher_epochs, device,
                               progress, command)
    scored = scoring_subset(setup.test, score_n)

    def score(model) -> dict:
        return {"faithfulness": score_maps(model, scored, kinds, ig_steps=ig_steps,
                                           device=setup.device)}

    setup.teacher_info.update(score(setup.teacher))
    torch.manual_seed(0)
    untrained = teacher_cnn(in_channels=setup.train.in_channels,
                            num_classes=setup.train.num_classes)
    x = scored.images[:randomisation_n].to(setup.device).float() / 255.0
    randomisation = model_randomisation(setup.teacher, x, kinds=RANDOMISATION_KINDS,
                                        n_steps=ig_steps)
    cache = teacher_cache_for(setup, methods, progress, **distill_kwargs)
    settings = grid_settings(dataset, setup, per_class=per_class, data_seed=data_seed,
                             student_size=student_size, epochs=epochs, methods=methods,
                             seeds=seeds, cached=True, distill_kwargs=distill_kwargs,
                             kinds=list(kinds), score_n=len(scored), ig_steps=ig_steps,
                             chance=chance_scores(scored.boxes, scored.image_size),
                             untrained=score(untrained)["faithfulness"],
                             randomisation=randomisation, randomisation_n=len(x))
    results = run_grid(setup, settings, [GridCell(m, student_size) for m in methods], seeds,
                       epochs, cache, score=lambda res: score(res.student),
                       output_dir=output_dir, progress=progress, **distill_kwargs)
    if output_dir is not None:
        _write_faithfulness_md(results, Path(output_dir))
    return results


def _write_faithfulness_md(results: ExperimentResults, out: Path) -> None:
    text = "\n\n".join(faithfulness_markdown(results, m) for m in METRICS) + "\n"
    atomic_write(out / "faithfulness.md", text.encode())


# ---------------------------------------------------------------------------------------
# reading and tabulating

def load_faithfulness(name="cluttered-faithfulness") -> ExperimentResults:
    """Committed faithfulness results by name (shipped with the package), or from a path.

    A plain name is looked up in the package's ``_results`` folder, so it works wherever
    the package is installed (e.g. Colab); anything else is passed to
    :func:`atkd_lite.experiments.results.load_results`.

    Raises:
        FileNotFoundError: no such results; ValueError: results without map scores.
    """
    res = load_results(name)
    if "faithfulness" not in res.teacher and not any("faithfulness" in r for r in res.runs):
        raise ValueError(f"{name} holds no map scores; make them with run_faithfulness()")
    return res


def faithfulness_summary(results: ExperimentResults) -> list[dict]:
    """One row per model (teacher first, an untrained network of its architecture, then
    each method) and map kind.

    Each row: ``model``, ``kind``, ``n`` (seeds), ``accuracy`` and ``accuracy_std``
    (test accuracy over seeds), and the mean and sample std over seeds of each metric
    present (:data:`METRICS`; fractions in [0, 1]). The teacher and the untrained network
    are one model each, so their stds are 0.
    """
    groups: dict[str, list[dict]] = {}
    if results.teacher.get("faithfulness"):
        groups["teacher"] = [{"test_acc": results.teacher["test_acc"],
                              "faithfulness": results.teacher["faithfulness"]}]
    if results.settings.get("untrained"):
        groups["untrained"] = [{"test_acc": results.settings["untrained"]["accuracy"],
                                "faithfulness": results.settings["untrained"]}]
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
                if metric in runs[0]["faithfulness"]["maps"][kind]:
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
    title = {"pointing": "pointing game (% of images whose map peaks inside the box; "
                         "ties share the hit)",
             "energy": "energy in the box (% of the map's mass inside the box)",
             "deletion": "area under the deletion curve (% probability of the predicted "
                         "class; lower: the map found the evidence sooner)",
             "insertion": "area under the insertion curve (% probability of the predicted "
                          "class; higher: the map found the evidence sooner)"}[metric]
    s = results.settings
    chance = s.get("chance", {}).get(metric) if metric in ("pointing", "energy") else None
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
            if r is None or metric not in r:
                vals.append("")
                continue
            v = f"{100 * r[metric]:.1f}"
            vals.append(v + (f" ± {100 * r[metric + '_std']:.1f}" if r["n"] > 1 else ""))
        lines.append(f"| {model} | {acc} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"
