"""Your own data: CIFAR-10's and MedMNIST's files, and any ``(image, label)`` dataset.

The book's embedded digits live in memory as an :class:`~atkd_lite.data.ImageSet`. This
module is what lets the same code take other data:

- **CIFAR-10's python version** (the folder ``cifar-10-batches-py`` of pickled batches):
  :func:`read_cifar10_python` reads it with a reader of its own, which unpickles numpy
  arrays only, so a generated stand-in with the same layout (:func:`write_cifar10_python`,
  :func:`write_cifar10_standin`) is read by the very code that reads the real files
  (torchvision's own class would refuse the stand-in: it checks every file's MD5);
- **MedMNIST's** ``.npz`` files (PneumoniaMNIST, BloodMNIST; CC BY 4.0):
  :func:`read_medmnist_npz` reads the six arrays directly, so the ``medmnist`` package is
  not needed; :data:`MEDMNIST` holds their classes, download address and MD5;
- **any map-style dataset** of ``(image, label)`` pairs (e.g. torchvision's
  ``ImageFolder`` over files on disk, too large for memory): :func:`as_dataset` and
  :func:`check_items` accept it (or a ``DataLoader`` around it) with a clear error when
  its items are not ``(image tensor, class index)``; :func:`sample_images`,
  :func:`sample_fingerprint` and :func:`channel_stats` read it without holding it in
  memory.

:func:`atkd_lite.data.load_dataset` uses the readers for ``"cifar10"``,
``"pneumoniamnist"`` and ``"bloodmnist"``.

Defined in the book's chapter "Your own model".

Examples::

    >>> import tempfile, numpy as np
    >>> from atkd_lite.datasets import read_cifar10_python, write_cifar10_standin
    >>> folder = write_cifar10_standin(tempfile.mkdtemp(), n_train=50, n_test=10)
    >>> images, labels, classes = read_cifar10_python(folder, "train")
    >>> images.shape, images.dtype, labels.shape, classes[0]
    ((50, 3, 32, 32), dtype('uint8'), (50,), 'airplane')
"""

from __future__ import annotations

import hashlib
import io
import pickle
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from atkd_lite.checks import check_int
from atkd_lite.files import atomic_write

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

# ---------------------------------------------------------------------------------------
# CIFAR-10, python version

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]

#: the folder that ``cifar-10-python.tar.gz`` unpacks to
CIFAR10_FOLDER = "cifar-10-batches-py"
_CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
_CIFAR_TEST = ["test_batch"]

#: CIFAR-10's per-channel mean and standard deviation over the 50,000 training images (on
#: the [0, 1] scale). The widely copied std (0.2023, 0.1994, 0.2010) is the mean of
#: per-image standard deviations, not the dataset's; the recipes compute the statistics
#: of the data they actually use (:meth:`~atkd_lite.data.ImageSet.normalized`), and these
#: values are what that gives on the real training split.
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))

#: what a CIFAR batch pickle may contain: numpy arrays and built-in containers only
_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),
}


class _ArraysOnly(pickle.Unpickler):
    """An unpickler that builds numpy arrays and plain containers, and nothing else: a
    pickle from the internet (or a damaged one) cannot run code."""

    def find_class(self, module, name):
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR batch holds "
                                     "numpy arrays and lists only")


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            # latin1: the batches were pickled by Python 2 (str keys, as torchvision reads them)
            blob = _ArraysOnly(fh, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise ValueError(f"{path} is not a CIFAR-10 python batch ({type(err).__name__}: "
                         f"{err}); delete the folder {path.parent} and download it "
                         "again") from err
    if not isinstance(blob, dict):
        raise ValueError(f"{path} holds a {type(blob).__name__}, not a CIFAR-10 batch dict; "
                         f"delete the folder {path.parent} and download it again")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in blob.items()}


def read_cifar10_python(folder, split: str = "train"):
    """Read CIFAR-10's python version from ``folder`` (``.../cifar-10-batches-py``).

    The layout is Krizhevsky's: ``data_batch_1`` … ``data_batch_5`` (train), ``test_batch``
    and ``batches.meta``, each a pickled dict; ``data`` is a (10000, 3072) uint8 array, each
    row the 1,024 red, then green, then blue values of a 32×32 image, row by row, and
    ``labels`` a list of ints 0–9. No file's MD5 is checked here (torchvision checks the
    archive when it downloads it), so a stand-in with the same layout reads the same way.

    Args:
        folder: the ``cifar-10-batches-py`` folder.
        split (str): ``"train"`` (the five data batches) or ``"test"``.

    Returns:
        (images, labels, classes): uint8 array (N, 3, 32, 32), int64 array (N,), and the
        ten class names (from ``batches.meta`` when present).

    Raises:
        ValueError: an unknown split, or a file that is not a CIFAR-10 batch (with what to
            do).
        FileNotFoundError: a batch file is missing.
    """
    if split not in ("train", "test"):
        raise ValueError(f"CIFAR-10 has the splits 'train' and 'test', not {split!r}")
    folder = Path(folder)
    images, labels = [], []
    for name in _CIFAR_TRAIN if split == "train" else _CIFAR_TEST:
        path = folder / name
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: {folder} is not a complete "
                                    "CIFAR-10 python folder (data_batch_1..5, test_batch)")
        blob = _unpickle(path)
        data = np.asarray(blob.get("data"))
        y = np.asarray(blob.get("labels", blob.get("fine_labels")), dtype=np.int64)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or \
                y.shape != (data.shape[0],) or (y.size and (y.min() < 0 or y.max() > 9)):
            raise ValueError(f"{path} is not a CIFAR-10 batch: data {data.dtype} "
                             f"{data.shape}, labels {y.shape} (expected uint8 (N, 3072) and "
                             "N labels in 0-9); delete the folder and download it again")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(y)
    classes = list(CIFAR10_CLASSES)
    meta = folder / "batches.meta"
    if meta.exists():
        names = _unpickle(meta).get("label_names")
        if isinstance(names, list) and len(names) == 10:
            classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    return np.concatenate(images), np.concatenate(labels), classes


def _pickle_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    pickle.dump(obj, buffer, protocol=2)
    return buffer.getvalue()


def write_cifar10_python(folder, train_images, train_labels, test_images, test_labels,
                         classes=CIFAR10_CLASSES) -> Path:
    """Write images in CIFAR-10's python layout (the reader's inverse; for stand-ins).

    The training images are split into five batch files as evenly as possible; every file
    is written atomically.

    Args:
        folder: the folder to write (created), usually ``.../cifar-10-batches-py``.
        train_images, test_images: uint8 arrays (N, 3, 32, 32).
        train_labels, test_labels: integer arrays (N,) with values 0–9.
        classes: the ten class names for ``batches.meta``.

    Returns:
        Path: ``folder``.
    """
    folder = Path(folder)
    splits = [("train", train_images, train_labels), ("test", test_images, test_labels)]
    for what, x, y in splits:
        x, y = np.asarray(x), np.asarray(y)
        if x.dtype != np.uint8 or x.shape[1:] != (3, 32, 32) or y.shape != (x.shape[0],):
            raise ValueError(f"{what} images must be uint8 (N, 3, 32, 32) with N labels; got "
                             f"{x.dtype} {x.shape} and labels {y.shape}")
    parts = np.array_split(np.arange(len(train_labels)), len(_CIFAR_TRAIN))
    files = [(name, train_images, train_labels, idx) for name, idx in zip(_CIFAR_TRAIN, parts)]
    files.append((_CIFAR_TEST[0], test_images, test_labels, np.arange(len(test_labels))))
    for name, x, y, idx in files:
        x, y = np.asarray(x)[idx], np.asarray(y)[idx]
        blob = {"batch_label": name, "labels": [int(v) for v in y],
                "data": np.ascontiguousarray(x.reshape(len(idx), 3072)),
                "filenames": [f"image_{i:05d}.png" for i in idx]}
        atomic_write(folder / name, _pickle_bytes(blob))
    atomic_write(folder / "batches.meta", _pickle_bytes(
        {"label_names": list(classes), "num_cases_per_batch": int(len(parts[0])),
         "num_vis": 3072}))
    return folder


def write_cifar10_standin(root, n_train: int = 500, n_test: int = 100, seed: int = 0) -> Path:
    """A small generated stand-in for CIFAR-10: its shapes and file layout, not its images.

    For tests and offline trials of the CIFAR-10 code path (nothing is downloaded). Each
    image is a class-coloured square on a noisy background, so a network can learn the
    classes, with labels balanced across the ten classes.

    Args:
        root: where to write; the files go into ``root/cifar-10-batches-py`` unless
            ``root`` already ends in that name.
        n_train, n_test (int): number of images (at least 10 and 1).
        seed (int): the generator's seed.

    Returns:
        Path: the ``cifar-10-batches-py`` folder.
    """
    check_int("n_train", n_train, minimum=10)
    check_int("n_test", n_test, minimum=1)
    check_int("seed", seed, minimum=0)
    root = Path(root)
    folder = root if root.name == CIFAR10_FOLDER else root / CIFAR10_FOLDER
    rng = np.random.default_rng(seed)
    palette = rng.integers(40, 256, size=(10, 3))

    def make(n):
        y = np.arange(n) % 10
        rng.shuffle(y)
        x = rng.integers(0, 90, size=(n, 3, 32, 32))
        for i, c in enumerate(y):
            top, left = rng.integers(0, 17, size=2)
            x[i, :, top:top + 16, left:left + 16] = palette[c][:, None, None]
        return x.astype(np.uint8), y

    (x_train, y_train), (x_test, y_test) = make(n_train), make(n_test)
    return write_cifar10_python(folder, x_train, y_train, x_test, y_test)


# ---------------------------------------------------------------------------------------
# MedMNIST

_ZENODO = "https://zenodo.org/records/10519652/files/{}.npz?download=1"

#: The MedMNIST (v2/v3, 28×28) sets the package reads, with their class names, channels,
#: sizes (train, val, test), download address and MD5 (from the ``medmnist`` package's
#: ``INFO``). Both are licensed CC BY 4.0 (Yang et al., *Scientific Data* 2023).
MEDMNIST = {
    "pneumoniamnist": {
        "classes": ["normal", "pneumonia"], "channels": 1, "sizes": (4708, 524, 624),
        "url": _ZENODO.format("pneumoniamnist"), "md5": "28209eda62fecd6e6a2d98b1501bb15f",
        "licence": "CC BY 4.0",
    },
    "bloodmnist": {
        "classes": ["basophil", "eosinophil", "erythroblast", "immature granulocytes",
                    "lymphocyte", "monocyte", "neutrophil", "platelet"],
        "channels": 3, "sizes": (11959, 1712, 3421),
        "url": _ZENODO.format("bloodmnist"), "md5": "7053d0359d879ad8a5505303e11de1dc",
        "licence": "CC BY 4.0",
    },
}
_MEDMNIST_SPLITS = ("train", "val", "test")


def read_medmnist_npz(path, split: str = "train"):
    """Read one split of a MedMNIST ``.npz`` file (e.g. ``pneumoniamnist.npz``).

    The file holds ``{split}_images`` — uint8 (N, 28, 28) for grey sets, (N, 28, 28, 3) for
    colour ones — and ``{split}_labels`` (N, 1) for the splits ``train``, ``val``, ``test``.

    Args:
        path: the ``.npz`` file.
        split (str): ``"train"``, ``"val"`` or ``"test"``.

    Returns:
        (images, labels): uint8 array (N, C, H, W) and int64 array (N,).

    Raises:
        ValueError: an unknown split, or a file without that split's arrays or with
            arrays of another shape (names what was found).
    """
    if split not in _MEDMNIST_SPLITS:
        raise ValueError(f"MedMNIST has the splits {list(_MEDMNIST_SPLITS)}, not {split!r}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = list(npz.keys())
            if f"{split}_images" not in keys or f"{split}_labels" not in keys:
                raise ValueError(f"{path} has no {split}_images/{split}_labels (it holds "
                                 f"{keys}); is it a MedMNIST file?")
            images, labels = npz[f"{split}_images"], npz[f"{split}_labels"]
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:  # damaged, truncated
        raise ValueError(f"{path} is not a readable .npz file ({type(err).__name__}: {err}); "
                         "delete it and download it again") from err
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim == 4 and images.shape[-1] in (1, 3):
        images = images.transpose(0, 3, 1, 2)
    else:
        raise ValueError(f"{path}: {split}_images is {images.shape}; expected (N, H, W) or "
                         "(N, H, W, 3) (a 3-D MedMNIST set is not an image set)")
    labels = np.asarray(labels).reshape(len(labels), -1)
    if labels.shape[1] != 1:
        raise ValueError(f"{path}: {split}_labels is {labels.shape}; multi-label sets "
                         "(e.g. ChestMNIST) are not single-class classification")
    if images.dtype != np.uint8:
        raise ValueError(f"{path}: {split}_images is {images.dtype}, not uint8")
    return np.ascontiguousarray(images), labels[:, 0].astype(np.int64)


def write_medmnist_npz(path, splits: dict) -> Path:
    """Write a ``.npz`` in MedMNIST's own format (the reader's inverse; for stand-ins).

    Args:
        path: the file to write (atomically).
        splits (dict): ``{"train": (images, labels), "val": ..., "test": ...}`` with uint8
            images (N, H, W) or (N, H, W, 3) and labels (N,) or (N, 1).

    Returns:
        Path: ``path``.
    """
    arrays = {}
    for split, (images, labels) in splits.items():
        if split not in _MEDMNIST_SPLITS:
            raise ValueError(f"unknown split {split!r}; use {list(_MEDMNIST_SPLITS)}")
        arrays[f"{split}_images"] = np.asarray(images, dtype=np.uint8)
        arrays[f"{split}_labels"] = np.asarray(labels, dtype=np.uint8).reshape(-1, 1)

    def write(tmp):
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    return atomic_write(path, write)


# ---------------------------------------------------------------------------------------
# any dataset of (image, label)

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

    For an :class:`~atkd_lite.data.ImageSet` use its own ``channel_stats()``; this one
    reads any dataset of ``(image, label)`` once, in float64.

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
