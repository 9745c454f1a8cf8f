"""Exercise checks of chapter 9 ("Your own model"): right answers pass, wrong ones fail
with a hint, unsolved stubs propagate NotImplementedError."""

import numpy as np
import pytest

from atkd_lite.book import exercises


def stats_right(images):
    x = images.numpy().astype(np.float64) / 255  # NumPy, not the check's torch reference
    return x.mean(axis=(0, 2, 3)).tolist(), x.std(axis=(0, 2, 3)).tolist()


def test_channel_stats_right_answer(capsys):
    exercises.check_channel_stats(stats_right)
    assert "✅ Correct" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, hint", [
    (lambda im: (im.float().mean((0, 2, 3)), im.float().std((0, 2, 3), correction=0)),
     "divide by 255"),
    (lambda im: ((im.double() / 255).mean((0, 2, 3)),
                 (im.double() / 255).std(dim=(2, 3), correction=0).mean(0)),
     "per-image standard deviations"),
    (lambda im: ((im.double() / 255).mean((0, 2, 3)),
                 (im.double() / 255).std((0, 2, 3), correction=1)),
     "population standard deviation"),
    (lambda im: ((im.double() / 255).mean(), (im.double() / 255).std(correction=0)),
     "one number per channel|give .* means"),
    (lambda im: ((im.double() / 255).mean((0, 2, 3)),), "pair"),
])
def test_channel_stats_wrong_answers(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        exercises.check_channel_stats(wrong)


def capture_right(shapes, min_size, first, last):
    kept = [n for n, (_, h, w) in shapes.items() if min(h, w) >= min_size]
    idx = sorted(set(range(min(first, len(kept)))) | set(range(max(0, len(kept) - last),
                                                               len(kept))))
    return [kept[i] for i in idx]


def test_capture_points_right_answer(capsys):
    exercises.check_capture_points(capture_right)
    assert "✅ Correct" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, hint", [
    # selecting before dropping the small maps
    (lambda s, m, f, la: [n for n in capture_right(s, 1, f, la) if min(s[n][1:]) >= m],
     "drop the small maps first"),
    # height only
    (lambda s, m, f, la: capture_right({n: (c, h, h) for n, (c, h, w) in s.items()}, m, f, la),
     "height AND width"),
    # a strict comparison drops maps of exactly min_size
    (lambda s, m, f, la: capture_right(s, m + 1, f, la), "capture points are"),
    (lambda s, m, f, la: "group1", "list of names"),
])
def test_capture_points_wrong_answers(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        exercises.check_capture_points(wrong)


def test_stubs_propagate():
    def stub(*args):
        raise NotImplementedError("exercise")

    with pytest.raises(NotImplementedError):
        exercises.check_channel_stats(stub)
    with pytest.raises(NotImplementedError):
        exercises.check_capture_points(stub)
