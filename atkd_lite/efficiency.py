"""What a student costs and what it buys: size, latency, accuracy, and the reused teacher.

- :func:`model_costs` — parameters, bytes on disk and CPU latency per image of models;
- :func:`run_sizes` — students of several sizes trained from **one**
  :class:`~atkd_lite.cache.TeacherCache` (the teacher runs once for all of them), each
  with several methods and seeds; saved like :func:`atkd_lite.experiments.run_experiment`
  (a run's ``method`` is ``"<size>/<method>"``, e.g. ``"tiny/fma"``). From the command
  line::

      python -m atkd_lite.efficiency --output-dir results/mnist5k-sizes

Defined in the book's chapter "Efficiency".

Examples::

    >>> import atkd_lite as ak
    >>> from atkd_lite.efficiency import model_costs
    >>> rows = model_costs({"tiny": ak.student_cnn("tiny")}, (1, 1, 28, 28), repeats=3)
    >>> rows[0]["parameters"] == ak.count_parameters(ak.student_cnn("tiny"))
    True
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping, Sequence

from torch import nn

from atkd_lite.distill import METHODS
from atkd_lite.experiments import (
    ExperimentResults,
    distill_run,
    load_results,
    prepare_experiment,
    simple_settings,
    teacher_cache_for,
)
from atkd_lite.models import count_parameters, cpu_latency, model_size_bytes

__all__ = ["SIZES", "load_sizes", "model_costs", "run_sizes", "size_summary"]

SIZES = ("tiny", "small", "medium")


def model_costs(models: Mapping[str, nn.Module], input_shape: Sequence[int] = (1, 1, 28, 28),
                repeats: int = 50, threads: int | None = 1) -> list[dict]:
    """Parameters, serialised bytes and median CPU latency of each model.

    Args:
        models: name -> model (each is copied to the CPU for timing; left unchanged).
        input_shape: the batch timed, ``(1, C, H, W)`` for the latency of one image.
        repeats: timed forward passes per model (the median is reported).
        threads: torch threads while timing (1: what one core of a small device gives,
            and less disturbed by other work on the machine); None = current setting.

    Returns:
        list of dict: ``name``, ``parameters``, ``bytes``, ``latency_ms``.
    """
    if not models:
        raise ValueError("give at least one model, e.g. {'teacher': teacher}")
    rows = []
    for name, model in models.items():
        if not isinstance(model, nn.Module):
            raise TypeError(f"{name!r} is a {type(model).__name__}, not a torch.nn.Module")
        rows.append({"name": name, "parameters": count_parameters(model),
                     "bytes": model_size_bytes(model),
                     "latency_ms": 1e3 * cpu_latency(model, tuple(input_shape), repeats=repeats,
                                                     threads=threads)})
    return rows


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
        **distill_kwargs: passed to :func:`~atkd_lite.distill.distill`.

    Returns:
        ExperimentResults: runs named ``"<size>/<method>"`` with a ``size`` entry; the
        settings hold ``cache_bytes`` and ``cache_build_s`` (the one teacher pass).
    """
    bad = [s for s in sizes if s not in SIZES]
    unknown = [m for m in methods if m not in METHODS]
    if bad or unknown or not sizes or not methods or not seeds:
        raise ValueError(f"sizes from {list(SIZES)}, methods from {list(METHODS)} and at least "
                         f"one seed, please (got sizes={list(sizes)}, methods={list(methods)}, "
                         f"seeds={list(seeds)})")
    setup = prepare_experiment(dataset, per_class, data_seed, teacher, teacher_epochs, device,
                               progress, command)
    train, test, t_start = setup.train, setup.test, setup.t_start
    t0 = time.perf_counter()
    cache = teacher_cache_for(setup, methods, **distill_kwargs)
    build_s = time.perf_counter() - t0
    settings = {"dataset": dataset, "train_name": train.name, "train_size": len(train),
                "test_name": test.name, "test_size": len(test), "per_class": per_class,
                "data_seed": data_seed, "student_size": "/".join(sizes), "sizes": list(sizes),
                "epochs": epochs, "methods": list(methods), "seeds": list(seeds),
                "cached": True, "cache_bytes": cache.nbytes(), "cache_build_s": build_s,
                "distill": simple_settings(distill_kwargs)}
    results = ExperimentResults(settings=settings, provenance=setup.provenance,
                                teacher=setup.teacher_info)
    for size in sizes:
        for method in methods:
            for seed in seeds:
                res, record = distill_run(setup, method, seed, epochs, size, cache,
                                          **distill_kwargs)
                results.runs.append({**record, "method": f"{size}/{method}", "size": size,
                                     "base_method": method})
                if output_dir is not None:  # an interrupted run keeps its finished runs
                    results.provenance["wall_time_s"] = time.perf_counter() - t_start
                    results.save(output_dir)
                if progress:
                    print(f"{size:6s} {method:8s} seed {seed}: test accuracy "
                          f"{100 * res.test_acc:.2f}%", flush=True)
    results.provenance["wall_time_s"] = time.perf_counter() - t_start
    if output_dir is not None:
        results.save(output_dir)
    return results


def load_sizes(name="mnist5k-sizes") -> ExperimentResults:
    """Committed results of :func:`run_sizes` by name (shipped with the package), or a path.

    Raises:
        FileNotFoundError: no such results.
    """
    return load_results(name)


def size_summary(results: ExperimentResults) -> list[dict]:
    """Rows of :meth:`atkd_lite.experiments.ExperimentResults.summary`, with ``size`` and
    ``base_method`` split out of the run names."""
    rows = []
    for row in results.summary():
        size, _, method = row["method"].partition("/")
        rows.append({**row, "size": size, "base_method": method, "delta": None})
    return rows


def main(argv: list[str] | None = None) -> int:
    """``python -m atkd_lite.efficiency``: run :func:`run_sizes` and save it."""
    p = argparse.ArgumentParser(prog="atkd-lite sizes",
                                description="Students of three sizes from one teacher cache.")
    p.add_argument("--output-dir", default="results/mnist5k-sizes")
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    p.add_argument("--methods", nargs="+", default=["student", "fma"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--per-class", type=int, default=100, help="0 = the whole training split")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--teacher-epochs", type=int, default=12)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    bad = [m for m in args.methods if m not in METHODS]
    if bad:
        p.error(f"unknown method(s) {bad}; choose from {', '.join(METHODS)}")
    if args.epochs < 1 or args.teacher_epochs < 1 or args.per_class < 0:
        p.error("epochs must be >= 1 and --per-class >= 0")
    command = " ".join(["python -m atkd_lite.efficiency",
                        *(argv if argv is not None else sys.argv[1:])])
    res = run_sizes(dataset=args.dataset, sizes=args.sizes, methods=args.methods,
                    seeds=args.seeds, per_class=args.per_class or None, epochs=args.epochs,
                    teacher_epochs=args.teacher_epochs, output_dir=args.output_dir,
                    device=args.device, progress=not args.no_progress, command=command)
    print(res.to_markdown())
    print(f"wrote {args.output_dir}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
