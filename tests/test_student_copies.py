"""Student copies of the notebooks: solutions become stubs, and the copies run up to them.

``tools/make_student_copies.py`` turns each chapter into a course assignment. The unit
tests check the transformation on small notebooks written here; the committed copies in
``book/student/`` (what the book's Colab, Binder and download links open) must equal a
fresh copy of each chapter; the execution test builds the student copy of every
``book/*.ipynb`` and runs it in a real kernel (CPU profile) up to the first unsolved
exercise: that stop must be a ``NotImplementedError`` raised by an exercise stub,
anything else is a bug the student would meet before the exercise.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "make_student_copies.py"
BOOK_NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))
STUDENT_DIR = ROOT / "book" / "student"


def _load_tool():
    spec = importlib.util.spec_from_file_location("make_student_copies", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


msc = _load_tool()

# --------------------------------------------------------------- a small exercise notebook

ANSWER = "    return n_in * n_out + n_out"
EXERCISE_MD = """:::{exercise}
:label: t-dense

Write `dense(n_in, n_out)`.
:::"""


def _solution_cell(source: str) -> nbformat.NotebookNode:
    return new_code_cell(source, metadata={"tags": ["solution"]})


def _exercise_notebook() -> nbformat.NotebookNode:
    printed = new_code_cell("print(1 + 1)", execution_count=3, metadata={"tags": ["keep"]},
                            outputs=[new_output("stream", name="stdout", text="2\n")])
    return new_notebook(cells=[
        new_markdown_cell("# A chapter\n\nSome text with $x^2$."),
        printed,
        new_markdown_cell(EXERCISE_MD),
        new_markdown_cell(":::{solution-start} t-dense\n:class: dropdown\n:::"),
        _solution_cell("def dense(n_in, n_out):\n    ### BEGIN SOLUTION\n"
                       f"{ANSWER}\n    ### END SOLUTION"),
        new_markdown_cell("The bias adds one parameter per unit."),  # inside the gate
        new_markdown_cell(":::{solution-end}\n:::"),
        new_code_cell("check(dense)"),
        new_markdown_cell("## After the exercise"),
    ])


def _all_source(nb) -> str:
    return "\n".join(cell.source for cell in nb.cells)


def _exec_cell(source: str) -> dict:
    namespace: dict = {}
    exec(compile(source, "<student cell>", "exec"), namespace)
    return namespace


# ------------------------------------------------------------------------ transformation


def test_solution_is_replaced_by_a_stub_that_keeps_the_signature():
    original = _exercise_notebook()
    student = msc.make_student_copy(original)

    assert ANSWER.strip() not in _all_source(student)
    stub = next(c for c in student.cells if "raise NotImplementedError" in c.source)
    assert stub.source.splitlines()[0] == "def dense(n_in, n_out):"
    assert "BEGIN SOLUTION" not in stub.source and "END SOLUTION" not in stub.source
    assert "solution" not in stub.metadata["tags"]

    # the stub defines the same function, which raises when called
    solved = _exec_cell(original.cells[4].source)["dense"]
    unsolved = _exec_cell(stub.source)["dense"]
    assert inspect.signature(unsolved) == inspect.signature(solved)
    assert solved(3, 4) == 16  # 3·4 weights + 4 biases, by hand
    with pytest.raises(NotImplementedError, match=r"t-dense .*write your solution here"):
        unsolved(3, 4)


def test_solution_markdown_is_removed_and_everything_else_is_untouched():
    original = _exercise_notebook()
    student = msc.make_student_copy(original)
    text = _all_source(student)
    assert "solution-start" not in text and "solution-end" not in text
    assert "The bias adds one parameter" not in text  # explanation inside the gate

    kept = [original.cells[i] for i in (0, 1, 2, 7, 8)]  # all but the solution's cells
    rest = [c for c in student.cells if "raise NotImplementedError" not in c.source]
    assert [c.source for c in rest] == [c.source for c in kept]
    assert [c.cell_type for c in rest] == [c.cell_type for c in kept]
    assert rest[1].metadata == {"tags": ["keep"]}
    assert EXERCISE_MD in text  # the exercise itself stays


def test_outputs_are_cleared_and_the_input_notebook_is_not_modified():
    original = _exercise_notebook()
    original.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {}}
    before = nbformat.writes(original)
    student = msc.make_student_copy(original)
    assert nbformat.writes(original) == before
    for cell in student.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    assert "widgets" not in student.metadata  # no state of widgets that are not there
    nbformat.validate(student)


def test_book_figures_travel_with_the_copy_as_attachments(tmp_path):
    """On Colab the chapter's folder is not there: the copy carries its diagrams."""
    figures = tmp_path / "figures"
    figures.mkdir()
    svg = (ROOT / "book" / "figures" / "kd_pipeline.svg").read_text()
    (figures / "kd_pipeline.svg").write_text(svg)
    md = ("Before.\n\n![The KD pipeline](figures/kd_pipeline.svg)\n\n"
          "![a logo](https://example.org/logo.png) and ![same](figures/kd_pipeline.svg)")
    nb = new_notebook(cells=[new_markdown_cell(md)])
    cell = msc.make_student_copy(nb, source_dir=tmp_path).cells[0]
    assert cell.source.count("](attachment:kd_pipeline.svg)") == 2
    assert "](https://example.org/logo.png)" in cell.source  # remote images stay
    assert cell.attachments == {"kd_pipeline.svg": {"image/svg+xml": svg}}
    nbformat.validate(msc.make_student_copy(nb, source_dir=tmp_path))
    assert msc.make_student_copy(nb).cells[0].source == md  # no folder: left alone

    missing = new_notebook(cells=[new_markdown_cell("![x](figures/nope.svg)")])
    with pytest.raises(msc.StudentCopyError, match="cell 0: image 'figures/nope.svg' not found"):
        msc.make_student_copy(missing, source_dir=tmp_path)


# ------------------------------------------------------- the committed copies, in sync


def test_committed_student_copies_equal_fresh_copies_of_the_chapters():
    """book/student/ is what every launch link opens: it must be the chapters of now."""
    stale = msc.stale_copies(BOOK_NOTEBOOKS, STUDENT_DIR)
    extra = sorted({p.name for p in STUDENT_DIR.glob("*.ipynb")}
                   - {p.name for p in BOOK_NOTEBOOKS})
    assert not stale and not extra, (
        "book/student/ is out of date (run python tools/make_student_copies.py and commit "
        f"book/student/): {stale}; copies without a chapter: {extra}")


def test_a_committed_copy_hides_the_answers_of_its_chapter():
    """Read straight from the files, not through the tool: the answers are not there."""
    for path in BOOK_NOTEBOOKS:
        copy = nbformat.read(STUDENT_DIR / path.name, as_version=4)
        text = _all_source(copy)
        for block in _solution_blocks(nbformat.read(path, as_version=4)):
            assert block not in text, f"book/student/{path.name} shows an answer"
        assert all(c.get("outputs", []) == [] for c in copy.cells if c.cell_type == "code")


def test_book_build_warns_about_a_stale_copy(tmp_path, monkeypatch):
    """tools/book_extension.py makes a stale copy a build warning (so -W fails)."""
    import types

    spec = importlib.util.spec_from_file_location("book_extension",
                                                  ROOT / "tools" / "book_extension.py")
    ext = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ext)
    monkeypatch.setattr(ext, "_tools", lambda: msc)
    warned = []
    monkeypatch.setattr(ext, "LOGGER", types.SimpleNamespace(
        warning=lambda message, **kw: warned.append(message)))
    (tmp_path / "book" / "student").mkdir(parents=True)
    nbformat.write(_exercise_notebook(), tmp_path / "book" / "ch.ipynb")
    app = types.SimpleNamespace(srcdir=str(tmp_path))
    env = types.SimpleNamespace(found_docs={"book/ch", "book/intro"})
    ext.check_student_copies(app, env, [])
    assert len(warned) == 1 and "ch.ipynb: missing" in warned[0]
    msc.write_student_copies([tmp_path / "book" / "ch.ipynb"], tmp_path / "book" / "student")
    warned.clear()
    ext.check_student_copies(app, env, [])
    assert warned == []


def test_check_mode_reports_a_stale_copy(tmp_path, capsys):
    chapter = tmp_path / "ch.ipynb"
    nbformat.write(_exercise_notebook(), chapter)
    out = tmp_path / "student"
    assert msc.main(["--check", "-o", str(out), str(chapter)]) == 1  # missing
    assert "missing" in capsys.readouterr().err
    assert msc.main(["-o", str(out), str(chapter)]) == 0
    assert msc.main(["--check", "-o", str(out), str(chapter)]) == 0
    nb = _exercise_notebook()
    nb.cells[0].source += "\n\nA new sentence."
    nbformat.write(nb, chapter)
    assert msc.main(["--check", "-o", str(out), str(chapter)]) == 1
    assert "out of date" in capsys.readouterr().err


def test_top_level_solution_block_raises_when_the_cell_runs():
    nb = new_notebook(cells=[
        new_markdown_cell(":::{exercise}\n:label: t-kernel\n\nDesign `kernel`.\n:::"),
        _solution_cell("### BEGIN SOLUTION\nkernel = [[1, 0, -1]] * 3\n### END SOLUTION"),
    ])
    stub = msc.make_student_copy(nb).cells[1].source
    assert "kernel = " not in stub
    with pytest.raises(NotImplementedError, match="t-kernel"):
        _exec_cell(stub)


def test_several_blocks_in_one_cell_keep_the_code_between_them():
    source = ("import math\n### BEGIN SOLUTION\na = 1\n### END SOLUTION\nb = 2\n"
              "def f():\n    ### BEGIN SOLUTION\n    return a\n    ### END SOLUTION\n")
    stubbed = msc.stub_solution(source, "t-two")
    assert stubbed.count("raise NotImplementedError") == 2
    assert "import math" in stubbed and "b = 2" in stubbed and "def f():" in stubbed
    assert "a = 1" not in stubbed and "return a" not in stubbed


@pytest.mark.parametrize("fence_open, fence_close", [(":::", ":::"), ("```", "```"),
                                                      ("::::", "::::")])
def test_plain_solution_directive_is_removed_with_its_content(fence_open, fence_close):
    md = (f"Before.\n\n{fence_open}{{solution}} t-x\n:class: dropdown\n\n"
          f"The answer is 42.\n```python\nprint(42)\n```\n{fence_close}\n\nAfter.")
    if fence_open == "```":  # a backtick directive cannot nest a shorter backtick fence
        md = md.replace("```python\nprint(42)\n```\n", "    print(42)\n")
    nb = new_notebook(cells=[new_markdown_cell(md)])
    text = msc.make_student_copy(nb).cells[0].source
    assert "42" not in text and "solution" not in text
    assert text.startswith("Before.") and text.endswith("After.")


def test_markdown_cell_tagged_solution_is_removed():
    nb = new_notebook(cells=[new_markdown_cell("Question?"),
                             new_markdown_cell("The answer: 42.", metadata={"tags": ["solution"]})])
    assert [c.source for c in msc.make_student_copy(nb).cells] == ["Question?"]


def test_other_directives_and_normal_cells_are_left_byte_for_byte():
    md = ":::{note}\nA note, not a solution.\n:::\n\n```{math}\nx^2\n```\n"
    code = "x = 1  # a comment: ### not a marker\n"
    nb = new_notebook(cells=[new_markdown_cell(md), new_code_cell(code)])
    student = msc.make_student_copy(nb)
    assert [c.source for c in student.cells] == [md, code]


@pytest.mark.parametrize("source, message", [
    ("def f():\n    return 1", "no '### BEGIN SOLUTION'"),
    ("### BEGIN SOLUTION\nx = 1", "without a matching"),
    ("x = 1\n### END SOLUTION", "without a '### BEGIN SOLUTION' before it"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n### END SOLUTION",
     "inside another solution block"),
])
def test_badly_marked_solution_cell_is_a_clear_error(source, message):
    nb = new_notebook(cells=[new_markdown_cell("# T"), _solution_cell(source)])
    with pytest.raises(msc.StudentCopyError, match=re.escape(message)) as err:
        msc.make_student_copy(nb)
    assert "cell 1" in str(err.value)


def test_markers_without_the_solution_tag_are_an_error():
    nb = new_notebook(cells=[new_code_cell("### BEGIN SOLUTION\nx = 1\n### END SOLUTION")])
    with pytest.raises(msc.StudentCopyError, match="no 'solution' tag"):
        msc.make_student_copy(nb)


def test_unclosed_solution_gate_is_an_error():
    nb = new_notebook(cells=[new_markdown_cell(":::{solution-start} t\n:::"),
                             new_markdown_cell("answer")])
    with pytest.raises(msc.StudentCopyError, match="no {solution-end}"):
        msc.make_student_copy(nb)


def test_command_line_writes_copies_and_reports_errors(tmp_path):
    good, bad = tmp_path / "good.ipynb", tmp_path / "bad.ipynb"
    nbformat.write(_exercise_notebook(), good)
    nbformat.write(new_notebook(cells=[_solution_cell("x = 1")]), bad)
    out = tmp_path / "student"

    help_text = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True,
                               text=True, check=True).stdout
    assert "NotImplementedError" in help_text and "--output" in help_text

    assert msc.main(["-o", str(out), str(good)]) == 0
    written = nbformat.read(out / "good.ipynb", as_version=4)
    assert ANSWER.strip() not in _all_source(written)
    assert msc.main(["-o", str(out), str(bad)]) == 1


def _solution_blocks(nb) -> list[str]:
    """The answers of a notebook, read straight from its markers (not via the tool)."""
    blocks = []
    for cell in nb.cells:
        if cell.cell_type == "code" and "solution" in cell.metadata.get("tags", []):
            blocks += re.findall(r"### BEGIN SOLUTION\n(.*?)\n[ \t]*### END SOLUTION",
                                 cell.source, flags=re.DOTALL)
    return [b for b in blocks if b.strip()]


@pytest.mark.parametrize("path", BOOK_NOTEBOOKS, ids=lambda p: p.name)
def test_book_notebook_student_copy_hides_every_answer(path):
    original = nbformat.read(path, as_version=4)
    student = msc.make_student_copy(original)
    text = _all_source(student)
    for block in _solution_blocks(original):
        assert block not in text
    n_solutions = sum("solution" in c.metadata.get("tags", []) for c in original.cells)
    assert text.count("raise NotImplementedError") >= n_solutions
    assert "{solution" not in text


# ---------------------------------------------------------------------------- execution


def _error_cell(nb) -> tuple[int, nbformat.NotebookNode] | tuple[None, None]:
    for index, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return index, out
    return None, None


def _plain(traceback: list[str]) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(traceback))


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One cache for all notebooks of this module, so a teacher is trained at most once."""
    if "ATKD_LITE_TEST_CACHE" in os.environ:
        return os.environ.get("ATKD_LITE_CACHE")
    return str(tmp_path_factory.mktemp("student-cache"))


@pytest.mark.slow
@pytest.mark.parametrize("path", BOOK_NOTEBOOKS, ids=lambda p: p.name)
def test_student_copy_runs_up_to_the_first_exercise(path, tmp_path, monkeypatch, shared_cache):
    """The student copy runs in a fresh kernel until an exercise stub raises.

    It runs from an empty folder outside the repository, as on Colab. Only a
    NotImplementedError whose message comes from a stub may stop it; a notebook without
    exercises must run to the end.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    monkeypatch.setenv("ATKD_LITE_PROFILE", "cpu")
    if shared_cache:
        monkeypatch.setenv("ATKD_LITE_CACHE", shared_cache)
    [student_path] = msc.write_student_copies([path], tmp_path / "student")
    nb = nbformat.read(student_path, as_version=4)
    has_exercises = any(msc.EXERCISE_TAG in c.metadata.get("tags", []) for c in nb.cells)
    workdir = tmp_path / "run"
    workdir.mkdir()

    client = NotebookClient(nb, kernel_name="python3", timeout=600,
                            resources={"metadata": {"path": str(workdir)}})
    error = None
    try:
        client.execute()
    except CellExecutionError as err:
        error = err  # judged below, outside the handler, so the report is not chained
    if error is None:
        if has_exercises:
            pytest.fail(f"{path.name} (student copy) ran to the end although it has "
                        "exercises: no cell calls the student's code (each exercise needs a "
                        "check that uses the answer)", pytrace=False)
        return
    index, out = _error_cell(nb)
    where = f"{path.name} (student copy), cell {index}"
    head = "\n".join(nb.cells[index].source.splitlines()[:3]) if index is not None else "?"
    trace = _plain(out["traceback"]) if out else str(error)
    from_stub = error.ename == "NotImplementedError" and msc.STUB_SUFFIX in error.evalue
    if not from_stub:
        pytest.fail(f"{where} failed with {error.ename}: {error.evalue}\n"
                    "Only a NotImplementedError from an exercise stub may stop a student copy."
                    f"\n--- cell source ---\n{head}\n--- traceback ---\n{trace}", pytrace=False)
    first_exercise = next(i for i, c in enumerate(nb.cells)
                          if msc.EXERCISE_TAG in c.metadata.get("tags", []))
    assert index >= first_exercise, f"{where}: stopped before the first exercise"
