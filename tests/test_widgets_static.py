"""Static book, live notebook: every explorer makes its point without a kernel.

An explorer (``atkd_lite.book.widgets``) is one output: the live widget where a kernel
runs it, and its static figure as the ``image/png`` form of the same output. The book
reads the notebooks through ``tools/book_extension.py``, which keeps only the static form.
These tests check both halves, on explorers built here and in a real kernel; the built
pages themselves are checked in a browser by ``tests/test_site.py``.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import sys
from pathlib import Path

import matplotlib.image
import nbformat
import numpy as np
import pytest
import torch
from nbformat.v4 import new_code_cell, new_notebook, new_output

from atkd_lite.book import viz, widgets

ROOT = Path(__file__).resolve().parents[1]
VERTICAL = torch.tensor([[1.0, 0.0, -1.0]] * 3)


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


book_extension = _load("book_extension")


def _png_pixels(data: bytes) -> np.ndarray:
    return matplotlib.image.imread(io.BytesIO(data), format="png")


def _pixels(fig) -> np.ndarray:
    return _png_pixels(widgets.figure_png(fig))


# ------------------------------------------------------------------ the output bundle


def test_live_explorer_is_one_output_with_the_static_figure_inside():
    pytest.importorskip("ipywidgets")
    images = torch.rand(3, 1, 12, 12)
    ex = widgets.filter_explorer(images, {"v": VERTICAL, "h": VERTICAL.T}, interactive=True)
    bundle = ex._repr_mimebundle_()
    assert set(bundle) == {widgets.WIDGET_VIEW_MIME, "image/png", "text/plain"}
    assert bundle[widgets.WIDGET_VIEW_MIME]["model_id"] == ex.view.model_id
    # the static form: the default image's response to every kernel, drawn by viz
    expected = viz.filter_responses(images[0], {"v": VERTICAL, "h": VERTICAL.T},
                                    show_kernels=True, size=1.4)
    np.testing.assert_array_equal(_png_pixels(base64.b64decode(bundle["image/png"])),
                                  _pixels(expected))
    # the live view holds the controls and an image of the current figure
    assert ex.view.children[0] is ex.controls
    np.testing.assert_array_equal(_png_pixels(ex.view.children[1].value), _pixels(ex.figure))


def test_moving_a_control_redraws_the_live_image_not_the_static_figure():
    pytest.importorskip("ipywidgets")
    images = torch.rand(3, 1, 12, 12)
    ex = widgets.filter_explorer(images, {"v": VERTICAL, "h": VERTICAL.T}, interactive=True)
    static_before = ex._repr_mimebundle_()["image/png"]
    slider, dropdown = ex.controls.children
    slider.value, dropdown.value = 2, "h"
    np.testing.assert_array_equal(_png_pixels(ex.view.children[1].value),
                                  _pixels(viz.filter_response(images[2], VERTICAL.T, "h")))
    assert ex._repr_mimebundle_()["image/png"] == static_before


def test_without_a_kernel_the_output_is_the_static_figure_alone():
    ex = widgets.temperature_explorer(torch.randn(2, 10), torch.rand(2, 8, 8),
                                      temperatures=[1, 4, 16], interactive=False)
    bundle = ex._repr_mimebundle_()
    assert widgets.WIDGET_VIEW_MIME not in bundle
    # every temperature at once (plus the image): the point without a slider
    static = ex.static_figure()
    assert [ax.get_title().splitlines()[0] for ax in static.axes[1:]] == \
        ["T = 1", "T = 4", "T = 16"]
    assert ex.figure.axes[1].get_title().startswith("T = 1") and len(ex.figure.axes) == 2


def test_frames_show_the_figure_for_each_option():
    images = torch.rand(3, 6, 6)

    def draw(i, cmap):
        return viz.image_grid(images[i], cmap=cmap, title=f"image {i}")

    ex = widgets.explore(draw, i=range(3), cmap=["gray", "viridis"], frames="i",
                         interactive=False)
    static = ex.static_figure()
    assert len(static.axes) == 3
    for i, ax in enumerate(static.axes):  # frame i is draw(i, the default cmap), as pixels
        np.testing.assert_array_equal(ax.images[0].get_array(), _pixels(draw(i, "gray")))
    ex2 = widgets.explore(draw, i=range(3), cmap=["gray", "viridis"],
                          frames=[{"i": 2, "cmap": "viridis"}], interactive=False)
    np.testing.assert_array_equal(ex2.static_figure().axes[0].images[0].get_array(),
                                  _pixels(draw(2, "viridis")))


@pytest.mark.parametrize("frames, message", [
    ("colour", "not a parameter"),
    ([{"i": 7}], "not one of the options"),
    ([{"j": 0}], "not a parameter"),
    ([{"i": 0}] * (widgets.MAX_FRAMES + 1), "give 1 to"),
])
def test_bad_frames_are_clear_errors(frames, message):
    with pytest.raises(ValueError, match=message):
        widgets.explore(lambda i: viz.image_grid(torch.rand(4, 4)), i=range(3), frames=frames,
                        interactive=False)


# ------------------------------------------------- the book's reader keeps the static form


def _widget_output(with_png: bool):
    data = {widgets.WIDGET_VIEW_MIME: {"version_major": 2, "version_minor": 0,
                                       "model_id": "abc"},
            "text/plain": "HBox(children=(IntSlider(value=0),))"}
    if with_png:
        data["image/png"] = "iVBORw0KGgo="
    return new_output("display_data", data=data)


def test_static_reader_keeps_the_figure_and_drops_the_widget():
    printed = new_output("stream", name="stdout", text="hello\n")
    figure = new_output("display_data", data={"image/png": "iVBORw0KGgo=",
                                              "text/plain": "<Figure>"})
    nb = new_notebook(cells=[new_code_cell("x", outputs=[
        _widget_output(with_png=False),  # an old explorer: controls alone...
        figure,                          # ...and its figure as a second output
        _widget_output(with_png=True),   # an explorer now: one output with both forms
        printed])])
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    text = nbformat.writes(nb)
    out = book_extension.read_static_notebook(text).cells[0].outputs
    assert [o.output_type for o in out] == ["display_data", "display_data", "stream"]
    assert all(widgets.WIDGET_VIEW_MIME not in o.get("data", {}) for o in out)
    assert out[1].data["image/png"] == "iVBORw0KGgo="
    assert "widgets" not in book_extension.read_static_notebook(text).metadata


@pytest.mark.slow
def test_an_explorer_executed_in_a_kernel_reads_as_a_static_figure(tmp_path):
    """A real kernel (as for the committed outputs): the saved output has the live widget
    and the static PNG; the book's reader leaves the PNG alone."""
    pytest.importorskip("ipywidgets")
    from nbclient import NotebookClient

    code = ("import torch\nfrom atkd_lite.book import viz, widgets\n"
            "images = torch.rand(3, 8, 8)\n"
            "widgets.explore(lambda i: viz.image_grid(images[i]), i=range(3), frames='i')")
    nb = new_notebook(cells=[new_code_cell(code)])
    NotebookClient(nb, kernel_name="python3", timeout=120,
                   resources={"metadata": {"path": str(ROOT)}}).execute()
    [out] = nb.cells[0].outputs
    assert {widgets.WIDGET_VIEW_MIME, "image/png"} <= set(out.data)
    static = book_extension.read_static_notebook(nbformat.writes(nb))
    [kept] = static.cells[0].outputs
    assert set(kept.data) == {"image/png", "text/plain"}
    assert _png_pixels(base64.b64decode(kept.data["image/png"])).shape[0] > 8
