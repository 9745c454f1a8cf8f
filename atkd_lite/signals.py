"""Signals: what a distillation loss compares, computed from a network and a batch.

A *signal* is a small frozen object that owns its reference computation and the key
under which a :class:`~atkd_lite.cache.TeacherCache` stores it:

- :class:`Logits` — the network's logits (what KD compares);
- :class:`ATCamMap` — one ATCam map per image (FMA: ``combine="fma"``, MIP:
  ``combine="mip"``), made from captured feature maps;
- :class:`SaliencyMap` — SALS, the input-gradient map for the label class;
- :class:`ATMaps` — the AT baseline's per-layer maps ``q`` (stored per capture point);
- :class:`ExampleMask` — a per-image mask that comes with the data, not from a network
  (RRR's true swatch masks).

The *map signals* (one (B, H, W) map per image, which a cache stores under the signal's
key) are registered in :data:`MAPS`; :func:`map_signal` looks one up by key, and
:func:`register_map` adds your own. A new attention map is one subclass of
:class:`ATCamMap` (its per-layer ``channel_map`` or its ``layer_combine``), registered
here, plus one method file (see :mod:`atkd_lite.methods`).

Examples::

    >>> import torch, atkd_lite as ak
    >>> from atkd_lite.signals import map_signal
    >>> fma = map_signal("fma")
    >>> fma.key, fma.uses_features
    ('fma', True)
    >>> net = ak.student_cnn("tiny").eval()
    >>> fma.compute(net, torch.rand(2, 1, 28, 28)).shape
    torch.Size([2, 28, 28])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from atkd_lite.atcam import (
    COMBINE,
    ATCam,
    attention_from_features,
    layer_map,
    normalize_maps,
    resize_maps,
)
from atkd_lite.outputs import model_logits
from atkd_lite.saliency import saliency_map

__all__ = ["ATCamMap", "ATMaps", "ExampleMask", "Logits", "MAPS", "SaliencyMap", "Signal",
           "map_signal", "register_map"]


@dataclass(frozen=True)
class Signal:
    """What a loss compares. Subclasses set :attr:`key` and :meth:`compute`."""

    #: the name a teacher cache stores the signal under
    key: ClassVar[str] = ""

    def compute(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None):
        """The reference computation for a batch (no gradient bookkeeping here)."""
        raise NotImplementedError


@dataclass(frozen=True)
class Logits(Signal):
    """The network's logits (B, K)."""

    key: ClassVar[str] = "logits"

    def compute(self, net, x, y=None) -> torch.Tensor:
        return model_logits(net(x))


@dataclass(frozen=True)
class ATCamMap(Signal):
    """An ATCam map (B, H, W) in [0, 1], made from a network's captured feature maps::

        norm(layer_combine([norm(resize(channel_map(A_l), size)) for A_l in features]))

    ``combine`` is ``"fma"`` (mean over layers) or ``"mip"`` (max over layers). The two
    built-in maps take the fast path of :func:`~atkd_lite.atcam.attention_from_features`
    (the same numbers, bit for bit); a subclass that overrides :meth:`channel_map` or
    :meth:`layer_combine` is computed by the reference formula above.
    """

    combine: str = "fma"
    #: made from captured feature maps (a cache computes it from the selected layers)
    uses_features: ClassVar[bool] = True

    @property
    def key(self) -> str:  # type: ignore[override]
        return self.combine

    def channel_map(self, features: torch.Tensor, p: float = 1) -> torch.Tensor:
        """One layer's raw map from its feature map (B, C, H, W): ``mean_c |A|^p``."""
        return layer_map(features, p=p, normalize=False)

    def layer_combine(self, stack: torch.Tensor) -> torch.Tensor:
        """The per-layer maps (L, B, H, W) reduced over the layers."""
        return COMBINE[self.combine](stack)

    def is_builtin(self) -> bool:
        """Whether this is FMA or MIP as built in (ATCam's fast path computes it)."""
        return (type(self).channel_map is ATCamMap.channel_map
                and type(self).layer_combine is ATCamMap.layer_combine
                and self.combine in COMBINE)

    def from_features(self, features: Sequence[torch.Tensor], size, p: float = 1
                      ) -> torch.Tensor:
        """The map from already captured feature maps, resized to ``size``."""
        if self.is_builtin():
            return attention_from_features(features, size, p=p, combine=self.combine)
        per_layer = []
        for a in features:
            raw = self.channel_map(a, p)
            if tuple(raw.shape[-2:]) != tuple(size):
                raw = resize_maps(raw, size)
            per_layer.append(normalize_maps(raw))
        return normalize_maps(self.layer_combine(torch.stack(per_layer)))

    def compute(self, net, x, y=None, first: int = 2, last: int = 2, size=None,
                p: float = 1) -> torch.Tensor:
        """The map of ``net`` for ``x`` (its automatic capture points, ``first``/``last``)."""
        if self.is_builtin():
            return ATCam(net, first=first, last=last, combine=self.combine, p=p,
                         size=size)(x)[1]
        cam = ATCam(net, first=first, last=last)
        _, feats = cam.features(x)
        return self.from_features(feats, size or tuple(x.shape[-2:]), p)


@dataclass(frozen=True)
class SaliencyMap(Signal):
    """SALS: ``norm(max_c |∂z_y/∂x|)`` (B, H, W), the input-gradient map of the label class
    (:func:`~atkd_lite.saliency.saliency_map`); always at the input's size."""

    key: ClassVar[str] = "sals"
    uses_features: ClassVar[bool] = False

    def compute(self, net, x, y=None, **_) -> torch.Tensor:
        return saliency_map(net, x, target=y)


@dataclass(frozen=True)
class ATMaps(Signal):
    """The AT baseline's maps ``q`` (B, H_l, W_l) of the teacher's capture points
    ``layers`` (by name, in pairing order; empty: all of them)."""

    layers: tuple[str, ...] = ()
    key: ClassVar[str] = "at"


@dataclass(frozen=True)
class ExampleMask(Signal):
    """A per-image boolean mask (B, H, W) that belongs to the training data (RRR's
    swatch masks), looked up by dataset index; no network computes it."""

    key: ClassVar[str] = "mask"


#: the map signals by cache key, which a teacher cache can store as maps
MAPS: dict[str, Signal] = {"fma": ATCamMap("fma"), "mip": ATCamMap("mip"),
                           "sals": SaliencyMap()}


def register_map(signal: Signal) -> Signal:
    """Make a map signal known by its key (to caches, attribution maps, experiments).
    The same class registered again (its module imported again, a notebook cell run
    again) replaces the earlier one.

    Raises:
        ValueError: a signal of another class already has that key.
    """
    if not isinstance(signal, Signal) or not signal.key:
        raise TypeError(f"register_map takes a Signal with a key; got {signal!r}")
    known = MAPS.get(signal.key)
    same_class = known is not None and (type(known).__module__, type(known).__qualname__) == (
        type(signal).__module__, type(signal).__qualname__)  # a module or cell run again
    if known is not None and known != signal and not same_class:
        raise ValueError(f"a map signal {signal.key!r} is already registered ({known!r}); "
                         "give yours another key")
    MAPS[signal.key] = signal
    return signal


def map_signal(key: str) -> Signal:
    """The registered map signal with this key.

    Raises:
        ValueError: an unknown key, listing the known ones.
    """
    if key not in MAPS:
        raise ValueError(f"unknown map kind {key!r}; choose from {list(MAPS)}")
    return MAPS[key]
