"""The figures of verdicts draw what the protocol computed, checked against SciPy."""

import math

import numpy as np
import pytest
from scipy import stats

from atkd_lite.book import viz
from atkd_lite.experiments.stats import compare_methods, holm


def _row(method, diff, lo, hi, verdict="better"):
    return {"method": method, "baseline": "student", "diff": diff, "ci_low": lo,
            "ci_high": hi, "verdict": verdict}


def test_difference_plot_draws_each_interval_and_the_margin():
    rows = [_row("kd", 0.02, 0.01, 0.03),
            _row("fma", -0.002, -0.006, 0.003, "no detectable difference at this sample size")]
    fig = viz.difference_plot({"family": rows}, margin=0.005)
    ax = fig.axes[0]
    bars = [c for c in ax.containers]  # one errorbar container per row, top to bottom
    centres = [float(c.lines[0].get_xdata()[0]) for c in bars]
    assert centres == pytest.approx([2.0, -0.2])
    segs = [c.lines[2][0].get_segments()[0] for c in bars]
    assert [(s[0][0], s[1][0]) for s in segs] == [pytest.approx((1.0, 3.0)),
                                                  pytest.approx((-0.6, 0.3))]
    [band] = ax.patches
    x0 = band.get_x()
    assert (x0, x0 + band.get_width()) == pytest.approx((-0.5, 0.5))
    assert "equivalence margin ±0.5 points" in ax.get_xlabel()
    with pytest.raises(ValueError, match="lacks"):
        viz.difference_plot([{"method": "kd"}])


def test_a_margin_declared_by_the_rows_is_shaded_behind_its_family_only():
    plain = [_row("kd", 0.02, 0.01, 0.03)]
    declared = [dict(_row("fma+kd", -0.001, -0.004, 0.002, "equivalent"), margin=0.01),
                dict(_row("sals+kd", 0.001, -0.003, 0.004, "equivalent"), margin=0.01)]
    ax = viz.difference_plot({"first": plain, "second": declared}).axes[0]
    [band] = ax.collections[-1:]  # fill_betweenx: the one band, after the error bars
    xs, ys = band.get_paths()[0].vertices.T
    assert (xs.min(), xs.max()) == pytest.approx((-1.0, 1.0))
    # lines from the top: heading, kd, heading, fma+kd (y = 1), sals+kd (y = 0)
    assert (ys.min(), ys.max()) == pytest.approx((-0.4, 1.4))
    assert "±1 points" in ax.get_xlabel()
    assert viz.VERDICT_COLOURS["equivalent"] != viz.VERDICT_COLOURS["better"]


def test_paired_plot_shows_the_t_interval_of_the_differences():
    a = {s: 0.9 + 0.01 * s + 0.002 * (s % 3) for s in range(8)}
    b = {s: 0.9 + 0.01 * s for s in range(8)}
    fig = viz.paired_plot(a, b, names=("kd", "student"))
    right = fig.axes[1]
    [bar] = right.containers
    mean = float(bar.lines[0].get_ydata()[0])
    lo, hi = (p[1] for p in bar.lines[2][0].get_segments()[0])
    d = 100 * (np.array(list(a.values())) - np.array(list(b.values())))
    ci = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
    assert mean == pytest.approx(d.mean())
    assert (lo, hi) == pytest.approx(ci)
    assert len(fig.axes[0].get_lines()) == 8  # one line per seed
    with pytest.raises(ValueError, match="same seeds"):
        viz.paired_plot({0: 1.0, 1: 2.0}, {0: 1.0, 2: 2.0})


def test_pvalue_plot_draws_raw_and_holm_values_in_order():
    p = [0.001, 0.04, 0.3]
    rows = [{"method": m, "baseline": "student", "p": pv, "p_holm": ph}
            for m, pv, ph in zip("abc", p, holm(p))]
    ax = viz.pvalue_plot(list(reversed(rows))).axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == \
        ["a vs student", "b vs student", "c vs student"]
    filled = [ln for ln in ax.get_lines() if ln.get_markerfacecolor() != "white"
              and len(ln.get_xdata()) == 1]
    assert sorted(float(ln.get_xdata()[0]) for ln in filled) == pytest.approx(sorted(holm(p)))
    assert holm(p) == pytest.approx([0.003, 0.08, 0.3])  # by hand: 3p, max(2p, ...), p
    assert not math.isnan(ax.get_xlim()[0])


def test_the_book_family_plots_without_error():
    from atkd_lite.experiments.results import load_results

    low = load_results("mnist5k-lowdata")
    rows = compare_methods(low, baseline="student")
    assert len(viz.pvalue_plot(rows).axes[0].get_yticklabels()) == len(rows)
