"""How every exercise check reports: a clear pass or a helpful hint.

A correct answer prints a line starting with ``✅ Correct:`` (:func:`passed`); a wrong one
raises :class:`AssertionError` whose message starts with ``❌ Not yet:`` and says what is
wrong and how to fix it (:func:`hint`, :func:`answer_tensor`).
"""

from __future__ import annotations

import textwrap

import torch

__all__ = ["answer_tensor", "hint", "passed"]


def passed(message: str) -> None:
    """Print ``✅ Correct: message``, wrapped to fit a notebook's and the book's output width."""
    print(textwrap.fill(f"✅ Correct: {message}", width=72, subsequent_indent="   "))


def hint(condition: bool, message: str) -> None:
    """Fail with a hint (an AssertionError that survives ``python -O``)."""
    if not condition:
        raise AssertionError(f"❌ Not yet: {message}")


def answer_tensor(value, what: str) -> torch.Tensor:
    """An answer as a float64 tensor, or a hint that ``what`` should be a tensor."""
    try:
        return torch.as_tensor(value, dtype=torch.float64)
    except Exception as err:
        raise AssertionError(
            f"❌ Not yet: {what} should be a torch tensor (or a nested list of numbers), "
            f"got {type(value).__name__} ({err})"
        ) from None
