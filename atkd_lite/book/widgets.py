"""Interactive figures (ipywidgets) with a static form for the book.

An :class:`Explorer` is a drawing function, the values of its parameters, and a **static
figure** that makes the explorer's point without a kernel: the figure for the default
values, or a few *frames* (the figure for several values, side by side), or a figure of
its own (e.g. every temperature at once). Shown in a notebook, an explorer displays

- where a live kernel with ``ipywidgets`` runs (Jupyter, Colab): the controls and a live
  image that they redraw, as one widget output that also carries the static figure as
  its ``image/png`` form;
- elsewhere (a terminal, ``ipywidgets`` missing): the static figure alone.

The static book never shows the controls: it reads the notebooks through
``tools/book_extension.py``, which drops the widget form of an output and keeps its
static form, so a reader without a kernel sees the static figure, never a slider that
does nothing. Nothing here fails because widgets are unavailable: the controls are an
extra, the figure is the content. The controls use only what ipywidgets 7.7 (Colab's)
and 8 both have.

Defined in the book's chapter "CNN basics"; later chapters add explorers here.

Examples::

    >>> import torch
    >>> from atkd_lite.book.widgets import filter_explorer
    >>> kernels = {"vertical edge": torch.tensor([[1., 0, -1]] * 3)}
    >>> ex = filter_explorer(torch.rand(4, 1, 28, 28), kernels, interactive=False)
    >>> ex.values, ex.controls is None
    ({'image': 0, 'kernel': 'vertical edge'}, True)
    >>> ex.update(image=2).axes[0].get_title()
    'input'
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Mapping, Sequence

import matplotlib.image
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from atkd_lite.book import viz
from atkd_lite.book.viz import figure_png  # re-exported: the explorers' frames are PNGs
from atkd_lite.book.viz.base import image_list, to_numpy

__all__ = ["MAX_FRAMES", "WIDGET_VIEW_MIME", "Explorer", "explore", "figure_png",
           "filter_explorer", "frames_figure", "temperature_explorer", "widgets_available"]

#: the output type of a live widget (what a static page cannot run)
WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"
#: at most this many frames in a static figure
MAX_FRAMES = 6


def widgets_available() -> bool:
    """True when ipywidgets imports and code runs in a live IPython kernel (Jupyter, Colab).

    False in a terminal, a script, a test run, or without ipywidgets. (A kernel driven by
    nbclient/nbval counts as live: the controls are then part of the output, next to the
    static figure that the static book shows.)
    """
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except Exception:  # ImportError, or a broken install: no widgets, never an error
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def frames_figure(figures: Sequence[Figure], ncols: int | None = None) -> Figure:
    """Several figures side by side in one figure (the frames of an explorer).

    Each figure is drawn to pixels and placed at its own size. Wide figures are stacked in
    one column, the others placed in one row, unless ``ncols`` says otherwise.

    Args:
        figures: the frames, at least one.
        ncols: frames per row (default: 1 for wide frames, else all in one row).

    Returns:
        Figure: one axis (without ticks) per frame.

    Examples::

        >>> import torch
        >>> from atkd_lite.book import viz
        >>> from atkd_lite.book.widgets import frames_figure
        >>> frames = [viz.image_grid(torch.rand(2, 8, 8)) for _ in range(3)]
        >>> len(frames_figure(frames).axes)
        3
    """
    if not figures:
        raise ValueError("give at least one figure")
    dpi = 100
    pixels = [matplotlib.image.imread(io.BytesIO(figure_png(f, dpi)), format="png")
              for f in figures]
    h = max(p.shape[0] for p in pixels)
    w = max(p.shape[1] for p in pixels)
    if ncols is None:
        ncols = 1 if w >= 1.5 * h else len(pixels)
    ncols = max(1, min(ncols, len(pixels)))
    nrows = -(-len(pixels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(w * ncols / dpi, h * nrows / dpi),
                             dpi=dpi, squeeze=False)
    plt.close(fig)
    fig.subplots_adjust(left=0, right=1, bottom=0, top=1, wspace=0.02, hspace=0.02)
    for ax in axes.flat:
        ax.axis("off")
    for ax, p in zip(axes.flat, pixels):
        ax.imshow(p, interpolation="none")
    for ax in axes.flat[len(pixels):]:
        ax.remove()
    return fig


class Explorer:
    """A figure drawn by ``draw(**values)`` with optional controls that change ``values``.

    Use :func:`explore` (or a ready-made explorer such as :func:`filter_explorer`) to
    build one. In a notebook, make it the value of a cell to show it.

    Args:
        draw: function of the parameters that returns a Figure.
        options: parameter name -> its options (see :func:`explore`).
        defaults: parameter name -> its default value.
        interactive: build controls (None: when :func:`widgets_available`).
        static: a function of no arguments that returns the static figure (None: the
            figure for the default values).

    Attributes:
        values (dict): the current parameter values (the defaults until a control moves).
        figure (Figure): the figure for the current values.
        controls: the ipywidgets box of controls, or None when widgets are unavailable.
        view: the whole live widget (controls above a live image), or None.
        reason (str): why there are no controls (empty when there are).
    """

    def __init__(self, draw: Callable[..., Figure], options: Mapping[str, object],
                 defaults: Mapping[str, object], interactive: bool | None = None,
                 static: Callable[[], Figure] | None = None):
        self._draw = draw
        self._static = static
        self.options = dict(options)
        self.defaults = dict(defaults)
        self.values = dict(defaults)
        self.figure = self._render()
        self._default_figure = self.figure
        self.controls = None
        self.view = None
        self._image = None
        self.reason = ""
        if interactive is None:
            interactive = widgets_available()
        if not interactive:
            self.reason = "no live kernel with ipywidgets (static figure)"
            return
        try:
            self.controls, self._image, self.view = self._build_controls()
        except Exception as err:  # widgets are an extra: fall back to the static figure
            self.controls = self._image = self.view = None
            self.reason = f"ipywidgets could not build the controls ({type(err).__name__}: {err})"

    def _render(self) -> Figure:
        fig = self._draw(**self.values)
        return _check_figure(fig, "the draw function")

    def static_figure(self) -> Figure:
        """The figure that makes the explorer's point without a kernel (what the book shows)."""
        if self._static is None:
            return self._default_figure
        return _check_figure(self._static(), "the static function")

    def _build_controls(self):
        import ipywidgets as w

        items = []
        for name, opts in self.options.items():
            if isinstance(opts, w.ValueWidget):
                control = opts
                control.value = self.values[name]
            elif isinstance(opts, range):
                control = w.IntSlider(value=self.values[name], min=opts.start,
                                      max=opts.stop - 1, step=opts.step, description=name,
                                      continuous_update=False)
            else:
                control = w.Dropdown(options=list(opts), value=self.values[name],
                                     description=name)
            control.observe(self._on_change(name), names="value")
            items.append(control)
        controls = w.HBox(items)
        image = w.Image(value=figure_png(self.figure), format="png")
        return controls, image, w.VBox([controls, image])

    def _on_change(self, name: str):
        def handler(change):
            self.update(**{name: change["new"]})

        return handler

    def update(self, **values) -> Figure:
        """Redraw with some values changed; refreshes the live image if shown.

        Raises:
            ValueError: for a parameter the explorer does not have, or a value outside
                its options.
        """
        for name, value in values.items():
            if name not in self.options:
                raise ValueError(f"unknown parameter {name!r}; this explorer has {list(self.options)}")
            opts = self.options[name]
            if not hasattr(opts, "value") and value not in opts:
                raise ValueError(f"{name}={value!r} is not one of the options {list(opts)}")
        self.values.update(values)
        self.figure = self._render()
        if self._image is not None:
            self._image.value = figure_png(self.figure)
        return self.figure

    def _repr_mimebundle_(self, include=None, exclude=None):
        """One output: the live widget where a kernel runs it, the static figure elsewhere.

        The static figure is the ``image/png`` form of the same output, so a page without
        a kernel (the static book reads only that form) shows the figure, and the live
        notebook shows the controls.
        """
        data = {
            "image/png": base64.b64encode(figure_png(self.static_figure())).decode("ascii"),
            "text/plain": repr(self),
        }
        if self.view is not None:
            # what ipywidgets 7 and 8 both write for a displayed widget
            data[WIDGET_VIEW_MIME] = {"version_major": 2, "version_minor": 0,
                                      "model_id": self.view.model_id}
        return data

    def __repr__(self) -> str:
        mode = "interactive" if self.controls is not None else "static"
        return f"Explorer({self.values}, {mode})"


def _check_figure(fig, what: str) -> Figure:
    if not isinstance(fig, Figure):
        raise TypeError(f"{what} must return a matplotlib Figure, got {type(fig).__name__}")
    return fig


def explore(draw: Callable[..., Figure], interactive: bool | None = None,
            frames: str | Sequence[Mapping[str, object]] | None = None,
            **options) -> Explorer:
    """An explorer of ``draw`` over the given options; the first option of each is the default.

    Args:
        draw: a function of the parameters returning a Figure.
        interactive: show controls (None: when :func:`widgets_available`).
        frames: what the static figure (the book's, and the one shown without a kernel)
            shows: None, the figure for the default values; a parameter name, the figure
            for each of its options (at most :data:`MAX_FRAMES`) with the other
            parameters at their defaults; or a list of value dicts, one frame each.
        **options: parameter name -> a ``range`` (an integer slider), a list of choices (a
            dropdown), or a ready ipywidgets value widget (its current value is the default).

    Returns:
        Explorer: show it as the value of a notebook cell.

    Raises:
        ValueError: no options, empty options, or frames that name unknown parameters
            or values outside the options.

    Examples::

        >>> from atkd_lite.book.viz import image_grid
        >>> from atkd_lite.book.widgets import explore
        >>> import torch
        >>> images = torch.rand(5, 28, 28)
        >>> ex = explore(lambda i: image_grid(images[i]), i=range(5), interactive=False,
        ...              frames="i")
        >>> ex.values, len(ex.static_figure().axes)
        ({'i': 0}, 5)
    """
    if not options:
        raise ValueError("give at least one parameter to explore, e.g. image=range(10)")
    defaults = {}
    for name, opts in options.items():
        if hasattr(opts, "value") and not isinstance(opts, (range, list, tuple)):
            defaults[name] = opts.value
        elif len(opts) == 0:
            raise ValueError(f"the options for {name!r} are empty")
        else:
            defaults[name] = opts[0]
    frame_values = _frame_values(frames, options, defaults)
    static = None
    if frame_values:
        def static() -> Figure:
            return frames_figure([draw(**{**defaults, **f}) for f in frame_values])
    return Explorer(draw, options, defaults, interactive=interactive, static=static)


def _frame_values(frames, options: Mapping[str, object], defaults: Mapping[str, object]):
    """The frames as a list of value dicts (checked), or None."""
    if frames is None:
        return None
    if isinstance(frames, str):
        if frames not in options:
            raise ValueError(f"frames={frames!r} is not a parameter; choose one of "
                             f"{list(options)}")
        opts = options[frames]
        choices = list(getattr(opts, "options", None) or ([] if hasattr(opts, "value")
                                                           and not isinstance(opts, (range, list, tuple))
                                                           else opts))
        if not choices:
            raise ValueError(f"frames={frames!r}: that parameter has no list of options to "
                             "show; give the frames as a list of value dicts")
        frames = [{frames: v} for v in choices[:MAX_FRAMES]]
    frames = [dict(f) for f in frames]
    if not frames or len(frames) > MAX_FRAMES:
        raise ValueError(f"give 1 to {MAX_FRAMES} frames, got {len(frames)}")
    for f in frames:
        for name, value in f.items():
            if name not in options:
                raise ValueError(f"a frame sets {name!r}, which is not a parameter; "
                                 f"choose from {list(options)}")
            opts = options[name]
            if not hasattr(opts, "value") and value not in opts:
                raise ValueError(f"a frame sets {name}={value!r}, not one of the options "
                                 f"{list(opts)}")
    return frames


def filter_explorer(images, kernels: Mapping[str, object], image: int = 0,
                    kernel: str | None = None, interactive: bool | None = None) -> Explorer:
    """Pick an image and a kernel; see the kernel's response (input | kernel | response).

    Args:
        images: an :class:`~atkd_lite.data.ImageSet`, or single-channel images
            (N, 1, H, W) / (N, H, W).
        kernels: name -> 2-D kernel.
        image: index of the image shown by default.
        kernel: name of the kernel shown by default (default: the first).
        interactive: show controls (None: when :func:`widgets_available`).

    Returns:
        Explorer: it draws :func:`atkd_lite.book.viz.filter_response` for the chosen image
        and kernel; its static figure is the default image's response to every kernel
        (:func:`atkd_lite.book.viz.filter_responses` with the kernels shown).
    """
    arrays = image_list(images)
    if not kernels:
        raise ValueError("give at least one kernel, e.g. {'vertical edge': [[1, 0, -1]] * 3}")
    if not 0 <= image < len(arrays):
        raise ValueError(f"image={image} is out of range for {len(arrays)} images")
    names = list(kernels)
    if kernel is None:
        kernel = names[0]
    if kernel not in kernels:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {names}")

    def draw(image: int, kernel: str) -> Figure:
        return viz.filter_response(arrays[image], kernels[kernel], name=kernel)

    def static() -> Figure:
        return viz.filter_responses(arrays[image], kernels, show_kernels=True, size=1.4)

    options = {"image": range(len(arrays)), "kernel": names}
    return Explorer(draw, options, {"image": image, "kernel": kernel}, interactive=interactive,
                    static=static)


# ---------------------------------------------------------------------------------------
# Chapter "Knowledge distillation": soft targets at a chosen temperature

def temperature_explorer(logits, images, labels=None, temperatures=(1, 2, 4, 8, 16, 32),
                         image: int = 0, T: float | None = None, classes=None,
                         interactive: bool | None = None) -> Explorer:
    """Pick an example and a temperature T; see ``softmax(z / T)`` of its logits ``z``.

    A slider over the given temperatures (a ``SelectionSlider`` in a live kernel) and one
    over the examples, drawing :func:`atkd_lite.book.viz.temperature_bars` for the chosen
    pair. The static figure shows the default example at every temperature at once: the
    point of the slider (the distribution flattens as T grows) without a kernel.

    Args:
        logits: ``(N, K)`` logits (e.g. the teacher's, from :func:`atkd_lite.predict`).
        images: the N images (drawn next to the bars).
        labels: optional true classes, highlighted in the bars.
        temperatures: the values of T the slider offers.
        image: the example shown by default.
        T: the temperature shown by default (default: the first).
        classes: class names.
        interactive: show controls (None: when :func:`widgets_available`).

    Returns:
        Explorer

    Examples::

        >>> import torch
        >>> from atkd_lite.book.widgets import temperature_explorer
        >>> ex = temperature_explorer(torch.randn(3, 10), torch.rand(3, 1, 28, 28),
        ...                           interactive=False)
        >>> ex.values
        {'image': 0, 'T': 1}
    """
    z = to_numpy(logits)
    arrays = image_list(images)
    if z.ndim != 2 or len(z) != len(arrays):
        raise ValueError(f"need logits shaped ({len(arrays)}, K) for {len(arrays)} images, "
                         f"got {z.shape}")
    temps = list(temperatures)
    if not temps or min(temps) <= 0:
        raise ValueError(f"temperatures must be positive numbers, got {temperatures!r}")
    T = temps[0] if T is None else T
    if T not in temps:
        raise ValueError(f"T={T!r} is not one of the temperatures {temps}")
    if not 0 <= image < len(arrays):
        raise ValueError(f"image={image} is out of range for {len(arrays)} images")
    labels = None if labels is None else [int(v) for v in labels]

    def draw(image: int, T: float) -> Figure:
        return viz.temperature_bars(z[image], [T], image=arrays[image],
                                    label=None if labels is None else labels[image],
                                    classes=classes, size=2.6)

    t_option: object = temps
    if interactive is None:
        interactive = widgets_available()
    if interactive:
        try:  # a slider reads better than a dropdown for an ordered quantity
            import ipywidgets as w

            t_option = w.SelectionSlider(options=temps, value=T, description="T",
                                         continuous_update=False)
        except Exception:  # widgets are an extra: the Explorer falls back by itself
            t_option = temps
    def static() -> Figure:
        return viz.temperature_bars(z[image], temps, image=arrays[image],
                                    label=None if labels is None else labels[image],
                                    classes=classes, size=1.6)

    options = {"image": range(len(arrays)), "T": t_option}
    return Explorer(draw, options, {"image": image, "T": T}, interactive=interactive,
                    static=static)
