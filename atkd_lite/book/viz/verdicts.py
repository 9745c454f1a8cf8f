"""Figures of verdicts: a family of paired comparisons as one forest plot, one comparison's
pairs and differences, and p-values before and after the Holm adjustment (the book's
chapters "Efficiency" and "Conclusions" and the appendix "Reading the verdicts").

They draw what :mod:`atkd_lite.experiments.stats` decides. Reached as ``viz.<name>``
(:mod:`atkd_lite.book.viz`).
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from atkd_lite.book.viz.base import finish_figure

__all__ = [
    "VERDICT_COLOURS",
    "difference_plot",
    "paired_plot",
    "pvalue_plot",
]


#: colour of each verdict of :mod:`atkd_lite.experiments.stats`
VERDICT_COLOURS = {"better": "C2", "worse": "C3", "equivalent": "C0"}


def difference_plot(rows, scale: float = 100.0, unit: str = "points",
                    title: str | None = None, width: float = 7.5,
                    xlabel: str | None = None, margin: float | None = None,
                    margin_label: str = "equivalence margin") -> Figure:
    """Paired differences with their intervals, one line per comparison (a forest plot).

    Each comparison is a dot at its mean paired difference with a bar for its confidence
    interval (adjusted over its family, as the rows carry it), coloured by its verdict
    (green "better", red "worse", blue "equivalent", grey otherwise), the verdict written
    at the right; a vertical line marks zero. A family whose rows declare an equivalence
    margin (:mod:`atkd_lite.experiments.questions`) gets its band ``±m`` shaded. Rows come from
    :func:`atkd_lite.experiments.stats.compare_methods` or ``compare_pairs``, which
    decide the family, the interval and the verdict: this only draws them.

    Args:
        rows: a list of comparison rows (keys ``method``, ``baseline``, ``diff``,
            ``ci_low``, ``ci_high``, ``verdict``), or a mapping ``heading -> rows`` to
            draw several families one under the other, each under its heading.
        scale: multiplies differences (100: fractions shown as percentage points).
        unit: the unit of the scaled differences, for the axis label.
        title: figure title.
        width: figure width in inches (the height grows with the number of rows).
        xlabel: axis label (default: the difference and its interval, in ``unit``).
        margin: an equivalence margin ``m`` (unscaled, like the rows' differences):
            the band ``−m … +m`` is shaded and named under the axis (rows that carry a
            ``margin`` get theirs shaded behind their family without it).
        margin_label: the band's name under the axis.

    Returns:
        Figure: one axis; rows from top to bottom in the given order.

    Examples::

        >>> from atkd_lite.book.viz import difference_plot
        >>> row = {"method": "kd", "baseline": "student", "diff": 0.027,
        ...        "ci_low": 0.021, "ci_high": 0.033, "verdict": "better"}
        >>> fig = difference_plot({"low data": [row]})
        >>> [t.get_text() for t in fig.axes[0].get_yticklabels()]
        ['kd vs student']
    """
    groups = dict(rows) if isinstance(rows, Mapping) else {None: list(rows)}
    if not any(groups.values()):
        raise ValueError("no comparisons to draw; give the rows of compare_methods()")
    lines: list[tuple[str, dict | None]] = []  # (text, row) from the top; row None: heading
    bands: list[tuple[float, int, int]] = []  # (margin, first line, last line) per group
    for heading, group in groups.items():
        if heading is not None:
            lines.append((str(heading), None))
        start = len(lines)
        for r in group:
            missing = {"method", "baseline", "diff", "ci_low", "ci_high", "verdict"} - set(r)
            if missing:
                raise ValueError(f"a comparison row lacks {sorted(missing)}; give the rows "
                                 "of atkd_lite.experiments.stats.compare_methods()")
            lines.append((f"{r['method']} vs {r['baseline']}", r))
        declared = {r.get("margin") for r in group} - {None}
        if margin is None and len(declared) == 1:
            bands.append((declared.pop(), start, len(lines) - 1))
    fig, ax = plt.subplots(figsize=(width, 0.8 + 0.32 * len(lines)))
    plt.close(fig)
    ticks, labels = [], []
    for i, (text, r) in enumerate(lines):
        y = len(lines) - 1 - i
        if r is None:
            ax.text(0.01, y, text, transform=ax.get_yaxis_transform(), ha="left",
                    va="center", fontsize=8, fontweight="bold", zorder=5,
                    bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
            continue
        colour = VERDICT_COLOURS.get(r["verdict"], "0.45")
        d, lo, hi = (scale * float(r[k]) for k in ("diff", "ci_low", "ci_high"))
        ax.errorbar(d, y, xerr=[[d - lo], [hi - d]], fmt="o", color=colour, capsize=3,
                    markersize=5)
        verdict = {"no detectable difference at this sample size": "no detectable diff.",
                   "inconclusive at this sample size": "inconclusive"}.get(
                       r["verdict"], r["verdict"])
        ax.text(1.01, y, verdict, transform=ax.get_yaxis_transform(), va="center",
                fontsize=7, color=colour)
        ticks.append(y)
        labels.append(text)
    ax.set_yticks(ticks, labels, fontsize=8)
    ax.set_ylim(-0.7, len(lines) - 0.3)
    ax.axvline(0, color="black", linewidth=0.8)
    shaded = set()
    if margin is not None:
        ax.axvspan(-scale * margin, scale * margin, color="C0", alpha=0.12, zorder=0)
        shaded.add(margin)
    for m, first, last in bands:  # the margins the rows declare, behind their family
        top, bottom = len(lines) - 1 - first + 0.4, len(lines) - 1 - last - 0.4
        ax.fill_betweenx([bottom, top], -scale * m, scale * m, color="C0", alpha=0.12,
                         zorder=0, linewidth=0)
        shaded.add(m)
    ax.grid(axis="x", alpha=0.3)
    label = xlabel or (f"difference ({unit}): mean over pairs, bar = confidence interval "
                       "adjusted over its family")
    if shaded and xlabel is None:  # named under the axis, where it hides no row
        label += "\nshaded: " + ", ".join(f"{margin_label} ±{scale * m:g} {unit}"
                                          for m in sorted(shaded))
    ax.set_xlabel(label)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 0.86, 1))  # the verdicts stand right of the axis
    return fig


def paired_plot(a: Mapping, b: Mapping, names: tuple[str, str] = ("a", "b"),
                scale: float = 100.0, unit: str = "points", confidence: float = 0.95,
                title: str | None = None, size: tuple[float, float] = (8.0, 3.4)) -> Figure:
    """Two methods run on the same seeds: the pairs, and their differences.

    Left: each seed's value for both methods, joined by a line (the slope shows how much
    of the spread the seed explains). Right: the per-seed differences ``a − b``, their
    mean and its confidence interval (Student t), with zero marked, as
    :func:`atkd_lite.experiments.stats.paired_comparison` computes them.

    Args:
        a, b: ``seed -> value`` for each method (the same seeds).
        names: the two methods' names.
        scale: multiplies the values (100: fractions drawn as percentages).
        unit: the unit of the scaled differences.
        confidence: the interval's level.
        title: figure title.
        size: figure size in inches.

    Returns:
        Figure: two axes.

    Examples::

        >>> from atkd_lite.book.viz import paired_plot
        >>> fig = paired_plot({0: 0.90, 1: 0.92, 2: 0.91}, {0: 0.88, 1: 0.91, 2: 0.88},
        ...                   names=("kd", "student"))
        >>> len(fig.axes)
        2
    """
    from atkd_lite.experiments.stats import paired_comparison

    seeds = sorted(a, key=str)
    if set(seeds) != set(b) or len(seeds) < 2:
        raise ValueError("give both methods' values for the same seeds, at least two")
    xa = scale * np.array([float(a[k]) for k in seeds])
    xb = scale * np.array([float(b[k]) for k in seeds])
    d = xa - xb
    row = paired_comparison(a, b, confidence=confidence)  # the book's one protocol
    mean, lo, hi = (scale * row[k] for k in ("diff", "ci_low", "ci_high"))
    fig, (left, right) = plt.subplots(1, 2, figsize=size,
                                      gridspec_kw={"width_ratios": [1.2, 1]})
    plt.close(fig)
    for va, vb in zip(xa, xb):
        left.plot([0, 1], [vb, va], color="0.6", linewidth=0.8, marker="o", markersize=4)
    left.set_xticks([0, 1], [names[1], names[0]])
    left.set_xlim(-0.4, 1.4)
    left.set_ylabel("value per seed" + (" (%)" if scale == 100 else ""))
    left.set_title("one line per seed", fontsize=9)
    left.grid(axis="y", alpha=0.3)
    jitter = np.linspace(-0.08, 0.08, len(d))
    right.scatter(jitter, d, color="0.4", s=14, label="one seed's difference")
    right.errorbar([0.3], [mean], yerr=[[mean - lo], [hi - mean]], fmt="o", color="C0",
                   capsize=4,
                   label=f"mean, {confidence:.0%} CI")
    right.axhline(0, color="black", linewidth=0.8)
    right.set_xlim(-0.3, 0.6)
    right.set_xticks([])
    right.set_ylabel(f"{names[0]} − {names[1]} ({unit})")
    right.set_title("the paired differences", fontsize=9)
    right.legend(fontsize=7, loc="best")
    right.grid(axis="y", alpha=0.3)
    return finish_figure(fig, title)


def pvalue_plot(rows, alpha: float = 0.05, title: str | None = None,
                width: float = 7.0) -> Figure:
    """Each comparison's p-value before and after the Holm adjustment of its family.

    One line per comparison of ``rows`` (:func:`~atkd_lite.experiments.stats.compare_methods`
    rows, keys ``p`` and ``p_holm``), sorted by the raw p-value: a hollow dot for the raw
    p, a filled one for the adjusted p, joined by an arrow, on a logarithmic axis with
    ``alpha`` marked. A comparison is "detected" when its filled dot is left of the line.

    Args:
        rows: comparison rows of one family.
        alpha: the family's level.
        title: figure title.
        width: figure width in inches.

    Returns:
        Figure: one axis.

    Examples::

        >>> from atkd_lite.book.viz import pvalue_plot
        >>> rows = [{"method": "kd", "baseline": "student", "p": 0.001, "p_holm": 0.002},
        ...         {"method": "fma", "baseline": "student", "p": 0.04, "p_holm": 0.04}]
        >>> [t.get_text() for t in pvalue_plot(rows).axes[0].get_yticklabels()]  # from the top
        ['kd vs student', 'fma vs student']
    """
    rows = sorted(rows, key=lambda r: r["p"])
    if not rows:
        raise ValueError("no comparisons to draw; give the rows of compare_methods()")
    fig, ax = plt.subplots(figsize=(width, 0.9 + 0.3 * len(rows)))
    plt.close(fig)
    floor = 1e-6  # p-values below this are drawn at it
    for i, r in enumerate(rows):
        y = len(rows) - 1 - i
        raw, adj = max(r["p"], floor), max(r["p_holm"], floor)
        colour = "C2" if adj < alpha else "0.45"
        ax.annotate("", xy=(adj, y), xytext=(raw, y),
                    arrowprops={"arrowstyle": "->", "color": colour, "lw": 0.8})
        ax.plot(raw, y, "o", markerfacecolor="white", markeredgecolor=colour, markersize=5)
        ax.plot(adj, y, "o", color=colour, markersize=5)
    ax.set_yticks(range(len(rows))[::-1], [f"{r['method']} vs {r['baseline']}" for r in rows],
                  fontsize=8)
    ax.set_xscale("log")
    ax.set_xlim(floor / 2, 2)
    ax.axvline(alpha, color="C3", linestyle="--", linewidth=1, label=f"α = {alpha:g}")
    ax.plot([], [], "o", markerfacecolor="white", markeredgecolor="0.45", label="raw p")
    ax.plot([], [], "o", color="0.45", label="Holm-adjusted p")
    ax.legend(fontsize=7, loc="lower left")
    ax.set_xlabel("p-value (log scale; left of the dashed line: detected)")
    ax.grid(axis="x", alpha=0.3)
    return finish_figure(fig, title)
