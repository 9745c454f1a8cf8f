"""The first home of the cache directory, the profiles and the Drive cache, kept for old
code: ``ak.config.drive_cache()``, ``ak.config.PROFILES`` and ``from atkd_lite.config import
profile`` still work.

Each now lives where it belongs: :func:`~atkd_lite.files.cache_dir` with the package's
other file handling (the core), the profiles in :mod:`atkd_lite.experiments.profiles` (the
settings of the chapters and of ``atkd-lite reproduce``), and
:func:`~atkd_lite.book.colab.drive_cache` with the book. This module re-exports names from
all three layers, so it sits on top of them, beside the command line: nothing in the
package imports it.
"""

from atkd_lite.book.colab import DRIVE_FOLDER, DRIVE_MOUNT, drive_cache
from atkd_lite.experiments.profiles import PROFILE_ENV, PROFILES, Profile, profile
from atkd_lite.files import CACHE_ENV, cache_dir

__all__ = ["CACHE_ENV", "DRIVE_FOLDER", "DRIVE_MOUNT", "PROFILES", "PROFILE_ENV", "Profile",
           "cache_dir", "drive_cache", "profile"]
