"""ATCam, the Attention Capture Module: attention maps from a CNN's own feature maps.

ATCam listens to a network's *capture points* (modules whose outputs are 4-D feature
maps) during one ordinary forward pass, keeps the first few and the last few of them, and
turns each kept feature map into a per-layer attention map::

    m_l = norm(resize(mean_c |A_l|^p, S))          # (B, H, W), in [0, 1]

The per-layer maps are then combined into one map per image. The two ATCam methods
differ in exactly one place, the combine step (:data:`COMBINE`):

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
reusable pieces; the distillation engine and the book call them directly.

Defined in the book's chapter "Attention maps", which derives every step.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from atkd_lite.runtime import (
    at_least_float32,
    check_model_input,
    float32_math,
    model_logits,
    unwrap_model,
)

__all__ = [
    "ATCam",
    "COMBINE",
    "attention_from_features",
    "combine_maps",
    "layer_map",
    "normalize_maps",
    "resize_maps",
    "select_layers",
]

#: Below this range (max - min) a map counts as constant and normalises to zeros.
EPS = 1e-12

#: ... and so does a map whose range is within this many units of float precision of its
#: magnitude: resizing a constant map, or a conv on a constant image, leaves 1-2 ULPs of
#: rounding noise that min-max would otherwise blow up to a full [0, 1] pattern.
ULPS = 64

#: How a stack of per-layer maps, shaped (L, B, H, W), is reduced over the layer axis
#: (the one place where FMA and MIP differ).
COMBINE: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "fma": lambda stack: stack.mean(dim=0),  # feature map accumulation
    "mip": lambda stack: stack.amax(dim=0),  # maximum intensity projection
}


def _check_size(size) -> tuple[int, int] | None:
    """Validate an output size: None, or two positive ints (H, W)."""
    if size is None:
        return None
    ok = (
        isinstance(size, Sequence)
        and not isinstance(size, str)
        and len(size) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
    )
    if not ok:
        raise ValueError(
            f"size must be None or two positive ints (H, W), e.g. size=(28, 28); got {size!r}"
        )
    return (int(size[0]), int(size[1]))


def _check_count(name: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(
            f"{name} must be a non-negative int (how many capture points to keep); got {value!r}"
        )
    return value


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
    first, last = _check_count("first", first), _check_count("last", last)
    if first == 0 and last == 0:
        raise ValueError("first and last are both 0, so no layer would be kept; use first>=1 or last>=1")
    n = len(names)
    keep = set(range(min(first, n))) | set(range(max(0, n - last), n))
    return [names[i] for i in sorted(keep)]


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
    shape = (-1,) + (1,) * (maps.dim() - 1)
    flat = maps.flatten(1)
    # amin/amax, not aminmax: aminmax has no derivative in the torch versions Colab ships
    lo, hi = flat.amin(dim=1).view(shape), flat.amax(dim=1).view(shape)
    span = hi - lo
    tol = torch.maximum(lo.abs(), hi.abs()).detach() * (ULPS * torch.finfo(maps.dtype).eps)
    ok = span > tol.clamp_min(eps)
    # 1/span through a safe denominator, then masked: dividing by a zero span and
    # discarding the result afterwards would still send NaN gradients back.
    scale = torch.where(ok, span, 1.0).reciprocal() * ok
    return (maps - lo) * scale  # subtract first: m*s - lo*s would cancel catastrophically


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
    if not isinstance(features, torch.Tensor) or features.dim() != 4:
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise ValueError(
            f"features must be a 4-D feature map (B, C, H, W); got {shape}. "
            "Capture a module whose output is a conv feature map."
        )
    size = _check_size(size)
    with float32_math(features.device):
        a = at_least_float32(features)
        if p == 1 and a.device.type != "cpu":
            # one fused pass, no full-size |A| temporary (CPU's kernel for this is slow)
            m = torch.linalg.vector_norm(a, ord=1, dim=1) / a.shape[1]
        else:
            m = (a.abs() if p == 1 else a.abs().pow(p)).mean(dim=1)
        if size is not None and tuple(m.shape[-2:]) != size:
            m = resize_maps(m, size)
        return normalize_maps(m) if normalize else m


@functools.lru_cache(maxsize=64)
def _linear_weights(n_in: int, n_out: int, device: torch.device, dtype: torch.dtype):
    """(n_out, n_in) matrix of 1-D linear interpolation weights, align_corners=False."""
    # Interpolating the identity gives each input's weight at each output; a normal
    # (not inference-mode) tensor, so the cached matrix may be used under autograd later.
    with torch.inference_mode(False), torch.no_grad():
        eye = torch.eye(n_in, device=device, dtype=dtype).unsqueeze(0)  # (1, n_in, n_in)
        w = F.interpolate(eye, size=n_out, mode="linear", align_corners=False)[0]
        return w.t().contiguous()


def resize_maps(maps: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize of (B, H, W) maps, equal to ``F.interpolate(..., "bilinear",
    align_corners=False)``.

    Bilinear interpolation is separable, so it is two small matrix products
    ``R_h @ m @ R_w^T``: far faster on a GPU than ``F.interpolate`` for one-channel maps
    (its kernel parallelises over output pixels only), and differentiable.

    Args:
        maps (Tensor): (B, H, W).
        size (two ints): output (H', W').

    Returns:
        Tensor: (B, H', W').

    Examples::

        >>> import torch, torch.nn.functional as F
        >>> m = torch.rand(2, 7, 5)
        >>> ref = F.interpolate(m[:, None], size=(28, 20), mode="bilinear")[:, 0]
        >>> torch.allclose(resize_maps(m, (28, 20)), ref, atol=1e-6)
        True
    """
    size = _check_size(size)
    if size is None:
        raise ValueError("resize_maps needs size=(H, W)")
    h, w = maps.shape[-2:]
    r_h = _linear_weights(int(h), size[0], maps.device, maps.dtype)
    r_w = _linear_weights(int(w), size[1], maps.device, maps.dtype)
    return r_h @ maps @ r_w.t()


def combine_maps(maps: Sequence[torch.Tensor] | torch.Tensor, mode: str = "fma") -> torch.Tensor:
    """Combine normalised per-layer maps into one map per image (FMA or MIP).

    FMA takes the elementwise mean over layers, MIP the elementwise max; both are
    normalised again with :func:`normalize_maps`. This is the only step where the two
    methods differ (see :data:`COMBINE`).

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
    with float32_math(stack.device):
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
    size = _check_size(size)
    if size is None:
        raise ValueError("attention_from_features needs size=(H, W), e.g. the input's H and W")
    if combine not in COMBINE:
        raise ValueError(f"unknown combine mode {combine!r}; use one of {sorted(COMBINE)}")
    features = list(features)
    if not features:
        raise ValueError("attention_from_features needs at least one feature map")
    raw = torch.stack([layer_map(a, p=p, size=size, normalize=False) for a in features])
    per_layer = normalize_maps(raw.flatten(0, 1)).view_as(raw)  # (L, B, H, W)
    maps = combine_maps(per_layer, combine)
    return (maps, per_layer) if return_layers else maps


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
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"model must be a torch.nn.Module (a CNN returning logits); got {type(model).__name__}"
            )
        self.first = _check_count("first", first)
        self.last = _check_count("last", last)
        if first == 0 and last == 0:
            raise ValueError(
                "first and last are both 0, so no layer would be kept; use first>=1 or last>=1"
            )
        if not isinstance(combine, str) or combine.lower() not in COMBINE:
            raise ValueError(f"unknown combine mode {combine!r}; use one of {sorted(COMBINE)}")
        # |A|^p over- or underflows float32 beyond 16 (all-zero or one-pixel maps); the
        # chained comparison is False for NaN and infinity too
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 16:
            raise ValueError(f"p must be a positive number up to 16 (1 or 2 are usual; "
                             f"larger powers overflow float32); got {p!r}")
        model = unwrap_model(model)  # DataParallel/DDP/compiled: hook the network itself
        self.model = model
        self.combine = combine.lower()
        self.p = p
        self.size = _check_size(size)
        self._named = dict(model.named_modules())

        self.keep_all = isinstance(layers, str) and layers == "all"
        if self.keep_all:
            layers = None
        # candidates: ordered names, or None while the Conv2d order is still unknown
        if layers is not None:
            if isinstance(layers, str):
                layers = [layers]
            self._check_names(list(layers), source="layers")
            self._candidates: list[str] | None = list(layers)
        elif callable(getattr(model, "atkd_capture_points", None)):
            names = list(model.atkd_capture_points())
            self._check_names(names, source="model.atkd_capture_points()")
            self._candidates = names
        else:
            self._candidates = None
            self._convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
            if not self._convs:
                raise ValueError(
                    f"{type(model).__name__} has no nn.Conv2d layer, so ATCam has nothing to "
                    "capture; pass layers=[...] naming modules with 4-D outputs, or give the "
                    "model an atkd_capture_points() method"
                )
        self.layer_names: list[str] | None = (
            None if self._candidates is None else self._select(self._candidates)
        )

    def _select(self, names: list[str]) -> list[str]:
        return list(names) if self.keep_all else select_layers(names, self.first, self.last)

    def _check_names(self, names: list[str], source: str) -> None:
        if not names:
            raise ValueError(f"{source} is empty; name at least one module with 4-D outputs")
        unknown = [n for n in names if n not in self._named or n == ""]
        if unknown:
            valid = [n for n in self._named if n]
            raise ValueError(
                f"unknown layer name(s) {unknown} in {source}; valid names "
                f"(model.named_modules()) are: {valid}"
            )

    # ------------------------------------------------------------------ capture
    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run the model once; return its logits and the raw kept feature maps.

        The feature maps are the modules' outputs as they are (same dtype, not detached),
        in the order of ``layer_names``; use them e.g. for the AT baseline
        (:func:`atkd_lite.losses.at_loss`).

        Args:
            x (Tensor): input batch (B, C, H, W).

        Returns:
            (Tensor, list of Tensor): logits, and one (B, C_l, H_l, W_l) map per kept layer.

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
        hooked = self.layer_names if self.layer_names is not None else self._convs
        captured: dict[str, torch.Tensor] = {}  # insertion order = first-run order

        def make_hook(name: str):
            def hook(module, args, output):
                captured[name] = output  # last run wins if a module runs twice

            return hook

        handles = []
        try:
            for name in hooked:
                module = self.model.get_submodule(name)
                handles.append(module.register_forward_hook(make_hook(name)))
            logits = model_logits(self.model(x))  # tensor, (logits, ...) or dict
        finally:
            for h in handles:
                h.remove()

        if self.layer_names is None:  # auto Conv2d mode: the first call fixes the order
            ran = list(captured)
            if not ran:
                raise ValueError(
                    "none of the model's Conv2d layers ran in its forward pass; "
                    "pass layers=[...] naming modules that do run"
                )
            self.layer_names = self._select(ran)
        missing = [n for n in self.layer_names if n not in captured]
        if missing:
            raise ValueError(
                f"capture point(s) {missing} did not run in the forward pass; "
                "choose modules that the model's forward calls"
            )
        feats = [captured[n] for n in self.layer_names]
        for name, a in zip(self.layer_names, feats):
            if not isinstance(a, torch.Tensor) or a.dim() != 4:
                got = tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__
                raise ValueError(
                    f"capture point {name!r} returned {got}, not a 4-D feature map "
                    "(B, C, H, W); choose a conv/activation module instead"
                )
        return logits, feats

    def _size(self, x: torch.Tensor) -> tuple[int, int]:
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
        logits, feats = self.features(x)
        maps, per_layer = attention_from_features(
            feats, self._size(x), p=self.p, combine=self.combine, return_layers=True
        )
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
            f"size={self.size})"
        )
