"""atkd_lite — attention-guided knowledge distillation, the companion package of the book.

The public names::

    import atkd_lite as ak
    cam = ak.ATCam(model, layers=None, first=2, last=2, combine="fma", p=1, size=None)
    logits, maps = cam(x)                       # maps: (B, H, W) in [0, 1]
    ak.saliency_map(model, x, target=None)      # SALS, (B, H, W) in [0, 1]
    ak.distill(teacher, student, train_data, test_data, method="fma")
    ak.losses.kd_loss / attention_loss / at_loss

Three layers, so the method stands apart from what serves the book:

- the **core** (this package's modules): ``checks``, ``device`` (seeds, precision),
  ``files`` (safe writes, locks), ``outputs`` (what a model returns) → ``data`` (with
  ``datasets``: CIFAR-10 and MedMNIST files, any ``(image, label)`` dataset) → ``models``
  → ``atcam`` (the method; its fast paths in ``atcam_fast``) / ``saliency`` → ``signals``
  (what a loss compares) → ``losses`` → ``methods`` (one file per method, a registry) /
  ``engine`` (one training loop; data-parallel under ``torchrun`` through
  ``distributed``) → ``cache``, ``checkpoints``, ``attributions``, ``metrics``, ``cost``.
  The core never imports the other two layers. (``runtime`` and ``distillers`` are the
  first names of ``checks``/``device``/``files``/``outputs`` and ``methods``, kept for
  old code.)
- :mod:`atkd_lite.experiments` — the one grid runner, results with provenance, the
  statistics protocol, the profiles, and the experiments (low-data, sizes, faithfulness,
  shortcut, the attention overhead);
- :mod:`atkd_lite.book` — figures, widgets, exercise checks and Colab's Drive cache, which
  only the chapters need.

On top of the three: the command line, :mod:`atkd_lite.cli`, and ``config``, the first
name of the cache directory, the profiles and the Drive cache, kept for old code.

Submodules are imported lazily, so ``import atkd_lite`` stays fast (torch, captum and
torchvision load only when a name that needs them is first used).
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0"

# public name -> submodule that defines it
_LAZY = {
    # data
    "load_dataset": "data",
    "embedded_mnist": "data",
    "cluttered_mnist": "data",
    "ImageSet": "data",
    "DeviceBatcher": "data",
    # models and what they cost
    "teacher_cnn": "models",
    "student_cnn": "models",
    "student_mlp": "models",
    "build_model": "models",
    "count_parameters": "cost",
    "model_size_bytes": "cost",
    "cpu_latency": "cost",
    # running
    "get_device": "device",
    "seed_everything": "device",
    "cache_dir": "files",
    "profile": "experiments.profiles",
    # training and checkpoints
    "train_model": "engine",
    "evaluate": "engine",
    "predict": "engine",
    "distill": "engine",
    "DistillConfig": "engine",
    "save_checkpoint": "checkpoints",
    "load_checkpoint": "checkpoints",
    "pretrained_teacher": "checkpoints",
    # attention
    "ATCam": "atcam",
    "saliency_map": "saliency",
    "attribution_maps": "attributions",
    "TeacherCache": "cache",
}

_SUBMODULES = {
    "atcam", "atcam_fast", "attributions", "book", "cache", "checkpoints", "checks", "cli",
    "config", "cost", "data", "datasets", "device", "distillers", "distributed", "engine",
    "experiments", "files", "losses", "methods", "metrics", "models", "outputs", "runtime",
    "saliency", "signals",
}


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
        value = getattr(module, name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'atkd_lite' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)


__all__ = sorted(_LAZY) + ["__version__"]
