"""The low-data experiment: every method × several seeds on 100 digits a class.

:func:`run_experiment` trains (or takes) a teacher, builds one
:class:`~atkd_lite.cache.TeacherCache` for the training images, and distils a fresh
student with every method and seed (:func:`~atkd_lite.experiments.runner.run_grid`).
:func:`reproduce` is the same with the active profile's settings
(``atkd-lite reproduce``).

With ``controls=True`` the grid also runs the controls that say what a method's gain is
made of (:func:`control_cells`):

=====================  ===============================================================
control                question it answers
=====================  ===============================================================
``ls``                 label smoothing with its own tuned ε: does KD beat a well-chosen
                       smoothing of the labels?
``ls-matched``         label smoothing whose target puts on the true class the same mass
                       as KD's mixed target (α, T and the teacher's soft targets)
``kd-transfer``        KD whose soft targets also cover the unused training images, as
                       an unlabelled transfer set (same number of optimisation steps)
``kd-small-teacher``   KD from a teacher trained on the student's 1,000 labels only:
                       dark knowledge without more labels
``fma-shuffled``,      the attention term towards the teacher's maps of *other* images:
``sals-shuffled``      if that helps as much, the term is a regulariser, not knowledge
``fma-untrained``      the attention term towards an untrained teacher's maps
=====================  ===============================================================

Defined in the book's chapter "Knowledge distillation".
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from atkd_lite.checks import check_int
from atkd_lite.data import DecoySet, load_dataset
from atkd_lite.distillers import METHODS
from atkd_lite.engine import DistillConfig
from atkd_lite.experiments.profiles import profile as get_profile
from atkd_lite.experiments.results import ExperimentResults, check_parts, merged_provenance
from atkd_lite.experiments.runner import (
    GridCell,
    check_grid,
    grid_settings,
    prepare_experiment,
    run_grid,
    teacher_cache_for,
)

__all__ = ["ALL_METHODS", "CONTROLS", "KD_CONTROLS", "TEACHER_SHIFT", "TUNED_LABEL_SMOOTHING",
           "control_cells", "kd_controls", "kd_controls_reading", "matched_label_smoothing",
           "merge_parts",
           "reproduce", "run_experiment"]

#: every method, in the order of the book's tables
#: the methods of the low-data grid (the committed ``mnist5k-lowdata``), that is the
#: student, Hinton's KD, Zagoruyko and Komodakis' AT and the three maps, alone and with
#: KD. Not every registered method (RRR needs a shortcut's masks and ``tmask`` belongs to
#: the shortcut experiment, ``atkd-lite shortcut``); name them with ``--methods``.
ALL_METHODS = ("student", "kd", "at", "fma", "mip", "sals", "at+kd", "fma+kd", "mip+kd",
               "sals+kd")

#: the controls of :func:`control_cells`, in the order of the book's tables
CONTROLS = ("ls", "ls-matched", "kd-transfer", "kd-small-teacher", "fma-shuffled",
            "sals-shuffled", "fma-untrained", "student-shift", "fma-input")

#: the shift augmentation (pixels) the book's teachers train with, which ``student-shift``
#: gives the student alone (``atkd-lite train-teacher``'s default)
TEACHER_SHIFT = 2

#: the family of KD's controls, each against KD itself (one family wherever it is shown:
#: chapters 3 and 10 print the same adjusted p-values)
KD_CONTROLS = ("ls", "ls-matched", "kd-small-teacher", "kd-transfer")

#: label smoothing's ε chosen on the validation split with the same budget as every
#: method's weight (``atkd-lite tune``, committed as ``mnist5k-tuning``)
TUNED_LABEL_SMOOTHING = 0.2


def matched_label_smoothing(teacher_logits: torch.Tensor, labels: torch.Tensor,
                            alpha: float, T: float) -> float:
    """The ε whose smoothed target gives the true class KD's mass.

    KD's target, read as a mixture, is ``(1 − α)·onehot(y) + α·softmax(z_T / T)``; its
    mean mass on the true class is ``1 − α + α·p̄`` with ``p̄`` the teacher's mean
    softened probability of the label. Label smoothing gives the true class
    ``1 − ε + ε/K``; equating the two gives ``ε = α (1 − p̄) K / (K − 1)``.

    Examples::

        >>> import torch
        >>> z = torch.tensor([[10.0, 0.0], [0.0, 10.0]])
        >>> round(matched_label_smoothing(z, torch.tensor([0, 1]), alpha=0.5, T=1e9), 3)
        0.5
    """
    k = teacher_logits.shape[1]
    p = torch.softmax(teacher_logits.float() / T, 1).gather(1, labels[:, None]).mean().item()
    return alpha * (1 - p) * k / (k - 1)


def control_cells(setup, cache, student_size: str, epochs: int, teacher_epochs: int,
                  progress: bool = False, names: Sequence[str] = CONTROLS,
                  **distill_kwargs) -> list:
    """The grid cells of the controls ``names`` (of :data:`CONTROLS`) for the low-data
    experiment (see the module's table), in :data:`CONTROLS`' order; builds only the extra
    teachers and caches those need.

    Raises:
        ValueError: an unknown control (the known ones are listed).
    """
    from atkd_lite.cache import TeacherCache
    from atkd_lite.checkpoints import pretrained_teacher
    from atkd_lite.data import with_unlabelled
    from atkd_lite.device import seed_everything
    from atkd_lite.distillers import DEFAULT_ALPHA
    from atkd_lite.models import teacher_cnn

    unknown = [n for n in names if n not in CONTROLS]
    if unknown:
        raise ValueError(f"unknown control(s) {unknown}; choose from {list(CONTROLS)}")
    cfg = DistillConfig().replace(**distill_kwargs)
    train = setup.train
    shuffled = cache.shuffled(seed=0) if {"fma-shuffled", "sals-shuffled"} & set(names) \
        else None

    def ls_matched() -> GridCell:
        alpha = DEFAULT_ALPHA if cfg.alpha is None else cfg.alpha
        eps = matched_label_smoothing(cache.logits(torch.arange(len(train))).cpu(),
                                      train.labels, alpha, cfg.T)
        return GridCell("student", student_size, name="ls-matched",
                        extra={"control": "label smoothing matched to KD",
                               "label_smoothing": eps},
                        settings={"label_smoothing": eps})

    def kd_transfer() -> GridCell:
        # the training images the low-data student does not see (told apart by their
        # pixels), as an unlabelled transfer set
        full = load_dataset(setup.dataset, "train")
        seen = {bytes(img.numpy()) for img in train.images}
        rest = full.subset([i for i in range(len(full))
                            if bytes(full.images[i].numpy()) not in seen])
        union = with_unlabelled(train, rest)
        steps = math.ceil(len(train) / cfg.batch_size) * epochs
        transfer_epochs = max(1, round(steps / math.ceil(len(union) / cfg.batch_size)))
        union_cache = TeacherCache.build(setup.teacher, union, maps=(), at=False,
                                         device=setup.device, progress=False)
        return GridCell("kd", student_size, name="kd-transfer", train=union,
                        cache=union_cache,
                        extra={"control": "KD with an unlabelled transfer set",
                               "transfer_images": len(rest), "epochs": transfer_epochs},
                        settings={"epochs": transfer_epochs})

    def kd_small_teacher() -> GridCell:
        small_teacher, _ = pretrained_teacher(setup.dataset, epochs=teacher_epochs,
                                              per_class=len(train) // train.num_classes,
                                              device=setup.device, progress=progress)
        small_cache = TeacherCache.build(small_teacher, train, maps=(), at=False,
                                         device=setup.device, progress=False)
        return GridCell("kd", student_size, name="kd-small-teacher", teacher=small_teacher,
                        cache=small_cache,
                        extra={"control": "KD from a teacher trained on the student's "
                                          "labels only"})

    def fma_untrained() -> GridCell:
        seed_everything(0)
        untrained = teacher_cnn(in_channels=train.in_channels,
                                num_classes=train.num_classes).to(setup.device).eval()
        untrained_cache = TeacherCache.build(untrained, train, maps=("fma",), at=False,
                                             device=setup.device, progress=False,
                                             first=cfg.first, last=cfg.last, size=cfg.size)
        return GridCell("fma", student_size, name="fma-untrained", teacher=untrained,
                        cache=untrained_cache,
                        extra={"control": "FMA towards an untrained teacher's maps"})

    builders = {
        "ls": lambda: GridCell("student", student_size, name="ls",
                               extra={"control": "label smoothing",
                                      "label_smoothing": TUNED_LABEL_SMOOTHING},
                               settings={"label_smoothing": TUNED_LABEL_SMOOTHING}),
        "ls-matched": ls_matched,
        "kd-transfer": kd_transfer,
        "kd-small-teacher": kd_small_teacher,
        "fma-shuffled": lambda: GridCell(
            "fma", student_size, name="fma-shuffled", cache=shuffled,
            extra={"control": "FMA towards other images' teacher maps"}),
        "sals-shuffled": lambda: GridCell(
            "sals", student_size, name="sals-shuffled", cache=shuffled,
            extra={"control": "SALS towards other images' teacher maps"}),
        "fma-untrained": fma_untrained,
        "student-shift": lambda: GridCell(
            "student", student_size, name="student-shift", online=True,
            settings={"augment": TEACHER_SHIFT},
            extra={"control": "the student alone with the teacher's shift augmentation",
                   "augment": TEACHER_SHIFT}),
        "fma-input": lambda: GridCell(
            "fma-input", student_size, name="fma-input",
            extra={"control": "FMA towards the input blurred to the maps' scales"}),
    }
    return [builders[name]() for name in CONTROLS if name in names]


def run_experiment(dataset: str = "mnist5k", methods: Sequence[str] = ALL_METHODS,
                   seeds: Sequence[int] = (0, 1, 2), per_class: int | None = 100,
                   epochs: int = 15, student_size: str = "small", teacher=None,
                   teacher_epochs: int = 12, output_dir=None, device=None,
                   use_cache: bool = True, data_seed: int = 0, progress: bool = True,
                   command: str | None = None, controls: bool | Sequence[str] = False,
                   **distill_kwargs) -> ExperimentResults:
    """Distil a fresh student with every method and seed; summarise and (optionally) save.

    Args:
        dataset (str): a :func:`~atkd_lite.data.load_dataset` name (train/test splits).
        methods (sequence of str): methods of :func:`~atkd_lite.engine.distill`.
        seeds (sequence of int): one run per seed and method (student initialisation
            and batch order, paired across methods); the training subset is the same
            for all.
        per_class (int, optional): low-data setting, this many training images per class
            (``data_seed`` picks them); None = the whole training split.
        epochs (int): student epochs.
        student_size (str): ``tiny`` / ``small`` / ``medium``.
        teacher (nn.Module, optional): a trained teacher; None =
            :func:`~atkd_lite.checkpoints.pretrained_teacher` (trained once, then cached).
        teacher_epochs (int): epochs for that teacher.
        output_dir (path, optional): where to write the results files.
        device: cuda → mps → cpu by default.
        use_cache (bool): build a :class:`~atkd_lite.cache.TeacherCache` once and use it
            for every run.
        progress (bool): progress bars.
        command (str, optional): the command to record (default: ``sys.argv``).
        controls (bool or sequence of str): also run the controls: True for all of
            :data:`CONTROLS`, or those named (they need the cache; the maps they read,
            e.g. ``fma`` and ``sals`` for the shuffled maps, are added to it).
        **distill_kwargs: passed to :func:`~atkd_lite.engine.distill` (alpha, beta, …).

    Returns:
        ExperimentResults
    """
    check_grid(methods, seeds)
    masked = [m for m in methods if getattr(METHODS[m][0], "needs_swatch_masks", False)]
    if masked and not isinstance(load_dataset(dataset, "train"), DecoySet):
        raise ValueError(f"{masked} train only on data with swatch masks (decoy digits), "
                         f"not on {dataset!r}; leave them out, or run the shortcut "
                         "experiment (atkd-lite shortcut)")
    chosen = list(CONTROLS) if controls is True else list(controls or [])
    unknown = [c for c in chosen if c not in CONTROLS]
    if unknown:
        raise ValueError(f"unknown control(s) {unknown}; choose from {list(CONTROLS)}")
    if chosen and not use_cache:
        raise ValueError("the controls need the teacher cache; pass use_cache=True")
    check_int("epochs", epochs, minimum=1)
    DistillConfig().replace(**distill_kwargs).validate()  # fail before any training
    if distill_kwargs.get("augment") and use_cache:
        raise ValueError("augmentation and the teacher cache do not mix; pass use_cache=False")
    setup = prepare_experiment(dataset, per_class, data_seed, teacher, teacher_epochs, device,
                               progress, command)
    # the maps the controls read from the grid's cache
    reads = {"fma-shuffled": "fma", "sals-shuffled": "sals", "fma-input": "fma-input"}
    needed = [*methods, *(reads[c] for c in chosen if c in reads)]
    cache = teacher_cache_for(setup, needed, progress, **distill_kwargs) if use_cache else None
    cells = [GridCell(m, student_size) for m in methods]
    if chosen:
        cells += control_cells(setup, cache, student_size, epochs, teacher_epochs, progress,
                               names=chosen, **distill_kwargs)
    settings = grid_settings(dataset, setup, per_class=per_class, data_seed=data_seed,
                             student_size=student_size, epochs=epochs, methods=methods,
                             seeds=seeds, cached=use_cache, distill_kwargs=distill_kwargs,
                             controls=[c.label for c in cells[len(methods):]])
    return run_grid(setup, settings, cells, seeds, epochs, cache, output_dir=output_dir,
                    progress=progress, **distill_kwargs)


def reproduce(output_dir="results/mnist5k-lowdata", profile: str | None = None,
              methods: Sequence[str] | None = None, seeds: Sequence[int] | None = None,
              epochs: int | None = None, per_class: int | None = None,
              student_size: str = "small", teacher=None, device=None,
              progress: bool = True, command: str | None = None,
              controls: bool | Sequence[str] = True, **kwargs) -> ExperimentResults:
    """:func:`run_experiment` with the active profile's settings (``atkd-lite reproduce``).

    CPU profile: the embedded mnist5k digits, 100 training digits per class (1,000),
    tested on the 1,000 test digits, every method × the profile's seeds, with the teacher
    cache, and the controls (:data:`CONTROLS`); the student epochs are distill's tuned
    default (``DistillConfig().epochs``).
    Any argument overrides these; ``None`` means "the profile's", an empty list or 0 is
    an error (never silently the default).
    """
    prof = get_profile(profile)
    if methods is not None and not list(methods):
        raise ValueError("methods is empty; give at least one method, or None for all")
    if seeds is not None and not list(seeds):
        raise ValueError("seeds is empty; give at least one seed, or None for the profile's")
    return run_experiment(
        dataset=prof.dataset, methods=tuple(methods) if methods is not None else ALL_METHODS,
        seeds=tuple(seeds) if seeds is not None else prof.seeds,
        per_class=per_class if per_class is not None else prof.low_data_per_class,
        epochs=epochs if epochs is not None else DistillConfig().epochs,
        student_size=student_size, teacher=teacher, teacher_epochs=prof.teacher_epochs,
        output_dir=output_dir, device=device, progress=progress, command=command,
        controls=controls, batch_size=kwargs.pop("batch_size", prof.batch_size), **kwargs)


def kd_controls(results) -> list[dict]:
    """KD against each of its controls: the rows of the declared question
    ``"kd-controls"`` (:mod:`atkd_lite.experiments.questions`: one family, an equivalence
    margin of one point), each control as the method and ``kd`` as the baseline."""
    from atkd_lite.experiments.questions import question

    return question("kd-controls").rows(results)


def kd_controls_reading(rows) -> str:
    """What KD's controls say about its gain, in one sentence chosen by their verdicts.

    ``rows``: :func:`kd_controls` (differences and equivalence within the question's
    margin). Matched label smoothing *equivalent* to KD means that the soft targets' gain
    can be explained by their smoothing alone (the runs cannot tell dark knowledge apart
    from it); a teacher trained on the student's labels only that gives less means part
    of the gain is the teacher's extra labels; the unlabelled transfer set adds to KD,
    adds nothing (equivalent), or cannot be told. Defined in the book's chapter
    "Knowledge distillation"; chapter "Conclusions" prints the same sentence.

    Examples::

        >>> rows = [{"method": "ls-matched", "verdict": "equivalent", "margin": 0.01},
        ...         {"method": "kd-small-teacher", "verdict": "worse"}]
        >>> kd_controls_reading(rows)[:62]
        'Label smoothing with the matched ε is equivalent to KD within '
    """
    from atkd_lite.experiments.stats import BETTER, EQUIVALENT, WORSE

    by = {r["method"]: r for r in rows}

    def within(r):
        return f"within ±{100 * r['margin']:g} point{'s' if r['margin'] != 0.01 else ''}"

    readings = []
    if "ls-matched" in by:
        r = by["ls-matched"]
        readings.append(
            f"label smoothing with the matched ε is equivalent to KD {within(r)}, so on "
            "these digits the soft targets' gain can be explained by their smoothing "
            "alone: this experiment cannot tell dark knowledge apart from it"
            if r["verdict"] == EQUIVALENT else
            "KD beats label smoothing with the matched ε, so its soft targets carry more "
            "than their smoothing" if r["verdict"] == WORSE else
            "label smoothing with the matched ε beats KD, so the soft targets' extra "
            "content does not help here" if r["verdict"] == BETTER else
            "the runs cannot tell whether label smoothing with the matched ε explains "
            "KD's gain (neither a difference nor equivalence is shown)")
    if "kd-small-teacher" in by:
        r = by["kd-small-teacher"]
        readings.append(
            "a teacher that saw only the student's labels gives less, so part of the "
            "gain is the teacher's three times more labels"
            if r["verdict"] == WORSE else
            f"a teacher that saw only the student's labels gives as much ({within(r)}), "
            "so the gain is not borrowed labels" if r["verdict"] == EQUIVALENT else
            "a teacher that saw only the student's labels gives more" if r["verdict"] ==
            BETTER else
            "the runs cannot tell whether the teacher's extra labels matter")
    if "kd-transfer" in by:
        r = by["kd-transfer"]
        readings.append(
            "the unlabelled transfer set adds to KD" if r["verdict"] == BETTER else
            f"the unlabelled transfer set adds nothing ({within(r)})"
            if r["verdict"] == EQUIVALENT else
            "the unlabelled transfer set makes KD worse" if r["verdict"] == WORSE else
            "the runs cannot tell whether the unlabelled transfer set adds anything")
    if not readings:
        return "No control of KD has runs here."
    reading = "; ".join(readings)
    return reading[0].upper() + reading[1:] + "."


#: the settings in which the parts of one low-data grid may differ
_PART_KEYS = ("methods", "controls")


def merge_parts(parts: Sequence[ExperimentResults], output_dir=None) -> ExperimentResults:
    """One low-data grid from parts run one after another, e.g. a grid that stopped
    part-way (its results keep the runs that finished) and a second command that ran the
    rest.

    Every run is seeded by its method and seed alone and trains on the same digits and
    the same teacher's cache, so which runs ran before it does not change it
    (``tests/test_experiments.py`` checks a grid run whole and in two parts give the same
    accuracies). The merge checks that the parts fit (one clean commit, the same teacher
    weights, the same settings apart from their methods and controls, no method and seed
    twice), keeps the runs in the order of the parts, lists each part's command, date
    and wall time in the provenance (``parts``; ``wall_time_s`` is their sum), and
    records as ``command`` the one command that runs the merged grid.

    Raises:
        ValueError: fewer than two parts, or parts that do not belong to one grid (the
            message names the first difference).
    """
    import copy
    import re

    parts = check_parts(parts)
    first = parts[0]
    mine = {k: v for k, v in first.settings.items() if k not in _PART_KEYS}
    for i, p in enumerate(parts[1:], 1):
        other = {k: v for k, v in p.settings.items() if k not in _PART_KEYS}
        if other != mine:
            key = next(k for k in sorted(set(other) | set(mine)) if other.get(k) != mine.get(k))
            raise ValueError(f"part {i} differs from part 0 in the setting {key!r}; the "
                             "parts of one grid differ only in their methods")
        if p.teacher.get("weights_sha256") != first.teacher.get("weights_sha256") or \
                p.teacher.get("weights_sha256") is None:
            raise ValueError(f"part {i} used another teacher than part 0 (or a teacher "
                             "whose weights were not recorded)")
    runs = [copy.deepcopy(r) for p in parts for r in p.runs]
    cells = [(r["method"], r["seed"]) for r in runs]
    twice = sorted({c for c in cells if cells.count(c) > 1})
    if twice:
        raise ValueError(f"the parts hold the same method and seed more than once {twice}; "
                         "each run belongs to one part")
    ran = list(dict.fromkeys(r["method"] for r in runs))
    settings = copy.deepcopy(first.settings)
    settings["methods"] = [m for m in ran if m not in CONTROLS]
    settings["controls"] = [c for c in CONTROLS if c in ran]
    prov = merged_provenance(parts, parts[-1])
    prov["wall_time_s"] = sum(p.provenance.get("wall_time_s") or 0.0 for p in parts)
    command = re.sub(r"\s--methods\s+\S+", "", str(prov.get("command") or "atkd-lite "
                                                                         "reproduce"))
    command = re.sub(r"\s--output-dir\s+\S+", "", command)
    command += f" --methods {','.join(settings['methods'])}"
    if not settings["controls"]:
        command += " --no-controls"
    if output_dir is not None:
        command += f" --output-dir {output_dir}"
    prov["command"] = command
    merged = ExperimentResults(settings=settings, runs=runs,
                               teacher=copy.deepcopy(first.teacher), provenance=prov)
    if output_dir is not None:
        merged.save(output_dir)
    return merged
