"""Decoy digits: the embedded digits with a shortcut in the corner (Decoy MNIST).

- :func:`decoy_mnist` — the recipe of Ross, Hughes & Doshi-Velez (2017): a grey swatch
  whose shade (:func:`decoy_shade`) codes a class, following the label in the training
  splits with probability ``rho``; the splits are :data:`DECOY_SPLITS`;
- :class:`DecoySet` — an :class:`~atkd_lite.data.images.ImageSet` that knows where each
  swatch is (the masks of Right for the Right Reasons, :mod:`atkd_lite.methods.rrr`).

Part of :mod:`atkd_lite.data`; ``load_dataset("decoy", split)`` loads it by name.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from atkd_lite.data.digits import embedded_arrays, embedded_split_indices
from atkd_lite.data.images import ImageSet

__all__ = ["DECOY_SPLITS", "DecoySet", "decoy_mnist", "decoy_shade"]

#: the splits of :func:`decoy_mnist`, three from the training distribution and three to
#: test it
DECOY_SPLITS = ("train", "fit", "val", "test", "flipped", "clean")


@dataclass(repr=False)
class DecoySet(ImageSet):
    """An :class:`~atkd_lite.data.images.ImageSet` of decoy digits that knows where each
    swatch is.

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
        digits, _ = embedded_arrays()
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
    digits, labels = embedded_arrays()
    n_all, k = len(labels), int(labels.max()) + 1
    # one set of draws per embedded digit, whatever the split (see the docstring)
    rng = np.random.default_rng([seed, 0xDEC0])
    bottom = rng.random(n_all) < 0.5
    right = rng.random(n_all) < 0.5
    follows = rng.random(n_all)             # follows the label when below rho
    random_class = rng.integers(0, k, n_all)
    wrong_class = (labels + rng.integers(1, k, n_all)) % k
    base_split = {"flipped": "test", "clean": "test"}.get(split, split)
    idx = embedded_split_indices(base_split, 0)
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

