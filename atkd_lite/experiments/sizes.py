"""Students of several sizes from one teacher cache: is the teacher's attention reusable?

:func:`run_sizes` trains students of several sizes from **one**
:class:`~atkd_lite.cache.TeacherCache` (the teacher runs once for all of them), each with
several methods and seeds, through the one grid runner; a run's ``method`` is
``"<size>/<method>"``, e.g. ``"tiny/fma"``. From the command line::

    atkd-lite sizes --output-dir results/mnist5k-sizes

Defined in the book's chapter "Efficiency".
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from atkd_lite.experiments.results import ExperimentResults, load_results
from atkd_lite.experiments.runner import (
    GridCell,
    check_grid,
    grid_settings,
    prepare_experiment,
    run_grid,
    teacher_cache_for,
)
from atkd_lite.models import STUDENT_SIZES

__all__ = ["SIZES", "load_sizes", "run_sizes", "size_summary"]

SIZES = tuple(STUDENT_SIZES)


def run_sizes(dataset: str = "mnist5k", sizes: Sequence[str] = SIZES,
              methods: Sequence[str] = ("student", "fma"), seeds: Sequence[int] = (0, 1, 2),
              per_class: int | None = 100, epochs: int = 30, teacher=None,
              teacher_epochs: int = 12, output_dir=None, device=None, data_seed: int = 0,
              progress: bool = True, command: str | None = None,
              **distill_kwargs) -> ExperimentResults:
    """Students of several sizes from one teacher cache; every size × method × seed.

    Args:
        dataset (str): a :func:`~atkd_lite.data.load_dataset` name.
        sizes (sequence of str): student sizes (``tiny``, ``small``, ``medium``).
        methods (sequence of str): distillation methods.
        seeds (sequence of int): one run per size, method and seed.
        per_class (int, optional): training images per class (None: the whole split).
        epochs (int): student epochs.
        teacher (nn.Module, optional): a trained teacher (default: the pretrained one).
        teacher_epochs (int): epochs of the default teacher.
        output_dir (path, optional): where to write the results files.
        device: cuda → mps → cpu by default.
        data_seed (int): picks the low-data subset.
        progress (bool): one line per run.
        command (str, optional): recorded in the provenance.
        **distill_kwargs: passed to :func:`~atkd_lite.engine.distill`.

    Returns:
        ExperimentResults: runs named ``"<size>/<method>"`` with ``size`` and
        ``base_method`` entries; the settings hold ``cache_bytes`` and ``cache_build_s``
        (the one teacher pass).
    """
    bad = [s for s in sizes if s not in SIZES]
    if bad or not sizes:
        raise ValueError(f"unknown or no student sizes {bad}; choose from {list(SIZES)}")
    check_grid(methods, seeds)
    setup = prepare_experiment(dataset, per_class, data_seed, teacher, teacher_epochs, device,
                               progress, command)
    t0 = time.perf_counter()
    cache = teacher_cache_for(setup, methods, **distill_kwargs)
    build_s = time.perf_counter() - t0
    settings = grid_settings(dataset, setup, per_class=per_class, data_seed=data_seed,
                             student_size="/".join(sizes), epochs=epochs, methods=methods,
                             seeds=seeds, cached=True, distill_kwargs=distill_kwargs,
                             sizes=list(sizes), cache_bytes=cache.nbytes(),
                             cache_build_s=build_s)
    cells = [GridCell(m, size, name=f"{size}/{m}", extra={"size": size, "base_method": m})
             for size in sizes for m in methods]
    results = run_grid(setup, settings, cells, seeds, epochs, cache, output_dir=output_dir,
                       progress=progress, **distill_kwargs)
    return results


def load_sizes(name="mnist5k-sizes") -> ExperimentResults:
    """Committed results of :func:`run_sizes` by name (shipped with the package), or a path.

    Raises:
        FileNotFoundError: no such results.
    """
    return load_results(name)


def size_summary(results: ExperimentResults) -> list[dict]:
    """Rows of :meth:`~atkd_lite.experiments.results.ExperimentResults.summary`, with ``size`` and
    ``base_method`` split out of the run names."""
    rows = []
    for row in results.summary():
        size, _, method = row["method"].partition("/")
        rows.append({**row, "size": size, "base_method": method, "delta": None})
    return rows
