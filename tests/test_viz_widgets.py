"""Figures build headless (Agg) and the widget explorers fall back to a static figure."""

import io
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from atkd_lite.book import viz, widgets  # noqa: E402
from atkd_lite.engine import History  # noqa: E402

VERTICAL = torch.tensor([[1.0, 0.0, -1.0]] * 3)


def pixels(fig: Figure) -> np.ndarray:
    """Render the figure as a notebook or savefig would (raw RGBA bytes)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="rgba")
    return np.frombuffer(buffer.getvalue(), dtype=np.uint8)


# ------------------------------------------------------------------ viz


def test_figures_are_returned_and_not_left_open_in_pyplot():
    before = plt.get_fignums()
    fig = viz.image_grid(torch.rand(5, 1, 28, 28), titles=list("abcde"), ncols=3)
    assert isinstance(fig, Figure)
    assert plt.get_fignums() == before  # closed in pyplot: a notebook shows it once
    assert len(fig.axes) == 5
    assert [ax.get_title() for ax in fig.axes] == list("abcde")
    pixels(fig)  # renders


def test_image_grid_accepts_lists_imagesets_and_colour():
    from atkd_lite.data import load_dataset

    sample = load_dataset("mnist5k", "test").per_class(1)
    assert len(viz.image_grid(sample, ncols=5).axes) == 10
    mixed = [torch.rand(28, 28), np.random.rand(7, 7), torch.rand(3, 16, 16)]
    assert len(viz.image_grid(mixed).axes) == 3
    with pytest.raises(ValueError, match="one per image"):
        viz.image_grid(torch.rand(2, 28, 28), titles=["only one"])
    with pytest.raises(ValueError, match="empty"):
        viz.image_grid(torch.rand(0, 1, 8, 8))


def test_filter_grid_uses_a_symmetric_signed_colour_scale():
    w = torch.zeros(4, 1, 3, 3)
    w[0, 0, 0, 0] = 2.0
    w[0, 0, 2, 2] = -0.5
    fig = viz.filter_grid(w, ncols=2)
    assert len(fig.axes) == 4 + 1  # four filters and the colour bar
    lo, hi = fig.axes[0].images[0].get_clim()
    assert (lo, hi) == (-2.0, 2.0)  # zero stays white, whatever the range
    # the bar says that each filter has its own range, centred on zero
    assert [t.get_text() for t in fig.axes[-1].get_yticklabels()] == ["−max", "0", "+max"]
    assert len(viz.filter_grid(torch.randn(3, 3)).axes) == 1 + 1
    assert len(viz.filter_grid(torch.randn(6, 3, 5, 5), channel=2).axes) == 6 + 1
    with pytest.raises(ValueError, match="input channels"):
        viz.filter_grid(torch.randn(6, 3, 5, 5), channel=3)


def test_feature_map_grid_orders_by_energy():
    a = torch.zeros(1, 5, 7, 7)
    a[0, 3] = 10.0
    a[0, 1] = 5.0
    fig = viz.feature_map_grid(a, max_maps=2, order="energy")
    assert [ax.get_title() for ax in fig.axes[:-1]] == ["channel 3", "channel 1"]
    assert [t.get_text() for t in fig.axes[-1].get_yticklabels()] == ["min", "max"]
    assert len(viz.feature_map_grid(a[0], max_maps=16).axes) == 5 + 1
    with pytest.raises(ValueError, match="index the batch"):
        viz.feature_map_grid(torch.rand(2, 5, 7, 7))


def test_filter_responses_show_what_conv2d_computes():
    images = torch.rand(3, 1, 10, 10)
    fig = viz.filter_responses(images, {"v": VERTICAL, "blur": torch.full((3, 3), 1 / 9)})
    assert len(fig.axes) == 3 * 3 + 1  # and the colour bar
    shown = fig.axes[3].images[0].get_array()  # first response row, first image
    want = F.conv2d(images[:1], VERTICAL[None, None], padding=1)[0, 0].numpy()
    np.testing.assert_allclose(np.asarray(shown), want, atol=1e-6)
    assert len(viz.filter_responses(images, {"v": VERTICAL}, show_kernels=True).axes) == 2 * 4 + 1
    with pytest.raises(ValueError, match="2-D"):
        viz.filter_responses(images, {"bad": torch.ones(3)})


def test_filter_response_panels():
    fig = viz.filter_response(torch.rand(1, 12, 12), VERTICAL, "vertical edge")
    assert [ax.get_title() for ax in fig.axes[:3]] == ["input", "vertical edge", "response"]
    assert fig.axes[3].get_ylabel().startswith("kernel, response")  # the colour bar
    pixels(fig)


def test_map_overlays_with_boxes_and_bad_shapes():
    fig = viz.map_overlays(torch.rand(2, 1, 28, 28), torch.rand(2, 7, 7),
                           boxes=torch.tensor([[2, 3, 20, 25], [0, 0, 28, 28]]))
    assert len(fig.axes) == 3  # two panels and the colour bar
    assert len(fig.axes[0].patches) == 1
    with pytest.raises(ValueError, match="one"):
        viz.map_overlays(torch.rand(2, 1, 28, 28), torch.rand(3, 28, 28))


def test_learning_curves_and_bar_chart():
    h = History()
    for e, acc in enumerate([0.5, 0.8, 0.9], start=1):
        h.append(epoch=e, test_acc=acc)
    fig = viz.learning_curves({"teacher": h, "student": [0.4, 0.6, 0.7]})
    lines = fig.axes[0].get_lines()
    assert [ln.get_label() for ln in lines] == ["teacher", "student"]
    np.testing.assert_allclose(lines[0].get_ydata(), [50, 80, 90])  # percent
    fig = viz.bar_chart({"student": 0.9, "fma": 0.93, "sals": 0.95},
                        errors={"fma": 0.01}, highlight=["sals"])
    assert [p.get_height() for p in fig.axes[0].patches] == pytest.approx([0.9, 0.93, 0.95])
    with pytest.raises(ValueError):
        viz.bar_chart({})


# ------------------------------------------------------------------ widgets


def test_widgets_unavailable_outside_a_kernel():
    assert widgets.widgets_available() is False  # pytest is no IPython kernel


def test_explorer_static_fallback_without_ipywidgets(monkeypatch):
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import fails
    assert widgets.widgets_available() is False
    images = torch.rand(4, 1, 12, 12)
    ex = widgets.filter_explorer(images, {"v": VERTICAL, "h": VERTICAL.T})
    assert ex.controls is None and "no live kernel" in ex.reason
    assert ex.values == {"image": 0, "kernel": "v"}
    # the static figure is exactly the figure for the default values
    np.testing.assert_array_equal(pixels(ex.figure),
                                  pixels(viz.filter_response(images[0], VERTICAL, "v")))
    # forcing interactive without ipywidgets still gives the static figure, not an error
    forced = widgets.filter_explorer(images, {"v": VERTICAL}, interactive=True)
    assert forced.controls is None and "could not build" in forced.reason


def test_explorer_controls_redraw_the_figure():
    pytest.importorskip("ipywidgets")
    images = torch.rand(4, 1, 12, 12)
    ex = widgets.filter_explorer(images, {"v": VERTICAL, "h": VERTICAL.T}, interactive=True)
    slider, dropdown = ex.controls.children
    first = ex.figure
    slider.value = 2
    dropdown.value = "h"
    assert ex.values == {"image": 2, "kernel": "h"}
    assert ex.figure is not first
    np.testing.assert_array_equal(pixels(ex.figure),
                                  pixels(viz.filter_response(images[2], VERTICAL.T, "h")))


def test_explorer_rejects_bad_values():
    ex = widgets.filter_explorer(torch.rand(2, 8, 8), {"v": VERTICAL}, interactive=False)
    with pytest.raises(ValueError, match="unknown parameter"):
        ex.update(colour="red")
    with pytest.raises(ValueError, match="not one of"):
        ex.update(kernel="sobel")
    with pytest.raises(ValueError, match="out of range"):
        widgets.filter_explorer(torch.rand(2, 8, 8), {"v": VERTICAL}, image=5)
    with pytest.raises(ValueError, match="unknown kernel"):
        widgets.filter_explorer(torch.rand(2, 8, 8), {"v": VERTICAL}, kernel="h")


def test_explore_generic_and_draw_must_return_a_figure():
    ex = widgets.explore(lambda i, cmap: viz.image_grid(torch.rand(2, 4, 4)[i], cmap=cmap),
                         i=range(2), cmap=["gray", "viridis"], interactive=False)
    assert ex.values == {"i": 0, "cmap": "gray"}
    with pytest.raises(TypeError, match="Figure"):
        widgets.explore(lambda i: None, i=range(3), interactive=False)
    with pytest.raises(ValueError, match="at least one"):
        widgets.explore(lambda: None)
