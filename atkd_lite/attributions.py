"""One call for every kind of map the book compares: ATCam, SALS, Captum, and baselines.

:func:`attribution_maps` returns maps of one kind for a batch, all in the same form —
``(B, H, W)``, one map per image, min-max normalised to [0, 1] per image — so that maps
from different methods can be scored with the same metrics
(:func:`~atkd_lite.metrics.rank_correlation`, :func:`~atkd_lite.metrics.deletion_curve`)
and drawn side by side:

==============  ==========================================================================
method          map
==============  ==========================================================================
``fma``         ATCam, mean over the first/last layers' maps (:class:`~atkd_lite.ATCam`)
``mip``         ATCam, max over the same layers
``sals``        the book's saliency, :func:`~atkd_lite.saliency_map`
``saliency``    Captum's ``Saliency`` (``abs=True``), max over input channels
``ig``          Captum's ``IntegratedGradients`` (black baseline), ``|·|``, max over channels
``gradcam``     Captum's ``LayerGradCam`` on the last capture point (ReLU), upsampled
                bilinearly with ``LayerAttribution.interpolate``
``random``      uniform noise (a baseline that knows nothing; seeded)
``intensity``   the input itself: ``|x|`` (max over channels), lightly blurred (a 3×3
                binomial filter, which keeps a single peak a single peak)
``edges``       the input's Sobel gradient magnitude (of the channel mean)
``centre``      a centre prior: a Gaussian bump in the middle of the image (σ = a quarter
                of the side), the same for every image
==============  ==========================================================================

The last four are *baselines*: they know nothing about the model (``random``,
``centre``) or only the input (``intensity``, ``edges``). A map that explains a model
must beat them; on digits, "the map points at the digit" may only mean "the map points
at the ink", which ``intensity`` does too. :func:`model_randomisation` is the other
sanity check (Adebayo et al. 2018): randomise the model's layers from the top down and
see whether a map changes at all.

Captum's maps are the same quantities Captum's own visualisation shows with
``sign="absolute_value"``. ``sals`` and ``saliency`` are the same map computed twice (the
package's and Captum's), which is a check that the two agree.

Defined in the book's chapter "Attention maps"; the chapter "Do the maps look at the
right place?" scores them against boxes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from atkd_lite.atcam import normalize_maps
from atkd_lite.checks import check_images
from atkd_lite.device import eval_mode
from atkd_lite.outputs import LogitsOnly, model_logits
from atkd_lite.saliency import class_targets
from atkd_lite.signals import MAPS

__all__ = ["BASELINES", "CAPTUM_METHODS", "MAP_METHODS", "attribution_maps", "model_randomisation"]

#: the baselines, maps that do not depend on the model
BASELINES = ("random", "intensity", "edges", "centre")
#: Captum's maps, by the names :func:`attribution_maps` knows them
CAPTUM_METHODS = ("saliency", "ig", "gradcam")
#: the map kinds :func:`attribution_maps` knows: the map signals (ATCam's FMA and MIP,
#: SALS: :data:`atkd_lite.signals.MAPS`, where your own registered map joins them),
#: Captum's and the baselines
MAP_METHODS = (*MAPS, *CAPTUM_METHODS, *BASELINES)


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
    known = (*MAPS, *CAPTUM_METHODS, *BASELINES)  # with any map registered since import
    if not isinstance(method, str) or method.lower() not in known:
        raise ValueError(f"unknown map kind {method!r}; choose one of {', '.join(known)}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module returning logits; got "
                        f"{type(model).__name__}")
    check_images(x)
    with eval_mode(model):
        return _maps(model, x, method.lower(), target, first, last, layer, n_steps,
                     internal_batch_size, seed).detach().float()


def _maps(model, x, method, target, first, last, layer, n_steps, internal_batch_size, seed):
    if method in MAPS:  # a map signal computes itself
        signal = MAPS[method]
        if signal.uses_features:  # from activations: no graph needed
            with torch.no_grad():
                return signal.compute(model, x, target, first=first, last=last)
        return signal.compute(model, x, target)
    if method in BASELINES:
        return _baseline(x, method, seed)

    from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Saliency

    with torch.no_grad():
        t = class_targets(target, model_logits(model(x)))
    net = LogitsOnly(model)  # Captum needs a tensor output; hooks go on model's modules
    if method == "saliency":
        # a leaf that asks for gradients itself: Captum warns when it has to switch them on
        attr = Saliency(net).attribute(x.detach().requires_grad_(True), target=t, abs=True)
    elif method == "ig":
        attr = IntegratedGradients(net).attribute(
            x, baselines=torch.zeros_like(x), target=t, n_steps=n_steps,
            internal_batch_size=internal_batch_size).abs()
    else:  # gradcam
        module = model.get_submodule(layer or _last_capture_point(model))
        cam = LayerGradCam(net, module).attribute(x, target=t, relu_attributions=True)
        attr = LayerAttribution.interpolate(cam, tuple(x.shape[-2:]),
                                            interpolate_mode="bilinear")
    return normalize_maps(attr.detach().float().amax(dim=1))


def _baseline(x: torch.Tensor, kind: str, seed: int) -> torch.Tensor:
    """The model-free maps: random, intensity, edges, centre (normalised per image)."""
    b, _, h, w = x.shape
    if kind == "random":
        gen = torch.Generator().manual_seed(seed)
        return normalize_maps(torch.rand(b, h, w, generator=gen)).to(x.device)
    if kind == "centre":
        ys = torch.arange(h, device=x.device, dtype=torch.float32) - (h - 1) / 2
        xs = torch.arange(w, device=x.device, dtype=torch.float32) - (w - 1) / 2
        sigma = min(h, w) / 4
        bump = torch.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * sigma ** 2))
        return normalize_maps(bump.expand(b, h, w).contiguous())
    img = x.detach().float()
    if kind == "intensity":
        k = torch.tensor([1.0, 2.0, 1.0], device=x.device)
        kernel = (k[:, None] * k[None, :] / 16)[None, None]
        m = F.conv2d(img.abs().amax(1, keepdim=True), kernel, padding=1)
        return normalize_maps(m[:, 0])
    gray = img.mean(1, keepdim=True)  # edges: Sobel magnitude of the channel mean
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=x.device)
    kernels = torch.stack([kx, kx.t()])[:, None]  # (2, 1, 3, 3): d/dx and d/dy
    g = F.conv2d(F.pad(gray, (1, 1, 1, 1), mode="replicate"), kernels)
    return normalize_maps(g.pow(2).sum(1).sqrt())


def _parameterised_layers(model: nn.Module) -> tuple[list[str], list]:
    """Names of the modules with their own parameters, recorded in the order they run by
    the returned hooks (remove them after one forward pass)."""
    order: list[str] = []
    named = [(n, m) for n, m in model.named_modules()
             if n and any(True for _ in m.parameters(recurse=False))]
    handles = [m.register_forward_hook(lambda mod, a, o, n=n: order.append(n))
               for n, m in named]
    return order, handles


@torch.no_grad()
def _reinitialise(module: nn.Module, gen: torch.Generator) -> None:
    """New random weights for one layer, drawn like its initialisation but seeded here."""
    for name, p in module.named_parameters(recurse=False):
        if p.dim() > 1:
            fan_in = p[0].numel()
            p.copy_(torch.randn(p.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
        elif name == "weight":  # a norm layer's scale
            p.copy_(torch.rand(p.shape, generator=gen) * 2)
        else:
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)


def model_randomisation(model: nn.Module, x: torch.Tensor, kinds=("fma", "mip", "sals"),
                        target=None, steps: int | None = None, seed: int = 0,
                        **map_kwargs) -> list[dict]:
    """Cascading model randomisation (Adebayo et al. 2018): does a map depend on the model?

    The parameterised layers are re-drawn at random one by one from the *top* (the
    classifier) down, cumulatively, on a copy of the model; after each step every map
    kind is computed again and compared with the trained model's map by the Spearman
    rank correlation (:func:`~atkd_lite.metrics.rank_correlation`, mean over images). A
    map that still correlates highly after the model's weights are gone is explaining
    the input (or the architecture), not what the model learned.

    Args:
        model (nn.Module): the trained model (left unchanged).
        x (Tensor): images (B, C, H, W).
        kinds (sequence of str): map kinds of :func:`attribution_maps`.
        target: class per image for the class-specific maps (None = the *trained*
            model's predicted class, kept fixed through the cascade).
        steps (int, optional): randomise at most this many layers (default: all).
        seed (int): seeds the new weights.
        **map_kwargs: passed to :func:`attribution_maps` (e.g. ``n_steps``).

    Returns:
        list of dict: one row per step: ``step`` (layers randomised, 0 = the trained
        model), ``layer`` (the last one randomised), and per kind the mean rank
        correlation with the trained model's map.

    Examples::

        >>> import torch, atkd_lite as ak
        >>> from atkd_lite.attributions import model_randomisation
        >>> rows = model_randomisation(ak.student_cnn("tiny"), torch.rand(2, 1, 28, 28),
        ...                            kinds=("fma", "sals"), steps=2)
        >>> [r["step"] for r in rows], round(rows[0]["fma"], 3)
        ([0, 1, 2], 1.0)
    """
    import copy

    from atkd_lite.metrics import rank_correlation

    check_images(x)
    net = copy.deepcopy(model).eval()
    order, handles = _parameterised_layers(net)
    try:
        with torch.no_grad():
            logits = model_logits(net(x))
    finally:
        for h in handles:
            h.remove()
    layers = list(dict.fromkeys(order))  # forward order, each once
    if target is None:
        target = logits.argmax(1)
    reference = {k: attribution_maps(net, x, k, target=target, seed=seed, **map_kwargs)
                 for k in kinds}
    gen = torch.Generator().manual_seed(seed)
    rows = [{"step": 0, "layer": None, **{k: 1.0 for k in kinds}}]
    top_down = layers[::-1][:steps]
    for i, name in enumerate(top_down, start=1):
        _reinitialise(net.get_submodule(name), gen)
        row = {"step": i, "layer": name}
        for k in kinds:
            maps = attribution_maps(net, x, k, target=target, seed=seed, **map_kwargs)
            row[k] = rank_correlation(maps, reference[k]).nanmean().item()
        rows.append(row)
    return rows
