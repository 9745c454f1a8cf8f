"""The teacher and student CNN families, with their attention capture points.

Both families are the same small, readable architecture — stages of
``Conv2d → BatchNorm2d → ReLU`` blocks separated by max-pooling, then global average
pooling and a linear classifier — at different widths and depths. Every block is a named
module whose output (after a *non-inplace* ReLU, so hooks see the real activation) is a
natural attention capture point; :meth:`CNN.atkd_capture_points` lists them in forward
order, which is what :class:`atkd_lite.ATCam` uses in "auto" mode.

Defined in the book's chapter "Teacher and student". For colour images the module also
has the networks of the CIFAR literature (chapter "Your own model"): :class:`WideResNet`
(WRN-16-2 and WRN-16-1, the teacher and student of attention transfer's CIFAR-10
experiments) and :func:`resnet18_cifar`, torchvision's ResNet-18 with a CIFAR stem.

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
    "MLP",
    "MLP_STUDENTS",
    "build_student",
    "student_mlp",
    "CNN",
    "STUDENT_SIZES",
    "WideResNet",
    "build_model",
    "resnet18_cifar",
    "student_cnn",
    "teacher_cnn",
    "twice_differentiable",
    "wide_resnet",
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


class MLP(nn.Sequential):
    """A multilayer perceptron on raw pixels: ``Flatten → (Linear → ReLU)* → Linear``.

    No convolution and no pooling, so nothing in its architecture makes it prefer the
    digit's shape to a bright corner: the student in which the decoy shortcut bites
    (:mod:`atkd_lite.experiments.testbed`). It has no capture points, so of the attention
    terms only those made from input gradients (SALS, RRR, the teacher's map as the mask)
    apply to it.
    """

    def __init__(self, in_features: int = 784, hidden=(512, 512), num_classes: int = 10):
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        super().__init__(*layers)
        self.config = {"arch": "mlp", "in_features": in_features, "hidden": list(hidden),
                       "num_classes": num_classes}


def student_mlp(hidden=(512, 512), in_features: int = 784, num_classes: int = 10) -> MLP:
    """The MLP student of the decoy testbed (two hidden layers of 512 by default).

    Examples::

        >>> import torch
        >>> student_mlp()(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """
    return MLP(in_features, tuple(hidden), num_classes)


#: The MLP students by name -> hidden widths (:func:`build_student`).
MLP_STUDENTS: dict[str, tuple[int, ...]] = {"mlp-512x2": (512, 512), "mlp-256": (256,)}


def build_student(name: str = "small", in_channels: int = 1, num_classes: int = 10,
                  image_size: Sequence[int] = (28, 28)) -> nn.Module:
    """A student by name: a CNN size (:data:`STUDENT_SIZES`) or an MLP
    (:data:`MLP_STUDENTS`, which needs the image size for its input layer).

    Raises:
        ValueError: an unknown name, listing the known ones.

    Examples::

        >>> build_student("mlp-256").config["hidden"]
        [256]
    """
    if name in MLP_STUDENTS:
        h, w = image_size
        return student_mlp(MLP_STUDENTS[name], in_channels * h * w, num_classes)
    if name not in STUDENT_SIZES:
        raise ValueError(f"unknown student {name!r}; choose one of "
                         f"{[*STUDENT_SIZES, *MLP_STUDENTS]}")
    return student_cnn(name, in_channels, num_classes)


def build_model(config: dict) -> nn.Module:
    """Rebuild a model from its ``model.config`` dict (as stored in checkpoints)."""
    archs = {"cnn": CNN, "wrn": WideResNet, "mlp": MLP}
    if not isinstance(config, dict) or config.get("arch") not in archs:
        raise ValueError(f"cannot build a model from config {config!r}: expected arch= "
                         f"one of {sorted(archs)}")
    kwargs = {k: v for k, v in config.items() if k != "arch"}
    try:
        return archs[config["arch"]](**kwargs)
    except TypeError as err:
        raise ValueError(f"invalid model config {config!r}: {err}") from err


# ---------------------------------------------------------------------------------------
# networks of the CIFAR literature

class _PreActBlock(nn.Module):
    """Wide ResNet's basic block: ``BN → ReLU → conv3×3 → BN → ReLU → conv3×3`` plus the
    shortcut (a 1×1 conv of the activated input where the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.shortcut = (nn.Conv2d(c_in, c_out, 1, stride, bias=False)
                         if stride != 1 or c_in != c_out else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.bn1(x))
        out = self.conv2(torch.relu(self.bn2(self.conv1(a))))
        return out + (x if self.shortcut is None else self.shortcut(a))


class WideResNet(nn.Module):
    """WRN-``depth``-``width`` (Zagoruyko & Komodakis 2016), the CIFAR networks of
    attention transfer: WRN-16-2 (≈0.69 M parameters) teaches WRN-16-1 (≈0.18 M).

    A 3×3 stem with 16 channels, three groups of ``(depth − 4) / 6`` pre-activation basic
    blocks with ``16·width``, ``32·width``, ``64·width`` channels (the second and third
    start with stride 2), then BN → ReLU → global average pooling → linear. The capture
    points are the three groups' outputs, the places where attention transfer's own code
    takes its maps, so AT with the defaults (every capture point, paired by depth) is the
    paper's setting.

    Args:
        depth (int): 6n + 4 (16, 22, 28, 40, ...).
        width (int): the widening factor k.
        num_classes (int): outputs.
        in_channels (int): image channels.

    Examples::

        >>> import torch
        >>> net = WideResNet(16, 1)
        >>> net(torch.zeros(2, 3, 32, 32)).shape, net.atkd_capture_points()
        (torch.Size([2, 10]), ['group1', 'group2', 'group3'])
    """

    def __init__(self, depth: int = 16, width: int = 1, num_classes: int = 10,
                 in_channels: int = 3):
        super().__init__()
        if not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
            raise ValueError(f"depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, 40, ...); "
                             f"got {depth!r}")
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive int; got {width!r}")
        if in_channels < 1 or num_classes < 2:
            raise ValueError(f"need in_channels >= 1 and num_classes >= 2, got "
                             f"{in_channels}, {num_classes}")
        self.config = {"arch": "wrn", "depth": depth, "width": width,
                       "num_classes": int(num_classes), "in_channels": int(in_channels)}
        self.in_channels, self.num_classes = int(in_channels), int(num_classes)
        n = (depth - 4) // 6
        widths = [16, 16 * width, 32 * width, 64 * width]
        self.conv = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        c_in = widths[0]
        for g, (c_out, stride) in enumerate(zip(widths[1:], (1, 2, 2)), start=1):
            blocks = []
            for b in range(n):
                blocks.append(_PreActBlock(c_in, c_out, stride if b == 0 else 1))
                c_in = c_out
            self.add_module(f"group{g}", nn.Sequential(*blocks))
        self.bn = nn.BatchNorm2d(c_in)
        self.fc = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def atkd_capture_points(self) -> list[str]:
        """The three groups' outputs, in forward order."""
        return ["group1", "group2", "group3"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected images shaped (B, {self.in_channels}, H, W), got "
                             f"{tuple(x.shape)}; this model was built with in_channels="
                             f"{self.in_channels}")
        out = self.group3(self.group2(self.group1(self.conv(x))))
        out = torch.relu(self.bn(out))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1))


def wide_resnet(depth: int = 16, width: int = 1, num_classes: int = 10,
                in_channels: int = 3) -> WideResNet:
    """A :class:`WideResNet`, e.g. ``wide_resnet(16, 2)`` (teacher), ``wide_resnet(16, 1)``
    (student)."""
    return WideResNet(depth, width, num_classes, in_channels)


def resnet18_cifar(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """torchvision's ResNet-18 with the CIFAR stem: a 3×3 stride-1 first convolution and no
    max-pooling, so 32×32 images keep 4×4 maps at the end (the ImageNet stem would leave
    1×1).

    Its natural capture points are the outputs of its four stages, ``layer1`` …
    ``layer4``; in "auto" mode ATCam listens to every Conv2d (``conv1``,
    ``layer1.0.conv1``, … in forward order).

    Examples::

        >>> import torch
        >>> net = resnet18_cifar()
        >>> net.conv1.kernel_size, type(net.maxpool).__name__, net(torch.zeros(1, 3, 32, 32)).shape
        ((3, 3), 'Identity', torch.Size([1, 10]))
    """
    from torchvision.models import resnet18

    net = resnet18(weights=None, num_classes=num_classes)
    net.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
    nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    net.maxpool = nn.Identity()
    return net



class _CompositeHardsigmoid(nn.Module):
    """``relu6(x + 3) / 6``: the same function as ``nn.Hardsigmoid``, built from operations
    that PyTorch can differentiate twice (its fused kernel has no second derivative)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.relu6(x + 3.0) / 6.0


def twice_differentiable(model: nn.Module) -> nn.Module:
    """Replace, in place, the modules whose gradient PyTorch cannot differentiate again.

    SALS trains a student through the gradient of its saliency map (double backprop).
    PyTorch implements no second derivative for ``hardsigmoid``, which MobileNetV3's
    squeeze-and-excitation blocks use; this swaps every :class:`torch.nn.Hardsigmoid`
    for ``relu6(x + 3) / 6``, the same function (so the outputs do not change).

    Returns:
        nn.Module: ``model`` itself.

    Examples::

        >>> import torch, torchvision
        >>> net = torchvision.models.mobilenet_v3_small(num_classes=10).eval()
        >>> x = torch.rand(2, 3, 32, 32)
        >>> before = net(x)
        >>> torch.allclose(twice_differentiable(net)(x), before, atol=1e-6)
        True
    """
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Hardsigmoid):
                setattr(module, child_name, _CompositeHardsigmoid())
    return model
