"""One call for every kind of map the book compares: ATCam, SALS, Captum, random.

:func:`attribution_maps` returns maps of one kind for a batch, all in the same form —
``(B, H, W)``, one map per image, min-max normalised to [0, 1] per image — so that maps
from different methods can be scored with the same metrics
(:func:`~atkd_lite.metrics.rank_correlation`, :func:`~atkd_lite.metrics.deletion_curve`)
and drawn side by side:

============  ==========================================================================
method        map
============  ==========================================================================
``fma``       ATCam, mean over the first/last layers' maps (:class:`~atkd_lite.ATCam`)
``mip``       ATCam, max over the same layers
``sals``      the book's saliency, :func:`~atkd_lite.saliency_map`
``saliency``  Captum's ``Saliency`` (``abs=True``), max over input channels
``ig``        Captum's ``IntegratedGradients`` (black baseline), ``|·|``, max over channels
``gradcam``   Captum's ``LayerGradCam`` on the last capture point (ReLU), upsampled
              bilinearly with ``LayerAttribution.interpolate``
``random``    uniform noise (a baseline that knows nothing; seeded)
============  ==========================================================================

Captum's maps are the same quantities Captum's own visualisation shows with
``sign="absolute_value"``. ``sals`` and ``saliency`` are the same map computed twice (the
package's and Captum's), which is a check that the two agree.

Defined in the book's chapter "Attention maps"; the chapter "Do the maps look at the
right place?" scores them against boxes.
"""

from __future__ import annotations

import torch
from torch import nn

from atkd_lite.atcam import ATCam, normalize_maps
from atkd_lite.runtime import check_images, eval_mode
from atkd_lite.saliency import class_targets, saliency_map

__all__ = ["MAP_METHODS", "attribution_maps"]

#: the map kinds :func:`attribution_maps` knows
MAP_METHODS = ("fma", "mip", "sals", "saliency", "ig", "gradcam", "random")


def _last_capture_point(model: nn.Module) -> str:
    if callable(getattr(model, "atkd_capture_points", None)):
        return list(model.atkd_capture_points())[-1]
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError("Grad-CAM needs a conv layer; pass layer='name' of a module with "
                         "4-D outputs")
    return convs[-1]


def attribution_maps(model: nn.Module, x: torch.Tensor, method: str = "fma", target=None,
                     *, first: int = 2, last: int = 2, layer: str | None = None,
                     n_steps: int = 16, internal_batch_size: int | None = 256,
                     seed: int = 0) -> torch.Tensor:
    """Maps of one kind for a batch, ``(B, H, W)`` in [0, 1] (per-image min-max).

    The model is put in eval mode for the call and its mode is restored afterwards.

    Args:
        model (nn.Module): a CNN returning logits.
        x (Tensor): images (B, C, H, W).
        method (str): one of :data:`MAP_METHODS`.
        target (int, list or Tensor, optional): class per image for the class-specific
            methods (``sals``, ``saliency``, ``ig``, ``gradcam``); None = the predicted
            class. FMA, MIP and ``random`` ignore it.
        first, last (int): ATCam's layer selection (``fma``, ``mip``).
        layer (str, optional): Grad-CAM's layer (default: the last capture point, or the
            last ``Conv2d``).
        n_steps (int): integration steps of Integrated Gradients.
        internal_batch_size (int, optional): Integrated Gradients' internal batch.
        seed (int): the ``random`` maps' seed.

    Returns:
        Tensor: (B, H, W), float32, detached, on ``x``'s device.

    Raises:
        ValueError: unknown method (the valid ones are listed) or a bad input shape.

    Examples::

        >>> import torch, atkd_lite as ak
        >>> from atkd_lite.attributions import attribution_maps
        >>> net = ak.student_cnn("tiny").eval()
        >>> x = torch.rand(3, 1, 28, 28)
        >>> [tuple(attribution_maps(net, x, m).shape) for m in ("fma", "ig", "gradcam")]
        [(3, 28, 28), (3, 28, 28), (3, 28, 28)]
        >>> a, b = attribution_maps(net, x, "sals"), attribution_maps(net, x, "saliency")
        >>> torch.allclose(a, b, atol=1e-5)     # the package's SALS is Captum's Saliency
        True
    """
    if not isinstance(method, str) or method.lower() not in MAP_METHODS:
        raise ValueError(f"unknown map kind {method!r}; choose one of {', '.join(MAP_METHODS)}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module returning logits; got "
                        f"{type(model).__name__}")
    check_images(x)
    with eval_mode(model):
        return _maps(model, x, method.lower(), target, first, last, layer, n_steps,
                     internal_batch_size, seed).detach().float()


def _maps(model, x, method, target, first, last, layer, n_steps, internal_batch_size, seed):
    if method in ("fma", "mip"):
        with torch.no_grad():
            return ATCam(model, first=first, last=last, combine=method)(x)[1]
    if method == "sals":
        return saliency_map(model, x, target=target)
    if method == "random":
        gen = torch.Generator().manual_seed(seed)
        return torch.rand(x.shape[0], *x.shape[-2:], generator=gen).to(x.device)

    from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Saliency

    with torch.no_grad():
        t = class_targets(target, model(x))
    if method == "saliency":
        # a leaf that asks for gradients itself: Captum warns when it has to switch them on
        attr = Saliency(model).attribute(x.detach().requires_grad_(True), target=t, abs=True)
    elif method == "ig":
        attr = IntegratedGradients(model).attribute(
            x, baselines=torch.zeros_like(x), target=t, n_steps=n_steps,
            internal_batch_size=internal_batch_size).abs()
    else:  # gradcam
        module = model.get_submodule(layer or _last_capture_point(model))
        cam = LayerGradCam(model, module).attribute(x, target=t, relu_attributions=True)
        attr = LayerAttribution.interpolate(cam, tuple(x.shape[-2:]),
                                            interpolate_mode="bilinear")
    return normalize_maps(attr.detach().float().amax(dim=1))
