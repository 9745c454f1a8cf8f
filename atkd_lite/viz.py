"""Figures for the book: image grids, filters, feature maps, map overlays, curves, bars.

Every function draws with matplotlib only and **returns the** :class:`~matplotlib.figure.Figure`
(already closed in pyplot, so a notebook shows it exactly once: when it is the value of a
cell, or through ``display(fig)``; a script saves it with ``fig.savefig(path)``). Inputs
may be torch tensors (on any device, with or without gradients), NumPy arrays or lists.

Images are shown in their natural orientation with ``imshow``; grayscale images in
``gray``, signed quantities (filters, filter responses) in a diverging colour map centred
on zero, so that positive and negative weights are easy to tell apart.

Defined in the book's chapter "CNN basics"; later chapters add their figures here.

Examples::

    >>> import torch
    >>> from atkd_lite import viz
    >>> fig = viz.image_grid(torch.rand(6, 1, 28, 28), titles=list("abcdef"), ncols=3)
    >>> len(fig.axes)
    6
    >>> fig = viz.filter_grid(torch.randn(8, 1, 3, 3))
    >>> fig.savefig("/tmp/filters.png")   # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib
import matplotlib.pyplot as plt  # also wires notebooks' inline display of Figure objects
import numpy as np
from matplotlib.figure import Figure

__all__ = [
    "bar_chart",
    "feature_map_grid",
    "filter_grid",
    "filter_response",
    "filter_responses",
    "image_grid",
    "learning_curves",
    "map_overlays",
    "to_image",
]

#: colour map for signed values (filters, filter responses): blue < 0 < red
SIGNED_CMAP = "RdBu_r"
#: colour map for non-negative maps (feature maps, attention maps)
MAP_CMAP = "viridis"


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


def _finish(fig: Figure, title: str | None) -> Figure:
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _symmetric_limit(a: np.ndarray) -> float:
    lim = float(np.abs(a).max()) if a.size else 0.0
    return lim if lim > 0 else 1.0


def image_grid(images, titles: Sequence[str] | None = None, ncols: int | None = 8,
               cmap: str = "gray", size: float = 1.5, title: str | None = None,
               signed: bool = False, vmin: float | None = None,
               vmax: float | None = None) -> Figure:
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

    Returns:
        Figure: one axis per image.

    Examples::

        >>> import torch
        >>> from atkd_lite.viz import image_grid
        >>> image_grid(torch.rand(3, 28, 28), titles=["0", "1", "2"]).axes[1].get_title()
        '1'
    """
    arrays = _as_list(images)
    if titles is not None and len(titles) != len(arrays):
        raise ValueError(f"{len(titles)} titles for {len(arrays)} images; give one per image")
    fig, axes = _grid(len(arrays), ncols, size, extra_height=0.4 if title else 0.0,
                      titled=titles is not None)
    for i, (ax, a) in enumerate(zip(axes, arrays)):
        if signed:
            lim = _symmetric_limit(a)
            ax.imshow(a, cmap=SIGNED_CMAP, vmin=-lim, vmax=lim)
        else:
            ax.imshow(a, cmap=cmap, vmin=vmin, vmax=vmax)
        ax.set_xticks([])
        ax.set_yticks([])
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=9)
    return _finish(fig, title)


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
        Figure: one axis per filter, each with its own symmetric colour range.

    Examples::

        >>> import torch
        >>> from atkd_lite.viz import filter_grid
        >>> len(filter_grid(torch.nn.Conv2d(1, 16, 3).weight).axes)
        16
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
    return _finish(fig, title)


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
            largest mean |A| first, i.e. the most active ones).

    Returns:
        Figure: one axis per shown channel, titled with its channel index.
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
        ax.set_title(f"#{int(c)}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    return _finish(fig, title)


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
        >>> from atkd_lite.viz import filter_responses
        >>> k = {"vertical edge": torch.tensor([[1., 0, -1]] * 3)}
        >>> len(filter_responses(torch.rand(4, 1, 28, 28), k).axes)
        8
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
    return _finish(fig, title)


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
        >>> from atkd_lite.viz import filter_response
        >>> fig = filter_response(torch.rand(28, 28), torch.tensor([[1., 0, -1]] * 3), "vertical")
        >>> [ax.get_title() for ax in fig.axes]
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
    return _finish(fig, title)


def map_overlays(images, maps, titles: Sequence[str] | None = None, ncols: int | None = 8,
                 alpha: float = 0.5, cmap: str = "jet", size: float = 1.6,
                 title: str | None = None, boxes=None) -> Figure:
    """Attention (or saliency) maps drawn over their images.

    Args:
        images: (N, C, H, W) or (N, H, W) images.
        maps: (N, H, W) or (N, 1, H, W) maps, shown in ``cmap`` with transparency
            ``alpha`` (values are shown as given; ATCam maps are already in [0, 1]).
        titles: one title per image.
        ncols: panels per row.
        alpha: opacity of the map.
        cmap: colour map of the map.
        size: inches per panel.
        title: figure title.
        boxes: optional (N, 4) boxes ``(x0, y0, x1, y1)`` (end-exclusive, as in
            ``ImageSet.boxes``) drawn as white rectangles: where the map should look.

    Returns:
        Figure: one axis per image.
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
    for i, ax in enumerate(axes):
        im = ims[i]
        h, w = im.shape[:2]
        ax.imshow(im, cmap="gray")
        # extent stretches a map of another resolution over the whole image
        ax.imshow(m[i], cmap=cmap, alpha=alpha, extent=(-0.5, w - 0.5, h - 0.5, -0.5))
        if bx is not None:
            x0, y0, x1, y1 = bx[i]
            ax.add_patch(matplotlib.patches.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0,
                                                      fill=False, edgecolor="white", lw=1.2))
        ax.set_xticks([])
        ax.set_yticks([])
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=9)
    return _finish(fig, title)


def learning_curves(histories: Mapping[str, object], key: str = "test_acc",
                    ylabel: str | None = None, title: str | None = None,
                    size: tuple[float, float] = (5.5, 3.2), percent: bool | None = None) -> Figure:
    """One line per run: a metric against the epoch.

    Args:
        histories: run name -> a :class:`~atkd_lite.train.History` (``history[key]``), a
            dict of lists, or a plain list of values (one per epoch).
        key: the metric to plot, e.g. ``"test_acc"`` or ``"train_loss"``.
        ylabel: axis label (default: ``key``).
        title: figure title.
        size: figure size in inches.
        percent: show values as percentages (default: when ``key`` ends in ``acc``).

    Returns:
        Figure: a single axis with one line per run and a legend.

    Examples::

        >>> from atkd_lite.viz import learning_curves
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
    ax.set_ylabel(ylabel or (f"{key} (%)" if percent else key))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _finish(fig, title)


def bar_chart(values: Mapping[str, float], errors: Mapping[str, float] | None = None,
              ylabel: str = "", title: str | None = None, fmt: str = "{:.3g}",
              size: tuple[float, float] | None = None, ylim: tuple[float, float] | None = None,
              highlight: Sequence[str] = ()) -> Figure:
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

    Returns:
        Figure: a single axis.

    Examples::

        >>> from atkd_lite.viz import bar_chart
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
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.margins(y=0.15)
    ax.grid(axis="y", alpha=0.3)
    if len(labels) > 5:
        ax.tick_params(axis="x", labelrotation=30)
    return _finish(fig, title)
