"""Batches for training and evaluation: on the device, or through a DataLoader.

- :class:`DeviceBatcher` — an :class:`~atkd_lite.data.images.ImageSet` that lives on the
  accelerator, batched there by index (no per-sample Python, no per-step host-to-device
  copies), with random shifts and flips (:func:`random_shift`, :func:`random_flip`)
  drawn on the device;
- :class:`LoaderBatches` — the ordinary :class:`~torch.utils.data.DataLoader` path for
  any other dataset of ``(image, label)``, its items checked as they are read
  (:func:`check_batch`), with :func:`default_workers` worker processes;
- :func:`make_batches` — the one the training engine calls: it chooses between the two.

Both yield ``(x, y, idx)`` and give each process its share under data parallelism.

Part of :mod:`atkd_lite.data`.
"""

from __future__ import annotations

import math
import multiprocessing
import os

import torch

from atkd_lite.checks import check_int
from atkd_lite.data.images import UNLABELLED, ImageSet

__all__ = [
    "DeviceBatcher",
    "LoaderBatches",
    "check_batch",
    "default_workers",
    "make_batches",
    "random_flip",
    "random_shift",
]


def random_shift(x: torch.Tensor, shifts: torch.Tensor, max_shift: int | None = None) -> torch.Tensor:
    """Translate every image of ``x`` (B, C, H, W) by its own ``shifts[b] = (dy, dx)`` pixels.

    Pixels shifted in are zero. Runs as one gather on the tensor's device (no Python loop
    over samples), so it is cheap on a GPU. Pass ``max_shift`` (a bound on ``|shifts|``) to
    avoid reading the shifts back to the host.
    """
    b, _, h, w = x.shape
    if max_shift is None:
        max_shift = int(shifts.abs().max().item()) if shifts.numel() else 0
    pad = int(max_shift)
    if pad == 0:
        return x
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    rows = (pad - shifts[:, 0])[:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = (pad - shifts[:, 1])[:, None] + torch.arange(w, device=x.device)  # (B, W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    out = xp.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


def random_flip(x: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Mirror the images of ``x`` (B, C, H, W) left to right where ``flips[b]`` is True.

    Examples::

        >>> import torch
        >>> x = torch.arange(4.0).view(2, 1, 1, 2)
        >>> random_flip(x, torch.tensor([True, False])).flatten().tolist()
        [1.0, 0.0, 2.0, 3.0]
    """
    return torch.where(flips.view(-1, 1, 1, 1), x.flip(-1), x)


def _check_shard(n: int, rank: int, world_size: int) -> None:
    check_int("world_size", world_size, minimum=1)
    check_int("rank", rank, minimum=0)
    if rank >= world_size:
        raise ValueError(f"rank must be in [0, {world_size - 1}], got {rank}")
    if n < world_size:
        raise ValueError(
            f"{n} training image(s) cannot be shared by {world_size} processes (each needs "
            "at least one); start fewer processes (torchrun --nproc_per_node) or use more data")


class DeviceBatcher:
    """Batches of an :class:`~atkd_lite.data.images.ImageSet` that lives entirely on
    ``device``.

    The images stay uint8 on the device; each epoch draws a seeded permutation and yields
    index slices of it, converted to float32 in [0, 1] on the device. Iterating yields
    ``(x, y, idx)``: the images, the labels and their indices in the dataset (used to look
    up a teacher cache).

    Under data parallelism (``world_size`` processes) every process draws the *same*
    permutation and takes every ``world_size``-th position of it, starting at ``rank``;
    the permutation is first padded with its own beginning to a multiple of
    ``world_size`` (as :class:`~torch.utils.data.distributed.DistributedSampler` does), so
    every process has the same number of batches. With ``batch_size = B / world_size``
    the processes' ``i``-th batches together are exactly the ``i``-th batch of size ``B``
    of one process: the same global batches, split across the processes.

    Args:
        data: the ImageSet.
        batch_size: images per batch (per process).
        shuffle: reshuffle every epoch (seeded by ``seed`` and the epoch number).
        device: where the data lives (default: CPU).
        seed: base seed; the same seed gives the same batches on any device.
        drop_last: drop the last incomplete batch.
        augment: ``0`` for none, or the maximum random shift in pixels (on the device);
            each image's shift depends on its position in the epoch, as in one process.
            A shift by up to ``p`` pixels with zeros shifted in is exactly the random crop
            with ``p`` pixels of zero padding of the CIFAR recipes (``augment=4``).
        rank, world_size: this process's share (default: all of it).
        flip: mirror each image left to right with probability 1/2 (the CIFAR recipes'
            horizontal flip), after the shift.

    Images are standardised last, with the ImageSet's ``normalize`` statistics if it has
    them, so padding is black in pixel space as in torchvision's ``RandomCrop`` before
    ``Normalize``.

    Examples::

        >>> from atkd_lite.data import load_dataset, DeviceBatcher
        >>> data = load_dataset("mnist5k", "val").per_class(2)            # 20 images
        >>> one = [idx for _, _, idx in DeviceBatcher(data, 4, seed=1)]
        >>> two = [[idx for _, _, idx in DeviceBatcher(data, 2, seed=1, rank=r, world_size=2)]
        ...        for r in (0, 1)]
        >>> all(sorted(a.tolist() + b.tolist()) == sorted(g.tolist())
        ...     for g, a, b in zip(one, *two))
        True
    """

    def __init__(self, data: ImageSet, batch_size: int = 128, shuffle: bool = True,
                 device=None, seed: int = 0, drop_last: bool = False, augment: int = 0,
                 rank: int = 0, world_size: int = 1, flip: bool = False):
        if not isinstance(data, ImageSet):
            raise TypeError(f"DeviceBatcher needs an ImageSet, got {type(data).__name__}; "
                            "use make_batches(...) for other datasets")
        if len(data) == 0:
            raise ValueError(f"the dataset {data.name!r} is empty")
        check_int("batch_size", batch_size, minimum=1)
        check_int("seed", seed, minimum=0)
        check_int("augment", augment, minimum=0)
        _check_shard(len(data), rank, world_size)
        self.data = data
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.images = data.images.to(self.device)
        self.labels = data.labels.to(self.device)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        self.augment = int(augment)
        if not isinstance(flip, bool):
            raise ValueError(f"flip must be True or False, got {flip!r}")
        self.flip = flip
        self.rank, self.world_size = int(rank), int(world_size)
        self.epoch = 0
        # the standardisation's (1, C, 1, 1) tensors, made once: no copy to the device per batch
        self._stats = None if data.normalize is None else tuple(
            torch.tensor(v, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
            for v in data.normalize)

    def _share(self) -> int:
        """Images per process and epoch (padded up to a multiple of the world size)."""
        return math.ceil(len(self.data) / self.world_size)

    def __len__(self) -> int:
        n = self._share()
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        n = len(self.data)
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        shifts = None
        if self.augment:
            shifts = torch.randint(-self.augment, self.augment + 1, (n, 2), generator=gen)
        # drawn after the shifts, so runs without flips keep their shifts
        flips = torch.rand(n, generator=gen) < 0.5 if self.flip else None
        if self.world_size > 1:
            # this rank's positions of the padded epoch: r, r + W, r + 2W, ...
            pos = (torch.arange(self._share() * self.world_size) % n)[self.rank::self.world_size]
            order = order[pos]
            shifts = None if shifts is None else shifts[pos]
            flips = None if flips is None else flips[pos]
        if shifts is not None:
            shifts = shifts.to(self.device, non_blocking=True)
        if flips is not None:
            flips = flips.to(self.device, non_blocking=True)
        order = order.to(self.device, non_blocking=True)
        self.epoch += 1
        for i in range(len(self)):
            part = slice(i * self.batch_size, (i + 1) * self.batch_size)
            idx = order[part]
            x = self.images[idx].float().div_(255.0)
            if shifts is not None:
                x = random_shift(x, shifts[part], self.augment)
            if flips is not None:
                x = random_flip(x, flips[part])
            if self._stats is not None:  # what standardize() computes
                x = (x - self._stats[0]) / self._stats[1]
            yield x, self.labels[idx], idx


class _Indexed(torch.utils.data.Dataset):
    def __init__(self, data):
        self.data = data

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        x, y = self.data[i]
        return x, y, i


class LoaderBatches:
    """The ordinary :class:`~torch.utils.data.DataLoader` path for any map-style dataset of
    ``(image, label)`` pairs (large data, CPU-side transforms); yields ``(x, y, idx)`` on
    ``device`` like :class:`DeviceBatcher`.

    Under data parallelism (``world_size > 1``) a
    :class:`~torch.utils.data.distributed.DistributedSampler` gives each process its share
    of a permutation seeded by ``seed`` and the epoch (not the one-process order: the
    DataLoader draws its worker seed from the same generator first).
    """

    def __init__(self, data, batch_size=128, shuffle=True, device=None, seed=0,
                 drop_last=False, num_workers=0, rank: int = 0, world_size: int = 1,
                 num_classes: int | None = None):
        if len(data) == 0:
            raise ValueError("the dataset is empty")
        self.num_classes = num_classes  # labels checked against it as they are read
        check_int("batch_size", batch_size, minimum=1)
        check_int("seed", seed, minimum=0)
        _check_shard(len(data), rank, world_size)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.seed = seed
        self.epoch = 0
        self.sampler = None
        if world_size > 1:
            self.sampler = torch.utils.data.distributed.DistributedSampler(
                _Indexed(data), num_replicas=world_size, rank=rank, shuffle=shuffle,
                seed=seed * 100_003, drop_last=drop_last)
        self.loader = torch.utils.data.DataLoader(
            _Indexed(data), batch_size=batch_size,
            shuffle=shuffle if self.sampler is None else False, sampler=self.sampler,
            drop_last=drop_last, num_workers=num_workers,
            pin_memory=self.device.type == "cuda", generator=torch.Generator(),
        )

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        self.loader.generator.manual_seed(self.seed * 100_003 + self.epoch)
        if self.sampler is not None:
            self.sampler.set_epoch(self.epoch)  # a new permutation every epoch
        self.epoch += 1
        for x, y, idx in self.loader:
            check_batch(x, y, idx, self.num_classes)  # on the CPU, before the copy
            yield (x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True),
                   idx.to(self.device, non_blocking=True))


def check_batch(x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor,
                num_classes: int | None = None) -> None:
    """Every label of a batch a class index (or ``UNLABELLED``, -1), every image finite:
    what an :class:`~atkd_lite.data.images.ImageSet` guarantees when it is built, checked
    for any other dataset as its items are read (a label past the classes would
    otherwise surface as torch's raw index error, or be scored silently as wrong in test
    data).

    Raises:
        ValueError: naming the dataset index of the first bad item.
    """
    bad = (y < 0) & (y != UNLABELLED)
    if num_classes is not None:
        bad |= y >= num_classes
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        classes = f"0 to {num_classes - 1}" if num_classes is not None else "0 or more"
        raise ValueError(f"item {int(idx[i])} of the dataset has the label {int(y[i])}; "
                         f"labels must be class indices ({classes}) or {UNLABELLED} (no "
                         "label): fix the labels, or build the networks with more outputs")
    if x.is_floating_point():
        finite = torch.isfinite(x.flatten(1)).all(1)
        if not bool(finite.all()):
            i = int((~finite).nonzero()[0, 0])
            raise ValueError(f"item {int(idx[i])} of the dataset has NaN or infinite "
                             "pixels; repair or remove it (e.g. check its transform)")


def default_workers() -> int:
    """Worker processes for reading a dataset that is not an
    :class:`~atkd_lite.data.images.ImageSet`: up to 4 where new processes are forked
    (Linux), none where they are spawned (macOS, Windows): a spawned worker re-imports the
    main script, which fails in a script without an ``if __name__ == "__main__":``
    guard."""
    # the start method set, else the platform's default (the first listed); not fixed here
    method = (multiprocessing.get_start_method(allow_none=True)
              or multiprocessing.get_all_start_methods()[0])
    return min(4, os.cpu_count() or 1) if method == "fork" else 0


def make_batches(data, batch_size=128, shuffle=True, device=None, seed=0, drop_last=False,
                 augment: int = 0, on_device: bool | None = None, rank: int = 0,
                 world_size: int = 1, flip: bool = False, num_workers: int | None = None,
                 num_classes: int | None = None):
    """Batches for training or evaluation: :class:`DeviceBatcher` for an
    :class:`~atkd_lite.data.images.ImageSet` that fits on the device (the fast path), else
    a :class:`LoaderBatches`; ``rank`` and
    ``world_size`` give this process its share under data parallelism. A
    :class:`~torch.utils.data.DataLoader` is read through its dataset (keeping its
    ``num_workers``); the order comes from ``seed``. ``num_workers``: worker processes
    for a dataset that is not an ImageSet (None: :func:`default_workers`), whose labels
    are checked against ``num_classes`` as they are read (:func:`check_batch`)."""
    check_int("augment", augment, minimum=0)
    workers = default_workers() if num_workers is None else num_workers
    if isinstance(data, torch.utils.data.DataLoader):
        workers = data.num_workers if num_workers is None else num_workers
        data = data.dataset
    if on_device is None:
        on_device = isinstance(data, ImageSet) and data.images.numel() < 2**31
    if on_device:
        return DeviceBatcher(data, batch_size, shuffle, device, seed, drop_last, augment,
                             rank=rank, world_size=world_size, flip=flip)
    if augment or flip:
        raise ValueError("random shifts and flips are implemented on the device path only; "
                         "pass an ImageSet with on_device=True, or augment=0 and flip=False "
                         "and put the augmentation in the dataset's own transform")
    return LoaderBatches(data, batch_size, shuffle, device, seed, drop_last,
                         num_workers=workers, rank=rank, world_size=world_size,
                         num_classes=num_classes)
