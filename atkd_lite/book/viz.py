"""Figures for the book: image grids, filters, feature maps, map overlays, curves, bars.

Every function draws with matplotlib only and **returns the** :class:`~matplotlib.figure.Figure`
(already closed in pyplot, so a notebook shows it exactly once: when it is the value of a
cell, or through ``display(fig)``; a script saves it with ``fig.savefig(path)``). Inputs
may be torch tensors (on any device, with or without gradients), NumPy arrays or lists.

Importing this module in a notebook (IPython kernel) makes every matplotlib Figure that is
a cell's value display as a PNG image, whatever backend the kernel runs
(:func:`show_figures_inline`): a kernel started with ``MPLBACKEND=Agg`` in its
environment, as a test run or a headless build sets it, would otherwise record only the
text ``<Figure size ...>``.

Images are shown in their natural orientation with ``imshow``; grayscale images in
``gray``, signed quantities (filters, filter responses) in a diverging colour map centred
on zero, so that positive and negative weights are easy to tell apart. Every attention,
saliency or attribution map in the book is drawn in one colour map,
:data:`ATTENTION_CMAP`, with a colour bar that says what its colours mean.

Defined in the book's chapter "CNN basics"; later chapters add their figures here.

Examples::

    >>> import torch
    >>> from atkd_lite.book import viz
    >>> fig = viz.image_grid(torch.rand(6, 1, 28, 28), titles=list("abcdef"), ncols=3)
    >>> len(fig.axes)
    6
    >>> fig = viz.filter_grid(torch.randn(8, 1, 3, 3))
    >>> fig.savefig("/tmp/filters.png")   # doctest: +SKIP
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from atkd_lite.metrics import curve_area

__all__ = [
    "ATTENTION_CMAP",
    "bar_chart",
    "figure_png",
    "feature_map_grid",
    "filter_grid",
    "filter_response",
    "filter_responses",
    "image_grid",
    "learning_curves",
    "map_overlays",
    "show_figures_inline",
    "to_image",
    # chapter "Attention maps"
    "attribution_grid",
    "deletion_curves",
    "randomisation_curves",
    # chapters "Teacher and student" and "Knowledge distillation"
    "class_probabilities",
    "confusion_heatmap",
    "footprint_bars",
    "seed_curves",
    "temperature_bars",
    # chapters "Do the maps look at the right place?" and "Efficiency"
    "score_bars",
    "tradeoff_plot",
    # chapters "Efficiency" and "Conclusions": verdicts as one figure
    "difference_plot",
    # appendix "Reading the verdicts"
    "paired_plot",
    "pvalue_plot",
]

#: colour map for signed values (filters, filter responses): blue < 0 < red
SIGNED_CMAP = "RdBu_r"
#: colour map for non-negative maps (feature maps, attention maps)
MAP_CMAP = "viridis"
#: the one colour map of attention, saliency and attribution maps across the book
#: (perceptually uniform, readable in grey and by colour-blind readers)
ATTENTION_CMAP = MAP_CMAP


#: the output types under which IPython can show a Figure as a picture
_IMAGE_MIMES = ("image/png", "image/svg+xml", "image/jpeg", "application/pdf")


def figure_png(fig: Figure, dpi: float | None = None) -> bytes:
    """The figure as PNG bytes, trimmed as a notebook shows it (``bbox_inches="tight"``)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi or fig.dpi, bbox_inches="tight")
    return buf.getvalue()


def show_figures_inline(shell=None) -> bool:
    """Make a notebook show every :class:`~matplotlib.figure.Figure` value as a PNG image.

    Jupyter's kernel shows figures through matplotlib's *inline* backend, which it
    selects only when the environment names no other: a kernel started from a shell with
    ``MPLBACKEND=Agg`` (as test runs and headless builds set it) runs Agg, and a figure
    returned by a cell is then recorded as the text ``<Figure size 640x480 with 1 Axes>``
    alone — the book's pages would show that text where the figure should be. This
    registers a PNG formatter for Figure objects with the kernel's display system, which
    works under any backend, so chapters executed by Jupyter, ``jupyter execute``, nbval
    or Colab all record the picture. Called when this module is imported.

    Nothing changes where the kernel can already show figures (the inline backend, or a
    user's own ``%config InlineBackend.figure_formats``), or outside IPython.

    Args:
        shell: the IPython shell (default: the running one, if any).

    Returns:
        bool: True if a formatter was registered now.

    Examples::

        >>> from atkd_lite.book.viz import show_figures_inline
        >>> show_figures_inline(shell=object())   # no IPython display system: nothing to do
        False
        >>> show_figures_inline()   # doctest: +SKIP
        False                       # in a notebook: done already when viz was imported
    """
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:  # no IPython: figures are saved, never displayed
            return False
        shell = get_ipython()
    formatters = getattr(getattr(shell, "display_formatter", None), "formatters", None)
    if not formatters or "image/png" not in formatters:
        return False  # a plain terminal IPython has no image formatters to extend
    if any(mime in formatters and Figure in formatters[mime] for mime in _IMAGE_MIMES):
        return False
    formatters["image/png"].for_type(Figure, figure_png)
    return True


def to_image(x) -> np.ndarray:
    """One image as a NumPy array for ``imshow``: (H, W) or (H, W, 3).

    Accepts (H, W), (1, H, W), (3, H, W), (H, W, 3) tensors or arrays; a channel-first
    colour image is moved to channel-last.

    Raises:
        ValueError: for any other shape.
    """
    a = _numpy(x)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    elif a.ndim == 3 and a.shape[0] == 3 and a.shape[-1] != 3:
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 2 or (a.ndim == 3 and a.shape[-1] == 3):
        return a
    raise ValueError(
        f"cannot show an array shaped {a.shape} as an image; give (H, W), (1, H, W), "
        "(3, H, W) or (H, W, 3)"
    )


def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, maybe on a GPU or requiring grad
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64) if not isinstance(x, np.ndarray) else x


def _as_list(images) -> list[np.ndarray]:
    """A batch (N, ...) or a sequence of images -> list of displayable arrays."""
    if hasattr(images, "float_images"):  # an ImageSet
        images = images.float_images()
    if isinstance(images, Sequence) and not isinstance(images, (str, bytes)):
        items = list(images)
    else:
        a = _numpy(images)
        if a.ndim == 2:  # a single image
            items = [a]
        elif a.ndim in (3, 4):
            items = list(a)
        else:
            raise ValueError(
                f"expected a batch of images shaped (N, C, H, W) or (N, H, W), got {a.shape}"
            )
    if not items:
        raise ValueError("no images to show (the batch is empty)")
    return [to_image(im) for im in items]


def _grid(n: int, ncols: int | None, size: float, extra_height: float = 0.0,
          titled: bool = False):
    ncols = max(1, min(n, ncols or n))
    nrows = math.ceil(n / ncols)
    row_height = size + (0.3 if titled else 0.0)  # room for the panel titles
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, row_height * nrows + extra_height),
                             squeeze=False)
    plt.close(fig)  # returned, not left in pyplot (no double display in notebooks)
    for ax in axes.flat[n:]:
        ax.remove()
    return fig, list(axes.flat[:n])


def _finish(fig: Figure, title: str | None, colorbar=None) -> Figure:
    """Title and layout; ``colorbar=(mappable, label)`` adds one bar at the right.

    ``colorbar=(mappable, label, {value: tick text})`` writes those ticks on the bar
    (a bar whose colours mean "relative to each panel's own range", see
    :func:`_relative_colorbar`).
    """
    if title:
        fig.suptitle(title)
    if colorbar is None:
        fig.tight_layout()
        return fig
    # widen the figure by a fixed strip for the bar, lay the panels out left of it
    width, height = fig.get_size_inches()
    strip = 0.85
    fig.set_size_inches(width + strip, height)
    total = width + strip
    fig.tight_layout(rect=(0, 0, width / total, 1))
    cax = fig.add_axes((width / total + 0.08 / total, 0.15, 0.14 / total, 0.7))
    mappable, label, *ticks = colorbar
    bar = fig.colorbar(mappable, cax=cax)
    if ticks:
        bar.set_ticks(list(ticks[0]), labels=list(ticks[0].values()))
    bar.set_label(label, fontsize=8)
    bar.ax.tick_params(labelsize=7)
    return fig


def _relative_colorbar(signed: bool, label: str):
    """A colour bar for panels that each use their own colour range.

    Signed panels (filters, filter responses) are centred on zero, each scaled to its own
    largest ``|value|``; non-negative ones (feature maps) run from each panel's minimum to
    its maximum. One bar with the ticks "−max / 0 / +max" or "min / max" says so.
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    if signed:
        norm, ticks = Normalize(-1, 1), {-1: "−max", 0: "0", 1: "+max"}
    else:
        norm, ticks = Normalize(0, 1), {0: "min", 1: "max"}
    return ScalarMappable(norm=norm, cmap=SIGNED_CMAP if signed else MAP_CMAP), label, ticks


def _shared_limits(arrays, vmin, vmax) -> tuple[float, float]:
    """One colour scale for all panels: [0, 1] for maps in it, else their joint range."""
    lo = min(float(np.min(a)) for a in arrays) if vmin is None else vmin
    hi = max(float(np.max(a)) for a in arrays) if vmax is None else vmax
    if vmin is None and vmax is None and lo >= 0 and hi <= 1:
        lo, hi = 0.0, 1.0
    return lo, hi


def _symmetric_limit(a: np.ndarray) -> float:
    lim = float(np.abs(a).max()) if a.size else 0.0
    return lim if lim > 0 else 1.0


def image_grid(images, titles: Sequence[str] | None = None, ncols: int | None = 8,
               cmap: str = "gray", size: float = 1.5, title: str | None = None,
               signed: bool = False, vmin: float | None = None,
               vmax: float | None = None, colorbar: bool | str = False) -> Figure:
    """A grid of images (digits, maps, filter responses).

    Args:
        images: a batch (N, C, H, W) / (N, H, W), a single (H, W) image, or a list of images
            of possibly different sizes.
        titles: one title per image (e.g. labels).
        ncols: images per row (default 8).
        cmap: colour map for single-channel images (default ``gray``).
        size: inches per image.
        title: figure title.
        signed: show each image in a diverging colour map centred on zero (for responses
            that can be negative); overrides ``cmap``, ``vmin`` and ``vmax``.
        vmin, vmax: fixed colour limits for all images (default: each image's own range).
        colorbar: one colour bar for all panels (True, or its label as a string); the
            panels then share one colour scale (``vmin``/``vmax``, else [0, 1] for maps in
            it, else their joint range). Use it with ``cmap=ATTENTION_CMAP`` for maps.

    Returns:
        Figure: one axis per image (and one for the colour bar).

    Examples::

        >>> import torch
        >>> from atkd_lite.book.viz import image_grid, ATTENTION_CMAP
        >>> image_grid(torch.rand(3, 28, 28), titles=["0", "1", "2"]).axes[1].get_title()
        '1'
        >>> len(image_grid(torch.rand(3, 7, 7), cmap=ATTENTION_CMAP, colorbar=True).axes)
        4
    """
    arrays = _as_list(images)
    if titles is not None and len(titles) != len(arrays):
        raise ValueError(f"{len(titles)} titles for {len(arrays)} images; give one per image")
    fig, axes = _grid(len(arrays), ncols, size, extra_height=0.4 if title else 0.0,
                      titled=titles is not None)
    shared = bool(colorbar) and not signed
    if shared:
        vmin, vmax = _shared_limits(arrays, vmin, vmax)
    shown = None
    for i, (ax, a) in enumerate(zip(axes, arrays)):
        if signed:
            lim = _symmetric_limit(a)
            ax.imshow(a, cmap=SIGNED_CMAP, vmin=-lim, vmax=lim)
        else:
            shown = ax.imshow(a, cmap=cmap, vmin=vmin, vmax=vmax)
        ax.set_xticks([])
        ax.set_yticks([])
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=9)
    bar = None
    if shared and shown is not None:
        bar = (shown, colorbar if isinstance(colorbar, str) else "value")
    return _finish(fig, title, bar)


def filter_grid(weights, ncols: int = 8, title: str | None = None, size: float = 1.0,
                channel: int | None = None) -> Figure:
    """Convolution filters as small images, red for positive and blue for negative weights.

    Args:
        weights: a conv layer's weight (out_channels, in_channels, kh, kw), or
            (N, kh, kw) / a single (kh, kw) kernel.
        ncols: filters per row.
        title: figure title.
        size: inches per filter.
        channel: which input channel to show for multi-channel filters (default: the
            mean over input channels; grayscale first layers have only one).

    Returns:
        Figure: one axis per filter, each with its own symmetric colour range, and a
        colour bar that says so (red positive, blue negative).

    Examples::

        >>> import torch
        >>> from atkd_lite.book.viz import filter_grid
        >>> len(filter_grid(torch.nn.Conv2d(1, 16, 3).weight).axes)  # and the colour bar
        17
    """
    w = _numpy(weights)
    if w.ndim == 2:
        w = w[None]
    elif w.ndim == 4:
        if channel is None:
            w = w.mean(axis=1)
        elif not 0 <= channel < w.shape[1]:
            raise ValueError(f"channel={channel} but the filters have {w.shape[1]} input channels")
        else:
            w = w[:, channel]
    elif w.ndim != 3:
        raise ValueError(
            f"expected conv weights (out, in, kh, kw), (N, kh, kw) or (kh, kw), got {w.shape}"
        )
    fig, axes = _grid(len(w), ncols, size, extra_height=0.4 if title else 0.0)
    for ax, k in zip(axes, w):
        lim = _symmetric_limit(k)
        ax.imshow(k, cmap=SIGNED_CMAP, vmin=-lim, vmax=lim)
        ax.set_xticks([])
        ax.set_yticks([])
    return _finish(fig, title, colorbar=_relative_colorbar(
        True, "weight (each filter\nto its largest |w|)"))


def feature_map_grid(features, max_maps: int = 16, ncols: int = 8, title: str | None = None,
                     size: float = 1.2, order: str = "index") -> Figure:
    """The channels of one image's feature map A (C, H, W) as a grid of small maps.

    Args:
        features: (C, H, W), or (1, C, H, W) for a batch of one.
        max_maps: show at most this many channels.
        ncols: maps per row.
        title: figure title.
        size: inches per map.
        order: ``"index"`` (channels 0, 1, 2, ...) or ``"energy"`` (the channels with the
            largest mean ``|A|`` first, i.e. the most active ones).

    Returns:
        Figure: one axis per shown channel, titled with its channel index, and a colour
        bar (each map is drawn from its own minimum to its own maximum).
    """
    a = _numpy(features)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 3:
        raise ValueError(
            f"expected one image's feature map (C, H, W) or (1, C, H, W), got {a.shape}; "
            "index the batch first, e.g. features[0]"
        )
    if order == "index":
        idx = np.arange(a.shape[0])
    elif order == "energy":
        idx = np.argsort(-np.abs(a).mean(axis=(1, 2)), kind="stable")
    else:
        raise ValueError(f"order must be 'index' or 'energy', got {order!r}")
    idx = idx[:max(1, max_maps)]
    fig, axes = _grid(len(idx), ncols, size, extra_height=0.4 if title else 0.0, titled=True)
    for ax, c in zip(axes, idx):
        ax.imshow(a[c], cmap=MAP_CMAP)
        ax.set_title(f"channel {int(c)}", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    return _finish(fig, title, colorbar=_relative_colorbar(
        False, "activation (each map\nfrom its min to its max)"))


def filter_responses(images, kernels: Mapping[str, object], titles: Sequence[str] | None = None,
                     size: float = 1.6, title: str | None = None,
                     show_kernels: bool = False) -> Figure:
    """Images (top row) and their responses to each kernel (one row per kernel).

    Each response is ``F.conv2d`` (cross-correlation) of the image with the kernel, padded
    so that it keeps the image's size, shown in a diverging colour map centred on zero.

    Args:
        images: a batch of single-channel images (N, 1, H, W) or (N, H, W), or one (H, W).
        kernels: name -> 2-D kernel (kh, kw).
        titles: one title per image (e.g. labels).
        size: inches per panel.
        title: figure title.
        show_kernels: add a first column that shows each kernel's weights.

    Returns:
        Figure: a (1 + len(kernels)) × N grid (one more column with ``show_kernels``).

    Examples::

        >>> import torch
        >>> from atkd_lite.book.viz import filter_responses
        >>> k = {"vertical edge": torch.tensor([[1., 0, -1]] * 3)}
        >>> len(filter_responses(torch.rand(4, 1, 28, 28), k).axes)  # and the colour bar
        9
    """
    import torch
    import torch.nn.functional as F

    arrays = _as_list(images)
    if any(a.ndim != 2 for a in arrays):
        raise ValueError("filter_responses takes single-channel images (N, 1, H, W) or (N, H, W)")
    if not kernels:
        raise ValueError("give at least one kernel, e.g. {'vertical edge': [[1, 0, -1]] * 3}")
    ks = {}
    for name, k in kernels.items():
        k = torch.as_tensor(_numpy(k), dtype=torch.float32)
        if k.dim() != 2:
            raise ValueError(f"kernel {name!r} must be 2-D (kh, kw), got shape {tuple(k.shape)}")
        ks[name] = k
    if titles is not None and len(titles) != len(arrays):
        raise ValueError(f"{len(titles)} titles for {len(arrays)} images; give one per image")
    ncols = len(arrays) + int(show_kernels)
    nrows = 1 + len(ks)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + (0.4 if title else 0)),
                             squeeze=False)
    plt.close(fig)
    offset = int(show_kernels)
    if show_kernels:
        axes[0, 0].axis("off")
        axes[0, 0].text(0.5, 0.5, "input", ha="center", va="center", fontsize=9)
    for j, a in enumerate(arrays):
        ax = axes[0, j + offset]
        ax.imshow(a, cmap="gray")
        if titles is not None:
            ax.set_title(str(titles[j]), fontsize=9)
    for r, (name, k) in enumerate(ks.items(), start=1):
        if show_kernels:
            lim = _symmetric_limit(k.numpy())
            axes[r, 0].imshow(k.numpy(), cmap=SIGNED_CMAP, vmin=-lim, vmax=lim)
            axes[r, 0].set_title(name, fontsize=9)
        pad = (k.shape[0] // 2, k.shape[1] // 2)
        for j, a in enumerate(arrays):
            x = torch.as_tensor(a, dtype=torch.float32)[None, None]
            out = F.conv2d(x, k[None, None], padding=pad)[0, 0]
            out = out[: a.shape[0], : a.shape[1]].numpy()  # even kernels give one extra row/col
            lim = _symmetric_limit(out)
            axes[r, j + offset].imshow(out, cmap=SIGNED_CMAP, vmin=-lim, vmax=lim)
            if not show_kernels and j == 0:
                axes[r, 0].set_ylabel(name, fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return _finish(fig, title, colorbar=_relative_colorbar(
        True, "response (each panel\nto its largest |value|)"))


def filter_response(image, kernel, name: str = "kernel", size: float = 2.0,
                    title: str | None = None) -> Figure:
    """One image, one kernel, and the response: three panels side by side.

    The response is ``F.conv2d`` (cross-correlation) with "same" padding, in a diverging
    colour map centred on zero (red: positive, blue: negative).

    Args:
        image: a single-channel image (H, W) or (1, H, W).
        kernel: a 2-D kernel (kh, kw).
        name: the kernel's name (panel title).
        size: inches per panel.
        title: figure title.

    Returns:
        Figure: three axes (input, kernel, response).

    Examples::

        >>> import torch
        >>> from atkd_lite.book.viz import filter_response
        >>> fig = filter_response(torch.rand(28, 28), torch.tensor([[1., 0, -1]] * 3), "vertical")
        >>> [ax.get_title() for ax in fig.axes[:3]]
        ['input', 'vertical', 'response']
    """
    import torch
    import torch.nn.functional as F

    a = to_image(image)
    k = torch.as_tensor(_numpy(kernel), dtype=torch.float32)
    if a.ndim != 2 or k.dim() != 2:
        raise ValueError(
            f"need a single-channel image and a 2-D kernel, got {a.shape} and {tuple(k.shape)}"
        )
    x = torch.as_tensor(a, dtype=torch.float32)[None, None]
    out = F.conv2d(x, k[None, None], padding=(k.shape[0] // 2, k.shape[1] // 2))[0, 0]
    out = out[: a.shape[0], : a.shape[1]].numpy()
    fig, axes = plt.subplots(1, 3, figsize=(3 * size, size + 0.3 + (0.3 if title else 0)))
    plt.close(fig)
    axes[0].imshow(a, cmap="gray")
    axes[0].set_title("input", fontsize=9)
    klim = _symmetric_limit(k.numpy())
    axes[1].imshow(k.numpy(), cmap=SIGNED_CMAP, vmin=-klim, vmax=klim)
    if k.numel() <= 25:  # small kernels: write the weights in the cells
        for (r, c), v in np.ndenumerate(k.numpy()):
            color = "white" if abs(v) > 0.6 * klim else "black"
            axes[1].text(c, r, f"{v:.2g}", ha="center", va="center", fontsize=8, color=color)
    axes[1].set_title(name, fontsize=9)
    lim = _symmetric_limit(out)
    axes[2].imshow(out, cmap=SIGNED_CMAP, vmin=-lim, vmax=lim)
    axes[2].set_title("response", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    return _finish(fig, title, colorbar=_relative_colorbar(
        True, "kernel, response\n(each to its largest |value|)"))


def map_overlays(images, maps, titles: Sequence[str] | None = None, ncols: int | None = 8,
                 alpha: float = 0.5, cmap: str = ATTENTION_CMAP, size: float = 1.6,
                 title: str | None = None, boxes=None, colorbar: bool | str = True,
                 vmin: float | None = None, vmax: float | None = None) -> Figure:
    """Attention (or saliency) maps drawn over their images.

    Args:
        images: (N, C, H, W) or (N, H, W) images.
        maps: (N, H, W) or (N, 1, H, W) maps, shown in ``cmap`` with transparency
            ``alpha``, all on one colour scale (``vmin``/``vmax``; default [0, 1] for
            maps in it, as ATCam's are, else their joint range).
        titles: one title per image.
        ncols: panels per row.
        alpha: opacity of the map.
        cmap: colour map of the map (the book's :data:`ATTENTION_CMAP`).
        size: inches per panel.
        title: figure title.
        boxes: optional (N, 4) boxes ``(x0, y0, x1, y1)`` (end-exclusive, as in
            ``ImageSet.boxes``) drawn as white rectangles: where the map should look.
        colorbar: one colour bar for all panels (True, or its label as a string);
            none where every map is constant (nothing to read from it).
        vmin, vmax: the colour scale's limits.

    Returns:
        Figure: one axis per image (and one for the colour bar).

    Examples::

        >>> import torch
        >>> from atkd_lite.book.viz import map_overlays
        >>> fig = map_overlays(torch.rand(2, 1, 28, 28), torch.rand(2, 28, 28))
        >>> len(fig.axes), fig.axes[0].images[1].get_clim()
        (3, (0.0, 1.0))
    """
    ims = _as_list(images)
    m = _numpy(maps)
    if m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3 or len(m) != len(ims):
        raise ValueError(f"need one (H, W) map per image: {len(ims)} images, maps shaped {m.shape}")
    if titles is not None and len(titles) != len(ims):
        raise ValueError(f"{len(titles)} titles for {len(ims)} images; give one per image")
    bx = None if boxes is None else _numpy(boxes)
    if bx is not None and bx.shape != (len(ims), 4):
        raise ValueError(f"boxes must be shaped ({len(ims)}, 4), got {bx.shape}")
    fig, axes = _grid(len(ims), ncols, size, extra_height=0.4 if title else 0.0,
                      titled=titles is not None)
    lo, hi = _shared_limits([m], vmin, vmax)
    shown = None
    for i, ax in enumerate(axes):
        im = ims[i]
        h, w = im.shape[:2]
        ax.imshow(im, cmap="gray")
        # extent stretches a map of another resolution over the whole image
        shown = ax.imshow(m[i], cmap=cmap, alpha=alpha, vmin=lo, vmax=hi,
                          extent=(-0.5, w - 0.5, h - 0.5, -0.5))
        if bx is not None:
            x0, y0, x1, y1 = bx[i]
            ax.add_patch(matplotlib.patches.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0,
                                                      fill=False, edgecolor="white", lw=1.2))
        ax.set_xticks([])
        ax.set_yticks([])
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=9)
    bar = None
    if colorbar and shown is not None and float(m.max()) > float(m.min()):
        # the bar shows the map's colours at full strength (the overlay is see-through)
        solid = matplotlib.cm.ScalarMappable(norm=shown.norm, cmap=shown.get_cmap())
        bar = (solid, colorbar if isinstance(colorbar, str) else "map value")
    return _finish(fig, title, bar)


#: axis labels for the metrics of a training history
_METRIC_WORDS = {"test_acc": "test accuracy", "train_acc": "training accuracy",
                 "val_acc": "validation accuracy", "train_loss": "training loss"}


def learning_curves(histories: Mapping[str, object], key: str = "test_acc",
                    ylabel: str | None = None, title: str | None = None,
                    size: tuple[float, float] = (5.5, 3.2), percent: bool | None = None) -> Figure:
    """One line per run: a metric against the epoch.

    Args:
        histories: run name -> a :class:`~atkd_lite.engine.History` (``history[key]``), a
            dict of lists, or a plain list of values (one per epoch).
        key: the metric to plot, e.g. ``"test_acc"`` or ``"train_loss"``.
        ylabel: axis label (default: ``key`` in words, e.g. "test accuracy (%)").
        title: figure title.
        size: figure size in inches.
        percent: show values as percentages (default: when ``key`` ends in ``acc``).

    Returns:
        Figure: a single axis with one line per run and a legend.

    Examples::

        >>> from atkd_lite.book.viz import learning_curves
        >>> fig = learning_curves({"student": [0.5, 0.7, 0.8], "kd": [0.6, 0.8, 0.85]})
        >>> [line.get_label() for line in fig.axes[0].get_lines()]
        ['student', 'kd']
    """
    if not histories:
        raise ValueError("no runs to plot; give {name: history}")
    percent = key.endswith("acc") if percent is None else percent
    fig, ax = plt.subplots(figsize=size)
    plt.close(fig)
    for name, h in histories.items():
        values = h if isinstance(h, (list, tuple, np.ndarray)) else h[key]
        values = np.asarray([np.nan if v is None else v for v in values], dtype=float)
        if percent:
            values = 100 * values
        ax.plot(np.arange(1, len(values) + 1), values, marker="o", ms=3, label=str(name))
    ax.set_xlabel("epoch")
    words = _METRIC_WORDS.get(key, key.replace("_", " "))
    ax.set_ylabel(ylabel or (f"{words} (%)" if percent else words))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _finish(fig, title)


def bar_chart(values: Mapping[str, float], errors: Mapping[str, float] | None = None,
              ylabel: str = "", title: str | None = None, fmt: str = "{:.3g}",
              size: tuple[float, float] | None = None, ylim: tuple[float, float] | None = None,
              highlight: Sequence[str] = (),
              reference: Mapping[str, float] | None = None) -> Figure:
    """Bars with their values written on top (e.g. accuracy per method).

    Args:
        values: label -> value, drawn in the given order.
        errors: optional label -> error bar half-width (e.g. a standard deviation).
        ylabel: axis label.
        title: figure title.
        fmt: format of the value labels.
        size: figure size (default grows with the number of bars).
        ylim: y-axis limits (default: from zero, or fitted when all values are negative).
        highlight: labels whose bars are drawn in a second colour.
        reference: optional name -> value of horizontal dashed lines to compare the bars
            with (e.g. ``{"plain forward": 1.0}``), named in a legend.

    Returns:
        Figure: a single axis.

    Examples::

        >>> from atkd_lite.book.viz import bar_chart
        >>> fig = bar_chart({"student": 0.91, "fma": 0.93}, ylabel="accuracy")
        >>> len(fig.axes[0].patches)
        2
    """
    if not values:
        raise ValueError("no values to plot; give {label: value}")
    labels = [str(k) for k in values]
    heights = np.asarray(list(values.values()), dtype=float)
    err = None
    if errors is not None:
        err = np.asarray([errors.get(k, 0.0) for k in values], dtype=float)
    fig, ax = plt.subplots(figsize=size or (1.0 + 0.9 * len(labels), 3.2))
    plt.close(fig)
    colors = ["C1" if k in highlight else "C0" for k in labels]
    bars = ax.bar(labels, heights, yerr=err, color=colors, capsize=3)
    ax.bar_label(bars, labels=[fmt.format(v) for v in heights], fontsize=8, padding=2)
    ax.set_ylabel(ylabel)
    for i, (name, value) in enumerate((reference or {}).items()):
        ax.axhline(value, color=f"C{3 + i}", linestyle="--", linewidth=1, label=str(name))
    if reference:
        ax.legend(fontsize=8, loc="upper left")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.margins(y=0.15)
    ax.grid(axis="y", alpha=0.3)
    if len(labels) > 5:
        ax.tick_params(axis="x", labelrotation=30)
    return _finish(fig, title)


# ---------------------------------------------------------------------------------------
# Chapter "Attention maps": deletion curves, and maps drawn with Captum's visualisation

def deletion_curves(curves: Mapping[str, object], fractions: Sequence[float],
                    title: str | None = None, size: tuple[float, float] = (7.5, 3.4),
                    highlight: Sequence[str] = (),
                    xlabel: str = "most-attended pixels deleted (%)",
                    ylabel: str = "probability of the class (%)") -> Figure:
    """A score against the fraction of deleted (or inserted) pixels, one line per map.

    Args:
        curves: map name -> scores (0–1), one per fraction, e.g. from
            :func:`atkd_lite.metrics.deletion_curve` or
            :func:`atkd_lite.metrics.insertion_curve`.
        fractions: the deleted fractions (0–1), shared by all curves.
        title: figure title.
        size: figure size in inches.
        highlight: names drawn dashed in grey (e.g. a random baseline).
        xlabel, ylabel: axis labels (e.g. "... inserted" for insertion curves).

    Returns:
        Figure: a single axis; the legend gives each curve's area under the curve
        (:func:`atkd_lite.metrics.curve_area`, the mean score over the fractions).

    Examples::

        >>> from atkd_lite.book.viz import deletion_curves
        >>> fig = deletion_curves({"fma": [0.99, 0.6, 0.2], "random": [0.99, 0.97, 0.9]},
        ...                       [0.0, 0.1, 0.3], highlight=["random"])
        >>> [line.get_label() for line in fig.axes[0].get_lines()]
        ['fma (AUC 0.53)', 'random (AUC 0.95)']
    """
    if not curves:
        raise ValueError("no curves to plot; give {name: scores}")
    xs = 100 * np.asarray(list(fractions), dtype=float)
    fig, ax = plt.subplots(figsize=size)
    plt.close(fig)
    for name, accs in curves.items():
        a = _numpy(accs).astype(float).ravel()
        if a.shape != xs.shape:
            raise ValueError(f"curve {name!r} has {a.size} values for {xs.size} fractions")
        auc = curve_area(xs, a)
        style = {"color": "0.5", "ls": "--"} if name in highlight else {}
        ax.plot(xs, 100 * a, marker="o", ms=3, label=f"{name} (AUC {auc:.2f})", **style)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))  # off the curves
    return _finish(fig, title)


def randomisation_curves(rows: Sequence[Mapping[str, object]], kinds: Sequence[str],
                         labels: Mapping[str, str] | None = None, title: str | None = None,
                         size: tuple[float, float] = (7.5, 3.4)) -> Figure:
    """How much each map still resembles the trained model's as layers are randomised.

    Args:
        rows: the result of :func:`atkd_lite.attributions.model_randomisation` (one row
            per step: ``step``, ``layer`` and a rank correlation per kind).
        kinds: the kinds to draw, one line each.
        labels: optional kind -> legend label.
        title: figure title.
        size: figure size in inches.

    Returns:
        Figure: rank correlation with the trained model's map (y) against the layers
        randomised so far, from the top (x).

    Examples::

        >>> from atkd_lite.book.viz import randomisation_curves
        >>> rows = [{"step": 0, "layer": None, "a": 1.0}, {"step": 1, "layer": "fc", "a": 0.2}]
        >>> ax = randomisation_curves(rows, ["a"]).axes[0]
        >>> [line.get_label() for line in ax.get_lines() if line.get_label() == "a"]
        ['a']
    """
    if not rows or not kinds:
        raise ValueError("give the rows of model_randomisation and at least one kind")
    labels = labels or {}
    fig, ax = plt.subplots(figsize=size)
    plt.close(fig)
    steps = [r["step"] for r in rows]
    for kind in kinds:
        ax.plot(steps, [r[kind] for r in rows], marker="o", ms=3, label=labels.get(kind, kind))
    ax.set_xticks(steps, ["trained"] + [str(r["layer"]).replace("features.", "")
                                        for r in rows[1:]], rotation=45, ha="right",
                  fontsize=7)
    ax.set_xlabel("layers randomised, from the top (cumulative)")
    ax.set_ylabel("rank correlation with\nthe trained model's map")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_ylim(-0.3, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return _finish(fig, title)


def attribution_grid(images, rows: Mapping[str, object], titles: Sequence[str] | None = None,
                     size: float = 1.5, title: str | None = None, cmap: str = ATTENTION_CMAP,
                     alpha: float = 0.7, colorbar: bool | str = True) -> Figure:
    """Maps of several methods over the same images, drawn by Captum's visualisation.

    Each panel is ``captum.attr.visualization.visualize_image_attr(map, image,
    method="blended_heat_map", sign="absolute_value")``: the image in grey with the map
    blended over it, Captum's own way of showing an attribution (it clips the top 2 % of
    values, so a single hot pixel does not wash out the rest).  Captum's default colour
    map for absolute values (``Blues``) nearly vanishes over white strokes, hence the
    book's :data:`ATTENTION_CMAP` at a higher opacity by default, and one colour bar on
    Captum's scale (0 to 1, each map divided by its clipped maximum).

    Args:
        images: (N, C, H, W) images.
        rows: row name (the method) -> maps for the N images, (N, H, W) or (N, 1, H, W).
        titles: one title per column (image).
        size: inches per panel.
        title: figure title.
        cmap: colour map of the attribution (passed to Captum).
        alpha: opacity of the attribution over the image (Captum's ``alpha_overlay``).
        colorbar: one colour bar on Captum's scale (True, or its label as a string).

    Returns:
        Figure: len(rows) × N panels (and one axis for the colour bar); each row is
        labelled with its method.
    """
    from captum.attr import visualization as captum_viz

    ims = _numpy(images)
    if ims.ndim != 4:
        raise ValueError(f"images must be a batch (N, C, H, W), got shape {ims.shape}")
    n = len(ims)
    if not rows:
        raise ValueError("give at least one row: {method: maps}")
    if titles is not None and len(titles) != n:
        raise ValueError(f"{len(titles)} titles for {n} images; give one per image")
    fig, axes = plt.subplots(len(rows), n, figsize=(size * n + 0.6, size * len(rows)
                                                    + (0.4 if title else 0)), squeeze=False)
    plt.close(fig)
    for r, (name, maps) in enumerate(rows.items()):
        m = _numpy(maps)
        if m.ndim == 4 and m.shape[1] == 1:
            m = m[:, 0]
        if m.shape != (n, *ims.shape[2:]):
            raise ValueError(f"row {name!r}: need maps shaped {(n, *ims.shape[2:])}, "
                             f"got {m.shape}")
        for j in range(n):
            ax = axes[r, j]
            image = np.moveaxis(ims[j], 0, -1)  # Captum wants (H, W, C)
            if np.abs(m[j]).max() > 0:
                captum_viz.visualize_image_attr(m[j][..., None], image, method="blended_heat_map",
                                                sign="absolute_value", plt_fig_axis=(fig, ax),
                                                use_pyplot=False, cmap=cmap,
                                                alpha_overlay=alpha)
            else:  # Captum cannot normalise an all-zero map: show the image alone
                ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.axis("on")
            for spine in ax.spines.values():
                spine.set_visible(False)
            if j == 0:
                ax.set_ylabel(str(name), fontsize=9)
            if r == 0 and titles is not None:
                ax.set_title(str(titles[j]), fontsize=9)
    bar = None
    if colorbar:
        scale = matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(0, 1), cmap=cmap)
        bar = (scale, colorbar if isinstance(colorbar, str)
               else "attribution (Captum's scale)")
    return _finish(fig, title, bar)


# ---------------------------------------------------------------------------------------
# Chapters "Teacher and student" and "Knowledge distillation": model footprints,
# confusion matrices, soft targets at several temperatures, curves over seeds

#: how footprint_bars labels the entries of atkd_lite.cost.footprint
FOOTPRINT_LABELS = {
    "parameters": "parameters",
    "size_kb": "size (kB)",
    "multiply_adds": "multiply-adds per image",
    "latency_ms": "CPU latency per image (ms)",
}


def _short(v: float) -> str:
    """1234567 -> '1.23M', 6274 -> '6.27k', 0.5 -> '0.5'."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{unit}"
    return f"{v:.3g}"


def footprint_bars(footprints: Mapping[str, Mapping[str, float]],
                   metrics: Sequence[str] | None = None, log: bool = True,
                   size: tuple[float, float] | None = None, title: str | None = None) -> Figure:
    """One panel per metric (parameters, size, multiply-adds, latency), one bar per model.

    Under each bar after the first: its value as a fraction (``1/46``) or a multiple
    (``3×``) of the first model's.

    Args:
        footprints: model name -> dict of metrics, e.g. from
            :func:`atkd_lite.cost.footprint`.
        metrics: which metrics to draw (default: all of the first model's, in order).
        log: logarithmic y axes (the models differ by orders of magnitude).
        size: figure size (default: 2.6 inches per panel, more for more than three
            models).
        title: figure title.

    Returns:
        Figure: one axis per metric.

    Examples::

        >>> from atkd_lite.book.viz import footprint_bars
        >>> fig = footprint_bars({"teacher": {"parameters": 288170},
        ...                       "student": {"parameters": 6274}})
        >>> fig.axes[0].get_title()
        'parameters'
    """
    if not footprints:
        raise ValueError("no models to compare; give {name: {metric: value}}")
    names = list(footprints)
    metrics = list(metrics or footprints[names[0]])
    missing = [(n, m) for n in names for m in metrics if m not in footprints[n]]
    if missing:
        raise ValueError(f"missing values (model, metric): {missing}")
    # wide enough per panel that the models' names do not run into each other
    panel = max(2.6, 0.55 + 0.62 * len(names))
    fig, axes = plt.subplots(1, len(metrics), figsize=size or (panel * len(metrics), 3.0),
                             squeeze=False)
    plt.close(fig)
    for ax, metric in zip(axes[0], metrics):
        values = np.asarray([float(footprints[n][metric]) for n in names])
        bars = ax.bar(names, values, color=[f"C{i}" for i in range(len(names))])
        ratios = [_short(v) if i == 0 or values[0] == 0 or v == 0 else
                  f"{_short(v)}\n(1/{values[0] / v:.3g})" if v < values[0] else
                  f"{_short(v)}\n({v / values[0]:.3g}×)" for i, v in enumerate(values)]
        ax.bar_label(bars, labels=ratios, fontsize=8, padding=2)
        if log and (values > 0).all():
            ax.set_yscale("log")
            ax.set_ylim(values.min() / 3, values.max() * 8)
        else:
            ax.margins(y=0.3)
        ax.set_title(FOOTPRINT_LABELS.get(metric, metric), fontsize=9)
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    return _finish(fig, title)


def confusion_heatmap(cm, classes: Sequence[str] | None = None, title: str | None = None,
                      percent: bool | None = None, hide_diagonal: bool = False,
                      size: float = 4.2, cmap: str = "Blues",
                      xlabel: str = "predicted class") -> Figure:
    """A confusion matrix (rows: true class, columns: predicted class) with its numbers.

    Args:
        cm: ``(K, K)`` counts (:func:`atkd_lite.book.predictions.confusion_matrix`) or
            probabilities (:func:`atkd_lite.book.predictions.soft_confusion`).
        classes: class names (default ``0 … K-1``).
        title: figure title.
        percent: write cells as percentages (default: when ``cm`` is not integer).
        hide_diagonal: leave the diagonal blank and colour only the off-diagonal cells,
            so that the (small) confusions are visible next to a large diagonal.
        size: figure width and height in inches.
        cmap: colour map.
        xlabel: what the columns are (e.g. "soft target's class" for soft targets);
            " (%)" is added when the cells are percentages.

    Returns:
        Figure: a single axis; zero cells are left blank.

    Examples::

        >>> import torch
        >>> from atkd_lite.book.viz import confusion_heatmap
        >>> fig = confusion_heatmap(torch.tensor([[5, 1], [0, 4]]))
        >>> fig.axes[0].get_ylabel()
        'true class'
    """
    a = _numpy(cm).astype(float)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"need a square (K, K) matrix, got shape {a.shape}")
    k = a.shape[0]
    classes = [str(c) for c in (classes if classes is not None else range(k))]
    if len(classes) != k:
        raise ValueError(f"{len(classes)} class names for a {k}×{k} matrix")
    if percent is None:
        percent = not np.allclose(a, np.round(a))
    shown = a.copy()
    if hide_diagonal:
        np.fill_diagonal(shown, np.nan)
    fig, ax = plt.subplots(figsize=(size, size))
    plt.close(fig)
    vmax = float(np.nanmax(shown)) if np.isfinite(shown).any() else 1.0
    ax.imshow(np.where(shown > 0, shown, np.nan), cmap=cmap, vmin=0, vmax=vmax or 1.0)
    for i in range(k):
        for j in range(k):
            v = shown[i, j]
            if not np.isfinite(v) or v <= 0:
                continue
            text = f"{100 * v:.0f}" if percent else f"{v:.0f}"
            if percent and 100 * v < 0.5:
                continue  # "0" would be noise
            ax.text(j, i, text, ha="center", va="center", fontsize=7,
                    color="white" if v > 0.6 * vmax else "black")
    ax.set_xticks(range(k), classes, fontsize=8)
    ax.set_yticks(range(k), classes, fontsize=8)
    ax.set_xlabel(xlabel + (" (%)" if percent else ""))
    ax.set_ylabel("true class")
    return _finish(fig, title)


def _prob_bars(ax, probs: np.ndarray, classes: Sequence[str], highlight: int | None,
               ymax: float | None = 1.0) -> None:
    colors = ["C1" if c == highlight else "C0" for c in range(len(probs))]
    ax.bar(range(len(probs)), probs, color=colors)
    ax.set_xticks(range(len(probs)), classes, fontsize=7)
    ax.tick_params(axis="y", labelsize=7)
    if ymax is not None:
        ax.set_ylim(0, ymax)
    ax.grid(axis="y", alpha=0.3)


def temperature_bars(logits, temperatures: Sequence[float], image=None, label: int | None = None,
                     classes: Sequence[str] | None = None, size: float = 2.2,
                     title: str | None = None) -> Figure:
    """``softmax(z / T)`` of one example's logits ``z`` for several temperatures T.

    Args:
        logits: ``(K,)`` logits of one example.
        temperatures: the T values, one panel each.
        image: optional image of the example, drawn first.
        label: optional true class, drawn in a second colour.
        classes: class names (default ``0 … K-1``).
        size: inches per panel.
        title: figure title.

    Returns:
        Figure: (image panel and) one bar panel per temperature, titled with T and the
        entropy of the distribution in bits.

    Examples::

        >>> import torch
        >>> from atkd_lite.book.viz import temperature_bars
        >>> fig = temperature_bars(torch.tensor([4.0, 1.0, 0.0]), [1, 10])
        >>> len(fig.axes)
        2
    """
    z = _numpy(logits).astype(float)
    if z.ndim == 2 and z.shape[0] == 1:
        z = z[0]
    if z.ndim != 1:
        raise ValueError(f"give the logits of one example, shaped (K,), got {z.shape}")
    temps = [float(t) for t in temperatures]
    if not temps or min(temps) <= 0:
        raise ValueError(f"temperatures must be positive numbers, got {temperatures!r}")
    classes = [str(c) for c in (classes if classes is not None else range(len(z)))]
    n = len(temps) + (image is not None)
    fig, axes = plt.subplots(1, n, figsize=(size * n, size * 0.95), squeeze=False)
    plt.close(fig)
    axes = list(axes[0])
    if image is not None:
        ax = axes.pop(0)
        ax.imshow(to_image(_numpy(image)), cmap="gray")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title("input" if label is None else f"label {classes[label]}", fontsize=9)
    for ax, t in zip(axes, temps):
        p = np.exp((z - z.max()) / t)
        p /= p.sum()
        entropy = -(p * np.log2(np.clip(p, 1e-300, None))).sum()
        _prob_bars(ax, p, classes, label)
        ax.set_title(f"T = {t:g}\nentropy {entropy:.2f} bits", fontsize=8)
        ax.set_xlabel("class", fontsize=7)
    axes[0].set_ylabel("probability" + ("\n(orange: label)" if label is not None else ""),
                       fontsize=8)
    return _finish(fig, title)


def class_probabilities(images, probs, labels: Sequence[int] | None = None,
                        classes: Sequence[str] | None = None,
                        titles: Sequence[str] | None = None, size: float = 1.9,
                        title: str | None = None, ymax: float | None = 1.0) -> Figure:
    """Images with a model's class probabilities underneath (one column per image).

    Args:
        images: ``(N, C, H, W)`` / ``(N, H, W)`` images.
        probs: ``(N, K)`` probabilities.
        labels: true classes, drawn in a second colour.
        classes: class names (default ``0 … K-1``).
        titles: one title per image.
        size: inches per column.
        title: figure title.
        ymax: upper limit of the probability axes (None: each its own).

    Returns:
        Figure: two rows (images, bars) of N axes.
    """
    ims = _as_list(images)
    p = _numpy(probs).astype(float)
    if p.ndim != 2 or len(p) != len(ims):
        raise ValueError(f"need probabilities shaped ({len(ims)}, K), got {p.shape}")
    for name, seq in (("labels", labels), ("titles", titles)):
        if seq is not None and len(seq) != len(ims):
            raise ValueError(f"{len(seq)} {name} for {len(ims)} images; give one per image")
    classes = [str(c) for c in (classes if classes is not None else range(p.shape[1]))]
    n = len(ims)
    fig, axes = plt.subplots(2, n, figsize=(size * n, 2 * size + 0.2), squeeze=False,
                             gridspec_kw={"height_ratios": [1.1, 1]})
    plt.close(fig)
    for i in range(n):
        ax = axes[0, i]
        ax.imshow(ims[i], cmap="gray")
        ax.set_xticks([])
        ax.set_yticks([])
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=8)
        _prob_bars(axes[1, i], p[i], classes, None if labels is None else int(labels[i]), ymax)
        axes[1, i].set_xlabel("class", fontsize=7)
    axes[1, 0].set_ylabel("probability" + ("\n(orange: label)" if labels is not None else ""),
                          fontsize=8)
    return _finish(fig, title)


def seed_curves(groups: Mapping[str, Sequence[Sequence[float]]], ylabel: str = "test accuracy (%)",
                title: str | None = None, percent: bool = True,
                size: tuple[float, float] = (5.5, 3.2), ylim: tuple[float, float] | None = None
                ) -> Figure:
    """Per group: the mean curve over seeds, with the range of the seeds as a band.

    Args:
        groups: name -> one sequence of per-epoch values per seed (e.g. the test
            accuracies of each seed's run).
        ylabel: axis label.
        title: figure title.
        percent: multiply the values by 100.
        size: figure size in inches.
        ylim: y-axis limits.

    Returns:
        Figure: a single axis, one line and band per group.

    Examples::

        >>> from atkd_lite.book.viz import seed_curves
        >>> fig = seed_curves({"student": [[0.5, 0.8], [0.6, 0.9]]})
        >>> [line.get_label() for line in fig.axes[0].get_lines()]
        ['student (2 seeds)']
    """
    if not groups:
        raise ValueError("no runs to plot; give {name: [values per epoch, per seed]}")
    fig, ax = plt.subplots(figsize=size)
    plt.close(fig)
    for i, (name, runs) in enumerate(groups.items()):
        lengths = {len(r) for r in runs}
        if len(lengths) != 1 or 0 in lengths:
            raise ValueError(f"the runs of {name!r} must have the same, non-zero number of "
                             f"epochs, got {sorted(lengths)}")
        a = np.asarray(runs, dtype=float) * (100 if percent else 1)
        epochs = np.arange(1, a.shape[1] + 1)
        ax.plot(epochs, a.mean(0), color=f"C{i}", marker="o", ms=3,
                label=f"{name} ({len(a)} seed{'s' if len(a) > 1 else ''})")
        ax.fill_between(epochs, a.min(0), a.max(0), color=f"C{i}", alpha=0.2, lw=0)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _finish(fig, title)


# ---------------------------------------------------------------------------------------
# Chapters "Do the maps look at the right place?" and "Efficiency": map scores per model
# and map kind, and the size/latency/accuracy trade-off

def score_bars(scores: Mapping[str, Mapping[str, float]],
               errors: Mapping[str, Mapping[str, float]] | None = None,
               ylabel: str = "", chance: float | None = None, title: str | None = None,
               size: tuple[float, float] | None = None, percent: bool = True,
               group_labels: Mapping[str, str] | None = None) -> Figure:
    """Grouped bars: one group per map kind, one bar per model (e.g. energy in the box).

    Args:
        scores: model -> {group (map kind) -> value}; models are drawn in the given order.
        errors: optional model -> {group -> error bar half-width} (e.g. std over seeds).
        ylabel: axis label.
        chance: draw a dashed line at this value (the chance level), if given.
        title: figure title.
        size: figure size in inches (default grows with the number of groups).
        percent: multiply values (and errors, chance) by 100.
        group_labels: optional group -> label on the x axis.

    Returns:
        Figure: a single axis with a legend of the models.

    Examples::

        >>> from atkd_lite.book.viz import score_bars
        >>> fig = score_bars({"teacher": {"fma": 0.9, "ig": 0.7},
        ...                   "student": {"fma": 0.8, "ig": 0.6}}, chance=0.1)
        >>> len(fig.axes[0].patches)
        4
    """
    if not scores:
        raise ValueError("no scores to plot; give {model: {kind: value}}")
    models = list(scores)
    groups = list(dict.fromkeys(g for m in models for g in scores[m]))
    k = 100.0 if percent else 1.0
    # narrow enough per group that ten groups fit the book's column at a readable scale
    fig, ax = plt.subplots(figsize=size or (1.6 + 0.9 * len(groups), 3.4))
    plt.close(fig)
    width = 0.8 / len(models)
    xs = np.arange(len(groups))
    others = iter(range(10**6))
    for i, model in enumerate(models):
        vals = [k * scores[model].get(g, np.nan) for g in groups]
        err = None
        if errors is not None and model in errors:
            err = [k * errors[model].get(g, 0.0) for g in groups]
        special = {"teacher": "0.15", "student": "0.6"}
        color = special.get(model) or f"C{next(others) % 10}"
        ax.bar(xs + (i - (len(models) - 1) / 2) * width, vals, width, yerr=err,
               label=str(model), color=color, capsize=2, error_kw={"lw": 0.8})
    if chance is not None:
        ax.axhline(k * chance, color="k", ls="--", lw=1, label="chance")
    labels = [group_labels.get(g, g) for g in groups] if group_labels else groups
    ax.set_xticks(xs, labels, rotation=20 if len(groups) > 4 else 0, ha="right"
                  if len(groups) > 4 else "center", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=min(len(models) + 1, 4), loc="upper left",
              bbox_to_anchor=(0, -0.22 if len(groups) > 4 else -0.12))
    fig.tight_layout()
    return _finish(fig, title)


def tradeoff_plot(points: Sequence[Mapping[str, object]], x: str = "latency_ms",
                  y: str = "accuracy", xlabel: str | None = None,
                  ylabel: str = "test accuracy (%)", logx: bool = True,
                  title: str | None = None, size: tuple[float, float] = (5.5, 3.6),
                  lines: bool = True) -> Figure:
    """Accuracy against a cost (latency, parameters, bytes), one labelled point per model.

    Args:
        points: dicts with ``name``, the ``x`` key, the ``y`` key (a fraction, shown in
            %), optionally ``y + "_std"`` (error bar) and ``group`` (points of one group
            share a colour and are joined by a line, e.g. one method across sizes).
        x, y: the keys to plot.
        xlabel, ylabel: axis labels (xlabel defaults to ``x``).
        logx: logarithmic x axis (costs span orders of magnitude).
        title: figure title.
        size: figure size in inches.
        lines: join the points of a group (False: a plain scatter plot).

    Returns:
        Figure: a single axis.

    Examples::

        >>> from atkd_lite.book.viz import tradeoff_plot
        >>> fig = tradeoff_plot([{"name": "tiny", "latency_ms": 0.1, "accuracy": 0.9},
        ...                      {"name": "teacher", "latency_ms": 1.0, "accuracy": 0.99}])
        >>> [t.get_text() for t in fig.axes[0].texts]
        ['tiny', 'teacher']
    """
    if not points:
        raise ValueError("no points to plot; give [{'name': ..., x: ..., y: ...}]")
    fig, ax = plt.subplots(figsize=size)
    plt.close(fig)
    groups = list(dict.fromkeys(p.get("group", p["name"]) for p in points))
    labelled: set[str] = set()
    for gi, g in enumerate(groups):
        pts = [p for p in points if p.get("group", p["name"]) == g]
        xs = [float(p[x]) for p in pts]
        ys = [100 * float(p[y]) for p in pts]
        err = [100 * float(p.get(f"{y}_std", 0.0)) for p in pts]
        ax.errorbar(xs, ys, yerr=err, marker="o", ms=5, capsize=3, lw=1,
                    ls="-" if lines and len(pts) > 1 else "none", color=f"C{gi % 10}",
                    label=str(g))
        for p, xv, yv in zip(pts, xs, ys):
            if str(p["name"]) not in labelled:  # one label per name (groups share names)
                labelled.add(str(p["name"]))
                ax.annotate(str(p["name"]), (xv, yv), textcoords="offset points",
                            xytext=(5, -10), fontsize=8)
    if logx:
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both")
    if len(groups) > 1:
        ax.legend(fontsize=8, loc="lower right")
    return _finish(fig, title)


# ---------------------------------------------------------------------------------------
# Chapters "Efficiency" and "Conclusions": a family of verdicts as one figure

#: colour of each verdict of :mod:`atkd_lite.experiments.stats`
VERDICT_COLOURS = {"better": "C2", "worse": "C3", "equivalent": "C0"}


def difference_plot(rows, scale: float = 100.0, unit: str = "points",
                    title: str | None = None, width: float = 7.5,
                    xlabel: str | None = None, margin: float | None = None,
                    margin_label: str = "equivalence margin") -> Figure:
    """Paired differences with their intervals, one line per comparison (a forest plot).

    Each comparison is a dot at its mean paired difference with a bar for its confidence
    interval (adjusted over its family, as the rows carry it), coloured by its verdict
    (green "better", red "worse", blue "equivalent", grey otherwise), the verdict written
    at the right; a vertical line marks zero. A family whose rows declare an equivalence
    margin (:mod:`atkd_lite.experiments.questions`) gets its band ``±m`` shaded. Rows come from
    :func:`atkd_lite.experiments.stats.compare_methods` or ``compare_pairs``, which
    decide the family, the interval and the verdict: this only draws them.

    Args:
        rows: a list of comparison rows (keys ``method``, ``baseline``, ``diff``,
            ``ci_low``, ``ci_high``, ``verdict``), or a mapping ``heading -> rows`` to
            draw several families one under the other, each under its heading.
        scale: multiplies differences (100: fractions shown as percentage points).
        unit: the unit of the scaled differences, for the axis label.
        title: figure title.
        width: figure width in inches (the height grows with the number of rows).
        xlabel: axis label (default: the difference and its interval, in ``unit``).
        margin: an equivalence margin ``m`` (unscaled, like the rows' differences):
            the band ``−m … +m`` is shaded and named under the axis (rows that carry a
            ``margin`` get theirs shaded behind their family without it).
        margin_label: the band's name under the axis.

    Returns:
        Figure: one axis; rows from top to bottom in the given order.

    Examples::

        >>> from atkd_lite.book.viz import difference_plot
        >>> row = {"method": "kd", "baseline": "student", "diff": 0.027,
        ...        "ci_low": 0.021, "ci_high": 0.033, "verdict": "better"}
        >>> fig = difference_plot({"low data": [row]})
        >>> [t.get_text() for t in fig.axes[0].get_yticklabels()]
        ['kd vs student']
    """
    groups = dict(rows) if isinstance(rows, Mapping) else {None: list(rows)}
    if not any(groups.values()):
        raise ValueError("no comparisons to draw; give the rows of compare_methods()")
    lines: list[tuple[str, dict | None]] = []  # (text, row) from the top; row None: heading
    bands: list[tuple[float, int, int]] = []  # (margin, first line, last line) per group
    for heading, group in groups.items():
        if heading is not None:
            lines.append((str(heading), None))
        start = len(lines)
        for r in group:
            missing = {"method", "baseline", "diff", "ci_low", "ci_high", "verdict"} - set(r)
            if missing:
                raise ValueError(f"a comparison row lacks {sorted(missing)}; give the rows "
                                 "of atkd_lite.experiments.stats.compare_methods()")
            lines.append((f"{r['method']} vs {r['baseline']}", r))
        declared = {r.get("margin") for r in group} - {None}
        if margin is None and len(declared) == 1:
            bands.append((declared.pop(), start, len(lines) - 1))
    fig, ax = plt.subplots(figsize=(width, 0.8 + 0.32 * len(lines)))
    plt.close(fig)
    ticks, labels = [], []
    for i, (text, r) in enumerate(lines):
        y = len(lines) - 1 - i
        if r is None:
            ax.text(0.01, y, text, transform=ax.get_yaxis_transform(), ha="left",
                    va="center", fontsize=8, fontweight="bold", zorder=5,
                    bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
            continue
        colour = VERDICT_COLOURS.get(r["verdict"], "0.45")
        d, lo, hi = (scale * float(r[k]) for k in ("diff", "ci_low", "ci_high"))
        ax.errorbar(d, y, xerr=[[d - lo], [hi - d]], fmt="o", color=colour, capsize=3,
                    markersize=5)
        verdict = {"no detectable difference at this sample size": "no detectable diff.",
                   "inconclusive at this sample size": "inconclusive"}.get(
                       r["verdict"], r["verdict"])
        ax.text(1.01, y, verdict, transform=ax.get_yaxis_transform(), va="center",
                fontsize=7, color=colour)
        ticks.append(y)
        labels.append(text)
    ax.set_yticks(ticks, labels, fontsize=8)
    ax.set_ylim(-0.7, len(lines) - 0.3)
    ax.axvline(0, color="black", linewidth=0.8)
    shaded = set()
    if margin is not None:
        ax.axvspan(-scale * margin, scale * margin, color="C0", alpha=0.12, zorder=0)
        shaded.add(margin)
    for m, first, last in bands:  # the margins the rows declare, behind their family
        top, bottom = len(lines) - 1 - first + 0.4, len(lines) - 1 - last - 0.4
        ax.fill_betweenx([bottom, top], -scale * m, scale * m, color="C0", alpha=0.12,
                         zorder=0, linewidth=0)
        shaded.add(m)
    ax.grid(axis="x", alpha=0.3)
    label = xlabel or (f"difference ({unit}): mean over pairs, bar = confidence interval "
                       "adjusted over its family")
    if shaded and xlabel is None:  # named under the axis, where it hides no row
        label += "\nshaded: " + ", ".join(f"{margin_label} ±{scale * m:g} {unit}"
                                          for m in sorted(shaded))
    ax.set_xlabel(label)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 0.86, 1))  # the verdicts stand right of the axis
    return fig


def paired_plot(a: Mapping, b: Mapping, names: tuple[str, str] = ("a", "b"),
                scale: float = 100.0, unit: str = "points", confidence: float = 0.95,
                title: str | None = None, size: tuple[float, float] = (8.0, 3.4)) -> Figure:
    """Two methods run on the same seeds: the pairs, and their differences.

    Left: each seed's value for both methods, joined by a line (the slope shows how much
    of the spread the seed explains). Right: the per-seed differences ``a − b``, their
    mean and its confidence interval (Student t), with zero marked, as
    :func:`atkd_lite.experiments.stats.paired_comparison` computes them.

    Args:
        a, b: ``seed -> value`` for each method (the same seeds).
        names: the two methods' names.
        scale: multiplies the values (100: fractions drawn as percentages).
        unit: the unit of the scaled differences.
        confidence: the interval's level.
        title: figure title.
        size: figure size in inches.

    Returns:
        Figure: two axes.

    Examples::

        >>> from atkd_lite.book.viz import paired_plot
        >>> fig = paired_plot({0: 0.90, 1: 0.92, 2: 0.91}, {0: 0.88, 1: 0.91, 2: 0.88},
        ...                   names=("kd", "student"))
        >>> len(fig.axes)
        2
    """
    from atkd_lite.experiments.stats import paired_comparison

    seeds = sorted(a, key=str)
    if set(seeds) != set(b) or len(seeds) < 2:
        raise ValueError("give both methods' values for the same seeds, at least two")
    xa = scale * np.array([float(a[k]) for k in seeds])
    xb = scale * np.array([float(b[k]) for k in seeds])
    d = xa - xb
    row = paired_comparison(a, b, confidence=confidence)  # the book's one protocol
    mean, lo, hi = (scale * row[k] for k in ("diff", "ci_low", "ci_high"))
    fig, (left, right) = plt.subplots(1, 2, figsize=size,
                                      gridspec_kw={"width_ratios": [1.2, 1]})
    plt.close(fig)
    for va, vb in zip(xa, xb):
        left.plot([0, 1], [vb, va], color="0.6", linewidth=0.8, marker="o", markersize=4)
    left.set_xticks([0, 1], [names[1], names[0]])
    left.set_xlim(-0.4, 1.4)
    left.set_ylabel("value per seed" + (" (%)" if scale == 100 else ""))
    left.set_title("one line per seed", fontsize=9)
    left.grid(axis="y", alpha=0.3)
    jitter = np.linspace(-0.08, 0.08, len(d))
    right.scatter(jitter, d, color="0.4", s=14, label="one seed's difference")
    right.errorbar([0.3], [mean], yerr=[[mean - lo], [hi - mean]], fmt="o", color="C0",
                   capsize=4,
                   label=f"mean, {confidence:.0%} CI")
    right.axhline(0, color="black", linewidth=0.8)
    right.set_xlim(-0.3, 0.6)
    right.set_xticks([])
    right.set_ylabel(f"{names[0]} − {names[1]} ({unit})")
    right.set_title("the paired differences", fontsize=9)
    right.legend(fontsize=7, loc="best")
    right.grid(axis="y", alpha=0.3)
    return _finish(fig, title)


def pvalue_plot(rows, alpha: float = 0.05, title: str | None = None,
                width: float = 7.0) -> Figure:
    """Each comparison's p-value before and after the Holm adjustment of its family.

    One line per comparison of ``rows`` (:func:`~atkd_lite.experiments.stats.compare_methods`
    rows, keys ``p`` and ``p_holm``), sorted by the raw p-value: a hollow dot for the raw
    p, a filled one for the adjusted p, joined by an arrow, on a logarithmic axis with
    ``alpha`` marked. A comparison is "detected" when its filled dot is left of the line.

    Args:
        rows: comparison rows of one family.
        alpha: the family's level.
        title: figure title.
        width: figure width in inches.

    Returns:
        Figure: one axis.

    Examples::

        >>> from atkd_lite.book.viz import pvalue_plot
        >>> rows = [{"method": "kd", "baseline": "student", "p": 0.001, "p_holm": 0.002},
        ...         {"method": "fma", "baseline": "student", "p": 0.04, "p_holm": 0.04}]
        >>> [t.get_text() for t in pvalue_plot(rows).axes[0].get_yticklabels()]  # from the top
        ['kd vs student', 'fma vs student']
    """
    rows = sorted(rows, key=lambda r: r["p"])
    if not rows:
        raise ValueError("no comparisons to draw; give the rows of compare_methods()")
    fig, ax = plt.subplots(figsize=(width, 0.9 + 0.3 * len(rows)))
    plt.close(fig)
    floor = 1e-6  # p-values below this are drawn at it
    for i, r in enumerate(rows):
        y = len(rows) - 1 - i
        raw, adj = max(r["p"], floor), max(r["p_holm"], floor)
        colour = "C2" if adj < alpha else "0.45"
        ax.annotate("", xy=(adj, y), xytext=(raw, y),
                    arrowprops={"arrowstyle": "->", "color": colour, "lw": 0.8})
        ax.plot(raw, y, "o", markerfacecolor="white", markeredgecolor=colour, markersize=5)
        ax.plot(adj, y, "o", color=colour, markersize=5)
    ax.set_yticks(range(len(rows))[::-1], [f"{r['method']} vs {r['baseline']}" for r in rows],
                  fontsize=8)
    ax.set_xscale("log")
    ax.set_xlim(floor / 2, 2)
    ax.axvline(alpha, color="C3", linestyle="--", linewidth=1, label=f"α = {alpha:g}")
    ax.plot([], [], "o", markerfacecolor="white", markeredgecolor="0.45", label="raw p")
    ax.plot([], [], "o", color="0.45", label="Holm-adjusted p")
    ax.legend(fontsize=7, loc="lower left")
    ax.set_xlabel("p-value (log scale; left of the dashed line: detected)")
    ax.grid(axis="x", alpha=0.3)
    return _finish(fig, title)


show_figures_inline()  # a figure returned by a chapter cell is recorded as a picture
