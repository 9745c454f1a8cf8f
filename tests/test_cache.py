"""TeacherCache: cached teacher outputs equal the online ones; mismatches are refused."""

import pytest
import torch

import atkd_lite as ak
from atkd_lite.atcam import ATCam
from atkd_lite.cache import CacheMismatchError, TeacherCache
from atkd_lite.losses.at import at_vector
from atkd_lite.saliency import saliency_map


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    data = ak.load_dataset("mnist5k", "val").per_class(4)  # 40 images
    teacher = ak.teacher_cnn().eval()
    cache = TeacherCache.build(teacher, data, batch_size=16, device="cpu", progress=False)
    return data, teacher, cache


def test_cached_maps_equal_online(setup):
    data, teacher, cache = setup
    x = data.float_images()
    y = data.labels
    idx = torch.arange(len(data)).flip(0)  # lookups by index, in any order
    with torch.no_grad():
        logits = teacher(x)
    assert torch.allclose(cache.logits(idx), logits[idx], rtol=1e-3, atol=1e-3)
    tol = 0.5 / 255 + 1e-5  # uint8 quantisation
    for kind in ("fma", "mip"):
        with torch.no_grad():
            _, online = ATCam(teacher, first=2, last=2, combine=kind)(x)
        assert (cache.maps(kind, idx) - online[idx]).abs().max() <= tol
    online_sals = saliency_map(teacher, x, target=y)
    assert (cache.maps("sals", idx) - online_sals[idx]).abs().max() <= tol
    with torch.no_grad():
        _, feats = ATCam(teacher, first=10, last=0).features(x)
    cached_at = cache.at_maps(idx)
    assert len(cached_at) == len(feats) == 6
    for q, f in zip(cached_at, feats):
        assert torch.allclose(q.flatten(1), at_vector(f)[idx], atol=1e-3)


def test_teacher_unchanged_and_mode_restored(setup):
    data, teacher, _ = setup
    teacher.train()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    TeacherCache.build(teacher, data, maps=("fma",), at=False, progress=False, device="cpu")
    assert teacher.training
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k
    teacher.eval()


def test_save_load_roundtrip_mmap(setup, tmp_path):
    data, _, cache = setup
    path = cache.save(tmp_path / "sub" / "teacher.cache")
    assert not list(path.parent.glob(".*tmp"))
    loaded = TeacherCache.load(path)
    idx = torch.tensor([3, 0, 7])
    for kind in ("fma", "mip", "sals"):
        assert torch.equal(loaded.maps(kind, idx), cache.maps(kind, idx))
    assert torch.equal(loaded.logits(idx), cache.logits(idx))
    assert loaded.meta == cache.meta
    loaded.check(data, maps=["fma"], first=2, last=2)


def test_mismatches_are_refused(setup, tmp_path):
    data, _, cache = setup
    other = ak.load_dataset("mnist5k", "val").per_class(4, seed=1)
    with pytest.raises(CacheMismatchError, match="built for"):
        cache.check(other)
    with pytest.raises(CacheMismatchError, match="first=1"):
        cache.check(data, maps=["fma"], first=1, last=2)
    with pytest.raises(CacheMismatchError, match="size"):
        cache.check(data, maps=["fma"], size=(14, 14))
    small = TeacherCache.build(ak.teacher_cnn().eval(), data, maps=("mip",), at=False,
                               progress=False, device="cpu")
    with pytest.raises(CacheMismatchError, match="sals"):
        small.check(data, maps=["sals"])
    with pytest.raises(CacheMismatchError, match="AT"):
        small.at_maps(torch.tensor([0]))
    bad = tmp_path / "bad.cache"
    torch.save({"meta": {"format": "other"}}, bad)
    with pytest.raises(CacheMismatchError, match="format"):
        TeacherCache.load(bad)
    with pytest.raises(FileNotFoundError):
        TeacherCache.load(tmp_path / "missing.cache")


def test_build_bad_input(setup):
    data, teacher, _ = setup
    with pytest.raises(ValueError, match="unknown map kind"):
        TeacherCache.build(teacher, data, maps=("gradcam",), progress=False)
    with pytest.raises(ValueError, match="empty"):
        TeacherCache.build(teacher, data.subset([]), progress=False)
    # any dataset of (image, label) is accepted; other items are refused, naming them
    with pytest.raises(TypeError, match=r"\(image, label\) pairs; item 0 is a tuple of 3"):
        TeacherCache.build(teacher, [(torch.zeros(1, 28, 28), 0, "x")], progress=False)
    with pytest.raises(TypeError, match="class indices"):
        TeacherCache.build(teacher, [(torch.zeros(1, 28, 28), torch.zeros(1))], progress=False)
