"""Where things are kept, and which profile (CPU or GPU) a notebook runs in.

- The cache directory (teacher checkpoints, teacher maps, downloaded datasets) is
  ``$ATKD_LITE_CACHE`` if set, else ``~/.cache/atkd_lite``. On Colab every notebook runs
  on a fresh machine, so that folder starts empty in each chapter and the teacher would
  be trained again; :func:`drive_cache` mounts your Google Drive and points
  ``$ATKD_LITE_CACHE`` at a folder in it, so the teacher is trained once and every later
  chapter (and every later session) loads it.
- The profile is ``$ATKD_LITE_PROFILE`` (``cpu`` or ``gpu``) if set, else ``gpu`` when CUDA
  is available and ``cpu`` otherwise. The CPU profile uses the embedded 5,000 digits and few
  epochs so that every chapter runs in about 3 minutes on 2 CPU cores; the GPU profile
  (Colab) uses full datasets and more seeds. Chapters take every setting the profile
  defines from it (``P.dataset``, ``P.student_epochs``, ``P.batch_size``, ...), never from a
  number typed in the notebook.

Examples::

    >>> import atkd_lite as ak
    >>> ak.profile().name in {"cpu", "gpu"}
    True
    >>> ak.config.PROFILES["gpu"].student_steps_per_epoch  # 1,000 low-data digits, batch 128
    8
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["PROFILES", "Profile", "cache_dir", "drive_cache", "profile"]

CACHE_ENV = "ATKD_LITE_CACHE"
PROFILE_ENV = "ATKD_LITE_PROFILE"
#: where Colab mounts Google Drive, and the cache's folder inside "My Drive"
DRIVE_MOUNT = "/content/drive"
DRIVE_FOLDER = "atkd-lite-cache"


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


def drive_cache(folder: str = DRIVE_FOLDER, mount_point: str | os.PathLike = DRIVE_MOUNT,
                mount=None) -> Path:
    """Keep the cache in Google Drive (on Colab), so the teacher is trained only once.

    Mounts Google Drive at ``mount_point`` if it is not mounted yet (Colab asks you to
    allow access), creates ``My Drive/<folder>`` and sets ``$ATKD_LITE_CACHE`` to it for
    this session: :func:`~atkd_lite.checkpoints.pretrained_teacher` and the teacher-map
    cache then read and write there. Call it in every chapter (each Colab notebook is a
    new machine); the first chapter trains the teacher, the others load it. A teacher
    trained in another profile or with another recipe has another file name, so a stale
    teacher is never loaded.

    Args:
        folder (str): the folder inside "My Drive".
        mount_point (path): where Drive is mounted (Colab's usual ``/content/drive``).
        mount (callable, optional): the function that mounts Drive at a path; default
            ``google.colab.drive.mount``.

    Returns:
        Path: the cache directory now in use.

    Raises:
        RuntimeError: Drive is not mounted and this is not Colab (set ``$ATKD_LITE_CACHE``
            to a lasting folder instead), or mounting did not produce "My Drive".
        PermissionError: the folder cannot be written.

    Examples::

        >>> from atkd_lite.config import drive_cache
        >>> drive_cache()                 # on Colab   # doctest: +SKIP
        PosixPath('/content/drive/MyDrive/atkd-lite-cache')
    """
    root = Path(mount_point) / "MyDrive"
    if not root.is_dir():
        if mount is None:
            try:
                from google.colab import drive
            except ImportError:
                raise RuntimeError(
                    f"Google Drive is not mounted at {str(mount_point)!r} and this is not "
                    f"Colab; elsewhere keep the cache in a lasting folder with the environment "
                    f"variable {CACHE_ENV}, e.g. export {CACHE_ENV}=~/atkd_lite_cache") from None
            mount = drive.mount
        mount(str(mount_point))
        if not root.is_dir():
            raise RuntimeError(f"mounting Google Drive at {str(mount_point)!r} gave no "
                               f"{str(root)!r}; mount it by hand (Files panel, 'Mount Drive') "
                               "and run this again")
    path = cache_dir(root / folder)
    os.environ[CACHE_ENV] = str(path)
    return path


@dataclass(frozen=True)
class Profile:
    """Settings that differ between a quick CPU run and a full GPU run.

    Every student in every chapter trains for ``student_epochs``: the 30 epochs of the
    committed experiments and of the tuned recipe (:class:`~atkd_lite.engine.DistillConfig`),
    with ``batch_size`` images a step: the tuned 128, which on the low-data set
    (``low_data_per_class`` × 10 classes = 1,000 images) gives 8 steps an epoch, 240 in a
    run. One epoch budget for all students, so a chapter's live run is the same recipe as
    the committed grid, with fewer seeds.

    Attributes:
        name: ``"cpu"`` or ``"gpu"``.
        dataset: the dataset of the teacher and of the digit chapters
            (:func:`~atkd_lite.data.load_dataset` name).
        teacher_epochs: epochs of the teacher (:func:`~atkd_lite.checkpoints.pretrained_teacher`).
        student_epochs: epochs of every student.
        low_data_per_class: training images per class of the low-data students.
        seeds: the seeds of a chapter's live multi-seed runs.
        batch_size: images per step of every student.
        notes: one line for the reader.
    """

    name: str
    dataset: str
    teacher_epochs: int
    student_epochs: int
    low_data_per_class: int
    seeds: tuple[int, ...]
    batch_size: int
    notes: str = field(default="", compare=False)

    @property
    def student_steps_per_epoch(self) -> int:
        """Optimiser steps in one epoch of a low-data student (the last batch may be short)."""
        return math.ceil(10 * self.low_data_per_class / self.batch_size)


PROFILES = {
    "cpu": Profile(
        name="cpu", dataset="mnist5k", teacher_epochs=12, student_epochs=30,
        low_data_per_class=100, seeds=(0, 1, 2), batch_size=128,
        notes="embedded 5,000 MNIST digits, a few epochs: ~3 minutes a chapter on 2 cores",
    ),
    # Students see the same 1,000 low-data digits as on the CPU, so they keep the tuned
    # batch of 128 (8 steps an epoch; 256 would leave 4): the GPU adds data for the
    # teacher and seeds, not a different student recipe.
    "gpu": Profile(
        name="gpu", dataset="mnist", teacher_epochs=15, student_epochs=30,
        low_data_per_class=100, seeds=(0, 1, 2, 3, 4), batch_size=128,
        notes="full MNIST (60,000 digits) downloaded to the cache, more teacher epochs and "
              "seeds",
    ),
}


def profile(name: str | None = None) -> Profile:
    """The active profile: ``name``, else ``$ATKD_LITE_PROFILE``, else by CUDA availability."""
    chosen = name or os.environ.get(PROFILE_ENV)
    if not chosen:
        import torch

        chosen = "gpu" if torch.cuda.is_available() else "cpu"
    chosen = chosen.lower()
    if chosen not in PROFILES:
        raise ValueError(
            f"unknown profile {chosen!r} (from {PROFILE_ENV} or the argument); "
            f"choose one of {sorted(PROFILES)}"
        )
    return PROFILES[chosen]
