"""Is a difference between two methods more than seed noise? Welch's t-test, by hand.

With a handful of seeds per method, a difference of a few tenths of a point can be pure
chance: a different initialisation or batch order moves a small student's accuracy by as
much. :func:`welch_t_test` compares two sets of accuracies without assuming equal
variances (Welch 1947); :func:`compare_methods` runs it for every method of an
experiment against one baseline and adds a blunter indicator, whether the difference of
the means exceeds the pooled standard deviation of the runs.

The p-value comes from Student's t distribution through the regularised incomplete beta
function, computed here with a continued fraction (no SciPy needed at run time; the
tests compare with ``scipy.stats.ttest_ind(..., equal_var=False)``).

Defined in the book's chapter "Attention-guided distillation".

Examples::

    >>> from atkd_lite.stats import welch_t_test
    >>> r = welch_t_test([0.95, 0.96, 0.97], [0.90, 0.91, 0.92])
    >>> round(r["diff"], 3), round(r["t"], 2), round(r["df"], 1), r["p"] < 0.01
    (0.05, 6.12, 4.0, True)
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

__all__ = ["compare_methods", "t_sf_two_sided", "welch_t_test"]


def _betacf(a: float, b: float, x: float, iters: int = 300, eps: float = 1e-15) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, iters + 1):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function I_x(a, b) for a, b > 0 and x in [0, 1]."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    ln_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(ln_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(ln_front) * _betacf(b, a, 1.0 - x) / b


def t_sf_two_sided(t: float, df: float) -> float:
    """Two-sided p-value ``P(|T| >= |t|)`` of Student's t distribution with ``df`` degrees.

    Examples::

        >>> from atkd_lite.stats import t_sf_two_sided
        >>> round(t_sf_two_sided(2.776, 4), 3)    # the textbook 5 % critical value, df = 4
        0.05
    """
    if not df > 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    if math.isnan(t):
        return math.nan
    if math.isinf(t):
        return 0.0
    return _betainc(df / 2.0, 0.5, df / (df + t * t))


def welch_t_test(a: Sequence[float], b: Sequence[float]) -> dict:
    """Welch's two-sample t-test of ``mean(a) - mean(b)`` (unequal variances).

    Args:
        a, b (sequences of float): the two samples, at least two values each.

    Returns:
        dict: ``diff`` (mean a − mean b), ``t``, ``df`` (Welch–Satterthwaite degrees of
        freedom), ``p`` (two-sided). If both samples have zero variance, ``t`` is ±inf
        and ``p`` is 0 for a non-zero difference, and ``t = 0``, ``p = 1`` for none.

    Raises:
        ValueError: a sample with fewer than two values.
    """
    a, b = [float(v) for v in a], [float(v) for v in b]
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"Welch's test needs at least two values per sample (e.g. two "
                         f"seeds); got {len(a)} and {len(b)}")
    diff = statistics.fmean(a) - statistics.fmean(b)
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se2 = va + vb
    if se2 == 0.0:
        n = len(a) + len(b) - 2
        if diff == 0.0:
            return {"diff": 0.0, "t": 0.0, "df": float(n), "p": 1.0}
        return {"diff": diff, "t": math.copysign(math.inf, diff), "df": float(n), "p": 0.0}
    t = diff / math.sqrt(se2)
    df = se2 ** 2 / ((va ** 2 / (len(a) - 1) if va else 0.0)
                     + (vb ** 2 / (len(b) - 1) if vb else 0.0))
    return {"diff": diff, "t": t, "df": df, "p": t_sf_two_sided(t, df)}


def compare_methods(accuracies: dict[str, Sequence[float]], baseline: str = "student",
                    alpha: float = 0.05) -> list[dict]:
    """Every method against ``baseline``: difference, Welch's t-test and a blunt indicator.

    Args:
        accuracies (dict): method -> its accuracies over seeds (e.g. from
            :meth:`ExperimentResults.runs <atkd_lite.experiments.ExperimentResults>`).
        baseline (str): the method to compare with.
        alpha (float): significance level for the ``significant`` flag.

    Returns:
        list of dict, one per method other than the baseline, in the given order:
        ``method``, ``mean``, ``std`` (sample std), ``n``, ``diff`` (mean − baseline
        mean), ``t``, ``df``, ``p``, ``significant`` (``p < alpha``) and
        ``exceeds_pooled_std`` (``|diff|`` larger than the pooled standard deviation of
        the two methods' runs).

    Examples::

        >>> from atkd_lite.stats import compare_methods
        >>> rows = compare_methods({"student": [0.90, 0.91, 0.92], "kd": [0.95, 0.96, 0.97],
        ...                         "fma": [0.90, 0.92, 0.91]})
        >>> [(r["method"], r["significant"], r["exceeds_pooled_std"]) for r in rows]
        [('kd', True, True), ('fma', False, False)]
    """
    if baseline not in accuracies:
        raise ValueError(f"baseline {baseline!r} is not among the methods {list(accuracies)}")
    base = [float(v) for v in accuracies[baseline]]
    rows = []
    for method, values in accuracies.items():
        if method == baseline:
            continue
        values = [float(v) for v in values]
        test = welch_t_test(values, base)
        pooled = math.sqrt(((len(values) - 1) * statistics.variance(values)
                            + (len(base) - 1) * statistics.variance(base))
                           / (len(values) + len(base) - 2))
        rows.append({"method": method, "mean": statistics.fmean(values),
                     "std": statistics.stdev(values), "n": len(values), **test,
                     "significant": test["p"] < alpha,
                     "exceeds_pooled_std": abs(test["diff"]) > pooled})
    return rows
