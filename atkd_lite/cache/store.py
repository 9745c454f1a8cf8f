"""The teacher cache's classes: :class:`TeacherCache` (in memory, or one memory-mapped
file) and :class:`ShardedTeacherCache` (memory-mapped shard files), with how a cache file
is written (:func:`save_cache`) and read (:func:`load_cache_file`).

The work of building a cache is in :mod:`atkd_lite.cache.build` and
:mod:`atkd_lite.cache.sharded`, its lookups in :mod:`atkd_lite.cache.lookups`, and what it
records and checks in :mod:`atkd_lite.cache.fingerprints`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from atkd_lite import distributed
from atkd_lite.cache.build import compute_teacher_signals
from atkd_lite.cache.fingerprints import (
    CACHE_FORMAT,
    MAP_KINDS,
    CacheMismatchError,
    check_meta,
    structure_problem,
)
from atkd_lite.cache.lookups import CacheLookups
from atkd_lite.cache.sharded import read_shards, write_sharded_cache
from atkd_lite.data import ImageSet
from atkd_lite.device import get_device
from atkd_lite.files import FileLock, LockHeldError, atomic_write, check_output_file, tensor_digest

__all__ = ["ShardedTeacherCache", "TeacherCache", "load_cache_file", "save_cache"]


def save_cache(cache: TeacherCache, path) -> Path:
    """Write ``cache`` to ``path``: the work of :meth:`TeacherCache.save`, with its lock,
    its errors and its file, byte for byte."""
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
        blob = {"meta": {**cache.meta, "sha256": tensor_digest(cache._tensors())},
                "logits": cache._logits.cpu(),
                "maps": {k: v.cpu() for k, v in cache._maps.items()},
                "at": [a.cpu() for a in cache._at]}
        return atomic_write(target, lambda tmp: torch.save(blob, tmp))
    finally:
        lock.release()


def load_cache_file(cls: type, path: Path, mmap: bool = True,
                    verify: bool = True) -> TeacherCache:
    """Read the cache file ``path`` (written by :func:`save_cache`) as a ``cls``: the work
    of :meth:`TeacherCache.load` for a file, with its checks and errors."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as err:
        raise CacheMismatchError(f"{path} is not a readable teacher cache "
                                 f"({type(err).__name__}: {err}); build it again") from err
    meta = blob.get("meta") if isinstance(blob, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
        raise CacheMismatchError(f"{path} is not a teacher cache of format {CACHE_FORMAT!r}")
    problem = structure_problem(blob)
    if problem:
        raise CacheMismatchError(f"{path} is damaged ({problem}); build it again with "
                                 "TeacherCache.build(teacher, data) and save it")
    cache = cls(blob["logits"], blob["maps"], blob["at"],
                {k: v for k, v in meta.items() if k != "sha256"})
    if verify and meta.get("sha256") is not None:
        if tensor_digest(cache._tensors()) != meta["sha256"]:
            raise CacheMismatchError(f"{path} is damaged: its tensors do not match the "
                                     "digest saved with them; build it again")
    return cache


class TeacherCache(CacheLookups):
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
        return cls(*compute_teacher_signals(
            teacher, data, maps=maps, at=at, first=first, last=last, p=p, size=size,
            map_dtype=map_dtype, batch_size=batch_size, device=device, amp=amp,
            progress=progress, layers=layers))

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
        folder, shards = write_sharded_cache(cls.build, teacher, data, folder, shard_size,
                                             progress, batch_size, settings)
        cache = ShardedTeacherCache.open(folder, verify=False)
        if cache.meta["shards"] != shards:  # the files on disk are the ones written here
            raise RuntimeError(f"the sharded teacher cache in {folder} changed while it was "
                               "built; build it again")
        return cache

    # ------------------------------------------------------------------ checks
    def check(self, data: ImageSet, maps: Sequence[str] = (), at: bool = False,
              first: int | None = None, last: int | None = None, p: float | None = None,
              size: Sequence[int] | None = None, teacher: nn.Module | None = None,
              num_classes: int | None = None, layers: Sequence[str] | None = None,
              at_layers: Sequence[str] | None = None) -> None:
        """Raise :class:`~atkd_lite.cache.fingerprints.CacheMismatchError` unless this cache
        fits ``data`` and the settings.

        Args:
            data: the training data it will be used with (compared by length and
                :func:`~atkd_lite.cache.fingerprints.dataset_fingerprint`, so a different
                subset or order is caught).
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
        check_meta(self.meta, data, maps=maps, at=at, first=first, last=last, p=p,
                   size=size, teacher=teacher, num_classes=num_classes, layers=layers,
                   at_layers=at_layers)

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

    def save(self, path) -> Path:
        """Write the cache to ``path`` atomically (temporary file, then rename), with a
        SHA-256 digest of its tensors that :meth:`load` verifies.

        A lock file next to it (``.NAME.lock``) keeps two processes from writing one cache
        at once. Under data parallelism only rank 0 writes (every rank holds the same
        cache); the others return the path at once.

        Raises:
            LockHeldError: another process is writing this cache now.
        """
        return save_cache(self, path)

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
        else:
            cache = load_cache_file(cls, path, mmap=mmap, verify=verify)
        return cache if device is None else cache.to(get_device(device))

    def __repr__(self) -> str:
        m = self.meta
        return (f"TeacherCache({m['dataset']!r}: {m['length']} images, maps={m['maps']}, "
                f"AT layers={len(m['at_layers'])}, first={m['first']}, last={m['last']}, "
                f"{self.nbytes() / 1e6:.1f} MB on {self.device})")


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
        return cls(*read_shards(folder, verify=verify), Path(folder))

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
