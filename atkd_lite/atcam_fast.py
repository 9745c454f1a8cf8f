"""ATCam's fast paths: the same maps with less memory traffic, and compiled code.

:mod:`atkd_lite.atcam` states the method; this module is how it is computed quickly.
The claim is that the maps come almost for free, so the computation is arranged around
memory traffic rather than arithmetic: each kept layer is reduced to ``mean_c |A|`` inside
the forward pass (while the feature map is still in cache, and without keeping it
alive), ``|A|`` is formed without a fresh full-size buffer, layers of one size are
resized together, all layers are normalised in one call, and the min-max normalisation
has a hand-written backward. None of this changes a number: maps and gradients equal,
bit for bit, the plain formulas (``tests/test_atcam_fast.py``). Optionally compiled
(``ATCam(compile=...)``, equal to rounding: :func:`traceable_maps_from_raw`,
:func:`compiled_tail`), and compiled together with the network (``compile_model=True``,
:class:`WholeGraph`), where each channel mean is read inside the network's own fused
kernels rather than in a pass of its own. Figures in ``benchmarks/RESULTS.md``.
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

from atkd_lite.device import at_least_float32, compile_function, cuda_graph_mode, float32_math
from atkd_lite.outputs import model_logits

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


def float32_if_autocast(device: torch.device):
    """:func:`~atkd_lite.device.float32_math` where autocast is on, else nothing (saves ~20 us a call).

    The map computation enters it several times per call; on a GPU such fixed host costs
    are what a batch-128 forward is made of.
    """
    try:
        enabled = torch.is_autocast_enabled(device.type)
    except TypeError:  # torch < 2.4: no device argument
        return float32_math(device)
    return float32_math(device) if enabled else contextlib.nullcontext()


def check_size(size) -> tuple[int, int] | None:
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
    """:func:`~atkd_lite.atcam.normalize_maps` in plain operations (autograd differentiates these)."""
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


def min_max_normalize(maps: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """:func:`atkd_lite.atcam.normalize_maps`: the plain operations without a graph, the
    hand-written backward (``_MinMaxNorm``, the same gradient) with one."""
    if maps.requires_grad and torch.is_grad_enabled():
        return _MinMaxNorm.apply(maps, eps)
    return _normalize(maps, eps)


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

    With ``nonneg`` (``a`` is the output of an ``nn.ReLU``, see :func:`relu_output`)
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


def channel_mean(features: torch.Tensor, p: float = 1,
                  workspace: dict | None = None, nonneg: bool = False,
                  compiled: str | None = None) -> torch.Tensor:
    """``mean_c |A|^p`` of a (B, C, H, W) feature map, in float32 (float64 stays float64).

    Call inside :func:`~atkd_lite.device.float32_math`. Equal to ``at_least_float32(A).abs().pow(p).mean(1)``.
    ``workspace``: a dict shared by the layers of one call (CPU scratch buffers).
    ``nonneg``: A is an ``nn.ReLU``'s output (see ``_ChannelMeanAbs``).
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
    return plain_channel_mean(features, p)


def plain_channel_mean(features: torch.Tensor, p: float = 1) -> torch.Tensor:
    """``mean_c |A|^p`` in plain operations, float32 or wider: the eager fallback of
    :func:`channel_mean`, and what compiled code traces (``compile``, ``compile_model``)."""
    a = at_least_float32(features).abs()
    return (a if p == 1 else a.pow(p)).mean(dim=1)


def relu_output(module: nn.Module) -> bool:
    """Whether a module's output is an ``nn.ReLU``'s: the module is one, or a
    ``Sequential`` whose last module is (e.g. the book's ``ConvBlock``)."""
    while isinstance(module, nn.Sequential) and len(module) > 0:
        module = module[-1]
    return type(module) is nn.ReLU  # a subclass may change what forward returns


@functools.lru_cache(maxsize=64)
def linear_weights(n_in: int, n_out: int, device: torch.device, dtype: torch.dtype):
    """(n_out, n_in) matrix of 1-D linear interpolation weights, align_corners=False."""
    # Interpolating the identity gives each input's weight at each output; a normal
    # (not inference-mode) tensor, so the cached matrix may be used under autograd later.
    with torch.inference_mode(False), torch.no_grad():
        eye = torch.eye(n_in, device=device, dtype=dtype).unsqueeze(0)  # (1, n_in, n_in)
        w = F.interpolate(eye, size=n_out, mode="linear", align_corners=False)[0]
        return w.t().contiguous()


def bilinear(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(..., H, W) maps resized to ``size`` as ``R_h @ m @ R_w^T`` (bilinear,
    ``align_corners=False``): :func:`atkd_lite.atcam.resize_maps` without its checks."""
    h, w = maps.shape[-2:]
    r_h = linear_weights(int(h), size[0], maps.device, maps.dtype)
    r_w = linear_weights(int(w), size[1], maps.device, maps.dtype)
    return r_h @ maps @ r_w.t()


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
    with float32_if_autocast(raw[0].device):
        for shape, idx in _size_groups(raw).items():
            group = torch.stack([raw[i] for i in idx]) if len(idx) > 1 else raw[idx[0]][None]
            parts.append(group if shape == size else bilinear(group, size))
            order += idx
    stack = parts[0] if len(parts) == 1 else torch.cat(parts)
    if order != sorted(order):  # back to capture order
        stack = stack[[order.index(i) for i in range(len(order))]]
    return stack


def maps_from_raw(raw: list[torch.Tensor], size: tuple[int, int], combine: str):
    """Combined maps (B, H, W) and normalised per-layer maps (L, B, H, W) from raw maps."""
    stack = _resize_stack(raw, size)  # a new tensor, ours to overwrite
    if stack.requires_grad and torch.is_grad_enabled():
        per_layer = min_max_normalize(stack.flatten(0, 1)).view_as(stack)  # all layers at once
        with float32_if_autocast(stack.device):  # what combine_maps computes
            return min_max_normalize(COMBINE[combine](at_least_float32(per_layer))), per_layer
    # no graph: the same operations, in place (no fresh full-size buffers to fault in)
    with float32_if_autocast(stack.device):
        normalize_(stack.flatten(0, 1))
        return normalize_(COMBINE[combine](stack)), stack


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
            weights[shape] = (linear_weights(shape[0], size[0], m.device, m.dtype),
                              linear_weights(shape[1], size[1], m.device, m.dtype))
    return weights


def traceable_maps_from_raw(raw: list[torch.Tensor], size: tuple[int, int], combine: str,
                            weights: dict | None = None):
    """Combined maps (B, H, W) and normalised per-layer maps (L, B, H, W) from the raw
    per-layer maps of :meth:`~atkd_lite.atcam.ATCam.raw_maps`, in out-of-place operations: what
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
        with float32_if_autocast(group.device):  # the products in float32, also under autocast
            if weights is not None:
                r_h, r_w = weights[shape]
                group = r_h @ group @ r_w.t()  # what resize_maps computes
            else:
                group = bilinear(group, size)
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
    return compile_function(plain_channel_mean, mode)


@functools.cache
def compiled_tail(mode: str):
    """The map tail compiled once per mode, shared by every ATCam (compiled lazily)."""
    compiled = compile_function(traceable_maps_from_raw, mode)
    graphs = cuda_graph_mode(mode)

    def tail(raw, size, combine):
        out = compiled(raw, size, combine, resize_weights(raw, size))
        return out_of_graph_pool(out) if graphs else out

    return tail


def out_of_graph_pool(tensors: tuple) -> tuple:
    """Copies of a CUDA-graph replay's outputs: they live in the graph's memory pool and
    are overwritten by its next replay (e.g. the student's maps after the teacher's).
    CPU tensors pass as they are (``benchmarks/gpu_check.py --compile --compile-mode
    reduce-overhead`` runs this path on a GPU)."""
    return tuple(t.clone() if t.is_cuda else t for t in tensors)


def normalize_(maps: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """:func:`~atkd_lite.atcam.normalize_maps` in place (same operations, same numbers); no autograd."""
    lo, _, ok, inv = _min_max(maps, eps)
    return maps.sub_(lo).mul_(inv * ok)


def store_output(store: dict, name: str, reduce: Callable | None, module, args,
                  output) -> None:
    """A forward hook of ``compile_model``: keep the capture point's output, reduced to
    its raw map unless ``reduce`` is None (the last run wins if a module runs twice, as
    in the eager capture)."""
    store[name] = output if reduce is None else reduce(output)


class Reduced(NamedTuple):
    """A capture point's output already reduced inside its hook (see ``ATCam._capture``)."""

    value: torch.Tensor  # the reduced map
    ref: weakref.ref  # the output itself, while something else keeps it alive
    version: int | None  # its version counter when the hook ran (None: not tracked)


class WholeGraph:
    """``ATCam(compile_model=True)``: the network's forward pass, the capture and the maps
    compiled as one graph, in the ATCam's ``compile`` mode.

    Calling it gives ``(logits, maps, per_layer)``, or None while this train/eval mode
    and input size have not yet had the eager call that fixes and checks the capture
    points (and the shapes of their outputs, which the resize weights depend on): the
    ATCam then runs eagerly and :meth:`remember` records what that call checked.
    ``late``: the ATCam's record, per train/eval mode, of the capture points whose
    outputs the network modifies in place after their hook.
    """

    def __init__(self, cam, late: dict):
        self.cam, self.late = cam, late
        self.weights: dict[tuple, dict] = {}  # resize weights per key(), once checked
        self.compiled = None  # made lazily
        self.lock = threading.Lock()

    def __getstate__(self):  # copy/pickle: the lock and compiled code stay behind
        return {k: v for k, v in self.__dict__.items() if k not in ("lock", "compiled")}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.compiled, self.lock = None, threading.Lock()

    def key(self, x: torch.Tensor) -> tuple:
        """What an eager call must have checked before the compiled graph takes ``x``: the
        resize weights live on the input's device in its precision, and the capture
        points modified in place later are learnt per train/eval mode, outside inference
        mode (inference tensors have no version counter: all are then read at the end)."""
        return (bool(self.cam.model.training), torch.is_inference_mode_enabled(), x.device,
                x.dtype, tuple(x.shape[-2:]), self.cam.map_size(x))

    def remember(self, x: torch.Tensor, raw: list[torch.Tensor]) -> None:
        """An eager call checked ``x``'s size: the compiled graph may take it now."""
        self.weights[self.key(x)] = resize_weights(raw, self.cam.map_size(x))

    def __call__(self, x: torch.Tensor):
        cam = self.cam
        weights = self.weights.get(self.key(x))
        if weights is None:
            return None
        with self.lock:  # the hooks write to one store per ATCam
            if self.compiled is None:
                self.compiled = compile_function(self._graph, cam.compile)
            store: dict[str, torch.Tensor] = {}
            # reduced inside its hook, each capture point's mean |A| fuses into the
            # network's kernel that reads the same output (its batch norm, ReLU);
            # reduced after the forward, the output is kept (and copied to another
            # layout): 1.27x instead of 1.05x the compiled network for the generic CNN.
            # An output modified in place after its hook (learnt by the eager call; all of
            # them where it could not tell, under inference mode) is read at the end.
            late = self.late[bool(cam.model.training)]
            late = set(cam.layer_names) if late is None else late
            handles = []
            try:
                for name in cam.layer_names:
                    reduce = None if name in late else self._traced_raw_map
                    handles.append(cam.model.get_submodule(name).register_forward_hook(
                        functools.partial(store_output, store, name, reduce)))
                out = self.compiled(x, store, weights)
            finally:
                for h in handles:
                    h.remove()
        return out_of_graph_pool(out) if cuda_graph_mode(cam.compile) else out

    def _graph(self, x: torch.Tensor, store: dict, weights: dict):
        """What is compiled: the forward pass, whose hooks put each capture point's raw map
        ``mean_c |A|^p`` in ``store`` (or, for an output modified in place after its
        hook, the output itself, reduced here from its final value, as the eager capture
        reads it), then the map tail."""
        cam = self.cam
        logits = model_logits(cam.model(x))
        # a raw map is (B, H, W); a kept output (B, C, H, W), as the eager call checked
        raw = [store[name] if store[name].dim() == 3 else self._traced_raw_map(store[name])
               for name in cam.layer_names]
        maps, per_layer = traceable_maps_from_raw(raw, cam.map_size(x), cam.combine, weights)
        return logits, maps, per_layer

    def _traced_raw_map(self, a: torch.Tensor) -> torch.Tensor:
        """``mean_c |A|^p`` as compiled code computes it (out of place, float32)."""
        with float32_if_autocast(a.device):
            return plain_channel_mean(a, self.cam.p)
