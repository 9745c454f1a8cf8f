"""One colour map for every attention map in the book, with colour bars that mean something.

Checked against matplotlib itself: the colours a panel shows are the colour map applied
to the map's values on the shared scale that the colour bar states.
"""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch

from atkd_lite.book import viz


def _bar(fig):
    bars = [ax for ax in fig.axes if getattr(ax, "_colorbar", None) is not None]
    assert len(bars) == 1, f"{len(bars)} colour bars"
    return bars[0]


def test_overlays_share_one_scale_and_state_it_in_a_colour_bar():
    maps = torch.stack([torch.full((7, 7), 0.2), torch.linspace(0, 0.5, 49).reshape(7, 7)])
    fig = viz.map_overlays(torch.rand(2, 1, 28, 28), maps)
    panels = [ax for ax in fig.axes if ax.images]
    assert [ax.images[1].get_clim() for ax in panels] == [(0.0, 1.0)] * 2
    assert all(ax.images[1].get_cmap().name == viz.ATTENTION_CMAP for ax in panels)
    bar = _bar(fig)
    assert bar.get_ylabel() == "map value"
    # the bar is the colour map from 0 to 1
    assert (bar._colorbar.norm.vmin, bar._colorbar.norm.vmax) == (0.0, 1.0)
    assert bar._colorbar.cmap.name == viz.ATTENTION_CMAP
    # the constant 0.2 map is drawn as the colour map's colour at 0.2, not at its maximum
    rgba = panels[0].images[1].to_rgba(maps[0].numpy())[0, 0]
    np.testing.assert_allclose(rgba[:3], matplotlib.colormaps[viz.ATTENTION_CMAP](0.2)[:3])


def test_maps_outside_zero_one_get_their_joint_range():
    maps = torch.stack([torch.zeros(5, 5), torch.full((5, 5), 3.0)])
    fig = viz.map_overlays(torch.rand(2, 5, 5), maps, colorbar="saliency")
    assert fig.axes[0].images[1].get_clim() == (0.0, 3.0)
    assert _bar(fig).get_ylabel() == "saliency"


def test_constant_maps_get_no_colour_bar_and_it_can_be_switched_off():
    assert len(viz.map_overlays(torch.rand(2, 5, 5), torch.zeros(2, 5, 5)).axes) == 2
    assert len(viz.map_overlays(torch.rand(2, 5, 5), torch.rand(2, 5, 5),
                                colorbar=False).axes) == 2


def test_image_grid_colour_bar_shares_the_scale():
    a, b = torch.rand(6, 6) * 0.5, torch.rand(6, 6)
    fig = viz.image_grid([a, b], cmap=viz.ATTENTION_CMAP, colorbar="attention")
    panels = [ax for ax in fig.axes if ax is not _bar(fig)]
    assert [ax.images[0].get_clim() for ax in panels] == [(0.0, 1.0)] * 2
    assert _bar(fig).get_ylabel() == "attention"
    # without a bar each panel keeps its own range, as before
    fig = viz.image_grid([a, b], cmap=viz.ATTENTION_CMAP)
    assert fig.axes[0].images[0].get_clim() == pytest.approx((a.min().item(),
                                                              a.max().item()))


def test_attribution_grid_uses_the_book_colour_map_with_captums_scale():
    pytest.importorskip("captum")
    fig = viz.attribution_grid(torch.rand(2, 1, 12, 12), {"m": torch.rand(2, 12, 12)})
    bar = _bar(fig)
    assert bar.get_ylabel() == "attribution (Captum's scale)"
    assert bar.get_ylim() == (0.0, 1.0)
    drawn = [im.get_cmap().name for ax in fig.axes for im in ax.images if ax is not bar]
    assert viz.ATTENTION_CMAP in drawn
