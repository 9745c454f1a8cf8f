"""A new attention map as a user adds one: one signal class and one method file.

The map: each captured layer's channel-wise *max* of ``|A|^p`` (where FMA takes the
channel mean), resized and normalised per layer, then averaged over the layers and
normalised again. Importing this file registers the signal (so a teacher cache can store
it and ``attribution_maps`` can draw it) and the method with its ``+kd`` variant (so
``distill``, the grids and the CLI accept ``"cmax"`` and ``"cmax+kd"``). No other file
of the package changes (``tests/test_methods.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from atkd_lite.methods import ATCamDistiller, register
from atkd_lite.signals import ATCamMap, register_map


@dataclass(frozen=True)
class ChannelMaxMap(ATCamMap):
    """``norm(mean_l norm(resize(max_c |A_l|^p)))``."""

    combine: str = "fma"  # the layers are averaged, as in FMA

    @property
    def key(self) -> str:
        return "cmax"

    def channel_map(self, features: torch.Tensor, p: float = 1) -> torch.Tensor:
        return features.float().abs().pow(p).amax(dim=1)


CMAX = register_map(ChannelMaxMap())


@register
class ChannelMaxDistiller(ATCamDistiller):
    """The attention loss between the two networks' channel-max maps."""

    method_name = "cmax"
    signal = CMAX
    default_beta = 0.3
