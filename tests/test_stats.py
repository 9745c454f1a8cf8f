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


def _family(seed=3, m=5, n=10):
    """A family of paired results: one clearly better, some near zero, one wider."""
    rng = np.random.default_rng(seed)
    base = 0.93 + 0.01 * rng.standard_normal(n)
    shifts = [0.012, 0.004, -0.002, 0.0, 0.007][:m]
    vals = {"base": dict(enumerate(base))}
    for i, s in enumerate(shifts):
        vals[f"m{i}"] = dict(enumerate(base + s + 0.004 * rng.standard_normal(n)))
    return vals, [(f"m{i}", "base") for i in range(m)]


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_each_interval_excludes_zero_exactly_when_its_verdict_detects(seed):
    """The family-adjusted interval agrees with the Holm verdict, row by row, and is the
    t interval at the level Holm's step used (computed here with SciPy)."""
    from atkd_lite.experiments.stats import compare_pairs

    vals, pairs = _family(seed)
    rows = compare_pairs(vals, pairs)
    for r in rows:
        excludes_zero = r["ci_low"] > 0 or r["ci_high"] < 0
        assert excludes_zero == (r["verdict"] != "no detectable difference at this sample size")
        d = np.array([vals[r["method"]][k] - vals["base"][k] for k in range(10)])
        gamma = 0.05 * r["p"] / r["p_holm"]
        half = stats.t.ppf(1 - gamma / 2, 9) * d.std(ddof=1) / math.sqrt(10)
        assert r["ci_low"] == pytest.approx(d.mean() - half)
        assert r["level"] == pytest.approx(1 - gamma)
        # never narrower than the unadjusted 95 % interval, and the mde grows with it
        assert r["ci_high"] - r["ci_low"] >= r["ci_high_raw"] - r["ci_low_raw"] - 1e-12
        assert r["mde"] >= paired_comparison(vals[r["method"]], vals["base"])["mde"] - 1e-12


def test_a_family_of_one_keeps_the_95_interval():
    from atkd_lite.experiments.stats import compare_pairs

    vals, pairs = _family(0, m=1)
    r = compare_pairs(vals, pairs)[0]
    assert r["level"] == pytest.approx(0.95)
    assert r["ci_low"] == pytest.approx(r["ci_low_raw"])
    assert "95 % CI" in verdict_sentence(r)


@pytest.mark.parametrize("margin", [0.002, 0.005, 0.01])
def test_equivalence_is_two_one_sided_tests_as_scipy_computes_them(margin):
    from atkd_lite.experiments.stats import compare_pairs

    vals, pairs = _family(1)
    rows = compare_pairs(vals, pairs, margin=margin)
    p_equiv = []
    for r in rows:
        d = np.array([vals[r["method"]][k] - vals["base"][k] for k in range(10)])
        low = stats.ttest_1samp(d, -margin, alternative="greater").pvalue
        high = stats.ttest_1samp(d, margin, alternative="less").pvalue
        assert r["p_equiv"] == pytest.approx(max(low, high), rel=1e-9)
        p_equiv.append(r["p_equiv"])
    assert [r["p_equiv_holm"] for r in rows] == pytest.approx(holm(p_equiv))
    for r in rows:
        inside = -margin < r["equiv_low"] and r["equiv_high"] < margin
        assert inside == r["equivalent"] == (r["p_equiv_holm"] < 0.05)
        if r["verdict"] == "equivalent":  # the interval shown is the one it rests on
            assert (r["ci_low"], r["ci_high"]) == (r["equiv_low"], r["equiv_high"])
            gamma = 0.05 * r["p_equiv"] / r["p_equiv_holm"]
            assert r["level"] == pytest.approx(1 - 2 * gamma)
            assert -margin < r["ci_low"] and r["ci_high"] < margin
            assert r["diff_ci_low"] < r["diff"] < r["diff_ci_high"]
        if r["p_holm"] < 0.05:
            assert r["verdict"] in ("better", "worse")
        else:
            assert r["verdict"] == ("equivalent" if inside else
                                    "inconclusive at this sample size")


def test_equivalence_needs_a_tight_interval_not_a_small_mean():
    """A mean difference of zero with a wide spread is inconclusive, not equivalent;
    the same mean with a small spread is equivalent; a clear gain stays 'better'."""
    from atkd_lite.experiments.stats import compare_pairs

    base = {k: 0.9 for k in range(6)}
    wide = {k: 0.9 + v for k, v in enumerate([0.03, -0.03, 0.02, -0.02, 0.01, -0.01])}
    tight = {k: 0.9 + v for k, v in enumerate([0.001, -0.001, 0.002, -0.002, 0.0, 0.0])}
    gain = {k: 0.95 + v for k, v in enumerate([0.001, -0.001, 0.002, -0.002, 0.0, 0.0])}
    rows = compare_pairs({"b": base, "wide": wide, "tight": tight, "gain": gain},
                         [("wide", "b"), ("tight", "b"), ("gain", "b")], margin=0.01)
    assert [r["verdict"] for r in rows] == [
        "inconclusive at this sample size", "equivalent", "better"]
    assert "equivalent within ±1.0 points" in verdict_sentence(rows[1])
    assert "neither a difference nor equivalence" in verdict_sentence(rows[0])
    with pytest.raises(ValueError, match="positive"):
        compare_pairs({"b": base, "t": tight}, [("t", "b")], margin=0)
