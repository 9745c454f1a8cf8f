"""Hinton's knowledge-distillation loss (Hinton, Vinyals & Dean 2015).

The student is pulled towards the teacher's *softened* class probabilities::

    kd = T² · KL( softmax(z_T / T) || softmax(z_S / T) ),   averaged over the batch

The factor T² keeps the gradient's size independent of the temperature T, so the weight
α of the KD term in ``L = (1 − α)·CE + α·KD + β·L_att`` means the same at every T.
The cross-entropy with the labels is *not* part of this loss: the distiller weighs the two.

Defined in the book's chapter "Knowledge distillation".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from atkd_lite.checks import check_number
from atkd_lite.device import float32_math

#: The largest temperature accepted. KD uses 1 to 20; far beyond, the softened
#: distributions differ by less than float32 resolves, and T² overflows.
MAX_T = 1000.0

__all__ = ["MAX_T", "kd_loss"]


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
            T: float = 4.0) -> torch.Tensor:
    """Soft-target loss ``T² · KL(softmax(z_T/T) || softmax(z_S/T))``, batch mean.

    Computed in float32 (also under autocast). The teacher's logits are detached.

    Args:
        student_logits (Tensor): (B, K) logits of the student.
        teacher_logits (Tensor): (B, K) logits of the teacher.
        T (float): temperature in (0, :data:`MAX_T`] (larger = softer targets).

    Returns:
        Tensor: scalar loss (float32), >= 0, zero when the logits agree up to a constant.

    Examples::

        >>> import torch
        >>> from atkd_lite.losses import kd_loss
        >>> z = torch.tensor([[2.0, 0.0, -1.0]])
        >>> float(kd_loss(z, z))
        0.0
        >>> float(kd_loss(torch.zeros(1, 3), z, T=1.0)) > 0
        True
    """
    for name, z in (("student_logits", student_logits), ("teacher_logits", teacher_logits)):
        if not isinstance(z, torch.Tensor) or z.dim() != 2:
            got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"{name} must be logits shaped (B, K); got {got}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)} differ; the two networks need the same classes "
            "and the same batch"
        )
    check_number("temperature T (e.g. 4.0)", T, positive=True, hi=MAX_T)
    with float32_math(student_logits.device):
        log_p_s = F.log_softmax(student_logits.float() / T, dim=1)
        log_p_t = F.log_softmax(teacher_logits.detach().float() / T, dim=1)
        kl = F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)
        return kl * (T * T)
