"""How big and how fast a model is: layers, parameters, bytes, multiply-adds, CPU latency.

- :func:`layer_summary` — one row per block: output shape and parameters;
- :func:`multiply_adds` — the multiply-accumulate operations of one forward pass
  (convolutions and linear layers, the layers that dominate a CNN's compute);
- :func:`footprint` — parameters, size, multiply-adds and measured CPU latency in one
  dict, for a table or :func:`atkd_lite.viz.footprint_bars`.

Parameter counts, sizes and multiply-adds are exact and machine independent; latency is a
measurement (median of repeated runs) and varies with the machine and its load.

Defined in the book's chapter "Teacher and student".

Examples::

    >>> import atkd_lite as ak
    >>> from atkd_lite.footprint import multiply_adds
    >>> multiply_adds(ak.student_cnn("small")) < multiply_adds(ak.teacher_cnn()) / 10
    True
"""

from __future__ import annotations

import torch
from torch import nn

from atkd_lite.models import count_parameters, cpu_latency, model_size_bytes

__all__ = ["footprint", "layer_summary", "multiply_adds"]


def _check(model, input_shape) -> tuple[int, ...]:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"input_shape must be a batch shape (B, C, H, W), got {input_shape!r}")
    return shape


def _run_with_hooks(model: nn.Module, input_shape, modules, hook) -> None:
    """One eval-mode forward on zeros with ``hook`` on ``modules``; hooks always removed."""
    device = next(model.parameters(), torch.zeros(())).device
    handles = [m.register_forward_hook(hook) for m in modules]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(input_shape, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)


def multiply_adds(model: nn.Module, input_shape=(1, 1, 28, 28)) -> int:
    """Multiply-accumulate operations of one forward pass of a batch shaped ``input_shape``.

    Counts ``Conv2d`` (output elements × in-channels/groups × kernel area) and ``Linear``
    (output elements × in-features); batch norm, activations and pooling are ignored
    (a few operations per activation, small next to the convolutions).

    Args:
        model (nn.Module): the network.
        input_shape: batch shape; ``(1, C, H, W)`` for the cost per image.

    Returns:
        int: multiply-adds (one multiply-add = two floating-point operations).
    """
    shape = _check(model, input_shape)
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += output.numel() * (module.in_channels // module.groups) * kh * kw
        else:
            total += output.numel() * module.in_features

    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    _run_with_hooks(model, shape, layers, hook)
    return total


def layer_summary(model: nn.Module, input_shape=(1, 1, 28, 28), depth: int = 2) -> list[dict]:
    """One row per module at ``depth`` (dots in its name + 1), in the order they run.

    For the book's CNNs, depth 2 gives the conv blocks (``features.s1c1``), the pools and
    the head's layers.

    Args:
        model (nn.Module): the network.
        input_shape: batch shape of the probe input.
        depth (int): module depth to list (1 = the model's direct children).

    Returns:
        list of dict: ``name``, ``type``, ``output_shape`` (without the batch dimension)
        and ``parameters`` (of that module, including its children).

    Examples::

        >>> import atkd_lite as ak
        >>> rows = layer_summary(ak.student_cnn())
        >>> rows[0]["name"], rows[0]["output_shape"]
        ('features.s1c1', (8, 28, 28))
    """
    shape = _check(model, input_shape)
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive int, got {depth!r}")
    named = [(n, m) for n, m in model.named_modules() if n and n.count(".") + 1 == depth]
    if not named:
        raise ValueError(f"the model has no modules at depth {depth}; try depth=1")
    names = {id(m): n for n, m in named}
    rows: list[dict] = []

    def hook(module, inputs, output):
        out = output if isinstance(output, torch.Tensor) else output[0]
        rows.append({"name": names[id(module)], "type": type(module).__name__,
                     "output_shape": tuple(out.shape[1:]),
                     "parameters": count_parameters(module)})

    _run_with_hooks(model, shape, [m for _, m in named], hook)
    return rows


def footprint(model: nn.Module, input_shape=(1, 1, 28, 28), repeats: int = 50,
              threads: int | None = 1) -> dict:
    """Parameters, size, multiply-adds and CPU latency of ``model`` for one input batch.

    Args:
        model (nn.Module): the network (not changed; latency is timed on a CPU copy).
        input_shape: batch shape, ``(1, C, H, W)`` for per-image figures.
        repeats (int): timed forward passes; the median is reported.
        threads (int, optional): torch threads while timing (1 by default: a small
            device has few cores, and one thread makes numbers comparable across
            machines); None = the current setting.

    Returns:
        dict: ``parameters`` (int), ``size_kb`` (serialised state dict, kilobytes of
        1,000 bytes), ``multiply_adds`` (int), ``latency_ms`` (median, milliseconds).
    """
    shape = _check(model, input_shape)
    return {
        "parameters": count_parameters(model),
        "size_kb": model_size_bytes(model) / 1000,
        "multiply_adds": multiply_adds(model, shape),
        "latency_ms": 1000 * cpu_latency(model, shape, repeats=repeats, threads=threads),
    }
