"""Checkpoints and the cached teacher: save and load models safely, train the teacher once.

- :func:`save_checkpoint` writes a model's config, weights and metadata atomically, with a
  SHA-256 digest of its tensors;
- :func:`load_checkpoint` reads one back (never unpickling code: ``weights_only=True``),
  verifies the digest and the metadata you expect, and rebuilds the model if needed;
- :func:`pretrained_teacher` loads the default teacher from the cache, or trains it
  (deterministically) and caches it; a file lock makes concurrent calls train it once,
  and :func:`teacher_cache_path` says where it is kept.

Defined in the book's chapter "Teacher and student".
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

import torch
from torch import nn

from atkd_lite import distributed
from atkd_lite.checks import check_int
from atkd_lite.cost import count_parameters
from atkd_lite.data import load_dataset
from atkd_lite.device import seed_everything
from atkd_lite.engine import train_model
from atkd_lite.files import (
    FileLock,
    atomic_write,
    cache_dir,
    check_output_file,
    sweep_temp_files,
    tensor_digest,
)
from atkd_lite.models import build_model, teacher_cnn

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "load_checkpoint",
    "pretrained_teacher",
    "save_checkpoint",
    "teacher_cache_path",
    "teacher_recipe",
]

CHECKPOINT_FORMAT = "atkd_lite.checkpoint/1"

# tensor_digest lives in runtime (the teacher cache uses it too); importable from here as
# before: ``from atkd_lite.checkpoints import tensor_digest``


class CheckpointError(RuntimeError):
    """A checkpoint is corrupt, incomplete, or does not match what was asked for."""


def _versions() -> dict:
    import atkd_lite

    # the thread count belongs to the provenance: CPU results repeat exactly only at the
    # same number of torch threads (see seed_everything)
    return {"atkd_lite": atkd_lite.__version__, "torch": str(torch.__version__),
            "torch_threads": torch.get_num_threads()}


def save_checkpoint(path, model: nn.Module, **metadata) -> Path:
    """Save ``model`` (its config and weights) with ``metadata``, atomically.

    The file is written to a unique temporary name in the same folder and renamed into
    place (:func:`~atkd_lite.files.atomic_write`), so an interrupted save never leaves a
    half-written checkpoint. Versions of atkd_lite and torch and a digest of the weights
    are recorded. Under data parallelism only rank 0 writes (every rank holds the same
    model); the others check the path and return it.
    """
    if not distributed.is_main():
        return check_output_file(path)
    config = getattr(model, "config", None)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    meta = {"format": CHECKPOINT_FORMAT, "config": config, "parameters": count_parameters(model),
            **_versions(), **metadata, "sha256": tensor_digest(state)}
    return atomic_write(path, lambda tmp: torch.save({"meta": meta, "state_dict": state}, tmp))


def load_checkpoint(path, model: nn.Module | None = None, map_location="cpu",
                    expect: dict | None = None) -> tuple[nn.Module, dict]:
    """Load a checkpoint written by :func:`save_checkpoint`; returns ``(model, meta)``.

    Args:
        path: the file.
        model: load into this model; if None, the model is rebuilt from the stored config.
        expect: metadata that must match (e.g. ``{"dataset": "mnist5k"}``).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: the file is corrupt or damaged (its weights do not match their
            digest), not an atkd_lite checkpoint, its metadata differs from ``expect``, or
            its weights do not fit ``model``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{path} is not a regular file (a device, a FIFO or a "
                              "socket); give the path of a checkpoint file")
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        if "weights only load failed" in str(err).lower():  # pickled objects, not tensors
            raise CheckpointError(
                f"{path} holds Python objects that an atkd_lite checkpoint never holds; it "
                "is refused unread, since loading it could run code it contains. Use "
                "checkpoints written by save_checkpoint (or save your model's state_dict "
                "with it)") from None
        raise CheckpointError(
            f"{path} is corrupt or not a checkpoint ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}); restore it, or train the "
            "model again (pretrained_teacher(...) retrains a damaged cached teacher "
            "itself)"
        ) from err
    if (not isinstance(blob, dict) or not isinstance(blob.get("meta"), dict)
            or blob["meta"].get("format") != CHECKPOINT_FORMAT
            or not isinstance(blob.get("state_dict"), dict)):
        raise CheckpointError(f"{path} is not an atkd_lite checkpoint "
                              f"(expected format {CHECKPOINT_FORMAT!r})")
    meta = blob["meta"]
    bad = [k for k, v in blob["state_dict"].items()
           if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path} is damaged: its state_dict holds entries that are not "
                              f"named tensors ({bad[:3]}); delete it and train again")
    if meta.get("sha256") is None:  # every checkpoint save_checkpoint writes carries one
        raise CheckpointError(f"{path} carries no digest of its weights, so they cannot be "
                              "verified (save_checkpoint always writes one): it was not "
                              "written by atkd_lite; save the model again with "
                              "save_checkpoint, or train again")
    if tensor_digest(blob["state_dict"]) != meta["sha256"]:
        raise CheckpointError(f"{path} is damaged: its weights do not match the digest saved "
                              "with them; delete it and train again")
    for key, want in (expect or {}).items():
        if meta.get(key) != want:
            raise CheckpointError(f"{path} was saved with {key}={meta.get(key)!r}, "
                                  f"but {want!r} was expected")
    if model is None:
        if meta.get("config") is None:
            raise CheckpointError(f"{path} stores no model config; pass the model to load into")
        _check_config_fits(path, meta["config"], blob["state_dict"])
        try:
            model = build_model(meta["config"])
        except ValueError as err:
            raise CheckpointError(f"{path}: {err}") from err
    elif meta.get("config") is not None and getattr(model, "config", None) not in (None, meta["config"]):
        raise CheckpointError(f"{path} holds a model with config {meta['config']}, which does "
                              f"not match the model given ({model.config})")
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(f"the weights in {path} do not fit the model: {err}") from err
    return model, meta


def _check_config_fits(path, config, state_dict: dict) -> None:
    """Build the stored config on the meta device (no memory) and compare its tensors'
    shapes with the stored weights, before the model is built for real: a crafted config
    cannot make the loader allocate a model its weights do not describe."""
    try:
        with torch.device("meta"):
            probe = build_model(config)
    except (ValueError, TypeError, RuntimeError) as err:
        raise CheckpointError(f"{path}: its model config cannot be built ({err})") from None
    want = {k: tuple(v.shape) for k, v in probe.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state_dict.items()}
    if want != got:
        diff = sorted(set(want.items()) ^ set(got.items()))[:3]
        raise CheckpointError(f"{path}: its model config does not describe its weights "
                              f"(differing entries, e.g. {diff}); the file is damaged or "
                              "was not written by atkd_lite")


#: train_model settings of the default teacher; a setting equal to its default is left
#: out of the recipe, so ``augment=2`` and no ``augment`` name the same cached teacher
TEACHER_DEFAULTS = {"augment": 2}


def teacher_recipe(dataset: str = "mnist5k", epochs: int = 12, seed: int = 0,
                   per_class: int | None = None, split: str = "train",
                   **train_kwargs) -> tuple[dict, str]:
    """The default teacher's recipe and its short hash (the cache file's key).

    Under ``torchrun`` the number of processes is part of the recipe (each process takes
    ``batch_size`` images a step, so the global batch grows with them).

    Examples::

        >>> from atkd_lite.checkpoints import teacher_recipe
        >>> teacher_recipe(augment=2)[1] == teacher_recipe()[1] != teacher_recipe(augment=0)[1]
        True
    """
    check_int("epochs", epochs, minimum=1)
    check_int("seed", seed, minimum=0)
    if per_class is not None:
        check_int("per_class", per_class, minimum=1)
    train = load_dataset(dataset, split)
    config = teacher_cnn(in_channels=train.in_channels, num_classes=train.num_classes).config
    kept = {k: v for k, v in train_kwargs.items()
            if not (k in TEACHER_DEFAULTS and v == TEACHER_DEFAULTS[k])}
    recipe = {"dataset": dataset, "epochs": epochs, "seed": seed, "config": config,
              "train": {k: kept[k] for k in sorted(kept)},
              "image_size": list(train.image_size)}
    if per_class is not None:  # only then, so the full-data teacher keeps its key
        recipe["per_class"] = per_class
    if split != "train":
        recipe["split"] = split
    if distributed.world_size() > 1:  # a global batch of batch_size x processes
        recipe["world_size"] = distributed.world_size()
    return recipe, hashlib.sha1(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:10]


def teacher_cache_path(dataset: str = "mnist5k", epochs: int = 12, seed: int = 0, cache=None,
                       per_class: int | None = None, split: str = "train",
                       **train_kwargs) -> Path:
    """Where :func:`pretrained_teacher` keeps the teacher of this recipe (the file may not
    exist yet): ``<cache>/teachers/teacher-<dataset>[-<split>][-<n>pc]-<recipe key>.pt``.

    Examples::

        >>> from atkd_lite.checkpoints import teacher_cache_path
        >>> teacher_cache_path("mnist5k", cache="/tmp/c").name.startswith("teacher-mnist5k-")
        True
    """
    _, key = teacher_recipe(dataset, epochs, seed, per_class, split, **train_kwargs)
    tag = dataset if split == "train" else f"{dataset}-{split}"
    if per_class is not None:
        tag += f"-{per_class}pc"
    return cache_dir(cache) / "teachers" / f"teacher-{tag}-{key}.pt"


def pretrained_teacher(dataset: str = "mnist5k", epochs: int = 12, seed: int = 0,
                       cache=None, device=None, progress: bool = True, retrain: bool = False,
                       per_class: int | None = None, split: str = "train",
                       **train_kwargs) -> tuple[nn.Module, dict]:
    """The default teacher trained on ``dataset``: loaded from the cache, or trained and cached.

    The cache file name encodes the dataset, epochs, seed and architecture
    (:func:`teacher_cache_path`), so a changed recipe never loads a stale teacher. A
    corrupt or damaged cache file is retrained (with a message saying so). A lock file
    next to it makes concurrent calls (two notebooks, two ranks) train once: the second
    waits, then loads what the first saved. ``per_class`` trains it on that many images
    per class only (the subset a low-data student sees, ``per_class(n, seed=0)``): the
    control that separates KD's dark knowledge from the teacher's extra labels.
    ``split="fit"`` trains it on the tuning split only and scores it on ``"val"`` (for
    choosing settings without a teacher that has seen a validation digit). Returns
    ``(teacher in eval mode on device, metadata)`` with the test accuracy in the metadata.

    Examples::

        >>> import atkd_lite as ak
        >>> teacher, meta = ak.pretrained_teacher(progress=False)   # doctest: +SKIP
        >>> meta["test_acc"] > 0.97                                  # doctest: +SKIP
        True
    """
    dev = distributed.setup(device)  # under torchrun: this rank's device
    train = load_dataset(dataset, split)
    test = load_dataset(dataset, "val" if split == "fit" else "test")
    if per_class is not None:
        train = train.per_class(per_class, seed=0)
    _, key = teacher_recipe(dataset, epochs, seed, per_class, split, **train_kwargs)
    path = teacher_cache_path(dataset, epochs, seed, cache, per_class, split, **train_kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Rank 0 holds the lock (against other jobs); under data parallelism the ranks then
    # decide together and, if needed, train together (train_model is data-parallel).
    lock = FileLock(path.parent / f".{path.name}.lock")
    with lock.acquire(waiting=f"another process is training this teacher ({path.name}); "
                              "waiting for it") if distributed.is_main() \
            else contextlib.nullcontext():
        model, meta = None, None
        if distributed.is_main():
            sweep_temp_files(path.parent)  # leftovers of writers killed while saving
            model, meta = _load_cached_teacher(path, key, train, seed, retrain)
        if distributed.broadcast_object(meta is not None):
            if model is None:  # the other ranks read what rank 0 found whole
                model, meta = _load_cached_teacher(path, key, train, seed, False)
            return model.to(dev).eval(), meta
        seed_everything(seed)  # the initial weights are part of the recipe
        model = teacher_cnn(in_channels=train.in_channels, num_classes=train.num_classes)
        kwargs = {**TEACHER_DEFAULTS, **train_kwargs}
        history = train_model(model, train, test, epochs=epochs, seed=seed, device=dev,
                              progress=progress, **kwargs)
        meta = {"dataset": dataset, "split": split, "per_class": per_class, "epochs": epochs,
                "seed": seed, "recipe_key": key, "test_acc": history.last["test_acc"],
                "history": history.records, "device": str(dev), **history.meta}
        save_checkpoint(path, model, **meta)  # rank 0
        distributed.barrier()
        _, meta = load_checkpoint(path, model)  # what we return is exactly what is on disk
    return model.to(dev).eval(), meta


def _load_cached_teacher(path: Path, key: str, train, seed: int, retrain: bool):
    """``(model, meta)`` from the cache file, or ``(None, None)`` when it must be trained
    (missing, ``retrain``, or damaged: then say so)."""
    if not path.exists() or retrain:
        return None, None
    seed_everything(seed)
    model = teacher_cnn(in_channels=train.in_channels, num_classes=train.num_classes)
    try:
        return load_checkpoint(path, model, expect={"recipe_key": key})
    except CheckpointError as err:
        print(f"retraining the teacher: {err}")
        return None, None
