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

Cost. The method's claim is that the maps come almost for free, so the computation is
arranged around memory traffic rather than arithmetic: :class:`ATCam` reduces each kept
layer to ``mean_c |A|`` inside the forward pass (while the feature map is still in
cache, and without keeping it alive), forms ``|A|`` without a fresh full-size buffer,
resizes layers of one size together, normalises all layers in one call, and gives
:func:`normalize_maps` a hand-written backward. None of this changes a number: maps and
gradients equal, bit for bit, the plain formulas above (``tests/test_atcam_fast.py``).
Optionally compiled (``ATCam(compile=...)``, equal to rounding), and compiled together with
the network (``compile_model=True``), where each channel mean is read inside the
network's own fused kernels rather than in a pass of its own.

Defined in the book's chapter "Attention maps", which derives every step.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from atkd_lite.runtime import (
    at_least_float32,
    check_compile_mode,
    check_model_input,
    compile_function,
    cuda_graph_mode,
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


def _float32(device: torch.device):
    """:func:`float32_math` where autocast is on, else nothing (saves ~20 us a call).

    The map computation enters it several times per call; on a GPU such fixed host costs
    are what a batch-128 forward is made of.
    """
    try:
        enabled = torch.is_autocast_enabled(device.type)
    except TypeError:  # torch < 2.4: no device argument
        return float32_math(device)
    return float32_math(device) if enabled else contextlib.nullcontext()


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
    if maps.requires_grad and torch.is_grad_enabled():
        return _MinMaxNorm.apply(maps, eps)
    return _normalize(maps, eps)


def _min_max(maps: torch.Tensor, eps: float):
    """Per-sample ``lo``, ``hi``, "not constant" mask ``ok`` and ``1 / span`` (1 where not ok)."""
    shape = (-1,) + (1,) * (maps.dim() - 1)
    flat = maps.flatten(1)
    # amin/amax, not aminmax: aminmax has no derivative in the torch versions Colab ships
    # (and on the CPU its kernel along a dimension is ~5x slower than the two together)
    lo, hi = flat.amin(dim=1).view(shape), flat.amax(dim=1).view(shape)
    span = hi - lo
    tol = torch.maximum(lo.abs(), hi.abs()).detach() * (ULPS * torch.finfo(maps.dtype).eps)
    ok = span > tol.clamp_min(eps)
    # 1/span through a safe denominator, then masked: dividing by a zero span and
    # discarding the result afterwards would still send NaN gradients back.
    return lo, hi, ok, torch.where(ok, span, 1.0).reciprocal()


def _normalize(maps: torch.Tensor, eps: float) -> torch.Tensor:
    """:func:`normalize_maps` in plain operations (autograd differentiates these)."""
    lo, _, ok, inv = _min_max(maps, eps)
    out = maps - lo  # subtract first: m*s - lo*s would cancel catastrophically
    if maps.requires_grad and torch.is_grad_enabled():
        return out * (inv * ok)
    return out.mul_(inv * ok)  # no graph: scale in place, one full-size buffer fewer


def _min_max_grads(grad, d, ok, inv, scale):
    """The gradients of ``y = d * scale`` (``d = maps - lo``, ``scale = ok / (hi - lo)``)
    with respect to ``d`` (full size), and to ``span = hi - lo`` and ``lo`` (per sample),
    in autograd's order of operations: shared by :class:`_MinMaxNorm` and
    :class:`_TracedMinMaxNorm`, which differ only in how they form the tie masks."""
    dims = tuple(range(1, d.dim()))
    g_d = grad * scale
    g_scale = (grad * d).sum(dims, keepdim=True)
    g_span = (g_scale * ok) * -(inv * inv)  # scale = inv * ok, inv = 1 / span
    g_lo = -g_d.sum(dims, keepdim=True) - g_span  # from d = maps - lo and span = hi - lo
    return g_d, g_span, g_lo


class _MinMaxNorm(torch.autograd.Function):
    """:func:`_normalize` with a hand-written backward: the same gradient, bit for bit.

    Autograd's backward of ``amin``/``amax`` spreads the gradient over tied extremes via
    ``(g / count) * mask``, which on the CPU casts the boolean mask to a full-size float
    copy, twice per extreme, and then adds three full-size terms; here each extreme costs
    one comparison and one in-place ``addcmul_``. Every product and sum is done in
    autograd's order, so the result is identical (``tests/test_atcam_fast.py`` checks it,
    ties and constant maps included).
    """

    @staticmethod
    def forward(ctx, maps, eps):
        lo, hi, ok, inv = _min_max(maps, eps)
        scale = inv * ok
        d = maps - lo
        ctx.eps = eps
        ctx.save_for_backward(maps, d, lo, hi, ok, inv, scale)
        return d * scale

    @staticmethod
    def backward(ctx, grad):
        maps, d, lo, hi, ok, inv, scale = ctx.saved_tensors
        if torch.is_grad_enabled():  # double backward: differentiate the plain operations
            with torch.enable_grad():
                out = _normalize(maps, ctx.eps)
            return torch.autograd.grad(out, maps, grad, create_graph=True)[0], None
        g_d, g_span, g_lo = _min_max_grads(grad, d, ok, inv, scale)
        # amax/amin: the gradient is shared equally between tied extremes. The masks are
        # written as 0/1 floats (summing a boolean mask first copies it to int64); the
        # counts are small integers, exact in floating point
        at_hi = torch.eq(maps, hi, out=torch.empty_like(maps))
        at_lo = torch.eq(maps, lo, out=torch.empty_like(maps))
        ties_hi = at_hi.flatten(1).sum(1).view_as(hi)
        ties_lo = at_lo.flatten(1).sum(1).view_as(lo)
        # autograd adds g_d + (hi part + lo part); no element is in both parts unless the
        # map is constant, where every term is zero, so adding them in turn, in place,
        # gives the same numbers
        return g_d.addcmul_(at_hi, g_span / ties_hi).addcmul_(at_lo, g_lo / ties_lo), None


def _check_features(features) -> None:
    if not isinstance(features, torch.Tensor) or features.dim() != 4:
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise ValueError(
            f"features must be a 4-D feature map (B, C, H, W); got {shape}. "
            "Capture a module whose output is a conv feature map."
        )


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
    _check_features(features)
    size = _check_size(size)
    with _float32(features.device):
        m = _channel_mean(features, p)
        if size is not None and tuple(m.shape[-2:]) != size:
            m = resize_maps(m, size)
        return normalize_maps(m) if normalize else m


# ---------------------------------------------------------------------------------------
# The per-layer reduction mean_c |A|^p, the one step that reads a full-size feature map.
#
# Where the time goes: on the CPU, writing a fresh full-size temporary (``A.abs()``, 12.8 MB
# for a 128 x 32 x 28 x 28 batch) costs 5-10x more than reading A once, because every
# page of a new large buffer is faulted in (the allocator hands large blocks back to the
# OS). So |A| is formed a chunk of images at a time in one small reused buffer that stays
# in the core's cache, and summed from there: the same operations in the same order, so
# the same numbers bit for bit, at about the cost of one read of A. On other devices one
# fused ``vector_norm`` kernel reads A once with no temporary at all (CPU's kernel for it
# is slow).

#: bytes of |A| formed per chunk on the CPU, per torch thread (about a core's L2) ...
_CHUNK_BYTES = 1 << 19
#: ... but never more chunks than this (the Python loop's cost stays bounded)
_MAX_CHUNKS = 64
#: ... and with several threads never more than this (each chunk is two barriers)
_MAX_CHUNKS_THREADED = 16


def _sum_abs_cpu(a: torch.Tensor, workspace: dict | None = None,
                 nonneg: bool = False) -> torch.Tensor:
    """``a.abs().sum(dim=1)`` for a float32/64 CPU tensor, without a fresh full-size temporary.

    ``|A|`` is formed a cache-sized chunk of images at a time: a core's L2 per torch
    thread. With several threads every operation is a parallel region that ends in a
    barrier, and on a busy machine a barrier can wait a whole scheduler slice for a
    thread, so there the chunks are fewer (at most :data:`_MAX_CHUNKS_THREADED`; on two
    quiet cores, chunks of ~1 MB form and sum ``|A|`` in 0.6x the time of one piece).
    The buffer comes from ``workspace`` (a dict shared by the layers of a call, and kept
    by :class:`ATCam` between calls), so a call faults in no fresh buffer.

    ``nonneg``: ``a`` is a ReLU's output, so ``|a| = a``: it is summed straight from
    ``a`` in one call (no ``|A|`` to form, and no chunks: they only pay for keeping
    ``|A|`` in cache; one call reads a 12.8 MB map in 0.65x the time of 16 chunks).
    """
    if nonneg:
        return torch.sum(a, dim=1)
    batch = a.shape[0]
    per_image = max(1, a[0].numel() * a.element_size())
    threads = torch.get_num_threads()
    most = _MAX_CHUNKS if threads == 1 else _MAX_CHUNKS_THREADED
    step = max(1, _CHUNK_BYTES * threads // per_image, -(-batch // most))
    out = a.new_empty((batch, *a.shape[2:]))
    shape = (min(step, batch), *a.shape[1:])
    if workspace is not None and a.is_contiguous():
        flat = workspace.get(a.dtype)
        need = min(step, batch) * a[0].numel()
        if flat is None or flat.numel() < need:
            flat = workspace[a.dtype] = a.new_empty(need)
        buf = flat[:need].view(shape)
    else:
        buf = torch.empty_like(a[:step])  # same memory format as A: same summation order
    for i in range(0, batch, step):
        n = min(step, batch - i)
        torch.abs(a[i:i + n], out=buf[:n])
        torch.sum(buf[:n], dim=1, out=out[i:i + n])
    return out


class _ChannelMeanAbs(torch.autograd.Function):
    """``a.abs().mean(dim=1)`` (same numbers, same gradient) with fewer full-size passes.

    Forward: :func:`_sum_abs_cpu` then one division (``mean`` is ``sum / C`` in torch).
    Backward: ``sgn(a) * g / C`` in one fresh tensor, where autograd's chain (mean's
    expand-and-divide, abs's ``sgn`` and product) writes three.

    With ``nonneg`` (``a`` is the output of an ``nn.ReLU``, see :func:`_relu_output`)
    the forward sums ``a`` itself, and the backward returns ``g / C`` broadcast over the
    channels (no full-size write) instead of ``sgn(a) * g / C``. The two differ only where
    ``a == 0``, and there the ReLU's own backward (``threshold_backward`` on its output)
    zeroes the gradient whatever arrives: every parameter's gradient is the same, bit for
    bit (``tests/test_atcam_fast.py``).
    """

    @staticmethod
    def forward(ctx, a, workspace, nonneg=False):
        ctx.save_for_backward(a)
        ctx.nonneg = nonneg
        return _sum_abs_cpu(a, workspace, nonneg).div_(a.shape[1])

    @staticmethod
    def backward(ctx, grad):
        (a,) = ctx.saved_tensors
        scaled = (grad / a.shape[1]).unsqueeze(1)
        if torch.is_grad_enabled():  # double backward: keep the product differentiable
            return torch.sgn(a) * scaled, None, None
        if ctx.nonneg:
            return scaled.expand_as(a), None, None
        return torch.sgn(a).mul_(scaled), None, None


def _channel_mean(features: torch.Tensor, p: float = 1,
                  workspace: dict | None = None, nonneg: bool = False,
                  compiled: str | None = None) -> torch.Tensor:
    """``mean_c |A|^p`` of a (B, C, H, W) feature map, in float32 (float64 stays float64).

    Call inside :func:`float32_math`. Equal to ``at_least_float32(A).abs().pow(p).mean(1)``.
    ``workspace``: a dict shared by the layers of one call (CPU scratch buffers).
    ``nonneg``: A is an ``nn.ReLU``'s output (see :class:`_ChannelMeanAbs`).
    ``compiled``: a ``torch.compile`` mode (``ATCam(compile=...)``): on the CPU a signed
    map's ``mean_c |A|`` is then one compiled pass (equal to rounding, not bit for bit).
    """
    if p == 1 and features.device.type != "cpu":
        # one fused pass, no full-size temporary (not even the float32 copy of an autocast
        # output: the kernel upcasts as it reads, giving the same sums)
        dtype = features.dtype if features.dtype == torch.float64 else torch.float32
        return torch.linalg.vector_norm(features, ord=1, dim=1, dtype=dtype) / features.shape[1]
    if p == 1 and features.dtype in (torch.float32, torch.float64):
        if compiled is not None and not nonneg:
            return _compiled_abs_mean(compiled)(features)
        return _ChannelMeanAbs.apply(features, workspace, nonneg)
    return _plain_channel_mean(features, p)


def _plain_channel_mean(features: torch.Tensor, p: float = 1) -> torch.Tensor:
    """``mean_c |A|^p`` in plain operations, float32 or wider: the eager fallback of
    :func:`_channel_mean`, and what compiled code traces (``compile``, ``compile_model``)."""
    a = at_least_float32(features).abs()
    return (a if p == 1 else a.pow(p)).mean(dim=1)


def _relu_output(module: nn.Module) -> bool:
    """Whether a module's output is an ``nn.ReLU``'s: the module is one, or a
    ``Sequential`` whose last module is (e.g. the book's ``ConvBlock``)."""
    while isinstance(module, nn.Sequential) and len(module) > 0:
        module = module[-1]
    return type(module) is nn.ReLU  # a subclass may change what forward returns


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
    with _float32(stack.device):
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
    for a in features:
        _check_features(a)
    workspace: dict = {}
    with _float32(features[0].device):
        raw = [_channel_mean(a, p, workspace) for a in features]
    maps, per_layer = _maps_from_raw(raw, size, combine)
    return (maps, per_layer) if return_layers else maps


def _size_groups(raw: Sequence[torch.Tensor]) -> dict[tuple[int, int], list[int]]:
    """The indices of the raw maps of each size (H_l, W_l), in capture order."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, m in enumerate(raw):
        groups.setdefault((int(m.shape[-2]), int(m.shape[-1])), []).append(i)
    return groups


def _resize_stack(raw: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """Raw per-layer maps (B, h_l, w_l) -> one (L, B, H, W) stack at ``size``, in order.

    Layers that share a size are stacked and resized together (one pair of matrix
    products per size, not per layer): fewer, larger kernels.
    """
    parts, order = [], []
    with _float32(raw[0].device):
        for shape, idx in _size_groups(raw).items():
            group = torch.stack([raw[i] for i in idx]) if len(idx) > 1 else raw[idx[0]][None]
            parts.append(group if shape == size else resize_maps(group, size))
            order += idx
    stack = parts[0] if len(parts) == 1 else torch.cat(parts)
    if order != sorted(order):  # back to capture order
        stack = stack[[order.index(i) for i in range(len(order))]]
    return stack


def _maps_from_raw(raw: list[torch.Tensor], size: tuple[int, int], combine: str):
    """Combined maps (B, H, W) and normalised per-layer maps (L, B, H, W) from raw maps."""
    stack = _resize_stack(raw, size)  # a new tensor, ours to overwrite
    if stack.requires_grad and torch.is_grad_enabled():
        per_layer = normalize_maps(stack.flatten(0, 1)).view_as(stack)  # all layers at once
        return combine_maps(per_layer, combine), per_layer
    # no graph: the same operations, in place (no fresh full-size buffers to fault in)
    with _float32(stack.device):
        _normalize_(stack.flatten(0, 1))
        return _normalize_(COMBINE[combine](stack)), stack


def _equal_to(value: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``(x == value)`` as 0/1 floats, for ``x <= value`` everywhere (``value`` an extreme
    of ``x``): ``1 - sign(value - x)``. Floating-point subtraction gives zero exactly when
    the two are equal, so this is the comparison itself, written in float arithmetic:
    compiled for the CPU, a comparison saved for the backward pass is stored as a bool
    mask, and inductor's bool stores cost ~10x an eager comparison (2.2 ms against
    0.2 ms for a 384x784 mask here), which made the compiled tail slower than the eager
    one (``benchmarks/RESULTS.md``)."""
    return 1 - torch.sign(value - x)


class _TracedMinMaxNorm(torch.autograd.Function):
    """:class:`_MinMaxNorm` for compiled code: the same forward and the same gradient
    formula (ties shared equally, as autograd's ``amin``/``amax``), out of place and with
    its tie masks formed by :func:`_equal_to`, so that ``torch.compile`` traces it into
    fused loops that save float tensors, not bool masks. Evaluated eagerly it gives
    :class:`_MinMaxNorm`'s numbers (``tests/test_atcam_fast.py``)."""

    @staticmethod
    def forward(ctx, maps, eps):
        lo, hi, ok, inv = _min_max(maps, eps)
        scale = inv * ok
        ctx.save_for_backward(maps, lo, hi, ok, inv, scale)
        return (maps - lo) * scale

    @staticmethod
    def backward(ctx, grad):
        maps, lo, hi, ok, inv, scale = ctx.saved_tensors
        dims = tuple(range(1, maps.dim()))
        g_d, g_span, g_lo = _min_max_grads(grad, maps - lo, ok, inv, scale)
        at_hi, at_lo = _equal_to(hi, maps), _equal_to(maps, lo)  # lo <= maps <= hi
        ties_hi, ties_lo = at_hi.sum(dims, keepdim=True), at_lo.sum(dims, keepdim=True)
        return g_d + at_hi * (g_span / ties_hi) + at_lo * (g_lo / ties_lo), None


class _TracedLayerMax(torch.autograd.Function):
    """MIP's combination ``stack.amax(dim=0)`` for compiled code: autograd's gradient (shared
    equally between tied layers), its tie mask formed by :func:`_equal_to` (see
    :class:`_TracedMinMaxNorm`)."""

    @staticmethod
    def forward(ctx, stack):
        out = stack.amax(dim=0)
        ctx.save_for_backward(stack, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        stack, out = ctx.saved_tensors
        at = _equal_to(out, stack)
        return (grad / at.sum(dim=0)) * at


#: the combinations as :func:`traceable_maps_from_raw` (compiled code) computes them
_TRACED_COMBINE = {"fma": COMBINE["fma"], "mip": _TracedLayerMax.apply}


def resize_weights(raw: Sequence[torch.Tensor], size: tuple[int, int]) -> dict:
    """The bilinear resize matrices ``(R_h, R_w)`` for each raw map size in ``raw`` that
    differs from ``size`` (cached): the ``weights`` of :func:`traceable_maps_from_raw`.
    Compiled code should take them as inputs: traced, their construction would be
    recomputed inside the compiled code on every call."""
    weights = {}
    for m in raw:
        shape = (int(m.shape[-2]), int(m.shape[-1]))
        if shape != tuple(size) and shape not in weights:
            weights[shape] = (_linear_weights(shape[0], size[0], m.device, m.dtype),
                              _linear_weights(shape[1], size[1], m.device, m.dtype))
    return weights


def traceable_maps_from_raw(raw: list[torch.Tensor], size: tuple[int, int], combine: str,
                            weights: dict | None = None):
    """Combined maps (B, H, W) and normalised per-layer maps (L, B, H, W) from the raw
    per-layer maps of :meth:`ATCam.raw_maps`, in out-of-place operations: what
    ``torch.compile`` traces and fuses for ``ATCam(..., compile=...)`` and for the
    distillers' ``compile_maps`` (the eager code's formulas; the numbers agree to
    rounding, not bit for bit). ``weights``: :func:`resize_weights` of ``raw``.

    Each group of layers of one size is resized together and normalised where it lies,
    and only the normalised maps are stacked: normalising one stack of all the layers
    would first copy every raw map into it (inductor does not fuse a concatenation into
    the min-max reduction that reads it), 10 % of the compiled tail's time here."""
    per = [None] * len(raw)
    for shape, idx in _size_groups(raw).items():
        if shape == tuple(size):
            for i in idx:
                per[i] = _TracedMinMaxNorm.apply(raw[i], EPS)
            continue
        group = torch.stack([raw[i] for i in idx])
        with _float32(group.device):  # the products in float32, also under autocast
            if weights is not None:
                r_h, r_w = weights[shape]
                group = r_h @ group @ r_w.t()  # what resize_maps computes
            else:
                group = resize_maps(group, size)
        normed = _TracedMinMaxNorm.apply(group.flatten(0, 1), EPS).view_as(group)
        for j, i in enumerate(idx):
            per[i] = normed[j]
    per_layer = torch.stack(per)
    return _TracedMinMaxNorm.apply(_TRACED_COMBINE[combine](per_layer), EPS), per_layer


@functools.cache
def _compiled_abs_mean(mode: str):
    """``mean_c |A|`` compiled once per mode: one fused pass that reads A and sums ``|A|``,
    where eager PyTorch on the CPU must form ``|A|`` before summing it (even in the
    cache-sized chunks of :func:`_sum_abs_cpu`, that costs about as much again as the
    read; ``benchmarks/bench_capture.py`` measures the three, figures in
    ``benchmarks/RESULTS.md``)."""
    return compile_function(_plain_channel_mean, mode)


@functools.cache
def _compiled_tail(mode: str):
    """The map tail compiled once per mode, shared by every ATCam (compiled lazily)."""
    compiled = compile_function(traceable_maps_from_raw, mode)
    graphs = cuda_graph_mode(mode)

    def tail(raw, size, combine):
        out = compiled(raw, size, combine, resize_weights(raw, size))
        return _out_of_graph_pool(out) if graphs else out

    return tail


def _out_of_graph_pool(tensors: tuple) -> tuple:
    """Copies of a CUDA-graph replay's outputs: they live in the graph's memory pool and
    are overwritten by its next replay (e.g. the student's maps after the teacher's).
    CPU tensors pass as they are (``benchmarks/gpu_check.py --compile --compile-mode
    reduce-overhead`` runs this path on a GPU)."""
    return tuple(t.clone() if t.is_cuda else t for t in tensors)


def _normalize_(maps: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """:func:`normalize_maps` in place (same operations, same numbers); no autograd."""
    lo, _, ok, inv = _min_max(maps, eps)
    return maps.sub_(lo).mul_(inv * ok)


def _store_output(store: dict, name: str, reduce: Callable | None, module, args,
                  output) -> None:
    """A forward hook of ``compile_model``: keep the capture point's output, reduced to
    its raw map unless ``reduce`` is None (the last run wins if a module runs twice, as
    in the eager capture)."""
    store[name] = output if reduce is None else reduce(output)


class _Reduced(NamedTuple):
    """A capture point's output already reduced inside its hook (see ``ATCam._capture``)."""

    value: torch.Tensor  # the reduced map
    ref: weakref.ref  # the output itself, while something else keeps it alive
    version: int | None  # its version counter when the hook ran (None: not tracked)


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
            normalisations, combination: some 40 small operations) with
            ``torch.compile``, True or a mode such as ``"reduce-overhead"`` (CUDA graphs
            on a GPU); on the CPU also each signed captured map's ``mean_c |A|`` (one
            fused pass instead of forming ``|A|`` first). On the CPU the compiled tail
            and attention loss take less time than the eager ones; on a GPU it is the
            way to fewer launches (``benchmarks/bench_compile.py`` and
            ``benchmarks/bench_capture.py`` measure both; figures in
            ``benchmarks/RESULTS.md``). Off by default: the compiled maps equal the eager
            ones to rounding (~1e-6), not bit for bit; the first call of each input shape
            and grad mode compiles (seconds to a minute, with a C++ compiler on the CPU),
            which a book student's faster steps pay back only after thousands of steps,
            more than a student of the book trains on the CPU profile.
            Compiled maps support one backward pass (a student's training), not a double
            backward through them.
        compile_model (bool): compile the network's forward pass together with the
            capture and the maps, into one graph, in ``compile``'s mode (``"default"``
            when ``compile`` is False). The eager capture must read every captured
            feature map once more after the network wrote it (a floor that
            ``benchmarks/bench_capture.py`` measures); compiled with the network, each
            ``mean_c |A|`` is read inside the network's own fused kernels (the batch norm
            and ReLU that follow a conv read the same tensor), below that floor. Compare
            with the network compiled alone (``torch.compile(model)``, what a user who
            compiles gets): ``benchmarks/bench_atcam.py --compile-model``, figures in
            ``benchmarks/RESULTS.md``. The first call of each
            train/eval mode and input size runs eagerly (it fixes and checks the capture
            points and which of them the network modifies in place afterwards: that
            call decides it for the compiled ones), the next one compiles (tens of
            seconds on two cores); the logits and maps equal the eager ones to rounding
            (in training, a dropout layer draws other masks when compiled). Measured
            with torch 2.14. Off by default, for the reasons given under ``compile``.

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
        self.compile = check_compile_mode(compile)
        if not isinstance(compile_model, bool):
            raise ValueError(f"compile_model must be True or False; got {compile_model!r}")
        self.compile_model = compile_model
        if compile_model and self.compile is None:
            self.compile = check_compile_mode(True)
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
        # per train/eval mode: kept layers whose outputs the forward modifies in place
        # after their hook (None until a call has looked), see _capture
        self._late: dict[bool, set[str] | None] = {True: None, False: None}
        # CPU scratch for |A|, kept from call to call (a fresh one per call is a large new
        # buffer whose pages are faulted in every time); one per thread
        self._scratch = threading.local()
        # compile_model: the resize weights per (train/eval mode, input size, map size)
        # that an eager call has checked, and the compiled graph (made lazily)
        self._whole_weights: dict[tuple, dict] = {}
        self._whole = None
        self._whole_lock = threading.Lock()

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
        """One forward pass with hooks on the capture points; logits and kept outputs.

        With ``reduce``, each kept output is reduced inside its hook (to its raw per-layer
        map), so the full-size feature map is read while it is still in cache and is
        freed as the forward pass goes on, as in a plain forward (keeping every captured
        map alive to the end forces fresh allocations and costs ~10-30 % of a forward on
        the CPU). That is only the same as reducing after the forward if nothing modifies
        the output in place later (e.g. ``Conv2d`` followed by ``ReLU(inplace=True)``:
        the captured tensor then holds the activation). So the first call in each of
        train/eval mode keeps the outputs, as :meth:`features` does, and notes which ones
        were modified after their hook (their version counter moved); those are always
        reduced after the forward, the others inside the hook. An early-reduced output
        still alive at the end is checked again and, if it was modified, reduced again
        from its final value, so the maps never differ from ``attention_from_features(
        self.features(x)[1])``.
        """
        hooked = self.layer_names if self.layer_names is not None else self._convs
        captured: dict[str, object] = {}  # insertion order = first-run order
        versions: dict[str, int] = {}  # version counter at hook time (probe calls)
        mode = bool(self.model.training)
        late = self._late.get(mode) if reduce is not None else None
        early = late is not None and self.layer_names is not None

        def make_hook(name: str):
            def hook(module, args, output):
                if isinstance(output, torch.Tensor) and not output.is_inference():
                    versions[name] = output._version
                if early and name not in late and isinstance(output, torch.Tensor) \
                        and output.dim() == 4:
                    output = _Reduced(reduce(output, name), weakref.ref(output),
                                      versions.get(name))
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
            if not isinstance(a, _Reduced) and (not isinstance(a, torch.Tensor) or a.dim() != 4):
                got = tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__
                raise ValueError(
                    f"capture point {name!r} returned {got}, not a 4-D feature map "
                    "(B, C, H, W); choose a conv/activation module instead"
                )
        if reduce is None:
            return logits, feats
        if late is None and len(versions) == len(captured):  # probe: learn what is safe
            self._late[mode] = {n for n in self.layer_names
                                if captured[n]._version != versions[n]}
        out = []
        for name, a in zip(self.layer_names, feats):
            if isinstance(a, _Reduced):
                final = a.ref()
                if final is None or a.version is None or final._version == a.version:
                    out.append(a.value)
                    continue
                late.add(name)  # modified in place after the hook: reduce the final value
                a = final
            # a tensor modified after its hook may no longer be its ReLU's output
            as_hooked = name in versions and a._version == versions[name]
            out.append(reduce(a, name, as_hooked))
        return logits, out

    def _workspace(self) -> dict:
        ws = getattr(self._scratch, "ws", None)
        if ws is None:
            ws = self._scratch.ws = {}
        return ws

    def __getstate__(self):  # copy/pickle: scratch buffers, locks, compiled code stay behind
        state = dict(self.__dict__)
        for name in ("_scratch", "_whole_lock", "_whole"):
            state.pop(name, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._scratch = threading.local()
        self._whole_lock = threading.Lock()
        self._whole = None

    def _raw_map(self, a: torch.Tensor, name: str, as_hooked: bool = True,
                 workspace: dict | None = None) -> torch.Tensor:
        """A captured feature map's raw per-layer map ``mean_c |A|^p``, (B, H_l, W_l).

        ``as_hooked``: ``a`` is still the module's output as its hook saw it, so when the
        module ends in an ``nn.ReLU`` (:func:`_relu_output`) ``|A| = A`` needs no pass.
        """
        nonneg = as_hooked and _relu_output(self._named[name])
        # with compile_model the eager calls are the few that check a new input size:
        # compiling the capture's |A| for them would only add a graph
        compiled = None if self.compile_model else self.compile
        with _float32(a.device):
            return _channel_mean(a, self.p, workspace, nonneg=nonneg, compiled=compiled)

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
        out = self._whole_graph_call(x) if self.compile_model else None
        if out is None:
            logits, raw = self.raw_maps(x)
            if self.compile_model:  # checked: the compiled graph may take this size now
                self._whole_weights[self._whole_key(x)] = resize_weights(raw, self.map_size(x))
                tail = _maps_from_raw
            else:
                tail = _maps_from_raw if self.compile is None else _compiled_tail(self.compile)
            maps, per_layer = tail(raw, self.map_size(x), self.combine)
        else:
            logits, maps, per_layer = out
        if return_layers:
            return logits, maps, dict(zip(self.layer_names, per_layer.unbind(0)))
        return logits, maps

    # ------------------------------------------------------- compile_model: one graph
    def _whole_key(self, x: torch.Tensor) -> tuple:
        """What an eager call must have checked before the compiled graph takes ``x``: the
        resize weights live on the input's device in its precision, and the capture
        points modified in place later are learnt per train/eval mode, outside inference
        mode (inference tensors have no version counter: all are then read at the end)."""
        return (bool(self.model.training), torch.is_inference_mode_enabled(), x.device,
                x.dtype, tuple(x.shape[-2:]), self.map_size(x))

    def _whole_graph_call(self, x: torch.Tensor):
        """``(logits, maps, per_layer)`` from the network, capture and maps compiled as one
        graph (``compile_model``); None while this train/eval mode and input size have not
        yet had the eager call that fixes and checks the capture points (and the shapes
        of their outputs, which the resize weights depend on)."""
        check_model_input(x, self.model)
        weights = self._whole_weights.get(self._whole_key(x))
        if weights is None:
            return None
        with self._whole_lock:  # the hooks write to one store per ATCam
            if self._whole is None:
                self._whole = compile_function(self._whole_graph, self.compile)
            store: dict[str, torch.Tensor] = {}
            # reduced inside its hook, each capture point's mean |A| fuses into the
            # network's kernel that reads the same output (its batch norm, ReLU);
            # reduced after the forward, the output is kept (and copied to another
            # layout): 1.27x instead of 1.05x the compiled network for the generic CNN.
            # An output modified in place after its hook (learnt by the eager call; all of
            # them where it could not tell, under inference mode) is read at the end.
            late = self._late[bool(self.model.training)]
            late = set(self.layer_names) if late is None else late
            handles = []
            try:
                for name in self.layer_names:
                    reduce = None if name in late else self._traced_raw_map
                    handles.append(self.model.get_submodule(name).register_forward_hook(
                        functools.partial(_store_output, store, name, reduce)))
                out = self._whole(x, store, weights)
            finally:
                for h in handles:
                    h.remove()
        return _out_of_graph_pool(out) if cuda_graph_mode(self.compile) else out

    def _whole_graph(self, x: torch.Tensor, store: dict, weights: dict):
        """What ``compile_model`` compiles: the forward pass, whose hooks put each capture
        point's raw map ``mean_c |A|^p`` in ``store`` (or, for an output modified in place
        after its hook, the output itself, reduced here from its final value, as the
        eager capture reads it), then the map tail."""
        logits = model_logits(self.model(x))
        # a raw map is (B, H, W); a kept output (B, C, H, W), as the eager call checked
        raw = [store[name] if store[name].dim() == 3 else self._traced_raw_map(store[name])
               for name in self.layer_names]
        maps, per_layer = traceable_maps_from_raw(raw, self.map_size(x), self.combine, weights)
        return logits, maps, per_layer

    def _traced_raw_map(self, a: torch.Tensor) -> torch.Tensor:
        """``mean_c |A|^p`` as compiled code computes it (out of place, float32)."""
        with _float32(a.device):
            return _plain_channel_mean(a, self.p)

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
