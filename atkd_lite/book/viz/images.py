"""Figures of images and what a network computes on them: image grids, convolution
filters, feature maps, filter responses, and attention, saliency or attribution maps drawn
over their images (the book's chapters "CNN basics" and "Attention maps").

Reached as ``viz.<name>`` (:mod:`atkd_lite.book.viz`). Grayscale images are drawn in
``gray``, signed quantities (filters, responses) in a diverging colour map centred on zero,
maps in :data:`~atkd_lite.book.viz.ATTENTION_CMAP` with a colour bar.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from atkd_lite.book.viz.base import (
    ATTENTION_CMAP,
    MAP_CMAP,
    SIGNED_CMAP,
    finish_figure,
    grid_figure,
    image_list,
    relative_colorbar,
    shared_limits,
    symmetric_limit,
    to_image,
    to_numpy,
)

__all__ = [
    "image_grid",
    "filter_grid",
    "feature_map_grid",
    "filter_responses",
    "filter_response",
    "map_overlays",
    "attribution_grid",
]


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
    arrays = image_list(images)
    if titles is not None and len(titles) != len(arrays):
        raise ValueError(f"{len(titles)} titles for {len(arrays)} images; give one per image")
    fig, axes = grid_figure(len(arrays), ncols, size, extra_height=0.4 if title else 0.0,
                            titled=titles is not None)
    shared = bool(colorbar) and not signed
    if shared:
        vmin, vmax = shared_limits(arrays, vmin, vmax)
    shown = None
    for i, (ax, a) in enumerate(zip(axes, arrays)):
        if signed:
            lim = symmetric_limit(a)
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
    return finish_figure(fig, title, bar)


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
    w = to_numpy(weights)
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
    fig, axes = grid_figure(len(w), ncols, size, extra_height=0.4 if title else 0.0)
    for ax, k in zip(axes, w):
        lim = symmetric_limit(k)
        ax.imshow(k, cmap=SIGNED_CMAP, vmin=-lim, vmax=lim)
        ax.set_xticks([])
        ax.set_yticks([])
    return finish_figure(fig, title, colorbar=relative_colorbar(
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
    a = to_numpy(features)
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
    fig, axes = grid_figure(len(idx), ncols, size, extra_height=0.4 if title else 0.0, titled=True)
    for ax, c in zip(axes, idx):
        ax.imshow(a[c], cmap=MAP_CMAP)
        ax.set_title(f"channel {int(c)}", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    return finish_figure(fig, title, colorbar=relative_colorbar(
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

    arrays = image_list(images)
    if any(a.ndim != 2 for a in arrays):
        raise ValueError("filter_responses takes single-channel images (N, 1, H, W) or (N, H, W)")
    if not kernels:
        raise ValueError("give at least one kernel, e.g. {'vertical edge': [[1, 0, -1]] * 3}")
    ks = {}
    for name, k in kernels.items():
        k = torch.as_tensor(to_numpy(k), dtype=torch.float32)
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
            lim = symmetric_limit(k.numpy())
            axes[r, 0].imshow(k.numpy(), cmap=SIGNED_CMAP, vmin=-lim, vmax=lim)
            axes[r, 0].set_title(name, fontsize=9)
        pad = (k.shape[0] // 2, k.shape[1] // 2)
        for j, a in enumerate(arrays):
            x = torch.as_tensor(a, dtype=torch.float32)[None, None]
            out = F.conv2d(x, k[None, None], padding=pad)[0, 0]
            out = out[: a.shape[0], : a.shape[1]].numpy()  # even kernels give one extra row/col
            lim = symmetric_limit(out)
            axes[r, j + offset].imshow(out, cmap=SIGNED_CMAP, vmin=-lim, vmax=lim)
            if not show_kernels and j == 0:
                axes[r, 0].set_ylabel(name, fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return finish_figure(fig, title, colorbar=relative_colorbar(
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
    k = torch.as_tensor(to_numpy(kernel), dtype=torch.float32)
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
    klim = symmetric_limit(k.numpy())
    axes[1].imshow(k.numpy(), cmap=SIGNED_CMAP, vmin=-klim, vmax=klim)
    if k.numel() <= 25:  # small kernels: write the weights in the cells
        for (r, c), v in np.ndenumerate(k.numpy()):
            color = "white" if abs(v) > 0.6 * klim else "black"
            axes[1].text(c, r, f"{v:.2g}", ha="center", va="center", fontsize=8, color=color)
    axes[1].set_title(name, fontsize=9)
    lim = symmetric_limit(out)
    axes[2].imshow(out, cmap=SIGNED_CMAP, vmin=-lim, vmax=lim)
    axes[2].set_title("response", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    return finish_figure(fig, title, colorbar=relative_colorbar(
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
        cmap: colour map of the map (the book's :data:`~atkd_lite.book.viz.ATTENTION_CMAP`).
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
    ims = image_list(images)
    m = to_numpy(maps)
    if m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3 or len(m) != len(ims):
        raise ValueError(f"need one (H, W) map per image: {len(ims)} images, maps shaped {m.shape}")
    if titles is not None and len(titles) != len(ims):
        raise ValueError(f"{len(titles)} titles for {len(ims)} images; give one per image")
    bx = None if boxes is None else to_numpy(boxes)
    if bx is not None and bx.shape != (len(ims), 4):
        raise ValueError(f"boxes must be shaped ({len(ims)}, 4), got {bx.shape}")
    fig, axes = grid_figure(len(ims), ncols, size, extra_height=0.4 if title else 0.0,
                            titled=titles is not None)
    lo, hi = shared_limits([m], vmin, vmax)
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
    return finish_figure(fig, title, bar)


def attribution_grid(images, rows: Mapping[str, object], titles: Sequence[str] | None = None,
                     size: float = 1.5, title: str | None = None, cmap: str = ATTENTION_CMAP,
                     alpha: float = 0.7, colorbar: bool | str = True) -> Figure:
    """Maps of several methods over the same images, drawn by Captum's visualisation.

    Each panel is ``captum.attr.visualization.visualize_image_attr(map, image,
    method="blended_heat_map", sign="absolute_value")``: the image in grey with the map
    blended over it, Captum's own way of showing an attribution (it clips the top 2 % of
    values, so a single hot pixel does not wash out the rest).  Captum's default colour
    map for absolute values (``Blues``) nearly vanishes over white strokes, hence the
    book's :data:`~atkd_lite.book.viz.ATTENTION_CMAP` at a higher opacity by default, and
    one colour bar on Captum's scale (0 to 1, each map divided by its clipped maximum).

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

    ims = to_numpy(images)
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
        m = to_numpy(maps)
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
    return finish_figure(fig, title, bar)
