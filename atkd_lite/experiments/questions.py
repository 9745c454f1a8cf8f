"""The book's research questions, declared once: each with its family of comparisons, its
test, its decision rule and, where the answer may be "it adds nothing", an equivalence
margin with its reason.

A chapter never chooses a family, a threshold or a verdict rule: it asks a
:class:`Question` for its rows (:meth:`Question.rows`), which are adjusted over the
question's whole family, so one comparison has one adjusted p-value and one interval
wherever it is printed (``tests/test_questions.py`` checks that no comparison of one
committed experiment belongs to two questions). A question's claims are read by their
declared rule (:meth:`Question.answers`), and :func:`summary` says a family in one
sentence.

The protocol is :func:`atkd_lite.experiments.stats.compare_pairs`: paired seeds, Holm
over the family, intervals at the level of Holm's step (so an interval excludes zero
exactly when a difference is detected) and, with a margin, two one-sided tests for
equivalence.

Examples::

    >>> from atkd_lite.experiments.questions import question
    >>> q = question("maps")
    >>> q.results, len(q.comparisons), [c.name for c in q.claims]
    ('mnist5k-lowdata', 5, ['Claim 1', 'Claim 2'])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from atkd_lite.experiments.results import load_results
from atkd_lite.experiments.stats import (
    BETTER,
    EQUIVALENT,
    WORSE,
    ci_label,
    compare_pairs,
    paired_values,
)

__all__ = [
    "ALL_BETTER",
    "ALL_EQUIVALENT",
    "CHEAP_OVERHEAD",
    "CONTROL_GRIDS",
    "SURVIVES_RANDOMISATION",
    "Claim",
    "ONE_POINT",
    "QUESTIONS",
    "Question",
    "TEACHER_GRIDS",
    "across_teachers",
    "answers_markdown",
    "cheap_maps",
    "family_rows",
    "grid_teacher",
    "per_teacher",
    "teacher_values",
    "teachers_markdown",
    "question",
    "questions_for",
    "summary",
    "survive_randomisation",
    "teacher_agreement",
]

#: decision rules of a :class:`Claim`
ALL_BETTER, ALL_EQUIVALENT = "every comparison better", "every comparison equivalent"

#: the equivalence margin of the book's "adds nothing" questions (one point of accuracy)
ONE_POINT = 0.01

ONE_POINT_REASON = (
    "one point of test accuracy: about a third of KD's gain over the student alone on "
    "these digits, the smallest gain for which the book would add a loss term to a "
    "recipe, and about the spread between independently trained teachers (three runs of "
    "fma+kd against kd gave −0.4, −0.1 and +0.4 points). Declared after the one-teacher "
    "grids were seen and before any grid with several teachers was run")


#: the same margin for the controls of ``input-controls``, declared with them, before
#: their grids ran
CONTROLS_MARGIN_REASON = (
    "the book's one point (see ONE_POINT_REASON), declared with the question, before its "
    "grids ran: a control that comes within a point of the teacher's signal leaves the "
    "teacher nothing a recipe would add a loss term for")


@dataclass(frozen=True)
class Claim:
    """A statement a question tests, with its decision rule.

    Attributes:
        name: a short label ("Claim 1").
        text: what is claimed ("every attention map helps the student").
        comparisons: the ``(method, baseline)`` pairs the rule reads (of the question's
            family).
        rule: :data:`ALL_BETTER` (supported when every comparison is "better") or
            :data:`ALL_EQUIVALENT` (supported when every comparison is equivalent within
            the question's margin; "not supported" when one differs; "inconclusive"
            otherwise).
    """

    name: str
    text: str
    comparisons: tuple[tuple[str, str], ...]
    rule: str = ALL_BETTER

    def verdict(self, rows: Sequence[dict]) -> str:
        """``"supported"``, ``"not supported (…)"`` or ``"inconclusive (…)"`` by the
        rule, from the question's rows."""
        by = {(r["method"], r["baseline"]): r for r in rows}
        missing = [c for c in self.comparisons if c not in by]
        if missing:
            raise ValueError(f"{self.name} reads {missing}, which the rows do not hold; "
                             "give the rows of its question (Question.rows)")
        picked = [by[c] for c in self.comparisons]
        n = len(picked)
        if self.rule == ALL_BETTER:
            k = sum(r["verdict"] == BETTER for r in picked)
            return "supported" if k == n else f"not supported ({k} of {n} better)"
        if self.rule == ALL_EQUIVALENT:
            differ = [f"{r['method']} vs {r['baseline']}" for r in picked
                      if r["verdict"] in (BETTER, WORSE)]
            if differ:
                return f"not supported ({', '.join(differ)} differ)"
            k = sum(r["verdict"] == EQUIVALENT for r in picked)
            return ("supported" if k == n else
                    f"inconclusive ({k} of {n} shown equivalent)")
        raise ValueError(f"unknown rule {self.rule!r}; use ALL_BETTER or ALL_EQUIVALENT")


@dataclass(frozen=True)
class Question:
    """A research question: one committed experiment, one family of comparisons.

    Attributes:
        key: its name in :data:`QUESTIONS`.
        text: the question in words.
        results: the committed results it reads
            (:func:`~atkd_lite.experiments.results.load_results`).
        comparisons: the family, ``(method, baseline)`` pairs, adjusted together.
        claims: the statements it tests, each with its rule.
        margin: the equivalence margin (a fraction of accuracy), or ``None`` for a
            question that asks only for differences.
        margin_reason: why that margin.
        chapter: where the book answers it.
        title: a short heading for a figure (:func:`family_rows`).
    """

    key: str
    text: str
    results: str
    comparisons: tuple[tuple[str, str], ...]
    claims: tuple[Claim, ...] = ()
    margin: float | None = None
    margin_reason: str = ""
    chapter: str = ""
    metric: str = "test_acc"
    title: str = ""

    def rows(self, results=None) -> list[dict]:
        """The family's rows (:func:`~atkd_lite.experiments.stats.compare_pairs`), each
        with ``question`` set; ``results`` defaults to the committed ones."""
        res = load_results(self.results) if results is None else results
        rows = compare_pairs(res, self.comparisons, metric=self.metric,
                             margin=self.margin)
        for r in rows:
            r["question"] = self.key
        return rows

    def answers(self, rows: Sequence[dict] | None = None) -> dict[str, str]:
        """``{claim name: verdict}`` by each claim's declared rule."""
        rows = self.rows() if rows is None else rows
        return {c.name: c.verdict(rows) for c in self.claims}


def _pairs(*pairs: str) -> tuple[tuple[str, str], ...]:
    """``"fma vs student"`` → ``("fma", "student")``."""
    return tuple(tuple(p.split(" vs ")) for p in pairs)  # type: ignore[misc]


#: every declared question, by its key
QUESTIONS: dict[str, Question] = {q.key: q for q in (
    Question(
        "baselines", "Do the published methods, Hinton's KD and Zagoruyko and "
        "Komodakis' AT, help a student trained on 1,000 labelled digits?",
        "mnist5k-lowdata", _pairs("kd vs student", "at vs student"),
        claims=(Claim("KD helps", "knowledge distillation helps the student",
                      _pairs("kd vs student")),),
        chapter="03_knowledge_distillation",
        title="1,000 digits: the published methods against the student"),
    Question(
        "kd-controls", "What is KD's gain made of: dark knowledge, label smoothing, the "
        "teacher's extra labels, or more images?",
        "mnist5k-lowdata", _pairs("ls vs kd", "ls-matched vs kd", "kd-small-teacher vs kd",
                                  "kd-transfer vs kd"),
        margin=ONE_POINT, margin_reason=ONE_POINT_REASON,
        chapter="03_knowledge_distillation",
        title="1,000 digits: KD's controls against KD"),
    Question(
        "maps", "Does every attention map help the student, and does SALS help most?",
        "mnist5k-lowdata", _pairs("fma vs student", "mip vs student", "sals vs student",
                                  "sals vs fma", "sals vs mip"),
        claims=(Claim("Claim 1", "every attention map (FMA, MIP, SALS) helps the student",
                      _pairs("fma vs student", "mip vs student", "sals vs student")),
                Claim("Claim 2", "SALS helps most: it beats the student and both other "
                      "maps", _pairs("sals vs student", "sals vs fma", "sals vs mip"))),
        chapter="05_attention_distillation",
        title="1,000 digits, claims 1 and 2: the three maps"),
    Question(
        "maps-vs-baselines", "Does a map alone beat the published methods?",
        "mnist5k-lowdata", _pairs("fma vs at", "mip vs at", "sals vs at", "fma vs kd",
                                  "mip vs kd", "sals vs kd"),
        chapter="05_attention_distillation",
        title="1,000 digits: each map against AT and KD"),
    Question(
        "on-kd", "Does the attention term add anything on top of KD?",
        "mnist5k-lowdata", _pairs("at+kd vs kd", "fma+kd vs kd", "mip+kd vs kd",
                                  "sals+kd vs kd"),
        claims=(Claim("Adds nothing", "each attention term added to KD is equivalent to "
                      "KD alone", _pairs("at+kd vs kd", "fma+kd vs kd", "mip+kd vs kd",
                                         "sals+kd vs kd"), ALL_EQUIVALENT),),
        margin=ONE_POINT, margin_reason=ONE_POINT_REASON,
        chapter="05_attention_distillation",
        title="1,000 digits: the attention term added to KD"),
    Question(
        "wrong-maps", "Does the student need the teacher's own maps, or does any map do "
        "as well?",
        "mnist5k-lowdata", _pairs("fma-shuffled vs fma", "fma-untrained vs fma",
                                  "sals-shuffled vs sals"),
        claims=(Claim("Any map", "other images' maps and an untrained network's maps do "
                      "as well as the teacher's", _pairs("fma-shuffled vs fma",
                                                         "fma-untrained vs fma",
                                                         "sals-shuffled vs sals"),
                      ALL_EQUIVALENT),),
        margin=ONE_POINT, margin_reason=ONE_POINT_REASON,
        chapter="05_attention_distillation",
        title="1,000 digits: the wrong maps against the teacher's"),
    Question(
        "input-controls", "Do the teacher's signals carry more than a student gets without "
        "a teacher: the teacher's shift augmentation, the ink of its own input?",
        "mnist5k-lowdata-controls-teacher1",
        _pairs("kd vs student-shift", "fma vs fma-input"),
        claims=(Claim("KD's own gain", "KD beats the student trained with the teacher's "
                      "shift augmentation", _pairs("kd vs student-shift")),
                Claim("The maps' own gain", "FMA towards the teacher's maps beats FMA "
                      "towards the input's", _pairs("fma vs fma-input"))),
        margin=ONE_POINT, margin_reason=CONTROLS_MARGIN_REASON,
        chapter="10_conclusions",
        title="1,000 digits: the teacher's signals against what needs no teacher"),
    Question(
        "free-gains", "What does a student gain with no teacher at all: the teachers' shift "
        "augmentation, or FMA towards its own input?",
        "mnist5k-lowdata-controls-teacher1",
        _pairs("student-shift vs student", "fma-input vs student"),
        margin=ONE_POINT, margin_reason=CONTROLS_MARGIN_REASON,
        chapter="10_conclusions",
        title="1,000 digits: what needs no teacher, against the student"),
    Question(
        "sizes", "Can one teacher's cached maps train students of several sizes?",
        "mnist5k-sizes", _pairs("tiny/fma vs tiny/student", "small/fma vs small/student",
                                "medium/fma vs medium/student"),
        claims=(Claim("Claim 4", "the teacher's maps, computed once, help students of "
                      "every size", _pairs("tiny/fma vs tiny/student",
                                           "small/fma vs small/student",
                                           "medium/fma vs medium/student")),),
        chapter="07_efficiency",
        title="Claim 4: FMA against the student, three student sizes"),
    Question(
        "clutter", "On digits hidden in clutter, does any method help the student?",
        "cluttered-faithfulness", _pairs("kd vs student", "fma vs student",
                                         "mip vs student", "sals vs student"),
        chapter="06_faithfulness",
        title="Digits in clutter: against the student alone"),
)}


def question(key: str) -> Question:
    """The declared question ``key``.

    Raises:
        ValueError: no such question (the declared ones are listed).
    """
    if key not in QUESTIONS:
        raise ValueError(f"no question {key!r}; the declared ones are {list(QUESTIONS)}")
    return QUESTIONS[key]


def questions_for(results: str) -> list[Question]:
    """Every question that reads the committed results ``results``, in declared order."""
    return [q for q in QUESTIONS.values() if q.results == results]


def summary(rows: Sequence[dict], scale: float = 100.0, unit: str = "points",
            digits: int = 1) -> str:
    """A family of comparisons in one sentence: each detected difference with its
    interval, then the others by verdict, e.g. "better: kd vs student, +2.7 points (95 %
    CI +2.1 to +3.3); no detectable difference: at vs student."

    Examples::

        >>> rows = [{"method": "kd", "baseline": "student", "diff": 0.027, "ci_low": 0.021,
        ...          "ci_high": 0.033, "verdict": "better", "level": 0.975},
        ...         {"method": "at", "baseline": "student", "diff": -0.003,
        ...          "ci_low": -0.009, "ci_high": 0.003, "verdict": "no detectable "
        ...          "difference at this sample size", "level": 0.95}]
        >>> summary(rows)
        'better: kd vs student, +2.7 points (97.5 % CI +2.1 to +3.3); no detectable difference: at vs student.'
    """
    if not rows:
        raise ValueError("no comparisons to summarise; give the rows of a question")
    f = f"{{:+.{digits}f}}"
    u = f" {unit}" if unit else ""
    parts = []
    for word in (BETTER, WORSE):
        hits = [r for r in rows if r["verdict"] == word]
        if hits:
            parts.append(f"{word}: " + ", ".join(
                f"{r['method']} vs {r['baseline']}, {f.format(scale * r['diff'])}{u} "
                f"({ci_label(r)} {f.format(scale * r['ci_low'])} to "
                f"{f.format(scale * r['ci_high'])})" for r in hits))
    rest: dict[str, list[str]] = {}
    for r in rows:
        if r["verdict"] not in (BETTER, WORSE):
            word = _short(r["verdict"])
            if r["verdict"] == EQUIVALENT:
                word = f"equivalent within ±{scale * r['margin']:.{digits}f}{u}"
            rest.setdefault(word, []).append(f"{r['method']} vs {r['baseline']}")
    parts += [f"{word}: {', '.join(names)}" for word, names in rest.items()]
    return "; ".join(parts) + "."


def answers_markdown(q: Question, rows: Sequence[dict] | None = None) -> str:
    """The question, each claim's verdict by its rule, and the family in one sentence
    (:func:`summary`), as Markdown."""
    rows = q.rows() if rows is None else rows
    lines = [f"**{q.text}** {summary(rows)}"]
    for c in q.claims:
        lines.append(f"{c.name} ({c.text}): **{c.verdict(rows)}**.")
    if q.margin is not None:
        lines.append(f"(Equivalence margin ±{100 * q.margin:g} points: {q.margin_reason}.)")
    return " ".join(lines)


def family_rows(keys: Sequence[str], results: Mapping | None = None) -> dict[str, list[dict]]:
    """``{question title: rows}`` for the questions ``keys``, ready for
    :func:`~atkd_lite.book.viz.difference_plot`; ``results`` maps a results name to
    results already loaded (the rest are loaded)."""
    results = dict(results or {})
    out = {}
    for k in keys:
        q = question(k)
        out[q.title or q.text] = q.rows(results.get(q.results))
    return out


#: the low-data grid repeated with independently trained teachers (seeds 1, 2, 3), each
#: the whole grid of ``mnist5k-lowdata`` on the same ten student seeds, at one commit
TEACHER_GRIDS = ("mnist5k-lowdata-teacher1", "mnist5k-lowdata-teacher2",
                 "mnist5k-lowdata-teacher3")

#: the student, KD, FMA and the controls of ``input-controls`` with the teachers of
#: :data:`TEACHER_GRIDS` (the same weights) and the same seeds, at one later commit. The
#: runs that need no teacher (``student``, ``student-shift``, ``fma-input``, which takes
#: only the teacher's layer resolutions) are the same in all three, so ``free-gains``
#: reads them on the seeds of one grid
CONTROL_GRIDS = ("mnist5k-lowdata-controls-teacher1", "mnist5k-lowdata-controls-teacher2",
                 "mnist5k-lowdata-controls-teacher3")


def _teacher_label(res, i: int) -> str:
    digest = res.teacher.get("weights_sha256")
    return f"teacher {i + 1}" + (f" ({digest[:8]})" if digest else "")


def teacher_values(grids: Sequence, metric: str = "test_acc") -> dict[str, dict[str, float]]:
    """``{method: {teacher: mean over that teacher's seeds}}``: one value per teacher and
    method, the unit of an analysis that treats the teacher as a random factor.

    Raises:
        ValueError: fewer than two grids, or grids that do not share their seeds.
    """
    if len(grids) < 2:
        raise ValueError(f"the teacher as a random factor needs at least 2 teachers' grids, "
                         f"got {len(grids)}")
    out: dict[str, dict[str, float]] = {}
    seeds = None
    for i, res in enumerate(grids):
        values = paired_values(res, metric)
        these = {m: sorted(v) for m, v in values.items()}
        if seeds is not None and these != seeds:
            raise ValueError("the teachers' grids differ in their methods or seeds; run "
                             "every teacher's grid with the same methods and seeds")
        seeds = these
        for m, v in values.items():
            out.setdefault(m, {})[_teacher_label(res, i)] = sum(v.values()) / len(v)
    return out


def across_teachers(q: Question, grids: Sequence) -> list[dict]:
    """The question answered with the teacher as a random factor: for each comparison the
    teachers' mean paired differences (each over its own seeds) are the paired units,
    so the interval, the test, Holm over the family and the equivalence test have
    ``teachers − 1`` degrees of freedom (:func:`teacher_values`, then
    :func:`~atkd_lite.experiments.stats.compare_pairs`).

    Raises:
        ValueError: a comparison neither of whose methods depends on the teacher (the
            same values under every teacher), whose interval across teachers would have
            no width: such a comparison is read on one grid's seeds."""
    values = teacher_values(grids, q.metric)
    for method, baseline in q.comparisons:
        if all(len(set(values[m].values())) == 1 for m in (method, baseline)):
            raise ValueError(
                f"{method} vs {baseline} does not depend on the teacher (the same value under "
                "every teacher): across teachers its interval would have no width; read it "
                "on the paired seeds of one grid (Question.rows)")
    rows = compare_pairs(values, q.comparisons, margin=q.margin)
    for r in rows:
        r["question"] = q.key
    return rows


def per_teacher(q: Question, grids: Sequence) -> list[list[dict]]:
    """The question answered on each teacher's grid alone (its seeds paired): one list of
    rows per teacher, in the order of ``grids``."""
    return [q.rows(res) for res in grids]


def teachers_markdown(questions: Sequence[Question], grids: Sequence) -> str:
    """A table, one row per comparison: each teacher's verdict on its own seeds, and the
    verdict across teachers (teacher as a random factor) with its mean difference and
    interval, in points."""
    labels = [_teacher_label(res, i) for i, res in enumerate(grids)]
    lines = ["| comparison | " + " | ".join(labels) + " | across teachers |",
             "|---|" + "---|" * len(labels) + "---|"]
    for q in questions:
        each = per_teacher(q, grids)
        for k, r in enumerate(across_teachers(q, grids)):
            verdicts = [_short(rows[k]["verdict"]).replace("no detectable difference",
                                                           "n.d.") for rows in each]
            lines.append(
                f"| {r['method']} vs {r['baseline']} | " + " | ".join(verdicts) +
                f" | {_short(r['verdict']).replace('no detectable difference', 'n.d.')}, "
                f"{100 * r['diff']:+.2f} [{100 * r['ci_low']:+.2f}, "
                f"{100 * r['ci_high']:+.2f}] |")
    return "\n".join(lines) + "\n"


# --- rules that are not comparisons of accuracy: thresholds, declared once -------------

#: claim 3 ("the attention term costs little extra compute") calls a map cheap when it
#: costs at most this fraction of a plain forward pass of the teacher on top of it
CHEAP_OVERHEAD = 0.10
CHEAP_OVERHEAD_REASON = (
    "a tenth of a forward pass: the paper's \"little extra compute\" read as an overhead "
    "smaller than the run-to-run spread of a training step on a shared machine")

#: a map "survives randomisation" when, with every layer of the network randomised, its
#: rank correlation with the trained network's map stays above this
SURVIVES_RANDOMISATION = 0.5
SURVIVES_RANDOMISATION_REASON = (
    "halfway between a map that no longer resembles the trained one (0) and one that is "
    "unchanged (1): above it, the map owes more to the input and the architecture than "
    "to what the network learned")


def cheap_maps(extra: Mapping[str, float]) -> list[str]:
    """The maps whose extra time over a plain forward pass (a fraction, e.g. ``{"fma":
    0.04}``) is within :data:`CHEAP_OVERHEAD`, in the given order (claim 3's rule).

    Examples::

        >>> cheap_maps({"fma": 0.04, "mip": 0.12})
        ['fma']
    """
    return [m for m, v in extra.items() if v <= CHEAP_OVERHEAD]


def survive_randomisation(correlations: Mapping[str, float]) -> list[str]:
    """The maps whose rank correlation with the trained network's map, with every layer
    randomised, stays above :data:`SURVIVES_RANDOMISATION` (the sanity check's rule).

    Examples::

        >>> survive_randomisation({"fma": 0.93, "sals": 0.08})
        ['fma']
    """
    return [m for m, v in correlations.items() if v > SURVIVES_RANDOMISATION]


def _short(verdict: str) -> str:
    return verdict.removesuffix(" at this sample size")


def teacher_agreement(questions: Sequence[Question], grids: Sequence,
                      results=None) -> str:
    """Whether each comparison's verdict holds for every teacher, in one sentence: the
    verdict on ``results`` (default: each question's committed results) against the
    verdicts of the same question on each teacher's grid (:func:`per_teacher`).

    Examples::

        >>> q = Question("q", "?", "r", (("a", "b"),))
        >>> base = {"b": {0: .90, 1: .91, 2: .92}}
        >>> grids = [{**base, "a": {0: .95, 1: .96, 2: .96}},
        ...          {**base, "a": {0: .93, 1: .90, 2: .92}}]
        >>> teacher_agreement([q], grids, results=grids[0])[:47]
        'Of 1 comparison, 0 get the same verdict from ev'
    """
    same, differ = 0, []
    total = 0
    for q in questions:
        main = q.rows(results)
        each = per_teacher(q, grids)
        for k, r in enumerate(main):
            total += 1
            got = [_short(rows[k]["verdict"]) for rows in each]
            if all(v == _short(r["verdict"]) for v in got):
                same += 1
                continue
            counts = {v: got.count(v) for v in dict.fromkeys(got)}
            differ.append(f"{r['method']} vs {r['baseline']} ({_short(r['verdict'])} here; "
                          + ", ".join(f"{v} for {n} of {len(got)}" for v, n in counts.items())
                          + ")")
    text = (f"Of {total} comparison{'s' if total != 1 else ''}, {same} get the same verdict "
            f"from every one of the {len(grids)} other teachers")
    return text + (": " + "; ".join(differ) if differ else "") + "."


def grid_teacher(name: str):
    """The teacher a committed grid of :data:`TEACHER_GRIDS` was distilled from, shipped
    with its results (``teacher.pt``): ``(model, checkpoint metadata)``, its weights
    checked against the digest the results recorded, so the reader holds exactly the
    teacher the verdicts rest on.

    Raises:
        FileNotFoundError: these results ship no teacher.
        ValueError: the shipped weights are not the ones the results name.
    """
    from atkd_lite.checkpoints import load_checkpoint
    from atkd_lite.experiments.results import PACKAGED_RESULTS

    res = load_results(name)
    path = PACKAGED_RESULTS / name / "teacher.pt"
    if not path.is_file():
        raise FileNotFoundError(f"the results {name!r} ship no teacher ({path}); the "
                                f"grids that do: {list(TEACHER_GRIDS)}")
    model, meta = load_checkpoint(path)
    if meta.get("sha256") != res.teacher.get("weights_sha256"):
        raise ValueError(f"the teacher shipped with {name!r} is not the one its results "
                         "name (weights digests differ); reinstall the package")
    return model, meta
