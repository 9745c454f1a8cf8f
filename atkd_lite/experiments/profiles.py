"""Which settings a chapter runs with: the CPU profile (the embedded 5,000 digits, few
epochs, about 3 minutes a chapter on 2 cores) or the GPU profile (Colab: full datasets,
more seeds).

The profile is ``$ATKD_LITE_PROFILE`` (``cpu`` or ``gpu``) if set, else ``gpu`` when CUDA is
available and ``cpu`` otherwise. Chapters, ``atkd-lite reproduce`` and ``atkd-lite distill``
take every setting the profile defines from it (``P.dataset``, ``P.student_epochs``,
``P.batch_size``, ...), never from a number typed in a notebook.

The design (``DESIGN.md``) puts the profiles with the book; they live one layer lower,
with the experiments, because ``atkd-lite reproduce`` (:mod:`atkd_lite.experiments.lowdata`)
runs with them too, and an experiment may not import the book.

Examples::

    >>> import atkd_lite as ak
    >>> ak.profile().name in {"cpu", "gpu"}
    True
    >>> from atkd_lite.experiments.profiles import PROFILES
    >>> PROFILES["gpu"].student_steps_per_epoch  # 1,000 low-data digits, batch 128
    8
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

__all__ = ["PROFILES", "PROFILE_ENV", "Profile", "profile"]

#: the environment variable that chooses the profile
PROFILE_ENV = "ATKD_LITE_PROFILE"


@dataclass(frozen=True)
class Profile:
    """Settings that differ between a quick CPU run and a full GPU run.

    Every student in every chapter trains for ``student_epochs``: the 30 epochs of the
    committed experiments and of the tuned recipe (:class:`~atkd_lite.settings.DistillConfig`),
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
