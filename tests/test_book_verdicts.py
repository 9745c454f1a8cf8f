"""The book's verdicts, read from the committed chapter outputs: a handful of verdict
sentences per chapter (families are figures), and one comparison, one interval, one
adjusted p-value wherever it is printed."""

import json
import re
from pathlib import Path

import pytest

BOOK = Path(__file__).resolve().parents[1] / "book"
CHAPTERS = sorted(BOOK.glob("[0-9][0-9]_*.ipynb"))
#: the most verdicts (comparisons stated with their interval) a chapter may print
MOST = 10

NAME = r"(?P<a>[\w+/\-]+(?: \([^)]*\))?) (?:vs|is better than|is worse than) (?P<b>[\w+/\-]+)"
TEXT = re.compile(NAME + r"[:,][^()]*?\(?(?P<d>[+-]\d+\.\d+)(?: points)?[^()]*?[(,] ?"
                  r"(?P<ci>\d+(?:\.\d+)? % CI [+-]\d+\.\d+ to [+-]\d+\.\d+)"
                  r"(?:; Holm-adjusted p (?P<p>[=<] \d\.\d+))?")
ROW = re.compile(r"^\| (?P<a>[^|]+?) \| (?P<b>[^|]+?) \| [\d.]+ \| (?P<d>[+-]\d+\.\d+) \| "
                 r"[^|]* \| (?P<p>< 0\.001|\d\.\d+) \|", re.M)


def printed(nb: Path) -> list[str]:
    """Each output's text as a reader sees it: its Markdown, or its plain text, or its
    stream (a glued value counts once, where it is computed)."""
    out = []
    for cell in json.loads(nb.read_text())["cells"]:
        for o in cell.get("outputs", []):
            if "text" in o:
                out.append("".join(o["text"]))
                continue
            data = o.get("data", {})
            for key in ("text/markdown", "text/plain"):
                hits = [v for k, v in data.items() if k.endswith(key)]
                if hits:
                    v = hits[0]
                    out.append("".join(v) if isinstance(v, list) else str(v))
                    break
    return out


def verdict_count(texts: list[str]) -> int:
    """Comparisons stated in prose with their interval (table rows are not prose)."""
    return sum(line.count("% CI") for t in texts for line in t.splitlines()
               if not line.lstrip().startswith("|"))


@pytest.mark.parametrize("nb", CHAPTERS, ids=lambda p: p.stem)
def test_a_chapter_prints_a_handful_of_verdicts(nb):
    n = verdict_count(printed(nb))
    assert n <= MOST, (f"{nb.name} prints {n} verdicts with their intervals; show a "
                       f"family as one figure (viz.difference_plot) and keep at most "
                       f"{MOST} sentences")


def test_the_count_sees_verdicts_in_prose_not_in_tables():
    texts = ["kd is better than student: +2.7 points (95 % CI +2.1 to +3.3; "
             "Holm-adjusted p < 0.001; 10 paired seeds). fma vs student: no detectable "
             "difference at this sample size (-0.3 points, 98.3 % CI -0.8 to +0.2; ...).",
             "| kd | student | 96.02 | +2.69 | [+2.07, +3.31] (95 %) | < 0.001 | +3.09 |"]
    assert verdict_count(texts) == 2
    assert [m["a"] for m in TEXT.finditer(texts[0])] == ["kd", "fma"]
    assert [m["p"] for m in ROW.finditer(texts[1])] == ["< 0.001"]


def test_one_comparison_reads_the_same_in_every_chapter():
    """The same comparison on the same runs (same name, same mean difference) is printed
    with one interval and one adjusted p-value across the whole book."""
    seen: dict[tuple, dict] = {}
    for nb in CHAPTERS:
        for text in printed(nb):
            for m in TEXT.finditer(text):
                key = (m["a"], m["b"], f"{float(m['d']):+.1f}")
                entry = seen.setdefault(key, {"ci": {}, "p": {}})
                entry["ci"].setdefault(m["ci"], nb.stem)
                if m["p"]:
                    entry["p"].setdefault(m["p"].lstrip("= "), nb.stem)
            for m in ROW.finditer(text):
                key = (m["a"], m["b"], f"{float(m['d']):+.1f}")
                entry = seen.setdefault(key, {"ci": {}, "p": {}})
                entry["p"].setdefault(m["p"], nb.stem)
    assert len(seen) > 20  # the parser finds the book's comparisons
    clashes = {k: v for k, v in seen.items() if len(v["ci"]) > 1 or len(v["p"]) > 1}
    assert not clashes, f"printed differently in different places: {clashes}"


@pytest.mark.parametrize("nb", CHAPTERS, ids=lambda p: p.stem)
def test_a_glued_text_shows_its_value_not_an_object(nb):
    """``{glue:text}`` renders a glued value's plain text: a string glued as Markdown shows
    there as "<IPython.core.display.Markdown object>" (use ``{glue:md}`` for it)."""
    plain = {}
    cells = json.loads(nb.read_text())["cells"]
    for cell in cells:
        for o in cell.get("outputs", []):
            name = (o.get("metadata", {}).get("scrapbook") or {}).get("name")
            for k, v in o.get("data", {}).items():
                if name and k.endswith("text/plain"):
                    plain[name] = "".join(v) if isinstance(v, list) else str(v)
    bad = [n for cell in cells if cell["cell_type"] == "markdown"
           for n in re.findall(r"\{glue:text\}`([^`:]+)", "".join(cell["source"]))
           if plain.get(n, "").startswith("<IPython")]
    assert not bad, f"{nb.name}: {bad} are Markdown; reference them with {{glue:md}}"
