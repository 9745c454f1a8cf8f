"""Check of chapter 2's exercise (teacher and student): the parameters of one conv block."""

from __future__ import annotations

import numbers

from torch import nn

from atkd_lite.book.exercises.feedback import hint, passed

__all__ = ["check_conv_block_parameters"]


def check_conv_block_parameters(conv_block_parameters) -> None:
    """Check ``conv_block_parameters(c_in, c_out, k=3)``: parameters of one conv block.

    A block of the book's CNNs is ``Conv2d(c_in, c_out, k×k, bias=False) →
    BatchNorm2d(c_out) → ReLU``. The reference is the parameter count of those
    :mod:`torch.nn` layers.
    """
    cases = [(1, 8, 3), (8, 16, 3), (32, 64, 3), (3, 5, 5), (16, 32, 1)]
    for c_in, c_out, k in cases:
        got = conv_block_parameters(c_in, c_out, k)
        hint(isinstance(got, numbers.Integral) or (isinstance(got, float) and got.is_integer()),
             f"conv_block_parameters({c_in}, {c_out}, {k}) returned {got!r}; return a "
             "whole number (an int)")
        block = nn.Sequential(nn.Conv2d(c_in, c_out, k, bias=False, device="meta"),
                              nn.BatchNorm2d(c_out, device="meta"))
        want = sum(p.numel() for p in block.parameters())
        weights = c_in * c_out * k * k
        where = f"conv_block_parameters({c_in}, {c_out}, {k}) = {got:,}"
        hint(got != weights,
             f"{where} counts only the convolution weights; batch normalisation adds a "
             "learned scale and shift per output channel")
        hint(got != weights + c_out,
             f"{where}: the convolution has no bias here (bias=False, batch norm's shift "
             "does its job), but batch norm has a scale *and* a shift per channel")
        hint(got != weights + 3 * c_out,
             f"{where} includes a convolution bias; the book's blocks use bias=False "
             "because batch norm's shift makes it redundant")
        hint(got != weights + 4 * c_out,
             f"{where} counts batch norm's running mean and variance; those are buffers "
             "(statistics), not learned parameters")
        hint(got == want,
             f"{where}, but such a block has {want:,} parameters: c_in × c_out × k × k "
             "convolution weights plus a scale and a shift per output channel")
    passed("c_in·c_out·k² convolution weights plus 2·c_out batch-norm parameters "
           f"(checked on {len(cases)} blocks).")
