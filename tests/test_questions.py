"""The declared research questions: one family per comparison, claims read by their
rules, equivalence only with a stated margin, every question answerable from the
committed results."""

import pytest

from atkd_lite.experiments import questions as qs
from atkd_lite.experiments.results import load_results
from atkd_lite.experiments.stats import compare_pairs


def test_no_comparison_of_one_experiment_belongs_to_two_questions():
    seen = {}
    for q in qs.QUESTIONS.values():
        for m, b in q.comparisons:
            key = (q.results, frozenset((m, b)))
            assert key not in seen, (f"{m} vs {b} on {q.results} is in both {seen[key]!r} "
                                     f"and {q.key!r}: it would print two adjusted p-values")
            seen[key] = q.key


def test_claims_read_only_their_own_family_and_equivalence_needs_a_margin():
    for q in qs.QUESTIONS.values():
        for c in q.claims:
            assert set(c.comparisons) <= set(q.comparisons), (q.key, c.name)
            if c.rule == qs.ALL_EQUIVALENT:
                assert q.margin is not None, f"{q.key}: 'adds nothing' needs a margin"
        if q.margin is not None:
            assert q.margin > 0 and len(q.margin_reason) > 40, q.key


@pytest.mark.parametrize("key", list(qs.QUESTIONS))
def test_every_question_is_answered_from_the_committed_results(key):
    q = qs.question(key)
    rows = q.rows()
    assert [(r["method"], r["baseline"]) for r in rows] == list(q.comparisons)
    assert {r["question"] for r in rows} == {key}
    # adjusted over the question's whole family, not over any part of it
    alone = compare_pairs(load_results(q.results), q.comparisons[:1], margin=q.margin)[0]
    if len(q.comparisons) > 1:
        assert rows[0]["p_holm"] >= alone["p_holm"]
        assert rows[0]["ci_high"] - rows[0]["ci_low"] >= alone["ci_high"] - alone["ci_low"]
    text = qs.answers_markdown(q, rows)
    assert q.text in text and all(c.name in text for c in q.claims)


def _row(m, verdict):
    return {"method": m, "baseline": "b", "verdict": verdict}


def test_claim_rules_by_hand():
    better = qs.Claim("c", "helps", (("x", "b"), ("y", "b")))
    assert better.verdict([_row("x", "better"), _row("y", "better")]) == "supported"
    assert better.verdict([_row("x", "better"), _row("y", "equivalent")]) == \
        "not supported (1 of 2 better)"
    same = qs.Claim("c", "adds nothing", (("x", "b"), ("y", "b")), qs.ALL_EQUIVALENT)
    assert same.verdict([_row("x", "equivalent"), _row("y", "equivalent")]) == "supported"
    assert same.verdict([_row("x", "equivalent"),
                         _row("y", "inconclusive at this sample size")]) == \
        "inconclusive (1 of 2 shown equivalent)"
    assert same.verdict([_row("x", "worse"), _row("y", "equivalent")]) == \
        "not supported (x vs b differ)"
    with pytest.raises(ValueError, match="do not hold"):
        better.verdict([_row("x", "better")])
    with pytest.raises(ValueError, match="declared ones"):
        qs.question("claim-9")


def test_claim_2_needs_sals_to_beat_the_student_too():
    """The audit's case: SALS 'better' than FMA and MIP while not beating the student
    alone is not 'SALS helps most'."""
    claim = qs.question("maps").claims[1]
    rows = [_row(m, v) for m, v in (("sals", "no detectable difference at this sample "
                                             "size"),)]
    rows[0]["baseline"] = "student"
    rows += [{"method": "sals", "baseline": "fma", "verdict": "better"},
             {"method": "sals", "baseline": "mip", "verdict": "better"}]
    assert claim.verdict(rows) == "not supported (2 of 3 better)"


def test_summary_names_every_comparison_once():
    rows = qs.question("maps-vs-baselines").rows()
    text = qs.summary(rows)
    for r in rows:
        assert text.count(f"{r['method']} vs {r['baseline']}") == 1


def _grid(teacher_shift, digest, seeds=range(6)):
    """A fake grid of one teacher: student, kd and the +kd methods over a few seeds."""
    from atkd_lite.experiments.results import ExperimentResults

    base = {s: 0.93 + 0.002 * s for s in seeds}
    gains = {"student": 0.0, "kd": 0.027 + teacher_shift / 2, "at+kd": 0.027 + teacher_shift,
             "fma+kd": 0.027 - teacher_shift, "mip+kd": 0.027, "sals+kd": 0.028}
    runs = [{"method": m, "seed": s, "test_acc": base[s] + g + 0.001 * ((s * 7 + i) % 3)}
            for i, (m, g) in enumerate(gains.items()) for s in seeds]
    return ExperimentResults({"seeds": list(seeds)}, runs,
                             {"weights_sha256": digest * 8})


def test_across_teachers_pairs_the_teachers_own_means():
    """The teacher as a random factor: each teacher's mean paired difference is one unit,
    so the interval has teachers − 1 degrees of freedom (checked against SciPy)."""
    import numpy as np
    from scipy import stats

    grids = [_grid(0.004, "a"), _grid(-0.002, "b"), _grid(0.001, "c")]
    q = qs.question("on-kd")
    rows = qs.across_teachers(q, grids)
    vals = qs.teacher_values(grids)
    assert list(vals["kd"]) == ["teacher 1 (aaaaaaaa)", "teacher 2 (bbbbbbbb)",
                                "teacher 3 (cccccccc)"]
    at = rows[0]
    assert (at["method"], at["n"]) == ("at+kd", 3)
    d = np.array([np.mean([r["test_acc"] for r in g.runs if r["method"] == "at+kd"]) -
                  np.mean([r["test_acc"] for r in g.runs if r["method"] == "kd"])
                  for g in grids])
    assert at["diff"] == pytest.approx(d.mean())
    assert at["p"] == pytest.approx(stats.ttest_1samp(d, 0).pvalue)
    # each teacher's own verdicts, on its own seeds
    each = qs.per_teacher(q, grids)
    assert len(each) == 3 and all(len(r) == 4 for r in each)
    table = qs.teachers_markdown([q], grids)
    assert table.count("\n") == 2 + 4 and "| fma+kd vs kd |" in table
    assert table.splitlines()[0].count("|") == 2 + 3 + 1  # comparison, 3 teachers, across
    with pytest.raises(ValueError, match="at least 2"):
        qs.teacher_values(grids[:1])
    with pytest.raises(ValueError, match="same methods and seeds"):
        qs.teacher_values([grids[0], _grid(0.0, "d", seeds=range(5))])


def test_a_comparison_that_needs_no_teacher_is_not_read_across_teachers():
    """The student and the student with the teachers' shifts are the same runs under every
    teacher: across teachers their difference would have an interval of no width (a
    degenerate "better"); the reading is refused and read on one grid's seeds instead,
    where the interval has the seeds' width. The committed control grids show it."""
    grids = [load_results(name) for name in qs.CONTROL_GRIDS]
    free = qs.question("free-gains")
    with pytest.raises(ValueError, match="does not depend on the teacher"):
        qs.across_teachers(free, grids)
    same = [[(r["method"], r["seed"], r["test_acc"]) for r in g.runs
             if r["method"] in ("student", "student-shift", "fma-input")] for g in grids]
    assert same[0] == same[1] == same[2] and len(same[0]) == 30
    rows = free.rows()
    assert all(r["n"] == 10 and r["ci_high"] > r["ci_low"] for r in rows)
    # with a teacher's signal on one side, the teacher is a random factor as before
    across = qs.across_teachers(qs.question("input-controls"), grids)
    assert [r["n"] for r in across] == [3, 3]


@pytest.mark.parametrize("name", qs.TEACHER_GRIDS)
def test_each_teacher_grid_ships_the_teacher_it_names(name):
    """The shipped weights are the ones the results record (digest) and give the test
    accuracy the results record (evaluated here)."""
    import atkd_lite as ak

    res = load_results(name)
    model, meta = qs.grid_teacher(name)
    assert meta["sha256"] == res.teacher["weights_sha256"]
    acc = ak.evaluate(model, ak.load_dataset("mnist5k", "test"), device="cpu")
    assert acc == pytest.approx(res.teacher["test_acc"], abs=1e-6)
    # every teacher is its own: three different sets of weights
    digests = {load_results(n).teacher["weights_sha256"] for n in qs.TEACHER_GRIDS}
    assert len(digests) == len(qs.TEACHER_GRIDS)


def test_a_teacher_other_than_the_one_named_is_refused(monkeypatch):
    name = qs.TEACHER_GRIDS[0]
    res = load_results(name)
    res.teacher = {**res.teacher, "weights_sha256": "0" * 64}
    monkeypatch.setattr(qs, "load_results", lambda _: res)
    with pytest.raises(ValueError, match="not the one its results name"):
        qs.grid_teacher(name)
    with pytest.raises(FileNotFoundError, match="ship no teacher"):
        qs.grid_teacher("mnist5k-sizes")
