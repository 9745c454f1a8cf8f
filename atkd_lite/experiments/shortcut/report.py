"""The shortcut results as text: Markdown tables of the accuracies, of where the maps
look, of the tuning and of the share won back, the whole report
(:func:`shortcut_markdown`, which says first when a grid was stopped part-way), the
original papers' numbers next to ours (:data:`PUBLISHED`, :func:`published_markdown`),
and the ``shortcut.md`` a run writes (:func:`write_shortcut_md`).

Part of :mod:`atkd_lite.experiments.shortcut` (every name here is also importable from
there).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from atkd_lite.experiments.results import ExperimentResults
from atkd_lite.experiments.shortcut.analysis import (
    accuracy_table,
    shortcut_values,
    shortcut_verdicts,
)
from atkd_lite.experiments.shortcut.status import (
    completion_command,
    grid_status,
    rhos_with_runs,
)
from atkd_lite.experiments.stats import comparison_markdown, format_p, verdict_sentence
from atkd_lite.files import atomic_write
from atkd_lite.models import MLP_STUDENTS

__all__ = [
    "PUBLISHED",
    "chosen_weights_markdown",
    "headline_markdown",
    "map_markdown",
    "published_markdown",
    "shortcut_markdown",
    "tuning_markdown",
    "won_back_markdown",
    "write_shortcut_md",
]


#: Decoy MNIST test accuracy (%) reported by the original papers (other networks and
#: data sizes than ours): Ross et al.'s multilayer perceptron (two hidden layers of 50 and
#: 30 units) on all 60,000 MNIST digits, from the stored outputs of the authors' notebook
#: ``experiments/Decoy MNIST.ipynb`` (dtak/rrr); and Rieger et al.'s Table "Results on
#: Grayscale Decoy set" (ICLR 2020 submission; their λ was chosen on the *test* accuracy).
PUBLISHED = {
    "ross2017right": {"network": "MLP 784-50-30-10, 60,000 digits",
                      "results": {"student": 51.55, "rrr": 96.07, "clean": 96.11}},
    "rieger2020interpretations": {"network": "their network and decoy (5x5 patch)",
                                  "results": {"student": 60.1, "rrr": 99.0, "cdep": 97.2,
                                              "expected gradients": 97.8}},
}


def _fmt(row: dict) -> str:
    return (f"{100 * row['mean']:.1f} [{100 * row['low']:.1f}, {100 * row['high']:.1f}]")


def _methods(results: ExperimentResults) -> list[str]:
    return list(dict.fromkeys(r["method"] for r in accuracy_table(results)))


def headline_markdown(results: ExperimentResults, metric: str = "test_acc") -> str:
    """One table: a row per method, a column per ρ with runs, ``metric`` in % as mean
    [95 % CI].

    The teacher's row (one network, no interval) comes first, the references last.
    """
    rhos = rhos_with_runs(results)
    rows = {(r["rho"], r["method"]): r for r in accuracy_table(results, metric)}
    t = results.teacher
    lines = ["| method | " + " | ".join(f"ρ = {rho:g}" for rho in rhos) + " |",
             "|---" * (len(rhos) + 1) + "|"]
    if t and metric in t:
        lines.append("| teacher | " + " | ".join(f"{100 * t[metric]:.1f}" for _ in rhos)
                     + " |")
    for m in _methods(results):
        lines.append(f"| {m} | " + " | ".join(
            _fmt(rows[(rho, m)]) if (rho, m) in rows else "" for rho in rhos) + " |")
    return "\n".join(lines) + "\n"


def map_markdown(results: ExperimentResults, rho: float, part: str = "swatch") -> str:
    """Where the maps put their mass at one ρ: a row per model, a column per map kind,
    the share on the ``part`` (``"swatch"`` or ``"digit"``) in %, mean over seeds."""
    if part not in ("swatch", "digit"):
        raise ValueError(f"part must be 'swatch' or 'digit', got {part!r}")
    s = results.settings
    kinds = s["map_kinds"]
    lines = ["| model | " + " | ".join(kinds) + " |", "|---" * (len(kinds) + 1) + "|"]
    t = results.teacher
    if t.get("maps"):
        lines.append("| teacher | " + " | ".join(f"{100 * t['maps'][k][part]:.1f}"
                                                 for k in kinds) + " |")
    for m in _methods(results):
        values = {k: shortcut_values(results, rho, f"{k}:{part}").get(m) for k in kinds}
        if not all(values.values()):
            continue
        lines.append(f"| {m} | " + " | ".join(
            f"{100 * statistics.fmean(values[k].values()):.1f}" for k in kinds) + " |")
    return "\n".join(lines) + "\n"


def tuning_markdown(results: ExperimentResults, rho: float) -> str:
    """The tuning runs at one ρ: each weight tried, its accuracy on the training
    distribution's validation split (what chose it) and on random shades (what the
    practitioner cannot see)."""
    rows = results.settings.get("tuning", {}).get(f"{rho:g}", [])
    lines = ["| method | weight | val, training distribution (%) | val, random shades (%) "
             "| chosen |", "|---|---|---|---|---|"]
    for r in rows:
        mark = "✓" + (" (on random shades)" if r["selected_on"] == "val_random" else "") \
            if r["chosen"] else ""
        lines.append(f"| {r['method']} | {r['beta']:g} | {100 * r['val_acc']:.1f} | "
                     f"{100 * r['val_random_acc']:.1f} | {mark} |")
    return "\n".join(lines) + "\n"


def _status_line(results: ExperimentResults) -> str:
    st = grid_status(results)
    if st["complete"]:
        return ""
    parts = [f"**Partial grid**: {st['runs']} of {st['planned_runs']} planned runs."]
    if st["completed_rhos"]:
        parts.append("Complete: rho = " + ", ".join(f"{r:g}" for r in st["completed_rhos"])
                     + ".")
    if st["partial_rhos"]:
        parts.append("Part-way: rho = " + ", ".join(f"{r:g}" for r in st["partial_rhos"])
                     + ".")
    if st["missing_rhos"]:
        parts.append("Not run: rho = " + ", ".join(f"{r:g}" for r in st["missing_rhos"])
                     + ".")
    if st["missing_references"]:
        parts.append("References not (fully) run: " + ", ".join(st["missing_references"])
                     + ".")
    parts.append(f"The whole grid: `{completion_command(results)}`.")
    return " ".join(parts)


def shortcut_markdown(results: ExperimentResults) -> str:
    """Everything in one text: for every ρ with runs the accuracy on each split with 95 %
    CIs, the verdicts against the student alone, and where the maps look; first, when the
    grid was stopped part-way, which part ran."""
    s = results.settings
    splits = {"test_acc": "random-shade test split (headline)",
              "flipped_acc": "flipped split (the swatch names a wrong class)",
              "clean_acc": "clean split (no swatch)",
              "val_acc": "validation split of the training distribution" + (
                  " (digits the students did not train on)" if "val_held_out" in s else
                  " (this grid ran before the fix that leaves out the digits the students "
                  "trained on: part of it, or all, is training digits)")}
    out = [f"Decoy digits, {s['swatch']}x{s['swatch']} swatch; `{s['student_size']}` "
           f"students trained on {s['train_size']} digits for {s['epochs']} epochs; mean over "
           f"seeds {s['seeds']} with 95 % confidence intervals (%).", ""]
    status = _status_line(results)
    if status:
        out += [status, ""]
    for metric, what in splits.items():
        if not any(metric in r for r in results.runs):
            continue  # no validation digit was left out of training: nothing to report
        out += [f"### Accuracy on the {what}", "", headline_markdown(results, metric)]
    for rho in rhos_with_runs(results):
        out += [f"### Against the student alone, rho = {rho:g} (random-shade accuracy)", "",
                comparison_markdown(shortcut_verdicts(results, rho))]
    for rho in rhos_with_runs(results):
        out += [f"### Share of each map's mass on the swatch (%), rho = {rho:g}", "",
                f"The swatch covers {100 * s['chance']['swatch']:.1f}% of the image.", "",
                map_markdown(results, rho, "swatch")]
    return "\n".join(out) + "\n"


def published_markdown(results: ExperimentResults | None = None, rho: float = 1.0) -> str:
    """The original papers' Decoy MNIST test accuracies next to ours (ρ = 1, random shades).

    Their networks, data sizes and (for Rieger et al.) the decoy itself differ from ours,
    so the rows compare the *pattern* (how far the plain network falls and how much the
    true-mask penalty recovers), not the numbers.
    """
    cols = ["student", "rrr", "clean"]
    lines = ["| source | network | plain network | RRR (true mask) | clean data |",
             "|---|---|---|---|---|"]
    labels = {"ross2017right": "Ross et al. (2017), authors' notebook",
              "rieger2020interpretations": "Rieger et al. (2020), ICLR submission table"}
    for key, entry in PUBLISHED.items():
        vals = [f"{entry['results'][c]:g}" if c in entry["results"] else "—" for c in cols]
        lines.append(f"| {labels[key]} | {entry['network']} | " + " | ".join(vals) + " |")
    if results is not None:
        rows = {r["method"]: r for r in accuracy_table(results) if math.isclose(r["rho"], rho)}
        vals = [_fmt(rows[c]) if c in rows else "—" for c in cols]
        s = results.settings
        kind = "MLP" if s["student_size"] in MLP_STUDENTS else "CNN"
        lines.append(f"| this book (ρ = {rho:g}) | `{s['student_size']}` {kind}, "
                     f"{s['train_size']} digits | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


def won_back_markdown(rows: Sequence[dict]) -> str:
    """The rows of :func:`~atkd_lite.experiments.shortcut.analysis.won_back` as a Markdown
    table (shares and accuracies in %)."""
    lines = ["| method | random-shade accuracy (%) | share of the cost won back (%) | 95 % CI "
             "| p (Holm, vs plain) | verdict |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {100 * r['accuracy']:.1f} | {100 * r['diff']:.0f} | "
                     f"[{100 * r['ci_low']:.0f}, {100 * r['ci_high']:.0f}] | "
                     f"{format_p(r['p_holm']).lstrip('= ')} | {r['verdict']} |")
    return "\n".join(lines) + "\n"


def chosen_weights_markdown(grids: dict, rho: float = 1.0) -> str:
    """The weight each method's tuning chose at one ρ, one column per grid (e.g. the
    practitioner's and the oracle's), marked "(edge)" where the best weight was still at
    an end of the grid after its extensions (the term was tuned towards off, or towards
    ever stronger).

    Args:
        grids (dict): column title -> shortcut results.
        rho (float): the ρ.

    Returns:
        str: a Markdown table; a method a grid did not tune has "—".
    """
    cols = {}
    for title, res in grids.items():
        rows = res.settings.get("tuning", {}).get(f"{rho:g}", [])
        by: dict[str, dict] = {}
        for r in rows:
            if r["chosen"]:
                tried = sorted(x["beta"] for x in rows if x["method"] == r["method"])
                by[r["method"]] = {"beta": r["beta"], "edge": r["edge"],
                                   "range": (tried[0], tried[-1]),
                                   "on": r.get("selected_on", "val")}
        cols[title] = by
    methods = list(dict.fromkeys(m for by in cols.values() for m in by))
    lines = ["| method | " + " | ".join(f"{t}: weight (range tried)" for t in cols) + " |",
             "|---" * (len(cols) + 1) + "|"]
    for m in methods:
        cells = []
        for by in cols.values():
            c = by.get(m)
            cells.append("—" if c is None else
                         f"{c['beta']:g} ({c['range'][0]:g} to {c['range'][1]:g})"
                         + (" (edge)" if c["edge"] else "")
                         + (" on random shades" if c["on"] == "val_random" else ""))
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_shortcut_md(results: ExperimentResults, output_dir) -> None:
    """Write ``shortcut.md`` into ``output_dir``: :func:`shortcut_markdown`, the verdicts
    of every ρ with runs in words, and :func:`published_markdown` (what
    :func:`~atkd_lite.experiments.shortcut.grid.run_shortcut` and
    :func:`~atkd_lite.experiments.shortcut.grid.merge_shortcut` leave next to their
    results)."""
    from pathlib import Path

    text = shortcut_markdown(results)
    for rho in rhos_with_runs(results):
        text += f"\nVerdicts at rho = {rho:g}:\n\n" + "\n".join(
            f"- {verdict_sentence(r)}" for r in shortcut_verdicts(results, rho)) + "\n"
    text += "\nPublished numbers (other networks):\n\n" + published_markdown(results)
    atomic_write(Path(output_dir) / "shortcut.md", text.encode())
