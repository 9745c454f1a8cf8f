"""Check functions for the book's exercises: a clear pass or a helpful hint.

Each exercise in a chapter ends with a cell that calls one function from here with the
learner's answer. A correct answer prints a line starting with ``✅ Correct:``; a wrong one
raises :class:`AssertionError` whose message says what is wrong and how to fix it. An
unsolved exercise (the stub of a student copy raises :class:`NotImplementedError`)
propagates unchanged, so the learner sees which exercise is still open.

The checks compare against something independent of the answer (``torch.nn.functional``,
``torch.nn`` layers, invariants such as "a flat image gives no edge"), never against a
copy of the solution.

One small function per exercise, grouped by chapter.

Examples::

    >>> from atkd_lite import exercises
    >>> exercises.check_fc_parameters(lambda n_in, n_out: n_in * n_out + n_out)
    ✅ Correct: n_in × n_out weights plus n_out biases; a 1000×1000 RGB image
       into 1,000 units needs 3,000,001,000 parameters.
"""

from __future__ import annotations

import numbers
import textwrap

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "check_conv2d_by_hand",
    "check_fc_parameters",
    "check_horizontal_edge_kernel",
]


def _passed(message: str) -> None:
    # wrapped to fit a notebook's and the book's output width
    print(textwrap.fill(f"✅ Correct: {message}", width=72, subsequent_indent="   "))


def _hint(condition: bool, message: str) -> None:
    """Fail with a hint (an AssertionError that survives ``python -O``)."""
    if not condition:
        raise AssertionError(f"❌ Not yet: {message}")


def _tensor(value, what: str) -> torch.Tensor:
    try:
        return torch.as_tensor(value, dtype=torch.float64)
    except Exception as err:
        raise AssertionError(
            f"❌ Not yet: {what} should be a torch tensor (or a nested list of numbers), "
            f"got {type(value).__name__} ({err})"
        ) from None


# ---------------------------------------------------------------------------------------
# Chapter 1 — CNN basics

def check_fc_parameters(fc_parameters) -> None:
    """Check ``fc_parameters(n_in, n_out)``: the parameters of a fully-connected layer.

    The reference is the parameter count of :class:`torch.nn.Linear` (built on the
    ``meta`` device, so even billions of weights cost no memory).
    """
    cases = [(784, 100), (3, 2), (1, 10), (1000 * 1000 * 3, 1000)]
    for n_in, n_out in cases:
        got = fc_parameters(n_in, n_out)
        _hint(isinstance(got, numbers.Integral) or (isinstance(got, float) and got.is_integer()),
              f"fc_parameters({n_in}, {n_out}) returned {got!r}; return a whole number "
              "(an int), e.g. with *, + and no division")
        want = sum(p.numel() for p in nn.Linear(n_in, n_out, device="meta").parameters())
        weights = n_in * n_out
        _hint(got != weights,
              f"fc_parameters({n_in}, {n_out}) = {got:,} counts only the weights; every "
              "output unit also has a bias")
        _hint(got != weights + n_in,
              f"fc_parameters({n_in}, {n_out}) = {got:,}: there is one bias per *output* "
              f"unit ({n_out}), not per input ({n_in})")
        _hint(got == want,
              f"fc_parameters({n_in}, {n_out}) = {got:,}, but such a layer has {want:,} "
              "parameters: one weight for every (input, unit) pair plus one bias per unit")
    _passed("n_in × n_out weights plus n_out biases; a 1000×1000 RGB image into 1,000 units "
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
        got = _tensor(conv2d_by_hand(image.clone(), kernel.clone()), "the output")
        want = F.conv2d(image[None, None].double(), kernel[None, None].double())[0, 0]
        h, w = image.shape
        kh, kw = kernel.shape
        _hint(tuple(got.shape) == tuple(want.shape),
              f"for a {h}×{w} image and a {kh}×{kw} kernel the output should be "
              f"(H - kh + 1, W - kw + 1) = {tuple(want.shape)}, got {tuple(got.shape)}; "
              "slide the kernel only where it fits completely (no padding)")
        if torch.allclose(got, want, atol=1e-4):
            continue
        flipped = F.conv2d(image[None, None].double(),
                           kernel.flip(0, 1)[None, None].double())[0, 0]
        _hint(not torch.allclose(got, flipped, atol=1e-4),
              "your output is the textbook convolution with a *flipped* kernel; deep "
              "learning's conv2d is cross-correlation: multiply image[i+u, j+v] by "
              "kernel[u, v] without flipping")
        worst = (got - want).abs().argmax()
        i, j = divmod(int(worst), want.shape[1])
        _hint(False,
              f"for a {h}×{w} image and a {kh}×{kw} kernel, output[{i}, {j}] is "
              f"{got[i, j].item():.4f} but should be {want[i, j].item():.4f} = "
              f"sum(image[{i}:{i}+{kh}, {j}:{j}+{kw}] * kernel)")
    _passed("your sliding window computes exactly what F.conv2d computes "
            "(checked on 3 images, including a non-square kernel).")


def check_horizontal_edge_kernel(kernel) -> None:
    """Check a 2-D kernel that detects horizontal edges (and ignores vertical ones).

    Tested on synthetic images: a flat image must give no response, an image with a
    vertical edge (left bright, right dark) no response either, and an image with a
    horizontal edge (top bright, bottom dark) a clear one along the edge.
    """
    k = _tensor(kernel, "the kernel")
    _hint(k.dim() == 2 and min(k.shape) >= 2,
          f"the kernel should be a 2-D tensor such as 3×3, got shape {tuple(k.shape)}")
    _hint(bool(k.abs().sum() > 0), "the kernel is all zeros, so it detects nothing")
    n = 12
    flat = torch.full((n, n), 0.7, dtype=torch.float64)
    vertical = torch.zeros(n, n, dtype=torch.float64)
    vertical[:, : n // 2] = 1.0  # bright left half
    horizontal = vertical.T.contiguous()  # bright top half

    def response(img):
        return F.conv2d(img[None, None], k[None, None])[0, 0]

    scale = k.abs().sum().item()
    _hint(response(flat).abs().max().item() <= 1e-6 * scale,
          f"on a flat image your kernel responds with {response(flat)[0, 0].item():.3g}; "
          f"its weights sum to {k.sum().item():.3g} but must sum to 0, so that regions "
          "without an edge give 0")
    _hint(response(vertical).abs().max().item() <= 1e-6 * scale,
          "your kernel responds to a *vertical* edge (left bright, right dark); a horizontal "
          "edge detector compares the rows above the centre with the rows below it, so "
          "the weights should change from row to row but not along a row")
    r = response(horizontal)
    peak = r.abs().max().item()
    _hint(peak >= 0.25 * scale,
          f"your kernel barely responds to a horizontal edge (peak {peak:.3g}); give the "
          "rows above the centre one sign and the rows below the other")
    sign = "positive" if r.sum() > 0 else "negative"
    _passed(f"no response to flat regions or vertical edges, a {sign} response along a "
            "horizontal edge (bright above, dark below).")
