"""AT baseline (Zagoruyko & Komodakis) against hand computations of its formula."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from atkd_lite.losses.at import at_loss, at_vector, pair_layers


def hand_q(a: torch.Tensor, size=None) -> torch.Tensor:
    """q = flatten(mean_c A^2) / ||.||_2, written out without F.normalize."""
    m = (a * a).sum(dim=1) / a.shape[1]
    if size is not None:
        m = F.interpolate(m[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    flat = m.reshape(a.shape[0], -1)
    return flat / flat.pow(2).sum(dim=1, keepdim=True).sqrt()


def test_golden_values_code_and_paper():
    # student map [1, 0] -> q = [1, 0]; teacher A = [0, 2] -> A^2 = [0, 4] -> q = [0, 1]
    s = torch.tensor([[[[1.0, 0.0]]]])
    t = torch.tensor([[[[0.0, 2.0]]]])
    # code: mean((q_S - q_T)^2) = mean([1, 1]) = 1 ; paper: ||q_S - q_T||_2 = sqrt(2)
    assert at_loss([s], [t]).item() == pytest.approx(1.0)
    assert at_loss([s], [t], mode="paper").item() == pytest.approx(math.sqrt(2))


def test_matches_hand_formula_summed_over_pairs():
    torch.manual_seed(0)
    s = [torch.randn(3, 4, 8, 8), torch.randn(3, 6, 4, 4)]
    t = [torch.randn(3, 16, 8, 8), torch.randn(3, 32, 4, 4)]
    code = sum(((hand_q(a) - hand_q(b)) ** 2).mean() for a, b in zip(s, t))
    paper = sum((hand_q(a) - hand_q(b)).pow(2).sum(1).sqrt().mean() for a, b in zip(s, t))
    torch.testing.assert_close(at_loss(s, t), code)
    torch.testing.assert_close(at_loss(s, t, mode="paper"), paper)


def test_spatial_mismatch_resizes_student_map_to_teacher():
    torch.manual_seed(1)
    s, t = torch.randn(2, 4, 4, 4), torch.randn(2, 8, 8, 8)
    expected = ((hand_q(s, size=(8, 8)) - hand_q(t)) ** 2).mean()
    torch.testing.assert_close(at_loss([s], [t]), expected)
    assert at_vector(s, size=(8, 8)).shape == (2, 64)


def test_invariances_and_zero_for_equal_maps():
    torch.manual_seed(2)
    s, t = torch.randn(2, 4, 6, 6), torch.randn(2, 8, 6, 6)
    assert at_loss([t], [t]).item() == pytest.approx(0.0, abs=1e-12)
    # per-sample positive scaling of the features does not change q
    torch.testing.assert_close(at_loss([3.0 * s], [t]), at_loss([s], [t]))
    # the channel count does not matter (mean over channels): duplicating channels is a no-op
    torch.testing.assert_close(at_loss([torch.cat([s, s], 1)], [t]), at_loss([s], [t]))


def test_teacher_side_is_detached_and_student_gets_gradients():
    s = torch.randn(2, 4, 6, 6, requires_grad=True)
    t = torch.randn(2, 8, 6, 6, requires_grad=True)
    at_loss([s], [t]).backward()
    assert t.grad is None
    assert s.grad is not None and s.grad.abs().sum() > 0


@pytest.mark.parametrize("mode", ["code", "paper"])
def test_zero_features_no_nan(mode):
    s = torch.zeros(2, 4, 6, 6, requires_grad=True)
    loss = at_loss([s], [torch.zeros(2, 8, 6, 6)], mode=mode)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(s.grad).all()


def test_half_precision_features_give_float32_loss():
    s = torch.rand(2, 4, 6, 6).bfloat16()
    t = torch.rand(2, 8, 6, 6).bfloat16()
    assert at_loss([s], [t]).dtype == torch.float32


@pytest.mark.parametrize(
    "n_s, n_t, expected",
    [
        (3, 3, [(0, 0), (1, 1), (2, 2)]),
        (2, 4, [(0, 0), (1, 3)]),
        (3, 5, [(0, 0), (1, 2), (2, 4)]),
        (4, 2, [(0, 0), (3, 1)]),
        (1, 4, [(0, 3)]),
        (4, 1, [(3, 0)]),
    ],
)
def test_pair_layers(n_s, n_t, expected):
    assert pair_layers(n_s, n_t) == expected


@pytest.mark.parametrize("bad", [(0, 3), (3, -1), (2.0, 3), (True, 2)])
def test_pair_layers_bad_input(bad):
    with pytest.raises(ValueError, match="positive int"):
        pair_layers(*bad)


@pytest.mark.parametrize(
    "s, t, kwargs, match",
    [
        ([], [torch.zeros(1, 1, 2, 2)], {}, "at least one"),
        ([torch.zeros(1, 1, 2, 2)], [], {}, "at least one"),
        ([torch.zeros(1, 1, 2, 2)] * 2, [torch.zeros(1, 1, 2, 2)], {}, "pair_layers"),
        ([torch.zeros(1, 2, 2)], [torch.zeros(1, 1, 2, 2)], {}, "4-D"),
        ([torch.zeros(1, 1, 2, 2)], [torch.zeros(1, 4)], {}, "4-D"),
        ([torch.zeros(2, 1, 2, 2)], [torch.zeros(3, 1, 2, 2)], {}, "batch"),
        ([torch.zeros(1, 1, 2, 2)], [torch.zeros(1, 1, 2, 2)], {"mode": "l1"}, "mode"),
    ],
)
def test_bad_input(s, t, kwargs, match):
    with pytest.raises(ValueError, match=match):
        at_loss(s, t, **kwargs)


def test_with_atcam_features_of_atkd_lite_models():
    models = pytest.importorskip("atkd_lite.models")
    from atkd_lite.atcam import ATCam

    teacher, student = models.teacher_cnn().eval(), models.student_cnn("small")
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        _, t_feats = ATCam(teacher).features(x)
    _, s_feats = ATCam(student).features(x)
    pairs = pair_layers(len(s_feats), len(t_feats))
    loss = at_loss([s_feats[i] for i, _ in pairs], [t_feats[j] for _, j in pairs])
    loss.backward()
    assert loss.item() > 0 and student.features[0].conv.weight.grad is not None
