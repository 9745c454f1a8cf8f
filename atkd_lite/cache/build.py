"""Computing a teacher's signals over a dataset: the work of :meth:`TeacherCache.build
<atkd_lite.cache.store.TeacherCache.build>`.

One pass of the (frozen) teacher over the un-augmented images, in order, gives its logits,
the attention maps of every asked-for map signal and the AT vectors of every capture
point; under ``torchrun`` the processes share the batches and every one receives the
whole result. :func:`compute_teacher_signals` returns the tensors and the ``meta`` that a
:class:`~atkd_lite.cache.store.TeacherCache` is made of.
"""

from __future__ import annotations

import datetime as _dt
import inspect
from collections.abc import Sequence

import torch
from torch import nn

from atkd_lite import distributed
from atkd_lite.atcam import ATCam, select_layers
from atkd_lite.cache.fingerprints import (
    CACHE_FORMAT,
    MAP_DTYPES,
    MAP_KINDS,
    dataset_fingerprint,
    dataset_name,
    model_fingerprint,
    quantise,
)
from atkd_lite.checks import check_int, check_number
from atkd_lite.data import ImageSet, make_batches
from atkd_lite.datasets import as_dataset
from atkd_lite.device import autocast_context, eval_mode, progress_bar
from atkd_lite.losses.at import at_vector
from atkd_lite.signals import MAPS, map_signal

__all__ = ["compute_teacher_signals"]


@torch.no_grad()
def compute_teacher_signals(teacher: nn.Module, data: ImageSet,
                            maps: Sequence[str] = MAP_KINDS, at: bool = True, first: int = 2,
                            last: int = 2, p: float = 1, size: Sequence[int] | None = None,
                            map_dtype: str = "uint8", batch_size: int = 256, device=None,
                            amp: bool | None = None, progress: bool = True,
                            layers: Sequence[str] | None = None,
                            ) -> tuple[torch.Tensor, dict[str, torch.Tensor],
                                       list[torch.Tensor], dict]:
    """Run the teacher once over ``data``: the logits, maps, AT vectors and ``meta`` of a
    teacher cache.

    The work of :meth:`TeacherCache.build <atkd_lite.cache.store.TeacherCache.build>`,
    with its arguments, checks and errors.

    Returns:
        tuple: ``(logits, maps, at, meta)``, the arguments of
        :class:`~atkd_lite.cache.store.TeacherCache`: float16 logits ``(N, classes)``, a
        dict of map kind -> stored maps ``(N, *size)``, a list of float16 AT vectors
        ``(N, H_l, W_l)`` (empty without ``at``), and what the cache was built for.
    """
    if not isinstance(teacher, nn.Module):
        raise TypeError(f"teacher must be a torch.nn.Module, got {type(teacher).__name__}")
    if isinstance(data, ImageSet) and len(data) == 0:
        raise ValueError(f"the dataset {data.name!r} is empty; nothing to cache")
    if not isinstance(data, ImageSet):
        data = as_dataset(data, "the teacher cache's data")
    fingerprint = dataset_fingerprint(data)
    probe = data[0][0][None]  # one model input: the shapes of what is stored
    image_size = tuple(probe.shape[-2:])
    if layers is not None:
        layers = [layers] if isinstance(layers, str) else list(layers)
    kinds = [maps] if isinstance(maps, str) else list(maps)
    bad = [k for k in kinds if k not in MAPS]
    if bad:
        raise ValueError(f"unknown map kind(s) {bad}; choose from {list(MAPS)}")
    signals = {k: map_signal(k) for k in kinds}
    # a map computed from the input and the teacher (not from the capture) gets the
    # cache's layer selection when its compute takes one (the input map's scales)
    layer_kw = {k: ({"first": first, "last": last} if _takes(sig.compute, "first") else {})
                for k, sig in signals.items()}
    if map_dtype not in MAP_DTYPES:
        raise ValueError(f"map_dtype must be one of {list(MAP_DTYPES)}, got {map_dtype!r}")
    check_number("p", p, positive=True)
    check_int("batch_size", batch_size, minimum=1)
    dev = distributed.setup(device)  # under torchrun: this rank's device
    size = tuple(size) if size is not None else image_size
    at_input_size = [k for k, sig in signals.items() if not sig.uses_features]
    if at_input_size and size != image_size:
        raise ValueError(f"{', '.join(at_input_size)} maps have the input's size "
                         f"{image_size}; build the cache with size=None or {image_size}")
    qdtype = MAP_DTYPES[map_dtype]
    world, rank = distributed.world_size(), distributed.rank()
    if world > 1:
        distributed.check_same_settings(
            {"data": fingerprint, "teacher": model_fingerprint(teacher), "maps": kinds,
             "at": at, "first": first, "last": last, "p": p, "size": size,
             "map_dtype": map_dtype, "batch_size": batch_size, "amp": amp,
             "layers": layers},
            "teacher-cache settings")
    # One forward captures every capture point; FMA/MIP use the first/last subset,
    # AT uses all of them.
    cam_all = ATCam(teacher, layers="all")
    teacher.to(dev)
    n = len(data)
    batches = progress_bar(make_batches(data, batch_size, shuffle=False, device=dev),
                           progress and distributed.is_main(), desc="teacher cache",
                           unit="batch")
    with eval_mode(teacher):
        # one image first, for the shapes of what is stored (under data parallelism a
        # process may get no batch at all)
        with autocast_context(dev, amp):
            logits, feats = cam_all.features(probe.to(dev))
        selected = select_layers(cam_all.layer_names, first, last)
        if layers is not None:  # named capture points, captured with the automatic ones
            selected = layers
            names = list(dict.fromkeys([*cam_all.layer_names, *layers]))
            cam_all = ATCam(teacher, layers=names, first=len(names), last=0)
            with autocast_context(dev, amp):
                logits, feats = cam_all.features(probe.to(dev))
        # zeros: under data parallelism the processes' parts are summed into one
        logits_out = torch.zeros((n, logits.shape[1]), dtype=torch.float16, device=dev)
        maps_out = {k: torch.zeros((n, *size), dtype=qdtype, device=dev) for k in kinds}
        at_out = [torch.zeros((n, *f.shape[-2:]), dtype=torch.float16, device=dev)
                  for f in feats] if at else []
        for k, (x, y, idx) in enumerate(batches):
            # whole batches, as one process would run them: the same numbers, bit for bit
            if k % world != rank:
                continue
            with autocast_context(dev, amp):
                logits, feats = cam_all.features(x)
            logits_out[idx] = logits.float().to(torch.float16)
            chosen = [f for name, f in zip(cam_all.layer_names, feats) if name in selected]
            for kind, sig in signals.items():  # the maps made from the capture first
                if sig.uses_features:
                    maps = sig.from_features(chosen, size, p=p)
                    maps_out[kind][idx] = quantise(maps, qdtype)
            if at:
                for store, f in zip(at_out, feats):
                    store[idx] = at_vector(f).view(f.shape[0], *f.shape[-2:]).to(torch.float16)
            for kind, sig in signals.items():  # then those that run the teacher again
                if not sig.uses_features:
                    with autocast_context(dev, amp):
                        s = sig.compute(teacher, x, y, **layer_kw[kind])
                    maps_out[kind][idx] = quantise(s, qdtype)
    if world > 1:  # every process gets the whole cache
        for t in (logits_out, *maps_out.values(), *at_out):
            distributed.all_reduce(t)
    meta = {
        "format": CACHE_FORMAT,
        "dataset": dataset_name(data),
        "length": n,
        "fingerprint": fingerprint,
        "image_shape": list(probe.shape[1:]),
        "teacher": model_fingerprint(teacher),
        "teacher_config": getattr(teacher, "config", None),
        "num_classes": int(logits_out.shape[1]),
        "first": int(first),
        "last": int(last),
        "p": float(p),
        "size": list(size),
        "maps": kinds,
        "layers": list(selected),
        "at_layers": list(cam_all.layer_names) if at else [],
        "sals_target": "label",
        "map_dtype": map_dtype,
        "created": distributed.broadcast_object(
            _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")),
    }
    return logits_out, maps_out, at_out, meta


def _takes(fn, name: str) -> bool:
    """Whether ``fn`` accepts the keyword ``name`` (by name or through ``**kwargs``)."""
    params = inspect.signature(fn).parameters
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
