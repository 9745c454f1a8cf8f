"""Checks of chapter 4's exercises (attention maps, ATCam): combining per-layer maps into
FMA and MIP.
"""

from __future__ import annotations

import torch

from atkd_lite.book.exercises.feedback import answer_tensor, hint, passed

__all__ = ["check_fma_combination", "check_mip_combination"]


def _combination_cases() -> list[list[torch.Tensor]]:
    """Per-layer maps (each (B, H, W), normalised per image) to combine, with edge cases."""
    from atkd_lite.atcam import normalize_maps

    gen = torch.Generator().manual_seed(4)
    random_maps = [normalize_maps(torch.rand(3, 5, 6, generator=gen)) for _ in range(4)]
    # image 0: two complementary 0/1 masks, so their mean is exactly constant (0.5);
    # image 1: every layer all zeros (a constant feature map normalises to zeros)
    mask = (torch.rand(1, 4, 4, generator=gen) > 0.5).float()
    edge = [torch.cat([mask, torch.zeros(1, 4, 4)]), torch.cat([1 - mask, torch.zeros(1, 4, 4)])]
    return [random_maps, random_maps[:2], edge]


def _check_combination(combine, mode: str, name: str, other: str) -> None:
    from atkd_lite.atcam import COMBINE, combine_maps

    for layer_maps in _combination_cases():
        got = answer_tensor(combine([m.clone() for m in layer_maps]), "the combined map")
        want = combine_maps(layer_maps, mode).double()
        stack = torch.stack(layer_maps).double()
        hint(tuple(got.shape) == tuple(want.shape),
             f"for {len(layer_maps)} per-layer maps of shape {tuple(layer_maps[0].shape)} the "
             f"result should be one map per image, shaped {tuple(want.shape)}; got "
             f"{tuple(got.shape)}. Stack the layers (torch.stack) and reduce over the "
             "layer axis (dim=0)")
        hint(not torch.isnan(got).any(),
             "your map contains NaN: when the combined map of an image is constant "
             "(max = min) the normalisation divides by zero; return zeros for such an "
             "image instead")
        if torch.allclose(got, want, atol=1e-5):
            continue
        raw = COMBINE[mode](stack)
        hint(not torch.allclose(got, raw, atol=1e-5),
             f"you return the {name} of the layers but do not normalise it again: the "
             "combined map must be min-max normalised to [0, 1] per image")
        lo, hi = raw.amin(), raw.amax()
        hint(not torch.allclose(got, (raw - lo) / (hi - lo), atol=1e-5),
             "you normalise with the min and max of the whole batch; normalise each "
             "image on its own (min and max over H and W only)")
        swapped = next(k for k in COMBINE if k != mode)  # the other built-in combination
        hint(not torch.allclose(got, combine_maps(layer_maps, swapped).double(), atol=1e-5),
             f"that is the {other} of the layers; {mode.upper()} takes the {name}")
        worst = (got - want).abs().flatten().argmax()
        hint(False, f"your map differs from the expected one by up to "
                     f"{(got - want).abs().max():.3g} (at flat index {int(worst)}); compute "
                     f"the elementwise {name} over the layers, then (m - min) / (max - min) "
                     "per image, and 0 for a constant map")
    passed(f"{mode.upper()} = norm({name} over layers), per image, zeros for a constant "
           "map: the same as atkd_lite.atcam.combine_maps (checked on random maps and "
           "on two edge cases).")


def check_fma_combination(fma_combine) -> None:
    """Check ``fma_combine(layer_maps)``: FMA, the normalised mean of per-layer maps.

    ``layer_maps`` is a list of per-layer maps, each (B, H, W) and already normalised
    per image; the answer must equal :func:`atkd_lite.atcam.combine_maps` with
    ``mode="fma"``: the elementwise mean over layers, min-max normalised per image, and
    all zeros (not NaN) where that mean is constant.
    """
    _check_combination(fma_combine, "fma", "mean", "maximum")


def check_mip_combination(mip_combine) -> None:
    """Check ``mip_combine(layer_maps)``: MIP, the normalised maximum of per-layer maps.

    As :func:`check_fma_combination`, with the elementwise maximum over layers
    (:func:`atkd_lite.atcam.combine_maps` with ``mode="mip"``).
    """
    _check_combination(mip_combine, "mip", "maximum", "mean")
