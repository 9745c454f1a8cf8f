"""The statistical protocol: paired comparisons against SciPy, Holm against a hand
computation, verdicts and bad input."""

import math

import numpy as np
import pytest
from scipy import stats

from atkd_lite.experiments.stats import (
    compare_methods,
    comparison_markdown,
    holm,
    paired_comparison,
    verdict_sentence,
)


@pytest.mark.parametrize("a, b", [
    ([0.95, 0.96, 0.97, 0.95], [0.90, 0.92, 0.91, 0.91]),
    ([0.951, 0.949, 0.955, 0.948, 0.950], [0.950, 0.952, 0.947, 0.949, 0.951]),
    ([1.0, 2.0, 4.0, 8.0, 3.0, 7.0], [2.5, 2.6, 3.0, 1.0, 2.0, 9.0]),
])
def test_paired_comparison_matches_scipy(a, b):
    ref = stats.ttest_rel(a, b)
    got = paired_comparison(a, b)
    d = np.subtract(a, b)
    assert got["p"] == pytest.approx(ref.pvalue, rel=1e-9)
    assert got["t"] == pytest.approx(ref.statistic, rel=1e-9)
    assert got["diff"] == pytest.approx(d.mean())
    # the t interval by hand: mean ± t_{0.975, n-1} · sd / sqrt(n)
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    assert got["ci_low"] == pytest.approx(d.mean() - half)
    assert got["ci_high"] == pytest.approx(d.mean() + half)
    assert got["d_z"] == pytest.approx(d.mean() / d.std(ddof=1))
    # the bootstrap interval brackets the mean, within the range of the differences
    assert d.min() <= got["boot_low"] <= d.mean() <= got["boot_high"] <= d.max()


def test_pairing_is_by_seed_not_by_position():
    a = {0: 0.90, 1: 0.95, 2: 0.93}
    b = {2: 0.92, 0: 0.89, 1: 0.94}  # same seeds, other order: every difference is +0.01
    r = paired_comparison(a, b)
    assert r["diff"] == pytest.approx(0.01) and r["p"] == 0.0 and math.isinf(r["d_z"])


def test_smallest_detectable_difference_shrinks_with_more_seeds():
    rng = np.random.default_rng(0)
    small = paired_comparison(rng.normal(0, 1, 5), rng.normal(0, 1, 5))
    big = paired_comparison(rng.normal(0, 1, 40), rng.normal(0, 1, 40))
    assert big["mde"] < small["mde"]


def test_holm_by_hand():
    # sorted: 0.01 (x4 = 0.04), 0.02 (x3 = 0.06), 0.03 (x2 = 0.06), 0.2 (x1 = 0.2)
    assert holm([0.03, 0.2, 0.01, 0.02]) == pytest.approx([0.06, 0.2, 0.04, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([]) == []


@pytest.mark.parametrize("bad", [[0.1, 1.2], [-0.1], [float("nan")]])
def test_holm_rejects_values_outside_unit_interval(bad):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm(bad)


@pytest.mark.parametrize("a, b, message", [
    ({0: 0.9, 1: 0.8}, {0: 0.9, 2: 0.8}, "same seeds"),
    ([0.9, 0.8, 0.7], [0.9, 0.8], "same seeds"),
    ([0.9], [0.8], "at least 2"),
    ([0.9, float("nan")], [0.8, 0.7], "non-finite"),
    ({0: 0.9, 1: 0.8}, [0.9, 0.8], "both"),
])
def test_paired_comparison_bad_input(a, b, message):
    with pytest.raises(ValueError, match=message):
        paired_comparison(a, b)


def test_compare_methods_verdicts_and_family_adjustment():
    runs = [{"method": m, "seed": s, "test_acc": v}
            for m, vals in {"student": [.90, .91, .92, .90, .91],
                            "kd": [.95, .96, .96, .95, .97],
                            "worse": [.85, .86, .86, .84, .86],
                            "same": [.91, .90, .92, .91, .90]}.items()
            for s, v in enumerate(vals)]
    rows = compare_methods(runs)
    by = {r["method"]: r for r in rows}
    assert by["kd"]["verdict"] == "better" and by["worse"]["verdict"] == "worse"
    assert by["same"]["verdict"].startswith("no detectable difference")
    assert [r["p_holm"] for r in rows] == pytest.approx(holm([r["p"] for r in rows]))
    assert "better than student" in verdict_sentence(by["kd"])
    assert "p < 0.001" in verdict_sentence(by["kd"]) or "p = 0." in verdict_sentence(by["kd"])
    assert "detects differences" in verdict_sentence(by["same"])
    assert comparison_markdown(rows).count("\n") == 2 + len(rows)


def test_compare_pairs_adjusts_over_the_whole_family():
    from atkd_lite.experiments.stats import compare_pairs

    vals = {"a/x": [1.0, 2.0, 3.0, 4.0], "a/y": [0.9, 1.8, 2.9, 3.7],
            "b/x": [1.0, 1.1, 0.9, 1.2], "b/y": [1.0, 1.0, 1.0, 1.0]}
    rows = compare_pairs(vals, [("a/x", "a/y"), ("b/x", "b/y")])
    assert [(r["method"], r["baseline"]) for r in rows] == [("a/x", "a/y"), ("b/x", "b/y")]
    assert [r["p_holm"] for r in rows] == pytest.approx(holm([r["p"] for r in rows]))
    with pytest.raises(ValueError, match="no runs of \\['c'\\]"):
        compare_pairs(vals, [("c", "a/x")])


def test_compare_methods_missing_methods_are_clear():
    with pytest.raises(ValueError, match="no 'student' runs"):
        compare_methods({"kd": {0: 0.9, 1: 0.8}})
    with pytest.raises(ValueError, match="no runs of \\['fma'\\]"):
        compare_methods({"student": {0: 0.9, 1: 0.8}, "kd": {0: 0.9, 1: 0.8}},
                        methods=["fma"])
