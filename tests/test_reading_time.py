"""Each chapter states a reading time computed by one documented rule (tools/reading_time.py).

The rule counts what a reader meets: prose words (markdown and printed text) at 200 a
minute, shown code lines at 30 a minute, half a minute per figure; exercises and their
folded solutions are left out. Checked against hand-counted small notebooks, and each
chapter's goals box must state what the rule gives.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("reading_time",
                                               ROOT / "tools" / "reading_time.py")
rt = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rt)


def _nb(*cells) -> dict:
    return nbformat.from_dict(new_notebook(cells=list(cells)))


def test_every_chapter_states_the_time_the_rule_gives():
    assert rt.problems() == [], "run: python tools/reading_time.py"


def test_the_rule_counts_prose_code_printed_text_and_figures():
    figure = new_output("display_data", data={"image/png": "iVBORw0KGgo=",
                                              "text/plain": "<Figure>"})
    printed = new_output("stream", name="stdout", text="three printed words\n")
    nb = _nb(new_markdown_cell("# Title\n\nFour words of prose."),
             new_code_cell("x = 1\n\ny = 2\n", outputs=[printed, figure]),
             new_code_cell("hidden = 1", metadata={"tags": ["remove-cell"]}))
    # "Title" + "Four words of prose" = 5 words, + 3 printed; 2 code lines; 1 figure
    assert rt.measure(nb) == {"words": 8, "code_lines": 2, "figures": 1}


def test_exercises_and_their_solutions_are_not_counted():
    nb = _nb(new_markdown_cell("One two."),
             new_markdown_cell(":::{exercise}\n:label: e\nMany words to solve here.\n:::"),
             new_markdown_cell(":::{solution-start} e\n:class: dropdown\n:::"),
             new_code_cell("answer = 42\nprint(answer)"),
             new_markdown_cell(":::{solution-end}\n:::"),
             new_code_cell("z = 3"))
    assert rt.measure(nb) == {"words": 2, "code_lines": 1, "figures": 0}


@pytest.mark.parametrize("words, code, figures, minutes", [
    (100, 0, 0, 5),        # never less than 5
    (2000, 0, 0, 10),      # 10 minutes of prose
    (2000, 30, 0, 15),     # + 1 minute of code: rounded up to the next 5
    (1000, 150, 10, 15),   # 5 + 5 + 5
])
def test_minutes_follow_the_stated_rates(words, code, figures, minutes):
    cells = [new_markdown_cell(" ".join(["word"] * words))]
    cells.append(new_code_cell("\n".join(f"x{i} = {i}" for i in range(code)), outputs=[
        new_output("display_data", data={"image/png": "iVBORw0KGgo="})
        for _ in range(figures)]))
    assert rt.reading_minutes(_nb(*cells)) == minutes


def test_the_check_names_a_chapter_with_another_time(tmp_path):
    (tmp_path / "book").mkdir()
    path = tmp_path / "book" / "01_x.ipynb"
    nbformat.write(new_notebook(cells=[new_markdown_cell(
        "# X\n\n**Time**: about 45 minutes to read.\n\nShort.")]), path)
    assert rt.problems(tmp_path) == ["01_x.ipynb: states 45 minutes to read, the rule gives 5"]
    assert rt.write(tmp_path) == [path]
    assert rt.problems(tmp_path) == []
