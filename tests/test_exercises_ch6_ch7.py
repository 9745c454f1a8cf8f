"""Exercise checks of chapters 6 and 7: right answers pass, wrong ones fail with a hint,
unsolved stubs propagate NotImplementedError."""

import pytest
import torch

from atkd_lite.book import exercises


def pointing_right(amap, box):
    x0, y0, x1, y1 = box
    rows, cols = torch.nonzero(amap == amap.max(), as_tuple=True)
    return ((rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)).float().mean().item()


def test_pointing_game_right_answer(capsys):
    exercises.check_pointing_game_by_hand(pointing_right)
    assert "✅ Correct" in capsys.readouterr().out


@pytest.mark.parametrize("wrong", [
    # end-inclusive box
    lambda m, b: bool(((torch.nonzero(m == m.max())[:, 0] >= b[1])
                       & (torch.nonzero(m == m.max())[:, 0] <= b[3])
                       & (torch.nonzero(m == m.max())[:, 1] >= b[0])
                       & (torch.nonzero(m == m.max())[:, 1] <= b[2])).all()),
    # x and y swapped
    lambda m, b: pointing_right(m.T, b),
    # only the first maximal pixel (ties ignored)
    lambda m, b: pointing_right(torch.where(torch.arange(m.numel()).view(m.shape)
                                            == m.argmax(), 1.0, 0.0), b),
    # the old all-or-nothing rule: a tie is a hit only if every peak is inside
    lambda m, b: float(pointing_right(m, b) == 1.0),
])
def test_pointing_game_wrong_answers(wrong):
    with pytest.raises(AssertionError, match="Not yet"):
        exercises.check_pointing_game_by_hand(wrong)


def test_cache_bytes(capsys):
    exercises.check_cache_bytes(lambda n, h, w, k, m: n * (2 * k + m * h * w))
    assert "✅ Correct" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="2 bytes"):
        exercises.check_cache_bytes(lambda n, h, w, k, m: n * (4 * k + 4 * m * h * w))


def test_stubs_propagate():
    def stub(*args):
        raise NotImplementedError("exercise")

    with pytest.raises(NotImplementedError):
        exercises.check_pointing_game_by_hand(stub)
    with pytest.raises(NotImplementedError):
        exercises.check_cache_bytes(stub)
