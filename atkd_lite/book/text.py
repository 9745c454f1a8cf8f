"""Sentences filled from results: myst-nb's ``glue`` where the book is built, a no-op elsewhere.

Every sentence of the book that states a measured result takes its numbers from the
results (the committed ones, or the chapter's live run), never from the author's typing.
:func:`glue` records a value under a name for the book build, which shows it wherever a
markdown cell writes ``{glue:text}`name``` (numbers; a format may follow, ``name:.1f``)
or ``{glue:md}`name``` (text). Outside a book build (Colab, a plain Jupyter) myst-nb may
be missing: then :func:`glue` does nothing, and the printed outputs carry the same
numbers.

Examples::

    >>> from atkd_lite.book.text import glue
    >>> glue("answer", 42)   # shows nothing: the value appears where the text refers to it
"""

from __future__ import annotations

__all__ = ["glue"]


def glue(name: str, value, text: bool | None = None) -> None:
    """Record ``value`` under ``name`` for the book's ``{glue:...}`` roles.

    Args:
        name (str): the key the markdown refers to.
        value: a number (use ``{glue:text}`name:.1f```) or a string (``{glue:md}`name```,
            shown without quotes).
        text (bool, optional): force a string to be glued as markdown text (default: yes
            for strings).
    """
    try:
        from myst_nb import glue as myst_glue
    except ImportError:  # not building the book (e.g. on Colab): nothing to record
        return
    if isinstance(value, str) if text is None else text:
        from IPython.display import Markdown

        myst_glue(name, Markdown(value), display=False)
    else:
        myst_glue(name, value, display=False)
