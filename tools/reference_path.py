"""How much of the package one training step of a method runs: its reference path.

Traces one ``forward_train`` of a method's distiller (teacher online, no cache, nothing
compiled, on the CPU) and one ``loss.backward()``, and counts the distinct lines of
``atkd_lite`` that ran, by module and function. That is the code a reader follows from the
method file through its signal and ATCam to the loss: what the structure issue asks to
keep short (lines of code that ran, not lines of the modules they sit in, so docstrings,
fast paths and other methods do not count).

    python tools/reference_path.py            # fma
    python tools/reference_path.py sals mip   # any registered methods
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import atkd_lite as ak  # noqa: E402
from atkd_lite.methods import make_distiller  # noqa: E402

PACKAGE = Path(ak.__file__).resolve().parent


def traced_lines(method: str) -> dict[tuple[str, str], set[int]]:
    """(module path, function) -> the line numbers of the package that ran in one step."""
    torch.manual_seed(0)
    teacher, student = ak.teacher_cnn().eval(), ak.student_cnn("small")
    x, y = torch.rand(8, 1, 28, 28), torch.arange(8) % 10
    distiller = make_distiller(method, student, teacher)
    distiller.forward_train(x, y, torch.arange(8))  # first call: hooks and layers found
    ran: dict[tuple[str, str], set[int]] = {}

    def tracer(frame, event, arg):
        path = Path(frame.f_code.co_filename)
        if not path.is_relative_to(PACKAGE):
            return None  # torch, Python: not followed
        if event == "line":
            key = (str(path.relative_to(PACKAGE.parent)), frame.f_code.co_qualname)
            ran.setdefault(key, set()).add(frame.f_lineno)
        return tracer

    sys.settrace(tracer)
    try:
        _, terms = distiller.forward_train(x, y, torch.arange(8))
        terms["loss"].backward()
    finally:
        sys.settrace(None)
    return ran


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("methods", nargs="*", default=["fma"])
    parser.add_argument("--functions", action="store_true", help="list every function")
    args = parser.parse_args(argv)
    for method in args.methods:
        ran = traced_lines(method)
        by_module: Counter = Counter()
        for (module, _), lines in ran.items():
            by_module[module] += len(lines)
        total = sum(by_module.values())
        print(f"{method}: {total} lines of atkd_lite ran in one training step "
              f"({len(ran)} functions in {len(by_module)} modules)")
        for module, n in by_module.most_common():
            print(f"  {n:4d}  {module}")
            if args.functions:
                for (m, fn), lines in sorted(ran.items(), key=lambda kv: -len(kv[1])):
                    if m == module:
                        print(f"          {len(lines):4d}  {fn}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
