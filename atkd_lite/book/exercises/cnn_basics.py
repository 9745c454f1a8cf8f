"""Checks of chapter 1's exercises (CNN basics): a fully-connected layer's parameters, a
convolution by hand, a horizontal edge kernel.
"""

from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F
from torch import nn

from atkd_lite.book.exercises.feedback import answer_tensor, hint, passed

__all__ = ["check_conv2d_by_hand", "check_fc_parameters", "check_horizontal_edge_kernel"]


def check_fc_parameters(fc_parameters) -> None:
    """Check ``fc_parameters(n_in, n_out)``: the parameters of a fully-connected layer.

    The reference is the parameter count of :class:`torch.nn.Linear` (built on the
    ``meta`` device, so even billions of weights cost no memory).
    """
    cases = [(784, 100), (3, 2), (1, 10), (1000 * 1000 * 3, 1000)]
    for n_in, n_out in cases:
        got = fc_parameters(n_in, n_out)
        hint(isinstance(got, numbers.Integral) or (isinstance(got, float) and got.is_integer()),
             f"fc_parameters({n_in}, {n_out}) returned {got!r}; return a whole number "
             "(an int), e.g. with *, + and no division")
        want = sum(p.numel() for p in nn.Linear(n_in, n_out, device="meta").parameters())
        weights = n_in * n_out
        hint(got != weights,
             f"fc_parameters({n_in}, {n_out}) = {got:,} counts only the weights; every "
             "output unit also has a bias")
        hint(got != weights + n_in,
             f"fc_parameters({n_in}, {n_out}) = {got:,}: there is one bias per *output* "
             f"unit ({n_out}), not per input ({n_in})")
        hint(got == want,
             f"fc_parameters({n_in}, {n_out}) = {got:,}, but such a layer has {want:,} "
             "parameters: one weight for every (input, unit) pair plus one bias per unit")
    passed("n_in × n_out weights plus n_out biases; a 1000×1000 RGB image into 1,000 units "
           f"needs {want:,} parameters.")


def check_conv2d_by_hand(conv2d_by_hand) -> None:
    """Check ``conv2d_by_hand(image, kernel)`` against :func:`torch.nn.functional.conv2d`.

    The function takes a 2-D image (H, W) and a 2-D kernel (kh, kw) and must return the
    "valid" cross-correlation (no padding, stride 1), shaped (H - kh + 1, W - kw + 1),
    which is what ``F.conv2d`` computes.
    """
    gen = torch.Generator().manual_seed(0)
    cases = [
        (torch.rand(6, 7, generator=gen), torch.randn(3, 3, generator=gen)),
        (torch.rand(5, 8, generator=gen), torch.randn(2, 3, generator=gen)),  # not square
        (torch.rand(4, 4, generator=gen), torch.randn(1, 1, generator=gen)),
    ]
    for image, kernel in cases:
        got = answer_tensor(conv2d_by_hand(image.clone(), kernel.clone()), "the output")
        want = F.conv2d(image[None, None].double(), kernel[None, None].double())[0, 0]
        h, w = image.shape
        kh, kw = kernel.shape
        hint(tuple(got.shape) == tuple(want.shape),
             f"for a {h}×{w} image and a {kh}×{kw} kernel the output should be "
             f"(H - kh + 1, W - kw + 1) = {tuple(want.shape)}, got {tuple(got.shape)}; "
             "slide the kernel only where it fits completely (no padding)")
        if torch.allclose(got, want, atol=1e-4):
            continue
        flipped = F.conv2d(image[None, None].double(),
                           kernel.flip(0, 1)[None, None].double())[0, 0]
        hint(not torch.allclose(got, flipped, atol=1e-4),
             "your output is the textbook convolution with a *flipped* kernel; deep "
             "learning's conv2d is cross-correlation: multiply image[i+u, j+v] by "
             "kernel[u, v] without flipping")
        worst = (got - want).abs().argmax()
        i, j = divmod(int(worst), want.shape[1])
        hint(False,
             f"for a {h}×{w} image and a {kh}×{kw} kernel, output[{i}, {j}] is "
             f"{got[i, j].item():.4f} but should be {want[i, j].item():.4f} = "
             f"sum(image[{i}:{i}+{kh}, {j}:{j}+{kw}] * kernel)")
    passed("your sliding window computes exactly what F.conv2d computes "
           "(checked on 3 images, including a non-square kernel).")


def check_horizontal_edge_kernel(kernel) -> None:
    """Check a 2-D kernel that detects horizontal edges (and ignores vertical ones).

    Tested on synthetic images: a flat image must give no response, an image with a
    vertical edge (left bright, right dark) no response either, and an image with a
    horizontal edge (top bright, bottom dark) a clear one along the edge.
    """
    k = answer_tensor(kernel, "the kernel")
    hint(k.dim() == 2 and min(k.shape) >= 2,
         f"the kernel should be a 2-D tensor such as 3×3, got shape {tuple(k.shape)}")
    hint(bool(k.abs().sum() > 0), "the kernel is all zeros, so it detects nothing")
    n = 12
    flat = torch.full((n, n), 0.7, dtype=torch.float64)
    vertical = torch.zeros(n, n, dtype=torch.float64)
    vertical[:, : n // 2] = 1.0  # bright left half
    horizontal = vertical.T.contiguous()  # bright top half

    def response(img):
        return F.conv2d(img[None, None], k[None, None])[0, 0]

    scale = k.abs().sum().item()
    hint(response(flat).abs().max().item() <= 1e-6 * scale,
         f"on a flat image your kernel responds with {response(flat)[0, 0].item():.3g}; "
         f"its weights sum to {k.sum().item():.3g} but must sum to 0, so that regions "
         "without an edge give 0")
    hint(response(vertical).abs().max().item() <= 1e-6 * scale,
         "your kernel responds to a *vertical* edge (left bright, right dark); a horizontal "
         "edge detector compares the rows above the centre with the rows below it, so "
         "the weights should change from row to row but not along a row")
    r = response(horizontal)
    peak = r.abs().max().item()
    hint(peak >= 0.25 * scale,
         f"your kernel barely responds to a horizontal edge (peak {peak:.3g}); give the "
         "rows above the centre one sign and the rows below the other")
    sign = "positive" if r.sum() > 0 else "negative"
    passed(f"no response to flat regions or vertical edges, a {sign} response along a "
           "horizontal edge (bright above, dark below).")
