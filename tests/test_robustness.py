"""Nothing lost, nothing silently wrong: one probe per defect of issue 20.

Each test reproduces a defect as a careful (or unlucky) user met it — bad arguments,
damaged files, signals, two processes at once, no network — and checks the behaviour the
package promises instead. The command-line probes are in ``test_cli_errors.py``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import atkd_lite as ak
from atkd_lite import checkpoints
from atkd_lite.cache import CacheMismatchError, TeacherCache
from atkd_lite.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from atkd_lite.data import DatasetUnavailableError, DeviceBatcher, ImageSet, make_batches
from atkd_lite.device import seed_everything
from atkd_lite.engine import History, distill, fit, make_optimizer, train_model
from atkd_lite.experiments.results import (
    ExperimentResults,
    claim_output_dir,
    load_results,
    release_output_dir,
    results_digest,
)
from atkd_lite.files import (
    FileLock,
    LockHeldError,
    atomic_write,
    check_output_file,
    sweep_temp_files,
)
from atkd_lite.losses import kd_loss

ROOT = Path(__file__).resolve().parents[1]


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture(scope="module")
def tiny():
    train = ak.load_dataset("mnist5k", "train").per_class(3)
    test = ak.load_dataset("mnist5k", "test").per_class(2)
    return train, test


# ---------------------------------------------------------------------------------------
# 1. saving destroys what is at the output path

@pytest.mark.parametrize("kind", ["device", "fifo", "folder", "trailing-separator"])
def test_atomic_write_refuses_what_is_not_a_regular_file(tmp_path, kind):
    if kind == "device":
        target, check = Path("/dev/null"), lambda p: stat.S_ISCHR(p.stat().st_mode)
    elif kind == "fifo":
        target = tmp_path / "pipe"
        os.mkfifo(target)
        check = lambda p: stat.S_ISFIFO(p.stat().st_mode)  # noqa: E731
    elif kind == "folder":
        target = tmp_path / "out"
        target.mkdir()
        check = lambda p: p.is_dir()  # noqa: E731
    else:
        target = str(tmp_path / "newdir") + os.sep  # a string: Path() drops the separator
        check = lambda p: not Path(p).exists()  # noqa: E731
    with pytest.raises((ValueError, IsADirectoryError), match="regular file|folder"):
        atomic_write(target, b"data")
    assert check(target)  # untouched: still a device / FIFO / folder / nothing
    assert _temps(tmp_path) == []  # no temporary file in the parent either


def test_atomic_write_follows_a_symlink_and_keeps_it(tmp_path):
    real = tmp_path / "real.pt"
    real.write_bytes(b"old")
    link = tmp_path / "link.pt"
    link.symlink_to(real)
    assert atomic_write(link, b"new") == real
    assert link.is_symlink() and real.read_bytes() == b"new"


def test_written_files_get_ordinary_permissions(tmp_path):
    # mkstemp creates 0600 files: a checkpoint others cannot read would be a surprise
    mask = os.umask(0o022)
    os.umask(mask)
    new = atomic_write(tmp_path / "new.pt", b"x")
    assert stat.S_IMODE(new.stat().st_mode) == 0o666 & ~mask
    os.chmod(new, 0o640)
    atomic_write(new, b"y")  # replacing keeps the file's own permissions
    assert stat.S_IMODE(new.stat().st_mode) == 0o640


def test_concurrent_threads_never_collide(tmp_path):
    target = tmp_path / "ckpt.bin"
    errors = []

    def writer(k):
        try:
            for j in range(6):
                atomic_write(target, f"{k}-{j}".encode() * 1000)
        except Exception as err:  # noqa: BLE001 - the test reports any failure
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    text = target.read_bytes().decode()
    assert len(set(text.split(text[:3])[1:])) <= 1  # one writer's whole content
    assert _temps(tmp_path) == []


def test_fsync_before_rename_and_cleanup_on_error(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace",
                        lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    target = tmp_path / "x.pt"
    atomic_write(target, lambda tmp: torch.save({"a": 1}, tmp))
    assert events[:2] == ["fsync", "replace"]
    monkeypatch.undo()

    def broken(tmp):
        Path(tmp).write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, broken)
    assert torch.load(target) == {"a": 1} and _temps(tmp_path) == []


def test_a_killed_writers_leftover_is_swept(tmp_path):
    target = tmp_path / "teacher.pt"
    script = textwrap.dedent(f"""
        import time
        from atkd_lite.runtime import atomic_write
        def slow(tmp):
            open(tmp, "wb").write(b"x" * 4096)
            print("writing", flush=True)
            time.sleep(60)
        atomic_write({str(target)!r}, slow)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            env=_env(), text=True)
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    (left,) = _temps(tmp_path)  # SIGKILL: nothing can clean up ...
    keep = tmp_path / "notes.tmp"  # not ours: never touched
    keep.write_text("mine")
    live = tmp_path / f".teacher.pt.{os.getpid()}@somehost.abcd1234.tmp"  # other host
    live.write_text("in progress")
    assert sweep_temp_files(tmp_path) == []  # ... and a fresh one may be a live writer's
    old = time.time() - 120
    os.utime(tmp_path / left, (old, old))
    atomic_write(target, b"done")  # the next write of the file sweeps the dead leftover
    assert target.read_bytes() == b"done"
    assert _temps(tmp_path) == sorted([live.name, keep.name])
    os.utime(live, (old - 2 * 86400, old - 2 * 86400))
    assert sweep_temp_files(tmp_path) == [live]  # a day old: gone, whoever wrote it


# ---------------------------------------------------------------------------------------
# 2. a damaged checkpoint loads silently

def _damage_largest_tensor(path: Path, state: dict) -> None:
    name = max(state, key=lambda k: state[k].numel())
    raw = state[name].contiguous().numpy().tobytes()
    data = bytearray(path.read_bytes())
    start = data.find(raw[:256])
    assert start >= 0, "tensor bytes not found in the file"
    mid = start + len(raw) // 2
    data[mid:mid + 4096] = bytes(4096)  # 4 KiB of zeros inside the weights
    path.write_bytes(bytes(data))


def test_a_damaged_checkpoint_is_refused(tmp_path):
    model = ak.teacher_cnn()
    path = save_checkpoint(tmp_path / "t.pt", model, dataset="mnist5k")
    _damage_largest_tensor(path, model.state_dict())
    # torch itself loads the damaged file without a word: the digest is what catches it
    torch.load(path, weights_only=True)
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(path)


def _fake_train(calls):
    def train(model, train, test=None, epochs=1, **kw):
        calls.append(epochs)
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(0.5)  # a visible change, so the saved weights are "trained"
        hist = History()
        hist.append(epoch=1, loss=0.1, train_acc=0.9, test_acc=0.9, time_s=0.0)
        return hist

    return train


def test_pretrained_teacher_retrains_a_damaged_cached_teacher(tmp_path, monkeypatch,
                                                                 capsys):
    calls = []
    monkeypatch.setattr(checkpoints, "train_model", _fake_train(calls))
    model, _ = ak.pretrained_teacher(epochs=1, cache=tmp_path, progress=False)
    path = checkpoints.teacher_cache_path(epochs=1, cache=tmp_path)
    assert calls == [1] and path.exists()
    ak.pretrained_teacher(epochs=1, cache=tmp_path, progress=False)
    assert calls == [1]  # loaded, not trained
    _damage_largest_tensor(path, model.state_dict())
    again, meta = ak.pretrained_teacher(epochs=1, cache=tmp_path, progress=False)
    assert calls == [1, 1]
    assert "retraining the teacher" in capsys.readouterr().out
    load_checkpoint(path)  # the new file is whole


def test_a_damaged_teacher_cache_is_refused(tmp_path):
    data = ak.load_dataset("mnist5k", "val").per_class(2)
    cache = TeacherCache.build(ak.teacher_cnn().eval(), data, maps=("fma",), at=False,
                               progress=False, device="cpu")
    path = cache.save(tmp_path / "c.pt")
    raw = bytearray(path.read_bytes())
    maps = cache.maps("fma", torch.arange(len(data)))
    stored = (maps * 255).round().to(torch.uint8).numpy().tobytes()
    start = raw.find(stored[:200])
    assert start >= 0
    raw[start + 100:start + 400] = bytes(300)
    path.write_bytes(bytes(raw))
    with pytest.raises(CacheMismatchError, match="damaged"):
        TeacherCache.load(path)


# ---------------------------------------------------------------------------------------
# 6. wrapped models give wrong maps

def _ddp_group(tmp_path):
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0,
                                world_size=1)
    return dist


def test_wrapped_models_give_the_networks_maps(tmp_path):
    torch.manual_seed(0)
    net = ak.teacher_cnn().eval()
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        _, want = ak.ATCam(net)(x)
    sal = ak.saliency_map(net, x, target=[1, 2, 3])
    dist = _ddp_group(tmp_path)
    try:
        wrapped = {"DataParallel": nn.DataParallel(net),
                   "DDP": nn.parallel.DistributedDataParallel(net),
                   "compiled": torch.compile(net),
                   "DataParallel(compiled)": nn.DataParallel(torch.compile(net))}
        for name, model in wrapped.items():
            with torch.no_grad():
                _, got = ak.ATCam(model)(x)
            torch.testing.assert_close(got, want, msg=name)
            assert ak.ATCam(model).layer_names == net.atkd_capture_points()[:2] + \
                net.atkd_capture_points()[-2:], name
            torch.testing.assert_close(ak.saliency_map(model, x, target=[1, 2, 3]), sal,
                                       msg=name)
    finally:
        dist.destroy_process_group()


def test_distill_takes_a_wrapped_student(tiny):
    train, test = tiny
    torch.manual_seed(0)
    student = ak.student_cnn("tiny")
    before = {k: v.clone() for k, v in student.state_dict().items()}
    res = distill(ak.teacher_cnn().eval(), nn.DataParallel(student), train, test,
                  method="fma", epochs=1, batch_size=16, device="cpu", progress=False)
    assert res.student is student
    assert any(not torch.equal(before[k], v) for k, v in student.state_dict().items())


# ---------------------------------------------------------------------------------------
# 7. NaN and infinity pass silently

@pytest.mark.parametrize("T", [float("nan"), float("inf"), 1e30, 0.0, -1.0])
def test_kd_loss_refuses_a_non_finite_or_absurd_temperature(T):
    z = torch.randn(2, 3)
    with pytest.raises(ValueError, match="temperature T"):
        kd_loss(z, z.flip(0), T=T)


@pytest.mark.parametrize("p", [float("nan"), float("inf"), 1000, 0, -1])
def test_atcam_refuses_a_non_finite_or_overflowing_power(p):
    with pytest.raises(ValueError, match="p must be a positive number up to 16"):
        ak.ATCam(ak.teacher_cnn(), p=p)


def test_nan_and_infinite_images_are_rejected():
    net = ak.teacher_cnn().eval()
    for bad in (torch.full((2, 1, 28, 28), float("nan")), torch.rand(2, 1, 28, 28)):
        bad[0, 0, 3, 3] = float("inf")
        with pytest.raises(ValueError, match="NaN or infinite"):
            ak.saliency_map(net, bad)
        with pytest.raises(ValueError, match="NaN or infinite"):
            ak.ATCam(net)(bad)


def test_distill_refuses_an_absurd_temperature_before_training(tiny):
    train, test = tiny
    with pytest.raises(ValueError, match="T must be in"):
        distill(ak.teacher_cnn(), ak.student_cnn("tiny"), train, test, method="kd",
                T=1e30, epochs=1, device="cpu", progress=False)


def test_a_non_finite_loss_stops_training_naming_epoch_and_term(tiny):
    train, _ = tiny
    model = ak.student_cnn("tiny")
    batches = make_batches(train, 8, device="cpu")
    opt, sched = make_optimizer(model, 1e-3, 0.0, 2 * len(batches))

    def step(x, y, idx):
        logits = model(x)
        ce = nn.functional.cross_entropy(logits, y)
        kd = ce * float("inf")  # a term that overflows
        return logits, {"loss": ce + kd, "loss_ce": ce, "loss_kd": kd}

    with pytest.raises(FloatingPointError, match=r"epoch 1: .*loss_kd"):
        fit(step, model, batches, 2, opt, sched, device=torch.device("cpu"), progress=False)


# ---------------------------------------------------------------------------------------
# 8. inputs reach torch unchecked

@pytest.mark.parametrize("dtype, hint", [(torch.uint8, r"float\(\) / 255"),
                                         (torch.float64, r"to\(torch.float32\)"),
                                         (torch.float16, r"to\(torch.float32\)")])
def test_input_dtype_is_checked_against_the_model(dtype, hint):
    net = ak.teacher_cnn().eval()
    x = (torch.rand(2, 1, 28, 28) * 255).to(dtype)
    with pytest.raises(TypeError, match=hint):
        ak.ATCam(net)(x)
    with pytest.raises(TypeError, match=hint):
        ak.saliency_map(net, x)
    # and the fix the message gives works
    good = x.float() / 255 if dtype == torch.uint8 else x.to(torch.float32)
    assert ak.ATCam(net)(good)[1].shape == (2, 28, 28)


def test_float64_model_and_input_still_work():
    net = ak.teacher_cnn().double().eval()
    _, maps = ak.ATCam(net)(torch.rand(2, 1, 28, 28, dtype=torch.float64))
    assert maps.dtype == torch.float64


def test_images_too_small_for_the_network(tiny):
    net = ak.teacher_cnn().eval()
    with pytest.raises(ValueError, match=r"cannot take images shaped \(1, 2, 2\)"):
        ak.saliency_map(net, torch.rand(2, 1, 2, 2))
    small = ImageSet(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.arange(4) % 2,
                     classes=["a", "b"])
    with pytest.raises(ValueError, match="cannot take the training images"):
        distill(ak.teacher_cnn(num_classes=2), ak.student_cnn("tiny", num_classes=2), small,
                epochs=1, device="cpu", progress=False)


def test_imageset_labels_must_be_integer_classes_in_range():
    images = torch.zeros(3, 1, 4, 4, dtype=torch.uint8)
    with pytest.raises(TypeError, match="integer class indices"):
        ImageSet(images, torch.tensor([0.0, 1.7, 2.0]))
    with pytest.raises(ValueError, match=r"lie in \[0, 10\].*\[0, 9\]"):
        ImageSet(images, torch.tensor([0, 3, 10]))
    with pytest.raises(ValueError, match=r"lie in \[-2, 1\]"):
        ImageSet(images, torch.tensor([-2, 0, 1]))
    # -1 is the one negative label allowed: UNLABELLED, an image without a label
    assert ImageSet(images, torch.tensor([-1, 0, 1])).labels.tolist() == [-1, 0, 1]
    assert ImageSet(images, torch.tensor([0, 1, 9], dtype=torch.int32)).labels.dtype == torch.long


@pytest.mark.parametrize("n", [-1, 0, 2.5, None])
def test_per_class_needs_a_positive_integer(n):
    data = ak.load_dataset("mnist5k", "val")
    with pytest.raises(ValueError, match="images per class"):
        data.per_class(n)


def test_counts_seeds_and_names_are_checked(tiny):
    train, test = tiny
    with pytest.raises(ValueError, match="augment must be an integer >= 0"):
        make_batches(train, 8, augment=-3)
    with pytest.raises(ValueError, match="augment must be an integer >= 0"):
        DeviceBatcher(train, 8, augment=-1)
    with pytest.raises(ValueError, match="seed must be an integer"):
        DeviceBatcher(train, 8, seed=None)
    with pytest.raises(ValueError, match="seed must be an integer"):
        seed_everything(None)
    with pytest.raises(ValueError, match="epochs must be an integer"):
        train_model(ak.student_cnn("tiny"), train, epochs=1.5, device="cpu", progress=False)
    with pytest.raises(ValueError, match="epochs must be an integer"):
        distill(ak.teacher_cnn(), ak.student_cnn("tiny"), train, epochs=2.0, device="cpu",
                progress=False)
    with pytest.raises(ValueError, match="seed must be an integer"):
        distill(ak.teacher_cnn(), ak.student_cnn("tiny"), train, seed=None, device="cpu",
                progress=False)
    with pytest.raises(TypeError, match="dataset name must be a string"):
        ak.load_dataset(None)


class _WorkStarted(BaseException):
    """Raised by a stand-in for the expensive part: argument checks came too late."""


@pytest.mark.parametrize("kwargs, match", [({"epochs": 0}, "epochs"),
                                           ({"seeds": []}, "seeds is empty"),
                                           ({"methods": []}, "methods is empty"),
                                           ({"seeds": [0, -1]}, "seed"),
                                           ({"alpha": 2.0}, "alpha")])
def test_reproduce_refuses_empty_or_zero_settings_before_work(kwargs, match, monkeypatch,
                                                                tmp_path):
    from atkd_lite.experiments import lowdata

    def no_work(*a, **k):
        raise _WorkStarted

    monkeypatch.setattr(lowdata, "prepare_experiment", no_work)
    with pytest.raises(ValueError, match=match):
        lowdata.reproduce(output_dir=tmp_path / "r", **kwargs)


# ---------------------------------------------------------------------------------------
# 9. the download deadline is per socket operation, not per call

@pytest.fixture
def silent_server():
    """A TCP server on 127.0.0.1 that accepts every connection and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    held, stop = [], threading.Event()

    def serve():
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.getsockname()[1]}/"
    stop.set()
    t.join()
    for c in held:
        c.close()
    srv.close()


def test_a_silent_server_fails_the_whole_load_by_the_deadline(silent_server, tmp_path,
                                                                monkeypatch):
    pytest.importorskip("torchvision")
    from torchvision.datasets import MNIST

    # three https mirrors that accept and never answer: the TLS handshake times out, and
    # torchvision tries the next mirror, so per socket operation that is three timeouts
    # for the first file alone
    monkeypatch.setattr(MNIST, "mirrors", [silent_server.replace("http:", "https:")] * 3)
    t0 = time.monotonic()
    with pytest.raises(DatasetUnavailableError, match=r"within 1 s.*mnist5k"):
        ak.load_dataset("mnist", "train", root=tmp_path, timeout=1.0)
    elapsed = time.monotonic() - t0
    assert elapsed < 2.5, f"took {elapsed:.1f} s for a 1 s deadline"
    assert socket.getdefaulttimeout() is None  # the global default is restored


# ---------------------------------------------------------------------------------------
# 10. damaged results/cache structure gives raw errors

def _results_blob():
    blob = {"format": "atkd_lite.results/1", "settings": {"epochs": 1}, "teacher": {},
            "provenance": {}, "runs": [{"method": "fma", "seed": 0, "test_acc": 0.9,
                                        "parameters": 10, "time_per_epoch_s": 0.1,
                                        "history": []}]}
    blob["digest"] = results_digest(blob)
    return blob


@pytest.mark.parametrize("damage, match", [
    (lambda b: b.pop("settings"), "settings"),
    (lambda b: b.update(runs={"a": 1}), "runs"),
    (lambda b: b["runs"][0].pop("test_acc"), "test_acc"),
    (lambda b: b["runs"].append(3), "run 1"),
])
def test_damaged_results_give_a_clear_error(tmp_path, damage, match):
    blob = _results_blob()
    assert load_results(_write_json(tmp_path, blob)).runs  # whole: loads
    damage(blob)
    with pytest.raises(ValueError, match=f"damaged.*{match}"):
        load_results(_write_json(tmp_path, blob))


def _write_json(folder: Path, blob) -> Path:
    path = folder / "results.json"
    path.write_text(json.dumps(blob))
    return path


def test_binary_results_file_gives_a_clear_error(tmp_path):
    (tmp_path / "results.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_results(tmp_path)


@pytest.mark.parametrize("damage, match", [
    (lambda b: b["maps"].update(fma=b["maps"]["fma"][:3]), "'fma' maps are"),
    (lambda b: b.pop("logits"), "logits"),
    (lambda b: b.update(at=b["at"][:1]), "AT tensors"),
    (lambda b: b["meta"].update(length="ten"), "length"),
])
def test_a_cache_with_a_broken_structure_is_refused_on_load(tmp_path, damage, match):
    data = ak.load_dataset("mnist5k", "val").per_class(1)
    cache = TeacherCache.build(ak.teacher_cnn().eval(), data, maps=("fma",), progress=False,
                               device="cpu")
    path = cache.save(tmp_path / "c.pt")
    TeacherCache.load(path)  # whole: loads
    blob = torch.load(path, weights_only=True)
    damage(blob)
    torch.save(blob, path)
    with pytest.raises(CacheMismatchError, match=match):
        TeacherCache.load(path)


def test_a_checkpoint_with_a_broken_state_dict_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", ak.student_cnn("tiny"))
    blob = torch.load(path, weights_only=True)
    blob["state_dict"]["features.0.0.weight"] = [1, 2, 3]
    torch.save(blob, path)
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(path)


# ---------------------------------------------------------------------------------------
# 11. two processes on one cache both train; two writers of one results folder

def test_concurrent_pretrained_teacher_calls_train_once(tmp_path):
    log = tmp_path / "trained.log"
    script = textwrap.dedent(f"""
        import sys, time, torch
        from atkd_lite import checkpoints
        from atkd_lite.engine import History
        def slow_train(model, *a, **k):
            with open({str(log)!r}, "a") as fh:
                fh.write("trained\\n")
            time.sleep(1.5)
            h = History(); h.append(epoch=1, loss=0.1, test_acc=0.5, time_s=0.0)
            return h
        checkpoints.train_model = slow_train
        model, meta = checkpoints.pretrained_teacher(epochs=1, cache={str(tmp_path)!r},
                                                     progress=False, device="cpu")
        print("acc", meta["test_acc"])
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=_env())
             for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outs]
    assert log.read_text().count("trained") == 1
    assert all("acc 0.5" in o[0] for o in outs)
    assert any("another process is training this teacher" in o[0] for o in outs)


def test_a_results_folder_has_one_writer(tmp_path):
    out = tmp_path / "results"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from atkd_lite.experiments.results import claim_output_dir
            claim_output_dir({str(out)!r}); print("claimed", flush=True); time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert holder.stdout.readline().strip() == "claimed"
        res = ExperimentResults(settings={"student_size": "tiny"},
                                runs=_results_blob()["runs"])
        with pytest.raises(LockHeldError, match="another process .* is writing results"):
            res.save(out)
        assert not (out / "results.json").exists()
    finally:
        holder.kill()
        holder.wait()
    res.save(out)  # the writer is gone: the lock went with it
    assert load_results(out).runs == res.runs
    release_output_dir(out)


def test_file_lock_is_exclusive_between_processes(tmp_path):
    lock_path = tmp_path / ".x.lock"
    with FileLock(lock_path):
        code = ("import sys; from atkd_lite.runtime import FileLock, LockHeldError\n"
                f"try: FileLock({str(lock_path)!r}).acquire(blocking=False)\n"
                "except LockHeldError as e: print('held', e)")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=_env(), timeout=60).stdout
    assert out.startswith("held") and str(os.getpid()) in out


def test_claiming_checks_the_folder_before_any_work(tmp_path):
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    with pytest.raises(NotADirectoryError, match="not a folder"):
        claim_output_dir(afile)
    with pytest.raises(NotADirectoryError):
        claim_output_dir(afile / "sub")
    with pytest.raises(IsADirectoryError):
        check_output_file(tmp_path)


# ---------------------------------------------------------------------------------------
# 12. same seed, same result on the CPU: at the same thread count (documented, recorded)

def test_same_seed_same_weights_at_the_same_thread_count(tiny, tmp_path):
    train, _ = tiny
    threads = torch.get_num_threads()

    def run(n):
        torch.set_num_threads(n)
        seed_everything(3)
        model = ak.student_cnn("tiny")
        train_model(model, train, epochs=1, batch_size=8, device="cpu", seed=3,
                    progress=False)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    try:
        for n in sorted({1, threads}):
            assert torch.equal(run(n), run(n))
        torch.set_num_threads(1)
        meta = load_checkpoint(save_checkpoint(tmp_path / "m.pt", ak.student_cnn("tiny")))[1]
        assert meta["torch_threads"] == 1  # the condition of the claim is recorded
    finally:
        torch.set_num_threads(threads)
    assert "same number of torch threads" in " ".join(seed_everything.__doc__.split())


def test_check_output_file_names_the_option_and_creates_nothing(tmp_path):
    with pytest.raises(ValueError, match="^--output: /dev/full exists and is not a regular"):
        check_output_file("/dev/full", "--output")
    target = tmp_path / "a" / "b" / "c.pt"
    assert check_output_file(target) == target and not (tmp_path / "a").exists()
    np.testing.assert_equal(stat.S_ISCHR(os.stat("/dev/full").st_mode), True)
