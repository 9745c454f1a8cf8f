"""What a teacher cache records about what it was built for, and how that is compared.

The format name of a cache file, the map kinds and storage dtypes, the fingerprints of a
dataset and of a teacher, the quantisation of maps to ``uint8`` and back, and the two
checks: that a loaded cache's parts fit together (:func:`structure_problem`) and that a
cache fits the data and settings it is used with (:func:`check_meta`, the work of
:meth:`TeacherCache.check <atkd_lite.cache.store.TeacherCache.check>`).

Examples::

    >>> import torch
    >>> from atkd_lite.cache.fingerprints import dequantise, quantise
    >>> q = quantise(torch.tensor([0.0, 0.5, 1.0]), torch.uint8)
    >>> q.tolist(), dequantise(q)[[0, 2]].tolist()
    ([0, 128, 255], [0.0, 1.0])
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from torch import nn

from atkd_lite.data import ImageSet
from atkd_lite.datasets import as_dataset, sample_fingerprint
from atkd_lite.signals import MAPS, map_signal

__all__ = ["CACHE_FORMAT", "MAP_DTYPES", "MAP_KINDS", "META_TYPES", "CacheMismatchError",
           "check_meta", "dataset_fingerprint", "dataset_name", "dequantise",
           "model_fingerprint", "quantise", "structure_problem"]

CACHE_FORMAT = "atkd_lite.teacher_cache/1"

#: the built-in attention maps a cache holds by default (any registered map signal,
#: :data:`atkd_lite.signals.MAPS`, can be stored)
MAP_KINDS = tuple(MAPS)

#: the storage dtypes of a cache's maps, by the name ``map_dtype`` gives
MAP_DTYPES = {"uint8": torch.uint8, "float16": torch.float16, "float32": torch.float32}


class CacheMismatchError(ValueError):
    """A teacher cache was built for other data or other settings than it is used with."""


def dataset_fingerprint(data) -> str:
    """A short SHA-1 that identifies a dataset (order matters).

    For an :class:`~atkd_lite.data.ImageSet`: its shape, every pixel and label, and its
    ``normalize`` statistics when set. For any other dataset of ``(image, label)`` (or a
    ``DataLoader`` over one): :func:`~atkd_lite.datasets.sample_fingerprint`, its length
    and 64 evenly spaced items, so a dataset too large for memory is never read whole.

    Raises:
        TypeError: not a dataset of ``(image, label)`` pairs (says what was found).
    """
    if not isinstance(data, ImageSet):
        data = as_dataset(data, "the teacher cache's data")
        return "sample:" + sample_fingerprint(data)
    h = hashlib.sha1()
    h.update(repr(tuple(data.images.shape)).encode())
    h.update(data.images.contiguous().cpu().numpy().tobytes())
    h.update(data.labels.contiguous().cpu().numpy().tobytes())
    if data.normalize is not None:  # the teacher saw standardised images
        h.update(repr(data.normalize).encode())
    return h.hexdigest()[:16]


def dataset_name(data) -> str:
    """The name a cache records for a dataset: its ``name``, else its type's name."""
    return getattr(data, "name", None) or type(data).__name__


def model_fingerprint(model: nn.Module) -> str:
    """A short SHA-1 of a model's parameters and buffers (which teacher built a cache)."""
    h = hashlib.sha1()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().float().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def quantise(maps: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Maps in [0, 1] as stored with ``dtype``: ``uint8`` rounds ``255 * map``
    (error <= 1/510); a float dtype keeps the values."""
    if dtype == torch.uint8:
        return maps.float().clamp(0, 1).mul(255).round().to(torch.uint8)
    return maps.to(dtype)


def dequantise(maps: torch.Tensor) -> torch.Tensor:
    """Stored maps back as float32 in [0, 1] (the inverse of :func:`quantise`)."""
    if maps.dtype == torch.uint8:
        return maps.float().div_(255.0)
    return maps.float()


#: the type of every entry of a cache's ``meta`` that :func:`structure_problem` checks
META_TYPES = {"length": int, "num_classes": int, "first": int, "last": int, "p": float,
              "size": list, "maps": list, "at_layers": list, "dataset": str,
              "fingerprint": str, "teacher": str}


def structure_problem(blob: dict) -> str | None:
    """What is wrong with a loaded cache's structure (None: it fits together)."""
    meta = blob["meta"]
    for key, kind in META_TYPES.items():
        value = meta.get(key)
        if not isinstance(value, kind) and not (kind is float and isinstance(value, int)):
            return f"meta[{key!r}] is {value!r}, not a {kind.__name__}"
    n, kinds = meta["length"], meta["maps"]
    logits, maps, at = blob.get("logits"), blob.get("maps"), blob.get("at")
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (n, meta["num_classes"]):
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        return f"logits are {got}, not ({n}, {meta['num_classes']})"
    if not isinstance(maps, dict) or sorted(maps) != sorted(kinds):
        return f"maps hold {sorted(maps) if isinstance(maps, dict) else maps!r}, not {kinds}"
    for kind, m in maps.items():
        if not isinstance(m, torch.Tensor) or list(m.shape) != [n, *meta["size"]]:
            got = tuple(m.shape) if isinstance(m, torch.Tensor) else type(m).__name__
            return f"the {kind!r} maps are {got}, not ({n}, {', '.join(map(str, meta['size']))})"
    if not isinstance(at, list) or len(at) != len(meta["at_layers"]):
        return f"{len(at) if isinstance(at, list) else at!r} AT tensors for " \
               f"{len(meta['at_layers'])} AT layers"
    for i, a in enumerate(at):
        if not isinstance(a, torch.Tensor) or a.dim() != 3 or a.shape[0] != n:
            got = tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__
            return f"AT tensor {i} is {got}, not ({n}, H, W)"
    return None


def check_meta(meta: dict, data: ImageSet, maps: Sequence[str] = (), at: bool = False,
               first: int | None = None, last: int | None = None, p: float | None = None,
               size: Sequence[int] | None = None, teacher: nn.Module | None = None,
               num_classes: int | None = None, layers: Sequence[str] | None = None,
               at_layers: Sequence[str] | None = None) -> None:
    """Raise :class:`CacheMismatchError` unless a cache's ``meta`` fits ``data`` and the
    settings: the work of :meth:`TeacherCache.check
    <atkd_lite.cache.store.TeacherCache.check>`, whose arguments it takes after ``meta``."""
    m = meta
    if num_classes is not None and m["num_classes"] != num_classes:
        raise CacheMismatchError(
            f"the cache holds {m['num_classes']} teacher logits per image but the student "
            f"has {num_classes} classes")
    if teacher is not None and model_fingerprint(teacher) != m["teacher"]:
        raise CacheMismatchError(
            "this teacher cache was built with another teacher (its weights differ); "
            "build a cache with this teacher: TeacherCache.build(teacher, data)")
    found = dataset_fingerprint(data)
    if len(data) != m["length"] or found != m["fingerprint"]:
        random = ("" if isinstance(data, ImageSet) else " (a dataset with random "
                  "transforms never matches: a cache needs the same images every epoch)")
        raise CacheMismatchError(
            f"this teacher cache was built for {m['dataset']!r} ({m['length']} images, "
            f"fingerprint {m['fingerprint']}), not for {dataset_name(data)!r} ({len(data)} "
            f"images, fingerprint {found}){random}; build a cache for this data with "
            "TeacherCache.build(teacher, data)"
        )
    kinds = [maps] if isinstance(maps, str) else list(maps)
    missing = [k for k in kinds if k not in m["maps"]]
    if missing:
        raise CacheMismatchError(f"this teacher cache holds {m['maps']} maps but "
                                 f"{missing} are needed; rebuild it with maps={kinds}")
    if at and not m["at_layers"]:
        raise CacheMismatchError("this teacher cache holds no AT vectors; rebuild it "
                                 "with at=True")
    from_capture = any(map_signal(k).uses_features for k in kinds)
    if from_capture:
        for key, want in (("first", first), ("last", last), ("p", p)):
            if want is not None and float(m[key]) != float(want):
                raise CacheMismatchError(
                    f"this teacher cache was built with {key}={m[key]}, but {key}={want} "
                    f"was asked for; rebuild it with TeacherCache.build(..., {key}={want})")
    if layers is not None and from_capture and list(layers) != list(m.get("layers", [])):
        raise CacheMismatchError(
            f"this teacher cache holds maps of the teacher layers {m.get('layers')}, but "
            f"{list(layers)} are needed; rebuild it with "
            f"TeacherCache.build(..., layers={list(layers)})")
    if at_layers is not None:
        missing = [n for n in at_layers if n not in m["at_layers"]]
        if missing:
            raise CacheMismatchError(
                f"this teacher cache holds AT vectors of {m['at_layers']}, not of "
                f"{missing}; rebuild it with TeacherCache.build(..., at=True, "
                f"layers={list(at_layers)})")
    if size is not None and kinds and list(size) != list(m["size"]):
        raise CacheMismatchError(f"this teacher cache holds {tuple(m['size'])} maps, but "
                                 f"{tuple(size)} are needed; rebuild it with size={tuple(size)}")
