"""The package's size by module at a commit: lines, and lines of code (not blank, not a
comment, not a docstring), read from git, so two commits compare without a checkout::

    python tools/package_size.py 6702e8c > before.tsv
    python tools/package_size.py HEAD > after.tsv
    join -t "$(printf '\\t')" -a1 -a2 -e - -o 0,1.2,1.3,2.2,2.3 before.tsv after.tsv
"""

from __future__ import annotations

import ast
import io
import subprocess
import sys
import tokenize

SKIPPED = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
           tokenize.ENDMARKER}


def code_lines(source: str) -> int:
    """Lines that hold code: not blank, not comments, not docstrings."""
    docstrings: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                docstrings.update(range(first.lineno, first.end_lineno + 1))
    lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in SKIPPED:
            lines.update(n for n in range(tok.start[0], tok.end[0] + 1) if n not in docstrings)
    return len(lines)


def main(rev: str = "HEAD") -> None:
    def git(*args) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout

    total = code = 0
    for path in sorted(git("ls-tree", "-r", "--name-only", rev, "atkd_lite").split()):
        if path.endswith(".py"):
            source = git("show", f"{rev}:{path}")
            n, c = len(source.splitlines()), code_lines(source)
            print(path, n, c, sep="\t")
            total, code = total + n, code + c
    print("TOTAL", total, code, sep="\t")


if __name__ == "__main__":
    main(*sys.argv[1:2])
