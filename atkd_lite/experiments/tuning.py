"""Choose every method's weight on the validation split, with the same budget for each.

A method that loses with an untuned weight has not lost. So every weight the low-data
experiment uses is chosen here, on the embedded digits' ``fit``/``val`` split (never the
test split), by the same procedure:

- the teacher is trained on ``fit`` only (it never saw a validation digit);
- the student sees 100 ``fit`` digits a class, as in the experiment;
- every method gets the same grid size (five values) and the same seeds; a value's
  score is its mean validation accuracy over the seeds;
- a grid whose best value sits at an open edge is extended outwards (×/÷ the grid's step)
  up to ``extend`` times, so no optimum is an artefact of where the grid stopped;
- the plain student (no term at all, i.e. weight 0) is scored on the same seeds, so the
  table says when no weight beats leaving the term out.

The weights: ``alpha`` for KD, ``label_smoothing`` for the label-smoothing control,
``beta`` for AT, FMA, MIP and SALS; and the number of epochs, for the plain student.
Everything else (learning rate 0.03, T = 8, ATCam's first/last = 2/2, the ``l2``
attention form) keeps the values chosen by the earlier search recorded in
``benchmarks/RESULTS.md``. From the command line::

    atkd-lite tune --output-dir atkd_lite/experiments/_results/mnist5k-tuning

Defined in the book's chapter "Attention-guided distillation".
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

from atkd_lite.cache import TeacherCache
from atkd_lite.checkpoints import pretrained_teacher
from atkd_lite.checks import check_int
from atkd_lite.cost import count_parameters
from atkd_lite.data import load_dataset
from atkd_lite.device import get_device
from atkd_lite.engine import evaluate
from atkd_lite.experiments.results import ExperimentResults, load_results, provenance
from atkd_lite.experiments.runner import ExperimentSetup, GridCell, run_grid
from atkd_lite.files import atomic_write
from atkd_lite.methods import signals_for

__all__ = ["SEARCHES", "Search", "best_values", "load_tuning", "tune", "tuning_markdown"]


@dataclass(frozen=True)
class Search:
    """One method's search: the setting it tunes, its grid, and how the grid may grow.

    Attributes:
        method: the distillation method the runs use.
        setting: the :class:`~atkd_lite.settings.DistillConfig` field tuned.
        grid: the five starting values, increasing.
        upper: the largest value the setting can take (None: unbounded).
        integer: the setting takes whole numbers (extensions are rounded).
    """

    method: str
    setting: str
    grid: tuple[float, ...]
    upper: float | None = None
    integer: bool = False


#: the searches, by the name their runs carry in the results
SEARCHES: dict[str, Search] = {
    "epochs": Search("student", "epochs", (10, 15, 20, 30, 45), integer=True),
    "kd": Search("kd", "alpha", (0.1, 0.3, 0.5, 0.7, 0.9), upper=1.0),
    "ls": Search("student", "label_smoothing", (0.05, 0.1, 0.2, 0.3, 0.5), upper=0.95),
    "at": Search("at", "beta", (30.0, 100.0, 300.0, 1000.0, 3000.0)),
    "fma": Search("fma", "beta", (0.1, 0.3, 1.0, 3.0, 10.0)),
    "mip": Search("mip", "beta", (0.1, 0.3, 1.0, 3.0, 10.0)),
    "sals": Search("sals", "beta", (0.01, 0.03, 0.1, 0.3, 1.0)),
}


def _label(name: str, value: float) -> str:
    return f"{name} {SEARCHES[name].setting}={value:g}"


def _means(results: ExperimentResults, name: str) -> dict[float, float]:
    values: dict[float, list[float]] = {}
    for run in results.runs:
        if run.get("search") == name:
            values.setdefault(run["value"], []).append(run["test_acc"])
    return {v: statistics.fmean(a) for v, a in sorted(values.items())}


def _extension(search: Search, means: dict[float, float]) -> float | None:
    """The value to try next if the best one sits at an open edge of the grid, else None."""
    values = sorted(means)
    best = max(values, key=lambda v: (means[v], -v))  # ties: the smaller weight
    if best == values[-1]:
        step = values[-1] / values[-2]
        nxt = values[-1] * step if search.upper is None else min(search.upper,
                                                                 values[-1] * step)
    elif best == values[0]:
        nxt = values[0] / (values[1] / values[0])
    else:
        return None
    if search.integer:
        nxt = max(1, round(nxt))
    return None if nxt in values else nxt


def tune(searches: Sequence[str] = tuple(SEARCHES), seeds: Sequence[int] = (0, 1, 2),
         per_class: int = 100, epochs: int = 30, extend: int = 3, teacher_epochs: int = 12,
         output_dir=None, device=None, progress: bool = True,
         command: str | None = None) -> ExperimentResults:
    """Score every search's grid on the validation split; extend grids at their edges.

    Args:
        searches (sequence of str): names in :data:`SEARCHES`.
        seeds (sequence of int): paired seeds for every value.
        per_class (int): fit digits per class the student sees.
        epochs (int): student epochs (the experiment's).
        extend (int): at most this many extensions of a grid at an open edge.
        teacher_epochs (int): epochs of the teacher trained on ``fit``.
        output_dir (path, optional): write the results (and ``tuning.md``) there.
        device: cuda → mps → cpu by default.
        progress (bool): one line per run.
        command (str, optional): recorded in the provenance.

    Returns:
        ExperimentResults: runs with ``search``, ``value`` (the setting's value) and the
        validation accuracy as ``test_acc``; the student's runs have ``search="student"``.
    """
    unknown = [s for s in searches if s not in SEARCHES]
    if unknown or not searches:
        raise ValueError(f"unknown or no search(es) {unknown}; choose from {list(SEARCHES)}")
    if not seeds:
        raise ValueError("give at least one seed")
    check_int("extend", extend, minimum=0)
    t_start = time.perf_counter()
    dev = get_device(device)
    prov = provenance(command, dev)
    teacher, _ = pretrained_teacher("mnist5k", epochs=teacher_epochs, split="fit", device=dev,
                                    progress=progress)
    fit = load_dataset("mnist5k", "fit").per_class(per_class, seed=0)
    val = load_dataset("mnist5k", "val")
    info = {"test_acc": evaluate(teacher, val, device=dev), "split": "fit",
            "parameters": count_parameters(teacher), "epochs": teacher_epochs}
    setup = ExperimentSetup(dev, prov, fit, val, teacher, info, t_start)
    methods = {SEARCHES[s].method for s in searches}
    cache = TeacherCache.build(teacher, fit, **signals_for(methods), device=dev,
                               progress=False)
    settings = {"dataset": "mnist5k", "train_name": fit.name, "train_size": len(fit),
                "test_name": val.name, "test_size": len(val), "per_class": per_class,
                "student_size": "small", "epochs": epochs, "seeds": list(seeds),
                "searches": {s: vars(SEARCHES[s]) for s in searches}, "extend": extend,
                "scored_on": "validation split (mnist5k/val)"}
    results = ExperimentResults(settings=settings, teacher=info, provenance=prov)

    def run(cells):
        part = run_grid(setup, settings, cells, seeds, epochs, cache, progress=progress)
        results.runs.extend(part.runs)
        results.provenance["wall_time_s"] = time.perf_counter() - t_start
        if output_dir is not None:
            results.save(output_dir)

    run([GridCell("student", name="student", extra={"search": "student", "value": 0.0})])
    pending = {s: list(SEARCHES[s].grid) for s in searches}
    for round_ in range(extend + 1):
        cells = [GridCell(SEARCHES[s].method, name=_label(s, v),
                          extra={"search": s, "value": v},
                          settings={SEARCHES[s].setting: int(v) if SEARCHES[s].integer
                                    else v})
                 for s, values in pending.items() for v in values]
        if not cells:
            break
        run(cells)
        pending = {}
        if round_ < extend:
            for s in searches:
                nxt = _extension(SEARCHES[s], _means(results, s))
                if nxt is not None:
                    pending[s] = [nxt]
    results.settings["best"] = best_values(results)
    if output_dir is not None:
        results.save(output_dir)
        atomic_write(f"{output_dir}/tuning.md", tuning_markdown(results).encode())
    return results


def best_values(results: ExperimentResults) -> dict[str, dict]:
    """Per search: the best value, its mean validation accuracy, whether it sits at an
    edge of the (extended) grid, and the plain student's mean on the same seeds."""
    student = statistics.fmean(r["test_acc"] for r in results.runs if r.get("search") == "student")
    out = {}
    for name in dict.fromkeys(r["search"] for r in results.runs if r.get("search") != "student"):
        means = _means(results, name)
        values = sorted(means)
        best = max(values, key=lambda v: (means[v], -v))
        out[name] = {"setting": SEARCHES[name].setting, "value": best, "val_acc": means[best],
                     "at_edge": best in (values[0], values[-1]), "student_val_acc": student,
                     "tried": values, "beats_student": means[best] > student}
    return out


def tuning_markdown(results: ExperimentResults) -> str:
    """A table per search (value, mean validation accuracy, per seed) and the choices."""
    lines = [f"Validation accuracy (%) on {results.settings['test_name']}, mean over seeds "
             f"{results.settings['seeds']}; the plain student (weight 0) scores "
             f"{100 * next(iter(best_values(results).values()))['student_val_acc']:.2f}.", ""]
    for name, best in best_values(results).items():
        means = _means(results, name)
        lines += [f"**{name}** ({best['setting']}): best {best['value']:g} "
                  f"({100 * best['val_acc']:.2f}%)"
                  + (" — at the edge of the grid" if best["at_edge"] else ""), "",
                  "| value | mean | per seed |", "|---|---|---|"]
        for v, m in means.items():
            accs = [r["test_acc"] for r in results.runs
                    if r.get("search") == name and r["value"] == v]
            lines.append(f"| {v:g} | {100 * m:.2f} | "
                         + ", ".join(f"{100 * a:.1f}" for a in accs) + " |")
        lines.append("")
    return "\n".join(lines)


def load_tuning(name="mnist5k-tuning") -> ExperimentResults:
    """Committed tuning results by name (shipped with the package), or from a path."""
    return load_results(name)
