"""Reproducible experiments: every method × several seeds, with a results file and table.

:func:`run_experiment` trains (or takes) a teacher, builds one
:class:`~atkd_lite.cache.TeacherCache` for the training images, and distils a fresh
student with every method and seed. :func:`reproduce` is the same with the active
profile's settings (``atkd-lite reproduce``). The outputs, all written atomically::

    results.json   settings, provenance and every run (with its per-epoch history)
    results.csv    one row per run
    results.md     the table: mean ± std test accuracy over seeds, parameters, time/epoch
    results.png    the same as a plot

Provenance: the command, the git commit (and whether the tree was clean), the device,
library versions, the date and the total wall time. :func:`load_results` reads a results
folder back, e.g. for a chapter that shows the committed table::

    >>> from atkd_lite.experiments import load_results          # doctest: +SKIP
    >>> res = load_results("mnist5k-lowdata")                      # doctest: +SKIP
    >>> print(res.to_markdown())                                 # doctest: +SKIP

Defined in the book's chapter "Experiments".
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from atkd_lite.cache import TeacherCache
from atkd_lite.config import profile as get_profile
from atkd_lite.data import load_dataset
from atkd_lite.distill import DEFAULTS, METHODS, distill
from atkd_lite.models import count_parameters, student_cnn
from atkd_lite.train import evaluate, get_device, pretrained_teacher, seed_everything

__all__ = ["ALL_METHODS", "ExperimentResults", "load_results", "provenance", "reproduce",
           "run_experiment"]

RESULTS_FORMAT = "atkd_lite.results/1"
ALL_METHODS = tuple(METHODS)
FILES = ("results.json", "results.csv", "results.md", "results.png")


# ---------------------------------------------------------------------------------------
# provenance and atomic files

def _git_commit() -> dict:
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit or None, "dirty": bool(dirty.strip()) if commit else None}


def provenance(command: str | None = None, device=None) -> dict:
    """Where a result came from: command, git commit, device, versions, date."""
    import numpy

    import atkd_lite

    dev = get_device(device)
    name = str(dev)
    if dev.type == "cuda":
        name = f"{dev} ({torch.cuda.get_device_name(dev)})"
    return {
        "command": command if command is not None else " ".join(
            [Path(sys.argv[0]).name, *sys.argv[1:]]),
        "git": _git_commit(),
        "device": name,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "numpy": numpy.__version__, "atkd_lite": atkd_lite.__version__},
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


# ---------------------------------------------------------------------------------------
# results

@dataclass
class ExperimentResults:
    """The runs of an experiment, their summary over seeds, and where they came from.

    Attributes:
        settings (dict): dataset, sizes, epochs, methods, seeds, distillation settings.
        runs (list of dict): one per (method, seed): ``method``, ``seed``, ``test_acc``,
            ``parameters``, ``time_per_epoch_s``, ``history`` (per-epoch records).
        teacher (dict): the teacher's ``test_acc`` and ``parameters``.
        provenance (dict): see :func:`provenance`; ``wall_time_s`` is added at the end.
    """

    settings: dict
    runs: list[dict] = field(default_factory=list)
    teacher: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)

    def summary(self) -> list[dict]:
        """Per method (in run order): mean and std of test accuracy over seeds, etc."""
        by_method: dict[str, list[dict]] = {}
        for run in self.runs:
            by_method.setdefault(run["method"], []).append(run)
        base = by_method.get("student")
        base_mean = statistics.fmean(r["test_acc"] for r in base) if base else None
        rows = []
        for method, runs in by_method.items():
            accs = [r["test_acc"] for r in runs]
            mean = statistics.fmean(accs)
            rows.append({
                "method": method,
                "mean": mean,
                "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                "n": len(accs),
                "delta": None if base_mean is None else mean - base_mean,
                "parameters": runs[0]["parameters"],
                "time_per_epoch_s": statistics.median(r["time_per_epoch_s"] for r in runs),
            })
        return rows

    def to_markdown(self) -> str:
        """The results table (accuracy in %, mean ± sample std over seeds)."""
        s = self.settings
        lines = [
            f"Test accuracy of the `{s.get('student_size')}` student on {s.get('test_name')} "
            f"after {s.get('epochs')} epochs on {s.get('train_name')} "
            f"({s.get('train_size')} images); mean ± std over seeds {s.get('seeds')}.",
            "",
            "| method | test accuracy (%) | Δ vs student (pp) | seeds | parameters | time/epoch (s) |",
            "|---|---|---|---|---|---|",
        ]
        if self.teacher:
            lines.append(f"| teacher | {100 * self.teacher['test_acc']:.2f} | | | "
                         f"{self.teacher['parameters']:,} | |")
        for r in self.summary():
            delta = "" if r["delta"] is None else f"{100 * r['delta']:+.2f}"
            lines.append(f"| {r['method']} | {100 * r['mean']:.2f} ± {100 * r['std']:.2f} | "
                         f"{delta} | {r['n']} | {r['parameters']:,} | "
                         f"{r['time_per_epoch_s']:.3f} |")
        return "\n".join(lines) + "\n"

    def _repr_markdown_(self) -> str:
        return self.to_markdown()

    def to_csv(self) -> str:
        """One row per run."""
        buf = io.StringIO()
        cols = ["method", "seed", "test_acc", "parameters", "time_per_epoch_s", "epochs"]
        writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for run in self.runs:
            writer.writerow({**run, "epochs": len(run.get("history", []))})
        return buf.getvalue()

    def to_dict(self) -> dict:
        return {"format": RESULTS_FORMAT, "settings": self.settings, "teacher": self.teacher,
                "provenance": self.provenance, "summary": self.summary(), "runs": self.runs}

    def plot(self, ax=None):
        """Bar chart of mean test accuracy per method (± std), seeds as dots."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(max(5, 0.7 * len(self.summary()) + 2), 3.5))
        rows = self.summary()
        xs = range(len(rows))
        ax.bar(xs, [100 * r["mean"] for r in rows], yerr=[100 * r["std"] for r in rows],
               color=["0.6" if r["method"] == "student" else "C0" for r in rows], capsize=3)
        for i, r in enumerate(rows):
            accs = [100 * run["test_acc"] for run in self.runs if run["method"] == r["method"]]
            ax.scatter([i] * len(accs), accs, color="k", s=8, zorder=3)
        if self.teacher:
            ax.axhline(100 * self.teacher["test_acc"], color="C3", ls="--", lw=1,
                       label=f"teacher {100 * self.teacher['test_acc']:.1f}%")
            ax.legend(loc="lower right", fontsize=8)
        lo = min(100 * run["test_acc"] for run in self.runs) if self.runs else 0
        ax.set_ylim(max(0, lo - 3), 100)
        ax.set_xticks(list(xs), [r["method"] for r in rows], rotation=30, ha="right")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{self.settings.get('student_size')} student, "
                     f"{self.settings.get('train_size')} training images")
        ax.figure.tight_layout()
        return ax

    def save(self, output_dir) -> Path:
        """Write results.json/.csv/.md/.png into ``output_dir`` (each atomically)."""
        from matplotlib.figure import Figure

        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        _write_atomic(out / "results.json",
                      (json.dumps(self.to_dict(), indent=1) + "\n").encode())
        _write_atomic(out / "results.csv", self.to_csv().encode())
        md = self.to_markdown() + "\n" + _provenance_markdown(self.provenance)
        _write_atomic(out / "results.md", md.encode())
        fig = Figure(figsize=(max(5, 0.7 * len(self.summary()) + 2), 3.5))
        self.plot(fig.subplots())  # no pyplot: works headless and never shows a window
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120)
        _write_atomic(out / "results.png", buf.getvalue())
        return out


def _provenance_markdown(p: dict) -> str:
    git = p.get("git", {})
    commit = git.get("commit") or "unknown"
    if git.get("dirty"):
        commit += " (with uncommitted changes)"
    v = p.get("versions", {})
    return (f"Command: `{p.get('command')}`  \n"
            f"Commit: {commit}  \n"
            f"Device: {p.get('device')}, {p.get('cpu_count')} CPU cores, "
            f"{p.get('torch_threads')} torch threads ({p.get('platform')})  \n"
            f"Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + "  \n"
            f"Date: {p.get('date')}; total wall time {p.get('wall_time_s', 0):.0f} s\n")


#: committed results shipped inside the package (chapters load them by name, so they work
#: wherever the package is installed, e.g. on Colab)
PACKAGED_RESULTS = Path(__file__).resolve().parent / "_results"


def packaged_results() -> list[str]:
    """Names of the committed results shipped with the package."""
    if not PACKAGED_RESULTS.is_dir():
        return []
    return sorted(p.name for p in PACKAGED_RESULTS.iterdir() if (p / "results.json").exists())


def load_results(path) -> ExperimentResults:
    """Read results written by :meth:`ExperimentResults.save`: a folder, its ``results.json``,
    or the *name* of results shipped with the package (see ``packaged_results()``), e.g.
    ``load_results("mnist5k-lowdata")``.

    Raises:
        FileNotFoundError: no results there (the message lists the packaged names).
        ValueError: the file is not an atkd_lite results file.
    """
    path = Path(path)
    if not path.exists() and len(path.parts) == 1 and (PACKAGED_RESULTS / path).exists():
        path = PACKAGED_RESULTS / path
    if path.is_dir():
        path = path / "results.json"
    if not path.exists():
        raise FileNotFoundError(
            f"no results at {path}; run `atkd-lite reproduce` to make them, or load one "
            f"shipped with the package by name: {', '.join(packaged_results()) or 'none'}")
    try:
        blob = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(blob, dict) or blob.get("format") != RESULTS_FORMAT:
        raise ValueError(f"{path} is not an atkd_lite results file ({RESULTS_FORMAT})")
    return ExperimentResults(settings=blob["settings"], runs=blob["runs"],
                             teacher=blob.get("teacher", {}),
                             provenance=blob.get("provenance", {}))


# ---------------------------------------------------------------------------------------
# running

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


def prepare_experiment(dataset: str, per_class: int | None, data_seed: int, teacher,
                       teacher_epochs: int, device, progress: bool,
                       command: str | None) -> ExperimentSetup:
    """Load the data (the low-data subset if ``per_class``), take or train the teacher, and
    record provenance — the common start of :func:`run_experiment` and the experiments of
    :mod:`atkd_lite.efficiency` and :mod:`atkd_lite.faithfulness`."""
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
    teacher.to(dev).eval()
    info = {"test_acc": evaluate(teacher, test, device=dev),
            "parameters": count_parameters(teacher), **teacher_meta}
    return ExperimentSetup(dev, prov, train, test, teacher, info, t_start)


def teacher_cache_for(setup: ExperimentSetup, methods: Sequence[str], progress: bool = False,
                      **distill_kwargs) -> TeacherCache:
    """One :class:`~atkd_lite.cache.TeacherCache` with what ``methods`` need, built with the
    same layer selection, map size and precision that ``distill_kwargs`` give distill."""
    kinds = sorted({METHODS[m][0] for m in methods} & {"fma", "mip", "sals"})
    return TeacherCache.build(
        setup.teacher, setup.train, maps=kinds, at=any(METHODS[m][0] == "at" for m in methods),
        device=setup.device, progress=progress, first=distill_kwargs.get("first", 2),
        last=distill_kwargs.get("last", 2), size=distill_kwargs.get("size"),
        amp=distill_kwargs.get("amp"))


def distill_run(setup: ExperimentSetup, method: str, seed: int, epochs: int,
                student_size: str = "small", cache: TeacherCache | None = None,
                progress: bool = False, **distill_kwargs):
    """Distil one fresh, seeded student; returns ``(DistillResult, run record)``."""
    seed_everything(seed)
    student = student_cnn(student_size, in_channels=setup.train.in_channels,
                          num_classes=setup.train.num_classes)
    res = distill(setup.teacher, student, setup.train, setup.test, method=method,
                  epochs=epochs, seed=seed, cache=cache, device=setup.device,
                  progress=progress, **distill_kwargs)
    record = {"method": method, "seed": seed, "test_acc": res.test_acc,
              "parameters": res.student_parameters, "time_per_epoch_s": res.time_per_epoch,
              "params": res.params, "history": res.history.records}
    return res, record


def simple_settings(distill_kwargs: dict) -> dict:
    """The JSON-friendly part of ``distill_kwargs`` (for a results file's settings)."""
    return {k: v for k, v in distill_kwargs.items()
            if isinstance(v, (int, float, str, bool, type(None)))}


def run_experiment(dataset: str = "mnist5k", methods: Sequence[str] = ALL_METHODS,
                   seeds: Sequence[int] = (0, 1, 2), per_class: int | None = 100,
                   epochs: int = 15, student_size: str = "small", teacher=None,
                   teacher_epochs: int = 12, output_dir=None, device=None,
                   use_cache: bool = True, data_seed: int = 0, progress: bool = True,
                   command: str | None = None, **distill_kwargs) -> ExperimentResults:
    """Distil a fresh student with every method and seed; summarise and (optionally) save.

    Args:
        dataset (str): a :func:`~atkd_lite.data.load_dataset` name (train/test splits).
        methods (sequence of str): methods of :func:`~atkd_lite.distill.distill`.
        seeds (sequence of int): one run per seed and method (student initialisation
            and batch order); the training subset is the same for all.
        per_class (int, optional): low-data setting, this many training images per class
            (``data_seed`` picks them); None = the whole training split.
        epochs (int): student epochs.
        student_size (str): ``tiny`` / ``small`` / ``medium``.
        teacher (nn.Module, optional): a trained teacher; None =
            :func:`~atkd_lite.train.pretrained_teacher` (trained once, then cached).
        teacher_epochs (int): epochs for that teacher.
        output_dir (path, optional): where to write the results files.
        device: cuda → mps → cpu by default.
        use_cache (bool): build a :class:`~atkd_lite.cache.TeacherCache` once and use it for every run.
        progress (bool): progress bars.
        command (str, optional): the command to record (default: ``sys.argv``).
        **distill_kwargs: passed to :func:`~atkd_lite.distill.distill` (alpha, beta, …).

    Returns:
        ExperimentResults
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
    if not seeds:
        raise ValueError("give at least one seed")
    if distill_kwargs.get("augment") and use_cache:
        raise ValueError("augmentation and the teacher cache do not mix; pass use_cache=False")
    setup = prepare_experiment(dataset, per_class, data_seed, teacher, teacher_epochs, device,
                               progress, command)
    train, test = setup.train, setup.test
    cache = teacher_cache_for(setup, methods, progress, **distill_kwargs) if use_cache else None
    settings = {"dataset": dataset, "train_name": train.name, "train_size": len(train),
                "test_name": test.name, "test_size": len(test), "per_class": per_class,
                "data_seed": data_seed, "student_size": student_size, "epochs": epochs,
                "methods": list(methods), "seeds": list(seeds), "cached": use_cache,
                "distill": simple_settings(distill_kwargs)}
    results = ExperimentResults(settings=settings, teacher=setup.teacher_info,
                                provenance=setup.provenance)
    for method in methods:
        for seed in seeds:
            res, record = distill_run(setup, method, seed, epochs, student_size, cache,
                                      progress, **distill_kwargs)
            results.runs.append(record)
            if progress:
                print(f"{method:8s} seed {seed}: test accuracy {100 * res.test_acc:.2f}%")
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
    tested on the 1,000 test digits, every method × seeds (0, 1, 2), with the teacher
    cache; the student epochs are distill's tuned default (``DEFAULTS["epochs"]``, more
    than a chapter's quick runs: a 1,000-digit epoch takes a fraction of a second). Any
    argument overrides these.
    """
    prof = get_profile(profile)
    return run_experiment(
        dataset=prof.dataset, methods=tuple(methods) if methods else ALL_METHODS,
        seeds=tuple(seeds) if seeds else prof.seeds,
        per_class=per_class if per_class is not None else prof.low_data_per_class,
        epochs=epochs or DEFAULTS["epochs"], student_size=student_size,
        teacher=teacher, teacher_epochs=prof.teacher_epochs, output_dir=output_dir,
        device=device,
        progress=progress, command=command,
        batch_size=kwargs.pop("batch_size", prof.batch_size), **kwargs)
