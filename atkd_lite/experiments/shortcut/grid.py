"""Running the shortcut grid: the controls' cells (:func:`control_cells`), each method's
weight tuned on a validation split (:func:`tune_weights`), the whole experiment
(:func:`run_shortcut`), and one grid joined from parts run side by side
(:func:`merge_shortcut`).

Part of :mod:`atkd_lite.experiments.shortcut` (every name here is also importable from
there).
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

from atkd_lite.checks import check_int, check_number
from atkd_lite.data import DecoySet, decoy_mnist
from atkd_lite.engine import evaluate
from atkd_lite.experiments.faithfulness import scoring_subset
from atkd_lite.experiments.results import ExperimentResults, check_parts, merged_provenance
from atkd_lite.experiments.runner import (
    ExperimentSetup,
    GridCell,
    check_grid,
    grid_settings,
    prepare_experiment,
    run_grid,
    teacher_cache_for,
)
from atkd_lite.experiments.shortcut.design import (
    CONTROL_BASE,
    CONTROLS,
    DEFAULT_METHODS,
    MLP_METHODS,
    REFERENCES,
    SELECT_ON,
    reference_methods,
)
from atkd_lite.experiments.shortcut.report import write_shortcut_md
from atkd_lite.experiments.shortcut.scoring import check_teacher, map_kinds_for, swatch_scores
from atkd_lite.experiments.shortcut.status import completion_command, grid_status
from atkd_lite.methods import ATDistiller, parse_method
from atkd_lite.metrics import box_mask
from atkd_lite.models import MLP_STUDENTS, build_student

__all__ = [
    "choose_weight",
    "control_cells",
    "merge_shortcut",
    "run_shortcut",
    "tune_weights",
    "with_mask_boxes",
]


def with_mask_boxes(data: DecoySet, where: str) -> DecoySet:
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


def control_cells(train: DecoySet, cache, betas: dict, student_size: str,
                  rho: float, names: Sequence[str] = tuple(CONTROLS)) -> list[GridCell]:
    """The grid cells of :data:`~atkd_lite.experiments.shortcut.design.CONTROLS` at one
    ρ: RRR with a wrong mask, with a mask that misses every swatch and with every pixel
    as the mask (on ``train`` with moved mask boxes), and ``tmask`` with another image's
    teacher map (``cache.shuffled``).

    Args:
        train: the decoy training digits of this ρ.
        cache: the teacher cache of the grid (holding the ``sals`` maps).
        betas: the tuned weights; needs ``rrr`` and ``tmask``.
        student_size: the student.
        rho: the ρ the cells are labelled with.
        names: which controls (default: all of
            :data:`~atkd_lite.experiments.shortcut.design.CONTROLS`).

    Raises:
        ValueError: an unknown control, or ``betas`` lacks the weight a control takes
            (run its method in the grid).
    """
    names = _check_controls(names)
    missing = sorted({CONTROL_BASE[n] for n in names} - set(betas))
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
                                  train=with_mask_boxes(train, "opposite")),
        "rrr-all": lambda: cell("rrr", "rrr-all", betas["tmask"],
                                train=with_mask_boxes(train, "all")),
        "tmask-shuffled": lambda: cell("tmask", "tmask-shuffled", betas["tmask"],
                                       cache=cache.shuffled(seed=0)),
        "rrr-centre": lambda: cell("rrr", "rrr-centre", betas["rrr"],
                                   train=with_mask_boxes(train, "centre")),
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


def choose_weight(scores: dict[float, float], default: float) -> float:
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
            best = choose_weight({b: s[key] for b, s in scores.items()}, default)
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


def held_out(val: DecoySet, train: DecoySet) -> DecoySet | None:
    """The digits of ``val`` that ``train`` does not hold (told apart by their index among
    the embedded digits), or None when it holds them all.

    ``val`` splits the training digits (``fit`` + ``val`` = ``train``), so a student trained
    on ``train``, or on a subset of it, has seen some of them: its accuracy on those would
    be a training accuracy.
    """
    seen = set(train.digit_index.tolist())
    keep = [i for i, d in enumerate(val.digit_index.tolist()) if d not in seen]
    return val.subset(keep) if keep else None


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
    by where its maps put their mass
    (:func:`~atkd_lite.experiments.shortcut.scoring.swatch_scores`).

    Args:
        rhos: values of ρ in [0, 1].
        methods: the practitioner's methods
            (:data:`~atkd_lite.experiments.shortcut.design.DEFAULT_METHODS`; for an MLP
            student, :data:`~atkd_lite.experiments.shortcut.design.MLP_METHODS`).
        references: any of :data:`~atkd_lite.experiments.shortcut.design.REFERENCES`.
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
        max_teacher_gap: see :func:`~atkd_lite.experiments.shortcut.scoring.check_teacher`.
        output_dir: write the results there (after every part, and at the end).
        device: cuda → mps → cpu by default.
        data_seed: picks the ``per_class`` subset.
        progress: one line per run.
        command: recorded in the provenance.
        select_on: what the tuning chooses each weight on (:func:`tune_weights`):
            ``"val"``, the practitioner's grid, or ``"val_random"``, the oracle grid.
        controls: also run controls at every ρ (:func:`control_cells`): True for every
            one of :data:`~atkd_lite.experiments.shortcut.design.CONTROLS`, or their
            names; each needs the method whose weight it takes in the grid (``tmask`` in
            ``methods``, ``rrr`` in ``references``).
        **distill_kwargs: passed to :func:`~atkd_lite.engine.distill` (not ``beta``,
            which is tuned).

    Returns:
        ExperimentResults: one run per method, ρ and seed, named ``"rho=<ρ>/<method>"``
        (``"clean"`` once), each with ``rho``, ``base_method``, ``beta``,
        ``flipped_acc``, ``clean_acc``, ``val_acc`` and ``maps``
        (:func:`~atkd_lite.experiments.shortcut.scoring.swatch_scores`); the settings hold
        the tuning table and the chosen weights, the teacher its accuracies and map
        scores.

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
    missing = sorted({CONTROL_BASE[n] for n in controls} - {*methods, *references})
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
        out = {"flipped_acc": evaluate(s, splits["flipped"], device=setup0.device),
               "clean_acc": evaluate(s, splits["clean"], device=setup0.device)}
        if current["val"] is not None:  # only digits the student did not train on
            out["val_acc"] = evaluate(s, current["val"], device=setup0.device)
        out["maps"] = swatch_scores(s, scored, kinds, device=setup0.device)
        return out

    area = {"swatch": box_mask(scored.swatch_boxes, scored.image_size).float().mean().item(),
            "digit": box_mask(scored.boxes, scored.image_size).float().mean().item()}
    settings = grid_settings("decoy", dataclasses.replace(setup0, test=test),
                             per_class=per_class, data_seed=data_seed,
                             student_size=student_size, epochs=epochs, methods=methods,
                             seeds=seeds, cached=True, distill_kwargs=distill_kwargs,
                             rhos=rhos, references=list(references), swatch=swatch,
                             score_n=len(scored), map_kinds=list(kinds), chance=area,
                             tune=tune, tune_seeds=list(tune_seeds), tuning={}, betas={},
                             select_on=select_on, val_held_out={},
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
        val = decoy_mnist("val", rho=rho, swatch=swatch)
        current["val"] = held_out(val, train)
        settings["val_held_out"][f"{rho:g}"] = 0 if current["val"] is None else len(
            current["val"])
        setup = dataclasses.replace(setup0, train=train, test=test)
        settings["train_size"] = len(train)
        tunable = [m for m in [*methods, *reference_methods(references)] if _tunable(m)]
        if tune and tunable:
            fit = _subset(decoy_mnist("fit", rho=rho, swatch=swatch), per_class, data_seed)
            betas, rows = tune_weights(setup, fit, val,  # fit and val: no digit in common
                                       decoy_mnist("val", rho=0.0, swatch=swatch), tunable,
                                       tune_seeds, epochs, beta_factors, rrr_lambdas,
                                       max_extend, student_size, progress,
                                       select_on=select_on, **distill_kwargs)
            settings["tuning"][f"{rho:g}"] = rows
        else:
            betas = {m: parse_method(m)[1].default_beta for m in tunable}
        settings["betas"][f"{rho:g}"] = betas
        cache = teacher_cache_for(setup, methods, **distill_kwargs)
        for name in [*methods, *reference_methods(references)]:
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
        # the clean digits are the last ρ's training digits, without their swatches
        current["val"] = held_out(decoy_mnist("val", rho=rhos[-1], swatch=swatch), train)
        add(run_grid(dataclasses.replace(setup0, train=clean_train, test=test), settings,
                     [GridCell("student", student_size, name="clean",
                               extra={"rho": None, "base_method": "clean", "beta": 0.0})],
                     seeds, epochs, None, score=score, progress=progress, **distill_kwargs))
    if output_dir is not None:
        write_shortcut_md(results, output_dir)
    return results


#: settings that differ between the parts of one grid run as separate commands
_PART_KEYS = ("rhos", "references", "tuning", "betas", "val_held_out", "completed_rhos",
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
        parts: shortcut results (:func:`run_shortcut`,
            :func:`~atkd_lite.experiments.shortcut.status.load_shortcut`), in the order
            their ρ should appear.
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
    if any("val_held_out" in p.settings for p in parts):
        settings["val_held_out"] = {k: v for p in parts
                                    for k, v in p.settings.get("val_held_out", {}).items()}
    prov = merged_provenance(parts, first)
    prov["wall_time_s"] = max(p.provenance.get("wall_time_s", 0.0) for p in parts)
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
        write_shortcut_md(merged, output_dir)
    return merged
