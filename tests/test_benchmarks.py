"""The benchmark scripts run (reduced sizes) and print what they promise.

They measure speed; nothing here asserts a timing. The GPU check's CPU-vs-CUDA agreement
part needs CUDA and is exercised on a real GPU (benchmarks/RESULTS.md).
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args, timeout=600):
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_gpu_check_runs_reduced_on_cpu(tmp_path):
    out = tmp_path / "table.md"
    text = _run("benchmarks/gpu_check.py", "--quick", "--device", "cpu", "--out", str(out))
    table = out.read_text()
    assert table.splitlines()[0].startswith("| check (cpu")
    for row in ("teacher epoch", "FMA ÷ plain teacher forward", "fma online / kd online",
                "sals cached / ce"):
        assert row in table, row
    # every ratio is a positive number
    ratios = re.findall(r"\| ([0-9]+\.[0-9]+) \|", table)
    assert ratios and all(float(r) > 0 for r in ratios)
    assert text.rstrip().endswith("|")  # the table is printed last


def test_gpu_check_help():
    assert "--quick" in _run("benchmarks/gpu_check.py", "--help")
