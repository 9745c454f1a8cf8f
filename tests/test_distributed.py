"""Data parallelism under torchrun, on the CPU (gloo): two processes against one.

Three ``torchrun --nproc_per_node 2`` launches (a few seconds each):

- a library script: ``distill`` (FMA+KD and SALS) whose final student must equal a
  one-process run with the same *global* batch and seed, a teacher-cache build that must
  equal the one-process cache bit for bit, ``train-teacher`` through the command line, and
  two kinds of bad input (ranks with different settings; more processes than images);
- ``torchrun -m atkd_lite distill`` itself;
- a run in which one rank fails: both processes end, with a clear message, no files.

The student of the equality test has no BatchNorm: with BatchNorm each process normalises
over its own part of the batch (as in any DDP job without SyncBatchNorm, which the CPU
lacks), so the runs would differ by design, not by error.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

import atkd_lite as ak
from atkd_lite import distributed
from atkd_lite.cache import TeacherCache
from atkd_lite.checkpoints import load_checkpoint, save_checkpoint
from atkd_lite.data import DeviceBatcher, LoaderBatches
from atkd_lite.files import FileLock, LockHeldError

ROOT = Path(__file__).resolve().parents[1]

#: the two runs agree up to float32 rounding (a batch's gradient is summed in another
#: order: two halves averaged instead of one sum). Measured: weights within 1e-7 (FMA+KD)
#: and 5e-7 (SALS, double backprop) while training moves them by 4e-2; the tolerance
#: leaves a factor 20 for other CPUs and stays 4000 times below what training changes
TOLERANCE = 1e-5

GLOBAL_BATCH = 8
METHODS = ("fma+kd", "sals")

pytestmark = pytest.mark.skipif(not torch.distributed.is_available()
                                or not torch.distributed.is_gloo_available(),
                                reason="torch.distributed with gloo is needed")


def plain_student() -> nn.Module:
    """A small CNN without BatchNorm, seeded (see the module docstring)."""
    torch.manual_seed(11)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(16, 10))


def tiny_data():
    return (ak.load_dataset("mnist5k", "train").per_class(4),   # 40 images: 5 batches of 8
            ak.load_dataset("mnist5k", "test").per_class(3))    # 30 images


DISTILL = dict(epochs=2, lr=0.01, seed=3, progress=False)

SCRIPT = textwrap.dedent("""
    import json, sys
    import torch
    sys.path.insert(0, {tests!r})
    from test_distributed import GLOBAL_BATCH, METHODS, DISTILL, plain_student, tiny_data
    import atkd_lite as ak
    from atkd_lite import cli, distributed
    from atkd_lite.cache import TeacherCache
    from atkd_lite.distributed import DistributedError

    out, teacher_file = sys.argv[1], sys.argv[2]
    device = distributed.setup("cpu")
    rank, world = distributed.rank(), distributed.world_size()
    train, test = tiny_data()
    teacher = ak.load_checkpoint(teacher_file)[0].eval()
    report = {{"world": world, "backend": distributed.backend()}}
    for method in METHODS:
        student = plain_student()
        res = ak.distill(teacher, student, train, test, method=method, device=device,
                         batch_size=GLOBAL_BATCH // world, **DISTILL)
        if distributed.is_main():
            torch.save(student.state_dict(), f"{{out}}/student-{{method}}.pt")
        report[method] = {{"history": res.history.records, "params": res.params}}
    cache = TeacherCache.build(teacher, train, maps=("fma", "mip", "sals"), batch_size=8,
                               device=device, progress=False)
    cache.save(f"{{out}}/cache.pt")
    try:  # the ranks disagree on the number of epochs
        ak.distill(teacher, plain_student(), train, test, method="fma", device=device,
                   epochs=1 + rank, progress=False)
    except DistributedError as err:
        report["mismatch"] = str(err)
    try:  # one image for two processes
        ak.distill(teacher, plain_student(), train.subset([0]), None, method="kd",
                   device=device, epochs=1, progress=False)
    except ValueError as err:
        report["too_small"] = str(err)
    report["train_teacher"] = cli.main(
        ["train-teacher", "--limit-per-class", "2", "--epochs", "1", "--no-progress",
         "--device", "cpu", "-o", f"{{out}}/teacher.pt"])
    with open(f"{{out}}/report-{{rank}}.json", "w") as fh:
        json.dump(report, fh)
""")

FAILING = textwrap.dedent("""
    import os, sys
    import atkd_lite.engine as engine
    from atkd_lite import cli

    if os.environ["RANK"] == "1":  # rank 1 fails at its second optimiser step
        make = engine.make_optimizer

        def failing(*args, **kwargs):
            opt, sched = make(*args, **kwargs)
            real, steps = sched.step, []

            def step():
                steps.append(1)
                if len(steps) == 2:
                    raise RuntimeError("injected failure on rank 1")
                real()

            sched.step = step
            return opt, sched

        engine.make_optimizer = failing
    raise SystemExit(cli.main(sys.argv[1:]))
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args, cwd, timeout=240) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node 2`` on 127.0.0.1 (a free port), the package on the path."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "ATKD_LITE_CACHE": str(Path(cwd) / "cache")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--nnodes", "1", "--rdzv-backend", "c10d",
           "--rdzv-endpoint", f"127.0.0.1:{_free_port()}", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory):
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("teacher") / "teacher.pt", ak.teacher_cnn())


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory, teacher_file):
    out = tmp_path_factory.mktemp("ddp")
    script = out / "run.py"
    script.write_text(SCRIPT.format(tests=str(ROOT / "tests")))
    proc = torchrun([str(script), str(out), str(teacher_file)], cwd=out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reports = [json.loads((out / f"report-{r}.json").read_text()) for r in (0, 1)]
    return out, reports


@pytest.fixture(scope="module")
def one_process(teacher_file):
    """The same runs in this process, with the global batch, at one thread as the ranks."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train, test = tiny_data()
        teacher = load_checkpoint(teacher_file)[0].eval()
        runs = {}
        for method in METHODS:
            student = plain_student()
            res = ak.distill(teacher, student, train, test, method=method, device="cpu",
                             batch_size=GLOBAL_BATCH, **DISTILL)
            runs[method] = (student.state_dict(), res.history.records)
        cache = TeacherCache.build(teacher, train, maps=("fma", "mip", "sals"), batch_size=8,
                                   device="cpu", progress=False)
    finally:
        torch.set_num_threads(threads)
    return runs, cache


@pytest.mark.parametrize("method", METHODS)
def test_two_processes_train_the_student_one_process_trains(method, two_process_run,
                                                            one_process):
    out, reports = two_process_run
    want, want_history = one_process[0][method]
    got = torch.load(out / f"student-{method}.pt", weights_only=True)
    worst = max((got[k] - want[k]).abs().max().item() for k in want)
    assert worst <= TOLERANCE, f"largest weight difference {worst:.2e}"
    assert any((want[k] != plain_student().state_dict()[k]).any() for k in want)  # it trained
    for report in reports:  # both ranks report the same, all-reduced figures
        history = report[method]["history"]
        assert len(history) == len(want_history)
        for mine, ref in zip(history, want_history):
            for key in ref:
                if key.startswith("loss") or key in ("train_acc", "test_acc"):
                    assert mine[key] == pytest.approx(ref[key], rel=TOLERANCE, abs=TOLERANCE)
        params = report[method]["params"]
        assert (params["world_size"], params["backend"], params["global_batch_size"]) == \
            (2, "gloo", GLOBAL_BATCH)
    assert reports[0][method]["history"] == reports[1][method]["history"]


def test_two_processes_build_the_one_process_cache(two_process_run, one_process):
    out, _ = two_process_run
    want = one_process[1]
    got = TeacherCache.load(out / "cache.pt")
    idx = torch.arange(len(want))
    assert torch.equal(got.logits(idx), want.logits(idx))
    for kind in ("fma", "mip", "sals"):
        assert torch.equal(got.maps(kind, idx), want.maps(kind, idx)), kind
    for a, b in zip(got.at_maps(idx), want.at_maps(idx)):
        assert torch.equal(a, b)
    assert {k: v for k, v in got.meta.items() if k != "created"} == \
        {k: v for k, v in want.meta.items() if k != "created"}


def test_bad_input_stops_every_rank_with_a_clear_error(two_process_run):
    _, reports = two_process_run
    for report in reports:
        assert "different distillation settings" in report["mismatch"]
        assert "ranks [0]" in report["mismatch"] and "ranks [1]" in report["mismatch"]
        assert "cannot be shared by 2 processes" in report["too_small"]


def test_train_teacher_under_torchrun_writes_one_checkpoint(two_process_run):
    out, reports = two_process_run
    assert [r["train_teacher"] for r in reports] == [0, 0]
    _, meta = load_checkpoint(out / "teacher.pt")
    assert meta["world_size"] == 2 and meta["backend"] == "gloo"
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_torchrun_module_distill_cli(tmp_path, teacher_file):
    out = tmp_path / "student.pt"
    proc = torchrun(["-m", "atkd_lite", "distill", "--teacher", str(teacher_file),
                     "--method", "kd", "--per-class", "2", "--epochs", "1", "--batch-size",
                     "4", "--student-size", "tiny", "--device", "cpu", "--no-progress",
                     "-o", str(out)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("test accuracy") == 1  # rank 0 alone speaks
    _, meta = load_checkpoint(out)
    assert meta["distill"]["world_size"] == 2 and meta["distill"]["global_batch_size"] == 8
    assert [p.name for p in tmp_path.iterdir() if p.name != "cache"] == ["student.pt"]


def test_a_failing_rank_ends_both_with_a_message_and_no_files(tmp_path, teacher_file):
    script = tmp_path / "failing.py"
    script.write_text(FAILING)
    out = tmp_path / "out"
    out.mkdir()
    proc = torchrun([str(script), "distill", "--teacher", str(teacher_file), "--method",
                     "fma", "--per-class", "4", "--epochs", "3", "--batch-size", "4",
                     "--student-size", "tiny", "--device", "cpu", "--no-progress",
                     "-o", str(out / "student.pt")], cwd=tmp_path)
    assert proc.returncode != 0
    assert ("atkd-lite distill (rank 1 of 2): error: injected failure on rank 1"
            in proc.stderr), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr.split("injected failure")[0]
    assert list(out.iterdir()) == []  # no checkpoint, no temporary file


# ---------------------------------------------------------------------------------------
# in one process: the pieces

def test_rank_batches_together_are_the_global_batches():
    data = ak.load_dataset("mnist5k", "val").per_class(3)  # 30 images
    one = list(DeviceBatcher(data, 6, seed=2, augment=2))
    ranks = [list(DeviceBatcher(data, 3, seed=2, augment=2, rank=r, world_size=2))
             for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(one) == 5
    for (x, y, idx), (x0, y0, i0), (x1, y1, i1) in zip(one, *ranks):
        # interleaved: global position 2k is rank 0's k-th, 2k+1 rank 1's
        assert torch.equal(idx, torch.stack([i0, i1], 1).flatten())
        assert torch.equal(x, torch.stack([x0, x1], 1).flatten(0, 1))  # same shifts
        assert torch.equal(y, torch.stack([y0, y1], 1).flatten())


def test_uneven_shares_are_padded_to_equal_batch_counts():
    data = ak.load_dataset("mnist5k", "val").per_class(1)  # 10 images, 3 processes
    shares = [torch.cat([i for _, _, i in DeviceBatcher(data, 2, seed=0, rank=r,
                                                        world_size=3)]) for r in range(3)]
    assert [len(s) for s in shares] == [4, 4, 4]
    assert sorted(torch.cat(shares).unique().tolist()) == list(range(10))


def test_loader_path_shares_each_epoch_between_the_processes():
    data = ak.load_dataset("mnist5k", "val").per_class(2)  # 20 images
    loaders = [LoaderBatches(data, 2, seed=5, rank=r, world_size=2) for r in (0, 1)]
    epochs = []
    for _ in range(2):
        shares = [torch.cat([i for _, _, i in loader]) for loader in loaders]
        assert sorted(torch.cat(shares).tolist()) == list(range(20))  # disjoint, complete
        epochs.append(shares[0])
    assert not torch.equal(*epochs)  # reshuffled every epoch
    again = torch.cat([i for _, _, i in LoaderBatches(data, 2, seed=5, rank=0, world_size=2)])
    assert torch.equal(again, epochs[0])  # and seeded


@pytest.fixture
def torchrun_env(monkeypatch):
    """The environment torchrun gives a single worker (nothing is started)."""
    for key, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0",
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}.items():
        monkeypatch.setenv(key, value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_nccl_without_cuda_is_a_clear_error(torchrun_env, capsys):
    with pytest.raises(distributed.DistributedError, match="nccl backend needs CUDA"):
        distributed.setup("cpu", backend="nccl")
    assert not torch.distributed.is_initialized()
    code = ak.cli.main(["distill", "--dist-backend", "nccl", "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "rank 0 of 1" in err[0] and "use --dist-backend gloo" in err[0]


def test_a_cache_being_written_by_another_process_is_refused(tmp_path):
    data = ak.load_dataset("mnist5k", "val").per_class(1)
    cache = TeacherCache.build(ak.teacher_cnn().eval(), data, maps=("fma",), at=False,
                               progress=False, device="cpu")
    target = tmp_path / "cache.pt"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time; from atkd_lite.runtime import FileLock; "
         f"FileLock({str(tmp_path / '.cache.pt.lock')!r}).acquire(); print('ok', flush=True);"
         " time.sleep(60)"], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "ok"
        with pytest.raises(LockHeldError, match="being written by another process"):
            cache.save(target)
        assert not target.exists()
    finally:
        holder.kill()
        holder.wait()
    cache.save(target)
    with FileLock(tmp_path / ".cache.pt.lock"):  # and our own save released the lock
        pass
    assert TeacherCache.load(target).meta["length"] == 10


def test_one_process_is_unchanged_and_records_world_size_one():
    train, test = tiny_data()
    res = ak.distill(ak.teacher_cnn().eval(), plain_student(), train, test, method="kd",
                     epochs=1, batch_size=8, device="cpu", progress=False)
    assert (res.params["world_size"], res.params["backend"]) == (1, None)
    assert res.history.meta == {"world_size": 1, "backend": None}
    assert distributed.world_size() == 1 and not torch.distributed.is_initialized()


# ---------------------------------------------------------------------------------------
# no silent hang (reliability II, item 1)

DIVERGING = textwrap.dedent("""
    import os, sys
    from atkd_lite import cli
    teacher = sys.argv[1]
    # rank 0 would train a teacher while rank 1 loads one: they must not wait for each other
    extra = ["--teacher-epochs", "1"] if os.environ["RANK"] == "0" else ["--teacher", teacher]
    sys.exit(cli.main(["distill", "--method", "kd", "--per-class", "2", "--epochs", "1",
                       "--device", "cpu", "--no-progress", *extra]))
""")


def test_ranks_started_with_different_arguments_stop_at_once(tmp_path, teacher_file):
    script = tmp_path / "diverging.py"
    script.write_text(DIVERGING)
    proc = torchrun([str(script), str(teacher_file)], cwd=tmp_path, timeout=120)
    assert proc.returncode != 0
    for rank in (0, 1):
        assert (f"(rank {rank} of 2): error: the 2 processes were started with different "
                "command-line arguments") in proc.stderr, proc.stderr[-3000:]
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").rglob("*.pt"))


STUCK = textwrap.dedent("""
    import signal, sys, time
    import torch.distributed as dist
    from atkd_lite import cli, distributed
    rank, port = int(sys.argv[1]), sys.argv[2]
    signal.signal(signal.SIGTERM, cli._on_sigterm)  # as the command line does
    dist.init_process_group("gloo", rank=rank, world_size=2,
                            init_method=f"tcp://127.0.0.1:{port}")
    print("joined", flush=True)
    if rank == 0:
        time.sleep(120)  # never reaches the barrier
    with distributed.signal_watchdog("rank 1", grace=1.0):
        dist.barrier()  # waits in C++ for rank 0: Python's handlers cannot run
""")


def test_a_rank_stuck_in_a_collective_still_ends_on_sigterm(tmp_path):
    import signal
    import time

    script = tmp_path / "stuck.py"
    script.write_text(STUCK)
    port = str(_free_port())
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(script), str(r), port], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for r in (0, 1)]
    try:
        import select

        ready, _, _ = select.select([procs[1].stdout], [], [], 60)  # never wait forever
        assert ready and procs[1].stdout.readline().strip() == "joined"
        time.sleep(1.0)  # inside the barrier
        procs[1].send_signal(signal.SIGTERM)
        start = time.monotonic()
        code = procs[1].wait(timeout=30)
        assert time.monotonic() - start < 10
        assert code == 128 + signal.SIGTERM
        assert "rank 1: SIGTERM received while waiting for the other processes" in \
            procs[1].stderr.read()
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_the_group_timeout_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("ATKD_LITE_DIST_TIMEOUT", raising=False)
    assert distributed._timeout().total_seconds() == distributed.DEFAULT_TIMEOUT_S
    monkeypatch.setenv("ATKD_LITE_DIST_TIMEOUT", "90")
    assert distributed._timeout().total_seconds() == 90
    for bad in ("0", "soon", "-5"):
        monkeypatch.setenv("ATKD_LITE_DIST_TIMEOUT", bad)
        with pytest.raises(distributed.DistributedError, match="ATKD_LITE_DIST_TIMEOUT"):
            distributed._timeout()
