"""Argument checks whose messages say what to do: numbers, images, model inputs."""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

__all__ = [
    "check_images",
    "check_int",
    "check_model_input",
    "check_number",
    "trusted_inputs",
]


# ---------------------------------------------------------------------------------------
# argument checks

def check_int(name: str, value, minimum: int | None = None) -> int:
    """``value`` as an int (not a bool, not a float), at least ``minimum``.

    Raises:
        ValueError: naming the argument, what it must be and what it got.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def check_number(name: str, value, lo: float | None = None, hi: float | None = None,
                 positive: bool = False) -> float:
    """``value`` as a finite float in ``[lo, hi]`` (and > 0 if ``positive``).

    Raises:
        ValueError: naming the argument, what it must be and what it got (NaN and
            infinity included).
    """
    if (isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating))
            or not math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        if hi is None:
            raise ValueError(f"{name} must be >= {lo}, got {value}")
        if lo is None:
            low = "(0" if positive else "(-inf"
            raise ValueError(f"{name} must be in {low}, {hi}], got {value}")
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")
    return float(value)


_CHECKS = threading.local()


@contextlib.contextmanager
def trusted_inputs() -> Iterator[None]:
    """Skip the NaN/infinity scan of :func:`check_images` for a block (this thread).

    The scan reads a flag back from the device, which stalls a GPU pipeline; the training
    loop turns it off for batches it builds itself (uint8 images, finite by construction,
    and a non-finite loss is caught at the end of each epoch anyway).
    """
    old = getattr(_CHECKS, "trusted", False)
    _CHECKS.trusted = True
    try:
        yield
    finally:
        _CHECKS.trusted = old


def check_images(x, name: str = "x", finite: bool = False) -> None:
    """A batch of images: a tensor shaped (B, C, H, W) (and, if ``finite``, no NaN or
    infinity, unless inside :func:`trusted_inputs`).

    Raises:
        TypeError: not a tensor.
        ValueError: not 4-D (with the fix for a single image); NaN or infinite values.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor shaped (B, C, H, W); "
                        f"got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(
            f"{name} must be a 4-D batch shaped (B, C, H, W); got shape {tuple(x.shape)}. "
            "For a single image of shape (C, H, W) pass x.unsqueeze(0)."
        )
    if (finite and x.is_floating_point() and not getattr(_CHECKS, "trusted", False)
            and x.numel() and not _all_finite(x)):
        bad = int((~torch.isfinite(x)).flatten(1).any(1).sum())
        raise ValueError(f"{name} holds NaN or infinite values (in {bad} of {x.shape[0]} "
                         "images); clean the images first, e.g. x.nan_to_num(0.0)")


def _all_finite(x: torch.Tensor) -> bool:
    """Whether every value of a floating tensor is finite, in one read and no full-size
    temporary: a sum is finite only if every term is (NaN and ±inf propagate); a sum that
    overflows is checked again exactly."""
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    return bool(torch.isfinite(x.sum(dtype=acc))) or bool(torch.isfinite(x).all())


def _autocast_on(device: torch.device) -> bool:
    try:
        return bool(torch.is_autocast_enabled(device.type))
    except TypeError:  # torch < 2.4: one flag per device family
        if device.type == "cpu":
            return bool(torch.is_autocast_cpu_enabled())
        return bool(torch.is_autocast_enabled())


def check_model_input(x, model: nn.Module, name: str = "x") -> None:
    """Images ``x`` that ``model`` can take: a finite floating-point (B, C, H, W) batch of
    the model's weight dtype (any floating dtype under autocast).

    Raises:
        TypeError: not a tensor; integer images (e.g. uint8 0–255, with the conversion);
            another float dtype than the weights' outside autocast (with the fix).
        ValueError: not 4-D; NaN or infinite values.

    Examples::

        >>> import torch
        >>> net = torch.nn.Conv2d(1, 2, 3)
        >>> check_model_input(torch.zeros(1, 1, 8, 8, dtype=torch.uint8), net)
        Traceback (most recent call last):
        ...
        TypeError: x holds torch.uint8 values, but the model needs floating-point images; for 8-bit images (0-255) pass x.float() / 255
    """
    check_images(x, name, finite=True)
    if not x.is_floating_point():
        raise TypeError(f"{name} holds {x.dtype} values, but the model needs floating-point "
                        f"images; for 8-bit images (0-255) pass {name}.float() / 255")
    weight = next((p for p in model.parameters() if p.is_floating_point()), None)
    if weight is not None and weight.dtype != x.dtype and not _autocast_on(x.device):
        raise TypeError(f"{name} is {x.dtype} but the model's weights are {weight.dtype}; "
                        f"pass {name}.to({weight.dtype}) (or convert the model with "
                        f"model.to({x.dtype}))")
