"""ATCam, the Attention Capture Module: attention maps from a CNN's own feature maps.

ATCam listens to a network's *capture points* (modules whose outputs are 4-D feature
maps) during one ordinary forward pass, keeps the first few and the last few of them, and
turns each kept feature map into a per-layer attention map::

    m_l = norm(resize(mean_c |A_l|^p, S))          # (B, H, W), in [0, 1]

The per-layer maps are then combined into one map per image. The two ATCam methods
differ in exactly one place, the combine step (:data:`~atkd_lite.atcam_fast.COMBINE`):

- FMA (feature map accumulation): ``norm(mean_l m_l)``;
- MIP (maximum intensity projection): ``norm(max_l m_l)``.

``norm`` is a per-sample min-max normalisation to [0, 1] that maps a constant map to
zeros (never NaN), see :func:`normalize_maps`. It also treats rounding-level differences
(within 64 ULPs of the map's magnitude) as constant: the method's threshold, an absolute
1e-12, is too tight for float32 maps, since resizing a constant map leaves 1-2 ULPs of
noise. All map arithmetic runs in float32, also under autocast (float64 stays float64),
so maps of a half-precision teacher and a float32 student are comparable.

The small functions :func:`select_layers`, :func:`normalize_maps`, :func:`resize_maps`,
:func:`layer_map`, :func:`combine_maps` and :func:`attention_from_features` are the
reusable pieces; the distillation engine and the book call them directly. Which layers
are kept, and the forward hooks that capture them, are in :mod:`atkd_lite.capture`
(:func:`select_layers` is defined there); :class:`ATCam` puts the steps together.

Cost. The method's claim is that the maps come almost for free, so they are computed
with less memory traffic than the formulas above suggest: :mod:`atkd_lite.atcam_fast`
holds those fast paths (each layer reduced inside the forward pass, ``|A|`` formed in
cache-sized chunks, a hand-written backward for ``norm``, compiled code on request).
They change no number: the maps and gradients equal the plain formulas bit for bit
(``tests/test_atcam_fast.py``), compiled ones to rounding. The eager fast path is on by
default, where the design (``DESIGN.md``) asks for an opt-in backend: being bit for bit the
reference, it changes nothing but the cost, which is the method's claim; the compiled
paths, which change numbers to rounding, are opt-in. The reference reads top to bottom in
this module and :mod:`atkd_lite.capture`.

Compiling. ``ATCam(compile=...)`` compiles the map computation after the capture
(resize, normalisations, combination: some 40 small operations) with ``torch.compile``,
True or a mode such as ``"reduce-overhead"`` (CUDA graphs on a GPU); on the CPU also
each signed captured map's ``mean_c |A|`` (one fused pass instead of forming ``|A|``
first). On the CPU the compiled tail and attention loss take less time than the eager
ones; on a GPU it is the way to fewer launches (``benchmarks/bench_compile.py`` and
``benchmarks/bench_capture.py`` measure both; figures in ``benchmarks/RESULTS.md``). Off
by default: the compiled maps equal the eager ones to rounding (~1e-6), not bit for bit;
the first call of each input shape and grad mode compiles (seconds to a minute, with a
C++ compiler on the CPU), which a book student's faster steps pay back only after
thousands of steps, more than a student of the book trains on the CPU profile. Compiled
maps support one backward pass (a student's training), not a double backward through
them.

``ATCam(compile_model=True)`` compiles the network's forward pass together with the
capture and the maps, into one graph, in ``compile``'s mode (``"default"`` when
``compile`` is False). The eager capture must read every captured feature map once more
after the network wrote it (a floor that ``benchmarks/bench_capture.py`` measures);
compiled with the network, each ``mean_c |A|`` is read inside the network's own fused
kernels (the batch norm and ReLU that follow a conv read the same tensor), below that
floor. Compare with the network compiled alone (``torch.compile(model)``, what a user who
compiles gets): ``benchmarks/bench_atcam.py --compile-model``, figures in
``benchmarks/RESULTS.md``. The first call of each train/eval mode and input size runs
eagerly (it fixes and checks the capture points and which of them the network modifies
in place afterwards: that call decides it for the compiled ones), the next one compiles
(tens of seconds on two cores); the logits and maps equal the eager ones to rounding (in
training, a dropout layer draws other masks when compiled). Measured with torch 2.14.
Off by default, for the reasons given for ``compile``.

Defined in the book's chapter "Attention maps", which derives every step.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence

import torch
from torch import nn

from atkd_lite.atcam_fast import (
    COMBINE,
    EPS,
    WholeGraph,
    bilinear,
    channel_mean,
    check_size,
    compiled_tail,
    float32_if_autocast,
    maps_from_raw,
    min_max_normalize,
    relu_output,
    resize_weights,
    traceable_maps_from_raw,
)
from atkd_lite.capture import (
    check_count,
    check_features,
    check_first_last,
    find_capture_points,
    hooked_forward,
    kept_outputs,
    modified_after_hook,
    ran_in_order,
    reduce_kept,
    select_layers,
)
from atkd_lite.checks import check_model_input
from atkd_lite.device import at_least_float32, check_compile_mode
from atkd_lite.outputs import unwrap_model

__all__ = [
    "ATCam",
    "COMBINE",
    "attention_from_features",
    "check_map_options",
    "combine_maps",
    "layer_map",
    "normalize_maps",
    "resize_maps",
    "resize_weights",
    "select_layers",
    "traceable_maps_from_raw",
]


# old private names of this module, now public in atkd_lite.capture
_check_count = check_count
_check_features = check_features


def normalize_maps(maps: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Min-max normalise each sample of a batch of maps to [0, 1].

    ``norm(m) = (m - min m) / (max m - min m)`` per sample (over every dimension but the
    first), and ``norm(m) = 0`` where the map is constant: a constant map carries no
    "where", so it becomes all zeros rather than NaN. Constant means
    ``max - min <= max(eps, ULPS * finfo.eps * max(|min|, |max|))``: the method's absolute
    1e-12, widened by 64 units of float precision relative to the map's magnitude, because
    rounding (e.g. bilinear resizing of a constant map) leaves differences of 1-2 ULPs
    that are noise, not attention. Differentiable, and its gradient is finite (zero) for
    constant maps.

    Args:
        maps (Tensor): shape (B, ...), e.g. (B, H, W), floating point.
        eps (float): absolute range at or below which a map counts as constant.

    Returns:
        Tensor: same shape as ``maps``, values in [0, 1].

    Examples::

        >>> import torch
        >>> normalize_maps(torch.tensor([[[1.0, 3.0]], [[5.0, 5.0]]]))
        tensor([[[0., 1.]],
        <BLANKLINE>
                [[0., 0.]]])
    """
    # (m - min) / (max - min) in plain operations; with a graph, a hand-written backward
    # that gives autograd's gradient with fewer full-size passes (atcam_fast)
    return min_max_normalize(maps, eps)


def layer_map(
    features: torch.Tensor,
    p: float = 1,
    size: Sequence[int] | None = None,
    normalize: bool = True,
) -> torch.Tensor:
    """One layer's attention map: ``norm(resize(mean_c |A|^p, size))``.

    Args:
        features (Tensor): a feature map A shaped (B, C, H_l, W_l), any float dtype;
            half precision is computed in float32 (float64 stays float64).
        p (float): the exponent on ``|A|`` (1 = mean absolute activation).
        size (two ints, optional): output (H, W); bilinear, ``align_corners=False``.
            None keeps (H_l, W_l).
        normalize (bool): apply :func:`normalize_maps` after resizing (resize first,
            then normalise, as the method fixes).

    Returns:
        Tensor: float32 (float64 for float64 features), shape (B, H, W) (values in
        [0, 1] when ``normalize``).

    Examples::

        >>> import torch
        >>> A = torch.zeros(1, 4, 2, 2); A[0, :, 0, 0] = 1.0
        >>> layer_map(A, size=(4, 4)).shape
        torch.Size([1, 4, 4])
        >>> layer_map(A)
        tensor([[[1., 0.],
                 [0., 0.]]])
    """
    check_features(features)
    size = check_size(size)
    with float32_if_autocast(features.device):
        m = channel_mean(features, p)
        if size is not None and tuple(m.shape[-2:]) != size:
            m = resize_maps(m, size)
        return normalize_maps(m) if normalize else m


def resize_maps(maps: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize of (B, H, W) maps, equal to ``F.interpolate(..., "bilinear",
    align_corners=False)``.

    Bilinear interpolation is separable, so it is two small matrix products
    ``R_h @ m @ R_w^T``: far faster on a GPU than ``F.interpolate`` for one-channel maps
    (its kernel parallelises over output pixels only), and differentiable.

    Args:
        maps (Tensor): (B, H, W), or any leading dimensions (..., H, W) (e.g. a stack of
            layers (L, B, H, W), resized in one call).
        size (two ints): output (H', W').

    Returns:
        Tensor: (B, H', W') (or (..., H', W')).

    Examples::

        >>> import torch, torch.nn.functional as F
        >>> m = torch.rand(2, 7, 5)
        >>> ref = F.interpolate(m[:, None], size=(28, 20), mode="bilinear")[:, 0]
        >>> torch.allclose(resize_maps(m, (28, 20)), ref, atol=1e-6)
        True
    """
    size = check_size(size)
    if size is None:
        raise ValueError("resize_maps needs size=(H, W)")
    return bilinear(maps, size)


def combine_maps(maps: Sequence[torch.Tensor] | torch.Tensor, mode: str = "fma") -> torch.Tensor:
    """Combine normalised per-layer maps into one map per image (FMA or MIP).

    FMA takes the elementwise mean over layers, MIP the elementwise max; both are
    normalised again with :func:`normalize_maps`. This is the only step where the two
    methods differ (see :data:`~atkd_lite.atcam_fast.COMBINE`).

    Args:
        maps (sequence of Tensor, or Tensor): per-layer maps, each (B, H, W), all the same
            size; or already stacked, shaped (L, B, H, W).
        mode (str): ``"fma"`` or ``"mip"``.

    Returns:
        Tensor: shape (B, H, W), values in [0, 1].

    Examples::

        >>> import torch
        >>> a = torch.tensor([[[0.0, 1.0, 0.5]]]); b = torch.tensor([[[0.0, 0.0, 1.0]]])
        >>> combine_maps([a, b], "fma")
        tensor([[[0.0000, 0.6667, 1.0000]]])
        >>> combine_maps([a, b], "mip")
        tensor([[[0., 1., 1.]]])
    """
    if mode not in COMBINE:
        raise ValueError(f"unknown combine mode {mode!r}; use one of {sorted(COMBINE)}")
    if isinstance(maps, torch.Tensor):
        stack = maps  # already (L, B, H, W)
    else:
        maps = list(maps)
        if not maps:
            raise ValueError("combine_maps needs at least one per-layer map")
        shapes = {tuple(m.shape) for m in maps}
        if len(shapes) != 1:
            raise ValueError(
                f"per-layer maps must share one shape (resize them with layer_map(..., size=)); "
                f"got {sorted(shapes)}"
            )
        stack = torch.stack(maps)
    with float32_if_autocast(stack.device):
        return normalize_maps(COMBINE[mode](at_least_float32(stack)))


def attention_from_features(
    features: Sequence[torch.Tensor],
    size: Sequence[int],
    p: float = 1,
    combine: str = "fma",
    return_layers: bool = False,
):
    """The ATCam map from already captured feature maps (no forward pass).

    Equal to ``combine_maps([layer_map(A, p, size) for A in features], combine)``, but the
    per-layer maps are normalised together in one batched call (fewer, larger kernels:
    this is what keeps ATCam's overhead small on a GPU). Useful when the features are
    needed for something else too (e.g. the AT baseline), or were cached.

    Args:
        features (sequence of Tensor): 4-D feature maps (B, C_l, H_l, W_l).
        size (two ints): output (H, W), usually the input image's.
        p (float): exponent on ``|A|``.
        combine (str): ``"fma"`` or ``"mip"``.
        return_layers (bool): also return the normalised per-layer maps, stacked.

    Returns:
        Tensor: shape (B, H, W), values in [0, 1]; with ``return_layers=True`` a pair
        ``(maps, per_layer)`` with ``per_layer`` shaped (L, B, H, W).

    Examples::

        >>> import torch
        >>> feats = [torch.rand(2, 8, 14, 14), torch.rand(2, 16, 7, 7)]
        >>> attention_from_features(feats, size=(28, 28), combine="mip").shape
        torch.Size([2, 28, 28])
    """
    size = check_size(size)
    if size is None:
        raise ValueError("attention_from_features needs size=(H, W), e.g. the input's H and W")
    if combine not in COMBINE:
        raise ValueError(f"unknown combine mode {combine!r}; use one of {sorted(COMBINE)}")
    features = list(features)
    if not features:
        raise ValueError("attention_from_features needs at least one feature map")
    for a in features:
        check_features(a)
    workspace: dict = {}
    with float32_if_autocast(features[0].device):
        raw = [channel_mean(a, p, workspace) for a in features]
    maps, per_layer = maps_from_raw(raw, size, combine)
    return (maps, per_layer) if return_layers else maps


def check_map_options(combine, p, size, compile, compile_model
                      ) -> tuple[str, float, tuple[int, int] | None, str | None]:
    """:class:`ATCam`'s map options checked, in this order (a ValueError names the first
    bad one): ``combine`` (returned lower-cased), ``p`` (a number in (0, 16]), ``size``
    (:func:`~atkd_lite.atcam_fast.check_size`), ``compile`` (returned as its mode,
    :func:`~atkd_lite.device.check_compile_mode`, ``"default"`` where only
    ``compile_model`` asks for compiling) and ``compile_model`` (True or False)."""
    if not isinstance(combine, str) or combine.lower() not in COMBINE:
        raise ValueError(f"unknown combine mode {combine!r}; use one of {sorted(COMBINE)}")
    # |A|^p over- or underflows float32 beyond 16 (all-zero or one-pixel maps); the
    # chained comparison is False for NaN and infinity too
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 16:
        raise ValueError(f"p must be a positive number up to 16 (1 or 2 are usual; "
                         f"larger powers overflow float32); got {p!r}")
    size, mode = check_size(size), check_compile_mode(compile)
    if not isinstance(compile_model, bool):
        raise ValueError(f"compile_model must be True or False; got {compile_model!r}")
    if compile_model and mode is None:
        mode = check_compile_mode(True)
    return combine.lower(), p, size, mode


class ATCam:
    r"""Attention Capture Module: FMA or MIP attention maps from one forward pass.

    Forward hooks are registered on the kept capture points for the duration of each call
    only (inside ``try``/``finally``), so the model is left exactly as it was, also when its
    forward raises. Nothing is detached: with gradients enabled the maps are
    differentiable w.r.t. the model's parameters (the student's case); under
    :func:`torch.no_grad` they cost no autograd memory (the teacher's case).

    Capture points (``layers=None``, "auto"): the names returned by
    ``model.atkd_capture_points()`` if the model has that method, else every
    :class:`torch.nn.Conv2d`, in the order in which they run in the forward pass. That
    order is recorded during the first call and reused. If a module runs several times in
    one forward, its last output is used.

    Args:
        model (nn.Module): the CNN; called as ``model(x)`` and returns logits.
        layers (list of str, "all" or None): explicit capture points (names from
            ``model.named_modules()``), in this order; None = auto (see above), then
            ``first``/``last`` select among them; ``"all"`` = every auto capture point,
            no selection (what the AT baseline and the teacher cache use).
        first (int): how many of the earliest capture points to keep (default 2).
        last (int): how many of the latest capture points to keep (default 2).
        combine (str): ``"fma"`` (mean over layers) or ``"mip"`` (max over layers).
        p (float): exponent in ``mean_c |A|^p`` (default 1).
        size (two ints, optional): output (H, W) of the maps; default the input's H×W.
        compile (bool or str): compile the map computation after the capture (resize,
            normalisations, combination) with ``torch.compile``: True or a mode such as
            ``"reduce-overhead"``. Off by default: see *Compiling* in :mod:`atkd_lite.atcam`.
        compile_model (bool): compile the network's forward pass together with the
            capture and the maps, into one graph, in ``compile``'s mode (``"default"``
            when ``compile`` is False). Off by default: see *Compiling* above.

    Examples::

        >>> import torch, torchvision
        >>> from atkd_lite import ATCam
        >>> model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
        >>> cam = ATCam(model, combine="mip")
        >>> x = torch.randn(2, 3, 64, 64)
        >>> with torch.no_grad():
        ...     logits, maps = cam(x)
        >>> logits.shape, maps.shape
        (torch.Size([2, 10]), torch.Size([2, 64, 64]))
        >>> bool(maps.min() >= 0) and bool(maps.max() <= 1)
        True
        >>> cam.layer_names
        ['conv1', 'layer1.0.conv1', 'layer4.1.conv1', 'layer4.1.conv2']
        >>> cam.attribute(x).shape      # Captum-style (B, 1, H, W)
        torch.Size([2, 1, 64, 64])
        >>> per_layer = cam.layer_maps(x)  # name -> (B, H, W), for figures
        >>> list(per_layer)[0], tuple(per_layer["conv1"].shape)
        ('conv1', (2, 64, 64))
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[str] | str | None = None,
        first: int = 2,
        last: int = 2,
        combine: str = "fma",
        p: float = 1,
        size: Sequence[int] | None = None,
        compile: bool | str = False,
        compile_model: bool = False,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError("model must be a torch.nn.Module (a CNN returning logits); "
                            f"got {type(model).__name__}")
        self.first, self.last = check_first_last(first, last)
        combine, p, size, compile = check_map_options(combine, p, size, compile, compile_model)
        model = unwrap_model(model)  # DataParallel/DDP/compiled: hook the network itself
        self.model = model
        self.combine, self.p, self.size, self.compile = combine, p, size, compile
        self.compile_model = compile_model
        self._named = dict(model.named_modules())
        # which layers (atkd_lite.capture): candidates are ordered names, or None while
        # the Conv2d order is still unknown (the first call learns it from every Conv2d)
        self.keep_all, self._candidates, convs = find_capture_points(model, layers, self._named)
        if self._candidates is None:
            self._convs = convs
        self.layer_names: list[str] | None = (
            None if self._candidates is None else self._select(self._candidates)
        )
        # per train/eval mode: kept layers whose outputs the forward modifies in place
        # after their hook (None until a call has looked), see _capture
        self._late: dict[bool, set[str] | None] = {True: None, False: None}
        # CPU scratch for |A|, kept from call to call (a fresh one per call is a large new
        # buffer whose pages are faulted in every time); one per thread
        self._scratch = threading.local()
        # compile_model: the resize weights per (train/eval mode, input size, map size)
        # that an eager call has checked, and the compiled graph (made lazily)
        self._whole = WholeGraph(self, self._late) if compile_model else None

    def _select(self, names: list[str]) -> list[str]:
        return list(names) if self.keep_all else select_layers(names, self.first, self.last)

    # ------------------------------------------------------------------ capture
    def features(self, x: torch.Tensor, reduce: Callable[[torch.Tensor], object] | None = None
                 ) -> tuple[torch.Tensor, list]:
        """Run the model once; return its logits and the raw kept feature maps.

        The feature maps are the modules' outputs as they are (same dtype, not detached),
        in the order of ``layer_names``; use them e.g. for the AT baseline
        (:func:`atkd_lite.losses.at_loss`).

        Args:
            x (Tensor): input batch (B, C, H, W).
            reduce (callable, optional): applied to each kept feature map as soon as its
                module has computed it, and its results are returned instead of the maps.
                The full-size map is then read while it is still in cache and freed as the
                forward pass goes on (the teacher's AT maps are made this way); the results
                are the same as ``[reduce(A) for A in self.features(x)[1]]``, also when a
                later module modifies a captured output in place.

        Returns:
            (Tensor, list): logits, and one (B, C_l, H_l, W_l) map per kept layer (or
            ``reduce``'s result for it).

        Examples::

            >>> import torch
            >>> from torch import nn
            >>> from atkd_lite import ATCam
            >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 8, 3),
            ...                     nn.ReLU(), nn.Flatten(), nn.LazyLinear(3))
            >>> logits, feats = ATCam(net, first=1, last=1).features(torch.randn(2, 1, 12, 12))
            >>> [tuple(f.shape) for f in feats]
            [(2, 4, 10, 10), (2, 8, 8, 8)]
        """
        check_model_input(x, self.model)  # dtype, NaN/infinity: a message, not a conv error
        if reduce is None:
            return self._capture(x)
        if not callable(reduce):
            raise TypeError(f"reduce must be a callable taking a feature map (B, C, H, W), "
                            f"e.g. lambda A: A.pow(2).mean(1); got {type(reduce).__name__}")
        return self._capture(x, reduce=lambda a, name, as_hooked=True: reduce(a))

    def _capture(self, x: torch.Tensor, reduce: Callable | None = None):
        """One forward pass with hooks on the capture points: logits and kept outputs, or
        with ``reduce`` their reductions (in the hook where that is safe, learnt in ``_late``
        by a first call per train/eval mode: :func:`~atkd_lite.capture.reduce_kept`)."""
        hooked = self.layer_names if self.layer_names is not None else self._convs
        mode = bool(self.model.training)
        late = self._late.get(mode) if reduce is not None else None
        early = late is not None and self.layer_names is not None
        logits, captured, versions = hooked_forward(self.model, x, hooked,
                                                    reduce if early else None, late)
        if self.layer_names is None:  # auto Conv2d mode: the first call fixes the order
            self.layer_names = self._select(ran_in_order(captured))
        feats = kept_outputs(captured, self.layer_names)
        if reduce is None:
            return logits, feats
        if late is None and len(versions) == len(captured):  # probe: learn what is safe
            self._late[mode] = modified_after_hook(self.layer_names, captured, versions)
        return logits, reduce_kept(self.layer_names, feats, versions, reduce, late)

    def _workspace(self) -> dict:
        ws = getattr(self._scratch, "ws", None)
        if ws is None:
            ws = self._scratch.ws = {}
        return ws

    def __getstate__(self):  # copy/pickle: scratch buffers, locks, compiled code stay behind
        state = dict(self.__dict__)
        state.pop("_scratch", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._scratch = threading.local()

    def _raw_map(self, a: torch.Tensor, name: str, as_hooked: bool = True,
                 workspace: dict | None = None) -> torch.Tensor:
        """A captured feature map's raw per-layer map ``mean_c |A|^p``, (B, H_l, W_l).

        ``as_hooked``: ``a`` is still the module's output as its hook saw it, so when the
        module ends in an ``nn.ReLU`` (:func:`relu_output`) ``|A| = A`` needs no pass.
        """
        nonneg = as_hooked and relu_output(self._named[name])
        # with compile_model the eager calls are the few that check a new input size:
        # compiling the capture's |A| for them would only add a graph
        compiled = None if self.compile_model else self.compile
        with float32_if_autocast(a.device):
            return channel_mean(a, self.p, workspace, nonneg=nonneg, compiled=compiled)

    def raw_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and each kept layer's raw map ``mean_c |A|^p`` (B, H_l, W_l), in capture
        order, every map reduced inside its hook: the capture half of a call
        (``benchmarks/bench_capture.py`` times it alone). The maps at :meth:`map_size`
        are ``traceable_maps_from_raw(raw, cam.map_size(x), cam.combine)[0]``, to
        rounding."""
        check_model_input(x, self.model)
        workspace = self._workspace()  # scratch shared by the layers, kept between calls
        return self._capture(x, reduce=functools.partial(self._raw_map, workspace=workspace))

    def map_size(self, x: torch.Tensor) -> tuple[int, int]:
        """The (H, W) of the maps for input ``x``: ``size``, else the input's."""
        return self.size if self.size is not None else (int(x.shape[-2]), int(x.shape[-1]))

    # ------------------------------------------------------------------ maps
    def __call__(self, x: torch.Tensor, return_layers: bool = False):
        """Logits and combined attention maps from one forward pass.

        Args:
            x (Tensor): input batch (B, C, H, W).
            return_layers (bool): also return the per-layer maps.

        Returns:
            ``(logits, maps)`` with maps (B, H, W) in [0, 1]; with ``return_layers=True``
            ``(logits, maps, per_layer)`` where ``per_layer`` maps each kept layer name to
            its normalised (B, H, W) map.
        """
        # the same maths as attention_from_features(self.features(x)[1], ...), with each
        # layer reduced to its raw map inside the forward pass
        out = None
        if self.compile_model:
            check_model_input(x, self.model)
            out = self._whole(x)
        if out is None:
            logits, raw = self.raw_maps(x)
            if self.compile_model:  # checked: the compiled graph may take this size now
                self._whole.remember(x, raw)
                tail = maps_from_raw
            else:
                tail = maps_from_raw if self.compile is None else compiled_tail(self.compile)
            maps, per_layer = tail(raw, self.map_size(x), self.combine)
        else:
            logits, maps, per_layer = out
        if return_layers:
            return logits, maps, dict(zip(self.layer_names, per_layer.unbind(0)))
        return logits, maps

    def layer_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The normalised per-layer maps, name -> (B, H, W), in capture order (for figures)."""
        return self(x, return_layers=True)[2]

    def attribute(self, inputs: torch.Tensor, target=None) -> torch.Tensor:
        """Captum-style attribution: the combined maps shaped (B, 1, H, W).

        ATCam maps come from feature activations, so they do not depend on a class:
        ``target`` is accepted for drop-in compatibility with Captum code and ignored.
        The result can be passed to ``captum.attr.visualization.visualize_image_attr``
        after ``.squeeze(0).permute(1, 2, 0)``.

        Args:
            inputs (Tensor): input batch (B, C, H, W).
            target: ignored (class-agnostic).

        Returns:
            Tensor: shape (B, 1, H, W), values in [0, 1].
        """
        return self(inputs)[1].unsqueeze(1)

    def has_convergence_delta(self) -> bool:
        """Captum API: ATCam has no convergence delta."""
        return False

    def __repr__(self) -> str:
        return (
            f"ATCam(model={type(self.model).__name__}, layers={self.layer_names}, "
            f"first={self.first}, last={self.last}, combine={self.combine!r}, p={self.p}, "
            f"size={self.size}" + (f", compile={self.compile!r}" if self.compile else "")
            + (", compile_model=True)" if self.compile_model else ")")
        )
