"""The benchmark scripts run (reduced sizes) and print what they promise.

They measure speed; nothing here asserts a timing. The GPU check's CPU-vs-CUDA agreement
part needs CUDA and is exercised on a real GPU (benchmarks/RESULTS.md).
"""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import atkd_lite as ak

ROOT = Path(__file__).resolve().parents[1]
RATIO_ROW = re.compile(r"^\| (.+?) \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \| (yes|no) \| (.+) \|$")


def _run(*args, timeout=600):
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _module(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return module


@pytest.mark.slow
def test_gpu_check_runs_reduced_on_cpu(tmp_path):
    out = tmp_path / "table.md"
    text = _run("benchmarks/gpu_check.py", "--quick", "--device", "cpu", "--out", str(out))
    table = out.read_text()
    assert table.splitlines()[0].startswith("| check (cpu")
    for row in ("teacher epoch", "FMA ÷ plain teacher forward", "MIP ÷ plain generic forward",
                "FMA ÷ plain resnet18 forward", "READ ÷ plain generic forward",
                "fma online / kd online", "sals cached / ce", "read cached / ce",
                "peer: saliency (Captum Saliency), ours ÷ peer",
                "peer: attention map (Captum LayerGradCam), ours ÷ peer"):
        assert row in table, row
    # every ratio is a positive number
    ratios = re.findall(r"\| ([0-9]+\.[0-9]+) \|", table)
    assert ratios and all(float(r) > 0 for r in ratios)
    assert text.rstrip().endswith("|")  # the table is printed last


def test_gpu_check_help():
    assert "--quick" in _run("benchmarks/gpu_check.py", "--help")


def test_bench_atcam_prints_a_row_per_network(capsys):
    _module("bench_atcam").main(["--quick", "--batch", "2", "--reps", "1", "--no-sals",
                                 "--cpu-only"])
    text = capsys.readouterr().out
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert [r.split(" | ")[0] for r in rows[1:]] == ["| teacher", "| generic", "| resnet18"]
    for r in rows[1:]:
        cells = r.strip("| ").split(" | ")
        assert float(cells[1]) > 0 and float(cells[2]) > 0 and cells[4] == "-"
        assert float(cells[5]) > 0  # the floor: each captured map read once
    assert "load average" in text and "commit" in text


def test_bench_atcam_compile_model_times_fma_and_mip_against_the_compiled_network(
        monkeypatch, capsys):
    bench = _module("bench_atcam")
    seen = []

    def attention_overhead(**kwargs):  # records the settings; no compiling in this test
        seen.append(kwargs)
        return {"plain": 0.01}, {"plain": 1.0, "fma": 1.05, "mip": 1.2}

    monkeypatch.setattr(bench, "attention_overhead", attention_overhead)
    bench.main(["--quick", "--cpu-only", "--compile-model", "--models", "generic"])
    text = capsys.readouterr().out
    assert [(k["compile_model"], k["variants"], k["warmup"]) for k in seen] == [
        (True, ("plain", "fma", "mip"), 2)]
    assert "compile_model=True" in text and "the network compiled alone" in text
    row = next(line for line in text.splitlines() if line.startswith("| generic |"))
    assert row.strip("| ").split(" | ")[2:] == ["1.050", "1.200", "-", "-", "no"]


def test_bench_distill_prints_the_goal_ratios(capsys):
    _module("bench_distill").main(["--batch-size", "4", "--rounds", "1", "--warmup", "0"])
    text = capsys.readouterr().out
    for row, goal in (("fma online / kd online", "<= 1.10"), ("mip cached / ce", "<= 1.3"),
                      ("sals online / kd online", "reported"), ("read cached / ce", "floor")):
        line = next(line for line in text.splitlines() if line.startswith(f"| {row} |"))
        cells = line.strip("| ").split(" | ")
        assert float(cells[1]) > 0 and cells[2] == goal


def test_bench_distill_compiles_only_the_fma_and_mip_maps(monkeypatch, capsys):
    bench = _module("bench_distill")
    made = []

    def make_distiller(method, *args, **kwargs):  # records the setting, builds eagerly
        made.append((method, kwargs.pop("compile_maps", None)))
        return real(method, *args, **kwargs)

    real = bench.make_distiller
    monkeypatch.setattr(bench, "make_distiller", make_distiller)
    bench.main(["--batch-size", "4", "--rounds", "1", "--warmup", "0", "--compile", "default"])
    assert "FMA/MIP maps compile=default" in capsys.readouterr().out
    assert {m: c for m, c in made} == {"student": None, "kd": None, "at": None, "sals": None,
                                       "fma": "default", "mip": "default"}


def test_paired_ratio_is_the_median_of_per_round_ratios():
    common = _module("common")
    times = {"a": [2.0, 10.0, 3.0], "b": [1.0, 1.0, 2.0]}
    # per round 2, 10, 1.5 -> median 2; a ratio of medians would give 3 / 1 = 3
    assert common.paired(times, "a", "b") == 2.0
    calls = []
    out = common.interleaved({n: (lambda n=n: calls.append(n)) for n in "xyz"},
                             rounds=30, warmup=1)
    assert [len(v) for v in out.values()] == [30, 30, 30]
    rounds = [calls[i:i + 3] for i in range(0, len(calls), 3)]
    assert all(sorted(r) == ["x", "y", "z"] for r in rounds)  # each once per round
    assert len({tuple(r) for r in rounds}) > 3  # in varying orders


def test_peer_check_refuses_different_results():
    peers = _module("bench_peers")
    a = torch.tensor([1.0, 2.0])
    assert peers._same("x", a, a.clone(), rtol=1e-5, atol=1e-6) == 0.0
    with pytest.raises(AssertionError, match="not compare the same computation"):
        peers._same("x", a, a + 1e-3, rtol=1e-5, atol=1e-6)


def test_bench_peers_without_torchdistill_says_so_and_exits_0(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchdistill", None)  # `import torchdistill` now fails
    assert _module("bench_peers").main(["--batch", "4", "--rounds", "1", "--warmup", "0"]) == 0
    text = capsys.readouterr().out
    assert "torchdistill is not installed" in text and "pip install" in text
    assert "| saliency (Captum Saliency) |" in text and "KD step" not in text


@pytest.mark.skipif(importlib.util.find_spec("torchdistill") is None,
                    reason="torchdistill (the `bench` extra) is not installed")
def test_bench_peers_quick_compares_the_same_losses(capsys):
    assert _module("bench_peers").main(["--quick", "--batch", "8", "--rounds", "1",
                                        "--warmup", "0"]) == 0
    text = capsys.readouterr().out
    rows = [RATIO_ROW.match(line) for line in text.splitlines()]
    rows = {m.group(1): m for m in rows if m}
    assert set(rows) == {"KD step (torchdistill KDLoss)", "AT step (torchdistill ATLoss)",
                         "saliency (Captum Saliency)", "attention map (Captum LayerGradCam)"}
    for m in rows.values():
        assert float(m.group(4)) > 0
    assert rows["KD step (torchdistill KDLoss)"].group(6).startswith("same loss")
    assert rows["AT step (torchdistill ATLoss)"].group(6).startswith("same loss")


def test_bench_compile_times_the_eager_tail(capsys):
    assert _module("bench_compile").main(["--no-compile", "--batch", "4", "--rounds", "1",
                                          "--warmup", "0"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines()
            if line.startswith(("| fma", "| mip"))]
    assert len(rows) == 2 and all(float(r.split("|")[2]) > 0 for r in rows)


def test_bench_compile_says_when_compiling_pays():
    pays_after = _module("bench_compile").pays_after
    assert pays_after(3.0, 0.002) == "1500"  # 3 s to compile, 2 ms saved a step
    assert pays_after(1.0, 0.003) == "334"  # rounded up: 333 steps do not pay yet
    assert pays_after(1.0, 0.0) == pays_after(1.0, -0.001) == "never"


def test_bench_compile_tails_agree_and_a_different_result_is_refused():
    """The plain-operations tail (what gets compiled) computes the eager tail's loss and
    gradients; a result that differs is refused, not timed."""
    bench = _module("bench_compile")
    raw, size = bench.student_raw_maps(6, torch.device("cpu"))
    target = torch.rand(6, *size)
    for combine in ("fma", "mip"):
        eager = bench.make_step(bench.eager_tail, raw, target, size, combine)()
        plain = bench.make_step(bench.plain_tail, raw, target, size, combine)()
        assert bench.check_same(combine, eager, plain) < 1e-6
    loss, grads = eager
    with pytest.raises(AssertionError, match="differ"):
        bench.check_same("fma", eager, (loss, [g * 1.01 for g in grads]))


def test_bench_capture_times_each_step_of_an_atcam_call(capsys):
    assert _module("bench_capture").main(["--no-compile", "--batch", "2", "--rounds", "1",
                                          "--warmup", "0"]) == 0
    rows = [line[2:-2].split(" | ") for line in capsys.readouterr().out.splitlines()
            if line.startswith("| ") and "---" not in line and "step" not in line]
    assert [r[0] for r in rows] == ["plain", "floor", "abs-mean eager", "ATCam", "tail alone"]
    assert all(float(r[1]) > 0 for r in rows) and float(rows[0][2]) == 1.0


def test_bench_capture_steps_compute_what_they_claim():
    """The floor reads each captured map (a channel sum), the |A| step is mean_c |A|, and
    the ATCam rows return the maps of a plain ATCam call."""
    bench = _module("bench_capture")
    torch.manual_seed(0)
    model = _module("common").generic_cnn().eval()
    x = torch.randn(3, 1, 28, 28)
    fns = bench.variants(model, x, compile=False)
    with torch.no_grad():
        feats = ak.ATCam(model).features(x)[1]
        maps = ak.ATCam(model)(x)[1]
    for name, want in (("floor", [a.sum(1) for a in feats]),
                       ("abs-mean eager", [a.abs().mean(1) for a in feats])):
        got = fns[name]()[1]
        assert len(got) == len(want) == 4
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w)
    torch.testing.assert_close(fns["ATCam"]()[1], maps)
    torch.testing.assert_close(fns["tail alone"]()[0], maps)
