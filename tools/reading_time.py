#!/usr/bin/env python
"""The reading time each chapter states, derived from the chapter by one rule.

Every chapter's goals box says "**Time**: about N minutes to read". N is not guessed: it
is computed from what a reader meets on the page, with these rates:

- prose: the words of the markdown cells and of the text the code prints (outputs,
  tables), at 200 words a minute (a careful reading of technical text);
- code: the non-blank lines of the shown code cells, at 30 lines a minute (read, not
  typed);
- figures: half a minute each (look, and find what the caption points at);

rounded up to the next 5 minutes. Exercises are not included: solving them takes as
long as it takes.

Usage::

    python tools/reading_time.py            # write each chapter's stated time
    python tools/reading_time.py --check    # exit 1 where a chapter states another time

``tests/test_reading_time.py`` runs the check; run this after changing a chapter.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORDS_PER_MINUTE = 200
CODE_LINES_PER_MINUTE = 30
MINUTES_PER_FIGURE = 0.5
ROUND_TO = 5
#: the sentence of the goals box that states the time
STATED = re.compile(r"(\*\*Time\*\*: about )(\d+)( minutes to read)")
_IMAGES = ("image/png", "image/svg+xml", "image/jpeg")


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _words(text: str) -> int:
    return len(re.findall(r"[^\W_]+", text))


def measure(nb: dict) -> dict:
    """What a reader meets in a notebook (its JSON as a dict): words, code lines, figures."""
    words = code = figures = 0
    in_solution = False
    for cell in nb["cells"]:
        source = _text(cell["source"])
        tags = set(cell.get("metadata", {}).get("tags", []))
        # exercises and their folded solutions: solving takes as long as it takes
        if "{solution-start}" in source:
            in_solution = True
        if in_solution or source.lstrip().startswith((":::{exercise}", "```{exercise}")):
            in_solution = in_solution and "{solution-end}" not in source
            continue
        if cell["cell_type"] == "markdown":
            words += _words(source)
            continue
        if cell["cell_type"] != "code" or "remove-cell" in tags:
            continue
        if "remove-input" not in tags:
            code += sum(1 for line in source.splitlines() if line.strip())
        if "remove-output" in tags:
            continue
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if any(m in data for m in _IMAGES):
                figures += 1
            elif "text/markdown" in data:
                words += _words(_text(data["text/markdown"]))
            elif out.get("output_type") == "stream":
                words += _words(_text(out.get("text", "")))
            elif "text/plain" in data:
                words += _words(_text(data["text/plain"]))
    return {"words": words, "code_lines": code, "figures": figures}


def reading_minutes(nb: dict) -> int:
    """The rule of this module: minutes to read the page, rounded up to 5."""
    m = measure(nb)
    minutes = (m["words"] / WORDS_PER_MINUTE + m["code_lines"] / CODE_LINES_PER_MINUTE
               + m["figures"] * MINUTES_PER_FIGURE)
    return max(ROUND_TO, ROUND_TO * math.ceil(minutes / ROUND_TO))


def chapters(root: Path = ROOT) -> list[Path]:
    return sorted((root / "book").glob("[0-9][0-9]_*.ipynb"))


def stated_minutes(nb: dict) -> int | None:
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            match = STATED.search(_text(cell["source"]))
            if match:
                return int(match.group(2))
    return None


def problems(root: Path = ROOT) -> list[str]:
    found = []
    for path in chapters(root):
        nb = json.loads(path.read_text())
        stated, rule = stated_minutes(nb), reading_minutes(nb)
        if stated is None:
            found.append(f"{path.name}: no '**Time**: about N minutes to read' in its goals box")
        elif stated != rule:
            found.append(f"{path.name}: states {stated} minutes to read, the rule gives {rule}")
    return found


def write(root: Path = ROOT) -> list[Path]:
    """Set each chapter's stated time to the rule's (byte for byte elsewhere)."""
    changed = []
    for path in chapters(root):
        text = path.read_text()
        nb = json.loads(text)
        stated, rule = stated_minutes(nb), reading_minutes(nb)
        if stated is None or stated == rule:
            continue
        new = STATED.sub(lambda m, rule=rule: f"{m.group(1)}{rule}{m.group(3)}", text, count=1)
        path.write_text(new)
        changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check, write nothing")
    args = parser.parse_args(argv)
    if args.check:
        found = problems()
        for line in found:
            print(f"reading_time.py: {line}", file=sys.stderr)
        return 1 if found else 0
    for path in write():
        print(f"updated {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
