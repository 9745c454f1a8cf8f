"""Scores for attention maps: do they look at the right place, and do they matter?

- :func:`pointing_game` — is the map's maximum inside the ground-truth box (ties share
  the hit)?
- :func:`energy_in_box` — the fraction of the map's mass that lies inside the box;
- :func:`deletion_curve` / :func:`insertion_curve` — the class probability as the
  most-attended pixels are removed from the image / put back into a blank one (a map
  that points at what the model uses makes it fall / rise fast), and :func:`curve_area`,
  the normalised area under such a curve;
- :func:`rank_correlation` — Spearman correlation between two maps, per image;
- :func:`map_similarity` — cosine similarity between two maps, per image.

Maps are ``(B, H, W)`` (or Captum-style ``(B, 1, H, W)``); boxes are ``(B, 4)`` as
``(x0, y0, x1, y1)`` with end-exclusive pixel coordinates, as in
:func:`atkd_lite.data.cluttered_mnist`.

Defined in the book's chapters "Attention maps" and "Do the maps look at the right place?".

Examples::

    >>> import torch
    >>> from atkd_lite.metrics import pointing_game, energy_in_box
    >>> maps = torch.zeros(1, 8, 8); maps[0, 2, 3] = 1.0
    >>> boxes = torch.tensor([[2, 1, 5, 4]])           # x0, y0, x1, y1
    >>> pointing_game(maps, boxes).tolist(), energy_in_box(maps, boxes).tolist()
    ([1.0], [1.0])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from atkd_lite.device import eval_mode
from atkd_lite.outputs import model_logits

__all__ = [
    "box_mask",
    "curve_area",
    "deletion_curve",
    "energy_in_box",
    "insertion_curve",
    "map_similarity",
    "pointing_game",
    "rank_correlation",
]


def _as_maps(maps: torch.Tensor) -> torch.Tensor:
    if not isinstance(maps, torch.Tensor):
        raise TypeError(f"maps must be a tensor, got {type(maps).__name__}")
    if maps.dim() == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.dim() != 3:
        raise ValueError(f"maps must be shaped (B, H, W) or (B, 1, H, W), got {tuple(maps.shape)}")
    return maps.float()


def box_mask(boxes: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Boolean masks ``(B, H, W)``, True inside each box ``(x0, y0, x1, y1)`` (end-exclusive)."""
    boxes = torch.as_tensor(boxes)
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be shaped (B, 4) as (x0, y0, x1, y1), got {tuple(boxes.shape)}")
    h, w = int(size[0]), int(size[1])
    ys = torch.arange(h, device=boxes.device)[None, :, None]
    xs = torch.arange(w, device=boxes.device)[None, None, :]
    x0, y0, x1, y1 = (boxes[:, i, None, None] for i in range(4))
    return (ys >= y0) & (ys < y1) & (xs >= x0) & (xs < x1)


def _check_boxes(maps, boxes):
    if len(boxes) != len(maps):
        raise ValueError(f"{len(maps)} maps but {len(boxes)} boxes")


def pointing_game(maps: torch.Tensor, boxes: torch.Tensor, tolerance: int = 0) -> torch.Tensor:
    """Per image: the share of the map's maximal pixels that lie inside the box.

    A map whose maximum is reached at a single pixel scores 1 (hit) or 0 (miss). A map
    whose maximum is reached at k pixels scores the share of them inside the box: the
    expected hit when the tie is broken at random. So a constant map scores the box's
    share of the image, i.e. chance, and a map with one tied peak per layer (MIP's
    layers are each normalised to a maximum of exactly 1) is not punished for its ties.

    Args:
        maps: (B, H, W) or (B, 1, H, W).
        boxes: (B, 4) as (x0, y0, x1, y1), end-exclusive.
        tolerance (int): pixels by which the box is grown on every side before scoring
            (Zhang et al. 2018 use 15 pixels on ImageNet-sized images; 0 = the box itself).

    Returns:
        Tensor: (B,) float scores in [0, 1]; their mean is the pointing-game accuracy.

    Examples::

        >>> import torch
        >>> maps = torch.zeros(1, 4, 4); maps[0, 0, 0] = maps[0, 3, 3] = 1.0  # two peaks
        >>> pointing_game(maps, torch.tensor([[0, 0, 2, 2]])).tolist()       # one inside
        [0.5]
        >>> pointing_game(torch.ones(1, 4, 4), torch.tensor([[0, 0, 2, 2]])).tolist()
        [0.25]
    """
    maps = _as_maps(maps)
    boxes = torch.as_tensor(boxes, device=maps.device)
    _check_boxes(maps, boxes)
    tol = int(tolerance)
    if tol < 0:
        raise ValueError(f"tolerance must be a non-negative number of pixels, got {tolerance}")
    if tol:
        boxes = boxes + torch.tensor([-tol, -tol, tol, tol], device=boxes.device)
    inside = box_mask(boxes, maps.shape[1:])
    peak = maps == maps.flatten(1).amax(1)[:, None, None]
    return (peak & inside).flatten(1).sum(1).float() / peak.flatten(1).sum(1).float()


def energy_in_box(maps: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Per image: (sum of the map inside the box) / (sum of the whole map), in [0, 1].

    Maps are made non-negative first (absolute value); an all-zero map scores 0.
    """
    maps = _as_maps(maps).abs()
    boxes = torch.as_tensor(boxes, device=maps.device)
    _check_boxes(maps, boxes)
    inside = (maps * box_mask(boxes, maps.shape[1:])).flatten(1).sum(1)
    total = maps.flatten(1).sum(1)
    return torch.where(total > 0, inside / total.clamp_min(1e-30), torch.zeros_like(total))


def _ranks(v: torch.Tensor) -> torch.Tensor:
    """Average ranks along the last dim (ties share their mean rank), as float64."""
    v = v.double()
    order = v.argsort(dim=-1)
    ranks = torch.empty_like(v)
    ar = torch.arange(v.shape[-1], dtype=torch.float64, device=v.device).expand_as(v)
    ranks.scatter_(-1, order, ar)
    # average the ranks of tied values
    out = torch.empty_like(ranks)
    for i in range(v.shape[0]):
        _, inverse, counts = torch.unique(v[i], return_inverse=True, return_counts=True)
        sums = torch.zeros(len(counts), dtype=torch.float64, device=v.device)
        sums.index_add_(0, inverse, ranks[i])
        out[i] = (sums / counts)[inverse]
    return out


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation between maps ``a`` and ``b``, one value per image.

    Constant maps have no ranking: their correlation is NaN (as in SciPy).
    """
    a, b = _as_maps(a).flatten(1), _as_maps(b).flatten(1)
    if a.shape != b.shape:
        raise ValueError(f"maps differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    ra, rb = _ranks(a), _ranks(b)
    ra = ra - ra.mean(1, keepdim=True)
    rb = rb - rb.mean(1, keepdim=True)
    return ((ra * rb).sum(1) / (ra.norm(dim=1) * rb.norm(dim=1))).float()


def map_similarity(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Cosine similarity between the flattened maps, one value per image (0 for zero maps)."""
    a, b = _as_maps(a).flatten(1), _as_maps(b).flatten(1)
    if a.shape != b.shape:
        raise ValueError(f"maps differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    return torch.nn.functional.cosine_similarity(a, b, dim=1, eps=eps)


SCORES = ("probability", "accuracy")


@torch.no_grad()
def _perturbation_curve(model, x, y, maps, fractions, baseline, batch_size, score,
                        insert: bool, per_image: bool = False) -> torch.Tensor:
    maps = _as_maps(maps).to(x.device)
    if x.dim() != 4 or maps.shape != (x.shape[0], *x.shape[2:]):
        raise ValueError(f"maps {tuple(maps.shape)} do not match images {tuple(x.shape)}")
    if any(not 0.0 <= f <= 1.0 for f in fractions):
        raise ValueError(f"fractions must lie in [0, 1], got {list(fractions)}")
    if score not in SCORES:
        raise ValueError(f"score must be one of {list(SCORES)}, got {score!r}")
    b, _, h, w = x.shape
    order = maps.flatten(1).argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(h * w, device=x.device).expand(b, -1))
    rank = rank.view(b, 1, h, w)
    out = []
    with eval_mode(model):
        for f in fractions:
            k = round(f * h * w)
            scores = []
            for i in range(0, b, batch_size):
                xi, yi = x[i:i + batch_size], y[i:i + batch_size]
                top = rank[i:i + batch_size] < k  # the k most-attended pixels
                keep = top if insert else ~top
                xi = torch.where(keep, xi, torch.full_like(xi, baseline))
                logits = model_logits(model(xi)).float()
                if score == "probability":
                    scores.append(logits.softmax(1).gather(1, yi[:, None])[:, 0])
                else:
                    scores.append((logits.argmax(1) == yi).float())
            out.append(torch.cat(scores).cpu())
    per = torch.stack(out)  # (fractions, images)
    return per if per_image else per.mean(1)


def deletion_curve(model: nn.Module, x: torch.Tensor, y: torch.Tensor, maps: torch.Tensor,
                   fractions: Sequence[float] = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5),
                   baseline: float = 0.0, batch_size: int = 256,
                   score: str = "probability", per_image: bool = False) -> torch.Tensor:
    """The model's score as the most-attended pixels are removed (Petsiuk et al. 2018).

    For each fraction f, the ``round(f·H·W)`` pixels with the highest map values of every
    image are replaced by ``baseline`` in all channels; the model is then evaluated. A map
    that points at the evidence the model uses makes the score fall quickly; compare with
    a random map (and use :func:`curve_area`: lower is better). Ties are broken by pixel
    order (stable sort), so results are deterministic.

    Args:
        model: the classifier (evaluated in eval mode; its mode is restored).
        x: images ``(B, C, H, W)``; y: the class to score per image ``(B,)`` (the label,
            or the predicted class).
        maps: attention maps ``(B, H, W)`` or ``(B, 1, H, W)`` matching x.
        fractions: fractions of pixels to delete, each in [0, 1].
        baseline: the value deleted pixels take.
        score: ``"probability"`` (default: the mean softmax probability of class y, as
            Petsiuk et al.) or ``"accuracy"`` (the share of images still classified y).
        per_image (bool): return every image's curve instead of the mean.

    Returns:
        Tensor: one mean score per fraction; with ``per_image``, shaped (fractions, B).
    """
    return _perturbation_curve(model, x, y, maps, fractions, baseline, batch_size, score,
                               insert=False, per_image=per_image)


def insertion_curve(model: nn.Module, x: torch.Tensor, y: torch.Tensor, maps: torch.Tensor,
                    fractions: Sequence[float] = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0),
                    baseline: float = 0.0, batch_size: int = 256,
                    score: str = "probability", per_image: bool = False) -> torch.Tensor:
    """The model's score as the most-attended pixels are put back into a blank image.

    The mirror of :func:`deletion_curve` (Petsiuk et al. 2018): start from an image of
    ``baseline`` values and insert the ``round(f·H·W)`` most-attended pixels of the real
    image; a map that points at the evidence makes the score *rise* quickly (higher
    :func:`curve_area` is better). Same arguments as :func:`deletion_curve`.

    Returns:
        Tensor: one mean score per fraction; with ``per_image``, shaped (fractions, B).
    """
    return _perturbation_curve(model, x, y, maps, fractions, baseline, batch_size, score,
                               insert=True, per_image=per_image)


def curve_area(fractions: Sequence[float], values):
    """Area under a curve sampled at ``fractions``, divided by the fractions' span.

    The trapezoid rule, normalised so that a constant curve has the area of its value: for
    a deletion curve it is the mean accuracy over the deleted fractions (lower: the map
    found the evidence sooner). One point: its value. A 2-D ``values`` shaped
    (fractions, B), e.g. per-image curves, gives one area per column (a list).

    Examples::

        >>> curve_area([0.0, 0.25, 0.5], [1.0, 0.5, 0.0])
        0.5
        >>> curve_area([0.0, 1.0], [[1.0, 0.0], [1.0, 1.0]])
        [1.0, 0.5]
    """
    xs = np.asarray(list(fractions), dtype=float)
    ys = np.asarray(values.tolist() if isinstance(values, torch.Tensor) else list(values),
                    dtype=float)
    if ys.ndim == 2:
        return [curve_area(xs, ys[:, j]) for j in range(ys.shape[1])]
    ys = ys.ravel()
    if xs.shape != ys.shape or xs.size == 0:
        raise ValueError(f"need one value per fraction, got {ys.size} values for {xs.size} "
                         "fractions")
    span = xs[-1] - xs[0]
    if span <= 0:
        return float(ys[0])
    # the trapezoid rule by hand: np.trapezoid is numpy >= 2 only, np.trapz is gone in 2.4
    return float(((ys[1:] + ys[:-1]) / 2 * np.diff(xs)).sum() / span)
