"""Figures of scores of maps and models: deletion and insertion curves, the randomisation
test, map scores per model and map kind, and the accuracy-against-cost trade-off (the
book's chapters "Attention maps", "Do the maps look at the right place?" and
"Efficiency").

Reached as ``viz.<name>`` (:mod:`atkd_lite.book.viz`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from atkd_lite.book.viz.base import finish_figure, to_numpy
from atkd_lite.metrics import curve_area

__all__ = [
    "deletion_curves",
    "randomisation_curves",
    "score_bars",
    "tradeoff_plot",
]


def deletion_curves(curves: Mapping[str, object], fractions: Sequence[float],
                    title: str | None = None, size: tuple[float, float] = (7.5, 3.4),
                    highlight: Sequence[str] = (),
                    xlabel: str = "most-attended pixels deleted (%)",
                    ylabel: str = "probability of the class (%)") -> Figure:
    """A score against the fraction of deleted (or inserted) pixels, one line per map.

    Args:
        curves: map name -> scores (0–1), one per fraction, e.g. from
            :func:`atkd_lite.metrics.deletion_curve` or
            :func:`atkd_lite.metrics.insertion_curve`.
        fractions: the deleted fractions (0–1), shared by all curves.
        title: figure title.
        size: figure size in inches.
        highlight: names drawn dashed in grey (e.g. a random baseline).
        xlabel, ylabel: axis labels (e.g. "... inserted" for insertion curves).

    Returns:
        Figure: a single axis; the legend gives each curve's area under the curve
        (:func:`atkd_lite.metrics.curve_area`, the mean score over the fractions).

    Examples::

        >>> from atkd_lite.book.viz import deletion_curves
        >>> fig = deletion_curves({"fma": [0.99, 0.6, 0.2], "random": [0.99, 0.97, 0.9]},
        ...                       [0.0, 0.1, 0.3], highlight=["random"])
        >>> [line.get_label() for line in fig.axes[0].get_lines()]
        ['fma (AUC 0.53)', 'random (AUC 0.95)']
    """
    if not curves:
        raise ValueError("no curves to plot; give {name: scores}")
    xs = 100 * np.asarray(list(fractions), dtype=float)
    fig, ax = plt.subplots(figsize=size)
    plt.close(fig)
    for name, accs in curves.items():
        a = to_numpy(accs).astype(float).ravel()
        if a.shape != xs.shape:
            raise ValueError(f"curve {name!r} has {a.size} values for {xs.size} fractions")
        auc = curve_area(xs, a)
        style = {"color": "0.5", "ls": "--"} if name in highlight else {}
        ax.plot(xs, 100 * a, marker="o", ms=3, label=f"{name} (AUC {auc:.2f})", **style)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))  # off the curves
    return finish_figure(fig, title)


def randomisation_curves(rows: Sequence[Mapping[str, object]], kinds: Sequence[str],
                         labels: Mapping[str, str] | None = None, title: str | None = None,
                         size: tuple[float, float] = (7.5, 3.4)) -> Figure:
    """How much each map still resembles the trained model's as layers are randomised.

    Args:
        rows: the result of :func:`atkd_lite.attributions.model_randomisation` (one row
            per step: ``step``, ``layer`` and a rank correlation per kind).
        kinds: the kinds to draw, one line each.
        labels: optional kind -> legend label.
        title: figure title.
        size: figure size in inches.

    Returns:
        Figure: rank correlation with the trained model's map (y) against the layers
        randomised so far, from the top (x).

    Examples::

        >>> from atkd_lite.book.viz import randomisation_curves
        >>> rows = [{"step": 0, "layer": None, "a": 1.0}, {"step": 1, "layer": "fc", "a": 0.2}]
        >>> ax = randomisation_curves(rows, ["a"]).axes[0]
        >>> [line.get_label() for line in ax.get_lines() if line.get_label() == "a"]
        ['a']
    """
    if not rows or not kinds:
        raise ValueError("give the rows of model_randomisation and at least one kind")
    labels = labels or {}
    fig, ax = plt.subplots(figsize=size)
    plt.close(fig)
    steps = [r["step"] for r in rows]
    for kind in kinds:
        ax.plot(steps, [r[kind] for r in rows], marker="o", ms=3, label=labels.get(kind, kind))
    ax.set_xticks(steps, ["trained"] + [str(r["layer"]).replace("features.", "")
                                        for r in rows[1:]], rotation=45, ha="right",
                  fontsize=7)
    ax.set_xlabel("layers randomised, from the top (cumulative)")
    ax.set_ylabel("rank correlation with\nthe trained model's map")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_ylim(-0.3, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return finish_figure(fig, title)


def score_bars(scores: Mapping[str, Mapping[str, float]],
               errors: Mapping[str, Mapping[str, float]] | None = None,
               ylabel: str = "", chance: float | None = None, title: str | None = None,
               size: tuple[float, float] | None = None, percent: bool = True,
               group_labels: Mapping[str, str] | None = None) -> Figure:
    """Grouped bars: one group per map kind, one bar per model (e.g. energy in the box).

    Args:
        scores: model -> {group (map kind) -> value}; models are drawn in the given order.
        errors: optional model -> {group -> error bar half-width} (e.g. std over seeds).
        ylabel: axis label.
        chance: draw a dashed line at this value (the chance level), if given.
        title: figure title.
        size: figure size in inches (default grows with the number of groups).
        percent: multiply values (and errors, chance) by 100.
        group_labels: optional group -> label on the x axis.

    Returns:
        Figure: a single axis with a legend of the models.

    Examples::

        >>> from atkd_lite.book.viz import score_bars
        >>> fig = score_bars({"teacher": {"fma": 0.9, "ig": 0.7},
        ...                   "student": {"fma": 0.8, "ig": 0.6}}, chance=0.1)
        >>> len(fig.axes[0].patches)
        4
    """
    if not scores:
        raise ValueError("no scores to plot; give {model: {kind: value}}")
    models = list(scores)
    groups = list(dict.fromkeys(g for m in models for g in scores[m]))
    k = 100.0 if percent else 1.0
    # narrow enough per group that ten groups fit the book's column at a readable scale
    fig, ax = plt.subplots(figsize=size or (1.6 + 0.9 * len(groups), 3.4))
    plt.close(fig)
    width = 0.8 / len(models)
    xs = np.arange(len(groups))
    others = iter(range(10**6))
    for i, model in enumerate(models):
        vals = [k * scores[model].get(g, np.nan) for g in groups]
        err = None
        if errors is not None and model in errors:
            err = [k * errors[model].get(g, 0.0) for g in groups]
        special = {"teacher": "0.15", "student": "0.6"}
        color = special.get(model) or f"C{next(others) % 10}"
        ax.bar(xs + (i - (len(models) - 1) / 2) * width, vals, width, yerr=err,
               label=str(model), color=color, capsize=2, error_kw={"lw": 0.8})
    if chance is not None:
        ax.axhline(k * chance, color="k", ls="--", lw=1, label="chance")
    labels = [group_labels.get(g, g) for g in groups] if group_labels else groups
    ax.set_xticks(xs, labels, rotation=20 if len(groups) > 4 else 0, ha="right"
                  if len(groups) > 4 else "center", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=min(len(models) + 1, 4), loc="upper left",
              bbox_to_anchor=(0, -0.22 if len(groups) > 4 else -0.12))
    fig.tight_layout()
    return finish_figure(fig, title)


def tradeoff_plot(points: Sequence[Mapping[str, object]], x: str = "latency_ms",
                  y: str = "accuracy", xlabel: str | None = None,
                  ylabel: str = "test accuracy (%)", logx: bool = True,
                  title: str | None = None, size: tuple[float, float] = (5.5, 3.6),
                  lines: bool = True) -> Figure:
    """Accuracy against a cost (latency, parameters, bytes), one labelled point per model.

    Args:
        points: dicts with ``name``, the ``x`` key, the ``y`` key (a fraction, shown in
            %), optionally ``y + "_std"`` (error bar) and ``group`` (points of one group
            share a colour and are joined by a line, e.g. one method across sizes).
        x, y: the keys to plot.
        xlabel, ylabel: axis labels (xlabel defaults to ``x``).
        logx: logarithmic x axis (costs span orders of magnitude).
        title: figure title.
        size: figure size in inches.
        lines: join the points of a group (False: a plain scatter plot).

    Returns:
        Figure: a single axis.

    Examples::

        >>> from atkd_lite.book.viz import tradeoff_plot
        >>> fig = tradeoff_plot([{"name": "tiny", "latency_ms": 0.1, "accuracy": 0.9},
        ...                      {"name": "teacher", "latency_ms": 1.0, "accuracy": 0.99}])
        >>> [t.get_text() for t in fig.axes[0].texts]
        ['tiny', 'teacher']
    """
    if not points:
        raise ValueError("no points to plot; give [{'name': ..., x: ..., y: ...}]")
    fig, ax = plt.subplots(figsize=size)
    plt.close(fig)
    groups = list(dict.fromkeys(p.get("group", p["name"]) for p in points))
    labelled: set[str] = set()
    for gi, g in enumerate(groups):
        pts = [p for p in points if p.get("group", p["name"]) == g]
        xs = [float(p[x]) for p in pts]
        ys = [100 * float(p[y]) for p in pts]
        err = [100 * float(p.get(f"{y}_std", 0.0)) for p in pts]
        ax.errorbar(xs, ys, yerr=err, marker="o", ms=5, capsize=3, lw=1,
                    ls="-" if lines and len(pts) > 1 else "none", color=f"C{gi % 10}",
                    label=str(g))
        for p, xv, yv in zip(pts, xs, ys):
            if str(p["name"]) not in labelled:  # one label per name (groups share names)
                labelled.add(str(p["name"]))
                ax.annotate(str(p["name"]), (xv, yv), textcoords="offset points",
                            xytext=(5, -10), fontsize=8)
    if logx:
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both")
    if len(groups) > 1:
        ax.legend(fontsize=8, loc="lower right")
    return finish_figure(fig, title)
