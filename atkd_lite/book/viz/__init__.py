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

Defined in the book's chapter "CNN basics"; later chapters add their figures. A chapter
reaches every figure as ``viz.<name>``; they are defined, by kind, in

- :mod:`~atkd_lite.book.viz.base` — the colour maps, :func:`figure_png`,
  :func:`show_figures_inline`, :func:`to_image`, and the steps every figure shares;
- :mod:`~atkd_lite.book.viz.images` — images, filters, feature maps, filter responses, and
  maps drawn over their images (:func:`image_grid`, :func:`map_overlays`,
  :func:`attribution_grid`, ...);
- :mod:`~atkd_lite.book.viz.training` — learning curves, bars, curves over seeds, model
  footprints, confusion matrices, class probabilities;
- :mod:`~atkd_lite.book.viz.scores` — deletion curves, the randomisation test, map scores,
  the accuracy-against-cost trade-off;
- :mod:`~atkd_lite.book.viz.verdicts` — a family of verdicts as one figure
  (:func:`difference_plot`), paired differences, p-values.

Examples::

    >>> import torch
    >>> from atkd_lite.book import viz
    >>> fig = viz.image_grid(torch.rand(6, 1, 28, 28), titles=list("abcdef"), ncols=3)
    >>> len(fig.axes)
    6
    >>> fig = viz.filter_grid(torch.randn(8, 1, 3, 3))
    >>> fig.savefig("/tmp/filters.png")   # doctest: +SKIP
"""

from atkd_lite.book.viz.base import (
    ATTENTION_CMAP,
    MAP_CMAP,  # noqa: F401  (viz.MAP_CMAP, as before)
    SIGNED_CMAP,  # noqa: F401  (viz.SIGNED_CMAP, as before)
    figure_png,
    show_figures_inline,
    to_image,
)
from atkd_lite.book.viz.images import (
    attribution_grid,
    feature_map_grid,
    filter_grid,
    filter_response,
    filter_responses,
    image_grid,
    map_overlays,
)
from atkd_lite.book.viz.scores import (
    deletion_curves,
    randomisation_curves,
    score_bars,
    tradeoff_plot,
)
from atkd_lite.book.viz.training import (
    FOOTPRINT_LABELS,  # noqa: F401  (viz.FOOTPRINT_LABELS, as before)
    bar_chart,
    class_probabilities,
    confusion_heatmap,
    footprint_bars,
    learning_curves,
    seed_curves,
    temperature_bars,
)
from atkd_lite.book.viz.verdicts import (
    VERDICT_COLOURS,  # noqa: F401  (viz.VERDICT_COLOURS, as before)
    difference_plot,
    paired_plot,
    pvalue_plot,
)

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


show_figures_inline()  # a figure returned by a chapter cell is recorded as a picture
