"""Files that are never half written, and work that is never done twice at once.

:func:`atomic_write` writes a file so that a reader never sees half of it
(:func:`check_output_file` / :func:`check_output_dir` check a path before any work,
:func:`sweep_temp_files` removes a killed writer's leftovers), :func:`tensor_digest`
fingerprints tensors, and :class:`FileLock` keeps two processes from doing the same work
at once. :func:`cache_dir` is where the package keeps what it makes once and reuses
(teacher checkpoints, teacher maps, downloaded datasets).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import socket
import stat
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

try:
    import fcntl
except ImportError:  # Windows: FileLock degrades to a no-op with a warning
    fcntl = None


__all__ = [
    "CACHE_ENV",
    "FileLock",
    "LockHeldError",
    "atomic_write",
    "atomic_write_files",
    "cache_dir",
    "check_output_dir",
    "check_output_file",
    "sweep_temp_files",
    "tensor_digest",
]

#: the environment variable that names the cache directory
CACHE_ENV = "ATKD_LITE_CACHE"


def cache_dir(path: str | os.PathLike | None = None, create: bool = True) -> Path:
    """The cache directory (``path``, else ``$ATKD_LITE_CACHE``, else ``~/.cache/atkd_lite``).

    Raises:
        PermissionError: if the directory cannot be created or written, with the
            environment variable to set instead.
    """
    chosen = path or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "atkd_lite"
    chosen = Path(chosen).expanduser()
    if create:
        try:
            chosen.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=chosen, prefix=".write-test-"):
                pass
        except OSError as err:
            raise PermissionError(
                f"the cache directory {str(chosen)!r} is not writable ({err.strerror or err}); "
                f"set the environment variable {CACHE_ENV} to a writable folder of your "
                f"own, e.g. export {CACHE_ENV}=$HOME/.cache/atkd_lite (not a shared "
                "folder such as /tmp, where another user could plant files)"
            ) from err
    return chosen


# ---------------------------------------------------------------------------------------
# files

def _host_tag() -> str:
    """This machine's name as it appears in temporary-file names (letters, digits, -)."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"


#: ``.{target name}.{pid}@{host}.{random}.tmp``: who wrote a temporary file, so a sweep can
#: tell a dead writer's leftovers from a live writer's work in progress
_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)@(?P<host>[A-Za-z0-9-]*)\.[^.]+\.tmp$")

#: a dead writer's temporary file is removed once it is this old (seconds); a live
#: writer's file changes while it writes, so its modification time is recent
_DEAD_WRITER_AGE_S = 60.0


def _read_umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; done once, at import
    os.umask(mask)
    return mask


#: the permissions of a newly created file (mkstemp's own are 0600)
_NEW_FILE_MODE = 0o666 & ~_read_umask()


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name != "posix":  # os.kill(pid, 0) would *terminate* the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, another user's
        return True
    return True


def sweep_temp_files(folder, max_age_s: float = 24 * 3600, name: str | None = None) -> list[Path]:
    """Remove the temporary files that :func:`atomic_write` left behind in ``folder``.

    A writer killed by SIGKILL (or a power cut) cannot clean up after itself. A leftover
    ``.NAME.PID@HOST.XXXX.tmp`` is removed when its writer is known to be dead (same host,
    no such process, untouched for a minute) or when it is older than ``max_age_s``
    (writers on other machines sharing the folder). Other files are never touched.

    Args:
        folder: the folder to sweep (not recursive); a missing folder is fine.
        max_age_s (float): remove any leftover at least this old (default: one day).
        name (str, optional): only the leftovers of this target file name.

    Returns:
        list of Path: the files removed.

    Examples::

        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = atomic_write(folder / "a.txt", b"hello")
        >>> sweep_temp_files(folder), sorted(p.name for p in folder.iterdir())
        ([], ['a.txt'])
    """
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    now, host, removed = time.time(), _host_tag(), []
    for entry in entries:
        m = _TEMP_RE.match(entry.name)
        if m is None or (name is not None and m["name"] != name):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        age = now - st.st_mtime
        dead = (m["host"] == host and age > _DEAD_WRITER_AGE_S
                and not _pid_alive(int(m["pid"])))
        if dead or age > max_age_s:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def _first_existing(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _check_creatable(folder: Path, what: str) -> None:
    """``folder`` exists as a writable folder, or can be created (its first existing
    ancestor is a writable folder)."""
    existing = _first_existing(folder)
    if not existing.is_dir():
        raise NotADirectoryError(f"{what}: {existing} is a file, so the folder {folder} "
                                 "cannot be created; choose another path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"{what}: the folder {existing} is not writable; choose "
                              "another path")


def check_output_file(path, what: str = "output") -> Path:
    """Check, before any work, that a file can be written at ``path``; returns the target.

    The rules of :func:`atomic_write`: a path ending in a separator or naming a folder,
    and an existing target that is not a regular file (a device, a FIFO, a socket), are
    refused; a symlink to a regular file (or a dangling one) is followed; the folder must
    exist and be writable, or be creatable. Nothing is created.

    Args:
        path: the file to be written.
        what (str): how to name it in messages (e.g. ``"--output"``).

    Returns:
        Path: the file that will be written (the symlink's target for a symlink).

    Raises:
        IsADirectoryError: the path names a folder.
        ValueError: the target exists and is not a regular file.
        NotADirectoryError, PermissionError: the folder cannot be created or written.

    Examples::

        >>> check_output_file("/dev/null")
        Traceback (most recent call last):
        ...
        ValueError: output: /dev/null exists and is not a regular file (a device, a FIFO or a socket); refusing to replace it: choose another path
    """
    text = os.fspath(path)
    path = Path(text)
    if text.endswith(os.sep) or (os.altsep and text.endswith(os.altsep)):
        raise IsADirectoryError(f"{what}: {text} names a folder; give a file name, e.g. "
                                f"{path / 'out.pt'}")
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    if target.exists():
        mode = target.stat().st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(f"{what}: {path} is a folder; give a file name inside "
                                    f"it, e.g. {path / 'out.pt'}")
        if not stat.S_ISREG(mode):
            raise ValueError(f"{what}: {path} exists and is not a regular file (a device, a "
                             "FIFO or a socket); refusing to replace it: choose another path")
    _check_creatable(target.parent if str(target.parent) else Path("."), what)
    return target


def check_output_dir(path, what: str = "output folder") -> Path:
    """Check, before any work, that files can be written into the folder ``path``.

    Raises:
        NotADirectoryError: ``path`` (or a parent) exists and is not a folder.
        PermissionError: it cannot be created or written.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{what}: {path} exists and is not a folder; choose a "
                                 "folder (new or existing) for the results")
    _check_creatable(path, what)
    return path


def tensor_digest(tensors: dict[str, torch.Tensor] | list[torch.Tensor]) -> str:
    """SHA-256 of tensors' names, dtypes, shapes and bytes (detects damaged files).

    torch does not verify the CRCs of the zip records it reads, so a flipped block inside
    a tensor would otherwise load silently.
    """
    items = tensors.items() if isinstance(tensors, dict) else enumerate(tensors)
    h = hashlib.sha256()
    for name, t in items:
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def atomic_write(path, write: Callable[[Path], object] | bytes) -> Path:
    """Write a file so that readers see the old content or the new, never a part.

    ``write`` is the bytes to write, or a function that writes the file at the temporary
    path it is given (e.g. ``lambda tmp: torch.save(obj, tmp)``). The temporary file is
    unique (``tempfile.mkstemp``, named ``.NAME.PID@HOST.XXXX.tmp``) and lives in the
    target's folder, is flushed to disk (``fsync``) and renamed over the target
    (``os.replace``, atomic on POSIX); it is removed if anything fails (and the folder's
    rename is flushed too). A writer killed outright cannot remove it: the next write of
    the same file sweeps such leftovers (:func:`sweep_temp_files`).

    Symlinks: a link to a regular file is followed, and the file it points to is
    replaced (the link stays). A target that exists but is not a regular file (a
    directory, a device such as ``/dev/null``, a FIFO, a socket) is refused before
    anything is written (:func:`check_output_file`).

    Returns:
        Path: the path written (the symlink's target for a symlink).

    Raises:
        IsADirectoryError: the target is a directory.
        ValueError: the target is another kind of non-regular file.

    Examples::

        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "notes.txt"
        >>> atomic_write(out, b"first") == out and out.read_bytes()
        b'first'
    """
    target = check_output_file(path)
    tmp = _write_temp(target, write)
    try:
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_folder(target.parent)
    return target


def atomic_write_files(files: dict, what: str = "output") -> list[Path]:
    """Write several files as one set: all or none of them change.

    Every target is checked first (:func:`check_output_file`), then every file is written
    to its temporary file and flushed, and only then are they renamed over their targets,
    one after another (renames do not run out of space). A failure while writing — a
    full disk, a target that is a folder — leaves every target as it was.

    Args:
        files (dict): path -> bytes (or a function that writes the temporary path).
        what (str): how to name the targets in messages.

    Returns:
        list of Path: the paths written.

    Examples::

        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp())
        >>> [p.name for p in atomic_write_files({out / "a.txt": b"1", out / "b.txt": b"2"})]
        ['a.txt', 'b.txt']
    """
    targets = [check_output_file(path, what) for path in files]
    temps: list[Path] = []
    try:
        for target, write in zip(targets, files.values()):
            temps.append(_write_temp(target, write))
        for tmp, target in zip(temps, targets):
            os.replace(tmp, target)
    except BaseException:
        for tmp in temps:
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise
    for folder in {t.parent for t in targets}:
        _fsync_folder(folder)
    return targets


def _write_temp(target: Path, write) -> Path:
    """``write`` into a new temporary file beside ``target``, flushed to disk, with the
    permissions the target has (or a new file would get); removed if anything fails."""
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_temp_files(target.parent, name=target.name)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}@{_host_tag()}.",
                                    suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        # mkstemp makes the file private (0600); give it the target's mode, or the mode a
        # new file gets under the process's umask
        if target.exists():
            mode = stat.S_IMODE(target.stat().st_mode)
        else:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        if isinstance(write, (bytes, bytearray, memoryview)):
            with os.fdopen(fd, "wb") as fh:
                fh.write(write)
                fh.flush()
                os.fsync(fh.fileno())
        else:
            os.close(fd)
            try:
                write(tmp)
            except RuntimeError as err:  # torch.save's zip writer on a full disk
                if "inline_container" not in str(err):
                    raise
                free = shutil.disk_usage(target.parent).free
                raise OSError(errno.ENOSPC, f"could not write {target}: the writer stopped "
                              f"part-way ({free:,} bytes free on its disk; the disk is "
                              "probably full); free some space or write elsewhere") from None
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        # the permissions the file had, or a new file's (not mkstemp's private 0600)
        mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else _NEW_FILE_MODE
        os.chmod(tmp, mode)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return tmp


def _fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (the rename) to disk where the platform allows it."""
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class LockHeldError(RuntimeError):
    """Another process holds a lock that was asked for without waiting."""


_LOCK_WARNED = False


class FileLock:
    """An exclusive lock between processes: ``fcntl.flock`` on a lock file.

    The lock file (created if needed, never deleted: deleting a lock file races with its
    next user) records the holder's ``pid@host``. The operating system releases the lock
    when the holder exits, however it exits, so a killed process never leaves a stale
    lock. Where ``fcntl`` does not exist (Windows) the lock is a no-op and a warning says
    so once: two processes may then both do the locked work (each write stays atomic; only
    the cost doubles).

    Args:
        path: the lock file.

    Examples::

        >>> import tempfile, pathlib
        >>> lock_path = pathlib.Path(tempfile.mkdtemp()) / ".x.lock"
        >>> with FileLock(lock_path) as lock:
        ...     lock.held
        True
    """

    def __init__(self, path):
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def holder(self) -> str:
        """The ``pid@host`` recorded by the last holder ('' if unknown)."""
        try:
            return self.path.read_text().strip()
        except (OSError, UnicodeDecodeError):
            return ""

    def acquire(self, blocking: bool = True, waiting: str | None = None) -> FileLock:
        """Take the lock.

        Args:
            blocking (bool): wait for it; False raises :class:`LockHeldError` at once.
            waiting (str, optional): printed (once) when the lock is busy and we wait.

        Raises:
            LockHeldError: ``blocking=False`` and another process holds it.
        """
        if self._fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # never through a symbolic link: a planted link would have the lock truncate and
        # overwrite its target (O_NOFOLLOW refuses a link as the last path component)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0),
                         0o644)
        except OSError:
            if os.path.islink(self.path):
                raise OSError(f"the lock file {self.path} is a symbolic link (to "
                              f"{os.readlink(self.path)}); a lock never follows one: delete "
                              "the link and run again") from None
            raise
        if not getattr(os, "O_NOFOLLOW", 0) and os.path.islink(self.path):  # Windows
            os.close(fd)
            raise OSError(f"the lock file {self.path} is a symbolic link; delete it and run "
                          "again")
        try:
            if fcntl is None:
                global _LOCK_WARNED
                if not _LOCK_WARNED:
                    _LOCK_WARNED = True
                    warnings.warn("file locks need fcntl, which this platform lacks: two "
                                  "processes may do the same work at once", stacklevel=2)
            else:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    if not blocking:
                        raise LockHeldError(f"{self.path} is held by another process "
                                            f"({self.holder() or 'unknown'})") from None
                    if waiting:
                        print(waiting, flush=True)
                    fcntl.flock(fd, fcntl.LOCK_EX)
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}@{_host_tag()}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        """Give the lock back (closing the file releases it)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
