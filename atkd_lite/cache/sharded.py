"""The sharded teacher cache on disk, for data that does not fit in memory.

A folder of shard files (``shard-NNNNN.pt``, each the tensors of an ordinary cache of
consecutive images, with a SHA-256 digest) and a manifest (``meta.json``, written last).
:func:`write_sharded_cache` writes one (the work of :meth:`TeacherCache.build_sharded
<atkd_lite.cache.store.TeacherCache.build_sharded>`), :func:`read_shards` memory-maps one
(the work of :meth:`ShardedTeacherCache.open
<atkd_lite.cache.store.ShardedTeacherCache.open>`), and :class:`ShardedRows` looks rows up
across the shards as if they were one tensor.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from atkd_lite import distributed
from atkd_lite.cache.fingerprints import CacheMismatchError, dataset_fingerprint, dataset_name
from atkd_lite.checks import check_int
from atkd_lite.data import ImageSet
from atkd_lite.datasets import as_dataset
from atkd_lite.device import progress_bar
from atkd_lite.files import (
    FileLock,
    LockHeldError,
    atomic_write,
    check_output_dir,
    tensor_digest,
)

__all__ = ["SHARDED_FORMAT", "SHARDED_MANIFEST", "ShardedRows", "read_shards",
           "write_sharded_cache", "write_shards"]

SHARDED_FORMAT = "atkd_lite.teacher_cache.sharded/1"
SHARDED_MANIFEST = "meta.json"


class ShardedRows:
    """Rows of one tensor kept in several memory-mapped shard tensors, looked up by index.

    It stands in for a tensor in a :class:`~atkd_lite.cache.store.TeacherCache`:
    ``rows[idx]`` (a 1-D tensor of row indices) gathers the rows from the shards they live
    in; ``.to(device)`` makes one ordinary tensor of all rows. ``order`` (optional) maps an
    index to the row stored for it (a permutation, for :meth:`TeacherCache.shuffled
    <atkd_lite.cache.store.TeacherCache.shuffled>`).

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


def write_sharded_cache(build: Callable, teacher, data, folder, shard_size: int,
                        progress: bool, batch_size: int, settings: dict,
                        ) -> tuple[Path, list[dict]]:
    """Check the settings, take ``folder``'s lock and write the shards and the manifest:
    the work of :meth:`TeacherCache.build_sharded
    <atkd_lite.cache.store.TeacherCache.build_sharded>`, with its errors.

    Args:
        build (callable): builds the cache of one shard's images (``TeacherCache.build``).
        teacher, data, folder, shard_size, progress, batch_size: as ``build_sharded``.
        settings (dict): ``build_sharded``'s other keyword arguments.

    Returns:
        tuple: the folder (a :class:`~pathlib.Path`) and the manifest's shard list.
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
        shards = write_shards(build, teacher, data, folder, shard_size, progress,
                              batch_size, settings)
    finally:
        lock.release()
    return folder, shards


def write_shards(build: Callable, teacher, data, folder: Path, shard_size: int,
                 progress: bool, batch_size: int, settings: dict) -> list[dict]:
    """Write the shards, then the manifest (see :func:`write_sharded_cache`); returns the
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
            shard = build(teacher, subset, batch_size=batch_size, progress=False,
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
    meta = {**meta, "dataset": dataset_name(data), "length": n,
            "fingerprint": dataset_fingerprint(data), "format": SHARDED_FORMAT,
            "shards": shards}
    atomic_write(manifest, json.dumps(meta, indent=1).encode())
    return shards


def read_shards(folder, verify: bool = True) -> tuple[ShardedRows, dict[str, ShardedRows],
                                                       list[ShardedRows], dict]:
    """Memory-map the shards of ``folder``: the work of :meth:`ShardedTeacherCache.open
    <atkd_lite.cache.store.ShardedTeacherCache.open>`, with its errors.

    Returns:
        tuple: ``(logits, maps, at, meta)`` as :class:`ShardedRows` and the manifest.
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
    return logits, maps, at, meta
