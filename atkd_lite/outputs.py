"""What a model returns, read one way everywhere.

:func:`model_logits` is the output adapter: the logits inside what a model returns (a
tensor, a ``(logits, features)`` tuple, a dict with ``"logits"`` or ``"out"``), used
wherever the package runs a model; :class:`LogitsOnly` wraps a model for code that needs
a tensor (Captum); :func:`unwrap_model` finds the network inside DataParallel/DDP/compile
wrappers.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "LogitsOnly",
    "model_logits",
    "unwrap_model",
]


def unwrap_model(model: nn.Module) -> nn.Module:
    """The network inside ``nn.DataParallel``, ``DistributedDataParallel`` and
    :func:`torch.compile` wrappers (``.module`` / ``._orig_mod``, nested in any order).

    Attention maps hook the network's own modules and run it eagerly: a wrapper renames
    every module (``module.conv1``), hides ``atkd_capture_points()``, runs replicas whose
    hooks each see a part of the batch (DataParallel) or traces hooks away (compile).

    Examples::

        >>> import torch
        >>> net = torch.nn.Conv2d(1, 2, 3)
        >>> unwrap_model(torch.nn.DataParallel(net)) is net
        True
    """
    for _ in range(16):  # wrappers nest a few levels at most
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            break
    return model


# ---------------------------------------------------------------------------------------
# what a model returns

#: the dict keys under which :func:`model_logits` looks for the logits, in this order
LOGITS_KEYS = ("logits", "out")


def model_logits(output, who: str = "the model") -> torch.Tensor:
    """The logits inside a model's output: the output adapter.

    Knowledge-distillation codebases' networks rarely return just a tensor: many return
    ``(logits, features)``, torchvision's segmentation models a dict with ``"out"``,
    Hugging Face models an output object that is a dict with ``"logits"``. Everything in
    the package that runs a model (ATCam, SALS, the distillers, evaluation) takes the
    logits through this one function:

    - a tensor is the logits themselves;
    - a tuple or list: its first element (which must be a tensor);
    - a mapping (dict, Hugging Face ``ModelOutput``): the entry ``"logits"``, else
      ``"out"`` (in that order, ``runtime.LOGITS_KEYS``).

    Args:
        output: what ``model(x)`` returned.
        who (str): how to name the model in the error (e.g. ``"the teacher"``).

    Returns:
        Tensor: the logits (not checked for shape here; callers that need (B, K) say so).

    Raises:
        TypeError: anything else, naming the type found and what to do.

    Examples::

        >>> import torch
        >>> z = torch.zeros(2, 10)
        >>> model_logits(z) is z, model_logits((z, [torch.ones(2, 4, 7, 7)])) is z
        (True, True)
        >>> model_logits({"aux": None, "logits": z}) is z
        True
        >>> model_logits("cat")
        Traceback (most recent call last):
        ...
        TypeError: the model returned str; the package takes the logits from a tensor, the first element of a tuple or list, or the 'logits' or 'out' entry of a dict: make forward() return one of these (e.g. wrap the model in a module whose forward returns the logits tensor)
    """
    found = output
    if isinstance(output, (tuple, list)) and output:
        found = output[0]
    elif hasattr(output, "keys") and hasattr(output, "__getitem__"):  # dict, ModelOutput
        keys = list(output.keys())
        key = next((k for k in LOGITS_KEYS if k in keys), None)
        if key is None:
            raise TypeError(
                f"{who} returned a {type(output).__name__} with the keys {keys}, none of "
                f"them {' or '.join(repr(k) for k in LOGITS_KEYS)}; return the logits "
                "under 'logits' (or wrap the model in a module whose forward returns the "
                "logits tensor)")
        found = output[key]
    if isinstance(found, torch.Tensor):
        return found
    what = type(output).__name__
    if found is not output:
        what = f"{what} whose logits entry is a {type(found).__name__}"
    elif isinstance(output, (tuple, list)):
        what = f"an empty {what}"
    raise TypeError(
        f"{who} returned {what}; the package takes the logits from a tensor, the first "
        "element of a tuple or list, or the 'logits' or 'out' entry of a dict: make "
        "forward() return one of these (e.g. wrap the model in a module whose forward "
        "returns the logits tensor)")


class LogitsOnly(nn.Module):
    """A model whose forward returns only the logits (:func:`model_logits` of its output).

    For code outside the package that needs a plain tensor, e.g. Captum's attribution
    methods, and for a model whose logits are not where :func:`model_logits` looks:
    ``select`` names them (an index into a returned tuple or list, or a key of a returned
    dict). The wrapped network is ``.model``; its modules keep their names under it
    (``model.layer1``).

    Examples::

        >>> import torch
        >>> class Pair(torch.nn.Module):
        ...     def forward(self, x):
        ...         return x.flatten(1)[:, :3], x
        >>> LogitsOnly(Pair())(torch.zeros(2, 1, 4, 4)).shape
        torch.Size([2, 3])
        >>> class FeaturesFirst(torch.nn.Module):
        ...     def forward(self, x):
        ...         return x, x.flatten(1)[:, :5]
        >>> LogitsOnly(FeaturesFirst(), select=1)(torch.zeros(2, 1, 4, 4)).shape
        torch.Size([2, 5])
    """

    def __init__(self, model: nn.Module, select: int | str | None = None):
        super().__init__()
        if select is not None and (isinstance(select, bool)
                                   or not isinstance(select, (int, str))):
            raise TypeError(f"select must be None, an index or a key; got {select!r}")
        self.model = model
        self.select = select

    def forward(self, *args, **kwargs) -> torch.Tensor:
        out = self.model(*args, **kwargs)
        if self.select is None:
            return model_logits(out)
        try:
            out = out[self.select]
        except (IndexError, KeyError, TypeError) as err:
            raise TypeError(f"LogitsOnly(select={self.select!r}) cannot take that from the "
                            f"model's {type(out).__name__} output ({err})") from None
        return model_logits(out, "the selected output")
