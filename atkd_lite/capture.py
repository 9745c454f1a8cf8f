"""Where a network is listened to: ATCam's capture points and the forward hooks on them.

Which layers: a model's capture points, in the order in which they run (the names
given, ``model.atkd_capture_points()``, or every :class:`torch.nn.Conv2d`,
:func:`find_capture_points`), of which the first few and the last few are kept
(:func:`select_layers`). How they are heard: forward hooks, registered for one forward
pass only and removed also when it raises (:func:`hooked_forward`). What is kept of
what they heard: each kept capture point's output, checked to be a 4-D feature map
(:func:`kept_outputs`), or its reduction to a raw per-layer map, made inside the hook
where the network leaves the output alone afterwards (:func:`modified_after_hook`,
:func:`reduce_kept`).

:class:`~atkd_lite.atcam.ATCam` is made of these and of the map mathematics of
:mod:`atkd_lite.atcam`.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence

import torch
from torch import nn

from atkd_lite.atcam_fast import Reduced
from atkd_lite.outputs import model_logits

__all__ = [
    "check_count",
    "check_features",
    "check_first_last",
    "check_layer_names",
    "find_capture_points",
    "hooked_forward",
    "kept_outputs",
    "layer_selection",
    "modified_after_hook",
    "ran_in_order",
    "reduce_kept",
    "select_layers",
]


# ----------------------------------------------------------------------- which layers
def check_count(name: str, value) -> int:
    """``value``, checked to be a non-negative int: how many capture points to keep.

    Args:
        name (str): the argument's name, for the message (``"first"``, ``"last"``).
        value: the argument.

    Returns:
        int: ``value``.

    Raises:
        ValueError: ``value`` is not a non-negative int (a bool is not one).
    """
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(
            f"{name} must be a non-negative int (how many capture points to keep); got {value!r}"
        )
    return value


def check_first_last(first, last) -> tuple[int, int]:
    """``first`` and ``last``, each checked by :func:`check_count`, and not both 0.

    Raises:
        ValueError: either is not a non-negative int, or both are 0 (no layer kept).
    """
    first, last = check_count("first", first), check_count("last", last)
    if first == 0 and last == 0:
        raise ValueError(
            "first and last are both 0, so no layer would be kept; use first>=1 or last>=1"
        )
    return first, last


def select_layers(names: Sequence[str], first: int = 2, last: int = 2) -> list[str]:
    """Keep the first ``first`` and the last ``last`` of an ordered list of names.

    A name in both ends is kept once; if ``first + last >= len(names)`` all names are kept.
    The order of ``names`` is preserved.

    Args:
        names (sequence of str): capture points in forward order.
        first (int): how many of the earliest to keep.
        last (int): how many of the latest to keep.

    Returns:
        list of str: the kept names, in their original order.

    Examples::

        >>> select_layers(["c1", "c2", "c3", "c4", "c5"], first=2, last=2)
        ['c1', 'c2', 'c4', 'c5']
        >>> select_layers(["c1", "c2", "c3"], first=2, last=2)
        ['c1', 'c2', 'c3']
    """
    first, last = check_first_last(first, last)
    n = len(names)
    keep = set(range(min(first, n))) | set(range(max(0, n - last), n))
    return [names[i] for i in sorted(keep)]


def layer_selection(spec, first: int = 2, last: int = 2, what: str = "layers") -> dict:
    """:class:`~atkd_lite.atcam.ATCam` keyword arguments for one network's capture points.

    Args:
        spec: None (``first``/``last`` of the network's automatic capture points, the
            default); a list of module names (exactly those, in that order); a dict
            ``{"first": f, "last": l}`` or a pair of ints ``(f, l)`` (this network's own
            counts of its automatic capture points); or ``"all"`` (every automatic one).
        first, last (int): the counts used when ``spec`` is None.
        what (str): the argument's name, for errors.

    Returns:
        dict: ``layers``, ``first``, ``last`` for ATCam.

    Raises:
        TypeError: anything else (says what is accepted).

    Examples::

        >>> layer_selection(["layer1", "layer4"])
        {'layers': ['layer1', 'layer4'], 'first': 2, 'last': 0}
        >>> layer_selection({"first": 1, "last": 3})
        {'layers': None, 'first': 1, 'last': 3}
    """
    if spec is None:
        return {"layers": None, "first": first, "last": last}
    if isinstance(spec, str):
        return ({"layers": "all", "first": first, "last": last} if spec == "all"
                else {"layers": [spec], "first": 1, "last": 0})
    if isinstance(spec, dict):
        unknown = sorted(set(spec) - {"first", "last"})
        if unknown:
            raise TypeError(f"{what} as a dict takes 'first' and 'last', not {unknown}")
        return {"layers": None, "first": spec.get("first", first),
                "last": spec.get("last", last)}
    if isinstance(spec, (list, tuple)) and spec:
        if all(isinstance(v, str) for v in spec):
            return {"layers": list(spec), "first": len(spec), "last": 0}
        if len(spec) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in spec):
            return {"layers": None, "first": spec[0], "last": spec[1]}
    raise TypeError(f"{what} must be None, a list of module names (e.g. ['layer1', "
                    "'layer4']), {'first': F, 'last': L}, a pair (F, L) or 'all'; got "
                    f"{spec!r}")


def check_layer_names(named: dict, names: list[str], source: str) -> None:
    """Check that ``names`` is not empty and names modules of the model.

    Args:
        named (dict): the model's ``dict(model.named_modules())``.
        names (list of str): the capture points asked for.
        source (str): where they come from, for the message (``"layers"``, ...).

    Raises:
        ValueError: ``names`` is empty, or names no module (the message lists the valid
            names; ``""``, the model itself, is not one).
    """
    if not names:
        raise ValueError(f"{source} is empty; name at least one module with 4-D outputs")
    unknown = [n for n in names if n not in named or n == ""]
    if unknown:
        valid = [n for n in named if n]
        raise ValueError(
            f"unknown layer name(s) {unknown} in {source}; valid names "
            f"(model.named_modules()) are: {valid}"
        )


def find_capture_points(model: nn.Module, layers, named: dict
                        ) -> tuple[bool, list[str] | None, list[str] | None]:
    """The capture points of ``model`` that :class:`~atkd_lite.atcam.ATCam`'s ``layers``
    argument asks for, before the first/last selection.

    Args:
        model (nn.Module): the network.
        layers (list of str, str, "all" or None): explicit names (a str is one name);
            None: ``model.atkd_capture_points()`` if the model has that method, else every
            :class:`torch.nn.Conv2d`; ``"all"``: the same, to be kept without selection.
        named (dict): ``dict(model.named_modules())``, to check names against.

    Returns:
        (bool, list or None, list or None): ``keep_all`` (``layers == "all"``); the
        candidates in order, or None while the Conv2d order is still unknown (it is the
        order in which they run, learnt by the first forward pass); and in that case every
        Conv2d's name (the modules to hook in that pass), else None.

    Raises:
        ValueError: an unknown or empty list of names, or no Conv2d to fall back on.
    """
    keep_all = isinstance(layers, str) and layers == "all"
    if keep_all:
        layers = None
    if layers is not None:
        if isinstance(layers, str):
            layers = [layers]
        check_layer_names(named, list(layers), source="layers")
        return keep_all, list(layers), None
    if callable(getattr(model, "atkd_capture_points", None)):
        names = list(model.atkd_capture_points())
        check_layer_names(named, names, source="model.atkd_capture_points()")
        return keep_all, names, None
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(
            f"{type(model).__name__} has no nn.Conv2d layer, so ATCam has nothing to "
            "capture; pass layers=[...] naming modules with 4-D outputs, or give the "
            "model an atkd_capture_points() method"
        )
    return keep_all, None, convs


# ------------------------------------------------------------------------------ hooks
def hooked_forward(model: nn.Module, x: torch.Tensor, names: Sequence[str],
                   reduce: Callable | None = None, late: set[str] | None = None):
    """One forward pass of ``model`` with forward hooks on the modules ``names``.

    The hooks exist for this pass only: they are removed in a ``finally``, so the model is
    left as it was also when its forward raises.

    Args:
        model (nn.Module): the network; ``model(x)`` returns logits (or a tuple or dict
            holding them, :func:`~atkd_lite.outputs.model_logits`).
        x (Tensor): its input.
        names (sequence of str): the modules to hook.
        reduce (callable, optional): ``reduce(output, name)``, applied inside the hook to
            each 4-D output of a module not in ``late``, which is then captured as a
            :class:`~atkd_lite.atcam_fast.Reduced` (the reduction, a weak reference to
            the output, its version counter). The full-size output is then read while it
            is still in cache and freed as the forward pass goes on, as in a plain forward
            (keeping every captured map alive to the end forces fresh allocations and
            costs ~10-30 % of a forward on the CPU).
        late (set of str, optional): modules whose output ``reduce`` must not see in the
            hook, because the forward modifies it in place afterwards
            (:func:`modified_after_hook`).

    Returns:
        (Tensor, dict, dict): the logits; name -> captured output (or ``Reduced``), in the
        order in which the modules first ran (a module that runs twice: its last output);
        name -> the output's version counter at hook time (tensors outside inference
        mode only).

    Raises:
        ValueError: the input is too small for the network's downsampling.
    """
    captured: dict[str, object] = {}  # insertion order = first-run order
    versions: dict[str, int] = {}  # version counter at hook time (probe calls)
    early = reduce is not None
    if late is None:
        late = frozenset()

    def make_hook(name: str):
        def hook(module, args, output):
            if isinstance(output, torch.Tensor) and not output.is_inference():
                versions[name] = output._version
            if early and name not in late and isinstance(output, torch.Tensor) \
                    and output.dim() == 4:
                output = Reduced(reduce(output, name), weakref.ref(output),
                                  versions.get(name))
            captured[name] = output  # last run wins if a module runs twice

        return hook

    handles = []
    try:
        for name in names:
            module = model.get_submodule(name)
            handles.append(module.register_forward_hook(make_hook(name)))
        try:
            logits = model_logits(model(x))  # tensor, (logits, ...) or dict
        except RuntimeError as err:
            if "too small" not in str(err) and "smaller than" not in str(err):
                raise
            raise ValueError(
                f"{type(model).__name__} cannot take images of "
                f"{tuple(x.shape[-2:])}: its downsampling leaves nothing at some layer "
                f"({str(err).splitlines()[0]}); use larger images (e.g. resize them) "
                "or a network made for this size") from err
    finally:
        for h in handles:
            h.remove()
    return logits, captured, versions


# ------------------------------------------------------------------- what was captured
def check_features(features) -> None:
    """Check that ``features`` is a 4-D feature map (B, C, H, W), the output of a capture
    point that attention maps can be made of.

    Raises:
        ValueError: not a tensor, or not 4-D (the message gives its shape or type).
    """
    if not isinstance(features, torch.Tensor) or features.dim() != 4:
        shape = (tuple(features.shape) if isinstance(features, torch.Tensor)
                 else type(features).__name__)
        raise ValueError(
            f"features must be a 4-D feature map (B, C, H, W); got {shape}. "
            "Capture a module whose output is a conv feature map."
        )


def ran_in_order(captured: dict) -> list[str]:
    """The hooked Conv2d layers that ran, in the order in which they first ran: what the
    first call in auto Conv2d mode selects the capture points from.

    Raises:
        ValueError: none of them ran.
    """
    ran = list(captured)
    if not ran:
        raise ValueError(
            "none of the model's Conv2d layers ran in its forward pass; "
            "pass layers=[...] naming modules that do run"
        )
    return ran


def kept_outputs(captured: dict, names: Sequence[str]) -> list:
    """The captured outputs of the kept capture points ``names``, in that order.

    Raises:
        ValueError: a capture point did not run, or its output is not a 4-D feature map
            (nor reduced in its hook).
    """
    missing = [n for n in names if n not in captured]
    if missing:
        raise ValueError(
            f"capture point(s) {missing} did not run in the forward pass; "
            "choose modules that the model's forward calls"
        )
    feats = [captured[n] for n in names]
    for name, a in zip(names, feats):
        if not isinstance(a, Reduced) and (not isinstance(a, torch.Tensor) or a.dim() != 4):
            got = tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__
            raise ValueError(
                f"capture point {name!r} returned {got}, not a 4-D feature map "
                "(B, C, H, W); choose a conv/activation module instead"
            )
    return feats


def modified_after_hook(names: Sequence[str], captured: dict, versions: dict) -> set[str]:
    """The capture points whose outputs the forward pass modified in place after their
    hook (their version counter moved), e.g. a ``Conv2d`` followed by
    ``ReLU(inplace=True)``: the captured tensor then holds the activation, so reducing it
    inside the hook would not give what reducing it after the forward gives.

    A probing call (every output kept, none reduced) learns this once per train/eval
    mode; :func:`hooked_forward` then reduces these late and the others early."""
    return {n for n in names if captured[n]._version != versions[n]}


def reduce_kept(names: Sequence[str], feats: list, versions: dict, reduce: Callable,
                late: set[str] | None) -> list:
    """Each kept capture point's output reduced: ``reduce(output, name, as_hooked)``,
    or its reduction made inside the hook.

    A reduction made in the hook (a :class:`~atkd_lite.atcam_fast.Reduced`) whose output
    is still alive and was modified in place since is made again from the final value,
    and its name is added to ``late``, so the results never differ from reducing
    every output after the forward pass. ``as_hooked`` tells ``reduce`` whether the
    tensor is still the module's output as its hook saw it (one modified afterwards may
    no longer be, e.g., its ReLU's output).

    Args:
        names (sequence of str): the kept capture points.
        feats (list): their outputs, from :func:`kept_outputs`.
        versions (dict): version counters at hook time, from :func:`hooked_forward`.
        reduce (callable): ``reduce(output, name, as_hooked)``.
        late (set of str or None): the record that :func:`hooked_forward` was given.

    Returns:
        list: one reduction per kept capture point, in order.
    """
    out = []
    for name, a in zip(names, feats):
        if isinstance(a, Reduced):
            final = a.ref()
            if final is None or a.version is None or final._version == a.version:
                out.append(a.value)
                continue
            late.add(name)  # modified in place after the hook: reduce the final value
            a = final
        # a tensor modified after its hook may no longer be its ReLU's output
        as_hooked = name in versions and a._version == versions[name]
        out.append(reduce(a, name, as_hooked))
    return out
