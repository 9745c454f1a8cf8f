"""Attention transfer (AT), the baseline of Zagoruyko & Komodakis (ICLR 2017).

Per layer, a feature map A (B, C, H, W) becomes the vector::

    q = L2-normalise(flatten(mean_c A^2))                 # (B, H*W)

and the loss between a student and a teacher is summed over paired layers. The paper and
the authors' code (github.com/szagoruyko/attention-transfer) disagree on the distance,
so both are named (``mode``):

- ``"code"`` (default, what the authors ran): ``(q_S - q_T).pow(2).mean()``, the mean
  of the squared difference over batch and positions;
- ``"paper"`` (their eq. 2 without the β/2 factor): the batch mean of the L2 norm (not
  squared) of ``q_S - q_T``.

When the student's and teacher's maps differ in size, the student's ``mean_c A^2`` map
is resized (bilinear, ``align_corners=False``) to the teacher's H×W before flattening.
The teacher side is always detached. Pair layers of networks of different depths with
:func:`pair_layers`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from atkd_lite.atcam import resize_maps
from atkd_lite.device import at_least_float32, float32_math

__all__ = ["at_loss", "at_vector", "pair_layers"]

_MODES = ("code", "paper")


def at_vector(features: torch.Tensor, size: Sequence[int] | None = None) -> torch.Tensor:
    """AT's attention vector ``F.normalize(flatten(mean_c A^2))``, shape (B, H*W).

    Args:
        features (Tensor): feature map (B, C, H, W); half precision is computed in float32.
        size (two ints, optional): resize the (B, H, W) map ``mean_c A^2`` to this (H, W)
            (bilinear) before flattening.

    Returns:
        Tensor: (B, H*W), each row of unit L2 norm (or zero for an all-zero map).

    Examples::

        >>> import torch
        >>> q = at_vector(torch.rand(2, 8, 4, 4))
        >>> q.shape, torch.allclose(q.norm(dim=1), torch.ones(2))
        (torch.Size([2, 16]), True)
    """
    _check_4d(features, "features")
    with float32_math(features.device):
        m = at_least_float32(features).pow(2).mean(dim=1)
        if size is not None and tuple(m.shape[-2:]) != tuple(size):
            m = resize_maps(m, size)  # bilinear, align_corners=False
        return F.normalize(m.flatten(1), dim=1)


def pair_layers(n_student: int, n_teacher: int) -> list[tuple[int, int]]:
    """Pair the layers of a student and a teacher with different numbers of capture points.

    Every layer of the network with fewer capture points is used once; from the other
    network, as many layers are taken, evenly spaced from its first to its last
    (``round(k (N - 1) / (n - 1))``), so early layers meet early layers and the last meets
    the last. With a single layer on the short side, it is paired with the other's last.

    Args:
        n_student (int): number of student feature maps (>= 1).
        n_teacher (int): number of teacher feature maps (>= 1).

    Returns:
        list of (int, int): ``(student_index, teacher_index)`` pairs in increasing order.

    Examples::

        >>> pair_layers(2, 4)
        [(0, 0), (1, 3)]
        >>> pair_layers(3, 5)
        [(0, 0), (1, 2), (2, 4)]
        >>> pair_layers(3, 3)
        [(0, 0), (1, 1), (2, 2)]
    """
    for name, n in (("n_student", n_student), ("n_teacher", n_teacher)):
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"{name} must be a positive int (number of feature maps); got {n!r}")
    n, big = min(n_student, n_teacher), max(n_student, n_teacher)
    if n == 1:
        spread = [big - 1]
    else:
        spread = [round(k * (big - 1) / (n - 1)) for k in range(n)]
    if n_student <= n_teacher:
        return list(zip(range(n), spread))
    return list(zip(spread, range(n)))


def _check_4d(t, what: str) -> None:
    if not isinstance(t, torch.Tensor) or t.dim() != 4:
        got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"{what} must be a 4-D feature map (B, C, H, W); got {got}")


def at_loss(
    student_feats: Sequence[torch.Tensor],
    teacher_feats: Sequence[torch.Tensor],
    mode: str = "code",
) -> torch.Tensor:
    """Attention-transfer loss, summed over feature maps paired in order.

    Args:
        student_feats (list of Tensor): student feature maps, each (B, C_s, H_s, W_s).
        teacher_feats (list of Tensor): teacher feature maps, each (B, C_t, H_t, W_t), same
            count as the student's (select them with :func:`pair_layers` first when the
            networks differ in depth); or the teacher's AT maps already computed, each
            (B, H_t, W_t) (e.g. ``at_vector(A).view(B, H, W)``, as a teacher cache stores
            them; L2-normalised again here). Detached here.
        mode (str): ``"code"`` (mean squared difference, the authors' code) or ``"paper"``
            (batch mean of the L2 distance, their eq. 2 without β/2).

    Returns:
        Tensor: scalar loss (at least float32), differentiable w.r.t. the student's features.

    Examples::

        >>> import torch
        >>> from atkd_lite.losses.at import at_loss, pair_layers
        >>> student = [torch.rand(4, 8, 14, 14, requires_grad=True), torch.rand(4, 16, 7, 7)]
        >>> teacher = [torch.rand(4, 32, 28, 28), torch.rand(4, 32, 14, 14),
        ...            torch.rand(4, 64, 7, 7)]
        >>> pairs = pair_layers(len(student), len(teacher))
        >>> loss = at_loss([student[i] for i, _ in pairs], [teacher[j] for _, j in pairs])
        >>> loss.backward()
        >>> bool(loss >= 0), student[0].grad is not None
        (True, True)
    """
    if mode not in _MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of {list(_MODES)}")
    if isinstance(student_feats, torch.Tensor):
        student_feats = [student_feats]
    if isinstance(teacher_feats, torch.Tensor):
        teacher_feats = [teacher_feats]
    student_feats, teacher_feats = list(student_feats), list(teacher_feats)
    if not student_feats or not teacher_feats:
        raise ValueError("at_loss needs at least one student and one teacher feature map")
    if len(student_feats) != len(teacher_feats):
        raise ValueError(
            f"got {len(student_feats)} student and {len(teacher_feats)} teacher feature maps; "
            "pass equally many, e.g. chosen with pair_layers(n_student, n_teacher)"
        )
    total = None
    for k, (fs, ft) in enumerate(zip(student_feats, teacher_feats)):
        _check_4d(fs, f"student_feats[{k}]")
        if isinstance(ft, torch.Tensor) and ft.dim() == 3:  # the teacher's AT map itself
            with float32_math(ft.device):
                q_t = F.normalize(at_least_float32(ft.detach()).flatten(1), dim=1)
        else:
            _check_4d(ft, f"teacher_feats[{k}]")
            q_t = at_vector(ft.detach())
        if fs.shape[0] != ft.shape[0]:
            raise ValueError(
                f"pair {k}: student batch {fs.shape[0]} != teacher batch {ft.shape[0]}; "
                "feed both networks the same images"
            )
        q_s = at_vector(fs, size=ft.shape[-2:])
        diff = q_s - q_t
        term = diff.pow(2).mean() if mode == "code" else diff.norm(dim=1).mean()
        total = term if total is None else total + term
    return total
