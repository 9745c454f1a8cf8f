"""Colab: keep the cache in Google Drive, so that the teacher is trained once for every
chapter and every session (each Colab notebook runs on a fresh machine).
"""

from __future__ import annotations

import os
from pathlib import Path

from atkd_lite.files import CACHE_ENV, cache_dir

__all__ = ["DRIVE_FOLDER", "DRIVE_MOUNT", "drive_cache"]

#: where Colab mounts Google Drive, and the cache's folder inside "My Drive"
DRIVE_MOUNT = "/content/drive"
DRIVE_FOLDER = "atkd-lite-cache"


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

        >>> from atkd_lite.book.colab import drive_cache
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
