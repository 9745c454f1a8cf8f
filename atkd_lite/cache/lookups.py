"""A teacher cache's tensors and their lookups by dataset index: the base of
:class:`~atkd_lite.cache.store.TeacherCache`.

:class:`CacheLookups` holds the stored logits, maps and AT vectors with the cache's
``meta``, and answers for dataset indices (as :class:`~atkd_lite.data.DeviceBatcher`
yields them with each batch): the logits, a map kind's maps, the AT vectors, or any
signal of :mod:`atkd_lite.signals`. The stored tensors may be ordinary tensors or
:class:`~atkd_lite.cache.sharded.ShardedRows` read from shard files.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from atkd_lite.cache.fingerprints import CacheMismatchError, dequantise
from atkd_lite.signals import ATMaps, Logits, Signal

__all__ = ["CacheLookups"]


class CacheLookups:
    """The stored tensors of a teacher cache and their lookups by dataset index.

    The base of :class:`~atkd_lite.cache.store.TeacherCache` (which builds, checks, saves
    and loads them); see there.

    Args:
        logits (Tensor): the teacher's logits ``(N, classes)``.
        maps (dict): map kind -> stored maps ``(N, H, W)``.
        at (list of Tensor): AT vectors ``(N, H_l, W_l)`` of the capture points.
        meta (dict): what the cache was built for.
    """

    def __init__(self, logits: torch.Tensor, maps: dict[str, torch.Tensor],
                 at: list[torch.Tensor], meta: dict):
        self._logits = logits
        self._maps = dict(maps)
        self._at = list(at)
        self.meta = dict(meta)
        self._at_chosen: dict[tuple, list[int] | None] = {}  # AT layer names -> indices

    @property
    def device(self) -> torch.device:
        return self._logits.device

    def __len__(self) -> int:
        return self.meta["length"]

    def _index(self, idx: torch.Tensor) -> torch.Tensor:
        return idx if idx.device == self.device else idx.to(self.device)

    def logits(self, idx: torch.Tensor, device=None) -> torch.Tensor:
        """The teacher's logits (float32) for dataset indices ``idx``."""
        out = self._logits[self._index(idx)].float()
        return out if device is None else out.to(device, non_blocking=True)

    def read(self, signal: Signal, idx: torch.Tensor, device=None):
        """The teacher's ``signal`` (:mod:`atkd_lite.signals`) for dataset indices ``idx``:
        its logits, a map signal's maps, or the AT maps of the signal's layers (by name)."""
        if isinstance(signal, Logits):
            return self.logits(idx, device=device)
        if isinstance(signal, ATMaps):
            if signal.layers not in self._at_chosen:  # found once, not at every step
                stored = self.meta["at_layers"]
                missing = [n for n in signal.layers if n not in stored]
                if missing:
                    raise CacheMismatchError(
                        f"this teacher cache holds AT vectors of {stored}, not of {missing}; "
                        f"rebuild it with TeacherCache.build(..., at=True, layers={missing})")
                self._at_chosen[signal.layers] = (
                    [stored.index(n) for n in signal.layers] if signal.layers else None)
            return self.at_maps(idx, self._at_chosen[signal.layers], device=device)
        return self.maps(signal.key, idx, device=device)

    def maps(self, kind: str, idx: torch.Tensor, device=None) -> torch.Tensor:
        """The teacher's ``kind`` maps (the key of a map signal, e.g. "fma", "mip" or
        "sals"), float32 (B, H, W) in [0, 1]."""
        if kind not in self._maps:
            raise CacheMismatchError(
                f"this teacher cache holds no {kind!r} maps (it has {sorted(self._maps)}); "
                f"build it with TeacherCache.build(..., maps=[..., {kind!r}])"
            )
        out = dequantise(self._maps[kind][self._index(idx)])
        return out if device is None else out.to(device, non_blocking=True)

    def at_maps(self, idx: torch.Tensor, layers: Sequence[int] | None = None,
                device=None) -> list[torch.Tensor]:
        """AT vectors ``q`` of the teacher's capture points, each float32 (B, H_l, W_l).

        Args:
            idx (Tensor): dataset indices.
            layers (list of int, optional): which capture points (indices into
                ``meta["at_layers"]``); default all.
        """
        if not self._at:
            raise CacheMismatchError("this teacher cache holds no AT vectors; build it with "
                                     "TeacherCache.build(..., at=True)")
        i = self._index(idx)
        chosen = range(len(self._at)) if layers is None else layers
        out = [self._at[k][i].float() for k in chosen]
        return out if device is None else [o.to(device, non_blocking=True) for o in out]

    def nbytes(self) -> int:
        """Bytes held by the cache's tensors."""
        tensors = [self._logits, *self._maps.values(), *self._at]
        return sum(t.numel() * t.element_size() for t in tensors)

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {"logits": self._logits, **{f"maps.{k}": v for k, v in self._maps.items()},
                **{f"at.{i}": a for i, a in enumerate(self._at)}}
