"""What a shortcut grid planned and what of it ran: committed results loaded by name
(:func:`load_shortcut`), the part of the grid that has runs (:func:`grid_status`,
:func:`rhos_with_runs`), and the command that runs the whole grid
(:func:`completion_command`).

Part of :mod:`atkd_lite.experiments.shortcut` (every name here is also importable from
there).
"""

from __future__ import annotations

from atkd_lite.experiments.results import ExperimentResults, load_results
from atkd_lite.experiments.shortcut.design import reference_methods

__all__ = ["completion_command", "grid_status", "load_shortcut", "rhos_with_runs"]


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
    return [*settings["methods"], *reference_methods(settings["references"]),
            *settings.get("controls", [])]


def grid_status(results: ExperimentResults) -> dict:
    """Which part of the planned grid has runs, read from the runs (not from the settings).

    A ρ is *complete* when every planned method (and RRR, when planned) has a run on every
    planned seed, *partial* when it has some runs, *missing* when it has none; the
    ``clean`` reference likewise.

    Args:
        results (ExperimentResults): shortcut results
            (:func:`~atkd_lite.experiments.shortcut.grid.run_shortcut`,
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
    refs = [m for m in reference_methods(s["references"])
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
    the ones every table and verdict of the shortcut experiment reports.

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
