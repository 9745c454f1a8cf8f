"""runtime helpers the rest of the package relies on."""

import os
import stat

import pytest
import torch

from atkd_lite.files import atomic_write


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


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_all_finite_agrees_with_isfinite(dtype):
    from atkd_lite.checks import _all_finite

    big = torch.finfo(dtype).max
    cases = [torch.zeros(3, 4), torch.randn(3, 4),
             torch.full((3, 4), big / 2, dtype=dtype),  # finite values whose sum overflows
             torch.tensor([1.0, float("nan")]), torch.tensor([float("inf"), 1.0]),
             torch.tensor([float("inf"), -float("inf")])]
    for x in cases:
        x = x.to(dtype)
        assert _all_finite(x) == bool(torch.isfinite(x).all()), x
