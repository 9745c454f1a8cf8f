"""Shortcuts: can the teacher's eyes keep the student from learning the wrong thing?

On the decoy digits (:func:`atkd_lite.data.decoy_mnist`, the recipe of Ross, Hughes &
Doshi-Velez 2017) every training image has a grey swatch in a corner whose shade is the
label's with probability ρ: a shortcut that predicts the training labels without looking
at the digit. At test time the shade is random, so a student that learnt the swatch
instead of the digit loses accuracy. The teacher never saw a swatch (it is the book's
teacher, trained on the clean digits), so its eyes are on the digit; attention-guided
distillation asks the student to look where the teacher looks. Does that protect the
student from the shortcut?

This module

- refuses a teacher that itself reads the swatch (:func:`check_teacher`: its accuracy on
  the *flipped* split, where the swatch always names a wrong class, must not fall more
  than ``max_teacher_gap`` below its accuracy on clean digits);
- adds the reference of the explanation-regularisation literature,
  :class:`~atkd_lite.methods.rrr.RRRDistiller` ("right for the right reasons": the student's input gradient is
  penalised inside the *true* swatch mask, which a practitioner would not have);
- runs the whole experiment, :func:`run_shortcut`, on the one grid runner: for every ρ,
  the attention weight of each method tuned on a validation split drawn from the
  *training* distribution (:func:`tune_weights`), then every method × seed, each student
  scored on the random-shade test split (the headline), the flipped split, the clean
  split, and by where its maps put their mass (swatch or digit; :func:`swatch_scores`);
  plus the student trained on the same digits without swatches (the ceiling). From the
  command line::

      atkd-lite shortcut --output-dir results/decoy-shortcut

- reads committed results back and states what they say with the book's one statistical
  protocol (:func:`shortcut_verdicts`, :func:`accuracy_table`, :func:`shortcut_markdown`),
  next to the numbers the original papers report (:data:`PUBLISHED`). A grid stopped
  part-way is stated as such: :func:`grid_status` says which ρ and references have runs,
  every table and verdict uses only those (:func:`rhos_with_runs`), and
  :func:`completion_command` gives the command that runs the whole grid;
  :func:`merge_shortcut` joins parts of one grid run side by side (one ρ per core).

Defined in the book's chapter "Shortcuts".

Examples::

    >>> import torch, atkd_lite as ak
    >>> from atkd_lite.data import decoy_mnist
    >>> from atkd_lite.experiments.shortcut import RRRDistiller
    >>> train = decoy_mnist("train").per_class(2)
    >>> RRR = RRRDistiller.for_data(train)          # bound to the true swatch masks
    >>> d = RRR(ak.student_cnn("tiny"), ak.teacher_cnn().eval(), beta=10.0)
    >>> logits, terms = d.forward_train(train.float_images()[:4], train.labels[:4],
    ...                                 torch.arange(4))
    >>> sorted(terms)
    ['loss', 'loss_att', 'loss_ce']
"""

from __future__ import annotations

import copy
import dataclasses
import math
import statistics
import time
from collections.abc import Sequence

import torch
from torch import nn

from atkd_lite.attributions import attribution_maps
from atkd_lite.checks import check_int, check_number
from atkd_lite.data import DecoySet, decoy_mnist
from atkd_lite.device import eval_mode, get_device
from atkd_lite.engine import evaluate
from atkd_lite.experiments.faithfulness import scoring_subset
from atkd_lite.experiments.results import ExperimentResults, check_parts, load_results
from atkd_lite.experiments.runner import (
    ExperimentSetup,
    GridCell,
    check_grid,
    grid_settings,
    prepare_experiment,
    run_grid,
    teacher_cache_for,
)
from atkd_lite.experiments.stats import (
    BETTER,
    EQUIVALENT,
    compare_methods,
    compare_pairs,
    comparison_markdown,
    format_p,
    verdict_sentence,
)
from atkd_lite.files import atomic_write
from atkd_lite.methods import (
    METHODS,
    ATDistiller,
    RRRDistiller,  # noqa: F401 (its first home: chapter 8, old code)
    parse_method,
)
from atkd_lite.metrics import box_mask, energy_in_box
from atkd_lite.models import MLP_STUDENTS, build_student

__all__ = [
    "CONTROLS",
    "CONTROL_PAIRS",
    "DEFAULT_METHODS",
    "EVAL_SPLITS",
    "MAP_KINDS",
    "MLP_METHODS",
    "PUBLISHED",
    "REFERENCES",
    "SELECT_ON",
    "ShortcutTeacherError",
    "accuracy_table",
    "check_teacher",
    "completion_command",
    "grid_status",
    "headline_markdown",
    "control_cells",
    "control_comparisons",
    "load_shortcut",
    "map_kinds_for",
    "map_markdown",
    "merge_shortcut",
    "published_markdown",
    "rhos_with_runs",
    "run_shortcut",
    "shortcut_markdown",
    "shortcut_values",
    "shortcut_verdicts",
    "swatch_scores",
    "tune_weights",
    "tuning_hindsight",
    "tuning_markdown",
    "chosen_weights_markdown",
    "switched_off",
    "prior_clause",
    "teacher_mask_answer",
    "won_back",
    "won_back_markdown",
]

#: the practitioner's methods, in the order of the book's tables
DEFAULT_METHODS = ("student", "kd", "at", "fma", "mip", "sals", "at+kd", "fma+kd", "mip+kd",
                   "sals+kd")
#: the two references that use what a practitioner would not have, the true swatch mask
#: (``rrr``) and data without the shortcut (``clean``)
REFERENCES = ("rrr", "clean")
#: where each student is evaluated (``test`` is the headline: random shades)
EVAL_SPLITS = ("test", "flipped", "clean")
#: the maps scored for where their mass lies
MAP_KINDS = ("sals", "gradcam", "fma", "mip")
#: the methods of the MLP testbed (:mod:`atkd_lite.experiments.testbed`): an MLP has no
#: capture points, so only terms made from input gradients apply; ``tmask`` and
#: ``tmask-fma`` use the clean teacher's map as RRR's mask (:mod:`atkd_lite.methods.tmask`)
MLP_METHODS = ("student", "kd", "sals", "sals+kd", "tmask", "tmask+kd", "tmask-fma",
               "tmask-fma+kd")
#: the controls of ``controls=True``: does the *teacher's* map do the work, or would any
#: mask, or no mask at all? Each takes the tuned weight of the method it controls
CONTROLS = {
    "rrr-wrong": "RRR with its mask on the opposite corner of the image (a wrong mask), "
                 "at RRR's weight",
    "rrr-all": "RRR with every pixel as the mask (a plain input-gradient penalty, no map), "
               "at tmask's weight",
    "tmask-shuffled": "tmask with the teacher maps of other images (a wrong teacher map), "
                      "at tmask's weight",
    "rrr-centre": "RRR with its mask at the centre of the image, where no swatch ever is "
                  "(a mask that misses the shortcut), at RRR's weight",
}
#: the tuned method whose weight each control takes
_CONTROL_BASE = {"rrr-wrong": "rrr", "rrr-all": "tmask", "tmask-shuffled": "tmask",
                 "rrr-centre": "rrr"}

#: Decoy MNIST test accuracy (%) reported by the original papers (other networks and
#: data sizes than ours): Ross et al.'s multilayer perceptron (two hidden layers of 50 and
#: 30 units) on all 60,000 MNIST digits, from the stored outputs of the authors' notebook
#: ``experiments/Decoy MNIST.ipynb`` (dtak/rrr); and Rieger et al.'s Table "Results on
#: Grayscale Decoy set" (ICLR 2020 submission; their λ was chosen on the *test* accuracy).
PUBLISHED = {
    "ross2017right": {"network": "MLP 784-50-30-10, 60,000 digits",
                      "results": {"student": 51.55, "rrr": 96.07, "clean": 96.11}},
    "rieger2020interpretations": {"network": "their network and decoy (5x5 patch)",
                                  "results": {"student": 60.1, "rrr": 99.0, "cdep": 97.2,
                                              "expected gradients": 97.8}},
}


class ShortcutTeacherError(ValueError):
    """The teacher reads the swatch itself, so its eyes cannot guide a student away from it."""


# ---------------------------------------------------------------------------------------
# the teacher, and where the maps look

def check_teacher(teacher: nn.Module, swatch: int = 4, max_gap: float = 0.05,
                  device=None) -> dict:
    """Measure a teacher on the decoy test splits; refuse it if it reads the swatch.

    On the ``flipped`` split the swatch always has a wrong class's shade, so a network
    that reads it loses accuracy there; one that looks at the digit does not.

    Args:
        teacher (nn.Module): the candidate teacher.
        swatch (int): the swatch side of the experiment.
        max_gap (float): the largest accepted drop from clean to flipped accuracy (0–1).
        device: where to evaluate.

    Returns:
        dict: ``{"test_acc", "flipped_acc", "clean_acc"}`` (fractions).

    Raises:
        ShortcutTeacherError: flipped accuracy more than ``max_gap`` below clean accuracy.
    """
    check_number("max_gap", max_gap, 0.0, 1.0)
    accs = {f"{s}_acc": evaluate(teacher, decoy_mnist(s, swatch=swatch), device=device)
            for s in EVAL_SPLITS}
    gap = accs["clean_acc"] - accs["flipped_acc"]
    if gap > max_gap:
        raise ShortcutTeacherError(
            f"this teacher reads the swatch: {100 * accs['flipped_acc']:.1f}% on the flipped "
            f"split vs {100 * accs['clean_acc']:.1f}% on clean digits (a drop of "
            f"{100 * gap:.1f} points, more than the {100 * max_gap:.1f} allowed), so it "
            "cannot show a student where not to look; train it on clean digits or on decoy "
            "digits with random shades (decoy_mnist('train', rho=0.0))")
    return accs


def swatch_scores(model: nn.Module, data: DecoySet, kinds: Sequence[str] = MAP_KINDS,
                  batch_size: int = 250, device=None) -> dict:
    """Where a model's maps put their mass: on the swatch, on the digit, or elsewhere.

    Maps explain the model's *predicted* class (:func:`atkd_lite.attributions.attribution_maps`,
    min-max normalised per image); each is scored with
    :func:`~atkd_lite.metrics.energy_in_box` on the swatch's box and on the digit's box.

    Args:
        model (nn.Module): the classifier (eval mode during the call).
        data (DecoySet): images with digit and swatch boxes.
        kinds (sequence of str): map kinds from :data:`MAP_KINDS`.
        batch_size (int): images per batch.
        device: where to compute.

    Returns:
        dict: ``{kind: {"swatch": s, "digit": d}}``, means over the images (fractions).

    Raises:
        TypeError: data that is not a DecoySet; ValueError: unknown kinds.

    Examples::

        >>> import atkd_lite as ak
        >>> from atkd_lite.data import decoy_mnist
        >>> from atkd_lite.experiments.shortcut import swatch_scores
        >>> s = swatch_scores(ak.student_cnn("tiny"), decoy_mnist("test").subset(range(8)),
        ...                   kinds=("fma",), device="cpu")
        >>> sorted(s["fma"])
        ['digit', 'swatch']
    """
    if not isinstance(data, DecoySet):
        raise TypeError(f"swatch_scores needs a DecoySet (decoy_mnist(...)), got "
                        f"{type(data).__name__}")
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    bad = [k for k in kinds if k not in MAP_KINDS]
    if bad or not kinds:
        raise ValueError(f"unknown map kind(s) {bad}; choose from {list(MAP_KINDS)}")
    dev = get_device(device)
    model.to(dev)
    sums = {k: {"swatch": 0.0, "digit": 0.0} for k in kinds}
    with eval_mode(model):
        for i in range(0, len(data), batch_size):
            x = data.images[i:i + batch_size].to(dev).float() / 255.0
            with torch.no_grad():
                pred = model(x).argmax(1)
            for k in kinds:
                maps = attribution_maps(model, x, k, target=pred)
                for part, boxes in (("swatch", data.swatch_boxes), ("digit", data.boxes)):
                    sums[k][part] += energy_in_box(maps, boxes[i:i + batch_size]).sum().item()
    return {k: {part: v / len(data) for part, v in s.items()} for k, s in sums.items()}


def map_kinds_for(model: nn.Module) -> tuple[str, ...]:
    """The kinds of :data:`MAP_KINDS` that apply to ``model``: Grad-CAM, FMA and MIP need
    convolutional feature maps, the saliency map only an input gradient.

    Examples::

        >>> import atkd_lite as ak
        >>> map_kinds_for(ak.student_mlp()), len(map_kinds_for(ak.student_cnn()))
        (('sals',), 4)
    """
    if any(isinstance(m, nn.Conv2d) for m in model.modules()):
        return MAP_KINDS
    return ("sals",)


# ---------------------------------------------------------------------------------------
# the experiment

def _with_mask_boxes(data: DecoySet, where: str) -> DecoySet:
    """The same digits, with the boxes RRR reads its masks from moved (a control):
    ``"opposite"`` mirrors each swatch box to the opposite corner, ``"centre"`` moves it
    (its size kept) to the middle of the image, where no swatch ever is, ``"all"`` covers
    the whole image."""
    h, w = data.image_size
    b = data.swatch_boxes
    if where == "opposite":
        boxes = torch.stack([w - b[:, 2], h - b[:, 3], w - b[:, 0], h - b[:, 1]], 1)
    elif where == "centre":
        bw, bh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        x0, y0 = (w - bw) // 2, (h - bh) // 2
        boxes = torch.stack([x0, y0, x0 + bw, y0 + bh], 1)
    else:
        boxes = torch.tensor([[0, 0, w, h]]).expand(len(b), 4).clone()
    return dataclasses.replace(data, swatch_boxes=boxes, name=f"{data.name}/mask={where}")


#: the methods whose weights the controls take
_CONTROLLED = ("tmask", "rrr")
#: the one family of control comparisons, each method against its control (wherever
#: it is shown, the same family, so the same Holm-adjusted p)
CONTROL_PAIRS = (("tmask", "rrr-all"), ("tmask", "tmask-shuffled"), ("rrr", "rrr-wrong"))


def control_comparisons(results: ExperimentResults, rho: float = 1.0) -> list[dict]:
    """:data:`CONTROL_PAIRS` compared on paired seeds at one ρ, as one Holm family
    (rows of :func:`~atkd_lite.experiments.stats.compare_pairs`), with the book's
    equivalence margin of one point (:data:`~atkd_lite.experiments.questions.ONE_POINT`):
    "the map adds nothing over its control" is a claim of equivalence, not the absence
    of a detected difference."""
    from atkd_lite.experiments.questions import ONE_POINT

    return compare_pairs(shortcut_values(results, rho), list(CONTROL_PAIRS),
                         margin=ONE_POINT)


def control_cells(train: DecoySet, cache, betas: dict, student_size: str,
                  rho: float, names: Sequence[str] = tuple(CONTROLS)) -> list[GridCell]:
    """The grid cells of :data:`CONTROLS` at one ρ: RRR with a wrong mask, with a mask
    that misses every swatch and with every pixel as the mask (on ``train`` with moved
    mask boxes), and ``tmask`` with another image's teacher map (``cache.shuffled``).

    Args:
        train: the decoy training digits of this ρ.
        cache: the teacher cache of the grid (holding the ``sals`` maps).
        betas: the tuned weights; needs ``rrr`` and ``tmask``.
        student_size: the student.
        rho: the ρ the cells are labelled with.
        names: which controls (default: all of :data:`CONTROLS`).

    Raises:
        ValueError: an unknown control, or ``betas`` lacks the weight a control takes
            (run its method in the grid).
    """
    names = _check_controls(names)
    missing = sorted({_CONTROL_BASE[n] for n in names} - set(betas))
    if missing:
        raise ValueError(f"the controls need the weights of {missing}: put 'tmask' in the "
                         "methods and 'rrr' in the references")

    def cell(method, name, weight, **kw):
        return GridCell(method, student_size, name=f"rho={rho:g}/{name}",
                        extra={"rho": rho, "base_method": name, "beta": weight,
                               "control": CONTROLS[name]},
                        settings={"beta": weight}, **kw)

    make = {
        "rrr-wrong": lambda: cell("rrr", "rrr-wrong", betas["rrr"],
                                  train=_with_mask_boxes(train, "opposite")),
        "rrr-all": lambda: cell("rrr", "rrr-all", betas["tmask"],
                                train=_with_mask_boxes(train, "all")),
        "tmask-shuffled": lambda: cell("tmask", "tmask-shuffled", betas["tmask"],
                                       cache=cache.shuffled(seed=0)),
        "rrr-centre": lambda: cell("rrr", "rrr-centre", betas["rrr"],
                                   train=_with_mask_boxes(train, "centre")),
    }
    return [make[n]() for n in names]


def _check_controls(controls) -> list[str]:
    """The control names of ``controls`` (True: all, False/None/empty: none).

    Raises:
        ValueError: an unknown control name.
    """
    if controls is True:
        return list(CONTROLS)
    if not controls:
        return []
    names = [controls] if isinstance(controls, str) else list(controls)
    unknown = [n for n in names if n not in CONTROLS]
    if unknown:
        raise ValueError(f"unknown control(s) {unknown}; choose from {list(CONTROLS)}")
    return names


def _weight_grid(method, factors: Sequence[float], rrr_lambdas: Sequence[float]) -> list[float]:
    if _upper_bound(method):
        return sorted(float(v) for v in rrr_lambdas)
    return sorted(float(f) * parse_method(method)[1].default_beta for f in factors)


def _needs_feature_maps(method) -> bool:
    """FMA, MIP and AT read the student's feature maps (an MLP has none)."""
    cls = parse_method(method)[1]
    return bool(cls.uses_atcam_maps) or issubclass(cls, ATDistiller)


def _tunable(method) -> bool:
    return parse_method(method)[1].signal is not None


def _upper_bound(method) -> bool:
    """A reference given what no practitioner has (RRR's true masks), tuned on random
    shades (test-like data) and trained without the teacher cache."""
    return bool(getattr(parse_method(method)[1], "tuned_on_test_distribution", False))


def _reference_methods(references: Sequence[str]) -> list[str]:
    """The references that are methods (RRR), not other data (``clean``)."""
    return [r for r in references if r in METHODS]


def _choose(scores: dict[float, float], default: float) -> float:
    """The weight with the best score; ties go to the one closest (in log) to the default."""
    best = max(scores.values())
    tied = [w for w, s in scores.items() if s == best]
    return min(tied, key=lambda w: (abs(math.log(w / default)), w))


def tune_weights(setup: ExperimentSetup, fit: DecoySet, val: DecoySet, val_random: DecoySet,
                 methods: Sequence, seeds: Sequence[int], epochs: int,
                 factors: Sequence[float] = (0.1, 1.0, 10.0),
                 rrr_lambdas: Sequence[float] = (1.0, 10.0, 100.0), max_extend: int = 2,
                 student_size: str = "small", progress: bool = False,
                 select_on: str = "val", **distill_kwargs) -> tuple[dict, list[dict]]:
    """Choose each method's attention weight β on a validation split, the same way for all.

    Each method with an attention term (and RRR's λ) is trained on ``fit`` with every
    weight of its grid and ``seeds``, and scored on ``val``: a validation split drawn
    from the *training* distribution (the swatch follows the label with the same ρ), which
    is all a practitioner has. The weight with the best mean validation accuracy wins; a
    grid whose best weight sits at its edge is extended by a factor of ten in that
    direction, at most ``max_extend`` times. RRR is the exception: as the literature's
    upper bound its λ is chosen on ``val_random`` (random shades, like the test set),
    information no practitioner has. Every run also records its accuracy on
    ``val_random``, so the tuning table shows what the choice would have been had the
    test distribution been known.

    Args:
        setup: the experiment's setup (teacher, device, provenance).
        fit, val, val_random: training and validation splits (:func:`~atkd_lite.data.decoy_mnist`).
        methods: method names (and ``"rrr"``); methods without a weight are skipped.
        seeds: tuning seeds (use others than the experiment's).
        epochs: student epochs.
        factors: the first grid, as multiples of each method's default β.
        rrr_lambdas: RRR's first grid of λ.
        max_extend: extensions allowed at each edge.
        student_size: the student.
        progress: one line per run.
        select_on: ``"val"`` (the practitioner's choice, above) or ``"val_random"``:
            every weight chosen on random shades, as RRR's, an *oracle* that shows what
            each method could do with knowledge no practitioner has.
        **distill_kwargs: passed to :func:`~atkd_lite.engine.distill`.

    Returns:
        (dict, list of dict): the chosen weight per method, and one row per method and
        weight: ``method``, ``beta``, ``val_acc``, ``val_random_acc`` (means over seeds),
        ``chosen`` (bool), ``edge`` (the best weight is still at an edge of the grid).
    """
    for name, values in (("factors", factors), ("rrr_lambdas", rrr_lambdas)):
        if not list(values):
            raise ValueError(f"{name} is empty; give at least one weight")
        for v in values:
            check_number(name, v, positive=True)
    check_int("max_extend", max_extend, minimum=0)
    _check_select_on(select_on)
    tune_setup = dataclasses.replace(setup, train=fit, test=val)
    names = [m for m in methods if _tunable(m) and not _upper_bound(m)]
    cache = teacher_cache_for(tune_setup, names, **distill_kwargs) if names else None
    chosen, rows = {}, []
    for method in [m for m in methods if _tunable(m)]:
        grid = _weight_grid(method, factors, rrr_lambdas)
        default = parse_method(method)[1].default_beta
        scores: dict[float, dict[str, float]] = {}
        extensions = {"low": 0, "high": 0}
        while True:
            for beta in [b for b in grid if b not in scores]:
                res = run_grid(tune_setup, {}, [GridCell(method, student_size, name=method)],
                               seeds, epochs, None if _upper_bound(method) else cache,
                               score=lambda r: {"val_random_acc": evaluate(
                                   r.student, val_random, device=setup.device)},
                               progress=progress, beta=beta, **distill_kwargs)
                scores[beta] = {"val_acc": statistics.fmean(r["test_acc"] for r in res.runs),
                                "val_random_acc": statistics.fmean(
                                    r["val_random_acc"] for r in res.runs)}
            on = "val_random" if _upper_bound(method) else select_on
            key = f"{on}_acc"
            best = _choose({b: s[key] for b, s in scores.items()}, default)
            ordered = sorted(scores)
            side = "low" if best == ordered[0] else "high" if best == ordered[-1] else None
            if side is None or extensions[side] >= max_extend:
                break
            extensions[side] += 1
            grid = [best / 10 if side == "low" else best * 10]
        chosen[method] = best
        for beta in sorted(scores):
            rows.append({"method": method, "beta": beta, **scores[beta],
                         "chosen": beta == best, "edge": side is not None,
                         "selected_on": on})
    return chosen, rows


#: The splits a weight can be chosen on, the training distribution's validation split
#: (``"val"``) or, as an oracle, validation digits with random shades (``"val_random"``).
SELECT_ON = ("val", "val_random")


def _check_select_on(select_on) -> str:
    if select_on not in SELECT_ON:
        raise ValueError(f"select_on must be one of {list(SELECT_ON)} ('val': the training "
                         f"distribution, as a practitioner; 'val_random': random shades, an "
                         f"oracle); got {select_on!r}")
    return select_on


def _check_rhos(rhos) -> list[float]:
    rhos = [rhos] if isinstance(rhos, (int, float)) else list(rhos)
    if not rhos:
        raise ValueError("give at least one rho, e.g. rhos=(1.0, 0.9)")
    for r in rhos:
        check_number("rho", r, 0.0, 1.0)
    if len(set(rhos)) != len(rhos):
        raise ValueError(f"rho values must differ, got {rhos}")
    return [float(r) for r in rhos]


def _subset(data: DecoySet, per_class: int | None, seed: int) -> DecoySet:
    return data if per_class is None else data.per_class(per_class, seed=seed)


def run_shortcut(rhos: Sequence[float] = (1.0, 0.9), methods: Sequence[str] = DEFAULT_METHODS,
                 references: Sequence[str] = REFERENCES, seeds: Sequence[int] = tuple(range(10)),
                 per_class: int | None = 100, epochs: int = 20, swatch: int = 4,
                 student_size: str = "small", teacher: nn.Module | None = None,
                 teacher_epochs: int = 12, tune: bool = True,
                 tune_seeds: Sequence[int] = (100,), beta_factors: Sequence[float] = (0.1, 1.0, 10.0),
                 rrr_lambdas: Sequence[float] = (1.0, 10.0, 100.0), max_extend: int = 2,
                 score_n: int | None = 500, max_teacher_gap: float = 0.05, output_dir=None,
                 device=None, data_seed: int = 0, progress: bool = True,
                 command: str | None = None, select_on: str = "val",
                 controls: bool | Sequence[str] = False,
                 **distill_kwargs) -> ExperimentResults:
    """The shortcut experiment: every method × seed × ρ on the decoy digits, with references.

    For every ρ: the decoy training digits (``per_class`` a class, the swatch following
    the label with probability ρ); each method's weight tuned on the training
    distribution's validation split (:func:`tune_weights`, unless ``tune`` is False: then
    the defaults); one :class:`~atkd_lite.cache.TeacherCache`; then every method and seed
    through the one grid runner, and RRR with the true masks. Once for all ρ: the
    student trained on the same digits without swatches (``clean``, the ceiling).
    Every student is scored on the ``test`` (random shades; its ``test_acc``),
    ``flipped`` and ``clean`` splits, on the training distribution's ``val`` split, and
    by where its maps put their mass (:func:`swatch_scores`).

    Args:
        rhos: values of ρ in [0, 1].
        methods: the practitioner's methods (:data:`DEFAULT_METHODS`; for an MLP
            student, :data:`MLP_METHODS`).
        references: any of :data:`REFERENCES`.
        seeds: paired seeds (the same for every method and ρ).
        per_class: training digits per class (None: all 400).
        epochs: student epochs.
        swatch: the swatch side in pixels.
        student_size: the student (``tiny``/``small``/``medium``, or an MLP of
            :data:`~atkd_lite.models.MLP_STUDENTS`: the testbed where the shortcut bites).
        teacher: a trained teacher; None = the book's teacher trained on the clean
            embedded digits (:func:`~atkd_lite.checkpoints.pretrained_teacher`, cached).
        teacher_epochs: epochs of that teacher.
        tune: tune the weights (else each method's default).
        tune_seeds, beta_factors, rrr_lambdas, max_extend: see :func:`tune_weights`.
        score_n: test images on which the maps are scored (None: all 1,000).
        max_teacher_gap: see :func:`check_teacher`.
        output_dir: write the results there (after every part, and at the end).
        device: cuda → mps → cpu by default.
        data_seed: picks the ``per_class`` subset.
        progress: one line per run.
        command: recorded in the provenance.
        select_on: what the tuning chooses each weight on (:func:`tune_weights`):
            ``"val"``, the practitioner's grid, or ``"val_random"``, the oracle grid.
        controls: also run controls at every ρ (:func:`control_cells`): True for every
            one of :data:`CONTROLS`, or their names; each needs the method whose weight
            it takes in the grid (``tmask`` in ``methods``, ``rrr`` in ``references``).
        **distill_kwargs: passed to :func:`~atkd_lite.engine.distill` (not ``beta``,
            which is tuned).

    Returns:
        ExperimentResults: one run per method, ρ and seed, named ``"rho=<ρ>/<method>"``
        (``"clean"`` once), each with ``rho``, ``base_method``, ``beta``,
        ``flipped_acc``, ``clean_acc``, ``val_acc`` and ``maps`` (:func:`swatch_scores`);
        the settings hold the tuning table and the chosen weights, the teacher its
        accuracies and map scores.

    Raises:
        ValueError: bad arguments (before any training); ShortcutTeacherError: a teacher
            that reads the swatch.
    """
    rhos = _check_rhos(rhos)
    check_grid(methods, seeds)
    bad = [r for r in references if r not in REFERENCES]
    if bad:
        raise ValueError(f"unknown reference(s) {bad}; choose from {list(REFERENCES)}")
    if per_class is not None:
        check_int("per_class", per_class, minimum=1)
    check_int("epochs", epochs, minimum=1)
    check_number("max_teacher_gap", max_teacher_gap, 0.0, 1.0)
    if score_n is not None:
        check_int("score_n", score_n, minimum=1)
    if "beta" in distill_kwargs:
        raise ValueError("beta is tuned per method here; pass tune=False to use each "
                         "method's default instead")
    _check_select_on(select_on)
    controls = _check_controls(controls)
    missing = sorted({_CONTROL_BASE[n] for n in controls} - {*methods, *references})
    if missing:
        raise ValueError(f"the controls {controls} take the weights of methods the grid "
                         f"lacks, {missing}: put 'tmask' in the methods and 'rrr' in the "
                         "references")
    kinds = map_kinds_for(build_student(student_size))  # an unknown student fails here
    if student_size in MLP_STUDENTS:
        no_maps = [m for m in methods if _needs_feature_maps(m)]
        if no_maps:
            raise ValueError(f"an MLP student has no feature maps, so {no_maps} cannot run "
                             f"on it; use methods from MLP_METHODS {list(MLP_METHODS)}")
    decoy_mnist("test", swatch=swatch)  # checks the swatch before any work
    setup0 = prepare_experiment("mnist5k", None, data_seed, teacher, teacher_epochs, device,
                                progress, command)
    teacher_accs = check_teacher(setup0.teacher, swatch, max_teacher_gap, setup0.device)
    test = decoy_mnist("test", swatch=swatch)
    splits = {s: decoy_mnist(s, swatch=swatch) for s in ("flipped", "clean")}
    scored = scoring_subset(test, score_n)
    setup0.teacher_info.update(teacher_accs, test_acc=teacher_accs["test_acc"],
                               maps=swatch_scores(setup0.teacher, scored, device=setup0.device))

    current: dict = {}  # the validation split of the ρ being run

    def score(res) -> dict:
        s = res.student
        return {"flipped_acc": evaluate(s, splits["flipped"], device=setup0.device),
                "clean_acc": evaluate(s, splits["clean"], device=setup0.device),
                "val_acc": evaluate(s, current["val"], device=setup0.device),
                "maps": swatch_scores(s, scored, kinds, device=setup0.device)}

    area = {"swatch": box_mask(scored.swatch_boxes, scored.image_size).float().mean().item(),
            "digit": box_mask(scored.boxes, scored.image_size).float().mean().item()}
    settings = grid_settings("decoy", dataclasses.replace(setup0, test=test),
                             per_class=per_class, data_seed=data_seed,
                             student_size=student_size, epochs=epochs, methods=methods,
                             seeds=seeds, cached=True, distill_kwargs=distill_kwargs,
                             rhos=rhos, references=list(references), swatch=swatch,
                             score_n=len(scored), map_kinds=list(kinds), chance=area,
                             tune=tune, tune_seeds=list(tune_seeds), tuning={}, betas={},
                             select_on=select_on,
                             controls=controls,
                             completed_rhos=[], completed_references=[])
    settings["train_name"] = "decoy/train/rho=<rho>"
    results = ExperimentResults(settings=settings, teacher=setup0.teacher_info,
                                provenance=setup0.provenance)

    def add(part: ExperimentResults) -> None:
        results.runs.extend(part.runs)
        # what has run so far, so that results saved before the end say what they hold
        status = grid_status(results)
        settings["completed_rhos"] = status["completed_rhos"]
        settings["completed_references"] = status["completed_references"]
        results.provenance["wall_time_s"] = time.perf_counter() - setup0.t_start
        if output_dir is not None:
            results.save(output_dir)

    for rho in rhos:
        train = _subset(decoy_mnist("train", rho=rho, swatch=swatch), per_class, data_seed)
        current["val"] = decoy_mnist("val", rho=rho, swatch=swatch)
        setup = dataclasses.replace(setup0, train=train, test=test)
        settings["train_size"] = len(train)
        tunable = [m for m in [*methods, *_reference_methods(references)] if _tunable(m)]
        if tune and tunable:
            fit = _subset(decoy_mnist("fit", rho=rho, swatch=swatch), per_class, data_seed)
            betas, rows = tune_weights(setup, fit, current["val"],
                                       decoy_mnist("val", rho=0.0, swatch=swatch), tunable,
                                       tune_seeds, epochs, beta_factors, rrr_lambdas,
                                       max_extend, student_size, progress,
                                       select_on=select_on, **distill_kwargs)
            settings["tuning"][f"{rho:g}"] = rows
        else:
            betas = {m: parse_method(m)[1].default_beta for m in tunable}
        settings["betas"][f"{rho:g}"] = betas
        cache = teacher_cache_for(setup, methods, **distill_kwargs)
        for name in [*methods, *_reference_methods(references)]:
            extra = {"rho": rho, "base_method": name, "beta": betas.get(name, 0.0)}
            weight = {"beta": betas[name]} if name in betas else {}
            add(run_grid(setup, settings,
                         [GridCell(name, student_size, name=f"rho={rho:g}/{name}",
                                   extra=extra)],
                         seeds, epochs, None if _upper_bound(name) else cache, score=score,
                         progress=progress, **weight, **distill_kwargs))
        if controls:
            add(run_grid(setup, settings,
                         control_cells(train, cache, betas, student_size, rho, controls),
                         seeds, epochs, None, score=score, progress=progress,
                         **distill_kwargs))
    if "clean" in references:  # the same digits without swatches: one run per seed for all ρ
        clean_train = train.without_swatch()
        current["val"] = decoy_mnist("val", rho=rhos[-1], swatch=swatch)
        add(run_grid(dataclasses.replace(setup0, train=clean_train, test=test), settings,
                     [GridCell("student", student_size, name="clean",
                               extra={"rho": None, "base_method": "clean", "beta": 0.0})],
                     seeds, epochs, None, score=score, progress=progress, **distill_kwargs))
    if output_dir is not None:
        _write_shortcut_md(results, output_dir)
    return results


# ---------------------------------------------------------------------------------------
# reading and stating the results

def load_shortcut(name="decoy-shortcut") -> ExperimentResults:
    """Committed shortcut results by name (shipped with the package), or from a path.

    The settings list the *planned* grid (``rhos``, ``references``); a run stopped
    part-way saves what it has, so the loaded settings also get what actually ran,
    derived from the runs themselves (:func:`grid_status`): ``completed_rhos`` (every
    method, RRR included when planned, on every seed) and ``completed_references``.

    Raises:
        FileNotFoundError: no such results; ValueError: results of another experiment.

    Examples::

        >>> from atkd_lite.experiments.shortcut import load_shortcut
        >>> res = load_shortcut("decoy-shortcut")
        >>> set(res.settings["completed_rhos"]) <= set(res.settings["rhos"])
        True
    """
    res = load_results(name)
    if "rhos" not in res.settings:
        raise ValueError(f"{name} holds no shortcut experiment; make one with run_shortcut()")
    status = grid_status(res)
    res.settings["completed_rhos"] = status["completed_rhos"]
    res.settings["completed_references"] = status["completed_references"]
    return res


def _planned_cells(settings: dict) -> list[str]:
    return [*settings["methods"], *_reference_methods(settings["references"]),
            *settings.get("controls", [])]


def grid_status(results: ExperimentResults) -> dict:
    """Which part of the planned grid has runs, read from the runs (not from the settings).

    A ρ is *complete* when every planned method (and RRR, when planned) has a run on every
    planned seed, *partial* when it has some runs, *missing* when it has none; the
    ``clean`` reference likewise.

    Args:
        results (ExperimentResults): shortcut results (:func:`run_shortcut`,
            :func:`load_shortcut`).

    Returns:
        dict: ``planned_rhos``, ``completed_rhos``, ``partial_rhos``, ``missing_rhos``
        (lists of ρ in the planned order), ``completed_references`` and
        ``missing_references`` (``rrr`` counts as completed when it ran on every seed at
        every ρ with runs; ``clean`` when it ran on every seed), ``runs`` and
        ``planned_runs`` (counts), and ``complete`` (bool: the whole planned grid ran).

    Examples::

        >>> from atkd_lite.experiments.results import ExperimentResults
        >>> from atkd_lite.experiments.shortcut import grid_status
        >>> s = {"rhos": [1.0, 0.9], "methods": ["student"], "references": ["clean"],
        ...      "seeds": [0, 1]}
        >>> runs = [{"rho": 1.0, "base_method": "student", "seed": i} for i in (0, 1)]
        >>> st = grid_status(ExperimentResults(settings=s, runs=runs))
        >>> st["completed_rhos"], st["missing_rhos"], st["missing_references"], st["complete"]
        ([1.0], [0.9], ['clean'], False)
    """
    s = results.settings
    seeds = set(s["seeds"])
    cells = _planned_cells(s)
    done: dict[str, set] = {}  # "<rho>/<method>" -> seeds
    for run in results.runs:
        key = "clean" if run.get("rho") is None else f"{float(run['rho']):g}/{run['base_method']}"
        done.setdefault(key, set()).add(run["seed"])
    completed, partial, missing = [], [], []
    for rho in s["rhos"]:
        got = {m: done.get(f"{float(rho):g}/{m}", set()) for m in cells}
        if not any(got.values()):
            missing.append(rho)
        elif all(v >= seeds for v in got.values()):
            completed.append(rho)
        else:
            partial.append(rho)
    ran = completed + partial
    refs = [m for m in _reference_methods(s["references"])
            if ran and all(done.get(f"{float(r):g}/{m}", set()) >= seeds for r in ran)]
    if "clean" in s["references"] and done.get("clean", set()) >= seeds:
        refs.append("clean")
    planned = len(s["rhos"]) * len(cells) * len(seeds) + \
        (len(seeds) if "clean" in s["references"] else 0)
    return {"planned_rhos": list(s["rhos"]), "completed_rhos": completed,
            "partial_rhos": partial, "missing_rhos": missing,
            "completed_references": refs,
            "missing_references": [r for r in s["references"] if r not in refs],
            "runs": len(results.runs), "planned_runs": planned,
            "complete": not partial and not missing and len(refs) == len(s["references"])}


def rhos_with_runs(results: ExperimentResults) -> list[float]:
    """The planned values of ρ that have at least one run (complete or not), in order:
    the ones every table and verdict of this module reports.

    Examples::

        >>> from atkd_lite.experiments.shortcut import load_shortcut, rhos_with_runs
        >>> res = load_shortcut("decoy-shortcut")
        >>> set(rhos_with_runs(res)) <= set(res.settings["rhos"])
        True
    """
    status = grid_status(results)
    return [r for r in status["planned_rhos"]
            if r in status["completed_rhos"] or r in status["partial_rhos"]]


def completion_command(results: ExperimentResults, output_dir: str | None = None) -> str:
    """The ``atkd-lite shortcut`` command that runs the whole planned grid of ``results``.

    It is the recorded command with the planned ρ and references spelled out, so it runs
    every part at the current commit's settings. The grid is run whole rather than only
    its missing part: a part run later, on other code, would be compared on paired seeds
    with a part run on different defaults (e.g. the KD weight).

    Args:
        results (ExperimentResults): shortcut results with provenance.
        output_dir (str, optional): replaces the recorded ``--output-dir``.

    Returns:
        str: the command line.

    Examples::

        >>> from atkd_lite.experiments.shortcut import completion_command, load_shortcut
        >>> completion_command(load_shortcut("decoy-shortcut")).startswith("atkd-lite shortcut")
        True
    """
    s = results.settings
    words = (results.provenance.get("command") or "atkd-lite shortcut").split()
    for option in ("--rhos", "--references", "--output-dir", "-o"):
        while option in words:  # drop the option and its value
            i = words.index(option)
            if option in ("--output-dir", "-o") and output_dir is None:
                output_dir = words[i + 1]
            del words[i:i + 2]
    at = 2 if words[:2] == ["atkd-lite", "shortcut"] else len(words)
    extra = ["--output-dir", str(output_dir)] if output_dir is not None else []
    extra += ["--rhos", ",".join(f"{r:g}" for r in s["rhos"])]
    if s["references"]:
        extra += ["--references", ",".join(s["references"])]
    return " ".join(words[:at] + extra + words[at:])


#: settings that differ between the parts of one grid run as separate commands
_PART_KEYS = ("rhos", "references", "tuning", "betas", "completed_rhos",
              "completed_references")


def merge_shortcut(parts: Sequence[ExperimentResults], output_dir=None) -> ExperimentResults:
    """One grid from parts run as separate commands, e.g. one ρ per core or per machine.

    ``atkd-lite shortcut --rhos 1 --references rrr`` and ``atkd-lite shortcut --rhos 0.9
    --references rrr,clean``, run at the same time, together hold the runs of the one
    command with ``--rhos 1,0.9 --references rrr,clean``: every run is seeded by its method
    and seed alone, each ρ is tuned on its own, and the clean reference trains on the same
    digits for every ρ. The merge checks that the parts fit (the same commit, teacher and
    settings apart from ρ, references and tuning; no ρ or reference twice), keeps the runs
    in the order of the parts, and records the parts' own commands, dates and wall times
    in the provenance (``parts``; ``wall_time_s`` is the longest part's, since they ran
    side by side). The recorded ``command`` is the one command that runs the merged grid.

    Args:
        parts: shortcut results (:func:`run_shortcut`, :func:`load_shortcut`), in the
            order their ρ should appear.
        output_dir: also write the merged results there (``results.*``, ``shortcut.md``).

    Returns:
        ExperimentResults: the merged grid.

    Raises:
        ValueError: fewer than two parts, or parts that do not belong to one grid (the
            message names the first difference).
    """
    parts = check_parts(parts)
    first = parts[0]
    rhos: list[float] = []
    references: list[str] = []
    mine = {k: v for k, v in first.settings.items() if k not in _PART_KEYS}
    for i, p in enumerate(parts):
        if "rhos" not in p.settings:
            raise ValueError(f"part {i} holds no shortcut experiment")
        other = {k: v for k, v in p.settings.items() if k not in _PART_KEYS}
        if other != mine:
            key = next(k for k in sorted(set(other) | set(mine)) if other.get(k) != mine.get(k))
            raise ValueError(f"part {i} differs from part 0 in the setting {key!r} "
                             f"({other.get(key)!r} vs {mine.get(key)!r}); the parts of one grid "
                             "differ only in --rhos and --references")
        if p.teacher != first.teacher:
            raise ValueError(f"part {i} used another teacher than part 0")
        stray = sorted({r["rho"] for r in p.runs if r.get("rho") is not None
                        and not any(math.isclose(r["rho"], q) for q in p.settings["rhos"])})
        if stray:
            raise ValueError(f"part {i} holds runs at rho {stray}, outside the rho it "
                             f"declares ({p.settings['rhos']}); it is not one part of a grid")
        twice = [r for r in p.settings["rhos"] if any(math.isclose(r, q) for q in rhos)]
        if twice:
            raise ValueError(f"rho {twice} is in more than one part")
        rhos += p.settings["rhos"]
        runs_clean = any(r.get("rho") is None for r in p.runs)
        for ref in p.settings["references"]:
            if ref == "clean" and not runs_clean:
                continue
            if ref == "clean" and "clean" in references:
                raise ValueError("the clean reference ran in more than one part; plan it in one")
            if ref not in references:
                references.append(ref)
    references = [r for r in REFERENCES if r in references]
    settings = copy.deepcopy(first.settings)
    settings.update(rhos=rhos, references=references,
                    tuning={k: v for p in parts for k, v in p.settings.get("tuning", {}).items()},
                    betas={k: v for p in parts for k, v in p.settings.get("betas", {}).items()})
    prov = copy.deepcopy(first.provenance)
    prov["parts"] = [{k: p.provenance.get(k) for k in ("command", "date", "wall_time_s")}
                     for p in parts]
    prov["wall_time_s"] = max(p.provenance.get("wall_time_s", 0.0) for p in parts)
    prov["date"] = max(p.provenance.get("date", "") for p in parts)
    merged = ExperimentResults(settings=settings, teacher=copy.deepcopy(first.teacher),
                               provenance=prov,
                               runs=[copy.deepcopy(r) for p in parts for r in p.runs])
    cells = [(r["method"], r["seed"]) for r in merged.runs]
    twice = sorted({c for c in cells if cells.count(c) > 1})
    if twice:
        raise ValueError(f"the parts hold the same cell and seed more than once {twice}; "
                         "each run belongs to one part")
    prov["command"] = completion_command(merged, output_dir)
    status = grid_status(merged)
    settings["completed_rhos"] = status["completed_rhos"]
    settings["completed_references"] = status["completed_references"]
    if output_dir is not None:
        merged.save(output_dir)
        _write_shortcut_md(merged, output_dir)
    return merged


def _rho_runs(results: ExperimentResults, rho: float) -> list[dict]:
    rhos = results.settings["rhos"]
    if not any(math.isclose(rho, r) for r in rhos):
        raise ValueError(f"the results hold rho {rhos}, not {rho}")
    if not any(math.isclose(rho, r) for r in rhos_with_runs(results)):
        raise ValueError(f"rho {rho:g} was planned but has no runs (the grid was stopped "
                         f"part-way; rho with runs: {rhos_with_runs(results)}); run "
                         f"`{completion_command(results)}` to complete it")
    return [r for r in results.runs
            if r.get("rho") is None or math.isclose(r["rho"], rho)]


def shortcut_values(results: ExperimentResults, rho: float,
                    metric: str = "test_acc") -> dict[str, dict[int, float]]:
    """``{method: {seed: value}}`` for one ρ (the ``clean`` ceiling included), ready for
    :func:`~atkd_lite.experiments.stats.compare_methods`.

    ``metric`` is a run entry (``test_acc``, ``flipped_acc``, ``clean_acc``, ``val_acc``)
    or a map score ``"<kind>:<swatch|digit>"``, e.g. ``"sals:swatch"``.
    """
    out: dict[str, dict[int, float]] = {}
    for run in _rho_runs(results, rho):
        if ":" in metric:
            kind, part = metric.split(":")
            value = run["maps"][kind][part]
        else:
            value = run[metric]
        out.setdefault(run["base_method"], {})[run["seed"]] = value
    return out


def shortcut_verdicts(results: ExperimentResults, rho: float, baseline: str = "student",
                      methods: Sequence[str] | None = None,
                      metric: str = "test_acc") -> list[dict]:
    """Every method against ``baseline`` at one ρ, with the book's one protocol
    (:func:`~atkd_lite.experiments.stats.compare_methods`: paired seeds, Holm over the
    family, a verdict in words).

    At a ρ stopped part-way the family is compared on the seeds that all its members
    have (each row reports its ``n``); a method with fewer than two seeds in common with
    the baseline is left out of the family.
    """
    values = shortcut_values(results, rho, metric)
    if baseline not in values:
        raise ValueError(f"the results hold no {baseline!r} runs at rho {rho:g}; they hold "
                         f"{list(values)}")
    family = [m for m in values if m != baseline] if methods is None else list(methods)
    base = set(values[baseline])
    family = [m for m in family if m not in values or len(base & set(values[m])) >= 2]
    common = base.intersection(*(set(values[m]) for m in family if m in values))
    paired = {m: {k: v for k, v in by.items() if k in common} for m, by in values.items()}
    return compare_methods(paired, baseline=baseline, methods=family)


def won_back(results: ExperimentResults, rho: float, methods: Sequence[str] | None = None,
             baseline: str = "student", ceiling: str = "clean",
             confidence: float = 0.95) -> list[dict]:
    """Per method: the share of the shortcut's cost it wins back, with its interval, and
    its verdict against the plain student by the book's one protocol.

    The cost of the shortcut is what the plain student (``baseline``, trained on the decoy
    digits) loses on random shades against the same student trained on clean digits
    (``ceiling``), seed by seed. A method's share on seed s is
    ``(acc_method − acc_plain) / (acc_clean − acc_plain)``: 0 = no help, 1 = as if the
    swatch were not there, below 0 = worse than no help. The interval is the t interval of
    the per-seed shares; the verdict (``"better"``/``"worse"`` than the plain student, or
    no detectable difference) is that of :func:`shortcut_verdicts` on the accuracies, with
    ``methods`` as one Holm family.

    Args:
        results (ExperimentResults): shortcut results with ``baseline`` and ``ceiling``.
        rho (float): a ρ of the grid.
        methods (sequence of str, optional): the family (default: every other cell).
        baseline, ceiling (str): the plain student and the clean-trained one.
        confidence (float): of the interval.

    Returns:
        list of dict: ``method``, ``baseline``, ``n``, ``diff`` (the mean share; the name
        :func:`~atkd_lite.book.viz.difference_plot` draws), ``ci_low``, ``ci_high``,
        ``accuracy`` (mean), ``gain`` (mean accuracy − plain), ``p_holm``, ``verdict``.

    Raises:
        ValueError: no runs of ``baseline`` or ``ceiling``, or a seed on which the
            clean-trained student is not above the plain one (no cost to win back).

    Examples::

        >>> from atkd_lite.experiments.results import ExperimentResults
        >>> runs = [{"rho": 1.0, "base_method": m, "seed": s, "test_acc": a + s / 100}
        ...         for m, a in (("student", .70), ("clean", .90), ("rrr", .85))
        ...         for s in range(3)]
        >>> res = ExperimentResults(settings={"rhos": [1.0], "methods": ["student"],
        ...                                   "references": ["rrr", "clean"], "seeds": [0, 1, 2]},
        ...                         runs=[{**r, "rho": None} if r["base_method"] == "clean" else r
        ...                               for r in runs])
        >>> round(won_back(res, 1.0)[0]["diff"], 3)
        0.75
    """
    from scipy import stats

    values = shortcut_values(results, rho)
    for who in (baseline, ceiling):
        if who not in values:
            raise ValueError(f"the results hold no {who!r} runs at rho {rho:g}; they hold "
                             f"{list(values)}")
    plain, top = values[baseline], values[ceiling]
    family = ([m for m in values if m not in (baseline, ceiling)] if methods is None
              else list(methods))
    verdicts = {r["method"]: r for r in shortcut_verdicts(results, rho, baseline, family)}
    rows = []
    for m in family:
        seeds = sorted(set(values[m]) & set(plain) & set(top))
        flat = [s for s in seeds if top[s] <= plain[s]]
        if flat:
            raise ValueError(f"on seed(s) {flat} the {ceiling!r} student is not above the "
                             f"{baseline!r} one at rho {rho:g}: there is no cost of the "
                             "shortcut to win back; compare accuracies instead")
        shares = [(values[m][s] - plain[s]) / (top[s] - plain[s]) for s in seeds]
        mean = statistics.fmean(shares)
        half = (float(stats.t.ppf(0.5 + confidence / 2, len(shares) - 1))
                * statistics.stdev(shares) / math.sqrt(len(shares))) if len(shares) > 1 else 0.0
        v = verdicts[m]
        rows.append({"method": m, "baseline": baseline, "n": len(seeds), "diff": mean,
                     "ci_low": mean - half, "ci_high": mean + half,
                     "accuracy": v["mean_a"], "gain": v["diff"], "p_holm": v["p_holm"],
                     "verdict": v["verdict"]})
    return rows


def won_back_markdown(rows: Sequence[dict]) -> str:
    """The rows of :func:`won_back` as a Markdown table (shares and accuracies in %)."""
    lines = ["| method | random-shade accuracy (%) | share of the cost won back (%) | 95 % CI "
             "| p (Holm, vs plain) | verdict |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {100 * r['accuracy']:.1f} | {100 * r['diff']:.0f} | "
                     f"[{100 * r['ci_low']:.0f}, {100 * r['ci_high']:.0f}] | "
                     f"{format_p(r['p_holm']).lstrip('= ')} | {r['verdict']} |")
    return "\n".join(lines) + "\n"


def chosen_weights_markdown(grids: dict, rho: float = 1.0) -> str:
    """The weight each method's tuning chose at one ρ, one column per grid (e.g. the
    practitioner's and the oracle's), marked "(edge)" where the best weight was still at
    an end of the grid after its extensions (the term was tuned towards off, or towards
    ever stronger).

    Args:
        grids (dict): column title -> shortcut results.
        rho (float): the ρ.

    Returns:
        str: a Markdown table; a method a grid did not tune has "—".
    """
    cols = {}
    for title, res in grids.items():
        rows = res.settings.get("tuning", {}).get(f"{rho:g}", [])
        by: dict[str, dict] = {}
        for r in rows:
            if r["chosen"]:
                tried = sorted(x["beta"] for x in rows if x["method"] == r["method"])
                by[r["method"]] = {"beta": r["beta"], "edge": r["edge"],
                                   "range": (tried[0], tried[-1]),
                                   "on": r.get("selected_on", "val")}
        cols[title] = by
    methods = list(dict.fromkeys(m for by in cols.values() for m in by))
    lines = ["| method | " + " | ".join(f"{t}: weight (range tried)" for t in cols) + " |",
             "|---" * (len(cols) + 1) + "|"]
    for m in methods:
        cells = []
        for by in cols.values():
            c = by.get(m)
            cells.append("—" if c is None else
                         f"{c['beta']:g} ({c['range'][0]:g} to {c['range'][1]:g})"
                         + (" (edge)" if c["edge"] else "")
                         + (" on random shades" if c["on"] == "val_random" else ""))
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def switched_off(results: ExperimentResults, rho: float = 1.0) -> list[str]:
    """The methods whose tuning chose the *smallest* weight it tried, still at the edge
    after every extension of its grid: the tuning turned the term (nearly) off, so their
    runs say little about what the term can do.

    Examples::

        >>> from atkd_lite.experiments.results import ExperimentResults
        >>> rows = [{"method": "a", "beta": b, "chosen": b == 1e-4, "edge": True}
        ...         for b in (1e-4, 1e-3)]
        >>> switched_off(ExperimentResults(settings={"tuning": {"1": rows}}))
        ['a']
    """
    rows = results.settings.get("tuning", {}).get(f"{rho:g}", [])
    out = []
    for r in rows:
        if r["chosen"] and r["edge"] and r["beta"] == min(
                x["beta"] for x in rows if x["method"] == r["method"]):
            out.append(r["method"])
    return out


def teacher_mask_answer(rows: Sequence[dict], controls: Sequence[dict] = ()) -> str:
    """One paragraph that answers "can the clean teacher's map replace the human mask?"
    from :func:`won_back` rows (which must include ``tmask`` and ``rrr``; the controls
    ``rrr-all`` and ``tmask-shuffled`` are quoted when present) and, optionally, the
    control comparisons (rows of :func:`~atkd_lite.experiments.stats.compare_pairs` for
    ``("tmask", "rrr-all")`` and ``("tmask", "tmask-shuffled")``).

    Every number and verdict comes from the rows; the words follow fixed rules: "yes, for
    most of the cost" when tmask is better than the plain student and its whole interval
    lies above one half; "in part" when it is better with an interval reaching below one
    half; "no" when no difference is detected or it is worse. When the teacher's own map
    is equivalent (within the controls' margin) to other images' maps, the paragraph says
    that the map acts as a prior of where the evidence usually is, not as knowledge of
    each image; when neither a difference nor equivalence is shown, that it cannot tell.

    Raises:
        ValueError: rows without ``tmask`` or ``rrr``.
    """
    by = {r["method"]: r for r in rows}
    missing = [m for m in _CONTROLLED if m not in by]
    if missing:
        raise ValueError(f"the answer needs the won_back rows of {missing}")
    t, h = by["tmask"], by["rrr"]

    def share(r):
        return (f"{100 * r['diff']:.0f} % of the cost (95 % CI {100 * r['ci_low']:.0f} to "
                f"{100 * r['ci_high']:.0f} %)")

    if t["verdict"] == "better" and t["ci_low"] >= 0.5:
        head = "Yes, for most of the cost"
    elif t["verdict"] == "better":
        head = "In part"
    else:
        head = "No"
    text = (f"**{head}.** With the clean teacher's saliency map as the mask, the student won "
            f"back {share(t)}; with the human-drawn mask, RRR won back {share(h)}. ")
    quoted = {"rrr-all": "the same penalty on every pixel, with no map,",
              "tmask-shuffled": "the teacher maps of other images"}
    shown = [(what, by[m]) for m, what in quoted.items() if m in by]
    if shown:
        text += "For comparison, " + "; ".join(
            f"{what}{' won back' if i == 0 else ','} {100 * r['diff']:.0f} % (95 % CI "
            f"{100 * r['ci_low']:.0f} to {100 * r['ci_high']:.0f} %)"
            for i, (what, r) in enumerate(shown)) + ". "
    words = {"better": "does better than", "worse": "does worse than",
             "equivalent": "is equivalent, within ±{m} point, to",
             "inconclusive at this sample size": "is neither detectably different from "
                                                 "nor shown equivalent to"}
    own_vs_other = None
    for c in controls:
        what = quoted.get(c["baseline"], c["baseline"]).rstrip(",")
        verb = words.get(c["verdict"], "is not detectably different from").format(
            m=f"{100 * (c.get('margin') or 0):g}")
        text += (f"Each image's own map {verb} {what} ({100 * c['diff']:+.1f} points of "
                 f"accuracy, Holm-adjusted p {format_p(c['p_holm'])}). ")
        if c["baseline"] == "tmask-shuffled":
            own_vs_other = c["verdict"]
    if own_vs_other == "equivalent":
        text += ("So here the teacher's map acts as a prior of where the evidence usually "
                 "is, not as knowledge of where it is in each image.")
    elif own_vs_other is not None and own_vs_other != "better":
        text += ("Whether the teacher's map tells the student where the evidence is in "
                 "each image, or only where it usually is, these runs cannot tell.")
    return text.strip()


def prior_clause(rows: Sequence[dict], controls: Sequence[dict]) -> str:
    """What the controls say about *how* the teacher's map helps, in one sentence chosen
    by a fixed rule: ``rows`` are :func:`won_back` rows (with ``rrr-all``), ``controls``
    the rows of :func:`control_comparisons` (with ``tmask`` vs ``tmask-shuffled``).

    Each image's own map *equivalent* to other images' maps (within the controls'
    margin) → the map acts as a prior of where digits lie; *better* → the map itself
    matters; neither shown → the controls cannot say.

    Raises:
        ValueError: the rows lack ``rrr-all`` or the controls ``tmask-shuffled``.
    """
    by = {r["method"]: r for r in rows}
    own = {c["baseline"]: c for c in controls}
    if "rrr-all" not in by or "tmask-shuffled" not in own:
        raise ValueError("give won_back rows with rrr-all and control_comparisons rows "
                         "with tmask vs tmask-shuffled")
    every = f"{100 * by['rrr-all']['diff']:.0f} %"
    c = own["tmask-shuffled"]
    if c["verdict"] == EQUIVALENT:
        return ("The controls say how: each image's own map did as well as other images' "
                f"maps (equivalent within ±{100 * c['margin']:g} point), and the same "
                f"penalty on every pixel won back {every}, so the map acted as a prior of "
                "where digits lie, not as knowledge of each image.")
    if c["verdict"] == BETTER:
        return ("The controls say the map itself matters: each image's own map did better "
                "than other images' maps.")
    return ("The controls cannot say how: each image's own map was neither detectably "
            "better than other images' maps nor shown equivalent to them (the same "
            f"penalty on every pixel won back {every}).")


def accuracy_table(results: ExperimentResults, metric: str = "test_acc",
                   confidence: float = 0.95) -> list[dict]:
    """Per ρ and method: the mean of ``metric`` over seeds with its t confidence interval.

    Returns:
        list of dict: ``rho``, ``method``, ``n``, ``mean``, ``low``, ``high`` (fractions).
    """
    from scipy import stats

    rows = []
    for rho in rhos_with_runs(results):
        for method, by_seed in shortcut_values(results, rho, metric).items():
            v = list(by_seed.values())
            mean = statistics.fmean(v)
            half = (float(stats.t.ppf(0.5 + confidence / 2, len(v) - 1))
                    * statistics.stdev(v) / math.sqrt(len(v))) if len(v) > 1 else 0.0
            rows.append({"rho": rho, "method": method, "n": len(v), "mean": mean,
                         "low": mean - half, "high": mean + half})
    return rows


def _fmt(row: dict) -> str:
    return (f"{100 * row['mean']:.1f} [{100 * row['low']:.1f}, {100 * row['high']:.1f}]")


def _methods(results: ExperimentResults) -> list[str]:
    return list(dict.fromkeys(r["method"] for r in accuracy_table(results)))


def headline_markdown(results: ExperimentResults, metric: str = "test_acc") -> str:
    """One table: a row per method, a column per ρ with runs, ``metric`` in % as mean
    [95 % CI].

    The teacher's row (one network, no interval) comes first, the references last.
    """
    rhos = rhos_with_runs(results)
    rows = {(r["rho"], r["method"]): r for r in accuracy_table(results, metric)}
    t = results.teacher
    lines = ["| method | " + " | ".join(f"ρ = {rho:g}" for rho in rhos) + " |",
             "|---" * (len(rhos) + 1) + "|"]
    if t and metric in t:
        lines.append("| teacher | " + " | ".join(f"{100 * t[metric]:.1f}" for _ in rhos)
                     + " |")
    for m in _methods(results):
        lines.append(f"| {m} | " + " | ".join(
            _fmt(rows[(rho, m)]) if (rho, m) in rows else "" for rho in rhos) + " |")
    return "\n".join(lines) + "\n"


def map_markdown(results: ExperimentResults, rho: float, part: str = "swatch") -> str:
    """Where the maps put their mass at one ρ: a row per model, a column per map kind,
    the share on the ``part`` (``"swatch"`` or ``"digit"``) in %, mean over seeds."""
    if part not in ("swatch", "digit"):
        raise ValueError(f"part must be 'swatch' or 'digit', got {part!r}")
    s = results.settings
    kinds = s["map_kinds"]
    lines = ["| model | " + " | ".join(kinds) + " |", "|---" * (len(kinds) + 1) + "|"]
    t = results.teacher
    if t.get("maps"):
        lines.append("| teacher | " + " | ".join(f"{100 * t['maps'][k][part]:.1f}"
                                                 for k in kinds) + " |")
    for m in _methods(results):
        values = {k: shortcut_values(results, rho, f"{k}:{part}").get(m) for k in kinds}
        if not all(values.values()):
            continue
        lines.append(f"| {m} | " + " | ".join(
            f"{100 * statistics.fmean(values[k].values()):.1f}" for k in kinds) + " |")
    return "\n".join(lines) + "\n"


def tuning_markdown(results: ExperimentResults, rho: float) -> str:
    """The tuning runs at one ρ: each weight tried, its accuracy on the training
    distribution's validation split (what chose it) and on random shades (what the
    practitioner cannot see)."""
    rows = results.settings.get("tuning", {}).get(f"{rho:g}", [])
    lines = ["| method | weight | val, training distribution (%) | val, random shades (%) "
             "| chosen |", "|---|---|---|---|---|"]
    for r in rows:
        mark = "✓" + (" (on random shades)" if r["selected_on"] == "val_random" else "") \
            if r["chosen"] else ""
        lines.append(f"| {r['method']} | {r['beta']:g} | {100 * r['val_acc']:.1f} | "
                     f"{100 * r['val_random_acc']:.1f} | {mark} |")
    return "\n".join(lines) + "\n"


def tuning_hindsight(results: ExperimentResults, rho: float) -> list[dict]:
    """Per tuned method at one ρ: the weight chosen on the training distribution against
    the weight that random shades would have chosen, from the tuning runs.

    The tuning sees only validation digits whose swatch still names the label, so it may
    pick a weight that lets the student use the swatch. Random-shade validation accuracy
    is what a practitioner cannot measure; this says what choosing on it would have
    changed. The tuning runs are single runs (``tune_seeds``) on the validation split:
    a hint to test with paired seeds, not a result.

    Args:
        results (ExperimentResults): shortcut results with their tuning table.
        rho (float): a ρ of the grid.

    Returns:
        list of dict: per method (RRR left out: it is already chosen on random shades),
        ``method``, ``chosen`` and ``chosen_random_acc``, ``hindsight`` (the weight best
        on random shades; ties go to the chosen one) and ``hindsight_random_acc``, and
        ``gain`` (the difference).

    Examples::

        >>> from atkd_lite.experiments.results import ExperimentResults
        >>> rows = [{"method": "fma", "beta": 0.1, "val_acc": 0.96, "val_random_acc": 0.90,
        ...          "chosen": True, "selected_on": "val"},
        ...         {"method": "fma", "beta": 1.0, "val_acc": 0.95, "val_random_acc": 0.93,
        ...          "chosen": False, "selected_on": "val"}]
        >>> res = ExperimentResults(settings={"tuning": {"1": rows}})
        >>> r = tuning_hindsight(res, 1.0)[0]
        >>> r["chosen"], r["hindsight"], round(r["gain"], 2)
        (0.1, 1.0, 0.03)
    """
    rows = results.settings.get("tuning", {}).get(f"{rho:g}", [])
    by: dict[str, list[dict]] = {}
    for r in rows:
        if r.get("selected_on", "val") == "val":
            by.setdefault(r["method"], []).append(r)
    out = []
    for method, tried in by.items():
        chosen = next((r for r in tried if r["chosen"]), None)
        if chosen is None:
            continue
        best = max(tried, key=lambda r: (r["val_random_acc"], r is chosen))
        out.append({"method": method, "chosen": chosen["beta"],
                    "chosen_random_acc": chosen["val_random_acc"], "hindsight": best["beta"],
                    "hindsight_random_acc": best["val_random_acc"],
                    "gain": best["val_random_acc"] - chosen["val_random_acc"]})
    return out


def _status_line(results: ExperimentResults) -> str:
    st = grid_status(results)
    if st["complete"]:
        return ""
    parts = [f"**Partial grid**: {st['runs']} of {st['planned_runs']} planned runs."]
    if st["completed_rhos"]:
        parts.append("Complete: rho = " + ", ".join(f"{r:g}" for r in st["completed_rhos"])
                     + ".")
    if st["partial_rhos"]:
        parts.append("Part-way: rho = " + ", ".join(f"{r:g}" for r in st["partial_rhos"])
                     + ".")
    if st["missing_rhos"]:
        parts.append("Not run: rho = " + ", ".join(f"{r:g}" for r in st["missing_rhos"])
                     + ".")
    if st["missing_references"]:
        parts.append("References not (fully) run: " + ", ".join(st["missing_references"])
                     + ".")
    parts.append(f"The whole grid: `{completion_command(results)}`.")
    return " ".join(parts)


def shortcut_markdown(results: ExperimentResults) -> str:
    """Everything in one text: for every ρ with runs the accuracy on each split with 95 %
    CIs, the verdicts against the student alone, and where the maps look; first, when the
    grid was stopped part-way, which part ran."""
    s = results.settings
    splits = {"test_acc": "random-shade test split (headline)",
              "flipped_acc": "flipped split (the swatch names a wrong class)",
              "clean_acc": "clean split (no swatch)",
              "val_acc": "validation split of the training distribution"}
    out = [f"Decoy digits, {s['swatch']}x{s['swatch']} swatch; `{s['student_size']}` "
           f"students trained on {s['train_size']} digits for {s['epochs']} epochs; mean over "
           f"seeds {s['seeds']} with 95 % confidence intervals (%).", ""]
    status = _status_line(results)
    if status:
        out += [status, ""]
    for metric, what in splits.items():
        out += [f"### Accuracy on the {what}", "", headline_markdown(results, metric)]
    for rho in rhos_with_runs(results):
        out += [f"### Against the student alone, rho = {rho:g} (random-shade accuracy)", "",
                comparison_markdown(shortcut_verdicts(results, rho))]
    for rho in rhos_with_runs(results):
        out += [f"### Share of each map's mass on the swatch (%), rho = {rho:g}", "",
                f"The swatch covers {100 * s['chance']['swatch']:.1f}% of the image.", "",
                map_markdown(results, rho, "swatch")]
    return "\n".join(out) + "\n"


def published_markdown(results: ExperimentResults | None = None, rho: float = 1.0) -> str:
    """The original papers' Decoy MNIST test accuracies next to ours (ρ = 1, random shades).

    Their networks, data sizes and (for Rieger et al.) the decoy itself differ from ours,
    so the rows compare the *pattern* (how far the plain network falls and how much the
    true-mask penalty recovers), not the numbers.
    """
    cols = ["student", "rrr", "clean"]
    lines = ["| source | network | plain network | RRR (true mask) | clean data |",
             "|---|---|---|---|---|"]
    labels = {"ross2017right": "Ross et al. (2017), authors' notebook",
              "rieger2020interpretations": "Rieger et al. (2020), ICLR submission table"}
    for key, entry in PUBLISHED.items():
        vals = [f"{entry['results'][c]:g}" if c in entry["results"] else "—" for c in cols]
        lines.append(f"| {labels[key]} | {entry['network']} | " + " | ".join(vals) + " |")
    if results is not None:
        rows = {r["method"]: r for r in accuracy_table(results) if math.isclose(r["rho"], rho)}
        vals = [_fmt(rows[c]) if c in rows else "—" for c in cols]
        s = results.settings
        kind = "MLP" if s["student_size"] in MLP_STUDENTS else "CNN"
        lines.append(f"| this book (ρ = {rho:g}) | `{s['student_size']}` {kind}, "
                     f"{s['train_size']} digits | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


def _write_shortcut_md(results: ExperimentResults, output_dir) -> None:
    from pathlib import Path

    text = shortcut_markdown(results)
    for rho in rhos_with_runs(results):
        text += f"\nVerdicts at rho = {rho:g}:\n\n" + "\n".join(
            f"- {verdict_sentence(r)}" for r in shortcut_verdicts(results, rho)) + "\n"
    text += "\nPublished numbers (other networks):\n\n" + published_markdown(results)
    atomic_write(Path(output_dir) / "shortcut.md", text.encode())

