"""Figures reach the reader: every chapter's figures are committed as images.

A matplotlib figure that a notebook kernel cannot draw is recorded as the text
``<Figure size 1200x190 with 10 Axes>`` alone, and the book then shows that text where
the figure should be. It happens when the kernel runs a non-inline backend: a shell with
``MPLBACKEND=Agg`` (as this test suite and CI set it) passes it to every kernel it starts.
:func:`atkd_lite.book.viz.show_figures_inline` (run when a chapter imports ``viz``) makes
the kernel draw figures whatever its backend. These tests check

- the committed chapters: no figure output without its image, at least three images in
  each chapter that teaches with figures, and code lines that fit the book's column;
- that executing a notebook under ``MPLBACKEND=Agg`` records images, in each way the
  chapters are executed: ``jupyter execute`` (the README's build command), nbclient (the
  student-copy test and the tools) and nbval (the test suite);
- that the checks themselves fail on a notebook that has the defect.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
#: chapters that teach with figures: each shows at least this many
MIN_IMAGES = 3
FIGURE_CHAPTERS = [p for p in CHAPTERS if not p.name.startswith("10_")]
IMAGE_MIMES = ("image/png", "image/svg+xml", "image/jpeg")
#: the widest code line the book's column shows without a sideways scroll bar
CODE_WIDTH = 88
FIGURE_TEXT = re.compile(r"^<(?:matplotlib\.figure\.)?Figure size [\d.]+x[\d.]+ with \d+ Axes>")


def image_outputs(nb) -> int:
    """How many outputs of the notebook's code cells are pictures."""
    return sum(1 for cell in nb.cells if cell.cell_type == "code"
               for out in cell.get("outputs", [])
               if any(m in out.get("data", {}) for m in IMAGE_MIMES))


def figures_without_image(nb) -> list[str]:
    """The start of each code cell with a figure output that is only ``<Figure size …>``."""
    found = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            text = "".join(data.get("text/plain", ""))
            if FIGURE_TEXT.match(text) and not any(m in data for m in IMAGE_MIMES):
                found.append(cell.source.strip().splitlines()[0][:70] if cell.source.strip()
                             else "(empty cell)")
    return found


def long_code_lines(nb, width: int = CODE_WIDTH) -> list[str]:
    """Code lines wider than the book's column, as ``cell N: line``."""
    return [f"cell {i}: {line}" for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
            for line in cell.source.splitlines() if len(line) > width]


# ----------------------------------------------------------------- committed chapters


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_no_figure_is_committed_without_its_image(path):
    missing = figures_without_image(nbformat.read(path, as_version=4))
    assert not missing, (
        f"{path.name}: {len(missing)} figure outputs are only the text '<Figure size …>' "
        f"(executed by a kernel that could not draw them): {missing}. Re-execute the "
        "chapter; viz.show_figures_inline() makes the kernel draw figures under any backend")


@pytest.mark.parametrize("path", FIGURE_CHAPTERS, ids=lambda p: p.stem)
def test_every_chapter_shows_its_figures(path):
    n = image_outputs(nbformat.read(path, as_version=4))
    assert n >= MIN_IMAGES, f"{path.name} commits {n} images, expected at least {MIN_IMAGES}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_code_lines_fit_the_book_column(path):
    long = long_code_lines(nbformat.read(path, as_version=4))
    assert not long, (f"{path.name}: {len(long)} code lines wider than {CODE_WIDTH} "
                      "characters (the reader would scroll sideways):\n" + "\n".join(long))


def test_the_checks_find_a_figure_without_image_and_a_long_line():
    as_text = new_output("execute_result", execution_count=1,
                         data={"text/plain": "<Figure size 1200x190 with 10 Axes>"})
    as_image = new_output("execute_result", execution_count=2,
                          data={"text/plain": "<Figure size 640x480 with 1 Axes>",
                                "image/png": "iVBORw0KGgo="})
    nb = new_notebook(cells=[new_code_cell("viz.image_grid(x)", outputs=[as_text]),
                             new_code_cell("viz.bar_chart(v)", outputs=[as_image]),
                             new_code_cell("x = 1  # " + "a" * 90)])
    assert figures_without_image(nb) == ["viz.image_grid(x)"]
    assert image_outputs(nb) == 1
    assert long_code_lines(nb) == ["cell 2: x = 1  # " + "a" * 90]


# ------------------------------------------------- executing under MPLBACKEND=Agg

# A chapter-like notebook: a figure returned by a book function and one built directly.
PROBE_CELLS = [
    "import matplotlib\nprint(matplotlib.get_backend())",
    "from atkd_lite.book import viz\nviz.bar_chart({'a': 1.0, 'b': 2.0}, ylabel='value')",
    "import matplotlib.figure\nfig = matplotlib.figure.Figure(figsize=(2, 2))\n"
    "fig.subplots().plot([0, 1])\nfig",
]


def _probe_notebook(path: Path) -> Path:
    nb = new_notebook(cells=[new_code_cell(src) for src in PROBE_CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)
    return path


def _agg_env() -> dict:
    env = dict(os.environ, MPLBACKEND="Agg")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _assert_figures_drawn(nb):
    backend = "".join(nb.cells[0].outputs[0].get("text", ""))
    assert backend.strip().lower() == "agg", f"the kernel ran {backend!r}, not Agg"
    assert figures_without_image(nb) == []
    assert image_outputs(nb) == 2, "both figures should be recorded as images"


@pytest.mark.slow
def test_jupyter_execute_under_agg_records_images(tmp_path):
    """The README's build command executes chapters with ``jupyter execute --inplace``."""
    path = _probe_notebook(tmp_path / "probe.ipynb")
    jupyter = Path(sys.executable).with_name("jupyter")
    proc = subprocess.run([str(jupyter), "execute", "--inplace", str(path)],
                          env=_agg_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    _assert_figures_drawn(nbformat.read(path, as_version=4))


@pytest.mark.slow
def test_nbclient_under_agg_records_images(tmp_path, monkeypatch):
    """Scripts and tests execute notebooks with nbclient, in this process's environment."""
    from nbclient import NotebookClient

    for key, value in _agg_env().items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(_probe_notebook(tmp_path / "probe.ipynb"), as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3").execute()
    _assert_figures_drawn(nb)


NBVAL_PROBE = """\
import matplotlib
from IPython import get_ipython
from matplotlib.figure import Figure
from atkd_lite.book import viz
assert matplotlib.get_backend().lower() == "agg", matplotlib.get_backend()
assert Figure in get_ipython().display_formatter.formatters["image/png"], "no image formatter"
print("figures drawn")
"""


@pytest.mark.slow
def test_nbval_kernel_under_agg_draws_figures(tmp_path):
    """nbval (the test suite's check of every chapter) runs kernels under Agg too."""
    nb = new_notebook(cells=[new_code_cell(NBVAL_PROBE)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, tmp_path / "probe.ipynb")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--nbval-lax", "--rootdir", str(tmp_path), "-c", os.devnull,
                           str(tmp_path / "probe.ipynb")],
                          env=_agg_env(), capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "1 passed" in proc.stdout, proc.stdout[-2000:]


def test_show_figures_inline_registers_a_png_formatter_once():
    """Against IPython's own display machinery: a Figure becomes PNG bytes, once."""
    from IPython.core.interactiveshell import InteractiveShell
    from matplotlib.figure import Figure

    from atkd_lite.book.viz import show_figures_inline

    shell = InteractiveShell.instance()
    png = shell.display_formatter.formatters["image/png"]
    png.type_printers.pop(Figure, None)
    try:
        assert show_figures_inline(shell) is True
        assert show_figures_inline(shell) is False  # already there: left as it is
        fig = Figure(figsize=(1, 1))
        fig.subplots().plot([0, 1])
        data, _ = shell.display_formatter.format(fig)
        assert data["image/png"][:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        png.type_printers.pop(Figure, None)
        InteractiveShell.clear_instance()


def test_show_figures_inline_leaves_a_users_svg_choice_alone():
    from IPython.core.interactiveshell import InteractiveShell
    from matplotlib.figure import Figure

    from atkd_lite.book.viz import show_figures_inline

    shell = InteractiveShell.instance()
    formatters = shell.display_formatter.formatters
    formatters["image/png"].type_printers.pop(Figure, None)
    formatters["image/svg+xml"].for_type(Figure, lambda fig: "<svg/>")
    try:
        assert show_figures_inline(shell) is False
        assert Figure not in formatters["image/png"]
    finally:
        formatters["image/svg+xml"].type_printers.pop(Figure, None)
        InteractiveShell.clear_instance()
