"""Where things are kept, and which profile (CPU or GPU) a notebook runs in.

- The cache directory (teacher checkpoints, downloaded datasets) is
  ``$ATKD_LITE_CACHE`` if set, else ``~/.cache/atkd_lite``.
- The profile is ``$ATKD_LITE_PROFILE`` (``cpu`` or ``gpu``) if set, else ``gpu`` when CUDA
  is available and ``cpu`` otherwise. The CPU profile uses the embedded 5,000 digits and few
  epochs so that every chapter runs in about 3 minutes on 2 CPU cores; the GPU profile
  (Colab) uses full datasets and more epochs.

Examples::

    >>> import atkd_lite as ak
    >>> ak.profile().name in {"cpu", "gpu"}
    True
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["PROFILES", "Profile", "cache_dir", "profile"]

CACHE_ENV = "ATKD_LITE_CACHE"
PROFILE_ENV = "ATKD_LITE_PROFILE"


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
                f"set the environment variable {CACHE_ENV} to a writable folder, "
                f"e.g. export {CACHE_ENV}=/tmp/atkd_lite"
            ) from err
    return chosen


@dataclass(frozen=True)
class Profile:
    """Settings that differ between a quick CPU run and a full GPU run.

    Every student in every chapter trains for ``student_epochs``: the 30 epochs of the
    committed experiments (one epoch budget for all students, so a chapter's live run is
    the same recipe as the committed grid, with fewer seeds).
    """

    name: str
    dataset: str
    teacher_epochs: int
    student_epochs: int
    low_data_per_class: int
    seeds: tuple[int, ...]
    batch_size: int
    notes: str = field(default="", compare=False)


PROFILES = {
    "cpu": Profile(
        name="cpu", dataset="mnist5k", teacher_epochs=12, student_epochs=30,
        low_data_per_class=100, seeds=(0, 1, 2), batch_size=128,
        notes="embedded 5,000 MNIST digits, a few epochs: ~3 minutes a chapter on 2 cores",
    ),
    "gpu": Profile(
        name="gpu", dataset="mnist", teacher_epochs=15, student_epochs=30,
        low_data_per_class=100, seeds=(0, 1, 2, 3, 4), batch_size=256,
        notes="full MNIST (60,000 digits) downloaded to the cache, more epochs and seeds",
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
