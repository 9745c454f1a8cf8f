"""The command line: every error one line and exit 2, checked before any work (issue 20,
defects 3, 4, 5 and the CLI side of 8, 9 and 11)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import atkd_lite as ak
from atkd_lite import checkpoints
from atkd_lite.cli import main
from atkd_lite.engine import History

ROOT = Path(__file__).resolve().parents[1]


class WorkStarted(BaseException):
    """Raised by stand-ins for training: an argument was checked too late. A
    BaseException, so the command line's error handling cannot swallow it."""


@pytest.fixture
def no_work(monkeypatch):
    """Every expensive entry point of every command raises WorkStarted."""
    import atkd_lite.experiments as experiments
    import atkd_lite.experiments.faithfulness as faithfulness
    import atkd_lite.experiments.sizes as sizes

    def stop(*args, **kwargs):
        raise WorkStarted

    for name in ("train_model", "distill", "pretrained_teacher"):
        monkeypatch.setattr(ak, name, stop)
    monkeypatch.setattr(checkpoints, "train_model", stop)
    monkeypatch.setattr(experiments, "reproduce", stop)
    monkeypatch.setattr(sizes, "run_sizes", stop)
    monkeypatch.setattr(faithfulness, "run_faithfulness", stop)


def _run(argv, capsys) -> tuple[int, list[str]]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


def _one_line_error(code, err, *words):
    assert code == 2, err
    message = err[-1]
    assert "Traceback" not in "\n".join(err)
    for word in words:
        assert word in message, message
    return message


# ---------------------------------------------------------------------------------------
# 3 + 4: one line, exit 2, before any work

@pytest.fixture
def paths(tmp_path):
    afile = tmp_path / "file.txt"
    afile.write_text("not a folder")
    folder = tmp_path / "folder"
    folder.mkdir()
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    return {"file": str(afile), "folder": str(folder), "slash": str(tmp_path / "new") + "/",
            "corrupt": str(corrupt), "tmp": tmp_path}


CASES = [
    # (argv with {placeholders}, words the one-line message must contain)
    (["train-teacher", "-o", "{slash}"], ["--output", "names a folder"]),
    (["train-teacher", "-o", "{folder}"], ["--output", "is a folder"]),
    (["train-teacher", "-o", "/dev/full"], ["--output", "not a regular file"]),
    (["train-teacher", "-o", "{file}/x.pt"], ["--output", "cannot be created"]),
    (["train-teacher", "--augment", "-3"], ["--augment", "non-negative"]),
    (["train-teacher", "--seed", "-5"], ["--seed", "non-negative"]),
    (["train-teacher", "--limit-per-class", "5"], ["--limit-per-class", "--output"]),
    (["distill", "--alpha", "2"], ["--alpha", "[0.0, 1.0]"]),
    (["distill", "--T", "nan"], ["--T", "finite"]),
    (["distill", "--T", "1e30"], ["--T"]),
    (["distill", "--lr", "-1"], ["--lr", "> 0"]),
    (["distill", "--batch-size", "0"], ["--batch-size"]),
    (["distill", "-o", "{slash}"], ["--output", "names a folder"]),
    (["distill", "--teacher", "{corrupt}"], ["corrupt"]),
    (["distill", "--teacher", "{tmp}/missing.pt"], ["no checkpoint"]),
    (["distill", "--method", "fmaa"], ["unknown method"]),
    (["distill", "--device", "tpu"], ["unknown device"]),
    (["distill", "--per-class", "900"], ["fewer than the 900"]),
    (["reproduce", "--output-dir", "{file}"], ["--output-dir", "not a folder"]),
    (["reproduce", "--seeds", "0,-1"], ["--seeds", "non-negative"]),
    (["reproduce", "--methods", "fma,bogus"], ["unknown method"]),
    (["reproduce", "--beta", "-1"], ["--beta"]),
    (["reproduce", "--teacher", "{corrupt}"], ["corrupt"]),
    (["sizes", "--output-dir", "{file}"], ["--output-dir", "not a folder"]),
    (["sizes", "--dataset", "imagenet"], ["unknown dataset"]),
    (["sizes", "--sizes", "huge"], ["unknown student size"]),
    (["sizes", "--device", "cuda:7"], ["device"]),
    (["faithfulness", "--output-dir", "{file}"], ["--output-dir", "not a folder"]),
    (["faithfulness", "--device", "tpu"], ["unknown device"]),
    (["faithfulness", "--kinds", "fma,nope"], ["unknown map kind"]),
    (["faithfulness", "--dataset", "nope"], ["unknown dataset"]),
]


@pytest.mark.parametrize("argv, words", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_every_error_is_one_line_exit_2_before_any_work(argv, words, paths, no_work,
                                                           capsys):
    argv = [a.format(**paths) for a in argv]
    code, err = _run(argv, capsys)  # WorkStarted would escape: the check came too late
    _one_line_error(code, err, *words)


def test_an_unavailable_dataset_offline_is_one_line(no_network, capsys, tmp_path,
                                                      monkeypatch):
    monkeypatch.setenv("ATKD_LITE_CACHE", str(tmp_path))
    code, err = _run(["train-teacher", "--dataset", "mnist", "-o", str(tmp_path / "t.pt"),
                      "--no-progress"], capsys)
    _one_line_error(code, err, "could not load 'mnist'", "mnist5k")


def test_a_non_finite_loss_is_one_line(capsys, tmp_path):
    teacher = checkpoints.save_checkpoint(tmp_path / "t.pt", ak.teacher_cnn())
    code, err = _run(["distill", "--teacher", str(teacher), "--method", "student",
                      "--per-class", "2", "--epochs", "1", "--lr", "1e30", "--batch-size", "4",
                      "--device", "cpu", "--no-progress", "-o", str(tmp_path / "s.pt")],
                     capsys)
    _one_line_error(code, err, "epoch 1", "became")
    assert not (tmp_path / "s.pt").exists()  # a NaN student is not saved


@pytest.mark.parametrize("error", [KeyError("runs"), IndexError("list index out of range"),
                                   AssertionError("bug")])
def test_unexpected_errors_are_one_line_too(error, monkeypatch, capsys):
    import atkd_lite.cli as cli

    def boom(args):
        raise error

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: _with_func(parser, "datasets", boom))
    code, err = _run(["datasets"], capsys)
    message = _one_line_error(code, err)
    assert type(error).__name__ in message and len(err) == 1


def _with_func(parser, command, func):
    for action in parser._subparsers._group_actions:
        action.choices[command].set_defaults(func=func)
    return parser


def test_ctrl_c_is_exit_130_without_traceback(monkeypatch, capsys):
    import atkd_lite.cli as cli

    def interrupted(args):
        raise KeyboardInterrupt

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: _with_func(parser, "datasets",
                                                                  interrupted))
    code, err = _run(["datasets"], capsys)
    assert code == 130 and err == ["atkd-lite datasets: interrupted"]


def test_sigterm_cleans_up_and_exits_143(tmp_path):
    target = tmp_path / "out.pt"
    script = textwrap.dedent(f"""
        import time, atkd_lite.cli as cli
        from atkd_lite.runtime import atomic_write
        def slow(args):
            def write(tmp):
                open(tmp, "wb").write(b"x" * 4096)
                print("writing", flush=True)
                time.sleep(60)
            atomic_write({str(target)!r}, write)
        parser = cli.build_parser()
        for action in parser._subparsers._group_actions:
            action.choices["datasets"].set_defaults(func=slow)
        cli.build_parser = lambda: parser
        raise SystemExit(cli.main(["datasets"]))
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "writing"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert err.strip() == "atkd-lite datasets: terminated"
    assert list(tmp_path.iterdir()) == []  # no temporary file, no half-written target


# ---------------------------------------------------------------------------------------
# 5: train-teacher without -o keeps the teacher where pretrained_teacher finds it

def test_train_teacher_without_output_fills_the_cache(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("ATKD_LITE_CACHE", str(tmp_path))
    calls = []

    def fake_train(model, train, test=None, epochs=1, seed=0, augment=0, **kw):
        calls.append({"epochs": epochs, "seed": seed, "augment": augment})
        hist = History()
        hist.append(epoch=1, loss=0.1, train_acc=0.9, test_acc=0.875, time_s=0.0)
        return hist

    monkeypatch.setattr(checkpoints, "train_model", fake_train)
    assert main(["train-teacher", "--epochs", "3", "--device", "cpu", "--no-progress"]) == 0
    out = capsys.readouterr().out
    path = checkpoints.teacher_cache_path("mnist5k", 3)
    assert path.exists() and str(path) in out
    # the defaults of train-teacher are the recipe of pretrained_teacher
    assert calls == [{"epochs": 3, "seed": 0, "augment": 2}]
    _, meta = ak.pretrained_teacher(epochs=3, progress=False, device="cpu")
    assert calls == [{"epochs": 3, "seed": 0, "augment": 2}] and meta["test_acc"] == 0.875
    # run again: nothing to train
    assert main(["train-teacher", "--epochs", "3", "--device", "cpu", "--no-progress"]) == 0
    assert "already cached" in capsys.readouterr().out and len(calls) == 1
    assert main(["train-teacher", "--epochs", "3", "--device", "cpu", "--no-progress",
                 "--retrain"]) == 0
    assert len(calls) == 2


def test_the_cached_teacher_is_what_train_teacher_would_train(monkeypatch, tmp_path):
    """Same recipe, same start: train-teacher -o and the cache train from the same initial
    weights with the same settings."""
    monkeypatch.setenv("ATKD_LITE_CACHE", str(tmp_path / "c"))
    seen = []

    def record(model, train, test=None, **kw):
        seen.append(({k: v.clone() for k, v in model.state_dict().items()}, len(train),
                     {k: v for k, v in kw.items() if k not in ("progress", "device")}))
        hist = History()
        hist.append(epoch=1, loss=0.1, train_acc=0.9, test_acc=0.5, time_s=0.0)
        return hist

    monkeypatch.setattr(ak, "train_model", record)
    monkeypatch.setattr(checkpoints, "train_model", record)
    argv = ["train-teacher", "--epochs", "2", "--seed", "4", "--device", "cpu",
            "--no-progress"]
    assert main(argv + ["-o", str(tmp_path / "t.pt")]) == 0
    assert main(argv) == 0
    (w1, n1, kw1), (w2, n2, kw2) = seen
    assert n1 == n2 == 4000 and kw1 == kw2 == {"epochs": 2, "seed": 4, "augment": 2}
    assert all(torch.equal(w1[k], w2[k]) for k in w1)


# ---------------------------------------------------------------------------------------
# 11: a results folder another process writes

def test_a_results_folder_held_by_another_process_is_refused(tmp_path, no_work, capsys):
    out = tmp_path / "results"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time; from atkd_lite.experiments.results import "
         f"claim_output_dir; claim_output_dir({str(out)!r}); print('ok', flush=True); "
         "time.sleep(60)"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "ok"
        code, err = _run(["reproduce", "--output-dir", str(out)], capsys)
        _one_line_error(code, err, "another process", str(holder.pid), "writing results")
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    with pytest.raises(WorkStarted):  # free again: the command gets as far as the work
        main(["reproduce", "--output-dir", str(out)])
