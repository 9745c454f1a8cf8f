"""The one grid runner: every cell (method, student size, …) × every seed, paired by seed.

Every experiment of the book is a grid: the same teacher, the same training images and
one :class:`~atkd_lite.cache.TeacherCache`, then a fresh student per cell and seed. The
same seed gives every cell the same student initialisation and the same batch order, so
methods are compared on *paired* seeds (:mod:`atkd_lite.experiments.stats`).

- :func:`prepare_experiment` loads the data, takes or trains the teacher and records
  provenance;
- :func:`teacher_cache_for` builds the one cache with what the grid's methods need;
- :func:`distill_run` distils one fresh, seeded student;
- :func:`run_grid` runs the whole grid, saving after every run (an interrupted
  experiment keeps its finished runs).

Defined in the book's chapter "Knowledge distillation".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from atkd_lite.cache import TeacherCache
from atkd_lite.checkpoints import pretrained_teacher
from atkd_lite.checks import check_int
from atkd_lite.cost import count_parameters
from atkd_lite.data import load_dataset
from atkd_lite.device import get_device, seed_everything
from atkd_lite.engine import DistillConfig, distill, evaluate
from atkd_lite.experiments.results import ExperimentResults, provenance
from atkd_lite.files import tensor_digest
from atkd_lite.methods import METHODS, signals_for
from atkd_lite.models import build_student

__all__ = ["ExperimentSetup", "GridCell", "check_grid", "distill_run", "grid_settings",
           "prepare_experiment", "run_grid", "simple_settings", "teacher_cache_for"]


@dataclass
class ExperimentSetup:
    """What every experiment starts from: data, teacher and provenance (see
    :func:`prepare_experiment`)."""

    device: torch.device
    provenance: dict
    train: object
    test: object
    teacher: torch.nn.Module
    teacher_info: dict
    t_start: float
    dataset: str | None = None


@dataclass
class GridCell:
    """One cell of a grid: a method for a student size, run once per seed.

    A cell may differ from the experiment's setup in what it is trained from — the
    controls: another teacher (e.g. untrained, or trained on fewer labels), another
    cache (e.g. shuffled maps), other training images (e.g. with an unlabelled transfer
    set), other distillation settings (e.g. label smoothing).

    Attributes:
        method: the distillation method.
        student_size: ``tiny`` / ``small`` / ``medium``, or an MLP
            (:func:`~atkd_lite.models.build_student`).
        name: the run's label in the results (default: ``method``).
        extra: recorded with each of the cell's runs (e.g. ``{"size": "tiny"}``).
        settings: distillation settings for this cell only (override the grid's).
        teacher: the teacher for this cell (default: the experiment's).
        cache: the teacher cache for this cell (default: the grid's).
        train: the training images for this cell (default: the experiment's).
        student: a function of the training images that returns a fresh student, for a
            student that no size names (a recipe's own network); default
            :func:`~atkd_lite.models.build_student` with ``student_size``.
        online: run without any teacher cache (a cell that augments its images, which
            a cache cannot follow).
    """

    method: str
    student_size: str = "small"
    name: str | None = None
    extra: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    teacher: object = None
    cache: object = None
    train: object = None
    student: Callable[[object], torch.nn.Module] | None = None
    online: bool = False

    @property
    def label(self) -> str:
        return self.name or self.method


def check_grid(methods: Sequence[str], seeds: Sequence[int]) -> None:
    """Raise ValueError for unknown methods or no seeds (before any work is done)."""
    methods = list(methods)
    if not methods:
        raise ValueError(f"give at least one method; choose from {', '.join(METHODS)}")
    unknown = [m for m in methods if not isinstance(m, str) or m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
    if not list(seeds):
        raise ValueError("give at least one seed")
    for seed in seeds:
        check_int("seed", seed, minimum=0)  # a bad seed fails now, not after the teacher


def prepare_experiment(dataset: str, per_class: int | None, data_seed: int, teacher,
                       teacher_epochs: int, device, progress: bool,
                       command: str | None) -> ExperimentSetup:
    """Load the data (the low-data subset if ``per_class``), take or train the teacher, and
    record provenance — the common start of every experiment."""
    t_start = time.perf_counter()
    dev = get_device(device)
    prov = provenance(command, dev)
    train = load_dataset(dataset, "train")
    test = load_dataset(dataset, "test")
    if per_class is not None:
        train = train.per_class(per_class, seed=data_seed)
    teacher_meta: dict = {}
    if teacher is None:
        teacher, meta = pretrained_teacher(dataset, epochs=teacher_epochs, device=dev,
                                           progress=progress)
        teacher_meta = {"source": "pretrained_teacher", "epochs": teacher_epochs,
                        "recipe_key": meta.get("recipe_key")}
    else:
        teacher_meta = {"source": "given"}
    teacher.to(dev).eval()
    info = {"test_acc": evaluate(teacher, test, device=dev),
            "parameters": count_parameters(teacher), **teacher_meta,
            # which weights, exactly: the same digest a checkpoint of them carries
            "weights_sha256": tensor_digest(teacher.state_dict())}
    return ExperimentSetup(dev, prov, train, test, teacher, info, t_start, dataset)


def teacher_cache_for(setup: ExperimentSetup, methods: Sequence[str], progress: bool = False,
                      **distill_kwargs) -> TeacherCache:
    """One :class:`~atkd_lite.cache.TeacherCache` with what ``methods`` need, built with the
    same layer selection, map size and precision that ``distill_kwargs`` give distill."""
    defaults = DistillConfig()
    return TeacherCache.build(
        setup.teacher, setup.train, **signals_for(methods), device=setup.device,
        progress=progress, first=distill_kwargs.get("first", defaults.first),
        last=distill_kwargs.get("last", defaults.last), size=distill_kwargs.get("size"),
        amp=distill_kwargs.get("amp"))


def distill_run(setup: ExperimentSetup, method: str, seed: int, epochs: int,
                student_size: str = "small", cache: TeacherCache | None = None,
                progress: bool = False, teacher=None, train=None, student=None,
                **distill_kwargs):
    """Distil one fresh, seeded student; returns ``(DistillResult, run record)``.

    The seed fixes the student's initialisation (seeded before it is built) and the
    batch order, so runs of different methods with one seed are paired. ``teacher`` and
    ``train`` replace the setup's (for controls); ``student`` (a function of the training
    images) builds the student instead of ``student_size``.
    """
    train = setup.train if train is None else train
    seed_everything(seed)
    if student is not None:
        student = student(train)
    else:
        student = build_student(student_size, in_channels=train.in_channels,
                                num_classes=train.num_classes, image_size=train.image_size)
    res = distill(setup.teacher if teacher is None else teacher, student, train, setup.test,
                  method=method, epochs=epochs, seed=seed, cache=cache, device=setup.device,
                  progress=progress, **distill_kwargs)
    record = {"method": method, "seed": seed, "test_acc": res.test_acc,
              "parameters": res.student_parameters, "time_per_epoch_s": res.time_per_epoch,
              "params": res.params, "history": res.history.records}
    return res, record


def simple_settings(distill_kwargs: dict) -> dict:
    """The JSON-friendly part of ``distill_kwargs`` (for a results file's settings)."""
    return {k: v for k, v in distill_kwargs.items()
            if isinstance(v, (int, float, str, bool, type(None)))}


def grid_settings(dataset: str, setup: ExperimentSetup, *, per_class, data_seed: int,
                  student_size: str, epochs: int, methods: Sequence[str],
                  seeds: Sequence[int], cached: bool, distill_kwargs: dict, **extra) -> dict:
    """The settings block of a results file (what was run, on what)."""
    return {"dataset": dataset, "train_name": setup.train.name, "train_size": len(setup.train),
            "test_name": setup.test.name, "test_size": len(setup.test), "per_class": per_class,
            "data_seed": data_seed, "student_size": student_size, "epochs": epochs,
            "methods": list(methods), "seeds": list(seeds), "cached": cached,
            "distill": simple_settings(distill_kwargs), **extra}


def run_grid(setup: ExperimentSetup, settings: dict, cells: Sequence[GridCell],
             seeds: Sequence[int], epochs: int, cache: TeacherCache | None = None, *,
             score: Callable[[object], dict] | None = None, output_dir=None,
             progress: bool = True, done: Mapping[tuple[str, int], dict] | None = None,
             **distill_kwargs) -> ExperimentResults:
    """Every cell × every seed: a fresh student distilled from ``setup``'s teacher.

    Args:
        setup: from :func:`prepare_experiment`.
        settings: the results' settings (:func:`grid_settings`).
        cells: the grid's cells (method, student size, label).
        seeds: one run per cell and seed (paired across cells).
        epochs: student epochs.
        cache: the teacher cache every run uses (None: the teacher runs online).
        score: ``score(DistillResult) -> dict`` added to each run's record (e.g. map scores).
        output_dir: save there after every run, and at the end.
        progress: one line per run.
        done: runs already made, by (cell label, seed): kept as they are instead of run
            again (an interrupted session that resumes; the caller decides which runs
            may be kept).
        **distill_kwargs: passed to :func:`~atkd_lite.engine.distill`; a grid evaluates
            the test data after the last epoch only (``eval_every=0``) unless they say
            otherwise.

    Returns:
        ExperimentResults: one run per cell and seed, in grid order.
    """
    results = ExperimentResults(settings=settings, teacher=setup.teacher_info,
                                provenance=setup.provenance)
    done = done or {}
    for cell in cells:
        for seed in seeds:
            if (cell.label, seed) in done:
                results.runs.append(done[(cell.label, seed)])
                continue
            settings = {"eval_every": 0, **distill_kwargs, **cell.settings}
            cell_cache = None if cell.online else cache if cell.cache is None else cell.cache
            res, record = distill_run(setup, cell.method, seed, settings.pop("epochs", epochs),
                                      cell.student_size, cell_cache,
                                      teacher=cell.teacher, train=cell.train,
                                      student=cell.student, **settings)
            record.update(method=cell.label, **cell.extra)
            if score is not None:
                record.update(score(res))
            results.runs.append(record)
            results.provenance["wall_time_s"] = time.perf_counter() - setup.t_start
            if output_dir is not None:  # an interrupted experiment keeps its finished runs
                results.save(output_dir)
            if progress:
                print(f"{cell.label:12s} seed {seed}: test accuracy "
                      f"{100 * res.test_acc:.2f}%", flush=True)
    results.provenance["wall_time_s"] = time.perf_counter() - setup.t_start
    if output_dir is not None:
        results.save(output_dir)
    return results
