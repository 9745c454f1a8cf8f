"""atkd_lite — attention-guided knowledge distillation, the companion package of the book.

The public names (see ``DESIGN.md`` in the project and the API page of the book)::

    import atkd_lite as ak
    cam = ak.ATCam(model, layers=None, first=2, last=2, combine="fma", p=1, size=None)
    logits, maps = cam(x)                       # maps: (B, H, W) in [0, 1]
    ak.saliency_map(model, x, target=None)      # SALS, (B, H, W) in [0, 1]
    ak.distill(teacher, student, train_data, test_data, method="fma")
    ak.losses.kd_loss / attention_loss / at_loss

Submodules are imported lazily so that ``import atkd_lite`` stays fast (captum and
torchvision load only when a function that needs them is first used).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> submodule that defines it
_LAZY = {
    # data
    "load_dataset": "data",
    "embedded_mnist": "data",
    "cluttered_mnist": "data",
    "ImageSet": "data",
    "DeviceBatcher": "data",
    # models
    "teacher_cnn": "models",
    "student_cnn": "models",
    "build_model": "models",
    "count_parameters": "models",
    "model_size_bytes": "models",
    "cpu_latency": "models",
    # training
    "get_device": "train",
    "seed_everything": "train",
    "train_model": "train",
    "evaluate": "train",
    "predict": "train",
    "save_checkpoint": "train",
    "load_checkpoint": "train",
    "pretrained_teacher": "train",
    "cache_dir": "config",
    "profile": "config",
    # attention
    "ATCam": "atcam",
    "saliency_map": "saliency",
    # distillation
    "TeacherCache": "cache",
}

_SUBMODULES = {
    "atcam", "attributions", "benchmark", "cache", "cli", "config", "data", "efficiency",
    "exercises", "experiments", "faithfulness", "footprint", "losses", "metrics", "models",
    "predictions", "saliency", "stats", "train", "viz", "widgets",
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


# ``distill`` names both a submodule and the function ``ak.distill`` (DESIGN.md). Importing
# the submodule binds the package attribute to the module; importing the function here,
# once, makes ``ak.distill`` the function for good: later imports of ``atkd_lite.distill``
# find the module in sys.modules and leave the attribute alone.
from atkd_lite.distill import distill  # noqa: E402, F401

__all__ = sorted([*_LAZY, "distill"]) + ["__version__"]
