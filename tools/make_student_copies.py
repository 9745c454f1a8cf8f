#!/usr/bin/env python
"""Make the student versions of the book's notebooks: exercises without their solutions.

A chapter marks each exercise's answer as described in ``book/CONVENTIONS.md``: a code
cell tagged ``solution`` whose answer lies between the lines ``### BEGIN SOLUTION`` and
``### END SOLUTION``, placed between the markdown cells ``{solution-start}`` and
``{solution-end}`` of sphinx-exercise. The student version of a notebook

- replaces every such block with a stub that raises ``NotImplementedError`` (the lines
  outside the block, e.g. the ``def`` line, stay, so the student knows what to write);
- removes the solution markdown: the ``{solution-start}`` / ``{solution-end}`` directives,
  any markdown between them, every ``{solution}`` directive and markdown cells tagged
  ``solution``;
- clears all outputs and execution counts (the committed outputs show the answers) and
  the saved widget state;
- carries the book's own images along: a markdown image ``![...](figures/x.svg)`` whose
  file lies next to the chapter becomes a cell attachment (``attachment:x.svg``), so the
  copy shows it on Colab or Binder, where the chapter's folder is not at hand.

Every other cell is left exactly as it is. A code cell tagged ``solution`` without the
markers, or with markers but no tag, is an error: the script never guesses what to hide.

The student copies of the chapters are committed in ``book/student/``: the book's
Colab, Binder and download links open them (``tools/book_extension.py``), and
``tests/test_student_copies.py`` fails when one is out of date. After editing a chapter,
run this script (no arguments) and commit what it writes.

Usage::

    python tools/make_student_copies.py                  # book/*.ipynb -> book/student/
    python tools/make_student_copies.py --check          # exit 1 if book/student/ is stale
    python tools/make_student_copies.py -o course/ book/01_cnn_basics.ipynb

From Python::

    import nbformat
    from make_student_copies import make_student_copy   # with tools/ on sys.path
    student = make_student_copy(nbformat.read("book/01_cnn_basics.ipynb", 4))
"""

from __future__ import annotations

import argparse
import base64
import copy
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = ROOT / "book" / "student"

SOLUTION_TAG = "solution"
#: the tag that the stubbed cell gets instead of ``solution``
EXERCISE_TAG = "exercise"
BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
#: every stub's message ends with this, so a test can tell a stub's error from a bug
STUB_SUFFIX = "— write your solution here"

# A directive opens with ``` or ::: (three or more) followed by {name}; it closes with a line
# of the same character, at least as long, and nothing else (MyST's fence rules).
_FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|:{3,})\{(?P<name>[\w-]+)\}(?P<arg>.*)$")
_LABEL_OPTION = re.compile(r"^\s*:label:\s*(\S+)")
# a markdown image with a relative path: ![alt](path "title")
_IMAGE = re.compile(r"(!\[[^\]]*\]\()(?![a-z]+:)([^)\s]+)((?:\s+\"[^\"]*\")?\))")
_IMAGE_TYPES = {".svg": "image/svg+xml", ".png": "image/png", ".jpg": "image/jpeg",
                ".jpeg": "image/jpeg", ".gif": "image/gif"}


class StudentCopyError(ValueError):
    """A notebook's exercises are not marked as the conventions require."""


def _directive_blocks(lines: list[str], names: set[str]):
    """Yield ``(start, stop, name, argument)`` for each top-level directive named in names.

    ``lines[start:stop]`` is the whole directive, fences included. Directives with other
    names are skipped over whole, so a ``{solution}`` nested in them is not yielded.
    """
    i = 0
    while i < len(lines):
        m = _FENCE_OPEN.match(lines[i])
        if not m:
            i += 1
            continue
        char, width = m["fence"][0], len(m["fence"])
        close = re.compile(rf"^[ \t]*{re.escape(char)}{{{width},}}[ \t]*$")
        stop = next((k + 1 for k in range(i + 1, len(lines)) if close.match(lines[k])), None)
        if stop is None:  # unclosed: MyST runs it to the end of the cell
            stop = len(lines)
        if m["name"] in names:
            yield i, stop, m["name"], m["arg"].strip()
        i = stop


def _strip_solutions(source: str, in_gate: bool) -> tuple[str, bool, str | None]:
    """Remove the solution markdown from one markdown cell.

    Removes ``{solution}`` directives, the ``{solution-start}`` / ``{solution-end}``
    directives and every line between them (a gate may span several cells).

    Args:
        source (str): the cell's markdown.
        in_gate (bool): whether the cell starts inside a ``{solution-start}`` gate.

    Returns:
        (the remaining markdown, whether the cell ends inside a gate, the label of the
        last ``{solution-start}`` in the cell or None)
    """
    lines = source.splitlines()
    blocks = {start: (stop, name, arg) for start, stop, name, arg in
              _directive_blocks(lines, {"solution", "solution-start", "solution-end"})}
    if not blocks and not in_gate:
        return source, False, None  # untouched, byte for byte
    kept, label, i = [], None, 0
    while i < len(lines):
        if i in blocks:
            stop, name, arg = blocks[i]
            if name == "solution-start":
                in_gate, label = True, arg or label
            elif name == "solution-end":
                in_gate = False
            i = stop
            continue
        if not in_gate:
            kept.append(lines[i])
        i += 1
    return "\n".join(kept).strip("\n"), in_gate, label


def _exercise_label(source: str) -> str | None:
    """The ``:label:`` of an ``{exercise}`` directive in a markdown source, if any."""
    lines = source.splitlines()
    for start, stop, _, _ in _directive_blocks(lines, {"exercise", "exercise-start"}):
        for line in lines[start + 1:stop]:
            m = _LABEL_OPTION.match(line)
            if m:
                return m.group(1)
    return None


def stub_solution(source: str, exercise: str = "this exercise") -> str:
    """Replace each ``### BEGIN SOLUTION`` … ``### END SOLUTION`` block by a stub.

    The stub keeps the indentation of the ``### BEGIN SOLUTION`` line, so a block inside a
    function body becomes that function's body.

    Args:
        source (str): the code of a solution cell.
        exercise (str): the exercise's name for the stub's message (its label or function).

    Returns:
        str: the code with every solution block replaced by
        ``raise NotImplementedError("Exercise: <exercise> — write your solution here")``.

    Raises:
        StudentCopyError: the markers are missing, unbalanced or nested.

    Examples::

        >>> print(stub_solution("def f(x):\\n    ### BEGIN SOLUTION\\n    return x\\n"
        ...                     "    ### END SOLUTION", "ch1-f"))
        def f(x):
            raise NotImplementedError("Exercise: ch1-f — write your solution here")
    """
    out: list[str] = []
    inside = False
    blocks = 0
    for number, line in enumerate(source.splitlines(), start=1):
        marker = line.strip()
        if marker.startswith(BEGIN):
            if inside:
                raise StudentCopyError(f"line {number}: '{BEGIN}' inside another solution block "
                                       f"(close the first one with '{END}')")
            inside = True
            blocks += 1
            indent = line[: len(line) - len(line.lstrip())]
            message = f"Exercise: {exercise} {STUB_SUFFIX}"
            literal = f'"{message}"' if '"' not in message and "\\" not in message else repr(message)
            out.append(f"{indent}raise NotImplementedError({literal})")
        elif marker.startswith(END):
            if not inside:
                raise StudentCopyError(f"line {number}: '{END}' without a '{BEGIN}' before it")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise StudentCopyError(f"'{BEGIN}' without a matching '{END}'")
    if blocks == 0:
        raise StudentCopyError(f"no '{BEGIN}' / '{END}' lines: put the answer between them "
                               "(book/CONVENTIONS.md, section 5)")
    return "\n".join(out)


def attach_images(cell, source_dir: Path) -> None:
    """Make the relative images of a markdown cell its attachments (in place).

    Raises:
        StudentCopyError: an image file is missing or of an unknown type.
    """
    attachments = dict(cell.get("attachments", {}))

    def replace(match):
        rel = match.group(2)
        path = (Path(source_dir) / rel).resolve()
        mime = _IMAGE_TYPES.get(path.suffix.lower())
        if mime is None:
            raise StudentCopyError(f"image {rel!r}: not one of {sorted(_IMAGE_TYPES)}")
        if not path.is_file():
            raise StudentCopyError(f"image {rel!r} not found next to the notebook ({path})")
        data = path.read_bytes()
        attachments[path.name] = {mime: data.decode("utf-8") if mime == "image/svg+xml"
                                  else base64.b64encode(data).decode("ascii")}
        return f"{match.group(1)}attachment:{path.name}{match.group(3)}"

    cell.source = _IMAGE.sub(replace, cell.source)
    if attachments:
        cell["attachments"] = attachments


def _has_markers(source: str) -> bool:
    return any(line.strip().startswith((BEGIN, END)) for line in source.splitlines())


def _function_name(source: str) -> str | None:
    m = re.search(r"^\s*def\s+(\w+)\s*\(", source, flags=re.MULTILINE)
    return m.group(1) if m else None


def make_student_copy(nb: nbformat.NotebookNode,
                      source_dir: Path | None = None) -> nbformat.NotebookNode:
    """The student version of a notebook (the input is not modified).

    Args:
        nb (nbformat.NotebookNode): a notebook in format 4, e.g. from ``nbformat.read``.
        source_dir (path, optional): the notebook's folder; when given, the relative
            images of its markdown become cell attachments (see :func:`attach_images`).

    Returns:
        nbformat.NotebookNode: a copy with the solution blocks stubbed, the solution
        markdown removed, all outputs cleared and no saved widget state.

    Raises:
        StudentCopyError: a cell tagged ``solution`` has no solution markers, a code cell
            has markers but no ``solution`` tag, or the markers are unbalanced. The
            message names the cell.

    Examples::

        >>> import nbformat
        >>> nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        ...     "def f():\\n    ### BEGIN SOLUTION\\n    return 1\\n    ### END SOLUTION",
        ...     metadata={"tags": ["solution"]})])
        >>> print(make_student_copy(nb).cells[0].source)
        def f():
            raise NotImplementedError("Exercise: f — write your solution here")
    """
    nb = copy.deepcopy(nb)
    cells = []
    in_gate = False  # between {solution-start} and {solution-end}
    label = None  # label of the last exercise seen
    for index, cell in enumerate(nb.cells):
        where = f"cell {index}"
        tags = list(cell.get("metadata", {}).get("tags", []))
        if cell.cell_type == "markdown":
            if SOLUTION_TAG in tags:
                continue  # an explanation marked as solution
            label = _exercise_label(cell.source) or label
            text, in_gate, start_label = _strip_solutions(cell.source, in_gate)
            label = start_label or label
            if not text.strip():
                continue  # the whole cell was solution
            cell.source = text
            if source_dir is not None:
                try:
                    attach_images(cell, source_dir)
                except StudentCopyError as err:
                    raise StudentCopyError(f"{where}: {err}") from None
        elif cell.cell_type == "code":
            if SOLUTION_TAG in tags:
                try:
                    cell.source = stub_solution(cell.source,
                                                label or _function_name(cell.source)
                                                or "this exercise")
                except StudentCopyError as err:
                    first = (cell.source.strip().splitlines() or [""])[0]
                    raise StudentCopyError(
                        f"{where} (tagged '{SOLUTION_TAG}', starting {first!r}): {err}") from None
                cell.metadata["tags"] = [t for t in tags if t != SOLUTION_TAG] + [EXERCISE_TAG]
            elif _has_markers(cell.source):
                raise StudentCopyError(
                    f"{where}: has '{BEGIN}' / '{END}' lines but no '{SOLUTION_TAG}' tag; "
                    f"tag the cell '{SOLUTION_TAG}' (book/CONVENTIONS.md, section 5)")
            cell.outputs = []
            cell.execution_count = None
            cell.metadata.pop("execution", None)
        cells.append(cell)
    if in_gate:
        raise StudentCopyError("a {solution-start} has no {solution-end} after it")
    nb.cells = cells
    nb.metadata.pop("widgets", None)  # the state of widgets whose outputs are gone
    return nb


def notebooks(book_dir: Path = ROOT / "book") -> list[Path]:
    """The chapter notebooks: ``book/*.ipynb``, sorted by name."""
    return sorted(Path(book_dir).glob("*.ipynb"))


def student_copy_text(path) -> str:
    """The student version of the notebook at path, as the text written to disk.

    Raises:
        StudentCopyError: as :func:`make_student_copy`, with the path in the message.
    """
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    try:
        student = make_student_copy(nb, source_dir=path.parent)
    except StudentCopyError as err:
        raise StudentCopyError(f"{path}: {err}") from None
    return nbformat.writes(student) + "\n"


def write_student_copies(paths, output_dir=DEFAULT_OUTPUT) -> list[Path]:
    """Write the student version of each notebook into output_dir, under the same name.

    Args:
        paths (iterable of path): the notebooks.
        output_dir (path): created if needed; existing files of the same name are replaced.

    Returns:
        list[Path]: the files written, in the order of paths.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in paths:
        text = student_copy_text(path)
        target = output_dir / Path(path).name
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return written


def stale_copies(paths, output_dir=DEFAULT_OUTPUT) -> list[str]:
    """The student copies in output_dir that are missing or differ from a fresh copy.

    Returns:
        list[str]: one line per stale copy ("<copy>: missing" / "<copy>: out of date").
    """
    stale = []
    for path in paths:
        target = Path(output_dir) / Path(path).name
        if not target.exists():
            stale.append(f"{target}: missing")
        elif target.read_text(encoding="utf-8") != student_copy_text(path):
            stale.append(f"{target}: out of date")
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write student versions of the book's notebooks: the code between "
                    f"'{BEGIN}' and '{END}' in cells tagged '{SOLUTION_TAG}' becomes a stub "
                    "that raises NotImplementedError, solution markdown is removed and "
                    "outputs are cleared.")
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to convert (default: every book/*.ipynb)")
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT,
                        help=f"output folder (default: {DEFAULT_OUTPUT.relative_to(ROOT)}/)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a copy in the output folder is "
                             "missing or out of date")
    args = parser.parse_args(argv)
    paths = args.notebooks or notebooks()
    if not paths:
        parser.error("no notebooks given and none found in book/")
    try:
        if args.check:
            stale = stale_copies(paths, args.output)
            for line in stale:
                print(f"stale: {line}", file=sys.stderr)
            if stale:
                print("run: python tools/make_student_copies.py", file=sys.stderr)
            return 1 if stale else 0
        written = write_student_copies(paths, args.output)
    except (StudentCopyError, OSError, nbformat.reader.NotJSONError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for target in written:
        print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
