"""Sphinx extension of the book: a static book without dead widgets, and launch links to
the student copies.

Loaded by ``_config.yml`` (``sphinx.local_extensions``); it does three things.

1. **Static outputs.** The chapters are read through :func:`read_static_notebook`
   (``nb_custom_formats``): an output that holds a live widget
   (``application/vnd.jupyter.widget-view+json``) keeps only its static form (the
   explorers of :mod:`atkd_lite.book.widgets` carry their static figure as ``image/png``),
   an output that is nothing but a widget is dropped, and the saved widget state goes.
   A reader without a kernel sees the static figure, never controls that do nothing.
2. **Student copies behind every launch link.** On each chapter page the Colab and
   Binder entries of the launch (rocket) menu open ``book/student/<chapter>.ipynb``
   (solutions replaced by stubs, see ``tools/make_student_copies.py``) at the release
   tag ``v<package version>``, the same ref that the chapter's install cell installs;
   the ``.ipynb`` download is the student copy, and a second entry downloads the
   instructor version with the solutions.
3. **In sync.** A chapter whose committed student copy is missing or out of date is a
   build warning (so ``jupyter-book build -W`` fails): run
   ``python tools/make_student_copies.py`` and commit ``book/student/``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
from sphinx.util import logging

LOGGER = logging.getLogger(__name__)

WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"
#: the folder of the student copies, relative to the repository root
STUDENT_DIR = "book/student"


# ---------------------------------------------------------------------- 1. static outputs


def static_outputs(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Remove live widgets from a notebook (in place): what a page without a kernel shows.

    An output with a widget view keeps its other forms (an explorer's ``image/png``); an
    output left with nothing but ``text/plain`` (a widget's repr, e.g. ``HBox(...)``) is
    dropped; the notebook's saved widget state is removed.

    Returns:
        the same notebook.
    """
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            data = out.get("data")
            if data and WIDGET_VIEW_MIME in data:
                data.pop(WIDGET_VIEW_MIME)
                if set(data) <= {"text/plain"}:
                    continue
            kept.append(out)
        cell["outputs"] = kept
    nb.metadata.pop("widgets", None)
    return nb


def read_static_notebook(text: str) -> nbformat.NotebookNode:
    """myst-nb's notebook reader for the book: :func:`static_outputs` of the notebook."""
    return static_outputs(nbformat.reads(text, as_version=4))


# --------------------------------------------------------------- 2. student launch links


def _tools():
    import make_student_copies  # next to this file; tools/ is on sys.path for the build

    return make_student_copies


def launch_ref() -> str:
    """The git ref that launch links open: the release tag ``v<package version>``."""
    import atkd_lite

    return f"v{atkd_lite.__version__}"


def _student_rel(docname: str) -> str:
    return f"{STUDENT_DIR}/{Path(docname).name}.ipynb"


def _chapter_notebook(app, docname: str) -> Path | None:
    """The chapter notebook of a page (book/<name>.ipynb), or None for other pages."""
    path = Path(app.srcdir) / f"{docname}.ipynb"
    if docname.startswith("book/") and docname.count("/") == 1 and path.is_file():
        return path
    return None


def _rewrite(url: str, old: str, new: str, what: str, docname: str) -> str:
    if url.count(old) != 1:
        LOGGER.warning(f"{docname}: the {what} link {url!r} does not contain {old!r} once; "
                       "cannot point it at the student copy (see tools/book_extension.py)",
                       type="atkd", subtype="launch")
        return url
    return url.replace(old, new)


def point_launch_buttons_at_student_copies(app, pagename, templatename, context, doctree):
    """``html-page-context``: Colab, Binder and the download open the student copy."""
    if _chapter_notebook(app, pagename) is None:
        return
    theme = app.config.html_theme_options
    branch = theme.get("repository_branch") or "master"
    ui = {"classic": "tree", "jupyterlab": "lab/tree"}[
        theme.get("launch_buttons", {}).get("notebook_interface", "classic")]
    rel = f"{pagename}.ipynb"
    student = _student_rel(pagename)
    ref = launch_ref()
    for group in context.get("header_buttons", []):
        for button in group.get("buttons", []):
            url = button.get("url", "")
            if group.get("label") == "launch-buttons" and button.get("text") == "Colab":
                button["url"] = _rewrite(url, f"/blob/{branch}/{rel}", f"/blob/{ref}/{student}",
                                         "Colab", pagename)
                button["tooltip"] = "Open the exercises (no solutions) on Colab"
            elif group.get("label") == "launch-buttons" and button.get("text") == "Binder":
                button["url"] = _rewrite(url, f"/{branch}?urlpath={ui}/{rel}",
                                         f"/{ref}?urlpath={ui}/{student}", "Binder", pagename)
                button["tooltip"] = "Open the exercises (no solutions) on Binder"
        if group.get("label") == "download-buttons":
            _student_download(app, group, pagename, context)


def _student_download(app, group: dict, pagename: str, context: dict) -> None:
    """The ``.ipynb`` entry downloads the student copy; one more entry, the instructor's."""
    source = Path(app.srcdir) / _student_rel(pagename)
    target = Path(app.outdir) / "_sources" / _student_rel(pagename)
    if not source.is_file():
        return  # reported by check_student_copies
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    buttons = group["buttons"]
    for i, button in enumerate(list(buttons)):
        if button.get("label") == "download-source-button" and button.get("text") == ".ipynb":
            instructor = dict(button, text=".ipynb (with solutions)",
                              tooltip="Download the instructor version, with the solutions",
                              label="download-instructor-button")
            button["url"] = f"{context['pathto']('_sources', 1)}/{_student_rel(pagename)}"
            button["tooltip"] = "Download the notebook: exercises without solutions"
            buttons.insert(i + 1, instructor)
            break


# ------------------------------------------------------------------------- 3. in sync


def check_student_copies(app, env, docnames) -> None:
    """``env-before-read-docs``: warn about chapters whose student copy is stale."""
    chapters = [p for d in sorted(env.found_docs) if (p := _chapter_notebook(app, d))]
    try:
        stale = _tools().stale_copies(chapters, Path(app.srcdir) / STUDENT_DIR)
    except Exception as err:  # a chapter whose exercises are marked wrongly
        LOGGER.warning(f"cannot make the student copies: {err}", type="atkd",
                       subtype="student")
        return
    for line in stale:
        LOGGER.warning(f"student copy {line}: run python tools/make_student_copies.py and "
                       "commit book/student/", type="atkd", subtype="student")


def setup(app):
    app.connect("env-before-read-docs", check_student_copies)
    # after sphinx-book-theme builds the buttons (priority 501)
    app.connect("html-page-context", point_launch_buttons_at_student_copies, priority=600)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
