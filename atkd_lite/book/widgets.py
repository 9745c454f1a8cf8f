"""Interactive figures (ipywidgets) that degrade to a static figure.

An :class:`Explorer` is a drawing function plus the values of its parameters. Shown in a
notebook, it displays the figure **for the default values** as an ordinary image output,
and, when a live kernel with ``ipywidgets`` is present (Jupyter, Colab), controls above it
that redraw that same output in place. Where widgets cannot render — the static book,
nbval, a terminal, ``ipywidgets`` missing — the figure for the default values is what is
seen, so every reader sees the same content. Nothing here ever fails because widgets are
unavailable: the controls are an extra, the figure is the content.

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

from collections.abc import Callable, Mapping

from matplotlib.figure import Figure

from atkd_lite.book import viz

__all__ = ["Explorer", "explore", "filter_explorer", "temperature_explorer",
           "widgets_available"]


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


class Explorer:
    """A figure drawn by ``draw(**values)`` with optional controls that change ``values``.

    Use :func:`explore` (or a ready-made explorer such as :func:`filter_explorer`) to
    build one. In a notebook, make it the value of a cell to show it.

    Attributes:
        values (dict): the current parameter values (the defaults until a control moves).
        figure (Figure): the figure for the current values.
        controls: the ipywidgets container, or None when widgets are unavailable.
        reason (str): why there are no controls (empty when there are).
    """

    def __init__(self, draw: Callable[..., Figure], options: Mapping[str, object],
                 defaults: Mapping[str, object], interactive: bool | None = None):
        self._draw = draw
        self.options = dict(options)
        self.values = dict(defaults)
        self._handle = None
        self.figure = self._render()
        self.controls = None
        self.reason = ""
        if interactive is None:
            interactive = widgets_available()
        if not interactive:
            self.reason = "no live kernel with ipywidgets (static figure for the default values)"
            return
        try:
            self.controls = self._build_controls()
        except Exception as err:  # widgets are an extra: fall back to the static figure
            self.controls = None
            self.reason = f"ipywidgets could not build the controls ({type(err).__name__}: {err})"

    def _render(self) -> Figure:
        fig = self._draw(**self.values)
        if not isinstance(fig, Figure):
            raise TypeError(
                f"the draw function must return a matplotlib Figure, got {type(fig).__name__}"
            )
        return fig

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
        return w.HBox(items)

    def _on_change(self, name: str):
        def handler(change):
            self.update(**{name: change["new"]})

        return handler

    def update(self, **values) -> Figure:
        """Redraw with some values changed; refreshes the notebook output if shown.

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
        if self._handle is not None:
            self._handle.update(self.figure)
        return self.figure

    def _ipython_display_(self):
        from IPython.display import display

        if self.controls is not None:
            display(self.controls)
        # the figure is an ordinary image output: the static book and nbval see it
        self._handle = display(self.figure, display_id=True)

    def __repr__(self) -> str:
        mode = "interactive" if self.controls is not None else "static"
        return f"Explorer({self.values}, {mode})"


def explore(draw: Callable[..., Figure], interactive: bool | None = None,
            **options) -> Explorer:
    """An explorer of ``draw`` over the given options; the first option of each is the default.

    Args:
        draw: a function of the parameters returning a Figure.
        interactive: show controls (None: when :func:`widgets_available`).
        **options: parameter name -> a ``range`` (an integer slider), a list of choices (a
            dropdown), or a ready ipywidgets value widget (its current value is the default).

    Returns:
        Explorer: show it as the value of a notebook cell.

    Examples::

        >>> from atkd_lite.book.viz import image_grid
        >>> from atkd_lite.book.widgets import explore
        >>> import torch
        >>> images = torch.rand(5, 28, 28)
        >>> ex = explore(lambda i: image_grid(images[i]), i=range(5), interactive=False)
        >>> ex.values
        {'i': 0}
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
    return Explorer(draw, options, defaults, interactive=interactive)


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
        Explorer: its static figure is :func:`atkd_lite.book.viz.filter_response` for the
        default image and kernel.
    """
    arrays = viz._as_list(images)
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

    options = {"image": range(len(arrays)), "kernel": names}
    return Explorer(draw, options, {"image": image, "kernel": kernel}, interactive=interactive)


# ---------------------------------------------------------------------------------------
# Chapter "Knowledge distillation": soft targets at a chosen temperature

def temperature_explorer(logits, images, labels=None, temperatures=(1, 2, 4, 8, 16, 32),
                         image: int = 0, T: float | None = None, classes=None,
                         interactive: bool | None = None) -> Explorer:
    """Pick an example and a temperature T; see ``softmax(z / T)`` of its logits ``z``.

    A slider over the given temperatures (a ``SelectionSlider`` in a live kernel) and one
    over the examples. The static figure is :func:`atkd_lite.book.viz.temperature_bars` for
    the default example and temperature.

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
    z = viz._numpy(logits)
    arrays = viz._as_list(images)
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
    options = {"image": range(len(arrays)), "T": t_option}
    return Explorer(draw, options, {"image": image, "T": T}, interactive=interactive)
