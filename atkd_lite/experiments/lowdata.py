"""The low-data experiment: every method × several seeds on 100 digits a class.

:func:`run_experiment` trains (or takes) a teacher, builds one
:class:`~atkd_lite.cache.TeacherCache` for the training images, and distils a fresh
student with every method and seed (:func:`~atkd_lite.experiments.runner.run_grid`).
:func:`reproduce` is the same with the active profile's settings
(``atkd-lite reproduce``).

Defined in the book's chapter "Knowledge distillation".
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from atkd_lite.config import profile as get_profile
from atkd_lite.distillers import METHODS
from atkd_lite.engine import DistillConfig
from atkd_lite.experiments.results import ExperimentResults
from atkd_lite.experiments.runner import (
    GridCell,
    check_grid,
    grid_settings,
    prepare_experiment,
    run_grid,
    teacher_cache_for,
)
from atkd_lite.runtime import check_int

__all__ = ["ALL_METHODS", "reproduce", "run_experiment"]

#: every method, in the order of the book's tables
ALL_METHODS = tuple(METHODS)


def run_experiment(dataset: str = "mnist5k", methods: Sequence[str] = ALL_METHODS,
                   seeds: Sequence[int] = (0, 1, 2), per_class: int | None = 100,
                   epochs: int = 15, student_size: str = "small", teacher=None,
                   teacher_epochs: int = 12, output_dir=None, device=None,
                   use_cache: bool = True, data_seed: int = 0, progress: bool = True,
                   command: str | None = None, **distill_kwargs) -> ExperimentResults:
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
        **distill_kwargs: passed to :func:`~atkd_lite.engine.distill` (alpha, beta, …).

    Returns:
        ExperimentResults
    """
    check_grid(methods, seeds)
    check_int("epochs", epochs, minimum=1)
    DistillConfig().replace(**distill_kwargs).validate()  # fail before any training
    if distill_kwargs.get("augment") and use_cache:
        raise ValueError("augmentation and the teacher cache do not mix; pass use_cache=False")
    setup = prepare_experiment(dataset, per_class, data_seed, teacher, teacher_epochs, device,
                               progress, command)
    cache = teacher_cache_for(setup, methods, progress, **distill_kwargs) if use_cache else None
    settings = grid_settings(dataset, setup, per_class=per_class, data_seed=data_seed,
                             student_size=student_size, epochs=epochs, methods=methods,
                             seeds=seeds, cached=use_cache, distill_kwargs=distill_kwargs)
    results = run_grid(setup, settings, [GridCell(m, student_size) for m in methods], seeds,
                       epochs, cache, output_dir=output_dir, progress=progress,
                       **distill_kwargs)
    results.provenance["wall_time_s"] = time.perf_counter() - setup.t_start
    if output_dir is not None:
        results.save(output_dir)
    return results


def reproduce(output_dir="results/mnist5k-lowdata", profile: str | None = None,
              methods: Sequence[str] | None = None, seeds: Sequence[int] | None = None,
              epochs: int | None = None, per_class: int | None = None,
              student_size: str = "small", teacher=None, device=None,
              progress: bool = True, command: str | None = None,
              **kwargs) -> ExperimentResults:
    """:func:`run_experiment` with the active profile's settings (``atkd-lite reproduce``).

    CPU profile: the embedded mnist5k digits, 100 training digits per class (1,000),
    tested on the 1,000 test digits, every method × the profile's seeds, with the teacher
    cache; the student epochs are distill's tuned default (``DistillConfig().epochs``).
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
        batch_size=kwargs.pop("batch_size", prof.batch_size), **kwargs)
