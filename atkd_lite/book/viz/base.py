"""What every figure module of :mod:`atkd_lite.book.viz` shares: the colour maps, a figure
as PNG bytes (and as a notebook's picture of a Figure value), and the steps every figure
takes (inputs to NumPy arrays and images, a grid of panels, a title, layout and colour
bar).

The figures themselves live in :mod:`~atkd_lite.book.viz.images`,
:mod:`~atkd_lite.book.viz.training`, :mod:`~atkd_lite.book.viz.scores` and
:mod:`~atkd_lite.book.viz.verdicts`; a chapter reaches all of them as ``viz.<name>``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

__all__ = [
    "ATTENTION_CMAP",
    "MAP_CMAP",
    "SIGNED_CMAP",
    "figure_png",
    "finish_figure",
    "grid_figure",
    "image_list",
    "relative_colorbar",
    "shared_limits",
    "show_figures_inline",
    "symmetric_limit",
    "to_image",
    "to_numpy",
]

#: colour map for signed values (filters, filter responses), blue < 0 < red
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
    or Colab all record the picture. Called when :mod:`atkd_lite.book.viz` is
    imported.

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
    a = to_numpy(x)
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


def to_numpy(x) -> np.ndarray:
    """``x`` as a NumPy array; a torch tensor is detached, made float and moved to the CPU.

    Examples::

        >>> import torch
        >>> to_numpy(torch.ones(2, requires_grad=True))
        array([1., 1.], dtype=float32)
    """
    if hasattr(x, "detach"):  # a torch tensor, maybe on a GPU or requiring grad
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64) if not isinstance(x, np.ndarray) else x


def image_list(images) -> list[np.ndarray]:
    """A batch (N, ...), an ImageSet or a sequence of images -> list of displayable arrays.

    Each item goes through :func:`to_image`.

    Raises:
        ValueError: for an empty batch, or a batch of another shape.
    """
    if hasattr(images, "float_images"):  # an ImageSet
        images = images.float_images()
    if isinstance(images, Sequence) and not isinstance(images, (str, bytes)):
        items = list(images)
    else:
        a = to_numpy(images)
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


def grid_figure(n: int, ncols: int | None, size: float, extra_height: float = 0.0,
                titled: bool = False):
    """A figure with ``n`` panels, ``ncols`` to a row (default: all in one), closed in pyplot.

    Args:
        n: the number of panels.
        ncols: panels per row (at most ``n``).
        size: inches per panel.
        extra_height: inches added for a figure title.
        titled: leave room above each panel for its title.

    Returns:
        tuple: the Figure and a list of its ``n`` axes (the unused cells of the last row
        removed).
    """
    ncols = max(1, min(n, ncols or n))
    nrows = math.ceil(n / ncols)
    row_height = size + (0.3 if titled else 0.0)  # room for the panel titles
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, row_height * nrows + extra_height),
                             squeeze=False)
    plt.close(fig)  # returned, not left in pyplot (no double display in notebooks)
    for ax in axes.flat[n:]:
        ax.remove()
    return fig, list(axes.flat[:n])


def finish_figure(fig: Figure, title: str | None, colorbar=None) -> Figure:
    """Title and layout, the last step of every figure; ``colorbar=(mappable, label)``
    adds one bar at the right.

    ``colorbar=(mappable, label, {value: tick text})`` writes those ticks on the bar
    (a bar whose colours mean "relative to each panel's own range", see
    :func:`relative_colorbar`).
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


def relative_colorbar(signed: bool, label: str):
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


def shared_limits(arrays, vmin, vmax) -> tuple[float, float]:
    """One colour scale for all panels: [0, 1] for maps in it, else their joint range."""
    lo = min(float(np.min(a)) for a in arrays) if vmin is None else vmin
    hi = max(float(np.max(a)) for a in arrays) if vmax is None else vmax
    if vmin is None and vmax is None and lo >= 0 and hi <= 1:
        lo, hi = 0.0, 1.0
    return lo, hi


def symmetric_limit(a: np.ndarray) -> float:
    """The largest ``|value|`` of ``a`` (1 for an empty or all-zero array): the colour
    range ``[-lim, lim]`` of a signed panel, centred on zero."""
    lim = float(np.abs(a).max()) if a.size else 0.0
    return lim if lim > 0 else 1.0
