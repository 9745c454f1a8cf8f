"""Any map-style dataset of ``(image, label)`` pairs, e.g. your own data.

Torchvision's ``ImageFolder`` over files on disk, too large for memory, or any dataset
whose items are ``(image tensor, class index)``: :func:`as_dataset` and
:func:`check_items` accept it (or a ``DataLoader`` around it) with a clear error when its
items are something else; :func:`sample_images`, :func:`sample_fingerprint` and
:func:`channel_stats` read it without holding it in memory.

Part of :mod:`atkd_lite.data` (defined in the book's chapter "Your own model";
:mod:`atkd_lite.datasets` re-exports it).
"""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import torch

__all__ = [
    "as_dataset",
    "channel_stats",
    "check_items",
    "sample_fingerprint",
    "sample_images",
]


def as_dataset(data, name: str = "the data"):
    """The map-style dataset behind ``data`` (a ``DataLoader``'s ``.dataset``), checked.

    A DataLoader's dataset is read in the package's own seeded order, in its own batches:
    a sampler that chooses *which* images to use (e.g. ``SubsetRandomSampler`` for a
    train/validation split) would be ignored, so it is refused, and a ``collate_fn`` of
    its own is not applied (a warning says so).

    Raises:
        TypeError: not a dataset with ``len`` and indexing (e.g. an iterable-style
            dataset), or items that are not ``(image, label)`` (see :func:`check_items`).
        ValueError: an empty dataset; a DataLoader whose sampler chooses images.
    """
    if isinstance(data, torch.utils.data.DataLoader):
        _check_loader(data, name)
        data = data.dataset
    if isinstance(data, torch.utils.data.IterableDataset) or not (
            hasattr(data, "__len__") and hasattr(data, "__getitem__")):
        raise TypeError(f"{name} must be an ImageSet, a map-style torch Dataset of (image, "
                        f"label) pairs or a DataLoader over one; got {type(data).__name__} "
                        "(an iterable-style dataset has no index for a teacher cache)")
    check_items(data, name)
    return data


def _check_loader(loader: torch.utils.data.DataLoader, name: str) -> None:
    """Refuse a DataLoader whose sampler chooses images; warn about its own collate_fn."""
    ordinary = (torch.utils.data.SequentialSampler, torch.utils.data.RandomSampler)
    sampler = loader.sampler
    custom_batches = loader.batch_sampler is not None and \
        type(loader.batch_sampler) is not torch.utils.data.BatchSampler
    if type(sampler) not in ordinary or custom_batches:
        chosen = type(loader.batch_sampler if custom_batches else sampler).__name__
        raise ValueError(
            f"{name} is a DataLoader with a {chosen}, which chooses which images are used; "
            "the package reads the DataLoader's whole dataset in its own seeded order, so "
            "the sampler would be ignored (a train/validation split made by a sampler "
            "would train on the validation images): pass the images you mean, e.g. "
            "torch.utils.data.Subset(dataset, train_indices)")
    if loader.collate_fn is not torch.utils.data.default_collate:
        warnings.warn(f"{name} is a DataLoader with a collate_fn of its own, which is not "
                      "used: the package batches the dataset's (image, label) items itself; "
                      "move what collate_fn does into the dataset (e.g. its transform)",
                      stacklevel=4)


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor shaped {tuple(value.shape)}"
    if isinstance(value, np.ndarray):
        return f"a numpy {value.dtype} array shaped {value.shape}"
    kind = type(value).__name__
    return f"{'an' if kind[:1].lower() in 'aeiou' else 'a'} {kind}"


def check_items(data, name: str = "the data") -> None:
    """Check that ``data[0]`` is an ``(image, label)`` pair the package can train on.

    The image must be a floating-point tensor (C, H, W); the label a class index (an int,
    a NumPy integer or a 0-d integer tensor).

    Raises:
        ValueError: an empty dataset.
        TypeError: another structure, naming what was found and the usual fix (e.g.
            ``transform=torchvision.transforms.ToTensor()`` for PIL images,
            ``target_transform=lambda y: int(y[0])`` for MedMNIST's (1,) label arrays).

    Examples::

        >>> import torch
        >>> check_items([(torch.zeros(3, 8, 8), 1)])
        >>> check_items([(torch.zeros(3, 8, 8), 1, "x")])
        Traceback (most recent call last):
        ...
        TypeError: the items of the data must be (image, label) pairs; item 0 is a tuple of 3 elements (a torch.float32 tensor shaped (3, 8, 8), an int, a str)
    """
    if len(data) == 0:
        raise ValueError(f"{name} is empty; pass a dataset with at least one image")
    item = data[0]
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        parts = (f"a {type(item).__name__} of {len(item)} elements ("
                 + ", ".join(_describe(v) for v in item) + ")"
                 if isinstance(item, (tuple, list)) else _describe(item))
        raise TypeError(f"the items of {name} must be (image, label) pairs; item 0 is {parts}")
    image, label = item
    if not isinstance(image, torch.Tensor):
        fix = ("give the dataset transform=torchvision.transforms.ToTensor()"
               if type(image).__module__.startswith("PIL") else
               "convert it with torch.as_tensor(image).float() (C, H, W)")
        raise TypeError(f"the images of {name} must be float tensors (C, H, W); item 0's "
                        f"image is {_describe(image)}: {fix}")
    if image.dim() != 3 or not image.is_floating_point():
        raise TypeError(f"the images of {name} must be float tensors (C, H, W); item 0's "
                        f"image is {_describe(image)} (for uint8 0-255 images divide by 255; "
                        "for (H, W) add a channel with image[None])")
    is_index = (isinstance(label, (int, np.integer)) and not isinstance(label, bool)) or (
        isinstance(label, torch.Tensor) and label.dim() == 0
        and not label.is_floating_point() and label.dtype != torch.bool)
    if not is_index:
        raise TypeError(f"the labels of {name} must be class indices (an int); item 0's "
                        f"label is {_describe(label)}: convert it, e.g. with "
                        "target_transform=lambda y: int(y[0]) for a (1,) array")


def sample_images(data, n: int = 2) -> torch.Tensor:
    """The first ``n`` images of any dataset of ``(image, label)``, stacked (n, C, H, W)."""
    return torch.stack([data[i][0] for i in range(min(n, len(data)))])


def sample_fingerprint(data, n: int = 64) -> str:
    """A short SHA-1 of a dataset's length and ``n`` of its items, evenly spaced.

    Reads ``n`` items only, so it costs nothing for a dataset too large for memory, and it
    tells another dataset, another subset or another order apart. It does not see a
    change to an image it does not read; a dataset with random transforms never gives the
    same fingerprint twice (and must not be cached).
    """
    h = hashlib.sha1(f"{len(data)}".encode())
    positions = sorted({round(k * (len(data) - 1) / max(1, n - 1)) for k in range(n)})
    for i in positions:
        x, y = data[i]
        x = torch.as_tensor(x).detach().float().contiguous().cpu()
        h.update(f"{i}|{tuple(x.shape)}|{int(y)}|".encode())
        h.update(x.numpy().tobytes())
    return h.hexdigest()[:16]


def channel_stats(data, batch_size: int = 512, num_workers: int = 0):
    """Per-channel mean and standard deviation of a dataset's images, read in batches.

    For an :class:`~atkd_lite.data.images.ImageSet` use its own ``channel_stats()``; this
    one reads any dataset of ``(image, label)`` once, in float64.

    Returns:
        (mean, std): two tuples of C floats.

    Examples::

        >>> import torch
        >>> data = [(torch.full((2, 1, 1), float(v)), 0) for v in (0, 1)]
        >>> channel_stats(data)
        ((0.5, 0.5), (0.5, 0.5))
    """
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False,
                                         num_workers=num_workers)
    total = squares = None
    count = 0
    for x, _ in loader:
        x = x.to(torch.float64)
        s, q = x.sum(dim=(0, 2, 3)), x.pow(2).sum(dim=(0, 2, 3))
        total = s if total is None else total + s
        squares = q if squares is None else squares + q
        count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = (squares / count - mean.pow(2)).clamp_min(0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())
