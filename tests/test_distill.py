"""distill(): every method runs, the teacher is untouched, determinism, bad input."""

import math

import pytest
import torch

import atkd_lite as ak
from atkd_lite.cache import CacheMismatchError, TeacherCache
from atkd_lite.distillers import METHODS
from atkd_lite.engine import distill
from atkd_lite.signals import ExampleMask

# the methods taught by a teacher (RRR's masks come with decoy data: tests/test_shortcut.py)
TEACHER_METHODS = [m for m, (c, _) in METHODS.items() if not isinstance(c.signal, ExampleMask)]


@pytest.fixture(scope="module")
def data():
    train = ak.load_dataset("mnist5k", "fit").per_class(3)  # 30 images
    test = ak.load_dataset("mnist5k", "val").per_class(2)   # 20 images
    torch.manual_seed(0)
    teacher = ak.teacher_cnn().eval()
    cache = TeacherCache.build(teacher, train, device="cpu", progress=False)
    return train, test, teacher, cache


def _student(seed=0):
    torch.manual_seed(seed)
    return ak.student_cnn("tiny")


def _run(data, method, **kw):
    train, test, teacher, _ = data
    kw.setdefault("epochs", 1)
    kw.setdefault("batch_size", 16)
    return distill(teacher, _student(), train, test, method=method, progress=False,
                   device="cpu", **kw)


@pytest.mark.parametrize("method", TEACHER_METHODS)
def test_every_method_runs_with_finite_named_terms(data, method):
    cls, use_kd = METHODS[method]
    kind = cls.signal is not None
    before = {k: v.clone() for k, v in data[2].state_dict().items()}
    result = _run(data, method)
    rec = result.history.last
    expected = {"loss", "loss_ce"} | ({"loss_kd"} if use_kd else set()) | (
        {"loss_att"} if kind else set())
    assert {k for k in rec if k.startswith("loss")} == expected
    assert all(math.isfinite(rec[k]) for k in expected)
    assert 0 <= rec["train_acc"] <= 1 and 0 <= rec["test_acc"] <= 1 and rec["time_s"] > 0
    assert result.method == method and result.test_acc == rec["test_acc"]
    # the teacher is bit-identical, in eval mode, with its requires_grad flags restored
    teacher = data[2]
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not teacher.training
    assert all(p.requires_grad for p in teacher.parameters())
    assert all(p.grad is None for p in teacher.parameters())
    assert not result.student.training


def test_total_loss_is_the_weighted_sum(data):
    rec = _run(data, "fma+kd", alpha=0.3, beta=2.0, epochs=1).history.last
    want = 0.7 * rec["loss_ce"] + 0.3 * rec["loss_kd"] + 2.0 * rec["loss_att"]
    assert rec["loss"] == pytest.approx(want, rel=1e-4)


def test_same_seed_same_history_and_student_learns(data):
    a = _run(data, "mip+kd", epochs=2, seed=3).history.records
    b = _run(data, "mip+kd", epochs=2, seed=3).history.records
    strip = [{k: v for k, v in r.items() if k != "time_s"} for r in a]
    assert strip == [{k: v for k, v in r.items() if k != "time_s"} for r in b]


@pytest.mark.parametrize("method", ["fma", "sals", "at+kd"])
def test_cached_run_matches_online_run(data, method):
    online = _run(data, method, epochs=2).history
    cached = _run(data, method, epochs=2, cache=data[3]).history
    for key in ("loss_ce", "loss_att"):
        for u, v in zip(online[key], cached[key]):
            assert v == pytest.approx(u, rel=2e-2, abs=1e-4), key


def test_bad_input(data):
    train, test, teacher, cache = data
    with pytest.raises(ValueError, match="fma\\+kd"):
        distill(teacher, _student(), train, test, method="gradcam", progress=False)
    with pytest.raises(ValueError, match="classes"):
        distill(teacher, ak.student_cnn("tiny", num_classes=5), train, test, progress=False,
                device="cpu")
    rgb = ak.student_cnn("tiny", in_channels=3)
    with pytest.raises(ValueError, match="cannot take"):
        distill(teacher, rgb, train, test, progress=False, device="cpu")
    big = ak.ImageSet(torch.zeros(4, 1, 32, 32, dtype=torch.uint8), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="test images"):
        distill(teacher, _student(), train, big, progress=False, device="cpu")
    with pytest.raises(ValueError, match="augmentation"):
        distill(teacher, _student(), train, test, cache=cache, augment=2, progress=False)
    with pytest.raises(ValueError, match="empty"):
        distill(teacher, _student(), train.subset([]), test, progress=False)
    with pytest.raises(CacheMismatchError, match="built for"):
        distill(teacher, _student(), test, None, cache=cache, progress=False, device="cpu")
    with pytest.raises(CacheMismatchError, match="first"):
        distill(teacher, _student(), train, None, cache=cache, first=1, progress=False,
                device="cpu")
    with pytest.raises(CacheMismatchError, match="another teacher"):
        distill(ak.teacher_cnn().eval(), _student(), train, None, cache=cache, progress=False,
                device="cpu")
    with pytest.raises(ValueError, match="alpha"):
        distill(teacher, _student(), train, test, method="kd", alpha=1.5, progress=False)
