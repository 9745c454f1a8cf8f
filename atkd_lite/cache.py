"""The teacher cache: the teacher's logits and attention maps, computed once per dataset.

The teacher never changes during distillation, and without random augmentation every
image is the same in every epoch, so everything the teacher contributes — its logits, its
FMA/MIP/SALS maps, its AT vectors — can be computed once and looked up by dataset index.
That is the paper's "reuse the teacher's attention for students of several sizes": one
cache serves every student, method and seed trained on the same images.

Storage is compact: maps in [0, 1] as ``uint8`` (error <= 1/510) or ``float16``; logits
and AT vectors as ``float16``. A cache lives on the device (fast lookups in the training
loop) or in a file that :meth:`TeacherCache.load` memory-maps. Each cache records what it
was built for — the dataset (name, length, a fingerprint of its pixels and labels), the
teacher, ``first``/``last``/``p``/size and the map kinds — and refuses a mismatch with a
clear error rather than silently training on the wrong targets.

Defined in the book's chapter "Attention-guided distillation".

Examples::

    >>> import atkd_lite as ak
    >>> from atkd_lite.cache import TeacherCache
    >>> train = ak.load_dataset("mnist5k", "train").per_class(5)
    >>> teacher = ak.teacher_cnn().eval()
    >>> cache = TeacherCache.build(teacher, train, maps=("fma", "sals"), progress=False)
    >>> import torch
    >>> cache.maps("fma", torch.arange(3)).shape
    torch.Size([3, 28, 28])
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from atkd_lite import distributed
from atkd_lite.atcam import ATCam, select_layers
from atkd_lite.checks import check_int, check_number
from atkd_lite.data import ImageSet, make_batches
from atkd_lite.datasets import as_dataset, sample_fingerprint
from atkd_lite.device import autocast_context, eval_mode, get_device, progress_bar
from atkd_lite.files import (
    FileLock,
    LockHeldError,
    atomic_write,
    check_output_dir,
    check_output_file,
    tensor_digest,
)
from atkd_lite.losses.at import at_vector
from atkd_lite.signals import MAPS, ATMaps, Logits, Signal, map_signal

__all__ = ["CACHE_FORMAT", "MAP_KINDS", "SHARDED_FORMAT", "CacheMismatchError",
           "ShardedRows", "ShardedTeacherCache", "TeacherCache", "dataset_fingerprint",
           "model_fingerprint"]

CACHE_FORMAT = "atkd_lite.teacher_cache/1"

#: the built-in attention maps a cache holds by default (any registered map signal,
#: :data:`atkd_lite.signals.MAPS`, can be stored)
MAP_KINDS = tuple(MAPS)

_MAP_DTYPES = {"uint8": torch.uint8, "float16": torch.float16, "float32": torch.float32}


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


def _name(data) -> str:
    return getattr(data, "name", None) or type(data).__name__


def model_fingerprint(model: nn.Module) -> str:
    """A short SHA-1 of a model's parameters and buffers (which teacher built a cache)."""
    h = hashlib.sha1()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().float().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def _quantise(maps: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if dtype == torch.uint8:
        return maps.float().clamp(0, 1).mul(255).round().to(torch.uint8)
    return maps.to(dtype)


def _dequantise(maps: torch.Tensor) -> torch.Tensor:
    if maps.dtype == torch.uint8:
        return maps.float().div_(255.0)
    return maps.float()


_META_TYPES = {"length": int, "num_classes": int, "first": int, "last": int, "p": float,
               "size": list, "maps": list, "at_layers": list, "dataset": str,
               "fingerprint": str, "teacher": str}


def _structure_problem(blob: dict) -> str | None:
    """What is wrong with a loaded cache's structure (None: it fits together)."""
    meta = blob["meta"]
    for key, kind in _META_TYPES.items():
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


class TeacherCache:
    """Logits and attention maps of a (frozen) teacher for every image of one dataset.

    Build it with :meth:`build`; look entries up by the dataset indices that
    :class:`~atkd_lite.data.DeviceBatcher` yields with each batch; pass it to
    :func:`atkd_lite.distill` as ``cache=``. Save and load with :meth:`save` /
    :meth:`load` (atomic write; memory-mapped read).

    Attributes:
        meta (dict): what the cache was built for (dataset name/length/fingerprint,
            teacher fingerprint, first, last, p, size, map kinds, AT layers, dtypes).
        device (torch.device): where the tensors live.

    Examples::

        >>> import torch, atkd_lite as ak
        >>> from atkd_lite.cache import TeacherCache
        >>> data = ak.load_dataset("mnist5k", "val").per_class(2)
        >>> cache = TeacherCache.build(ak.teacher_cnn().eval(), data, progress=False)
        >>> idx = torch.tensor([0, 5])
        >>> cache.logits(idx).shape, cache.maps("mip", idx).shape, len(cache.at_maps(idx))
        (torch.Size([2, 10]), torch.Size([2, 28, 28]), 6)
    """

    def __init__(self, logits: torch.Tensor, maps: dict[str, torch.Tensor],
                 at: list[torch.Tensor], meta: dict):
        self._logits = logits
        self._maps = dict(maps)
        self._at = list(at)
        self.meta = dict(meta)
        self._at_chosen: dict[tuple, list[int] | None] = {}  # AT layer names -> indices

    # ------------------------------------------------------------------ building
    @classmethod
    @torch.no_grad()
    def build(cls, teacher: nn.Module, data: ImageSet, maps: Sequence[str] = MAP_KINDS,
              at: bool = True, first: int = 2, last: int = 2, p: float = 1,
              size: Sequence[int] | None = None, map_dtype: str = "uint8",
              batch_size: int = 256, device=None, amp: bool | None = None,
              progress: bool = True, layers: Sequence[str] | None = None) -> TeacherCache:
        """Run the teacher once over ``data`` and store what distillation needs.

        Under ``torchrun`` every process runs the teacher on its share of the batches
        (batch ``k`` on rank ``k mod world size``) and every process receives the whole
        cache, bit for bit the cache one process builds; rank 0 writes it (:meth:`save`).

        Args:
            teacher (nn.Module): the teacher (put in eval mode for the build, restored
                after; its parameters are never changed). Moved to ``device``.
            data: the training images, un-augmented: an ImageSet, or any map-style dataset
                of ``(image, label)`` (or a DataLoader over one) read in order; for data
                too large for memory see :meth:`build_sharded`.
            maps (sequence of str): which maps to store, from ``("fma", "mip", "sals")``.
                SALS maps are taken for the *label* class, as in distillation.
            at (bool): also store the AT vectors ``q = normalise(flatten(mean_c A²))`` of
                every capture point (float16), for the AT baseline.
            first, last, p, size: ATCam settings of the FMA/MIP maps (see
                :class:`~atkd_lite.ATCam`); size None = the images' H×W.
            layers (list of str, optional): the teacher's capture points for the FMA/MIP
                maps by name, all of them (instead of ``first``/``last`` of the automatic
                ones); they also get AT vectors. What ``distill(...,
                teacher_layers=[...])`` needs.
            map_dtype (str): ``"uint8"`` (default, 1 byte a pixel), ``"float16"`` or
                ``"float32"``.
            batch_size (int): images per teacher forward.
            device: where to compute and keep the cache (default: cuda → mps → cpu).
            amp: autocast on CUDA (None = on there), as in distillation.
            progress (bool): show a progress bar.

        Returns:
            TeacherCache
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
        if map_dtype not in _MAP_DTYPES:
            raise ValueError(f"map_dtype must be one of {list(_MAP_DTYPES)}, got {map_dtype!r}")
        check_number("p", p, positive=True)
        check_int("batch_size", batch_size, minimum=1)
        dev = distributed.setup(device)  # under torchrun: this rank's device
        size = tuple(size) if size is not None else image_size
        at_input_size = [k for k, sig in signals.items() if not sig.uses_features]
        if at_input_size and size != image_size:
            raise ValueError(f"{', '.join(at_input_size)} maps have the input's size "
                             f"{image_size}; build the cache with size=None or {image_size}")
        qdtype = _MAP_DTYPES[map_dtype]
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
                        maps_out[kind][idx] = _quantise(maps, qdtype)
                if at:
                    for store, f in zip(at_out, feats):
                        store[idx] = at_vector(f).view(f.shape[0], *f.shape[-2:]).to(torch.float16)
                for kind, sig in signals.items():  # then those that run the teacher again
                    if not sig.uses_features:
                        with autocast_context(dev, amp):
                            s = sig.compute(teacher, x, y)
                        maps_out[kind][idx] = _quantise(s, qdtype)
        if world > 1:  # every process gets the whole cache
            for t in (logits_out, *maps_out.values(), *at_out):
                distributed.all_reduce(t)
        meta = {
            "format": CACHE_FORMAT,
            "dataset": _name(data),
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
        return cls(logits_out, maps_out, at_out, meta)

    @classmethod
    def build_sharded(cls, teacher: nn.Module, data, folder, shard_size: int = 8192,
                      progress: bool = True, batch_size: int = 256,
                      **settings) -> ShardedTeacherCache:
        """Build a cache in shards on disk, for data that does not fit in memory.

        The data (an ImageSet or any map-style dataset of ``(image, label)``, e.g.
        torchvision's ``ImageFolder`` over files, or a DataLoader over one) is read in
        order, ``shard_size`` images at a time; each shard is an ordinary :meth:`build` of
        those images (float16 logits and AT vectors, uint8 maps by default), written
        atomically to ``folder/shard-NNNNN.pt`` with a SHA-256 digest of its tensors, so at
        most one shard is ever in memory. ``folder/meta.json`` is written last, so a folder
        without it is an unfinished build. Load it with :meth:`load` (memory-mapped).

        Shards start on batch boundaries (``shard_size`` is rounded up to a multiple of
        ``batch_size``), so the teacher sees the same batches as in one :meth:`build` over
        the whole data and the two caches hold the same numbers.

        Args:
            teacher (nn.Module): the teacher.
            data: the training images, un-augmented.
            folder: where to write (created; an existing sharded cache there is replaced).
            shard_size (int): images per shard file.
            progress (bool): a progress bar over the images.
            batch_size (int): images per teacher forward.
            **settings: :meth:`build`'s ``maps``, ``at``, ``first``, ``last``, ``p``,
                ``size``, ``map_dtype``, ``layers``, ``device``, ``amp``.

        Returns:
            ShardedTeacherCache: the cache, memory-mapped from ``folder``.

        Raises:
            ValueError: bad settings (as :meth:`build`), or started under ``torchrun``
                (build it in one process; every process can then load it).
            LockHeldError: another process is building a sharded cache in ``folder``
                (two builds at once would mix two teachers' shards).

        Examples::

            >>> import tempfile, torch, atkd_lite as ak
            >>> data = ak.load_dataset("mnist5k", "val").per_class(3)       # 30 images
            >>> folder = tempfile.mkdtemp()
            >>> cache = TeacherCache.build_sharded(ak.teacher_cnn().eval(), data, folder,
            ...     shard_size=16, batch_size=8, maps=["fma"], at=False, progress=False)
            >>> len(cache.shard_lengths), cache.maps("fma", torch.tensor([0, 29])).shape
            (2, torch.Size([2, 28, 28]))
        """
        if distributed.world_size() > 1:
            raise ValueError("build a sharded teacher cache in one process (it is written to "
                             "disk), then load it in every process with TeacherCache.load")
        check_int("shard_size", shard_size, minimum=1)
        check_int("batch_size", batch_size, minimum=1)
        unknown = sorted(set(settings) - {"maps", "at", "first", "last", "p", "size",
                                          "map_dtype", "layers", "device", "amp"})
        if unknown:
            raise TypeError(f"unknown setting(s) {unknown} for build_sharded")
        if not isinstance(data, ImageSet):
            data = as_dataset(data, "the teacher cache's data")
        elif len(data) == 0:
            raise ValueError(f"the dataset {data.name!r} is empty; nothing to cache")
        folder = check_output_dir(folder, "sharded teacher cache")
        folder.mkdir(parents=True, exist_ok=True)
        # one writer per folder: two builds at once would mix two teachers' shards
        lock = FileLock(folder / ".sharded-cache.lock")
        try:
            lock.acquire(blocking=False)
        except LockHeldError:
            raise LockHeldError(
                f"the sharded teacher cache {folder} is being built by another process "
                f"({lock.holder() or 'unknown'}); wait for it to finish and load it, or "
                "build into another folder") from None
        try:
            shards = cls._write_shards(teacher, data, folder, shard_size, progress,
                                       batch_size, settings)
        finally:
            lock.release()
        cache = ShardedTeacherCache.open(folder, verify=False)
        if cache.meta["shards"] != shards:  # the files on disk are the ones written here
            raise RuntimeError(f"the sharded teacher cache in {folder} changed while it was "
                               "built; build it again")
        return cache

    @classmethod
    def _write_shards(cls, teacher, data, folder: Path, shard_size: int, progress: bool,
                      batch_size: int, settings: dict) -> list[dict]:
        """Write the shards, then the manifest (see :meth:`build_sharded`); returns the
        manifest's shard list."""
        shard_size = math.ceil(shard_size / batch_size) * batch_size
        n = len(data)
        starts = list(range(0, n, shard_size))
        manifest = folder / SHARDED_MANIFEST
        if manifest.exists():  # a reader never sees a half-replaced cache as complete
            manifest.unlink()
        bar = progress_bar(None, progress, total=n, desc="teacher cache", unit="image") \
            if progress else None
        shards, meta = [], None
        try:
            for k, start in enumerate(starts):
                part = range(start, min(n, start + shard_size))
                subset = (data.subset(list(part)) if isinstance(data, ImageSet)
                          else torch.utils.data.Subset(data, list(part)))
                shard = cls.build(teacher, subset, batch_size=batch_size, progress=False,
                                  **settings)
                tensors = {k2: v.cpu() for k2, v in shard._tensors().items()}
                name = f"shard-{k:05d}.pt"
                atomic_write(folder / name, lambda tmp, t=tensors: torch.save(t, tmp))
                shards.append({"file": name, "length": len(part),
                               "sha256": tensor_digest(tensors)})
                meta = meta or shard.meta
                if bar is not None:
                    bar.update(len(part))
        finally:
            if bar is not None:
                bar.close()
        for stale in folder.glob("shard-*.pt"):  # from an earlier, larger build
            if stale.name not in {s["file"] for s in shards}:
                stale.unlink()
        meta = {**meta, "dataset": _name(data), "length": n,
                "fingerprint": dataset_fingerprint(data), "format": SHARDED_FORMAT,
                "shards": shards}
        atomic_write(manifest, json.dumps(meta, indent=1).encode())
        return shards

    # ------------------------------------------------------------------ lookups
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
        out = _dequantise(self._maps[kind][self._index(idx)])
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

    # ------------------------------------------------------------------ checks
    def check(self, data: ImageSet, maps: Sequence[str] = (), at: bool = False,
              first: int | None = None, last: int | None = None, p: float | None = None,
              size: Sequence[int] | None = None, teacher: nn.Module | None = None,
              num_classes: int | None = None, layers: Sequence[str] | None = None,
              at_layers: Sequence[str] | None = None) -> None:
        """Raise :class:`CacheMismatchError` unless this cache fits ``data`` and the settings.

        Args:
            data: the training data it will be used with (compared by length and
                :func:`dataset_fingerprint`, so a different subset or order is caught).
            maps (sequence of str): map kinds that must be present.
            at (bool): AT vectors must be present.
            first, last, p, size: the ATCam settings that FMA/MIP maps must have been
                built with (None: not checked).
            teacher (nn.Module, optional): the teacher it must have been built with
                (compared by a fingerprint of its weights).
            num_classes (int, optional): the number of classes of the student.
            layers (list of str, optional): the teacher capture points the FMA/MIP maps
                must have been built from, exactly.
            at_layers (list of str, optional): teacher capture points that must have AT
                vectors.
        """
        m = self.meta
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
                f"fingerprint {m['fingerprint']}), not for {_name(data)!r} ({len(data)} "
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

    def shuffled(self, seed: int = 0) -> TeacherCache:
        """A copy whose maps and AT vectors belong to *other* images (a seeded permutation).

        The logits stay with their images. A control for the attention term: if a student
        matches shuffled teacher maps as profitably as the right ones, the term acts as a
        regulariser, not as transferred knowledge of where to look.
        """
        perm = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        perm = perm.to(self.device)
        return TeacherCache(self._logits, {k: v[perm] for k, v in self._maps.items()},
                            [a[perm] for a in self._at], {**self.meta, "shuffled": seed})

    # ------------------------------------------------------------------ files
    def to(self, device) -> TeacherCache:
        """A copy of the cache on ``device`` (e.g. load from disk, then move to the GPU)."""
        dev = torch.device(device)
        return TeacherCache(self._logits.to(dev), {k: v.to(dev) for k, v in self._maps.items()},
                            [a.to(dev) for a in self._at], self.meta)

    def nbytes(self) -> int:
        """Bytes held by the cache's tensors."""
        tensors = [self._logits, *self._maps.values(), *self._at]
        return sum(t.numel() * t.element_size() for t in tensors)

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {"logits": self._logits, **{f"maps.{k}": v for k, v in self._maps.items()},
                **{f"at.{i}": a for i, a in enumerate(self._at)}}

    def save(self, path) -> Path:
        """Write the cache to ``path`` atomically (temporary file, then rename), with a
        SHA-256 digest of its tensors that :meth:`load` verifies.

        A lock file next to it (``.NAME.lock``) keeps two processes from writing one cache
        at once. Under data parallelism only rank 0 writes (every rank holds the same
        cache); the others return the path at once.

        Raises:
            LockHeldError: another process is writing this cache now.
        """
        target = check_output_file(path, "teacher cache")
        if not distributed.is_main():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(target.parent / f".{target.name}.lock")
        try:
            lock.acquire(blocking=False)
        except LockHeldError:
            raise LockHeldError(
                f"the teacher cache {target} is being written by another process "
                f"({lock.holder() or 'unknown'}); wait for it to finish and load it, or "
                "save to another path") from None
        try:
            blob = {"meta": {**self.meta, "sha256": tensor_digest(self._tensors())},
                    "logits": self._logits.cpu(),
                    "maps": {k: v.cpu() for k, v in self._maps.items()},
                    "at": [a.cpu() for a in self._at]}
            return atomic_write(target, lambda tmp: torch.save(blob, tmp))
        finally:
            lock.release()

    @classmethod
    def load(cls, path, device=None, mmap: bool = True, verify: bool = True) -> TeacherCache:
        """Read a cache written by :meth:`save` (a file) or :meth:`build_sharded` (a folder).

        Args:
            path: the file, or the folder of a sharded cache (memory-mapped shards, see
                :class:`ShardedTeacherCache`).
            device: move the tensors there (e.g. ``"cuda"``); None keeps them on the CPU,
                memory-mapped from the file when ``mmap``.
            mmap (bool): memory-map the file instead of reading it all.
            verify (bool): check the tensors against the digest saved with them (reads
                every byte once; torch itself does not check the file's CRCs).

        Raises:
            FileNotFoundError: no such file.
            CacheMismatchError: not a teacher cache (or another format version), a damaged
                one (its tensors do not match their digest), or one whose parts do not fit
                together (missing entries, tensors shorter than the dataset).
        """
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no teacher cache at {path}")
        if path.is_dir():  # written by build_sharded
            cache = ShardedTeacherCache.open(path, verify=verify)
            return cache if device is None else cache.to(get_device(device))
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except Exception as err:
            raise CacheMismatchError(f"{path} is not a readable teacher cache "
                                     f"({type(err).__name__}: {err}); build it again") from err
        meta = blob.get("meta") if isinstance(blob, dict) else None
        if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
            raise CacheMismatchError(f"{path} is not a teacher cache of format {CACHE_FORMAT!r}")
        problem = _structure_problem(blob)
        if problem:
            raise CacheMismatchError(f"{path} is damaged ({problem}); build it again with "
                                     "TeacherCache.build(teacher, data) and save it")
        cache = cls(blob["logits"], blob["maps"], blob["at"],
                    {k: v for k, v in meta.items() if k != "sha256"})
        if verify and meta.get("sha256") is not None:
            if tensor_digest(cache._tensors()) != meta["sha256"]:
                raise CacheMismatchError(f"{path} is damaged: its tensors do not match the "
                                         "digest saved with them; build it again")
        return cache if device is None else cache.to(get_device(device))

    def __repr__(self) -> str:
        m = self.meta
        return (f"TeacherCache({m['dataset']!r}: {m['length']} images, maps={m['maps']}, "
                f"AT layers={len(m['at_layers'])}, first={m['first']}, last={m['last']}, "
                f"{self.nbytes() / 1e6:.1f} MB on {self.device})")


# ---------------------------------------------------------------------------------------
# sharded caches: data that does not fit in memory

SHARDED_FORMAT = "atkd_lite.teacher_cache.sharded/1"
SHARDED_MANIFEST = "meta.json"


class ShardedRows:
    """Rows of one tensor kept in several memory-mapped shard tensors, looked up by index.

    It stands in for a tensor in a :class:`TeacherCache`: ``rows[idx]`` (a 1-D tensor of
    row indices) gathers the rows from the shards they live in; ``.to(device)`` makes
    one ordinary tensor of all rows. ``order`` (optional) maps an index to the row stored
    for it (a permutation, for :meth:`TeacherCache.shuffled`).

    Examples::

        >>> import torch
        >>> rows = ShardedRows([torch.arange(6).view(3, 2), torch.arange(6, 10).view(2, 2)])
        >>> rows[torch.tensor([4, 0])].tolist(), tuple(rows.shape)
        ([[8, 9], [0, 1]], (5, 2))
    """

    def __init__(self, parts: Sequence[torch.Tensor], order: torch.Tensor | None = None):
        self.parts = list(parts)
        lengths = torch.tensor([p.shape[0] for p in self.parts])
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
        self.order = order
        first = self.parts[0]
        self.shape = torch.Size([int(self.offsets[-1]), *first.shape[1:]])
        self.dtype = first.dtype
        self.device = first.device

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, idx) -> torch.Tensor:
        idx = torch.as_tensor(idx, dtype=torch.long).cpu().reshape(-1)
        if self.order is not None:
            idx = self.order[idx]
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= len(self)):
            raise IndexError(f"index out of range for {len(self)} rows")
        out = torch.empty((idx.numel(), *self.shape[1:]), dtype=self.dtype)
        shard = torch.searchsorted(self.offsets, idx, right=True) - 1
        for s in shard.unique().tolist():
            mask = shard == s
            out[mask] = self.parts[s][idx[mask] - self.offsets[s]]
        return out

    def permuted(self, perm: torch.Tensor) -> ShardedRows:
        """The same shards, with row ``perm[i]`` answering for index ``i``."""
        order = perm.cpu() if self.order is None else self.order[perm.cpu()]
        return ShardedRows(self.parts, order)

    def to(self, device) -> torch.Tensor:
        """All rows as one tensor on ``device`` (in index order)."""
        whole = torch.cat(self.parts)
        if self.order is not None:
            whole = whole[self.order]
        return whole.to(device)

    def numel(self) -> int:
        return self.shape.numel()

    def element_size(self) -> int:
        return self.parts[0].element_size()


class ShardedTeacherCache(TeacherCache):
    """A :class:`TeacherCache` kept on disk in shards and memory-mapped (see
    :meth:`TeacherCache.build_sharded`).

    Lookups read only the rows asked for (the operating system pages them in), so a
    cache far larger than memory works; :meth:`to` makes an ordinary in-memory cache (e.g.
    on the GPU, when it fits). It is already saved: :meth:`save` refuses.

    Attributes:
        folder (str or pathlib.Path): where the shards are.
        shard_lengths (list of int): images per shard.
    """

    def __init__(self, logits, maps, at, meta, folder):
        super().__init__(logits, maps, at, meta)
        self.folder = Path(folder)
        self.shard_lengths = [s["length"] for s in meta.get("shards", [])]

    @classmethod
    def open(cls, folder, verify: bool = True) -> ShardedTeacherCache:
        """Memory-map the shards of ``folder``.

        Args:
            folder: written by :meth:`TeacherCache.build_sharded`.
            verify (bool): check every shard against its SHA-256 digest (reads every
                byte once; off for a quick open).

        Raises:
            CacheMismatchError: no finished sharded cache there, another format, a
                missing or damaged shard (with what to do).
        """
        folder = Path(folder)
        manifest = folder / SHARDED_MANIFEST
        if not manifest.exists():
            raise CacheMismatchError(f"{folder} holds no finished sharded teacher cache (no "
                                     f"{SHARDED_MANIFEST}); build it with "
                                     "TeacherCache.build_sharded(teacher, data, folder)")
        try:
            meta = json.loads(manifest.read_text())
        except (OSError, ValueError) as err:
            raise CacheMismatchError(f"{manifest} is not readable ({err}); build the cache "
                                     "again") from err
        if not isinstance(meta, dict) or meta.get("format") != SHARDED_FORMAT:
            raise CacheMismatchError(f"{folder} is not a sharded teacher cache of format "
                                     f"{SHARDED_FORMAT!r}")
        shards = meta.get("shards")
        if not isinstance(shards, list) or not shards:
            raise CacheMismatchError(f"{manifest} lists no shards; build the cache again")
        blobs = []
        for s in shards:
            path = folder / str(s.get("file"))
            try:
                blob = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except Exception as err:
                raise CacheMismatchError(f"shard {path} is missing or unreadable "
                                         f"({type(err).__name__}); build the cache "
                                         "again") from err
            if not isinstance(blob, dict) or "logits" not in blob or \
                    len(blob["logits"]) != s.get("length"):
                raise CacheMismatchError(f"shard {path} does not hold {s.get('length')} "
                                         "images' logits; build the cache again")
            if verify and tensor_digest(blob) != s.get("sha256"):
                raise CacheMismatchError(f"shard {path} is damaged: its tensors do not match "
                                         "the digest saved with them; build the cache again")
            blobs.append(blob)
        kinds = list(meta["maps"])
        n_at = len(meta["at_layers"])
        try:
            logits = ShardedRows([b["logits"] for b in blobs])
            maps = {k: ShardedRows([b[f"maps.{k}"] for b in blobs]) for k in kinds}
            at = [ShardedRows([b[f"at.{i}"] for b in blobs]) for i in range(n_at)]
        except KeyError as err:
            raise CacheMismatchError(f"a shard of {folder} lacks {err}; build the cache "
                                     "again") from err
        if len(logits) != meta["length"]:
            raise CacheMismatchError(f"the shards of {folder} hold {len(logits)} images, "
                                     f"not {meta['length']}; build the cache again")
        return cls(logits, maps, at, meta, folder)

    def shuffled(self, seed: int = 0) -> ShardedTeacherCache:
        """As :meth:`TeacherCache.shuffled`, without reading the shards."""
        perm = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        return ShardedTeacherCache(self._logits, {k: v.permuted(perm) for k, v in
                                                  self._maps.items()},
                                   [a.permuted(perm) for a in self._at],
                                   {**self.meta, "shuffled": seed}, self.folder)

    def to(self, device) -> TeacherCache:
        """An ordinary in-memory :class:`TeacherCache` on ``device`` (it must fit there)."""
        dev = torch.device(device)
        meta = {k: v for k, v in self.meta.items() if k != "shards"}
        meta["format"] = CACHE_FORMAT
        return TeacherCache(self._logits.to(dev),
                            {k: v.to(dev) for k, v in self._maps.items()},
                            [a.to(dev) for a in self._at], meta)

    def save(self, path) -> Path:
        """Refused: a sharded cache is already saved (in :attr:`folder`).

        Raises:
            TypeError: always, with what to do instead.
        """
        raise TypeError(f"this sharded teacher cache is already saved in {self.folder}; "
                        "load it with TeacherCache.load(folder), or save an in-memory copy: "
                        "cache.to('cpu').save(path)")

    def __repr__(self) -> str:
        return (super().__repr__()[:-1].replace("TeacherCache(", "ShardedTeacherCache(", 1)
                + f", {len(self.shard_lengths)} shards in {self.folder})")
