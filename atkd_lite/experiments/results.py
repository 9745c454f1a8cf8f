"""Experiment results: every run of a grid, its summary, and where it came from.

:class:`ExperimentResults` holds the settings, the runs (one per method and seed, each
with its per-epoch history) and the provenance of an experiment, and writes them, each
file atomically::

    results.json   settings, provenance and every run (with its per-epoch history)
    results.csv    one row per run
    results.md     the table: mean ± std test accuracy over seeds, parameters, time/epoch
    results.png    the same as a plot

Provenance (:func:`provenance`): the command, the git commit (and whether the tree was
clean), the device, library versions, the date and the total wall time.
:func:`load_results` reads a results folder back, or results shipped with the package
by name, e.g. for a chapter that shows the committed table::

    >>> from atkd_lite.experiments import load_results
    >>> res = load_results("mnist5k-lowdata")
    >>> sorted({run["method"] for run in res.runs})[:3]
    ['at', 'at+kd', 'fma']

Defined in the book's chapter "Knowledge distillation".
"""

from __future__ import annotations

import copy
import csv
import datetime as _dt
import hashlib
import io
import json
import math
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from atkd_lite import distributed
from atkd_lite.device import get_device
from atkd_lite.files import (
    FileLock,
    LockHeldError,
    atomic_write_files,
    check_output_dir,
    check_output_file,
)

__all__ = ["PACKAGED_RESULTS", "ExperimentResults", "claim_output_dir", "load_results",
           "check_parts", "merged_provenance", "packaged_results", "provenance",
           "release_output_dir", "rerun_differences", "results_digest"]

RESULTS_FORMAT = "atkd_lite.results/1"
FILES = ("results.json", "results.csv", "results.md", "results.png")
LOCK_NAME = ".atkd-lite-writer.lock"

# output folders this process writes, with their held locks (resolved path -> lock)
_CLAIMED: dict[Path, FileLock] = {}


def claim_output_dir(output_dir) -> Path:
    """Make this process the one writer of a results folder, until it exits (or
    :func:`release_output_dir`).

    Checks the folder can be written (it may not exist yet) and takes a lock file in it,
    so two experiments never write one folder at once (the last writer would otherwise
    win silently, file by file). :meth:`ExperimentResults.save` claims its folder itself;
    claim it first (as ``atkd-lite`` does) to be refused *before* any training. Claiming
    a folder this process holds already is a no-op.

    Under data parallelism only rank 0 writes results, so only rank 0 claims the folder.

    Returns:
        Path: the folder.

    Raises:
        NotADirectoryError, PermissionError: the folder cannot be written.
        IsADirectoryError, ValueError: a ``results.*`` file there is a folder or not a
            regular file (a FIFO, a device).
        LockHeldError: another process is writing results there.

    Examples::

        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "results"
        >>> claim_output_dir(out) == out and out.is_dir()
        True
        >>> release_output_dir(out)
    """
    out = check_output_dir(output_dir, "output folder")
    for name in FILES:  # a folder or a FIFO named results.*: refused now, not after the grid
        check_output_file(out / name, "results file")
    key = out.resolve()
    if key in _CLAIMED or not distributed.is_main():
        return out
    out.mkdir(parents=True, exist_ok=True)
    lock = FileLock(out / LOCK_NAME)
    try:
        lock.acquire(blocking=False)
    except LockHeldError:
        raise LockHeldError(
            f"another process ({lock.holder() or 'unknown'}) is writing results to {out}; "
            "wait for it to finish or choose another output folder") from None
    _CLAIMED[key] = lock
    return out


def release_output_dir(output_dir) -> None:
    """Let other processes write ``output_dir`` again (see :func:`claim_output_dir`)."""
    lock = _CLAIMED.pop(Path(output_dir).resolve(), None)
    if lock is not None:
        lock.release()


# ---------------------------------------------------------------------------------------
# provenance

def _git_commit() -> dict:
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        # result files being written (this run's, or another experiment's) are not code:
        # only changes elsewhere make the commit an inexact record of what ran
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ".", ":(exclude)atkd_lite/experiments/_results"],
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
        "world_size": distributed.world_size(),
        "backend": distributed.backend(),
        "platform": platform.platform(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "numpy": numpy.__version__, "atkd_lite": atkd_lite.__version__},
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


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
        provenance (dict): see :func:`provenance`; ``wall_time_s`` is added at the end
            (and ``parts`` where the runs come from several commands merged, each part's
            ``command``, ``date`` and ``wall_time_s``).
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
        blob = {"format": RESULTS_FORMAT, "settings": self.settings, "teacher": self.teacher,
                "provenance": self.provenance, "summary": self.summary(), "runs": self.runs}
        blob["digest"] = results_digest(blob)
        return blob

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
        """Write results.json/.csv/.md/.png into ``output_dir``, as one set.

        The folder is claimed for this process first (:func:`claim_output_dir`: another
        process writing there is refused, not overwritten); all four files are rendered,
        then written together (:func:`~atkd_lite.files.atomic_write_files`): a failure
        while writing, e.g. a full disk, leaves the old set whole. ``results.json``
        carries a SHA-256 digest of its content (:func:`results_digest`), which
        :func:`load_results` checks.

        Under data parallelism only rank 0 writes.

        Raises:
            LockHeldError: another process is writing results to ``output_dir``.
        """
        from matplotlib.figure import Figure

        out = claim_output_dir(output_dir)
        if not distributed.is_main():
            return out
        md = self.to_markdown() + "\n" + _provenance_markdown(self.provenance)
        fig = Figure(figsize=(max(5, 0.7 * len(self.summary()) + 2), 3.5))
        self.plot(fig.subplots())  # no pyplot: works headless and never shows a window
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120)
        files = {"results.json": (json.dumps(self.to_dict(), indent=1) + "\n").encode(),
                 "results.csv": self.to_csv().encode(), "results.md": md.encode(),
                 "results.png": buf.getvalue()}
        atomic_write_files({out / name: data for name, data in files.items()}, "results file")
        return out


def _provenance_markdown(p: dict) -> str:
    git = p.get("git", {})
    commit = git.get("commit") or "unknown"
    if git.get("dirty"):
        commit += " (with uncommitted changes)"
    v = p.get("versions", {})
    ranks = ""
    if (p.get("world_size") or 1) > 1:
        ranks = f" × {p['world_size']} processes ({p.get('backend')})"
    return (f"Command: `{p.get('command')}`  \n"
            f"Commit: {commit}  \n"
            f"Device: {p.get('device')}{ranks}, {p.get('cpu_count')} CPU cores, "
            f"{p.get('torch_threads')} torch threads ({p.get('platform')})  \n"
            f"Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + "  \n"
            f"Date: {p.get('date')}; total wall time {p.get('wall_time_s', 0):.0f} s\n"
            + _parts_markdown(p.get("parts")))


def _parts_markdown(parts) -> str:
    """The commands of a grid run as parts side by side (see ``merge_shortcut``)."""
    if not parts:
        return ""
    return (f"Run as {len(parts)} parts side by side, then merged: " + "; ".join(
        f"`{q.get('command')}` ({q.get('wall_time_s') or 0:.0f} s, {q.get('date')})"
        for q in parts) + "\n")


#: committed results shipped inside the package (chapters load them by name, so they work
#: wherever the package is installed, e.g. on Colab)
PACKAGED_RESULTS = Path(__file__).resolve().parent / "_results"


def check_parts(parts) -> list[ExperimentResults]:
    """The parts of one grid run as several commands, checked to come from one run of the
    code: at least two, all at one known commit, none with uncommitted changes (the
    common start of :func:`~atkd_lite.experiments.lowdata.merge_parts` and
    :func:`~atkd_lite.experiments.shortcut.grid.merge_shortcut`).

    Raises:
        ValueError: fewer than two parts, different or unknown commits, a dirty part.
    """
    parts = list(parts)
    if len(parts) < 2:
        raise ValueError(f"give at least two parts to merge, got {len(parts)}")
    commits = {(p.provenance.get("git") or {}).get("commit") for p in parts}
    if len(commits) != 1 or None in commits:
        raise ValueError(f"the parts ran at different (or unknown) commits "
                         f"{sorted(map(str, commits))}; run every part at one commit")
    if any((p.provenance.get("git") or {}).get("dirty") for p in parts):
        raise ValueError("a part ran with uncommitted changes; run every part from a clean "
                         "checkout so the commit records what ran")
    return parts


def merged_provenance(parts: Sequence[ExperimentResults], base: ExperimentResults) -> dict:
    """``base``'s provenance for a grid joined from ``parts``: a copy, with each part's
    command, date and wall time under ``parts`` and the latest date as its date (the
    caller sets the wall time: parts run one after another add up, side by side they
    do not)."""
    prov = copy.deepcopy(base.provenance)
    prov["parts"] = [{k: p.provenance.get(k) for k in ("command", "date", "wall_time_s")}
                     for p in parts]
    prov["date"] = max(p.provenance.get("date", "") for p in parts)
    return prov


def rerun_differences(first: ExperimentResults, second: ExperimentResults,
                      metric: str = "test_acc") -> dict:
    """How far two runs of the same cells (the same method, seed and teacher) lie apart:
    the runs both results hold, matched by method and seed.

    Returns:
        dict: ``runs`` (how many were matched), ``identical`` (how many have the same
        ``metric`` to every digit), ``max_abs`` and ``mean_abs`` (the largest and the
        mean absolute difference of single runs), ``max_mean_shift`` (the largest change
        of a method's mean over its matched seeds), and ``first_epoch`` (the first epoch
        whose training loss differs in any run: ``None`` if none does; 1 when they differ
        from the start).

    Raises:
        ValueError: the two results share no run.
    """
    def by_key(res):
        return {(r["method"], r["seed"]): r for r in res.runs}

    a, b = by_key(first), by_key(second)
    keys = [k for k in a if k in b]
    if not keys:
        raise ValueError("the two results share no (method, seed) run; compare runs of the "
                         "same cells")
    diffs = [b[k][metric] - a[k][metric] for k in keys]
    shifts = []
    for method in dict.fromkeys(m for m, _ in keys):
        mine = [k for k in keys if k[0] == method]
        shifts.append(abs(sum(b[k][metric] - a[k][metric] for k in mine) / len(mine)))
    first_epoch = None
    for k in keys:
        for epoch, (x, y) in enumerate(zip(a[k].get("history", []), b[k].get("history", [])),
                                       start=1):
            if x.get("loss") != y.get("loss"):
                first_epoch = epoch if first_epoch is None else min(first_epoch, epoch)
                break
    return {"runs": len(keys), "identical": sum(d == 0 for d in diffs),
            "max_abs": max(abs(d) for d in diffs),
            "mean_abs": sum(abs(d) for d in diffs) / len(diffs),
            "max_mean_shift": max(shifts), "first_epoch": first_epoch}


def packaged_results() -> list[str]:
    """Names of the committed results shipped with the package."""
    if not PACKAGED_RESULTS.is_dir():
        return []
    return sorted(p.name for p in PACKAGED_RESULTS.iterdir() if (p / "results.json").exists())


def load_results(path) -> ExperimentResults:
    """Read results written by :meth:`ExperimentResults.save`: a folder, its ``results.json``,
    or the *name* of results shipped with the package (see ``packaged_results()``), e.g.
    ``load_results("mnist5k-lowdata")``.

    The file is checked before anything is read from it: its structure, its values
    (accuracies are fractions in [0, 1], seeds are among the settings' seeds, no method
    has two runs with one seed) and its digest (:func:`results_digest`).

    Raises:
        FileNotFoundError: no results there (the message lists the packaged names).
        ValueError: the file is not an atkd_lite results file, is damaged, holds
            impossible values, or was edited after it was written.
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
        blob = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        what = "nested too deeply" if isinstance(err, RecursionError) else \
            f"{type(err).__name__}: {err}"
        raise ValueError(f"{path} is not valid JSON ({what}); write it again with "
                         "`atkd-lite reproduce`") from None
    if not isinstance(blob, dict) or blob.get("format") != RESULTS_FORMAT:
        raise ValueError(f"{path} is not an atkd_lite results file ({RESULTS_FORMAT})")
    problem = _structure_problem(blob) or _value_problem(blob)
    if problem:
        raise ValueError(f"{path} is damaged: {problem}; write it again with "
                         "`atkd-lite reproduce` (or restore it from version control)")
    if blob.get("digest") != results_digest(blob):
        what = ("has no digest of its content" if "digest" not in blob else
                "does not match the digest written with it: it was edited or damaged "
                "after it was written")
        raise ValueError(f"{path} {what}; restore it from version control, or run the "
                         "command in its provenance again to write it")
    return ExperimentResults(settings=blob["settings"], runs=blob["runs"],
                             teacher=blob.get("teacher") or {},
                             provenance=blob.get("provenance") or {})


def results_digest(blob: dict) -> str:
    """SHA-256 of a results file's content (its settings, teacher, provenance and runs,
    as canonical JSON): written into ``results.json`` by :meth:`ExperimentResults.save`
    and checked by :func:`load_results`, so that a number edited by hand (or damaged) in a
    results file is noticed, not silently turned into a verdict."""
    content = {k: blob.get(k) for k in ("settings", "teacher", "provenance", "runs")}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _value_problem(blob: dict) -> str | None:
    """What is impossible in a results file's values (None: nothing): an accuracy that
    is not a fraction in [0, 1], a seed that is not a non-negative integer or is not among
    the settings' seeds, two runs of one method with one seed."""
    planned = blob["settings"].get("seeds")
    planned = set(planned) if isinstance(planned, list) else None
    seen: set = set()
    for i, run in enumerate(blob["runs"]):
        for key, value in run.items():
            if key.endswith("_acc") and not (
                    isinstance(value, (int, float)) and not isinstance(value, bool)
                    and math.isfinite(value) and 0.0 <= value <= 1.0):
                return f"run {i} ({run['method']}) has {key}={value!r}, not a fraction in [0, 1]"
        if "seed" not in run:
            continue
        seed = run["seed"]
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            return f"run {i} ({run['method']}) has seed={seed!r}"
        if planned is not None and seed not in planned:
            return (f"run {i} ({run['method']}) has seed {seed}, which is not among the "
                    f"settings' seeds {sorted(planned)}")
        if (run["method"], seed) in seen:
            return f"two runs of {run['method']!r} with seed {seed}"
        seen.add((run["method"], seed))
    return None


def _structure_problem(blob: dict) -> str | None:
    """What is wrong with a results file's structure (None: it fits together)."""
    if not isinstance(blob.get("settings"), dict):
        return "'settings' is missing or not an object"
    for key in ("teacher", "provenance"):
        if blob.get(key) is not None and not isinstance(blob[key], dict):
            return f"{key!r} is not an object"
    runs = blob.get("runs")
    if not isinstance(runs, list):
        return "'runs' is missing or not a list"
    for i, run in enumerate(runs):
        if not isinstance(run, dict):
            return f"run {i} is not an object"
        for key, kinds in (("method", (str,)), ("test_acc", (int, float)),
                           ("parameters", (int,)), ("time_per_epoch_s", (int, float))):
            if not isinstance(run.get(key), kinds) or isinstance(run.get(key), bool):
                return f"run {i} has {key}={run.get(key)!r}"
        if not isinstance(run.get("history", []), list):
            return f"run {i} has a history that is not a list"
    return None


