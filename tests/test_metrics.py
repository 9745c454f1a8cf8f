import pytest
import torch
from scipy.stats import spearmanr

from atkd_lite.metrics import (
    box_mask,
    curve_area,
    deletion_curve,
    energy_in_box,
    insertion_curve,
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
    maps = torch.zeros(4, 10, 10)
    maps[0, 5, 5] = 1.0          # peak inside the box
    maps[1, 0, 9] = 1.0          # peak outside
    # map 2 is constant: every pixel is a peak -> the box's share of the image (chance)
    maps[3, 5, 5] = maps[3, 0, 0] = maps[3, 9, 9] = maps[3, 6, 4] = 1.0  # 2 of 4 inside
    boxes = torch.tensor([[4, 4, 7, 7]] * 4)
    want = [1.0, 0.0, 9 / 100, 0.5]
    assert pointing_game(maps, boxes).tolist() == pytest.approx(want)
    assert pointing_game(maps[:, None], boxes).tolist() == pytest.approx(want)  # (B,1,H,W)


def test_pointing_game_tolerance_grows_the_box():
    maps = torch.zeros(1, 10, 10)
    maps[0, 5, 8] = 1.0  # two columns right of the box's last column (6)
    box = torch.tensor([[4, 4, 7, 7]])
    assert pointing_game(maps, box).item() == 0.0
    assert pointing_game(maps, box, tolerance=1).item() == 0.0
    assert pointing_game(maps, box, tolerance=2).item() == 1.0
    with pytest.raises(ValueError, match="tolerance"):
        pointing_game(maps, box, tolerance=-1)


def test_pointing_game_agrees_with_quantus_on_maps_without_ties():
    quantus = pytest.importorskip("quantus")
    gen = torch.Generator().manual_seed(0)
    maps = torch.rand(16, 1, 12, 12, generator=gen)  # continuous: no ties
    boxes = torch.randint(0, 6, (16, 2), generator=gen)
    boxes = torch.cat([boxes, boxes + torch.randint(2, 7, (16, 2), generator=gen)], 1)
    masks = box_mask(boxes, (12, 12))[:, None].numpy()
    ref = quantus.PointingGame(disable_warnings=True)(
        model=None, x_batch=maps.numpy(), y_batch=torch.zeros(16).numpy(),
        a_batch=maps.numpy(), s_batch=masks)
    assert pointing_game(maps, boxes).tolist() == [float(r) for r in ref]
    assert 0 < sum(ref) < 16  # the case mixes hits and misses


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
    acc_right = deletion_curve(_CountsInk(), x, y, right, fractions, score="accuracy")
    acc_wrong = deletion_curve(_CountsInk(), x, y, wrong, fractions, score="accuracy")
    assert acc_right.tolist() == [1.0, 0.0, 0.0]   # 16 of 64 pixels = the whole quadrant
    assert acc_wrong.tolist() == [1.0, 1.0, 1.0]
    # the class probability by hand: logits (-ink, ink) -> sigmoid(2 * ink)
    prob = deletion_curve(_CountsInk(), x, y, right, fractions)
    full = torch.sigmoid(torch.tensor(2 * 16.0)).item()
    assert prob.tolist() == pytest.approx([full, 0.5, 0.5])
    # insertion is the mirror: nothing, then the whole evidence
    ins = insertion_curve(_CountsInk(), x, y, right, fractions)
    assert ins.tolist() == pytest.approx([0.5, full, full])
    assert curve_area(fractions, ins) > curve_area(fractions, insertion_curve(
        _CountsInk(), x, y, wrong, fractions))
    with pytest.raises(ValueError, match="do not match"):
        deletion_curve(_CountsInk(), x, y, right[:, :4], fractions)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        deletion_curve(_CountsInk(), x, y, right, (1.5,))
    with pytest.raises(ValueError, match="score"):
        deletion_curve(_CountsInk(), x, y, right, fractions, score="auc")


def test_deletion_curve_agrees_with_quantus_pixel_flipping():
    quantus = pytest.importorskip("quantus")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3)).eval()
    x = torch.rand(4, 1, 8, 8)
    y = model(x).argmax(1)
    maps = torch.rand(4, 8, 8)  # no ties
    ref = quantus.PixelFlipping(features_in_step=8, perturb_baseline=0.0, normalise=False,
                                disable_warnings=True, display_progressbar=False)(
        model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=maps[:, None].numpy(),
        channel_first=True, softmax=True, device="cpu")
    ref = torch.tensor([list(r) for r in ref]).mean(0)  # after 8, 16, ..., 64 pixels
    fractions = [k / 64 for k in range(8, 65, 8)]
    ours = deletion_curve(model, x, y, maps, fractions)
    assert ours.tolist() == pytest.approx(ref.tolist(), abs=1e-5)


def test_curve_area_by_hand():
    assert curve_area([0.0, 0.5, 1.0], [1.0, 1.0, 0.0]) == pytest.approx(0.75)
    assert curve_area([0.2], [0.4]) == 0.4
    with pytest.raises(ValueError, match="one value per fraction"):
        curve_area([0.0, 1.0], [1.0])


def test_bad_shapes_are_clear_errors():
    with pytest.raises(ValueError, match="maps must be shaped"):
        pointing_game(torch.zeros(5, 5), torch.zeros(1, 4))
    with pytest.raises(ValueError, match="boxes must be shaped"):
        energy_in_box(torch.zeros(1, 5, 5), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="2 maps but 1 boxes"):
        energy_in_box(torch.zeros(2, 5, 5), torch.zeros(1, 4))
