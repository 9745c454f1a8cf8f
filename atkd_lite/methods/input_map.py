"""A control for the teacher's maps: FMA towards the input itself, seen at the maps' scales.

FMA pulls the student's map towards the teacher's, ``norm(mean_l norm(resize(mean_c
|A_l|)))``. Part of any such map is where the ink is, which the input shows without a
teacher. The *input map* keeps everything of the teacher's FMA map but the features: each
kept layer's ``mean_c |A_l|`` is replaced by the image averaged down to that layer's
resolution (``adaptive_avg_pool2d`` of the channel mean), so the map is the input blurred
to the scales the teacher's map is made at, resized, normalised and combined the same
way::

    m = norm(mean_l norm(resize(pool_{H_l × W_l}(mean_c x), S)))

``fma-input`` trains the student's FMA map towards it at FMA's weight. If it helps as
much as ``fma``, the teacher's maps carry nothing a student could not read off its own
input (the low-data experiment's control; :mod:`atkd_lite.experiments.lowdata`).

Examples::

    >>> import torch, atkd_lite as ak
    >>> from atkd_lite.methods.input_map import InputMap
    >>> m = InputMap().compute(ak.teacher_cnn().eval(), torch.rand(2, 1, 28, 28))
    >>> tuple(m.shape), float(m.min()), float(m.max())
    ((2, 28, 28), 0.0, 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from atkd_lite.atcam import ATCam, combine_maps, normalize_maps, resize_maps
from atkd_lite.device import eval_mode
from atkd_lite.methods.atcam_maps import ATCamDistiller
from atkd_lite.methods.registry import register
from atkd_lite.signals import ATCamMap, register_map

__all__ = ["InputMap", "InputMapDistiller", "input_map"]


def input_map(x: torch.Tensor, scales, size) -> torch.Tensor:
    """The input blurred to each of ``scales`` ((H, W) of the teacher's kept layers),
    each resized to ``size`` and normalised, their mean normalised: (B, H, W) in [0, 1]."""
    ink = x.float().mean(1, keepdim=True)
    per_layer = []
    for scale in scales:
        pooled = F.adaptive_avg_pool2d(ink, tuple(scale))[:, 0]
        if tuple(pooled.shape[-2:]) != tuple(size):
            pooled = resize_maps(pooled, size)
        per_layer.append(normalize_maps(pooled))
    return combine_maps(per_layer, "fma")  # FMA's combination: norm(mean over layers)


@dataclass(frozen=True)
class InputMap(ATCamMap):
    """The input map (see the module): the teacher's FMA map with the input in place of
    its features; the teacher gives only the scales (its kept layers' resolutions)."""

    combine: str = "fma"
    #: computed from the input (not from captured features), so a cache runs :meth:`compute`
    uses_features: ClassVar[bool] = False

    @property
    def key(self) -> str:  # type: ignore[override]
        return "input"

    def compute(self, net, x, y=None, first: int = 2, last: int = 2, size=None,
                p: float = 1) -> torch.Tensor:
        """The input map of ``x`` at the scales of ``net``'s kept capture points."""
        with torch.no_grad():
            _, feats = ATCam(net, first=first, last=last).features(x)
        return input_map(x, [f.shape[-2:] for f in feats], size or tuple(x.shape[-2:]))


register_map(InputMap())


@register(kd=False)
class InputMapDistiller(ATCamDistiller):
    """FMA towards the input map (:class:`InputMap`), at FMA's tuned weight: the student's
    side is FMA's, the teacher gives only its kept layers' resolutions."""

    method_name = "fma-input"
    signal = InputMap()
    default_beta = 0.3  # FMA's: the same term, another target

    def __init__(self, student, teacher, config=None, **kw):
        super().__init__(student, teacher, config, **kw)
        if self.compile_maps:
            raise ValueError("compile_maps compiles the teacher's and the student's maps "
                             "together; fma-input's target is made from the input: leave "
                             "it False")

    def setup(self, x_probe: torch.Tensor) -> None:
        """Find both networks' capture points and the teacher's kept layers' scales."""
        super().setup(x_probe)
        with eval_mode(self.teacher), torch.no_grad():
            feats = self.teacher_cam.features(x_probe)[1]
        self.scales = [tuple(f.shape[-2:]) for f in feats]

    def teacher_online(self, x, y):
        size = self.config.size or tuple(x.shape[-2:])
        return self.teacher_logits(x, None), input_map(x, self.scales, size)
