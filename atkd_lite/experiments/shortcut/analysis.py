"""What the shortcut results say, by the book's one statistical protocol: the values of
one ρ (:func:`shortcut_values`), every method against the plain student
(:func:`shortcut_verdicts`), the share of the shortcut's cost each method wins back
(:func:`won_back`), the controls (:func:`control_comparisons`), the tuning read in
hindsight (:func:`tuning_hindsight`, :func:`switched_off`), accuracies with their
intervals (:func:`accuracy_table`), and the answers in words that follow fixed rules
(:func:`teacher_mask_answer`, :func:`prior_clause`).

Part of :mod:`atkd_lite.experiments.shortcut` (every name here is also importable from
there).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from atkd_lite.experiments.results import ExperimentResults
from atkd_lite.experiments.shortcut.design import CONTROL_PAIRS, CONTROLLED
from atkd_lite.experiments.shortcut.status import completion_command, rhos_with_runs
from atkd_lite.experiments.stats import (
    BETTER,
    EQUIVALENT,
    compare_methods,
    compare_pairs,
    format_p,
)

__all__ = [
    "accuracy_table",
    "control_comparisons",
    "prior_clause",
    "shortcut_values",
    "shortcut_verdicts",
    "switched_off",
    "teacher_mask_answer",
    "tuning_hindsight",
    "won_back",
]


def _rho_runs(results: ExperimentResults, rho: float) -> list[dict]:
    rhos = results.settings["rhos"]
    if not any(math.isclose(rho, r) for r in rhos):
        raise ValueError(f"the results hold rho {rhos}, not {rho}")
    if not any(math.isclose(rho, r) for r in rhos_with_runs(results)):
        raise ValueError(f"rho {rho:g} was planned but has no runs (the grid was stopped "
                         f"part-way; rho with runs: {rhos_with_runs(results)}); run "
                         f"`{completion_command(results)}` to complete it")
    return [r for r in results.runs
            if r.get("rho") is None or math.isclose(r["rho"], rho)]


def shortcut_values(results: ExperimentResults, rho: float,
                    metric: str = "test_acc") -> dict[str, dict[int, float]]:
    """``{method: {seed: value}}`` for one ρ (the ``clean`` ceiling included), ready for
    :func:`~atkd_lite.experiments.stats.compare_methods`.

    ``metric`` is a run entry (``test_acc``, ``flipped_acc``, ``clean_acc``, ``val_acc``)
    or a map score ``"<kind>:<swatch|digit>"``, e.g. ``"sals:swatch"``.
    """
    out: dict[str, dict[int, float]] = {}
    for run in _rho_runs(results, rho):
        if ":" in metric:
            kind, part = metric.split(":")
            value = run["maps"][kind][part]
        else:
            value = run[metric]
        out.setdefault(run["base_method"], {})[run["seed"]] = value
    return out


def shortcut_verdicts(results: ExperimentResults, rho: float, baseline: str = "student",
                      methods: Sequence[str] | None = None,
                      metric: str = "test_acc") -> list[dict]:
    """Every method against ``baseline`` at one ρ, with the book's one protocol
    (:func:`~atkd_lite.experiments.stats.compare_methods`: paired seeds, Holm over the
    family, a verdict in words).

    At a ρ stopped part-way the family is compared on the seeds that all its members
    have (each row reports its ``n``); a method with fewer than two seeds in common with
    the baseline is left out of the family.
    """
    values = shortcut_values(results, rho, metric)
    if baseline not in values:
        raise ValueError(f"the results hold no {baseline!r} runs at rho {rho:g}; they hold "
                         f"{list(values)}")
    family = [m for m in values if m != baseline] if methods is None else list(methods)
    base = set(values[baseline])
    family = [m for m in family if m not in values or len(base & set(values[m])) >= 2]
    common = base.intersection(*(set(values[m]) for m in family if m in values))
    paired = {m: {k: v for k, v in by.items() if k in common} for m, by in values.items()}
    return compare_methods(paired, baseline=baseline, methods=family)


def won_back(results: ExperimentResults, rho: float, methods: Sequence[str] | None = None,
             baseline: str = "student", ceiling: str = "clean",
             confidence: float = 0.95) -> list[dict]:
    """Per method: the share of the shortcut's cost it wins back, with its interval, and
    its verdict against the plain student by the book's one protocol.

    The cost of the shortcut is what the plain student (``baseline``, trained on the decoy
    digits) loses on random shades against the same student trained on clean digits
    (``ceiling``), seed by seed. A method's share on seed s is
    ``(acc_method − acc_plain) / (acc_clean − acc_plain)``: 0 = no help, 1 = as if the
    swatch were not there, below 0 = worse than no help. The interval is the t interval of
    the per-seed shares; the verdict (``"better"``/``"worse"`` than the plain student, or
    no detectable difference) is that of :func:`shortcut_verdicts` on the accuracies, with
    ``methods`` as one Holm family.

    Args:
        results (ExperimentResults): shortcut results with ``baseline`` and ``ceiling``.
        rho (float): a ρ of the grid.
        methods (sequence of str, optional): the family (default: every other cell).
        baseline, ceiling (str): the plain student and the clean-trained one.
        confidence (float): of the interval.

    Returns:
        list of dict: ``method``, ``baseline``, ``n``, ``diff`` (the mean share; the name
        :func:`~atkd_lite.book.viz.difference_plot` draws), ``ci_low``, ``ci_high``,
        ``accuracy`` (mean), ``gain`` (mean accuracy − plain), ``p_holm``, ``verdict``.

    Raises:
        ValueError: no runs of ``baseline`` or ``ceiling``, or a seed on which the
            clean-trained student is not above the plain one (no cost to win back).

    Examples::

        >>> from atkd_lite.experiments.results import ExperimentResults
        >>> runs = [{"rho": 1.0, "base_method": m, "seed": s, "test_acc": a + s / 100}
        ...         for m, a in (("student", .70), ("clean", .90), ("rrr", .85))
        ...         for s in range(3)]
        >>> res = ExperimentResults(settings={"rhos": [1.0], "methods": ["student"],
        ...                                   "references": ["rrr", "clean"], "seeds": [0, 1, 2]},
        ...                         runs=[{**r, "rho": None} if r["base_method"] == "clean" else r
        ...                               for r in runs])
        >>> round(won_back(res, 1.0)[0]["diff"], 3)
        0.75
    """
    from scipy import stats

    values = shortcut_values(results, rho)
    for who in (baseline, ceiling):
        if who not in values:
            raise ValueError(f"the results hold no {who!r} runs at rho {rho:g}; they hold "
                             f"{list(values)}")
    plain, top = values[baseline], values[ceiling]
    family = ([m for m in values if m not in (baseline, ceiling)] if methods is None
              else list(methods))
    verdicts = {r["method"]: r for r in shortcut_verdicts(results, rho, baseline, family)}
    rows = []
    for m in family:
        seeds = sorted(set(values[m]) & set(plain) & set(top))
        flat = [s for s in seeds if top[s] <= plain[s]]
        if flat:
            raise ValueError(f"on seed(s) {flat} the {ceiling!r} student is not above the "
                             f"{baseline!r} one at rho {rho:g}: there is no cost of the "
                             "shortcut to win back; compare accuracies instead")
        shares = [(values[m][s] - plain[s]) / (top[s] - plain[s]) for s in seeds]
        mean = statistics.fmean(shares)
        half = (float(stats.t.ppf(0.5 + confidence / 2, len(shares) - 1))
                * statistics.stdev(shares) / math.sqrt(len(shares))) if len(shares) > 1 else 0.0
        v = verdicts[m]
        rows.append({"method": m, "baseline": baseline, "n": len(seeds), "diff": mean,
                     "ci_low": mean - half, "ci_high": mean + half,
                     "accuracy": v["mean_a"], "gain": v["diff"], "p_holm": v["p_holm"],
                     "verdict": v["verdict"]})
    return rows


def control_comparisons(results: ExperimentResults, rho: float = 1.0) -> list[dict]:
    """:data:`~atkd_lite.experiments.shortcut.design.CONTROL_PAIRS` compared on paired
    seeds at one ρ, as one Holm family (rows of
    :func:`~atkd_lite.experiments.stats.compare_pairs`), with the book's equivalence
    margin of one point (:data:`~atkd_lite.experiments.questions.ONE_POINT`): "the map
    adds nothing over its control" is a claim of equivalence, not the absence of a
    detected difference."""
    from atkd_lite.experiments.questions import ONE_POINT

    return compare_pairs(shortcut_values(results, rho), list(CONTROL_PAIRS),
                         margin=ONE_POINT)


def switched_off(results: ExperimentResults, rho: float = 1.0) -> list[str]:
    """The methods whose tuning chose the *smallest* weight it tried, still at the edge
    after every extension of its grid: the tuning turned the term (nearly) off, so their
    runs say little about what the term can do.

    Examples::

        >>> from atkd_lite.experiments.results import ExperimentResults
        >>> rows = [{"method": "a", "beta": b, "chosen": b == 1e-4, "edge": True}
        ...         for b in (1e-4, 1e-3)]
        >>> switched_off(ExperimentResults(settings={"tuning": {"1": rows}}))
        ['a']
    """
    rows = results.settings.get("tuning", {}).get(f"{rho:g}", [])
    out = []
    for r in rows:
        if r["chosen"] and r["edge"] and r["beta"] == min(
                x["beta"] for x in rows if x["method"] == r["method"]):
            out.append(r["method"])
    return out


def teacher_mask_answer(rows: Sequence[dict], controls: Sequence[dict] = ()) -> str:
    """One paragraph that answers "can the clean teacher's map replace the human mask?"
    from :func:`won_back` rows (which must include ``tmask`` and ``rrr``; the controls
    ``rrr-all`` and ``tmask-shuffled`` are quoted when present) and, optionally, the
    control comparisons (rows of :func:`~atkd_lite.experiments.stats.compare_pairs` for
    ``("tmask", "rrr-all")`` and ``("tmask", "tmask-shuffled")``).

    Every number and verdict comes from the rows; the words follow fixed rules: "yes, for
    most of the cost" when tmask is better than the plain student and its whole interval
    lies above one half; "in part" when it is better with an interval reaching below one
    half; "no" when no difference is detected or it is worse. When the teacher's own map
    is equivalent (within the controls' margin) to other images' maps, the paragraph says
    that the map acts as a prior of where the evidence usually is, not as knowledge of
    each image; when neither a difference nor equivalence is shown, that it cannot tell.

    Raises:
        ValueError: rows without ``tmask`` or ``rrr``.
    """
    by = {r["method"]: r for r in rows}
    missing = [m for m in CONTROLLED if m not in by]
    if missing:
        raise ValueError(f"the answer needs the won_back rows of {missing}")
    t, h = by["tmask"], by["rrr"]

    def share(r):
        return (f"{100 * r['diff']:.0f} % of the cost (95 % CI {100 * r['ci_low']:.0f} to "
                f"{100 * r['ci_high']:.0f} %)")

    if t["verdict"] == "better" and t["ci_low"] >= 0.5:
        head = "Yes, for most of the cost"
    elif t["verdict"] == "better":
        head = "In part"
    else:
        head = "No"
    text = (f"**{head}.** With the clean teacher's saliency map as the mask, the student won "
            f"back {share(t)}; with the human-drawn mask, RRR won back {share(h)}. ")
    quoted = {"rrr-all": "the same penalty on every pixel, with no map,",
              "tmask-shuffled": "the teacher maps of other images"}
    shown = [(what, by[m]) for m, what in quoted.items() if m in by]
    if shown:
        text += "For comparison, " + "; ".join(
            f"{what}{' won back' if i == 0 else ','} {100 * r['diff']:.0f} % (95 % CI "
            f"{100 * r['ci_low']:.0f} to {100 * r['ci_high']:.0f} %)"
            for i, (what, r) in enumerate(shown)) + ". "
    words = {"better": "does better than", "worse": "does worse than",
             "equivalent": "is equivalent, within ±{m} point, to",
             "inconclusive at this sample size": "is neither detectably different from "
                                                 "nor shown equivalent to"}
    own_vs_other = None
    for c in controls:
        what = quoted.get(c["baseline"], c["baseline"]).rstrip(",")
        verb = words.get(c["verdict"], "is not detectably different from").format(
            m=f"{100 * (c.get('margin') or 0):g}")
        text += (f"Each image's own map {verb} {what} ({100 * c['diff']:+.1f} points of "
                 f"accuracy, Holm-adjusted p {format_p(c['p_holm'])}). ")
        if c["baseline"] == "tmask-shuffled":
            own_vs_other = c["verdict"]
    if own_vs_other == "equivalent":
        text += ("So here the teacher's map acts as a prior of where the evidence usually "
                 "is, not as knowledge of where it is in each image.")
    elif own_vs_other is not None and own_vs_other != "better":
        text += ("Whether the teacher's map tells the student where the evidence is in "
                 "each image, or only where it usually is, these runs cannot tell.")
    return text.strip()


def prior_clause(rows: Sequence[dict], controls: Sequence[dict]) -> str:
    """What the controls say about *how* the teacher's map helps, in one sentence chosen
    by a fixed rule: ``rows`` are :func:`won_back` rows (with ``rrr-all``), ``controls``
    the rows of :func:`control_comparisons` (with ``tmask`` vs ``tmask-shuffled``).

    Each image's own map *equivalent* to other images' maps (within the controls'
    margin) → the map acts as a prior of where digits lie; *better* → the map itself
    matters; neither shown → the controls cannot say.

    Raises:
        ValueError: the rows lack ``rrr-all`` or the controls ``tmask-shuffled``.
    """
    by = {r["method"]: r for r in rows}
    own = {c["baseline"]: c for c in controls}
    if "rrr-all" not in by or "tmask-shuffled" not in own:
        raise ValueError("give won_back rows with rrr-all and control_comparisons rows "
                         "with tmask vs tmask-shuffled")
    every = f"{100 * by['rrr-all']['diff']:.0f} %"
    c = own["tmask-shuffled"]
    if c["verdict"] == EQUIVALENT:
        return ("The controls say how: each image's own map did as well as other images' "
                f"maps (equivalent within ±{100 * c['margin']:g} point), and the same "
                f"penalty on every pixel won back {every}, so the map acted as a prior of "
                "where digits lie, not as knowledge of each image.")
    if c["verdict"] == BETTER:
        return ("The controls say the map itself matters: each image's own map did better "
                "than other images' maps.")
    return ("The controls cannot say how: each image's own map was neither detectably "
            "better than other images' maps nor shown equivalent to them (the same "
            f"penalty on every pixel won back {every}).")


def accuracy_table(results: ExperimentResults, metric: str = "test_acc",
                   confidence: float = 0.95) -> list[dict]:
    """Per ρ and method: the mean of ``metric`` over seeds with its t confidence interval.

    Returns:
        list of dict: ``rho``, ``method``, ``n``, ``mean``, ``low``, ``high`` (fractions).
    """
    from scipy import stats

    rows = []
    for rho in rhos_with_runs(results):
        for method, by_seed in shortcut_values(results, rho, metric).items():
            v = list(by_seed.values())
            mean = statistics.fmean(v)
            half = (float(stats.t.ppf(0.5 + confidence / 2, len(v) - 1))
                    * statistics.stdev(v) / math.sqrt(len(v))) if len(v) > 1 else 0.0
            rows.append({"rho": rho, "method": method, "n": len(v), "mean": mean,
                         "low": mean - half, "high": mean + half})
    return rows


def tuning_hindsight(results: ExperimentResults, rho: float) -> list[dict]:
    """Per tuned method at one ρ: the weight chosen on the training distribution against
    the weight that random shades would have chosen, from the tuning runs.

    The tuning sees only validation digits whose swatch still names the label, so it may
    pick a weight that lets the student use the swatch. Random-shade validation accuracy
    is what a practitioner cannot measure; this says what choosing on it would have
    changed. The tuning runs are single runs (``tune_seeds``) on the validation split:
    a hint to test with paired seeds, not a result.

    Args:
        results (ExperimentResults): shortcut results with their tuning table.
        rho (float): a ρ of the grid.

    Returns:
        list of dict: per method (RRR left out: it is already chosen on random shades),
        ``method``, ``chosen`` and ``chosen_random_acc``, ``hindsight`` (the weight best
        on random shades; ties go to the chosen one) and ``hindsight_random_acc``, and
        ``gain`` (the difference).

    Examples::

        >>> from atkd_lite.experiments.results import ExperimentResults
        >>> rows = [{"method": "fma", "beta": 0.1, "val_acc": 0.96, "val_random_acc": 0.90,
        ...          "chosen": True, "selected_on": "val"},
        ...         {"method": "fma", "beta": 1.0, "val_acc": 0.95, "val_random_acc": 0.93,
        ...          "chosen": False, "selected_on": "val"}]
        >>> res = ExperimentResults(settings={"tuning": {"1": rows}})
        >>> r = tuning_hindsight(res, 1.0)[0]
        >>> r["chosen"], r["hindsight"], round(r["gain"], 2)
        (0.1, 1.0, 0.03)
    """
    rows = results.settings.get("tuning", {}).get(f"{rho:g}", [])
    by: dict[str, list[dict]] = {}
    for r in rows:
        if r.get("selected_on", "val") == "val":
            by.setdefault(r["method"], []).append(r)
    out = []
    for method, tried in by.items():
        chosen = next((r for r in tried if r["chosen"]), None)
        if chosen is None:
            continue
        best = max(tried, key=lambda r: (r["val_random_acc"], r is chosen))
        out.append({"method": method, "chosen": chosen["beta"],
                    "chosen_random_acc": chosen["val_random_acc"], "hindsight": best["beta"],
                    "hindsight_random_acc": best["val_random_acc"],
                    "gain": best["val_random_acc"] - chosen["val_random_acc"]})
    return out
