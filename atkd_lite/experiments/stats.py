"""One statistical protocol for every comparison in the book: paired seeds, Holm, a verdict.

Every experiment trains each method on the same seeds, and one seed gives every method
the same student initialisation and the same batch order. The fair comparison of two
methods is therefore *paired*: the per-seed differences ``d_s = a_s − b_s`` cancel the
seed's luck, which is most of the noise in a small student's accuracy.

- :func:`paired_comparison` — mean difference, its 95 % confidence interval (Student t and
  bootstrap), the paired t-test p-value (``scipy.stats.ttest_rel``), the effect size
  Cohen's d_z (mean difference / SD of the differences), and the smallest difference the
  design could detect (80 % power at α = 0.05, two-sided);
- :func:`holm` — Holm–Bonferroni adjusted p-values for a family of comparisons;
- :func:`compare_methods` — every method against a baseline, adjusted over the family,
  with a verdict in words: ``"better"``, ``"worse"`` or ``"no detectable difference at
  this sample size"``; :func:`comparison_markdown` and :func:`verdict_sentence` print it.
  No notebook defines its own rule.

References: Student's paired t-test; Holm (1979); Cohen (1988) for d_z; Efron &
Tibshirani (1993) for the percentile bootstrap.

Defined in the book's chapter "Knowledge distillation".

Examples::

    >>> from atkd_lite.experiments.stats import paired_comparison, holm
    >>> r = paired_comparison([0.95, 0.96, 0.97, 0.95], [0.90, 0.92, 0.91, 0.91])
    >>> round(r["diff"], 4), r["n"], r["p"] < 0.01
    (0.0475, 4, True)
    >>> [round(p, 3) for p in holm([0.01, 0.04, 0.03])]
    [0.03, 0.06, 0.06]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "ci_label",
    "comparison_markdown",
    "compare_methods",
    "compare_pairs",
    "format_p",
    "holm",
    "paired_comparison",
    "paired_values",
    "short_verdict",
    "verdict_sentence",
]

#: the words of a verdict
BETTER, WORSE, NO_DIFFERENCE = "better", "worse", "no detectable difference at this sample size"
#: the words of a verdict where an equivalence margin is declared (:func:`compare_pairs`)
EQUIVALENT, INCONCLUSIVE = "equivalent", "inconclusive at this sample size"


def _values(x, name: str) -> dict:
    """``{key: float}`` from a mapping (seed -> value) or a sequence (position -> value)."""
    items = x.items() if isinstance(x, Mapping) else enumerate(x)
    out = {}
    for k, v in items:
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must hold numbers; got {v!r} for {k!r}") from None
        if not math.isfinite(f):
            raise ValueError(f"{name} holds a non-finite value ({v!r} for {k!r}); every run "
                             "must have a result: rerun it or leave that seed out of both")
        out[k] = f
    return out


def paired_comparison(a, b, confidence: float = 0.95, n_boot: int = 10_000,
                      seed: int = 0, power: float = 0.8) -> dict:
    """Compare two methods run on the same seeds: is ``a`` different from ``b``?

    Args:
        a, b: the two methods' results, either as mappings ``seed -> value`` with the
            same seeds, or as sequences of equal length in the same seed order.
        confidence (float): level of the confidence intervals.
        n_boot (int): bootstrap resamples of the per-seed differences.
        seed (int): the bootstrap's random seed.
        power (float): power for the smallest detectable difference.

    Returns:
        dict: ``n``, ``mean_a``, ``mean_b``, ``diff`` (mean of ``a − b``), ``sd`` (SD of
        the differences), ``ci_low``/``ci_high`` (t interval), ``boot_low``/``boot_high``
        (percentile bootstrap), ``t``, ``p`` (two-sided paired t-test), ``d_z`` (Cohen's
        d_z, ``diff / sd``; ±inf when every difference is equal and non-zero) and ``mde``
        (smallest absolute mean difference detectable with this ``n`` and ``sd`` at
        ``power``, two-sided α = 1 − ``confidence``).

    Raises:
        ValueError: different seeds or lengths, fewer than 2 pairs, non-finite values.
    """
    from scipy import stats

    va, vb = _values(a, "a"), _values(b, "b")
    if isinstance(a, Mapping) != isinstance(b, Mapping):
        raise ValueError("give both a and b as seed -> value mappings, or both as sequences")
    if set(va) != set(vb):
        what = "seeds" if isinstance(a, Mapping) else "lengths"
        raise ValueError(f"a paired comparison needs the same seeds for both methods; the "
                         f"{what} differ ({sorted(va, key=str)} vs {sorted(vb, key=str)}): "
                         "run both methods on the same seeds")
    keys = sorted(va, key=str) if isinstance(a, Mapping) else sorted(va)
    n = len(keys)
    if n < 2:
        raise ValueError(f"a paired comparison needs at least 2 seeds, got {n}")
    xa = np.array([va[k] for k in keys])
    xb = np.array([vb[k] for k in keys])
    d = xa - xb
    diff, sd = float(d.mean()), float(d.std(ddof=1))
    alpha = 1.0 - confidence
    t_crit = float(stats.t.ppf(1 - alpha / 2, n - 1))
    se = sd / math.sqrt(n)
    if sd > 0:
        res = stats.ttest_rel(xa, xb)
        t, p = float(res.statistic), float(res.pvalue)
        d_z = diff / sd
    else:  # every pair differs by the same amount: no spread to test against
        t = 0.0 if diff == 0 else math.copysign(math.inf, diff)
        p = 1.0 if diff == 0 else 0.0
        d_z = 0.0 if diff == 0 else math.copysign(math.inf, diff)
    rng = np.random.default_rng(seed)
    boot = d[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)
    boot_low, boot_high = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    mde = (t_crit + float(stats.t.ppf(power, n - 1))) * se
    return {"n": n, "mean_a": float(xa.mean()), "mean_b": float(xb.mean()), "diff": diff,
            "sd": sd, "ci_low": diff - t_crit * se, "ci_high": diff + t_crit * se,
            "boot_low": float(boot_low), "boot_high": float(boot_high), "t": t, "p": p,
            "d_z": d_z, "mde": mde}


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the order given.

    Sort the m p-values ascending; the k-th smallest (k = 0, 1, …) is multiplied by
    ``m − k``, the running maximum is taken so the order is kept, and values are capped
    at 1. Rejecting where the adjusted value is below α controls the family-wise error
    rate at α (Holm 1979).

    Raises:
        ValueError: a p-value outside [0, 1] or NaN.
    """
    p = [float(v) for v in pvalues]
    bad = [v for v in p if not 0.0 <= v <= 1.0]  # NaN fails both comparisons
    if bad:
        raise ValueError(f"p-values must lie in [0, 1]; got {bad}")
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    adjusted = [0.0] * m
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * p[i]))
        adjusted[i] = running
    return adjusted


def paired_values(results, metric: str = "test_acc") -> dict[str, dict[int, float]]:
    """``{method: {seed: value}}`` from an :class:`~atkd_lite.experiments.results.ExperimentResults`
    (or its list of runs)."""
    runs = getattr(results, "runs", results)
    out: dict[str, dict[int, float]] = {}
    for i, run in enumerate(runs):
        missing = [k for k in ("method", "seed", metric) if k not in run]
        if missing:
            raise ValueError(f"run {i} of the results has no {', '.join(missing)}; every run "
                             f"needs its method, seed and {metric} to be paired")
        seeds = out.setdefault(run["method"], {})
        if run["seed"] in seeds:
            raise ValueError(f"the results hold two runs of {run['method']!r} with seed "
                             f"{run['seed']}; a paired comparison needs one per seed")
        seeds[run["seed"]] = run[metric]
    return out


def compare_methods(results, baseline: str = "student", methods: Sequence[str] | None = None,
                    metric: str = "test_acc", alpha: float = 0.05) -> list[dict]:
    """Every method against ``baseline`` on paired seeds, Holm-adjusted over the family.

    Args:
        results: an :class:`~atkd_lite.experiments.results.ExperimentResults`, its runs, or a
            mapping ``method -> {seed: value}``.
        baseline (str): the method compared against.
        methods (sequence of str, optional): the family of comparisons (default: every
            other method, in the order of the results).
        metric (str): the run entry compared (results and runs only).
        alpha (float): family-wise error rate.

    Returns:
        list of dict, one per method: ``method``, ``baseline``, everything of
        :func:`paired_comparison` (``a`` = the method, ``b`` = the baseline), ``p_holm``,
        and ``verdict``: ``"better"`` / ``"worse"`` when ``p_holm < alpha``, else
        ``"no detectable difference at this sample size"``.

    Raises:
        ValueError: the baseline or a method is missing (the available ones are listed).

    Examples::

        >>> from atkd_lite.experiments.stats import compare_methods
        >>> runs = {"student": {0: .90, 1: .91, 2: .92, 3: .90},
        ...         "kd": {0: .95, 1: .96, 2: .96, 3: .95}, "fma": {0: .91, 1: .90, 2: .92, 3: .90}}
        >>> [(r["method"], r["verdict"]) for r in compare_methods(runs)]
        [('kd', 'better'), ('fma', 'no detectable difference at this sample size')]
    """
    values = results if isinstance(results, Mapping) else paired_values(results, metric)
    if baseline not in values:
        raise ValueError(f"the results hold no {baseline!r} runs to compare with; they hold "
                         f"{list(values)}")
    family = [m for m in values if m != baseline] if methods is None else list(methods)
    return compare_pairs(values, [(m, baseline) for m in family], alpha=alpha)


def compare_pairs(results, pairs, metric: str = "test_acc", alpha: float = 0.05,
                  margin: float | None = None) -> list[dict]:
    """A family of comparisons ``(method, baseline)``, each paired by seed, Holm-adjusted
    together; the rows are those of :func:`compare_methods`.

    For a family whose baseline differs from pair to pair, e.g. ``[("tiny/fma",
    "tiny/student"), ("small/fma", "small/student")]``.

    **Intervals agree with the verdicts.** Each row's interval (``ci_low``, ``ci_high``,
    at the confidence ``level``) is the t interval at the level Holm's procedure used for
    that comparison, ``1 − α·p/p_Holm`` (``1 − α/k`` for the comparison Holm tested
    against ``α/k``): it excludes zero exactly when the verdict detects a difference.
    (It is not a simultaneous interval for the family; the unadjusted 95 % interval is
    kept as ``ci_low_raw``, ``ci_high_raw``.) ``mde``, the smallest difference the design
    detects with 80 % power, is computed at the same level.

    **Equivalence.** With a ``margin`` ``m`` (in the metric's units, e.g. 0.01 for one
    point of accuracy), each comparison also gets two one-sided tests (TOST: is the mean
    difference above ``−m``? below ``+m``?), ``p_equiv`` the larger of the two, Holm-
    adjusted over the family as ``p_equiv_holm``; ``equiv_low``/``equiv_high`` is the
    matching ``1 − 2γ`` interval, inside ``±m`` exactly when equivalence is shown. A
    comparison with no detected difference is then ``"equivalent"`` (within ``±m``) or
    ``"inconclusive at this sample size"`` (neither shown), instead of "no detectable
    difference". A detected difference keeps its verdict; ``equivalent`` says whether it
    is also inside the margin. **The interval a row shows is the one its verdict rests
    on**: for an "equivalent" row ``ci_low``/``ci_high``/``level`` are the equivalence
    interval (inside ``±m``; the difference interval is kept as ``diff_ci_low``,
    ``diff_ci_high``, ``diff_level``), for every other row the difference interval.

    Raises:
        ValueError: a method or baseline is missing (the available ones are listed), or
            the margin is not positive.

    Examples::

        >>> runs = {"kd": {0: .950, 1: .952, 2: .951, 3: .953},
        ...         "fma+kd": {0: .951, 1: .951, 2: .952, 3: .952}}
        >>> row = compare_pairs(runs, [("fma+kd", "kd")], margin=0.01)[0]
        >>> row["verdict"], round(100 * row["equiv_high"], 2) < 1
        ('equivalent', True)
    """
    from scipy import stats

    values = results if isinstance(results, Mapping) else paired_values(results, metric)
    missing = sorted({m for pair in pairs for m in pair if m not in values})
    if missing:
        raise ValueError(f"the results hold no runs of {missing}; they hold {list(values)}")
    if margin is not None and not (math.isfinite(float(margin)) and margin > 0):
        raise ValueError(f"an equivalence margin must be a positive number, got {margin!r}")
    rows = [{"method": m, "baseline": b, **paired_comparison(values[m], values[b])}
            for m, b in pairs]
    family = len(rows)
    for row, p in zip(rows, holm([r["p"] for r in rows])):
        row.update(p_holm=p, alpha=alpha, family=family, margin=margin,
                   ci_low_raw=row["ci_low"], ci_high_raw=row["ci_high"])
        row["verdict"] = (NO_DIFFERENCE if p >= alpha
                          else BETTER if row["diff"] > 0 else WORSE)
        level = _step_level(row["p"], p, alpha, family)
        se = row["sd"] / math.sqrt(row["n"])
        t_crit = float(stats.t.ppf(1 - level / 2, row["n"] - 1))
        row.update(level=1 - level, ci_low=row["diff"] - t_crit * se,
                   ci_high=row["diff"] + t_crit * se,
                   mde=(t_crit + float(stats.t.ppf(0.8, row["n"] - 1))) * se)
    if margin is not None:
        _equivalence(rows, float(margin), alpha)
    return rows


def _step_level(p: float, p_holm: float, alpha: float, family: int) -> float:
    """The per-comparison level Holm's step used: ``α·p/p_Holm`` (so that ``p`` is below
    it exactly when ``p_Holm`` is below ``α``); ``α/family`` when ``p`` is 0."""
    return alpha / family if p <= 0 or p_holm <= 0 else alpha * p / p_holm


def _equivalence(rows: list[dict], margin: float, alpha: float) -> None:
    """Two one-sided tests per row at ``±margin``, Holm over the rows (see
    :func:`compare_pairs`)."""
    from scipy import stats

    for row in rows:
        n, se = row["n"], row["sd"] / math.sqrt(row["n"])
        if se > 0:
            p_low = float(stats.t.sf((row["diff"] + margin) / se, n - 1))  # H0: δ ≤ −m
            p_high = float(stats.t.cdf((row["diff"] - margin) / se, n - 1))  # H0: δ ≥ m
            row["p_equiv"] = max(p_low, p_high)
        else:
            row["p_equiv"] = 0.0 if abs(row["diff"]) < margin else 1.0
    for row, p in zip(rows, holm([r["p_equiv"] for r in rows])):
        level = _step_level(row["p_equiv"], p, alpha, len(rows))
        se = row["sd"] / math.sqrt(row["n"])
        t_crit = float(stats.t.ppf(1 - level, row["n"] - 1))
        row.update(p_equiv_holm=p, equivalent=p < alpha, equiv_level=1 - 2 * level,
                   equiv_low=row["diff"] - t_crit * se, equiv_high=row["diff"] + t_crit * se)
        if row["verdict"] == NO_DIFFERENCE:
            row["verdict"] = EQUIVALENT if p < alpha else INCONCLUSIVE
        if row["verdict"] == EQUIVALENT:  # show the interval the verdict rests on
            row.update(diff_ci_low=row["ci_low"], diff_ci_high=row["ci_high"],
                       diff_level=row["level"], ci_low=row["equiv_low"],
                       ci_high=row["equiv_high"], level=row["equiv_level"])


def ci_label(row: dict) -> str:
    """``"95 % CI"``, or the level of a family-adjusted interval, e.g. ``"98.3 % CI"``
    (:func:`compare_pairs`)."""
    level = f"{100 * row.get('level', 0.95):.1f}".rstrip("0").rstrip(".")
    return f"{level} % CI"


def _margin_text(row: dict, scale: float, unit: str, digits: int) -> str:
    return f"±{scale * row['margin']:.{digits}f}{f' {unit}' if unit else ''}"


def verdict_sentence(row: dict, scale: float = 100.0, unit: str = "points",
                     pairs: str = "paired seeds", digits: int = 1) -> str:
    """One sentence for one row of :func:`compare_methods`, e.g. "kd is better than
    student: +2.3 points (95 % CI +1.9 to +2.7; Holm-adjusted p = 0.001; 10 paired seeds)."

    ``pairs`` names the paired units (e.g. ``"paired images"`` when two maps of one model
    are compared image by image); ``digits`` the decimals shown. The interval is the
    row's own (family-adjusted, at the level it names).
    """
    f = f"{{:+.{digits}f}}"
    u = f" {unit}" if unit else ""
    d = scale * row["diff"]
    ci = (f"{ci_label(row)} {f.format(scale * row['ci_low'])} to "
          f"{f.format(scale * row['ci_high'])}")
    stats = f"Holm-adjusted p {format_p(row['p_holm'])}; {row['n']} {pairs}"
    name = f"{row['method']} vs {row['baseline']}"
    if row["verdict"] == EQUIVALENT:
        return (f"{name}: equivalent within {_margin_text(row, scale, unit, digits)} "
                f"({f.format(d)}{u}, {ci}; equivalence shown by two one-sided tests, "
                f"Holm-adjusted p {format_p(row['p_equiv_holm'])}; {row['n']} {pairs}).")
    if row["verdict"] == INCONCLUSIVE:
        return (f"{name}: inconclusive at this sample size: neither a difference nor "
                f"equivalence within {_margin_text(row, scale, unit, digits)} is shown "
                f"({f.format(d)}{u}, {ci}; {stats}).")
    if row["verdict"] == NO_DIFFERENCE:
        return (f"{name}: no detectable difference at this sample size ({f.format(d)}{u}, "
                f"{ci}; {stats}; the design detects differences of about "
                f"{scale * row['mde']:.{digits}f}{u} or more).")
    return (f"{row['method']} is {row['verdict']} than {row['baseline']}: {f.format(d)}"
            f"{u} ({ci}; {stats}).")


def short_verdict(row: dict, scale: float = 100.0, unit: str = "points",
                  digits: int = 1) -> str:
    """One clause for one row of :func:`compare_methods`, for a list of many verdicts
    whose protocol is stated once, e.g. "kd vs student: better, +2.3 points (95 % CI
    +1.9 to +2.7)" (:func:`verdict_sentence` gives the whole sentence, with p and n).

    Examples::

        >>> short_verdict({"method": "kd", "baseline": "student", "diff": 0.023,
        ...                "ci_low": 0.019, "ci_high": 0.027, "verdict": "better"})
        'kd vs student: better, +2.3 points (95 % CI +1.9 to +2.7)'
    """
    f = f"{{:+.{digits}f}}"
    u = f" {unit}" if unit else ""
    word = {NO_DIFFERENCE: "no detectable difference",
            INCONCLUSIVE: "inconclusive"}.get(row["verdict"], row["verdict"])
    if row["verdict"] == EQUIVALENT:
        word = f"equivalent within {_margin_text(row, scale, unit, digits)}"
    return (f"{row['method']} vs {row['baseline']}: {word}, {f.format(scale * row['diff'])}"
            f"{u} ({ci_label(row)} {f.format(scale * row['ci_low'])} to "
            f"{f.format(scale * row['ci_high'])})")


def format_p(p: float) -> str:
    """``"< 0.001"`` or ``"= 0.042"``: the p-value with its relation sign."""
    return "< 0.001" if p < 0.001 else f"= {p:.3f}"


def comparison_markdown(rows: Sequence[dict], scale: float = 100.0, unit: str = "pp") -> str:
    """A Markdown table of :func:`compare_methods` rows."""
    lines = [f"| method | vs | mean | Δ ({unit}) | CI (level) | p (Holm) | d_z | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['baseline']} | {scale * r['mean_a']:.2f} | "
            f"{scale * r['diff']:+.2f} | [{scale * r['ci_low']:+.2f}, {scale * r['ci_high']:+.2f}] "
            f"({ci_label(r).removesuffix(' CI')}) "
            f"| {format_p(r['p_holm']).lstrip('= ')} | {r['d_z']:+.2f} | {r['verdict']} |")
    return "\n".join(lines) + "\n"
