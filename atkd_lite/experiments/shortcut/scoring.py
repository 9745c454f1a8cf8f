"""The shortcut experiment's measurements of a network: a teacher that reads the swatch
is refused (:func:`check_teacher`), and every model is scored by where its maps put
their mass, on the swatch or on the digit (:func:`swatch_scores`).

Part of :mod:`atkd_lite.experiments.shortcut` (every name here is also importable from
there).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from atkd_lite.attributions import attribution_maps
from atkd_lite.checks import check_number
from atkd_lite.data import DecoySet, decoy_mnist
from atkd_lite.device import eval_mode, get_device
from atkd_lite.engine import evaluate
from atkd_lite.experiments.shortcut.design import EVAL_SPLITS, MAP_KINDS
from atkd_lite.metrics import energy_in_box

__all__ = ["ShortcutTeacherError", "check_teacher", "map_kinds_for", "swatch_scores"]


class ShortcutTeacherError(ValueError):
    """The teacher reads the swatch itself, so its eyes cannot guide a student away from it."""


def check_teacher(teacher: nn.Module, swatch: int = 4, max_gap: float = 0.05,
                  device=None) -> dict:
    """Measure a teacher on the decoy test splits; refuse it if it reads the swatch.

    On the ``flipped`` split the swatch always has a wrong class's shade, so a network
    that reads it loses accuracy there; one that looks at the digit does not.

    Args:
        teacher (nn.Module): the candidate teacher.
        swatch (int): the swatch side of the experiment.
        max_gap (float): the largest accepted drop from clean to flipped accuracy (0–1).
        device: where to evaluate.

    Returns:
        dict: ``{"test_acc", "flipped_acc", "clean_acc"}`` (fractions).

    Raises:
        ShortcutTeacherError: flipped accuracy more than ``max_gap`` below clean accuracy.
    """
    check_number("max_gap", max_gap, 0.0, 1.0)
    accs = {f"{s}_acc": evaluate(teacher, decoy_mnist(s, swatch=swatch), device=device)
            for s in EVAL_SPLITS}
    gap = accs["clean_acc"] - accs["flipped_acc"]
    if gap > max_gap:
        raise ShortcutTeacherError(
            f"this teacher reads the swatch: {100 * accs['flipped_acc']:.1f}% on the flipped "
            f"split vs {100 * accs['clean_acc']:.1f}% on clean digits (a drop of "
            f"{100 * gap:.1f} points, more than the {100 * max_gap:.1f} allowed), so it "
            "cannot show a student where not to look; train it on clean digits or on decoy "
            "digits with random shades (decoy_mnist('train', rho=0.0))")
    return accs


def swatch_scores(model: nn.Module, data: DecoySet, kinds: Sequence[str] = MAP_KINDS,
                  batch_size: int = 250, device=None) -> dict:
    """Where a model's maps put their mass: on the swatch, on the digit, or elsewhere.

    Maps explain the model's *predicted* class (:func:`atkd_lite.attributions.attribution_maps`,
    min-max normalised per image); each is scored with
    :func:`~atkd_lite.metrics.energy_in_box` on the swatch's box and on the digit's box.

    Args:
        model (nn.Module): the classifier (eval mode during the call).
        data (DecoySet): images with digit and swatch boxes.
        kinds (sequence of str): map kinds from
            :data:`~atkd_lite.experiments.shortcut.design.MAP_KINDS`.
        batch_size (int): images per batch.
        device: where to compute.

    Returns:
        dict: ``{kind: {"swatch": s, "digit": d}}``, means over the images (fractions).

    Raises:
        TypeError: data that is not a DecoySet; ValueError: unknown kinds.

    Examples::

        >>> import atkd_lite as ak
        >>> from atkd_lite.data import decoy_mnist
        >>> from atkd_lite.experiments.shortcut import swatch_scores
        >>> s = swatch_scores(ak.student_cnn("tiny"), decoy_mnist("test").subset(range(8)),
        ...                   kinds=("fma",), device="cpu")
        >>> sorted(s["fma"])
        ['digit', 'swatch']
    """
    if not isinstance(data, DecoySet):
        raise TypeError(f"swatch_scores needs a DecoySet (decoy_mnist(...)), got "
                        f"{type(data).__name__}")
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    bad = [k for k in kinds if k not in MAP_KINDS]
    if bad or not kinds:
        raise ValueError(f"unknown map kind(s) {bad}; choose from {list(MAP_KINDS)}")
    dev = get_device(device)
    model.to(dev)
    sums = {k: {"swatch": 0.0, "digit": 0.0} for k in kinds}
    with eval_mode(model):
        for i in range(0, len(data), batch_size):
            x = data.images[i:i + batch_size].to(dev).float() / 255.0
            with torch.no_grad():
                pred = model(x).argmax(1)
            for k in kinds:
                maps = attribution_maps(model, x, k, target=pred)
                for part, boxes in (("swatch", data.swatch_boxes), ("digit", data.boxes)):
                    sums[k][part] += energy_in_box(maps, boxes[i:i + batch_size]).sum().item()
    return {k: {part: v / len(data) for part, v in s.items()} for k, s in sums.items()}


def map_kinds_for(model: nn.Module) -> tuple[str, ...]:
    """The kinds of :data:`~atkd_lite.experiments.shortcut.design.MAP_KINDS` that apply to
    ``model``: Grad-CAM, FMA and MIP need convolutional feature maps, the saliency map
    only an input gradient.

    Examples::

        >>> import atkd_lite as ak
        >>> map_kinds_for(ak.student_mlp()), len(map_kinds_for(ak.student_cnn()))
        (('sals',), 4)
    """
    if any(isinstance(m, nn.Conv2d) for m in model.modules()):
        return MAP_KINDS
    return ("sals",)
