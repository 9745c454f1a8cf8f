"""The teacher and student CNN families, with their attention capture points.

Both families are the same small, readable architecture — stages of
``Conv2d → BatchNorm2d → ReLU`` blocks separated by max-pooling, then global average
pooling and a linear classifier — at different widths and depths. Every block is a named
module whose output (after a *non-inplace* ReLU, so hooks see the real activation) is a
natural attention capture point; :meth:`CNN.atkd_capture_points` lists them in forward
order, which is what :class:`atkd_lite.ATCam` uses in "auto" mode.

Defined in the book's chapter "Teacher and student".

Examples::

    >>> import torch
    >>> from atkd_lite.models import teacher_cnn, student_cnn
    >>> t, s = teacher_cnn(), student_cnn()
    >>> t(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    >>> t.atkd_capture_points()[:2]
    ['features.s1c1', 'features.s1c2']
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

__all__ = [
    "CNN",
    "STUDENT_SIZES",
    "build_model",
    "student_cnn",
    "teacher_cnn",
]


class ConvBlock(nn.Sequential):
    """``Conv2d(3×3, padding 1) → BatchNorm2d → ReLU`` (non-inplace: hooks see the output)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            OrderedDict(
                conv=nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                bn=nn.BatchNorm2d(out_channels),
                relu=nn.ReLU(inplace=False),
            )
        )


class CNN(nn.Module):
    """A VGG-style CNN: ``len(widths)`` stages of ``convs_per_stage`` blocks each.

    Args:
        widths: output channels of each stage; a 2×2 max-pool follows every stage but
            the last.
        convs_per_stage: conv blocks per stage.
        in_channels: image channels (1 for MNIST, 3 for CIFAR-10).
        num_classes: number of classes.
        dropout: dropout before the classifier.

    The blocks are named ``features.s{stage}c{conv}`` (1-based), e.g. ``features.s1c1``.
    """

    def __init__(
        self,
        widths: Sequence[int] = (32, 64, 128),
        convs_per_stage: int = 2,
        in_channels: int = 1,
        num_classes: int = 10,
        dropout: float = 0.0,
    ):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if not widths or min(widths) < 1 or convs_per_stage < 1:
            raise ValueError(
                f"widths must be positive channel counts and convs_per_stage >= 1, "
                f"got widths={widths}, convs_per_stage={convs_per_stage}"
            )
        if in_channels < 1 or num_classes < 2:
            raise ValueError(
                f"need in_channels >= 1 and num_classes >= 2, got {in_channels}, {num_classes}"
            )
        self.config = {
            "arch": "cnn",
            "widths": list(widths),
            "convs_per_stage": int(convs_per_stage),
            "in_channels": int(in_channels),
            "num_classes": int(num_classes),
            "dropout": float(dropout),
        }
        self.in_channels = int(in_channels)
        self.num_classes = int(num_classes)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        c_in = in_channels
        for s, width in enumerate(widths, start=1):
            for c in range(1, convs_per_stage + 1):
                layers[f"s{s}c{c}"] = ConvBlock(c_in, width)
                c_in = width
            if s < len(widths):
                layers[f"pool{s}"] = nn.MaxPool2d(2)
        self.features = nn.Sequential(layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(c_in, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def atkd_capture_points(self) -> list[str]:
        """Module names whose outputs are the attention capture points, in forward order."""
        return [f"features.{n}" for n, m in self.features.named_children() if isinstance(m, ConvBlock)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected images shaped (B, {self.in_channels}, H, W), got {tuple(x.shape)}; "
                f"this model was built with in_channels={self.in_channels} "
                f"(grayscale digits have 1 channel, CIFAR-10 has 3)"
            )
        return self.head(self.features(x))


def teacher_cnn(in_channels: int = 1, num_classes: int = 10, widths=(32, 64, 128),
                convs_per_stage: int = 2, dropout: float = 0.1) -> CNN:
    """The default teacher: 3 stages × 2 conv blocks, widths 32-64-128 (~0.29 M parameters)."""
    return CNN(widths, convs_per_stage, in_channels, num_classes, dropout)


#: The student sizes, name -> (widths, convs_per_stage).
STUDENT_SIZES: dict[str, tuple[tuple[int, ...], int]] = {
    "tiny": ((4, 8, 16), 1),
    "small": ((8, 16, 32), 1),
    "medium": ((16, 32, 64), 1),
}


def student_cnn(size: str = "small", in_channels: int = 1, num_classes: int = 10) -> CNN:
    """A student from the family ``tiny`` / ``small`` / ``medium`` (one conv per stage).

    The default ``small`` student has ~6 k parameters, ~47× fewer than the teacher.
    """
    if size not in STUDENT_SIZES:
        raise ValueError(f"unknown student size {size!r}; choose one of {sorted(STUDENT_SIZES)}")
    widths, convs = STUDENT_SIZES[size]
    return CNN(widths, convs, in_channels, num_classes, dropout=0.0)


def build_model(config: dict) -> CNN:
    """Rebuild a model from its ``model.config`` dict (as stored in checkpoints)."""
    if not isinstance(config, dict) or config.get("arch") != "cnn":
        raise ValueError(f"cannot build a model from config {config!r}: expected arch='cnn'")
    kwargs = {k: v for k, v in config.items() if k != "arch"}
    try:
        return CNN(**kwargs)
    except TypeError as err:
        raise ValueError(f"invalid model config {config!r}: {err}") from err
