"""Checks of chapter 9's exercises (your own model): per-channel statistics of uint8
images, choosing the capture points.
"""

from __future__ import annotations

import torch

from atkd_lite.book.exercises.feedback import answer_tensor, hint, passed

__all__ = ["check_capture_points", "check_channel_stats"]


def check_channel_stats(channel_stats) -> None:
    """Check ``channel_stats(images) -> (mean, std)``: per-channel statistics of uint8 images.

    ``images`` is a uint8 tensor (N, C, H, W); the answer is C means and C standard
    deviations of all its pixels on the [0, 1] scale. Compared with
    ``torch.std_mean(..., correction=0)`` over images, rows and columns, for random
    batches and a constant channel; the usual slips get their own hint.
    """
    gen = torch.Generator().manual_seed(9)
    batches = [torch.randint(0, 256, (6, 3, 5, 7), generator=gen, dtype=torch.uint8),
               torch.randint(0, 256, (3, 1, 4, 4), generator=gen, dtype=torch.uint8)]
    const = torch.randint(0, 256, (4, 2, 3, 3), generator=gen, dtype=torch.uint8)
    const[:, 1] = 77
    batches.append(const)
    for images in batches:
        x = images.double() / 255
        std, mean = torch.std_mean(x, dim=(0, 2, 3), correction=0)
        got = channel_stats(images.clone())
        hint(isinstance(got, (tuple, list)) and len(got) == 2,
             "return a pair (mean, std), each with one number per channel")
        g_mean = answer_tensor(got[0], "mean").flatten()
        g_std = answer_tensor(got[1], "std").flatten()
        c = images.shape[1]
        hint(g_mean.numel() == c and g_std.numel() == c,
             f"for {c}-channel images give {c} means and {c} standard deviations; "
             f"got {g_mean.numel()} and {g_std.numel()} (average over images, rows and "
             "columns: dim=(0, 2, 3))")
        hint(not torch.allclose(g_mean, mean * 255, atol=1e-3),
             "the values are on the 0-255 scale: divide by 255 first (the model sees "
             "images in [0, 1])")
        hint(torch.allclose(g_mean, mean, atol=1e-6),
             f"the means should be {[round(v, 4) for v in mean.tolist()]}, got "
             f"{[round(v, 4) for v in g_mean.tolist()]} (average over dim=(0, 2, 3))")
        per_image = x.std(dim=(2, 3), correction=0).mean(dim=0)
        hint(not (torch.allclose(g_std, per_image, atol=1e-6)
                   and not torch.allclose(per_image, std, atol=1e-6)),
             "that is the mean of the per-image standard deviations (how the widely "
             "copied CIFAR-10 std 0.2023, 0.1994, 0.2010 was made), not the standard "
             "deviation of all the pixels together")
        unbiased = x.std(dim=(0, 2, 3), correction=1)
        hint(not (torch.allclose(g_std, unbiased, atol=1e-9)
                   and not torch.allclose(unbiased, std, atol=1e-9)),
             "use the population standard deviation (divide by n: correction=0), the "
             "statistic normalisation divides by")
        hint(torch.allclose(g_std, std, atol=1e-6),
             f"the standard deviations should be {[round(v, 4) for v in std.tolist()]}, "
             f"got {[round(v, 4) for v in g_std.tolist()]}")
    passed("per-channel means and standard deviations over every pixel, on the [0, 1] "
           "scale, as ImageSet.channel_stats() computes them.")


def check_capture_points(capture_points) -> None:
    """Check ``capture_points(shapes, min_size, first, last) -> list of names``.

    ``shapes`` maps each candidate capture point, in forward order, to its output shape
    (C, H, W); the answer drops the points whose maps are smaller than ``min_size`` in
    height or width (a 1×1 map carries no "where"), then keeps the first ``first`` and the
    last ``last`` of the rest, in order, each once. Compared with hand-made cases and
    with :func:`~atkd_lite.atcam.select_layers` on the filtered names.
    """
    from atkd_lite.atcam import select_layers

    mobile = {"features.0": (16, 16, 16), "features.1": (16, 8, 8), "features.3": (24, 4, 4),
              "features.6": (40, 2, 2), "features.9": (96, 1, 1), "features.12": (576, 1, 1)}
    wide = {"group1": (32, 32, 32), "group2": (64, 16, 16), "group3": (128, 8, 8)}
    odd = {"a": (8, 8, 1), "b": (8, 4, 4), "c": (8, 1, 6), "d": (8, 5, 5)}
    cases = [
        (mobile, 4, 2, 2, ["features.0", "features.1", "features.3"]),
        (mobile, 2, 1, 1, ["features.0", "features.6"]),
        (wide, 4, 2, 2, ["group1", "group2", "group3"]),
        (wide, 8, 1, 1, ["group1", "group3"]),
        (odd, 4, 1, 1, ["b", "d"]),
    ]
    for shapes, min_size, first, last, expected in cases:
        kept = [n for n, (_, h, w) in shapes.items() if h >= min_size and w >= min_size]
        assert expected == select_layers(kept, first, last)  # the hand cases follow the rule
        got = capture_points(dict(shapes), min_size, first, last)
        hint(isinstance(got, (list, tuple)) and all(isinstance(n, str) for n in got),
             f"return a list of names, got {got!r}")
        got = list(got)
        small = [n for n in got if min(shapes[n][1:]) < min_size] if set(got) <= set(
            shapes) else []
        hint(not small, f"{small} have maps smaller than {min_size}×{min_size} (height "
                         "AND width must be at least min_size): drop them before choosing")
        hint(got == expected,
             f"for the shapes {shapes}, min_size={min_size}, first={first}, last={last} the "
             f"capture points are {expected}, you gave {got} (drop the small maps first, "
             "then keep the first `first` and the last `last` of the rest, in order)")
    passed("small maps dropped first, then the first and last of the rest, in forward "
           "order: the same rule as ATCam's first/last.")
