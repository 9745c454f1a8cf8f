"""Figures and the temperature explorer of chapters 2 and 3."""

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from atkd_lite.book import viz, widgets


def test_footprint_bars_one_panel_per_metric_with_ratios():
    fps = {"teacher": {"parameters": 300, "latency_ms": 2.0},
           "student": {"parameters": 6, "latency_ms": 4.0}}
    fig = viz.footprint_bars(fps)
    assert [ax.get_title() for ax in fig.axes] == ["parameters", "CPU latency per image (ms)"]
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert "6\n(1/50)" in labels  # 300 / 6 = 50, by hand
    assert "4\n(2×)" in [t.get_text() for t in fig.axes[1].texts]
    with pytest.raises(ValueError, match="missing"):
        viz.footprint_bars({"a": {"x": 1}, "b": {}})


def test_confusion_heatmap_writes_counts_and_hides_diagonal():
    cm = torch.tensor([[5, 1, 0], [0, 4, 2], [1, 0, 3]])
    fig = viz.confusion_heatmap(cm, classes=["a", "b", "c"])
    texts = sorted(t.get_text() for t in fig.axes[0].texts)
    assert texts == sorted(["5", "1", "4", "2", "1", "3"])  # zeros left blank
    fig = viz.confusion_heatmap(cm, hide_diagonal=True)
    assert sorted(t.get_text() for t in fig.axes[0].texts) == ["1", "1", "2"]
    with pytest.raises(ValueError, match="square"):
        viz.confusion_heatmap(torch.zeros(2, 3))


def test_temperature_bars_entropy_in_titles():
    z = torch.tensor([0.0, 0.0, 0.0, 0.0])  # uniform over 4 classes: 2 bits at any T
    fig = viz.temperature_bars(z, [1, 5], image=torch.rand(28, 28), label=2)
    assert len(fig.axes) == 3
    assert "entropy 2.00 bits" in fig.axes[1].get_title()
    heights = [p.get_height() for p in fig.axes[2].patches]
    assert np.allclose(heights, 0.25)
    with pytest.raises(ValueError, match="positive"):
        viz.temperature_bars(z, [0])


def test_class_probabilities_and_seed_curves():
    fig = viz.class_probabilities(torch.rand(3, 1, 28, 28), torch.full((3, 10), 0.1),
                                  labels=[0, 1, 2])
    assert len(fig.axes) == 6
    fig = viz.seed_curves({"kd": [[0.5, 0.9], [0.7, 0.7]]})
    line = fig.axes[0].get_lines()[0]
    assert np.allclose(line.get_ydata(), [60, 80])  # mean of the seeds, in percent
    with pytest.raises(ValueError, match="same, non-zero"):
        viz.seed_curves({"kd": [[0.5], [0.6, 0.7]]})


def test_temperature_explorer_static_and_update():
    z = torch.tensor([[3.0, 1.0, 0.0], [0.0, 0.0, 5.0]])
    ex = widgets.temperature_explorer(z, torch.rand(2, 1, 8, 8), labels=[0, 2],
                                      temperatures=[1, 4], interactive=False)
    assert ex.controls is None and ex.values == {"image": 0, "T": 1}
    fig = ex.update(image=1, T=4)
    assert isinstance(fig, Figure)
    assert fig.axes[1].get_title().startswith("T = 4")
    with pytest.raises(ValueError, match="not one of"):
        ex.update(T=3)
    with pytest.raises(ValueError, match="not one of the temperatures"):
        widgets.temperature_explorer(z, torch.rand(2, 8, 8), T=2, temperatures=[1, 4])


def test_temperature_explorer_builds_a_slider_when_asked():
    pytest.importorskip("ipywidgets")
    ex = widgets.temperature_explorer(torch.randn(2, 3), torch.rand(2, 8, 8),
                                      temperatures=[1, 2, 8], interactive=True)
    kinds = [type(c).__name__ for c in ex.controls.children]
    assert kinds == ["IntSlider", "SelectionSlider"]
    ex.controls.children[1].value = 8  # moving the slider redraws
    assert ex.values["T"] == 8
