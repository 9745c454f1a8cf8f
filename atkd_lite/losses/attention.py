"""The attention loss between a student's and a teacher's attention maps.

Two forms (``form=``), both with the teacher's map detached:

- ``"l2"`` (default): the batch mean of ``||n(M_S) − n(M_T)||²`` where ``n``
  L2-normalises each flattened map. It is zero for equal maps, ignores a positive
  per-sample scale of either map (only *where* the attention is matters, not how strong),
  and lies in [0, 2] for non-negative maps.
- ``"bce"`` ("segmentation-style", as the paper calls its term a segmentation loss):
  binary cross-entropy of the student map, read as per-pixel probabilities, against the
  teacher map used as a soft mask, averaged over pixels and batch. Maps are clamped to
  [ε, 1 − ε] for stability. Its minimum is the teacher map's own entropy (not zero), and
  it is *not* scale invariant. The book compares both; the default was chosen on the
  validation split (``benchmarks/tune_defaults.py``).

Maps of any shape (B, ...) are accepted, e.g. (B, H, W) from :class:`~atkd_lite.ATCam` or
:func:`~atkd_lite.saliency_map`; arithmetic runs in float32.

Defined in the book's chapter "Attention-guided distillation".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from atkd_lite.device import float32_math

__all__ = ["FORMS", "attention_loss"]

#: the attention-loss forms :func:`attention_loss` knows
FORMS = ("l2", "bce")

#: clamp for the BCE form: keeps log() finite for maps that are exactly 0 or 1
BCE_EPS = 1e-4


def attention_loss(student_map: torch.Tensor, teacher_map: torch.Tensor,
                   form: str = "l2") -> torch.Tensor:
    """Distance between student and teacher attention maps (teacher detached).

    Args:
        student_map (Tensor): (B, H, W) (any (B, ...) works), differentiable.
        teacher_map (Tensor): same shape; detached here.
        form (str): ``"l2"`` — batch mean of ``||n(M_S) − n(M_T)||²`` with per-sample L2
            normalisation (``F.normalize``, so all-zero maps give 0, never NaN); or
            ``"bce"`` — binary cross-entropy with the teacher map as a soft target,
            mean over pixels and batch (maps should be in [0, 1]).

    Returns:
        Tensor: scalar loss, float32.

    Examples::

        >>> import torch
        >>> from atkd_lite.losses import attention_loss
        >>> m = torch.rand(2, 8, 8)
        >>> float(attention_loss(m, m))
        0.0
        >>> t = torch.rand(2, 8, 8)
        >>> bool(torch.isclose(attention_loss(3 * m, t), attention_loss(m, t)))  # scale invariant
        True
        >>> float(attention_loss(m, t, form="bce")) > 0
        True
    """
    if form not in FORMS:
        raise ValueError(f"unknown attention-loss form {form!r}; use one of {list(FORMS)}")
    for name, m in (("student_map", student_map), ("teacher_map", teacher_map)):
        if not isinstance(m, torch.Tensor) or m.dim() < 2:
            got = tuple(m.shape) if isinstance(m, torch.Tensor) else type(m).__name__
            raise ValueError(f"{name} must be a batch of maps shaped (B, H, W); got {got}")
    if student_map.shape != teacher_map.shape:
        raise ValueError(
            f"student map {tuple(student_map.shape)} and teacher map "
            f"{tuple(teacher_map.shape)} differ in shape; compute both at the same size "
            "(ATCam(..., size=(H, W)) or the input's size)"
        )
    with float32_math(student_map.device):
        s = student_map.float().flatten(1)
        t = teacher_map.detach().float().flatten(1)
        if form == "l2":
            diff = F.normalize(s, dim=1, eps=1e-12) - F.normalize(t, dim=1, eps=1e-12)
            return diff.pow(2).sum(dim=1).mean()
        return F.binary_cross_entropy(s.clamp(BCE_EPS, 1 - BCE_EPS), t.clamp(0, 1))
