"""Data parallelism past one device: ``torch.distributed`` under ``torchrun``.

Started by ``torchrun`` (``torchrun --nproc_per_node 2 -m atkd_lite distill ...``), every
process is one *rank* of a job: the same program on its own device and its own share of
the data. This module is the package's only contact with that machinery:

- :func:`setup` joins the job from the environment ``torchrun`` sets (``RANK``,
  ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``): ``nccl`` on CUDA,
  ``gloo`` on the CPU, one GPU per process (``cuda:LOCAL_RANK``). Outside ``torchrun`` it
  does nothing and everything runs in one process as before.
- :func:`rank`, :func:`world_size`, :func:`is_main` say who we are; only the main
  process (rank 0) writes files and shows progress bars.
- :func:`check_same_settings` compares a hash of each rank's settings, so ranks started
  with different arguments stop with a clear error instead of training on nonsense.
- :func:`session` (what ``atkd-lite`` uses) tears the process group down afterwards, on
  success and on error; a process group started by the library itself is torn down when
  the process exits.

The training loop (:func:`atkd_lite.loop.fit`) wraps the trainable network in
:class:`~torch.nn.parallel.DistributedDataParallel` (the frozen teacher is left out of
it), gives every rank a strided share of each global batch, and all-reduces the epoch's
figures, so that every rank reports the same history.

Examples::

    >>> from atkd_lite import distributed
    >>> distributed.world_size(), distributed.rank(), distributed.is_main()  # one process
    (1, 0, True)
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import hashlib
import json
import os
import select
import signal
import sys
import threading
from collections.abc import Iterator

import torch
import torch.distributed as dist

from atkd_lite.device import get_device

__all__ = [
    "BACKENDS",
    "DEFAULT_TIMEOUT_S",
    "DistributedError",
    "all_reduce",
    "backend",
    "barrier",
    "broadcast_object",
    "check_same_settings",
    "is_main",
    "launched",
    "rank",
    "session",
    "settings_hash",
    "setup",
    "signal_watchdog",
    "teardown",
    "world_size",
]

#: The process-group backends this package uses; "auto" is nccl on CUDA, gloo elsewhere.
BACKENDS = ("auto", "nccl", "gloo")

_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")

# set when setup() started the process group (and so must end it)
_OWNED = {"group": False, "atexit": False}


class DistributedError(RuntimeError):
    """The ranks of a job disagree or cannot run together (the message says how to fix it)."""


def launched() -> bool:
    """True in a process started by ``torchrun`` (its environment variables are set)."""
    return all(k in os.environ for k in _ENV)


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if _active() else 0


def world_size() -> int:
    """The number of processes in the job (1 without a process group)."""
    return dist.get_world_size() if _active() else 1


def is_main() -> bool:
    """True on rank 0, the process that writes files and shows progress."""
    return rank() == 0


def backend() -> str | None:
    """The process group's backend (``"gloo"``, ``"nccl"``), None without one."""
    return str(dist.get_backend()) if _active() else None


def _choose_backend(device: torch.device, requested: str | None) -> str:
    requested = (requested or os.environ.get("ATKD_LITE_DIST_BACKEND") or "auto").lower()
    if requested not in BACKENDS:
        raise ValueError(f"unknown process-group backend {requested!r}; use one of "
                         f"{', '.join(BACKENDS)}")
    if requested == "auto":
        requested = "nccl" if device.type == "cuda" else "gloo"
    if requested == "nccl":
        if not torch.cuda.is_available() or not dist.is_nccl_available():
            raise DistributedError(
                "the nccl backend needs CUDA GPUs, and this machine has none (or torch was "
                "built without NCCL); use --dist-backend gloo (or auto) to run on the CPU")
        if device.type != "cuda":
            raise DistributedError(f"the nccl backend runs on CUDA devices, not {device}; "
                                   "use --device cuda, or the gloo backend on the CPU")
    elif requested == "gloo" and not dist.is_gloo_available():
        raise DistributedError("this torch build has no gloo backend; use nccl on CUDA GPUs")
    if device.type not in ("cpu", "cuda"):
        raise DistributedError(f"data parallelism runs on CUDA GPUs or the CPU, not on "
                               f"{device.type}; pass --device cpu or cuda")
    return requested


def _rank_device(device: torch.device) -> torch.device:
    if device.type != "cuda":
        return device
    local = int(os.environ.get("LOCAL_RANK", 0))
    count = torch.cuda.device_count()
    if local >= count:
        raise DistributedError(
            f"torchrun started process {local} on this machine but it has {count} GPU(s); "
            f"start at most {count} processes per machine (--nproc_per_node {count})")
    return torch.device("cuda", local)


def setup(device=None, backend: str | None = None) -> torch.device:
    """Join the ``torchrun`` job, if this process belongs to one; returns the device to use.

    Without ``torchrun`` this is :func:`~atkd_lite.device.get_device` and nothing else.
    Under ``torchrun`` the first call starts the process group (``nccl`` for CUDA,
    ``gloo`` for the CPU, or ``backend``/``$ATKD_LITE_DIST_BACKEND``) and every rank gets
    its own GPU, ``cuda:LOCAL_RANK``; later calls reuse the group. A group started here is
    torn down when the process exits; a group the caller started is left alone.

    Args:
        device: ``None``/``"auto"``, ``"cpu"``, ``"cuda"``, ... (as ``get_device``).
        backend (str, optional): ``"auto"``, ``"nccl"`` or ``"gloo"``.

    Returns:
        torch.device: this rank's device.

    Raises:
        DistributedError: a backend that cannot run here (nccl without CUDA), more
            processes on a machine than it has GPUs, an unsupported device.
    """
    dev = get_device(device)
    if _active():
        return _rank_device(dev) if dev.type == "cuda" else dev
    if not launched():
        return dev
    chosen = _choose_backend(dev, backend)
    dev = _rank_device(dev)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist.init_process_group(chosen, timeout=_timeout())
    _OWNED["group"] = True
    if not _OWNED["atexit"]:
        atexit.register(teardown)
        _OWNED["atexit"] = True
    return dev


#: seconds a collective operation may wait for the other ranks, unless
#: ``$ATKD_LITE_DIST_TIMEOUT`` says otherwise (torch's own default for gloo)
DEFAULT_TIMEOUT_S = 1800


def _timeout() -> datetime.timedelta:
    """The process group's timeout: ``$ATKD_LITE_DIST_TIMEOUT`` seconds, else
    :data:`DEFAULT_TIMEOUT_S` (a rank may legitimately wait that long, e.g. while another
    job trains the teacher they share).

    Raises:
        DistributedError: a value that is not a positive number of seconds.
    """
    text = os.environ.get("ATKD_LITE_DIST_TIMEOUT", str(DEFAULT_TIMEOUT_S))
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise DistributedError(f"ATKD_LITE_DIST_TIMEOUT must be a positive number of "
                               f"seconds, got {text!r}")
    return datetime.timedelta(seconds=seconds)


@contextlib.contextmanager
def signal_watchdog(who: str, grace: float = 5.0,
                    signums: tuple = (signal.SIGTERM, signal.SIGINT)) -> Iterator[None]:
    """Make SIGTERM and SIGINT end this process even while it waits in a collective.

    Python runs its signal handlers between bytecodes, so a rank blocked inside a
    collective operation (waiting for a rank that never comes) never sees them: it
    ignores ``kill`` and Ctrl-C until the group's timeout. Inside this block the
    interpreter's low-level handler also writes each signal to a pipe
    (``signal.set_wakeup_fd``), which a watcher thread reads: if the process has not
    left the block ``grace`` seconds after the signal (its own handler had no chance to
    run), the watcher says so on stderr and ends the process (exit status 128 + signal).
    A process that unwinds in time is not touched. Outside the main thread, a no-op.

    Args:
        who (str): how the message names the process (e.g. ``"atkd-lite distill (rank 1
            of 2)"``).
        grace (float): seconds given to the normal handlers first.
        signums (tuple): the signals watched (they need a Python-level handler, as
            SIGINT's default and the CLI's SIGTERM handler are).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    old_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    left = threading.Event()

    def watch() -> None:
        while not left.is_set():
            ready, _, _ = select.select([read_fd], [], [], 0.2)
            if not ready:
                continue
            got = [n for n in os.read(read_fd, 64) if n in signums]
            if got and not left.wait(grace):
                name = signal.Signals(got[-1]).name
                print(f"{who}: {name} received while waiting for the other processes (a "
                      f"collective operation did not return within {grace:g} s); stopping "
                      "now", file=sys.stderr, flush=True)
                os._exit(128 + got[-1])

    watcher = threading.Thread(target=watch, name="atkd-lite-signal-watchdog", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        left.set()
        signal.set_wakeup_fd(old_fd)
        watcher.join()
        os.close(read_fd)
        os.close(write_fd)


def teardown() -> None:
    """End the process group if :func:`setup` started it (a no-op otherwise)."""
    if _OWNED["group"] and _active():
        with contextlib.suppress(Exception):  # ending after a failure must not fail
            dist.destroy_process_group()
    _OWNED["group"] = False


@contextlib.contextmanager
def session(device=None, backend: str | None = None) -> Iterator[torch.device]:
    """:func:`setup` for a block, and :func:`teardown` after it, on success and on error.

    Yields:
        torch.device: this rank's device.
    """
    owned_before = _OWNED["group"]
    try:
        yield setup(device, backend)
    finally:
        if not owned_before:
            teardown()


def barrier() -> None:
    """Wait for every rank (a no-op in one process)."""
    if world_size() > 1:
        dist.barrier()


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """Sum (or ``"max"``) ``tensor`` over the ranks, in place; returns it (one process:
    unchanged)."""
    if world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return tensor


def broadcast_object(obj, src: int = 0):
    """Rank ``src``'s ``obj`` on every rank (picklable objects; one process: ``obj``)."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def settings_hash(settings) -> str:
    """A short SHA-1 of JSON-able settings (keys sorted; other objects by ``repr``)."""
    text = json.dumps(settings, sort_keys=True, default=repr)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def check_same_settings(settings, what: str = "settings") -> None:
    """Raise :class:`DistributedError` on every rank unless all ranks have equal ``settings``.

    Every rank's hash is gathered (so all ranks see the disagreement and stop together,
    none is left waiting in a collective). A no-op in one process.

    Args:
        settings: JSON-able description of what this rank is about to do.
        what (str): how to name it in the message.
    """
    if world_size() == 1:
        return
    mine = settings_hash(settings)
    hashes: list = [None] * world_size()
    dist.all_gather_object(hashes, mine)
    if len(set(hashes)) > 1:
        groups: dict[str, list[int]] = {}
        for r, h in enumerate(hashes):
            groups.setdefault(h, []).append(r)
        detail = "; ".join(f"ranks {g} have {h}" for h, g in groups.items())
        raise DistributedError(
            f"the {world_size()} processes were started with different {what} ({detail}); "
            "start every process with the same arguments and data")
