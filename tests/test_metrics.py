import pytest
import torch
from scipy.stats import spearmanr

from atkd_lite.metrics import (
    box_mask,
    deletion_curve,
    energy_in_box,
    map_similarity,
    pointing_game,
    rank_correlation,
)


def test_box_mask_by_hand():
    mask = box_mask(torch.tensor([[1, 2, 3, 4]]), (5, 6))[0]
    expected = torch.zeros(5, 6, dtype=torch.bool)
    expected[2:4, 1:3] = True  # rows y0..y1-1, cols x0..x1-1
    assert torch.equal(mask, expected)


def test_pointing_game_on_maps_with_known_answers():
    maps = torch.zeros(3, 10, 10)
    maps[0, 5, 5] = 1.0          # peak inside the box
    maps[1, 0, 9] = 1.0          # peak outside
    boxes = torch.tensor([[4, 4, 7, 7]] * 3)
    # map 2 is constant: no peak to point with -> a miss
    assert pointing_game(maps, boxes).tolist() == [True, False, False]
    assert pointing_game(maps[:, None], boxes).tolist() == [True, False, False]  # (B,1,H,W)


def test_energy_in_box_matches_hand_sums():
    maps = torch.zeros(2, 4, 4)
    maps[0, 1, 1] = 3.0
    maps[0, 3, 3] = 1.0
    boxes = torch.tensor([[0, 0, 2, 2], [0, 0, 2, 2]])
    energy = energy_in_box(maps, boxes)
    assert energy[0].item() == pytest.approx(0.75)
    assert energy[1].item() == 0.0  # zero map: zero, never NaN
    uniform = torch.ones(1, 10, 10)
    assert energy_in_box(uniform, torch.tensor([[0, 0, 5, 4]])).item() == pytest.approx(0.2)


def test_rank_correlation_matches_scipy_including_ties():
    torch.manual_seed(0)
    a = torch.rand(4, 6, 6)
    b = a + 0.3 * torch.rand(4, 6, 6)
    a[1, :3] = 0.5  # ties
    ours = rank_correlation(a, b)
    for i in range(4):
        ref = spearmanr(a[i].flatten().numpy(), b[i].flatten().numpy()).statistic
        assert ours[i].item() == pytest.approx(ref, abs=1e-6)
    assert rank_correlation(a, a).allclose(torch.ones(4))
    assert rank_correlation(a, -a).allclose(-torch.ones(4))


def test_map_similarity_invariants():
    a = torch.rand(3, 5, 5)
    assert map_similarity(a, 7 * a).allclose(torch.ones(3))
    assert map_similarity(torch.zeros(1, 5, 5), a[:1]).item() == 0.0


class _CountsInk(torch.nn.Module):
    """Predicts class 1 iff the top-left quadrant has ink, else class 0."""

    def forward(self, x):
        ink = x[:, :, :4, :4].flatten(1).sum(1)
        return torch.stack([-ink, ink], dim=1)


def test_deletion_curve_on_a_model_whose_evidence_is_known():
    x = torch.zeros(8, 1, 8, 8)
    x[:, :, :4, :4] = 1.0  # evidence: the top-left quadrant
    y = torch.ones(8, dtype=torch.long)
    right = torch.zeros(8, 8, 8)
    right[:, :4, :4] = 1.0          # a map pointing at the evidence
    wrong = 1.0 - right             # a map pointing away from it
    fractions = (0.0, 0.25, 0.5)
    acc_right = deletion_curve(_CountsInk(), x, y, right, fractions)
    acc_wrong = deletion_curve(_CountsInk(), x, y, wrong, fractions)
    assert acc_right.tolist() == [1.0, 0.0, 0.0]   # 16 of 64 pixels = the whole quadrant
    assert acc_wrong.tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="do not match"):
        deletion_curve(_CountsInk(), x, y, right[:, :4], fractions)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        deletion_curve(_CountsInk(), x, y, right, (1.5,))


def test_bad_shapes_are_clear_errors():
    with pytest.raises(ValueError, match="maps must be shaped"):
        pointing_game(torch.zeros(5, 5), torch.zeros(1, 4))
    with pytest.raises(ValueError, match="boxes must be shaped"):
        energy_in_box(torch.zeros(1, 5, 5), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="2 maps but 1 boxes"):
        energy_in_box(torch.zeros(2, 5, 5), torch.zeros(1, 4))
