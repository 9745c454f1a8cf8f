"""SALS: saliency maps, the gradient of the target logit with respect to the input.

For each image b with target class t_b (the label when given, else the predicted class)::

    s_b = norm( max_c | d z_{b, t_b} / d x_b | )        # (H, W), in [0, 1]

where z are the logits, the max runs over the input channels and ``norm`` is the
per-sample min-max normalisation of :func:`atkd_lite.atcam.normalize_maps` (a zero
gradient gives a zero map). This is Simonyan et al.'s saliency and agrees with Captum's
``Saliency(model).attribute(x, target=t, abs=True)`` maxed over channels and normalised.

Because samples in a batch do not interact in eval mode, one backward pass of the *sum*
of the selected logits gives every sample's gradient at once. The gradient is taken with
:func:`torch.autograd.grad` with respect to the input only, so no ``.grad`` is ever
accumulated on the model's parameters. With ``create_graph=True`` the map itself is
differentiable with respect to the parameters (double backprop), which training a
student towards a teacher's saliency needs.
"""

from __future__ import annotations

import torch
from torch import nn

from atkd_lite.atcam import normalize_maps
from atkd_lite.checks import check_model_input
from atkd_lite.device import at_least_float32
from atkd_lite.outputs import model_logits, unwrap_model

__all__ = ["class_targets", "saliency_map"]


def class_targets(target, logits: torch.Tensor) -> torch.Tensor:
    """Target class per sample as a (B,) long tensor on the logits' device.

    ``target`` is None (each sample's predicted class), an int (one class for all), or
    one class index per sample (list or tensor); indices are range-checked on the CPU.
    """
    batch, classes = logits.shape
    if target is None:
        return logits.detach().argmax(dim=1)
    if isinstance(target, bool):
        raise TypeError("target must be None, an int, a list of ints or a tensor of class indices")
    if isinstance(target, int):
        t = torch.full((batch,), target, dtype=torch.long, device=logits.device)
    else:
        try:
            t = torch.as_tensor(target, device=logits.device)
        except (TypeError, ValueError) as err:
            raise TypeError(
                "target must be None, an int, a list of ints or a tensor of class indices; "
                f"got {type(target).__name__}"
            ) from err
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise TypeError(f"target must hold integer class indices; got dtype {t.dtype}")
        t = t.long().reshape(-1)
        if t.numel() == 1:
            t = t.expand(batch)
        if t.numel() != batch:
            raise ValueError(
                f"target has {t.numel()} entries but the batch has {batch}; "
                "give one class index per sample (or a single int for all)"
            )
    # the range check needs the values on the host: do it for CPU tensors only, so a CUDA
    # training step has no sync here (an out-of-range index still fails in the gather)
    if t.device.type == "cpu" and bool(((t < 0) | (t >= classes)).any()):
        raise ValueError(f"target class indices must be in [0, {classes - 1}]; got {t.tolist()}")
    return t


def saliency_map(
    model: nn.Module,
    x: torch.Tensor,
    target=None,
    create_graph: bool = False,
    return_logits: bool = False,
):
    """SALS saliency maps: ``norm(max_c |d z_{b,t_b} / d x_b|)`` per sample, (B, H, W).

    The model's train/eval mode is left as it is (call ``model.eval()`` yourself for the
    usual saliency; in train mode BatchNorm couples the samples of a batch and updates
    its running statistics). Works inside :func:`torch.no_grad` (gradients are switched
    on locally), so a frozen teacher can be called the same way as a student.

    Args:
        model (nn.Module): maps (B, C, H, W) to logits (B, K); a DataParallel,
            DistributedDataParallel or compiled model is unwrapped (its network is used).
        x (Tensor): input batch (B, C, H, W). It is not modified and gets no ``.grad``.
        target (int, list of int or Tensor, optional): class per sample (or one class for
            all). None uses each sample's predicted class (argmax of the logits).
        create_graph (bool): keep the graph of the gradient so the map is differentiable
            w.r.t. the model's parameters (double backprop, for a student). False gives a
            detached map.
        return_logits (bool): also return the logits of the same forward pass. They carry
            the graph to the parameters when ``create_graph=True`` (so one forward serves
            both the cross-entropy and the attention loss) and are detached otherwise.

    Returns:
        Tensor (B, H, W) with values in [0, 1]; or ``(logits, maps)`` when
        ``return_logits=True``.

    Raises:
        TypeError: not a module; ``x`` not a tensor, not floating point, or of another
            dtype than the model's weights (outside autocast).
        ValueError: ``x`` not 4-D, holding NaN or infinity, or of a size the model
            cannot take; a bad ``target``.

    Examples::

        >>> import torch
        >>> from torch import nn
        >>> from atkd_lite import saliency_map
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
        ...                     nn.Flatten(), nn.Linear(4 * 8 * 8, 3)).eval()
        >>> x = torch.randn(2, 1, 8, 8)
        >>> maps = saliency_map(net, x, target=[0, 2])
        >>> maps.shape, bool(maps.min() >= 0), bool(maps.max() <= 1)
        (torch.Size([2, 8, 8]), True, True)
        >>> logits, maps = saliency_map(net, x, create_graph=True, return_logits=True)
        >>> maps.sum().backward()   # gradients reach the parameters (double backprop)
        >>> net[0].weight.grad is not None
        True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model must be a torch.nn.Module returning logits; got {type(model).__name__}"
        )
    # DataParallel/DDP/compiled: the network itself (compiled graphs have no double
    # backward, and a wrapper adds nothing to a gradient w.r.t. the input)
    model = unwrap_model(model)
    check_model_input(x, model)  # floating point of the model's dtype, no NaN/infinity
    # A fresh leaf: the gradient is w.r.t. this copy, so the caller's x keeps no .grad.
    x_in = x.detach().requires_grad_(True)
    with torch.enable_grad():
        try:
            logits = model_logits(model(x_in))  # tensor, (logits, ...) or dict
        except RuntimeError as err:  # e.g. images too small for the network's pooling
            first = str(err).splitlines()[0] if str(err) else ""
            if isinstance(err, torch.OutOfMemoryError) or not any(
                    w in first.lower() for w in ("size", "shape")):
                raise
            raise ValueError(f"the model cannot take images shaped {tuple(x.shape[1:])}: "
                             f"{first}") from err
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
            got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ValueError(f"model must return logits shaped (B, K); got {got}")
        t = class_targets(target, logits)
        selected = logits.gather(1, t.unsqueeze(1)).sum()
        if selected.requires_grad:
            (grad,) = torch.autograd.grad(
                selected, x_in, create_graph=create_graph, allow_unused=True
            )
        else:  # the model detached its output from the input
            grad = None
    if grad is None:  # the logits do not depend on the input at all
        grad = torch.zeros_like(x_in)
    maps = normalize_maps(at_least_float32(grad).abs().amax(dim=1))
    if not create_graph:
        maps, logits = maps.detach(), logits.detach()
    return (logits, maps) if return_logits else maps
