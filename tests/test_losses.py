"""KD and attention losses against hand computations and invariants."""

import math

import numpy as np
import pytest
import torch

from atkd_lite.losses import attention_loss, kd_loss


def _softmax(z):
    e = [math.exp(v - max(z)) for v in z]
    return [v / sum(e) for v in e]


def test_kd_loss_matches_hand_computation():
    zs = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
    zt = [[3.0, 0.0, 1.0], [0.5, 0.5, 0.5]]
    T = 2.0
    total = 0.0
    for s, t in zip(zs, zt):
        ps = _softmax([v / T for v in s])
        pt = _softmax([v / T for v in t])
        total += sum(p * math.log(p / q) for p, q in zip(pt, ps))
    expected = T * T * total / len(zs)
    got = kd_loss(torch.tensor(zs), torch.tensor(zt), T=T)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_kd_loss_zero_for_equal_and_shift_invariant_and_teacher_detached():
    zs = torch.randn(4, 10, requires_grad=True)
    zt = torch.randn(4, 10, requires_grad=True)
    assert kd_loss(zs, zs.detach() + 3.0).item() == pytest.approx(0.0, abs=1e-6)
    kd_loss(zs, zt).backward()
    assert zs.grad is not None and zt.grad is None


def test_kd_loss_float32_from_half_and_bad_input():
    z = torch.randn(3, 5).half()
    assert kd_loss(z, z.flip(0)).dtype == torch.float32
    with pytest.raises(ValueError, match="same classes"):
        kd_loss(torch.randn(2, 5), torch.randn(2, 4))
    with pytest.raises(ValueError, match="temperature"):
        kd_loss(torch.randn(2, 5), torch.randn(2, 5), T=0)


def test_attention_loss_l2_hand_computation():
    rng = np.random.default_rng(0)
    s, t = rng.random((3, 4, 5)), rng.random((3, 4, 5))
    expected = np.mean([
        np.sum((a.ravel() / np.linalg.norm(a) - b.ravel() / np.linalg.norm(b)) ** 2)
        for a, b in zip(s, t)
    ])
    got = attention_loss(torch.tensor(s, dtype=torch.float32), torch.tensor(t, dtype=torch.float32))
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_attention_loss_zero_equal_scale_invariant_zero_maps():
    m = torch.rand(4, 7, 7)
    t = torch.rand(4, 7, 7)
    assert attention_loss(m, m).item() == pytest.approx(0.0, abs=1e-7)
    scale = torch.tensor([0.1, 1.0, 5.0, 100.0]).view(4, 1, 1)
    assert attention_loss(m * scale, t).item() == pytest.approx(attention_loss(m, t).item(), rel=1e-5)
    assert attention_loss(m, t * scale).item() == pytest.approx(attention_loss(m, t).item(), rel=1e-5)
    zero = torch.zeros(4, 7, 7, requires_grad=True)
    loss = attention_loss(zero, t)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(zero.grad).all()


@pytest.mark.parametrize("form", ["l2", "bce"])
def test_attention_loss_gradient_only_into_student(form):
    s = torch.rand(2, 6, 6, requires_grad=True)
    t = torch.rand(2, 6, 6, requires_grad=True)
    attention_loss(s, t, form=form).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


def test_attention_loss_bce_against_torch_and_extremes():
    s, t = torch.rand(2, 5, 5), torch.rand(2, 5, 5)
    sc = s.clamp(1e-4, 1 - 1e-4)
    expected = -(t * sc.log() + (1 - t) * (1 - sc).log()).mean()
    assert attention_loss(s, t, form="bce").item() == pytest.approx(expected.item(), rel=1e-5)
    ones, zeros = torch.ones(1, 3, 3), torch.zeros(1, 3, 3)
    assert torch.isfinite(attention_loss(zeros, ones, form="bce"))


def test_attention_loss_bad_input():
    with pytest.raises(ValueError, match="form"):
        attention_loss(torch.rand(1, 2, 2), torch.rand(1, 2, 2), form="cosine")
    with pytest.raises(ValueError, match="shape"):
        attention_loss(torch.rand(1, 2, 2), torch.rand(1, 3, 3))
