"""Your own data, by its first name: :mod:`atkd_lite.data` holds it now, in two modules.

- :mod:`atkd_lite.data.formats` — CIFAR-10's python version and MedMNIST's ``.npz``
  files: :func:`read_cifar10_python`, :func:`write_cifar10_python`,
  :func:`write_cifar10_standin`, :func:`read_medmnist_npz`, :func:`write_medmnist_npz`,
  :data:`MEDMNIST`;
- :mod:`atkd_lite.data.generic` — any map-style dataset of ``(image, label)`` pairs:
  :func:`as_dataset`, :func:`check_items`, :func:`sample_images`,
  :func:`sample_fingerprint`, :func:`channel_stats`.

Kept so that ``from atkd_lite.datasets import ...`` (the book, your own code) goes on
working; the package's own modules import from the two.

Examples::

    >>> import tempfile, numpy as np
    >>> from atkd_lite.datasets import read_cifar10_python, write_cifar10_standin
    >>> folder = write_cifar10_standin(tempfile.mkdtemp(), n_train=50, n_test=10)
    >>> images, labels, classes = read_cifar10_python(folder, "train")
    >>> images.shape, images.dtype, labels.shape, classes[0]
    ((50, 3, 32, 32), dtype('uint8'), (50,), 'airplane')
"""

from atkd_lite.data.formats import (  # noqa: F401 (re-exported)
    CIFAR10_CLASSES,
    CIFAR10_FOLDER,
    CIFAR10_STATS,
    MEDMNIST,
    read_cifar10_python,
    read_medmnist_npz,
    write_cifar10_python,
    write_cifar10_standin,
    write_medmnist_npz,
)
from atkd_lite.data.generic import (  # noqa: F401 (re-exported)
    as_dataset,
    channel_stats,
    check_items,
    sample_fingerprint,
    sample_images,
)

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_FOLDER",
    "CIFAR10_STATS",
    "MEDMNIST",
    "as_dataset",
    "channel_stats",
    "check_items",
    "read_cifar10_python",
    "read_medmnist_npz",
    "sample_fingerprint",
    "sample_images",
    "write_cifar10_python",
    "write_cifar10_standin",
    "write_medmnist_npz",
]
