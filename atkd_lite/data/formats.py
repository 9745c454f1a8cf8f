"""The files of other datasets: CIFAR-10's python version and MedMNIST's ``.npz``.

- **CIFAR-10's python version** (the folder ``cifar-10-batches-py`` of pickled batches):
  :func:`read_cifar10_python` reads it with a reader of its own, which unpickles numpy
  arrays only, so a generated stand-in with the same layout (:func:`write_cifar10_python`,
  :func:`write_cifar10_standin`) is read by the very code that reads the real files
  (torchvision's own class would refuse the stand-in: it checks every file's MD5);
- **MedMNIST's** ``.npz`` files (PneumoniaMNIST, BloodMNIST; CC BY 4.0):
  :func:`read_medmnist_npz` reads the six arrays directly, so the ``medmnist`` package is
  not needed; :data:`MEDMNIST` holds their classes, download address and MD5.

:func:`atkd_lite.data.loading.load_dataset` uses the readers for ``"cifar10"``,
``"pneumoniamnist"`` and ``"bloodmnist"``. Part of :mod:`atkd_lite.data` (defined in the
book's chapter "Your own model"; :mod:`atkd_lite.datasets` re-exports it).

Examples::

    >>> import tempfile, numpy as np
    >>> from atkd_lite.data.formats import read_cifar10_python, write_cifar10_standin
    >>> folder = write_cifar10_standin(tempfile.mkdtemp(), n_train=50, n_test=10)
    >>> images, labels, classes = read_cifar10_python(folder, "train")
    >>> images.shape, images.dtype, labels.shape, classes[0]
    ((50, 3, 32, 32), dtype('uint8'), (50,), 'airplane')
"""

from __future__ import annotations

import io
import pickle
import zipfile
import zlib
from pathlib import Path

import numpy as np

from atkd_lite.checks import check_int
from atkd_lite.files import atomic_write

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_FOLDER",
    "CIFAR10_STATS",
    "MEDMNIST",
    "read_cifar10_python",
    "read_medmnist_npz",
    "write_cifar10_python",
    "write_cifar10_standin",
    "write_medmnist_npz",
]

# ---------------------------------------------------------------------------------------
# CIFAR-10, python version

#: CIFAR-10's ten class names, by label
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]

#: the folder that ``cifar-10-python.tar.gz`` unpacks to
CIFAR10_FOLDER = "cifar-10-batches-py"
_CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
_CIFAR_TEST = ["test_batch"]

#: CIFAR-10's per-channel mean and standard deviation over the 50,000 training images (on
#: the [0, 1] scale). The widely copied std (0.2023, 0.1994, 0.2010) is the mean of
#: per-image standard deviations, not the dataset's; the recipes compute the statistics
#: of the data they actually use
#: (:meth:`~atkd_lite.data.images.ImageSet.normalized`), and these values are what that
#: gives on the real training split.
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
