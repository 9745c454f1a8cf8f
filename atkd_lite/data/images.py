"""What a dataset is here: :class:`ImageSet`, in-memory images with their labels.

- :class:`ImageSet` — uint8 images ``(N, C, H, W)``, int64 labels, class names, optional
  ground-truth boxes and per-channel standardisation; stratified subsets
  (:meth:`ImageSet.per_class`) and channel statistics;
- :data:`UNLABELLED` and :func:`with_unlabelled` — images without a label (a
  knowledge-distillation transfer set);
- :func:`check_normalize`, :func:`standardize` — the ``(mean, std)`` standardisation;
- :func:`stratified_order` — every class's members in a seeded order (the stratified
  splits and subsets);
- :class:`DatasetUnavailableError` — what a loader raises when a dataset cannot be had.

Part of :mod:`atkd_lite.data` (defined in the book's chapter "CNN basics").
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from atkd_lite.checks import check_int

__all__ = [
    "DIGITS",
    "UNLABELLED",
    "DatasetUnavailableError",
    "ImageSet",
    "check_normalize",
    "standardize",
    "stratified_order",
    "with_unlabelled",
]

#: the class names of the digit sets, ``"0"`` to ``"9"`` (an ImageSet's default)
DIGITS = [str(i) for i in range(10)]

#: the label of an image without one (e.g. in a KD transfer set), which cross-entropy
#: skips
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
            std``, applied by :class:`~atkd_lite.data.batches.DeviceBatcher`,
            ``dataset[i]`` and :meth:`float_images` after any augmentation. Set it with
            :meth:`normalized` (the statistics of the data actually used, e.g. the
            training split's).

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
        idx = stratified_order(self.labels.numpy(), seed)
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


def stratified_order(labels: np.ndarray, seed: int) -> list[np.ndarray]:
    """For every class ``0 … max(labels)``, the indices of its members in a seeded random
    order (the stratified splits and :meth:`ImageSet.per_class` take their first ones)."""
    rng = np.random.default_rng(seed)
    top = int(labels.max()) + 1 if labels.size else 0
    return [rng.permutation(np.flatnonzero(labels == c)) for c in range(top)]
