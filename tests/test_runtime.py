"""runtime helpers the rest of the package relies on."""

import os
import stat

from atkd_lite.runtime import atomic_write


def test_atomic_write_gives_files_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        new = atomic_write(tmp_path / "new.bin", b"x")
        assert stat.S_IMODE(new.stat().st_mode) == 0o644  # not mkstemp's private 0600
        os.chmod(new, 0o640)
        atomic_write(new, b"y")
        assert stat.S_IMODE(new.stat().st_mode) == 0o640  # an existing file keeps its mode
        assert new.read_bytes() == b"y"
    finally:
        os.umask(umask)
